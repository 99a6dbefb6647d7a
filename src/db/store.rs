//! The in-memory ordered key-value store every site keeps.
//!
//! The store is a copy-on-write B+tree (`tree`) whose leaves are packed
//! pages (`leaf`), so that a clone costs one reference count and an entry
//! costs no allocation of its own. The greatest entries wait in one more
//! leaf outside the tree, the tail, so that keys written in ascending order
//! reach the tree a whole leaf at a time.

mod catalog;
mod group;
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

use super::txn::{validate_ops, DbOpRef, OpLimits, OpSink, ValidOps};
use crate::error::Result;
pub use iter::StoreIter;
use key::{key_cmp, separator};
use leaf::{entry_size, Leaf};
use tree::{Edge, Node, Put, Shape, Write, SHAPE};

/// An ordered map from byte keys to byte values.
///
/// Sites keep one each; replication keeps them equal by applying the same
/// commit payloads in the same order.
///
/// Cloning costs O(1), whatever the size: the clone shares the whole tree
/// and copies only the tail (at most one leaf, 8 KiB), and each later write,
/// to either copy, copies only the nodes on its path that are still shared
/// (copy-on-write). A checkpoint can so freeze the store while writes go on.
pub struct Store {
    root: Option<Arc<Node>>,
    /// The greatest entries, kept out of the tree: every key here is above
    /// every key under `root`. Keys written in ascending order (a counter,
    /// a timestamp) land here with one comparison, no descent and no
    /// reference-count traffic: on the tree every write checks each node on
    /// its path for sharing, an atomic operation per level. A full tail
    /// joins the tree whole, as its new rightmost leaf.
    tail: Leaf,
    len: usize,
    /// Sum of key and value lengths, kept up to date so that
    /// [`Store::approx_bytes`] is O(1).
    bytes: usize,
    shape: Shape,
    /// The greatest key under `root`, when `root_last_known`: while the
    /// tail is empty, a key above it starts the tail.
    root_last: Vec<u8>,
    /// Cleared when that key is deleted and in clones (so that a clone
    /// allocates no more than it must); found again when next needed.
    root_last_known: bool,
    /// The named databases (see `catalog`); `None` until one is created.
    catalog: Option<Arc<catalog::Catalog>>,
    /// The replicated group membership (see `group`); `None` until a
    /// membership record is applied.
    group: Option<Arc<group::GroupSlot>>,
    /// Tells this store apart from every other, clones included (see
    /// [`Store::instance_id`]).
    instance: u64,
}

/// Gives out [`Store::instance_id`]s.
static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn new_instance() -> u64 {
    NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Clone for Store {
    fn clone(&self) -> Store {
        Store {
            root: self.root.clone(),
            tail: self.tail.clone(),
            len: self.len,
            bytes: self.bytes,
            shape: self.shape,
            root_last: Vec::new(),
            root_last_known: false,
            catalog: self.catalog.clone(),
            group: self.group.clone(),
            instance: new_instance(),
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
            && ((same_tree && self.tail.same_entries(&other.tail)) || self.iter().eq(other.iter()))
            && self.same_catalog(other)
            && self.group == other.group
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
            tail: Leaf::new(),
            len: 0,
            bytes: 0,
            shape,
            root_last: Vec::new(),
            root_last_known: false,
            catalog: None,
            group: None,
            instance: new_instance(),
        }
    }

    /// Unique to this store value in the process: a clone, or a store
    /// rebuilt or decoded, has another. Changing a store in place keeps it,
    /// so a site whose store was replaced (a rollback rebuilds it, a
    /// snapshot install decodes one) shows a new id: what tells a reader
    /// that the snapshot it holds may hold writes that were undone.
    pub fn instance_id(&self) -> u64 {
        self.instance
    }

    /// Makes `root_last` the tree's greatest key; false if the tree is empty.
    fn find_root_last(&mut self) -> bool {
        if !self.root_last_known {
            let Some(last) = self.root.as_deref().and_then(Node::last_key) else {
                return false;
            };
            self.root_last.clear();
            self.root_last.extend_from_slice(last);
            self.root_last_known = true;
        }
        true
    }

    /// Whether `key` lies in the tail's range: at or above its first key,
    /// or, while it is empty, above every key of the tree.
    #[inline]
    fn in_tail(&mut self, key: &[u8]) -> bool {
        if let Some(first) = self.tail.first_key() {
            return key_cmp(key, first).is_ge();
        }
        !self.find_root_last() || key_cmp(&self.root_last, key).is_lt()
    }

    /// Whether `key` lies in the tail's range, for reads.
    #[inline]
    fn in_tail_ro(&self, key: &[u8]) -> bool {
        self.tail
            .first_key()
            .is_some_and(|first| key_cmp(key, first).is_ge())
    }

    /// Puts `key`, which lies in the tail's range, into the tail, if the
    /// tail can take it. Otherwise moves the tail into the tree, where the
    /// key must then go, and returns false.
    fn put_tail(&mut self, key: &[u8], value: &[u8]) -> bool {
        let shape = self.shape;
        let size = entry_size(key, value);
        if size <= shape.leaf_bytes {
            let tail = &mut self.tail;
            let found = match tail.last_key() {
                Some(last) if key_cmp(last, key).is_lt() => Err(tail.len()),
                Some(_) => tail.search(key),
                None => Err(0),
            };
            match found {
                Err(i) => {
                    let fits = shape.leaf_part_fits(tail.len() + 1, tail.bytes() + size);
                    let appends = i == tail.len();
                    let inserted = if tail.is_empty() {
                        // Room for as many entries of this size as a leaf
                        // takes, so that the tail is allocated once.
                        let entries = (shape.leaf_bytes / size.max(1)).clamp(1, shape.leaf_entries);
                        *tail = Leaf::single(key, value, entries * size, entries);
                        true
                    } else if fits {
                        tail.insert(i, key, value)
                    } else if appends {
                        // Full: the tail joins the tree and the key starts
                        // the next one.
                        self.flush_tail();
                        return self.put_tail(key, value);
                    } else {
                        false
                    };
                    if inserted {
                        self.len += 1;
                        self.bytes += key.len() + value.len();
                        return true;
                    }
                }
                Ok(i) => {
                    let old = tail.entry(i).1.len();
                    let fits = shape.leaf_part_fits(tail.len(), tail.bytes() - old + value.len());
                    if fits && tail.set_value(i, value) {
                        self.bytes = self.bytes + value.len() - old;
                        return true;
                    }
                }
            }
        }
        self.flush_tail();
        false
    }

    /// Moves the tail into the tree as its rightmost leaf.
    fn flush_tail(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        let tail = std::mem::take(&mut self.tail);
        let sep = if self.find_root_last() {
            separator(&self.root_last, tail.key(0))
        } else {
            Box::default()
        };
        self.root_last.clear();
        self.root_last
            .extend_from_slice(tail.last_key().unwrap_or_default());
        self.root_last_known = true;
        tree::push_last(&mut self.root, sep, tail, &self.shape);
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        if self.in_tail_ro(key) {
            let i = self.tail.search(key).ok()?;
            return Some(self.tail.entry(i).1);
        }
        self.root.as_deref()?.get(key)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        // Keys written in ascending order: after the tail's last, with room.
        let (most_entries, most_bytes) = (self.shape.leaf_entries, self.shape.leaf_bytes);
        if self
            .tail
            .push_after_last(key, value, most_entries, most_bytes)
        {
            self.len += 1;
            self.bytes += key.len() + value.len();
            return;
        }
        if self.in_tail(key) && self.put_tail(key, value) {
            return;
        }
        let shape = self.shape;
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
                if self.root_last_known && key_cmp(&self.root_last, key).is_lt() {
                    self.root_last.clear();
                    self.root_last.extend_from_slice(key);
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
        if self.in_tail_ro(key) {
            let Ok(i) = self.tail.search(key) else {
                return false;
            };
            let old = self.tail.remove(i);
            self.len -= 1;
            self.bytes -= key.len() + old;
            return true;
        }
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
        if self.root_last_known && key_cmp(key, &self.root_last).is_eq() {
            self.root_last_known = false;
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
    #[inline(always)]
    pub fn apply_ops(&mut self, ops: ValidOps<'_>) {
        ops.walk(self);
    }

    /// Number of keys (of this database; named databases count apart).
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
            &self.tail,
            Bound::Unbounded,
            Bound::Unbounded,
            self.len - self.tail.len(),
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
        StoreIter::new(
            self.root.as_deref(),
            &self.tail,
            start,
            end,
            self.len - self.tail.len(),
            false,
        )
    }

    /// Total bytes of keys and values (excluding the tree's own overhead).
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.root = None;
        self.tail = Leaf::new();
        self.len = 0;
        self.bytes = 0;
        self.root_last_known = false;
        self.catalog = None;
        self.group = None;
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
        // Named databases, after the default one's entries; a store without
        // any keeps the digest it always had.
        if let Some((next_id, dbs)) = self.catalog_for_snapshot() {
            feed(&next_id.to_le_bytes());
            for (id, name, store) in dbs {
                feed(&id.to_le_bytes());
                feed(&(name.len() as u64).to_le_bytes());
                feed(name);
                feed(&store.digest().to_le_bytes());
            }
        }
        if let Some((lsn, bytes)) = self.group_bytes() {
            feed(b"group");
            feed(&lsn.to_u64().to_le_bytes());
            feed(bytes);
        }
        h
    }
}

impl<'a> OpSink<'a> for Store {
    #[inline(always)]
    fn put(&mut self, key: &'a [u8], value: &'a [u8]) {
        Store::put(self, key, value);
    }

    #[inline(always)]
    fn delete(&mut self, key: &'a [u8]) {
        Store::delete(self, key);
    }

    fn other(&mut self, op: DbOpRef<'a>) {
        self.apply_db_op(op);
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
