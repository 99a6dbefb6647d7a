//! [`Txn`]: a read-write transaction on an [`Env`].
//!
//! Writes are encoded into the commit payload as they are made (one
//! buffer, no allocation per write) and applied atomically at commit.
//! Reads come from a snapshot taken at the first read and are checked at
//! commit (see `reads` for the isolation this gives, and why).

pub(crate) mod reads;

use std::borrow::Cow;
use std::ops::Bound;

use crate::cursor::Entry;
use crate::databases::{check_db, Database};
use crate::db::{encode_count, DbId, DbOpRef, ValidOps, DEFAULT_DB};
use crate::env::{CommitInfo, Env};
use crate::error::{Error, Result};

/// A transaction: buffered puts and deletes applied atomically at commit.
///
/// `Txn<'a>` from [`Env::txn`] borrows its environment; `Txn<'static>` from
/// [`Env::txn_owned`] holds a clone of it (for a handle that must own what
/// it points to, such as the C API's).
pub struct Txn<'a> {
    env: Cow<'a, Env>,
    /// The commit payload so far: a count (written at commit) and the ops.
    payload: Vec<u8>,
    count: u32,
    /// Bytes of keys and values written, for the transaction size limit.
    bytes: usize,
    /// The named databases written, checked to still exist at commit.
    dbs: Vec<(DbId, Database)>,
    /// The first limit a plain `put` passed, reported at commit (`put`
    /// returns nothing, so the error waits there).
    failed: Option<Error>,
    /// What the transaction read, from which snapshot; `None` until it reads.
    reads: Option<reads::ReadSet>,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(env: Cow<'a, Env>) -> Txn<'a> {
        Txn {
            env,
            payload: Vec::new(),
            count: 0,
            bytes: 0,
            dbs: Vec::new(),
            failed: None,
            reads: None,
        }
    }

    fn push(&mut self, db: &Database, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let limits = self.env.inner.data.limits;
        limits.check_key(key)?;
        if let Some(v) = value {
            limits.check_value(v)?;
        }
        let count = self.count as usize + 1;
        crate::databases::limit("transaction op count", limits.max_txn_ops, count)?;
        let bytes = self.bytes + key.len() + value.map_or(0, <[u8]>::len);
        crate::databases::limit("transaction bytes", limits.max_txn_bytes, bytes)?;
        if self.payload.is_empty() {
            encode_count(&mut self.payload, 0);
        }
        let id = db.id();
        if id != DEFAULT_DB && !self.dbs.iter().any(|(d, _)| *d == id) {
            self.dbs.push((id, db.clone()));
        }
        let op = match value {
            Some(value) => DbOpRef::Put { db: id, key, value },
            None => DbOpRef::Delete { db: id, key },
        };
        op.encode(&mut self.payload);
        self.count += 1;
        self.bytes = bytes;
        Ok(())
    }

    fn remember(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.failed.get_or_insert(e);
        }
    }

    /// Writes `value` under `key` in the default database. A key or value
    /// over the limits fails the commit with [`Error::Limit`] (use
    /// [`Txn::put_in`] to hear of it at once).
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        let r = self.push(&Database::default(), key, Some(value));
        self.remember(r);
    }

    /// Deletes `key` from the default database.
    pub fn delete(&mut self, key: &[u8]) {
        let r = self.push(&Database::default(), key, None);
        self.remember(r);
    }

    /// Writes `value` under `key` in database `db`.
    pub fn put_in(&mut self, db: &Database, key: &[u8], value: &[u8]) -> Result<()> {
        self.push(db, key, Some(value))
    }

    /// Deletes `key` from database `db`.
    pub fn delete_in(&mut self, db: &Database, key: &[u8]) -> Result<()> {
        self.push(db, key, None)
    }

    /// This transaction's own latest write of `key` in `db`: `Some(Some(v))`
    /// for a put, `Some(None)` for a delete, `None` if it wrote none.
    fn own_write(&self, db: DbId, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let ops = ValidOps::trusted(&self.payload, self.count as usize);
        let mut found = None;
        for op in ops.iter() {
            match op {
                DbOpRef::Put {
                    db: d,
                    key: k,
                    value,
                } if d == db && k == key => found = Some(Some(value)),
                DbOpRef::Delete { db: d, key: k } if d == db && k == key => found = Some(None),
                _ => {}
            }
        }
        found.map(|v| v.map(<[u8]>::to_vec))
    }

    /// Reads `key` as this transaction would leave it: its own writes first,
    /// then the store as of the transaction's snapshot (taken at its first
    /// read). The key joins the read set checked at commit.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_in(&Database::default(), key)
    }

    /// Reads `key` of database `db` as this transaction would leave it.
    pub fn get_in(&mut self, db: &Database, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.own_write(db.id(), key) {
            return Ok(v);
        }
        let max = self.env.inner.data.limits.max_txn_reads;
        self.read_set()?.get(db, key, max)
    }

    /// Reads the entries of `db` between `start` and `end`, in key order,
    /// as of the transaction's snapshot (its own writes are not merged in).
    /// The range joins the read set: a key inserted into it, removed from
    /// it or changed by another transaction before this one commits fails
    /// the commit. At most [`DataLimits::max_txn_reads`] entries.
    ///
    /// [`DataLimits::max_txn_reads`]: crate::DataLimits
    pub fn range_in(
        &mut self,
        db: &Database,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Vec<Entry>> {
        let max = self.env.inner.data.limits.max_txn_reads;
        self.read_set()?.range(db, start, end, max)
    }

    fn read_set(&mut self) -> Result<&mut reads::ReadSet> {
        if self.reads.is_none() {
            self.reads = Some(reads::ReadSet::take(&self.env)?);
        }
        Ok(self.reads.as_mut().expect("set just above"))
    }

    /// Commits: writes the commit record, ships it to the clients and waits
    /// (up to the ack timeout) for the acknowledgements the ack policy asks
    /// for. Only the master may commit.
    pub fn commit(mut self) -> Result<CommitInfo> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        encode_count(&mut self.payload, self.count);
        let dbs = std::mem::take(&mut self.dbs);
        let reads = self.reads.take();
        self.env.commit_payload(&self.payload, |core| {
            for (id, db) in &dbs {
                check_db(core, *id, db.name())?;
            }
            match &reads {
                Some(r) => r.validate(core),
                None => Ok(()),
            }
        })
    }

    /// Discards the transaction.
    pub fn abort(self) {}
}

impl Env {
    /// Begins a transaction that owns a clone of this environment handle
    /// (the same environment), so it can outlive the borrow: the same
    /// transaction as [`Env::txn`] in every other way.
    pub fn txn_owned(&self) -> Txn<'static> {
        Txn::new(Cow::Owned(self.clone()))
    }

    /// Runs `body` in a transaction and commits it, again from the start
    /// (in a new transaction) each time the commit fails with
    /// [`Error::Conflict`], up to `attempts` times in all; any other error
    /// from `body` or the commit ends it at once. What `body` returns comes
    /// back with the commit's outcome.
    ///
    /// ```
    /// # use dbrep::{Env, EnvConfig, StartAs};
    /// # let env = Env::open_in_memory(EnvConfig::default()).unwrap();
    /// # env.rep_set_transport(1, |_| Ok(())).unwrap();
    /// # env.rep_start(&[], StartAs::Master).unwrap();
    /// let (n, _info) = env
    ///     .transact(100, |txn| {
    ///         let n = txn.get(b"counter")?.map_or(0, |v| v[0]) + 1;
    ///         txn.put(b"counter", &[n]);
    ///         Ok(n)
    ///     })
    ///     .unwrap();
    /// assert_eq!(n, 1);
    /// ```
    pub fn transact<T>(
        &self,
        attempts: u32,
        mut body: impl FnMut(&mut Txn<'_>) -> Result<T>,
    ) -> Result<(T, CommitInfo)> {
        let mut last = Error::Conflict("no attempt was made (attempts = 0)".into());
        for _ in 0..attempts {
            let mut txn = self.txn();
            let out = body(&mut txn)?;
            match txn.commit() {
                Ok(info) => return Ok((out, info)),
                Err(e @ Error::Conflict(_)) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}
