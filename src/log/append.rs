//! Appending records: the master's new records, and the records a client
//! receives from its master, one at a time or as a run.

use super::record::{encode_record, CheckedRecord, RecordHeader, RecordType, RECORD_HEADER_LEN};
use super::segment::{segment_name, SegmentHeader, SEGMENT_HEADER_LEN};
use super::{limit, Log, Segment, Store, MEM_SEGMENT_RESERVE_MAX, TAIL_WRITE_BYTES};
use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// Where a received record goes, as [`LogEnd::fit`] decides.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Fit {
    /// At the end of the last segment.
    End,
    /// First record of a new segment whose records start at this offset.
    NewSegment(u32),
}

/// Why a received record cannot go next. The error, with its message, is
/// built only when the refusal is reported ([`LogEnd::refused`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Refusal {
    PayloadTooLarge,
    NotAfterEnd,
    GenerationBack,
    Past4GiB,
    NotNextPosition,
}

/// The end of the log a received record must continue: the log's own, or
/// where a run of records appended by [`Log::append_run`] has moved it
/// (the log's fields are set once after the run).
#[derive(Copy, Clone, Debug)]
struct LogEnd {
    /// The last segment's file number and end (meaningful when `has_seg`).
    file_no: u32,
    end: u32,
    has_seg: bool,
    last_lsn: Lsn,
    last_gen: u32,
    /// Where an empty log continues from (after [`Log::reset`]).
    base_lsn: Lsn,
    max_payload: u32,
}

impl LogEnd {
    /// The checks a received record passes before it is appended: the only
    /// place they are written. `Ok(Fit::End)`, the common case, costs a few
    /// comparisons.
    #[inline(always)]
    fn fit(&self, h: &RecordHeader) -> std::result::Result<Fit, Refusal> {
        if h.len > self.max_payload {
            return Err(Refusal::PayloadTooLarge);
        }
        if h.prev_lsn != self.last_lsn {
            return Err(Refusal::NotAfterEnd);
        }
        if h.gen < self.last_gen {
            return Err(Refusal::GenerationBack);
        }
        if h.lsn.offset as u64 + h.total_len() as u64 > u32::MAX as u64 {
            return Err(Refusal::Past4GiB);
        }
        if self.has_seg & (h.lsn.file == self.file_no) & (h.lsn.offset == self.end) {
            return Ok(Fit::End);
        }
        self.fit_elsewhere(*h)
    }

    /// [`LogEnd::fit`] for a record not at the end of the last segment: it
    /// may start the next segment, or (on an empty log, after a reset to
    /// the middle of a master's segment) sit anywhere after the base in the
    /// base's own file.
    #[cold]
    fn fit_elsewhere(self, h: RecordHeader) -> std::result::Result<Fit, Refusal> {
        let hl = SEGMENT_HEADER_LEN as u32;
        match self.has_seg.then_some(self.file_no) {
            Some(file_no) if Some(h.lsn.file) == file_no.checked_add(1) && h.lsn.offset == hl => {
                Ok(Fit::NewSegment(hl))
            }
            None if self.base_lsn.file >= 1
                && h.lsn.file == self.base_lsn.file
                && h.lsn.offset as u64
                    >= self.base_lsn.offset as u64 + RECORD_HEADER_LEN as u64
                && h.lsn.offset >= hl =>
            {
                Ok(Fit::NewSegment(h.lsn.offset))
            }
            None if Some(h.lsn.file) == self.base_lsn.file.checked_add(1) && h.lsn.offset == hl => {
                Ok(Fit::NewSegment(hl))
            }
            _ => Err(Refusal::NotNextPosition),
        }
    }

    /// The error for a record [`LogEnd::fit`] refused.
    #[cold]
    fn refused(&self, why: Refusal, h: &RecordHeader) -> Error {
        match why {
            Refusal::PayloadTooLarge => {
                limit("log record payload", self.max_payload as u64, h.len as u64)
            }
            Refusal::NotAfterEnd => Error::invalid(format!(
                "record at {} follows {}, but the log ends at {}",
                h.lsn, h.prev_lsn, self.last_lsn
            )),
            Refusal::GenerationBack => Error::invalid(format!(
                "record at {} has generation {} after generation {}",
                h.lsn, h.gen, self.last_gen
            )),
            Refusal::Past4GiB => Error::invalid(format!("record at {} runs past 4 GiB", h.lsn)),
            Refusal::NotNextPosition => {
                let end = if self.has_seg {
                    Lsn::new(self.file_no, self.end)
                } else {
                    self.base_lsn
                };
                Error::invalid(format!(
                    "record at {} is not at the next log position (log end {end})",
                    h.lsn
                ))
            }
        }
    }

    /// Moves past a record just copied at the end.
    #[inline]
    fn advance(&mut self, h: &RecordHeader) {
        self.end += h.total_len() as u32;
        self.last_lsn = h.lsn;
        self.last_gen = h.gen;
    }
}

impl Log {
    /// Master path: appends a new record after the last one, returns its LSN.
    #[inline]
    pub fn append(&mut self, gen: u32, rtype: RecordType, payload: &[u8]) -> Result<Lsn> {
        self.check_ok()?;
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
    #[cfg(any(test, feature = "testing"))]
    pub fn append_raw(&mut self, encoded: &[u8]) -> Result<Lsn> {
        let rec = CheckedRecord::check(encoded, self.config.max_payload())?;
        self.append_checked(rec)
    }

    /// [`Log::append_raw`] for a record whose CRC the caller already
    /// checked (for instance while splitting a received batch with
    /// [`super::split_checked`]): the CRC is not computed again, every other
    /// check of [`Log::append_raw`] is made, including this log's payload limit.
    #[inline]
    #[cfg(any(test, feature = "testing"))]
    pub fn append_checked(&mut self, rec: CheckedRecord<'_>) -> Result<Lsn> {
        let lsn = rec.header().lsn;
        self.append_run(rec, |_| None, |_| Ok(())).1?;
        Ok(lsn)
    }

    /// Appends `first`, then each record `next` hands over when given the
    /// LSN of the record just appended, until it hands over none or a
    /// record fails. Each record passes the checks of [`Log::append_raw`],
    /// then `apply`, the caller's validate-and-apply step, runs on it just
    /// before its bytes are copied into the log (a copy that cannot fail).
    /// A record that fails the checks, whose `apply` fails (which must then
    /// have changed nothing), or whose append fails (writing out the tail or
    /// starting a segment, before `apply` runs) is not appended; the records
    /// before it stay appended.
    ///
    /// Returns how many records were appended, and the error that ended
    /// the run early.
    ///
    /// Records that continue the last segment at its end (all but one that
    /// starts a segment, or one arriving when the tail buffer is due to be
    /// written) are copied one after another and the log's end is set once
    /// after them: the client's hot path.
    #[inline]
    pub(crate) fn append_run<'a>(
        &mut self,
        first: CheckedRecord<'a>,
        mut next: impl FnMut(Lsn) -> Option<CheckedRecord<'a>>,
        mut apply: impl FnMut(&CheckedRecord<'a>) -> Result<()>,
    ) -> (u64, Result<()>) {
        if let Err(e) = self.check_ok() {
            return (0, Err(e));
        }
        let mut appended = 0u64;
        let mut pending = Some(first);
        loop {
            let mut at = self.end_now();
            let mut failed = None;
            if let Some(seg) = self.segs.back_mut() {
                // Bytes the tail buffer may still take before it is due to be
                // written (in memory: no limit).
                let (buf, mut room) = match &mut seg.store {
                    Store::Mem(v) => (v, usize::MAX),
                    Store::Disk { .. } => {
                        let room = TAIL_WRITE_BYTES.saturating_sub(self.tail.len());
                        (&mut self.tail, room)
                    }
                };
                while let Some(rec) = pending {
                    let h = *rec.header();
                    if room == 0 || !matches!(at.fit(&h), Ok(Fit::End)) {
                        break;
                    }
                    if let Err(e) = apply(&rec) {
                        failed = Some(e);
                        break;
                    }
                    buf.extend_from_slice(rec.bytes());
                    at.advance(&h);
                    room = room.saturating_sub(h.total_len());
                    appended += 1;
                    pending = next(h.lsn);
                }
            }
            if at.last_lsn != self.last_lsn {
                self.end_at(at.end, at.last_lsn, at.last_gen);
            }
            if let Some(e) = failed {
                return (appended, Err(e));
            }
            let Some(rec) = pending else {
                return (appended, Ok(()));
            };
            match self.append_one_slow(rec, &mut apply) {
                Ok(lsn) => {
                    appended += 1;
                    pending = next(lsn);
                }
                Err(e) => return (appended, Err(e)),
            }
        }
    }

    /// The log's end, for [`LogEnd::fit`].
    #[inline]
    fn end_now(&self) -> LogEnd {
        LogEnd {
            file_no: self.segs.back().map_or(0, |s| s.file_no),
            end: self.segs.back().map_or(0, |s| s.end),
            has_seg: !self.segs.is_empty(),
            last_lsn: self.last_lsn,
            last_gen: self.last_gen,
            base_lsn: self.base_lsn,
            max_payload: self.config.max_payload(),
        }
    }

    /// One record of [`Log::append_run`] in general: every check, with its
    /// error; the tail written out first when it is due; a new segment when
    /// the record starts one.
    #[inline(never)]
    fn append_one_slow<'a>(
        &mut self,
        rec: CheckedRecord<'a>,
        apply: &mut impl FnMut(&CheckedRecord<'a>) -> Result<()>,
    ) -> Result<Lsn> {
        let h = *rec.header();
        let at = self.end_now();
        let fit = at.fit(&h).map_err(|why| at.refused(why, &h))?;
        if self.tail.len() >= TAIL_WRITE_BYTES {
            self.write_out()?;
        }
        if let Fit::NewSegment(first_off) = fit {
            self.start_segment(h.lsn.file, self.last_lsn, self.last_gen, first_off)?;
        }
        apply(&rec)?;
        let seg = self.segs.back_mut().expect("a segment was just ensured");
        match &mut seg.store {
            Store::Mem(v) => v.extend_from_slice(rec.bytes()),
            Store::Disk { .. } => self.tail.extend_from_slice(rec.bytes()),
        }
        let end = seg.end + h.total_len() as u32;
        self.end_at(end, h.lsn, h.gen);
        Ok(h.lsn)
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
        debug_assert!(
            lsn > self.last_lsn && gen >= self.last_gen,
            "the log's end moves back: from {} (generation {}) to {lsn} (generation {gen})",
            self.last_lsn,
            self.last_gen
        );
        self.last_lsn = lsn;
        self.last_gen = gen;
        if self.vfs.is_none() {
            self.written_lsn = lsn;
            self.durable_lsn = lsn;
        }
        self.debug_assert_ends();
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
        self.guarded(|log| log.start_segment_inner(file_no, base_lsn, base_gen, first_off))
    }

    fn start_segment_inner(
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
