//! Replicated group membership ([`ConfigFlag::GroupMembership`]): the group
//! is what the log says, and the master changes it one site at a time.
//!
//! # The rule
//!
//! A membership record holds the whole new group. It is in force on a site
//! from the moment it is in that site's log (applied with the record, undone
//! with it by a rollback, carried by checkpoints and snapshots), and every
//! majority the site computes — votes, acknowledgements, leases — is a
//! majority of the group in force there. The master changes the group one
//! site at a time, and starts a change only once the previous one, and the
//! first record of its own generation, are held by a majority of the group
//! in force ([`Core::change_settled`]).
//!
//! Why single-site changes rather than joint consensus (Raft's two rules,
//! from Ongaro's thesis, 4.1 and the 2015 fix): any majority of a group and
//! any majority of the group with one site added or removed share a site,
//! so whichever of the two groups a site counts against, two masters cannot
//! both win. Waiting for the previous change to settle keeps every pair of
//! groups in use one step apart; waiting for the master's own generation
//! to settle stops a new master from starting a change while an older
//! master's unsettled change could still win. Joint consensus allows
//! arbitrary changes but needs two-group counting everywhere; adding or
//! removing servers one at a time is all a replication group needs.
//!
//! # Elections across a change
//!
//! A candidate counts votes against the group in force in its own log;
//! a voter hears the candidacies of its own group's members and of any
//! standing site whose log is ahead of its own (that site may hold a
//! change the voter has not reached, and the group that change made may
//! have no majority without the voter), and waits for its members (and
//! for the sites ahead it heard in earlier elections since it last had a
//! master) before it votes. It never votes for a log behind its own.
//!
//! # Joining and leaving
//!
//! A client that is not a member (its log holds no group naming it)
//! broadcasts `JoinReq` with its address until it is one. Any member
//! answers with `JoinInfo` (the master it knows and the group), so the
//! joiner's host can reach the master; the master also notes the joiner
//! and adds it once its acknowledgements show it holds everything
//! permanent, so a site counts towards majorities only once it holds the
//! record that added it and all before. An eid already in the group with
//! another address is refused with `JoinRefused`. A member asks to leave
//! with `LeaveReq`; the master removes dead sites on request
//! ([`Core::remove_site`]), and refuses to remove itself.
//!
//! [`ConfigFlag::GroupMembership`]: crate::rep::ConfigFlag::GroupMembership

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::membership::{Member, Membership};
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::types::{Eid, Event, Role, EID_BROADCAST, EID_INVALID};
use crate::wire::Message;

/// At most this many sites waiting to join at the master: a sender's
/// request alone must not grow the table without bound.
pub(crate) const JOINERS_MAX: usize = 16;

/// What a site knows of the group beyond its log.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupState {
    /// The group in force (from the log), decoded; `None` before any
    /// membership record.
    pub group: Option<Membership>,
    /// LSN of the record that set `group`.
    pub change_lsn: Lsn,
    /// The encoded group `group` was decoded from, to notice a change.
    seen: Vec<u8>,
    /// For a site not yet a member: the group a member told it of.
    pub advertised: Option<Membership>,
    /// When a non-member next asks to join (or a leaving member to leave).
    pub next_request_us: u64,
    /// The log end this site's latest `JoinReq` said it holds.
    pub reported: Lsn,
    /// Why the master refused this site's join, if it did.
    pub refused: Option<String>,
    /// This member asked to leave.
    pub leaving: bool,
    /// This site was a member and the group no longer holds it: it does
    /// not ask to join again (until restarted).
    pub removed: bool,
    /// Master: sites asking to join, with their address, electability,
    /// and the log end their latest request said they hold durably.
    pub joiners: BTreeMap<Eid, (Vec<u8>, bool, Lsn)>,
    /// Master: members that asked to leave.
    pub leavers: BTreeSet<Eid>,
    /// Standing sites outside our group whose logs were ahead of ours in
    /// an election since we last had a master (at most [`AHEAD_MAX`]).
    /// Later elections wait for them in phase 1 as for members: a voter
    /// that voted before hearing them could split the vote the same way
    /// in every election.
    pub ahead: BTreeSet<Eid>,
}

/// At most this many sites remembered in [`GroupState::ahead`].
pub(crate) const AHEAD_MAX: usize = 16;

impl Core {
    /// True when the group is the replicated membership's, not `nsites`.
    #[inline]
    pub(crate) fn managed_group(&self) -> bool {
        self.cfg.membership
    }

    /// The group membership in force here (from this site's log), or `None`
    /// before any membership record (or without
    /// [`ConfigFlag::GroupMembership`](crate::rep::ConfigFlag::GroupMembership)).
    pub fn membership(&self) -> Option<&Membership> {
        self.group_state.group.as_ref()
    }

    /// The sites this site should be connected to: the group in force, or,
    /// for a site not yet a member, the group a member told it of.
    pub fn known_members(&self) -> Option<&Membership> {
        let local = self.eid?;
        match &self.group_state.group {
            Some(g) if g.contains(local) => Some(g),
            _ => self
                .group_state
                .advertised
                .as_ref()
                .or(self.group_state.group.as_ref()),
        }
    }

    /// Why the master refused to let this site join, if it did.
    #[cfg(any(test, feature = "testing"))]
    pub fn join_refused(&self) -> Option<&str> {
        self.group_state.refused.as_deref()
    }

    /// True if `eid`'s votes, acknowledgements and lease grants count:
    /// always without a managed group; with one, only a member's.
    #[inline]
    pub(crate) fn is_voter(&self, eid: Eid) -> bool {
        !self.managed_group()
            || self
                .group_state
                .group
                .as_ref()
                .is_some_and(|g| g.contains(eid))
    }

    /// True if this site takes part in elections: always without a managed
    /// group; with one, only as a member.
    pub(crate) fn is_member(&self) -> bool {
        self.group_state.refused.is_none() && self.eid.is_some_and(|e| self.is_voter(e))
    }

    /// The priority this site stands with: 0 for a member the group says
    /// may not become master.
    pub(crate) fn election_priority(&self) -> u32 {
        let electable = match (&self.group_state.group, self.eid) {
            (Some(g), Some(local)) if self.managed_group() => {
                g.get(local).is_some_and(|m| m.electable) && self.group_state.refused.is_none()
            }
            _ => !self.managed_group(),
        };
        if electable {
            self.cfg.priority
        } else {
            0
        }
    }

    /// Catches up with the group the log implies, after anything that may
    /// have changed the log (a record applied, a rollback, a snapshot
    /// install, opening). Cheap when nothing changed: one comparison of the
    /// encoded group.
    #[inline]
    pub(crate) fn refresh_group(&mut self) {
        let same = match self.storage.store().group_bytes() {
            None => self.group_state.group.is_none(),
            Some((lsn, bytes)) => {
                self.group_state.group.is_some()
                    && lsn == self.group_state.change_lsn
                    && bytes == &self.group_state.seen[..]
            }
        };
        if !same {
            self.group_changed();
        }
    }

    #[cold]
    fn group_changed(&mut self) {
        let found = self.storage.membership();
        let (lsn, group) = match found {
            Some((lsn, g)) => (lsn, Some(g)),
            None => (Lsn::ZERO, None),
        };
        let previous_lsn = std::mem::replace(&mut self.group_state.change_lsn, lsn);
        self.group_state.seen = group.as_ref().map(|g| g.encode()).unwrap_or_default();
        let previous = std::mem::replace(&mut self.group_state.group, group.clone());
        let Some(group) = group else {
            // Rolled back past the founding record: the group is unformed.
            if self.cfg.membership {
                self.cfg.nsites = 0;
            }
            return;
        };
        // A log that holds a group manages it, whatever the flag said.
        self.cfg.membership = true;
        self.cfg.nsites = group.len() as u32;
        let local = self.eid.unwrap_or(EID_INVALID);
        let was_member = previous.as_ref().is_some_and(|g| g.contains(local));
        if group.contains(local) {
            self.group_state.advertised = None;
            self.group_state.removed = false;
        } else {
            self.group_state.leaving = false;
            if was_member && lsn > previous_lsn {
                // Removed (or left) by a later record, not undone by a
                // rollback: it does not ask its way back in. A host that
                // wants it back restarts it.
                log::warn!("site {local} is no longer a member of the group");
                self.group_state.removed = true;
            }
        }
        log::info!(
            "site {local}: group of {} sites in force from {lsn}: {group}",
            group.len()
        );
        if self.role == Role::Master {
            self.group_state
                .joiners
                .retain(|eid, _| !group.contains(*eid));
            self.group_state.leavers.retain(|eid| group.contains(*eid));
            let joiners = &self.group_state.joiners;
            self.master_state
                .peers
                .retain(|eid| group.contains(eid) || joiners.contains_key(&eid));
            self.master_state
                .peers
                .for_each_mut(|eid, p| p.excluded = !group.contains(eid));
            self.lease.grants.retain(|eid, _| group.contains(*eid));
            self.recompute_perm();
        }
        self.event(Event::GroupChanged(group));
    }

    /// True once a majority of the group in force holds both the latest
    /// membership record and the first record of this master's
    /// generation: a further change may start (see the module docs).
    pub(crate) fn change_settled(&self) -> bool {
        let Some(group) = &self.group_state.group else {
            return false;
        };
        let target = self
            .group_state
            .change_lsn
            .max(self.master_state.gen_start_lsn);
        // Only electable holders count: a site that may not become master
        // votes for the best electable log it hears of, however far behind
        // its own, so its copy keeps no lacking candidate from winning (the
        // rule the `Quorum` ack policy follows too). A winning majority of
        // the group always includes one of a majority of electable holders,
        // and that one votes only for a log holding the record.
        let local = self.eid.unwrap_or(EID_INVALID);
        let mut holding = usize::from(group.contains(local) && self.local_durable_lsn() >= target);
        for m in group.members() {
            if m.eid != local
                && m.electable
                && self
                    .master_state
                    .peers
                    .get(&m.eid)
                    .is_some_and(|p| p.acked >= target)
            {
                holding += 1;
            }
        }
        holding >= group.majority()
    }

    fn check_can_change(&self, what: &str) -> Result<&Membership> {
        if self.role != Role::Master {
            return Err(Error::invalid(format!(
                "{what}: only the master changes the group"
            )));
        }
        if !self.managed_group() {
            return Err(Error::invalid(format!(
                "{what}: the group is not managed by replicated membership \
                 (ConfigFlag::GroupMembership is off)"
            )));
        }
        let Some(group) = &self.group_state.group else {
            return Err(Error::invalid(format!("{what}: the group is not formed")));
        };
        if !self.change_settled() {
            return Err(Error::Unavail(format!(
                "{what}: a membership change is in progress (the record at {} is not yet held \
                 by a majority of the {} sites); try again once it is",
                self.group_state
                    .change_lsn
                    .max(self.master_state.gen_start_lsn),
                group.len()
            )));
        }
        Ok(group)
    }

    /// Refuses a group in which the sites that may become master are not
    /// a majority: a change settles only when a majority of electable
    /// sites holds it (see `change_settled`), so such a group could never
    /// change again, and no commit in it is permanent under `Quorum`.
    pub(super) fn check_electable_majority(next: &Membership) -> Result<()> {
        let electable = next.members().iter().filter(|m| m.electable).count();
        if electable < next.majority() {
            return Err(Error::invalid(format!(
                "the group {next} would have {electable} sites that may become master, fewer \
                 than a majority ({}): add an electable site first, or remove a \
                 non-electable one",
                next.majority()
            )));
        }
        Ok(())
    }

    /// Master: adds site `eid`, reachable at `addr`, to the group, and
    /// returns the LSN of the membership record. Refused on a client, while
    /// an earlier change is not yet held by a majority, and for a member.
    /// A site that joins by itself (`rep_start(CLIENT)` as a non-member)
    /// needs no call: the master adds it once it has caught up.
    pub fn add_site(&mut self, now: u64, eid: Eid, addr: &[u8], electable: bool) -> Result<Lsn> {
        self.advance(now);
        self.check_alive()?;
        self.refresh_group();
        let group = self.check_can_change("add_site")?;
        let next = group.with_added(Member {
            eid,
            addr: addr.to_vec(),
            electable,
        })?;
        Self::check_electable_majority(&next)?;
        self.write_group(next)
    }

    /// Master: removes site `eid` from the group (a dead site, or one that
    /// asked to leave) and returns the LSN of the membership record.
    /// Removing the master itself is refused: hand over first (hold an
    /// election without it, or make another site master), then remove it
    /// from the new master.
    pub fn remove_site(&mut self, now: u64, eid: Eid) -> Result<Lsn> {
        self.advance(now);
        self.check_alive()?;
        self.refresh_group();
        if self.role == Role::Master && Some(eid) == self.eid {
            return Err(Error::invalid(format!(
                "remove_site: site {eid} is the master; hand over first (another site must \
                 become master), then remove it from there"
            )));
        }
        let group = self.check_can_change("remove_site")?;
        let next = group.without(eid)?;
        Self::check_electable_majority(&next)?;
        self.write_group(next)
    }

    /// Client: asks the master to remove this site from the group. Returns
    /// at once; the site has left when a [`Event::GroupChanged`] without it
    /// arrives. Refused on the master (hand over first).
    pub fn leave_group(&mut self, now: u64) -> Result<()> {
        self.advance(now);
        self.check_alive()?;
        self.refresh_group();
        if self.role == Role::Master {
            return Err(Error::invalid(
                "leave_group on the master: hand over first (another site must become master)",
            ));
        }
        if !self.managed_group() || !self.is_member() {
            return Err(Error::invalid(
                "leave_group: this site is not a member of a replicated group",
            ));
        }
        self.group_state.leaving = true;
        self.group_state.next_request_us = self.now;
        self.membership_tick();
        Ok(())
    }

    /// Appends the membership record for `next` and sends it.
    pub(super) fn write_group(&mut self, next: Membership) -> Result<Lsn> {
        let gen = self.meta.gen;
        let lsn = match self.storage.append_membership(gen, &next) {
            Ok(lsn) => lsn,
            Err(e) => return Err(self.fail(format!("writing a membership record: {e}"))),
        };
        if let Err(e) = self.storage.log_mut().force_sync() {
            return Err(self.fail(format!("making a membership record durable: {e}")));
        }
        self.refresh_group();
        self.queue_broadcast(lsn)?;
        self.recompute_perm();
        Ok(lsn)
    }

    /// The master founds the group as itself, on its first start as master
    /// with an empty group.
    pub(crate) fn found_group(&mut self) -> Result<()> {
        if !self.managed_group() || self.group_state.group.is_some() {
            return Ok(());
        }
        let local = self.eid.expect("a master has an id");
        let me = Member {
            eid: local,
            addr: self.cfg.local_addr.clone(),
            electable: self.cfg.priority > 0,
        };
        log::info!("site {local} founds a replicated group of one");
        self.write_group(Membership::default().with_added(me)?)?;
        Ok(())
    }

    /// Refuses `rep_start(MASTER)` for a site the group does not hold.
    pub(crate) fn check_may_lead(&self) -> Result<()> {
        match (&self.group_state.group, self.eid) {
            (Some(g), Some(local)) if self.managed_group() && !g.contains(local) => {
                Err(Error::invalid(format!(
                    "site {local} is not a member of the group ({g}); it cannot become master"
                )))
            }
            (Some(g), Some(local))
                if self.managed_group() && !g.get(local).is_some_and(|m| m.electable) =>
            {
                Err(Error::invalid(format!(
                    "site {local} is a member that may not become master"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Timers: a non-member asks to join, a leaving member asks to leave,
    /// the master admits a caught-up joiner.
    pub(crate) fn membership_tick(&mut self) {
        if !self.managed_group() {
            return;
        }
        if self.role == Role::Master {
            self.nudge_holders();
            self.admit_next();
            return;
        }
        if self.role != Role::Client || self.now < self.group_state.next_request_us {
            return;
        }
        let retry = self.cfg.request_us_max.max(1);
        if !self.is_member() && self.group_state.refused.is_none() && !self.group_state.removed {
            let msg = Message::JoinReq {
                electable: self.cfg.priority > 0,
                addr: self.cfg.local_addr.clone(),
            };
            let holds = self.local_durable_lsn();
            self.group_state.reported = holds;
            self.send(Outgoing::broadcast(msg).lsn(holds));
            self.group_state.next_request_us = self.now + retry;
        } else if self.group_state.leaving {
            let to = self.master.unwrap_or(EID_BROADCAST);
            self.send(Outgoing::to(to, Message::LeaveReq));
            self.group_state.next_request_us = self.now + retry;
        }
    }

    /// True while the master waits on acknowledgements for the group: a
    /// change not yet settled, or a joiner not yet shown to be caught up.
    fn awaiting_holders(&self) -> bool {
        self.role == Role::Master
            && self.group_state.group.is_some()
            && (!self.group_state.joiners.is_empty() || !self.change_settled())
    }

    /// Master: while it waits on acknowledgements for the group, asks
    /// every `request_us_max` for them with a heartbeat (clients holding
    /// its log's end answer one with an ack). Acks are sent only when a
    /// client appends, so lost ones would otherwise leave a change
    /// unsettled, and a joiner unadmitted, until the next write.
    fn nudge_holders(&mut self) {
        if !self.awaiting_holders() || self.now < self.group_state.next_request_us {
            return;
        }
        self.flush_broadcast();
        let last = self.storage.log().last_lsn();
        let perm_lsn = self.master_state.perm_lsn;
        self.send(Outgoing::broadcast(Message::Heartbeat { perm_lsn }).lsn(last));
        self.group_state.next_request_us = self.now + self.cfg.request_us_max.max(1);
    }

    /// A joiner that has just caught up with what it knows to be permanent
    /// says so at once, rather than at its next periodic request (the
    /// master admits it on what its request reports).
    #[inline]
    pub(crate) fn report_caught_up(&mut self) {
        if !self.managed_group() || self.role != Role::Client || self.is_member() {
            return;
        }
        let holds = self.local_durable_lsn();
        if self.group_state.reported < self.client_state.known_perm
            && holds >= self.client_state.known_perm
        {
            self.group_state.next_request_us = self.now;
            self.membership_tick();
        }
    }

    /// Client of a managed group: answers its master's heartbeat with an
    /// ack when it holds the master's log end (see `nudge_holders`).
    pub(crate) fn ack_heartbeat(&mut self, master_last: Lsn) {
        if !self.managed_group()
            || self.group_state.refused.is_some()
            || self.is_syncing()
            || master_last.is_zero()
        {
            return;
        }
        let durable = self.local_durable_lsn();
        if durable < master_last || self.storage.log().last_lsn() != master_last {
            return;
        }
        let priority = self.election_priority();
        self.send_to_master(
            Message::Ack { priority },
            durable,
            crate::rep::types::SendFlags::default(),
        );
        self.report_caught_up();
    }

    /// The membership timer's deadline, if one runs.
    pub(crate) fn membership_deadline(&self) -> Option<u64> {
        if self.awaiting_holders() {
            return Some(self.group_state.next_request_us);
        }
        if !self.managed_group() || self.role != Role::Client {
            return None;
        }
        let wants =
            (!self.is_member() && self.group_state.refused.is_none()) || self.group_state.leaving;
        wants.then_some(self.group_state.next_request_us)
    }
}
