//! Replication settings: priority, nsites, timeouts, config flags, limits,
//! ack policy, clock skew, request back-off. Every call here is thread-safe
//! and may be made before or after `dbrep_rep_start` unless it says otherwise.

use std::ffi::c_int;

use super::codes::DBREP_OK;
use super::handle::{dbrep_env, unknown, with_env};
use super::ptr::put;
use crate::rep::{AckPolicy, ConfigFlag, TimeoutKind};

/// `dbrep_rep_set_timeout`: how long the master waits for acks (`DB_REP_ACK_TIMEOUT`).
pub const DBREP_ACK_TIMEOUT: c_int = 1;
/// Wait before retrying a failed election (`DB_REP_ELECTION_RETRY`).
pub const DBREP_ELECTION_RETRY: c_int = 4;
/// Length of an election (`DB_REP_ELECTION_TIMEOUT`).
pub const DBREP_ELECTION_TIMEOUT: c_int = 5;
/// Wait for all sites at the first election (`DB_REP_FULL_ELECTION_TIMEOUT`).
pub const DBREP_FULL_ELECTION_TIMEOUT: c_int = 6;
/// Client: master silence that starts an election (`DB_REP_HEARTBEAT_MONITOR`).
pub const DBREP_HEARTBEAT_MONITOR: c_int = 7;
/// Master: idle heartbeat period (`DB_REP_HEARTBEAT_SEND`).
pub const DBREP_HEARTBEAT_SEND: c_int = 8;
/// Master lease duration (`DB_REP_LEASE_TIMEOUT`).
pub const DBREP_LEASE_TIMEOUT: c_int = 9;
/// How long a client without a master waits before asking for an election (dbrep only).
pub const DBREP_MASTER_SEARCH_TIMEOUT: c_int = 100;

fn timeout_kind(which: c_int) -> Result<TimeoutKind, super::codes::Fail> {
    Ok(match which {
        DBREP_ACK_TIMEOUT => TimeoutKind::Ack,
        DBREP_ELECTION_RETRY => TimeoutKind::ElectionRetry,
        DBREP_ELECTION_TIMEOUT => TimeoutKind::Election,
        DBREP_FULL_ELECTION_TIMEOUT => TimeoutKind::FullElection,
        DBREP_HEARTBEAT_MONITOR => TimeoutKind::HeartbeatMonitor,
        DBREP_HEARTBEAT_SEND => TimeoutKind::HeartbeatSend,
        DBREP_LEASE_TIMEOUT => TimeoutKind::Lease,
        DBREP_MASTER_SEARCH_TIMEOUT => TimeoutKind::MasterSearch,
        w => return Err(unknown("timeout kind", w)),
    })
}

/// `dbrep_rep_set_config`: auto-init of clients too far behind (`DB_REP_CONF_AUTOINIT`, default on).
pub const DBREP_CONF_AUTOINIT: u32 = 0x4;
/// Batch log records (`DB_REP_CONF_BULK`): always on; turning it off
/// returns `DBREP_EINVAL`.
pub const DBREP_CONF_BULK: u32 = 0x10;
/// Synchronise with a new master only at `dbrep_rep_sync` (`DB_REP_CONF_DELAYCLIENT`).
pub const DBREP_CONF_DELAYCLIENT: u32 = 0x20;
/// Master leases; before `dbrep_rep_start` (`DB_REP_CONF_LEASE`).
pub const DBREP_CONF_LEASE: u32 = 0x80;
/// Data calls on a synchronising client fail with `DBREP_LOCKOUT` (`DB_REP_CONF_NOWAIT`).
pub const DBREP_CONF_NOWAIT: u32 = 0x100;
/// Accept an `nvotes` below a majority (dangerous; dbrep only).
pub const DBREP_CONF_ALLOW_SUBMAJORITY: u32 = 0x10000;
/// Allow `dbrep_rep_start(DBREP_MASTER)` without a current election win on
/// a site that has voted or followed a master (appointing a master by hand,
/// Berkeley DB's manual-master mode; dbrep only).
pub const DBREP_CONF_MANUAL_MASTER: u32 = 0x20000;
/// Replicated group membership: the group (and `nsites`) is what the log
/// says, changed one site at a time by the master (dbrep only; Berkeley
/// DB's Replication Manager keeps a group membership database).
pub const DBREP_CONF_GROUP_MEMBERSHIP: u32 = 0x40000;

fn config_flag(which: u32) -> Result<ConfigFlag, super::codes::Fail> {
    Ok(match which {
        DBREP_CONF_AUTOINIT => ConfigFlag::AutoInit,
        DBREP_CONF_BULK => ConfigFlag::Bulk,
        DBREP_CONF_DELAYCLIENT => ConfigFlag::DelayClient,
        DBREP_CONF_LEASE => ConfigFlag::Lease,
        DBREP_CONF_NOWAIT => ConfigFlag::NoWait,
        DBREP_CONF_ALLOW_SUBMAJORITY => ConfigFlag::AllowSubMajority,
        DBREP_CONF_MANUAL_MASTER => ConfigFlag::ManualMaster,
        DBREP_CONF_GROUP_MEMBERSHIP => ConfigFlag::GroupMembership,
        w => return Err(unknown("config flag", format!("{w:#x}"))),
    })
}

/// Ack policy: every client (`DB_REPMGR_ACKS_ALL`).
pub const DBREP_ACKS_ALL: c_int = 1;
/// Every available client (`DB_REPMGR_ACKS_ALL_AVAILABLE`).
pub const DBREP_ACKS_ALL_AVAILABLE: c_int = 2;
/// No client: durable on the master suffices (`DB_REPMGR_ACKS_NONE`).
pub const DBREP_ACKS_NONE: c_int = 4;
/// At least one client (`DB_REPMGR_ACKS_ONE`).
pub const DBREP_ACKS_ONE: c_int = 5;
/// Enough electable clients to survive any election (`DB_REPMGR_ACKS_QUORUM`, the default).
pub const DBREP_ACKS_QUORUM: c_int = 7;

/// Sets the election priority; 0 = never master (`DB_ENV->rep_set_priority`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_priority(env: *mut dbrep_env, priority: u32) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            Ok(e.rep_set_priority(priority).map(|()| DBREP_OK)?)
        })
    }
}

/// Reads the priority into `*priority` (`DB_ENV->rep_get_priority`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `priority` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_priority(env: *mut dbrep_env, priority: *mut u32) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_env(env, |_, e| put(priority, e.rep_get_priority(), "priority")) }
}

/// Sets the number of sites in the group (`DB_ENV->rep_set_nsites`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_nsites(env: *mut dbrep_env, nsites: u32) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            Ok(e.rep_set_nsites(nsites).map(|()| DBREP_OK)?)
        })
    }
}

/// Reads the number of sites into `*nsites` (`DB_ENV->rep_get_nsites`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `nsites` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_nsites(env: *mut dbrep_env, nsites: *mut u32) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_env(env, |_, e| put(nsites, e.rep_get_nsites(), "nsites")) }
}

/// Sets one timeout (`DBREP_*_TIMEOUT`, `DBREP_ELECTION_RETRY`,
/// `DBREP_HEARTBEAT_*`), in microseconds (`DB_ENV->rep_set_timeout`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_timeout(
    env: *mut dbrep_env,
    which: c_int,
    us: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            Ok(e.rep_set_timeout(timeout_kind(which)?, us)
                .map(|()| DBREP_OK)?)
        })
    }
}

/// Reads one timeout into `*us` (`DB_ENV->rep_get_timeout`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `us` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_timeout(
    env: *mut dbrep_env,
    which: c_int,
    us: *mut u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            put(us, e.rep_get_timeout(timeout_kind(which)?), "us")
        })
    }
}

/// Turns one `DBREP_CONF_*` setting on (`onoff` non-zero) or off
/// (`DB_ENV->rep_set_config`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_config(
    env: *mut dbrep_env,
    which: u32,
    onoff: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            Ok(e.rep_set_config(config_flag(which)?, onoff != 0)
                .map(|()| DBREP_OK)?)
        })
    }
}

/// Reads one `DBREP_CONF_*` setting into `*onoff` as 0 or 1 (`DB_ENV->rep_get_config`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `onoff` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_config(
    env: *mut dbrep_env,
    which: u32,
    onoff: *mut c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            put(
                onoff,
                c_int::from(e.rep_get_config(config_flag(which)?)),
                "onoff",
            )
        })
    }
}

/// Caps the bytes one call sends in answer to requests; 0 = no cap
/// (`DB_ENV->rep_set_limit`, with one 64-bit count instead of gbytes + bytes).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_limit(env: *mut dbrep_env, bytes: u64) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_env(env, |_, e| Ok(e.rep_set_limit(bytes).map(|()| DBREP_OK)?)) }
}

/// Reads the send cap into `*bytes` (`DB_ENV->rep_get_limit`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `bytes` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_limit(env: *mut dbrep_env, bytes: *mut u64) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_env(env, |_, e| put(bytes, e.rep_get_limit(), "bytes")) }
}

/// Sets the acknowledgement policy, one of `DBREP_ACKS_*`
/// (`DB_ENV->repmgr_set_ack_policy`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_ack_policy(env: *mut dbrep_env, policy: c_int) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let p = match policy {
                DBREP_ACKS_ALL => AckPolicy::All,
                DBREP_ACKS_ALL_AVAILABLE => AckPolicy::AllAvailable,
                DBREP_ACKS_NONE => AckPolicy::None,
                DBREP_ACKS_ONE => AckPolicy::One,
                DBREP_ACKS_QUORUM => AckPolicy::Quorum,
                p => return Err(unknown("ack policy", p)),
            };
            Ok(e.rep_set_ack_policy(p).map(|()| DBREP_OK)?)
        })
    }
}

/// Sets the clock-skew allowance for leases as fast and slow rates; before
/// `dbrep_rep_start` (`DB_ENV->rep_set_clockskew`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_clockskew(
    env: *mut dbrep_env,
    fast: u32,
    slow: u32,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            Ok(e.rep_set_clockskew(fast, slow).map(|()| DBREP_OK)?)
        })
    }
}

/// Reads the clock-skew allowance (`DB_ENV->rep_get_clockskew`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `fast` and `slow` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_clockskew(
    env: *mut dbrep_env,
    fast: *mut u32,
    slow: *mut u32,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let (f, s) = e.rep_get_clockskew();
            put(fast, f, "fast")?;
            put(slow, s, "slow")
        })
    }
}

/// Sets the bounds, in microseconds, of the wait before a client re-requests
/// missing records; the wait doubles from `min_us` to `max_us`
/// (`DB_ENV->rep_set_request`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_request(
    env: *mut dbrep_env,
    min_us: u64,
    max_us: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            Ok(e.rep_set_request(min_us, max_us).map(|()| DBREP_OK)?)
        })
    }
}

/// Reads the re-request bounds (`DB_ENV->rep_get_request`).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `min_us` and `max_us` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_request(
    env: *mut dbrep_env,
    min_us: *mut u64,
    max_us: *mut u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let (lo, hi) = e.rep_get_request();
            put(min_us, lo, "min_us")?;
            put(max_us, hi, "max_us")
        })
    }
}
