//! A leaf page: its entries packed back to back in one buffer, in key order.
//!
//! Each entry is its key length (LEB128), its key, then its value; the value
//! ends where the next entry starts. Packing entries this way costs no heap
//! allocation per entry and keeps a leaf's keys close together for search.

use std::cmp::Ordering;
use std::ops::Range;

use super::key::key_cmp;

/// A run of entries in key order, packed in one buffer.
///
/// Offsets are `u32` to keep the per-entry overhead at four bytes. A leaf
/// holding one entry may be of any size (its only offset is 0); inserts and
/// merges that would place an entry beyond `u32::MAX` refuse instead, and the
/// tree then gives the entry a leaf of its own.
#[derive(Clone, Default)]
pub(super) struct Leaf {
    buf: Vec<u8>,
    /// Where each entry starts in `buf`, ascending.
    starts: Vec<u32>,
}

/// Bytes an entry takes in a leaf buffer.
pub(super) fn entry_size(key: &[u8], value: &[u8]) -> usize {
    varint_len(key.len())
        .saturating_add(key.len())
        .saturating_add(value.len())
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut [u8], mut n: usize) -> usize {
    let mut i = 0;
    while n >= 0x80 {
        out[i] = (n as u8) | 0x80;
        n >>= 7;
        i += 1;
    }
    out[i] = n as u8;
    i + 1
}

/// Decodes a length written by [`put_varint`]: (value, bytes it took).
#[inline]
fn get_varint(bytes: &[u8]) -> (usize, usize) {
    // Almost every key is shorter than 128 bytes: one byte, one branch.
    match bytes.first() {
        Some(&b) if b < 0x80 => (usize::from(b), 1),
        _ => {
            let mut n = 0usize;
            for (i, &b) in bytes.iter().enumerate() {
                n |= usize::from(b & 0x7f) << (7 * i);
                if b < 0x80 {
                    return (n, i + 1);
                }
            }
            (n, bytes.len())
        }
    }
}

/// `x` as an offset, if every offset up to it fits in `u32`.
fn offset(x: usize) -> Option<u32> {
    u32::try_from(x).ok()
}

impl Leaf {
    /// An empty leaf.
    pub(super) fn new() -> Leaf {
        Leaf {
            buf: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// A leaf holding only `key` = `value`, with room for `room_bytes` and
    /// `room_entries` in all.
    pub(super) fn single(key: &[u8], value: &[u8], room_bytes: usize, room_entries: usize) -> Leaf {
        let mut leaf = Leaf {
            buf: Vec::with_capacity(entry_size(key, value).max(room_bytes)),
            starts: Vec::with_capacity(room_entries.max(1)),
        };
        // An empty leaf takes any entry: its only offset is 0.
        leaf.push(key, value);
        leaf
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Bytes of the buffer in use: what the leaf's size budget limits.
    pub(super) fn bytes(&self) -> usize {
        self.buf.len()
    }

    fn span(&self, i: usize) -> Range<usize> {
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.buf.len(), |&s| s as usize);
        start..end
    }

    /// Entry `i` split into its key and value.
    #[inline]
    pub(super) fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let span = self.span(i);
        let (klen, hdr) = get_varint(&self.buf[span.start..span.end]);
        let key_end = span.start + hdr + klen;
        (
            &self.buf[span.start + hdr..key_end],
            &self.buf[key_end..span.end],
        )
    }

    /// The key of the entry starting at `start`.
    #[inline]
    fn key_at(&self, start: u32) -> &[u8] {
        let start = start as usize;
        let (klen, hdr) = get_varint(&self.buf[start..]);
        &self.buf[start + hdr..start + hdr + klen]
    }

    #[inline]
    pub(super) fn key(&self, i: usize) -> &[u8] {
        self.key_at(self.starts[i])
    }

    pub(super) fn first_key(&self) -> Option<&[u8]> {
        self.starts.first().map(|&s| self.key_at(s))
    }

    /// Whether the two hold the same entries (compared as packed).
    pub(super) fn same_entries(&self, other: &Leaf) -> bool {
        self.starts == other.starts && self.buf == other.buf
    }

    pub(super) fn last_key(&self) -> Option<&[u8]> {
        self.starts.last().map(|&s| self.key_at(s))
    }

    /// Where `key` is (`Ok`) or would go (`Err`).
    #[inline]
    pub(super) fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match key_cmp(self.key(mid), key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The number of leading entries whose keys are below `key`, or, with
    /// `inclusive`, at or below it.
    pub(super) fn rank(&self, key: &[u8], inclusive: bool) -> usize {
        match self.search(key) {
            Ok(i) if inclusive => i + 1,
            Ok(i) | Err(i) => i,
        }
    }

    /// Makes room for `total` bytes. A leaf grows a little at a time, not
    /// by doubling: leaves are many and each stays near one size, so
    /// doubling would leave up to half of every buffer unused.
    fn make_room(&mut self, total: usize) {
        if total > self.buf.capacity() {
            let want = total.saturating_add(total / 8);
            self.buf.reserve_exact(want - self.buf.len());
        }
    }

    /// Appends an entry after the last. Returns false, changing nothing,
    /// if its start would not fit in an offset.
    fn push(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some(start) = offset(self.buf.len()) else {
            return false;
        };
        self.make_room(self.buf.len().saturating_add(entry_size(key, value)));
        self.starts.push(start);
        match u8::try_from(key.len()) {
            // Almost every key is shorter than 128 bytes: a one-byte length,
            // pushed without a call to copy it.
            Ok(n) if n < 0x80 => self.buf.push(n),
            _ => {
                let mut len = [0u8; 10];
                let n = put_varint(&mut len, key.len());
                self.buf.extend_from_slice(&len[..n]);
            }
        }
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        true
    }

    /// Appends `key` = `value` if the leaf already holds an entry, `key`
    /// comes after its last, and the leaf stays within `most_entries` and
    /// `most_bytes`; returns whether it did. The checks of an append, and
    /// nothing else, for a put to the store's tail.
    #[inline]
    pub(super) fn push_after_last(
        &mut self,
        key: &[u8],
        value: &[u8],
        most_entries: usize,
        most_bytes: usize,
    ) -> bool {
        let Some(&last) = self.starts.last() else {
            return false;
        };
        self.starts.len() < most_entries
            && self.buf.len().saturating_add(entry_size(key, value)) <= most_bytes
            && key_cmp(self.key_at(last), key).is_lt()
            && self.push(key, value)
    }

    /// Inserts `key` = `value` as entry `i`, which must keep keys in order.
    /// Returns false, changing nothing, if the leaf would outgrow its
    /// offsets.
    pub(super) fn insert(&mut self, i: usize, key: &[u8], value: &[u8]) -> bool {
        let size = entry_size(key, value);
        let Some(total) = self.buf.len().checked_add(size) else {
            return false;
        };
        if !self.is_empty() && offset(total).is_none() {
            return false;
        }
        if i == self.len() {
            // Appends are the common case for keys written in order.
            return self.push(key, value);
        }
        let at = self.starts[i] as usize;
        self.make_room(total);
        self.buf.resize(total, 0);
        self.buf.copy_within(at..total - size, at + size);
        let n = put_varint(&mut self.buf[at..], key.len());
        let key_end = at + n + key.len();
        self.buf[at + n..key_end].copy_from_slice(key);
        self.buf[key_end..at + size].copy_from_slice(value);
        // `total` fits, so every start below it does too.
        self.starts.insert(i, at as u32);
        for s in &mut self.starts[i + 1..] {
            *s += size as u32;
        }
        true
    }

    /// Replaces the value of entry `i`. Returns false, changing nothing, if
    /// the leaf would outgrow its offsets.
    pub(super) fn set_value(&mut self, i: usize, value: &[u8]) -> bool {
        let span = self.span(i);
        let (klen, hdr) = get_varint(&self.buf[span.start..span.end]);
        let at = span.start + hdr + klen;
        let old = span.end - at;
        let tail = self.buf.len() - span.end;
        let Some(total) = (at + tail).checked_add(value.len()) else {
            return false;
        };
        if self.len() > 1 && offset(total).is_none() {
            return false;
        }
        if value.len() > old {
            self.make_room(total);
            self.buf.resize(total, 0);
            self.buf
                .copy_within(span.end..span.end + tail, at + value.len());
        } else {
            self.buf.copy_within(span.end.., at + value.len());
            self.buf.truncate(total);
        }
        self.buf[at..at + value.len()].copy_from_slice(value);
        // Later starts lie below `total`, which fits.
        for s in &mut self.starts[i + 1..] {
            *s = (*s as usize + value.len() - old) as u32;
        }
        true
    }

    /// Removes entry `i`; returns the length of its value.
    pub(super) fn remove(&mut self, i: usize) -> usize {
        let span = self.span(i);
        let size = span.len();
        let (klen, hdr) = get_varint(&self.buf[span.start..span.end]);
        self.buf.drain(span);
        self.starts.remove(i);
        for s in &mut self.starts[i..] {
            *s -= size as u32;
        }
        size - hdr - klen
    }

    /// Moves entries `at..` into a new leaf.
    pub(super) fn split_off(&mut self, at: usize) -> Leaf {
        let Some(&cut) = self.starts.get(at) else {
            return Leaf::new();
        };
        let buf = self.buf.split_off(cut as usize);
        let mut starts = self.starts.split_off(at);
        for s in &mut starts {
            *s -= cut;
        }
        // A leaf splits when it has just outgrown its budget: the part that
        // stays would keep a buffer sized for the whole.
        if self.buf.capacity() > 2 * self.buf.len() {
            self.buf.shrink_to_fit();
        }
        Leaf { buf, starts }
    }

    /// Appends the entries of `other`, whose keys must all be greater.
    /// Returns false, changing nothing, if the leaf would outgrow its
    /// offsets.
    pub(super) fn append(&mut self, other: &Leaf) -> bool {
        let base = self.buf.len();
        let fits = match other.starts.last() {
            None => true,
            Some(&last) => offset(base).and_then(|b| b.checked_add(last)).is_some(),
        };
        if !fits {
            return false;
        }
        self.make_room(base + other.buf.len());
        self.buf.extend_from_slice(&other.buf);
        self.starts
            .extend(other.starts.iter().map(|&s| s + base as u32));
        true
    }

    /// Bytes of the entries before entry `cut`.
    pub(super) fn cut_bytes(&self, cut: usize) -> usize {
        self.starts.get(cut).map_or(self.buf.len(), |&s| s as usize)
    }

    /// The entry index that splits the leaf's bytes most evenly, leaving at
    /// least one entry on each side (given two or more).
    pub(super) fn byte_middle(&self) -> usize {
        let (n, total) = (self.len(), self.buf.len());
        // The first cut with at least half the bytes on its left, or the
        // one before it, whichever is nearer the middle.
        let k = self
            .starts
            .partition_point(|&s| (s as usize).saturating_mul(2) < total);
        let best = [k.saturating_sub(1), k]
            .into_iter()
            .min_by_key(|&cut| self.cut_bytes(cut).saturating_mul(2).abs_diff(total))
            .unwrap_or(k);
        best.clamp(1, n.saturating_sub(1).max(1))
    }

    /// Checks the buffer's layout, for tests: returns the sum of key and
    /// value lengths.
    #[cfg(test)]
    pub(super) fn check_layout(&self) -> usize {
        let mut sum = 0;
        assert_eq!(self.starts.first().copied().unwrap_or(0), 0);
        for i in 0..self.len() {
            let span = self.span(i);
            assert!(span.start <= span.end, "starts ascend");
            let (k, v) = self.entry(i);
            assert_eq!(entry_size(k, v), span.len(), "entry {i} fills its span");
            sum += k.len() + v.len();
        }
        sum
    }
}
