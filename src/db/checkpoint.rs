//! Checkpoint files: one snapshot per environment directory, replaced
//! atomically.
//!
//! A new checkpoint is written to [`CHECKPOINT_TMP_FILE`], made durable,
//! renamed over [`CHECKPOINT_FILE`], and the directory synced. A crash
//! before the rename leaves the old checkpoint whole (plus a stray temporary
//! file, ignored and removed at the next [`read_checkpoint`]); a crash after
//! it leaves the new one whole, because its bytes were durable before the
//! rename could be.

use std::path::{Path, PathBuf};

use super::snapshot::{decode_inner, Snapshot};
use super::txn::OpLimits;
use crate::error::{Error, Result};
use crate::vfs::{join, write_atomic, Vfs, VfsFile};

/// Name of the checkpoint file inside the environment directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Name of the file a new checkpoint is written to before the rename.
pub const CHECKPOINT_TMP_FILE: &str = "checkpoint.tmp";

/// Bytes read per call, so that the buffer grows with what the file really
/// holds rather than with the length it reports.
const READ_CHUNK: usize = 1 << 20;

/// Atomically replaces the checkpoint in `dir` (which must exist) with
/// `snapshot_bytes` (from [`super::encode_snapshot`]).
///
/// When this returns `Ok`, the new checkpoint is durable. If it fails or
/// the process crashes part-way, the directory holds either the old
/// checkpoint or the new one, whole.
pub fn write_checkpoint(vfs: &dyn Vfs, dir: &Path, snapshot_bytes: &[u8]) -> Result<()> {
    // `write_atomic` writes `CHECKPOINT_TMP_FILE` (the target name plus
    // ".tmp"), syncs it, renames it over the target and syncs the directory.
    write_atomic(vfs, dir, CHECKPOINT_FILE, snapshot_bytes)
        .map_err(|e| Error::io("write checkpoint", join(dir, CHECKPOINT_FILE), e))
}

/// Reads and checks the checkpoint in `dir`; `Ok(None)` if there is none.
///
/// Meant for opening an environment: a stray [`CHECKPOINT_TMP_FILE`] left
/// by a crash during [`write_checkpoint`] is removed, so this must not run
/// while a checkpoint is being written. A checkpoint that fails any check
/// is [`Error::Corrupt`] naming the file and the offset of the damage.
pub fn read_checkpoint(vfs: &dyn Vfs, dir: &Path, limits: &OpLimits) -> Result<Option<Snapshot>> {
    let tmp = join(dir, CHECKPOINT_TMP_FILE);
    if vfs.exists(&tmp) {
        log::info!(
            "removing stray {} left by an interrupted checkpoint",
            tmp.display()
        );
        vfs.remove(&tmp)
            .map_err(|e| Error::io("remove stray checkpoint", &tmp, e))?;
    }
    // No size limit here beyond what the file really holds: the decoded
    // store needs that much memory anyway, and reads are chunked so a
    // misreported length cannot make us allocate more than is present.
    let path = join(dir, CHECKPOINT_FILE);
    let Some(bytes) = read_file(vfs, &path, u64::MAX)? else {
        return Ok(None);
    };
    decode_inner(&bytes, limits)
        .map(Some)
        .map_err(|d| d.into_error(|offset, what| corrupt(&path, offset, what)))
}

/// The raw bytes of the checkpoint in `dir`, or `Ok(None)` if there is none,
/// for a master to stream to a client being initialised.
///
/// Fails with [`Error::Limit`] before reading anything if the file is
/// longer than `max_bytes`. The bytes are not checked here (the receiver
/// decodes them with [`super::decode_snapshot`]). Unlike
/// [`read_checkpoint`], this leaves any [`CHECKPOINT_TMP_FILE`] alone, since
/// a checkpoint may be being written at the same time.
#[cfg(any(test, feature = "testing"))]
pub fn read_checkpoint_bytes(vfs: &dyn Vfs, dir: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>> {
    read_file(vfs, &join(dir, CHECKPOINT_FILE), max_bytes)
}

fn corrupt(path: &Path, offset: u64, what: String) -> Error {
    Error::Corrupt {
        path: PathBuf::from(path),
        offset,
        what: format!("checkpoint: {what}"),
    }
}

fn read_file(vfs: &dyn Vfs, path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>> {
    if !vfs.exists(path) {
        return Ok(None);
    }
    let file = match vfs.open(path, false) {
        Ok(f) => f,
        // Removed between the check and the open: treat as absent.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open checkpoint", path, e)),
    };
    let len = file
        .len()
        .map_err(|e| Error::io("stat checkpoint", path, e))?;
    if len > max_bytes {
        return Err(Error::Limit {
            what: "checkpoint file length",
            limit: max_bytes,
            got: len,
        });
    }
    read_all(file.as_ref(), len)
        .map_err(|e| Error::io("read checkpoint", path, e))
        .map(Some)
}

/// Reads up to `len` bytes from the start of `file`, stopping early at end
/// of file (the decoder then reports the truncation).
fn read_all(file: &dyn VfsFile, len: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while (out.len() as u64) < len {
        let want = (len - out.len() as u64).min(READ_CHUNK as u64) as usize;
        let start = out.len();
        out.resize(start + want, 0);
        let n = file.read_at(&mut out[start..], start as u64)?;
        out.truncate(start + n);
        if n == 0 {
            break;
        }
    }
    Ok(out)
}
