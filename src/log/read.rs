//! Reading records back: by LSN, in ranges for the master to send, and
//! as an iterator for replay.

use super::record::{self, peek_header, Record, RecordHeader, RECORD_HEADER_LEN};
use super::{Log, Store};
use crate::error::{Error, Result};
use crate::lsn::Lsn;

impl Log {
    /// Appends bytes `off..off+len` of segment `idx` to `out`; the range
    /// must lie inside `first_off..end`.
    pub(super) fn read_bytes(
        &self,
        idx: usize,
        off: u32,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let seg = &self.segs[idx];
        let off_us = off as usize;
        debug_assert!(off_us + len <= seg.end as usize);
        match &seg.store {
            Store::Mem(v) => out.extend_from_slice(&v[off_us..off_us + len]),
            Store::Disk { path, file } => {
                let is_last = idx + 1 == self.segs.len();
                let end = off_us + len;
                let on_disk_end = if is_last {
                    end.min(self.written as usize)
                } else {
                    end
                };
                if off_us < on_disk_end {
                    let start = out.len();
                    out.resize(start + (on_disk_end - off_us), 0);
                    if let Err(e) = file.read_exact_at(&mut out[start..], off as u64) {
                        out.truncate(start);
                        return Err(self.io_err("read log segment", path, e));
                    }
                }
                if is_last && end > self.written as usize {
                    let from = off_us.max(self.written as usize) - self.written as usize;
                    let to = end - self.written as usize;
                    out.extend_from_slice(&self.tail[from..to]);
                }
            }
        }
        Ok(())
    }

    /// Reads the [`RECORD_HEADER_LEN`] bytes at `off` of (on-disk) segment `idx`.
    pub(super) fn read_header_bytes(
        &self,
        idx: usize,
        off: u32,
        buf: &mut [u8; RECORD_HEADER_LEN],
    ) -> Result<()> {
        let mut v = Vec::with_capacity(RECORD_HEADER_LEN);
        self.read_bytes(idx, off, RECORD_HEADER_LEN, &mut v)?;
        buf.copy_from_slice(&v);
        Ok(())
    }

    /// The header of the record starting at `lsn`: `NotFound` unless the
    /// bytes there are a header naming `lsn` whose record fits the segment.
    pub(super) fn record_header(&self, lsn: Lsn) -> Result<(usize, RecordHeader)> {
        // `let else` rather than `ok_or`, which builds (and drops) an error
        // value on every successful call.
        let Some(idx) = self.seg_index(lsn.file) else {
            return Err(Error::NotFound(lsn));
        };
        let seg = &self.segs[idx];
        if lsn.offset < seg.first_off
            || lsn.offset as u64 + RECORD_HEADER_LEN as u64 > seg.end as u64
        {
            return Err(Error::NotFound(lsn));
        }
        let off = lsn.offset as usize;
        let mut buf = [0u8; RECORD_HEADER_LEN];
        let hdr: &[u8] = match &seg.store {
            Store::Mem(v) => match v.get(off..off + RECORD_HEADER_LEN) {
                Some(b) => b,
                None => return Err(Error::NotFound(lsn)),
            },
            Store::Disk { .. } => {
                self.read_header_bytes(idx, lsn.offset, &mut buf)?;
                &buf
            }
        };
        let h = match peek_header(hdr) {
            Ok(h) if h.lsn == lsn => h,
            _ => return Err(Error::NotFound(lsn)),
        };
        if h.len > self.config.max_payload()
            || lsn.offset as u64 + h.total_len() as u64 > seg.end as u64
        {
            return Err(self.corrupt(
                idx,
                lsn.offset,
                format!("record length {} is impossible", h.len),
            ));
        }
        Ok((idx, h))
    }

    /// Appends the whole record at `lsn`, CRC-checked, to `out`.
    ///
    /// In memory the CRC is not computed again: the bytes never left this
    /// process since [`Log::append`] computed it or [`Log::append_raw`]
    /// verified it. The header checks of [`Log::record_header`] still apply.
    pub(super) fn read_record_raw(
        &self,
        lsn: Lsn,
        out: &mut Vec<u8>,
    ) -> Result<(usize, RecordHeader)> {
        let (idx, h) = self.record_header(lsn)?;
        let start = out.len();
        if let Store::Mem(v) = &self.segs[idx].store {
            let off = lsn.offset as usize;
            let raw = v
                .get(off..off + h.total_len())
                .ok_or_else(|| self.corrupt(idx, lsn.offset, "record runs past the segment"))?;
            out.extend_from_slice(raw);
            return Ok((idx, h));
        }
        self.read_bytes(idx, lsn.offset, h.total_len(), out)?;
        if let Err(e) = record::check_record(&out[start..], self.config.max_payload()) {
            out.truncate(start);
            return Err(self.corrupt(idx, lsn.offset, e.to_string()));
        }
        Ok((idx, h))
    }

    /// The first record position at or after `off` in segment `idx`, moving
    /// on to later segments past the end of this one.
    pub(super) fn advance(&self, mut idx: usize, mut off: u32) -> Option<(usize, u32)> {
        loop {
            let seg = self.segs.get(idx)?;
            if off < seg.end {
                return Some((idx, off));
            }
            idx += 1;
            off = self.segs.get(idx)?.first_off;
        }
    }

    pub(super) fn first_pos(&self) -> Option<(usize, u32)> {
        self.advance(0, self.segs.front()?.first_off)
    }

    pub(super) fn pos_of(&self, lsn: Lsn) -> Result<Option<(usize, u32)>> {
        if lsn.is_zero() || lsn == self.base_lsn {
            return Ok(self.first_pos());
        }
        let (idx, _) = self.record_header(lsn)?;
        Ok(Some((idx, lsn.offset)))
    }

    pub(super) fn pos_after(&self, lsn: Lsn) -> Result<Option<(usize, u32)>> {
        if lsn.is_zero() || lsn == self.base_lsn {
            return Ok(self.first_pos());
        }
        let (idx, h) = self.record_header(lsn)?;
        Ok(self.advance(idx, lsn.offset + h.total_len() as u32))
    }

    /// Reads the record at `lsn`; `Error::NotFound` if no record starts there.
    pub fn read(&self, lsn: Lsn) -> Result<Record> {
        let mut buf = Vec::new();
        let (_, h) = self.read_record_raw(lsn, &mut buf)?;
        Ok(record_from(&h, &buf))
    }

    /// Appends the encoded record at `lsn` to `out` and returns its header.
    pub fn read_raw_into(&self, lsn: Lsn, out: &mut Vec<u8>) -> Result<RecordHeader> {
        if lsn == self.last_lsn {
            if let Some(bytes) = self.last_record_in_memory() {
                out.extend_from_slice(bytes);
                return peek_header(bytes);
            }
        }
        Ok(self.read_record_raw(lsn, out)?.1)
    }

    /// The encoded record at `lsn` when it is the last one and this
    /// process holds its bytes (what [`Log::read_raw_into`] would append).
    #[inline]
    pub(crate) fn last_record_bytes(&self, lsn: Lsn) -> Option<&[u8]> {
        if lsn != self.last_lsn {
            return None;
        }
        self.last_record_in_memory()
    }

    /// The bytes of the last record when this process holds them (an
    /// in-memory segment, or the unwritten tail): a master broadcasting the
    /// record it just appended copies it from there without looking it up.
    #[inline]
    pub(super) fn last_record_in_memory(&self) -> Option<&[u8]> {
        let seg = self.segs.back()?;
        if seg.last_lsn != self.last_lsn || self.last_lsn.file != seg.file_no {
            return None;
        }
        let (start, end) = (self.last_lsn.offset as usize, seg.end as usize);
        match &seg.store {
            Store::Mem(v) => v.get(start..end),
            Store::Disk { .. } => {
                let written = self.written as usize;
                self.tail
                    .get(start.checked_sub(written)?..end.checked_sub(written)?)
            }
        }
    }

    /// Appends to `out` the encoded records after `after` (`after` =
    /// [`Log::base_lsn`] or `Lsn::ZERO` means from the first record) until
    /// `max_bytes` would be exceeded (at least one record is always taken)
    /// or `upto` (if non-zero) is passed. Returns the last LSN copied
    /// (`Lsn::ZERO` if none) and whether more records up to `upto` (or up to
    /// the log end when `upto` is zero) are left because `max_bytes` ran out.
    pub fn read_after(
        &self,
        after: Lsn,
        upto: Lsn,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<(Lsn, bool)> {
        let mut pos = self.pos_after(after)?;
        let mut last = Lsn::ZERO;
        let mut used = 0usize;
        let max_payload = self.config.max_payload();
        while let Some((idx, off)) = pos {
            let seg = &self.segs[idx];
            let here = Lsn::new(seg.file_no, off);
            if !upto.is_zero() && here > upto {
                return Ok((last, false));
            }
            let avail = (seg.end - off) as usize;
            let mut want = avail.min(max_bytes.saturating_sub(used));
            if used == 0 {
                let (_, h) = self.record_header(here).map_err(|e| match e {
                    Error::NotFound(_) => {
                        self.corrupt(idx, off, "no valid record header where one must start")
                    }
                    e => e,
                })?;
                want = want.max(h.total_len());
            }
            if want < RECORD_HEADER_LEN {
                return Ok((last, true));
            }
            let start = out.len();
            self.read_bytes(idx, off, want, out)?;
            let mut p = 0usize;
            while p + RECORD_HEADER_LEN <= want {
                let rec_lsn = Lsn::new(seg.file_no, off + p as u32);
                if !upto.is_zero() && rec_lsn > upto {
                    break;
                }
                let chunk = &out[start + p..start + want];
                let h = peek_header(chunk)
                    .map_err(|e| self.corrupt(idx, rec_lsn.offset, e.to_string()))?;
                if h.total_len() > chunk.len() {
                    if h.len > max_payload
                        || rec_lsn.offset as usize + h.total_len() > seg.end as usize
                    {
                        return Err(self.corrupt(
                            idx,
                            rec_lsn.offset,
                            format!("record length {} is impossible", h.len),
                        ));
                    }
                    break;
                }
                record::check_record(chunk, max_payload)
                    .map_err(|e| self.corrupt(idx, rec_lsn.offset, e.to_string()))?;
                if h.lsn != rec_lsn {
                    return Err(self.corrupt(
                        idx,
                        rec_lsn.offset,
                        format!("record names LSN {}", h.lsn),
                    ));
                }
                last = rec_lsn;
                p += h.total_len();
            }
            out.truncate(start + p);
            used += p;
            let next = off + p as u32;
            if next < seg.end {
                // Stopped inside the segment: either upto was passed or the budget ran out.
                let next_lsn = Lsn::new(seg.file_no, next);
                let more = upto.is_zero() || next_lsn <= upto;
                return Ok((last, more));
            }
            pos = self.advance(idx, next);
        }
        Ok((last, false))
    }

    /// Iterates over the records at `lsn` and later (`Lsn::ZERO` or
    /// [`Log::base_lsn`] means from the first). Ends after the first error.
    pub fn iter_from(&self, lsn: Lsn) -> impl Iterator<Item = Result<Record>> + '_ {
        let (pos, err) = match self.pos_of(lsn) {
            Ok(p) => (p, None),
            Err(e) => (None, Some(e)),
        };
        LogIter {
            log: self,
            pos,
            err,
            buf: Vec::new(),
        }
    }

    /// The prev LSN of the record at `lsn`.
    pub fn prev_of(&self, lsn: Lsn) -> Result<Lsn> {
        Ok(self.record_header(lsn)?.1.prev_lsn)
    }
}

/// The [`Record`] for a whole encoded record already checked by
/// [`Log::read_record_raw`].
fn record_from(h: &RecordHeader, raw: &[u8]) -> Record {
    Record {
        lsn: h.lsn,
        prev_lsn: h.prev_lsn,
        gen: h.gen,
        rtype: h.rtype,
        payload: raw[RECORD_HEADER_LEN..h.total_len()].to_vec(),
    }
}

struct LogIter<'a> {
    log: &'a Log,
    pos: Option<(usize, u32)>,
    err: Option<Error>,
    buf: Vec<u8>,
}

impl Iterator for LogIter<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if let Some(e) = self.err.take() {
            return Some(Err(e));
        }
        let (idx, off) = self.pos?;
        let lsn = Lsn::new(self.log.segs[idx].file_no, off);
        self.buf.clear();
        let res = self
            .log
            .read_record_raw(lsn, &mut self.buf)
            .map(|(idx, h)| (idx, h, record_from(&h, &self.buf)));
        match res {
            Ok((idx, h, rec)) => {
                self.pos = self.log.advance(idx, off + h.total_len() as u32);
                Some(Ok(rec))
            }
            Err(e) => {
                self.pos = None;
                let e = match e {
                    Error::NotFound(_) => {
                        self.log
                            .corrupt(idx, off, "no valid record where the previous one ends")
                    }
                    e => e,
                };
                Some(Err(e))
            }
        }
    }
}
