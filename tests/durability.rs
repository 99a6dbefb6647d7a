//! Crash at every write: an environment killed at any instant reopens to
//! exactly the transactions whose commit was durable under its durability
//! mode — no partial transaction, no lost durable one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use dbrep::log::{Durability, LogConfig};
use dbrep::testing::{CrashMode, SimFs};
use dbrep::vfs::Vfs;
use dbrep::{Env, EnvConfig, StartAs};

const TXNS: usize = 24;
const DIR: &str = "/env";

fn config(durability: Durability) -> EnvConfig {
    EnvConfig {
        log: LogConfig {
            durability,
            segment_size_bytes: 600,
            ..LogConfig::default()
        },
        // A group of one: its commits are permanent once durable here.
        rep: dbrep::RepConfig {
            nsites: 1,
            ..dbrep::RepConfig::default()
        },
        ..EnvConfig::default()
    }
}

/// Transaction `i` writes three keys, one of them shared by all, so a
/// partial transaction is visible as a mixed state.
fn txn_ops(i: usize) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let v = format!("txn{i:03}").into_bytes();
    let mut ops = vec![
        (format!("k{}", i % 7).into_bytes(), Some(v.clone())),
        (b"shared".to_vec(), Some(v.clone())),
    ];
    if i % 5 == 4 {
        ops.push((format!("k{}", (i + 3) % 7).into_bytes(), None));
    } else {
        ops.push((format!("own{i}").into_bytes(), Some(v)));
    }
    ops
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn model_after(n: usize) -> Model {
    let mut m = Model::new();
    for i in 0..n {
        for (k, v) in txn_ops(i) {
            match v {
                Some(v) => m.insert(k, v),
                None => m.remove(&k),
            };
        }
    }
    m
}

struct Outcome {
    attempted: usize,
    acked: usize,
    /// Transactions covered by an explicit sync (checkpoint) that returned Ok.
    synced: usize,
}

/// Runs the workload until the disk fails; returns what was acknowledged.
fn workload(fs: &SimFs, durability: Durability) -> Outcome {
    let mut out = Outcome {
        attempted: 0,
        acked: 0,
        synced: 0,
    };
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let Ok(env) = Env::open_with_vfs(vfs, Path::new(DIR), config(durability)) else {
        return out;
    };
    if env.rep_set_transport(1, |_| Ok(())).is_err() || env.rep_start(&[], StartAs::Master).is_err()
    {
        return out;
    }
    for i in 0..TXNS {
        let mut t = env.txn();
        for (k, v) in txn_ops(i) {
            match v {
                Some(v) => t.put(&k, &v),
                None => t.delete(&k),
            }
        }
        out.attempted = i + 1;
        match t.commit() {
            Ok(info) => {
                assert!(
                    info.permanent,
                    "a lone master's commit is permanent once durable"
                );
                out.acked = i + 1;
            }
            Err(_) => return out,
        }
        if i % 9 == 8 {
            if env.checkpoint().is_err() {
                return out;
            }
            out.synced = i + 1;
        }
    }
    out
}

fn store_of(env: &Env) -> Model {
    let mut m = Model::new();
    for i in 0..TXNS + 10 {
        for k in [format!("k{i}"), format!("own{i}")] {
            if let Some(v) = env.get(k.as_bytes()).unwrap() {
                m.insert(k.into_bytes(), v);
            }
        }
    }
    if let Some(v) = env.get(b"shared").unwrap() {
        m.insert(b"shared".to_vec(), v);
    }
    m
}

fn total_writes(durability: Durability) -> u64 {
    let fs = SimFs::new();
    let out = workload(&fs, durability);
    assert_eq!(out.acked, TXNS);
    fs.write_count()
}

fn check(durability: Durability, mode: CrashMode, fail_after: u64) {
    let fs = SimFs::new();
    fs.fail_writes_after(Some(fail_after));
    let out = workload(&fs, durability);
    fs.crash(mode);
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let env = Env::open_with_vfs(vfs, Path::new(DIR), config(durability)).unwrap_or_else(|e| {
        panic!("{durability:?} {mode:?} after {fail_after} writes: reopen failed: {e}")
    });
    let got = store_of(&env);
    let survives_acked = match (durability, mode) {
        (Durability::Sync, _) => true,
        (_, CrashMode::KeepAll) => durability == Durability::WriteNoSync,
        _ => false,
    };
    let floor = if survives_acked {
        out.acked
    } else {
        out.synced
    };
    let matching: Vec<usize> = (0..=out.attempted)
        .filter(|&n| model_after(n) == got)
        .collect();
    assert!(
        matching.iter().any(|&n| n >= floor),
        "{durability:?} {mode:?} after {fail_after} writes: store matches prefixes {matching:?}, \
         but at least {floor} transactions were durable (attempted {}, acked {})",
        out.attempted,
        out.acked
    );
    // The reopened environment keeps working.
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    env.rep_start(&[], StartAs::Master).unwrap();
    let mut t = env.txn();
    t.put(b"after", b"crash");
    assert!(t.commit().unwrap().permanent);
}

fn crash_at_every_write(durability: Durability) {
    let total = total_writes(durability);
    assert!(total > 10, "workload too small: {total} writes");
    for k in 0..=total {
        for mode in [
            CrashMode::LoseUnsynced,
            CrashMode::KeepAll,
            CrashMode::KeepPrefix {
                ops: 1,
                torn_bytes: 7,
            },
            CrashMode::KeepPrefix {
                ops: 0,
                torn_bytes: 40,
            },
        ] {
            check(durability, mode, k);
        }
    }
}

#[test]
fn crash_at_every_write_sync() {
    crash_at_every_write(Durability::Sync);
}

#[test]
fn crash_at_every_write_write_nosync() {
    crash_at_every_write(Durability::WriteNoSync);
}

#[test]
fn crash_at_every_write_nosync() {
    crash_at_every_write(Durability::NoSync);
}

#[test]
fn checkpoint_then_reopen_replays_only_the_tail() {
    let fs = SimFs::new();
    let out = workload(&fs, Durability::Sync);
    assert_eq!(out.acked, TXNS);
    fs.crash(CrashMode::LoseUnsynced);
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let env = Env::open_with_vfs(vfs, Path::new(DIR), config(Durability::Sync)).unwrap();
    assert_eq!(store_of(&env), model_after(TXNS));
    // Segments wholly before the last checkpoint were removed.
    let segments = fs
        .file_names()
        .iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("log."))
        .count();
    assert!(
        segments <= 3,
        "old segments were not trimmed: {segments} left"
    );
}
