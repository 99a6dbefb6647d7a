//! Named databases, reads and writes in them, and cursors.

use std::ffi::{c_char, c_int};
use std::sync::Arc;
use std::time::Duration;

use super::codes::{Fail, DBREP_NOTFOUND, DBREP_OK};
use super::data::{give, level_of, with_txn};
use super::dbrep_buf;
use super::handle::{dbrep_env, with_env, Shared};
use super::ptr::{bytes, empty_buf, guard, into_buf, put, put_opt, utf8};
use crate::cursor::{Cursor, Entry};
use crate::databases::Database;

/// A named database of an environment (`DB`). Opaque: created by
/// `dbrep_db_create`, `dbrep_db_open` or `dbrep_db_open_or_create`, freed by
/// `dbrep_db_free` (which does not remove the database). A handle is
/// immutable: it may be used from any number of threads at once, and
/// outlive its environment (calls through a closed environment fail).
pub struct dbrep_db {
    db: Database,
}

/// A cursor over one database of a snapshot (`DBC`). Opaque: created by
/// `dbrep_cursor_open`, freed by `dbrep_cursor_close`. Use it from one
/// thread at a time (it may move between threads).
pub struct dbrep_cursor {
    shared: Arc<Shared>,
    cursor: Cursor,
}

/// # Safety
/// `db` null or a live handle.
unsafe fn db_ref<'a>(db: *const dbrep_db) -> Result<&'a Database, Fail> {
    // SAFETY: null or live, by the caller's contract.
    match unsafe { db.as_ref() } {
        Some(d) => Ok(&d.db),
        None => Err(Fail::einval("the database handle is null")),
    }
}

/// Which of the open calls.
#[derive(Clone, Copy)]
enum Open {
    Create,
    Existing,
    Either,
}

/// # Safety
/// `env` null or live; `name` null or NUL-terminated; `dbp` null or writable.
unsafe fn open_db(
    env: *mut dbrep_env,
    name: *const c_char,
    dbp: *mut *mut dbrep_db,
    how: Open,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(dbp, std::ptr::null_mut());
        with_env(env, |_, e| {
            if dbp.is_null() {
                return Err(Fail::einval("dbp is null"));
            }
            let name = utf8(name, "name")?;
            let db = match how {
                Open::Create => e.create_database(name)?,
                Open::Existing => e.open_database(name)?,
                Open::Either => e.open_or_create_database(name)?,
            };
            put(dbp, Box::into_raw(Box::new(dbrep_db { db })), "dbp")
        })
    }
}

/// Creates database `name` (a committed, replicated record; master only)
/// and opens it: `*dbp` receives a handle to free with `dbrep_db_free`
/// (null on failure). `DBREP_EINVAL` if it exists. Thread-safe.
///
/// # Safety
/// `env` null or live; `name` null or NUL-terminated; `dbp` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_db_create(
    env: *mut dbrep_env,
    name: *const c_char,
    dbp: *mut *mut dbrep_db,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { open_db(env, name, dbp, Open::Create) }
}

/// Opens existing database `name`: `*dbp` receives a handle to free with
/// `dbrep_db_free` (null on failure). `DBREP_NO_DATABASE` if there is none.
/// Thread-safe.
///
/// # Safety
/// `env` null or live; `name` null or NUL-terminated; `dbp` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_db_open(
    env: *mut dbrep_env,
    name: *const c_char,
    dbp: *mut *mut dbrep_db,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { open_db(env, name, dbp, Open::Existing) }
}

/// Opens database `name`, creating it first if it does not exist (creating
/// needs the master): `*dbp` receives a handle to free with `dbrep_db_free`
/// (null on failure). Thread-safe.
///
/// # Safety
/// `env` null or live; `name` null or NUL-terminated; `dbp` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_db_open_or_create(
    env: *mut dbrep_env,
    name: *const c_char,
    dbp: *mut *mut dbrep_db,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { open_db(env, name, dbp, Open::Either) }
}

/// Frees a database handle (the database itself stays). A null `db` is
/// ignored. Not to be called while another thread uses the same handle.
///
/// # Safety
/// `db` null or a handle from `dbrep_db_create`/`open`/`open_or_create`,
/// not yet freed.
#[no_mangle]
pub unsafe extern "C" fn dbrep_db_free(db: *mut dbrep_db) {
    if db.is_null() {
        return;
    }
    // SAFETY: a live handle from `Box::into_raw`, freed once (contract).
    let d = unsafe { Box::from_raw(db) };
    let _ = guard(None, move || {
        drop(d);
        Ok(DBREP_OK)
    });
}

/// Removes database `name` and its keys (a committed, replicated record;
/// master only). Handles to it stay valid to free, but every use of them
/// then returns `DBREP_NO_DATABASE`. Thread-safe.
///
/// # Safety
/// `env` null or live; `name` null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn dbrep_db_remove(env: *mut dbrep_env, name: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            e.remove_database(utf8(name, "name")?)?;
            Ok(DBREP_OK)
        })
    }
}

/// Lists the named databases of this site: `*names` receives their names in
/// order, each followed by one NUL byte (empty when there are none), in a
/// buffer to free with `dbrep_buf_free`; `*count`, if not null, how many.
/// Thread-safe.
///
/// # Safety
/// `env` null or live; `names` null or writable; `count` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_db_list(
    env: *mut dbrep_env,
    names: *mut dbrep_buf,
    count: *mut usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(names, empty_buf());
        put_opt(count, 0);
        with_env(env, |_, e| {
            if names.is_null() {
                return Err(Fail::einval("names is null"));
            }
            let list = e.list_databases()?;
            let mut out = Vec::new();
            for n in &list {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
            put_opt(count, list.len());
            put(names, into_buf(out), "names")
        })
    }
}

/// Writes `value` under `key` in database `db` in the transaction. The
/// bytes are copied. Errors at once: `DBREP_EINVAL` for a key or value over
/// the limits. Not thread-safe for one transaction.
///
/// # Safety
/// `txn` null or live; `db` null or live; `key`/`value` null or readable
/// for their lengths.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_put_in(
    txn: *mut super::data::dbrep_txn,
    db: *const dbrep_db,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_txn(txn, |t| {
            t.shared.env()?;
            let db = db_ref(db)?;
            let k = bytes(key, key_len, "key")?;
            let v = bytes(value, value_len, "value")?;
            t.txn.put_in(db, k, v)?;
            Ok(DBREP_OK)
        })
    }
}

/// Deletes `key` from database `db` in the transaction. Not thread-safe for
/// one transaction.
///
/// # Safety
/// `txn` null or live; `db` null or live; `key` null or readable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_delete_in(
    txn: *mut super::data::dbrep_txn,
    db: *const dbrep_db,
    key: *const u8,
    key_len: usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_txn(txn, |t| {
            t.shared.env()?;
            let db = db_ref(db)?;
            t.txn.delete_in(db, bytes(key, key_len, "key")?)?;
            Ok(DBREP_OK)
        })
    }
}

/// Reads `key` of database `db` as the transaction would leave it (as
/// `dbrep_txn_get`; the key joins the read set checked at commit). On
/// `DBREP_OK`, `*value` holds a copy to free with `dbrep_buf_free`;
/// `DBREP_NOTFOUND` when absent, `DBREP_NO_DATABASE` when `db` was removed.
/// Not thread-safe for one transaction.
///
/// # Safety
/// `txn` null or live; `db` null or live; `key` null or readable; `value`
/// null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_get_in(
    txn: *mut super::data::dbrep_txn,
    db: *const dbrep_db,
    key: *const u8,
    key_len: usize,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(value, empty_buf());
        with_txn(txn, |t| {
            t.shared.env()?;
            let db = db_ref(db)?;
            let key = bytes(key, key_len, "key")?;
            if value.is_null() {
                return Err(Fail::einval("value is null"));
            }
            let found = t.txn.get_in(db, key)?;
            give(found, value)
        })
    }
}

/// Reads the committed value of `key` in database `db` from this site's
/// store (a stale read, never waits). On `DBREP_OK`, `*value` holds a copy
/// to free with `dbrep_buf_free`; `DBREP_NOTFOUND` when absent,
/// `DBREP_NO_DATABASE` when `db` was removed. Thread-safe.
///
/// # Safety
/// `env` null or live; `db` null or live; `key` null or readable; `value`
/// null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_get_in(
    env: *mut dbrep_env,
    db: *const dbrep_db,
    key: *const u8,
    key_len: usize,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(value, empty_buf());
        with_env(env, |_, e| {
            let db = db_ref(db)?;
            let key = bytes(key, key_len, "key")?;
            if value.is_null() {
                return Err(Fail::einval("value is null"));
            }
            give(e.get_in(db, key)?, value)
        })
    }
}

/// Opens a cursor over database `db` on a snapshot taken at `level` (one of
/// `DBREP_READ_*`), waiting at most `timeout_us` for it: `*cursorp`
/// receives a handle to close with `dbrep_cursor_close` (null on failure).
/// The snapshot counts against the open-snapshot limit until closed. A
/// client that rolls back or installs a snapshot makes every later call on
/// the cursor return `DBREP_HANDLE_DEAD`. Thread-safe (the cursor then
/// belongs to one thread at a time).
///
/// # Safety
/// `env` null or live; `db` null or live; `cursorp` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_cursor_open(
    env: *mut dbrep_env,
    db: *const dbrep_db,
    level: c_int,
    timeout_us: u64,
    cursorp: *mut *mut dbrep_cursor,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(cursorp, std::ptr::null_mut());
        with_env(env, |_, e| {
            if cursorp.is_null() {
                return Err(Fail::einval("cursorp is null"));
            }
            let db = db_ref(db)?;
            let level = level_of(level)?;
            let rt = e.read_txn_at(level, Duration::from_micros(timeout_us))?;
            let cursor = rt.cursor(db)?;
            // SAFETY: `env` is live (checked by `with_env`).
            let shared = (*env).shared.clone();
            let c = Box::into_raw(Box::new(dbrep_cursor { shared, cursor }));
            put(cursorp, c, "cursorp")
        })
    }
}

/// Runs `f` on a live cursor handle inside the panic guard, and hands the
/// entry it moved to back through `key`/`value`.
///
/// # Safety
/// `c` null or a live cursor used by no other thread; `key`/`value` null or
/// writable.
unsafe fn with_cursor(
    c: *mut dbrep_cursor,
    key: *mut dbrep_buf,
    value: *mut dbrep_buf,
    f: impl FnOnce(&mut Cursor) -> Result<Option<Entry>, Fail>,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(key, empty_buf());
        put_opt(value, empty_buf());
    }
    // SAFETY: null or live and unshared, by the contract.
    let Some(c) = (unsafe { c.as_mut() }) else {
        return guard(None, || Err(Fail::einval("the cursor handle is null")));
    };
    let shared = c.shared.clone();
    guard(Some(&shared), || {
        if key.is_null() || value.is_null() {
            return Err(Fail::einval("key or value is null"));
        }
        c.shared.env()?;
        match f(&mut c.cursor)? {
            Some((k, v)) => {
                // SAFETY: both checked non-null above; writable by contract.
                unsafe {
                    put(key, into_buf(k), "key")?;
                    put(value, into_buf(v), "value")
                }
            }
            None => Err(Fail::new(DBREP_NOTFOUND, "no entry there")),
        }
    })
}

/// Moves the cursor to the first entry of its database. On `DBREP_OK`,
/// `*key` and `*value` hold copies to free with `dbrep_buf_free`;
/// `DBREP_NOTFOUND` when the database is empty (both then empty, nothing to
/// free). Every move fails with `DBREP_HANDLE_DEAD` once the snapshot's
/// store was replaced. Not thread-safe for one cursor.
///
/// # Safety
/// `cursor` null or live; `key`/`value` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_cursor_first(
    cursor: *mut dbrep_cursor,
    key: *mut dbrep_buf,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_cursor(cursor, key, value, |c| Ok(c.first()?)) }
}

/// Moves the cursor to the last entry (as `dbrep_cursor_first`).
///
/// # Safety
/// `cursor` null or live; `key`/`value` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_cursor_last(
    cursor: *mut dbrep_cursor,
    key: *mut dbrep_buf,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_cursor(cursor, key, value, |c| Ok(c.last()?)) }
}

/// Moves the cursor to the entry after the current one (the first if it has
/// none); `DBREP_NOTFOUND` past the end, the cursor staying where it was.
/// Outputs as `dbrep_cursor_first`.
///
/// # Safety
/// `cursor` null or live; `key`/`value` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_cursor_next(
    cursor: *mut dbrep_cursor,
    key: *mut dbrep_buf,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_cursor(cursor, key, value, |c| Ok(c.next()?)) }
}

/// Moves the cursor to the entry before the current one (the last if it has
/// none); `DBREP_NOTFOUND` before the start. Outputs as `dbrep_cursor_first`.
///
/// # Safety
/// `cursor` null or live; `key`/`value` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_cursor_prev(
    cursor: *mut dbrep_cursor,
    key: *mut dbrep_buf,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_cursor(cursor, key, value, |c| Ok(c.prev()?)) }
}

/// Moves the cursor to the first entry with a key at or after `seek_key`
/// (`DB_SET_RANGE`); `DBREP_NOTFOUND` if there is none. Outputs as
/// `dbrep_cursor_first`; `seek_key` is not kept.
///
/// # Safety
/// `cursor` null or live; `seek_key` null or readable for `seek_len`;
/// `key`/`value` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_cursor_seek(
    cursor: *mut dbrep_cursor,
    seek_key: *const u8,
    seek_len: usize,
    key: *mut dbrep_buf,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_cursor(cursor, key, value, |c| {
            let k = bytes(seek_key, seek_len, "seek_key")?;
            Ok(c.seek(k)?)
        })
    }
}

/// Moves the cursor to the last entry with a key at or before `seek_key`;
/// `DBREP_NOTFOUND` if there is none. Outputs as `dbrep_cursor_first`.
///
/// # Safety
/// `cursor` null or live; `seek_key` null or readable for `seek_len`;
/// `key`/`value` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_cursor_seek_back(
    cursor: *mut dbrep_cursor,
    seek_key: *const u8,
    seek_len: usize,
    key: *mut dbrep_buf,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_cursor(cursor, key, value, |c| {
            let k = bytes(seek_key, seek_len, "seek_key")?;
            Ok(c.seek_back(k)?)
        })
    }
}

/// Closes and frees a cursor (`DBC->close`), releasing its snapshot. A null
/// `cursor` returns `DBREP_EINVAL`. Do not use the handle again.
///
/// # Safety
/// `cursor` null or a live cursor used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn dbrep_cursor_close(cursor: *mut dbrep_cursor) -> c_int {
    if cursor.is_null() {
        return guard(None, || Err(Fail::einval("the cursor handle is null")));
    }
    // SAFETY: a live handle from `dbrep_cursor_open`'s `Box::into_raw`, freed once.
    let c = unsafe { Box::from_raw(cursor) };
    guard(None, move || {
        drop(c);
        Ok(DBREP_OK)
    })
}
