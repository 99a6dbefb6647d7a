//! Commit tokens (Berkeley DB's `txn_applied` tokens): a commit named
//! across sites by its generation and LSN.

use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// Identifies a commit across sites: its generation and LSN (Berkeley DB's commit token).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct CommitToken {
    /// Generation of the master that committed it.
    pub gen: u32,
    /// LSN of its commit record (zero for a transaction that wrote nothing).
    pub lsn: Lsn,
}

impl CommitToken {
    /// Size of the encoded token.
    pub const ENCODED_LEN: usize = 12;

    /// Encodes the token as 12 bytes (little-endian gen, file, offset): opaque to applications.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.gen.to_le_bytes());
        b[4..8].copy_from_slice(&self.lsn.file.to_le_bytes());
        b[8..].copy_from_slice(&self.lsn.offset.to_le_bytes());
        b
    }

    /// Decodes [`CommitToken::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<CommitToken> {
        let b: &[u8; 12] = b
            .try_into()
            .map_err(|_| Error::invalid(format!("a commit token is 12 bytes, got {}", b.len())))?;
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(CommitToken {
            gen: u(0),
            lsn: Lsn::new(u(4), u(8)),
        })
    }
}

/// Where a commit token stands on this site (`txn_applied`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TokenStatus {
    /// The commit is applied here.
    Applied,
    /// Not yet applied here; it may still arrive.
    Pending,
    /// It can never arrive: a later generation replaced the log where it stood.
    Never,
    /// The token is of a transaction that wrote nothing.
    Empty,
}
