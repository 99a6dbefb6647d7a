//! The replication protocol: a deterministic state machine ([`Core`](crate::rep::Core)) and
//! the values it exchanges with its host.
//!
//! # Messages
//!
//! | message | from → to | purpose |
//! |---|---|---|
//! | `NewClient` | client → all | first contact after `rep_start(CLIENT)`, carries `cdata` (receivers return `NEWSITE`) |
//! | `MasterReq` | client → all | who is master? |
//! | `NewMaster` | master → one/all | "I am master of generation g; my log ends at lsn" |
//! | `Log` | master → all (live) or one (answer) | whole encoded log records; flagged `PERMANENT` when live |
//! | `LogReq` | client → master | records after an LSN (gap fill, catch-up) |
//! | `Ack` | client → master | "durable here up to lsn" |
//! | `VerifyReq` / `Verify` / `VerifyFail` | client ↔ master | find the last record both logs share |
//! | `InitReq` / `Snapshot` | client ↔ master | internal init from a snapshot, chunk by chunk |
//! | `Heartbeat` | master → all | liveness, and the tail LSN so clients notice a lost tail |
//! | `Vote1` / `Vote2` | all | the two election phases (see `core/election.rs`) |
//! | `DupMaster` | master → master | two masters claim one generation |
//! | `JoinReq` | non-member → all | "add me to the group" (replicated membership, `core/membership.rs`) |
//! | `JoinInfo` | member → joiner | the master it knows and the group, so the joiner can reach them |
//! | `JoinRefused` | master → joiner | the eid is a member's at another address |
//! | `LeaveReq` | member → master | "remove me from the group" |
//!
//! # Generations
//!
//! Every master has a generation, higher than any before it (the election
//! generation it won). A site's own generation is the highest it has
//! followed, led or voted for. A message from a master of an older
//! generation is ignored (`IGNORE`) and answered so the stale master learns
//! it is stale; a master that hears of a newer generation steps down and
//! becomes a client; two masters of one generation both get `DUPMASTER`.
//!
//! # Reads
//!
//! See `core/lease.rs`: a linearizable or follower read returns a value only once
//! the record that wrote it is known permanent, and a new master hands out
//! commit points only once the first record of its own generation is
//! permanent.
//!
//! # Permanence
//!
//! A commit is permanent when it is durable on the master and acknowledged by
//! the clients its [`AckPolicy`] asks for. Only a record of the master's own
//! generation is ever declared permanent by counting acknowledgements; the
//! records before it become permanent with it (the rule that keeps Raft from
//! losing a commit to a later election). Clients acknowledge only after their
//! own log is durable under their durability mode.
//!
//! # Group membership
//!
//! With [`ConfigFlag::GroupMembership`] the group is replicated state: the
//! master writes a membership record (the whole new group) into the log,
//! every site counts every majority against the group its own log holds,
//! and changes go one site at a time, each waiting for the one before to
//! reach a majority (see `core/membership.rs`). Without it, `nsites` is
//! each site's own setting, as in Berkeley DB's base API.
//!
//! # Client synchronisation
//!
//! A client that learns of a new master verifies its log against the
//! master's from its last record backwards until both hold the same record,
//! rolls back what follows it (reporting the undone transactions in
//! [`Event::RolledBack`]), and then asks for the records after it. When the
//! master's log no longer reaches back that far, the client loads the
//! master's snapshot instead (internal init). Rolling back a record a master
//! declared permanent is refused with `JOIN_FAILURE`.

pub mod config;
mod core;
pub mod meta;
mod outbox;
mod quorum;
mod retry;
pub mod stats;
mod token;
pub mod types;
mod vote;

pub use self::config::{AckPolicy, ConfigFlag, RepConfig, TimeoutKind};
pub use self::core::{CommitPoll, Core, ElectionProgress, ReadPoll};
#[cfg(any(test, feature = "testing"))]
pub use self::core::{CommitTicket, ReadIndexState, ReadTicket};
#[cfg(any(test, feature = "testing"))]
pub use self::meta::RepMeta;
pub use self::stats::RepStats;
pub use self::token::{CommitToken, TokenStatus};
#[cfg(any(test, feature = "testing"))]
pub use self::types::RolledBackTxn;
pub use self::types::{
    Eid, ElectionOutcome, Event, OutMsg, ReadLevel, Role, SendFlags, StartAs, Status,
    EID_BROADCAST, EID_INVALID,
};
