//! The network host's C face (`dbrep::net`, the Replication Manager's role):
//! create it for an environment with a listen address and peers, start,
//! take its events, ask for an election, stop. Present when the library is
//! built with the `net` feature (the default).

use std::ffi::{c_char, c_int};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::codes::{Fail, DBREP_OK, DBREP_TIMEOUT};
use super::handle::dbrep_event_info;
use super::handle::{
    dbrep_env, event_info, with_env, DBREP_EVENT_REP_CLIENT, DBREP_EVENT_REP_ELECTED,
    DBREP_EVENT_REP_ELECTION_FAILED, DBREP_EVENT_REP_JOIN_FAILURE, DBREP_EVENT_REP_MASTER,
    DBREP_EVENT_REP_NEWMASTER, DBREP_EVENT_REP_PERM_FAILED,
};
use super::ptr::{guard, put, put_opt, slice, utf8, Ret};
use super::rep::{DBREP_CLIENT, DBREP_MASTER};
use super::{dbrep_eid, dbrep_lsn, DBREP_EID_INVALID};
use crate::net::{Net, NetConfig, NetEvent};
use crate::rep::{Role, StartAs};

/// A network host serving one environment. Opaque: created by
/// `dbrep_net_create`, freed by `dbrep_net_free`. Thread-safe, except
/// `dbrep_net_free`, which must be the last call on it.
pub struct dbrep_net {
    net: Net,
}

/// Settings of a network host (Berkeley DB's `repmgr_site` and
/// `repmgr_start` arguments). Fill it with `dbrep_net_config_init`.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct dbrep_net_config {
    /// This site's eid, the same one every peer uses for it (non-negative).
    pub eid: dbrep_eid,
    /// Where to listen, `"host:port"`; port 0 picks a free one
    /// (`dbrep_net_local_port` tells which).
    pub listen: *const c_char,
    /// `npeers` addresses (`"host:port"`) of the other sites; may be null when 0.
    pub peers: *const *const c_char,
    /// How many `peers`.
    pub npeers: usize,
    /// `DBREP_CLIENT` (the default: elections pick a master) or `DBREP_MASTER`.
    pub start_flags: u32,
    /// Non-zero (the default): hold elections without being asked. Zero: only
    /// report `DBREP_EVENT_REP_ELECTION_NEEDED`; call `dbrep_net_elect`.
    pub auto_elections: c_int,
}

/// Network host event: a connection to a peer completed its handshake;
/// `info->eid` is the peer (`DB_EVENT_REP_CONNECT_ESTD`).
pub const DBREP_EVENT_REP_CONNECT_ESTD: c_int = 5;
/// The connection to peer `info->eid` closed (`DB_EVENT_REP_CONNECT_BROKEN`).
pub const DBREP_EVENT_REP_CONNECT_BROKEN: c_int = 4;
/// A connection was refused during its handshake (`DB_EVENT_REP_CONNECT_TRY_FAILED`).
pub const DBREP_EVENT_REP_CONNECT_TRY_FAILED: c_int = 6;
/// An election began (`DB_EVENT_REP_ELECTION_STARTED`, dbrep's value).
pub const DBREP_EVENT_REP_ELECTION_STARTED: c_int = 102;
/// Elections are not automatic and the protocol asks for one: call
/// `dbrep_net_elect` (dbrep only).
pub const DBREP_EVENT_REP_ELECTION_NEEDED: c_int = 103;

/// Fills `cfg` with the defaults: eid 0, no listen address, no peers,
/// `DBREP_CLIENT`, automatic elections. Thread-safe.
///
/// # Safety
/// `cfg` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_config_init(cfg: *mut dbrep_net_config) -> c_int {
    let d = dbrep_net_config {
        eid: 0,
        listen: std::ptr::null(),
        peers: std::ptr::null(),
        npeers: 0,
        start_flags: DBREP_CLIENT,
        auto_elections: 1,
    };
    // SAFETY: null or writable, by the contract.
    guard(None, || unsafe { put(cfg, d, "cfg") })
}

fn resolve(addr: &str) -> Result<SocketAddr, Fail> {
    addr.to_socket_addrs()
        .map_err(|e| Fail::einval(format!("address {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| Fail::einval(format!("address {addr:?} resolves to nothing")))
}

/// Creates a network host for `env` and binds its listening socket
/// (`DB_ENV->repmgr_site`); nothing runs until `dbrep_net_start`. The host
/// takes over the environment's transport and event handler when it
/// starts: collect events with `dbrep_net_next_event`. `*netp` receives the
/// handle (null on failure), to free with `dbrep_net_free` before the
/// environment is closed. Thread-safe.
///
/// # Safety
/// `env` null or live; `cfg` null or readable, its strings NUL-terminated
/// and `peers` readable for `npeers` pointers; `netp` writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_create(
    env: *mut dbrep_env,
    cfg: *const dbrep_net_config,
    netp: *mut *mut dbrep_net,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        put_opt(netp, std::ptr::null_mut());
        with_env(env, |_, e| {
            if netp.is_null() {
                return Err(Fail::einval("netp is null"));
            }
            let cfg = cfg.as_ref().ok_or_else(|| Fail::einval("cfg is null"))?;
            let listen = resolve(utf8(cfg.listen, "cfg->listen")?)?;
            let mut config = NetConfig::new(cfg.eid, listen);
            let peers = slice(cfg.peers, cfg.npeers, "cfg->peers")?;
            for p in peers {
                config.peers.push(resolve(utf8(*p, "a peer address")?)?);
            }
            config.start_as = match cfg.start_flags {
                DBREP_CLIENT => StartAs::Client,
                DBREP_MASTER => StartAs::Master,
                f => return Err(Fail::einval(format!("unknown start flags {f}"))),
            };
            config.auto_elections = cfg.auto_elections != 0;
            let net = Net::new(e, config)?;
            put(netp, Box::into_raw(Box::new(dbrep_net { net })), "netp")
        })
    }
}

/// # Safety
/// `net` null or a live host handle.
unsafe fn with_net(net: *mut dbrep_net, f: impl FnOnce(&Net) -> Ret) -> c_int {
    // SAFETY: null or live, by the contract.
    match unsafe { net.as_ref() } {
        None => guard(None, || {
            Err(Fail::einval("the network host handle is null"))
        }),
        Some(n) => guard(None, || f(&n.net)),
    }
}

/// The port the host listens on (useful after listening on port 0). Thread-safe.
///
/// # Safety
/// `net` null or live; `port` null or writable.
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_local_port(net: *mut dbrep_net, port: *mut u16) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_net(net, |n| put(port, n.local_addr().port(), "port")) }
}

/// Adds a site to connect to, before or after start (`DB_ENV->repmgr_site`
/// for a remote site). Thread-safe.
///
/// # Safety
/// `net` null or live; `addr` null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_add_peer(net: *mut dbrep_net, addr: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_net(net, |n| {
            n.add_peer(resolve(utf8(addr, "addr")?)?)?;
            Ok(DBREP_OK)
        })
    }
}

/// Starts the host's threads and calls `rep_start` as configured
/// (`DB_ENV->repmgr_start`). Starting twice, or after stop: `DBREP_EINVAL`.
/// Thread-safe.
///
/// # Safety
/// `net` null or live.
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_start(net: *mut dbrep_net) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_net(net, |n| Ok(n.start().map(|()| DBREP_OK)?)) }
}

/// Asks for an election now, whatever `auto_elections` says; returns at
/// once (the outcome comes as events). Thread-safe.
///
/// # Safety
/// `net` null or live.
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_elect(net: *mut dbrep_net) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_net(net, |n| Ok(n.elect().map(|()| DBREP_OK)?)) }
}

/// Waits up to `timeout_us` for the host's next event and fills `*event`
/// (a `DBREP_EVENT_*` code) and `*info`; `DBREP_TIMEOUT` if none came.
/// Events nobody collects are dropped once the host's queue is full.
/// Thread-safe: each event goes to one caller.
///
/// # Safety
/// `net` null or live; `event` and `info` writable (`info` may be null).
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_next_event(
    net: *mut dbrep_net,
    timeout_us: u64,
    event: *mut c_int,
    info: *mut dbrep_event_info,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_net(net, |n| {
            if event.is_null() {
                return Err(Fail::einval("event is null"));
            }
            let rx = n.events();
            let Ok(e) = rx.recv_timeout(Duration::from_micros(timeout_us)) else {
                return Err(Fail::new(DBREP_TIMEOUT, "no event"));
            };
            let (code, i) = net_event_info(&e);
            put_opt(info, i);
            put(event, code, "event")
        })
    }
}

fn net_event_info(e: &NetEvent) -> (c_int, dbrep_event_info) {
    let mut info = dbrep_event_info {
        eid: DBREP_EID_INVALID,
        lsn: dbrep_lsn::default(),
        count: 0,
    };
    let code = match e {
        NetEvent::RoleChanged(Role::Master) => DBREP_EVENT_REP_MASTER,
        NetEvent::RoleChanged(_) => DBREP_EVENT_REP_CLIENT,
        NetEvent::NewMaster(m) | NetEvent::ElectionLost { master: Some(m) } => {
            info.eid = *m;
            DBREP_EVENT_REP_NEWMASTER
        }
        NetEvent::ElectionLost { master: None } => DBREP_EVENT_REP_ELECTION_FAILED,
        NetEvent::PermFailed(lsn) => {
            info.lsn = (*lsn).into();
            DBREP_EVENT_REP_PERM_FAILED
        }
        NetEvent::JoinFailure => DBREP_EVENT_REP_JOIN_FAILURE,
        NetEvent::PeerConnected { eid, .. } => {
            info.eid = *eid;
            DBREP_EVENT_REP_CONNECT_ESTD
        }
        NetEvent::PeerDisconnected { eid, .. } => {
            info.eid = *eid;
            DBREP_EVENT_REP_CONNECT_BROKEN
        }
        NetEvent::ConnectionRejected { .. } => DBREP_EVENT_REP_CONNECT_TRY_FAILED,
        NetEvent::ElectionStarted { .. } => DBREP_EVENT_REP_ELECTION_STARTED,
        NetEvent::ElectionWon => DBREP_EVENT_REP_ELECTED,
        NetEvent::ElectionFailed { .. } => DBREP_EVENT_REP_ELECTION_FAILED,
        NetEvent::ElectionNeeded => DBREP_EVENT_REP_ELECTION_NEEDED,
        NetEvent::Other(ev) => return event_info(ev),
        #[allow(unreachable_patterns)]
        _ => super::handle::DBREP_EVENT_OTHER,
    };
    (code, info)
}

/// Stops the host: closes every socket and joins every thread. The
/// environment stays open (its sends fail from now on). Stopping a host
/// that is not running does nothing. Thread-safe.
///
/// # Safety
/// `net` null or live.
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_stop(net: *mut dbrep_net) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_net(net, |n| Ok(n.stop().map(|()| DBREP_OK)?)) }
}

/// Stops the host if it runs and frees the handle. Null: `DBREP_EINVAL`.
///
/// # Safety
/// `net` null or a live host handle that no other thread uses during or
/// after this call.
#[no_mangle]
pub unsafe extern "C" fn dbrep_net_free(net: *mut dbrep_net) -> c_int {
    if net.is_null() {
        return guard(None, || {
            Err(Fail::einval("the network host handle is null"))
        });
    }
    // SAFETY: a live handle from `dbrep_net_create`'s `Box::into_raw`,
    // owned by this call from now on (contract).
    let n = unsafe { Box::from_raw(net) };
    guard(None, move || {
        let r = n.net.stop();
        drop(n);
        Ok(r.map(|()| DBREP_OK)?)
    })
}
