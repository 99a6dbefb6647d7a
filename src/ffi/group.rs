//! The replicated group membership from C: advertise this site's address,
//! add and remove sites on the master, leave from a client, read the group.
//! Turn it on with `dbrep_rep_set_config(env, DBREP_CONF_GROUP_MEMBERSHIP, 1)`.

use std::os::raw::c_int;

use super::codes::{Fail, DBREP_NOTFOUND, DBREP_OK};
use super::handle::{dbrep_env, with_env};
use super::ptr::{bytes, empty_buf, into_buf, put, put_opt};
use super::{dbrep_buf, dbrep_eid, dbrep_lsn};

/// Sets the address the group advertises for this site (`addr_len` opaque
/// bytes; a joining site sends it to the master). Set it before
/// `dbrep_rep_start`. At most 1024 bytes (`DBREP_EINVAL` beyond).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `addr` null (with 0) or readable for `addr_len`.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_set_local_addr(
    env: *mut dbrep_env,
    addr: *const u8,
    addr_len: usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let addr = bytes(addr, addr_len, "addr")?;
            e.rep_set_local_addr(addr)?;
            Ok(DBREP_OK)
        })
    }
}

/// The address this site advertises, as `dbrep_rep_set_local_addr` (or
/// the network host) set it, into `*addr` (empty when none is set). Free
/// it with `dbrep_buf_free`.
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `addr` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_local_addr(
    env: *mut dbrep_env,
    addr: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            // Checked before the copy is made: a null `addr` leaks nothing.
            put(addr, empty_buf(), "addr")?;
            put_opt(addr, into_buf(e.rep_local_addr()));
            Ok(DBREP_OK)
        })
    }
}

/// Master: adds site `eid`, reachable at `addr`, to the group; the
/// membership record's LSN goes to `*ret_lsn` (may be null). A site that
/// joins by itself (started as client with group membership on) needs no
/// call. `DBREP_UNAVAIL` while an earlier change is not yet held by a
/// majority (try again); `DBREP_EINVAL` on a client or for a member.
///
/// Thread-safe; it sends the record through the transport before returning.
///
/// # Safety
/// `env` must be null or a live handle; `addr` null (with 0) or readable
/// for `addr_len`; `ret_lsn` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_add_site(
    env: *mut dbrep_env,
    eid: dbrep_eid,
    addr: *const u8,
    addr_len: usize,
    electable: c_int,
    ret_lsn: *mut dbrep_lsn,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(ret_lsn, dbrep_lsn::default());
        with_env(env, |_, e| {
            let addr = bytes(addr, addr_len, "addr")?;
            let lsn = e.rep_add_site(eid, addr, electable != 0)?;
            put_opt(ret_lsn, lsn.into());
            Ok(DBREP_OK)
        })
    }
}

/// Master: removes site `eid` (dead, or leaving) from the group; the
/// record's LSN goes to `*ret_lsn` (may be null). Removing the master
/// itself is refused (`DBREP_EINVAL`: hand over first); `DBREP_UNAVAIL`
/// while an earlier change is not yet held by a majority.
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `ret_lsn` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_remove_site(
    env: *mut dbrep_env,
    eid: dbrep_eid,
    ret_lsn: *mut dbrep_lsn,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(ret_lsn, dbrep_lsn::default());
        with_env(env, |_, e| {
            let lsn = e.rep_remove_site(eid)?;
            put_opt(ret_lsn, lsn.into());
            Ok(DBREP_OK)
        })
    }
}

/// Client: asks the master to remove this site from the group. Returns at
/// once; the site has left when `DBREP_EVENT_REP_GROUP_CHANGED` reports a
/// group without it.
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_leave(env: *mut dbrep_env) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_env(env, |_, e| Ok(e.rep_leave().map(|()| DBREP_OK)?)) }
}

/// The number of sites in the group in force here into `*count` (0 before
/// the group is formed, or without group membership).
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; `count` writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_nmembers(env: *mut dbrep_env, count: *mut usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let n = e.rep_membership().map_or(0, |g| g.len());
            put(count, n, "count")
        })
    }
}

/// The `index`-th member (in eid order) of the group in force here: its
/// eid, whether it may become master, and its address (a buffer the
/// caller frees with `dbrep_buf_free`; `addr` may be null). Returns
/// `DBREP_NOTFOUND` past the last member. The group may change between
/// calls: read `dbrep_rep_get_nmembers` again after
/// `DBREP_EVENT_REP_GROUP_CHANGED`.
///
/// Thread-safe.
///
/// # Safety
/// `env` must be null or a live handle; the out-parameters null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_rep_get_member(
    env: *mut dbrep_env,
    index: usize,
    eid: *mut dbrep_eid,
    electable: *mut c_int,
    addr: *mut dbrep_buf,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_env(env, |_, e| {
            let group = e.rep_membership().unwrap_or_default();
            let Some(m) = group.members().get(index) else {
                return Err(Fail::new(
                    DBREP_NOTFOUND,
                    format!("the group has {} members, no member {index}", group.len()),
                ));
            };
            put_opt(eid, m.eid);
            put_opt(electable, c_int::from(m.electable));
            if !addr.is_null() {
                put_opt(addr, into_buf(m.addr.clone()));
            }
            Ok(DBREP_OK)
        })
    }
}
