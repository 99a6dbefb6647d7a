//! The environment's data calls beyond the default database: named
//! databases (Berkeley DB's `DB->open` of a named database inside a
//! replicated environment), the limits of the data calls, and the wait
//! for a client's synchronisation to end before data is read.
//!
//! A named database is created and removed by a commit record, like any
//! write, so every site learns of it through the log (or a snapshot) in
//! the same order as the writes around it. A [`Database`] handle names a
//! database by id: after a database is removed and one of the same name
//! created, the old handle finds nothing rather than the new database.
//!
//! A tour (also the README's quick start):
//!
//! ```
//! use std::ops::Bound;
//! use dbrep::{Env, EnvConfig, Error, StartAs};
//!
//! let env = Env::open_in_memory(EnvConfig::default())?;
//! env.rep_set_transport(1, |_msg| Ok(()))?;
//! env.rep_start(&[], StartAs::Master)?;
//!
//! // A named database (Berkeley DB's DB->open with a name). Its creation is
//! // a commit: it replicates, and clients open it by name. Keys of different
//! // databases never collide.
//! let users = env.open_or_create_database("users")?;
//! let mut txn = env.txn();
//! txn.put_in(&users, b"user:1", b"ada")?;
//! txn.put_in(&users, b"user:2", b"grace")?;
//! txn.put(b"user:1", b"the default database is another key space");
//! txn.commit()?;
//!
//! // A cursor reads a snapshot: later commits do not change what it sees.
//! // Forward, backward, from any key; range and prefix scans in bounded memory.
//! let mut cursor = env.cursor(&users)?;
//! assert_eq!(cursor.seek(b"user:2")?.map(|(k, _)| k), Some(b"user:2".to_vec()));
//! assert_eq!(cursor.prev()?.map(|(_, v)| v), Some(b"ada".to_vec()));
//! let names: Vec<Vec<u8>> = env
//!     .prefix(&users, b"user:")?
//!     .map(|e| e.map(|(_, v)| v))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(names, [b"ada".to_vec(), b"grace".to_vec()]);
//! let last_first = env.range(&users, Bound::Unbounded, Bound::Excluded(b"user:9"))?.rev();
//! assert_eq!(last_first.count(), 2);
//!
//! // A read-modify-write transaction is serializable: if another transaction
//! // changed what it read before it commits, the commit fails with
//! // Error::Conflict and writes nothing. Env::transact retries it.
//! let (visits, _info) = env.transact(10, |txn| {
//!     let n = txn.get_in(&users, b"visits")?.map_or(0, |v| v[0]);
//!     txn.put_in(&users, b"visits", &[n + 1])?;
//!     Ok(n + 1)
//! })?;
//! assert_eq!(visits, 1);
//! # Ok::<(), Error>(())
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use crate::db::{encode_count, DbId, DbOpRef, DEFAULT_DB};
use crate::env::{CommitInfo, Env};
use crate::error::{Error, Result};
use crate::rep::Core;

/// Bounds on the data calls, each reported as [`Error::Limit`] when passed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DataLimits {
    /// Largest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most writes in one transaction.
    pub max_txn_ops: usize,
    /// Most bytes of keys and values one transaction writes; must stay
    /// below the log's largest record (`LogConfig::max_record_bytes`).
    pub max_txn_bytes: usize,
    /// Most keys one transaction may read (its read set, checked at commit).
    pub max_txn_reads: usize,
    /// Most read snapshots (read transactions and cursors) open at once.
    pub max_open_snapshots: usize,
    /// Longest database name, in bytes.
    pub max_name_bytes: usize,
    /// Longest a data call waits for a client's synchronisation to end
    /// before it fails with [`Error::Timeout`].
    pub sync_wait: Duration,
}

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            max_key_bytes: 64 << 10,
            max_value_bytes: 16 << 20,
            max_txn_ops: 100_000,
            max_txn_bytes: 14 << 20,
            max_txn_reads: 100_000,
            max_open_snapshots: 1024,
            max_name_bytes: 255,
            sync_wait: Duration::from_secs(30),
        }
    }
}

impl DataLimits {
    /// Checks that what these limits let a master commit, every site can
    /// replay: within the bounds the log and the payload decoder enforce.
    pub fn check(&self, log_max_record_bytes: u32) -> Result<()> {
        let ops = crate::db::OpLimits::default();
        let too_big = |what: &str, got: usize, most: usize| {
            Err(Error::invalid(format!(
                "data limit {what} of {got} is above {most}, the most every site accepts"
            )))
        };
        if self.max_key_bytes > ops.max_key_bytes {
            return too_big("max_key_bytes", self.max_key_bytes, ops.max_key_bytes);
        }
        if self.max_value_bytes > ops.max_value_bytes {
            return too_big("max_value_bytes", self.max_value_bytes, ops.max_value_bytes);
        }
        if self.max_name_bytes > ops.max_key_bytes {
            return too_big("max_name_bytes", self.max_name_bytes, ops.max_key_bytes);
        }
        if self.max_txn_ops > ops.max_ops {
            return too_big("max_txn_ops", self.max_txn_ops, ops.max_ops);
        }
        // Room for the record header and each op's framing (kind, database
        // id, two lengths).
        let framing = self.max_txn_ops.saturating_mul(13).saturating_add(1 << 10);
        let room = (log_max_record_bytes as usize).saturating_sub(framing);
        if self.max_txn_bytes > room {
            return too_big("max_txn_bytes", self.max_txn_bytes, room);
        }
        Ok(())
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        limit("key length", self.max_key_bytes, key.len())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<()> {
        limit("value length", self.max_value_bytes, value.len())
    }
}

pub(crate) fn limit(what: &'static str, limit: usize, got: usize) -> Result<()> {
    if got > limit {
        return Err(Error::Limit {
            what,
            limit: limit as u64,
            got: got as u64,
        });
    }
    Ok(())
}

/// The data layer's share of an environment.
pub(crate) struct DataState {
    pub(crate) limits: DataLimits,
    /// Read snapshots open now.
    pub(crate) open_snapshots: AtomicUsize,
}

impl DataState {
    pub(crate) fn new(limits: DataLimits) -> DataState {
        DataState {
            limits,
            open_snapshots: AtomicUsize::new(0),
        }
    }
}

/// A handle on one database of an environment: the default one
/// ([`Database::default`]) or a named one from [`Env::create_database`] or
/// [`Env::open_database`]. Cheap to clone; not tied to a thread.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Database {
    id: DbId,
    name: Arc<str>,
}

impl Default for Database {
    /// The default database, which `Env::get` and `Txn::put` use.
    fn default() -> Database {
        Database {
            id: DEFAULT_DB,
            name: Arc::from(""),
        }
    }
}

impl Database {
    /// The database's name (empty for the default database).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's id, the same on every site.
    pub fn id(&self) -> DbId {
        self.id
    }

    /// A handle on database `id` named `name`, for code below the `Env`
    /// (the simulator) that finds ids in a store itself.
    #[cfg(feature = "testing")]
    pub(crate) fn from_parts(id: DbId, name: &str) -> Database {
        Database {
            id,
            name: Arc::from(name),
        }
    }

    /// Checks that the database this handle names still exists in `core`'s store.
    pub(crate) fn check_exists(&self, core: &Core) -> Result<()> {
        check_db(core, self.id, &self.name)
    }
}

pub(crate) fn check_db(core: &Core, id: DbId, name: &str) -> Result<()> {
    if core.storage().store().database(id).is_none() {
        return Err(Error::NoDatabase(name.to_string()));
    }
    Ok(())
}

impl Env {
    /// The limits of the data calls.
    pub fn data_limits(&self) -> DataLimits {
        self.inner.data.limits
    }

    /// Takes the environment lock for a data call, once this site is not
    /// in the middle of synchronising with a master: a client rewriting its
    /// state (verifying, rolling back, loading a snapshot) has no state
    /// worth reading. With [`ConfigFlag::NoWait`](crate::ConfigFlag::NoWait)
    /// the call fails at once with [`Error::Lockout`] instead of waiting.
    pub(crate) fn data_lock(&self) -> Result<MutexGuard<'_, Core>> {
        self.check_failed()?;
        let mut core = self.inner.core.lock();
        if !core.is_syncing() {
            return Ok(core);
        }
        if core.config().nowait {
            return Err(Error::Lockout);
        }
        let deadline = Instant::now() + self.inner.data.limits.sync_wait;
        while core.is_syncing() {
            if self
                .inner
                .changed
                .wait_until(&mut core, deadline)
                .timed_out()
                && core.is_syncing()
            {
                return Err(Error::Timeout);
            }
        }
        Ok(core)
    }

    /// Creates the database `name` (master only); fails if it exists. The
    /// creation is a commit like any other: it replicates, and the
    /// returned [`CommitInfo`]-like guarantees apply (use
    /// [`Env::create_database_info`] for them).
    pub fn create_database(&self, name: &str) -> Result<Database> {
        self.create_database_info(name).map(|(db, _)| db)
    }

    /// [`Env::create_database`], also returning what the commit achieved.
    pub fn create_database_info(&self, name: &str) -> Result<(Database, CommitInfo)> {
        let limits = self.inner.data.limits;
        if name.is_empty() {
            return Err(Error::invalid("a database name may not be empty"));
        }
        limit("database name length", limits.max_name_bytes, name.len())?;
        // The id is read now and checked again under the lock at commit:
        // another creation in between means trying again with the next id.
        loop {
            let id = {
                let core = self.data_lock()?;
                let store = core.storage().store();
                if store.database_id(name.as_bytes()).is_some() {
                    return Err(Error::invalid(format!("database {name:?} exists")));
                }
                store.next_database_id()
            };
            let mut payload = Vec::new();
            encode_count(&mut payload, 1);
            DbOpRef::CreateDb {
                id,
                name: name.as_bytes(),
            }
            .encode(&mut payload);
            let raced = std::cell::Cell::new(false);
            let r = self.commit_payload(&payload, |core| {
                let store = core.storage().store();
                if store.database_id(name.as_bytes()).is_some() {
                    return Err(Error::invalid(format!("database {name:?} exists")));
                }
                if store.next_database_id() != id {
                    raced.set(true);
                    return Err(Error::Conflict("database ids moved on".into()));
                }
                Ok(())
            });
            match r {
                Err(_) if raced.get() => continue,
                Err(e) => return Err(e),
                Ok(info) => {
                    let db = Database {
                        id,
                        name: Arc::from(name),
                    };
                    return Ok((db, info));
                }
            }
        }
    }

    /// Opens the existing database `name` (the empty name is the default
    /// database); [`Error::NoDatabase`] if there is none. Works on clients,
    /// which know the databases their log has brought them.
    pub fn open_database(&self, name: &str) -> Result<Database> {
        if name.is_empty() {
            return Ok(Database::default());
        }
        let core = self.data_lock()?;
        match core.storage().store().database_id(name.as_bytes()) {
            Some(id) => Ok(Database {
                id,
                name: Arc::from(name),
            }),
            None => Err(Error::NoDatabase(name.to_string())),
        }
    }

    /// Opens `name`, creating it first (on the master) if it does not exist.
    pub fn open_or_create_database(&self, name: &str) -> Result<Database> {
        match self.open_database(name) {
            Err(Error::NoDatabase(_)) => match self.create_database(name) {
                // Created by someone else meanwhile.
                Err(Error::Invalid(_)) => self.open_database(name),
                r => r,
            },
            r => r,
        }
    }

    /// The names of the named databases, in the order they were created.
    pub fn list_databases(&self) -> Result<Vec<String>> {
        let core = self.data_lock()?;
        Ok(core
            .storage()
            .store()
            .databases()
            .map(|(_, name)| String::from_utf8_lossy(name).into_owned())
            .collect())
    }

    /// Removes the database `name` and everything in it (master only).
    /// Handles on it find nothing afterwards ([`Error::NoDatabase`]).
    pub fn remove_database(&self, name: &str) -> Result<CommitInfo> {
        let db = self.open_database(name)?;
        if db.id == DEFAULT_DB {
            return Err(Error::invalid("the default database cannot be removed"));
        }
        let mut payload = Vec::new();
        encode_count(&mut payload, 1);
        DbOpRef::RemoveDb { id: db.id }.encode(&mut payload);
        self.commit_payload(&payload, |core| db.check_exists(core))
    }

    /// Reads `key` from database `db` of the local store (a stale read, as
    /// [`Env::get`]); waits out a client's synchronisation first.
    pub fn get_in(&self, db: &Database, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let core = self.data_lock()?;
        match core.storage().store().database(db.id) {
            Some(store) => Ok(store.get(key).map(<[u8]>::to_vec)),
            None => Err(Error::NoDatabase(db.name.to_string())),
        }
    }

    /// Number of keys in database `db` of the local store.
    pub fn len_in(&self, db: &Database) -> Result<usize> {
        let core = self.data_lock()?;
        match core.storage().store().database(db.id) {
            Some(store) => Ok(store.len()),
            None => Err(Error::NoDatabase(db.name.to_string())),
        }
    }
}

/// Counts one open snapshot against the limit; released on drop.
pub(crate) struct SnapshotSlot {
    env: Env,
}

impl SnapshotSlot {
    pub(crate) fn take(env: &Env) -> Result<SnapshotSlot> {
        let data = &env.inner.data;
        let max = data.limits.max_open_snapshots;
        let taken = data
            .open_snapshots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(SnapshotSlot { env: env.clone() }),
            Err(n) => Err(Error::Limit {
                what: "open snapshots (read transactions and cursors)",
                limit: max as u64,
                got: n as u64 + 1,
            }),
        }
    }
}

impl Drop for SnapshotSlot {
    fn drop(&mut self) {
        self.env
            .inner
            .data
            .open_snapshots
            .fetch_sub(1, Ordering::AcqRel);
    }
}
