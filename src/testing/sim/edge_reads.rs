//! Reads on a lease master at every instant of its lease (issue 15's
//! timing at the edges the configuration allows). A lease grant the master
//! receives may schedule a linearizable read on it within the lease that
//! grant extends: half of them anywhere in it, half around its end, from a
//! few milliseconds before the end the master must count (the request's
//! time plus the lease shrunk for skew, by the master's clock) to 30 ms
//! after the granting client's promise (stretched for skew) runs out, time
//! for an election elsewhere and a commit by its winner.
//! There the master's arithmetic of time alone decides whether it may
//! still answer without a round of messages, while after the promises run
//! out a new master may be elected elsewhere and write.

use super::history::ReadKind;
use super::plan::{CLOCKSKEW, LEASE_US};
use super::{Check, Sim, KEYS};
use crate::rep::{Eid, Role};

/// At most this many scheduled reads wait at once.
const EDGE_READS_MAX: usize = 16;
/// How far "near the end" reads reach before the master's end of the
/// lease.
const NEAR_END_US: u64 = 4_000;
/// How far they reach after the client's: time for an election elsewhere
/// and a commit by its winner.
const AFTER_PROMISE_US: u64 = 30_000;

/// A read scheduled at an instant of a lease.
#[derive(Clone, Copy, Debug)]
pub(super) struct EdgeRead {
    at_us: u64,
    eid: Eid,
    near_end: bool,
}

impl Sim {
    /// A lease grant from `from` reached `to`: if `to` is master, perhaps
    /// schedules a read on it within the lease the grant extends.
    pub(super) fn on_lease_grant(&mut self, from: Eid, to: Eid) {
        let p = self.plan.edges.p_edge_read;
        if p == 0
            || self.step >= self.plan.steps
            || self.edge_reads.len() >= EDGE_READS_MAX
            || !self.erng.chance(p)
        {
            return;
        }
        let site = self.cluster.site(to);
        let Some(core) = site.core.as_ref() else {
            return;
        };
        if core.role() != Role::Master {
            return;
        }
        // The master's clock when it asked for the confirmation this grant
        // echoes; the lease that grant supports ends a lease timeout later,
        // shortened by the skew allowance.
        let Some(&asked) = core.lease.grants.get(&from) else {
            return;
        };
        let clock = site.clock;
        let now = self.cluster.now;
        let start = clock.global(asked).min(now);
        let (fast, slow) = (u64::from(CLOCKSKEW.0), u64::from(CLOCKSKEW.1));
        let end = clock.global(asked + LEASE_US * slow / fast);
        // The promise, by a client's clock, from about when it granted.
        let promise_end = start + LEASE_US * fast / slow;
        let near_end = self.erng.chance(500);
        let at_us = if near_end {
            let from = end.saturating_sub(NEAR_END_US);
            from + self.erng.below(promise_end + AFTER_PROMISE_US - from + 1)
        } else {
            start + self.erng.below(end.saturating_sub(start) + 1)
        };
        self.edge_reads.push(EdgeRead {
            at_us: at_us.max(now),
            eid: to,
            near_end,
        });
    }

    /// When the next scheduled read is due (`u64::MAX` if none).
    pub(super) fn next_edge_read(&self) -> u64 {
        self.edge_reads
            .iter()
            .map(|r| r.at_us)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Starts the scheduled reads that are due, on sites still master
    /// (after the run's steps, drops them: the final heal reads nothing).
    pub(super) fn start_due_edge_reads(&mut self) -> Check {
        let now = self.cluster.now;
        if self.edge_reads.iter().all(|r| r.at_us > now) {
            return Ok(());
        }
        let (due, later): (Vec<EdgeRead>, Vec<EdgeRead>) =
            self.edge_reads.drain(..).partition(|r| r.at_us <= now);
        self.edge_reads = later;
        if self.step >= self.plan.steps {
            self.edge_reads.clear();
            return Ok(());
        }
        for r in due {
            let master = self
                .cluster
                .site(r.eid)
                .core
                .as_ref()
                .is_some_and(|c| c.role() == Role::Master);
            if !master {
                continue;
            }
            if r.near_end {
                self.coverage.lease_edge_reads += 1;
            }
            let key = format!("k{}", self.erng.below(KEYS)).into_bytes();
            self.start_read_on(r.eid, ReadKind::Linearizable, key)?;
        }
        Ok(())
    }
}
