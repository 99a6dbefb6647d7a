//! The replication calls: start, elections, message processing, the timer,
//! sync, flush and statistics.

use std::ffi::c_int;

use super::codes::{status_code, Fail, DBREP_IN_PROGRESS, DBREP_NEWMASTER, DBREP_OK};
use super::handle::{dbrep_env, unknown, with_env};
use super::ptr::{bytes, empty_buf, into_buf, put, put_opt};
use super::{dbrep_buf, dbrep_eid, dbrep_lsn, DBREP_EID_INVALID};
use crate::error::Error;
use crate::rep::{ElectionOutcome, ElectionProgress, RepStats, Role, StartAs, Status};

/// `dbrep_rep_start`: start as client (`DB_REP_CLIENT`); also `st_status` of a client.
pub const DBREP_CLIENT: u32 = 0x1;
/// `dbrep_rep_start`: start as master (`DB_REP_MASTER`); also `st_status` of a master.
pub const DBREP_MASTER: u32 = 0x2;

/// Starts (or restarts) this site as master or client (`DB_ENV->rep_start`).
/// `flags` is exactly one of `DBREP_CLIENT`, `DBREP_MASTER`. `cdata`
/// (`cdata_len` bytes, may be null when 0) reaches the other sites with
/// `DBREP_NEWSITE`. Needs `dbrep_rep_set_transport` first (`DBREP_EINVAL`).
///
/// Thread-safe; it sends messages through the transport before returning.
///
/// # Safety
/// `env` must be null or a live handle; `cdata` null or `cdata_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_start(
    env: *mut dbrep_env,
    cdata: *const u8,
    cdata_len: usize,
    flags: u32,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let cdata = bytes(cdata, cdata_len, "cdata")?;
            let as_ = match flags {
                DBREP_CLIENT => StartAs::Client,
                DBREP_MASTER => StartAs::Master,
                f => {
                    return Err(unknown(
                        "rep_start flags (want DBREP_CLIENT or DBREP_MASTER)",
                        f,
                    ))
                }
            };
            e.rep_start(cdata, as_)?;
            Ok(DBREP_OK)
        })
    }
}

/// Holds an election and blocks until it ends (`DB_ENV->rep_elect`).
/// `nsites` 0 means the configured count, `nvotes` 0 a simple majority;
/// `flags` must be 0. Messages must keep being delivered by other threads
/// meanwhile: never call it on the thread that runs `dbrep_rep_process_message`.
///
/// Returns `DBREP_OK` when this site won (call `dbrep_rep_start(...,
/// DBREP_MASTER)`; `DBREP_EVENT_REP_ELECTED` fired too), `DBREP_NEWMASTER`
/// with `*master` set when another site won, `DBREP_UNAVAIL` when no winner
/// emerged within the election timeout. `master` may be null; on
/// `DBREP_OK` it receives this site's eid.
///
/// # Safety
/// `env` must be null or a live handle; `master` null or writable. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_elect(
    env: *mut dbrep_env,
    nsites: u32,
    nvotes: u32,
    flags: u32,
    master: *mut dbrep_eid,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(master, DBREP_EID_INVALID);
        with_env(env, |shared, e| {
            let progress = match e.rep_elect(nsites, nvotes, flags)? {
                ElectionOutcome::Won => ElectionProgress::Won,
                ElectionOutcome::OtherWon { master } => ElectionProgress::OtherWon { master },
            };
            election_code(progress, shared.local_eid(), master)
        })
    }
}

/// Starts (or joins) an election and returns at once. The election goes on
/// as messages are processed and `dbrep_rep_tick` is called, and ends with
/// `DBREP_EVENT_REP_ELECTED`, `DBREP_EVENT_REP_NEWMASTER` or
/// `DBREP_EVENT_REP_ELECTION_FAILED`. Returns `DBREP_IN_PROGRESS` while it
/// runs, or the blocking form's codes if it is already decided.
///
/// # Safety
/// `env` must be null or a live handle; `master` null or writable. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_elect_nowait(
    env: *mut dbrep_env,
    nsites: u32,
    nvotes: u32,
    flags: u32,
    master: *mut dbrep_eid,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(master, DBREP_EID_INVALID);
        with_env(env, |shared, e| {
            let outcome = e.rep_elect_nowait(nsites, nvotes, flags)?;
            election_code(outcome, shared.local_eid(), master)
        })
    }
}

/// # Safety
/// `master` null or writable.
unsafe fn election_code(
    outcome: ElectionProgress,
    local: dbrep_eid,
    master: *mut dbrep_eid,
) -> Result<c_int, Fail> {
    let (code, who) = match outcome {
        ElectionProgress::Won => (DBREP_OK, local),
        ElectionProgress::OtherWon { master } => (DBREP_NEWMASTER, master),
        ElectionProgress::InProgress => (DBREP_IN_PROGRESS, DBREP_EID_INVALID),
        ElectionProgress::Failed(why) => return Err(Error::Unavail(why).into()),
    };
    // SAFETY: forwarded contract.
    unsafe { put_opt(master, who) };
    Ok(code)
}

/// Processes one message another site sent (`DB_ENV->rep_process_message`).
/// `eid` is the sender's id as this host numbers it. Returns:
///
/// - `DBREP_OK`: processed, nothing to do;
/// - `DBREP_HOLDELECTION`: call `dbrep_rep_elect` from another thread;
/// - `DBREP_NEWMASTER`: `*ret_eid` is the new master;
/// - `DBREP_NEWSITE`: first contact; `*ret_eid` is `eid`, and if `ret_cdata`
///   is not null it receives a copy of the site's cdata (free it with
///   `dbrep_buf_free`; it is left empty for every other code);
/// - `DBREP_ISPERM` / `DBREP_NOTPERM`: `*ret_lsn` is the permanent LSN;
/// - `DBREP_DUPMASTER`: restart as client and elect;
/// - `DBREP_IGNORE`, `DBREP_JOIN_FAILURE`, `DBREP_LEASE_EXPIRED`;
/// - an error: `DBREP_MALFORMED` for bytes that do not decode, ...
///
/// `ret_eid`, `ret_lsn` and `ret_cdata` may each be null. Free-threaded:
/// messages may be processed from many threads at once. Replies go out
/// through the transport before it returns.
///
/// # Safety
/// `env` must be null or a live handle; `control`/`rec` null or readable for
/// their lengths; the out-parameters null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_process_message(
    env: *mut dbrep_env,
    control: *const u8,
    control_len: usize,
    rec: *const u8,
    rec_len: usize,
    eid: dbrep_eid,
    ret_eid: *mut dbrep_eid,
    ret_lsn: *mut dbrep_lsn,
    ret_cdata: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(ret_eid, DBREP_EID_INVALID);
        put_opt(ret_lsn, dbrep_lsn::default());
        put_opt(ret_cdata, empty_buf());
        with_env(env, |_, e| {
            let control = bytes(control, control_len, "control")?;
            let rec = bytes(rec, rec_len, "rec")?;
            let status = e.rep_process_message(control, rec, eid)?;
            report_status(&status, ret_eid, ret_lsn, ret_cdata);
            Ok(status_code(&status))
        })
    }
}

/// # Safety
/// The out-parameters null or writable.
unsafe fn report_status(
    status: &Status,
    ret_eid: *mut dbrep_eid,
    ret_lsn: *mut dbrep_lsn,
    ret_cdata: *mut dbrep_buf,
) {
    // SAFETY: forwarded contract, for each write below.
    unsafe {
        match status {
            Status::NewMaster(m) => put_opt(ret_eid, *m),
            Status::NewSite { eid, cdata } => {
                put_opt(ret_eid, *eid);
                if !ret_cdata.is_null() {
                    put_opt(ret_cdata, into_buf(cdata.clone()));
                }
            }
            Status::IsPerm(l) | Status::NotPerm(l) => put_opt(ret_lsn, (*l).into()),
            _ => {}
        }
    }
}

/// No deadline: `dbrep_rep_tick` needs no call until something else happens.
pub const DBREP_NO_DEADLINE: u64 = u64::MAX;

/// The timer call: sends heartbeats, re-requests missing records, notices a
/// silent master and ends elections that ran out of time. Call it when the
/// deadline it returned comes (or earlier: calling early is harmless).
/// `*next_us` receives the microseconds until the next call is due, or
/// `DBREP_NO_DEADLINE`. Returns `DBREP_OK` or a status code as
/// `dbrep_rep_process_message` does (`DBREP_HOLDELECTION` after a silent
/// master, ...).
///
/// # Safety
/// `env` must be null or a live handle; `next_us` null or writable. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_tick(env: *mut dbrep_env, next_us: *mut u64) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(next_us, DBREP_NO_DEADLINE);
        with_env(env, |_, e| {
            let t = e.rep_tick()?;
            let next = t.next.map_or(DBREP_NO_DEADLINE, |d| {
                u64::try_from(d.as_micros()).unwrap_or(u64::MAX - 1)
            });
            put_opt(next_us, next);
            Ok(status_code(&t.status))
        })
    }
}

/// Starts synchronising a client configured with `DBREP_CONF_DELAYCLIENT`
/// (`DB_ENV->rep_sync`). Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_sync(env: *mut dbrep_env) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_env(env, |_, e| Ok(e.rep_sync().map(|()| DBREP_OK)?)) }
}

/// Re-broadcasts the master's last log record (`DB_ENV->rep_flush`). Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_flush(env: *mut dbrep_env) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_env(env, |_, e| Ok(e.rep_flush().map(|()| DBREP_OK)?)) }
}

/// `dbrep_rep_stat` flag: reset the counters after reading them (`DB_STAT_CLEAR`).
pub const DBREP_STAT_CLEAR: u32 = 0x1;

/// Replication statistics, named after Berkeley DB's `DB_REP_STAT`. The
/// caller owns the struct (on its stack, typically); the library only fills it.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct dbrep_rep_stat_t {
    /// `DBREP_MASTER`, `DBREP_CLIENT`, or 0 before `dbrep_rep_start`.
    pub st_status: u32,
    /// The current master, or `DBREP_EID_INVALID`.
    pub st_master: dbrep_eid,
    /// This site's id, or `DBREP_EID_INVALID` before the transport is set.
    pub st_env_id: dbrep_eid,
    /// Current generation.
    pub st_gen: u32,
    /// Current election generation.
    pub st_egen: u32,
    /// Non-zero once a client finished its start-up synchronisation.
    pub st_startup_complete: u32,
    /// Client: next LSN expected; master: LSN after its last record.
    pub st_next_lsn: dbrep_lsn,
    /// The last record in the local log.
    pub st_last_lsn: dbrep_lsn,
    /// The permanent point this site knows of (`st_max_perm_lsn`).
    pub st_max_perm_lsn: dbrep_lsn,
    /// First record held behind a gap, zero if none.
    pub st_waiting_lsn: dbrep_lsn,
    /// Messages received.
    pub st_msgs_processed: u64,
    /// Messages ignored for an older generation.
    pub st_msgs_badgen: u64,
    /// Messages that failed to decode.
    pub st_msgs_malformed: u64,
    /// Messages handed to `send`.
    pub st_msgs_sent: u64,
    /// Sends the transport reported failed.
    pub st_msgs_send_failures: u64,
    /// Log records received twice.
    pub st_log_duplicated: u64,
    /// Log records buffered ahead of a gap.
    pub st_log_queued: u64,
    /// Log records requested again.
    pub st_log_requested: u64,
    /// Log records written on a client.
    pub st_log_records: u64,
    /// Answers cut at the `dbrep_rep_set_limit` bound.
    pub st_nthrottles: u64,
    /// Duplicate masters detected.
    pub st_dupmasters: u64,
    /// Times this client was initialised from a snapshot.
    pub st_outdated: u64,
    /// Transactions rolled back to match a master.
    pub st_txns_rolled_back: u64,
    /// Commits that became permanent (master).
    pub st_perm_commits: u64,
    /// Commits that did not become permanent in time (master).
    pub st_perm_failed: u64,
    /// Elections this site took part in.
    pub st_elections: u64,
    /// Elections this site won.
    pub st_elections_won: u64,
}

fn stat_of(s: &RepStats, local: dbrep_eid) -> dbrep_rep_stat_t {
    dbrep_rep_stat_t {
        st_status: match s.role {
            Some(Role::Master) => DBREP_MASTER,
            Some(Role::Client) => DBREP_CLIENT,
            _ => 0,
        },
        st_master: s.master.unwrap_or(DBREP_EID_INVALID),
        st_env_id: local,
        st_gen: s.gen,
        st_egen: s.egen,
        st_startup_complete: u32::from(s.startup_complete),
        st_next_lsn: s.next_lsn.into(),
        st_last_lsn: s.last_lsn.into(),
        st_max_perm_lsn: s.perm_lsn.into(),
        st_waiting_lsn: s.waiting_lsn.into(),
        st_msgs_processed: s.msgs_processed,
        st_msgs_badgen: s.msgs_badgen,
        st_msgs_malformed: s.msgs_malformed,
        st_msgs_sent: s.msgs_sent,
        st_msgs_send_failures: s.msgs_send_failures,
        st_log_duplicated: s.log_duplicated,
        st_log_queued: s.log_queued,
        st_log_requested: s.log_requested,
        st_log_records: s.log_records,
        st_nthrottles: s.nthrottles,
        st_dupmasters: s.dupmasters,
        st_outdated: s.outdated,
        st_txns_rolled_back: s.txns_rolled_back,
        st_perm_commits: s.perm_commits,
        st_perm_failed: s.perm_failed,
        st_elections: s.elections,
        st_elections_won: s.elections_won,
    }
}

/// Fills the caller's `*stat` (`DB_ENV->rep_stat`, except that the caller
/// owns the struct: nothing to free). `flags` is 0 or `DBREP_STAT_CLEAR`.
///
/// # Safety
/// `env` must be null or a live handle; `stat` null or writable. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_stat(
    env: *mut dbrep_env,
    stat: *mut dbrep_rep_stat_t,
    flags: u32,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |shared, e| {
            if stat.is_null() {
                return Err(Fail::einval("stat is null"));
            }
            if flags & !DBREP_STAT_CLEAR != 0 {
                return Err(unknown("rep_stat flags", format!("{flags:#x}")));
            }
            let s = e.rep_stat(flags & DBREP_STAT_CLEAR != 0);
            put(stat, stat_of(&s, shared.local_eid()), "stat")
        })
    }
}
