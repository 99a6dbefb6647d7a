//! The environment handle: open, close, the transport and event callbacks.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::codes::{Fail, DBREP_CLOSED, DBREP_EINVAL, DBREP_OK, DBREP_RUNRECOVERY};
use super::ptr::{guard, put, utf8, Ret};
use super::{dbrep_eid, dbrep_lsn, DBREP_EID_INVALID};
use crate::env::{Env, EnvConfig, SendError};
use crate::log::{Durability, LogConfig};
use crate::rep::{Event, OutMsg};

/// An open environment (the Rust `Env`). Opaque: created by
/// `dbrep_env_open` or `dbrep_env_open_in_memory`, freed by `dbrep_env_close`.
pub struct dbrep_env {
    pub(crate) shared: Arc<Shared>,
}

/// What a `dbrep_env` and its transactions share.
pub(crate) struct Shared {
    env: RwLock<Option<Env>>,
    failed: Mutex<Option<String>>,
    local_eid: AtomicI32,
}

impl Shared {
    /// The environment, if it is open and has not failed.
    pub(crate) fn env(&self) -> Result<Env, Fail> {
        if let Some(why) = &*self.failed.lock() {
            return Err(Fail::new(DBREP_RUNRECOVERY, why.clone()));
        }
        self.env
            .read()
            .clone()
            .ok_or_else(|| Fail::new(DBREP_CLOSED, "the environment handle is closed"))
    }

    pub(crate) fn mark_failed(&self, why: &str) {
        self.failed
            .lock()
            .get_or_insert_with(|| format!("an earlier call failed inside the library: {why}"));
    }

    pub(crate) fn local_eid(&self) -> dbrep_eid {
        self.local_eid.load(Ordering::Relaxed)
    }
}

/// Runs `f` on the environment behind `env`, inside the panic guard.
///
/// # Safety
/// `env` must be null or a handle from `dbrep_env_open*` not yet closed.
pub(crate) unsafe fn with_env(env: *const dbrep_env, f: impl FnOnce(&Shared, Env) -> Ret) -> c_int {
    // SAFETY: null or a live handle, by the caller's contract.
    let Some(h) = (unsafe { env.as_ref() }) else {
        return guard(None, || Err(Fail::einval("the environment handle is null")));
    };
    let shared = &*h.shared;
    guard(Some(shared), || f(shared, shared.env()?))
}

/// Durability of commits: the log is written and fsynced at each commit
/// (the default).
pub const DBREP_DURABILITY_SYNC: c_int = 0;
/// Commits write the log without fsync: survives a process crash, not a power loss.
pub const DBREP_DURABILITY_WRITE_NOSYNC: c_int = 1;
/// Commits leave records in the log buffer (`DB_TXN_NOSYNC`).
pub const DBREP_DURABILITY_NOSYNC: c_int = 2;

/// Settings fixed when an environment is opened. Fill it with
/// `dbrep_open_config_init`, then change fields.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct dbrep_open_config {
    /// One of `DBREP_DURABILITY_*`.
    pub durability: c_int,
    /// Size at which the log starts a new segment file (0 = the default, 10 MiB).
    pub segment_size_bytes: u32,
    /// Non-zero: use `seed` for election tie-breakers (reproducible tests);
    /// zero: draw one from the clock.
    pub use_seed: c_int,
    /// The tie-breaker seed, if `use_seed`.
    pub seed: u64,
}

/// Fills `cfg` with the defaults. Returns `DBREP_EINVAL` if `cfg` is null.
///
/// # Safety
/// `cfg` must be null or writable. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_open_config_init(cfg: *mut dbrep_open_config) -> c_int {
    let d = dbrep_open_config {
        durability: DBREP_DURABILITY_SYNC,
        segment_size_bytes: 0,
        use_seed: 0,
        seed: 0,
    };
    // SAFETY: null or writable, by the contract above.
    guard(None, || unsafe { put(cfg, d, "cfg") })
}

fn env_config(cfg: Option<&dbrep_open_config>, in_memory: bool) -> Result<EnvConfig, Fail> {
    let mut log = LogConfig {
        in_memory,
        ..LogConfig::default()
    };
    let mut config = EnvConfig::default();
    if let Some(c) = cfg {
        log.durability = match c.durability {
            DBREP_DURABILITY_SYNC => Durability::Sync,
            DBREP_DURABILITY_WRITE_NOSYNC => Durability::WriteNoSync,
            DBREP_DURABILITY_NOSYNC => Durability::NoSync,
            d => return Err(Fail::einval(format!("unknown durability {d}"))),
        };
        if c.segment_size_bytes != 0 {
            log.segment_size_bytes = c.segment_size_bytes;
        }
        if c.use_seed != 0 {
            config.seed = Some(c.seed);
        }
    }
    config.log = log;
    Ok(config)
}

fn hand_out(env: Env, envp: *mut *mut dbrep_env) -> Ret {
    let h = Box::new(dbrep_env {
        shared: Arc::new(Shared {
            env: RwLock::new(Some(env)),
            failed: Mutex::new(None),
            local_eid: AtomicI32::new(DBREP_EID_INVALID),
        }),
    });
    let raw = Box::into_raw(h);
    // SAFETY: `envp` was checked non-null by the caller and is writable by
    // the public function's contract.
    unsafe { envp.write(raw) };
    Ok(DBREP_OK)
}

/// Opens (creating if needed) an environment in directory `dir`, recovering
/// its log. `cfg` may be null for the defaults. On success `*envp` is the
/// new handle, to free with `dbrep_env_close`; on failure `*envp` is null.
///
/// # Safety
/// `dir` must be null or NUL-terminated; `cfg` null or readable; `envp`
/// writable. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_env_open(
    dir: *const c_char,
    cfg: *const dbrep_open_config,
    envp: *mut *mut dbrep_env,
) -> c_int {
    guard(None, || {
        if envp.is_null() {
            return Err(Fail::einval("envp is null"));
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { envp.write(std::ptr::null_mut()) };
        // SAFETY: null or NUL-terminated by the contract.
        let dir = unsafe { utf8(dir, "dir") }?;
        // SAFETY: null or readable by the contract.
        let config = env_config(unsafe { cfg.as_ref() }, false)?;
        hand_out(Env::open(dir, config)?, envp)
    })
}

/// Opens an environment that keeps everything in memory (nothing survives
/// the process). `cfg` may be null. On success `*envp` is the new handle, to
/// free with `dbrep_env_close`; on failure `*envp` is null.
///
/// # Safety
/// `cfg` must be null or readable; `envp` writable. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_env_open_in_memory(
    cfg: *const dbrep_open_config,
    envp: *mut *mut dbrep_env,
) -> c_int {
    guard(None, || {
        if envp.is_null() {
            return Err(Fail::einval("envp is null"));
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { envp.write(std::ptr::null_mut()) };
        // SAFETY: null or readable by the contract.
        let config = env_config(unsafe { cfg.as_ref() }, true)?;
        hand_out(Env::open_in_memory(config)?, envp)
    })
}

/// Closes the environment but keeps the handle: every later call on it (or
/// on its transactions) returns `DBREP_CLOSED`. Calls already running on
/// other threads finish first on their own reference; the files are closed
/// when the last one returns. Returns `DBREP_CLOSED` if already shut down.
///
/// Use it to stop an environment other threads still hold; then, once they
/// are done with the handle, `dbrep_env_close`.
///
/// # Safety
/// `env` must be null or a live handle. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_env_shutdown(env: *mut dbrep_env) -> c_int {
    // SAFETY: null or a live handle, by the contract.
    let Some(h) = (unsafe { env.as_ref() }) else {
        return guard(None, || Err(Fail::einval("the environment handle is null")));
    };
    guard(None, || match h.shared.env.write().take() {
        Some(_) => Ok(DBREP_OK),
        None => Err(Fail::new(
            DBREP_CLOSED,
            "the environment was already shut down",
        )),
    })
}

/// Closes the environment (if `dbrep_env_shutdown` did not already) and
/// frees the handle (`DB_ENV->close`). A null `env` returns `DBREP_EINVAL`.
/// Transactions still open keep working until freed, answering
/// `DBREP_CLOSED`.
///
/// # Safety
/// `env` must be null or a live handle, and no other thread may use it
/// during or after this call.
#[no_mangle]
pub unsafe extern "C" fn dbrep_env_close(env: *mut dbrep_env) -> c_int {
    if env.is_null() {
        return guard(None, || Err(Fail::einval("the environment handle is null")));
    }
    guard(None, || {
        // SAFETY: a live handle from `hand_out`'s `Box::into_raw`, used by no
        // other thread (contract); rebuilt once and dropped here.
        let h = unsafe { Box::from_raw(env) };
        h.shared.env.write().take();
        Ok(DBREP_OK)
    })
}

/// The transport (`send` in `DB_ENV->rep_set_transport`).
///
/// Called with `ctx` as given to `dbrep_rep_set_transport`; `control` and
/// `rec` point straight into the library's own message, lent for the
/// duration of the call only: nothing is copied or allocated to make the
/// call, and a transport that queues the message must copy it; `lsn` is the record's LSN (zero if the
/// message carries none); `eid` is the target site or `DBREP_EID_BROADCAST`;
/// `flags` is an OR of `DBREP_SEND_*`. Return 0 when sent, non-zero when not
/// (a permanent message that could not be sent makes the master flush its log).
///
/// It may be called from any thread that calls into the environment, from
/// several at once, and it may call back into the environment: the library
/// holds no lock while it runs. It must not unwind or `longjmp` out.
pub type dbrep_send_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        control: *const u8,
        control_len: usize,
        rec: *const u8,
        rec_len: usize,
        lsn: *const dbrep_lsn,
        eid: dbrep_eid,
        flags: u32,
    ) -> c_int,
>;

/// `send` hint: another client could answer this request (`DB_REP_ANYWHERE`).
pub const DBREP_SEND_ANYWHERE: u32 = 0x1;
/// `send` hint: transmit now, do not batch (`DB_REP_NOBUFFER`).
pub const DBREP_SEND_NOBUFFER: u32 = 0x2;
/// `send` hint: matters for durability, the master wants it acknowledged (`DB_REP_PERMANENT`).
pub const DBREP_SEND_PERMANENT: u32 = 0x4;
/// `send` hint: a repeated request (`DB_REP_REREQUEST`).
pub const DBREP_SEND_REREQUEST: u32 = 0x8;

/// A C function pointer and its context.
struct CCallback<F> {
    f: F,
    ctx: *mut c_void,
}

// SAFETY: the header requires the callbacks and their `ctx` to be usable from
// any thread, concurrently; the library only passes `ctx` back to `f`.
unsafe impl<F> Send for CCallback<F> {}
// SAFETY: as above; the library never dereferences `ctx`.
unsafe impl<F> Sync for CCallback<F> {}

type SendPtr = unsafe extern "C" fn(
    *mut c_void,
    *const u8,
    usize,
    *const u8,
    usize,
    *const dbrep_lsn,
    dbrep_eid,
    u32,
) -> c_int;

impl CCallback<SendPtr> {
    fn send(&self, m: &OutMsg) -> Result<(), SendError> {
        let lsn = dbrep_lsn::from(m.lsn);
        // SAFETY: `f` is the host's transport with its own `ctx`; the buffers
        // are valid for the call (borrowed from `m`) and `lsn` outlives it.
        let rc = unsafe {
            (self.f)(
                self.ctx,
                m.control.as_ptr(),
                m.control.len(),
                m.rec.as_ptr(),
                m.rec.len(),
                &lsn,
                m.eid,
                m.flags.0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(SendError)
        }
    }
}

/// Sets this site's id (non-negative) and the transport
/// (`DB_ENV->rep_set_transport`). Must precede `dbrep_rep_start`; may be
/// called again to replace it. `send` null: `DBREP_EINVAL`. `ctx` is passed
/// back to `send` untouched and must stay valid until the environment is closed.
///
/// # Safety
/// `env` must be null or a live handle; `send` must follow `dbrep_send_fn`'s
/// rules. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_transport(
    env: *mut dbrep_env,
    local_eid: dbrep_eid,
    send: dbrep_send_fn,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: null or a live handle, by the contract.
    unsafe {
        with_env(env, |shared, env| {
            let f = send.ok_or_else(|| Fail::einval("the send function is null"))?;
            if local_eid < 0 {
                return Err(Fail::einval(format!("local eid {local_eid} is negative")));
            }
            let cb = CCallback { f, ctx };
            env.rep_set_transport(local_eid, move |m| cb.send(m))?;
            shared.local_eid.store(local_eid, Ordering::Relaxed);
            Ok(DBREP_OK)
        })
    }
}

/// This site became a client (`DB_EVENT_REP_CLIENT`).
pub const DBREP_EVENT_REP_CLIENT: c_int = 3;
/// Two masters of one generation were seen (`DB_EVENT_REP_DUPMASTER`).
pub const DBREP_EVENT_REP_DUPMASTER: c_int = 7;
/// This site won an election: call `dbrep_rep_start(..., DBREP_MASTER)`
/// (`DB_EVENT_REP_ELECTED`).
pub const DBREP_EVENT_REP_ELECTED: c_int = 8;
/// An election ended without a winner (`DB_EVENT_REP_ELECTION_FAILED`).
pub const DBREP_EVENT_REP_ELECTION_FAILED: c_int = 9;
/// This client cannot join the master (`DB_EVENT_REP_JOIN_FAILURE`).
pub const DBREP_EVENT_REP_JOIN_FAILURE: c_int = 11;
/// This site became master (`DB_EVENT_REP_MASTER`).
pub const DBREP_EVENT_REP_MASTER: c_int = 13;
/// The master fell silent past the heartbeat monitor (`DB_EVENT_REP_MASTER_FAILURE`).
pub const DBREP_EVENT_REP_MASTER_FAILURE: c_int = 14;
/// Another site became master; `info->eid` names it (`DB_EVENT_REP_NEWMASTER`).
pub const DBREP_EVENT_REP_NEWMASTER: c_int = 15;
/// A commit (`info->lsn`) did not become permanent in time (`DB_EVENT_REP_PERM_FAILED`).
pub const DBREP_EVENT_REP_PERM_FAILED: c_int = 16;
/// The client caught up with its master (`DB_EVENT_REP_STARTUPDONE`).
pub const DBREP_EVENT_REP_STARTUPDONE: c_int = 19;
/// Transactions were undone to match the master: `info->count` of them, the
/// earliest commit at `info->lsn` (dbrep only).
pub const DBREP_EVENT_REP_ROLLED_BACK: c_int = 100;
/// An event this version of the header does not name (dbrep only).
pub const DBREP_EVENT_OTHER: c_int = 101;
/// The group this site knows changed (replicated membership): `info->count`
/// sites; read them with `dbrep_rep_get_member` (dbrep only).
pub const DBREP_EVENT_REP_GROUP_CHANGED: c_int = 102;

/// What comes with an event; fields an event does not use are zero (or
/// `DBREP_EID_INVALID` for `eid`).
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct dbrep_event_info {
    /// The site concerned (`DBREP_EVENT_REP_NEWMASTER`).
    pub eid: dbrep_eid,
    /// The LSN concerned (`PERM_FAILED`, `ROLLED_BACK`).
    pub lsn: dbrep_lsn,
    /// How many transactions (`ROLLED_BACK`).
    pub count: u32,
}

/// The event handler (`DB_ENV->set_event_notify`'s callback). `info` is
/// valid for the duration of the call. Called from any thread that calls into
/// the environment, with no library lock held: unlike Berkeley DB, it may
/// call back into the environment (even `dbrep_rep_start` on `ELECTED`).
pub type dbrep_event_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, event: c_int, info: *const dbrep_event_info)>;

type EventPtr = unsafe extern "C" fn(*mut c_void, c_int, *const dbrep_event_info);

pub(crate) fn event_info(e: &Event) -> (c_int, dbrep_event_info) {
    let mut info = dbrep_event_info {
        eid: DBREP_EID_INVALID,
        lsn: dbrep_lsn::default(),
        count: 0,
    };
    let code = match e {
        Event::Client => DBREP_EVENT_REP_CLIENT,
        Event::Master => DBREP_EVENT_REP_MASTER,
        Event::NewMaster(eid) => {
            info.eid = *eid;
            DBREP_EVENT_REP_NEWMASTER
        }
        Event::Elected => DBREP_EVENT_REP_ELECTED,
        Event::StartupDone => DBREP_EVENT_REP_STARTUPDONE,
        Event::PermFailed(lsn) => {
            info.lsn = (*lsn).into();
            DBREP_EVENT_REP_PERM_FAILED
        }
        Event::DupMaster => DBREP_EVENT_REP_DUPMASTER,
        Event::JoinFailure => DBREP_EVENT_REP_JOIN_FAILURE,
        Event::MasterFailure => DBREP_EVENT_REP_MASTER_FAILURE,
        Event::ElectionFailed => DBREP_EVENT_REP_ELECTION_FAILED,
        Event::RolledBack(txns) => {
            info.count = u32::try_from(txns.len()).unwrap_or(u32::MAX);
            info.lsn = txns.iter().map(|t| t.lsn).min().unwrap_or_default().into();
            DBREP_EVENT_REP_ROLLED_BACK
        }
        Event::GroupChanged(g) => {
            info.count = u32::try_from(g.len()).unwrap_or(u32::MAX);
            DBREP_EVENT_REP_GROUP_CHANGED
        }
        Event::JoinRefused(_) => DBREP_EVENT_REP_JOIN_FAILURE,
        #[allow(unreachable_patterns)]
        _ => DBREP_EVENT_OTHER,
    };
    (code, info)
}

/// Sets (or, with a null `f`, removes) the event handler
/// (`DB_ENV->set_event_notify`). `ctx` is passed back to `f` and must stay
/// valid until the environment is closed or the handler replaced.
///
/// # Safety
/// `env` must be null or a live handle; `f` must follow `dbrep_event_fn`'s
/// rules. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_set_event_notify(
    env: *mut dbrep_env,
    f: dbrep_event_fn,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: null or a live handle, by the contract.
    unsafe {
        with_env(env, |_, env| {
            match f {
                None => env.set_event_notify(|_| {}),
                Some(f) => {
                    let cb: CCallback<EventPtr> = CCallback { f, ctx };
                    env.set_event_notify(move |e| cb.event(e));
                }
            }
            Ok(DBREP_OK)
        })
    }
}

impl CCallback<EventPtr> {
    fn event(&self, e: &Event) {
        let (code, info) = event_info(e);
        // SAFETY: the host's handler with its own `ctx`; `info` outlives the call.
        unsafe { (self.f)(self.ctx, code, &info) };
    }
}

/// Rejects an argument that must be one of a few values.
pub(crate) fn unknown(what: &str, v: impl std::fmt::Display) -> Fail {
    Fail::new(DBREP_EINVAL, format!("unknown {what} {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::codes::dbrep_last_error;
    use crate::ffi::settings::{dbrep_rep_get_priority, dbrep_rep_set_priority};

    #[test]
    fn a_panic_is_caught_and_fails_the_environment() {
        let mut env: *mut dbrep_env = std::ptr::null_mut();
        // SAFETY: `env` is a valid out-pointer; the handle is used only here.
        unsafe {
            assert_eq!(
                dbrep_env_open_in_memory(std::ptr::null(), &mut env),
                DBREP_OK
            );
            assert_eq!(dbrep_rep_set_priority(env, 7), DBREP_OK);
            let rc = with_env(env, |_, _| -> Ret { panic!("boom") });
            assert_eq!(rc, DBREP_RUNRECOVERY);
            let msg = std::ffi::CStr::from_ptr(dbrep_last_error()).to_string_lossy();
            assert!(msg.contains("boom"), "{msg}");
            // Every later call says the environment failed, until it is reopened.
            let mut p = 0u32;
            assert_eq!(dbrep_rep_get_priority(env, &mut p), DBREP_RUNRECOVERY);
            assert_eq!(dbrep_rep_set_priority(env, 1), DBREP_RUNRECOVERY);
            assert_eq!(dbrep_env_close(env), DBREP_OK);
        }
    }

    #[test]
    fn an_error_message_with_a_nul_is_cut_not_lost() {
        crate::ffi::codes::set_last_error("before\0after");
        // SAFETY: the library's own NUL-terminated string, read at once.
        let msg = unsafe { std::ffi::CStr::from_ptr(dbrep_last_error()) };
        assert_eq!(msg.to_str().unwrap(), "before");
    }
}
