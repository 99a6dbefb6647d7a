//! Key order and the separators that branch nodes keep between children.

use std::cmp::Ordering;

/// Orders byte strings exactly as `<[u8] as Ord>` does (lexicographically,
/// a prefix first), but compares short keys eight bytes at a time inline
/// instead of calling `memcmp`: a lookup compares keys a dozen or more
/// times, and most keys are short.
#[inline]
pub(super) fn key_cmp(a: &[u8], b: &[u8]) -> Ordering {
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

/// The shortest key `s` with `below < s <= above`, given `below < above`.
///
/// Branches only need some key between two children, not a whole stored
/// key, so a prefix of `above` that already differs from `below` keeps
/// branch nodes small when keys are long and share little.
pub(super) fn separator(below: &[u8], above: &[u8]) -> Box<[u8]> {
    let common = below.iter().zip(above).take_while(|(p, q)| p == q).count();
    // `above` is longer than the common prefix because below < above.
    let end = (common + 1).min(above.len());
    Box::from(&above[..end])
}
