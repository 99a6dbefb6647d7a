//! What a read-write transaction read, and the check at commit that none
//! of it changed since: optimistic concurrency control.
//!
//! Why optimistic, not locks: every commit on the master already takes
//! the one environment lock, so validating there costs a lookup per key
//! read and needs no lock table, no deadlock detector and no lock waits;
//! readers never block writers, and replication (which applies committed
//! records in log order on the clients) never takes part. Conflicts cost a
//! retry, which is cheap for the short transactions a replicated store
//! serves; under heavy contention on one key, locks would waste less work.
//!
//! The transaction reads from a snapshot of the store taken at its first
//! read (so it never sees a half-finished state of another transaction),
//! and remembers each key and range it read, not the values: the snapshot
//! still holds them. At commit, under the environment lock, nothing to
//! check if the log has not moved since the snapshot (the version test:
//! no commit at all in between); otherwise every key read must have the
//! same value in the live store as in the snapshot, and every range the
//! same entries. Then the transaction's reads are those of the state it
//! commits on, and its writes apply in the same critical section, so the
//! outcome is that of running it alone at its commit point: serializable.
//! Any difference fails the commit with [`Error::Conflict`]; nothing is
//! written, and the caller retries (see [`Env::transact`]).

use std::ops::Bound;
use std::sync::Arc;

use crate::cursor::{borrowed, owned};
use crate::databases::{Database, SnapshotSlot};
use crate::db::Store;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::rep::Core;

/// A range a transaction read: database, start, end.
type RangeRead = (Database, Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The snapshot a transaction reads from, and what it read, counted
/// against the open-snapshot limit.
pub(super) struct ReadSet {
    check: ReadCheck,
    _slot: SnapshotSlot,
}

impl ReadSet {
    pub(super) fn take(env: &Env) -> Result<ReadSet> {
        let slot = SnapshotSlot::take(env)?;
        let core = env.data_lock()?;
        Ok(ReadSet {
            check: ReadCheck::take(&core),
            _slot: slot,
        })
    }

    /// Reads `key` of `db` and remembers it.
    pub(super) fn get(
        &mut self,
        db: &Database,
        key: &[u8],
        max_reads: usize,
    ) -> Result<Option<Vec<u8>>> {
        self.check.get(db, key, max_reads)
    }

    /// Reads the entries of `db` between `start` and `end` (at most
    /// `max_reads` of them) and remembers the range.
    pub(super) fn range(
        &mut self,
        db: &Database,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        max_reads: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check.range(db, start, end, max_reads)
    }

    /// Under the environment lock, just before the commit: fails with
    /// `Conflict` if anything read has changed since it was read.
    pub(super) fn validate(&self, core: &Core) -> Result<()> {
        self.check.validate(core)
    }
}

/// The snapshot and the read set, and the check at commit, on a core
/// directly: what [`ReadSet`] runs, also driven by the simulator's
/// read-modify-write transactions (`testing::sim`), so that it checks this
/// code and not a copy of it.
pub(crate) struct ReadCheck {
    store: Arc<Store>,
    /// The live store's instance and the log's end when the snapshot was taken.
    instance: u64,
    lsn: Lsn,
    keys: Vec<(Database, Vec<u8>)>,
    ranges: Vec<RangeRead>,
}

impl ReadCheck {
    /// A snapshot of `core`'s store, with nothing read yet.
    pub(crate) fn take(core: &Core) -> ReadCheck {
        let live = core.storage().store();
        ReadCheck {
            store: Arc::new(live.clone()),
            instance: live.instance_id(),
            lsn: core.storage().log().last_lsn(),
            keys: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// Reads `key` of `db` and remembers it.
    pub(crate) fn get(
        &mut self,
        db: &Database,
        key: &[u8],
        max_reads: usize,
    ) -> Result<Option<Vec<u8>>> {
        let store = self.db(db)?;
        let v = store.get(key).map(<[u8]>::to_vec);
        self.count(max_reads, 1)?;
        self.keys.push((db.clone(), key.to_vec()));
        Ok(v)
    }

    /// Reads the entries of `db` between `start` and `end` (at most
    /// `max_reads` of them) and remembers the range.
    pub(crate) fn range(
        &mut self,
        db: &Database,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        max_reads: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let store = self.db(db)?;
        let mut out = Vec::new();
        for (k, v) in store.range((start, end)) {
            if out.len() >= max_reads {
                return Err(Error::Limit {
                    what: "entries one transaction range read returns",
                    limit: max_reads as u64,
                    got: out.len() as u64 + 1,
                });
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        self.count(max_reads, 1)?;
        self.ranges.push((db.clone(), owned(start), owned(end)));
        Ok(out)
    }

    fn count(&self, max_reads: usize, more: usize) -> Result<()> {
        let n = self.keys.len() + self.ranges.len() + more;
        crate::databases::limit("keys and ranges one transaction reads", max_reads, n)
    }

    fn db(&self, db: &Database) -> Result<&Store> {
        self.store
            .database(db.id())
            .ok_or_else(|| Error::NoDatabase(db.name().to_string()))
    }

    /// Under the environment lock, just before the commit: fails with
    /// `Conflict` if anything read has changed since it was read.
    pub(crate) fn validate(&self, core: &Core) -> Result<()> {
        let live = core.storage().store();
        if live.instance_id() != self.instance {
            return Err(Error::Conflict(
                "this site's store was replaced (rollback or snapshot install) since the transaction read it".into(),
            ));
        }
        if core.storage().log().last_lsn() == self.lsn {
            return Ok(());
        }
        for (db, key) in &self.keys {
            let then = self.store.get_in(db.id(), key);
            let now = live.get_in(db.id(), key);
            if then != now || (then.is_none() && live.database(db.id()).is_none()) {
                return Err(conflict(db, "key", key));
            }
        }
        for (db, start, end) in &self.ranges {
            let (Some(then), Some(now)) = (self.store.database(db.id()), live.database(db.id()))
            else {
                return Err(Error::Conflict(format!(
                    "database {:?} was removed since the transaction read it",
                    db.name()
                )));
            };
            let bounds = (borrowed(start), borrowed(end));
            if !then.range(bounds).eq(now.range(bounds)) {
                let from = match start {
                    Bound::Included(k) | Bound::Excluded(k) => &k[..],
                    Bound::Unbounded => &[],
                };
                return Err(conflict(db, "range from", from));
            }
        }
        Ok(())
    }
}

fn conflict(db: &Database, what: &str, key: &[u8]) -> Error {
    let shown: String = String::from_utf8_lossy(&key[..key.len().min(64)]).into_owned();
    let db = if db.name().is_empty() {
        "the default database".to_string()
    } else {
        format!("database {:?}", db.name())
    };
    Error::Conflict(format!(
        "{what} {shown:?} in {db} was changed by another transaction since this one read it"
    ))
}
