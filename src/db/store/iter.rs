//! Iteration over a store in key order, from either end.

use std::cmp::Ordering;
use std::ops::Bound;

use super::key::key_cmp;
use super::leaf::Leaf;
use super::tree::{Branch, Node};

/// Iterator over `(key, value)` pairs of a [`Store`](super::Store), in key
/// order, from the front or (with `next_back`) the back.
pub struct StoreIter<'a> {
    tree: TreeIter<'a>,
    /// The store's tail, whose keys follow every key of the tree.
    tail: &'a Leaf,
    /// The tail's entries still to yield: `front..back`.
    front: usize,
    back: usize,
}

/// The part of a [`StoreIter`] that walks the tree.
struct TreeIter<'a> {
    /// The next entry from the front and the next from the back; `None`
    /// once they have passed each other.
    ends: Option<(Cursor<'a>, Cursor<'a>)>,
    /// Most entries left to yield.
    most: usize,
    /// Whether `most` is exact (the iteration covers the whole store).
    exact: bool,
}

/// A position on one entry of the tree.
struct Cursor<'a> {
    /// The branches from the root down, each with the index of the child
    /// the cursor is in; what finds the next leaf, as leaves have no links
    /// (they may be shared between several trees).
    path: Vec<(&'a Branch, usize)>,
    leaf: &'a Leaf,
    idx: usize,
}

impl<'a> Cursor<'a> {
    /// The first entry at or after `bound` (`forward`), or the last at or
    /// before it.
    fn seek(root: &'a Node, bound: Bound<&[u8]>, forward: bool) -> Option<Cursor<'a>> {
        let mut path = Vec::new();
        let mut node = root;
        let leaf = loop {
            match node {
                Node::Branch(b) => {
                    let ci = match bound {
                        Bound::Included(k) | Bound::Excluded(k) => b.child_index(k),
                        Bound::Unbounded if forward => 0,
                        Bound::Unbounded => b.kids.len().saturating_sub(1),
                    };
                    path.push((b, ci));
                    node = b.kids.get(ci)?;
                }
                Node::Leaf(l) => break l,
            }
        };
        // How many of the leaf's entries come before the position: for the
        // front, those outside the bound; for the back, those inside it.
        let before = match bound {
            Bound::Included(k) => leaf.rank(k, !forward),
            Bound::Excluded(k) => leaf.rank(k, forward),
            Bound::Unbounded if forward => 0,
            Bound::Unbounded => leaf.len(),
        };
        let mut cursor = Cursor {
            path,
            leaf,
            idx: before,
        };
        if forward && before < leaf.len() {
            return Some(cursor);
        }
        if !forward && before > 0 {
            cursor.idx = before - 1;
            return Some(cursor);
        }
        cursor.next_leaf(forward).map(|()| cursor)
    }

    fn entry(&self) -> (&'a [u8], &'a [u8]) {
        self.leaf.entry(self.idx)
    }

    fn is_at(&self, other: &Cursor<'_>) -> bool {
        std::ptr::eq(self.leaf, other.leaf) && self.idx == other.idx
    }

    /// Moves one entry on; `None` past the last one.
    fn step(&mut self, forward: bool) -> Option<()> {
        if forward && self.idx + 1 < self.leaf.len() {
            self.idx += 1;
            return Some(());
        }
        if !forward && self.idx > 0 {
            self.idx -= 1;
            return Some(());
        }
        self.next_leaf(forward)
    }

    /// Moves to the nearest entry of the next non-empty leaf.
    fn next_leaf(&mut self, forward: bool) -> Option<()> {
        loop {
            let (branch, ci) = self.path.last_mut()?;
            let branch: &'a Branch = branch;
            let next = if forward {
                Some(*ci + 1).filter(|&c| c < branch.kids.len())
            } else {
                ci.checked_sub(1)
            };
            let Some(next) = next else {
                self.path.pop();
                continue;
            };
            *ci = next;
            let mut node: &'a Node = &branch.kids[next];
            // Down the near side of the subtree; an empty leaf or branch on
            // the way only sends the search on to the following one.
            while let Node::Branch(b) = node {
                let c = if forward {
                    0
                } else {
                    b.kids.len().saturating_sub(1)
                };
                self.path.push((b, c));
                match b.kids.get(c) {
                    Some(kid) => node = kid,
                    None => break,
                }
            }
            if let Node::Leaf(l) = node {
                if let Some(last) = l.len().checked_sub(1) {
                    self.leaf = l;
                    self.idx = if forward { 0 } else { last };
                    return Some(());
                }
            }
        }
    }
}

impl<'a> StoreIter<'a> {
    /// The entries of the tree under `root` (holding `len` entries), then
    /// of `tail`, between `start` and `end`; `exact` when the bounds take
    /// in every entry.
    pub(super) fn new(
        root: Option<&'a Node>,
        tail: &'a Leaf,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        len: usize,
        exact: bool,
    ) -> StoreIter<'a> {
        let front = match start {
            Bound::Included(k) => tail.rank(k, false),
            Bound::Excluded(k) => tail.rank(k, true),
            Bound::Unbounded => 0,
        };
        let back = match end {
            Bound::Included(k) => tail.rank(k, true),
            Bound::Excluded(k) => tail.rank(k, false),
            Bound::Unbounded => tail.len(),
        };
        StoreIter {
            tree: TreeIter::new(root, start, end, len, exact),
            tail,
            front,
            // Inverted bounds leave nothing between them.
            back: back.max(front),
        }
    }
}

impl<'a> Iterator for StoreIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.tree.take(true) {
            return Some(item);
        }
        if self.front < self.back {
            self.front += 1;
            return Some(self.tail.entry(self.front - 1));
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.tree.size_hint();
        let more = self.back - self.front;
        (lo + more, hi.map(|h| h + more))
    }
}

impl DoubleEndedIterator for StoreIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front < self.back {
            self.back -= 1;
            return Some(self.tail.entry(self.back));
        }
        self.tree.take(false)
    }
}

impl<'a> TreeIter<'a> {
    fn new(
        root: Option<&'a Node>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        len: usize,
        exact: bool,
    ) -> TreeIter<'a> {
        let ends = root.and_then(|root| {
            let front = Cursor::seek(root, start, true)?;
            let back = Cursor::seek(root, end, false)?;
            // Bounds inverted, or with no key between them.
            let crossed = key_cmp(front.entry().0, back.entry().0) == Ordering::Greater;
            (!crossed).then_some((front, back))
        });
        let most = if ends.is_some() { len } else { 0 };
        TreeIter { ends, most, exact }
    }

    /// Yields the entry at the front or back cursor and moves it on.
    fn take(&mut self, forward: bool) -> Option<(&'a [u8], &'a [u8])> {
        let (front, back) = self.ends.as_mut()?;
        let (from, other) = if forward {
            (front, &*back)
        } else {
            (back, &*front)
        };
        let item = from.entry();
        if from.is_at(other) || from.step(forward).is_none() {
            self.ends = None;
            self.most = 0;
        } else {
            self.most = self.most.saturating_sub(1);
        }
        Some(item)
    }
}

impl TreeIter<'_> {
    fn size_hint(&self) -> (usize, Option<usize>) {
        (if self.exact { self.most } else { 0 }, Some(self.most))
    }
}
