//! The replication calls of [`Env`]: set-up (transport, events, settings),
//! `rep_start`, `rep_process_message`, the timer call, elections, and the
//! replicated group membership.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Env, SendError, TickOutcome, Wait};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::rep::{
    ConfigFlag, Eid, ElectionOutcome, ElectionProgress, Event, OutMsg, RepConfig, RepStats, Role,
    StartAs, Status, TimeoutKind,
};

impl Env {
    // ---- replication set-up -------------------------------------------

    /// Sets this site's id and the function that sends messages to other sites.
    pub fn rep_set_transport<F>(&self, local_eid: Eid, send: F) -> Result<()>
    where
        F: Fn(&OutMsg) -> std::result::Result<(), SendError> + Send + Sync + 'static,
    {
        self.inner.core.lock().set_local_eid(local_eid)?;
        *self.inner.transport.write() = Some(Arc::new(send));
        Ok(())
    }

    /// Sets the event handler.
    pub fn set_event_notify<F>(&self, f: F)
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        *self.inner.events.write() = Some(Arc::new(f));
    }

    fn update_config(&self, f: impl FnOnce(&mut RepConfig)) -> Result<()> {
        let mut core = self.inner.core.lock();
        let mut cfg = core.config().clone();
        f(&mut cfg);
        core.set_config(cfg)
    }

    /// Sets the election priority (0 = never master).
    pub fn rep_set_priority(&self, priority: u32) -> Result<()> {
        self.update_config(|c| c.priority = priority)
    }
    /// The election priority.
    pub fn rep_get_priority(&self) -> u32 {
        self.inner.core.lock().config().priority
    }
    /// Sets the number of sites in the group.
    pub fn rep_set_nsites(&self, nsites: u32) -> Result<()> {
        self.update_config(|c| c.nsites = nsites)
    }
    /// The number of sites in the group.
    pub fn rep_get_nsites(&self) -> u32 {
        self.inner.core.lock().config().nsites
    }
    /// Sets one timeout, in microseconds.
    pub fn rep_set_timeout(&self, kind: TimeoutKind, us: u64) -> Result<()> {
        self.update_config(|c| c.set_timeout(kind, us))
    }
    /// Reads one timeout, in microseconds.
    pub fn rep_get_timeout(&self, kind: TimeoutKind) -> u64 {
        self.inner.core.lock().config().timeout(kind)
    }
    /// Turns a setting on or off.
    pub fn rep_set_config(&self, flag: ConfigFlag, on: bool) -> Result<()> {
        self.update_config(|c| c.set_flag(flag, on))
    }
    /// Reads a setting.
    pub fn rep_get_config(&self, flag: ConfigFlag) -> bool {
        self.inner.core.lock().config().flag(flag)
    }
    /// Sets the acknowledgement policy.
    pub fn rep_set_ack_policy(&self, policy: crate::rep::AckPolicy) -> Result<()> {
        self.update_config(|c| c.ack_policy = policy)
    }
    /// Caps the bytes one call sends in answer to requests (0 = no cap).
    pub fn rep_set_limit(&self, bytes: u64) -> Result<()> {
        self.update_config(|c| c.answer_bytes_max = bytes)
    }
    /// The cap on bytes sent per call.
    pub fn rep_get_limit(&self) -> u64 {
        self.inner.core.lock().config().answer_bytes_max
    }
    /// Sets the re-request back-off bounds, in microseconds.
    pub fn rep_set_request(&self, min_us: u64, max_us: u64) -> Result<()> {
        self.update_config(|c| {
            c.request_us_min = min_us;
            c.request_us_max = max_us;
        })
    }
    /// The re-request back-off bounds.
    pub fn rep_get_request(&self) -> (u64, u64) {
        let core = self.inner.core.lock();
        (core.config().request_us_min, core.config().request_us_max)
    }
    /// Sets the clock-skew allowance (must precede `rep_start`).
    pub fn rep_set_clockskew(&self, fast: u32, slow: u32) -> Result<()> {
        self.update_config(|c| c.clockskew = (fast, slow))
    }
    /// The clock-skew allowance.
    pub fn rep_get_clockskew(&self) -> (u32, u32) {
        self.inner.core.lock().config().clockskew
    }

    // ---- replication calls --------------------------------------------

    /// Starts this site as master or client (`rep_start`).
    pub fn rep_start(&self, cdata: &[u8], as_: StartAs) -> Result<()> {
        self.run(|core, now| core.start(now, as_, cdata))
    }

    /// Processes one incoming message (`rep_process_message`).
    pub fn rep_process_message(&self, control: &[u8], rec: &[u8], from: Eid) -> Result<Status> {
        self.run(|core, now| core.process(now, control, rec, from))
    }

    /// The timer call: heartbeats, re-requests, master-failure detection,
    /// election phases, lease refreshes. [`TickOutcome::next`] is how long
    /// the host may sleep; `None` means no timer runs until another call
    /// changes the state. Calling it before the deadline does no harm
    /// (nothing is due, nothing fires twice); calling it late only delays
    /// what was due.
    /// Any call into the handle (`rep_process_message`, `rep_start`,
    /// `rep_elect`, a commit, a read) can move the deadline earlier: call
    /// `rep_tick` again after those to learn it.
    pub fn rep_tick(&self) -> Result<TickOutcome> {
        let (status, next) = self.run(|core, now| core.tick(now))?;
        let now = self.now_us();
        Ok(TickOutcome {
            status,
            next: next.map(|t| Duration::from_micros(t.saturating_sub(now))),
        })
    }

    /// Holds an election and blocks until it ends (`rep_elect`): returns
    /// [`ElectionOutcome::Won`] when this site won (then call
    /// `rep_start(MASTER)`), [`ElectionOutcome::OtherWon`] when another site
    /// became master, and `Err(Unavail)` when no master was chosen within the
    /// election timeout.
    ///
    /// `nsites` 0 means the configured `rep_set_nsites`; `nvotes` 0 means a
    /// simple majority of `nsites`. A sub-majority `nvotes` is refused unless
    /// [`ConfigFlag::AllowSubMajority`] is set; with leases `nsites` must be 0.
    ///
    /// Threads and events: other threads must keep delivering messages
    /// (`rep_process_message`) meanwhile; this call runs the timers itself,
    /// waking at the deadlines the core gives. On a win, `Event::Elected` is
    /// delivered on this thread before the call returns, whichever thread
    /// processed the deciding vote. `Event::NewMaster`, `Event::Master`,
    /// `Event::Client` and the others are delivered on the thread whose call
    /// produced them. Callbacks (`send`, the event handler) run with no
    /// internal lock held, so they may call back into this handle.
    pub fn rep_elect(&self, nsites: u32, nvotes: u32, flags: u32) -> Result<ElectionOutcome> {
        self.inner.election_waiters.fetch_add(1, Ordering::SeqCst);
        let result = self.elect_and_wait(nsites, nvotes, flags);
        self.inner.election_waiters.fetch_sub(1, Ordering::SeqCst);
        // The win's event, on this thread, before returning; exactly once
        // when several rep_elect calls wait together: the first to get here
        // delivers it, and the others wait for that delivery to finish.
        let _delivering = self.inner.elected_delivery.lock();
        let held = {
            let _core = self.inner.core.lock();
            self.inner.elected_held.swap(false, Ordering::SeqCst)
        };
        if held {
            self.deliver(Vec::new(), vec![Event::Elected]);
        }
        result
    }

    fn elect_and_wait(&self, nsites: u32, nvotes: u32, flags: u32) -> Result<ElectionOutcome> {
        self.run(|core, now| core.elect(now, nsites, nvotes, flags))?;
        let progress = self.wait_on_core(|core, now| {
            if core.election_progress() == ElectionProgress::InProgress {
                // The election ends through messages (other threads) or
                // through its own deadlines, which this thread runs.
                let next = match core.tick(now) {
                    Ok((_, next)) => next,
                    Err(e) => return Wait::Done(Err(e)),
                };
                if core.election_progress() == ElectionProgress::InProgress {
                    let fallback = now.saturating_add(core.config().election_timeout_us.max(1));
                    return Wait::Until(next.unwrap_or(fallback));
                }
            }
            Wait::Done(Ok(core.election_progress()))
        })?;
        match progress {
            ElectionProgress::Won => Ok(ElectionOutcome::Won),
            ElectionProgress::OtherWon { master } => Ok(ElectionOutcome::OtherWon { master }),
            ElectionProgress::Failed(why) => Err(Error::Unavail(why)),
            ElectionProgress::InProgress => Err(Error::Unavail("the election did not end".into())),
        }
    }

    /// Starts (or joins) an election and returns at once; the election goes
    /// on through `rep_process_message` and `rep_tick`, and ends with
    /// `Event::Elected`, `Event::NewMaster` or `Event::ElectionFailed`,
    /// delivered on whichever thread's call decided it.
    pub fn rep_elect_nowait(
        &self,
        nsites: u32,
        nvotes: u32,
        flags: u32,
    ) -> Result<ElectionProgress> {
        self.run(|core, now| core.elect(now, nsites, nvotes, flags))
    }

    /// Re-broadcasts the master's last record (`rep_flush`).
    pub fn rep_flush(&self) -> Result<()> {
        self.run(|core, now| core.flush(now))
    }

    // ---- replicated group membership ----------------------------------

    /// Sets the address the replicated group advertises for this site
    /// (opaque bytes: the `net` host uses its listen address). A joining
    /// site sends it to the master; set it before `rep_start`.
    pub fn rep_set_local_addr(&self, addr: &[u8]) -> Result<()> {
        self.update_config(|c| c.local_addr = addr.to_vec())
    }

    /// The address the replicated group advertises for this site, as set
    /// by [`Env::rep_set_local_addr`] (or `RepConfig::local_addr`); empty
    /// when none was set.
    pub fn rep_local_addr(&self) -> Vec<u8> {
        self.inner.core.lock().config().local_addr.clone()
    }

    /// The group membership in force here (from this site's log), or
    /// `None` before any membership record. See
    /// [`ConfigFlag::GroupMembership`].
    pub fn rep_membership(&self) -> Option<crate::membership::Membership> {
        self.inner.core.lock().membership().cloned()
    }

    /// The sites this site should be connected to: the group in force, or,
    /// for a site not yet a member, the group a member told it of.
    pub fn rep_known_members(&self) -> Option<crate::membership::Membership> {
        self.inner.core.lock().known_members().cloned()
    }

    /// Master: adds site `eid`, reachable at `addr`, to the replicated
    /// group; returns the LSN of the membership record. A site that joins
    /// by itself needs no call (the master adds it once it has caught up).
    /// Refused while an earlier change is not yet held by a majority
    /// (`Unavail`: try again), on a client, and for a member.
    pub fn rep_add_site(&self, eid: Eid, addr: &[u8], electable: bool) -> Result<Lsn> {
        self.run(|core, now| core.add_site(now, eid, addr, electable))
    }

    /// Master: removes site `eid` (dead, or leaving) from the replicated
    /// group; returns the LSN of the membership record. Removing the master
    /// itself is refused: hand over first. Refused while an earlier change
    /// is not yet held by a majority (`Unavail`: try again).
    pub fn rep_remove_site(&self, eid: Eid) -> Result<Lsn> {
        self.run(|core, now| core.remove_site(now, eid))
    }

    /// Client: asks the master to remove this site from the replicated
    /// group. Returns at once; the site has left when an
    /// [`Event::GroupChanged`] without it arrives.
    pub fn rep_leave(&self) -> Result<()> {
        self.run(|core, now| core.leave_group(now))
    }

    /// Starts synchronising a delayed client (`rep_sync`).
    pub fn rep_sync(&self) -> Result<()> {
        self.run(|core, now| core.sync(now))
    }

    /// Replication statistics; `clear` resets the counters.
    pub fn rep_stat(&self, clear: bool) -> RepStats {
        self.inner.core.lock().stats(clear)
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.inner.core.lock().role()
    }
}
