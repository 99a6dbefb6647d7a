//! The values that cross between the replication core and its host:
//! site ids, send flags, `rep_process_message` outcomes and events.

use crate::lsn::Lsn;

/// A site's environment id, as the host numbers its peers (Berkeley DB's
/// `envid`). Ids are local to each site: A may call B `1` while B calls A `7`.
/// Non-negative ids name sites; negative ones are reserved.
pub type Eid = i32;

/// Target id meaning "every site the host can reach" (`DB_EID_BROADCAST`).
pub const EID_BROADCAST: Eid = -1;
/// An id that names no site (`DB_EID_INVALID`).
pub const EID_INVALID: Eid = -2;

crate::flags::bit_flags! {
    /// Flags the library passes to the host's `send` callback (same values as Berkeley DB).
    pub struct SendFlags(u32);
    /// A client request another client could answer as well as the master.
    const ANYWHERE = 0x1;
    /// Send now; do not batch or delay.
    const NOBUFFER = 0x2;
    /// The message matters for durability (a commit): the master wants it acknowledged.
    const PERMANENT = 0x4;
    /// A request repeated because an earlier one got no useful answer.
    const REREQUEST = 0x8;
}

/// One message the library asks the host to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutMsg {
    /// The site to deliver to, or [`EID_BROADCAST`].
    pub eid: Eid,
    /// The control bytes, to hand to the receiver's `rep_process_message`
    /// unchanged. A fixed-size header, so sending costs one allocation, for `rec`.
    pub control: [u8; crate::wire::CONTROL_LEN],
    /// The rec bytes, likewise.
    pub rec: Vec<u8>,
    /// The LSN the message carries (for a log message, its last record), so a
    /// host can match acknowledgements.
    pub lsn: Lsn,
    /// Delivery hints.
    pub flags: SendFlags,
}

/// How fresh a read must be.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReadLevel {
    /// Sees every write completed before the read began. Served by the
    /// master: at once while it holds a lease, else after a majority confirms
    /// it is still master. On a client: an error (use `Follower`).
    Linearizable,
    /// Also linearizable, served locally by a client: it asks the master for
    /// its commit point and waits until it has applied up to it. On the master
    /// it is the same as `Linearizable`.
    Follower,
    /// Whatever this site has applied (the default read, Berkeley DB's plain
    /// `get`): no waiting for other sites, possibly behind. On a master with
    /// leases it is served only while the lease is valid (`LeaseExpired`
    /// otherwise), as Berkeley DB does without `DB_IGNORE_LEASE`.
    Local,
    /// Whatever this site has applied, ignoring the lease (Berkeley DB's
    /// `DB_IGNORE_LEASE`): on a master that lost its lease the value may
    /// already be outdated by another master.
    Stale,
}

/// How an election `rep_elect` held ended, when it ended with a master
/// (no winner is `Err(Error::Unavail)`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ElectionOutcome {
    /// This site won: call `rep_start(MASTER)` to become master. The
    /// `Elected` event was delivered, on the thread that called `rep_elect`,
    /// before it returned.
    Won,
    /// Another site is master.
    OtherWon {
        /// The master's id.
        master: Eid,
    },
}

/// The replication role a site is started in (`rep_start` flags).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StartAs {
    /// `DB_REP_MASTER`
    Master,
    /// `DB_REP_CLIENT`
    Client,
}

/// What a site currently is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `rep_start` has not been called.
    Unset,
    /// A read-only replica.
    Client,
    /// The one site that takes writes.
    Master,
}

/// What `rep_process_message` tells the host to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Processed; nothing for the host to do.
    Processed,
    /// An election is needed: call `rep_elect` (from a thread other than the one delivering messages).
    HoldElection,
    /// A new master was learned of (its id). The `NewMaster` event fires too.
    NewMaster(Eid),
    /// First contact from a site: give it an id and open a channel to it.
    NewSite {
        /// The id the host labelled the message with.
        eid: Eid,
        /// The `cdata` the new site passed to `rep_start`.
        cdata: Vec<u8>,
    },
    /// Permanent records are durable here up to this LSN (the largest).
    /// Returned only for a message the master sent permanent (a live
    /// broadcast of commits), not for records re-sent on request.
    IsPerm(Lsn),
    /// A permanent record (this LSN) was accepted but is not yet durable: earlier records are missing.
    NotPerm(Lsn),
    /// This master learned of another master, of any generation (Berkeley
    /// DB's `DB_REP_DUPMASTER`). If the other one's generation is newer, this
    /// site has already stepped down and follows it; otherwise restart as a
    /// client (`rep_start(CLIENT)`) and hold an election.
    DupMaster,
    /// The message was irrelevant (usually from an older generation): drop it.
    Ignore,
    /// This client cannot synchronise with the master without losing data it
    /// was told is permanent, or needs internal init with auto-init off.
    JoinFailure,
    /// The message arrived before `rep_start`: it was not processed (the
    /// sender re-sends what matters once this site has started and asks).
    NotStarted,
}

pub use crate::storage::RolledBackTxn;

/// Things that happened that the host may care about (Berkeley DB's `DB_EVENT_REP_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// This site became a client.
    Client,
    /// This site became master.
    Master,
    /// Another site became master (its id).
    NewMaster(Eid),
    /// This site won an election; it becomes master when the host calls `rep_start(MASTER)`.
    Elected,
    /// The client caught up with the master's log as of the master's arrival.
    StartupDone,
    /// A commit (its LSN) did not become permanent within the ack timeout.
    PermFailed(Lsn),
    /// Two masters of one generation were detected.
    DupMaster,
    /// The client could not join the master (see [`Status::JoinFailure`]).
    JoinFailure,
    /// The master fell silent for longer than the heartbeat-monitor timeout.
    MasterFailure,
    /// An election ended without a winner.
    ElectionFailed,
    /// Transactions this site held were undone to match the master's log.
    RolledBack(Vec<RolledBackTxn>),
    /// The group this site knows changed (replicated membership): the
    /// group in force from its log, or, for a site not yet a member, the
    /// group a member told it of. A host that connects to sites by address
    /// connects to each member and drops sites no longer listed.
    GroupChanged(crate::membership::Membership),
    /// The master refused to let this site join the group, saying why (an
    /// eid already in use by another site). The site stops asking.
    JoinRefused(String),
}
