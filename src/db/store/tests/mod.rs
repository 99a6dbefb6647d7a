//! Tests of the store against a `BTreeMap` model, with the tree's
//! invariants checked after every step.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;

use super::check::Census;
use super::key::key_cmp;
use super::tree::{Node, Shape, SHAPE};
use super::Store;

mod growth;
mod model;
mod sharing;

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
