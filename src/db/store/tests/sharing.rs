//! Clones share structure: a clone is unaffected by later writes, a write
//! copies only its path; equality and key order do not depend on the
//! tree's shape.

use super::*;

#[test]
fn a_clone_is_unaffected_by_later_writes() {
    let mut s = Store::new();
    for i in 0..10_000u32 {
        s.put(&i.to_be_bytes(), b"old");
    }
    let frozen = s.clone();
    let digest = frozen.digest();
    for i in (0..10_000u32).step_by(3) {
        s.put(&i.to_be_bytes(), b"new");
    }
    for i in (1..10_000u32).step_by(3) {
        s.delete(&i.to_be_bytes());
    }
    assert_eq!(frozen.digest(), digest);
    assert_eq!(frozen.len(), 10_000);
    assert!(frozen.iter().all(|(_, v)| v == b"old"));
    assert_ne!(frozen, s);
    check(&frozen);
    check(&s);
}

/// Addresses of every node of a tree, to see which two trees share.
fn nodes(s: &Store) -> HashSet<*const Node> {
    let mut seen = HashSet::new();
    let mut todo: Vec<&Arc<Node>> = s.root.iter().collect();
    while let Some(node) = todo.pop() {
        seen.insert(Arc::as_ptr(node));
        if let Node::Branch(b) = &**node {
            todo.extend(b.kids.iter());
        }
    }
    seen
}

#[test]
fn a_write_after_a_clone_copies_only_its_path() {
    let mut s = Store::new();
    for i in 0..50_000u32 {
        s.put(&i.to_be_bytes(), b"value");
    }
    let height = check(&s).height;
    assert!(height >= 3);
    let frozen = s.clone();
    assert_eq!(nodes(&s), nodes(&frozen));
    // A missing key leaves everything shared.
    assert!(!s.delete(b"missing"));
    assert_eq!(nodes(&s), nodes(&frozen));
    // One put copies one node per level, once.
    for _ in 0..2 {
        s.put(&777u32.to_be_bytes(), b"changed");
        assert_eq!(nodes(&s).difference(&nodes(&frozen)).count(), height);
    }
    assert_eq!(frozen.get(&777u32.to_be_bytes()), Some(&b"value"[..]));
}

#[test]
fn equality_ignores_tree_shape() {
    let mut a = Store::with_shape(TINY);
    let mut b = Store::new();
    for i in 0..500u32 {
        a.put(&i.to_be_bytes(), b"v");
        b.put(&(499 - i).to_be_bytes(), b"v");
    }
    assert_eq!(a, b);
    b.put(&7u32.to_be_bytes(), b"w");
    assert_ne!(a, b);
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
