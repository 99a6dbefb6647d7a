//! Measures durable commits per second on the real disk with 1 and 8
//! committing threads (sync-on-commit durability), showing group commit:
//! concurrent committers share one fsync.
//!
//! Run: `cargo run --release --example group_commit [-- --seconds S --dir PATH]`
//! Prints one JSON line per thread count.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbrep::{Env, EnvConfig, StartAs};

fn main() -> dbrep::Result<()> {
    let mut seconds = 3.0f64;
    let mut dir = std::env::temp_dir();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next();
        match (a.as_str(), value) {
            ("--seconds", Some(v)) => match v.parse() {
                Ok(s) => seconds = s,
                Err(_) => usage(&format!("--seconds takes a number, not {v:?}")),
            },
            ("--dir", Some(v)) => dir = v.into(),
            _ => usage(&format!("unexpected argument {a:?}")),
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| dbrep::Error::io("create the benchmark directory", &dir, e))?;
    let tmp = tempfile::tempdir_in(&dir)
        .map_err(|e| dbrep::Error::io("create a temporary directory", &dir, e))?;
    for threads in [1usize, 8] {
        let env = Env::open(tmp.path().join(format!("t{threads}")), EnvConfig::default())?;
        env.rep_set_transport(0, |_| Ok(()))?;
        env.rep_start(&[], StartAs::Master)?;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (env, stop, count) = (env.clone(), stop.clone(), count.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let mut txn = env.txn();
                        txn.put(&(((t as u64) << 40) | i).to_be_bytes(), &[7u8; 100]);
                        assert!(txn.commit().expect("commit").permanent);
                        count.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().expect("committer");
        }
        let secs = start.elapsed().as_secs_f64();
        let n = count.load(Ordering::Relaxed);
        println!(
            "{{\"name\":\"group_commit\",\"config\":{{\"threads\":{threads},\"durability\":\"sync\",\"value_size\":100}},\"commits\":{n},\"commits_per_sec\":{:.0}}}",
            n as f64 / secs
        );
    }
    Ok(())
}

fn usage(why: &str) -> ! {
    eprintln!("group_commit: {why}\nusage: group_commit [--seconds S] [--dir PATH]");
    std::process::exit(2);
}
