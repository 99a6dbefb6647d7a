//! Making records durable: writing the tail buffer out, fsyncing, and the
//! bookkeeping group commit needs to fsync outside the caller's lock.

use std::sync::Arc;

use super::{Durability, Log, Segment, Store};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::vfs::VfsFile;

impl Log {
    /// Fsyncs the current segment if it holds written, unsynced records.
    pub(super) fn sync_current(&mut self) -> Result<()> {
        if self.durable_lsn >= self.written_lsn {
            return Ok(());
        }
        if let Some(Segment {
            store: Store::Disk { path, file },
            ..
        }) = self.segs.back()
        {
            file.sync()
                .map_err(|e| Error::io("fsync log segment", path, e))?;
        }
        self.durable_lsn = self.written_lsn;
        Ok(())
    }

    /// What the durability mode demands at a commit: `Sync` writes and
    /// fsyncs, `WriteNoSync` writes, `NoSync` does nothing.
    #[inline]
    pub fn flush(&mut self) -> Result<()> {
        if self.all_durable() {
            // Nothing buffered, nothing written but not synced: what every
            // mode would do is nothing (always the case in memory).
            return Ok(());
        }
        match self.config.durability {
            Durability::Sync => self.force_sync(),
            Durability::WriteNoSync => self.write_out().map(|_| ()),
            Durability::NoSync => Ok(()),
        }
    }

    /// Writes and fsyncs everything, whatever the durability mode.
    #[inline]
    pub fn force_sync(&mut self) -> Result<()> {
        if self.all_durable() {
            return Ok(());
        }
        self.write_out()?;
        self.sync_current()
    }

    /// True when no record is buffered and everything written is synced:
    /// [`Log::write_out`] and an fsync would both do nothing.
    #[inline]
    pub(super) fn all_durable(&self) -> bool {
        self.tail.is_empty() && self.durable_lsn >= self.written_lsn
    }

    /// Writes buffered records to the operating system (no fsync) and
    /// returns the last LSN now written.
    pub fn write_out(&mut self) -> Result<Lsn> {
        if self.tail.is_empty() {
            return Ok(self.written_lsn);
        }
        if let Some(Segment {
            store: Store::Disk { path, file },
            ..
        }) = self.segs.back()
        {
            file.write_at(&self.tail, self.written as u64)
                .map_err(|e| Error::io("append to log segment", path, e))?;
        }
        self.written += self.tail.len() as u32;
        self.tail.clear();
        self.written_lsn = self.last_lsn;
        Ok(self.written_lsn)
    }

    /// For group commit: the file to fsync and the last LSN an fsync of it
    /// makes durable (`None` in memory or when nothing written is unsynced).
    /// The caller fsyncs outside its lock, then calls [`Log::mark_durable`].
    /// Call [`Log::write_out`] first: buffered records are not covered.
    pub fn sync_point(&self) -> Option<(Arc<dyn VfsFile>, Lsn)> {
        if self.durable_lsn >= self.written_lsn {
            return None;
        }
        match &self.segs.back()?.store {
            Store::Disk { file, .. } => Some((file.clone(), self.written_lsn)),
            Store::Mem(_) => None,
        }
    }

    /// Records that an fsync covering everything up to `lsn` succeeded.
    pub fn mark_durable(&mut self, lsn: Lsn) {
        let lsn = lsn.min(self.written_lsn);
        if lsn > self.durable_lsn {
            self.durable_lsn = lsn;
        }
    }

    /// The last LSN known fsynced (in memory: [`Log::last_lsn`]).
    pub fn durable_lsn(&self) -> Lsn {
        if self.vfs.is_none() {
            self.last_lsn
        } else {
            self.durable_lsn
        }
    }
}
