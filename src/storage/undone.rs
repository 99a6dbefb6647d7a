//! The commits a rollback undid on this site, kept on disk so that
//! `txn_applied` still answers "never" for them after a restart, once a
//! checkpoint has trimmed the records that replaced them from the log.
//!
//! File `rep.undone`, written whole and atomically (little-endian): magic
//! `DBREPUND`, `u32` count, then per commit `u32` generation and `u64`
//! packed LSN, oldest first, then a CRC32 of everything before it. At most
//! [`UNDONE_MAX`] entries: the oldest are forgotten first.

use std::collections::VecDeque;

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// File name inside the environment directory.
pub const UNDONE_FILE: &str = "rep.undone";
/// At most this many undone commits are remembered.
pub const UNDONE_MAX: usize = 4096;
const MAGIC: &[u8; 8] = b"DBREPUND";
const ENTRY: usize = 12;

/// (generation, LSN) of undone commits, oldest first.
pub type Undone = VecDeque<(u32, Lsn)>;

/// Adds `more` to `list`, forgetting the oldest beyond [`UNDONE_MAX`].
pub fn extend(list: &mut Undone, more: impl IntoIterator<Item = (u32, Lsn)>) {
    for e in more {
        if list.len() >= UNDONE_MAX {
            list.pop_front();
        }
        list.push_back(e);
    }
}

/// The file format of `list`.
pub fn encode(list: &Undone) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + list.len() * ENTRY);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for (gen, lsn) in list {
        out.extend_from_slice(&gen.to_le_bytes());
        out.extend_from_slice(&lsn.to_u64().to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes and checks the file format.
pub fn decode(b: &[u8]) -> Result<Undone> {
    if b.len() < 16 || &b[..8] != MAGIC {
        return Err(Error::malformed(
            "undone-commit list: bad magic or truncated",
        ));
    }
    let n = LittleEndian::read_u32(&b[8..12]) as usize;
    if n > UNDONE_MAX || b.len() != 16 + n * ENTRY {
        return Err(Error::malformed(format!(
            "undone-commit list: {n} entries do not match {} bytes",
            b.len()
        )));
    }
    let body = b.len() - 4;
    if crc32fast::hash(&b[..body]) != LittleEndian::read_u32(&b[body..]) {
        return Err(Error::malformed("undone-commit list: checksum mismatch"));
    }
    Ok(b[12..body]
        .chunks_exact(ENTRY)
        .map(|e| {
            (
                LittleEndian::read_u32(&e[..4]),
                Lsn::from_u64(LittleEndian::read_u64(&e[4..])),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bounds_and_damage() {
        let mut l = Undone::new();
        extend(
            &mut l,
            (0..UNDONE_MAX as u32 + 3).map(|i| (i, Lsn::new(1, i))),
        );
        assert_eq!(l.len(), UNDONE_MAX);
        assert_eq!(l.front(), Some(&(3, Lsn::new(1, 3))), "the oldest go first");
        let b = encode(&l);
        assert_eq!(decode(&b).unwrap(), l);
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert!(decode(&bad).is_err());
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert!(decode(b"DBREPUND").is_err());
    }
}
