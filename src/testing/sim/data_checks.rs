//! The checks of the data workload (`data.rs`): the shape of every range
//! read, and the read-modify-write counters at the end of a run.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::data::{counter_tag, counter_value, key_universe, COUNTERS};
use super::history::Increment;
use super::{show, Check, Sim};
use crate::db::Op;
use crate::rep::Eid;

impl Sim {
    /// Invariant 6, the shape of a range read as it completes (every level):
    /// its entries are in strictly ascending key order, within its bounds,
    /// and each is a value some commit of the run wrote under that key of
    /// that database.
    pub(super) fn check_range_shape(&self, idx: usize) -> Check {
        let r = &self.history.ranges[idx];
        let Some(entries) = &r.entries else {
            return Ok(());
        };
        let what = || {
            format!(
                "invariant 6 (range reads): {:?} range read step {} on {} of {:?} {:?}..{:?}{} returned {:?}",
                r.kind,
                r.step,
                r.eid,
                r.db,
                r.start,
                r.end,
                if r.reverse { " backwards" } else { "" },
                entries
                    .iter()
                    .map(|(k, v)| format!("{}={}", show(k), show(v)))
                    .collect::<Vec<_>>()
            )
        };
        let bounds = (as_ref(&r.start), as_ref(&r.end));
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 && entries[i - 1].0 >= *k {
                return Err(format!("{}: not in ascending key order", what()));
            }
            if !std::ops::RangeBounds::contains(&bounds, &&k[..]) {
                return Err(format!("{}: {} is out of bounds", what(), show(k)));
            }
            let written = self.history.commits.iter().any(|c| {
                c.db == r.db
                    && c.ops
                        .iter()
                        .any(|op| matches!(op, Op::Put { key, value } if key == k && value == v))
            });
            if !written {
                return Err(format!(
                    "{}: no commit wrote {}={} in that database",
                    what(),
                    show(k),
                    show(v)
                ));
            }
        }
        Ok(())
    }

    /// No lost update, nothing applied twice: at the end, each counter of
    /// the read-modify-write transactions holds `<count>:<tag>`, and
    /// following the tags back (each increment records what it read)
    /// gives a chain of exactly `count` distinct increments the run made,
    /// each writing one more than it read, down to the absent counter.
    /// Every increment its master reported permanent is on the chain: one
    /// that was overwritten by an increment that had not seen it is a lost
    /// update. (Counters are sets, not additions, so a record applied twice
    /// leaves the value as it was; the chain's length equal to the count
    /// says no increment is counted twice.)
    pub(super) fn check_counters(&self, m: Eid) -> Check {
        let store = self.cluster.site(m).core().storage().store();
        let id = store.database_id(COUNTERS.as_bytes());
        let by_tag: BTreeMap<u64, &Increment> = self
            .history
            .commits
            .iter()
            .filter_map(|c| c.increment.as_ref())
            .filter_map(|i| counter_tag(&i.wrote).map(|t| (t, i)))
            .collect();
        for key in key_universe(COUNTERS) {
            let fin = id.and_then(|id| store.get_in(id, &key)).map(<[u8]>::to_vec);
            let count = counter_value(fin.as_deref()).ok_or_else(|| {
                format!(
                    "counters: {} holds {:?}, which no increment wrote",
                    show(&key),
                    fin.as_deref().map(show)
                )
            })?;
            let mut chain = BTreeSet::new();
            let mut at = fin.clone();
            while let Some(v) = at {
                let n = counter_value(Some(&v)).unwrap_or(0);
                let inc = counter_tag(&v)
                    .and_then(|t| by_tag.get(&t).map(|i| (t, i)))
                    .filter(|(_, i)| i.key == key && i.wrote == v);
                let Some((tag, inc)) = inc else {
                    return Err(format!(
                        "counters: {} holds {} on the way back from {}, which no increment of the run wrote",
                        show(&key),
                        show(&v),
                        fin.as_deref().map_or("<absent>".into(), show)
                    ));
                };
                if !chain.insert(tag) || counter_value(inc.read.as_deref()) != Some(n - 1) {
                    return Err(format!(
                        "counters: {}: increment t{tag} wrote {} after reading {:?}: not one more",
                        show(&key),
                        show(&v),
                        inc.read.as_deref().map(show)
                    ));
                }
                at = inc.read.clone();
            }
            if chain.len() as u64 != count {
                return Err(format!(
                    "counters: {} holds {count} but {} increments lead to it",
                    show(&key),
                    chain.len()
                ));
            }
            for c in &self.history.commits {
                let Some(inc) = &c.increment else { continue };
                let tag = counter_tag(&inc.wrote).unwrap_or(0);
                if inc.key == key && c.perm_at_us.is_some() && !chain.contains(&tag) {
                    return Err(format!(
                        "counters: lost update: increment t{tag} of {} (step {}, on {} gen {} at {}) was reported permanent, \
                         but the final value {} does not count it",
                        show(&key),
                        c.step,
                        c.eid,
                        c.gen,
                        c.lsn,
                        fin.as_deref().map_or("<absent>".into(), show)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(&k[..]),
        Bound::Excluded(k) => Bound::Excluded(&k[..]),
        Bound::Unbounded => Bound::Unbounded,
    }
}
