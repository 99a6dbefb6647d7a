//! The store against the model on generated runs (proptest): random
//! steps on trees of several shapes, and mostly ascending writes that go
//! through the tail.

use super::*;

#[derive(Clone)]
enum Step {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    /// Takes a clone, then changes the original and the clone differently.
    Fork(Vec<u8>, Vec<u8>),
    Range(u8, Vec<u8>, u8, Vec<u8>),
}

/// Bytes shown short, so a failing case of 20 KiB values stays readable.
struct Short<'a>(&'a [u8]);

impl std::fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            [first, rest @ ..] if rest.len() >= 8 => write!(f, "[{first}; {}]", self.0.len()),
            b => write!(f, "{:?}", String::from_utf8_lossy(b)),
        }
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Put(k, v) => write!(f, "Put({:?}, {:?})", Short(k), Short(v)),
            Step::Delete(k) => write!(f, "Delete({:?})", Short(k)),
            Step::Get(k) => write!(f, "Get({:?})", Short(k)),
            Step::Fork(k, v) => write!(f, "Fork({:?}, {:?})", Short(k), Short(v)),
            Step::Range(a, lo, b, hi) => {
                write!(f, "Range({a}, {:?}, {b}, {:?})", Short(lo), Short(hi))
            }
        }
    }
}

/// Keys from a four-letter alphabet, up to three letters, and now and then
/// a long one: few enough distinct keys that overwrites and deletes hit.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(b'a'..=b'd', 0..=3),
        1 => proptest::collection::vec(b'a'..=b'b', 20..=40),
    ]
}

/// Values from empty to a few KiB, now and then 20 KiB.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..=16),
        3 => (0usize..=3000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        1 => any::<u8>().prop_map(|b| vec![b; 20 << 10]),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (key(), value()).prop_map(|(k, v)| Step::Put(k, v)),
        4 => key().prop_map(Step::Delete),
        2 => key().prop_map(Step::Get),
        1 => (key(), value()).prop_map(|(k, v)| Step::Fork(k, v)),
        2 => (any::<u8>(), key(), any::<u8>(), key()).prop_map(|(a, lo, b, hi)| Step::Range(a, lo, b, hi)),
    ]
}

/// Runs `steps` on a store of `shape` and on the model, checking after each.
fn run(shape: Shape, steps: &[Step]) {
    let mut s = Store::with_shape(shape);
    let mut model = Model::new();
    // Clones taken along the way, with what they held then.
    let mut frozen: Vec<(Store, Model)> = Vec::new();
    for step in steps {
        match step {
            Step::Put(k, v) => {
                s.put(k, v);
                model.insert(k.clone(), v.clone());
            }
            Step::Delete(k) => {
                assert_eq!(s.delete(k), model.remove(k).is_some());
            }
            Step::Get(k) => {
                assert_eq!(s.get(k), model.get(k).map(|v| &v[..]));
            }
            Step::Fork(k, v) => {
                let mut copy = s.clone();
                let mut copy_model = model.clone();
                assert_eq!(copy, s);
                // The clone changes on its own; the original must not see it.
                copy.put(k, v);
                copy_model.insert(k.clone(), v.clone());
                let victim = model.keys().next().cloned();
                if let Some(victim) = victim {
                    assert!(copy.delete(&victim));
                    copy_model.remove(&victim);
                }
                same(&copy, &copy_model);
                check(&copy);
                frozen.push((copy, copy_model));
                frozen.push((s.clone(), model.clone()));
            }
            Step::Range(a, lo, b, hi) => {
                same_range(&s, &model, bound(*a, lo), bound(*b, hi));
            }
        }
        check(&s);
        same(&s, &model);
    }
    // Every clone still holds exactly what it held when it was taken.
    for (copy, copy_model) in &frozen {
        same(copy, copy_model);
        check(copy);
    }
}

/// A step of a run that writes mostly above every key so far, as a counter
/// does: what the store's tail takes.
#[derive(Clone, Debug)]
enum Near {
    /// A key above every other: the counter moved on by one plus the gap.
    Append(u8, Vec<u8>),
    /// Overwrites (`Some`) or deletes the `n`-th greatest key.
    Top(u8, Option<Vec<u8>>),
    /// A new key just above the `n`-th greatest, so below the greater ones.
    Between(u8, Vec<u8>),
    /// Any other step, mostly below the appended keys.
    Other(Step),
}

fn small_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..=24),
        1 => value(),
    ]
}

fn near() -> impl Strategy<Value = Near> {
    prop_oneof![
        12 => (0u8..3, small_value()).prop_map(|(g, v)| Near::Append(g, v)),
        3 => (0u8..8, proptest::option::of(small_value())).prop_map(|(n, v)| Near::Top(n, v)),
        2 => (0u8..8, small_value()).prop_map(|(n, v)| Near::Between(n, v)),
        3 => step().prop_map(Near::Other),
    ]
}

/// Turns `near` into plain steps, tracking the keys they leave.
fn near_steps(near: &[Near]) -> Vec<Step> {
    let mut keys = std::collections::BTreeSet::new();
    let mut counter = 0u32;
    let nth = |keys: &std::collections::BTreeSet<Vec<u8>>, n: u8| -> Option<Vec<u8>> {
        keys.iter()
            .rev()
            .nth(usize::from(n) % keys.len().max(1))
            .cloned()
    };
    let mut steps = Vec::new();
    for n in near {
        let step = match n {
            Near::Append(gap, v) => {
                counter += 1 + u32::from(*gap);
                let key = [&b"e"[..], &counter.to_be_bytes()].concat();
                Step::Put(key, v.clone())
            }
            Near::Top(n, v) => match (nth(&keys, *n), v) {
                (Some(k), Some(v)) => Step::Put(k, v.clone()),
                (Some(k), None) => Step::Delete(k),
                (None, _) => continue,
            },
            Near::Between(n, v) => match nth(&keys, *n) {
                Some(k) => Step::Put([&k[..], &[0]].concat(), v.clone()),
                None => continue,
            },
            Near::Other(step) => step.clone(),
        };
        match &step {
            Step::Put(k, _) => {
                keys.insert(k.clone());
            }
            Step::Delete(k) => {
                keys.remove(k);
            }
            _ => {}
        }
        steps.push(step);
    }
    steps
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tiny_tree_matches_model(steps in proptest::collection::vec(step(), 1..400)) {
        run(TINY, &steps);
    }

    #[test]
    fn small_tree_matches_model(steps in proptest::collection::vec(step(), 1..400)) {
        run(SMALL, &steps);
    }

    #[test]
    fn default_tree_matches_model(steps in proptest::collection::vec(step(), 1..200)) {
        run(SHAPE, &steps);
    }

    // Mostly ascending keys, with writes and deletes among the greatest:
    // the tail fills, takes overwrites, inserts and deletes, and joins the
    // tree, clones taken along the way included.
    #[test]
    fn ascending_writes_match_model(
        near in proptest::collection::vec(near(), 1..600),
        shape in prop_oneof![Just(TINY), Just(SMALL), Just(SHAPE)],
    ) {
        run(shape, &near_steps(&near));
    }

    // The fast comparison must agree with the byte order everywhere.
    #[test]
    fn key_cmp_is_byte_order(
        common in proptest::collection::vec(any::<u8>(), 0..40),
        a in proptest::collection::vec(any::<u8>(), 0..12),
        b in proptest::collection::vec(any::<u8>(), 0..12),
    ) {
        let x = [common.clone(), a].concat();
        let y = [common, b].concat();
        prop_assert_eq!(key_cmp(&x, &y), x.cmp(&y));
        prop_assert_eq!(key_cmp(&y, &x), y.cmp(&x));
        prop_assert_eq!(key_cmp(&x, &x), Ordering::Equal);
    }
}
