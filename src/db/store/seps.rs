//! The separator keys of a branch, searchable mostly without following a
//! pointer.

use std::cmp::Ordering;

use super::key::key_cmp;

/// Separator keys in ascending order, each with its first eight bytes kept
/// inline as a big-endian integer. Comparing those integers settles almost
/// every comparison of a search; only ties read the key itself, which
/// lives in an allocation of its own.
#[derive(Clone, Default)]
pub(super) struct Seps {
    heads: Vec<u64>,
    keys: Vec<Box<[u8]>>,
}

/// The first eight bytes of `key`, zero-padded, as a big-endian integer: it
/// orders keys as their bytes do, except that it cannot tell a key from the
/// same key followed by zero bytes, which is then left to the full compare.
#[inline]
fn head(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(bytes)
}

impl Seps {
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(super) fn get(&self, i: usize) -> Option<&[u8]> {
        self.keys.get(i).map(|k| &k[..])
    }

    /// How many separators are at or below `key`: the index of the child
    /// whose range holds it.
    #[inline]
    pub(super) fn rank(&self, key: &[u8]) -> usize {
        let kh = head(key);
        // Keys written in ascending order land past the last separator.
        if self.heads.last().map_or(true, |&last| last < kh) {
            return self.heads.len();
        }
        // The heads settle every separator but those whose head equals the
        // key's; those come last among the ones at or below by head, and
        // are few, so they are checked one by one from the end.
        let mut rank = self.heads.partition_point(|&h| h <= kh);
        while rank > 0
            && self.heads[rank - 1] == kh
            && key_cmp(&self.keys[rank - 1], key) == Ordering::Greater
        {
            rank -= 1;
        }
        rank
    }

    pub(super) fn insert(&mut self, i: usize, key: Box<[u8]>) {
        self.heads.insert(i, head(&key));
        self.keys.insert(i, key);
    }

    pub(super) fn push(&mut self, key: Box<[u8]>) {
        self.insert(self.len(), key);
    }

    pub(super) fn remove(&mut self, i: usize) -> Box<[u8]> {
        self.heads.remove(i);
        self.keys.remove(i)
    }

    pub(super) fn pop(&mut self) -> Option<Box<[u8]>> {
        self.heads.pop();
        self.keys.pop()
    }

    pub(super) fn set(&mut self, i: usize, key: Box<[u8]>) {
        self.heads[i] = head(&key);
        self.keys[i] = key;
    }

    /// Moves separators `at..` into a new list.
    pub(super) fn split_off(&mut self, at: usize) -> Seps {
        Seps {
            heads: self.heads.split_off(at),
            keys: self.keys.split_off(at),
        }
    }

    pub(super) fn append(&mut self, other: &Seps) {
        self.heads.extend_from_slice(&other.heads);
        self.keys.extend(other.keys.iter().cloned());
    }
}
