//! When a commit is permanent: the master counts acknowledgements (through
//! [`crate::rep::quorum`]) and moves its permanent point.

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::rep::core::Core;
use crate::rep::quorum::Peer;
use crate::rep::quorum::{self, nth_largest_ack, AckFilter};
use crate::rep::types::{Eid, Status};
use crate::rep::types::{Event, Role};

impl Core {
    /// What the master does with an acknowledgement: notes how far the
    /// client's log is durable, then moves the permanent point if the ack
    /// policy is now met.
    pub(super) fn on_ack(&mut self, from: Eid, lsn: Lsn, priority: u32) -> Result<Status> {
        let master_last = self.storage.log().last_lsn();
        if lsn > master_last {
            return Err(Error::malformed(format!(
                "ack for {lsn} beyond the master's last record {master_last}"
            )));
        }
        let now = self.now;
        let Some(peer) = self.peer_entry(from) else {
            return Ok(Status::Ignore);
        };
        let progressed = lsn > peer.acked;
        peer.acked = peer.acked.max(lsn);
        peer.priority = priority;
        let acked = peer.acked;
        if acked >= master_last {
            peer.owed_since = None;
        } else if progressed {
            // Responsive, and still catching up: the wait starts over.
            peer.owed_since = Some(now);
        }
        self.master_state.max_acked = self.master_state.max_acked.max(acked);
        self.recompute_perm();
        Ok(Status::Processed)
    }

    /// The master's entry for client `eid`, added if new and the peer table
    /// has room for it.
    #[inline]
    pub(super) fn peer_entry(&mut self, eid: Eid) -> Option<&mut Peer> {
        self.master_state.peers.get_or_add(eid, usize::MAX)
    }

    /// The master's permanent point: every commit at or before it is permanent
    /// under the ack policy.
    pub fn perm_lsn(&self) -> Lsn {
        self.master_state.perm_lsn
    }

    /// True if the commit at `lsn` is permanent.
    pub fn is_permanent(&self, lsn: Lsn) -> bool {
        self.role == Role::Master
            && lsn <= self.master_state.perm_lsn
            && (!self.cfg.lease || self.lease_valid())
    }

    /// The host made the log durable (group commit): permanence may advance.
    pub fn note_local_sync(&mut self) {
        self.recompute_perm();
    }

    #[inline]
    pub(crate) fn recompute_perm(&mut self) {
        if self.role != Role::Master {
            return;
        }
        let (need, filter) = quorum::acks_needed(&self.cfg, &self.master_state.peers, self.now);
        if need > 0 && self.master_state.max_acked <= self.master_state.perm_lsn {
            // The candidate is at most the `need`-th largest ack, hence at
            // most `max_acked`: it cannot pass `perm_lsn`. (The common case
            // of a commit: it moves the local end, which acks then bound.)
            return;
        }
        self.recompute_perm_from(need, filter);
    }

    /// The rest of [`Core::recompute_perm`]: counts the acks.
    #[inline(never)]
    pub(super) fn recompute_perm_from(&mut self, need: usize, filter: AckFilter) {
        let local = self.local_durable_lsn();
        let candidate = if need == 0 {
            local
        } else {
            match nth_largest_ack(
                self.master_state
                    .peers
                    .values()
                    .filter(|p| filter.counts(p)),
                need,
            ) {
                Some(ack) => ack.min(local),
                None => return,
            }
        };
        // Only a record of this generation can be declared permanent by
        // counting copies; earlier ones become permanent with it.
        if candidate >= self.master_state.gen_start_lsn && candidate > self.master_state.perm_lsn {
            debug_assert!(
                candidate <= self.storage.log().last_lsn(),
                "the permanent point {candidate} would pass the log's end {}",
                self.storage.log().last_lsn()
            );
            self.master_state.perm_lsn = candidate;
            // Follower reads may have waited for this generation's first
            // record to become permanent.
            self.answer_pending_reads();
        }
    }

    /// Records how a commit ended for the statistics, and fires
    /// `Event::PermFailed` when it did not become permanent.
    pub fn record_commit_outcome(&mut self, lsn: Lsn, permanent: bool) {
        if permanent {
            self.stats.perm_commits += 1;
        } else {
            self.stats.perm_failed += 1;
            self.event(Event::PermFailed(lsn));
        }
    }
}
