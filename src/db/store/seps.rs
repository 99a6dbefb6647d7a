//! The separator keys of a branch, searchable mostly without following a
//! pointer.

use std::cmp::Ordering;

use super::key::key_cmp;

/// Separator keys in ascending order, each with eight of its bytes kept
/// inline as a big-endian integer (its head). Comparing heads settles
/// almost every comparison of a search; only ties read the key itself,
/// which lives in an allocation of its own.
///
/// Heads are taken after the prefix that every separator shares, so keys
/// such as `user:000123` still differ in their heads.
#[derive(Clone, Default)]
pub(super) struct Seps {
    /// Length of the prefix all the separators share.
    shared: usize,
    heads: Vec<u64>,
    keys: Vec<Box<[u8]>>,
}

/// Eight bytes of `key` from `from` on, zero-padded, as a big-endian
/// integer: it orders keys with the same first `from` bytes as their bytes
/// do, except that it cannot tell a key from the same key followed by zero
/// bytes, which is then left to the full compare.
#[inline]
fn head(key: &[u8], from: usize) -> u64 {
    let rest = key.get(from..).unwrap_or_default();
    let mut bytes = [0u8; 8];
    let n = rest.len().min(8);
    bytes[..n].copy_from_slice(&rest[..n]);
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
        let Some(first) = self.keys.first() else {
            return 0;
        };
        let prefix = &first[..self.shared.min(first.len())];
        match key_cmp(&key[..self.shared.min(key.len())], prefix) {
            Ordering::Less => return 0,
            Ordering::Greater => return self.len(),
            Ordering::Equal => {}
        }
        let kh = head(key, self.shared);
        // Keys written in ascending order land past the last separator.
        if self.heads.last().map_or(true, |&last| last < kh) {
            return self.heads.len();
        }
        let at_or_below = self.heads.partition_point(|&h| h <= kh);
        if at_or_below == 0 || self.heads[at_or_below - 1] != kh {
            return at_or_below;
        }
        // Separators whose head equals the key's are told apart by their
        // whole keys.
        let tied = self.heads[..at_or_below].partition_point(|&h| h < kh);
        tied + self.keys[tied..at_or_below]
            .partition_point(|k| key_cmp(k, key) != Ordering::Greater)
    }

    /// Brings `shared` and the heads up to date after the first or last
    /// separator changed.
    fn reprefix(&mut self) {
        let shared = match (self.keys.first(), self.keys.last()) {
            (Some(a), Some(b)) => a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count(),
            _ => 0,
        };
        if shared != self.shared {
            self.shared = shared;
            self.heads = self.keys.iter().map(|k| head(k, shared)).collect();
        }
    }

    pub(super) fn insert(&mut self, i: usize, key: Box<[u8]>) {
        let ends = i == 0 || i == self.len();
        self.heads.insert(i, head(&key, self.shared));
        self.keys.insert(i, key);
        if ends {
            self.reprefix();
        }
    }

    pub(super) fn push(&mut self, key: Box<[u8]>) {
        self.insert(self.len(), key);
    }

    pub(super) fn remove(&mut self, i: usize) -> Box<[u8]> {
        self.heads.remove(i);
        let key = self.keys.remove(i);
        self.reprefix();
        key
    }

    pub(super) fn pop(&mut self) -> Option<Box<[u8]>> {
        self.heads.pop();
        let key = self.keys.pop();
        self.reprefix();
        key
    }

    pub(super) fn set(&mut self, i: usize, key: Box<[u8]>) {
        self.heads[i] = head(&key, self.shared);
        self.keys[i] = key;
        self.reprefix();
    }

    /// Moves separators `at..` into a new list.
    pub(super) fn split_off(&mut self, at: usize) -> Seps {
        let mut right = Seps {
            shared: self.shared,
            heads: self.heads.split_off(at),
            keys: self.keys.split_off(at),
        };
        self.reprefix();
        right.reprefix();
        right
    }

    pub(super) fn append(&mut self, other: &Seps) {
        self.keys.extend(other.keys.iter().cloned());
        self.heads
            .extend(other.keys.iter().map(|k| head(k, self.shared)));
        self.reprefix();
    }
}

#[cfg(test)]
impl Seps {
    /// Checks that every separator has the shared prefix and its head.
    pub(super) fn check(&self) {
        assert_eq!(
            self.heads.len(),
            self.keys.len(),
            "a head for each separator"
        );
        let prefix = self.keys.first().map(|k| &k[..self.shared]);
        for (k, &h) in self.keys.iter().zip(&self.heads) {
            assert_eq!(
                Some(&k[..self.shared]),
                prefix,
                "separators share the prefix"
            );
            assert_eq!(h, head(k, self.shared), "head of {k:?}");
        }
    }
}
