//! The local database of one site: the log, the key-value store applied
//! from it, the latest checkpoint, and the replication metadata.
//!
//! Invariant: the store always reflects exactly the log records up to
//! `log.last_lsn()`, on top of the checkpoint at `ckpt_lsn`. Every path that
//! changes the log (commit, a record from the master, rollback, snapshot
//! install) keeps it.
//!
//! Failures are fatal: once a write, fsync or file operation under the
//! log, the checkpoint or the replication metadata has failed, what is on
//! disk is unknown, so every later call that would change anything returns
//! [`Error::RunRecovery`] until the environment is reopened (see
//! [`Storage::failure`]). Nothing is retried; reopening recovers from what
//! really reached the disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::Store;
use crate::db::{decode_snapshot, encode_snapshot, validate_ops};
use crate::db::{for_each_op, OpLimits, OpRef};
use crate::db::{read_checkpoint, write_checkpoint};
use crate::error::{Error, Result};
use crate::log::record::{BatchIter, CheckedRecord, RecordHeader, RecordType};
use crate::log::{remove_segment_files, Log, LogConfig, RecoveryReport};
use crate::lsn::Lsn;
use crate::membership::Membership;
use crate::vfs::{read_whole, write_atomic, Vfs};

mod install;
pub mod meta;
pub mod undone;

pub use meta::RepMeta;
use meta::META_FILE;

/// One transaction undone by a rollback, reported so nothing vanishes unseen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledBackTxn {
    /// LSN of its commit record.
    pub lsn: Lsn,
    /// Generation it was committed in.
    pub gen: u32,
    /// Keys it wrote or deleted, in order.
    pub keys: Vec<Vec<u8>>,
}

enum Backing {
    Disk {
        vfs: Arc<dyn Vfs>,
        dir: PathBuf,
    },
    Memory {
        /// The checkpointed store itself: cloning a [`Store`] shares its
        /// nodes (copy-on-write), so an in-memory checkpoint costs no copy.
        ckpt: Option<Store>,
        meta: RepMeta,
    },
}

use undone::{Undone, UNDONE_FILE};

/// One site's durable state.
pub struct Storage {
    backing: Backing,
    log: Log,
    store: Store,
    ckpt_lsn: Lsn,
    ckpt_gen: u32,
    limits: OpLimits,
    recovery: Option<RecoveryReport>,
    /// The commits rollbacks undid here (`undone`), as on disk.
    undone: Undone,
}

impl Storage {
    /// Opens (or creates) the environment in `dir`: loads the checkpoint,
    /// recovers the log, and replays the records after the checkpoint.
    pub fn open(vfs: Arc<dyn Vfs>, dir: &Path, log_cfg: LogConfig) -> Result<(Storage, RepMeta)> {
        vfs.create_dir_all(dir)
            .map_err(|e| Error::io("create environment directory", dir, e))?;
        let limits = OpLimits::default();
        let snap = read_checkpoint(&*vfs, dir, &limits)?;
        let (ckpt_lsn, ckpt_gen, store) = match snap {
            Some(s) => (s.lsn, s.gen, s.store),
            None => (Lsn::ZERO, 0, Store::new()),
        };
        if let Some((lsn, gen)) = install::pending(&*vfs, dir)? {
            if (lsn, gen) == (ckpt_lsn, ckpt_gen) {
                let n = remove_segment_files(&*vfs, dir)?;
                log::info!(
                    "completed the snapshot install at {lsn} a crash interrupted ({n} old log segments removed)"
                );
            } else {
                log::info!("a snapshot install at {lsn} was interrupted before its checkpoint was written; the old state is whole");
            }
            install::finish(&*vfs, dir)?;
        }
        let (log, report) = Log::open(vfs.clone(), dir, log_cfg, ckpt_lsn, ckpt_gen)?;
        let meta_path = dir.join(META_FILE);
        let meta = match read_whole(&*vfs, &meta_path, 1024)
            .map_err(|e| Error::io("read replication metadata", &meta_path, e))?
        {
            Some(bytes) => RepMeta::decode(&bytes).map_err(|e| Error::Corrupt {
                path: meta_path.clone(),
                offset: 0,
                what: e.to_string(),
            })?,
            None => RepMeta::default(),
        };
        let undone_path = dir.join(UNDONE_FILE);
        let undone = match read_whole(&*vfs, &undone_path, 1 << 20)
            .map_err(|e| Error::io("read the undone-commit list", &undone_path, e))?
        {
            Some(bytes) => undone::decode(&bytes).map_err(|e| Error::Corrupt {
                path: undone_path.clone(),
                offset: 0,
                what: e.to_string(),
            })?,
            None => Undone::new(),
        };
        let mut storage = Storage {
            backing: Backing::Disk {
                vfs,
                dir: dir.to_path_buf(),
            },
            log,
            store,
            ckpt_lsn,
            ckpt_gen,
            limits,
            recovery: Some(report),
            undone,
        };
        storage.check_log_covers_checkpoint()?;
        storage.replay_after_checkpoint()?;
        Ok((storage, meta))
    }

    /// A purely in-memory environment (nothing survives the process).
    pub fn in_memory(mut log_cfg: LogConfig) -> Storage {
        log_cfg.in_memory = true;
        Storage {
            backing: Backing::Memory {
                ckpt: None,
                meta: RepMeta::default(),
            },
            log: Log::in_memory(log_cfg),
            store: Store::new(),
            ckpt_lsn: Lsn::ZERO,
            ckpt_gen: 0,
            limits: OpLimits::default(),
            recovery: None,
            undone: Undone::new(),
        }
    }

    fn check_log_covers_checkpoint(&self) -> Result<()> {
        let base = self.log.base_lsn();
        if base > self.ckpt_lsn || self.log.last_lsn() < self.ckpt_lsn {
            return Err(Error::RunRecovery(format!(
                "the log holds records {base}..{} but the checkpoint is at {}",
                self.log.last_lsn(),
                self.ckpt_lsn
            )));
        }
        Ok(())
    }

    fn replay_after_checkpoint(&mut self) -> Result<()> {
        let ckpt = self.ckpt_lsn;
        let limits = self.limits;
        let mut replayed = 0u64;
        for rec in self.log.iter_from(ckpt) {
            let rec = rec?;
            if rec.lsn <= ckpt {
                if rec.lsn == ckpt && rec.gen != self.ckpt_gen {
                    return Err(Error::RunRecovery(format!(
                        "checkpoint at {ckpt} is of generation {} but the log's record there is of generation {}",
                        self.ckpt_gen, rec.gen
                    )));
                }
                continue;
            }
            match rec.rtype {
                RecordType::Commit => {
                    self.store.apply_payload(&rec.payload, &limits)?;
                    replayed += 1;
                }
                RecordType::Membership => apply_group(&mut self.store, rec.lsn, &rec.payload)?,
                RecordType::GenStart => {}
            }
        }
        if replayed > 0 {
            log::info!("replayed {replayed} transactions after checkpoint {ckpt}");
        }
        Ok(())
    }

    /// What recovery found when the log was opened (`None` for in-memory environments).
    pub fn recovery_report(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// Why this storage refuses further work, if it does: the first write,
    /// fsync or file operation that failed. Every later call that would
    /// change anything then returns [`Error::RunRecovery`].
    #[cfg(any(test, feature = "testing"))]
    pub fn failure(&self) -> Option<&str> {
        self.log.failure()
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The log, mutably (for group commit's sync bookkeeping).
    pub fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    /// The store, reflecting every record in the log.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// LSN of the latest checkpoint (zero if none).
    #[cfg(any(test, feature = "testing"))]
    pub fn checkpoint_lsn(&self) -> Lsn {
        self.ckpt_lsn
    }

    /// Limits applied to transaction payloads.
    pub fn op_limits(&self) -> &OpLimits {
        &self.limits
    }

    /// Checks a transaction payload without applying it.
    #[cfg(any(test, feature = "testing"))]
    pub fn validate_payload(&self, payload: &[u8]) -> Result<()> {
        for_each_op(payload, &self.limits, |_| {})
    }

    /// Appends a commit record with `payload` (already validated) and applies it.
    #[inline]
    pub fn commit(&mut self, gen: u32, payload: &[u8]) -> Result<Lsn> {
        let ops = validate_ops(payload, &self.limits)?;
        let lsn = self.log.append(gen, RecordType::Commit, payload)?;
        self.store.apply_ops(ops);
        Ok(lsn)
    }

    /// Appends the first record of a new master's generation.
    pub fn append_gen_start(&mut self, gen: u32) -> Result<Lsn> {
        self.log.append(gen, RecordType::GenStart, &[])
    }

    /// Appends a membership record holding `group` and applies it: the
    /// group is in force here from this call on.
    pub fn append_membership(&mut self, gen: u32, group: &Membership) -> Result<Lsn> {
        let bytes = group.encode();
        let lsn = self.log.append(gen, RecordType::Membership, &bytes)?;
        self.store.set_group_bytes(lsn, &bytes);
        Ok(lsn)
    }

    /// The group membership the log implies (`None` before any membership
    /// record), with the LSN of the record that set it.
    pub fn membership(&self) -> Option<(Lsn, Membership)> {
        let (lsn, bytes) = self.store.group_bytes()?;
        // Checked before it was stored (apply_group, the snapshot decoder).
        Membership::decode(bytes).ok().map(|g| (lsn, g))
    }

    /// Appends one encoded record received from the master and applies it.
    /// The payload is checked before anything is written, so a record that
    /// passes its CRC but holds nonsense changes nothing.
    pub fn append_from_master(&mut self, encoded: &[u8]) -> Result<RecordHeader> {
        let rec = CheckedRecord::check(encoded, self.log.config().max_payload())?;
        self.append_checked_from_master(rec)
    }

    /// [`Storage::append_from_master`] for a record whose framing and CRC
    /// were already checked: the payload is validated once, then the record
    /// is appended and applied.
    #[inline]
    pub fn append_checked_from_master(&mut self, rec: CheckedRecord<'_>) -> Result<RecordHeader> {
        let hdr = *rec.header();
        let mut appended = 0;
        self.append_run_from_master(rec, |_| None, &mut appended)?;
        Ok(hdr)
    }

    /// Appends and applies `first`, a record from the master that
    /// continues the log, then each next record of `more` that continues
    /// the one before it ([`BatchIter::next_if_continues`]): the same, record
    /// by record, as [`Storage::append_checked_from_master`] on each in
    /// turn, ending at the first error with the records before it appended
    /// and applied. `appended` counts the records appended.
    pub fn append_chain_from_master<'a>(
        &mut self,
        first: CheckedRecord<'a>,
        more: &mut BatchIter<'a>,
        appended: &mut u64,
    ) -> Result<()> {
        self.append_run_from_master(first, |last| more.next_if_continues(last), appended)
    }

    /// The log's [`Log::append_run`] with the store's validate-and-apply
    /// step: a commit's payload is validated whole before it is applied, so
    /// a record that passes its CRC but holds nonsense changes nothing and
    /// is not appended.
    #[inline]
    fn append_run_from_master<'a>(
        &mut self,
        first: CheckedRecord<'a>,
        next: impl FnMut(Lsn) -> Option<CheckedRecord<'a>>,
        appended: &mut u64,
    ) -> Result<()> {
        let limits = &self.limits;
        let store = &mut self.store;
        let (n, result) = self.log.append_run(first, next, |rec| {
            match rec.header().rtype {
                RecordType::Commit => store.apply_ops(validate_ops(rec.payload(), limits)?),
                RecordType::Membership => apply_group(store, rec.header().lsn, rec.payload())?,
                RecordType::GenStart => {}
            }
            Ok(())
        });
        *appended += n;
        result
    }

    /// The transactions held after `lsn`, with their keys, oldest first.
    pub fn txns_after(&self, lsn: Lsn) -> Result<Vec<RolledBackTxn>> {
        let mut txns = Vec::new();
        for rec in self.log.iter_from(lsn) {
            let rec = rec?;
            if rec.lsn <= lsn || rec.rtype != RecordType::Commit {
                continue;
            }
            let mut keys = Vec::new();
            for_each_op(&rec.payload, &self.limits, |op| match op {
                OpRef::Put { key, .. } | OpRef::Delete { key } => keys.push(key.to_vec()),
            })?;
            txns.push(RolledBackTxn {
                lsn: rec.lsn,
                gen: rec.gen,
                keys,
            });
        }
        Ok(txns)
    }

    /// The commits rollbacks undid on this site, (generation, LSN), oldest
    /// first, at most [`undone::UNDONE_MAX`]; kept across restarts.
    pub fn undone(&self) -> &Undone {
        &self.undone
    }

    fn note_undone(&mut self, txns: &[RolledBackTxn]) -> Result<()> {
        if txns.is_empty() {
            return Ok(());
        }
        let mut next = self.undone.clone();
        undone::extend(&mut next, txns.iter().map(|t| (t.gen, t.lsn)));
        if let Backing::Disk { vfs, dir } = &self.backing {
            write_atomic(&**vfs, dir, UNDONE_FILE, &undone::encode(&next))
                .map_err(|e| Error::io("write the undone-commit list", dir.join(UNDONE_FILE), e))
                .map_err(|e| fatal(&mut self.log, e))?;
        }
        self.undone = next;
        Ok(())
    }

    /// True if the log can be cut back to `lsn` and the store rebuilt from the
    /// checkpoint (a checkpoint taken after `lsn` would already contain what
    /// must be undone).
    pub fn can_rollback_to(&self, lsn: Lsn) -> bool {
        lsn >= self.ckpt_lsn && lsn >= self.log.base_lsn()
    }

    /// Undoes every record after `lsn`: cuts the log and rebuilds the store
    /// from the checkpoint. Returns the undone transactions.
    pub fn rollback_to(&mut self, lsn: Lsn) -> Result<Vec<RolledBackTxn>> {
        if lsn >= self.log.last_lsn() {
            return Ok(Vec::new());
        }
        if !self.can_rollback_to(lsn) {
            return Err(Error::invalid(format!(
                "cannot roll back to {lsn}: the checkpoint at {} is later",
                self.ckpt_lsn
            )));
        }
        self.log.check_ok()?;
        let undone = self.txns_after(lsn)?;
        // Durable before the log is cut: after a crash between the two the
        // list names commits still in the log, which the sync that follows
        // undoes again; the other order could forget an undone commit.
        self.note_undone(&undone)?;
        self.log.truncate_after(lsn)?;
        // The log is cut: a store that cannot be rebuilt now would not
        // match it, so any failure from here on is fatal.
        let rebuilt = self
            .load_checkpoint_store()
            .map(|store| self.store = store)
            .and_then(|()| self.replay_after_checkpoint());
        if let Err(e) = rebuilt {
            return Err(fatal(&mut self.log, e));
        }
        self.debug_assert_store_is_replay("a rollback");
        Ok(undone)
    }

    fn load_checkpoint_store(&self) -> Result<Store> {
        match &self.backing {
            Backing::Disk { vfs, dir } => Ok(read_checkpoint(&**vfs, dir, &self.limits)?
                .map(|s| s.store)
                .unwrap_or_default()),
            Backing::Memory { ckpt, .. } => Ok(ckpt.clone().unwrap_or_default()),
        }
    }

    /// Encodes the store as it is now: a snapshot at the last log record.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        encode_snapshot(&self.store, self.log.last_lsn(), self.log.last_gen())
    }

    /// Replaces everything with a snapshot received from the master.
    ///
    /// On disk the new checkpoint is made durable before the log is reset,
    /// with an intent record around both (`install.pending`): a crash at any
    /// point reopens either the old state, whole, or the snapshot's.
    pub fn install_snapshot(&mut self, bytes: &[u8]) -> Result<()> {
        let snap = decode_snapshot(bytes, &self.limits)?;
        self.log.check_ok()?;
        if let Backing::Disk { vfs, dir } = &self.backing {
            install::begin(&**vfs, dir, snap.lsn, snap.gen)
                .and_then(|()| write_checkpoint(&**vfs, dir, bytes))
                .map_err(|e| fatal(&mut self.log, e))?;
        }
        self.log.reset(snap.lsn, snap.gen)?;
        match &mut self.backing {
            Backing::Disk { vfs, dir } => {
                install::finish(&**vfs, dir).map_err(|e| fatal(&mut self.log, e))?
            }
            Backing::Memory { ckpt, .. } => *ckpt = Some(snap.store.clone()),
        }
        self.store = snap.store;
        self.ckpt_lsn = snap.lsn;
        self.ckpt_gen = snap.gen;
        self.debug_assert_store_is_replay("a snapshot install");
        Ok(())
    }

    /// Debug builds: asserts that the store is what replaying the log over
    /// the checkpoint gives, comparing digests. Rollback rebuilds the store
    /// by that replay today; the check guards any faster way that replaces
    /// it, and that an installed snapshot reads back as the checkpoint.
    fn debug_assert_store_is_replay(&self, after: &str) {
        if !cfg!(debug_assertions) {
            return;
        }
        // A read failing here is a fault under test, not a broken
        // invariant; the call that needs the data will report it.
        let Ok(mut replayed) = self.load_checkpoint_store() else {
            return;
        };
        for rec in self.log.iter_from(self.ckpt_lsn) {
            let Ok(rec) = rec else { return };
            if rec.lsn <= self.ckpt_lsn {
                continue;
            }
            let applied = match rec.rtype {
                RecordType::Commit => replayed.apply_payload(&rec.payload, &self.limits),
                RecordType::Membership => apply_group(&mut replayed, rec.lsn, &rec.payload),
                RecordType::GenStart => Ok(()),
            };
            if applied.is_err() {
                return;
            }
        }
        assert_eq!(
            replayed.digest(),
            self.store.digest(),
            "after {after}, the store is not the replay of the log over the checkpoint at {}",
            self.ckpt_lsn
        );
    }

    /// Writes a checkpoint of the store at the last log record (after making
    /// the log durable up to it, so the checkpoint never runs ahead of the
    /// log), then removes log segments wholly before it. Returns its LSN.
    pub fn checkpoint(&mut self) -> Result<Lsn> {
        self.log.force_sync()?;
        let lsn = self.log.last_lsn();
        let gen = self.log.last_gen();
        match &mut self.backing {
            Backing::Disk { vfs, dir } => {
                write_checkpoint(&**vfs, dir, &encode_snapshot(&self.store, lsn, gen))
                    .map_err(|e| fatal(&mut self.log, e))?
            }
            Backing::Memory { ckpt, .. } => *ckpt = Some(self.store.clone()),
        }
        self.ckpt_lsn = lsn;
        self.ckpt_gen = gen;
        debug_assert!(
            self.log.durable_lsn() >= lsn,
            "checkpoint at {lsn} runs ahead of the durable log ({})",
            self.log.durable_lsn()
        );
        let removed = self.log.remove_before(lsn)?;
        if removed > 0 {
            log::debug!("checkpoint at {lsn} removed {removed} log segments");
        }
        Ok(lsn)
    }

    /// Makes `meta` durable.
    ///
    /// A failure is fatal (the file may hold either version, and the caller
    /// must not act on the new one): this call and every later one return
    /// [`Error::RunRecovery`].
    pub fn save_meta(&mut self, meta: &RepMeta) -> Result<()> {
        self.log.check_ok()?;
        match &mut self.backing {
            Backing::Disk { vfs, dir } => write_atomic(&**vfs, dir, META_FILE, &meta.encode())
                .map_err(|e| Error::io("write replication metadata", dir.join(META_FILE), e))
                .map_err(|e| fatal(&mut self.log, e)),
            Backing::Memory { meta: m, .. } => {
                *m = *meta;
                Ok(())
            }
        }
    }
}

/// Applies a membership record's payload: checked whole first, so a
/// record that passes its CRC but holds nonsense changes nothing.
fn apply_group(store: &mut Store, lsn: Lsn, payload: &[u8]) -> Result<()> {
    Membership::decode(payload)?;
    store.set_group_bytes(lsn, payload);
    Ok(())
}

/// Puts the storage into its failed state for `e` (unless the log already
/// is, and `e` says so) and returns the error to report.
#[cold]
fn fatal(log: &mut Log, e: Error) -> Error {
    if log.failure().is_some() {
        return e;
    }
    log.set_failed(&e)
}
