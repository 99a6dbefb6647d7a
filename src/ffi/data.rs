//! Transactions, reads at each consistency level, `txn_applied`, and the
//! log calls (checkpoint, flush).

use std::ffi::c_int;
use std::sync::Arc;
use std::time::Duration;

use super::codes::{Fail, DBREP_KEYEMPTY, DBREP_NOTFOUND, DBREP_OK, DBREP_TIMEOUT};
use super::handle::{dbrep_env, unknown, with_env, Shared};
use super::ptr::{bytes, empty_buf, guard, into_buf, put, put_opt, Ret};
use super::{dbrep_buf, dbrep_lsn};
use crate::databases::Database;
use crate::env::ReadLevel;
use crate::rep::{CommitToken, TokenStatus};
use crate::txn::Txn;

/// Size of a commit token (`DB_TXN_TOKEN_SIZE` is 20 in Berkeley DB).
pub const DBREP_TOKEN_SIZE: usize = 12;

/// A serializable read-write transaction: buffered puts and deletes applied
/// atomically at commit, reads checked at commit (a conflict fails it with
/// `DBREP_LOCK_DEADLOCK`). Opaque: created by `dbrep_txn_begin`, freed by
/// `dbrep_txn_commit` or `dbrep_txn_abort` (whatever they return). Use it
/// from one thread at a time (it may move between threads).
pub struct dbrep_txn {
    pub(crate) shared: Arc<Shared>,
    /// The Rust transaction itself, owning a clone of the `Env`.
    pub(crate) txn: Txn<'static>,
}

impl dbrep_txn {
    /// Checks that the environment is still open and not failed.
    fn live(&self) -> Result<(), Fail> {
        self.shared.env().map(drop)
    }
}

/// Begins a transaction (`DB_ENV->txn_begin`). `*txnp` receives the handle
/// (null on failure). Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `txnp` writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_begin(env: *mut dbrep_env, txnp: *mut *mut dbrep_txn) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(txnp, std::ptr::null_mut());
        with_env(env, |_, _| {
            if txnp.is_null() {
                return Err(Fail::einval("txnp is null"));
            }
            // SAFETY: `env` is live (checked by `with_env`).
            let shared = (*env).shared.clone();
            let txn = shared.env()?.txn_owned();
            let t = Box::into_raw(Box::new(dbrep_txn { shared, txn }));
            put(txnp, t, "txnp")
        })
    }
}

/// Runs `f` on a live transaction handle inside the panic guard.
///
/// # Safety
/// `txn` must be null or a live transaction handle used by no other thread.
pub(crate) unsafe fn with_txn(txn: *mut dbrep_txn, f: impl FnOnce(&mut dbrep_txn) -> Ret) -> c_int {
    // SAFETY: null or live and unshared, by the contract.
    match unsafe { txn.as_mut() } {
        None => guard(None, || Err(Fail::einval("the transaction handle is null"))),
        Some(t) => {
            let shared = t.shared.clone();
            guard(Some(&shared), || f(t))
        }
    }
}

/// Writes `value` under `key` in the transaction (`DB->put`). The bytes are
/// copied; the caller keeps its buffers.
///
/// Not thread-safe for one transaction: use it from one thread at a time.
///
/// # Safety
/// `txn` null or live; `key`/`value` null or readable for their lengths.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_put(
    txn: *mut dbrep_txn,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_txn(txn, |t| {
            t.live()?;
            let k = bytes(key, key_len, "key")?;
            let v = bytes(value, value_len, "value")?;
            t.txn.put_in(&Database::default(), k, v)?;
            Ok(DBREP_OK)
        })
    }
}

/// Deletes `key` in the transaction (`DB->del`).
///
/// Not thread-safe for one transaction: use it from one thread at a time.
///
/// # Safety
/// `txn` null or live; `key` null or readable for `key_len`.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_delete(
    txn: *mut dbrep_txn,
    key: *const u8,
    key_len: usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_txn(txn, |t| {
            t.live()?;
            let k = bytes(key, key_len, "key")?;
            t.txn.delete_in(&Database::default(), k)?;
            Ok(DBREP_OK)
        })
    }
}

/// Reads `key` as the transaction would leave it: its own writes, then the
/// store as of the transaction's snapshot, taken at its first read
/// (`DB->get` in a transaction). The key joins the read set checked at
/// commit: if another transaction changes it first, the commit fails with
/// `DBREP_LOCK_DEADLOCK`. On `DBREP_OK`, `*value`
/// holds a copy to free with `dbrep_buf_free`; `DBREP_NOTFOUND` when absent
/// (then `*value` is empty and needs no free).
///
/// Not thread-safe for one transaction: use it from one thread at a time.
///
/// # Safety
/// `txn` null or live; `key` null or readable; `value` writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_get(
    txn: *mut dbrep_txn,
    key: *const u8,
    key_len: usize,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(value, empty_buf());
        with_txn(txn, |t| {
            t.live()?;
            let key = bytes(key, key_len, "key")?;
            if value.is_null() {
                return Err(Fail::einval("value is null"));
            }
            let found = t.txn.get(key)?;
            give(found, value)
        })
    }
}

/// # Safety
/// `out` null or writable.
pub(crate) unsafe fn give(found: Option<Vec<u8>>, out: *mut dbrep_buf) -> Ret {
    if out.is_null() {
        return Err(Fail::einval("value is null"));
    }
    match found {
        // SAFETY: forwarded contract.
        Some(v) => unsafe { put(out, into_buf(v), "value") },
        None => Err(Fail::new(DBREP_NOTFOUND, "key not found")),
    }
}

/// What `dbrep_txn_commit` reports.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct dbrep_commit_info {
    /// LSN of the commit record (zero for a transaction that wrote nothing).
    pub lsn: dbrep_lsn,
    /// Non-zero when the commit is permanent under the ack policy (acked in
    /// time); zero when it is committed locally but not (yet) permanent
    /// (`DBREP_EVENT_REP_PERM_FAILED` fired).
    pub permanent: c_int,
    /// Names the commit on every site, for `dbrep_txn_applied`.
    pub token: [u8; DBREP_TOKEN_SIZE],
}

/// Commits and frees the transaction (`DB_TXN->commit`), on the master only
/// (`DBREP_EINVAL` on a client). `DBREP_LOCK_DEADLOCK` when something the
/// transaction read changed before it committed (nothing is written; begin
/// a new transaction and retry); `DBREP_NO_DATABASE` when a database it
/// wrote was removed. It waits up to the ack timeout for the
/// acknowledgements the ack policy asks for. `info` may be null. The handle
/// is freed whatever the result: do not use it again.
///
/// # Safety
/// `txn` null or a live transaction handle used by no other thread; `info` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_commit(
    txn: *mut dbrep_txn,
    info: *mut dbrep_commit_info,
) -> c_int {
    if txn.is_null() {
        return guard(None, || Err(Fail::einval("the transaction handle is null")));
    }
    // SAFETY: a live handle from `dbrep_txn_begin`'s `Box::into_raw`, owned by
    // this call from now on (contract).
    let t = unsafe { Box::from_raw(txn) };
    let shared = t.shared.clone();
    guard(Some(&shared), || {
        t.live()?;
        let c = t.txn.commit()?;
        let out = dbrep_commit_info {
            lsn: c.lsn.into(),
            permanent: c_int::from(c.permanent),
            token: c.token.to_bytes(),
        };
        // SAFETY: forwarded contract.
        unsafe { put_opt(info, out) };
        Ok(DBREP_OK)
    })
}

/// Discards and frees the transaction (`DB_TXN->abort`). A null `txn`
/// returns `DBREP_EINVAL`.
///
/// # Safety
/// `txn` null or a live transaction handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_abort(txn: *mut dbrep_txn) -> c_int {
    if txn.is_null() {
        return guard(None, || Err(Fail::einval("the transaction handle is null")));
    }
    // SAFETY: as in `dbrep_txn_commit`.
    let t = unsafe { Box::from_raw(txn) };
    guard(None, move || {
        drop(t);
        Ok(DBREP_OK)
    })
}

/// Read level: linearizable, served by the master (with a lease or a
/// confirmation round); `DBREP_EINVAL` on a client.
pub const DBREP_READ_LINEARIZABLE: c_int = 1;
/// Read level: linearizable, served locally by a client after catching up
/// with the master's commit point (the same as linearizable on the master).
pub const DBREP_READ_FOLLOWER: c_int = 2;
/// Read level: whatever this site has applied; never waits.
pub const DBREP_READ_STALE: c_int = 3;

/// The read level a `DBREP_READ_*` constant names.
pub(crate) fn level_of(level: c_int) -> Result<ReadLevel, Fail> {
    match level {
        DBREP_READ_LINEARIZABLE => Ok(ReadLevel::Linearizable),
        DBREP_READ_FOLLOWER => Ok(ReadLevel::Follower),
        DBREP_READ_STALE => Ok(ReadLevel::Stale),
        l => Err(unknown("read level", l)),
    }
}

/// Reads the committed value of `key` at `level` (one of `DBREP_READ_*`),
/// waiting at most `timeout_us` for confirmation or catch-up (`DB->get`).
/// On `DBREP_OK`, `*value` holds a copy to free with `dbrep_buf_free`.
/// Errors: `DBREP_NOTFOUND`, `DBREP_TIMEOUT`, `DBREP_LEASE_EXPIRED`,
/// `DBREP_LOCKOUT`, `DBREP_UNAVAIL`, `DBREP_EINVAL`. Thread-safe.
///
/// # Safety
/// `env` null or live; `key` null or readable; `value` writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_get(
    env: *mut dbrep_env,
    key: *const u8,
    key_len: usize,
    level: c_int,
    timeout_us: u64,
    value: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(value, empty_buf());
        with_env(env, |_, e| {
            let key = bytes(key, key_len, "key")?;
            let level = level_of(level)?;
            if value.is_null() {
                return Err(Fail::einval("value is null"));
            }
            let found = e.get_at(key, level, Duration::from_micros(timeout_us))?;
            give(found, value)
        })
    }
}

/// Waits up to `timeout_us` for the commit `token` names to be applied on
/// this site (`DB_ENV->txn_applied`). Returns `DBREP_OK` once applied,
/// `DBREP_TIMEOUT` if still pending at the deadline, `DBREP_NOTFOUND` if it
/// can never be applied here (a later generation replaced it), and
/// `DBREP_KEYEMPTY` for the token of a transaction that wrote nothing.
/// `token_len` must be `DBREP_TOKEN_SIZE`. Thread-safe.
///
/// # Safety
/// `env` null or live; `token` null or readable for `token_len`.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_applied(
    env: *mut dbrep_env,
    token: *const u8,
    token_len: usize,
    timeout_us: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let token = CommitToken::from_bytes(bytes(token, token_len, "token")?)
                .map_err(|err| Fail::einval(err.to_string()))?;
            match e.txn_applied(&token, Duration::from_micros(timeout_us))? {
                TokenStatus::Applied => Ok(DBREP_OK),
                TokenStatus::Pending => Err(Fail::new(DBREP_TIMEOUT, "not applied yet")),
                TokenStatus::Never => Err(Fail::new(
                    DBREP_NOTFOUND,
                    "the commit can never be applied here",
                )),
                TokenStatus::Empty => {
                    Err(Fail::new(DBREP_KEYEMPTY, "the transaction wrote nothing"))
                }
            }
        })
    }
}

/// Writes a checkpoint and removes log files wholly before it
/// (`DB_ENV->txn_checkpoint` plus `log_archive` removal). `*lsn`, if not
/// null, receives the checkpoint's LSN. Thread-safe.
///
/// # Safety
/// `env` null or live; `lsn` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_txn_checkpoint(env: *mut dbrep_env, lsn: *mut dbrep_lsn) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let l = e.checkpoint()?;
            put_opt(lsn, l.into());
            Ok(DBREP_OK)
        })
    }
}

/// Makes every log record durable whatever the durability mode
/// (`DB_ENV->log_flush`). Thread-safe.
///
/// # Safety
/// `env` null or live.
#[no_mangle]
pub unsafe extern "C" fn dbrep_log_flush(env: *mut dbrep_env) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_env(env, |_, e| Ok(e.log_flush().map(|()| DBREP_OK)?)) }
}
