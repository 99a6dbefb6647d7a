//! The replication wire format.
//!
//! Every message travels as two byte strings, like Berkeley DB's `control`
//! and `rec` DBTs: a fixed-size **control** header and a **rec** payload whose
//! layout depends on the message type. The host moves both, unchanged, from
//! the sender's `send` callback to the receiver's `rep_process_message`.
//!
//! All integers are little-endian. The control header is
//! [`CONTROL_LEN`] bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `0xDB 0x7E` |
//! | 2 | 2 | format version ([`WIRE_VERSION`]) |
//! | 4 | 1 | message type ([`MsgType`]) |
//! | 5 | 1 | flags ([`MsgFlags`]) |
//! | 6 | 2 | reserved, zero |
//! | 8 | 4 | sender's generation |
//! | 12 | 4 | sender's election generation |
//! | 16 | 8 | LSN (file, offset) |
//! | 24 | 4 | length of `rec` in bytes (checked against the real length) |
//!
//! Decoding never panics and never allocates more than the configured limit:
//! see [`DecodeLimits`].

mod codec;

pub use codec::*;

use crate::lsn::Lsn;

/// Version of the wire format this build speaks.
pub const WIRE_VERSION: u16 = 1;

/// Length in bytes of the control header.
pub const CONTROL_LEN: usize = 28;

/// Magic bytes opening every control header.
pub const MAGIC: [u8; 2] = [0xDB, 0x7E];

crate::flags::bit_flags! {
    /// Flags carried in the control header.
    pub struct MsgFlags(u8);
    /// The sender is (or believes it is) the master of `gen`.
    const FROM_MASTER = 0x01;
    /// The message carries a commit record the master wants acknowledged.
    const PERMANENT = 0x02;
    /// The message answers a request (log re-sent, not broadcast live).
    const RESEND = 0x04;
    /// The answer was cut at the sender's limit: ask again for the rest.
    const MORE = 0x08;
    /// A request repeated because an earlier one got no useful answer.
    const REREQUEST = 0x10;
}

/// Message type codes as they appear on the wire. Values are never reused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// [`Message::NewClient`]
    NewClient = 1,
    /// [`Message::MasterReq`]
    MasterReq = 2,
    /// [`Message::NewMaster`]
    NewMaster = 3,
    /// [`Message::Log`]
    Log = 4,
    /// [`Message::LogReq`]
    LogReq = 5,
    /// [`Message::Ack`]
    Ack = 6,
    /// [`Message::VerifyReq`]
    VerifyReq = 7,
    /// [`Message::Verify`]
    Verify = 8,
    /// [`Message::VerifyFail`]
    VerifyFail = 9,
    /// [`Message::InitReq`]
    InitReq = 10,
    /// [`Message::Snapshot`]
    Snapshot = 11,
    /// [`Message::Heartbeat`]
    Heartbeat = 12,
    /// [`Message::Vote1`]
    Vote1 = 13,
    /// [`Message::Vote2`]
    Vote2 = 14,
    /// [`Message::DupMaster`]
    DupMaster = 15,
    /// [`Message::LeaseGrant`]
    LeaseGrant = 16,
    /// [`Message::ReadIndexReq`]
    ReadIndexReq = 17,
    /// [`Message::ReadIndex`]
    ReadIndex = 18,
    /// [`Message::LeaseReq`]
    LeaseReq = 19,
    /// [`Message::JoinReq`]
    JoinReq = 20,
    /// [`Message::JoinInfo`]
    JoinInfo = 21,
    /// [`Message::JoinRefused`]
    JoinRefused = 22,
    /// [`Message::LeaveReq`]
    LeaveReq = 23,
}

/// Why a master could not verify a client's record.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VerifyFailReason {
    /// The master holds no record at that LSN (the logs diverged there).
    NoRecord = 1,
    /// The LSN is older than the master's first log record: the client needs internal init.
    Outdated = 2,
}

/// One decoded replication message: the control header's common fields and
/// the type-specific body.
///
/// `B` is how byte strings in the body are held: owned (`Vec<u8>`, the
/// default, what [`decode`] returns) or borrowed from the received `rec`
/// (`&[u8]`, what [`decode_ref`] returns without copying).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<B = Vec<u8>> {
    /// The sender's generation (master term).
    pub gen: u32,
    /// The sender's election generation.
    pub egen: u32,
    /// The LSN the message is about (its meaning depends on the type; the
    /// `lsnp` handed to `send`).
    pub lsn: Lsn,
    /// Control flags.
    pub flags: MsgFlags,
    /// The body.
    pub msg: Message<B>,
}

/// The body of a replication message; `B` holds its byte strings (see
/// [`Envelope`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<B = Vec<u8>> {
    /// A client's first contact after `rep_start(CLIENT)`, carrying the host's `cdata`.
    NewClient {
        /// Opaque host bytes, handed to every receiver with `NEWSITE`.
        cdata: B,
    },
    /// "Who is master?", broadcast by a client that has none.
    MasterReq,
    /// A master announces itself; `Envelope::lsn` is the last LSN of its log.
    NewMaster {
        /// The master's permanent (commit) point.
        perm_lsn: Lsn,
    },
    /// One or more whole, CRC-checked log records, back to back, exactly as
    /// they are stored; `Envelope::lsn` is the LSN of the last record.
    Log {
        /// The master's permanent (commit) point when it sent this.
        perm_lsn: Lsn,
        /// Encoded records (see `log::record`).
        records: B,
    },
    /// A client asks for the records after `after`, up to and including `upto`
    /// (`Lsn::ZERO` = everything the master has).
    LogReq {
        /// The last record the client holds (`Lsn::ZERO` for none).
        after: Lsn,
        /// The last record wanted, or `Lsn::ZERO` for all.
        upto: Lsn,
    },
    /// A client has made the master's log durable up to `Envelope::lsn`.
    Ack {
        /// The client's election priority (acks from priority-0 sites do not count for QUORUM).
        priority: u32,
    },
    /// A client asks the master for its record at `Envelope::lsn`, to find the
    /// last record their logs share.
    VerifyReq,
    /// The master's record at `Envelope::lsn`, encoded as stored.
    Verify {
        /// The encoded record.
        record: B,
    },
    /// The master has no usable record at `Envelope::lsn`.
    VerifyFail {
        /// Why.
        reason: VerifyFailReason,
    },
    /// A client being initialised asks for bytes of the master's checkpoint snapshot.
    InitReq {
        /// The checkpoint being fetched (`Lsn::ZERO`: whatever the master has now).
        ckpt_lsn: Lsn,
        /// Byte offset of the chunk wanted.
        offset: u64,
    },
    /// A chunk of a checkpoint snapshot.
    Snapshot {
        /// The LSN the snapshot reflects.
        ckpt_lsn: Lsn,
        /// The generation of the record at `ckpt_lsn`.
        ckpt_gen: u32,
        /// Total length of the snapshot in bytes.
        total_len: u64,
        /// Offset of `data` inside the snapshot.
        offset: u64,
        /// The chunk.
        data: B,
    },
    /// The master is alive; `Envelope::lsn` is the last LSN of its log.
    Heartbeat {
        /// The master's permanent (commit) point.
        perm_lsn: Lsn,
    },
    /// Election phase 1: a site's candidacy information, broadcast.
    Vote1 {
        /// Sites the sender expects to take part.
        nsites: u32,
        /// Votes the sender requires to elect.
        nvotes: u32,
        /// The sender's priority (0 = never master).
        priority: u32,
        /// Generation of the sender's last log record.
        last_gen: u32,
        /// LSN of the sender's last log record (also in `Envelope::lsn`).
        last_lsn: Lsn,
        /// Random tie-breaker among equal logs and priorities.
        tiebreaker: u32,
        /// The sender has already received phase-1 information from enough sites.
        full: bool,
    },
    /// Election phase 2: a vote for the receiver in election generation `Envelope::egen`.
    Vote2,
    /// A master tells another site claiming to be master of the same generation.
    DupMaster,
    /// A client grants the master a lease.
    LeaseGrant {
        /// The master's lease-request time the grant answers, echoed back (master's clock, µs).
        master_time_us: u64,
    },
    /// A client asks the master for its commit point, for a follower read.
    ReadIndexReq {
        /// Request id, echoed in the answer.
        id: u64,
    },
    /// The master's commit point, in `Envelope::lsn`, answering a `ReadIndexReq`.
    ReadIndex {
        /// The request id being answered.
        id: u64,
    },
    /// The master asks its clients to confirm it is still their master, at
    /// its own time `master_time_us`; they answer with `LeaseGrant` echoing
    /// it. This refreshes master leases, and with leases off it is the quorum
    /// check behind linearizable reads.
    LeaseReq {
        /// The master's clock when it sent the request (µs).
        master_time_us: u64,
    },
    /// A site that is not a member of the replicated group asks to join it.
    JoinReq {
        /// The joiner may become master.
        electable: bool,
        /// Where the joiner can be reached (opaque bytes).
        addr: B,
    },
    /// A member answers a `JoinReq`: who the master is and the group in
    /// force at the member, so the joiner can reach them.
    JoinInfo {
        /// The master the member knows of (`EID_INVALID`, -2, if none).
        master: i32,
        /// The group, encoded as `crate::membership` describes.
        members: B,
    },
    /// The master refuses a `JoinReq`.
    JoinRefused {
        /// Why, for the joiner's host.
        reason: B,
    },
    /// A member asks the master to remove it from the group.
    LeaveReq,
}

impl<B> Message<B> {
    /// The wire type code of this body.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::NewClient { .. } => MsgType::NewClient,
            Message::MasterReq => MsgType::MasterReq,
            Message::NewMaster { .. } => MsgType::NewMaster,
            Message::Log { .. } => MsgType::Log,
            Message::LogReq { .. } => MsgType::LogReq,
            Message::Ack { .. } => MsgType::Ack,
            Message::VerifyReq => MsgType::VerifyReq,
            Message::Verify { .. } => MsgType::Verify,
            Message::VerifyFail { .. } => MsgType::VerifyFail,
            Message::InitReq { .. } => MsgType::InitReq,
            Message::Snapshot { .. } => MsgType::Snapshot,
            Message::Heartbeat { .. } => MsgType::Heartbeat,
            Message::Vote1 { .. } => MsgType::Vote1,
            Message::Vote2 => MsgType::Vote2,
            Message::DupMaster => MsgType::DupMaster,
            Message::LeaseGrant { .. } => MsgType::LeaseGrant,
            Message::ReadIndexReq { .. } => MsgType::ReadIndexReq,
            Message::ReadIndex { .. } => MsgType::ReadIndex,
            Message::LeaseReq { .. } => MsgType::LeaseReq,
            Message::JoinReq { .. } => MsgType::JoinReq,
            Message::JoinInfo { .. } => MsgType::JoinInfo,
            Message::JoinRefused { .. } => MsgType::JoinRefused,
            Message::LeaveReq => MsgType::LeaveReq,
        }
    }
}

/// Bounds the decoder enforces on input from peers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest `rec` accepted, in bytes.
    pub max_rec_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_rec_bytes: 64 << 20,
        }
    }
}
