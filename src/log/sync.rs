//! Making records durable: writing the tail buffer out, fsyncing, and the
//! bookkeeping group commit needs to fsync outside the caller's lock.

use std::io;
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
            if let Err(e) = file.sync() {
                let e = Error::io("fsync log segment", path, e);
                return Err(self.fail(e));
            }
        }
        self.durable_lsn = self.written_lsn;
        self.debug_assert_ends();
        Ok(())
    }

    /// What the durability mode demands at a commit: `Sync` writes and
    /// fsyncs, `WriteNoSync` writes, `NoSync` does nothing.
    #[inline(always)]
    pub fn flush(&mut self) -> Result<()> {
        if self.failed.is_none() && self.all_durable() {
            // Nothing buffered, nothing written but not synced: what every
            // mode would do is nothing (always the case in memory). Checked
            // inline: a client calls this at every message from its master.
            return Ok(());
        }
        self.flush_due()
    }

    /// [`Log::flush`] when the log has failed or holds something not yet
    /// durable.
    #[inline(never)]
    fn flush_due(&mut self) -> Result<()> {
        self.check_ok()?;
        match self.config.durability {
            Durability::Sync => self.force_sync(),
            Durability::WriteNoSync => self.write_out().map(|_| ()),
            Durability::NoSync => Ok(()),
        }
    }

    /// Writes and fsyncs everything, whatever the durability mode.
    #[inline]
    pub fn force_sync(&mut self) -> Result<()> {
        self.check_ok()?;
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
        self.check_ok()?;
        if self.tail.is_empty() {
            return Ok(self.written_lsn);
        }
        if let Some(Segment {
            store: Store::Disk { path, file },
            ..
        }) = self.segs.back()
        {
            if let Err(e) = file.write_at(&self.tail, self.written as u64) {
                let e = Error::io("append to log segment", path, e);
                return Err(self.fail(e));
            }
        }
        self.written += self.tail.len() as u32;
        self.tail.clear();
        self.written_lsn = self.last_lsn;
        self.debug_assert_ends();
        Ok(self.written_lsn)
    }

    /// For group commit: the file to fsync and the last LSN an fsync of it
    /// makes durable (`None` in memory or when nothing written is unsynced).
    /// The caller fsyncs outside its lock, then reports how it went with
    /// [`Log::sync_finished`]. Call [`Log::write_out`] first: buffered
    /// records are not covered. `None` too once the log has failed.
    pub fn sync_point(&self) -> Option<(Arc<dyn VfsFile>, Lsn)> {
        if self.failed.is_some() || self.durable_lsn >= self.written_lsn {
            return None;
        }
        match &self.segs.back()?.store {
            Store::Disk { file, .. } => Some((file.clone(), self.written_lsn)),
            Store::Mem(_) => None,
        }
    }

    /// Reports the fsync a caller ran on the file [`Log::sync_point`] gave
    /// it, covering everything up to `lsn`: on success the records are
    /// durable; a failure puts the log into its failed state (the error
    /// returned is [`Error::RunRecovery`]) and nothing it wrote is trusted.
    pub fn sync_finished(&mut self, lsn: Lsn, fsync: io::Result<()>) -> Result<()> {
        self.check_ok()?;
        match fsync {
            Ok(()) => {
                self.mark_durable(lsn);
                Ok(())
            }
            Err(e) => {
                let path = match self.segs.back() {
                    Some(seg) => seg.path(),
                    None => self.dir.clone(),
                };
                Err(self.fail(Error::io("fsync log segment", path, e)))
            }
        }
    }

    /// Records that an fsync covering everything up to `lsn` succeeded
    /// (prefer [`Log::sync_finished`], which also reports a failure).
    pub fn mark_durable(&mut self, lsn: Lsn) {
        if self.failed.is_some() {
            return;
        }
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

    /// Why the log is in its failed state, if it is: the first write,
    /// fsync or file operation that failed. Once set, every call that would
    /// write, sync or trim the log returns [`Error::RunRecovery`] with it.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// `Err(Error::RunRecovery)` once the log has failed.
    #[inline]
    pub(crate) fn check_ok(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(failed_error(why)),
        }
    }

    /// Puts the log into its failed state for a reason found above it (a
    /// failed write of a file kept beside the log, say): the same refusal
    /// of further work as for a failure of the log's own files.
    pub(crate) fn set_failed(&mut self, why: &Error) -> Error {
        self.fail_with(why.to_string())
    }

    /// Puts the log into its failed state because of `e` (a failed write,
    /// fsync or file operation) and returns the error to report for it.
    #[cold]
    pub(super) fn fail(&mut self, e: Error) -> Error {
        self.fail_with(e.to_string())
    }

    #[cold]
    fn fail_with(&mut self, why: String) -> Error {
        log::error!("storage failed, refusing further work until reopened: {why}");
        let why = self.failed.get_or_insert(why);
        failed_error(why)
    }

    /// Runs `op` (which writes, syncs or removes files) unless the log has
    /// failed, putting it into its failed state if `op` fails with an I/O
    /// error. Other errors (a bad argument) leave it as it is.
    pub(super) fn guarded<T>(&mut self, op: impl FnOnce(&mut Log) -> Result<T>) -> Result<T> {
        self.check_ok()?;
        match op(self) {
            Err(e @ Error::Io { .. }) => Err(self.fail(e)),
            r => r,
        }
    }
}

#[cold]
fn failed_error(why: &str) -> Error {
    Error::RunRecovery(format!(
        "{why}; the storage refuses further work until the environment is reopened"
    ))
}
