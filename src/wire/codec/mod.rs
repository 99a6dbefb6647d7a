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

use byteorder::{ByteOrder, LittleEndian};

use super::{
    DecodeLimits, Envelope, Message, MsgFlags, MsgType, VerifyFailReason, CONTROL_LEN, MAGIC,
    WIRE_VERSION,
};
use crate::error::{Error, Result};
use crate::lsn::Lsn;

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
pub type ControlFields = (MsgType, MsgFlags, u32, u32, Lsn);

/// Encodes `env` into `control` (the [`CONTROL_LEN`]-byte header) and `rec`
/// (the body), clearing both first.
///
/// Neither buffer is reallocated when it already has the capacity, so a
/// sender can reuse one pair of buffers for every message.
///
/// # Panics
///
/// If a byte string in the body is longer than `u32::MAX` bytes, or the
/// whole body longer than `u32::MAX`: the format cannot express it, and such
/// a message could never be sent as one `rec` anyway.
pub fn encode<B: AsRef<[u8]>>(env: &Envelope<B>, control: &mut Vec<u8>, rec: &mut Vec<u8>) {
    encode_body(env, rec);
    control.clear();
    control.extend_from_slice(&encode_control(env, rec.len()));
}

/// Encodes the body of `env` into `rec` (cleared first, reallocated at most
/// once, to the exact size). [`encode_control`] then makes its header.
///
/// # Panics
///
/// As [`encode`].
pub fn encode_body<B: AsRef<[u8]>>(env: &Envelope<B>, rec: &mut Vec<u8>) {
    rec.clear();
    let len = body_len(&env.msg);
    if rec.capacity() == 0 {
        // A fresh buffer (every message a core sends): one allocation of
        // the exact size, without the growth path of `reserve_exact`.
        *rec = Vec::with_capacity(len);
    } else {
        rec.reserve_exact(len);
    }
    put_body(&env.msg, rec);
    debug_assert_eq!(rec.len(), len, "body_len disagrees with put_body");
}

/// The control header of `env` when its body is `rec_len` bytes long (the
/// body itself is not looked at: `B` may be `()`).
///
/// # Panics
///
/// If `rec_len` exceeds `u32::MAX`.
pub fn encode_control<B>(env: &Envelope<B>, rec_len: usize) -> [u8; CONTROL_LEN] {
    let rec_len = u32::try_from(rec_len).expect("wire: rec longer than u32::MAX bytes");
    let mut hdr = [0u8; CONTROL_LEN];
    hdr[0..2].copy_from_slice(&MAGIC);
    LittleEndian::write_u16(&mut hdr[2..4], WIRE_VERSION);
    hdr[4] = env.msg.msg_type() as u8;
    hdr[5] = env.flags.0;
    // hdr[6..8] is reserved and stays zero.
    LittleEndian::write_u32(&mut hdr[8..12], env.gen);
    LittleEndian::write_u32(&mut hdr[12..16], env.egen);
    LittleEndian::write_u32(&mut hdr[16..20], env.lsn.file);
    LittleEndian::write_u32(&mut hdr[20..24], env.lsn.offset);
    LittleEndian::write_u32(&mut hdr[24..28], rec_len);
    hdr
}

/// Bytes of a log message's body before its records: the permanent LSN and
/// the records' length.
pub const LOG_BODY_PREFIX: usize = 12;

/// Completes a log message body built in place: `body` holds
/// [`LOG_BODY_PREFIX`] bytes of any value, then the records. Afterwards it
/// is exactly what [`encode_body`] makes of `Message::Log { perm_lsn,
/// records }`, without copying the records (a master batches them straight
/// into the buffer it sends).
///
/// # Panics
///
/// If `body` is shorter than [`LOG_BODY_PREFIX`] or its records exceed
/// `u32::MAX` bytes.
pub fn finish_log_body(perm_lsn: Lsn, body: &mut [u8]) {
    let records = body.len() - LOG_BODY_PREFIX;
    let records = u32::try_from(records).expect("wire: records longer than u32::MAX bytes");
    LittleEndian::write_u32(&mut body[0..4], perm_lsn.file);
    LittleEndian::write_u32(&mut body[4..8], perm_lsn.offset);
    LittleEndian::write_u32(&mut body[8..12], records);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_lsn(out: &mut Vec<u8>, lsn: Lsn) {
    put_u32(out, lsn.file);
    put_u32(out, lsn.offset);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("wire: byte string longer than u32::MAX bytes");
    put_u32(out, len);
    out.extend_from_slice(bytes);
}

/// The encoded length of a body, as in the table in the module docs.
fn body_len<B: AsRef<[u8]>>(msg: &Message<B>) -> usize {
    match msg {
        Message::NewClient { cdata } => 4 + cdata.as_ref().len(),
        Message::MasterReq
        | Message::VerifyReq
        | Message::Vote2
        | Message::DupMaster
        | Message::LeaveReq => 0,
        Message::JoinReq { addr, .. } => 5 + addr.as_ref().len(),
        Message::JoinInfo { members, .. } => 8 + members.as_ref().len(),
        Message::JoinRefused { reason } => 4 + reason.as_ref().len(),
        Message::NewMaster { .. } | Message::Heartbeat { .. } => 8,
        Message::Log { records, .. } => 12 + records.as_ref().len(),
        Message::LogReq { .. } | Message::InitReq { .. } => 16,
        Message::Ack { .. } => 4,
        Message::Verify { record } => 4 + record.as_ref().len(),
        Message::VerifyFail { .. } => 1,
        Message::Snapshot { data, .. } => 32 + data.as_ref().len(),
        Message::Vote1 { .. } => 29,
        Message::LeaseGrant { .. }
        | Message::LeaseReq { .. }
        | Message::ReadIndexReq { .. }
        | Message::ReadIndex { .. } => 8,
    }
}

fn put_body<B: AsRef<[u8]>>(msg: &Message<B>, out: &mut Vec<u8>) {
    match msg {
        Message::NewClient { cdata } => put_bytes(out, cdata.as_ref()),
        Message::MasterReq
        | Message::VerifyReq
        | Message::Vote2
        | Message::DupMaster
        | Message::LeaveReq => {}
        Message::JoinReq { electable, addr } => {
            out.push(u8::from(*electable));
            put_bytes(out, addr.as_ref());
        }
        Message::JoinInfo { master, members } => {
            put_u32(out, *master as u32);
            put_bytes(out, members.as_ref());
        }
        Message::JoinRefused { reason } => put_bytes(out, reason.as_ref()),
        Message::NewMaster { perm_lsn } | Message::Heartbeat { perm_lsn } => {
            put_lsn(out, *perm_lsn)
        }
        Message::Log { perm_lsn, records } => {
            put_lsn(out, *perm_lsn);
            put_bytes(out, records.as_ref());
        }
        Message::LogReq { after, upto } => {
            put_lsn(out, *after);
            put_lsn(out, *upto);
        }
        Message::Ack { priority } => put_u32(out, *priority),
        Message::Verify { record } => put_bytes(out, record.as_ref()),
        Message::VerifyFail { reason } => out.push(*reason as u8),
        Message::InitReq { ckpt_lsn, offset } => {
            put_lsn(out, *ckpt_lsn);
            put_u64(out, *offset);
        }
        Message::Snapshot {
            ckpt_lsn,
            ckpt_gen,
            total_len,
            offset,
            data,
        } => {
            put_lsn(out, *ckpt_lsn);
            put_u32(out, *ckpt_gen);
            put_u64(out, *total_len);
            put_u64(out, *offset);
            put_bytes(out, data.as_ref());
        }
        Message::Vote1 {
            nsites,
            nvotes,
            priority,
            last_gen,
            last_lsn,
            tiebreaker,
            full,
        } => {
            put_u32(out, *nsites);
            put_u32(out, *nvotes);
            put_u32(out, *priority);
            put_u32(out, *last_gen);
            put_lsn(out, *last_lsn);
            put_u32(out, *tiebreaker);
            out.push(u8::from(*full));
        }
        Message::LeaseGrant { master_time_us } | Message::LeaseReq { master_time_us } => {
            put_u64(out, *master_time_us)
        }
        Message::ReadIndexReq { id } | Message::ReadIndex { id } => put_u64(out, *id),
    }
}

struct Header {
    msg_type: MsgType,
    flags: MsgFlags,
    gen: u32,
    egen: u32,
    lsn: Lsn,
    rec_len: u32,
}

fn parse_control(control: &[u8]) -> Result<Header> {
    let Ok(c) = <&[u8; CONTROL_LEN]>::try_from(control) else {
        return Err(bad_control_len(control.len()));
    };
    // Fixed offsets of a fixed-size array: no bounds checks. Any failed
    // check goes to `bad_control`, which finds the first in the order
    // below and says what it is.
    let u32_at = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
    let Some(msg_type) = MsgType::from_u8(c[4]) else {
        return Err(bad_control(c));
    };
    if [c[0], c[1]] != MAGIC
        || u16::from_le_bytes([c[2], c[3]]) != WIRE_VERSION
        || c[5] & !MsgFlags::ALL.0 != 0
        || c[6] != 0
        || c[7] != 0
    {
        return Err(bad_control(c));
    }
    Ok(Header {
        msg_type,
        flags: MsgFlags(c[5]),
        gen: u32_at(8),
        egen: u32_at(12),
        lsn: Lsn::new(u32_at(16), u32_at(20)),
        rec_len: u32_at(24),
    })
}

#[cold]
fn bad_control_len(len: usize) -> Error {
    Error::malformed(format!(
        "control header: length {len} bytes, expected {CONTROL_LEN}"
    ))
}

/// The error for a control header [`parse_control`] refused: the first
/// failed check, in the order magic, version, type, flags, reserved bytes.
#[cold]
#[inline(never)]
fn bad_control(control: &[u8; CONTROL_LEN]) -> Error {
    if control[0..2] != MAGIC {
        return Error::malformed(format!(
            "control header: bad magic {:#04x} {:#04x}, expected {:#04x} {:#04x}",
            control[0], control[1], MAGIC[0], MAGIC[1]
        ));
    }
    let version = LittleEndian::read_u16(&control[2..4]);
    if version != WIRE_VERSION {
        return Error::malformed(format!(
            "control header: unsupported wire version {version} (this build speaks version {WIRE_VERSION})"
        ));
    }
    if MsgType::from_u8(control[4]).is_none() {
        return Error::malformed(format!(
            "control header: unknown message type {}",
            control[4]
        ));
    }
    let flags = control[5];
    if flags & !MsgFlags::ALL.0 != 0 {
        return Error::malformed(format!(
            "control header: unknown flag bits {:#04x} in flags {flags:#04x}",
            flags & !MsgFlags::ALL.0
        ));
    }
    Error::malformed(format!(
        "control header: reserved bytes are {:#04x} {:#04x}, expected zero",
        control[6], control[7]
    ))
}

/// Checks a control header and returns its routing fields without looking
/// at `rec`, so a receiver can drop stale or foreign messages cheaply.
///
/// Applies every check [`decode`] makes on the header itself (length,
/// magic, version, type, flags, reserved bytes) but none on the body.
pub fn peek_control(control: &[u8]) -> Result<ControlFields> {
    let h = parse_control(control)?;
    Ok((h.msg_type, h.flags, h.gen, h.egen, h.lsn))
}

/// Decodes one message from its control header and body.
///
/// Fails with [`Error::Limit`] when the body is longer than
/// `limits.max_rec_bytes`, and with [`Error::Malformed`], naming the field,
/// on anything [`encode`] would not have produced. Never allocates more than
/// `rec.len()` bytes.
pub fn decode(control: &[u8], rec: &[u8], limits: &DecodeLimits) -> Result<Envelope> {
    decode_ref(control, rec, limits).map(Envelope::into_owned)
}

/// [`decode`] without copying: byte strings in the body (a log message's
/// records, a snapshot chunk, ...) borrow from `rec`. Makes every check
/// [`decode`] makes and allocates nothing (except for an error message).
pub fn decode_ref<'a>(
    control: &[u8],
    rec: &'a [u8],
    limits: &DecodeLimits,
) -> Result<Envelope<&'a [u8]>> {
    let h = parse_control(control)?;
    let claimed = h.rec_len as usize;
    // Checked against the limit before the real length, so that an
    // oversized message is reported as such whatever the host handed in.
    if claimed > limits.max_rec_bytes || rec.len() > limits.max_rec_bytes {
        return Err(Error::Limit {
            what: "rec length",
            limit: limits.max_rec_bytes as u64,
            got: claimed.max(rec.len()) as u64,
        });
    }
    if claimed != rec.len() {
        return Err(Error::malformed(format!(
            "control header: rec length field says {claimed} bytes but rec is {} bytes",
            rec.len()
        )));
    }
    let msg = decode_body(h.msg_type, rec)?;
    Ok(Envelope {
        gen: h.gen,
        egen: h.egen,
        lsn: h.lsn,
        flags: h.flags,
        msg,
    })
}

/// A cursor over a body that turns every short read into an error naming
/// the message type, the field and the position.
struct Reader<'a> {
    ty: MsgType,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let rest = self.buf.len() - self.pos;
        if n > rest {
            return Err(self.truncated(n, field));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[cold]
    #[inline(never)]
    fn truncated(&self, n: usize, field: &str) -> Error {
        Error::malformed(format!(
            "{:?} body: truncated reading {field} ({n} bytes) at byte {} of {}",
            self.ty,
            self.pos,
            self.buf.len()
        ))
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        Ok(LittleEndian::read_u32(self.take(4, field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(LittleEndian::read_u64(self.take(8, field)?))
    }

    fn lsn(&mut self, field: &str) -> Result<Lsn> {
        let b = self.take(8, field)?;
        Ok(Lsn::new(
            LittleEndian::read_u32(&b[0..4]),
            LittleEndian::read_u32(&b[4..8]),
        ))
    }

    fn bool(&mut self, field: &str) -> Result<bool> {
        let at = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Error::malformed(format!(
                "{:?} body: bad bool {v} in {field} at byte {at} (expected 0 or 1)",
                self.ty
            ))),
        }
    }

    /// A length-prefixed byte string; the length is checked against the
    /// bytes actually left before anything is allocated.
    fn bytes(&mut self, field: &str) -> Result<&'a [u8]> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }

    #[inline]
    fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(self.trailing());
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn trailing(&self) -> Error {
        Error::malformed(format!(
            "{:?} body: {} trailing bytes after byte {} of {}",
            self.ty,
            self.buf.len() - self.pos,
            self.pos,
            self.buf.len()
        ))
    }
}

fn decode_body(ty: MsgType, rec: &[u8]) -> Result<Message<&[u8]>> {
    let mut r = Reader {
        ty,
        buf: rec,
        pos: 0,
    };
    let msg = match ty {
        MsgType::NewClient => Message::NewClient {
            cdata: r.bytes("cdata")?,
        },
        MsgType::MasterReq => Message::MasterReq,
        MsgType::NewMaster => Message::NewMaster {
            perm_lsn: r.lsn("perm_lsn")?,
        },
        MsgType::Log => Message::Log {
            perm_lsn: r.lsn("perm_lsn")?,
            records: r.bytes("records")?,
        },
        MsgType::LogReq => Message::LogReq {
            after: r.lsn("after")?,
            upto: r.lsn("upto")?,
        },
        MsgType::Ack => Message::Ack {
            priority: r.u32("priority")?,
        },
        MsgType::VerifyReq => Message::VerifyReq,
        MsgType::Verify => Message::Verify {
            record: r.bytes("record")?,
        },
        MsgType::VerifyFail => {
            let at = r.pos;
            let code = r.u8("reason")?;
            let reason = VerifyFailReason::from_u8(code).ok_or_else(|| {
                Error::malformed(format!(
                    "VerifyFail body: unknown reason {code} at byte {at}"
                ))
            })?;
            Message::VerifyFail { reason }
        }
        MsgType::InitReq => Message::InitReq {
            ckpt_lsn: r.lsn("ckpt_lsn")?,
            offset: r.u64("offset")?,
        },
        MsgType::Snapshot => Message::Snapshot {
            ckpt_lsn: r.lsn("ckpt_lsn")?,
            ckpt_gen: r.u32("ckpt_gen")?,
            total_len: r.u64("total_len")?,
            offset: r.u64("offset")?,
            data: r.bytes("data")?,
        },
        MsgType::Heartbeat => Message::Heartbeat {
            perm_lsn: r.lsn("perm_lsn")?,
        },
        MsgType::Vote1 => Message::Vote1 {
            nsites: r.u32("nsites")?,
            nvotes: r.u32("nvotes")?,
            priority: r.u32("priority")?,
            last_gen: r.u32("last_gen")?,
            last_lsn: r.lsn("last_lsn")?,
            tiebreaker: r.u32("tiebreaker")?,
            full: r.bool("full")?,
        },
        MsgType::Vote2 => Message::Vote2,
        MsgType::DupMaster => Message::DupMaster,
        MsgType::LeaseGrant => Message::LeaseGrant {
            master_time_us: r.u64("master_time_us")?,
        },
        MsgType::ReadIndexReq => Message::ReadIndexReq { id: r.u64("id")? },
        MsgType::ReadIndex => Message::ReadIndex { id: r.u64("id")? },
        MsgType::LeaseReq => Message::LeaseReq {
            master_time_us: r.u64("master_time_us")?,
        },
        MsgType::JoinReq => Message::JoinReq {
            electable: r.bool("electable")?,
            addr: r.bytes("addr")?,
        },
        MsgType::JoinInfo => Message::JoinInfo {
            master: r.u32("master")? as i32,
            members: r.bytes("members")?,
        },
        MsgType::JoinRefused => Message::JoinRefused {
            reason: r.bytes("reason")?,
        },
        MsgType::LeaveReq => Message::LeaveReq,
    };
    r.finish()?;
    Ok(msg)
}

impl Envelope<&[u8]> {
    /// An owned copy (what [`decode`] returns).
    pub fn into_owned(self) -> Envelope {
        Envelope {
            gen: self.gen,
            egen: self.egen,
            lsn: self.lsn,
            flags: self.flags,
            msg: self.msg.into_owned(),
        }
    }
}

impl Message<&[u8]> {
    /// An owned copy.
    pub fn into_owned(self) -> Message {
        match self {
            Message::NewClient { cdata } => Message::NewClient {
                cdata: cdata.to_vec(),
            },
            Message::MasterReq => Message::MasterReq,
            Message::NewMaster { perm_lsn } => Message::NewMaster { perm_lsn },
            Message::Log { perm_lsn, records } => Message::Log {
                perm_lsn,
                records: records.to_vec(),
            },
            Message::LogReq { after, upto } => Message::LogReq { after, upto },
            Message::Ack { priority } => Message::Ack { priority },
            Message::VerifyReq => Message::VerifyReq,
            Message::Verify { record } => Message::Verify {
                record: record.to_vec(),
            },
            Message::VerifyFail { reason } => Message::VerifyFail { reason },
            Message::InitReq { ckpt_lsn, offset } => Message::InitReq { ckpt_lsn, offset },
            Message::Snapshot {
                ckpt_lsn,
                ckpt_gen,
                total_len,
                offset,
                data,
            } => Message::Snapshot {
                ckpt_lsn,
                ckpt_gen,
                total_len,
                offset,
                data: data.to_vec(),
            },
            Message::Heartbeat { perm_lsn } => Message::Heartbeat { perm_lsn },
            Message::Vote1 {
                nsites,
                nvotes,
                priority,
                last_gen,
                last_lsn,
                tiebreaker,
                full,
            } => Message::Vote1 {
                nsites,
                nvotes,
                priority,
                last_gen,
                last_lsn,
                tiebreaker,
                full,
            },
            Message::Vote2 => Message::Vote2,
            Message::DupMaster => Message::DupMaster,
            Message::LeaseGrant { master_time_us } => Message::LeaseGrant { master_time_us },
            Message::LeaseReq { master_time_us } => Message::LeaseReq { master_time_us },
            Message::ReadIndexReq { id } => Message::ReadIndexReq { id },
            Message::ReadIndex { id } => Message::ReadIndex { id },
            Message::JoinReq { electable, addr } => Message::JoinReq {
                electable,
                addr: addr.to_vec(),
            },
            Message::JoinInfo { master, members } => Message::JoinInfo {
                master,
                members: members.to_vec(),
            },
            Message::JoinRefused { reason } => Message::JoinRefused {
                reason: reason.to_vec(),
            },
            Message::LeaveReq => Message::LeaveReq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
