//! The in-memory ordered key-value store every site keeps.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::btree_map::{self, BTreeMap};
use std::fmt;
use std::ops::{Bound, RangeBounds};

use super::txn::{validate_ops, OpLimits, OpRef, ValidOps};
use crate::error::Result;

/// Orders byte strings exactly as `<[u8] as Ord>` does (lexicographically,
/// a prefix first), but compares short keys eight bytes at a time inline
/// instead of calling `memcmp`: the tree compares keys a few dozen times per
/// operation, and most keys are short.
#[inline]
fn key_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    if n > 32 {
        return a.cmp(b);
    }
    let (mut x, mut y) = (a, b);
    while x.len() >= 8 && y.len() >= 8 {
        let (xh, xt) = x.split_at(8);
        let (yh, yt) = y.split_at(8);
        let xv = u64::from_be_bytes(xh.try_into().expect("8 bytes"));
        let yv = u64::from_be_bytes(yh.try_into().expect("8 bytes"));
        if xv != yv {
            return xv.cmp(&yv);
        }
        x = xt;
        y = yt;
    }
    for (p, q) in x.iter().zip(y) {
        if p != q {
            return p.cmp(q);
        }
    }
    x.len().cmp(&y.len())
}

/// A stored key. Its order is [`key_cmp`], which is exactly the byte order
/// of `[u8]`, so the tree may also be searched with a plain `&[u8]`
/// (`Borrow<[u8]>` requires the two orders to agree, and they do). Inserts
/// compare owned keys and so take the fast path.
#[derive(Clone, PartialEq, Eq)]
struct Key(Box<[u8]>);

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Ord for Key {
    #[inline]
    fn cmp(&self, other: &Key) -> Ordering {
        key_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for Key {
    #[inline]
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An ordered map from byte keys to byte values.
///
/// Sites keep one each; replication keeps them equal by applying the same
/// commit payloads in the same order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Store {
    map: BTreeMap<Key, Vec<u8>>,
    /// Sum of key and value lengths, kept up to date so that
    /// [`Store::approx_bytes`] is O(1).
    bytes: usize,
}

/// Iterator over `(key, value)` pairs of a [`Store`], in key order.
pub struct StoreIter<'a>(btree_map::Range<'a, Key, Vec<u8>>);

impl<'a> Iterator for StoreIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&*k.0, v.as_slice()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for StoreIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (&*k.0, v.as_slice()))
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        // One descent of the tree whether the key is new or not; the key is
        // copied even for an overwrite, which costs less than a second
        // descent for a new key.
        match self.map.entry(Key(Box::from(key))) {
            btree_map::Entry::Occupied(mut e) => {
                let v = e.get_mut();
                self.bytes = self.bytes - v.len() + value.len();
                // Reuses the old value's allocation.
                v.clear();
                v.extend_from_slice(value);
            }
            btree_map::Entry::Vacant(e) => {
                self.bytes += key.len() + value.len();
                e.insert(value.to_vec());
            }
        }
    }

    /// Removes `key`; returns whether it was present.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some(v) => {
                self.bytes -= key.len() + v.len();
                true
            }
            None => false,
        }
    }

    /// Applies an encoded transaction payload (see [`super::encode_ops`]).
    ///
    /// Atomic: the payload is validated whole before any op is applied, so
    /// on error the store is unchanged.
    pub fn apply_payload(&mut self, payload: &[u8], limits: &OpLimits) -> Result<()> {
        let ops = validate_ops(payload, limits)?;
        self.apply_ops(ops);
        Ok(())
    }

    /// Applies a payload already validated with [`super::validate_ops`]
    /// (cannot fail).
    pub fn apply_ops(&mut self, ops: ValidOps<'_>) {
        for op in ops {
            match op {
                OpRef::Put { key, value } => self.put(key, value),
                OpRef::Delete { key } => {
                    self.delete(key);
                }
            }
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every `(key, value)` pair, in key order.
    pub fn iter(&self) -> StoreIter<'_> {
        StoreIter(self.map.range::<[u8], _>(..))
    }

    /// The pairs whose keys fall in `range`, in key order.
    ///
    /// An inverted or empty range (start after end, or equal excluded
    /// bounds) yields nothing rather than panicking.
    ///
    /// ```
    /// use std::ops::Bound;
    /// let mut s = dbrep::db::Store::new();
    /// for k in [b"a", b"b", b"c"] {
    ///     s.put(k, b"v");
    /// }
    /// let keys: Vec<&[u8]> = s.range(&b"b"[..]..).map(|(k, _)| k).collect();
    /// assert_eq!(keys, [b"b", b"c"]);
    /// let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Excluded(b"a"), Bound::Excluded(b"c"));
    /// assert_eq!(s.range(bounds).count(), 1);
    /// ```
    pub fn range<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> StoreIter<'_> {
        let start: Bound<&[u8]> = range.start_bound().cloned();
        let end: Bound<&[u8]> = range.end_bound().cloned();
        let key_ref = |b: Bound<&'k [u8]>| match b {
            Bound::Included(k) => Bound::Included(k),
            Bound::Excluded(k) => Bound::Excluded(k),
            Bound::Unbounded => Bound::Unbounded,
        };
        let valid = match (start, end) {
            (Bound::Excluded(s), Bound::Excluded(e)) => s < e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
                s <= e
            }
            _ => true,
        };
        if valid {
            StoreIter(self.map.range::<[u8], _>((key_ref(start), key_ref(end))))
        } else {
            // Equal bounds, one included: BTreeMap accepts it and yields nothing.
            let empty: &[u8] = &[];
            StoreIter(
                self.map
                    .range::<[u8], _>((Bound::Included(empty), Bound::Excluded(empty))),
            )
        }
    }

    /// Total bytes of keys and values (excluding the map's own overhead).
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// A 64-bit FNV-1a hash over every entry in key order, lengths included.
    ///
    /// A test aid: two sites whose stores have equal digests almost
    /// certainly hold the same data. Not cryptographic, and O(size).
    pub fn digest(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(PRIME);
            }
        };
        for (k, v) in self.iter() {
            // Lengths make the encoding unambiguous: ("ab","c") differs from ("a","bc").
            feed(&(k.len() as u64).to_le_bytes());
            feed(k);
            feed(&(v.len() as u64).to_le_bytes());
            feed(v);
        }
        h
    }
}

impl<'a> IntoIterator for &'a Store {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = StoreIter<'a>;

    fn into_iter(self) -> StoreIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Store {
    /// Shows the size and digest, and the entries when there are few, so a
    /// failed comparison of big stores stays readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 16;
        let mut d = f.debug_struct("Store");
        d.field("len", &self.len())
            .field("bytes", &self.bytes)
            .field("digest", &format_args!("{:#018x}", self.digest()));
        if self.len() <= SHOWN {
            d.field("entries", &DebugEntries(self));
        }
        d.finish()
    }
}

struct DebugEntries<'a>(&'a Store);

impl fmt::Debug for DebugEntries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // `Borrow<[u8]>` for `Key` is only sound if the orders agree.
        #[test]
        fn key_cmp_is_byte_order(
            common in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
        ) {
            let x = [common.clone(), a].concat();
            let y = [common, b].concat();
            proptest::prop_assert_eq!(key_cmp(&x, &y), x.cmp(&y));
            proptest::prop_assert_eq!(key_cmp(&y, &x), y.cmp(&x));
            proptest::prop_assert_eq!(key_cmp(&x, &x), Ordering::Equal);
        }
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
}
