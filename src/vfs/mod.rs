//! The file layer under the log and the checkpoints.
//!
//! Everything dbrep stores goes through [`Vfs`], so that tests and the
//! simulator can swap the real file system ([`StdFs`]) for a simulated one
//! that loses unsynced writes and tears the last one at a crash (the
//! `testing` feature's `SimFs`).
//!
//! The contract every implementation keeps:
//! - `write_at` makes data visible to later reads at once, but durable only
//!   after `sync` on that file returns.
//! - `rename`, `remove` and file creation are atomic; they are durable once
//!   `sync_dir` on the parent returns.
//! - Methods take `&self`, so one file handle can be synced from one thread
//!   while another thread keeps appending (group commit relies on this).

mod std_fs;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use std_fs::StdFs;

/// An open file.
pub trait VfsFile: Send + Sync {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file holds no bytes.
    #[cfg(any(test, feature = "testing"))]
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every write so far durable.
    fn sync(&self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`, failing with `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

/// A directory tree of files: the real one, or a simulated one.
pub trait Vfs: Send + Sync {
    /// Creates a directory and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the regular files directly inside `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for reading and writing, creating it (empty) if `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>>;
    /// True if `path` names an existing file.
    fn exists(&self, path: &Path) -> bool;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Joins a directory and a file name.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Replaces `dir/name` with `bytes` so that a crash at any instant leaves
/// either the old file or the new one, whole: write a temporary file, fsync
/// it, rename it over the target, fsync the directory.
pub fn write_atomic(vfs: &dyn Vfs, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    if vfs.exists(&tmp) {
        vfs.remove(&tmp)?;
    }
    let file = vfs.open(&tmp, true)?;
    file.set_len(0)?;
    file.write_at(bytes, 0)?;
    file.sync()?;
    drop(file);
    vfs.rename(&tmp, &target)?;
    vfs.sync_dir(dir)
}

/// Reads a whole file if it exists, refusing one longer than `max_bytes`
/// (so a damaged length cannot make the caller allocate without bound).
pub fn read_whole(vfs: &dyn Vfs, path: &Path, max_bytes: u64) -> io::Result<Option<Vec<u8>>> {
    if !vfs.exists(path) {
        return Ok(None);
    }
    let file = vfs.open(path, false)?;
    let len = file.len()?;
    if len > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {len} bytes, more than the {max_bytes} allowed",
                path.display()
            ),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(Some(buf))
}
