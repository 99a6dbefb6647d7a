//! Validation of a commit payload: one pass that checks every length and
//! kind before anything is applied, with errors built only on failure.

use super::*;

/// Which field a short read hit, for the error message (formatted only
/// when there is an error).
#[derive(Copy, Clone)]
pub(super) enum Field {
    Count,
    Kind,
    KeyLen,
    Key,
    ValueLen,
    Value,
    DbId,
    NameLen,
    Name,
}

impl Field {
    pub(super) fn name(self) -> &'static str {
        match self {
            Field::Count => "op count",
            Field::Kind => "op kind",
            Field::KeyLen => "key length",
            Field::Key => "key",
            Field::ValueLen => "value length",
            Field::Value => "value",
            Field::DbId => "database id",
            Field::NameLen => "database name length",
            Field::Name => "database name",
        }
    }
}

/// What is wrong with a payload, as plain data: the parser's hot path
/// passes only this small value around, and the error (with its text) is
/// built once, on failure.
#[derive(Copy, Clone)]
pub(super) enum Bad {
    Short {
        field: Field,
        idx: usize,
        n: usize,
        pos: usize,
    },
    TooLong {
        field: Field,
        limit: usize,
        got: usize,
    },
    CountCannotFit {
        count: usize,
        rest: usize,
    },
    Kind {
        idx: usize,
        at: usize,
        kind: u8,
    },
    Trailing {
        count: usize,
        pos: usize,
    },
}

impl Bad {
    #[cold]
    pub(super) fn into_error(self, total: usize) -> Error {
        match self {
            Bad::Short { field, idx, n, pos } => {
                let what = match field {
                    Field::Count | Field::Kind => field.name().to_string(),
                    _ => format!("{} of op {idx}", field.name()),
                };
                Error::malformed(format!(
                    "ops payload: truncated reading {what} ({n} bytes) at byte {pos} of {total}"
                ))
            }
            Bad::TooLong { field, limit, got } => Error::Limit {
                what: field.name(),
                limit: limit as u64,
                got: got as u64,
            },
            Bad::CountCannotFit { count, rest } => Error::malformed(format!(
                "ops payload: op count {count} cannot fit in the {rest} bytes that follow it"
            )),
            Bad::Kind { idx, at, kind } => Error::malformed(format!(
                "ops payload: op {idx} at byte {at} has unknown kind {kind}"
            )),
            Bad::Trailing { count, pos } => Error::malformed(format!(
                "ops payload: {} trailing bytes after the last of {count} ops, at byte {pos}",
                total - pos
            )),
        }
    }
}

pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over `n` bytes (a key or value: validation needs only its length).
    #[inline]
    pub(super) fn skip(
        &mut self,
        n: usize,
        field: Field,
        idx: usize,
    ) -> std::result::Result<(), Bad> {
        if n > self.buf.len() - self.pos {
            return Err(Bad::Short {
                field,
                idx,
                n,
                pos: self.pos,
            });
        }
        self.pos += n;
        Ok(())
    }

    #[inline]
    pub(super) fn u32(&mut self, field: Field, idx: usize) -> std::result::Result<u32, Bad> {
        let Some(b) = self.buf.get(self.pos..self.pos + 4) else {
            return Err(Bad::Short {
                field,
                idx,
                n: 4,
                pos: self.pos,
            });
        };
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        self.pos += 4;
        Ok(v)
    }

    #[inline]
    pub(super) fn sized(
        &mut self,
        len_field: Field,
        field: Field,
        limit: usize,
        idx: usize,
    ) -> std::result::Result<(), Bad> {
        let len = self.u32(len_field, idx)? as usize;
        if len > limit {
            return Err(Bad::TooLong {
                field: len_field,
                limit,
                got: len,
            });
        }
        self.skip(len, field, idx)
    }
}

/// Checks the whole payload; returns the op count.
pub(super) fn parse(payload: &[u8], limits: &OpLimits) -> Result<usize> {
    check(payload, limits).map_err(|b| b.into_error(payload.len()))
}

pub(super) fn check(payload: &[u8], limits: &OpLimits) -> std::result::Result<usize, Bad> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let count = c.u32(Field::Count, 0)? as usize;
    if count > limits.max_ops {
        return Err(Bad::TooLong {
            field: Field::Count,
            limit: limits.max_ops,
            got: count,
        });
    }
    let rest = payload.len() - c.pos;
    if count > rest / MIN_OP_BYTES {
        return Err(Bad::CountCannotFit { count, rest });
    }
    for idx in 0..count {
        let at = c.pos;
        let Some(&kind) = payload.get(c.pos) else {
            return Err(Bad::Short {
                field: Field::Kind,
                idx,
                n: 1,
                pos: c.pos,
            });
        };
        c.pos += 1;
        if kind == KIND_PUT {
            c.sized(Field::KeyLen, Field::Key, limits.max_key_bytes, idx)?;
            c.sized(Field::ValueLen, Field::Value, limits.max_value_bytes, idx)?;
        } else if kind == KIND_DELETE {
            c.sized(Field::KeyLen, Field::Key, limits.max_key_bytes, idx)?;
        } else {
            c.pos = check_db_op(payload, c.pos, kind, limits, idx, at)?;
        }
    }
    if c.pos != payload.len() {
        return Err(Bad::Trailing { count, pos: c.pos });
    }
    Ok(count)
}

/// Checks one op of a kind other than the default database's put and
/// delete (out of line: the common path stays small).
#[cold]
#[inline(never)]
pub(super) fn check_db_op(
    buf: &[u8],
    pos: usize,
    kind: u8,
    limits: &OpLimits,
    idx: usize,
    at: usize,
) -> std::result::Result<usize, Bad> {
    // A cursor of its own: the caller's stays in registers.
    let mut c = Cursor { buf, pos };
    let c = &mut c;
    match kind {
        KIND_PUT_IN => {
            c.u32(Field::DbId, idx)?;
            c.sized(Field::KeyLen, Field::Key, limits.max_key_bytes, idx)?;
            c.sized(Field::ValueLen, Field::Value, limits.max_value_bytes, idx)
        }
        KIND_DELETE_IN => {
            c.u32(Field::DbId, idx)?;
            c.sized(Field::KeyLen, Field::Key, limits.max_key_bytes, idx)
        }
        KIND_CREATE_DB => {
            c.u32(Field::DbId, idx)?;
            c.sized(Field::NameLen, Field::Name, limits.max_key_bytes, idx)
        }
        KIND_REMOVE_DB => c.u32(Field::DbId, idx).map(drop),
        kind => Err(Bad::Kind { idx, at, kind }),
    }?;
    Ok(c.pos)
}
