//! The deterministic replication state machine.
//!
//! `Core` reads no clock, starts no thread and touches no socket: the host
//! passes the time (microseconds on any monotonic scale) into every call and
//! collects the messages and events it produced with [`Core::take_output`].
//! Storage I/O goes through the [`Storage`] it owns, whose file layer a test
//! can replace with a simulated one. Given the same inputs it produces the
//! same outputs, which is what lets a simulator replay any failure from a seed.

use crate::error::{Error, Result};
use crate::log::Durability;
use crate::lsn::Lsn;
use crate::rep::client::{ClientState, SyncState};
use crate::rep::config::RepConfig;
use crate::rep::election::{Election, ElectionOutcome};
use crate::rep::lease::LeaseState;
use crate::rep::master::MasterState;
use crate::rep::meta::RepMeta;
use crate::rep::stats::RepStats;
use crate::rep::types::{Eid, Event, OutMsg, Role, SendFlags, StartAs, Status, EID_BROADCAST};
use crate::storage::Storage;
use crate::wire::{self, DecodeLimits, Envelope, Message, MsgFlags};

/// Moves everything in `from` to the end of `to`, in order. Called after
/// every message a host delivers, usually with one or no item: an empty
/// `from` costs nothing, and into an empty `to` the buffers are swapped
/// rather than the items copied (each side keeps a buffer with capacity).
#[inline]
fn move_all<T>(from: &mut Vec<T>, to: &mut Vec<T>) {
    if from.is_empty() {
        return;
    }
    if to.is_empty() {
        std::mem::swap(from, to);
    } else {
        to.append(from);
    }
}

/// One site's replication state machine. See the module docs.
pub struct Core {
    pub(crate) cfg: RepConfig,
    pub(crate) eid: Option<Eid>,
    pub(crate) role: Role,
    pub(crate) meta: RepMeta,
    pub(crate) master: Option<Eid>,
    pub(crate) storage: Storage,
    pub(crate) now: u64,
    pub(crate) stats: RepStats,
    pub(crate) m: MasterState,
    pub(crate) c: ClientState,
    pub(crate) cdata: Vec<u8>,
    pub(crate) e: Option<Election>,
    pub(crate) elected_egen: Option<u32>,
    pub(crate) election_result: Option<ElectionOutcome>,
    pub(crate) ever_had_master: bool,
    pub(crate) rng: u64,
    pub(crate) lease: LeaseState,
    out: Vec<OutMsg>,
    events: Vec<Event>,
}

impl Core {
    /// Builds a core over opened storage and the metadata found with it.
    pub fn new(storage: Storage, meta: RepMeta, cfg: RepConfig) -> Result<Core> {
        cfg.validate()?;
        Ok(Core {
            cfg,
            eid: None,
            role: Role::Unset,
            meta,
            master: None,
            storage,
            now: 0,
            stats: RepStats::default(),
            m: MasterState::default(),
            c: ClientState::default(),
            cdata: Vec::new(),
            e: None,
            elected_egen: None,
            election_result: None,
            ever_had_master: false,
            rng: 0x9E37_79B9_7F4A_7C15,
            lease: LeaseState::default(),
            out: Vec::new(),
            events: Vec::new(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &RepConfig {
        &self.cfg
    }

    /// Replaces the settings. Lease settings and the clock skew cannot change
    /// after `start`, and leases cannot be turned off once on.
    pub fn set_config(&mut self, cfg: RepConfig) -> Result<()> {
        cfg.validate()?;
        if self.role != Role::Unset {
            if cfg.lease != self.cfg.lease
                || cfg.lease_timeout_us != self.cfg.lease_timeout_us
                || cfg.clockskew != self.cfg.clockskew
            {
                return Err(Error::invalid(
                    "lease settings and clock skew must be set before rep_start",
                ));
            }
            if self.cfg.lease && cfg.nsites != self.cfg.nsites {
                return Err(Error::invalid(
                    "nsites cannot change after rep_start when leases are on",
                ));
            }
        }
        self.cfg = cfg;
        Ok(())
    }

    /// Sets this site's own id (`rep_set_transport`'s first argument).
    pub fn set_local_eid(&mut self, eid: Eid) -> Result<()> {
        if eid < 0 {
            return Err(Error::invalid(format!(
                "local environment id must be >= 0, got {eid}"
            )));
        }
        self.eid = Some(eid);
        Ok(())
    }

    /// This site's own id, once set.
    pub fn local_eid(&self) -> Option<Eid> {
        self.eid
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The master this site knows of (itself when master).
    pub fn master(&self) -> Option<Eid> {
        self.master
    }

    /// The current generation.
    pub fn gen(&self) -> u32 {
        self.meta.gen
    }

    /// The current election generation.
    pub fn egen(&self) -> u32 {
        self.meta.egen
    }

    /// The local storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The local storage, mutably.
    pub fn storage_mut(&mut self) -> &mut Storage {
        &mut self.storage
    }

    /// Makes this site a master or a client (`rep_start`).
    pub fn start(&mut self, now: u64, as_: StartAs, cdata: &[u8]) -> Result<()> {
        self.advance(now);
        let local = self
            .eid
            .ok_or_else(|| Error::invalid("rep_start before rep_set_transport"))?;
        self.cfg.validate()?;
        match as_ {
            StartAs::Master => self.start_master(local),
            StartAs::Client => {
                if self.role != Role::Client {
                    if self.role == Role::Master {
                        self.m = MasterState::default();
                    }
                    self.role = Role::Client;
                    self.event(Event::Client);
                }
                self.lease_on_client_start();
                self.cdata = cdata.to_vec();
                let cdata = self.cdata.clone();
                self.send(
                    EID_BROADCAST,
                    Message::NewClient { cdata },
                    Lsn::ZERO,
                    MsgFlags::default(),
                    SendFlags::default(),
                );
                self.start_search();
                Ok(())
            }
        }
    }

    /// Processes one message from site `from` (`rep_process_message`).
    ///
    /// Anything malformed is an error and changes nothing.
    pub fn process(&mut self, now: u64, control: &[u8], rec: &[u8], from: Eid) -> Result<Status> {
        self.advance(now);
        let local = self
            .eid
            .ok_or_else(|| Error::invalid("rep_process_message before rep_set_transport"))?;
        if self.role == Role::Unset {
            return Err(Error::invalid("rep_process_message before rep_start"));
        }
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
            max_rec_bytes: usize::try_from(self.cfg.max_message_bytes).unwrap_or(usize::MAX),
        };
        let env = match wire::decode_ref(control, rec, &limits) {
            Ok(env) => env,
            Err(e) => {
                self.stats.msgs_malformed += 1;
                return Err(e);
            }
        };
        self.stats.msgs_processed += 1;
        self.dispatch(env, from)
    }

    fn dispatch(&mut self, env: Envelope<&[u8]>, from: Eid) -> Result<Status> {
        if matches!(env.msg, Message::Vote1 { .. } | Message::Vote2) {
            return self.election_message(env, from);
        }
        if let Message::NewClient { cdata } = &env.msg {
            if self.role == Role::Master {
                self.announce(from);
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
    fn check_master_generation(
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
                self.send(
                    from,
                    Message::MasterReq,
                    Lsn::ZERO,
                    MsgFlags::default(),
                    SendFlags::default(),
                );
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
                self.send(
                    from,
                    Message::DupMaster,
                    Lsn::ZERO,
                    MsgFlags::default(),
                    SendFlags::default(),
                );
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
        if matches!(env.msg, Message::DupMaster) {
            return Ok(Some(Status::Ignore));
        }
        if self.role == Role::Master {
            log::info!(
                "master of generation {gen} steps down for site {from} of generation {}",
                env.gen
            );
            self.m = MasterState::default();
            self.role = Role::Client;
            self.event(Event::Client);
        }
        self.adopt_master(from, env.gen, env.lsn)?;
        *adopted = true;
        Ok(None)
    }

    /// Messages that do not come from a master, seen by a site that is not master.
    fn client_side_peer_message(&mut self, env: Envelope<&[u8]>, from: Eid) -> Result<Status> {
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
    /// failure detection. Returns what the host must act on and the time of
    /// the next deadline, if any.
    pub fn tick(&mut self, now: u64) -> Result<(Status, Option<u64>)> {
        self.advance(now);
        if self.eid.is_none() || self.role == Role::Unset {
            return Ok((Status::Processed, None));
        }
        self.lease_tick();
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

    fn next_deadline(&self) -> Option<u64> {
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
            Role::Master => consider(self.m.next_deadline(&self.cfg, self.now)),
            Role::Client => consider(self.c.next_deadline(&self.cfg)),
            Role::Unset => {}
        }
        consider(self.election_deadline());
        consider(self.lease_deadline());
        d
    }

    /// Drains the messages to send and the events to report, in the order
    /// they were produced.
    pub fn take_output(&mut self, msgs: &mut Vec<OutMsg>, events: &mut Vec<Event>) {
        if self.m.bcast.len() > wire::LOG_BODY_PREFIX {
            self.flush_broadcast();
        } else {
            // What flush_broadcast does with no record queued.
            self.m.bcast.clear();
        }
        move_all(&mut self.out, msgs);
        move_all(&mut self.events, events);
    }

    /// The host reports that `send` failed for `msg`. A permanent message
    /// that did not leave makes a no-sync master flush its log, as Berkeley
    /// DB does, so the commit is at least durable locally.
    pub fn send_failed(&mut self, msg: &OutMsg) -> Result<()> {
        self.stats.msgs_send_failures += 1;
        if msg.flags.contains(SendFlags::PERMANENT)
            && self.storage.log().config().durability == Durability::NoSync
        {
            self.storage.log_mut().force_sync()?;
        }
        Ok(())
    }

    /// The counters, with the current state filled in; `clear` resets the counters.
    pub fn stats(&mut self, clear: bool) -> RepStats {
        let mut s = self.stats.clone();
        s.role = (self.role != Role::Unset).then_some(self.role);
        s.master = self.master;
        s.gen = self.meta.gen;
        s.egen = self.meta.egen;
        s.last_lsn = self.storage.log().last_lsn();
        s.next_lsn = s.last_lsn;
        s.perm_lsn = if self.role == Role::Master {
            self.m.perm_lsn
        } else {
            self.c.known_perm
        };
        s.waiting_lsn = self.c.pending.keys().next().copied().unwrap_or(Lsn::ZERO);
        s.startup_complete = self.c.startup_done;
        if clear {
            self.stats = RepStats::default();
        }
        s
    }

    /// True while a client is fetching a snapshot (internal init).
    pub fn in_internal_init(&self) -> bool {
        matches!(self.c.sync, SyncState::Initializing { .. })
    }

    pub(crate) fn advance(&mut self, now: u64) {
        // A clock that steps backwards must not make deadlines fire twice or never.
        if now > self.now {
            self.now = now;
        }
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.events.push(e);
    }

    /// Encodes and queues one message. Never addressed to this site itself.
    pub(crate) fn send(
        &mut self,
        to: Eid,
        msg: Message,
        lsn: Lsn,
        flags: MsgFlags,
        sflags: SendFlags,
    ) {
        if Some(to) == self.eid {
            return;
        }
        let env = self.envelope(msg, lsn, flags);
        let mut rec = Vec::new();
        wire::encode_body(&env, &mut rec);
        self.queue_out(to, env, rec, sflags);
    }

    /// The envelope this site puts around `msg`.
    pub(crate) fn envelope<B>(
        &self,
        msg: Message<B>,
        lsn: Lsn,
        mut flags: MsgFlags,
    ) -> Envelope<B> {
        if self.role == Role::Master {
            flags |= MsgFlags::FROM_MASTER;
        }
        Envelope {
            gen: self.meta.gen,
            egen: self.meta.egen,
            lsn,
            flags,
            msg,
        }
    }

    /// Queues a message whose body `rec` is already encoded; `env` gives its
    /// header fields and type (its body is not looked at).
    pub(crate) fn queue_out<B>(
        &mut self,
        to: Eid,
        env: Envelope<B>,
        rec: Vec<u8>,
        sflags: SendFlags,
    ) {
        if Some(to) == self.eid {
            return;
        }
        let control = wire::encode_control(&env, rec.len());
        if to == EID_BROADCAST
            && matches!(
                env.msg,
                Message::Log { .. } | Message::NewMaster { .. } | Message::Heartbeat { .. }
            )
        {
            // Only messages that tell clients where the log ends stand in
            // for a heartbeat; a lease request does not, and counting it
            // starved heartbeats whenever leases refresh as often.
            self.m.last_send_us = self.now;
        }
        self.stats.msgs_sent += 1;
        self.out.push(OutMsg {
            eid: to,
            control,
            rec,
            lsn: env.lsn,
            flags: sflags,
        });
    }

    pub(crate) fn save_meta(&mut self) -> Result<()> {
        let meta = self.meta;
        self.storage.save_meta(&meta)
    }

    /// The last LSN durable here under the configured durability mode.
    pub(crate) fn local_durable_lsn(&self) -> Lsn {
        let log = self.storage.log();
        if log.config().in_memory || log.config().durability != Durability::Sync {
            log.last_lsn()
        } else {
            log.durable_lsn()
        }
    }
}
