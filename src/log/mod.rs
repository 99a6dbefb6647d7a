//! The durable, segmented log.
//!
//! The log is a sequence of records (see [`record`]) stored back to back in
//! segment files (see [`segment`]) named `log.0000000001`, `log.0000000002`,
//! ... in the environment directory. A record's [`Lsn`] is its segment file
//! number and byte offset, so LSNs are the same on every site holding the
//! record: clients append the master's encoded bytes unchanged.
//!
//! # On-disk format
//!
//! Every segment file starts with a 32-byte header (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"DBREPLOG"` |
//! | 8 | 4 | format version, 1 |
//! | 12 | 4 | file number (must match the name) |
//! | 16 | 8 | base LSN (`Lsn::to_u64`): prev LSN of the first record in the file |
//! | 24 | 4 | base generation: generation of that base record |
//! | 28 | 4 | first record offset, 0 meaning 32 (non-zero only after [`Log::reset`] to the middle of a master's segment) |
//!
//! followed by records, each a 32-byte header and its payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | payload length |
//! | 4 | 4 | CRC32 of bytes 8..32+len |
//! | 8 | 8 | LSN of this record (file u32, offset u32) |
//! | 16 | 8 | prev LSN (`Lsn::ZERO` if none) |
//! | 24 | 4 | generation |
//! | 28 | 1 | record type: 1 = Commit, 2 = GenStart |
//! | 29 | 3 | reserved, zero |
//! | 32 | len | payload |
//!
//! A master starts a new segment (file number + 1) when the next record
//! would push the current one past `segment_size_bytes`; a segment always
//! takes at least one record.
//!
//! # Writing and durability
//!
//! Appends go to a tail buffer that is written with one `write_at` when
//! [`Log::flush`] (per [`Durability`]), [`Log::write_out`] or
//! [`Log::force_sync`] asks, when it reaches [`TAIL_WRITE_BYTES`], or at
//! rotation. Rotation also fsyncs the finished segment, in every durability
//! mode: it costs one fsync per segment and means only the current segment
//! can ever hold unsynced data, which keeps group commit
//! ([`Log::sync_point`]) to a single file.
//!
//! # Recovery
//!
//! [`Log::open`] checks every segment header and that file numbers are
//! contiguous, then scans records from the checkpoint's segment on, checking
//! each record's CRC, that it names its own position, and that its prev LSN
//! is the record before it. Damage in the last segment is a *torn tail* if
//! no valid record follows it anywhere in the file: the file is cut there
//! and the cut reported in [`RecoveryReport`]. That includes a flipped byte
//! in the very last record, which cannot be told apart from a torn write.
//! Damage followed by valid data, or in any earlier segment, is
//! [`Error::Corrupt`], naming the file and offset: later data is never
//! dropped silently.
//!
//! After an I/O error the in-memory state may be ahead of the files; the
//! log should then be dropped and reopened.

pub mod record;
mod recovery;
pub mod segment;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use record::{
    decode_record, encode_record, peek_header, split_checked, split_records, BatchIter,
    CheckedBatch, CheckedIter, CheckedRecord, Record, RecordHeader, RecordIter, RecordType,
    RECORD_HEADER_LEN,
};
pub use segment::SEGMENT_HEADER_LEN;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::vfs::{Vfs, VfsFile};
use segment::{segment_name, SegmentHeader};

/// Tail-buffer size at which appends write the buffer out on their own.
pub const TAIL_WRITE_BYTES: usize = 1 << 20;

/// An in-memory segment reserves room for this many bytes at most when it starts.
const MEM_SEGMENT_RESERVE_MAX: usize = 64 << 20;

/// Buffers of removed in-memory segments kept for reuse, at most this many
/// bytes of them. A fresh buffer costs a page fault per 4 KiB as it fills,
/// and a log trimmed at checkpoints frees buffers at the rate it needs them.
const MEM_SPARE_BYTES_MAX: usize = 64 << 20;

/// When a commit's records reach the disk, in Berkeley DB's terms.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// A commit writes the log and fsyncs it: survives power loss, costs an
    /// fsync per commit (or per group, with group commit).
    #[default]
    Sync,
    /// A commit writes the log to the operating system without an fsync:
    /// survives a process crash but not a power loss or OS crash.
    WriteNoSync,
    /// A commit leaves records in the log buffer; they are written when the
    /// buffer fills, at [`Log::force_sync`], or at rotation. Fastest; a
    /// crash loses whatever was not yet written.
    NoSync,
}

/// How the log stores and syncs records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A master starts a new segment when the next record would make the
    /// current one larger than this. Larger segments mean fewer files and
    /// fsyncs at rotation; smaller ones let [`Log::remove_before`] reclaim
    /// space in finer steps. Default 10 MiB.
    pub segment_size_bytes: u32,
    /// Largest encoded record (header included) the log accepts or reads;
    /// bounds the memory a damaged length field can make recovery allocate.
    /// Default 16 MiB.
    pub max_record_bytes: u32,
    /// What [`Log::flush`] does at a commit.
    pub durability: Durability,
    /// Keep the log in memory only (no files, nothing survives the process):
    /// for tests and benchmarks.
    pub in_memory: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_size_bytes: 10 << 20,
            max_record_bytes: 16 << 20,
            durability: Durability::Sync,
            in_memory: false,
        }
    }
}

impl LogConfig {
    /// Largest payload a record may carry under this configuration.
    pub fn max_payload(&self) -> u32 {
        self.max_record_bytes
            .saturating_sub(RECORD_HEADER_LEN as u32)
    }
}

/// What [`Log::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A torn tail that was cut off: the file, the offset it was cut at, and
    /// how many bytes were dropped.
    pub cut: Option<(PathBuf, u64, u64)>,
    /// How many segment files the log holds after recovery.
    pub segments: u32,
    /// The last record after recovery (the base LSN if there is none).
    pub last_lsn: Lsn,
}

enum Store {
    /// The whole segment, header included, so offsets index it directly.
    Mem(Vec<u8>),
    Disk {
        path: PathBuf,
        file: Arc<dyn VfsFile>,
    },
}

struct Segment {
    file_no: u32,
    base_lsn: Lsn,
    base_gen: u32,
    first_off: u32,
    /// End of the last record (buffered ones included).
    end: u32,
    /// Last record in this segment, `base_lsn` if it holds none.
    last_lsn: Lsn,
    last_gen: u32,
    store: Store,
}

impl Segment {
    fn path(&self) -> PathBuf {
        match &self.store {
            Store::Mem(_) => PathBuf::from("<memory>").join(segment_name(self.file_no)),
            Store::Disk { path, .. } => path.clone(),
        }
    }

    fn has_records(&self) -> bool {
        self.end > self.first_off
    }
}

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

/// A segmented, checksummed, append-only log of replication records.
pub struct Log {
    config: LogConfig,
    vfs: Option<Arc<dyn Vfs>>,
    dir: PathBuf,
    segs: VecDeque<Segment>,
    base_lsn: Lsn,
    base_gen: u32,
    last_lsn: Lsn,
    last_gen: u32,
    /// Bytes of the last segment not yet written: they belong at `written`.
    tail: Vec<u8>,
    written: u32,
    written_lsn: Lsn,
    durable_lsn: Lsn,
    /// Emptied buffers of removed in-memory segments (see [`MEM_SPARE_BYTES_MAX`]).
    spare: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("in_memory", &self.vfs.is_none())
            .field("segments", &self.segs.len())
            .field("base_lsn", &self.base_lsn)
            .field("last_lsn", &self.last_lsn)
            .field("written_lsn", &self.written_lsn)
            .field("durable_lsn", &self.durable_lsn)
            .finish()
    }
}

fn limit(what: &'static str, limit: u64, got: u64) -> Error {
    Error::Limit { what, limit, got }
}

impl Log {
    /// Opens (or creates) the log in `dir`; `ckpt_lsn` = LSN of the latest
    /// checkpoint (`Lsn::ZERO` if none): recovery scans records from its
    /// segment on, and an empty log continues from it (with generation
    /// `ckpt_gen`). With `config.in_memory` no file is touched.
    ///
    /// A checkpoint LSN past the end of the recovered log is
    /// [`Error::Corrupt`]: the checkpoint would describe records the log
    /// lost, so callers must [`Log::force_sync`] before recording one.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        config: LogConfig,
        ckpt_lsn: Lsn,
        ckpt_gen: u32,
    ) -> Result<(Log, RecoveryReport)> {
        if config.in_memory {
            let mut log = Log::in_memory(config);
            log.set_empty(ckpt_lsn, ckpt_gen);
            let report = RecoveryReport {
                cut: None,
                segments: 0,
                last_lsn: ckpt_lsn,
            };
            return Ok((log, report));
        }
        recovery::recover(vfs, dir, config, ckpt_lsn, ckpt_gen)
    }

    /// A log held in memory only, starting at the beginning.
    pub fn in_memory(config: LogConfig) -> Log {
        Log {
            config: LogConfig {
                in_memory: true,
                ..config
            },
            vfs: None,
            dir: PathBuf::new(),
            segs: VecDeque::new(),
            base_lsn: Lsn::ZERO,
            base_gen: 0,
            last_lsn: Lsn::ZERO,
            last_gen: 0,
            tail: Vec::new(),
            written: 0,
            written_lsn: Lsn::ZERO,
            durable_lsn: Lsn::ZERO,
            spare: Vec::new(),
        }
    }

    fn set_empty(&mut self, base: Lsn, base_gen: u32) {
        self.segs.clear();
        self.tail.clear();
        self.written = 0;
        self.base_lsn = base;
        self.base_gen = base_gen;
        self.last_lsn = base;
        self.last_gen = base_gen;
        self.written_lsn = base;
        self.durable_lsn = base;
    }

    fn io_err(&self, op: &'static str, path: &Path, e: std::io::Error) -> Error {
        Error::io(op, path, e)
    }

    fn corrupt(&self, idx: usize, offset: u32, what: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.segs[idx].path(),
            offset: offset as u64,
            what: what.into(),
        }
    }

    fn seg_index(&self, file_no: u32) -> Option<usize> {
        let first = self.segs.front()?.file_no;
        let idx = file_no.checked_sub(first)? as usize;
        (idx < self.segs.len()).then_some(idx)
    }

    /// Appends bytes `off..off+len` of segment `idx` to `out`; the range
    /// must lie inside `first_off..end`.
    fn read_bytes(&self, idx: usize, off: u32, len: usize, out: &mut Vec<u8>) -> Result<()> {
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
    fn read_header_bytes(
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
    fn record_header(&self, lsn: Lsn) -> Result<(usize, RecordHeader)> {
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
    fn read_record_raw(&self, lsn: Lsn, out: &mut Vec<u8>) -> Result<(usize, RecordHeader)> {
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
    fn advance(&self, mut idx: usize, mut off: u32) -> Option<(usize, u32)> {
        loop {
            let seg = self.segs.get(idx)?;
            if off < seg.end {
                return Some((idx, off));
            }
            idx += 1;
            off = self.segs.get(idx)?.first_off;
        }
    }

    fn first_pos(&self) -> Option<(usize, u32)> {
        self.advance(0, self.segs.front()?.first_off)
    }

    fn pos_of(&self, lsn: Lsn) -> Result<Option<(usize, u32)>> {
        if lsn.is_zero() || lsn == self.base_lsn {
            return Ok(self.first_pos());
        }
        let (idx, _) = self.record_header(lsn)?;
        Ok(Some((idx, lsn.offset)))
    }

    fn pos_after(&self, lsn: Lsn) -> Result<Option<(usize, u32)>> {
        if lsn.is_zero() || lsn == self.base_lsn {
            return Ok(self.first_pos());
        }
        let (idx, h) = self.record_header(lsn)?;
        Ok(self.advance(idx, lsn.offset + h.total_len() as u32))
    }

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
    /// [`split_checked`]): the CRC is not computed again, every other check
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
    fn append_at_end(&mut self, rec: &CheckedRecord<'_>) -> bool {
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
    fn end_at(&mut self, end: u32, lsn: Lsn, gen: u32) {
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
    fn append_checked_slow(&mut self, rec: CheckedRecord<'_>) -> Result<Lsn> {
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
    fn start_segment(
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

    /// Fsyncs the current segment if it holds written, unsynced records.
    fn sync_current(&mut self) -> Result<()> {
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
    fn last_record_in_memory(&self) -> Option<&[u8]> {
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

    /// The first record held, `Lsn::ZERO` if none.
    pub fn first_lsn(&self) -> Lsn {
        match self.first_pos() {
            Some((idx, off)) => Lsn::new(self.segs[idx].file_no, off),
            None => Lsn::ZERO,
        }
    }

    /// The record just before the first one held (`Lsn::ZERO` for a log that
    /// starts at the beginning).
    pub fn base_lsn(&self) -> Lsn {
        self.base_lsn
    }

    /// The last record, or [`Log::base_lsn`] when the log is empty.
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }

    /// Generation of the last record, or the base generation when empty.
    pub fn last_gen(&self) -> u32 {
        self.last_gen
    }

    /// The prev LSN of the record at `lsn`.
    pub fn prev_of(&self, lsn: Lsn) -> Result<Lsn> {
        Ok(self.record_header(lsn)?.1.prev_lsn)
    }

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
    fn all_durable(&self) -> bool {
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

    /// The configuration the log runs with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Approximate bytes held in memory or on disk, for statistics.
    pub fn bytes_held(&self) -> u64 {
        self.segs.iter().map(|s| s.end as u64).sum()
    }

    /// Writes and fsyncs everything, then closes the log, reporting any
    /// error (dropping a log does the same but has to ignore errors).
    pub fn close(mut self) -> Result<()> {
        let r = self.force_sync();
        self.tail.clear();
        r
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if self.vfs.is_some() {
            // A clean shutdown flushes like Berkeley DB's env close; errors
            // cannot be reported here, and recovery copes with a torn tail.
            let _ = self.force_sync();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_checked_keeps_every_check_but_the_crc() {
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
