//! A transaction's writes, as carried in one commit record's payload.
//!
//! Layout (little-endian):
//!
//! | field | size |
//! |---|---|
//! | op count | u32 |
//! | per op: kind (1 = put, 2 = delete) | u8 |
//! | per op: key length, key | u32 + bytes |
//! | per put: value length, value | u32 + bytes |
//!
//! Nothing may follow the last op.

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{Error, Result};

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
/// Smallest encoded op (a delete of the empty key): kind + key length.
const MIN_OP_BYTES: usize = 1 + 4;

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Removes `key` (nothing happens if it is absent).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// One write borrowed from an encoded payload, as [`for_each_op`] yields it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OpRef<'a> {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: &'a [u8],
        /// The new value.
        value: &'a [u8],
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

impl OpRef<'_> {
    /// An owned copy.
    pub fn to_op(self) -> Op {
        match self {
            OpRef::Put { key, value } => Op::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            },
            OpRef::Delete { key } => Op::Delete { key: key.to_vec() },
        }
    }
}

/// Bounds checked while decoding transaction payloads and snapshots.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OpLimits {
    /// Largest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most ops in one transaction (not applied to snapshots, whose entry
    /// count is bounded by their length instead).
    pub max_ops: usize,
}

impl Default for OpLimits {
    fn default() -> Self {
        OpLimits {
            max_key_bytes: 64 << 10,
            max_value_bytes: 16 << 20,
            max_ops: 1_000_000,
        }
    }
}

/// Appends the encoding of `ops` to `out`.
///
/// # Panics
///
/// If there are more than `u32::MAX` ops or a key or value is longer than
/// `u32::MAX` bytes: the format cannot express it.
pub fn encode_ops(ops: &[Op], out: &mut Vec<u8>) {
    let count = u32::try_from(ops.len()).expect("ops: more than u32::MAX ops");
    out.extend_from_slice(&count.to_le_bytes());
    for op in ops {
        match op {
            Op::Put { key, value } => {
                out.push(KIND_PUT);
                put_bytes(out, key);
                put_bytes(out, value);
            }
            Op::Delete { key } => {
                out.push(KIND_DELETE);
                put_bytes(out, key);
            }
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("ops: key or value longer than u32::MAX bytes");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

/// Decodes a payload into owned ops, checking it against `limits`.
pub fn decode_ops(payload: &[u8], limits: &OpLimits) -> Result<Vec<Op>> {
    let count = parse(payload, limits, |_| {})?;
    // The count is now known to match real bytes in the payload, so it is
    // a safe capacity.
    let mut ops = Vec::with_capacity(count);
    parse(payload, limits, |op| ops.push(op.to_op()))?;
    Ok(ops)
}

/// Calls `f` for each op of `payload`, in order, borrowing keys and values
/// from it.
///
/// The whole payload is validated before `f` is first called, so on error
/// `f` has not been called at all: a damaged payload applies nothing.
pub fn for_each_op<'a>(
    payload: &'a [u8],
    limits: &OpLimits,
    f: impl FnMut(OpRef<'a>),
) -> Result<()> {
    parse(payload, limits, |_| {})?;
    parse(payload, limits, f)?;
    Ok(())
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.buf.len() - self.pos {
            return Err(Error::malformed(format!(
                "ops payload: truncated reading {what} ({n} bytes) at byte {} of {}",
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(LittleEndian::read_u32(self.take(4, what)?))
    }

    fn sized(&mut self, what: &'static str, limit: usize, idx: usize) -> Result<&'a [u8]> {
        let len = self.u32(what)? as usize;
        if len > limit {
            return Err(Error::Limit {
                what,
                limit: limit as u64,
                got: len as u64,
            });
        }
        self.take(len, &format!("{what} of op {idx}"))
    }
}

/// Walks the payload, calling `f` per op as it goes; returns the op count.
/// Callers that need atomicity run it once with a no-op `f` first.
fn parse<'a>(payload: &'a [u8], limits: &OpLimits, mut f: impl FnMut(OpRef<'a>)) -> Result<usize> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let count = c.u32("op count")? as usize;
    if count > limits.max_ops {
        return Err(Error::Limit {
            what: "op count",
            limit: limits.max_ops as u64,
            got: count as u64,
        });
    }
    let rest = payload.len() - c.pos;
    if count > rest / MIN_OP_BYTES {
        return Err(Error::malformed(format!(
            "ops payload: op count {count} cannot fit in the {rest} bytes that follow it"
        )));
    }
    for idx in 0..count {
        let at = c.pos;
        let kind = c.take(1, "op kind")?[0];
        match kind {
            KIND_PUT => {
                let key = c.sized("key length", limits.max_key_bytes, idx)?;
                let value = c.sized("value length", limits.max_value_bytes, idx)?;
                f(OpRef::Put { key, value });
            }
            KIND_DELETE => {
                let key = c.sized("key length", limits.max_key_bytes, idx)?;
                f(OpRef::Delete { key });
            }
            k => {
                return Err(Error::malformed(format!(
                    "ops payload: op {idx} at byte {at} has unknown kind {k}"
                )))
            }
        }
    }
    if c.pos != payload.len() {
        return Err(Error::malformed(format!(
            "ops payload: {} trailing bytes after the last of {count} ops, at byte {}",
            payload.len() - c.pos,
            c.pos
        )));
    }
    Ok(count)
}
