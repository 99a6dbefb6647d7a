//! Encoding and decoding of [`Envelope`]s.
//!
//! [`encode`] writes the control header described in the [module
//! docs](super) and the type-specific body into `rec`. [`decode`] is its
//! exact inverse and accepts only what [`encode`] could have produced, so a
//! message that decodes re-encodes to the same bytes.
//!
//! Body encodings (all little-endian). Fixed-size fields come first; each
//! variable-length byte string is a `u32` length followed by that many
//! bytes. An [`Lsn`] is 8 bytes, `file: u32` then `offset: u32`; a `bool`
//! is one byte, 0 or 1 (other values are rejected); a
//! [`VerifyFailReason`] is one byte.
//!
//! | type | code | body layout | size in bytes |
//! |---|---|---|---|
//! | `NewClient` | 1 | `cdata: bytes` | 4 + len |
//! | `MasterReq` | 2 | empty | 0 |
//! | `NewMaster` | 3 | `perm_lsn: Lsn` | 8 |
//! | `Log` | 4 | `perm_lsn: Lsn`, `records: bytes` | 12 + len |
//! | `LogReq` | 5 | `after: Lsn`, `upto: Lsn` | 16 |
//! | `Ack` | 6 | `priority: u32` | 4 |
//! | `VerifyReq` | 7 | empty | 0 |
//! | `Verify` | 8 | `record: bytes` | 4 + len |
//! | `VerifyFail` | 9 | `reason: u8` | 1 |
//! | `InitReq` | 10 | `ckpt_lsn: Lsn`, `offset: u64` | 16 |
//! | `Snapshot` | 11 | `ckpt_lsn: Lsn`, `ckpt_gen: u32`, `total_len: u64`, `offset: u64`, `data: bytes` | 32 + len |
//! | `Heartbeat` | 12 | `perm_lsn: Lsn` | 8 |
//! | `Vote1` | 13 | `nsites: u32`, `nvotes: u32`, `priority: u32`, `last_gen: u32`, `last_lsn: Lsn`, `tiebreaker: u32`, `full: bool` | 29 |
//! | `Vote2` | 14 | empty | 0 |
//! | `DupMaster` | 15 | empty | 0 |
//! | `LeaseGrant` | 16 | `master_time_us: u64` | 8 |
//! | `ReadIndexReq` | 17 | `id: u64` | 8 |
//! | `ReadIndex` | 18 | `id: u64` | 8 |
//! | `LeaseReq` | 19 | `master_time_us: u64` | 8 |
//! | `JoinReq` | 20 | `electable: bool`, `addr: bytes` | 5 + len |
//! | `JoinInfo` | 21 | `master: i32`, `members: bytes` | 8 + len |
//! | `JoinRefused` | 22 | `reason: bytes` | 4 + len |
//! | `LeaveReq` | 23 | empty | 0 |
//!
//! ```
//! use dbrep::wire::{decode, encode, DecodeLimits, Envelope, Message, MsgFlags};
//! use dbrep::Lsn;
//!
//! let env = Envelope {
//!     gen: 3,
//!     egen: 4,
//!     lsn: Lsn::new(1, 28),
//!     flags: MsgFlags::FROM_MASTER,
//!     msg: Message::Ack { priority: 100 },
//! };
//! let (mut control, mut rec) = (Vec::new(), Vec::new());
//! encode(&env, &mut control, &mut rec);
//! assert_eq!(decode(&control, &rec, &DecodeLimits::default()).unwrap(), env);
//! ```

use super::{MsgType, VerifyFailReason};
#[cfg(any(test, feature = "testing"))]
use {super::MsgFlags, crate::lsn::Lsn};

mod decode;
mod encode;

pub use decode::*;
pub use encode::*;

impl MsgType {
    /// The type with wire code `code`, if this version defines one.
    pub const fn from_u8(code: u8) -> Option<MsgType> {
        Some(match code {
            1 => MsgType::NewClient,
            2 => MsgType::MasterReq,
            3 => MsgType::NewMaster,
            4 => MsgType::Log,
            5 => MsgType::LogReq,
            6 => MsgType::Ack,
            7 => MsgType::VerifyReq,
            8 => MsgType::Verify,
            9 => MsgType::VerifyFail,
            10 => MsgType::InitReq,
            11 => MsgType::Snapshot,
            12 => MsgType::Heartbeat,
            13 => MsgType::Vote1,
            14 => MsgType::Vote2,
            15 => MsgType::DupMaster,
            16 => MsgType::LeaseGrant,
            17 => MsgType::ReadIndexReq,
            18 => MsgType::ReadIndex,
            19 => MsgType::LeaseReq,
            20 => MsgType::JoinReq,
            21 => MsgType::JoinInfo,
            22 => MsgType::JoinRefused,
            23 => MsgType::LeaveReq,
            _ => return None,
        })
    }
}

impl VerifyFailReason {
    /// The reason with wire code `code`, if this version defines one.
    pub const fn from_u8(code: u8) -> Option<VerifyFailReason> {
        match code {
            1 => Some(VerifyFailReason::NoRecord),
            2 => Some(VerifyFailReason::Outdated),
            _ => None,
        }
    }
}

/// The common fields of a control header, as returned by [`peek_control`]:
/// type, flags, generation, election generation and LSN.
#[cfg(any(test, feature = "testing"))]
pub type ControlFields = (MsgType, MsgFlags, u32, u32, Lsn);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{DecodeLimits, Envelope, Message};

    #[test]
    fn decode_ref_borrows_and_matches_decode() {
        let env = Envelope {
            gen: 2,
            egen: 3,
            lsn: Lsn::new(1, 64),
            flags: MsgFlags::FROM_MASTER | MsgFlags::PERMANENT,
            msg: Message::Log {
                perm_lsn: Lsn::new(1, 32),
                records: vec![7u8; 100],
            },
        };
        let (mut control, mut rec) = (Vec::new(), Vec::new());
        encode(&env, &mut control, &mut rec);
        assert_eq!(rec.len(), 112);
        assert_eq!(rec.capacity(), 112);
        let limits = DecodeLimits::default();
        let r = decode_ref(&control, &rec, &limits).unwrap();
        match r.msg {
            Message::Log { records, .. } => {
                assert_eq!(records.as_ptr(), rec[12..].as_ptr());
            }
            ref m => panic!("decoded {m:?}"),
        }
        assert_eq!(r.clone().into_owned(), env);
        assert_eq!(decode(&control, &rec, &limits).unwrap(), env);
        // A borrowed envelope encodes to the same bytes.
        let (mut c2, mut r2) = (Vec::new(), Vec::new());
        encode(&r, &mut c2, &mut r2);
        assert_eq!((c2, r2), (control, rec));
    }
}
