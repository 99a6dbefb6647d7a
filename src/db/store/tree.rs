//! The copy-on-write B+tree under a store: its nodes, and how puts and
//! deletes split, merge and rebalance them.
//!
//! Children are shared through `Arc`, so cloning a tree is one reference
//! count. Every change goes through `Arc::make_mut` on the path from the
//! root, which copies a node only while another clone still shares it.

use std::sync::Arc;

use super::key::{key_cmp, separator};
use super::leaf::{entry_size, Leaf};
use super::seps::Seps;

/// Size limits of the nodes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    /// Most buffer bytes in a leaf of two or more entries. A bigger entry
    /// gets a leaf of its own.
    pub(super) leaf_bytes: usize,
    /// Most entries in a leaf.
    pub(super) leaf_entries: usize,
    /// Most children of a branch (at least 4).
    pub(super) fanout: usize,
}

/// The shape stores use: 100-byte values fill a leaf at the entry cap, a
/// little under the byte budget, so a leaf stays within two pages.
pub(super) const SHAPE: Shape = Shape {
    leaf_bytes: 8 << 10,
    leaf_entries: 64,
    fanout: 64,
};

impl Shape {
    pub(super) fn leaf_fits(&self, leaf: &Leaf) -> bool {
        self.leaf_part_fits(leaf.len(), leaf.bytes())
    }

    pub(super) fn leaf_part_fits(&self, entries: usize, bytes: usize) -> bool {
        entries <= 1 || (entries <= self.leaf_entries && bytes <= self.leaf_bytes)
    }

    /// A leaf holding one entry too big to share a leaf with any other.
    fn is_lone(&self, leaf: &Leaf) -> bool {
        leaf.len() == 1 && leaf.bytes() > self.leaf_bytes
    }

    /// Where to split `leaf` most evenly by bytes, moved to the nearest cut
    /// that leaves both sides within their limits when the even one does
    /// not and another does.
    fn leaf_cut(&self, leaf: &Leaf) -> usize {
        let (n, total) = (leaf.len(), leaf.bytes());
        let valid = |cut: usize| {
            let left = leaf.cut_bytes(cut);
            self.leaf_part_fits(cut, left) && self.leaf_part_fits(n - cut, total - left)
        };
        let even = leaf.byte_middle();
        if valid(even) {
            return even;
        }
        (1..n)
            .filter(|&cut| valid(cut))
            .min_by_key(|&cut| cut.abs_diff(even))
            .unwrap_or(even)
    }

    /// Whether `node` is small enough to merge with a neighbour. A quarter,
    /// not a half, so that a delete right after a split does not merge the
    /// halves back.
    fn underfull(&self, node: &Node) -> bool {
        match node {
            Node::Leaf(l) => {
                l.is_empty() || (l.len() < self.leaf_entries / 4 && l.bytes() < self.leaf_bytes / 4)
            }
            Node::Branch(b) => b.kids.len() < (self.fanout / 4).max(2),
        }
    }
}

/// A node of the tree. All leaves are at the same depth.
#[derive(Clone)]
pub(super) enum Node {
    Leaf(Leaf),
    Branch(Branch),
}

/// An inner node: children and the keys that separate them.
#[derive(Clone)]
pub(super) struct Branch {
    /// `seps[i]` lies between children `i` and `i + 1`: every key in child
    /// `i` is below it, every key in child `i + 1` is at or above it.
    pub(super) seps: Seps,
    pub(super) kids: Vec<Arc<Node>>,
}

/// A node split off to the right of another, with the separator before it.
pub(super) type Piece = (Box<[u8]>, Node);

/// Whether a node lies on the left or right edge of the whole tree, where
/// keys written in descending or ascending order arrive.
#[derive(Clone, Copy)]
pub(super) struct Edge {
    pub(super) left: bool,
    pub(super) right: bool,
}

impl Edge {
    /// The root is on both edges.
    pub(super) const ROOT: Edge = Edge {
        left: true,
        right: true,
    };
}

/// A put on its way down the tree: what stays the same at every level.
#[derive(Clone, Copy)]
pub(super) struct Write<'a> {
    pub(super) key: &'a [u8],
    pub(super) value: &'a [u8],
    pub(super) shape: &'a Shape,
}

/// What a put did to a subtree. Small, so that it comes back from each
/// level of the descent in registers.
#[derive(Clone, Copy)]
pub(super) enum Put {
    /// The key was new.
    Inserted,
    /// The key held a value of `old` bytes. With `shrank`, the new value is
    /// shorter, so the subtree may have dropped below its minimum size.
    Replaced { old: usize, shrank: bool },
}

/// A node kind that splits when it outgrows its limits.
trait Split: Sized {
    fn fits(&self, shape: &Shape) -> bool;

    /// Where to split the node most evenly.
    fn even_cut(&self, shape: &Shape) -> usize;

    /// Moves the entries or children from `cut` on (kept between 1 and one
    /// less than the node's size) into a new node; returns it with the
    /// separator before it.
    fn split(&mut self, cut: usize) -> (Box<[u8]>, Self);

    fn into_node(self) -> Node;
}

/// Splits `node`, first at `cut` and then evenly, until every part fits;
/// appends the parts after the first, which stays in place, to `out`.
fn fit<T: Split>(node: &mut T, cut: usize, shape: &Shape, out: &mut Vec<Piece>) {
    if node.fits(shape) {
        return;
    }
    let (sep, mut right) = node.split(cut);
    let cut = node.even_cut(shape);
    fit(node, cut, shape, out);
    let mut more = Vec::new();
    let cut = right.even_cut(shape);
    fit(&mut right, cut, shape, &mut more);
    out.push((sep, right.into_node()));
    out.append(&mut more);
}

/// Splits `node` in two as evenly as its limits allow.
fn halve<T: Split>(node: &mut T, shape: &Shape) -> Piece {
    let (sep, right) = node.split(node.even_cut(shape));
    (sep, right.into_node())
}

impl Split for Leaf {
    fn fits(&self, shape: &Shape) -> bool {
        shape.leaf_fits(self)
    }

    fn even_cut(&self, shape: &Shape) -> usize {
        shape.leaf_cut(self)
    }

    fn split(&mut self, cut: usize) -> (Box<[u8]>, Leaf) {
        let cut = cut.min(self.len().saturating_sub(1)).max(1);
        let right = self.split_off(cut);
        let sep = match (self.last_key(), right.len()) {
            (Some(below), 1..) => separator(below, right.key(0)),
            _ => Box::default(),
        };
        (sep, right)
    }

    fn into_node(self) -> Node {
        Node::Leaf(self)
    }
}

impl Split for Branch {
    fn fits(&self, shape: &Shape) -> bool {
        self.kids.len() <= shape.fanout
    }

    fn even_cut(&self, _: &Shape) -> usize {
        self.kids.len() / 2
    }

    fn split(&mut self, cut: usize) -> (Box<[u8]>, Branch) {
        let cut = cut.min(self.kids.len().saturating_sub(1)).max(1);
        let kids = self.kids.split_off(cut);
        let seps = self.seps.split_off(cut.min(self.seps.len()));
        let sep = self.seps.pop().unwrap_or_default();
        (sep, Branch { seps, kids })
    }

    fn into_node(self) -> Node {
        Node::Branch(self)
    }
}

impl Branch {
    /// The child whose range holds `key`.
    #[inline]
    pub(super) fn child_index(&self, key: &[u8]) -> usize {
        self.seps.rank(key)
    }

    fn insert_after(&mut self, ci: usize, pieces: Vec<Piece>) {
        for (n, (sep, node)) in pieces.into_iter().enumerate() {
            self.seps.insert(ci + n, sep);
            self.kids.insert(ci + 1 + n, Arc::new(node));
        }
    }

    fn remove_kid(&mut self, ci: usize) {
        self.kids.remove(ci);
        if !self.seps.is_empty() {
            // The range of the removed child joins its left neighbour's, or
            // for the first child, its right neighbour's.
            self.seps.remove(ci.saturating_sub(1));
        }
    }

    /// Appends `piece`, a leaf whose keys are above every key in this
    /// subtree, as the subtree's rightmost leaf; appends to `out` the
    /// branches that no longer fit in this one.
    fn push_last(&mut self, piece: Piece, shape: &Shape, out: &mut Vec<Piece>) {
        let Some(ci) = self.kids.len().checked_sub(1) else {
            // Only an empty root branch has no children, and `shrink`
            // removes those: take the leaf as the only child.
            self.kids.push(Arc::new(piece.1));
            return;
        };
        let pieces = if let Node::Leaf(_) = *self.kids[ci] {
            vec![piece]
        } else {
            let mut below = Vec::new();
            if let Node::Branch(kid) = Arc::make_mut(&mut self.kids[ci]) {
                kid.push_last(piece, shape, &mut below);
            }
            if below.is_empty() {
                return;
            }
            below
        };
        self.insert_after(ci, pieces);
        // As for keys written in ascending order: the old children stay
        // together, the new one starts the next branch.
        fit(self, ci + 1, shape, out);
    }

    fn put(&mut self, w: Write<'_>, edge: Edge, out: &mut Vec<Piece>) -> Put {
        let shape = w.shape;
        let ci = self.child_index(w.key);
        let kid_edge = Edge {
            left: edge.left && ci == 0,
            right: edge.right && ci + 1 == self.kids.len(),
        };
        let mut pieces = Vec::new();
        let put = Arc::make_mut(&mut self.kids[ci]).put(w, kid_edge, &mut pieces);
        if pieces.is_empty() {
            if let Put::Replaced { shrank: true, .. } = put {
                self.fix_underflow(ci, shape);
            }
            return put;
        }
        self.insert_after(ci, pieces);
        // At the edges, keep the old children together and let the new
        // ones start a node that later writes in the same direction fill.
        let cut = if kid_edge.right {
            ci + 1
        } else if kid_edge.left {
            1
        } else {
            self.kids.len() / 2
        };
        fit(self, cut, shape, out);
        put
    }

    /// Brings child `ci` back to its minimum size, if it fell below it, by
    /// merging it with a neighbour or else moving entries over from one.
    fn fix_underflow(&mut self, ci: usize, shape: &Shape) {
        let Some(kid) = self.kids.get(ci) else {
            return;
        };
        if !shape.underfull(kid) {
            return;
        }
        if kid.is_empty() {
            self.remove_kid(ci);
            return;
        }
        // Merging removes a node, so try both neighbours for that first.
        let pairs = [
            ci.checked_sub(1),
            Some(ci).filter(|&c| c + 1 < self.kids.len()),
        ];
        for rebalance in [false, true] {
            for left in pairs.into_iter().flatten() {
                if self.join(left, rebalance, shape) {
                    return;
                }
            }
        }
    }

    /// Merges children `l` and `l + 1` if together they fit in one node;
    /// otherwise, with `rebalance`, splits their entries evenly between
    /// them. Returns whether it changed anything.
    fn join(&mut self, l: usize, rebalance: bool, shape: &Shape) -> bool {
        let (a, b) = (&self.kids[l], &self.kids[l + 1]);
        let fits = match (&**a, &**b) {
            (Node::Leaf(x), Node::Leaf(y)) => {
                if shape.is_lone(x) || shape.is_lone(y) {
                    // A lone entry is as full as a leaf gets.
                    return false;
                }
                shape.leaf_part_fits(x.len() + y.len(), x.bytes() + y.bytes())
            }
            (Node::Branch(x), Node::Branch(y)) => x.kids.len() + y.kids.len() <= shape.fanout,
            _ => return false,
        };
        if !fits && !rebalance {
            return false;
        }
        let (left, right) = self.kids.split_at_mut(l + 1);
        let merged = Arc::make_mut(&mut left[l]);
        let Some(sep) = self.seps.get(l) else {
            return false;
        };
        if !merged.append(sep, &right[0]) {
            return false;
        }
        if fits {
            self.kids.remove(l + 1);
            self.seps.remove(l);
        } else {
            let (sep, rest) = match merged {
                Node::Leaf(x) => halve(x, shape),
                Node::Branch(x) => halve(x, shape),
            };
            self.kids[l + 1] = Arc::new(rest);
            self.seps.set(l, sep);
        }
        true
    }
}

impl Node {
    /// The value of `key`, if present.
    pub(super) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let mut node = self;
        loop {
            match node {
                Node::Branch(b) => node = b.kids.get(b.child_index(key))?,
                Node::Leaf(l) => return l.search(key).ok().map(|i| l.entry(i).1),
            }
        }
    }

    /// The greatest key in this subtree, if it has any.
    pub(super) fn last_key(&self) -> Option<&[u8]> {
        let mut node = self;
        loop {
            match node {
                Node::Branch(b) => node = b.kids.last()?,
                Node::Leaf(l) => return l.last_key(),
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Node::Leaf(l) => l.is_empty(),
            Node::Branch(b) => b.kids.is_empty(),
        }
    }

    /// Appends the contents of `other`, the next node at the same depth,
    /// with `sep` between them. Returns false, changing nothing, if the two
    /// cannot be joined.
    fn append(&mut self, sep: &[u8], other: &Node) -> bool {
        match (self, other) {
            (Node::Leaf(x), Node::Leaf(y)) => x.append(y),
            (Node::Branch(x), Node::Branch(y)) => {
                x.seps.push(Box::from(sep));
                x.seps.append(&y.seps);
                x.kids.extend(y.kids.iter().cloned());
                true
            }
            _ => false,
        }
    }

    /// Sets `key` to `value` in this subtree; appends to `out` the nodes
    /// that no longer fit in it, to go to its right.
    pub(super) fn put(&mut self, w: Write<'_>, edge: Edge, out: &mut Vec<Piece>) -> Put {
        match self {
            Node::Leaf(leaf) => put_leaf(leaf, w, edge, out),
            Node::Branch(b) => b.put(w, edge, out),
        }
    }

    /// Removes `key` from this subtree; returns the length of its value if
    /// it was present.
    pub(super) fn delete(&mut self, key: &[u8], shape: &Shape) -> Option<usize> {
        match self {
            Node::Leaf(leaf) => {
                let i = leaf.search(key).ok()?;
                Some(leaf.remove(i))
            }
            Node::Branch(b) => {
                let ci = b.child_index(key);
                let kid = b.kids.get_mut(ci)?;
                // Deleting a missing key must not copy a shared path.
                if Arc::get_mut(kid).is_none() && kid.get(key).is_none() {
                    return None;
                }
                let old = Arc::make_mut(kid).delete(key, shape)?;
                b.fix_underflow(ci, shape);
                Some(old)
            }
        }
    }
}

/// Makes `leaf`, whose keys are all above every key of the tree under
/// `root`, the tree's new rightmost leaf, with `sep` (between the tree's
/// greatest key and the leaf's first) before it.
///
/// The leaf is moved in whole: the store fills it outside the tree, so that
/// keys written in ascending order cost the tree one descent a leaf, not
/// one a key. Only the right edge is unshared, as a put there would.
pub(super) fn push_last(root: &mut Option<Arc<Node>>, sep: Box<[u8]>, leaf: Leaf, shape: &Shape) {
    let Some(top) = root.as_mut() else {
        *root = Some(Arc::new(Node::Leaf(leaf)));
        return;
    };
    if top.is_empty() {
        *top = Arc::new(Node::Leaf(leaf));
        return;
    }
    let piece = (sep, Node::Leaf(leaf));
    let mut pieces = Vec::new();
    if let Node::Leaf(_) = **top {
        pieces.push(piece);
    } else if let Node::Branch(b) = Arc::make_mut(top) {
        b.push_last(piece, shape, &mut pieces);
    }
    if !pieces.is_empty() {
        if let Some(old) = root.take() {
            *root = Some(grow(old, pieces, shape));
        }
    }
}

/// Sets `key` to `value` in a leaf; appends to `out` the leaves that no
/// longer fit in it.
fn put_leaf(leaf: &mut Leaf, w: Write<'_>, edge: Edge, out: &mut Vec<Piece>) -> Put {
    let Write { key, value, shape } = w;
    let size = entry_size(key, value);
    let shares = size <= shape.leaf_bytes;
    // On the right edge most keys come after every other: one comparison
    // instead of a search.
    let appends = edge.right
        && leaf
            .last_key()
            .is_some_and(|last| key_cmp(last, key).is_lt());
    let found = if appends {
        Err(leaf.len())
    } else {
        leaf.search(key)
    };
    let i = match found {
        Ok(i) => {
            let old = leaf.entry(i).1.len();
            let put = Put::Replaced {
                old,
                shrank: value.len() < old,
            };
            if (shares || leaf.len() == 1) && leaf.set_value(i, value) {
                if !shape.leaf_fits(leaf) {
                    fit(leaf, shape.leaf_cut(leaf), shape, out);
                }
            } else {
                leaf.remove(i);
                isolate(leaf, i, Leaf::single(key, value, 0, 1), out);
            }
            return put;
        }
        Err(i) => i,
    };
    let full = !shape.leaf_part_fits(leaf.len() + 1, leaf.bytes().saturating_add(size));
    if !shares || shape.is_lone(leaf) {
        isolate(leaf, i, Leaf::single(key, value, 0, 1), out);
    } else if full && edge.right && i == leaf.len() {
        // Keys arriving in ascending order: leave this leaf full and start
        // the next, with room for as many entries of this size as it will
        // take, so that it is allocated once.
        let entries = (shape.leaf_bytes / size.max(1)).clamp(1, shape.leaf_entries);
        let next = Leaf::single(key, value, entries * size, entries);
        isolate(leaf, i, next, out);
    } else if !leaf.insert(i, key, value) {
        isolate(leaf, i, Leaf::single(key, value, 0, 1), out);
    } else if full {
        // Keys arriving in descending order: the new one starts a leaf of
        // its own on the left.
        let cut = if edge.left && i == 0 {
            1
        } else {
            shape.leaf_cut(leaf)
        };
        fit(leaf, cut, shape, out);
    }
    Put::Inserted
}

/// Puts `alone`, a leaf of one entry that belongs at entry `i` of `leaf`,
/// next to it, splitting `leaf` around it. Appends the leaves that follow
/// `leaf` to `out`.
fn isolate(leaf: &mut Leaf, i: usize, alone: Leaf, out: &mut Vec<Piece>) {
    let after = leaf.split_off(i);
    let key = alone.key(0);
    let after = (!after.is_empty()).then(|| (separator(key, after.key(0)), Node::Leaf(after)));
    match leaf.last_key() {
        Some(below) => out.push((separator(below, key), Node::Leaf(alone))),
        None => *leaf = alone,
    }
    out.extend(after);
}

/// A new root above `root` and the pieces split off to its right.
pub(super) fn grow(root: Arc<Node>, mut pieces: Vec<Piece>, shape: &Shape) -> Arc<Node> {
    let mut root = root;
    while !pieces.is_empty() {
        let mut top = Branch {
            seps: Seps::default(),
            kids: vec![root],
        };
        top.insert_after(0, pieces);
        pieces = Vec::new();
        let cut = top.even_cut(shape);
        fit(&mut top, cut, shape, &mut pieces);
        root = Arc::new(Node::Branch(top));
    }
    root
}

/// Drops a root left empty, and roots with a single child, so that the
/// height shrinks as entries go.
pub(super) fn shrink(root: &mut Option<Arc<Node>>) {
    loop {
        let next = match root.as_deref() {
            Some(Node::Leaf(l)) if l.is_empty() => None,
            Some(Node::Branch(b)) if b.kids.len() <= 1 => b.kids.first().cloned(),
            _ => return,
        };
        *root = next;
    }
}
