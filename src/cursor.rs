//! Read snapshots: [`ReadTxn`] (a consistent view of every database) and
//! [`Cursor`] (ordered iteration over one database from any key, in either
//! direction), with [`RangeIter`] for range and prefix scans.
//!
//! A snapshot is a clone of the site's store, which costs O(1) however big
//! the store (the store is copy-on-write): writes that commit or arrive
//! later copy the nodes they change and leave the snapshot as it was. A
//! cursor remembers only its current key and a small batch of entries, so
//! iterating over any range takes bounded memory; each refill seeks from
//! the last key in O(log n).
//!
//! A snapshot is bound to the store it was taken from. A client that rolls
//! back or installs a snapshot replaces its store, and the readers of the
//! old one may hold writes that no longer exist anywhere: their next call
//! fails with [`Error::HandleDead`] (Berkeley DB's `DB_REP_HANDLE_DEAD`),
//! never a view mixing the old store and the new. Close the handle and
//! open another. While a client synchronises, opening a snapshot and each
//! call on one waits until the sync ends (or fails with [`Error::Lockout`]
//! under [`ConfigFlag::NoWait`](crate::ConfigFlag::NoWait)).

mod levels;

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use crate::databases::{Database, SnapshotSlot};
use crate::db::Store;
use crate::env::Env;
use crate::error::{Error, Result};

/// Entries a cursor fetches per seek, at most.
const BATCH_ENTRIES: usize = 64;
/// Bytes of keys and values a cursor fetches per seek, past the first entry.
const BATCH_BYTES: usize = 64 << 10;

/// An owned key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A store snapshot bound to the environment it came from.
#[derive(Clone)]
struct Snap {
    env: Env,
    store: Arc<Store>,
    /// The live store's [`Store::instance_id`] when the snapshot was taken.
    instance: u64,
    _slot: Arc<SnapshotSlot>,
}

impl Snap {
    fn take(env: &Env) -> Result<Snap> {
        let slot = SnapshotSlot::take(env)?;
        let core = env.data_lock()?;
        Ok(Snap::of(env, core.storage().store(), slot))
    }

    fn of(env: &Env, live: &Store, slot: SnapshotSlot) -> Snap {
        Snap {
            env: env.clone(),
            store: Arc::new(live.clone()),
            instance: live.instance_id(),
            _slot: Arc::new(slot),
        }
    }

    /// Fails with `HandleDead` once the live store is no longer the one the
    /// snapshot was taken from (waiting out a sync first).
    fn check(&self) -> Result<()> {
        let core = self.env.data_lock()?;
        if core.storage().store().instance_id() != self.instance {
            return Err(Error::HandleDead);
        }
        Ok(())
    }

    fn db(&self, db: &Database) -> Result<&Store> {
        self.store
            .database(db.id())
            .ok_or_else(|| Error::NoDatabase(db.name().to_string()))
    }
}

/// A read-only transaction: one consistent state of every database of this
/// site, as it was when the transaction began, however long it stays open.
pub struct ReadTxn {
    snap: Snap,
}

impl Env {
    /// Begins a read transaction on this site's store (on a client, what it
    /// has applied: a stale read). Counts against
    /// [`DataLimits::max_open_snapshots`](crate::databases::DataLimits) until dropped.
    pub fn read_txn(&self) -> Result<ReadTxn> {
        Ok(ReadTxn {
            snap: Snap::take(self)?,
        })
    }

    /// A cursor over database `db` of a snapshot taken now.
    pub fn cursor(&self, db: &Database) -> Result<Cursor> {
        self.read_txn()?.cursor(db)
    }

    /// The entries of `db` with keys between `start` and `end`, in key
    /// order (reverse with [`RangeIter::rev`]), from a snapshot taken now.
    pub fn range(
        &self,
        db: &Database,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<RangeIter> {
        self.read_txn()?.range(db, start, end)
    }

    /// The entries of `db` whose keys start with `prefix`, in key order.
    pub fn prefix(&self, db: &Database, prefix: &[u8]) -> Result<RangeIter> {
        self.read_txn()?.prefix(db, prefix)
    }
}

impl ReadTxn {
    /// The value of `key` in `db` as of the snapshot.
    pub fn get_in(&self, db: &Database, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snap.check()?;
        Ok(self.snap.db(db)?.get(key).map(<[u8]>::to_vec))
    }

    /// The value of `key` in the default database as of the snapshot.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_in(&Database::default(), key)
    }

    /// Number of keys in `db` as of the snapshot.
    pub fn len_in(&self, db: &Database) -> Result<usize> {
        self.snap.check()?;
        Ok(self.snap.db(db)?.len())
    }

    /// A cursor over `db` on this transaction's snapshot (it shares the
    /// snapshot, and the count of open snapshots, with the transaction).
    pub fn cursor(&self, db: &Database) -> Result<Cursor> {
        self.snap.check()?;
        self.snap.db(db)?;
        Ok(Cursor {
            snap: self.snap.clone(),
            db: db.clone(),
            pos: None,
            batch: VecDeque::new(),
            batch_forward: true,
        })
    }

    /// The entries of `db` with keys between `start` and `end`.
    pub fn range(
        &self,
        db: &Database,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<RangeIter> {
        self.cursor(db).map(|c| c.into_range(start, end))
    }

    /// The entries of `db` whose keys start with `prefix`.
    pub fn prefix(&self, db: &Database, prefix: &[u8]) -> Result<RangeIter> {
        self.cursor(db).map(|c| c.into_prefix(prefix))
    }
}

/// A position in one database of a snapshot (Berkeley DB's `DBC`).
///
/// Moves return the entry moved to, or `None` off either end (the cursor
/// then stays where it was).
pub struct Cursor {
    snap: Snap,
    db: Database,
    /// The key of the current entry.
    pos: Option<Vec<u8>>,
    /// Entries after (or, backward, before) `pos`, already fetched.
    batch: VecDeque<Entry>,
    batch_forward: bool,
}

impl Cursor {
    fn store(&self) -> Result<&Store> {
        self.snap.check()?;
        self.snap.db(&self.db)
    }

    /// Fetches a batch from `from` in the given direction.
    fn fetch(store: &Store, from: Bound<&[u8]>, forward: bool) -> VecDeque<Entry> {
        let mut batch = VecDeque::new();
        let mut bytes = 0;
        let mut take = |(k, v): (&[u8], &[u8])| {
            if batch.len() >= BATCH_ENTRIES || (!batch.is_empty() && bytes >= BATCH_BYTES) {
                return false;
            }
            bytes += k.len() + v.len();
            batch.push_back((k.to_vec(), v.to_vec()));
            true
        };
        if forward {
            for e in store.range((from, Bound::Unbounded)) {
                if !take(e) {
                    break;
                }
            }
        } else {
            for e in store.range((Bound::Unbounded, from)).rev() {
                if !take(e) {
                    break;
                }
            }
        }
        batch
    }

    fn land(&mut self, mut batch: VecDeque<Entry>, forward: bool) -> Option<Entry> {
        let e = batch.pop_front()?;
        self.pos = Some(e.0.clone());
        self.batch = batch;
        self.batch_forward = forward;
        Some(e)
    }

    fn jump(&mut self, from: Bound<&[u8]>, forward: bool) -> Result<Option<Entry>> {
        let batch = Cursor::fetch(self.store()?, from, forward);
        Ok(self.land(batch, forward))
    }

    /// Moves to the first entry.
    pub fn first(&mut self) -> Result<Option<Entry>> {
        self.jump(Bound::Unbounded, true)
    }

    /// Moves to the last entry.
    pub fn last(&mut self) -> Result<Option<Entry>> {
        self.jump(Bound::Unbounded, false)
    }

    /// Moves to the first entry whose key is at or after `key` (`DB_SET_RANGE`).
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Entry>> {
        self.jump(Bound::Included(key), true)
    }

    /// Moves to the last entry whose key is at or before `key`.
    pub fn seek_back(&mut self, key: &[u8]) -> Result<Option<Entry>> {
        self.jump(Bound::Included(key), false)
    }

    /// Moves to the entry after the current one (the first, if unpositioned).
    #[allow(clippy::should_implement_trait)] // fallible, and a cursor moves both ways
    pub fn next(&mut self) -> Result<Option<Entry>> {
        self.step(true)
    }

    /// Moves to the entry before the current one (the last, if unpositioned).
    pub fn prev(&mut self) -> Result<Option<Entry>> {
        self.step(false)
    }

    fn step(&mut self, forward: bool) -> Result<Option<Entry>> {
        let store = self.store()?;
        if self.batch_forward == forward && !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            return Ok(self.land(batch, forward));
        }
        let batch = match &self.pos {
            None => Cursor::fetch(store, Bound::Unbounded, forward),
            Some(k) => Cursor::fetch(store, Bound::Excluded(k), forward),
        };
        if batch.is_empty() {
            // Off the end: stay on the current entry.
            self.batch.clear();
            return Ok(None);
        }
        Ok(self.land(batch, forward))
    }

    /// The current entry, if the cursor is on one.
    pub fn current(&self) -> Result<Option<Entry>> {
        let store = self.store()?;
        Ok(self
            .pos
            .as_deref()
            .and_then(|k| store.get(k).map(|v| (k.to_vec(), v.to_vec()))))
    }

    /// The entries with keys between `start` and `end`, as an iterator.
    pub fn into_range(mut self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> RangeIter {
        self.pos = None;
        self.batch.clear();
        RangeIter {
            cursor: self,
            start: owned(start),
            end: owned(end),
            forward: true,
            started: false,
            done: false,
        }
    }

    /// The entries whose keys start with `prefix`, as an iterator.
    pub fn into_prefix(self, prefix: &[u8]) -> RangeIter {
        let end = prefix_end(prefix);
        let end = match &end {
            Some(e) => Bound::Excluded(&e[..]),
            None => Bound::Unbounded,
        };
        self.into_range(Bound::Included(prefix), end)
    }
}

pub(crate) fn owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

pub(crate) fn borrowed(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The least key after every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An iterator over a range of a snapshot's database, in key order or
/// (after [`RangeIter::rev`]) reverse key order. It ends after the first
/// error (a dead handle, say), which it yields.
pub struct RangeIter {
    cursor: Cursor,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    forward: bool,
    started: bool,
    done: bool,
}

impl RangeIter {
    /// The same range, from the far end backward. Call before iterating.
    pub fn rev(mut self) -> RangeIter {
        self.forward = !self.forward;
        self
    }

    fn in_range(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= &s[..],
            Bound::Excluded(s) => key > &s[..],
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => key <= &e[..],
            Bound::Excluded(e) => key < &e[..],
            Bound::Unbounded => true,
        };
        after_start && before_end
    }

    fn advance(&mut self) -> Result<Option<Entry>> {
        if self.started {
            return self.cursor.step(self.forward);
        }
        self.started = true;
        let (bound, forward) = if self.forward {
            (&self.start, true)
        } else {
            (&self.end, false)
        };
        let bound = borrowed(bound);
        let batch = Cursor::fetch(self.cursor.store()?, bound, forward);
        Ok(self.cursor.land(batch, forward))
    }
}

impl Iterator for RangeIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(e)) if self.in_range(&e.0) => Some(Ok(e)),
            Ok(_) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
