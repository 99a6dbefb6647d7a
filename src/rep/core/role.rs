//! Role changes. `become_master` and `become_client` are the only places
//! the role changes (etcd-io/raft's `becomeLeader` / `becomeFollower`);
//! `rep_start`, stepping down and adopting a master all go through them.

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::rep::core::client::SyncState;
use crate::rep::core::master::MasterState;
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::retry::Retry;
use crate::rep::types::StartAs;
use crate::rep::types::{Eid, Event, Role, EID_BROADCAST};
use crate::wire::Message;

impl Core {
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
                self.become_client();
                self.lease_on_client_start();
                self.cdata = cdata.to_vec();
                let cdata = self.cdata.clone();
                self.send(Outgoing::broadcast(Message::NewClient { cdata }));
                self.start_search();
                Ok(())
            }
        }
    }

    /// `rep_start(MASTER)`: checks this site may lead, then becomes master.
    pub(super) fn start_master(&mut self, local: Eid) -> Result<()> {
        if self.role == Role::Client
            && matches!(self.client_state.sync, SyncState::Initializing { .. })
        {
            return Err(Error::Unavail(
                "cannot become master during internal initialisation".into(),
            ));
        }
        if self.role == Role::Master {
            self.announce(EID_BROADCAST);
            return Ok(());
        }
        self.lease_check_start_master()?;
        let gen = self.next_master_gen()?;
        self.become_master(local, gen)
    }

    /// Becomes master of generation `gen`: makes the generation durable,
    /// starts it with a generation-start record, and announces itself. One
    /// of the two places the role changes.
    pub(super) fn become_master(&mut self, local: Eid, gen: u32) -> Result<()> {
        let mut meta = self.meta;
        meta.gen = gen;
        meta.egen = meta.egen.max(gen);
        self.set_meta(meta)?;
        self.role = Role::Master;
        self.master = Some(local);
        self.master_state = MasterState::default();
        self.client_state = Default::default();
        self.lease = Default::default();
        let lsn = self.storage.append_gen_start(gen)?;
        self.storage.log_mut().force_sync()?;
        self.master_state.gen_start_lsn = lsn;
        self.queue_broadcast(lsn)?;
        self.announce(EID_BROADCAST);
        self.event(Event::Master);
        self.recompute_perm();
        log::info!("site {local} is master of generation {gen}");
        Ok(())
    }

    /// Becomes a client (from master or from no role): the master's state is
    /// dropped. Does nothing on a client. One of the two places the role
    /// changes; the caller then looks for, or adopts, a master.
    pub(crate) fn become_client(&mut self) {
        if self.role == Role::Client {
            return;
        }
        if self.role == Role::Master {
            log::info!(
                "master of generation {} steps down and becomes a client",
                self.meta.gen
            );
            self.master_state = MasterState::default();
        }
        self.role = Role::Client;
        self.event(Event::Client);
    }

    /// Takes `from` as master of `gen`, whose log ends at `master_last`.
    pub(crate) fn adopt_master(&mut self, from: Eid, gen: u32, master_last: Lsn) -> Result<()> {
        if gen != self.meta.gen {
            let mut meta = self.meta;
            meta.gen = gen;
            meta.egen = meta.egen.max(gen);
            self.set_meta(meta)?;
        }
        self.master = Some(from);
        // A win of ours is void once we follow someone else, and so are
        // follower reads whose commit point came from the previous master's log.
        self.elected_egen = None;
        self.lease.reads.clear();
        self.client_state.clear_stream();
        self.client_state.master_last = master_last;
        self.client_state.master_heard_us = self.now;
        self.client_state.startup_target = Some(master_last);
        self.client_state.startup_done = false;
        self.client_state.search_retry = None;
        self.election_found_master(from);
        self.event(Event::NewMaster(from));
        log::info!(
            "site {:?} follows master {from} of generation {gen}",
            self.eid
        );
        if self.cfg.delay_client {
            self.client_state.sync = SyncState::Delayed;
            Ok(())
        } else {
            self.begin_sync()
        }
    }

    /// Forgets the master and broadcasts a master request.
    pub(crate) fn start_search(&mut self) {
        self.master = None;
        self.client_state.sync = SyncState::Searching;
        self.client_state.clear_stream();
        self.client_state.search_since = self.now;
        self.client_state.search_held = false;
        self.client_state.search_retry = Some(Retry::new(self.now, self.cfg.request_us_max));
        self.send(Outgoing::broadcast(Message::MasterReq));
    }

    /// The generation a new master takes: the egen it was elected in, or,
    /// when the host makes a site master without an election, one past
    /// everything this site has seen.
    ///
    /// With leases, only a current win counts: a win from an election that a
    /// newer generation has overtaken is no licence, and falling back to
    /// "one past everything" would let two unelected sites pick the same
    /// generation.
    pub(crate) fn next_master_gen(&mut self) -> Result<u32> {
        match self.elected_egen.take() {
            // Our own vote already raised our generation to the egen we won.
            Some(egen) if egen >= self.meta.gen => Ok(egen),
            _ if self.cfg.lease => Err(Error::invalid(
                "cannot become master without being elected when using leases",
            )),
            _ => Ok(self.meta.gen.max(self.meta.egen) + 1),
        }
    }
}
