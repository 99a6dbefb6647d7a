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
//! Writes to a named database, and the creation and removal of one, are
//! ops of their own kinds, so that the default database's encoding stays
//! what it always was:
//!
//! | kind | fields after the kind byte |
//! |---|---|
//! | 3 = put in a database | database id u32, key length u32, key, value length u32, value |
//! | 4 = delete in a database | database id u32, key length u32, key |
//! | 5 = create a database | database id u32, name length u32, name |
//! | 6 = remove a database | database id u32 |
//!
//! Nothing may follow the last op.
//!
//! [`OpRef`] and [`Op`] describe the default database's key writes only;
//! [`DbOpRef`] (what [`ValidOps::iter`] yields) describes every kind.
//! [`for_each_op`] and [`decode_ops`] show the key writes of every
//! database as [`OpRef`]s, without their database (callers that only ask
//! which keys a transaction touched), and skip creations and removals.

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{Error, Result};

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_PUT_IN: u8 = 3;
const KIND_DELETE_IN: u8 = 4;
const KIND_CREATE_DB: u8 = 5;
const KIND_REMOVE_DB: u8 = 6;

/// Identifies a database inside an environment. Ids are never reused, so
/// a write meant for a removed database cannot land in a later one of the
/// same name.
pub type DbId = u32;
/// The default database, which the plain `put`/`get`/`delete` calls use.
pub const DEFAULT_DB: DbId = 0;
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

/// One op of any kind borrowed from an encoded payload, as
/// [`ValidOps::iter`] yields it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DbOpRef<'a> {
    /// Sets `key` to `value` in database `db`.
    Put {
        /// The database ([`DEFAULT_DB`] for the default one).
        db: DbId,
        /// The key.
        key: &'a [u8],
        /// The new value.
        value: &'a [u8],
    },
    /// Removes `key` from database `db`.
    Delete {
        /// The database.
        db: DbId,
        /// The key.
        key: &'a [u8],
    },
    /// Creates database `id` named `name` (nothing happens if the id or
    /// the name is taken).
    CreateDb {
        /// Its id, chosen by the master.
        id: DbId,
        /// Its name.
        name: &'a [u8],
    },
    /// Removes database `id` and everything in it.
    RemoveDb {
        /// The database.
        id: DbId,
    },
}

impl<'a> DbOpRef<'a> {
    /// The key write, without its database; `None` for a creation or removal.
    pub fn key_op(self) -> Option<OpRef<'a>> {
        match self {
            DbOpRef::Put { key, value, .. } => Some(OpRef::Put { key, value }),
            DbOpRef::Delete { key, .. } => Some(OpRef::Delete { key }),
            DbOpRef::CreateDb { .. } | DbOpRef::RemoveDb { .. } => None,
        }
    }

    /// Appends this op's encoding to `out` (after a count written with
    /// [`encode_count`]).
    ///
    /// # Panics
    ///
    /// If a key, value or name is longer than `u32::MAX` bytes.
    pub fn encode(self, out: &mut Vec<u8>) {
        match self {
            DbOpRef::Put {
                db: DEFAULT_DB,
                key,
                value,
            } => {
                out.push(KIND_PUT);
                put_bytes(out, key);
                put_bytes(out, value);
            }
            DbOpRef::Delete {
                db: DEFAULT_DB,
                key,
            } => {
                out.push(KIND_DELETE);
                put_bytes(out, key);
            }
            DbOpRef::Put { db, key, value } => {
                out.push(KIND_PUT_IN);
                out.extend_from_slice(&db.to_le_bytes());
                put_bytes(out, key);
                put_bytes(out, value);
            }
            DbOpRef::Delete { db, key } => {
                out.push(KIND_DELETE_IN);
                out.extend_from_slice(&db.to_le_bytes());
                put_bytes(out, key);
            }
            DbOpRef::CreateDb { id, name } => {
                out.push(KIND_CREATE_DB);
                out.extend_from_slice(&id.to_le_bytes());
                put_bytes(out, name);
            }
            DbOpRef::RemoveDb { id } => {
                out.push(KIND_REMOVE_DB);
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
    }
}

/// Writes (or overwrites) the op count that opens a payload: `out` must be
/// empty, or hold a payload whose count this replaces.
pub fn encode_count(out: &mut Vec<u8>, count: u32) {
    if out.len() < 4 {
        out.clear();
        out.extend_from_slice(&count.to_le_bytes());
    } else {
        out[..4].copy_from_slice(&count.to_le_bytes());
    }
}

/// Decodes a payload into its ops of every kind, checking it against `limits`.
#[cfg(any(test, feature = "testing"))]
pub fn decode_db_ops<'a>(payload: &'a [u8], limits: &OpLimits) -> Result<Vec<DbOpRef<'a>>> {
    Ok(validate_ops(payload, limits)?.iter().collect())
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
#[cfg(any(test, feature = "testing"))]
pub fn encode_ops(ops: &[Op], out: &mut Vec<u8>) {
    let count = u32::try_from(ops.len()).expect("ops: more than u32::MAX ops");
    out.extend_from_slice(&count.to_le_bytes());
    for op in ops {
        op.as_ref().encode(out);
    }
}

impl Op {
    /// The op as a [`DbOpRef`] on the default database.
    pub fn as_ref(&self) -> DbOpRef<'_> {
        match self {
            Op::Put { key, value } => DbOpRef::Put {
                db: DEFAULT_DB,
                key,
                value,
            },
            Op::Delete { key } => DbOpRef::Delete {
                db: DEFAULT_DB,
                key,
            },
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("ops: key or value longer than u32::MAX bytes");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

/// Decodes a payload into owned key writes (of every database, without
/// which: see the module docs), checking it against `limits`.
#[cfg(any(test, feature = "testing"))]
pub fn decode_ops(payload: &[u8], limits: &OpLimits) -> Result<Vec<Op>> {
    let ops = validate_ops(payload, limits)?;
    // The count is known to match real bytes in the payload, so it is a
    // safe capacity.
    let mut out = Vec::with_capacity(ops.len());
    out.extend(ops.iter().filter_map(DbOpRef::key_op).map(OpRef::to_op));
    Ok(out)
}

/// Calls `f` for each key write of `payload` (of every database, without
/// which: see the module docs), in order, borrowing keys and values from it.
///
/// The whole payload is validated before `f` is first called, so on error
/// `f` has not been called at all: a damaged payload applies nothing.
pub fn for_each_op<'a>(
    payload: &'a [u8],
    limits: &OpLimits,
    f: impl FnMut(OpRef<'a>),
) -> Result<()> {
    struct Keys<F>(F);
    impl<'a, F: FnMut(OpRef<'a>)> OpSink<'a> for Keys<F> {
        fn put(&mut self, key: &'a [u8], value: &'a [u8]) {
            (self.0)(OpRef::Put { key, value })
        }
        fn delete(&mut self, key: &'a [u8]) {
            (self.0)(OpRef::Delete { key })
        }
        fn other(&mut self, op: DbOpRef<'a>) {
            if let Some(op) = op.key_op() {
                (self.0)(op)
            }
        }
    }
    validate_ops(payload, limits)?.walk(&mut Keys(f));
    Ok(())
}

/// A transaction payload that passed [`validate_ops`]: walking it cannot
/// fail, so a caller that validated once (before appending a record, say)
/// can apply it later without parsing it for errors a second time.
///
/// Only [`validate_ops`] makes one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ValidOps<'a> {
    payload: &'a [u8],
    count: usize,
}

impl<'a> ValidOps<'a> {
    /// A payload this crate encoded itself, with `count` ops: walking a
    /// payload that is not so ends early rather than failing.
    pub(crate) fn trusted(payload: &'a [u8], count: usize) -> ValidOps<'a> {
        ValidOps { payload, count }
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True for a transaction without ops.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded payload.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The ops of every kind, in order, borrowed from the payload.
    pub fn iter(&self) -> OpIter<'a> {
        OpIter {
            buf: self.payload,
            pos: 4,
            left: self.count,
        }
    }
}

impl<'a> IntoIterator for ValidOps<'a> {
    type Item = DbOpRef<'a>;
    type IntoIter = OpIter<'a>;
    fn into_iter(self) -> OpIter<'a> {
        self.iter()
    }
}

/// One op, as [`OpIter`]'s fast path sees it.
enum Split<'a> {
    /// A write to the default database.
    Key(OpRef<'a>),
    /// Anything else.
    Db(DbOpRef<'a>),
}

/// What [`ValidOps::walk`] hands each op to: the default database's
/// writes each to a method of its own, so that no op is built as a value
/// on the hot path.
pub(crate) trait OpSink<'a> {
    /// A put in the default database.
    fn put(&mut self, key: &'a [u8], value: &'a [u8]);
    /// A delete in the default database.
    fn delete(&mut self, key: &'a [u8]);
    /// Any other op.
    fn other(&mut self, op: DbOpRef<'a>);
}

/// The next length-prefixed byte string of a validated payload at `*pos`.
#[inline(always)]
fn take<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len_end = pos.checked_add(4)?;
    let len = LittleEndian::read_u32(buf.get(*pos..len_end)?) as usize;
    let end = len_end.checked_add(len)?;
    let b = buf.get(len_end..end)?;
    *pos = end;
    Some(b)
}

impl<'a> ValidOps<'a> {
    /// Hands every op, in order, to `sink`; what [`crate::db::Store`]
    /// applies a commit with. Stops early only on a payload that does not
    /// hold what [`validate_ops`] checked (which cannot happen).
    #[inline(always)]
    pub(crate) fn walk(self, sink: &mut impl OpSink<'a>) {
        let buf = self.payload;
        let mut pos = 4;
        for _ in 0..self.count {
            let Some(&kind) = buf.get(pos) else { return };
            if kind == KIND_PUT {
                pos += 1;
                let (Some(key), Some(value)) = (take(buf, &mut pos), take(buf, &mut pos)) else {
                    return;
                };
                sink.put(key, value);
            } else if kind == KIND_DELETE {
                pos += 1;
                let Some(key) = take(buf, &mut pos) else {
                    return;
                };
                sink.delete(key);
            } else {
                let mut it = OpIter { buf, pos, left: 1 };
                let Some(op) = it.next() else { return };
                pos = it.pos;
                sink.other(op);
            }
        }
    }
}

/// Iterator over the ops of a [`ValidOps`].
#[derive(Clone, Debug)]
pub struct OpIter<'a> {
    buf: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> OpIter<'a> {
    /// The next length-prefixed byte string. The payload was validated, so
    /// the slicing (still bounds-checked) always succeeds; should it not,
    /// the iteration simply ends.
    #[inline]
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len_end = self.pos.checked_add(4)?;
        let len = LittleEndian::read_u32(self.buf.get(self.pos..len_end)?) as usize;
        let end = len_end.checked_add(len)?;
        let b = self.buf.get(len_end..end)?;
        self.pos = end;
        Some(b)
    }

    #[inline]
    fn id(&mut self) -> Option<DbId> {
        let b = self.buf.get(self.pos..self.pos.checked_add(4)?)?;
        self.pos += 4;
        Some(LittleEndian::read_u32(b))
    }

    #[inline]
    fn op(&mut self) -> Option<DbOpRef<'a>> {
        Some(match self.split()? {
            Split::Key(OpRef::Put { key, value }) => DbOpRef::Put {
                db: DEFAULT_DB,
                key,
                value,
            },
            Split::Key(OpRef::Delete { key }) => DbOpRef::Delete {
                db: DEFAULT_DB,
                key,
            },
            Split::Db(op) => op,
        })
    }

    /// The next op, a default-database write apart from the rest: the
    /// common path stays as small as it was before named databases, the
    /// rest goes out of line.
    #[inline(always)]
    fn split(&mut self) -> Option<Split<'a>> {
        let kind = *self.buf.get(self.pos)?;
        self.pos += 1;
        if kind == KIND_PUT {
            let key = self.bytes()?;
            let value = self.bytes()?;
            return Some(Split::Key(OpRef::Put { key, value }));
        }
        if kind == KIND_DELETE {
            return Some(Split::Key(OpRef::Delete { key: self.bytes()? }));
        }
        self.db_op(kind).map(Split::Db)
    }

    #[cold]
    #[inline(never)]
    fn db_op(&mut self, kind: u8) -> Option<DbOpRef<'a>> {
        match kind {
            KIND_PUT_IN => {
                let db = self.id()?;
                let key = self.bytes()?;
                let value = self.bytes()?;
                Some(DbOpRef::Put { db, key, value })
            }
            KIND_DELETE_IN => {
                let db = self.id()?;
                Some(DbOpRef::Delete {
                    db,
                    key: self.bytes()?,
                })
            }
            KIND_CREATE_DB => {
                let id = self.id()?;
                Some(DbOpRef::CreateDb {
                    id,
                    name: self.bytes()?,
                })
            }
            _ => Some(DbOpRef::RemoveDb { id: self.id()? }),
        }
    }
}

impl<'a> Iterator for OpIter<'a> {
    type Item = DbOpRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<DbOpRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let op = self.op();
        if op.is_none() {
            self.left = 0;
        }
        op
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Checks a whole payload against the format and `limits` without
/// allocating; the result walks it without checking again.
#[inline]
pub fn validate_ops<'a>(payload: &'a [u8], limits: &OpLimits) -> Result<ValidOps<'a>> {
    let count = parse(payload, limits)?;
    Ok(ValidOps { payload, count })
}

mod check;
use check::parse;

#[cfg(test)]
mod tests;
