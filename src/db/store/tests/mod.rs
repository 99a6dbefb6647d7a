//! Tests of the store against a `BTreeMap` model, with the tree's
//! invariants checked after every step.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;

use super::check::Census;
use super::key::key_cmp;
use super::tree::{Node, Shape};
use super::Store;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Small enough that a few hundred entries make a tree three levels deep
/// and a 300-byte value takes a leaf of its own.
const TINY: Shape = Shape {
    leaf_bytes: 256,
    leaf_entries: 6,
    fanout: 4,
};

/// Like [`TINY`], with room for branches to rebalance rather than merge.
const SMALL: Shape = Shape {
    leaf_bytes: 1024,
    leaf_entries: 8,
    fanout: 12,
};

/// Checks the tree's and the tail's invariants and that their totals agree
/// with the store's.
fn check(s: &Store) -> Census {
    let mut census = match &s.root {
        Some(root) => root.check(&s.shape, None, None, true),
        None => Census::default(),
    };
    assert_eq!(
        s.root.is_none(),
        census.entries == 0,
        "a tree with no entries has no root"
    );
    let tree_last = s.root.as_deref().and_then(Node::last_key);
    if s.root_last_known {
        assert_eq!(
            tree_last,
            Some(&s.root_last[..]),
            "the cached last key is the tree's greatest"
        );
    }
    let tail = &s.tail;
    census.bytes += tail.check_layout();
    census.entries += tail.len();
    assert!(s.shape.leaf_fits(tail), "tail over a leaf's limits");
    for i in 0..tail.len() {
        assert!(
            i == 0 || tail.key(i - 1) < tail.key(i),
            "tail keys out of order"
        );
    }
    if let (Some(below), Some(first)) = (tree_last, tail.first_key()) {
        assert!(below < first, "a tail key at or below a key of the tree");
    }
    assert_eq!(census.entries, s.len, "entry count");
    assert_eq!(census.bytes, s.bytes, "byte count");
    census
}

/// Checks `s` holds exactly what `model` does, through every read path.
fn same(s: &Store, model: &Model) {
    assert_eq!(s.len(), model.len());
    assert_eq!(s.is_empty(), model.is_empty());
    let bytes: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(s.approx_bytes(), bytes);
    assert!(s.iter().eq(model.iter().map(|(k, v)| (&k[..], &v[..]))));
    assert!(s
        .iter()
        .rev()
        .eq(model.iter().rev().map(|(k, v)| (&k[..], &v[..]))));
    assert_eq!(s.iter().size_hint(), (model.len(), Some(model.len())));
}

fn bound(kind: u8, key: &[u8]) -> Bound<&[u8]> {
    match kind % 3 {
        0 => Bound::Included(key),
        1 => Bound::Excluded(key),
        _ => Bound::Unbounded,
    }
}

fn owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// What the model yields for a range, treating the bounds `BTreeMap::range`
/// would panic on (inverted, or equal and both excluded) as empty.
fn model_range<'m>(
    model: &'m Model,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
) -> Vec<(&'m [u8], &'m [u8])> {
    let empty = match (lo, hi) {
        (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a > b,
        _ => false,
    };
    if empty {
        return Vec::new();
    }
    model
        .range((owned(lo), owned(hi)))
        .map(|(k, v)| (&k[..], &v[..]))
        .collect()
}

/// Checks a range scan both ways, and meeting in the middle.
fn same_range(s: &Store, model: &Model, lo: Bound<&[u8]>, hi: Bound<&[u8]>) {
    let want = model_range(model, lo, hi);
    let got: Vec<_> = s.range((lo, hi)).collect();
    assert_eq!(got, want, "range {lo:?}..{hi:?}");
    let mut back: Vec<_> = s.range((lo, hi)).rev().collect();
    back.reverse();
    assert_eq!(back, want, "reverse range {lo:?}..{hi:?}");
    // Alternate ends: every entry once, none twice.
    let mut it = s.range((lo, hi));
    let (mut front, mut rear) = (Vec::new(), Vec::new());
    loop {
        let (lo_hint, hi_hint) = it.size_hint();
        let left = want.len() - front.len() - rear.len();
        assert!(
            lo_hint <= left && hi_hint.map_or(true, |h| left <= h),
            "size hint"
        );
        match it.next() {
            Some(e) => front.push(e),
            None => break,
        }
        match it.next_back() {
            Some(e) => rear.push(e),
            None => break,
        }
    }
    assert_eq!(it.next(), None);
    assert_eq!(it.next_back(), None);
    rear.reverse();
    front.extend(rear);
    assert_eq!(front, want, "alternating range {lo:?}..{hi:?}");
}

#[derive(Clone)]
enum Step {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    /// Takes a clone, then changes the original and the clone differently.
    Fork(Vec<u8>, Vec<u8>),
    Range(u8, Vec<u8>, u8, Vec<u8>),
}

/// Bytes shown short, so a failing case of 20 KiB values stays readable.
struct Short<'a>(&'a [u8]);

impl std::fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            [first, rest @ ..] if rest.len() >= 8 => write!(f, "[{first}; {}]", self.0.len()),
            b => write!(f, "{:?}", String::from_utf8_lossy(b)),
        }
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Put(k, v) => write!(f, "Put({:?}, {:?})", Short(k), Short(v)),
            Step::Delete(k) => write!(f, "Delete({:?})", Short(k)),
            Step::Get(k) => write!(f, "Get({:?})", Short(k)),
            Step::Fork(k, v) => write!(f, "Fork({:?}, {:?})", Short(k), Short(v)),
            Step::Range(a, lo, b, hi) => {
                write!(f, "Range({a}, {:?}, {b}, {:?})", Short(lo), Short(hi))
            }
        }
    }
}

/// Keys from a four-letter alphabet, up to three letters, and now and then
/// a long one: few enough distinct keys that overwrites and deletes hit.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(b'a'..=b'd', 0..=3),
        1 => proptest::collection::vec(b'a'..=b'b', 20..=40),
    ]
}

/// Values from empty to a few KiB, now and then 20 KiB.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..=16),
        3 => (0usize..=3000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        1 => any::<u8>().prop_map(|b| vec![b; 20 << 10]),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (key(), value()).prop_map(|(k, v)| Step::Put(k, v)),
        4 => key().prop_map(Step::Delete),
        2 => key().prop_map(Step::Get),
        1 => (key(), value()).prop_map(|(k, v)| Step::Fork(k, v)),
        2 => (any::<u8>(), key(), any::<u8>(), key()).prop_map(|(a, lo, b, hi)| Step::Range(a, lo, b, hi)),
    ]
}

/// Runs `steps` on a store of `shape` and on the model, checking after each.
fn run(shape: Shape, steps: &[Step]) {
    let mut s = Store::with_shape(shape);
    let mut model = Model::new();
    // Clones taken along the way, with what they held then.
    let mut frozen: Vec<(Store, Model)> = Vec::new();
    for step in steps {
        match step {
            Step::Put(k, v) => {
                s.put(k, v);
                model.insert(k.clone(), v.clone());
            }
            Step::Delete(k) => {
                assert_eq!(s.delete(k), model.remove(k).is_some());
            }
            Step::Get(k) => {
                assert_eq!(s.get(k), model.get(k).map(|v| &v[..]));
            }
            Step::Fork(k, v) => {
                let mut copy = s.clone();
                let mut copy_model = model.clone();
                assert_eq!(copy, s);
                // The clone changes on its own; the original must not see it.
                copy.put(k, v);
                copy_model.insert(k.clone(), v.clone());
                let victim = model.keys().next().cloned();
                if let Some(victim) = victim {
                    assert!(copy.delete(&victim));
                    copy_model.remove(&victim);
                }
                same(&copy, &copy_model);
                check(&copy);
                frozen.push((copy, copy_model));
                frozen.push((s.clone(), model.clone()));
            }
            Step::Range(a, lo, b, hi) => {
                same_range(&s, &model, bound(*a, lo), bound(*b, hi));
            }
        }
        check(&s);
        same(&s, &model);
    }
    // Every clone still holds exactly what it held when it was taken.
    for (copy, copy_model) in &frozen {
        same(copy, copy_model);
        check(copy);
    }
}

/// A step of a run that writes mostly above every key so far, as a counter
/// does: what the store's tail takes.
#[derive(Clone, Debug)]
enum Near {
    /// A key above every other: the counter moved on by one plus the gap.
    Append(u8, Vec<u8>),
    /// Overwrites (`Some`) or deletes the `n`-th greatest key.
    Top(u8, Option<Vec<u8>>),
    /// A new key just above the `n`-th greatest, so below the greater ones.
    Between(u8, Vec<u8>),
    /// Any other step, mostly below the appended keys.
    Other(Step),
}

fn small_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..=24),
        1 => value(),
    ]
}

fn near() -> impl Strategy<Value = Near> {
    prop_oneof![
        12 => (0u8..3, small_value()).prop_map(|(g, v)| Near::Append(g, v)),
        3 => (0u8..8, proptest::option::of(small_value())).prop_map(|(n, v)| Near::Top(n, v)),
        2 => (0u8..8, small_value()).prop_map(|(n, v)| Near::Between(n, v)),
        3 => step().prop_map(Near::Other),
    ]
}

/// Turns `near` into plain steps, tracking the keys they leave.
fn near_steps(near: &[Near]) -> Vec<Step> {
    let mut keys = std::collections::BTreeSet::new();
    let mut counter = 0u32;
    let nth = |keys: &std::collections::BTreeSet<Vec<u8>>, n: u8| -> Option<Vec<u8>> {
        keys.iter()
            .rev()
            .nth(usize::from(n) % keys.len().max(1))
            .cloned()
    };
    let mut steps = Vec::new();
    for n in near {
        let step = match n {
            Near::Append(gap, v) => {
                counter += 1 + u32::from(*gap);
                let key = [&b"e"[..], &counter.to_be_bytes()].concat();
                Step::Put(key, v.clone())
            }
            Near::Top(n, v) => match (nth(&keys, *n), v) {
                (Some(k), Some(v)) => Step::Put(k, v.clone()),
                (Some(k), None) => Step::Delete(k),
                (None, _) => continue,
            },
            Near::Between(n, v) => match nth(&keys, *n) {
                Some(k) => Step::Put([&k[..], &[0]].concat(), v.clone()),
                None => continue,
            },
            Near::Other(step) => step.clone(),
        };
        match &step {
            Step::Put(k, _) => {
                keys.insert(k.clone());
            }
            Step::Delete(k) => {
                keys.remove(k);
            }
            _ => {}
        }
        steps.push(step);
    }
    steps
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tiny_tree_matches_model(steps in proptest::collection::vec(step(), 1..400)) {
        run(TINY, &steps);
    }

    #[test]
    fn small_tree_matches_model(steps in proptest::collection::vec(step(), 1..400)) {
        run(SMALL, &steps);
    }

    #[test]
    fn default_tree_matches_model(steps in proptest::collection::vec(step(), 1..200)) {
        run(super::SHAPE, &steps);
    }

    // Mostly ascending keys, with writes and deletes among the greatest:
    // the tail fills, takes overwrites, inserts and deletes, and joins the
    // tree, clones taken along the way included.
    #[test]
    fn ascending_writes_match_model(
        near in proptest::collection::vec(near(), 1..600),
        shape in prop_oneof![Just(TINY), Just(SMALL), Just(super::SHAPE)],
    ) {
        run(shape, &near_steps(&near));
    }

    // The fast comparison must agree with the byte order everywhere.
    #[test]
    fn key_cmp_is_byte_order(
        common in proptest::collection::vec(any::<u8>(), 0..40),
        a in proptest::collection::vec(any::<u8>(), 0..12),
        b in proptest::collection::vec(any::<u8>(), 0..12),
    ) {
        let x = [common.clone(), a].concat();
        let y = [common, b].concat();
        prop_assert_eq!(key_cmp(&x, &y), x.cmp(&y));
        prop_assert_eq!(key_cmp(&y, &x), y.cmp(&x));
        prop_assert_eq!(key_cmp(&x, &x), Ordering::Equal);
    }
}

/// A xorshift generator: deterministic tests without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// Thousands of random steps on a key space wide enough to grow the tree
/// several levels, then shrink it back.
#[test]
fn long_random_run_grows_and_shrinks() {
    for shape in [TINY, SMALL] {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut s = Store::with_shape(shape);
        let mut model = Model::new();
        let mut tallest = 0;
        for round in 0..6000u64 {
            let k = (rng.next() % 1500).to_be_bytes()[6..].to_vec();
            // Grow for the first two thirds, then mostly delete.
            if rng.next() % 3 != 0 || round < 4000 && rng.next() % 4 != 0 {
                let v = vec![round as u8; (rng.next() % 60) as usize];
                s.put(&k, &v);
                model.insert(k, v);
            } else {
                assert_eq!(s.delete(&k), model.remove(&k).is_some());
            }
            if round % 97 == 0 {
                let lo = (rng.next() % 1600).to_be_bytes()[6..].to_vec();
                let hi = (rng.next() % 1600).to_be_bytes()[6..].to_vec();
                same_range(&s, &model, Bound::Included(&lo), Bound::Excluded(&hi));
                same(&s, &model);
            }
            tallest = tallest.max(check(&s).height);
        }
        assert!(tallest >= 3, "tree only {tallest} levels high");
        same(&s, &model);
        let mut keys: Vec<_> = model.keys().cloned().collect();
        rng.shuffle(&mut keys);
        for k in keys {
            assert!(s.delete(&k));
            check(&s);
        }
        assert!(s.is_empty());
        assert!(s.root.is_none());
    }
}

/// Keys alike in their first eight bytes and more, which branches must
/// tell apart past their shared prefix.
#[test]
fn keys_with_a_long_shared_prefix() {
    for shape in [TINY, SMALL, super::SHAPE] {
        let mut s = Store::with_shape(shape);
        let mut model = Model::new();
        let mut rng = Rng(99);
        for _ in 0..5000 {
            let n = rng.next() % 3000;
            // Some keys are others plus a zero byte: equal heads, different keys.
            let mut k = format!("user:0000000000/{n:06}").into_bytes();
            if n % 7 == 0 {
                k.push(0);
            }
            if rng.next() % 4 == 0 {
                assert_eq!(s.delete(&k), model.remove(&k).is_some());
            } else {
                s.put(&k, &n.to_le_bytes());
                model.insert(k, n.to_le_bytes().to_vec());
            }
        }
        check(&s);
        same(&s, &model);
        for k in model.keys() {
            assert_eq!(s.get(k), model.get(k).map(|v| &v[..]));
            let mut shorter = k.clone();
            shorter.pop();
            assert_eq!(s.get(&shorter), model.get(&shorter).map(|v| &v[..]));
        }
        same_range(
            &s,
            &model,
            Bound::Excluded(b"user:0000000000/001000"),
            Bound::Included(b"user:0000000000/002000\0"),
        );
    }
}

#[test]
fn ascending_inserts() {
    let mut s = Store::new();
    for i in 0..100_000u64 {
        s.put(&i.to_be_bytes(), &i.to_le_bytes());
    }
    let census = check(&s);
    assert_eq!(s.len(), 100_000);
    // Ascending inserts leave every leaf but the last full.
    assert!(
        census.leaves <= 100_000 / super::SHAPE.leaf_entries + 1,
        "{census:?}"
    );
    let mut n = 0u64;
    for (k, v) in &s {
        assert_eq!(k, n.to_be_bytes());
        assert_eq!(v, n.to_le_bytes());
        n += 1;
    }
    assert_eq!(n, 100_000);
    assert!(s.iter().rev().map(|(k, _)| k).eq((0..100_000u64)
        .rev()
        .map(|i| i.to_be_bytes())
        .collect::<Vec<_>>()
        .iter()
        .map(|k| &k[..])));
}

/// Keys written in ascending order take a fast path to the rightmost leaf;
/// clones, deletes of the greatest key, overwrites and entries too big to
/// share a leaf must not lead it astray.
#[test]
fn ascending_puts_with_clones_deletes_and_overwrites() {
    for shape in [TINY, SMALL, super::SHAPE] {
        let mut s = Store::with_shape(shape);
        let mut model = Model::new();
        let mut frozen: Vec<(Store, Model)> = Vec::new();
        let mut rng = Rng(7);
        for i in 0..3_000u64 {
            let key = (i * 3).to_be_bytes().to_vec();
            let roll = rng.next() % 100;
            let value = if roll < 3 {
                vec![b'x'; 300]
            } else {
                vec![i as u8; (rng.next() % 40) as usize]
            };
            s.put(&key, &value);
            model.insert(key.clone(), value);
            match roll {
                // Delete the greatest key, so the next put must find it again.
                3..=8 => {
                    let last = model.keys().next_back().cloned();
                    if let Some(last) = last {
                        assert!(s.delete(&last));
                        model.remove(&last);
                    }
                }
                // A clone shares the rightmost path: both copies must write
                // on their own.
                9..=13 => {
                    let mut copy = s.clone();
                    let mut copy_model = model.clone();
                    let k = (i * 3 + 1).to_be_bytes().to_vec();
                    copy.put(&k, b"copy");
                    copy_model.insert(k, b"copy".to_vec());
                    check(&copy);
                    frozen.push((copy, copy_model));
                    frozen.push((s.clone(), model.clone()));
                }
                // Overwrite the greatest key, growing or shrinking it.
                14..=18 => {
                    let v = vec![b'o'; (rng.next() % 60) as usize];
                    s.put(&key, &v);
                    model.insert(key.clone(), v);
                }
                _ => {}
            }
            check(&s);
            if i % 97 == 0 {
                same(&s, &model);
            }
        }
        same(&s, &model);
        for (copy, copy_model) in &frozen {
            same(copy, copy_model);
            check(copy);
        }
    }
}

#[test]
fn descending_inserts() {
    let mut s = Store::new();
    for i in (0..100_000u64).rev() {
        s.put(&i.to_be_bytes(), b"value");
    }
    let census = check(&s);
    assert!(
        census.leaves <= 100_000 / super::SHAPE.leaf_entries + 1,
        "{census:?}"
    );
    assert!(s
        .iter()
        .map(|(k, _)| k.to_vec())
        .eq((0..100_000u64).map(|i| i.to_be_bytes().to_vec())));
}

#[test]
fn deleting_everything_shrinks_the_tree() {
    for shape in [TINY, super::SHAPE] {
        let mut s = Store::with_shape(shape);
        let mut keys: Vec<u64> = (0..20_000).collect();
        let mut rng = Rng(7);
        rng.shuffle(&mut keys);
        for &k in &keys {
            s.put(&k.to_be_bytes(), &[1; 40]);
        }
        assert!(check(&s).height >= 3);
        rng.shuffle(&mut keys);
        for (n, &k) in keys.iter().enumerate() {
            assert!(s.delete(&k.to_be_bytes()));
            if n % 1000 == 0 {
                let census = check(&s);
                // Merges keep leaves at least about a quarter full.
                let floor = (shape.leaf_entries / 4).max(1);
                assert!(
                    census.leaves <= 2 * census.entries / floor + 2,
                    "{census:?} at {n}"
                );
            }
        }
        assert!(s.is_empty());
        assert!(s.root.is_none());
        assert_eq!(s.iter().next(), None);
        s.put(b"again", b"x");
        assert_eq!(s.get(b"again"), Some(&b"x"[..]));
        assert_eq!(check(&s).entries, 1);
    }
}

#[test]
fn big_values_take_leaves_of_their_own() {
    let mut s = Store::new();
    for i in 0..200u32 {
        s.put(&i.to_be_bytes(), &[i as u8; 100]);
    }
    // A value bigger than a leaf's budget, in the middle of a full leaf.
    let big = vec![9u8; 3 << 20];
    s.put(&100u32.to_be_bytes(), &big);
    s.put(&[0, 0, 0, 100, 0], &big);
    check(&s);
    assert_eq!(s.get(&100u32.to_be_bytes()), Some(&big[..]));
    // Shrinking it lets it share a leaf again.
    s.put(&100u32.to_be_bytes(), b"small");
    s.delete(&[0, 0, 0, 100, 0]);
    check(&s);
    assert_eq!(s.get(&100u32.to_be_bytes()), Some(&b"small"[..]));
    assert_eq!(s.len(), 200);
    // Empty keys and values are entries like any other.
    s.put(b"", b"");
    assert_eq!(s.get(b""), Some(&b""[..]));
    assert_eq!(s.iter().next(), Some((&b""[..], &b""[..])));
    check(&s);
}

#[test]
fn a_clone_is_unaffected_by_later_writes() {
    let mut s = Store::new();
    for i in 0..10_000u32 {
        s.put(&i.to_be_bytes(), b"old");
    }
    let frozen = s.clone();
    let digest = frozen.digest();
    for i in (0..10_000u32).step_by(3) {
        s.put(&i.to_be_bytes(), b"new");
    }
    for i in (1..10_000u32).step_by(3) {
        s.delete(&i.to_be_bytes());
    }
    assert_eq!(frozen.digest(), digest);
    assert_eq!(frozen.len(), 10_000);
    assert!(frozen.iter().all(|(_, v)| v == b"old"));
    assert_ne!(frozen, s);
    check(&frozen);
    check(&s);
}

/// Addresses of every node of a tree, to see which two trees share.
fn nodes(s: &Store) -> HashSet<*const Node> {
    let mut seen = HashSet::new();
    let mut todo: Vec<&Arc<Node>> = s.root.iter().collect();
    while let Some(node) = todo.pop() {
        seen.insert(Arc::as_ptr(node));
        if let Node::Branch(b) = &**node {
            todo.extend(b.kids.iter());
        }
    }
    seen
}

#[test]
fn a_write_after_a_clone_copies_only_its_path() {
    let mut s = Store::new();
    for i in 0..50_000u32 {
        s.put(&i.to_be_bytes(), b"value");
    }
    let height = check(&s).height;
    assert!(height >= 3);
    let frozen = s.clone();
    assert_eq!(nodes(&s), nodes(&frozen));
    // A missing key leaves everything shared.
    assert!(!s.delete(b"missing"));
    assert_eq!(nodes(&s), nodes(&frozen));
    // One put copies one node per level, once.
    for _ in 0..2 {
        s.put(&777u32.to_be_bytes(), b"changed");
        assert_eq!(nodes(&s).difference(&nodes(&frozen)).count(), height);
    }
    assert_eq!(frozen.get(&777u32.to_be_bytes()), Some(&b"value"[..]));
}

#[test]
fn equality_ignores_tree_shape() {
    let mut a = Store::with_shape(TINY);
    let mut b = Store::new();
    for i in 0..500u32 {
        a.put(&i.to_be_bytes(), b"v");
        b.put(&(499 - i).to_be_bytes(), b"v");
    }
    assert_eq!(a, b);
    b.put(&7u32.to_be_bytes(), b"w");
    assert_ne!(a, b);
}

#[test]
fn key_order_is_byte_order() {
    let keys: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![1],
        vec![1, 2, 3, 4, 5, 6, 7],
        vec![1, 2, 3, 4, 5, 6, 7, 8],
        vec![1, 2, 3, 4, 5, 6, 7, 8, 0],
        vec![1, 2, 3, 4, 5, 6, 7, 9],
        vec![1, 2, 3, 4, 5, 6, 8],
        vec![255; 8],
        vec![255; 9],
        vec![7; 40],
        [vec![7; 39], vec![8]].concat(),
        vec![0x80, 0, 0, 0, 0, 0, 0, 0, 1],
    ];
    for a in &keys {
        for b in &keys {
            assert_eq!(key_cmp(a, b), a.cmp(b), "{a:?} vs {b:?}");
        }
    }
    let mut s = Store::new();
    for k in keys.iter().rev() {
        s.put(k, b"v");
    }
    let mut sorted = keys.clone();
    sorted.sort();
    let got: Vec<Vec<u8>> = s.iter().map(|(k, _)| k.to_vec()).collect();
    assert_eq!(got, sorted);
}
