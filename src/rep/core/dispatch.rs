//! The entry points every message and every timer goes through: decoding,
//! the generation rules for messages from a master, and routing to the
//! role's handler (etcd-io/raft's `Step`).

use crate::error::{Error, Result};
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::types::{Eid, Event, Role, Status};
use crate::wire::{self, DecodeLimits};
use crate::wire::{Envelope, Message, MsgFlags};

impl Core {
    /// Processes one message from site `from` (`rep_process_message`).
    ///
    /// Anything malformed is an error and changes nothing.
    pub fn process(&mut self, now: u64, control: &[u8], rec: &[u8], from: Eid) -> Result<Status> {
        self.advance(now);
        let local = self
            .eid
            .ok_or_else(|| Error::invalid("rep_process_message before rep_set_transport"))?;
        self.check_alive()?;
        if from < 0 {
            return Err(Error::invalid(format!(
                "sender id must be >= 0, got {from}"
            )));
        }
        if from == local {
            return Err(Error::invalid(format!(
                "message labelled with this site's own id {from}"
            )));
        }
        let limits = DecodeLimits {
            max_rec_bytes: usize::try_from(self.cfg.message_bytes_max).unwrap_or(usize::MAX),
        };
        let env = match wire::decode_ref(control, rec, &limits) {
            Ok(env) => env,
            Err(e) => {
                self.stats.msgs_malformed += 1;
                return Err(e);
            }
        };
        if self.role == Role::Unset {
            // Peers may talk before the host started this site: say so
            // rather than drop the message unnoticed.
            self.stats.msgs_not_started += 1;
            return Ok(Status::NotStarted);
        }
        self.stats.msgs_processed += 1;
        let status = self.dispatch(env, from);
        // A record applied, a rollback or a snapshot install may have
        // changed the group the log implies.
        self.refresh_group();
        status
    }

    pub(super) fn dispatch(&mut self, env: Envelope<&[u8]>, from: Eid) -> Result<Status> {
        if matches!(env.msg, Message::Vote1 { .. } | Message::Vote2) {
            return self.election_message(env, from);
        }
        if matches!(
            env.msg,
            Message::JoinReq { .. }
                | Message::JoinInfo { .. }
                | Message::JoinRefused { .. }
                | Message::LeaveReq
        ) {
            return self.membership_message(env, from);
        }
        if let Message::NewClient { cdata } = &env.msg {
            if self.role == Role::Master {
                self.announce(from);
            }
            // Once per site: a known site restarting is no news for the host.
            if !self.note_site(from) {
                return Ok(Status::Processed);
            }
            return Ok(Status::NewSite {
                eid: from,
                cdata: cdata.to_vec(),
            });
        }
        if env.flags.contains(MsgFlags::FROM_MASTER) {
            let mut adopted = false;
            if let Some(status) = self.check_master_generation(&env, from, &mut adopted)? {
                return Ok(status);
            }
            let status = self.client_message(env, from)?;
            return Ok(match status {
                Status::Processed | Status::Ignore if adopted => Status::NewMaster(from),
                other => other,
            });
        }
        match self.role {
            Role::Master => self.master_message(env, from),
            _ => self.client_side_peer_message(env, from),
        }
    }

    /// Applies the generation rules to a message sent by a master. Returns a
    /// final status, or `None` to go on processing it; sets `adopted` when the
    /// sender became this site's master.
    pub(super) fn check_master_generation(
        &mut self,
        env: &Envelope<&[u8]>,
        from: Eid,
        adopted: &mut bool,
    ) -> Result<Option<Status>> {
        let gen = self.meta.gen;
        if env.gen < gen {
            self.stats.msgs_badgen += 1;
            // Tell the stale master what it missed, so it steps down.
            if self.role == Role::Master {
                self.announce(from);
            } else {
                self.client_state.stale_master_heard_us = Some(self.now);
                self.send(Outgoing::to(from, Message::MasterReq));
            }
            return Ok(Some(Status::Ignore));
        }
        if env.gen == gen && self.master == Some(from) {
            return Ok(None);
        }
        if env.gen == gen && self.role == Role::Master {
            self.stats.dupmasters += 1;
            self.event(Event::DupMaster);
            if !matches!(env.msg, Message::DupMaster) {
                self.send(Outgoing::to(from, Message::DupMaster));
            }
            return Ok(Some(Status::DupMaster));
        }
        if env.gen == gen && self.master.is_some() {
            // Two masters claim one generation; the election rules make this
            // impossible, so the message is from a confused peer.
            log::warn!(
                "site {from} claims to be master of generation {gen}, already held by {:?}",
                self.master
            );
            return Ok(Some(Status::Ignore));
        }
        if self.role == Role::Master {
            // A master learns of a newer one: it is the stale one. It steps
            // down and follows the newer master, and says so (Berkeley DB's
            // DB_REP_DUPMASTER) rather than stepping down silently.
            log::info!(
                "master of generation {gen} steps down for site {from} of generation {}",
                env.gen
            );
            self.stats.dupmasters += 1;
            self.become_client();
            self.adopt_master(from, env.gen, env.lsn)?;
            self.event(Event::DupMaster);
            return Ok(Some(Status::DupMaster));
        }
        if matches!(env.msg, Message::DupMaster) {
            return Ok(Some(Status::Ignore));
        }
        self.adopt_master(from, env.gen, env.lsn)?;
        *adopted = true;
        Ok(None)
    }

    /// Messages that do not come from a master, seen by a site that is not master.
    pub(super) fn client_side_peer_message(
        &mut self,
        env: Envelope<&[u8]>,
        from: Eid,
    ) -> Result<Status> {
        match env.msg {
            Message::MasterReq if self.master == Some(from) => {
                // Our master stepped down and is looking for a master itself.
                self.start_search();
                Ok(Status::Processed)
            }
            _ if env.gen > self.meta.gen && self.master.is_some() => {
                // A peer knows a newer generation than our master's: ours is stale.
                self.start_search();
                Ok(Status::Processed)
            }
            Message::MasterReq => Ok(Status::Processed),
            _ => Ok(Status::Ignore),
        }
    }

    /// Periodic work (the timer call): re-requests, master search, heartbeats,
    /// failure detection, election phases, lease refreshes. Returns what the
    /// host must act on and the time of the next deadline, if any.
    ///
    /// The contract: calling `tick` before the deadline it returned does no
    /// harm (nothing is due, nothing fires twice), and calling it late only
    /// delays what was due. `None` means no timer is running: nothing will
    /// fall due until another call changes the state, so the host may sleep
    /// until its next message or API call. Any other call can move the
    /// deadline earlier — `process` (a gap to fill, a new master, an
    /// election message), `start`, `elect`, `commit_begin` / `commit`,
    /// `read_begin`, `sync` and `set_config` — so a host re-reads the
    /// deadline after each (a later `tick` returns it) rather than sleeping
    /// on an old one.
    pub fn tick(&mut self, now: u64) -> Result<(Status, Option<u64>)> {
        self.advance(now);
        self.check_alive()?;
        if self.eid.is_none() || self.role == Role::Unset {
            return Ok((Status::Processed, None));
        }
        self.refresh_group();
        self.lease_tick();
        self.membership_tick();
        let status = match self.role {
            Role::Master => self.master_tick()?,
            _ => self.client_tick()?,
        };
        let status = match self.election_tick()? {
            Some(s) => s,
            None => status,
        };
        Ok((status, self.next_deadline()))
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        let mut d: Option<u64> = None;
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |d| d.min(t)));
            }
        };
        // Only the deadlines of the role held now: a master's client state is
        // a default (a "search" that started at time 0), whose deadline would
        // stay in the past and make the host call `tick` in a busy loop.
        match self.role {
            Role::Master => consider(self.master_state.next_deadline(&self.cfg, self.now)),
            Role::Client => consider(self.client_state.next_deadline(&self.cfg)),
            Role::Unset => {}
        }
        consider(self.election_deadline());
        consider(self.lease_deadline());
        consider(self.membership_deadline());
        d
    }
}
