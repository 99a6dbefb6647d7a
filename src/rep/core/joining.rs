//! The membership messages (`JoinReq`, `JoinInfo`, `JoinRefused`,
//! `LeaveReq`) and the master's admission of joiners; the rule they serve
//! is in `membership.rs`.

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::membership::{Member, Membership};
use crate::rep::core::membership::JOINERS_MAX;
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::types::{Eid, Event, Role, Status, EID_INVALID};
use crate::wire::{Envelope, Message};

impl Core {
    /// `JoinReq`, `JoinInfo`, `JoinRefused` and `LeaveReq`, in any role.
    pub(crate) fn membership_message(&mut self, env: Envelope<&[u8]>, from: Eid) -> Result<Status> {
        if !self.managed_group() {
            return Ok(Status::Ignore);
        }
        match env.msg {
            Message::JoinReq { electable, addr } => {
                self.on_join_request(from, electable, addr, env.lsn)
            }
            Message::JoinInfo { master, members } => {
                if self.is_member() {
                    return Ok(Status::Ignore);
                }
                let group = Membership::decode(members)?;
                if self.group_state.advertised.as_ref() != Some(&group) {
                    log::info!("site {from} tells of master {master} and the group {group}");
                    self.group_state.advertised = Some(group.clone());
                    self.event(Event::GroupChanged(group));
                }
                Ok(Status::Processed)
            }
            Message::JoinRefused { reason } => {
                if self.is_member() || self.group_state.refused.is_some() {
                    return Ok(Status::Ignore);
                }
                let why = String::from_utf8_lossy(reason).into_owned();
                log::error!("site {from} refused to let this site join: {why}");
                self.group_state.refused = Some(why.clone());
                self.event(Event::JoinRefused(why));
                Ok(Status::JoinFailure)
            }
            Message::LeaveReq => {
                if self.role != Role::Master || !self.is_voter(from) {
                    return Ok(Status::Ignore);
                }
                self.group_state.leavers.insert(from);
                self.admit_next();
                Ok(Status::Processed)
            }
            _ => Ok(Status::Ignore),
        }
    }

    fn on_join_request(
        &mut self,
        from: Eid,
        electable: bool,
        addr: &[u8],
        holds: Lsn,
    ) -> Result<Status> {
        let Some(group) = self.group_state.group.clone() else {
            return Ok(Status::Ignore);
        };
        if !self.is_member() {
            return Ok(Status::Ignore);
        }
        if let Some(m) = group.get(from) {
            if m.addr != addr {
                let why = format!(
                    "site id {from} is already a member of the group at address {}; a joining \
                     site needs an id of its own",
                    String::from_utf8_lossy(&m.addr)
                );
                log::warn!("refusing a join from a second site {from}: {why}");
                let reason = why.into_bytes();
                self.send(Outgoing::to(from, Message::JoinRefused { reason }));
                return Ok(Status::JoinFailure);
            }
        } else if self.role == Role::Master
            && (self.group_state.joiners.len() < JOINERS_MAX
                || self.group_state.joiners.contains_key(&from))
        {
            if addr.len() > crate::membership::ADDR_MAX {
                return Err(Error::malformed(format!(
                    "JoinReq from site {from}: address of {} bytes",
                    addr.len()
                )));
            }
            // What the site acknowledged before it asked (a removed site,
            // perhaps now on a new disk, whose old acks may still be in
            // flight) proves nothing about what it holds now: it is
            // admitted once its own request says it holds everything
            // permanent, and its acks confirm it.
            if let Some(p) = self.master_state.peers.get_mut(&from) {
                p.acked = p.acked.min(holds);
                p.excluded = true;
            }
            if self
                .group_state
                .joiners
                .insert(from, (addr.to_vec(), electable, holds))
                .is_none()
            {
                log::info!(
                    "site {from} ({}) asks to join; it is added once it has caught up",
                    String::from_utf8_lossy(addr)
                );
            }
        }
        let master = self.master.unwrap_or(EID_INVALID);
        let members = group.encode();
        self.send(Outgoing::to(from, Message::JoinInfo { master, members }));
        if self.role == Role::Master {
            self.admit_next();
        }
        Ok(Status::Processed)
    }

    /// Master: makes the next waiting change, if the previous has settled:
    /// a removal asked for first, then a joiner that holds everything
    /// permanent.
    #[inline]
    pub(crate) fn admit_next(&mut self) {
        // Called at every ack: the common case, nothing waiting, stays inline.
        if self.group_state.joiners.is_empty() && self.group_state.leavers.is_empty() {
            return;
        }
        self.admit_next_waiting();
    }

    #[inline(never)]
    fn admit_next_waiting(&mut self) {
        if self.role != Role::Master || !self.change_settled() {
            return;
        }
        let Some(group) = self.group_state.group.clone() else {
            return;
        };
        let local = self.eid.unwrap_or(EID_INVALID);
        if let Some(&eid) = self.group_state.leavers.iter().find(|&&e| e != local) {
            self.group_state.leavers.remove(&eid);
            let next = group
                .without(eid)
                .and_then(|n| Self::check_electable_majority(&n).map(|()| n));
            match next {
                Ok(next) => {
                    log::info!("site {eid} leaves the group");
                    // A failed write puts the site into its failed state,
                    // which the next call reports.
                    let _ = self.write_group(next);
                }
                Err(e) => log::warn!("site {eid} asked to leave, refused: {e}"),
            }
            return;
        }
        let perm = self.master_state.perm_lsn.max(self.group_state.change_lsn);
        // A non-electable joiner waits while adding it would leave fewer
        // electable sites than a majority (`check_electable_majority`).
        let electable = group.members().iter().filter(|m| m.electable).count();
        let majority_after = Membership::majority_of(group.len() + 1);
        let room_for_view = electable >= majority_after;
        let ready = self
            .group_state
            .joiners
            .iter()
            .find(|(eid, (_, e, holds))| {
                (*e || room_for_view)
                    && *holds >= perm
                    && self
                        .master_state
                        .peers
                        .get(eid)
                        .is_some_and(|p| p.acked >= perm)
            });
        let Some((&eid, (addr, electable, _))) = ready else {
            return;
        };
        let member = Member {
            eid,
            addr: addr.clone(),
            electable: *electable,
        };
        self.group_state.joiners.remove(&eid);
        match group.with_added(member) {
            Ok(next) => {
                log::info!("site {eid} has caught up and joins the group");
                let _ = self.write_group(next);
            }
            Err(e) => log::warn!("cannot add site {eid}: {e}"),
        }
    }
}
