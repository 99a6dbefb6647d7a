//! Deterministic runs that grow a tree several levels and shrink it back:
//! random, ascending and descending writes, long shared prefixes, deletes
//! of everything, values too big to share a leaf.

use super::*;

/// Thousands of random steps on a key space wide enough to grow the tree
/// several levels, then shrink it back.
#[test]
fn long_random_run_grows_and_shrinks() {
    for shape in [TINY, SMALL] {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut s = Store::with_shape(shape);
        let mut model = Model::new();
        let mut tallest = 0;
        for round in 0..6000u64 {
            let k = (rng.next() % 1500).to_be_bytes()[6..].to_vec();
            // Grow for the first two thirds, then mostly delete.
            if rng.next() % 3 != 0 || round < 4000 && rng.next() % 4 != 0 {
                let v = vec![round as u8; (rng.next() % 60) as usize];
                s.put(&k, &v);
                model.insert(k, v);
            } else {
                assert_eq!(s.delete(&k), model.remove(&k).is_some());
            }
            if round % 97 == 0 {
                let lo = (rng.next() % 1600).to_be_bytes()[6..].to_vec();
                let hi = (rng.next() % 1600).to_be_bytes()[6..].to_vec();
                same_range(&s, &model, Bound::Included(&lo), Bound::Excluded(&hi));
                same(&s, &model);
            }
            tallest = tallest.max(check(&s).height);
        }
        assert!(tallest >= 3, "tree only {tallest} levels high");
        same(&s, &model);
        let mut keys: Vec<_> = model.keys().cloned().collect();
        rng.shuffle(&mut keys);
        for k in keys {
            assert!(s.delete(&k));
            check(&s);
        }
        assert!(s.is_empty());
        assert!(s.root.is_none());
    }
}

/// Keys alike in their first eight bytes and more, which branches must
/// tell apart past their shared prefix.
#[test]
fn keys_with_a_long_shared_prefix() {
    for shape in [TINY, SMALL, SHAPE] {
        let mut s = Store::with_shape(shape);
        let mut model = Model::new();
        let mut rng = Rng(99);
        for _ in 0..5000 {
            let n = rng.next() % 3000;
            // Some keys are others plus a zero byte: equal heads, different keys.
            let mut k = format!("user:0000000000/{n:06}").into_bytes();
            if n % 7 == 0 {
                k.push(0);
            }
            if rng.next() % 4 == 0 {
                assert_eq!(s.delete(&k), model.remove(&k).is_some());
            } else {
                s.put(&k, &n.to_le_bytes());
                model.insert(k, n.to_le_bytes().to_vec());
            }
        }
        check(&s);
        same(&s, &model);
        for k in model.keys() {
            assert_eq!(s.get(k), model.get(k).map(|v| &v[..]));
            let mut shorter = k.clone();
            shorter.pop();
            assert_eq!(s.get(&shorter), model.get(&shorter).map(|v| &v[..]));
        }
        same_range(
            &s,
            &model,
            Bound::Excluded(b"user:0000000000/001000"),
            Bound::Included(b"user:0000000000/002000\0"),
        );
    }
}

#[test]
fn ascending_inserts() {
    let mut s = Store::new();
    for i in 0..100_000u64 {
        s.put(&i.to_be_bytes(), &i.to_le_bytes());
    }
    let census = check(&s);
    assert_eq!(s.len(), 100_000);
    // Ascending inserts leave every leaf but the last full.
    assert!(
        census.leaves <= 100_000 / SHAPE.leaf_entries + 1,
        "{census:?}"
    );
    let mut n = 0u64;
    for (k, v) in &s {
        assert_eq!(k, n.to_be_bytes());
        assert_eq!(v, n.to_le_bytes());
        n += 1;
    }
    assert_eq!(n, 100_000);
    assert!(s.iter().rev().map(|(k, _)| k).eq((0..100_000u64)
        .rev()
        .map(|i| i.to_be_bytes())
        .collect::<Vec<_>>()
        .iter()
        .map(|k| &k[..])));
}

/// Keys written in ascending order take a fast path to the rightmost leaf;
/// clones, deletes of the greatest key, overwrites and entries too big to
/// share a leaf must not lead it astray.
#[test]
fn ascending_puts_with_clones_deletes_and_overwrites() {
    for shape in [TINY, SMALL, SHAPE] {
        let mut s = Store::with_shape(shape);
        let mut model = Model::new();
        let mut frozen: Vec<(Store, Model)> = Vec::new();
        let mut rng = Rng(7);
        for i in 0..3_000u64 {
            let key = (i * 3).to_be_bytes().to_vec();
            let roll = rng.next() % 100;
            let value = if roll < 3 {
                vec![b'x'; 300]
            } else {
                vec![i as u8; (rng.next() % 40) as usize]
            };
            s.put(&key, &value);
            model.insert(key.clone(), value);
            match roll {
                // Delete the greatest key, so the next put must find it again.
                3..=8 => {
                    let last = model.keys().next_back().cloned();
                    if let Some(last) = last {
                        assert!(s.delete(&last));
                        model.remove(&last);
                    }
                }
                // A clone shares the rightmost path: both copies must write
                // on their own.
                9..=13 => {
                    let mut copy = s.clone();
                    let mut copy_model = model.clone();
                    let k = (i * 3 + 1).to_be_bytes().to_vec();
                    copy.put(&k, b"copy");
                    copy_model.insert(k, b"copy".to_vec());
                    check(&copy);
                    frozen.push((copy, copy_model));
                    frozen.push((s.clone(), model.clone()));
                }
                // Overwrite the greatest key, growing or shrinking it.
                14..=18 => {
                    let v = vec![b'o'; (rng.next() % 60) as usize];
                    s.put(&key, &v);
                    model.insert(key.clone(), v);
                }
                _ => {}
            }
            check(&s);
            if i % 97 == 0 {
                same(&s, &model);
            }
        }
        same(&s, &model);
        for (copy, copy_model) in &frozen {
            same(copy, copy_model);
            check(copy);
        }
    }
}

#[test]
fn descending_inserts() {
    let mut s = Store::new();
    for i in (0..100_000u64).rev() {
        s.put(&i.to_be_bytes(), b"value");
    }
    let census = check(&s);
    assert!(
        census.leaves <= 100_000 / SHAPE.leaf_entries + 1,
        "{census:?}"
    );
    assert!(s
        .iter()
        .map(|(k, _)| k.to_vec())
        .eq((0..100_000u64).map(|i| i.to_be_bytes().to_vec())));
}

#[test]
fn deleting_everything_shrinks_the_tree() {
    for shape in [TINY, SHAPE] {
        let mut s = Store::with_shape(shape);
        let mut keys: Vec<u64> = (0..20_000).collect();
        let mut rng = Rng(7);
        rng.shuffle(&mut keys);
        for &k in &keys {
            s.put(&k.to_be_bytes(), &[1; 40]);
        }
        assert!(check(&s).height >= 3);
        rng.shuffle(&mut keys);
        for (n, &k) in keys.iter().enumerate() {
            assert!(s.delete(&k.to_be_bytes()));
            if n % 1000 == 0 {
                let census = check(&s);
                // Merges keep leaves at least about a quarter full.
                let floor = (shape.leaf_entries / 4).max(1);
                assert!(
                    census.leaves <= 2 * census.entries / floor + 2,
                    "{census:?} at {n}"
                );
            }
        }
        assert!(s.is_empty());
        assert!(s.root.is_none());
        assert_eq!(s.iter().next(), None);
        s.put(b"again", b"x");
        assert_eq!(s.get(b"again"), Some(&b"x"[..]));
        assert_eq!(check(&s).entries, 1);
    }
}

#[test]
fn big_values_take_leaves_of_their_own() {
    let mut s = Store::new();
    for i in 0..200u32 {
        s.put(&i.to_be_bytes(), &[i as u8; 100]);
    }
    // A value bigger than a leaf's budget, in the middle of a full leaf.
    let big = vec![9u8; 3 << 20];
    s.put(&100u32.to_be_bytes(), &big);
    s.put(&[0, 0, 0, 100, 0], &big);
    check(&s);
    assert_eq!(s.get(&100u32.to_be_bytes()), Some(&big[..]));
    // Shrinking it lets it share a leaf again.
    s.put(&100u32.to_be_bytes(), b"small");
    s.delete(&[0, 0, 0, 100, 0]);
    check(&s);
    assert_eq!(s.get(&100u32.to_be_bytes()), Some(&b"small"[..]));
    assert_eq!(s.len(), 200);
    // Empty keys and values are entries like any other.
    s.put(b"", b"");
    assert_eq!(s.get(b""), Some(&b""[..]));
    assert_eq!(s.iter().next(), Some((&b""[..], &b""[..])));
    check(&s);
}
