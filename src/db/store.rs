//! The in-memory ordered key-value store every site keeps.
//!
//! The store is a copy-on-write B+tree (`tree`) whose leaves are packed
//! pages (`leaf`), so that a clone costs one reference count and an entry
//! costs no allocation of its own.

mod iter;
mod key;
mod leaf;
mod seps;
mod tree;

#[cfg(test)]
mod check;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::txn::{validate_ops, OpLimits, OpRef, ValidOps};
use crate::error::Result;
pub use iter::StoreIter;
use key::key_cmp;
use tree::{Edge, Node, Put, Shape, Write, SHAPE};

/// An ordered map from byte keys to byte values.
///
/// Sites keep one each; replication keeps them equal by applying the same
/// commit payloads in the same order.
///
/// Cloning is O(1): the clone shares the whole tree, and each later write,
/// to either copy, copies only the nodes on its path that are still shared
/// (copy-on-write). A checkpoint can so freeze the store while writes go on.
pub struct Store {
    root: Option<Arc<Node>>,
    len: usize,
    /// Sum of key and value lengths, kept up to date so that
    /// [`Store::approx_bytes`] is O(1).
    bytes: usize,
    shape: Shape,
    /// The greatest key, when `last_known`, so that a put can tell with one
    /// comparison that its key goes after every other (keys written in
    /// ascending order) and take [`tree::append_last`].
    last: Vec<u8>,
    /// Whether `last` is the greatest key. Cleared when that key is deleted
    /// and in clones (so that a clone allocates nothing); the next put
    /// finds it again.
    last_known: bool,
}

impl Clone for Store {
    fn clone(&self) -> Store {
        Store {
            root: self.root.clone(),
            len: self.len,
            bytes: self.bytes,
            shape: self.shape,
            last: Vec::new(),
            last_known: false,
        }
    }
}

impl Default for Store {
    fn default() -> Store {
        Store::with_shape(SHAPE)
    }
}

impl PartialEq for Store {
    /// Equal when they hold the same entries, however their trees are shaped.
    fn eq(&self, other: &Store) -> bool {
        let same_tree = match (&self.root, &other.root) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.len == other.len
            && self.bytes == other.bytes
            && (same_tree || self.iter().eq(other.iter()))
    }
}

impl Eq for Store {}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    fn with_shape(shape: Shape) -> Store {
        Store {
            root: None,
            len: 0,
            bytes: 0,
            shape,
            last: Vec::new(),
            last_known: false,
        }
    }

    /// Whether `key` goes after every key in the store (false when empty).
    #[inline]
    fn after_last(&mut self, key: &[u8]) -> bool {
        if !self.last_known {
            let Some(last) = self.root.as_deref().and_then(Node::last_key) else {
                return false;
            };
            self.last.clear();
            self.last.extend_from_slice(last);
            self.last_known = true;
        }
        key_cmp(&self.last, key).is_lt()
    }

    /// Records `key`, just inserted, as the greatest key if it is.
    #[inline]
    fn set_last(&mut self, key: &[u8]) {
        self.last.clear();
        self.last.extend_from_slice(key);
        self.last_known = true;
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.root.as_deref()?.get(key)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        let shape = self.shape;
        let after_last = self.after_last(key);
        if after_last {
            if let Some(root) = self.root.as_mut() {
                if tree::append_last(root, key, value, &shape) {
                    self.len += 1;
                    self.bytes += key.len() + value.len();
                    self.set_last(key);
                    return;
                }
            }
        }
        let root = self
            .root
            .get_or_insert_with(|| Arc::new(Node::Leaf(Default::default())));
        let mut pieces = Vec::new();
        let write = Write {
            key,
            value,
            shape: &shape,
        };
        let put = Arc::make_mut(root).put(write, Edge::ROOT, &mut pieces);
        if !pieces.is_empty() {
            if let Some(root) = self.root.take() {
                self.root = Some(tree::grow(root, pieces, &shape));
            }
        }
        match put {
            Put::Inserted => {
                self.len += 1;
                self.bytes += key.len() + value.len();
                // A store that was empty has its first key as its greatest;
                // otherwise `after_last` left `last` known.
                if after_last || self.len == 1 {
                    self.set_last(key);
                }
            }
            Put::Replaced { old, shrank } => {
                self.bytes = self.bytes + value.len() - old;
                if shrank {
                    tree::shrink(&mut self.root);
                }
            }
        }
    }

    /// Removes `key`; returns whether it was present.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        let shape = self.shape;
        let Some(root) = self.root.as_mut() else {
            return false;
        };
        // Deleting a missing key must not copy a root shared with a clone.
        if Arc::get_mut(root).is_none() && root.get(key).is_none() {
            return false;
        }
        let Some(old) = Arc::make_mut(root).delete(key, &shape) else {
            return false;
        };
        self.len -= 1;
        self.bytes -= key.len() + old;
        if self.last_known && key_cmp(key, &self.last).is_eq() {
            self.last_known = false;
        }
        tree::shrink(&mut self.root);
        true
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
        self.len
    }

    /// True when the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every `(key, value)` pair, in key order.
    pub fn iter(&self) -> StoreIter<'_> {
        StoreIter::new(
            self.root.as_deref(),
            Bound::Unbounded,
            Bound::Unbounded,
            self.len,
            true,
        )
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
        StoreIter::new(self.root.as_deref(), start, end, self.len, false)
    }

    /// Total bytes of keys and values (excluding the tree's own overhead).
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.root = None;
        self.len = 0;
        self.bytes = 0;
        self.last_known = false;
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
