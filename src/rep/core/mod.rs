//! The deterministic replication state machine.
//!
//! `Core` reads no clock, starts no thread and touches no socket: the host
//! passes the time (microseconds on any monotonic scale) into every call and
//! collects the messages and events it produced with [`Core::take_output`].
//! Storage I/O goes through the [`Storage`] it owns, whose file layer a test
//! can replace with a simulated one. Given the same inputs it produces the
//! same outputs, which is what lets a simulator replay any failure from a seed.
//!
//! Every `impl Core` block lives in this folder, one file per role or
//! protocol part: [`dispatch`] (entry points), [`role`] (role changes),
//! [`master`], [`commit`] (permanence), [`client`], [`sync`] (matching a
//! new master's log), [`election`], [`lease`] and [`reads`]. The pieces
//! that need no `Core` are leaves beside it: `quorum`, `vote`, `retry`,
//! `outbox`.

mod client;
mod commit;
mod dispatch;
mod election;
mod joining;
mod lease;
mod master;
mod membership;
mod reads;
mod role;
mod sync;

pub use self::commit::CommitPoll;
#[cfg(any(test, feature = "testing"))]
pub use self::commit::CommitTicket;
pub use self::election::ElectionProgress;
pub(crate) use self::membership::JOINERS_MAX;
pub use self::reads::ReadPoll;
#[cfg(any(test, feature = "testing"))]
pub use self::reads::{ReadIndexState, ReadTicket};

use crate::error::{Error, Result};
use crate::log::Durability;
use crate::lsn::Lsn;
use crate::rep::config::RepConfig;
use crate::rep::meta::RepMeta;
use crate::rep::outbox::{move_all, Outbox, Outgoing, Queued, Sender};
use crate::rep::stats::RepStats;
use crate::rep::types::{Eid, Event, OutMsg, Role, SendFlags};
use crate::storage::Storage;
use crate::wire::Envelope;

use self::client::ClientState;
use self::election::Election;
use self::lease::LeaseState;
use self::master::MasterState;
use self::membership::GroupState;

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
    pub(crate) master_state: MasterState,
    pub(crate) client_state: ClientState,
    pub(crate) cdata: Vec<u8>,
    pub(crate) election: Option<Election>,
    pub(crate) elected_egen: Option<u32>,
    pub(crate) election_result: Option<ElectionProgress>,
    pub(crate) ever_had_master: bool,
    pub(crate) rng: u64,
    pub(crate) lease: LeaseState,
    pub(crate) group_state: GroupState,
    outbox: Outbox,
    /// Why this site stopped (a storage call failed where a retry could not
    /// be trusted); `None` while healthy.
    fatal: Option<String>,
    /// Sites that announced themselves (`NewClient`), so each is reported
    /// to the host once.
    known_sites: std::collections::BTreeSet<Eid>,
    /// (generation, LSN) of the commits this site rolled back, newest last
    /// (at most `storage::undone::UNDONE_MAX`, kept on disk), so `txn_applied` reports them `Never`
    /// after a checkpoint trims the log that replaced them.
    pub(crate) rolled_back: std::collections::VecDeque<(u32, Lsn)>,
    events: Vec<Event>,
}

impl Core {
    /// Builds a core over opened storage and the metadata found with it.
    pub fn new(storage: Storage, meta: RepMeta, cfg: RepConfig) -> Result<Core> {
        cfg.validate()?;
        let mut core = Core {
            cfg,
            eid: None,
            role: Role::Unset,
            meta,
            master: None,
            storage,
            now: 0,
            stats: RepStats::default(),
            master_state: MasterState::default(),
            client_state: ClientState::default(),
            cdata: Vec::new(),
            election: None,
            elected_egen: None,
            election_result: None,
            ever_had_master: false,
            rng: 0x9E37_79B9_7F4A_7C15,
            lease: LeaseState::default(),
            group_state: GroupState::default(),
            outbox: Outbox::default(),
            fatal: None,
            known_sites: Default::default(),
            rolled_back: Default::default(),
            events: Vec::new(),
        };
        core.rolled_back = core.storage.undone().clone();
        core.refresh_group();
        core.events.clear();
        Ok(core)
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
            if self.cfg.lease && cfg.nsites != self.cfg.nsites && !self.cfg.membership {
                return Err(Error::invalid(
                    "nsites cannot change after rep_start when leases are on",
                ));
            }
        }
        let managed = self.cfg.membership || cfg.membership;
        if managed && cfg.nsites != self.cfg.nsites {
            return Err(Error::invalid(
                "rep_set_nsites cannot be combined with replicated group membership: the \
                 group's size is what its log says",
            ));
        }
        if !self.cfg.membership && cfg.membership && cfg.nsites != 0 {
            return Err(Error::invalid(
                "replicated group membership cannot be combined with rep_set_nsites: set \
                 nsites back to 0 first",
            ));
        }
        if self.group_state.group.is_some() && !cfg.membership {
            return Err(Error::invalid(
                "this site's log holds a replicated group membership: it cannot be turned off",
            ));
        }
        let mut cfg = cfg;
        if self.group_state.group.is_some() {
            cfg.membership = true;
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
    #[cfg(any(test, feature = "testing"))]
    pub fn local_eid(&self) -> Option<Eid> {
        self.eid
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The master this site knows of (itself when master).
    #[cfg(any(test, feature = "testing"))]
    pub fn master(&self) -> Option<Eid> {
        self.master
    }

    /// The current generation.
    #[cfg(any(test, feature = "testing"))]
    pub fn gen(&self) -> u32 {
        self.meta.gen
    }

    /// The current election generation.
    #[cfg(any(test, feature = "testing"))]
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

    /// Drains the messages to send and the events to report, in the order
    /// they were produced.
    pub fn take_output(&mut self, msgs: &mut Vec<OutMsg>, events: &mut Vec<Event>) {
        if self.master_state.bcast.len() > crate::wire::LOG_BODY_PREFIX {
            self.flush_broadcast();
        } else {
            // What flush_broadcast does with no record queued.
            self.master_state.bcast.clear();
        }
        self.outbox.drain_into(msgs);
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
        s.next_lsn = self.next_lsn();
        s.perm_lsn = if self.role == Role::Master {
            self.master_state.perm_lsn
        } else {
            self.client_state.known_perm
        };
        s.waiting_lsn = self
            .client_state
            .pending
            .keys()
            .next()
            .copied()
            .unwrap_or(Lsn::ZERO);
        s.startup_complete = self.client_state.startup_done;
        if clear {
            self.stats = RepStats::default();
        }
        s
    }

    /// The LSN after the last record (the first record's LSN for an empty log).
    fn next_lsn(&self) -> Lsn {
        let log = self.storage.log();
        let last = log.last_lsn();
        if last.is_zero() || last < log.first_lsn() {
            return last;
        }
        let mut raw = Vec::new();
        match log.read_raw_into(last, &mut raw) {
            Ok(_) => Lsn::new(last.file, last.offset.saturating_add(raw.len() as u32)),
            Err(_) => last,
        }
    }

    /// Remembers the commits a rollback undid (see `rolled_back`): the
    /// storage made them durable before it cut the log.
    pub(crate) fn note_rolled_back(&mut self, undone: &[crate::rep::types::RolledBackTxn]) {
        debug_assert!(
            undone
                .iter()
                .all(|t| self.storage.undone().contains(&(t.gen, t.lsn))),
            "a rollback's undone commits are on disk"
        );
        self.rolled_back = self.storage.undone().clone();
    }

    /// Notes that site `eid` announced itself; true the first time.
    pub(crate) fn note_site(&mut self, eid: Eid) -> bool {
        const KNOWN_SITES_MAX: usize = 4096;
        if self.known_sites.contains(&eid) {
            return false;
        }
        if self.known_sites.len() < KNOWN_SITES_MAX {
            self.known_sites.insert(eid);
        }
        true
    }

    /// Why this site is in its failed state (Berkeley DB's
    /// `DB_RUNRECOVERY`), or `None` while healthy. Once failed, every call
    /// that could change state returns [`Error::RunRecovery`] until the
    /// environment is reopened (and so recovered from its files).
    #[cfg(any(test, feature = "testing"))]
    pub fn failure(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// `Err(RunRecovery)` once the site has failed.
    #[inline]
    pub(crate) fn check_alive(&self) -> Result<()> {
        match &self.fatal {
            None => Ok(()),
            Some(why) => Err(Error::RunRecovery(why.clone())),
        }
    }

    /// Enters the failed state: a storage call failed where the outcome
    /// cannot be known (a failed write or fsync may have written part, and
    /// a retried fsync may report success for data the OS dropped).
    /// Nothing queued is sent. Returns the error for the failing call.
    pub fn fail(&mut self, why: impl Into<String>) -> Error {
        let why = why.into();
        log::error!("replication site failed, reopen to recover: {why}");
        if self.fatal.is_none() {
            self.fatal = Some(why);
        }
        self.outbox = Outbox::default();
        self.master_state.bcast.clear();
        self.events.clear();
        Error::RunRecovery(self.fatal.clone().unwrap_or_default())
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

    /// The header fields this site's messages carry now.
    #[inline]
    pub(crate) fn sender(&self) -> Sender {
        Sender {
            local: self.eid,
            gen: self.meta.gen,
            egen: self.meta.egen,
            is_master: self.role == Role::Master,
        }
    }

    /// Encodes and queues one message. Never addressed to this site itself.
    #[inline]
    pub(crate) fn send(&mut self, out: Outgoing) {
        let sender = self.sender();
        let queued = self.outbox.send(&sender, out);
        self.note_queued(queued);
    }

    /// Queues a message whose body `rec` is already encoded; `env` gives its
    /// header fields and type (its body is not looked at).
    #[inline]
    pub(crate) fn queue_encoded<B>(
        &mut self,
        to: Eid,
        env: Envelope<B>,
        rec: Vec<u8>,
        hints: SendFlags,
    ) {
        let sender = self.sender();
        let queued = self.outbox.push_encoded(&sender, to, env, rec, hints);
        self.note_queued(queued);
    }

    #[inline]
    fn note_queued(&mut self, queued: Queued) {
        match queued {
            Queued::Dropped => {}
            Queued::Sent => self.stats.msgs_sent += 1,
            Queued::SentLogEnd => {
                self.stats.msgs_sent += 1;
                self.master_state.last_send_us = self.now;
            }
        }
    }

    /// Makes `meta` durable, and only then this site's state: a failed
    /// write leaves the state as it was.
    pub(crate) fn set_meta(&mut self, meta: RepMeta) -> Result<()> {
        assert!(
            meta.gen >= self.meta.gen,
            "the generation never decreases: {} -> {}",
            self.meta.gen,
            meta.gen
        );
        assert!(
            meta.egen >= self.meta.egen,
            "the election generation never decreases: {} -> {}",
            self.meta.egen,
            meta.egen
        );
        if let Err(e) = self.storage.save_meta(&meta) {
            return Err(self.fail(format!("writing the replication metadata: {e}")));
        }
        self.meta = meta;
        Ok(())
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

    /// A small deterministic generator for tie-breakers (xorshift64*), seeded by the host.
    pub(crate) fn next_random(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// Seeds the tie-breaker generator (the host passes real randomness; a simulator its seed).
    pub fn set_random_seed(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    /// True while this client rewrites its state to match a master:
    /// verifying its log against the master's, rolling back, or loading a
    /// snapshot (internal init). Data read now may be about to change under
    /// the reader (with [`ConfigFlag::NoWait`](crate::rep::ConfigFlag::NoWait)
    /// reads answer `Lockout`), and the site cannot become master. The one
    /// predicate for "is this client syncing".
    pub fn is_syncing(&self) -> bool {
        self.role == Role::Client && self.client_state.sync.is_rewriting()
    }

    /// True while this client is fetching a snapshot (internal init): the
    /// part of [`Core::is_syncing`] a simulator counts as an install.
    #[cfg(any(test, feature = "testing"))]
    pub fn in_internal_init(&self) -> bool {
        self.role == Role::Client
            && matches!(
                self.client_state.sync,
                client::SyncState::Initializing { .. }
            )
    }
}
