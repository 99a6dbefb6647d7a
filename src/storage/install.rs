//! The intent record that makes installing a snapshot crash-safe.
//!
//! Installing the master's snapshot replaces both the checkpoint and the
//! log. Whichever is replaced first, a crash before the other leaves a
//! mismatched pair: an empty log under the old checkpoint would reopen the
//! site older than it was (below what it may have acknowledged), and the
//! new checkpoint over the old log looks like a log that lost records. So
//! the install first makes this small file durable, naming the snapshot's
//! LSN and generation; then writes the checkpoint; then resets the log;
//! then removes the file. At open, a file still present says which state
//! is whole: if the checkpoint is the snapshot's, what is left of the old
//! log is discarded (the install completes); if not, the checkpoint was
//! never replaced and the old log still matches it (the install never
//! happened).

use std::path::Path;

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::vfs::{read_whole, write_atomic, Vfs};

/// File name of the intent record inside the environment directory.
pub(super) const INSTALL_FILE: &str = "install.pending";
const MAGIC: &[u8; 8] = b"DBREPINS";
const LEN: usize = 24;

/// Makes durable the intent to install a snapshot at `lsn` of `gen`.
pub(super) fn begin(vfs: &dyn Vfs, dir: &Path, lsn: Lsn, gen: u32) -> Result<()> {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(MAGIC);
    LittleEndian::write_u64(&mut b[8..16], lsn.to_u64());
    LittleEndian::write_u32(&mut b[16..20], gen);
    let crc = crc32fast::hash(&b[..20]);
    LittleEndian::write_u32(&mut b[20..24], crc);
    write_atomic(vfs, dir, INSTALL_FILE, &b)
        .map_err(|e| Error::io("write snapshot install record", dir.join(INSTALL_FILE), e))
}

/// Removes the intent record once the install is complete.
pub(super) fn finish(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let path = dir.join(INSTALL_FILE);
    vfs.remove(&path)
        .map_err(|e| Error::io("remove snapshot install record", &path, e))?;
    vfs.sync_dir(dir)
        .map_err(|e| Error::io("sync environment directory", dir, e))
}

/// The LSN and generation of an install a crash interrupted, if any.
pub(super) fn pending(vfs: &dyn Vfs, dir: &Path) -> Result<Option<(Lsn, u32)>> {
    let path = dir.join(INSTALL_FILE);
    let Some(b) = read_whole(vfs, &path, LEN as u64)
        .map_err(|e| Error::io("read snapshot install record", &path, e))?
    else {
        return Ok(None);
    };
    let corrupt = |what: &str| Error::Corrupt {
        path: path.clone(),
        offset: 0,
        what: format!("snapshot install record: {what}"),
    };
    if b.len() != LEN || &b[..8] != MAGIC {
        return Err(corrupt("bad length or magic"));
    }
    if crc32fast::hash(&b[..20]) != LittleEndian::read_u32(&b[20..24]) {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(Some((
        Lsn::from_u64(LittleEndian::read_u64(&b[8..16])),
        LittleEndian::read_u32(&b[16..20]),
    )))
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::db::{encode_ops, write_checkpoint, Op};
    use crate::log::LogConfig;
    use crate::storage::Storage;
    use crate::testing::{CrashMode, SimFs};

    fn put(key: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        let op = Op::Put {
            key: key.to_vec(),
            value: b"v".to_vec(),
        };
        encode_ops(&[op], &mut p);
        p
    }

    fn keys(s: &Storage) -> Vec<Vec<u8>> {
        s.store().iter().map(|(k, _)| k.to_vec()).collect()
    }

    /// The window the file system's faults cannot reach on their own: the
    /// snapshot's checkpoint is durable, the old log still there. Reopening
    /// completes the install; an intent whose checkpoint was never written
    /// is dropped and changes nothing.
    #[test]
    fn open_completes_an_install_whose_checkpoint_is_durable() {
        let cfg = LogConfig {
            segment_size_bytes: 400,
            ..LogConfig::default()
        };
        let mut master = Storage::in_memory(cfg.clone());
        for i in 0..30u8 {
            master.commit(2, &put(&[b'm', i])).unwrap();
        }
        let bytes = master.snapshot_bytes();
        let (lsn, gen) = (master.log().last_lsn(), master.log().last_gen());
        let dir = Path::new("/site");
        for checkpoint_written in [false, true] {
            let fs = SimFs::new();
            let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
            let (mut s, _) = Storage::open(vfs.clone(), dir, cfg.clone()).unwrap();
            for i in 0..12u8 {
                s.commit(1, &put(&[b'c', i])).unwrap();
            }
            s.log_mut().force_sync().unwrap();
            let old = keys(&s);
            begin(&*vfs, dir, lsn, gen).unwrap();
            if checkpoint_written {
                write_checkpoint(&*vfs, dir, &bytes).unwrap();
            }
            fs.crash(CrashMode::LoseUnsynced);
            drop(s);
            let (s, _) = Storage::open(vfs.clone(), dir, cfg.clone()).unwrap();
            assert!(pending(&*vfs, dir).unwrap().is_none());
            if checkpoint_written {
                assert_eq!(keys(&s), keys(&master));
                assert_eq!(s.log().last_lsn(), lsn);
                assert_eq!(s.checkpoint_lsn(), lsn);
            } else {
                assert_eq!(keys(&s), old);
            }
        }
    }
}
