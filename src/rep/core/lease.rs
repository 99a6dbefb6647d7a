//! Read consistency: master leases, mastership confirmation for
//! linearizable reads, read-index requests for follower reads, and
//! read-your-writes commit tokens.
//!
//! **Leases.** With [`ConfigFlag::Lease`](crate::rep::ConfigFlag::Lease) on,
//! the master keeps asking its clients to confirm it (`LeaseReq`, carrying
//! the master's clock); a client answers with a `LeaseGrant` echoing that
//! time and promises, for one lease timeout by *its* clock, not to help elect
//! anyone else. The master holds a lease while grants from a majority
//! (counting itself; priority-0 sites excluded, as in Berkeley DB) are younger
//! than the lease timeout by *its* clock. Clock skew is accounted for twice,
//! deliberately: the master shortens its lease by `slow/fast` and clients
//! lengthen their promise by `fast/slow`. So while a master's lease is
//! valid, no election can finish elsewhere, and reads on the master are
//! linearizable without a network round.
//!
//! **Confirmation without leases.** A linearizable read on a master with
//! leases off broadcasts a `LeaseReq` at time T and waits until a majority
//! has answered with grants echoing T or later: the master was still master
//! at T, so a read served after that sees every write completed before it.
//!
//! **Follower reads.** A client sends `ReadIndexReq`; the master answers with
//! its commit point once it has confirmed it is master (at once with a valid
//! lease, else after a confirmation round) and once the first record of its
//! own generation is permanent; the client reads locally as soon as it has
//! applied up to that point.
//!
//! **Only permanent values.** Sites apply records before they are
//! permanent, and a record that is not permanent may still be rolled back.
//! So a linearizable or follower read returns a key's value only when no
//! record after the site's known permanent point touches that key
//! ([`Core::key_is_permanent`]); otherwise it waits. The simulator found both
//! this rule and the previous one missing.
//!
//! **Tokens.** A commit returns its (generation, LSN). Any site can tell
//! whether that commit is applied locally, may still arrive, or never will
//! (a later generation replaced the log at that point).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::rep::core::reads::ReadIndexState;
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::types::{Eid, Role, SendFlags, Status};
use crate::wire::Message;

/// At most this many follower-read requests wait at a master for confirmation.
const MAX_PENDING_READS: usize = 4096;
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    from: Eid,
    id: u64,
    asked_at: u64,
}
/// Lease and read bookkeeping.
#[derive(Default)]
pub(crate) struct LeaseState {
    /// Master: when the last `LeaseReq` went out (master clock).
    pub last_req_us: u64,
    /// Master: the newest request time each peer has confirmed.
    pub grants: BTreeMap<Eid, u64>,
    /// Master: follower reads waiting for a confirmation round.
    pub pending_reads: Vec<PendingRead>,
    /// Client: this site may not help elect another master before this time (its own clock).
    pub grant_expiry_us: u64,
    /// Client: follower-read requests.
    pub next_read_id: u64,
    pub reads: BTreeMap<u64, ReadIndexState>,
}

impl Core {
    pub(super) fn scaled(us: u64, num: u32, den: u32) -> u64 {
        (u128::from(us) * u128::from(num) / u128::from(den.max(1))) as u64
    }

    /// How long a client's grant binds it, by its own clock: stretched for skew.
    pub(super) fn grant_duration_us(&self) -> u64 {
        let (fast, slow) = self.cfg.clockskew;
        Self::scaled(self.cfg.lease_timeout_us, fast, slow)
    }

    /// How long a grant counts at the master, by the master's clock: shrunk for skew.
    pub(super) fn lease_duration_us(&self) -> u64 {
        let (fast, slow) = self.cfg.clockskew;
        Self::scaled(self.cfg.lease_timeout_us, slow, fast)
    }

    /// Confirmations a master needs besides its own, and whether priority-0 sites count.
    pub(super) fn confirmations_needed(&self) -> usize {
        let nsites = if self.managed_group() {
            self.cfg.nsites as usize
        } else {
            (self.cfg.nsites as usize).max(self.master_state.peers.len() + 1)
        };
        nsites / 2
    }

    /// The newest time T such that a majority confirmed this master at T or later.
    pub(super) fn confirmed_time(&self, lease_only: bool) -> Option<u64> {
        let need = self.confirmations_needed();
        if need == 0 {
            return Some(u64::MAX);
        }
        let mut times: Vec<u64> = self
            .lease
            .grants
            .iter()
            .filter(|(eid, _)| {
                !lease_only
                    || self
                        .master_state
                        .peers
                        .get(eid)
                        .is_some_and(|p| p.priority > 0)
            })
            .map(|(_, t)| *t)
            .collect();
        if times.len() < need {
            return None;
        }
        times.sort_unstable_by(|a, b| b.cmp(a));
        Some(times[need - 1])
    }

    /// True if this master holds a valid lease now.
    pub fn lease_valid(&self) -> bool {
        if self.role != Role::Master || !self.cfg.lease {
            return false;
        }
        match self.confirmed_time(true) {
            Some(u64::MAX) => true,
            Some(t) => self.now < t.saturating_add(self.lease_duration_us()),
            None => false,
        }
    }

    /// True if a majority confirmed this site as master at `since` or later.
    pub fn confirmed_since(&self, since: u64) -> bool {
        self.role == Role::Master && self.confirmed_time(false).is_some_and(|t| t >= since)
    }

    /// Starts a confirmation round at `now` (a `LeaseReq` broadcast) and
    /// returns the time a later [`Core::confirmed_since`] must reach.
    pub fn confirm_start(&mut self, now: u64) -> Result<u64> {
        self.advance(now);
        if self.role != Role::Master {
            return Err(Error::invalid("only a master can confirm its mastership"));
        }
        self.send_lease_request();
        Ok(self.now)
    }

    pub(super) fn send_lease_request(&mut self) {
        if self.lease.last_req_us == self.now && self.now != 0 {
            return;
        }
        self.lease.last_req_us = self.now;
        let t = self.now;
        self.send(
            Outgoing::broadcast(Message::LeaseReq { master_time_us: t }).hints(SendFlags::NOBUFFER),
        );
    }

    /// Master timer work for leases: refresh at a third of the lease timeout.
    pub(crate) fn lease_tick(&mut self) {
        if self.role == Role::Master
            && self.cfg.lease
            && self.now >= self.lease.last_req_us + (self.cfg.lease_timeout_us / 3).max(1)
        {
            self.send_lease_request();
        }
    }

    pub(crate) fn lease_deadline(&self) -> Option<u64> {
        let mut d = None;
        if self.role == Role::Master && self.cfg.lease {
            d = Some(self.lease.last_req_us + (self.cfg.lease_timeout_us / 3).max(1));
        }
        if self.role == Role::Client && self.lease.grant_expiry_us > self.now {
            let g = self.lease.grant_expiry_us;
            d = Some(d.map_or(g, |d: u64| d.min(g)));
        }
        d
    }

    /// True while this site's lease promise forbids it to help elect another master.
    pub(crate) fn grant_outstanding(&self) -> bool {
        self.cfg.lease && self.lease.grant_expiry_us > self.now
    }

    /// A fresh lease client behaves as if it had just granted: it waits a
    /// full lease timeout before voting.
    pub(crate) fn lease_on_client_start(&mut self) {
        if self.cfg.lease {
            self.lease.grant_expiry_us = self
                .lease
                .grant_expiry_us
                .max(self.now + self.grant_duration_us());
        }
    }

    /// Checks the lease rules for `rep_start(MASTER)`.
    pub(crate) fn lease_check_start_master(&self) -> Result<()> {
        if !self.cfg.lease {
            return Ok(());
        }
        if !matches!(self.elected_egen, Some(egen) if egen >= self.meta.gen) && !self.founds_group()
        {
            return Err(Error::invalid(
                "cannot become master without being elected when using leases",
            ));
        }
        if self.grant_outstanding() {
            return Err(Error::invalid(
                "cannot become master with an outstanding lease grant",
            ));
        }
        Ok(())
    }

    /// A client answers its master's `LeaseReq`.
    pub(crate) fn on_lease_request(&mut self, from: Eid, master_time_us: u64) -> Result<Status> {
        if self.group_state.refused.is_some() {
            return Ok(Status::Ignore);
        }
        if self.cfg.lease {
            self.lease.grant_expiry_us = self
                .lease
                .grant_expiry_us
                .max(self.now + self.grant_duration_us());
        }
        self.send(
            Outgoing::to(from, Message::LeaseGrant { master_time_us }).hints(SendFlags::NOBUFFER),
        );
        Ok(Status::Processed)
    }

    /// The master records a grant and answers follower reads it now can.
    pub(crate) fn on_lease_grant(&mut self, from: Eid, master_time_us: u64) -> Result<Status> {
        if master_time_us > self.now {
            return Err(Error::malformed(format!(
                "lease grant echoes time {master_time_us}, later than the master's clock {}",
                self.now
            )));
        }
        if self.peer_entry(from).is_none() || !self.is_voter(from) {
            // Not a site of the group (the peer table is full, or the
            // replicated group does not hold it): its grant must not
            // grow the grant table either, nor count.
            return Ok(Status::Ignore);
        }
        let g = self.lease.grants.entry(from).or_insert(0);
        *g = (*g).max(master_time_us);
        self.answer_pending_reads();
        Ok(Status::Processed)
    }

    /// The master receives a follower read's request.
    pub(crate) fn on_read_index_request(&mut self, from: Eid, id: u64) -> Result<Status> {
        if self.lease_valid() && self.own_generation_permanent() {
            let perm = self.master_state.perm_lsn;
            self.send(
                Outgoing::to(from, Message::ReadIndex { id })
                    .lsn(perm)
                    .hints(SendFlags::NOBUFFER),
            );
            return Ok(Status::Processed);
        }
        if self.lease.pending_reads.len() >= MAX_PENDING_READS {
            self.lease.pending_reads.remove(0);
        }
        self.lease.pending_reads.push(PendingRead {
            from,
            id,
            asked_at: self.now,
        });
        self.send_lease_request();
        self.answer_pending_reads();
        Ok(Status::Processed)
    }

    /// A new master's permanent point says nothing about the records it
    /// inherited until the first record of its own generation is permanent
    /// (Raft's rule that a leader commits an entry of its term before it
    /// serves reads): before that, a commit point it hands out may be far
    /// behind what earlier masters made permanent.
    pub(super) fn own_generation_permanent(&self) -> bool {
        !self.master_state.gen_start_lsn.is_zero()
            && self.master_state.perm_lsn >= self.master_state.gen_start_lsn
    }

    pub(crate) fn answer_pending_reads(&mut self) {
        if self.lease.pending_reads.is_empty() || !self.own_generation_permanent() {
            return;
        }
        let Some(confirmed) = self.confirmed_time(false) else {
            return;
        };
        let perm = self.master_state.perm_lsn;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lease.pending_reads)
            .into_iter()
            .partition(|p| confirmed >= p.asked_at);
        self.lease.pending_reads = waiting;
        for p in ready {
            self.send(
                Outgoing::to(p.from, Message::ReadIndex { id: p.id })
                    .lsn(perm)
                    .hints(SendFlags::NOBUFFER),
            );
        }
    }
}
