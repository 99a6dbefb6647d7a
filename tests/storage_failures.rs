//! Storage failures are fatal: a failed log write or fsync, a failed write
//! of the replication metadata or of a checkpoint leaves the storage
//! refusing every later change with `RunRecovery` until it is reopened, and
//! nothing that failed is retried and trusted. Installing a snapshot never
//! reopens the site older than it was, whenever it crashes.

use std::path::Path;
use std::sync::Arc;

use dbrep::db::{encode_ops, Op};
use dbrep::log::{Durability, LogConfig};
use dbrep::rep::RepMeta;
use dbrep::storage::Storage;
use dbrep::testing::{CrashMode, SimFs};
use dbrep::vfs::Vfs;
use dbrep::{Env, EnvConfig, Error, Lsn, StartAs};

const DIR: &str = "/site";

fn put(key: &str, value: &str) -> Vec<u8> {
    let mut p = Vec::new();
    encode_ops(
        &[Op::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }],
        &mut p,
    );
    p
}

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 400,
        durability: Durability::Sync,
        ..LogConfig::default()
    }
}

fn open(fs: &SimFs) -> Storage {
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    Storage::open(vfs, Path::new(DIR), config()).unwrap().0
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn entries(s: &Storage) -> Entries {
    s.store()
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn is_run_recovery<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::RunRecovery(_)))
}

/// Every call that would change a failed storage refuses, even once the
/// disk works again.
fn assert_refuses_everything(s: &mut Storage, what: &str) {
    assert!(s.failure().is_some(), "{what}: no failure recorded");
    let last = s.log().last_lsn();
    assert!(
        is_run_recovery(s.commit(9, &put("late", "x"))),
        "{what}: commit"
    );
    assert!(is_run_recovery(s.append_gen_start(9)), "{what}: gen start");
    assert!(is_run_recovery(s.checkpoint()), "{what}: checkpoint");
    assert!(
        is_run_recovery(s.save_meta(&RepMeta::default())),
        "{what}: save_meta"
    );
    assert!(is_run_recovery(s.log_mut().flush()), "{what}: flush");
    assert!(
        is_run_recovery(s.log_mut().force_sync()),
        "{what}: force_sync"
    );
    assert!(s.log().sync_point().is_none(), "{what}: sync point");
    assert_eq!(s.log().last_lsn(), last, "{what}: the log moved");
    assert_eq!(s.store().get(b"late"), None, "{what}: the store changed");
}

#[test]
fn failed_log_write_at_commit_is_fatal_and_applies_nothing() {
    let fs = SimFs::new();
    let mut s = open(&fs);
    s.commit(1, &put("a", "1")).unwrap();
    s.log_mut().flush().unwrap();
    fs.fail_writes_after(Some(0));
    // Small segments: a commit soon rotates, which writes and fsyncs.
    let mut failed = None;
    for i in 0..40 {
        if let Err(e) = s
            .commit(1, &put(&format!("k{i}"), "v"))
            .and_then(|_| s.log_mut().flush())
        {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("the dead disk never failed a commit");
    assert!(matches!(e, Error::RunRecovery(_)), "{e}");
    fs.fail_writes_after(None);
    assert_refuses_everything(&mut s, "after a failed log write");
    fs.crash(CrashMode::LoseUnsynced);
    drop(s);
    let s = open(&fs);
    assert!(s.failure().is_none());
    assert_eq!(s.store().get(b"a"), Some(&b"1"[..]), "the durable commit");
}

#[test]
fn failed_fsync_is_never_retried() {
    let fs = SimFs::new();
    let mut s = open(&fs);
    let a = s.commit(1, &put("a", "1")).unwrap();
    s.log_mut().flush().unwrap();
    s.commit(1, &put("b", "2")).unwrap();
    fs.fail_sync(true);
    assert!(is_run_recovery(s.log_mut().flush()));
    assert_eq!(s.log().durable_lsn(), a);
    // The disk "recovers": a retried fsync would now report success for
    // pages it may have dropped. The storage does not ask.
    fs.fail_sync(false);
    assert_refuses_everything(&mut s, "after a failed fsync");
    assert_eq!(s.log().durable_lsn(), a, "durable moved without an fsync");
}

#[test]
fn failed_metadata_write_is_fatal_and_keeps_the_old_metadata() {
    let fs = SimFs::new();
    let old = RepMeta {
        gen: 3,
        egen: 4,
        vote_egen: 4,
        vote_for: 2,
        led_gen: 0,
    };
    let mut s = open(&fs);
    s.save_meta(&old).unwrap();
    fs.fail_writes_after(Some(0));
    let new = RepMeta { gen: 5, ..old };
    assert!(is_run_recovery(s.save_meta(&new)));
    fs.fail_writes_after(None);
    // The retry that used to be skipped or trusted is refused.
    assert!(is_run_recovery(s.save_meta(&new)));
    assert_refuses_everything(&mut s, "after a failed metadata write");
    fs.crash(CrashMode::LoseUnsynced);
    drop(s);
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let (_, meta) = Storage::open(vfs, Path::new(DIR), config()).unwrap();
    assert_eq!(meta, old);
}

#[test]
fn failed_checkpoint_write_is_fatal() {
    let fs = SimFs::new();
    let mut s = open(&fs);
    for i in 0..10 {
        s.commit(1, &put(&format!("k{i}"), "v")).unwrap();
    }
    s.log_mut().force_sync().unwrap();
    let before = entries(&s);
    fs.fail_writes_after(Some(0));
    assert!(is_run_recovery(s.checkpoint()));
    fs.fail_writes_after(None);
    assert_refuses_everything(&mut s, "after a failed checkpoint");
    fs.crash(CrashMode::LoseUnsynced);
    drop(s);
    assert_eq!(entries(&open(&fs)), before);
}

/// A client with `OLD` commits of its own, all durable, then given the
/// master's snapshot of `SNAP` other keys, at an LSN past its own log.
const OLD: usize = 12;
const SNAP: usize = 40;

fn snapshot() -> (Vec<u8>, Entries, Lsn) {
    let mut master = Storage::in_memory(config());
    for i in 0..SNAP {
        master.commit(2, &put(&format!("m{i:02}"), "snap")).unwrap();
    }
    (
        master.snapshot_bytes(),
        entries(&master),
        master.log().last_lsn(),
    )
}

fn client(fs: &SimFs) -> (Storage, Entries) {
    let mut s = open(fs);
    for i in 0..OLD {
        s.commit(1, &put(&format!("c{i:02}"), "old")).unwrap();
    }
    s.log_mut().force_sync().unwrap();
    let e = entries(&s);
    (s, e)
}

#[test]
fn snapshot_install_crash_at_every_write_reopens_old_or_new_never_older() {
    let (bytes, snap, snap_lsn) = snapshot();
    let writes = {
        let fs = SimFs::new();
        let (mut s, _) = client(&fs);
        let before = fs.write_count();
        s.install_snapshot(&bytes).unwrap();
        fs.write_count() - before
    };
    assert!(writes > 0);
    for mode in [CrashMode::LoseUnsynced, CrashMode::KeepAll] {
        for n in 0..=writes {
            let fs = SimFs::new();
            let (mut s, old) = client(&fs);
            fs.fail_writes_after(Some(n));
            let installed = s.install_snapshot(&bytes);
            if let Err(e) = &installed {
                assert!(matches!(e, Error::RunRecovery(_)), "{mode:?} {n}: {e}");
                assert!(s.failure().is_some());
            }
            fs.crash(mode);
            drop(s);
            let s = open(&fs);
            let now = entries(&s);
            if installed.is_ok() {
                assert_eq!(now, snap, "{mode:?} {n}: an installed snapshot was lost");
            } else if now != snap {
                assert_eq!(
                    now, old,
                    "{mode:?} after {n} writes: reopened neither the old state nor the snapshot"
                );
            }
            if now == snap {
                assert_eq!(s.checkpoint_lsn(), snap_lsn, "{mode:?} {n}");
                assert_eq!(s.log().last_lsn(), snap_lsn, "{mode:?} {n}");
            }
            // The reopened site works: it takes records after what it holds.
            let mut s = s;
            let gen = s.log().last_gen();
            s.commit(gen, &put("after", "x")).unwrap();
        }
    }
}

fn env_config() -> EnvConfig {
    EnvConfig {
        log: config(),
        ..EnvConfig::default()
    }
}

fn master_env(fs: &SimFs) -> Env {
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let env = Env::open_with_vfs(vfs, Path::new(DIR), env_config()).unwrap();
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    env.rep_start(b"", StartAs::Master).unwrap();
    env
}

#[test]
fn env_failed_fsync_at_commit_fails_every_later_call() {
    let fs = SimFs::new();
    let env = master_env(&fs);
    let mut t = env.txn();
    t.put(b"a", b"1");
    t.commit().unwrap();
    fs.fail_sync(true);
    let mut t = env.txn();
    t.put(b"b", b"2");
    assert!(t.commit().is_err());
    fs.fail_sync(false);
    let mut t = env.txn();
    t.put(b"c", b"3");
    assert!(is_run_recovery(t.commit()));
    assert!(is_run_recovery(env.checkpoint()));
    assert!(is_run_recovery(env.log_flush()));
    drop(env);
    fs.crash(CrashMode::LoseUnsynced);
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let env = Env::open_with_vfs(vfs, Path::new(DIR), env_config()).unwrap();
    assert_eq!(env.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(env.get(b"c").unwrap(), None);
}

/// An environment whose disk has just died, before `rep_start`.
fn env_failing_disk(fs: &SimFs) -> Env {
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let env = Env::open_with_vfs(vfs, Path::new(DIR), env_config()).unwrap();
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    fs.fail_writes_after(Some(0));
    env
}

#[test]
fn env_failed_metadata_write_refuses_storage_work() {
    let fs = SimFs::new();
    let env = env_failing_disk(&fs);
    // Becoming master writes the new generation first.
    assert!(env.rep_start(b"", StartAs::Master).is_err());
    fs.fail_writes_after(None);
    assert!(is_run_recovery(env.rep_start(b"", StartAs::Master)));
    assert!(is_run_recovery(env.checkpoint()));
    assert!(is_run_recovery(env.log_flush()));
}

#[test]
fn env_failed_metadata_write_fails_every_later_call() {
    let fs = SimFs::new();
    let env = env_failing_disk(&fs);
    assert!(env.rep_start(b"", StartAs::Master).is_err());
    fs.fail_writes_after(None);
    // Calls that never touch storage report the failure too.
    assert!(is_run_recovery(env.get(b"a")));
    assert!(is_run_recovery(env.rep_start(b"", StartAs::Client)));
}
