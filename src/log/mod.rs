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
//! # Failures are fatal
//!
//! After a failed write, fsync or file operation the files may hold any
//! prefix of what was asked, and a later fsync that reports success proves
//! nothing (on Linux the kernel may have dropped the failed pages and
//! cleared the error). So the first such failure puts the log into a
//! failed state: that call and every later one that would write, sync or
//! trim returns [`Error::RunRecovery`] (see [`Log::failure`]), nothing is
//! retried, and the log must be dropped and reopened, which recovers it
//! from what really is on disk.

mod append;
mod open;
mod read;
pub mod record;
mod recovery;
pub mod segment;
mod sync;
mod trim;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use record::{RecordType, RECORD_HEADER_LEN};
// Used by the tests, the fuzzers and the benchmarks (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub use record::{
    decode_record, encode_record, peek_header, split_checked, split_records, BatchIter,
    CheckedBatch, CheckedIter, CheckedRecord, Record, RecordHeader, RecordIter,
};
#[cfg(any(test, feature = "testing"))]
pub use segment::SEGMENT_HEADER_LEN;
pub(crate) use trim::remove_segment_files;

use crate::error::Error;
#[cfg(any(test, feature = "testing"))]
use crate::error::Result;
use crate::lsn::Lsn;
use crate::vfs::{Vfs, VfsFile};
use segment::segment_name;

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
    /// buffer fills, at [`Env::log_flush`](crate::Env::log_flush), or at
    /// rotation. Fastest; a
    /// crash loses whatever was not yet written.
    NoSync,
}

/// How the log stores and syncs records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A master starts a new segment when the next record would make the
    /// current one larger than this. Larger segments mean fewer files and
    /// fsyncs at rotation; smaller ones let a checkpoint
    /// ([`Env::checkpoint`](crate::Env::checkpoint)) reclaim space in finer steps. Default 10 MiB.
    pub segment_size_bytes: u32,
    /// Largest encoded record (header included) the log accepts or reads;
    /// bounds the memory a damaged length field can make recovery allocate.
    /// Default 16 MiB.
    pub max_record_bytes: u32,
    /// What a commit waits for before it returns.
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
    /// Set when a write, fsync or file operation failed (see [`Log::failure`]).
    failed: Option<String>,
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

    /// Asserts (in debug builds) the order of the log's ends: what is
    /// durable was written, what was written was appended, and the end is
    /// not before the base.
    #[inline]
    pub(super) fn debug_assert_ends(&self) {
        debug_assert!(
            self.durable_lsn <= self.written_lsn && self.written_lsn <= self.last_lsn,
            "log ends out of order: durable {} written {} last {}",
            self.durable_lsn,
            self.written_lsn,
            self.last_lsn
        );
        debug_assert!(
            self.base_lsn <= self.last_lsn,
            "log ends before its base: base {} last {}",
            self.base_lsn,
            self.last_lsn
        );
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

    /// The configuration the log runs with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Approximate bytes held in memory or on disk, for statistics.
    #[cfg(any(test, feature = "testing"))]
    pub fn bytes_held(&self) -> u64 {
        self.segs.iter().map(|s| s.end as u64).sum()
    }

    /// Writes and fsyncs everything, then closes the log, reporting any
    /// error (dropping a log does the same but has to ignore errors).
    #[cfg(any(test, feature = "testing"))]
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
