//! Cursors and range reads against a model (`BTreeMap`), across
//! checkpoints and restarts, on the master and on a client; snapshots that
//! later writes do not change.

mod data_support;

use std::collections::BTreeMap;
use std::ops::Bound;

use data_support::{config, Group};
use dbrep::log::Durability;
use dbrep::{Database, Entry, Env, EnvConfig, StartAs};
use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Debug)]
enum Step {
    Put(bool, Vec<u8>, Vec<u8>),
    Delete(bool, Vec<u8>),
    Checkpoint,
    Restart,
    /// A range read: database, start, end, backward.
    Scan(bool, Bound<Vec<u8>>, Bound<Vec<u8>>, bool),
    Prefix(bool, Vec<u8>),
    /// Seek at or after the key (or at or before, backward), then walk: true = next.
    Walk(bool, Vec<u8>, bool, Vec<bool>),
    /// Opens a read transaction, writes, and checks the snapshot is unchanged.
    Isolated(Vec<u8>, Vec<u8>),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Few distinct keys, so that puts overwrite and deletes hit; 0xff
    // bytes to reach the prefix edge.
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0xff)],
        0..4,
    )
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let value = proptest::collection::vec(any::<u8>(), 0..20);
    prop_oneof![
        6 => (any::<bool>(), key(), value.clone()).prop_map(|(d, k, v)| Step::Put(d, k, v)),
        2 => (any::<bool>(), key()).prop_map(|(d, k)| Step::Delete(d, k)),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Restart),
        2 => (any::<bool>(), bound(), bound(), any::<bool>())
            .prop_map(|(d, s, e, r)| Step::Scan(d, s, e, r)),
        1 => (any::<bool>(), key()).prop_map(|(d, k)| Step::Prefix(d, k)),
        2 => (any::<bool>(), key(), any::<bool>(), proptest::collection::vec(any::<bool>(), 0..8))
            .prop_map(|(d, k, f, w)| Step::Walk(d, k, f, w)),
        1 => (key(), value).prop_map(|(k, v)| Step::Isolated(k, v)),
    ]
}

fn open(dir: &std::path::Path) -> (Env, Database) {
    let mut cfg: EnvConfig = config(1);
    cfg.log.in_memory = false;
    cfg.log.durability = Durability::WriteNoSync;
    let env = Env::open(dir, cfg).unwrap();
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    env.rep_start(b"", StartAs::Master).unwrap();
    let db = env.open_or_create_database("named").unwrap();
    (env, db)
}

fn in_range(k: &[u8], s: &Bound<Vec<u8>>, e: &Bound<Vec<u8>>) -> bool {
    (match s {
        Bound::Included(s) => k >= &s[..],
        Bound::Excluded(s) => k > &s[..],
        Bound::Unbounded => true,
    }) && (match e {
        Bound::Included(e) => k <= &e[..],
        Bound::Excluded(e) => k < &e[..],
        Bound::Unbounded => true,
    })
}

fn collect(it: dbrep::RangeIter) -> Vec<Entry> {
    it.map(|e| e.unwrap()).collect()
}

fn bref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// What walking a model from `key` gives: seek, then each step.
fn model_walk(m: &Model, key: &[u8], forward: bool, walk: &[bool]) -> Vec<Option<Entry>> {
    let keys: Vec<&Vec<u8>> = m.keys().collect();
    let mut at: Option<usize> = if forward {
        keys.iter().position(|k| &k[..] >= key)
    } else {
        keys.iter().rposition(|k| &k[..] <= key)
    };
    let entry = |i: usize| Some((keys[i].clone(), m[keys[i]].clone()));
    let mut out = vec![at.and_then(entry)];
    for &next in walk {
        let moved = match at {
            None if next => (!keys.is_empty()).then_some(0),
            None => keys.len().checked_sub(1),
            Some(i) if next => (i + 1 < keys.len()).then_some(i + 1),
            Some(i) => i.checked_sub(1),
        };
        match moved {
            Some(i) => {
                at = Some(i);
                out.push(entry(i));
            }
            None => out.push(None),
        }
    }
    out
}

fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, mut named) = open(dir.path());
    let mut models = [Model::new(), Model::new()];
    let db = |named: &Database, d: bool| {
        if d {
            named.clone()
        } else {
            Database::default()
        }
    };
    for step in steps {
        match step {
            Step::Put(d, k, v) => {
                let mut txn = env.txn();
                txn.put_in(&db(&named, d), &k, &v).unwrap();
                txn.commit().unwrap();
                models[d as usize].insert(k, v);
            }
            Step::Delete(d, k) => {
                let mut txn = env.txn();
                txn.delete_in(&db(&named, d), &k).unwrap();
                txn.commit().unwrap();
                models[d as usize].remove(&k);
            }
            Step::Checkpoint => {
                env.checkpoint().unwrap();
            }
            Step::Restart => {
                env.log_flush().unwrap();
                drop(env);
                (env, named) = open(dir.path());
            }
            Step::Scan(d, s, e, rev) => {
                let it = env.range(&db(&named, d), bref(&s), bref(&e)).unwrap();
                let got = collect(if rev { it.rev() } else { it });
                let mut want: Vec<Entry> = models[d as usize]
                    .iter()
                    .filter(|(k, _)| in_range(k, &s, &e))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if rev {
                    want.reverse();
                }
                assert_eq!(got, want, "scan {s:?}..{e:?} rev {rev}");
            }
            Step::Prefix(d, p) => {
                let got = collect(env.prefix(&db(&named, d), &p).unwrap());
                let want: Vec<Entry> = models[d as usize]
                    .iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(got, want, "prefix {p:?}");
            }
            Step::Walk(d, k, forward, walk) => {
                let mut c = env.cursor(&db(&named, d)).unwrap();
                let mut got = vec![if forward {
                    c.seek(&k).unwrap()
                } else {
                    c.seek_back(&k).unwrap()
                }];
                for &next in &walk {
                    got.push(if next { c.next() } else { c.prev() }.unwrap());
                }
                assert_eq!(got, model_walk(&models[d as usize], &k, forward, &walk));
            }
            Step::Isolated(k, v) => {
                let r = env.read_txn().unwrap();
                let before: Vec<Entry> =
                    collect(r.range(&named, Bound::Unbounded, Bound::Unbounded).unwrap());
                let mut txn = env.txn();
                txn.put_in(&named, &k, &v).unwrap();
                txn.put(&k, &v);
                txn.commit().unwrap();
                let after: Vec<Entry> =
                    collect(r.range(&named, Bound::Unbounded, Bound::Unbounded).unwrap());
                assert_eq!(before, after, "a snapshot changed under a later commit");
                assert_eq!(r.get_in(&named, &k).unwrap(), models[1].get(&k).cloned());
                models[0].insert(k.clone(), v.clone());
                models[1].insert(k, v);
            }
        }
    }
    for d in [false, true] {
        let all = collect(
            env.range(&db(&named, d), Bound::Unbounded, Bound::Unbounded)
                .unwrap(),
        );
        let want: Vec<Entry> = models[d as usize].clone().into_iter().collect();
        assert_eq!(all, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn cursors_match_a_btreemap(steps in proptest::collection::vec(step(), 1..40)) {
        run(steps);
    }
}

#[test]
fn a_long_range_is_read_in_batches() {
    let env = Group::new(1, config(1)).sites.remove(0);
    let db = env.create_database("big").unwrap();
    for chunk in 0..20u32 {
        let mut txn = env.txn();
        for i in 0..500u32 {
            let n = chunk * 500 + i;
            txn.put_in(&db, &n.to_be_bytes(), &[7; 100]).unwrap();
        }
        txn.commit().unwrap();
    }
    let mut n = 0u32;
    for e in env.range(&db, Bound::Unbounded, Bound::Unbounded).unwrap() {
        assert_eq!(e.unwrap().0, n.to_be_bytes());
        n += 1;
    }
    assert_eq!(n, 10_000);
    let back: Vec<Entry> = env
        .range(
            &db,
            Bound::Included(&5u32.to_be_bytes()[..]),
            Bound::Excluded(&9_000u32.to_be_bytes()[..]),
        )
        .unwrap()
        .rev()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(back.len(), 8_995);
    assert_eq!(back[0].0, 8_999u32.to_be_bytes());
    assert_eq!(back.last().unwrap().0, 5u32.to_be_bytes());
}

#[test]
fn cursors_on_a_client_see_what_it_applied() {
    let g = Group::new(2, config(2));
    let (m, c) = (g.site(1), g.site(2));
    let a = m.create_database("a").unwrap();
    let mut txn = m.txn();
    for k in [b"x1", b"x2", b"y1"] {
        txn.put_in(&a, k, b"v").unwrap();
    }
    txn.commit().unwrap();
    g.deliver();
    let ca = c.open_database("a").unwrap();
    let snapshot = c.read_txn().unwrap();
    let keys: Vec<Vec<u8>> = c.prefix(&ca, b"x").unwrap().map(|e| e.unwrap().0).collect();
    assert_eq!(keys, [b"x1".to_vec(), b"x2".to_vec()]);
    let mut txn = m.txn();
    txn.delete_in(&a, b"x1").unwrap();
    txn.commit().unwrap();
    g.deliver();
    assert_eq!(c.prefix(&ca, b"x").unwrap().count(), 1);
    assert_eq!(
        snapshot.prefix(&ca, b"x").unwrap().count(),
        2,
        "a snapshot keeps what it saw as records apply under it"
    );
}

#[test]
fn open_snapshots_are_limited() {
    let mut cfg = config(1);
    cfg.data.max_open_snapshots = 2;
    let env = Group::new(1, cfg).sites.remove(0);
    let r1 = env.read_txn().unwrap();
    let c = r1.cursor(&Database::default()).unwrap();
    let _r2 = env.read_txn().unwrap();
    let err = env
        .read_txn()
        .err()
        .expect("a third snapshot is over the limit");
    assert!(matches!(err, dbrep::Error::Limit { .. }), "{err}");
    assert!(err.to_string().contains("open snapshots"), "{err}");
    drop(r1);
    assert!(
        env.read_txn().is_err(),
        "the cursor still holds the snapshot it shares"
    );
    drop(c);
    env.read_txn().unwrap();
}

#[test]
fn read_transactions_at_the_stronger_levels() {
    use dbrep::ReadLevel;
    use std::time::{Duration, Instant};
    let g = Group::new(3, config(3));
    let (m, c) = (g.site(1).clone(), g.site(2).clone());
    let mut txn = m.txn();
    txn.put(b"k", b"v");
    txn.commit().unwrap();
    assert!(matches!(
        c.read_txn_at(ReadLevel::Linearizable, Duration::from_secs(1)),
        Err(dbrep::Error::Invalid(_))
    ));
    // The reads need messages to flow while they wait: deliver on this
    // thread until they are done.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (env, level) in [(c, ReadLevel::Follower), (m, ReadLevel::Linearizable)] {
        let reader = std::thread::spawn(move || {
            env.read_txn_at(level, Duration::from_secs(30))
                .and_then(|r| r.get(b"k"))
        });
        while !reader.is_finished() {
            g.deliver();
            assert!(
                Instant::now() < deadline,
                "the {level:?} read did not finish"
            );
            std::thread::yield_now();
        }
        assert_eq!(
            reader.join().unwrap().unwrap(),
            Some(b"v".to_vec()),
            "{level:?}"
        );
    }
}

#[test]
fn follower_read_transactions_wait_then_time_out_without_the_master() {
    use dbrep::ReadLevel;
    use std::time::{Duration, Instant};
    let g = Group::new(3, config(3));
    // Site 2's messages are lost: its request for the commit point too.
    g.cut.lock().unwrap().insert(2);
    let wait = Duration::from_millis(50);
    let t0 = Instant::now();
    let r = g.site(2).read_txn_at(ReadLevel::Follower, wait);
    assert!(matches!(r, Err(dbrep::Error::Timeout)), "{:?}", r.err());
    assert!(t0.elapsed() >= wait, "it waited for the commit point");
    // Stale and Local answer at once on a client.
    for level in [ReadLevel::Stale, ReadLevel::Local] {
        assert!(
            g.site(2).read_txn_at(level, Duration::ZERO).is_ok(),
            "{level:?}"
        );
    }
}
