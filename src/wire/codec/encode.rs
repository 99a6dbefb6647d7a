//! Encoding: an [`Envelope`] into its control header and body, and the
//! log message body a master fills in place.

use byteorder::{ByteOrder, LittleEndian};

use crate::lsn::Lsn;
use crate::wire::{Envelope, Message, CONTROL_LEN, MAGIC, WIRE_VERSION};

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
#[cfg(any(test, feature = "testing"))]
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
