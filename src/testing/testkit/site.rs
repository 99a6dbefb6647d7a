//! One site of the cluster: its core, disk, settings and what it reported.

use super::SiteClock;
use crate::env::EnvConfig;
use crate::rep::{CommitTicket, Core, Eid, Event, StartAs, Status};
use crate::testing::sim_fs::SimFs;

/// One site of the cluster.
pub struct Site {
    /// Its id (ids are global in the test kit).
    pub eid: Eid,
    /// The running core; `None` while crashed.
    pub core: Option<Core>,
    /// Its simulated disk.
    pub fs: SimFs,
    /// Its settings.
    pub config: EnvConfig,
    /// Every event it reported, in order.
    pub events: Vec<Event>,
    /// Every non-trivial `rep_process_message` status it returned.
    pub statuses: Vec<Status>,
    /// The host model owes this site an election.
    pub want_election: bool,
    /// The role the host last started it in.
    pub started_as: Option<StartAs>,
    /// Its clock; every core call gets its local time.
    pub clock: SiteClock,
    /// Extra time this site takes to take in each message: a slow disk
    /// stalls a synchronous site while it fsyncs (0 = none).
    pub slow_us: u64,
    pub(super) next_tick: u64,
    /// Commits not yet settled ([`Core::commit_poll`]), polled by the host
    /// model after every call into the core.
    pub(super) commits: Vec<CommitTicket>,
}

impl Site {
    /// The core; panics if the site is crashed (a test-kit convenience).
    pub fn core(&self) -> &Core {
        self.core.as_ref().expect("site is crashed")
    }
    /// The core, mutably; panics if the site is crashed.
    pub fn core_mut(&mut self) -> &mut Core {
        self.core.as_mut().expect("site is crashed")
    }
    /// True unless crashed.
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }
    /// Its local time at global time `g`.
    pub fn local(&self, g: u64) -> u64 {
        self.clock.local(g)
    }
}
