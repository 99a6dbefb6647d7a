//! Removing records: rollback's cut after an LSN, internal init's reset,
//! and a checkpoint's removal of old segments.

use super::{Log, Segment, Store, MEM_SPARE_BYTES_MAX};
use crate::error::{Error, Result};
use crate::lsn::Lsn;

impl Log {
    /// Drops every record after `lsn`, which must be a record held or
    /// [`Log::base_lsn`]. Used by rollback: removes later segments (last
    /// first, so a crash leaves contiguous files), cuts the file and syncs.
    pub fn truncate_after(&mut self, lsn: Lsn) -> Result<()> {
        if lsn == self.last_lsn {
            return Ok(());
        }
        if lsn > self.last_lsn {
            return Err(Error::invalid(format!(
                "cannot truncate after {lsn}: the log ends at {}",
                self.last_lsn
            )));
        }
        let (idx, cut, gen) = if lsn == self.base_lsn {
            (0, self.segs[0].first_off, self.base_gen)
        } else {
            let (idx, h) = self.record_header(lsn)?;
            (idx, lsn.offset + h.total_len() as u32, h.gen)
        };
        self.write_out()?;
        while self.segs.len() > idx + 1 {
            let seg = self.segs.pop_back().expect("len checked");
            if let (Some(vfs), Store::Disk { path, .. }) = (&self.vfs, &seg.store) {
                vfs.remove(path)
                    .map_err(|e| Error::io("remove log segment", path, e))?;
            }
        }
        let seg = self.segs.back_mut().expect("idx is held");
        match &mut seg.store {
            Store::Mem(v) => v.truncate(cut as usize),
            Store::Disk { path, file } => {
                file.set_len(cut as u64)
                    .map_err(|e| Error::io("truncate log segment", &*path, e))?;
                file.sync()
                    .map_err(|e| Error::io("fsync log segment", &*path, e))?;
            }
        }
        seg.end = cut;
        seg.last_lsn = lsn;
        seg.last_gen = gen;
        if let Some(vfs) = &self.vfs {
            vfs.sync_dir(&self.dir)
                .map_err(|e| Error::io("sync log directory", &self.dir, e))?;
        }
        self.written = cut;
        self.last_lsn = lsn;
        self.last_gen = gen;
        self.written_lsn = lsn;
        self.durable_lsn = lsn;
        Ok(())
    }

    /// Empties the log so that it continues after `base`, of generation
    /// `base_gen` (internal init: the client loaded a snapshot at `base`).
    /// Every segment file is removed; until the next append the log holds no
    /// file, so a reopen must be given `base` as its checkpoint LSN.
    pub fn reset(&mut self, base: Lsn, base_gen: u32) -> Result<()> {
        self.tail.clear();
        while let Some(seg) = self.segs.pop_back() {
            if let (Some(vfs), Store::Disk { path, .. }) = (&self.vfs, &seg.store) {
                vfs.remove(path)
                    .map_err(|e| Error::io("remove log segment", path, e))?;
            }
        }
        if let Some(vfs) = &self.vfs {
            vfs.sync_dir(&self.dir)
                .map_err(|e| Error::io("sync log directory", &self.dir, e))?;
        }
        self.set_empty(base, base_gen);
        Ok(())
    }

    /// Removes segment files all of whose records are before `lsn` (never
    /// the segment holding `lsn`, any later one, or the last segment);
    /// returns how many were removed.
    pub fn remove_before(&mut self, lsn: Lsn) -> Result<u32> {
        let mut n = 0;
        while self.segs.len() > 1 && self.segs[0].last_lsn < lsn {
            let seg = &self.segs[0];
            if let (Some(vfs), Store::Disk { path, .. }) = (&self.vfs, &seg.store) {
                vfs.remove(path)
                    .map_err(|e| Error::io("remove log segment", path, e))?;
            }
            if let Some(Segment {
                store: Store::Mem(mut buf),
                ..
            }) = self.segs.pop_front()
            {
                let held: usize = self.spare.iter().map(Vec::capacity).sum();
                if held + buf.capacity() <= MEM_SPARE_BYTES_MAX {
                    buf.clear();
                    self.spare.push(buf);
                }
            }
            n += 1;
        }
        if n > 0 {
            let first = &self.segs[0];
            self.base_lsn = first.base_lsn;
            self.base_gen = first.base_gen;
            if let Some(vfs) = &self.vfs {
                vfs.sync_dir(&self.dir)
                    .map_err(|e| Error::io("sync log directory", &self.dir, e))?;
            }
        }
        Ok(n)
    }
}
