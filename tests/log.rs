//! Tests of the segmented log against the real file system, the simulated
//! one, and memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dbrep::log::{
    split_records, Durability, Log, LogConfig, Record, RecordType, SEGMENT_HEADER_LEN,
};
use dbrep::testing::{CrashMode, SimFs};
use dbrep::vfs::{StdFs, Vfs};
use dbrep::{Error, Lsn};
use proptest::prelude::*;

/// A place to keep a log: a temporary real directory or a simulated one.
struct Env {
    vfs: Arc<dyn Vfs>,
    sim: Option<SimFs>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Env {
    fn std() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        Env {
            vfs: Arc::new(StdFs),
            sim: None,
            dir: tmp.path().join("env"),
            _tmp: Some(tmp),
        }
    }

    fn sim() -> Env {
        let sim = SimFs::new();
        Env {
            vfs: Arc::new(sim.clone()),
            sim: Some(sim),
            dir: PathBuf::from("/env"),
            _tmp: None,
        }
    }

    fn both() -> Vec<Env> {
        vec![Env::std(), Env::sim()]
    }

    fn sim_fs(&self) -> &SimFs {
        self.sim.as_ref().unwrap()
    }

    fn open(&self, config: LogConfig) -> Log {
        self.try_open(config).unwrap().0
    }

    fn try_open(&self, config: LogConfig) -> dbrep::Result<(Log, dbrep::log::RecoveryReport)> {
        Log::open(self.vfs.clone(), &self.dir, config, Lsn::ZERO, 0)
    }

    fn seg_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("log.{n:010}"))
    }

    fn read_file(&self, path: &Path) -> Vec<u8> {
        let f = self.vfs.open(path, false).unwrap();
        let mut v = vec![0u8; f.len().unwrap() as usize];
        f.read_exact_at(&mut v, 0).unwrap();
        v
    }

    fn segments(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .vfs
            .list(&self.dir)
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with("log."))
            .collect();
        v.sort();
        v
    }

    fn flip(&self, path: &Path, off: u64) {
        let f = self.vfs.open(path, false).unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_at(&[b[0] ^ 0x5A], off).unwrap();
        f.sync().unwrap();
    }
}

fn small(durability: Durability) -> LogConfig {
    LogConfig {
        segment_size_bytes: 300,
        max_record_bytes: 4096,
        durability,
        in_memory: false,
    }
}

/// Segments big enough that no rotation (which fsyncs) happens in a test.
fn big(durability: Durability) -> LogConfig {
    LogConfig {
        segment_size_bytes: 1 << 20,
        ..small(durability)
    }
}

fn payload(i: usize) -> Vec<u8> {
    vec![i as u8; (i * 37) % 90]
}

fn fill(log: &mut Log, from: usize, n: usize) -> Vec<Lsn> {
    (from..from + n)
        .map(|i| {
            let rtype = if i % 10 == 0 {
                RecordType::GenStart
            } else {
                RecordType::Commit
            };
            log.append(1 + i as u32 / 20, rtype, &payload(i)).unwrap()
        })
        .collect()
}

fn all(log: &Log) -> Vec<Record> {
    log.iter_from(Lsn::ZERO)
        .collect::<dbrep::Result<Vec<_>>>()
        .unwrap()
}

fn check_contents(log: &Log, lsns: &[Lsn], first_payload: usize) {
    let recs = all(log);
    assert_eq!(recs.len(), lsns.len());
    for (i, (r, l)) in recs.iter().zip(lsns).enumerate() {
        assert_eq!(r.lsn, *l);
        assert_eq!(r.payload, payload(first_payload + i), "record {i} at {l}");
        assert_eq!(log.read(*l).unwrap(), *r);
        if i > 0 {
            assert_eq!(r.prev_lsn, lsns[i - 1]);
            assert_eq!(log.prev_of(*l).unwrap(), lsns[i - 1]);
        }
    }
    assert_eq!(log.last_lsn(), *lsns.last().unwrap_or(&log.base_lsn()));
}

fn logs_for_all_kinds() -> Vec<(Option<Env>, Log)> {
    let mut v: Vec<(Option<Env>, Log)> = Env::both()
        .into_iter()
        .map(|e| {
            let log = e.open(small(Durability::Sync));
            (Some(e), log)
        })
        .collect();
    v.push((None, Log::in_memory(small(Durability::Sync))));
    v
}

#[test]
fn append_read_iterate_across_segments() {
    for (env, mut log) in logs_for_all_kinds() {
        assert_eq!(log.first_lsn(), Lsn::ZERO);
        assert_eq!(log.last_lsn(), Lsn::ZERO);
        let lsns = fill(&mut log, 0, 60);
        assert_eq!(lsns[0], Lsn::new(1, SEGMENT_HEADER_LEN as u32));
        assert!(lsns.last().unwrap().file > 3, "small segments must rotate");
        assert!(lsns.windows(2).all(|w| w[0] < w[1]));
        log.flush().unwrap();
        check_contents(&log, &lsns, 0);
        assert_eq!(log.first_lsn(), lsns[0]);
        assert_eq!(log.last_gen(), 1 + 59 / 20);
        let r = log.read(lsns[10]).unwrap();
        assert_eq!(r.rtype, RecordType::GenStart);
        assert_eq!(r.gen, 1);
        // Segments respect the size limit.
        if let Some(env) = &env {
            for name in env.segments() {
                let len = env.read_file(&env.dir.join(&name)).len();
                assert!(len <= 300, "{name} is {len} bytes");
            }
        }
        // iter_from a middle record.
        let tail: Vec<Lsn> = log.iter_from(lsns[25]).map(|r| r.unwrap().lsn).collect();
        assert_eq!(tail, lsns[25..]);
        // Not a record start.
        assert!(matches!(log.read(Lsn::new(1, 33)), Err(Error::NotFound(_))));
        assert!(matches!(
            log.read(Lsn::new(99, 32)),
            Err(Error::NotFound(_))
        ));
        assert!(log.iter_from(Lsn::new(1, 33)).next().unwrap().is_err());
        let mut raw = Vec::new();
        let h = log.read_raw_into(lsns[3], &mut raw).unwrap();
        assert_eq!(h.lsn, lsns[3]);
        assert_eq!(raw.len(), 32 + payload(3).len());
    }
}

#[test]
fn read_after_batches_across_segments() {
    for (_env, mut log) in logs_for_all_kinds() {
        let lsns = fill(&mut log, 0, 50);
        log.flush().unwrap();
        for max_bytes in [1, 100, 333, 1000, 1 << 20] {
            let mut after = Lsn::ZERO;
            let mut got = Vec::new();
            loop {
                let mut out = Vec::new();
                let (last, more) = log
                    .read_after(after, Lsn::ZERO, max_bytes, &mut out)
                    .unwrap();
                if last.is_zero() {
                    assert!(!more);
                    break;
                }
                let recs: Vec<_> = split_records(&out, 4096)
                    .map(|r| r.unwrap().0.lsn)
                    .collect();
                assert!(!recs.is_empty());
                assert!(out.len() <= max_bytes || recs.len() == 1);
                assert_eq!(*recs.last().unwrap(), last);
                got.extend(recs);
                after = last;
                assert_eq!(more, last != *lsns.last().unwrap(), "max_bytes {max_bytes}");
            }
            assert_eq!(got, lsns, "max_bytes {max_bytes}");
        }
        // upto stops after the named record.
        let mut out = Vec::new();
        let (last, more) = log.read_after(lsns[4], lsns[9], 1 << 20, &mut out).unwrap();
        assert_eq!((last, more), (lsns[9], false));
        assert_eq!(split_records(&out, 4096).count(), 5);
        // upto with a budget that runs out first.
        let mut out = Vec::new();
        let (last, more) = log.read_after(Lsn::ZERO, lsns[9], 1, &mut out).unwrap();
        assert_eq!((last, more), (lsns[0], true));
        // after the last record: nothing.
        let mut out = Vec::new();
        assert_eq!(
            log.read_after(log.last_lsn(), Lsn::ZERO, 100, &mut out)
                .unwrap(),
            (Lsn::ZERO, false)
        );
        assert!(out.is_empty());
        assert!(log
            .read_after(Lsn::new(1, 40), Lsn::ZERO, 100, &mut out)
            .is_err());
    }
}

#[test]
fn truncate_after_across_segments() {
    for (env, mut log) in logs_for_all_kinds() {
        let lsns = fill(&mut log, 0, 60);
        log.flush().unwrap();
        log.truncate_after(lsns[20]).unwrap();
        assert_eq!(log.last_lsn(), lsns[20]);
        assert_eq!(log.last_gen(), 2);
        assert!(matches!(log.read(lsns[21]), Err(Error::NotFound(_))));
        check_contents(&log, &lsns[..21], 0);
        if let Some(env) = &env {
            assert_eq!(
                env.segments().len() as u32,
                lsns[20].file,
                "{:?} {:?}",
                env.segments(),
                &lsns[..23]
            );
        }
        assert!(log.truncate_after(lsns[30]).is_err());
        // Appending after a rollback continues at the cut.
        let more = fill(&mut log, 21, 30);
        assert!(more[0] > lsns[20] && more[0].file <= lsns[20].file + 1);
        let mut expect = lsns[..21].to_vec();
        expect.extend(&more);
        check_contents(&log, &expect, 0);
        // Back to the very beginning.
        log.truncate_after(Lsn::ZERO).unwrap();
        assert_eq!(log.last_lsn(), Lsn::ZERO);
        assert_eq!(all(&log).len(), 0);
        let again = fill(&mut log, 0, 5);
        assert_eq!(again[0], Lsn::new(1, 32));
        log.flush().unwrap();
        drop(log);
        if let Some(env) = env {
            let log = env.open(small(Durability::Sync));
            check_contents(&log, &again, 0);
        }
    }
}

/// Copies `master` into `client` through read_after/split_records/append_raw.
fn replicate(master: &Log, client: &mut Log, max_bytes: usize) {
    loop {
        let mut out = Vec::new();
        let (last, _) = master
            .read_after(client.last_lsn(), Lsn::ZERO, max_bytes, &mut out)
            .unwrap();
        if last.is_zero() {
            return;
        }
        for rec in split_records(&out, 1 << 20) {
            let (h, bytes) = rec.unwrap();
            assert_eq!(client.append_raw(bytes).unwrap(), h.lsn);
        }
    }
}

#[test]
fn append_raw_builds_byte_identical_copy() {
    for kind in 0..2 {
        let (menv, cenv) = if kind == 0 {
            (Env::std(), Env::std())
        } else {
            (Env::sim(), Env::sim())
        };
        let mut master = menv.open(small(Durability::Sync));
        let mut client = cenv.open(small(Durability::Sync));
        fill(&mut master, 0, 40);
        replicate(&master, &mut client, 250);
        fill(&mut master, 40, 40);
        replicate(&master, &mut client, 1 << 20);
        assert_eq!(client.last_lsn(), master.last_lsn());
        assert_eq!(client.last_gen(), master.last_gen());
        master.force_sync().unwrap();
        client.force_sync().unwrap();
        assert_eq!(menv.segments(), cenv.segments());
        assert!(menv.segments().len() > 5);
        for name in menv.segments() {
            assert_eq!(
                menv.read_file(&menv.dir.join(&name)),
                cenv.read_file(&cenv.dir.join(&name)),
                "{name} differs"
            );
        }
        // In memory the copy is identical too.
        let mut mem = Log::in_memory(small(Durability::Sync));
        replicate(&master, &mut mem, 700);
        assert_eq!(all(&mem), all(&master));
    }
}

#[test]
fn append_raw_rejects_gaps_and_non_contiguous_records() {
    for env in Env::both() {
        let mut master = Log::in_memory(small(Durability::Sync));
        let lsns = fill(&mut master, 0, 30);
        let raw = |lsn: Lsn| {
            let mut v = Vec::new();
            master.read_raw_into(lsn, &mut v).unwrap();
            v
        };
        let mut client = env.open(small(Durability::Sync));
        // The first record must be the master's first.
        assert!(matches!(
            client.append_raw(&raw(lsns[1])),
            Err(Error::Invalid(_))
        ));
        for l in &lsns[..5] {
            client.append_raw(&raw(*l)).unwrap();
        }
        let before = client.last_lsn();
        // A gap, a duplicate, and an old record.
        assert!(matches!(
            client.append_raw(&raw(lsns[6])),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            client.append_raw(&raw(lsns[4])),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            client.append_raw(&raw(lsns[0])),
            Err(Error::Invalid(_))
        ));
        // Right prev but the wrong position (another file), made by hand.
        let mut forged = Vec::new();
        dbrep::log::encode_record(
            Lsn::new(before.file + 2, 32),
            before,
            1,
            RecordType::Commit,
            b"x",
            &mut forged,
        );
        assert!(matches!(client.append_raw(&forged), Err(Error::Invalid(_))));
        let mut forged = Vec::new();
        dbrep::log::encode_record(
            Lsn::new(before.file, before.offset + 1000),
            before,
            1,
            RecordType::Commit,
            b"x",
            &mut forged,
        );
        assert!(matches!(client.append_raw(&forged), Err(Error::Invalid(_))));
        // Damaged bytes and trailing bytes.
        let mut bad = raw(lsns[5]);
        bad[33] ^= 1;
        assert!(matches!(client.append_raw(&bad), Err(Error::Malformed(_))));
        let mut long = raw(lsns[5]);
        long.push(0);
        assert!(matches!(client.append_raw(&long), Err(Error::Malformed(_))));
        assert!(client.append_raw(&[1, 2, 3]).is_err());
        // Nothing changed: the right record still goes on.
        assert_eq!(client.last_lsn(), before);
        for l in &lsns[5..] {
            client.append_raw(&raw(*l)).unwrap();
        }
        client.flush().unwrap();
        assert_eq!(all(&client), all(&master));
    }
}

#[test]
fn reopen_after_clean_close() {
    for env in Env::both() {
        for durability in [
            Durability::Sync,
            Durability::WriteNoSync,
            Durability::NoSync,
        ] {
            let _ = env.vfs.remove(&env.seg_path(1));
            for n in 2..20 {
                let _ = env.vfs.remove(&env.seg_path(n));
            }
            let mut log = env.open(small(durability));
            let lsns = fill(&mut log, 0, 45);
            log.close().unwrap();
            let (mut log, report) = env.try_open(small(durability)).unwrap();
            assert_eq!(report.cut, None);
            assert_eq!(report.last_lsn, *lsns.last().unwrap());
            assert_eq!(report.segments as usize, env.segments().len());
            check_contents(&log, &lsns, 0);
            let more = fill(&mut log, 45, 5);
            drop(log); // drop flushes like close
            let log = env.open(small(durability));
            let mut expect = lsns.clone();
            expect.extend(more);
            check_contents(&log, &expect, 0);
        }
    }
}

#[test]
fn torn_tail_at_every_offset_std_cut() {
    let env = Env::std();
    let mut log = env.open(small(Durability::Sync));
    let lsns = fill(&mut log, 0, 12);
    log.close().unwrap();
    let last = *lsns.last().unwrap();
    let path = env.seg_path(last.file);
    let full = env.read_file(&path);
    for cut in last.offset as usize..full.len() {
        let f = env.vfs.open(&path, false).unwrap();
        f.set_len(0).unwrap();
        f.write_at(&full[..cut], 0).unwrap();
        drop(f);
        let (log, report) = env.try_open(small(Durability::Sync)).unwrap();
        check_contents(&log, &lsns[..11], 0);
        if cut == last.offset as usize {
            assert_eq!(report.cut, None);
        } else {
            assert_eq!(
                report.cut,
                Some((
                    path.clone(),
                    last.offset as u64,
                    (cut - last.offset as usize) as u64
                ))
            );
        }
        assert_eq!(env.read_file(&path).len(), last.offset as usize);
    }
}

#[test]
fn torn_tail_at_every_offset_sim_keep_prefix() {
    // The last record goes out in a write of its own; tear it at every byte.
    let lens = payload(12).len() + 32;
    for torn in 0..lens {
        let env = Env::sim();
        let mut log = env.open(small(Durability::Sync));
        let lsns = fill(&mut log, 0, 13);
        // Flush all but the last record durably, then write the last alone.
        log.truncate_after(lsns[11]).unwrap();
        log.force_sync().unwrap();
        let last = log.append(1, RecordType::Commit, &payload(12)).unwrap();
        assert_eq!(last, lsns[12]);
        log.write_out().unwrap();
        assert_eq!(env.sim_fs().pending_ops(), 1);
        env.sim_fs().crash(CrashMode::KeepPrefix {
            ops: 0,
            torn_bytes: torn,
        });
        drop(log);
        let (log, report) = env.try_open(small(Durability::Sync)).unwrap();
        check_contents(&log, &lsns[..12], 0);
        assert_eq!(report.cut.is_some(), torn > 0, "torn {torn}");
    }
}

#[test]
fn torn_segment_header_is_removed() {
    let env = Env::sim();
    let mut log = env.open(small(Durability::Sync));
    let lsns = fill(&mut log, 0, 6);
    log.force_sync().unwrap();
    let next_file = lsns.last().unwrap().file + 1;
    // Append until a rotation happens; crash before the new file is synced.
    let mut i = 6;
    while log.last_lsn().file < next_file {
        log.append(1, RecordType::Commit, &payload(i)).unwrap();
        i += 1;
    }
    log.write_out().unwrap();
    let before_new = env.sim_fs().pending_ops();
    assert!(before_new >= 1);
    env.sim_fs().crash(CrashMode::KeepPrefix {
        ops: 0,
        torn_bytes: 10,
    });
    drop(log);
    let (log, report) = env.try_open(small(Durability::Sync)).unwrap();
    assert_eq!(report.cut.as_ref().unwrap().0, env.seg_path(next_file));
    assert_eq!(log.last_lsn().file, next_file - 1);
    assert_eq!(env.segments().len() as u32, next_file - 1);
}

#[test]
fn flipped_byte_in_middle_record_is_corrupt() {
    for env in Env::both() {
        let mut log = env.open(small(Durability::Sync));
        let lsns = fill(&mut log, 0, 30);
        log.close().unwrap();
        let last_file = lsns.last().unwrap().file;
        // A record in an earlier segment.
        let victim = lsns[3];
        let path = env.seg_path(victim.file);
        env.flip(&path, victim.offset as u64 + 35);
        match env.try_open(small(Durability::Sync)) {
            Err(Error::Corrupt {
                path: p,
                offset,
                what,
            }) => {
                assert_eq!(p, path);
                assert_eq!(offset, victim.offset as u64);
                assert!(what.contains("checksum"), "{what}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        env.flip(&path, victim.offset as u64 + 35);
        // A middle record of the last segment, with a valid one after it.
        let in_last: Vec<Lsn> = lsns
            .iter()
            .copied()
            .filter(|l| l.file == last_file)
            .collect();
        assert!(in_last.len() >= 2);
        let victim = in_last[0];
        let path = env.seg_path(last_file);
        env.flip(&path, victim.offset as u64 + 9); // the LSN field
        match env.try_open(small(Durability::Sync)) {
            Err(Error::Corrupt {
                path: p,
                offset,
                what,
            }) => {
                assert_eq!((p, offset), (path.clone(), victim.offset as u64));
                assert!(what.contains("valid records follow"), "{what}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        env.flip(&path, victim.offset as u64 + 9);
        // A flipped byte in the last record of the last segment cannot be
        // told from a torn write: it is cut as a torn tail.
        let victim = *lsns.last().unwrap();
        env.flip(&path, victim.offset as u64 + 20);
        let (log, report) = env.try_open(small(Durability::Sync)).unwrap();
        assert_eq!(report.cut.as_ref().map(|c| c.1), Some(victim.offset as u64));
        check_contents(&log, &lsns[..29], 0);
    }
}

#[test]
fn missing_segment_and_bad_header_are_corrupt() {
    for env in Env::both() {
        let mut log = env.open(small(Durability::Sync));
        fill(&mut log, 0, 40);
        log.close().unwrap();
        env.flip(&env.seg_path(2), 3);
        let err = env.try_open(small(Durability::Sync)).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { path, offset: 0, .. } if *path == env.seg_path(2)),
            "{err}"
        );
        env.flip(&env.seg_path(2), 3);
        env.vfs.remove(&env.seg_path(3)).unwrap();
        let err = env.try_open(small(Durability::Sync)).unwrap_err();
        assert!(err.to_string().contains("not contiguous"), "{err}");
    }
}

#[test]
fn sync_flush_survives_power_loss() {
    let env = Env::sim();
    let mut log = env.open(small(Durability::Sync));
    let mut durable = Vec::new();
    for i in 0..40 {
        durable.push(log.append(1, RecordType::Commit, &payload(i)).unwrap());
        if i % 3 == 2 {
            log.flush().unwrap();
            assert_eq!(log.durable_lsn(), log.last_lsn());
        }
    }
    durable.truncate(39); // i = 39 was not flushed
    env.sim_fs().crash(CrashMode::LoseUnsynced);
    drop(log);
    let log = env.open(small(Durability::Sync));
    check_contents(&log, &durable, 0);
}

#[test]
fn write_no_sync_survives_process_kill_only() {
    for (mode, survives) in [(CrashMode::KeepAll, true), (CrashMode::LoseUnsynced, false)] {
        let env = Env::sim();
        let mut log = env.open(big(Durability::WriteNoSync));
        let first = fill(&mut log, 0, 3);
        log.force_sync().unwrap();
        let lsns = fill(&mut log, 3, 2);
        log.flush().unwrap();
        assert!(log.durable_lsn() < log.last_lsn());
        env.sim_fs().crash(mode);
        drop(log);
        let log = env.open(big(Durability::WriteNoSync));
        let mut expect = first.clone();
        if survives {
            expect.extend(&lsns);
        }
        check_contents(&log, &expect, 0);
    }
}

#[test]
fn no_sync_unflushed_records_are_lost_at_any_crash() {
    for mode in [CrashMode::KeepAll, CrashMode::LoseUnsynced] {
        let env = Env::sim();
        let mut log = env.open(big(Durability::NoSync));
        let first = fill(&mut log, 0, 3);
        log.force_sync().unwrap();
        fill(&mut log, 3, 2);
        log.flush().unwrap(); // does nothing in NoSync
        assert_eq!(env.sim_fs().pending_ops(), 0);
        env.sim_fs().crash(mode);
        drop(log);
        let log = env.open(big(Durability::NoSync));
        check_contents(&log, &first, 0);
    }
}

#[test]
fn crash_at_every_write() {
    // Run a workload that dies at write k, then crash in each mode: the
    // log reopens and holds every flushed record and nothing unknown.
    let workload = |log: &mut Log, flushed: &mut Vec<Lsn>| -> dbrep::Result<()> {
        for i in 0..25 {
            let lsn = log.append(1, RecordType::Commit, &payload(i))?;
            if i % 2 == 1 {
                log.flush()?;
                flushed.push(lsn);
            }
        }
        Ok(())
    };
    let total_writes = {
        let env = Env::sim();
        let mut log = env.open(small(Durability::Sync));
        workload(&mut log, &mut Vec::new()).unwrap();
        env.sim_fs().write_count()
    };
    for k in 0..total_writes {
        for mode in [
            CrashMode::LoseUnsynced,
            CrashMode::KeepAll,
            CrashMode::KeepPrefix {
                ops: 0,
                torn_bytes: 7,
            },
        ] {
            let env = Env::sim();
            let mut log = env.open(small(Durability::Sync));
            env.sim_fs().fail_writes_after(Some(k));
            let mut flushed = Vec::new();
            assert!(workload(&mut log, &mut flushed).is_err());
            env.sim_fs().crash(mode);
            drop(log);
            let log = env.open(small(Durability::Sync));
            let got: Vec<Lsn> = all(&log).iter().map(|r| r.lsn).collect();
            for l in &flushed {
                assert!(got.contains(l), "k {k} {mode:?}: flushed {l} lost");
            }
            for (i, r) in all(&log).iter().enumerate() {
                assert_eq!(r.payload, payload(i));
            }
        }
    }
}

#[test]
fn remove_before_and_reset() {
    for (env, mut log) in logs_for_all_kinds() {
        let lsns = fill(&mut log, 0, 60);
        log.flush().unwrap();
        let target = lsns[30];
        let files_before = target.file - 1;
        let removed = log.remove_before(target).unwrap();
        assert_eq!(removed, files_before);
        assert_eq!(log.first_lsn().file, target.file);
        let first_idx = lsns.iter().position(|l| *l == log.first_lsn()).unwrap();
        assert_eq!(log.base_lsn(), lsns[first_idx - 1]);
        check_contents(&log, &lsns[first_idx..], first_idx);
        assert!(matches!(log.read(lsns[0]), Err(Error::NotFound(_))));
        // Reading from the base works, from a removed record does not.
        let mut out = Vec::new();
        let (l, _) = log
            .read_after(log.base_lsn(), Lsn::ZERO, 1, &mut out)
            .unwrap();
        assert_eq!(l, lsns[first_idx]);
        assert!(log.read_after(lsns[0], Lsn::ZERO, 1, &mut out).is_err());
        // Never the last segment.
        let n = log.remove_before(Lsn::new(u32::MAX, 0)).unwrap();
        assert!(n > 0);
        assert_eq!(log.first_lsn().file, log.last_lsn().file);
        if let Some(env) = &env {
            assert_eq!(env.segments().len(), 1);
            log.force_sync().unwrap();
            drop(log);
            let (l2, _) = env.try_open(small(Durability::Sync)).unwrap();
            log = l2;
            assert_eq!(log.last_lsn(), *lsns.last().unwrap());
        }
        // Reset to a snapshot base in the next file: continues there.
        let base = Lsn::new(log.last_lsn().file + 3, 500);
        log.reset(base, 7).unwrap();
        assert_eq!(
            (
                log.base_lsn(),
                log.last_lsn(),
                log.last_gen(),
                log.first_lsn()
            ),
            (base, base, 7, Lsn::ZERO)
        );
        if let Some(env) = &env {
            assert!(env.segments().is_empty());
        }
        let l = log.append(7, RecordType::GenStart, b"after reset").unwrap();
        assert_eq!(l, Lsn::new(base.file + 1, 32));
        assert_eq!(log.read(l).unwrap().prev_lsn, base);
        if let Some(env) = &env {
            log.force_sync().unwrap();
            drop(log);
            let log = env.open(small(Durability::Sync));
            assert_eq!(log.base_lsn(), base);
            assert_eq!(log.last_lsn(), l);
        }
    }
}

#[test]
fn reset_to_middle_of_master_segment() {
    // The master's record after the snapshot point may sit in the same
    // file as the snapshot point; the client keeps the master's LSNs.
    let mut master = Log::in_memory(LogConfig::default());
    let lsns = fill(&mut master, 0, 20);
    let base = lsns[9];
    for env in Env::both() {
        let mut client = env.open(small(Durability::Sync));
        client.reset(base, master.read(base).unwrap().gen).unwrap();
        replicate(&master, &mut client, 100);
        check_contents(&client, &lsns[10..], 10);
        assert_eq!(client.base_lsn(), base);
        client.close().unwrap();
        let (client, report) = env.try_open(small(Durability::Sync)).unwrap();
        assert_eq!(report.last_lsn, lsns[19]);
        check_contents(&client, &lsns[10..], 10);
        assert_eq!(client.first_lsn(), lsns[10]);
    }
}

#[test]
fn open_with_checkpoint_continues_an_empty_log() {
    for env in Env::both() {
        let ckpt = Lsn::new(4, 1000);
        let (mut log, report) =
            Log::open(env.vfs.clone(), &env.dir, small(Durability::Sync), ckpt, 3).unwrap();
        assert_eq!(report.last_lsn, ckpt);
        assert_eq!(
            (log.last_lsn(), log.last_gen(), log.base_lsn()),
            (ckpt, 3, ckpt)
        );
        let l = log.append(3, RecordType::Commit, b"x").unwrap();
        assert_eq!(l, Lsn::new(5, 32));
        assert!(log.append(2, RecordType::Commit, b"old gen").is_err());
        log.close().unwrap();
        // A checkpoint past the end of the log is an error.
        let err = Log::open(
            env.vfs.clone(),
            &env.dir,
            small(Durability::Sync),
            Lsn::new(9, 32),
            3,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        // A checkpoint inside the log scans from its segment.
        let (log, _) = Log::open(env.vfs.clone(), &env.dir, small(Durability::Sync), l, 3).unwrap();
        assert_eq!(log.last_lsn(), l);
    }
}

#[test]
fn checkpoint_scan_skips_early_segments() {
    for env in Env::both() {
        let mut log = env.open(small(Durability::Sync));
        let lsns = fill(&mut log, 0, 60);
        log.close().unwrap();
        // Damage in a segment before the checkpoint's is not scanned at open,
        // but reading that record reports it.
        let victim = lsns[2];
        env.flip(&env.seg_path(victim.file), victim.offset as u64 + 34);
        let ckpt = lsns[40];
        let (mut log, report) =
            Log::open(env.vfs.clone(), &env.dir, small(Durability::Sync), ckpt, 2).unwrap();
        assert_eq!(report.last_lsn, *lsns.last().unwrap());
        assert_eq!(log.first_lsn(), lsns[0]);
        match log.read(victim) {
            Err(Error::Corrupt { path, offset, .. }) => {
                assert_eq!(
                    (path, offset),
                    (env.seg_path(victim.file), victim.offset as u64)
                );
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let tail: Vec<Lsn> = log.iter_from(lsns[10]).map(|r| r.unwrap().lsn).collect();
        assert_eq!(tail, lsns[10..]);
        assert!(log.remove_before(ckpt).unwrap() > 0);
        assert!(log.first_lsn() <= ckpt);
        let idx = lsns.iter().position(|l| *l == log.first_lsn()).unwrap();
        check_contents(&log, &lsns[idx..], idx);
    }
}

#[test]
fn failed_sync_is_reported() {
    let env = Env::sim();
    let mut log = env.open(big(Durability::Sync));
    log.append(1, RecordType::Commit, b"a").unwrap();
    env.sim_fs().fail_sync(true);
    let err = log.flush().unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(log.durable_lsn() < log.last_lsn());
    env.sim_fs().fail_sync(false);
    log.flush().unwrap();
    assert_eq!(log.durable_lsn(), log.last_lsn());
}

#[test]
fn group_commit_via_sync_point() {
    let env = Env::sim();
    let mut log = env.open(small(Durability::Sync));
    assert!(log.sync_point().is_none());
    let a = log.append(1, RecordType::Commit, b"a").unwrap();
    assert!(
        log.sync_point().is_none(),
        "buffered records are not covered"
    );
    assert_eq!(log.write_out().unwrap(), a);
    let (file, upto) = log.sync_point().unwrap();
    assert_eq!(upto, a);
    // Another commit arrives while the fsync runs outside the lock.
    let b = log.append(1, RecordType::Commit, b"b").unwrap();
    file.sync().unwrap();
    log.mark_durable(upto);
    assert_eq!(log.durable_lsn(), a);
    log.write_out().unwrap();
    let (file, upto) = log.sync_point().unwrap();
    assert_eq!(upto, b);
    file.sync().unwrap();
    log.mark_durable(upto);
    assert_eq!(log.durable_lsn(), b);
    assert!(log.sync_point().is_none());
    env.sim_fs().crash(CrashMode::LoseUnsynced);
    drop(log);
    let log = env.open(small(Durability::Sync));
    assert_eq!(log.last_lsn(), b);
    // In memory there is never anything to sync.
    let mut mem = Log::in_memory(LogConfig::default());
    mem.append(1, RecordType::Commit, b"x").unwrap();
    assert!(mem.sync_point().is_none());
    assert_eq!(mem.durable_lsn(), mem.last_lsn());
}

#[test]
fn limits_are_enforced() {
    let mut log = Log::in_memory(small(Durability::Sync));
    assert!(matches!(
        log.append(1, RecordType::Commit, &[0u8; 4096]),
        Err(Error::Limit { .. })
    ));
    // An oversized record still fits in a segment of its own.
    let big = log.append(1, RecordType::Commit, &[1u8; 1000]).unwrap();
    let next = log.append(1, RecordType::Commit, b"x").unwrap();
    assert_eq!(next.file, big.file + 1);
    assert!(log.bytes_held() > 1000);
}

#[test]
fn in_memory_is_fast_enough() {
    let mut log = Log::in_memory(LogConfig::default());
    let payload = [7u8; 100];
    for _ in 0..200_000 {
        log.append(1, RecordType::Commit, &payload).unwrap();
    }
    assert!(log.last_lsn().file >= 2);
    let mut out = Vec::new();
    let (last, more) = log
        .read_after(Lsn::ZERO, Lsn::ZERO, 1 << 20, &mut out)
        .unwrap();
    assert!(more && !last.is_zero());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn garbage_segment_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                    keep_header in any::<bool>(), tail_at in 0usize..400) {
        let env = Env::sim();
        {
            let mut log = env.open(small(Durability::Sync));
            fill(&mut log, 0, 8);
            log.close().unwrap();
        }
        let path = env.seg_path(1);
        let f = env.vfs.open(&path, false).unwrap();
        let start = if keep_header { 32 } else { 0 };
        let at = (start + tail_at) as u64;
        f.write_at(&bytes, at).unwrap();
        drop(f);
        if let Ok((log, _)) = env.try_open(small(Durability::Sync)) {
            for r in log.iter_from(Lsn::ZERO) {
                let _ = r;
            }
            let mut out = Vec::new();
            let _ = log.read_after(Lsn::ZERO, Lsn::ZERO, 1000, &mut out);
            let _ = log.read(Lsn::new(1, 40));
        }
    }

    #[test]
    fn garbage_append_raw_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut log = Log::in_memory(small(Durability::Sync));
        fill(&mut log, 0, 3);
        let last = log.last_lsn();
        prop_assert!(log.append_raw(&bytes).is_err());
        prop_assert_eq!(log.last_lsn(), last);
    }
}

/// Removed in-memory segments hand their buffers to new ones: what is
/// written afterwards must read back exactly, on the master path (`append`)
/// and the client path (`append_raw`), with no byte of an old segment
/// showing through.
#[test]
fn appends_after_removal_reuse_memory_cleanly() {
    let mut master = Log::in_memory(small(Durability::Sync));
    let mut client = Log::in_memory(small(Durability::Sync));
    let mut lsns = Vec::new();
    let mut first = 0;
    for round in 0..5 {
        let more = fill(&mut master, lsns.len(), 40);
        for l in &more {
            let mut raw = Vec::new();
            master.read_raw_into(*l, &mut raw).unwrap();
            assert_eq!(client.append_raw(&raw).unwrap(), *l);
        }
        lsns.extend(more);
        check_contents(&master, &lsns[first..], first);
        check_contents(&client, &lsns[first..], first);
        // Trim all but the last few records' segments, as a checkpoint would.
        let keep_from = lsns[lsns.len() - 5];
        let removed = master.remove_before(keep_from).unwrap();
        assert_eq!(client.remove_before(keep_from).unwrap(), removed);
        assert!(removed > 0, "round {round}: nothing was removed");
        first = lsns.iter().position(|l| *l == master.first_lsn()).unwrap();
    }
}

/// The record just appended is copied from memory (the segment or the
/// unwritten tail) rather than looked up: the bytes must be the same as
/// those read back later, across segment rotations and write-outs.
#[test]
fn reading_the_last_record_gives_its_bytes() {
    for (_env, mut log) in logs_for_all_kinds() {
        let mut fresh = Vec::new();
        for i in 0..40 {
            let lsn = fill(&mut log, i, 1)[0];
            let mut out = vec![7u8; 3];
            let h = log.read_raw_into(lsn, &mut out).unwrap();
            assert_eq!(h.lsn, lsn);
            assert_eq!(&out[..3], &[7, 7, 7], "appends after what `out` held");
            fresh.push((lsn, out[3..].to_vec()));
            if i % 7 == 0 {
                log.flush().unwrap();
            }
        }
        log.flush().unwrap();
        for (lsn, bytes) in fresh {
            let mut again = Vec::new();
            log.read_raw_into(lsn, &mut again).unwrap();
            assert_eq!(again, bytes, "record at {lsn}");
            let (rec, n) = dbrep::log::decode_record(&bytes, u32::MAX).unwrap();
            assert_eq!((rec.lsn, n), (lsn, bytes.len()));
        }
    }
}
