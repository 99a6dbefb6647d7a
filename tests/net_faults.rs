//! Real TCP on loopback: a frozen master, bad peers, a stalled peer under
//! load, a full restart, and elections left to the application.
#![cfg(feature = "net")]

mod net_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dbrep::net::frame::{encode_hello, encode_msg, Hello, HEADER_LEN, NET_VERSION};
use dbrep::net::NetEvent;
use dbrep::Role;
use net_support::{drain, init_log, wait_until, Cluster, DEADLINE};

#[test]
fn a_frozen_master_is_replaced_through_the_heartbeat_monitor() {
    init_log();
    let c = Cluster::start(3);
    let m = c.wait_for_master();
    assert!(c.commit(m, b"before", b"freeze").permanent);
    c.wait_converged(m);

    // Its connections stay open; it just stops reading and writing.
    c.site(m).net.test_freeze(true);
    let mut m2 = None;
    wait_until("the others to elect a new master", || {
        let others: Vec<usize> = (0..3).filter(|&i| i != m).collect();
        let new = others
            .iter()
            .copied()
            .find(|&i| c.env(i).role() == Role::Master);
        m2 = new;
        new.is_some_and(|n| {
            others
                .iter()
                .all(|&i| i == n || c.env(i).rep_stat(false).master == Some(n as i32 + 1))
        })
    });
    let m2 = m2.unwrap();
    assert!(c.commit(m2, b"after", b"freeze").permanent);

    c.site(m).net.test_freeze(false);
    wait_until("the frozen master to step down and follow", || {
        c.env(m).role() == Role::Client && c.env(m).rep_stat(false).master == Some(m2 as i32 + 1)
    });
    c.wait_converged(m2);
    assert_eq!(c.env(m).get(b"after").unwrap(), Some(b"freeze".to_vec()));
}

/// Connects a raw socket, sends `bytes`, and waits for the site to close it.
fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // The site's own hello, then the close.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn bad_peers_are_disconnected_counted_and_the_site_keeps_serving() {
    init_log();
    let c = Cluster::start_with(3, |cfg| {
        cfg.handshake_timeout = Duration::from_millis(500);
        cfg.max_frame_bytes = 1 << 20;
    });
    let m = c.wait_for_master();
    let victim = (m + 1) % 3;
    let addr = c.addrs[victim];
    let events = c.site(victim).net.events();
    let before = c.site(victim).net.stats();

    assert!(
        closed_after(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "garbage"
    );
    let mut wrong_version = encode_msg(b"c", b"r").unwrap();
    wrong_version[2] = NET_VERSION + 1;
    assert!(closed_after(addr, &wrong_version), "wrong version");
    let mut oversized = encode_msg(b"c", b"r").unwrap();
    oversized[4..8].copy_from_slice(&((1u32 << 20) + 1).to_le_bytes());
    assert!(closed_after(addr, &oversized[..HEADER_LEN]), "oversized");
    let mut bad_crc = encode_hello(&Hello {
        eid: 77,
        instance: 1,
        addr: "127.0.0.1:1".parse().unwrap(),
        app_data: Vec::new(),
    });
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    assert!(closed_after(addr, &bad_crc), "bad checksum");
    // A message before any hello.
    assert!(
        closed_after(addr, &encode_msg(b"c", b"r").unwrap()),
        "no handshake"
    );
    // A handshake that never completes.
    assert!(closed_after(addr, b""), "silent socket");

    let after = c.site(victim).net.stats();
    assert!(after.bad_frames >= before.bad_frames + 5, "{after:?}");
    assert!(
        after.handshake_timeouts > before.handshake_timeouts,
        "{after:?}"
    );
    let rejected = drain(&events)
        .into_iter()
        .filter(|e| matches!(e, NetEvent::ConnectionRejected { .. }))
        .count();
    assert!(rejected >= 6, "{rejected} rejections reported");

    // The victim still serves: it acknowledges and applies new commits.
    assert!(c.commit(m, b"still", b"serving").permanent);
    c.wait_converged(m);
    assert_eq!(
        c.env(victim).get(b"still").unwrap(),
        Some(b"serving".to_vec())
    );
}

const QUEUE_CAP: usize = 256 << 10;

#[test]
fn a_stalled_peer_cannot_grow_the_masters_queue_past_its_bound() {
    init_log();
    let c = Cluster::start_with(3, |cfg| cfg.max_queue_bytes = QUEUE_CAP);
    let m = c.wait_for_master();
    let stalled = (m + 1) % 3;
    let stalled_eid = stalled as i32 + 1;
    c.site(stalled).net.test_freeze(true);
    let value = vec![0x5a; 64 << 10];
    let mut max_queued = 0;
    let mut permanent = 0;
    // Well past what the kernel's socket buffers can hold for the stalled peer.
    let commits = 600;
    for k in 0..commits {
        let info = c.commit(m, format!("load-{k}").as_bytes(), &value);
        permanent += usize::from(info.permanent);
        let stats = c.site(m).net.stats();
        let peer = stats.peers.iter().find(|p| p.eid == stalled_eid).unwrap();
        max_queued = max_queued.max(peer.queue_bytes as usize);
        assert!(
            peer.queue_bytes as usize <= QUEUE_CAP,
            "queue to the stalled peer holds {} bytes, bound {QUEUE_CAP}",
            peer.queue_bytes
        );
    }
    let stats = c.site(m).net.stats();
    let peer = stats.peers.iter().find(|p| p.eid == stalled_eid).unwrap();
    assert!(
        peer.drops > 0,
        "the stalled peer's queue never filled: {stats:?}"
    );
    assert!(max_queued > QUEUE_CAP / 2, "max queued {max_queued}");
    assert_eq!(permanent, commits, "the healthy client kept acknowledging");

    c.site(stalled).net.test_freeze(false);
    c.wait_converged(m);
}

#[test]
fn a_restart_from_the_same_directories_keeps_every_permanent_commit() {
    init_log();
    let mut c = Cluster::start(3);
    let m = c.wait_for_master();
    let mut permanent = Vec::new();
    for k in 0..30u32 {
        let key = format!("k{k}");
        if c.commit(m, key.as_bytes(), b"v").permanent {
            permanent.push(key);
        }
    }
    assert!(!permanent.is_empty());
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    let m = c.wait_for_master();
    c.wait_converged(m);
    c.assert_all_hold(&permanent);
}

#[test]
fn with_automatic_elections_off_the_application_decides() {
    init_log();
    let c = Cluster::start_with(3, |cfg| cfg.auto_elections = false);
    let events = c.site(0).net.events();
    wait_until("the host to report that an election is needed", || {
        drain(&events).contains(&NetEvent::ElectionNeeded)
    });
    assert!((0..3).all(|i| c.env(i).role() != Role::Master));
    c.site(0).net.elect().unwrap();
    c.site(1).net.elect().unwrap();
    let m = c.wait_for_master();
    assert!(c.commit(m, b"chosen", b"by the application").permanent);
    c.wait_converged(m);
}
