//! Serializable read-write transactions on the master: conflicts are
//! detected at commit, the loser retries, and no update is lost.

mod data_support;

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use data_support::{config, Group};
use dbrep::{Env, Error};

fn master() -> Env {
    Group::new(1, config(1)).sites.remove(0)
}

fn read_u64(v: Option<Vec<u8>>) -> u64 {
    v.map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

#[test]
fn the_second_read_modify_write_of_a_key_conflicts() {
    let env = master();
    let mut t1 = env.txn();
    let mut t2 = env.txn();
    let a = read_u64(t1.get(b"n").unwrap());
    let b = read_u64(t2.get(b"n").unwrap());
    t1.put(b"n", &(a + 1).to_le_bytes());
    t2.put(b"n", &(b + 1).to_le_bytes());
    t1.commit().unwrap();
    let err = t2.commit().unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains("\"n\""), "names the key: {err}");
    assert_eq!(
        read_u64(env.get(b"n").unwrap()),
        1,
        "the loser wrote nothing"
    );
}

#[test]
fn reading_an_absent_key_conflicts_with_its_insertion() {
    let env = master();
    let mut t1 = env.txn();
    assert_eq!(t1.get(b"k").unwrap(), None);
    let mut t2 = env.txn();
    t2.put(b"k", b"v");
    t2.commit().unwrap();
    t1.put(b"other", b"x");
    assert!(matches!(t1.commit(), Err(Error::Conflict(_))));
}

#[test]
fn a_range_read_conflicts_with_a_phantom() {
    let env = master();
    let db = env.create_database("d").unwrap();
    let mut setup = env.txn();
    setup.put_in(&db, b"a1", b"1").unwrap();
    setup.commit().unwrap();
    let mut t1 = env.txn();
    let seen = t1
        .range_in(&db, Bound::Included(b"a"), Bound::Excluded(b"b"))
        .unwrap();
    assert_eq!(seen.len(), 1);
    let mut t2 = env.txn();
    t2.put_in(&db, b"a2", b"2").unwrap();
    t2.commit().unwrap();
    t1.put_in(&db, b"count", &[seen.len() as u8]).unwrap();
    assert!(matches!(t1.commit(), Err(Error::Conflict(_))));

    // A write outside the range read does not conflict.
    let mut t3 = env.txn();
    t3.range_in(&db, Bound::Included(b"a"), Bound::Excluded(b"b"))
        .unwrap();
    let mut t4 = env.txn();
    t4.put_in(&db, b"z", b"far away").unwrap();
    t4.commit().unwrap();
    t3.put_in(&db, b"count", &[2]).unwrap();
    t3.commit().unwrap();
}

#[test]
fn unrelated_and_blind_writes_do_not_conflict() {
    let env = master();
    let mut t1 = env.txn();
    t1.get(b"x").unwrap();
    let mut t2 = env.txn();
    t2.put(b"y", b"1");
    t2.commit().unwrap();
    // Written but not changed: the same value again is no conflict.
    let mut t3 = env.txn();
    t3.put(b"x", b"");
    t3.delete(b"x");
    t3.commit().unwrap();
    t1.put(b"x", b"mine");
    t1.commit().unwrap();
    let mut blind1 = env.txn();
    let mut blind2 = env.txn();
    blind1.put(b"y", b"2");
    blind2.put(b"y", b"3");
    blind1.commit().unwrap();
    blind2.commit().unwrap();
    assert_eq!(env.get(b"y").unwrap(), Some(b"3".to_vec()));
}

#[test]
fn reads_see_one_snapshot_and_own_writes() {
    let env = master();
    let mut setup = env.txn();
    setup.put(b"a", b"1");
    setup.put(b"b", b"1");
    setup.commit().unwrap();
    let mut t = env.txn();
    assert_eq!(t.get(b"a").unwrap(), Some(b"1".to_vec()));
    let mut other = env.txn();
    other.put(b"b", b"2");
    other.commit().unwrap();
    assert_eq!(
        t.get(b"b").unwrap(),
        Some(b"1".to_vec()),
        "a transaction reads from the snapshot of its first read"
    );
    t.put(b"a", b"mine");
    assert_eq!(t.get(b"a").unwrap(), Some(b"mine".to_vec()));
    assert!(matches!(t.commit(), Err(Error::Conflict(_))));
}

#[test]
fn eight_threads_incrementing_counters_lose_no_increment() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 150;
    const COUNTERS: u64 = 3;
    let env = master();
    let committed: Arc<Vec<AtomicU64>> =
        Arc::new((0..COUNTERS).map(|_| AtomicU64::new(0)).collect());
    let conflicts = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let env = env.clone();
            let committed = committed.clone();
            let conflicts = conflicts.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let c = (t + i) % COUNTERS;
                    let key = format!("counter{c}");
                    // Each attempt also moves a shared total, so that every
                    // pair of transactions conflicts on something.
                    loop {
                        let mut txn = env.txn();
                        let n = read_u64(txn.get(key.as_bytes()).unwrap());
                        let total = read_u64(txn.get(b"total").unwrap());
                        txn.put(key.as_bytes(), &(n + 1).to_le_bytes());
                        txn.put(b"total", &(total + 1).to_le_bytes());
                        match txn.commit() {
                            Ok(_) => {
                                committed[c as usize].fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(Error::Conflict(_)) => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("commit failed: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut sum = 0;
    for c in 0..COUNTERS {
        let got = read_u64(env.get(format!("counter{c}").as_bytes()).unwrap());
        assert_eq!(
            got,
            committed[c as usize].load(Ordering::Relaxed),
            "counter{c}"
        );
        sum += got;
    }
    assert_eq!(sum, THREADS * PER_THREAD);
    assert_eq!(read_u64(env.get(b"total").unwrap()), THREADS * PER_THREAD);
    eprintln!("{} conflicts retried", conflicts.load(Ordering::Relaxed));
}

#[test]
fn transact_retries_conflicts_and_gives_up_after_its_attempts() {
    let env = master();
    let mut tries = 0;
    let (v, info) = env
        .transact(5, |txn| {
            tries += 1;
            let n = read_u64(txn.get(b"n")?);
            if tries < 3 {
                // Another writer gets in between the read and the commit.
                let mut other = env.txn();
                other.put(b"n", &(n + 10).to_le_bytes());
                other.commit()?;
            }
            txn.put(b"n", &(n + 1).to_le_bytes());
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!(tries, 3);
    assert_eq!(v, 21);
    assert!(info.permanent);
    assert_eq!(read_u64(env.get(b"n").unwrap()), 21);

    let err = env
        .transact(2, |txn| {
            let n = read_u64(txn.get(b"n")?);
            let mut other = env.txn();
            other.put(b"n", &(n + 1).to_le_bytes());
            other.commit()?;
            txn.put(b"n", b"never");
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
}
