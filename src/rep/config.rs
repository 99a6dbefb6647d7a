//! Replication settings: what `rep_set_priority`, `rep_set_nsites`,
//! `rep_set_timeout`, `rep_set_config`, `rep_set_limit` and `rep_set_request` change.

use crate::error::{Error, Result};

/// Whose acknowledgements a master waits for before it reports a commit
/// permanent ([`CommitInfo::permanent`](crate::CommitInfo::permanent)),
/// and so what "permanent" promises. As in Berkeley DB, the policy says
/// which acks are waited for; only `All` and `Quorum` promise that the
/// commit survives any election. With `nsites` never set (0), every policy
/// but `None` waits for at least one client: a commit held by no replica is
/// never reported permanent by default.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum AckPolicy {
    /// Every other site of `nsites` must acknowledge. Survives any election.
    All,
    /// Every available client: one that has acknowledged everything sent to
    /// it, or has owed an acknowledgement for less than the availability
    /// window (the heartbeat-monitor timeout, or 30 s when that is off). An
    /// idle client stays available; one that stops answering drops out once
    /// the window passes. With every client unavailable the commit waits for
    /// one (it is not reported permanent on local durability alone, unless
    /// `nsites` is 1). Promises survival of any election the available
    /// clients take part in; a client that was unavailable may win one
    /// without it.
    AllAvailable,
    /// Enough electable (priority > 0) clients that, with the master, they form
    /// a majority of `nsites`: the commit then survives any election that a
    /// majority can hold. The default.
    Quorum,
    /// At least one client. Promises less than a majority: the commit
    /// survives the loss of the master, but an election won by a site that
    /// lacks it rolls it back.
    One,
    /// No client: permanent once durable on the master. Promises only local
    /// durability: any election may roll the commit back.
    None,
}

/// The timeouts `rep_set_timeout` sets, in microseconds (Berkeley DB's `DB_REP_*_TIMEOUT`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// How long the master waits for acknowledgements of a permanent record (default 1 s).
    Ack,
    /// How long an election may take before it fails (default 2 s).
    Election,
    /// How long to wait before retrying a failed election (default 10 s).
    ElectionRetry,
    /// The first election after start-up waits this long for all `nsites` (0 = off, the default).
    FullElection,
    /// How often an idle master sends a heartbeat (0 = never, the default).
    HeartbeatSend,
    /// A client that hears nothing from its master for this long starts an election (0 = never).
    HeartbeatMonitor,
    /// Master lease duration (0 until leases are configured).
    Lease,
    /// How long a client without a master waits for one to answer before asking for an election (default 3 s).
    MasterSearch,
}

/// On/off settings (`rep_set_config`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfigFlag {
    /// Batch log records into fewer, larger messages (`DB_REP_CONF_BULK`).
    /// Always on: the records a master appends between two deliveries of
    /// its output always travel in one message. Turning it off is refused.
    Bulk,
    /// A client learns of a new master but synchronises only when the host calls `rep_sync`.
    DelayClient,
    /// A client whose needed log is gone from the master is initialised from a snapshot (default on).
    AutoInit,
    /// Data calls on a synchronising client fail with `Lockout` instead of waiting.
    NoWait,
    /// Master leases (read consistency); must be set before `rep_start`.
    Lease,
    /// Accept an `nvotes` below a majority of `nsites` in `rep_elect`. Dangerous:
    /// two sides of a partition may both elect a master.
    AllowSubMajority,
    /// Manual-master mode: `rep_start(MASTER)` may appoint this site master
    /// without an election, with a generation one past everything it has
    /// seen (Berkeley DB's appointed master). Without it, only a won
    /// election that nothing has overtaken, a fresh site (one that has
    /// never voted nor joined or led any generation: the base API's
    /// start-up pattern), or a master restarting as master (its latest
    /// generation is one it led), may become master. An appointed master deposes an
    /// elected one and rolls back its unreplicated commits: use it only
    /// when the host itself guarantees a single master. Ignored with leases,
    /// which always need an election.
    ManualMaster,
    /// Replicated group membership (see `rep::core::membership`): the group
    /// (and so `nsites` and every majority) is what this site's log says,
    /// changed by the master one site at a time. A site started as master
    /// on an empty environment founds a group of itself; a site started as
    /// client that is not yet a member asks to join. Turned on for good by
    /// a log that holds a membership; cannot be combined with
    /// `rep_set_nsites`.
    GroupMembership,
}

/// Every replication setting, with Berkeley DB's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepConfig {
    /// Election priority; 0 = this site never becomes master (default 100).
    pub priority: u32,
    /// Number of sites in the group, for elections and acknowledgement counting (default 0: set it).
    pub nsites: u32,
    /// Acknowledgement policy for permanent commits.
    pub ack_policy: AckPolicy,
    /// See [`TimeoutKind::Ack`].
    pub ack_timeout_us: u64,
    /// See [`TimeoutKind::Election`].
    pub election_timeout_us: u64,
    /// See [`TimeoutKind::ElectionRetry`].
    pub election_retry_us: u64,
    /// See [`TimeoutKind::FullElection`].
    pub full_election_timeout_us: u64,
    /// See [`TimeoutKind::HeartbeatSend`].
    pub heartbeat_send_us: u64,
    /// See [`TimeoutKind::HeartbeatMonitor`].
    pub heartbeat_monitor_us: u64,
    /// See [`TimeoutKind::Lease`].
    pub lease_timeout_us: u64,
    /// See [`TimeoutKind::MasterSearch`].
    pub master_search_us: u64,
    /// Most bytes one `rep_process_message` call sends in answer to requests
    /// (`rep_set_limit`; default 10 MB; 0 = unlimited).
    pub answer_bytes_max: u64,
    /// Smallest wait before a client re-requests missing records (default 40 ms).
    pub request_us_min: u64,
    /// Largest wait between re-requests; the wait doubles up to it (default 1.28 s).
    pub request_us_max: u64,
    /// See [`ConfigFlag::Bulk`].
    pub bulk: bool,
    /// See [`ConfigFlag::DelayClient`].
    pub delay_client: bool,
    /// See [`ConfigFlag::AutoInit`].
    pub autoinit: bool,
    /// See [`ConfigFlag::NoWait`].
    pub nowait: bool,
    /// See [`ConfigFlag::Lease`].
    pub lease: bool,
    /// See [`ConfigFlag::AllowSubMajority`].
    pub allow_sub_majority: bool,
    /// See [`ConfigFlag::ManualMaster`].
    pub manual_master: bool,
    /// See [`ConfigFlag::GroupMembership`].
    pub membership: bool,
    /// This site's address as the group membership advertises it to other
    /// sites (opaque bytes; `rep_set_local_addr`). A joining site sends it.
    pub local_addr: Vec<u8>,
    /// Clock skew allowance as (fast, slow) rates (`rep_set_clockskew`; default (1, 1)).
    pub clockskew: (u32, u32),
    /// Most bytes of early (out-of-order) records a client buffers while it waits for a gap to fill.
    pub pending_bytes_max: u64,
    /// Largest snapshot a client accepts during internal init.
    pub snapshot_bytes_max: u64,
    /// Largest `rec` accepted from a peer.
    pub message_bytes_max: u64,
}

impl Default for RepConfig {
    fn default() -> Self {
        RepConfig {
            priority: 100,
            nsites: 0,
            ack_policy: AckPolicy::Quorum,
            ack_timeout_us: 1_000_000,
            election_timeout_us: 2_000_000,
            election_retry_us: 10_000_000,
            full_election_timeout_us: 0,
            heartbeat_send_us: 0,
            heartbeat_monitor_us: 0,
            lease_timeout_us: 0,
            master_search_us: 3_000_000,
            answer_bytes_max: 10_000_000,
            request_us_min: 40_000,
            request_us_max: 1_280_000,
            bulk: true,
            delay_client: false,
            autoinit: true,
            nowait: false,
            lease: false,
            allow_sub_majority: false,
            manual_master: false,
            membership: false,
            local_addr: Vec::new(),
            clockskew: (1, 1),
            pending_bytes_max: 32 << 20,
            snapshot_bytes_max: 1 << 30,
            message_bytes_max: 64 << 20,
        }
    }
}

impl RepConfig {
    /// Reads one timeout.
    pub fn timeout(&self, kind: TimeoutKind) -> u64 {
        match kind {
            TimeoutKind::Ack => self.ack_timeout_us,
            TimeoutKind::Election => self.election_timeout_us,
            TimeoutKind::ElectionRetry => self.election_retry_us,
            TimeoutKind::FullElection => self.full_election_timeout_us,
            TimeoutKind::HeartbeatSend => self.heartbeat_send_us,
            TimeoutKind::HeartbeatMonitor => self.heartbeat_monitor_us,
            TimeoutKind::Lease => self.lease_timeout_us,
            TimeoutKind::MasterSearch => self.master_search_us,
        }
    }

    /// Sets one timeout.
    pub fn set_timeout(&mut self, kind: TimeoutKind, us: u64) {
        let slot = match kind {
            TimeoutKind::Ack => &mut self.ack_timeout_us,
            TimeoutKind::Election => &mut self.election_timeout_us,
            TimeoutKind::ElectionRetry => &mut self.election_retry_us,
            TimeoutKind::FullElection => &mut self.full_election_timeout_us,
            TimeoutKind::HeartbeatSend => &mut self.heartbeat_send_us,
            TimeoutKind::HeartbeatMonitor => &mut self.heartbeat_monitor_us,
            TimeoutKind::Lease => &mut self.lease_timeout_us,
            TimeoutKind::MasterSearch => &mut self.master_search_us,
        };
        *slot = us;
    }

    /// Reads one flag.
    pub fn flag(&self, flag: ConfigFlag) -> bool {
        match flag {
            ConfigFlag::Bulk => self.bulk,
            ConfigFlag::DelayClient => self.delay_client,
            ConfigFlag::AutoInit => self.autoinit,
            ConfigFlag::NoWait => self.nowait,
            ConfigFlag::Lease => self.lease,
            ConfigFlag::AllowSubMajority => self.allow_sub_majority,
            ConfigFlag::ManualMaster => self.manual_master,
            ConfigFlag::GroupMembership => self.membership,
        }
    }

    /// Sets one flag.
    pub fn set_flag(&mut self, flag: ConfigFlag, on: bool) {
        let slot = match flag {
            ConfigFlag::Bulk => &mut self.bulk,
            ConfigFlag::DelayClient => &mut self.delay_client,
            ConfigFlag::AutoInit => &mut self.autoinit,
            ConfigFlag::NoWait => &mut self.nowait,
            ConfigFlag::Lease => &mut self.lease,
            ConfigFlag::AllowSubMajority => &mut self.allow_sub_majority,
            ConfigFlag::ManualMaster => &mut self.manual_master,
            ConfigFlag::GroupMembership => &mut self.membership,
        };
        *slot = on;
    }

    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        if !self.bulk {
            return Err(Error::invalid(
                "ConfigFlag::Bulk cannot be turned off: a master always sends the records \
                 it appended between two deliveries in one message",
            ));
        }
        if self.request_us_min > self.request_us_max {
            return Err(Error::invalid(format!(
                "request minimum {} µs exceeds maximum {} µs",
                self.request_us_min, self.request_us_max
            )));
        }
        if self.clockskew.0 == 0 || self.clockskew.1 == 0 || self.clockskew.0 < self.clockskew.1 {
            return Err(Error::invalid(format!(
                "clock skew (fast {}, slow {}) must be non-zero with fast >= slow",
                self.clockskew.0, self.clockskew.1
            )));
        }
        if self.local_addr.len() > crate::membership::ADDR_MAX {
            return Err(Error::invalid(format!(
                "the local address is {} bytes, at most {} are allowed",
                self.local_addr.len(),
                crate::membership::ADDR_MAX
            )));
        }
        if self.lease && self.lease_timeout_us == 0 {
            return Err(Error::invalid(
                "leases are on but the lease timeout is not set",
            ));
        }
        Ok(())
    }
}
