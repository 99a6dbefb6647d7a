//! Real TCP on loopback: duplicate connections, the status hook, and a
//! worker that falls behind the network.
#![cfg(feature = "net")]

mod net_support;

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use dbrep::net::{NetEvent, Reaction};
use dbrep::{Role, Status};
use net_support::{drain, init_log, wait_until, Cluster};

#[test]
fn sites_dialling_each_other_keep_one_connection_per_pair() {
    init_log();
    // Every site dials every other, so each pair starts with two connections.
    let c = Cluster::start(3);
    let m = c.wait_for_master();
    wait_until("one connection per pair", || {
        c.running().all(|(_, s)| {
            let st = s.net.stats();
            st.connections == 2 && st.peers.iter().filter(|p| p.connected).count() == 2
        })
    });
    assert!(c.commit(m, b"k", b"v").permanent);
    c.wait_converged(m);
    // Closing a duplicate is not a disconnection the application hears of.
    for (_, s) in c.running() {
        let events = drain(&s.net.events());
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, NetEvent::PeerDisconnected { .. })),
            "site {}: {events:?}",
            s.eid
        );
    }
}

static HELD: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_status_hook_replaces_the_default_reaction() {
    init_log();
    // The hook swallows every HoldElection, and no election starts on its
    // own otherwise: no site ever becomes master until asked.
    let c = Cluster::start_with(3, |cfg| {
        cfg.initial_election_wait = Duration::from_secs(3600);
        cfg.status_hook = Some(Arc::new(|_ctl, _eid, status| {
            if *status == Status::HoldElection {
                HELD.fetch_add(1, Ordering::SeqCst);
                Reaction::Handled
            } else {
                Reaction::Default
            }
        }));
    });
    // The master search (1 s in these tests) asks each site for an election.
    wait_until("the hook to see HoldElection", || {
        HELD.load(Ordering::SeqCst) >= 3
    });
    assert!((0..3).all(|i| c.env(i).role() == Role::Client));
    for i in 0..3 {
        let events = drain(&c.site(i).net.events());
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, NetEvent::ElectionStarted { .. })),
            "{events:?}"
        );
    }
    for i in 0..3 {
        c.site(i).net.elect().unwrap();
    }
    let m = c.wait_for_master();
    assert!(c.commit(m, b"after", b"asking").permanent);
}

type Gate = Arc<(Mutex<bool>, Condvar)>;

fn gate() -> &'static Gate {
    static GATE: std::sync::OnceLock<Gate> = std::sync::OnceLock::new();
    GATE.get_or_init(|| Arc::new((Mutex::new(false), Condvar::new())))
}

const MAX_FRAME: usize = 128 << 10;
static SLOW_EID: AtomicI32 = AtomicI32::new(-1);

#[test]
fn a_worker_that_falls_behind_pauses_reading_and_catches_up() {
    init_log();
    let c = Cluster::start_with(3, |cfg| {
        cfg.max_frame_bytes = MAX_FRAME;
        cfg.max_inbound_bytes = MAX_FRAME;
        // The slow site's worker stops at the gate while it is shut (a slow disk).
        cfg.status_hook = Some(Arc::new(|ctl, _eid, _status| {
            if ctl.local_eid() != SLOW_EID.load(Ordering::SeqCst) {
                return Reaction::Default;
            }
            let (shut, cv) = &**gate();
            let mut g = shut.lock().unwrap();
            while *g {
                g = cv.wait(g).unwrap();
            }
            Reaction::Default
        }));
    });
    let m = c.wait_for_master();
    // A client, whichever site won.
    let slow = (m + 1) % 3;
    SLOW_EID.store(slow as i32 + 1, Ordering::SeqCst);
    *gate().0.lock().unwrap() = true;
    let value = vec![7u8; 16 << 10];
    let mut k = 0;
    wait_until("the slow site to pause reading", || {
        k += 1;
        assert!(c.commit(m, format!("k{k}").as_bytes(), &value).permanent);
        c.site(slow).net.stats().read_pauses > 0
    });
    let st = c.site(slow).net.stats();
    assert!(
        st.inbound_bytes as usize <= MAX_FRAME + (64 << 10) + MAX_FRAME,
        "{} bytes unprocessed",
        st.inbound_bytes
    );
    *gate().0.lock().unwrap() = false;
    gate().1.notify_all();
    c.wait_converged(m);
}
