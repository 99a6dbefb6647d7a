//! Opening a log from its files: header checks, the record scan, and torn
//! tail repair. See the [parent module](super) for the rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{peek_header, RecordHeader, RECORD_HEADER_LEN};
use super::segment::{parse_segment_name, segment_name, SegmentHeader, SEGMENT_HEADER_LEN};
use super::{Log, LogConfig, RecoveryReport, Segment, Store};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::vfs::{Vfs, VfsFile};

/// How much of a segment the scan reads at a time.
const WINDOW: usize = 1 << 20;

/// A sliding read window over one file, so the scan does one read per
/// megabyte instead of two per record.
struct Window<'a> {
    file: &'a dyn VfsFile,
    file_len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl<'a> Window<'a> {
    fn new(file: &'a dyn VfsFile, file_len: u64) -> Window<'a> {
        Window {
            file,
            file_len,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes `off..off+len`; callers keep the range inside the file and
    /// `len` within the record size limit, which bounds the allocation.
    fn get(&mut self, off: u64, len: usize) -> std::io::Result<&[u8]> {
        let inside = off >= self.start && off + len as u64 <= self.start + self.buf.len() as u64;
        if !inside {
            let n = (len.max(WINDOW) as u64).min(self.file_len - off) as usize;
            self.buf.resize(n, 0);
            self.file.read_exact_at(&mut self.buf, off)?;
            self.start = off;
        }
        let s = (off - self.start) as usize;
        Ok(&self.buf[s..s + len])
    }
}

enum Bad {
    Io(std::io::Error),
    Record(String),
}

/// Checks the record at `pos` of segment `file_no`: whole, CRC-correct and
/// naming its own position.
fn check_at(
    w: &mut Window<'_>,
    file_no: u32,
    pos: u64,
    max_payload: u32,
) -> std::result::Result<RecordHeader, Bad> {
    if w.file_len - pos < RECORD_HEADER_LEN as u64 {
        return Err(Bad::Record(format!(
            "record header truncated ({} bytes left in the file)",
            w.file_len - pos
        )));
    }
    let hb = w.get(pos, RECORD_HEADER_LEN).map_err(Bad::Io)?;
    let h = peek_header(hb).map_err(|e| Bad::Record(e.to_string()))?;
    let here = Lsn::new(file_no, pos as u32);
    if h.lsn != here {
        return Err(Bad::Record(format!(
            "record header names LSN {}, not its position {here}",
            h.lsn
        )));
    }
    if h.len > max_payload {
        return Err(Bad::Record(format!(
            "record payload length {} exceeds the limit of {max_payload}",
            h.len
        )));
    }
    if pos + h.total_len() as u64 > w.file_len {
        return Err(Bad::Record(format!(
            "record of {} bytes runs past the end of the file",
            h.total_len()
        )));
    }
    let bytes = w.get(pos, h.total_len()).map_err(Bad::Io)?;
    let crc = super::record::crc32(&bytes[8..]);
    if crc != h.crc {
        return Err(Bad::Record("record checksum mismatch".into()));
    }
    Ok(h)
}

/// True if any offset after `from` holds a valid record naming that offset.
fn valid_record_after(
    w: &mut Window<'_>,
    file_no: u32,
    from: u64,
    max_payload: u32,
) -> Result<bool> {
    let mut pos = from;
    let mut want = [0u8; 8];
    want[..4].copy_from_slice(&file_no.to_le_bytes());
    while pos + RECORD_HEADER_LEN as u64 <= w.file_len {
        want[4..].copy_from_slice(&(pos as u32).to_le_bytes());
        // Cheap filter first: a record always names its own position.
        let hit = match w.get(pos, RECORD_HEADER_LEN) {
            Ok(b) => b[8..16] == want,
            Err(e) => return Err(Error::io("scan log segment", PathBuf::new(), e)),
        };
        if hit {
            match check_at(w, file_no, pos, max_payload) {
                Ok(_) => return Ok(true),
                Err(Bad::Io(e)) => return Err(Error::io("scan log segment", PathBuf::new(), e)),
                Err(Bad::Record(_)) => {}
            }
        }
        pos += 1;
    }
    Ok(false)
}

struct Scanned {
    end: u32,
    last_lsn: Lsn,
    last_gen: u32,
}

struct Found {
    file_no: u32,
    path: PathBuf,
    file: Arc<dyn VfsFile>,
    len: u64,
    hdr: SegmentHeader,
    scanned: Option<Scanned>,
}

fn corrupt(path: &Path, offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

/// Scans every record of one segment. Damage in the last segment with no
/// valid record after it is cut off and returned as the cut.
fn scan(
    seg: &Found,
    is_last: bool,
    max_payload: u32,
    cut: &mut Option<(PathBuf, u64, u64)>,
) -> Result<Scanned> {
    let io = |e| Error::io("read log segment", &seg.path, e);
    let mut w = Window::new(&*seg.file, seg.len);
    let mut pos = seg.hdr.first_off as u64;
    let mut last_lsn = seg.hdr.base_lsn;
    let mut last_gen = seg.hdr.base_gen;
    while pos < seg.len {
        let what = match check_at(&mut w, seg.file_no, pos, max_payload) {
            Ok(h) => {
                if h.prev_lsn != last_lsn {
                    // A whole, checksummed record in the wrong place is not a torn write.
                    return Err(corrupt(
                        &seg.path,
                        pos,
                        format!(
                            "record's prev LSN is {}, but the record before it is {last_lsn}",
                            h.prev_lsn
                        ),
                    ));
                }
                last_lsn = h.lsn;
                last_gen = h.gen;
                pos += h.total_len() as u64;
                continue;
            }
            Err(Bad::Io(e)) => return Err(io(e)),
            Err(Bad::Record(what)) => what,
        };
        let follows =
            valid_record_after(&mut w, seg.file_no, pos + 1, max_payload).map_err(|e| match e {
                Error::Io { source, .. } => io(source),
                e => e,
            })?;
        if !is_last || follows {
            let what = if follows {
                format!("{what}, and valid records follow it")
            } else {
                what
            };
            return Err(corrupt(&seg.path, pos, what));
        }
        let dropped = seg.len - pos;
        log::warn!(
            "log recovery: cutting torn tail of {} at offset {pos} ({dropped} bytes): {what}",
            seg.path.display()
        );
        seg.file
            .set_len(pos)
            .map_err(|e| Error::io("cut torn log tail", &seg.path, e))?;
        seg.file
            .sync()
            .map_err(|e| Error::io("fsync log segment", &seg.path, e))?;
        *cut = Some((seg.path.clone(), pos, dropped));
        break;
    }
    Ok(Scanned {
        end: pos.max(seg.hdr.first_off as u64) as u32,
        last_lsn,
        last_gen,
    })
}

/// Opens an existing segment file and reads its length.
fn open_segment(vfs: &dyn Vfs, path: &Path) -> Result<(Arc<dyn VfsFile>, u64)> {
    let file = vfs
        .open(path, false)
        .map_err(|e| Error::io("open log segment", path, e))?;
    let len = file
        .len()
        .map_err(|e| Error::io("stat log segment", path, e))?;
    Ok((file, len))
}

pub(super) fn recover(
    vfs: Arc<dyn Vfs>,
    dir: &Path,
    config: LogConfig,
    ckpt_lsn: Lsn,
    ckpt_gen: u32,
) -> Result<(Log, RecoveryReport)> {
    vfs.create_dir_all(dir)
        .map_err(|e| Error::io("create log directory", dir, e))?;
    let names = vfs
        .list(dir)
        .map_err(|e| Error::io("list log directory", dir, e))?;
    let mut nums: Vec<u32> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    nums.sort_unstable();
    for w in nums.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(corrupt(
                &dir.join(segment_name(w[0] + 1)),
                0,
                format!(
                    "log segment missing: files {} and {} are not contiguous",
                    w[0], w[1]
                ),
            ));
        }
    }
    let max_payload = config.max_payload();
    let mut cut = None;
    // A last file without a whole header is a segment whose creation was torn.
    if let Some(&last) = nums.last() {
        let path = dir.join(segment_name(last));
        let (file, len) = open_segment(&*vfs, &path)?;
        if len < SEGMENT_HEADER_LEN as u64 {
            log::warn!(
                "log recovery: removing {} with a torn header ({len} bytes)",
                path.display()
            );
            drop(file);
            vfs.remove(&path)
                .map_err(|e| Error::io("remove torn log segment", &path, e))?;
            vfs.sync_dir(dir)
                .map_err(|e| Error::io("sync log directory", dir, e))?;
            cut = Some((path, 0, len));
            nums.pop();
        }
    }
    let Some(&last_no) = nums.last() else {
        let mut log = Log::in_memory(config.clone());
        log.config = config;
        log.vfs = Some(vfs);
        log.dir = dir.to_path_buf();
        log.set_empty(ckpt_lsn, ckpt_gen);
        let report = RecoveryReport {
            cut,
            segments: 0,
            last_lsn: ckpt_lsn,
        };
        return Ok((log, report));
    };
    let scan_from = if ckpt_lsn.is_zero() {
        nums[0]
    } else {
        ckpt_lsn.file.clamp(nums[0], last_no)
    };

    let mut found: Vec<Found> = Vec::with_capacity(nums.len());
    for (i, &num) in nums.iter().enumerate() {
        let path = dir.join(segment_name(num));
        let (file, len) = open_segment(&*vfs, &path)?;
        if len < SEGMENT_HEADER_LEN as u64 {
            return Err(corrupt(
                &path,
                0,
                format!("segment header truncated ({len} bytes)"),
            ));
        }
        if len > u32::MAX as u64 {
            return Err(corrupt(
                &path,
                0,
                format!("segment of {len} bytes is longer than 4 GiB"),
            ));
        }
        let mut hb = [0u8; SEGMENT_HEADER_LEN];
        file.read_exact_at(&mut hb, 0)
            .map_err(|e| Error::io("read log segment header", &path, e))?;
        let hdr = SegmentHeader::decode(&hb).map_err(|what| corrupt(&path, 0, what))?;
        if hdr.file_no != num {
            return Err(corrupt(
                &path,
                12,
                format!("header says file number {}", hdr.file_no),
            ));
        }
        if hdr.base_lsn >= Lsn::new(num, hdr.first_off) {
            return Err(corrupt(
                &path,
                16,
                format!("base LSN {} is not before the segment", hdr.base_lsn),
            ));
        }
        if hdr.first_off as usize != SEGMENT_HEADER_LEN && hdr.base_lsn.file != num {
            // A hole before the first record only exists when the log was
            // reset to continue from the middle of this very file.
            return Err(corrupt(
                &path,
                28,
                format!(
                    "first record offset {} without a base in this file",
                    hdr.first_off
                ),
            ));
        }
        if hdr.first_off as u64 > len && i + 1 != nums.len() {
            return Err(corrupt(
                &path,
                28,
                format!(
                    "first record offset {} is past the end of the file",
                    hdr.first_off
                ),
            ));
        }
        let mut seg = Found {
            file_no: num,
            path,
            file,
            len,
            hdr,
            scanned: None,
        };
        if let Some(prev) = found.last() {
            let prev_last = prev.scanned.as_ref().map(|s| s.last_lsn);
            let ok = match prev_last {
                Some(l) => l == hdr.base_lsn,
                None => prev.hdr.base_lsn <= hdr.base_lsn,
            };
            if !ok {
                return Err(corrupt(
                    &seg.path,
                    16,
                    format!(
                        "segment base LSN {} does not follow the previous segment (last record {})",
                        hdr.base_lsn,
                        prev_last.unwrap_or(prev.hdr.base_lsn)
                    ),
                ));
            }
        }
        if num >= scan_from {
            seg.scanned = Some(scan(&seg, i + 1 == nums.len(), max_payload, &mut cut)?);
        }
        found.push(seg);
    }

    let mut log = Log::in_memory(config.clone());
    log.config = config;
    log.dir = dir.to_path_buf();
    let n = found.len();
    for i in 0..n {
        let (end, last_lsn, last_gen) = match &found[i].scanned {
            Some(s) => (s.end, s.last_lsn, s.last_gen),
            // Unscanned segments end where the next one's base says.
            None => (
                found[i].len as u32,
                found[i + 1].hdr.base_lsn,
                found[i + 1].hdr.base_gen,
            ),
        };
        let f = &found[i];
        log.segs.push_back(Segment {
            file_no: f.file_no,
            base_lsn: f.hdr.base_lsn,
            base_gen: f.hdr.base_gen,
            first_off: f.hdr.first_off,
            end,
            last_lsn,
            last_gen,
            store: Store::Disk {
                path: f.path.clone(),
                file: f.file.clone(),
            },
        });
    }
    let first = log.segs.front().expect("at least one segment");
    let last = log.segs.back().expect("at least one segment");
    let (base_lsn, base_gen, last_lsn, last_gen, end) = (
        first.base_lsn,
        first.base_gen,
        last.last_lsn,
        last.last_gen,
        last.end,
    );
    if !ckpt_lsn.is_zero() && ckpt_lsn > last_lsn {
        return Err(corrupt(
            dir,
            0,
            format!("checkpoint LSN {ckpt_lsn} is past the end of the log at {last_lsn}"),
        ));
    }
    if let Store::Disk { path, file } = &last.store {
        // Whatever the last process left with the OS is made durable before it counts.
        file.sync()
            .map_err(|e| Error::io("fsync log segment", path, e))?;
    }
    log.vfs = Some(vfs);
    log.base_lsn = base_lsn;
    log.base_gen = base_gen;
    log.last_lsn = last_lsn;
    log.last_gen = last_gen;
    log.written = end;
    log.written_lsn = last_lsn;
    log.durable_lsn = last_lsn;
    log.debug_assert_ends();
    let report = RecoveryReport {
        cut,
        segments: n as u32,
        last_lsn,
    };
    Ok((log, report))
}
