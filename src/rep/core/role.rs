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
        self.check_alive()?;
        let local = self
            .eid
            .ok_or_else(|| Error::invalid("rep_start before rep_set_transport"))?;
        self.cfg.validate()?;
        self.refresh_group();
        match as_ {
            StartAs::Master => self.start_master(local),
            StartAs::Client => {
                self.become_client();
                self.lease_on_client_start();
                self.cdata = cdata.to_vec();
                let cdata = self.cdata.clone();
                self.send(Outgoing::broadcast(Message::NewClient { cdata }));
                self.start_search();
                // A site not yet in the group asks to join at once.
                self.group_state.next_request_us = self.now;
                self.membership_tick();
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
        self.check_may_lead()?;
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
        meta.led_gen = gen;
        self.set_meta(meta)?;
        self.role = Role::Master;
        self.master = Some(local);
        self.master_state = MasterState::default();
        self.client_state = Default::default();
        self.lease = Default::default();
        self.group_state.ahead.clear();
        let lsn = self.storage.append_gen_start(gen)?;
        self.storage.log_mut().force_sync()?;
        self.master_state.gen_start_lsn = lsn;
        self.queue_broadcast(lsn)?;
        self.found_group()?;
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
        self.client_state.stale_master_heard_us = None;
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
    /// when the host appoints a site master without an election, one past
    /// everything this site has seen.
    ///
    /// Only a current win counts: a win from an election that a newer
    /// generation has overtaken (this site voted in a later election, or
    /// followed another master) is no licence, and falling back to "one past
    /// everything" would give the site a fresh, higher generation that
    /// deposes the elected master and rolls back its acknowledged commits.
    /// Appointment is allowed for a fresh site (never voted, never joined or
    /// led a generation: the base API's start-up pattern) and in
    /// manual-master mode; with leases only to found a replicated group.
    pub(crate) fn next_master_gen(&mut self) -> Result<u32> {
        let gen = self.meta.gen;
        match self.elected_egen.take() {
            // Our own vote already raised our generation to the egen we won.
            Some(egen) if egen >= gen => Ok(egen),
            // Founding a replicated group: no other site can hold a lease
            // from a group that does not exist yet.
            _ if self.cfg.lease && self.founds_group() => Ok(gen.max(self.meta.egen) + 1),
            _ if self.cfg.lease => Err(Error::invalid(
                "cannot become master without being elected when using leases",
            )),
            _ if self.cfg.manual_master || self.is_fresh() => Ok(gen.max(self.meta.egen) + 1),
            Some(egen) => Err(Error::invalid(format!(
                "rep_start(MASTER) after a stale win: the election this site won (egen {egen}) \
                 was overtaken, it has since voted in a later election or followed another \
                 master (generation {gen}); hold a new election, or set \
                 ConfigFlag::ManualMaster to appoint it"
            ))),
            None => Err(Error::invalid(format!(
                "rep_start(MASTER) without an election: this site has voted or followed a \
                 master before (generation {gen}); hold an election (rep_elect), or set \
                 ConfigFlag::ManualMaster to appoint it"
            ))),
        }
    }

    /// True for a site that may be appointed master without deposing
    /// anyone it knows of: one that has never voted nor joined or led any
    /// generation, or whose latest generation is one it led itself (a
    /// master restarting as master).
    /// True for a site that has never voted nor had a generation, with
    /// replicated membership and no group in its log: appointing it
    /// master founds the group.
    pub(super) fn founds_group(&self) -> bool {
        self.managed_group()
            && self.group_state.group.is_none()
            && self.meta.vote_egen == 0
            && self.meta.gen == 0
    }

    fn is_fresh(&self) -> bool {
        (self.meta.vote_egen == 0 && self.meta.gen == 0)
            || (self.meta.led_gen > 0 && self.meta.led_gen == self.meta.gen)
    }
}
