//! The store, transaction payloads, snapshots and checkpoint files.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use dbrep::db::{
    decode_ops, decode_snapshot, encode_ops, encode_snapshot, for_each_op, read_checkpoint,
    read_checkpoint_bytes, write_checkpoint, Op, OpLimits, OpRef, Snapshot, Store, CHECKPOINT_FILE,
    CHECKPOINT_TMP_FILE, SNAPSHOT_HEADER_LEN,
};
use dbrep::vfs::{StdFs, Vfs};
use dbrep::{Error, Lsn};
use proptest::prelude::*;

fn arb_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..12)
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (arb_key(), proptest::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(key, value)| Op::Put { key, value }),
        arb_key().prop_map(|key| Op::Delete { key }),
    ]
}

fn arb_store() -> impl Strategy<Value = Store> {
    proptest::collection::btree_map(
        arb_key(),
        proptest::collection::vec(any::<u8>(), 0..32),
        0..40,
    )
    .prop_map(|m| {
        let mut s = Store::new();
        for (k, v) in m {
            s.put(&k, &v);
        }
        s
    })
}

fn payload(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_ops(ops, &mut out);
    out
}

fn malformed<T: std::fmt::Debug>(r: dbrep::Result<T>) -> String {
    match r {
        Err(Error::Malformed(m)) => m,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

proptest! {
    #[test]
    fn ops_round_trip(ops in proptest::collection::vec(arb_op(), 0..20)) {
        let p = payload(&ops);
        prop_assert_eq!(decode_ops(&p, &OpLimits::default()).unwrap(), ops.clone());
        let mut seen = Vec::new();
        for_each_op(&p, &OpLimits::default(), |op| seen.push(op.to_op())).unwrap();
        prop_assert_eq!(seen, ops);
    }

    #[test]
    fn ops_damage_never_panics_and_is_atomic(p in prop_oneof![
                                                 proptest::collection::vec(arb_op(), 0..10).prop_map(|o| payload(&o)),
                                                 // Named databases' ops too.
                                                 proptest::collection::vec(arb_db_op(), 1..8).prop_map(|o| db_payload(&o)),
                                             ],
                                             at in any::<prop::sample::Index>(), bit in 0u8..8,
                                             cut in any::<prop::sample::Index>()) {
        let mut p = p;
        let i = at.index(p.len());
        p[i] ^= 1 << bit;
        check_atomic(&p);
        let n = cut.index(p.len());
        check_atomic(&p[..n]);
    }

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(arb_op(), 0..60)) {
        let mut s = Store::new();
        let mut model = BTreeMap::new();
        s.apply_payload(&payload(&ops), &OpLimits::default()).unwrap();
        for op in &ops {
            match op {
                Op::Put { key, value } => { model.insert(key.clone(), value.clone()); }
                Op::Delete { key } => { model.remove(key); }
            }
        }
        let got: Vec<(Vec<u8>, Vec<u8>)> = s.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
        prop_assert_eq!(got, want);
        let bytes: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
        prop_assert_eq!(s.approx_bytes(), bytes);
        prop_assert_eq!(s.len(), model.len());
    }

    #[test]
    fn snapshot_round_trip(store in arb_store(), lsn in any::<u64>(), gen in any::<u32>()) {
        let lsn = Lsn::from_u64(lsn);
        let bytes = encode_snapshot(&store, lsn, gen);
        let snap = decode_snapshot(&bytes, &OpLimits::default()).unwrap();
        prop_assert_eq!(snap.lsn, lsn);
        prop_assert_eq!(snap.gen, gen);
        prop_assert_eq!(snap.store.digest(), store.digest());
        prop_assert_eq!(snap.store, store);
    }

    #[test]
    fn snapshot_damage_never_panics(store in arb_store(),
                                    flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
                                    cut in any::<prop::sample::Index>(),
                                    extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let good = encode_snapshot(&store, Lsn::new(3, 99), 2);
        let mut bad = good.clone();
        for (at, bit) in &flips {
            let i = at.index(bad.len());
            bad[i] ^= 1 << bit;
        }
        if bad != good {
            prop_assert!(decode_snapshot(&bad, &OpLimits::default()).is_err());
        }
        let n = cut.index(good.len());
        prop_assert!(decode_snapshot(&good[..n], &OpLimits::default()).is_err());
        let mut longer = good.clone();
        longer.extend_from_slice(&extra);
        prop_assert!(decode_snapshot(&longer, &OpLimits::default()).is_err());
    }

    #[test]
    fn snapshot_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_snapshot(&bytes, &OpLimits::default());
    }
}

/// Applying a possibly damaged payload either succeeds or changes nothing.
fn check_atomic(p: &[u8]) {
    let mut s = Store::new();
    s.put(b"keep", b"me");
    let before = s.clone();
    let mut calls = 0;
    let r = for_each_op(p, &OpLimits::default(), |_| calls += 1);
    if r.is_err() {
        assert_eq!(calls, 0, "callback ran for an invalid payload");
        assert!(s.apply_payload(p, &OpLimits::default()).is_err());
        assert_eq!(s, before);
        assert!(decode_ops(p, &OpLimits::default()).is_err());
    } else {
        assert_eq!(decode_ops(p, &OpLimits::default()).unwrap().len(), calls);
    }
}

#[test]
fn payload_corrupted_at_its_end_applies_nothing() {
    let ops = vec![
        Op::Put {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        },
        Op::Delete {
            key: b"keep".to_vec(),
        },
        Op::Put {
            key: b"b".to_vec(),
            value: b"2".to_vec(),
        },
    ];
    let mut p = payload(&ops);
    let last = p.len() - 1;
    // Truncated by one byte.
    let mut s = Store::new();
    s.put(b"keep", b"me");
    let before = s.clone();
    let mut calls = 0;
    assert!(for_each_op(&p[..last], &OpLimits::default(), |_| calls += 1).is_err());
    assert_eq!(calls, 0);
    let m = malformed(s.apply_payload(&p[..last], &OpLimits::default()));
    assert!(m.contains("truncated"), "{m}");
    assert_eq!(s, before);
    // A trailing byte.
    p.push(0);
    let m = malformed(s.apply_payload(&p, &OpLimits::default()));
    assert!(m.contains("trailing"), "{m}");
    assert_eq!(s, before);
    // The last op's key length made too long.
    p.pop();
    let len_at = p.len() - 1 - 4 - 1 - 4; // value "2", its length, key "b", its length
    p[len_at] = 9;
    assert!(s.apply_payload(&p, &OpLimits::default()).is_err());
    assert_eq!(s, before);
}

#[test]
fn ops_errors_name_the_problem() {
    let lim = OpLimits::default();
    let m = malformed(decode_ops(&[], &lim));
    assert!(m.contains("op count"), "{m}");
    // Count claims more ops than the bytes could hold.
    let m = malformed(decode_ops(&1000u32.to_le_bytes(), &lim));
    assert!(m.contains("op count 1000"), "{m}");
    // Unknown kind.
    let mut p = 1u32.to_le_bytes().to_vec();
    p.extend_from_slice(&[7, 0, 0, 0, 0]);
    let m = malformed(decode_ops(&p, &lim));
    assert!(m.contains("unknown kind 7"), "{m}");
    // Limits.
    let small = OpLimits {
        max_key_bytes: 2,
        max_value_bytes: 2,
        max_ops: 1,
    };
    let p = payload(&[Op::Delete {
        key: b"long".to_vec(),
    }]);
    assert!(matches!(
        decode_ops(&p, &small),
        Err(Error::Limit {
            what: "key length",
            ..
        })
    ));
    let p = payload(&[Op::Put {
        key: b"k".to_vec(),
        value: b"long".to_vec(),
    }]);
    assert!(matches!(
        decode_ops(&p, &small),
        Err(Error::Limit {
            what: "value length",
            ..
        })
    ));
    let two = payload(&[
        Op::Delete { key: b"a".to_vec() },
        Op::Delete { key: b"b".to_vec() },
    ]);
    assert!(matches!(
        decode_ops(&two, &small),
        Err(Error::Limit {
            what: "op count",
            ..
        })
    ));
}

#[test]
fn for_each_op_borrows() {
    let p = payload(&[Op::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    }]);
    let mut got: Vec<OpRef<'_>> = Vec::new();
    for_each_op(&p, &OpLimits::default(), |op| got.push(op)).unwrap();
    assert_eq!(
        got,
        [OpRef::Put {
            key: b"k",
            value: b"v"
        }]
    );
}

#[test]
fn store_basics() {
    let mut s = Store::new();
    assert!(s.is_empty());
    s.put(b"b", b"2");
    s.put(b"a", b"1");
    s.put(b"c", b"3");
    s.put(b"b", b"22");
    assert_eq!(s.get(b"b"), Some(&b"22"[..]));
    assert_eq!(s.get(b"z"), None);
    assert_eq!(s.len(), 3);
    assert_eq!(s.approx_bytes(), 3 + 1 + 2 + 1);
    assert!(s.delete(b"a"));
    assert!(!s.delete(b"a"));
    assert_eq!(s.get(b"a"), None);
    let keys: Vec<&[u8]> = s.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"b"[..], b"c"]);

    let d = s.digest();
    let mut t = Store::new();
    t.put(b"c", b"3");
    t.put(b"b", b"22");
    assert_eq!(t, s);
    assert_eq!(t.digest(), d);
    t.put(b"c", b"4");
    assert_ne!(t.digest(), d);
    assert!(format!("{t:?}").contains("len: 2"));

    s.clear();
    assert!(s.is_empty());
    assert_eq!(s.approx_bytes(), 0);
}

#[test]
fn store_range() {
    let mut s = Store::new();
    for k in [&b"a"[..], b"b", b"ba", b"c", b"d"] {
        s.put(k, k);
    }
    let keys = |it: dbrep::db::StoreIter<'_>| it.map(|(k, _)| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        keys(s.range(&b"b"[..]..&b"c"[..])),
        [b"b".to_vec(), b"ba".to_vec()]
    );
    assert_eq!(keys(s.range(&b"c"[..]..)).len(), 2);
    assert_eq!(keys(s.range(..=&b"b"[..])).len(), 2);
    // Inverted and empty-excluded ranges yield nothing instead of panicking.
    assert!(keys(s.range(&b"d"[..]..&b"a"[..])).is_empty());
    let ex: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Excluded(b"b"), Bound::Excluded(b"b"));
    assert!(keys(s.range(ex)).is_empty());
    assert_eq!(s.iter().next_back().unwrap().0, b"d");
}

#[test]
fn apply_payload_atomic_on_limit() {
    let mut s = Store::new();
    let p = payload(&[
        Op::Put {
            key: b"ok".to_vec(),
            value: b"v".to_vec(),
        },
        Op::Put {
            key: vec![b'x'; 10],
            value: b"v".to_vec(),
        },
    ]);
    let lim = OpLimits {
        max_key_bytes: 4,
        ..OpLimits::default()
    };
    assert!(s.apply_payload(&p, &lim).is_err());
    assert!(s.is_empty());
}

fn sample_store() -> Store {
    let mut s = Store::new();
    s.put(b"apple", b"red");
    s.put(b"banana", b"yellow");
    s.put(b"cherry", b"dark red");
    s
}

/// Rewrites a snapshot's body and fixes both CRCs, so that the structural
/// checks behind them are reached.
fn with_body(mut snap: Vec<u8>, count: u64, body: &[u8]) -> Vec<u8> {
    snap.truncate(SNAPSHOT_HEADER_LEN);
    snap.extend_from_slice(body);
    snap[24..32].copy_from_slice(&count.to_le_bytes());
    snap[32..40].copy_from_slice(&(body.len() as u64).to_le_bytes());
    let bcrc = crc32fast::hash(body);
    snap[40..44].copy_from_slice(&bcrc.to_le_bytes());
    let hcrc = crc32fast::hash(&snap[0..44]);
    snap[44..48].copy_from_slice(&hcrc.to_le_bytes());
    snap
}

fn entry(k: &[u8], v: &[u8]) -> Vec<u8> {
    let mut e = (k.len() as u32).to_le_bytes().to_vec();
    e.extend_from_slice(k);
    e.extend_from_slice(&(v.len() as u32).to_le_bytes());
    e.extend_from_slice(v);
    e
}

#[test]
fn snapshot_rejects_each_kind_of_damage() {
    let lim = OpLimits::default();
    let good = encode_snapshot(&sample_store(), Lsn::new(2, 300), 5);
    let snap = decode_snapshot(&good, &lim).unwrap();
    assert_eq!((snap.lsn, snap.gen), (Lsn::new(2, 300), 5));

    let check = |bytes: &[u8], needle: &str| {
        let m = malformed(decode_snapshot(bytes, &lim));
        assert!(m.contains(needle), "expected {needle:?} in {m:?}");
    };
    check(&good[..10], "truncated header");
    let mut b = good.clone();
    b[0] = b'X';
    check(&b, "bad magic");
    let mut b = good.clone();
    b[20] ^= 1;
    check(&b, "header CRC");
    let mut b = good.clone();
    b[SNAPSHOT_HEADER_LEN + 5] ^= 1;
    check(&b, "body CRC");
    check(&good[..good.len() - 1], "truncated body");
    let mut b = good.clone();
    b.push(0);
    check(&b, "trailing");

    let mut b = good.clone();
    b[8..12].copy_from_slice(&7u32.to_le_bytes());
    let hcrc = crc32fast::hash(&b[0..44]);
    b[44..48].copy_from_slice(&hcrc.to_le_bytes());
    check(&b, "version 7");

    let body = [entry(b"a", b"1"), entry(b"b", b"2")].concat();
    assert!(decode_snapshot(&with_body(good.clone(), 2, &body), &lim).is_ok());
    check(&with_body(good.clone(), 1, &body), "entry count 1");
    check(&with_body(good.clone(), 3, &body), "entry count 3");
    let fat = [entry(b"aaaa", b"1111"), entry(b"bbbb", b"2222")].concat();
    check(
        &with_body(good.clone(), 3, &fat),
        "truncated key length of entry 2",
    );
    check(&with_body(good.clone(), 1000, &body), "entry count 1000");
    let dup = [entry(b"a", b"1"), entry(b"a", b"2")].concat();
    check(&with_body(good.clone(), 2, &dup), "duplicate key");
    let unsorted = [entry(b"b", b"1"), entry(b"a", b"2")].concat();
    check(&with_body(good.clone(), 2, &unsorted), "out of order");
    let mut long = entry(b"a", b"1");
    long[0] = 200;
    check(&with_body(good.clone(), 1, &long), "key of entry 0");

    let small = OpLimits {
        max_key_bytes: 1,
        ..OpLimits::default()
    };
    let wide = entry(b"abc", b"1");
    assert!(matches!(
        decode_snapshot(&with_body(good, 1, &wide), &small),
        Err(Error::Limit { .. })
    ));
}

#[test]
fn snapshot_of_empty_store() {
    let bytes = encode_snapshot(&Store::new(), Lsn::ZERO, 0);
    assert_eq!(bytes.len(), SNAPSHOT_HEADER_LEN);
    let snap = decode_snapshot(&bytes, &OpLimits::default()).unwrap();
    assert!(snap.store.is_empty());
}

#[test]
fn checkpoint_write_read_replace() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = StdFs;
    let lim = OpLimits::default();
    assert!(read_checkpoint(&vfs, dir.path(), &lim).unwrap().is_none());
    assert!(read_checkpoint_bytes(&vfs, dir.path(), 1 << 20)
        .unwrap()
        .is_none());

    let s1 = sample_store();
    let b1 = encode_snapshot(&s1, Lsn::new(1, 100), 1);
    write_checkpoint(&vfs, dir.path(), &b1).unwrap();
    let got = read_checkpoint(&vfs, dir.path(), &lim).unwrap().unwrap();
    assert_eq!(
        got,
        Snapshot {
            lsn: Lsn::new(1, 100),
            gen: 1,
            store: s1.clone()
        }
    );
    assert!(!vfs.exists(&dir.path().join(CHECKPOINT_TMP_FILE)));

    // A smaller replacement must not keep bytes of the bigger old one.
    let mut s2 = Store::new();
    s2.put(b"k", b"v");
    let b2 = encode_snapshot(&s2, Lsn::new(2, 28), 2);
    assert!(b2.len() < b1.len());
    write_checkpoint(&vfs, dir.path(), &b2).unwrap();
    let got = read_checkpoint(&vfs, dir.path(), &lim).unwrap().unwrap();
    assert_eq!((got.lsn, got.gen, got.store), (Lsn::new(2, 28), 2, s2));
    assert_eq!(
        read_checkpoint_bytes(&vfs, dir.path(), 1 << 20).unwrap(),
        Some(b2.clone())
    );
    match read_checkpoint_bytes(&vfs, dir.path(), 10) {
        Err(Error::Limit { limit: 10, got, .. }) => assert_eq!(got, b2.len() as u64),
        other => panic!("expected Limit, got {other:?}"),
    }
}

#[test]
fn stray_tmp_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = StdFs;
    let lim = OpLimits::default();
    let tmp = dir.path().join(CHECKPOINT_TMP_FILE);
    // Only a half-written temporary: as if the first checkpoint crashed.
    std::fs::write(&tmp, b"DBREPSNP half").unwrap();
    assert!(read_checkpoint(&vfs, dir.path(), &lim).unwrap().is_none());
    assert!(!tmp.exists());

    let b = encode_snapshot(&sample_store(), Lsn::new(1, 50), 1);
    write_checkpoint(&vfs, dir.path(), &b).unwrap();
    // A longer stray temporary next to a good checkpoint.
    std::fs::write(&tmp, vec![0xAB; b.len() * 2]).unwrap();
    assert_eq!(
        read_checkpoint_bytes(&vfs, dir.path(), 1 << 20).unwrap(),
        Some(b.clone())
    );
    let got = read_checkpoint(&vfs, dir.path(), &lim).unwrap().unwrap();
    assert_eq!(got.store, sample_store());
    assert!(!tmp.exists());
    // And a stray temporary is overwritten cleanly by the next checkpoint.
    std::fs::write(&tmp, vec![0xAB; b.len() * 2]).unwrap();
    write_checkpoint(&vfs, dir.path(), &b).unwrap();
    assert!(read_checkpoint(&vfs, dir.path(), &lim).unwrap().is_some());
}

fn expect_corrupt(dir: &Path) -> (u64, String) {
    match read_checkpoint(&StdFs, dir, &OpLimits::default()) {
        Err(Error::Corrupt { path, offset, what }) => {
            assert_eq!(path, dir.join(CHECKPOINT_FILE));
            (offset, what)
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damaged_checkpoint_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let b = encode_snapshot(&sample_store(), Lsn::new(1, 50), 1);
    write_checkpoint(&StdFs, dir.path(), &b).unwrap();
    let file = dir.path().join(CHECKPOINT_FILE);

    let mut bad = b.clone();
    bad[SNAPSHOT_HEADER_LEN + 3] ^= 0x10;
    std::fs::write(&file, &bad).unwrap();
    let (offset, what) = expect_corrupt(dir.path());
    assert_eq!(offset, 40);
    assert!(what.contains("body CRC"), "{what}");
    let e = read_checkpoint(&StdFs, dir.path(), &OpLimits::default()).unwrap_err();
    assert!(e.to_string().contains(CHECKPOINT_FILE), "{e}");

    std::fs::write(&file, &b[..b.len() / 2]).unwrap();
    let (_, what) = expect_corrupt(dir.path());
    assert!(what.contains("truncated"), "{what}");

    std::fs::write(&file, b"").unwrap();
    let (_, what) = expect_corrupt(dir.path());
    assert!(what.contains("truncated header"), "{what}");
}

// ---- named databases in the op format and the store ----------------------

#[derive(Clone, Debug)]
enum DbOp {
    Put(u32, Vec<u8>, Vec<u8>),
    Delete(u32, Vec<u8>),
    Create(u32, Vec<u8>),
    Remove(u32),
}

impl DbOp {
    fn as_ref(&self) -> dbrep::db::DbOpRef<'_> {
        use dbrep::db::DbOpRef;
        match self {
            DbOp::Put(db, key, value) => DbOpRef::Put {
                db: *db,
                key,
                value,
            },
            DbOp::Delete(db, key) => DbOpRef::Delete { db: *db, key },
            DbOp::Create(id, name) => DbOpRef::CreateDb { id: *id, name },
            DbOp::Remove(id) => DbOpRef::RemoveDb { id: *id },
        }
    }
}

fn arb_db_op() -> impl Strategy<Value = DbOp> {
    let small_key = proptest::collection::vec(0u8..3, 0..3);
    let name = proptest::collection::vec(b'a'..b'd', 1..2);
    prop_oneof![
        5 => (0u32..4, small_key.clone(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(d, k, v)| DbOp::Put(d, k, v)),
        2 => (0u32..4, small_key).prop_map(|(d, k)| DbOp::Delete(d, k)),
        2 => (0u32..5, name).prop_map(|(id, n)| DbOp::Create(id, n)),
        1 => (0u32..5).prop_map(DbOp::Remove),
    ]
}

fn db_payload(ops: &[DbOp]) -> Vec<u8> {
    let mut p = Vec::new();
    dbrep::db::encode_count(&mut p, ops.len() as u32);
    for op in ops {
        op.as_ref().encode(&mut p);
    }
    p
}

type KvModel = BTreeMap<Vec<u8>, Vec<u8>>;

/// What the store must do with each op: a creation of an id or a name in
/// use, or of the default database, does nothing; so does a write to a
/// database that does not exist.
#[derive(Default)]
struct Model {
    default: BTreeMap<Vec<u8>, Vec<u8>>,
    dbs: BTreeMap<u32, (Vec<u8>, KvModel)>,
}

impl Model {
    fn apply(&mut self, op: &DbOp) {
        match op {
            DbOp::Put(0, k, v) => {
                self.default.insert(k.clone(), v.clone());
            }
            DbOp::Delete(0, k) => {
                self.default.remove(k);
            }
            DbOp::Put(d, k, v) => {
                if let Some((_, m)) = self.dbs.get_mut(d) {
                    m.insert(k.clone(), v.clone());
                }
            }
            DbOp::Delete(d, k) => {
                if let Some((_, m)) = self.dbs.get_mut(d) {
                    m.remove(k);
                }
            }
            DbOp::Create(id, name) => {
                if *id != 0
                    && !self.dbs.contains_key(id)
                    && !self.dbs.values().any(|(n, _)| n == name)
                {
                    self.dbs.insert(*id, (name.clone(), BTreeMap::new()));
                }
            }
            DbOp::Remove(id) => {
                self.dbs.remove(id);
            }
        }
    }

    fn check(&self, s: &Store) {
        let entries = |s: &Store| -> Vec<(Vec<u8>, Vec<u8>)> {
            s.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
        };
        assert_eq!(
            entries(s),
            self.default.clone().into_iter().collect::<Vec<_>>()
        );
        let listed: Vec<(u32, Vec<u8>)> = s.databases().map(|(id, n)| (id, n.to_vec())).collect();
        let want: Vec<(u32, Vec<u8>)> = self
            .dbs
            .iter()
            .map(|(id, (n, _))| (*id, n.clone()))
            .collect();
        assert_eq!(listed, want);
        for (id, (name, m)) in &self.dbs {
            assert_eq!(s.database_id(name), Some(*id));
            let db = s.database(*id).expect("listed");
            assert_eq!(entries(db), m.clone().into_iter().collect::<Vec<_>>());
        }
    }
}

proptest! {
    #[test]
    fn named_databases_match_a_model(txns in proptest::collection::vec(
        proptest::collection::vec(arb_db_op(), 0..6), 0..12)) {
        let mut s = Store::new();
        let mut model = Model::default();
        let mut frozen = Vec::new();
        for ops in &txns {
            let p = db_payload(ops);
            let back = dbrep::db::decode_db_ops(&p, &OpLimits::default()).unwrap();
            let want: Vec<_> = ops.iter().map(DbOp::as_ref).collect();
            prop_assert_eq!(back, want);
            // A snapshot taken before a commit keeps what it held.
            frozen.push((s.clone(), s.digest()));
            s.apply_payload(&p, &OpLimits::default()).unwrap();
            for op in ops {
                model.apply(op);
            }
            model.check(&s);
        }
        for (snap, digest) in &frozen {
            prop_assert_eq!(snap.digest(), *digest);
        }
        let bytes = encode_snapshot(&s, Lsn::new(1, 28), 3);
        let back = decode_snapshot(&bytes, &OpLimits::default()).unwrap();
        model.check(&back.store);
        prop_assert_eq!(back.store.digest(), s.digest());
        prop_assert_eq!(back.store.next_database_id(), s.next_database_id());
        prop_assert_eq!(&back.store, &s);
    }

}

#[test]
fn key_views_of_named_database_ops_drop_the_database() {
    let p = db_payload(&[
        DbOp::Create(1, b"a".to_vec()),
        DbOp::Put(1, b"k".to_vec(), b"v".to_vec()),
        DbOp::Delete(0, b"d".to_vec()),
        DbOp::Remove(1),
    ]);
    let mut keys = Vec::new();
    for_each_op(&p, &OpLimits::default(), |op| keys.push(op.to_op())).unwrap();
    assert_eq!(
        keys,
        [
            Op::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec()
            },
            Op::Delete { key: b"d".to_vec() }
        ]
    );
    // A truncated database id names the field.
    let p = db_payload(&[DbOp::Delete(0, b"kkkkk".to_vec()), DbOp::Remove(7)]);
    let m = malformed(decode_ops(&p[..p.len() - 1], &OpLimits::default()));
    assert!(m.contains("database id of op 1"), "{m}");
}
