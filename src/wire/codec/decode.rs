//! Decoding: a control header and body into an [`Envelope`], accepting
//! only what [`encode`](super::encode) could have produced, within the
//! [`DecodeLimits`].

use byteorder::{ByteOrder, LittleEndian};

#[cfg(any(test, feature = "testing"))]
use super::ControlFields;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::wire::{
    DecodeLimits, Envelope, Message, MsgFlags, MsgType, VerifyFailReason, CONTROL_LEN, MAGIC,
    WIRE_VERSION,
};

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
#[cfg(any(test, feature = "testing"))]
pub fn peek_control(control: &[u8]) -> Result<ControlFields> {
    let h = parse_control(control)?;
    Ok((h.msg_type, h.flags, h.gen, h.egen, h.lsn))
}

/// Decodes one message from its control header and body.
///
/// Fails with [`Error::Limit`] when the body is longer than
/// `limits.max_rec_bytes`, and with [`Error::Malformed`], naming the field,
/// on anything [`encode`](super::encode) would not have produced. Never allocates more than
/// `rec.len()` bytes.
#[cfg(any(test, feature = "testing"))]
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

#[cfg(any(test, feature = "testing"))]
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

#[cfg(any(test, feature = "testing"))]
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
