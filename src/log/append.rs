//! Appending records: the master's new records, and the records a client
//! receives from its master, one at a time or as a run.

use super::record::{encode_record, CheckedRecord, RecordHeader, RecordType, RECORD_HEADER_LEN};
use super::segment::{segment_name, SegmentHeader, SEGMENT_HEADER_LEN};
use super::{limit, Log, Segment, Store, MEM_SEGMENT_RESERVE_MAX, TAIL_WRITE_BYTES};
use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// The end of a log as [`Log::start_run`] found it, moved along the
/// records a caller appends.
#[derive(Clone, Debug)]
pub(crate) struct AppendCursor {
    file_no: u32,
    end: u32,
    last_lsn: Lsn,
    last_gen: u32,
    max_payload: u32,
    /// Bytes in the tail buffer, which appends to an on-disk segment grow.
    tail: usize,
    disk: bool,
}

impl AppendCursor {
    /// True if a record with header `h` can go next the way
    /// [`Log::append_checked`] appends one in its common case
    /// ([`Log::append_at_end`]): the same checks, against the end as moved
    /// so far.
    #[inline]
    pub(crate) fn accepts(&self, h: &RecordHeader) -> bool {
        h.len <= self.max_payload
            && h.prev_lsn == self.last_lsn
            && h.gen >= self.last_gen
            && self.tail < TAIL_WRITE_BYTES
            && h.lsn.file == self.file_no
            && h.lsn.offset == self.end
            && h.lsn.offset as u64 + h.total_len() as u64 <= u32::MAX as u64
    }

    /// Moves past a record [`AppendCursor::accepts`] accepted (and the
    /// caller copied).
    #[inline]
    pub(crate) fn advance(&mut self, h: &RecordHeader) {
        let total = h.total_len();
        self.end += total as u32;
        self.last_lsn = h.lsn;
        self.last_gen = h.gen;
        if self.disk {
            self.tail += total;
        }
    }
}

impl Log {
    /// Master path: appends a new record after the last one, returns its LSN.
    #[inline]
    pub fn append(&mut self, gen: u32, rtype: RecordType, payload: &[u8]) -> Result<Lsn> {
        let total = RECORD_HEADER_LEN as u64 + payload.len() as u64;
        if total > self.config.max_record_bytes as u64 {
            return Err(limit(
                "log record",
                self.config.max_record_bytes as u64,
                total,
            ));
        }
        if gen < self.last_gen {
            return Err(Error::invalid(format!(
                "append in generation {gen} after a record of generation {}",
                self.last_gen
            )));
        }
        if self.tail.len() >= TAIL_WRITE_BYTES {
            self.write_out()?;
        }
        let rotate = match self.segs.back() {
            None => true,
            Some(s) => {
                let new_end = s.end as u64 + total;
                (new_end > self.config.segment_size_bytes as u64 && s.has_records())
                    || new_end > u32::MAX as u64
            }
        };
        if rotate {
            let file_no = match self.segs.back() {
                Some(s) => s.file_no,
                None => self.base_lsn.file,
            }
            .checked_add(1)
            .ok_or_else(|| limit("log file number", u32::MAX as u64, u32::MAX as u64 + 1))?;
            if SEGMENT_HEADER_LEN as u64 + total > u32::MAX as u64 {
                return Err(limit(
                    "log segment",
                    u32::MAX as u64,
                    SEGMENT_HEADER_LEN as u64 + total,
                ));
            }
            self.start_segment(
                file_no,
                self.last_lsn,
                self.last_gen,
                SEGMENT_HEADER_LEN as u32,
            )?;
        }
        let prev = self.last_lsn;
        let seg = self.segs.back_mut().expect("a segment was just ensured");
        let lsn = Lsn::new(seg.file_no, seg.end);
        match &mut seg.store {
            Store::Mem(v) => encode_record(lsn, prev, gen, rtype, payload, v),
            Store::Disk { .. } => encode_record(lsn, prev, gen, rtype, payload, &mut self.tail),
        }
        let end = seg.end + total as u32;
        self.end_at(end, lsn, gen);
        Ok(lsn)
    }

    /// Client path: appends one encoded record received from the master.
    ///
    /// Its prev LSN must equal [`Log::last_lsn`] and its LSN must be the next
    /// position: the same file at the end offset, or offset 32 of the next
    /// file, which starts a new segment whose header base is the record's
    /// prev LSN. After [`Log::reset`] (or on an empty log) the first record
    /// may also sit anywhere after the base in the base's own file. Otherwise
    /// `Err(Error::Invalid)` and nothing changes. Damaged bytes give
    /// `Error::Malformed` (or `Error::Limit` for an oversized record).
    pub fn append_raw(&mut self, encoded: &[u8]) -> Result<Lsn> {
        let rec = CheckedRecord::check(encoded, self.config.max_payload())?;
        self.append_checked(rec)
    }

    /// [`Log::append_raw`] for a record whose CRC the caller already
    /// checked (for instance while splitting a received batch with
    /// [`split_checked`](crate::log::record::split_checked)): the CRC is not computed again, every other check
    /// of [`Log::append_raw`] is made, including this log's payload limit.
    #[inline]
    pub fn append_checked(&mut self, rec: CheckedRecord<'_>) -> Result<Lsn> {
        if self.append_at_end(&rec) {
            return Ok(rec.header().lsn);
        }
        self.append_checked_slow(rec)
    }

    /// The common case of [`Log::append_checked`]: a record that continues
    /// the last segment at its end, when no write of the tail is due.
    /// Appends it and returns true, or changes nothing and returns false
    /// when any check of the general path might not pass.
    #[inline]
    pub(super) fn append_at_end(&mut self, rec: &CheckedRecord<'_>) -> bool {
        let h = rec.header();
        if h.len > self.config.max_payload()
            || h.prev_lsn != self.last_lsn
            || h.gen < self.last_gen
            || self.tail.len() >= TAIL_WRITE_BYTES
        {
            return false;
        }
        let Some(seg) = self.segs.back_mut() else {
            return false;
        };
        let total = h.total_len() as u64;
        if h.lsn.file != seg.file_no
            || h.lsn.offset != seg.end
            || h.lsn.offset as u64 + total > u32::MAX as u64
        {
            return false;
        }
        match &mut seg.store {
            Store::Mem(v) => v.extend_from_slice(rec.bytes()),
            Store::Disk { .. } => self.tail.extend_from_slice(rec.bytes()),
        }
        let end = seg.end + total as u32;
        self.end_at(end, h.lsn, h.gen);
        true
    }

    /// Starts appending several records at the end of the last segment:
    /// where the next one must go, and the buffer its bytes go to (the
    /// segment in memory, the tail on disk). The caller copies each record
    /// its [`AppendCursor::accepts`] into the buffer, in order, and
    /// [`AppendCursor::advance`]s past it; then [`Log::finish_run`] moves
    /// the log's end. `None` when there is no segment.
    pub(crate) fn start_run(&mut self) -> Option<(AppendCursor, &mut Vec<u8>)> {
        let seg = self.segs.back_mut()?;
        let cur = AppendCursor {
            file_no: seg.file_no,
            end: seg.end,
            last_lsn: self.last_lsn,
            last_gen: self.last_gen,
            max_payload: self.config.max_payload(),
            tail: self.tail.len(),
            disk: matches!(seg.store, Store::Disk { .. }),
        };
        let buf = match &mut seg.store {
            Store::Mem(v) => v,
            Store::Disk { .. } => &mut self.tail,
        };
        Some((cur, buf))
    }

    /// Moves the log's end past the records copied since `cur` came from
    /// [`Log::start_run`]: the state
    /// [`Log::append_checked`] would have left after appending each in turn.
    #[inline]
    pub(crate) fn finish_run(&mut self, cur: &AppendCursor) {
        let Some(seg) = self.segs.back_mut() else {
            return;
        };
        if seg.end == cur.end {
            return;
        }
        self.end_at(cur.end, cur.last_lsn, cur.last_gen);
    }

    /// Moves the log's end to `end` in the last segment, after the record
    /// at `lsn` of generation `gen` just copied there. In memory a record
    /// is written and durable once copied.
    #[inline]
    pub(super) fn end_at(&mut self, end: u32, lsn: Lsn, gen: u32) {
        if let Some(seg) = self.segs.back_mut() {
            seg.end = end;
            seg.last_lsn = lsn;
            seg.last_gen = gen;
        }
        self.last_lsn = lsn;
        self.last_gen = gen;
        if self.vfs.is_none() {
            self.written_lsn = lsn;
            self.durable_lsn = lsn;
        }
    }

    /// [`Log::append_checked`] in general: every check, with its error,
    /// and a new segment when the record starts one.
    #[inline(never)]
    pub(super) fn append_checked_slow(&mut self, rec: CheckedRecord<'_>) -> Result<Lsn> {
        let h = *rec.header();
        let encoded = rec.bytes();
        if h.len > self.config.max_payload() {
            return Err(limit(
                "log record payload",
                self.config.max_payload() as u64,
                h.len as u64,
            ));
        }
        if h.prev_lsn != self.last_lsn {
            return Err(Error::invalid(format!(
                "record at {} follows {}, but the log ends at {}",
                h.lsn, h.prev_lsn, self.last_lsn
            )));
        }
        if h.gen < self.last_gen {
            return Err(Error::invalid(format!(
                "record at {} has generation {} after generation {}",
                h.lsn, h.gen, self.last_gen
            )));
        }
        let total = h.total_len() as u64;
        if h.lsn.offset as u64 + total > u32::MAX as u64 {
            return Err(Error::invalid(format!(
                "record at {} runs past 4 GiB",
                h.lsn
            )));
        }
        let hl = SEGMENT_HEADER_LEN as u32;
        let new_first_off = match self.segs.back() {
            Some(s) if h.lsn.file == s.file_no && h.lsn.offset == s.end => None,
            Some(s) if Some(h.lsn.file) == s.file_no.checked_add(1) && h.lsn.offset == hl => {
                Some(hl)
            }
            None if self.base_lsn.file >= 1
                && h.lsn.file == self.base_lsn.file
                && h.lsn.offset as u64
                    >= self.base_lsn.offset as u64 + RECORD_HEADER_LEN as u64
                && h.lsn.offset >= hl =>
            {
                Some(h.lsn.offset)
            }
            None if Some(h.lsn.file) == self.base_lsn.file.checked_add(1) && h.lsn.offset == hl => {
                Some(hl)
            }
            _ => {
                let end = self
                    .segs
                    .back()
                    .map(|s| Lsn::new(s.file_no, s.end))
                    .unwrap_or(self.base_lsn);
                return Err(Error::invalid(format!(
                    "record at {} is not at the next log position (log end {end})",
                    h.lsn
                )));
            }
        };
        if self.tail.len() >= TAIL_WRITE_BYTES {
            self.write_out()?;
        }
        if let Some(first_off) = new_first_off {
            self.start_segment(h.lsn.file, self.last_lsn, self.last_gen, first_off)?;
        }
        let seg = self.segs.back_mut().expect("a segment was just ensured");
        match &mut seg.store {
            Store::Mem(v) => v.extend_from_slice(encoded),
            Store::Disk { .. } => self.tail.extend_from_slice(encoded),
        }
        let end = seg.end + total as u32;
        self.end_at(end, h.lsn, h.gen);
        Ok(h.lsn)
    }

    /// Finishes the current segment (written and fsynced) and starts
    /// segment `file_no`, whose header is written at once.
    pub(super) fn start_segment(
        &mut self,
        file_no: u32,
        base_lsn: Lsn,
        base_gen: u32,
        first_off: u32,
    ) -> Result<()> {
        let mut hdr = Vec::with_capacity(SEGMENT_HEADER_LEN);
        SegmentHeader {
            file_no,
            base_lsn,
            base_gen,
            first_off,
        }
        .encode(&mut hdr);
        let store = match self.vfs.clone() {
            None => {
                // Room for a whole segment up front (within reason), so
                // appends do not keep reallocating and copying it.
                let cap = (self.config.segment_size_bytes as usize).min(MEM_SEGMENT_RESERVE_MAX);
                let mut v = self.spare.pop().unwrap_or_default();
                v.reserve(cap.max(first_off as usize));
                v.extend_from_slice(&hdr);
                v.resize(first_off as usize, 0);
                Store::Mem(v)
            }
            Some(vfs) => {
                if !self.segs.is_empty() {
                    self.write_out()?;
                    self.sync_current()?;
                }
                let path = self.dir.join(segment_name(file_no));
                let file = vfs
                    .open(&path, true)
                    .map_err(|e| self.io_err("create log segment", &path, e))?;
                let len = file
                    .len()
                    .map_err(|e| self.io_err("stat log segment", &path, e))?;
                if len != 0 {
                    // A leftover from an interrupted truncation: its bytes must not look like ours.
                    file.set_len(0)
                        .map_err(|e| self.io_err("clear stale log segment", &path, e))?;
                }
                file.write_at(&hdr, 0)
                    .map_err(|e| self.io_err("write log segment header", &path, e))?;
                vfs.sync_dir(&self.dir)
                    .map_err(|e| self.io_err("sync log directory", &self.dir, e))?;
                self.written = first_off;
                Store::Disk { path, file }
            }
        };
        if self.segs.is_empty() {
            self.base_lsn = base_lsn;
            self.base_gen = base_gen;
        }
        self.segs.push_back(Segment {
            file_no,
            base_lsn,
            base_gen,
            first_off,
            end: first_off,
            last_lsn: base_lsn,
            last_gen: base_gen,
            store,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{split_checked, LogConfig};

    #[test]
    pub(super) fn append_checked_keeps_every_check_but_the_crc() {
        let cfg = LogConfig {
            max_record_bytes: 64,
            ..LogConfig::default()
        };
        let mut master = Log::in_memory(LogConfig::default());
        let l1 = master.append(1, RecordType::Commit, b"small").unwrap();
        let l2 = master.append(1, RecordType::Commit, &[0u8; 100]).unwrap();
        let mut blob = Vec::new();
        master.read_raw_into(l1, &mut blob).unwrap();
        master.read_raw_into(l2, &mut blob).unwrap();
        let recs: Vec<_> = split_checked(&blob, u32::MAX).map(|r| r.unwrap()).collect();

        // Out of order: refused.
        let mut other = Log::in_memory(LogConfig::default());
        assert!(matches!(
            other.append_checked(recs[1]),
            Err(Error::Invalid(_))
        ));
        let mut client = Log::in_memory(cfg);
        assert_eq!(client.append_checked(recs[0]).unwrap(), l1);
        // Checked against a larger limit than this log's: still refused.
        assert!(matches!(
            client.append_checked(recs[1]),
            Err(Error::Limit { .. })
        ));
        assert_eq!(client.last_lsn(), l1);
        assert_eq!(client.read(l1).unwrap().payload, b"small");
    }
}
