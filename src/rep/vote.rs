//! Ranking election candidates: which of the sites heard from in phase 1
//! deserves this site's vote. Knows nothing of `Core`.

use std::collections::BTreeMap;

use crate::lsn::Lsn;
use crate::rep::types::Eid;

/// A participant's phase-1 information.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Its election priority (0 = never master).
    pub priority: u32,
    /// Generation of its last log record.
    pub last_gen: u32,
    /// Its last log record.
    pub last_lsn: Lsn,
    /// A random number breaking ties between otherwise equal candidates.
    pub tiebreaker: u32,
}

impl Candidate {
    /// Orders candidates: most recent log, then priority, then tie-breaker.
    fn rank(&self) -> (u32, Lsn, u32, u32) {
        (self.last_gen, self.last_lsn, self.priority, self.tiebreaker)
    }
}

/// The best electable candidate of `tally`: the most recent log, then the
/// highest priority, then the tie-breaker, then the lowest id, so every
/// voter that heard the same sites picks the same one. `None` when every
/// candidate has priority 0.
pub(crate) fn best_candidate(tally: &BTreeMap<Eid, Candidate>) -> Option<Eid> {
    tally
        .iter()
        .filter(|(_, c)| c.priority > 0)
        .max_by(|a, b| a.1.rank().cmp(&b.1.rank()).then(b.0.cmp(a.0)))
        .map(|(eid, _)| *eid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(gen: u32, off: u32, priority: u32, tiebreaker: u32) -> Candidate {
        Candidate {
            priority,
            last_gen: gen,
            last_lsn: Lsn::new(1, off),
            tiebreaker,
        }
    }

    #[test]
    fn the_newest_log_wins_over_priority() {
        let mut t = BTreeMap::new();
        t.insert(1, cand(2, 10, 100, 0));
        t.insert(2, cand(3, 5, 1, 0));
        t.insert(3, cand(3, 5, 0, 9));
        assert_eq!(best_candidate(&t), Some(2));
    }

    #[test]
    fn nobody_electable_means_no_vote() {
        let mut t = BTreeMap::new();
        t.insert(1, cand(2, 10, 0, 0));
        assert_eq!(best_candidate(&t), None);
    }

    proptest! {
        /// The pick is electable and no electable candidate has a newer
        /// log; the order the tally was filled in does not matter.
        #[test]
        fn the_pick_is_electable_and_has_the_newest_log(
            cands in proptest::collection::vec((0u32..3, 0u32..4, 0u32..3, 0u32..3), 1..7),
        ) {
            let t: BTreeMap<Eid, Candidate> = cands
                .iter()
                .enumerate()
                .map(|(i, &(g, o, p, tb))| (i as Eid, cand(g, o, p, tb)))
                .collect();
            let rev: BTreeMap<Eid, Candidate> = t.iter().rev().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(best_candidate(&t), best_candidate(&rev));
            match best_candidate(&t) {
                None => prop_assert!(t.values().all(|c| c.priority == 0)),
                Some(e) => {
                    let w = t[&e];
                    prop_assert!(w.priority > 0);
                    for c in t.values().filter(|c| c.priority > 0) {
                        prop_assert!((c.last_gen, c.last_lsn) <= (w.last_gen, w.last_lsn));
                    }
                }
            }
        }
    }
}
