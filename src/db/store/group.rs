//! The group membership a store holds: the encoded value of the last
//! membership record applied, and that record's LSN.
//!
//! The store keeps the bytes, not a decoded value: this layer only carries
//! them through clones, snapshots and digests (so that every path which
//! rebuilds a store, rollback and snapshot install included, rebuilds the
//! group with it). `Storage` checks the bytes before they get here.

use std::sync::Arc;

use super::Store;
use crate::lsn::Lsn;

/// The membership a store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct GroupSlot {
    /// LSN of the membership record that set it.
    lsn: Lsn,
    /// The encoded membership (`crate::membership`).
    bytes: Box<[u8]>,
}

impl Store {
    /// The membership this store holds, encoded, with the LSN of the record
    /// that set it; `None` before any membership record.
    pub fn group_bytes(&self) -> Option<(Lsn, &[u8])> {
        self.group.as_deref().map(|g| (g.lsn, &*g.bytes))
    }

    /// Sets the membership (already checked) from the record at `lsn`.
    pub fn set_group_bytes(&mut self, lsn: Lsn, bytes: &[u8]) {
        self.group = Some(Arc::new(GroupSlot {
            lsn,
            bytes: bytes.into(),
        }));
    }
}
