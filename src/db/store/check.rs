//! The tree's structural invariants, checked by the tests after every
//! step.

use super::tree::{Node, Shape};

/// What a check of the tree found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Census {
    pub(super) entries: usize,
    /// Sum of key and value lengths.
    pub(super) bytes: usize,
    pub(super) height: usize,
    pub(super) leaves: usize,
}

impl Node {
    /// Checks every structural invariant of the subtree whose keys must lie
    /// in `lo..hi`, panicking on the first broken one.
    pub(super) fn check(
        &self,
        shape: &Shape,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        is_root: bool,
    ) -> Census {
        let in_range = |k: &[u8]| lo.map_or(true, |lo| lo <= k) && hi.map_or(true, |hi| k < hi);
        match self {
            Node::Leaf(l) => {
                let bytes = l.check_layout();
                assert!(is_root || !l.is_empty(), "empty leaf below the root");
                assert!(
                    shape.leaf_fits(l),
                    "leaf over its limits: {} entries, {} bytes",
                    l.len(),
                    l.bytes()
                );
                for i in 0..l.len() {
                    assert!(in_range(l.key(i)), "leaf key outside its separators");
                    if i > 0 {
                        assert!(l.key(i - 1) < l.key(i), "leaf keys out of order");
                    }
                }
                Census {
                    entries: l.len(),
                    bytes,
                    height: 1,
                    leaves: 1,
                }
            }
            Node::Branch(b) => {
                assert!(!b.kids.is_empty(), "branch with no children");
                b.seps.check();
                assert!(!is_root || b.kids.len() >= 2, "root branch with one child");
                assert!(b.kids.len() <= shape.fanout, "branch over its fanout");
                assert_eq!(
                    b.seps.len() + 1,
                    b.kids.len(),
                    "one separator between each two children"
                );
                for i in 0..b.seps.len() {
                    let sep = b.seps.get(i).unwrap_or_default();
                    let prev = i.checked_sub(1).and_then(|p| b.seps.get(p));
                    assert!(
                        lo.map_or(true, |lo| lo < sep),
                        "separator at or below its range"
                    );
                    assert!(
                        hi.map_or(true, |hi| sep < hi),
                        "separator at or above its range"
                    );
                    assert!(prev.map_or(true, |p| p < sep), "separators out of order");
                }
                let mut total = Census::default();
                for (i, kid) in b.kids.iter().enumerate() {
                    let kid_lo = if i == 0 { lo } else { b.seps.get(i - 1) };
                    let kid_hi = b.seps.get(i).or(hi);
                    let c = kid.check(shape, kid_lo, kid_hi, false);
                    assert!(
                        i == 0 || c.height == total.height,
                        "leaves at different depths"
                    );
                    total.height = c.height;
                    total.entries += c.entries;
                    total.bytes += c.bytes;
                    total.leaves += c.leaves;
                }
                total.height += 1;
                total
            }
        }
    }
}
