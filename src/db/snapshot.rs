//! The byte format of a checkpoint snapshot: the whole store at one LSN.
//!
//! The same bytes are written to the checkpoint file and streamed, in
//! chunks, to a client that needs internal init, so the format is
//! self-checking: a header CRC and a body CRC.
//!
//! Header ([`SNAPSHOT_HEADER_LEN`] bytes, little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic [`SNAPSHOT_MAGIC`] |
//! | 8 | 4 | format version ([`SNAPSHOT_VERSION`]) |
//! | 12 | 8 | LSN, packed with [`Lsn::to_u64`] |
//! | 20 | 4 | generation of the record at the LSN |
//! | 24 | 8 | entry count |
//! | 32 | 8 | body length in bytes |
//! | 40 | 4 | CRC32 of the body |
//! | 44 | 4 | CRC32 of header bytes 0..44 |
//!
//! Body: per entry, in strictly increasing key order, `u32` key length,
//! key, `u32` value length, value.
//!
//! Version 2, written only when the store has named databases (so that a
//! store without any encodes as it always did), follows the default
//! database's entries with the catalog: `u32` next database id, `u32`
//! database count, then per database, in increasing id order, `u32` id,
//! `u32` name length, name, `u64` entry count and its entries as above.
//!
//! Version 3, written only when the store holds a group membership, adds
//! after the catalog (written even when empty) the membership: `u64` LSN
//! of the record that set it, `u32` length, the encoded membership
//! (`crate::membership`).
//!
//! Nothing follows the body.

use byteorder::{ByteOrder, LittleEndian};

use super::store::Store;
use super::txn::OpLimits;
use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// Magic bytes opening every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"DBREPSNP";
/// Newest version of the snapshot format this build writes and reads
/// (it reads versions 1 and 2 too, and writes the oldest that holds the store).
pub const SNAPSHOT_VERSION: u32 = 3;
/// Length in bytes of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 48;

/// Smallest encoded entry: an empty key and an empty value.
const MIN_ENTRY_BYTES: usize = 8;

/// A decoded snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The LSN of the last log record the store reflects.
    pub lsn: Lsn,
    /// The generation of the record at `lsn`.
    pub gen: u32,
    /// The store's contents.
    pub store: Store,
}

/// Encodes the whole of `store` as a snapshot taken at `lsn` in generation `gen`.
///
/// # Panics
///
/// If a key or value is longer than `u32::MAX` bytes.
pub fn encode_snapshot(store: &Store, lsn: Lsn, gen: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        SNAPSHOT_HEADER_LEN + store.approx_bytes() + store.len() * MIN_ENTRY_BYTES,
    );
    out.resize(SNAPSHOT_HEADER_LEN, 0);
    encode_entries(store, &mut out);
    let catalog = store.catalog_for_snapshot();
    let group = store.group_bytes();
    let version = if catalog.is_some() || group.is_some() {
        let (next_id, dbs) = catalog.unwrap_or((1, Vec::new()));
        out.extend_from_slice(&next_id.to_le_bytes());
        out.extend_from_slice(&(dbs.len() as u32).to_le_bytes());
        for (id, name, db) in dbs {
            out.extend_from_slice(&id.to_le_bytes());
            put_len(&mut out, name.len());
            out.extend_from_slice(name);
            out.extend_from_slice(&(db.len() as u64).to_le_bytes());
            encode_entries(db, &mut out);
        }
        match group {
            Some((lsn, bytes)) => {
                out.extend_from_slice(&lsn.to_u64().to_le_bytes());
                put_len(&mut out, bytes.len());
                out.extend_from_slice(bytes);
                3
            }
            None => 2,
        }
    } else {
        1
    };
    let body_len = (out.len() - SNAPSHOT_HEADER_LEN) as u64;
    let body_crc = crc32fast::hash(&out[SNAPSHOT_HEADER_LEN..]);
    let h = &mut out[..SNAPSHOT_HEADER_LEN];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    LittleEndian::write_u32(&mut h[8..12], version);
    LittleEndian::write_u64(&mut h[12..20], lsn.to_u64());
    LittleEndian::write_u32(&mut h[20..24], gen);
    LittleEndian::write_u64(&mut h[24..32], store.len() as u64);
    LittleEndian::write_u64(&mut h[32..40], body_len);
    LittleEndian::write_u32(&mut h[40..44], body_crc);
    let header_crc = crc32fast::hash(&h[0..44]);
    LittleEndian::write_u32(&mut h[44..48], header_crc);
    out
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("snapshot: key, value or name longer than u32::MAX");
    out.extend_from_slice(&len.to_le_bytes());
}

fn encode_entries(store: &Store, out: &mut Vec<u8>) {
    for (k, v) in store {
        for b in [k, v] {
            put_len(out, b.len());
            out.extend_from_slice(b);
        }
    }
}

/// Decodes and fully checks a snapshot.
///
/// Damage of any kind (CRCs, magic, version, lengths, counts, duplicate or
/// out-of-order keys, trailing bytes) is [`Error::Malformed`] naming it and
/// the byte offset; a key or value over `limits` is [`Error::Limit`]
/// (`limits.max_ops` does not apply: the entry count is bounded by the
/// body length instead).
pub fn decode_snapshot(bytes: &[u8], limits: &OpLimits) -> Result<Snapshot> {
    decode_inner(bytes, limits).map_err(|d| {
        d.into_error(|offset, what| {
            Error::malformed(format!("snapshot: {what} (at byte {offset})"))
        })
    })
}

/// Why a snapshot was refused, before it is given a context: a peer's
/// message ([`Error::Malformed`]) or a file on disk ([`Error::Corrupt`]).
pub(crate) enum Damage {
    /// The bytes are inconsistent at `offset`.
    At { offset: u64, what: String },
    /// A key or value is over the configured limit.
    Limit(Error),
}

impl Damage {
    pub(crate) fn into_error(self, at: impl FnOnce(u64, String) -> Error) -> Error {
        match self {
            Damage::At { offset, what } => at(offset, what),
            Damage::Limit(e) => e,
        }
    }
}

fn damage(offset: usize, what: String) -> Damage {
    Damage::At {
        offset: offset as u64,
        what,
    }
}

pub(crate) fn decode_inner(
    bytes: &[u8],
    limits: &OpLimits,
) -> std::result::Result<Snapshot, Damage> {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err(damage(
            0,
            format!(
                "truncated header: {} bytes, a header is {SNAPSHOT_HEADER_LEN}",
                bytes.len()
            ),
        ));
    }
    let (h, body) = bytes.split_at(SNAPSHOT_HEADER_LEN);
    if h[0..8] != SNAPSHOT_MAGIC {
        return Err(damage(0, format!("bad magic {:02x?}", &h[0..8])));
    }
    let stored_hcrc = LittleEndian::read_u32(&h[44..48]);
    let hcrc = crc32fast::hash(&h[0..44]);
    if stored_hcrc != hcrc {
        return Err(damage(
            44,
            format!("header CRC mismatch: stored {stored_hcrc:#010x}, computed {hcrc:#010x}"),
        ));
    }
    let version = LittleEndian::read_u32(&h[8..12]);
    if !(1..=SNAPSHOT_VERSION).contains(&version) {
        return Err(damage(
            8,
            format!("unsupported snapshot version {version} (this build reads version {SNAPSHOT_VERSION})"),
        ));
    }
    let lsn = Lsn::from_u64(LittleEndian::read_u64(&h[12..20]));
    let gen = LittleEndian::read_u32(&h[20..24]);
    let count = LittleEndian::read_u64(&h[24..32]);
    let body_len = LittleEndian::read_u64(&h[32..40]);
    if body_len != body.len() as u64 {
        let what = if body_len > body.len() as u64 {
            format!(
                "truncated body: header says {body_len} bytes, {} present",
                body.len()
            )
        } else {
            format!(
                "{} trailing bytes after the {body_len}-byte body",
                body.len() as u64 - body_len
            )
        };
        return Err(damage(32, what));
    }
    let stored_bcrc = LittleEndian::read_u32(&h[40..44]);
    let bcrc = crc32fast::hash(body);
    if stored_bcrc != bcrc {
        return Err(damage(
            40,
            format!("body CRC mismatch: stored {stored_bcrc:#010x}, computed {bcrc:#010x}"),
        ));
    }
    if count > (body.len() / MIN_ENTRY_BYTES) as u64 {
        return Err(damage(
            24,
            format!(
                "entry count {count} cannot fit in a body of {} bytes",
                body.len()
            ),
        ));
    }

    let mut store = Store::new();
    let mut r = Body { body, pos: 0 };
    r.entries(&mut store, count, limits)?;
    if version >= 2 {
        let next_id = r.u32("next database id")?;
        let ndbs = r.u32("database count")?;
        let mut dbs = Vec::new();
        let mut prev_id = 0;
        for _ in 0..ndbs {
            let at = r.pos;
            let id = r.u32("database id")?;
            if id <= prev_id || id >= next_id {
                return Err(damage(
                    SNAPSHOT_HEADER_LEN + at,
                    format!("database id {id} out of order or not below the next id {next_id}"),
                ));
            }
            prev_id = id;
            let name = r.bytes(
                "database name",
                limits.max_key_bytes,
                "snapshot database name length",
                0,
            )?;
            let n = r.u64("database entry count")?;
            if n > ((body.len() - r.pos) / MIN_ENTRY_BYTES) as u64 {
                return Err(damage(
                    SNAPSHOT_HEADER_LEN + at,
                    format!("database {id} entry count {n} cannot fit in what remains of the body"),
                ));
            }
            let mut db = Store::new();
            r.entries(&mut db, n, limits)?;
            dbs.push((id, name.to_vec(), db));
        }
        store.restore_catalog(next_id, dbs);
    }
    if version >= 3 {
        let at = r.pos;
        let glsn = Lsn::from_u64(r.u64("membership LSN")?);
        let bytes = r.bytes(
            "membership",
            crate::membership::encoded_len_max(),
            "snapshot membership length",
            0,
        )?;
        if let Err(e) = crate::membership::Membership::decode(bytes) {
            return Err(damage(SNAPSHOT_HEADER_LEN + at, e.to_string()));
        }
        if glsn > lsn {
            return Err(damage(
                SNAPSHOT_HEADER_LEN + at,
                format!("membership set at {glsn}, after the snapshot's {lsn}"),
            ));
        }
        store.set_group_bytes(glsn, bytes);
    }
    if r.pos != body.len() {
        return Err(damage(
            SNAPSHOT_HEADER_LEN + r.pos,
            format!(
                "entry count {count} disagrees with the body: {} bytes left after the last entry",
                body.len() - r.pos
            ),
        ));
    }
    Ok(Snapshot { lsn, gen, store })
}

/// Reads a snapshot's body; offsets in errors are from the start of the
/// snapshot, not the body.
struct Body<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Body<'a> {
    fn fixed(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], Damage> {
        if self.body.len() - self.pos < n {
            return Err(damage(
                SNAPSHOT_HEADER_LEN + self.pos,
                format!("truncated {what}"),
            ));
        }
        let b = &self.body[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, Damage> {
        self.fixed(4, what).map(LittleEndian::read_u32)
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, Damage> {
        self.fixed(8, what).map(LittleEndian::read_u64)
    }

    fn bytes(
        &mut self,
        what: &str,
        limit: usize,
        lim_what: &'static str,
        i: u64,
    ) -> std::result::Result<&'a [u8], Damage> {
        let at = self.pos;
        if self.body.len() - at < 4 {
            return Err(damage(
                SNAPSHOT_HEADER_LEN + at,
                format!("truncated {what} length of entry {i}"),
            ));
        }
        let len = LittleEndian::read_u32(&self.body[at..at + 4]) as usize;
        if len > limit {
            return Err(Damage::Limit(Error::Limit {
                what: lim_what,
                limit: limit as u64,
                got: len as u64,
            }));
        }
        if self.body.len() - at - 4 < len {
            return Err(damage(
                SNAPSHOT_HEADER_LEN + at,
                format!(
                    "{what} of entry {i} is {len} bytes but only {} remain",
                    self.body.len() - at - 4
                ),
            ));
        }
        self.pos = at + 4 + len;
        Ok(&self.body[at + 4..at + 4 + len])
    }

    /// Reads `count` entries, in strictly increasing key order, into `store`.
    fn entries(
        &mut self,
        store: &mut Store,
        count: u64,
        limits: &OpLimits,
    ) -> std::result::Result<(), Damage> {
        let mut prev: Option<&[u8]> = None;
        for i in 0..count {
            let at = self.pos;
            let key = self.bytes("key", limits.max_key_bytes, "snapshot key length", i)?;
            let value = self.bytes("value", limits.max_value_bytes, "snapshot value length", i)?;
            if let Some(p) = prev {
                if key == p {
                    return Err(damage(
                        SNAPSHOT_HEADER_LEN + at,
                        format!("duplicate key in entry {i}"),
                    ));
                }
                if key < p {
                    return Err(damage(
                        SNAPSHOT_HEADER_LEN + at,
                        format!("keys out of order: entry {i} sorts before entry {}", i - 1),
                    ));
                }
            }
            prev = Some(key);
            store.put(key, value);
        }
        Ok(())
    }
}
