//! A simulated, in-memory file system that can crash and fail on demand.
//!
//! [`SimFs`] keeps, for every file, the bytes that would survive a power loss
//! (its *durable* contents) and the bytes a reader sees now (its *current*
//! contents), plus one global, ordered list of the writes and length changes
//! made since each file's last `sync`. A [`SimFs::crash`] then decides which
//! of those pending operations reach the disk, so tests can check what a log
//! holds after power loss, a process kill, or a write torn half-way.
//!
//! Simplification: directory operations (create, rename, remove) are atomic
//! and durable at once, so `sync_dir` does nothing. Only file *contents*
//! need a `sync` to become durable. The real file system is stricter; code
//! that must run on it still has to call `sync_dir`.
//!
//! Everything is deterministic: no randomness and no clock, so a failing
//! test replays exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::vfs::{Vfs, VfsFile};

/// Which unsynced operations survive a [`SimFs::crash`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Power loss: every file reverts to its durable contents.
    LoseUnsynced,
    /// Process kill: the operating system had everything written, so every
    /// pending operation becomes durable.
    KeepAll,
    /// Power loss part-way through write-back: in global write order, the
    /// first `ops` pending operations survive, and of the next one a write
    /// keeps only its first `torn_bytes` bytes (a length change is lost).
    /// Everything after that is lost.
    KeepPrefix {
        /// How many pending operations survive whole.
        ops: usize,
        /// How many leading bytes of the following write survive.
        torn_bytes: usize,
    },
}

#[derive(Clone, Debug)]
enum OpKind {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug)]
struct PendingOp {
    inode: u64,
    kind: OpKind,
}

#[derive(Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
}

#[derive(Default)]
struct State {
    /// Path to inode number; inodes outlive their names only while unsynced ops refer to them.
    names: BTreeMap<PathBuf, u64>,
    inodes: BTreeMap<u64, Inode>,
    dirs: BTreeSet<PathBuf>,
    pending: Vec<PendingOp>,
    next_inode: u64,
    /// Bumped at every crash; handles carry the epoch they were opened in.
    epoch: u64,
    writes_ok: u64,
    /// `Some(n)`: n more writes may succeed before the disk "dies".
    writes_left: Option<u64>,
    fail_sync: bool,
}

fn apply(buf: &mut Vec<u8>, kind: &OpKind) {
    match kind {
        OpKind::Write { offset, data } => {
            let off = *offset as usize;
            let end = off + data.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[off..end].copy_from_slice(data);
        }
        OpKind::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

fn io_err(msg: &str) -> io::Error {
    io::Error::other(msg.to_string())
}

impl State {
    fn dir_exists(&self, dir: &Path) -> bool {
        dir.as_os_str().is_empty() || dir == Path::new("/") || self.dirs.contains(dir)
    }

    fn check_alive(&self, epoch: u64) -> io::Result<()> {
        if epoch != self.epoch {
            return Err(io_err("handle from before a crash"));
        }
        Ok(())
    }

    fn disk_dead(&self) -> bool {
        self.writes_left == Some(0)
    }
}

/// An in-memory [`Vfs`] with crash simulation and fault injection.
///
/// Cloning gives another handle on the same file system, so a test can keep
/// one after handing another to the code under test.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("SimFs")
            .field("files", &st.names.len())
            .field("pending_ops", &st.pending.len())
            .field("epoch", &st.epoch)
            .finish()
    }
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Simulates a crash: decides per `mode` which pending operations become
    /// durable, resets every file to its durable contents, and kills every
    /// open handle. Fault injection is cleared too, since the machine that
    /// comes back up has a working disk.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.state.lock();
        let pending = std::mem::take(&mut st.pending);
        let (keep, torn) = match mode {
            CrashMode::LoseUnsynced => (0, None),
            CrashMode::KeepAll => (pending.len(), None),
            CrashMode::KeepPrefix { ops, torn_bytes } => (ops.min(pending.len()), Some(torn_bytes)),
        };
        for op in &pending[..keep] {
            if let Some(ino) = st.inodes.get_mut(&op.inode) {
                apply(&mut ino.durable, &op.kind);
            }
        }
        if let (Some(torn_bytes), Some(op)) = (torn, pending.get(keep)) {
            if let OpKind::Write { offset, data } = &op.kind {
                let n = torn_bytes.min(data.len());
                if n > 0 {
                    if let Some(ino) = st.inodes.get_mut(&op.inode) {
                        let kind = OpKind::Write {
                            offset: *offset,
                            data: data[..n].to_vec(),
                        };
                        apply(&mut ino.durable, &kind);
                    }
                }
            }
        }
        // Inodes with no name left were only kept alive for pending ops.
        let named: BTreeSet<u64> = st.names.values().copied().collect();
        st.inodes.retain(|id, _| named.contains(id));
        for ino in st.inodes.values_mut() {
            ino.current = ino.durable.clone();
        }
        st.epoch += 1;
        st.writes_left = None;
        st.fail_sync = false;
    }

    /// How many operations (writes and length changes) are waiting for a sync, across all files.
    pub fn pending_ops(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// After `n` more successful `write_at` calls, every later `write_at`,
    /// `set_len` and `sync` fails, as if the disk died. `None` heals the disk.
    pub fn fail_writes_after(&self, n: Option<u64>) {
        self.state.lock().writes_left = n;
    }

    /// How many `write_at` calls have succeeded since the file system was made.
    pub fn write_count(&self) -> u64 {
        self.state.lock().writes_ok
    }

    /// Makes every `sync` fail (without changing anything) while `fail` is set.
    pub fn fail_sync(&self, fail: bool) {
        self.state.lock().fail_sync = fail;
    }

    /// Length of the durable contents of the file at `path`, if it exists.
    pub fn durable_len(&self, path: &Path) -> Option<u64> {
        let st = self.state.lock();
        let id = st.names.get(path)?;
        st.inodes.get(id).map(|i| i.durable.len() as u64)
    }

    /// Length of the current contents of the file at `path`, if it exists.
    pub fn current_len(&self, path: &Path) -> Option<u64> {
        let st = self.state.lock();
        let id = st.names.get(path)?;
        st.inodes.get(id).map(|i| i.current.len() as u64)
    }

    /// Flips every bit of the byte at `offset` in both the durable and the
    /// current contents of `path` (where that byte exists). Returns false if
    /// the file does not exist or the offset is past both ends.
    pub fn corrupt_byte(&self, path: &Path, offset: u64) -> bool {
        let mut st = self.state.lock();
        let Some(id) = st.names.get(path).copied() else {
            return false;
        };
        let Some(ino) = st.inodes.get_mut(&id) else {
            return false;
        };
        let off = offset as usize;
        let mut hit = false;
        for buf in [&mut ino.durable, &mut ino.current] {
            if let Some(b) = buf.get_mut(off) {
                *b ^= 0xFF;
                hit = true;
            }
        }
        hit
    }

    /// Full paths of every file, sorted.
    pub fn file_names(&self) -> Vec<PathBuf> {
        self.state.lock().names.keys().cloned().collect()
    }

    /// A copy of the current contents of `path`, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        let id = st.names.get(path)?;
        st.inodes.get(id).map(|i| i.current.clone())
    }
}

struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    epoch: u64,
}

impl SimFile {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> io::Result<R>) -> io::Result<R> {
        let mut st = self.state.lock();
        st.check_alive(self.epoch)?;
        if !st.inodes.contains_key(&self.inode) {
            return Err(io_err("file was removed"));
        }
        f(&mut st)
    }
}

impl VfsFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|st| Ok(st.inodes[&self.inode].current.len() as u64))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|st| {
            let cur = &st.inodes[&self.inode].current;
            let Ok(off) = usize::try_from(offset) else {
                return Ok(0);
            };
            if off >= cur.len() {
                return Ok(0);
            }
            let n = buf.len().min(cur.len() - off);
            buf[..n].copy_from_slice(&cur[off..off + n]);
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|st| {
            if st.disk_dead() {
                return Err(io_err("simulated disk failure (write)"));
            }
            if let Some(left) = st.writes_left.as_mut() {
                *left -= 1;
            }
            st.writes_ok += 1;
            let kind = OpKind::Write {
                offset,
                data: buf.to_vec(),
            };
            apply(
                &mut st.inodes.get_mut(&self.inode).expect("checked").current,
                &kind,
            );
            st.pending.push(PendingOp {
                inode: self.inode,
                kind,
            });
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|st| {
            if st.disk_dead() {
                return Err(io_err("simulated disk failure (set_len)"));
            }
            let kind = OpKind::SetLen(len);
            apply(
                &mut st.inodes.get_mut(&self.inode).expect("checked").current,
                &kind,
            );
            st.pending.push(PendingOp {
                inode: self.inode,
                kind,
            });
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.with(|st| {
            if st.disk_dead() || st.fail_sync {
                return Err(io_err("simulated disk failure (sync)"));
            }
            // Applying this file's ops in order gives exactly its current contents.
            let inode = self.inode;
            let ino = st.inodes.get_mut(&inode).expect("checked");
            ino.durable = ino.current.clone();
            st.pending.retain(|op| op.inode != inode);
            Ok(())
        })
    }
}

impl Vfs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        for anc in dir.ancestors() {
            if !anc.as_os_str().is_empty() {
                st.dirs.insert(anc.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        if !st.dir_exists(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        let mut st = self.state.lock();
        let inode = match st.names.get(path) {
            Some(id) => *id,
            None => {
                if !create {
                    return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
                }
                if !st.dir_exists(path.parent().unwrap_or(Path::new(""))) {
                    return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
                }
                st.next_inode += 1;
                let id = st.next_inode;
                st.inodes.insert(id, Inode::default());
                st.names.insert(path.to_path_buf(), id);
                id
            }
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
            epoch: st.epoch,
        }))
    }

    fn exists(&self, path: &Path) -> bool {
        self.state.lock().names.contains_key(path)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let Some(id) = st.names.remove(path) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        };
        // Removal is durable at once, so the file's unsynced ops can never land.
        st.pending.retain(|op| op.inode != id);
        st.inodes.remove(&id);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let Some(id) = st.names.remove(from) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        };
        if let Some(old) = st.names.insert(to.to_path_buf(), id) {
            st.pending.retain(|op| op.inode != old);
            st.inodes.remove(&old);
        }
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        // Directory operations are already durable in this model.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SimFs, PathBuf) {
        let fs = SimFs::new();
        let dir = PathBuf::from("/env");
        fs.create_dir_all(&dir).unwrap();
        (fs, dir)
    }

    fn read_all(f: &Arc<dyn VfsFile>) -> Vec<u8> {
        let mut v = vec![0u8; f.len().unwrap() as usize];
        f.read_exact_at(&mut v, 0).unwrap();
        v
    }

    #[test]
    fn reads_see_unsynced_writes() {
        let (fs, dir) = setup();
        let f = fs.open(&dir.join("a"), true).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.write_at(b"XY", 7).unwrap();
        assert_eq!(read_all(&f), b"hello\0\0XY");
        assert_eq!(fs.durable_len(&dir.join("a")), Some(0));
        assert_eq!(fs.pending_ops(), 2);
    }

    #[test]
    fn lose_unsynced_reverts_to_durable() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let f = fs.open(&p, true).unwrap();
        f.write_at(b"durable", 0).unwrap();
        f.sync().unwrap();
        f.write_at(b"lost", 7).unwrap();
        f.set_len(3).unwrap();
        fs.crash(CrashMode::LoseUnsynced);
        let f = fs.open(&p, false).unwrap();
        assert_eq!(read_all(&f), b"durable");
    }

    #[test]
    fn keep_all_keeps_everything() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let f = fs.open(&p, true).unwrap();
        f.write_at(b"abc", 0).unwrap();
        f.write_at(b"def", 3).unwrap();
        fs.crash(CrashMode::KeepAll);
        assert_eq!(read_all(&fs.open(&p, false).unwrap()), b"abcdef");
    }

    #[test]
    fn keep_prefix_tears_in_global_order() {
        let (fs, dir) = setup();
        let (pa, pb) = (dir.join("a"), dir.join("b"));
        let a = fs.open(&pa, true).unwrap();
        let b = fs.open(&pb, true).unwrap();
        a.write_at(b"111", 0).unwrap();
        b.write_at(b"222", 0).unwrap();
        a.write_at(b"333", 3).unwrap();
        fs.crash(CrashMode::KeepPrefix {
            ops: 1,
            torn_bytes: 2,
        });
        assert_eq!(read_all(&fs.open(&pa, false).unwrap()), b"111");
        assert_eq!(read_all(&fs.open(&pb, false).unwrap()), b"22");
    }

    #[test]
    fn sync_is_per_file() {
        let (fs, dir) = setup();
        let (pa, pb) = (dir.join("a"), dir.join("b"));
        let a = fs.open(&pa, true).unwrap();
        let b = fs.open(&pb, true).unwrap();
        a.write_at(b"aa", 0).unwrap();
        b.write_at(b"bb", 0).unwrap();
        b.sync().unwrap();
        fs.crash(CrashMode::LoseUnsynced);
        assert_eq!(fs.durable_len(&pa), Some(0));
        assert_eq!(fs.durable_len(&pb), Some(2));
    }

    #[test]
    fn handles_die_at_crash() {
        let (fs, dir) = setup();
        let f = fs.open(&dir.join("a"), true).unwrap();
        fs.crash(CrashMode::KeepAll);
        let err = f.write_at(b"x", 0).unwrap_err();
        assert!(err.to_string().contains("before a crash"));
        assert!(f.len().is_err());
        assert!(f.sync().is_err());
    }

    #[test]
    fn directory_ops_are_durable_at_once() {
        let (fs, dir) = setup();
        let (pa, pb) = (dir.join("a"), dir.join("b"));
        let a = fs.open(&pa, true).unwrap();
        a.write_at(b"x", 0).unwrap();
        a.sync().unwrap();
        fs.rename(&pa, &pb).unwrap();
        fs.open(&dir.join("c"), true).unwrap();
        fs.crash(CrashMode::LoseUnsynced);
        let mut names = fs.list(&dir).unwrap();
        names.sort();
        assert_eq!(names, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(fs.durable_len(&pb), Some(1));
        fs.remove(&pb).unwrap();
        assert!(!fs.exists(&pb));
        assert!(fs.open(&pb, false).is_err());
    }

    #[test]
    fn fail_writes_after_n() {
        let (fs, dir) = setup();
        let f = fs.open(&dir.join("a"), true).unwrap();
        fs.fail_writes_after(Some(2));
        f.write_at(b"1", 0).unwrap();
        f.write_at(b"2", 1).unwrap();
        assert!(f.write_at(b"3", 2).is_err());
        assert!(f.set_len(0).is_err());
        assert!(f.sync().is_err());
        assert_eq!(fs.write_count(), 2);
        fs.fail_writes_after(None);
        f.write_at(b"3", 2).unwrap();
        assert_eq!(fs.write_count(), 3);
    }

    #[test]
    fn fail_sync_keeps_data_volatile() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let f = fs.open(&p, true).unwrap();
        f.write_at(b"abc", 0).unwrap();
        fs.fail_sync(true);
        assert!(f.sync().is_err());
        fs.crash(CrashMode::LoseUnsynced);
        assert_eq!(fs.durable_len(&p), Some(0));
    }

    #[test]
    fn corrupt_byte_flips_both_copies() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let f = fs.open(&p, true).unwrap();
        f.write_at(&[0u8; 4], 0).unwrap();
        f.sync().unwrap();
        assert!(fs.corrupt_byte(&p, 2));
        assert_eq!(read_all(&f), [0, 0, 0xFF, 0]);
        fs.crash(CrashMode::LoseUnsynced);
        assert_eq!(read_all(&fs.open(&p, false).unwrap()), [0, 0, 0xFF, 0]);
        assert!(!fs.corrupt_byte(&p, 10));
    }

    #[test]
    fn open_needs_directory() {
        let fs = SimFs::new();
        assert!(fs.open(Path::new("/nope/a"), true).is_err());
        assert!(fs.list(Path::new("/nope")).is_err());
    }
}
