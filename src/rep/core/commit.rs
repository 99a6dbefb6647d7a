//! When a commit is permanent: the master counts acknowledgements (through
//! [`crate::rep::quorum`]) and moves its permanent point.

use crate::error::{Error, Result};
use crate::log::Durability;
use crate::lsn::Lsn;
use crate::rep::core::Core;
use crate::rep::quorum::Peer;
use crate::rep::quorum::{self, nth_largest_ack, AckFilter};
use crate::rep::types::{Eid, Status};
use crate::rep::types::{Event, Role};

/// A commit in progress on the master, from [`Core::commit_begin`] to the
/// [`Core::commit_poll`] that settles it. Held by the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitTicket {
    /// LSN of the commit record.
    pub lsn: Lsn,
    /// The generation it was committed in.
    pub gen: u32,
    /// The host time after which the commit is reported not permanent
    /// (the commit time plus the ack timeout).
    pub deadline: u64,
    /// The host must make the log durable (fsync) through `lsn` and then
    /// call [`Core::note_local_sync`]: the durability mode is `Sync`.
    pub needs_sync: bool,
    settled: bool,
}

/// What [`Core::commit_poll`] decided.
#[derive(Debug)]
pub enum CommitPoll {
    /// The commit is permanent under the ack policy (see
    /// [`AckPolicy`](crate::rep::AckPolicy) for what each promises).
    Permanent,
    /// Not yet: poll again when the core's state changes (any later call
    /// into it) or at `until` (host time), whichever comes first.
    Waiting {
        /// When to poll again at the latest: the ticket's deadline.
        until: u64,
    },
    /// The ack timeout passed, or this site stopped being master, before
    /// the commit became permanent. It is in the local log and may still
    /// become permanent, or be rolled back by a later master.
    NotPermanent,
    /// The commit cannot be vouched for: `LeaseExpired` (leases are on and
    /// the master's lease was not valid when the wait ended).
    Failed(Error),
}

impl Core {
    /// What both commit calls start with: the checks, then the record
    /// appended and applied; returns its LSN and generation. Inlined into
    /// each: with one body, the storage call inlines into it as well (the
    /// master's hot path).
    #[inline(always)]
    pub(super) fn append_commit(&mut self, now: u64, payload: &[u8]) -> Result<(Lsn, u32)> {
        self.advance(now);
        self.check_alive()?;
        if self.role != Role::Master {
            return Err(Error::invalid(
                "only the master can commit; this site is not master",
            ));
        }
        let gen = self.meta.gen;
        let lsn = self.storage.commit(gen, payload)?;
        Ok((lsn, gen))
    }

    /// Commits a transaction on the master: appends its record, writes the
    /// log out (to the OS; the fsync is the host's, see
    /// [`CommitTicket::needs_sync`]), then queues the record for the
    /// clients. [`Core::commit_poll`] then tells when it is permanent.
    ///
    /// A failed log write puts the core in its failed state: this and every
    /// later call return `RunRecovery`, and nothing of the commit is sent.
    pub fn commit_begin(&mut self, now: u64, payload: &[u8]) -> Result<CommitTicket> {
        let (lsn, gen) = self.append_commit(now, payload)?;
        let cfg = self.storage.log().config();
        let needs_sync = !cfg.in_memory && cfg.durability == Durability::Sync;
        let log = self.storage.log_mut();
        let written = if needs_sync {
            log.write_out().map(|_| ())
        } else {
            log.flush().map(|_| ())
        };
        if let Err(e) = written {
            return Err(self.fail(format!("writing the log at commit {lsn}: {e}")));
        }
        self.queue_broadcast(lsn)?;
        self.recompute_perm();
        Ok(CommitTicket {
            lsn,
            gen,
            deadline: self.now.saturating_add(self.cfg.ack_timeout_us),
            needs_sync,
            settled: false,
        })
    }

    /// Decides whether the commit of `ticket` is permanent, still waiting,
    /// or settled without becoming permanent. The first final answer is
    /// counted in the statistics (and `Event::PermFailed` fired for a commit
    /// that did not become permanent); later polls answer again without
    /// counting twice.
    pub fn commit_poll(&mut self, now: u64, ticket: &mut CommitTicket) -> CommitPoll {
        self.advance(now);
        let poll = if self.is_permanent(ticket.lsn) && self.meta.gen == ticket.gen {
            CommitPoll::Permanent
        } else if self.role != Role::Master || self.meta.gen != ticket.gen {
            CommitPoll::NotPermanent
        } else if self.now < ticket.deadline {
            return CommitPoll::Waiting {
                until: ticket.deadline,
            };
        } else if self.cfg.lease && !self.lease_valid() {
            CommitPoll::Failed(Error::LeaseExpired)
        } else {
            CommitPoll::NotPermanent
        };
        if !ticket.settled {
            ticket.settled = true;
            self.record_commit_outcome(ticket.lsn, matches!(poll, CommitPoll::Permanent));
        }
        poll
    }

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
        self.admit_next();
        Ok(Status::Processed)
    }

    /// The master's entry for client `eid`, added if new and the peer table
    /// has room for it.
    #[inline(always)]
    pub(super) fn peer_entry(&mut self, eid: Eid) -> Option<&mut Peer> {
        let excluded = !self.is_voter(eid);
        let peer = self
            .master_state
            .peers
            .get_or_add(eid, quorum::peers_max(&self.cfg))?;
        peer.excluded = excluded;
        Some(peer)
    }

    /// The master's permanent point: every commit at or before it is permanent
    /// under the ack policy.
    #[cfg(any(test, feature = "testing"))]
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
