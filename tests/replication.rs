//! Replication over the deterministic test kit (issue 3).
//!
//! Every test drives real cores, logs and stores through the simulated
//! network and clock of `dbrep::testing::testkit`, so each run is reproducible from
//! its seed.

use dbrep::db::Op;
use dbrep::rep::RepMeta;
use dbrep::storage::Storage;
use dbrep::testing::testkit::{Cluster, NetFaults, Packet};
use dbrep::testing::CrashMode;
use dbrep::wire::{self, MsgType};
use dbrep::{AckPolicy, Eid, EnvConfig, Event, Lsn, RepConfig, Role, StartAs, Status};

fn cfg(nsites: u32) -> impl Fn(Eid) -> EnvConfig {
    move |_| {
        let mut c = EnvConfig::default();
        c.rep.nsites = nsites;
        c
    }
}

/// Starts site 1 as master and the rest as clients, and lets them sync.
fn group(n: usize, seed: u64, make: impl Fn(Eid) -> EnvConfig + 'static) -> Cluster {
    let mut c = Cluster::new(n, seed, make);
    c.start(1, StartAs::Master);
    for s in 2..=n as Eid {
        c.start(s, StartAs::Client);
    }
    c.run_for(200_000);
    c
}

/// Every record of a site's log from `from` on: (lsn, gen, payload).
fn log_records(c: &mut Cluster, eid: Eid, from: Lsn) -> Vec<(Lsn, u32, Vec<u8>)> {
    c.core(eid)
        .storage()
        .log()
        .iter_from(from)
        .map(|r| r.expect("log record reads"))
        .filter(|r| r.lsn > from || from.is_zero())
        .map(|r| (r.lsn, r.gen, r.payload))
        .collect()
}

/// Asserts every listed site holds the master's store and log.
fn assert_converged(c: &mut Cluster, master: Eid, sites: &[Eid]) {
    let digest = c.core(master).storage().store().digest();
    let last = c.core(master).storage().log().last_lsn();
    for &s in sites {
        assert_eq!(
            c.core(s).storage().store().digest(),
            digest,
            "site {s} store differs from master {master}"
        );
        assert_eq!(
            c.core(s).storage().log().last_lsn(),
            last,
            "site {s} log end differs from master {master}"
        );
        // Compare the records both logs hold (a site initialised from a
        // snapshot holds only the suffix after it).
        let base = c
            .core(s)
            .storage()
            .log()
            .base_lsn()
            .max(c.core(master).storage().log().base_lsn());
        let mine = log_records(c, s, base);
        let theirs = log_records(c, master, base);
        assert!(!mine.is_empty(), "site {s} holds no log after {base}");
        assert!(
            mine == theirs,
            "site {s} log records after {base} differ from master {master} ({} vs {} records)",
            mine.len(),
            theirs.len()
        );
    }
}

fn workload(c: &mut Cluster, master: Eid, from: u32, to: u32, gap_us: u64) -> Lsn {
    let mut last = Lsn::ZERO;
    for i in from..to {
        let ops = if i % 7 == 3 {
            vec![Op::Delete {
                key: (i - 3).to_be_bytes().to_vec(),
            }]
        } else {
            vec![
                Op::Put {
                    key: i.to_be_bytes().to_vec(),
                    value: format!("value-{i}").into_bytes(),
                },
                Op::Put {
                    key: format!("k{}", i % 13).into_bytes(),
                    value: i.to_le_bytes().to_vec(),
                },
            ]
        };
        last = c.commit(master, &ops).expect("commit on master");
        c.run_for(gap_us);
    }
    last
}

/// Makes a site that has followed a master master without an election:
/// allowed only in manual-master mode.
fn appoint(c: &mut Cluster, eid: i32) {
    let mut cfg = c.core(eid).config().clone();
    cfg.set_flag(dbrep::ConfigFlag::ManualMaster, true);
    c.core(eid).set_config(cfg).unwrap();
    c.start(eid, StartAs::Master);
}

#[test]
fn three_sites_replicate_a_workload() {
    let mut c = group(3, 1, cfg(3));
    let last = workload(&mut c, 1, 0, 100, 1_000);
    c.run_for(100_000);
    assert!(
        c.core(1).is_permanent(last),
        "perm {:?} last {last}",
        c.core(1).perm_lsn()
    );
    assert_converged(&mut c, 1, &[2, 3]);
}

#[test]
fn five_sites_replicate_a_workload() {
    let mut c = group(5, 2, cfg(5));
    let last = workload(&mut c, 1, 0, 200, 300);
    c.run_for(200_000);
    assert!(c.core(1).is_permanent(last));
    assert_converged(&mut c, 1, &[2, 3, 4, 5]);
    for s in 2..=5 {
        assert!(c.core(s).stats(false).startup_complete, "site {s}");
    }
}

/// Commits one record with the `cut` clients partitioned and reports whether it became permanent.
fn perm_with_site3_cut(policy: AckPolicy, cut: &[Eid], wait_us: u64) -> bool {
    perm_after_idle(policy, cut, 0, wait_us)
}

/// Like `perm_with_site3_cut`, after the group sat idle for `idle_us`.
fn perm_after_idle(policy: AckPolicy, cut: &[Eid], idle_us: u64, wait_us: u64) -> bool {
    let mut c = group(3, 3, move |_| {
        let mut e = EnvConfig::default();
        e.rep.nsites = 3;
        e.rep.ack_policy = policy;
        e
    });
    workload(&mut c, 1, 0, 5, 1_000);
    c.run_for(100_000 + idle_us);
    for &s in cut {
        c.isolate(s);
    }
    let lsn = c.put(1, b"perm", b"?").unwrap();
    c.run_for(wait_us);
    c.core(1).is_permanent(lsn)
}

#[test]
fn ack_policies_decide_permanence() {
    // Everyone up: every policy makes the commit permanent.
    for p in [
        AckPolicy::All,
        AckPolicy::AllAvailable,
        AckPolicy::Quorum,
        AckPolicy::One,
        AckPolicy::None,
    ] {
        assert!(perm_with_site3_cut(p, &[], 100_000), "{p:?} with all up");
    }
    // One client partitioned.
    assert!(!perm_with_site3_cut(AckPolicy::All, &[3], 2_000_000));
    assert!(perm_with_site3_cut(AckPolicy::Quorum, &[3], 100_000));
    assert!(perm_with_site3_cut(AckPolicy::One, &[3], 100_000));
    assert!(perm_with_site3_cut(AckPolicy::None, &[3], 100_000));
    // ALL_AVAILABLE waits for site 3 while it still counts as available,
    // even after a long idle spell in which no client sent anything...
    assert!(!perm_with_site3_cut(
        AckPolicy::AllAvailable,
        &[3],
        1_000_000
    ));
    assert!(!perm_after_idle(
        AckPolicy::AllAvailable,
        &[3],
        40_000_000,
        1_000_000
    ));
    assert!(perm_after_idle(
        AckPolicy::AllAvailable,
        &[],
        40_000_000,
        100_000
    ));
    // ...and no longer once it has been silent past the availability window.
    assert!(perm_with_site3_cut(
        AckPolicy::AllAvailable,
        &[3],
        31_000_000
    ));
    // Both clients partitioned.
    assert!(!perm_with_site3_cut(AckPolicy::Quorum, &[2, 3], 2_000_000));
    assert!(!perm_with_site3_cut(AckPolicy::One, &[2, 3], 2_000_000));
    assert!(perm_with_site3_cut(AckPolicy::None, &[2, 3], 100_000));
    // With every client unreachable, ALL_AVAILABLE does not count a commit
    // held by the master alone as permanent: it would survive no election.
    assert!(!perm_with_site3_cut(
        AckPolicy::AllAvailable,
        &[2, 3],
        31_000_000
    ));
}

#[test]
fn quorum_ignores_priority_zero_acks() {
    let mut c = group(3, 4, |eid| {
        let mut e = EnvConfig::default();
        e.rep.nsites = 3;
        if eid == 2 {
            e.rep.priority = 0;
        }
        e
    });
    c.run_for(100_000);
    c.isolate(3);
    let lsn = c.put(1, b"k", b"v").unwrap();
    c.run_for(1_000_000);
    assert_eq!(c.get(2, b"k"), Some(b"v".to_vec()));
    assert!(
        !c.core(1).is_permanent(lsn),
        "a priority-0 ack made a quorum"
    );
    c.heal();
    // Site 3 learns of what it missed with the next message from the master.
    let now = c.now;
    c.core(1).flush(now).unwrap();
    c.collect(1);
    c.run_for(2_000_000);
    assert!(c.core(1).is_permanent(lsn));
}

#[test]
fn lossy_reordering_duplicating_network_converges() {
    for seed in 10..13 {
        let mut c = Cluster::new(5, seed, cfg(5));
        c.faults = NetFaults {
            drop_per_mille: 100,
            dup_per_mille: 100,
            max_jitter_us: 5_000,
        };
        c.start(1, StartAs::Master);
        for s in 2..=5 {
            c.start(s, StartAs::Client);
        }
        workload(&mut c, 1, 0, 150, 500);
        c.faults = NetFaults::default();
        // The tail may have been lost: a flush lets clients notice.
        let now = c.now;
        c.core(1).flush(now).unwrap();
        c.collect(1);
        // Several records per client were lost: the gaps must fill one
        // after the other without a back-off each.
        let ok = c.run_until(3_000_000, 50_000, |c| {
            let d = c.core(1).storage().store().digest();
            let l = c.core(1).storage().log().last_lsn();
            (2..=5).all(|s| {
                c.core(s).storage().store().digest() == d
                    && c.core(s).storage().log().last_lsn() == l
            })
        });
        assert!(ok, "seed {seed}: clients did not converge");
        assert_converged(&mut c, 1, &[2, 3, 4, 5]);
        assert_eq!(c.masters(), vec![1], "seed {seed}");
        let dups: u64 = (2..=5).map(|s| c.core(s).stats(false).log_duplicated).sum();
        assert!(dups > 0, "seed {seed}: duplicates were never seen");
    }
}

#[test]
fn client_restarted_mid_stream_catches_up() {
    for mode in [CrashMode::LoseUnsynced, CrashMode::KeepAll] {
        let mut c = group(3, 20, cfg(3));
        workload(&mut c, 1, 0, 50, 1_000);
        c.crash(3, mode);
        workload(&mut c, 1, 50, 100, 1_000);
        c.restart(3).unwrap();
        workload(&mut c, 1, 100, 120, 1_000);
        c.run_for(2_000_000);
        assert_converged(&mut c, 1, &[2, 3]);
        assert_eq!(c.core(3).role(), Role::Client);
        assert!(c.core(3).stats(false).startup_complete);
    }
}

fn small_segments(nsites: u32, autoinit: bool) -> impl Fn(Eid) -> EnvConfig {
    move |_| {
        let mut c = EnvConfig::default();
        c.rep.nsites = nsites;
        c.rep.autoinit = autoinit;
        c.log.segment_size_bytes = 4096;
        c
    }
}

#[test]
fn far_behind_client_is_initialised_from_a_snapshot() {
    let mut c = group(3, 30, small_segments(3, true));
    workload(&mut c, 1, 0, 20, 1_000);
    c.crash(3, CrashMode::KeepAll);
    workload(&mut c, 1, 20, 300, 200);
    c.run_for(100_000);
    let ckpt = c.core(1).storage_mut().checkpoint().unwrap();
    assert!(
        c.core(1).storage().log().base_lsn() > Lsn::new(1, 0),
        "the checkpoint trimmed no log"
    );
    c.restart(3).unwrap();
    c.run_for(2_000_000);
    workload(&mut c, 1, 300, 310, 1_000);
    c.run_for(1_000_000);
    assert_converged(&mut c, 1, &[2, 3]);
    let st = c.core(3).stats(false);
    assert_eq!(st.outdated, 1, "internal init counted once");
    assert!(st.startup_complete);
    assert!(c.core(3).storage().checkpoint_lsn() >= ckpt);
}

#[test]
fn far_behind_client_without_autoinit_gets_join_failure() {
    let mut c = group(3, 31, small_segments(3, false));
    workload(&mut c, 1, 0, 20, 1_000);
    c.crash(3, CrashMode::KeepAll);
    workload(&mut c, 1, 20, 300, 200);
    c.core(1).storage_mut().checkpoint().unwrap();
    c.restart(3).unwrap();
    c.run_for(2_000_000);
    assert!(c.site(3).statuses.contains(&Status::JoinFailure));
    assert!(c.site(3).events.contains(&Event::JoinFailure));
    assert_eq!(c.core(3).stats(false).outdated, 0);
    // Nothing was lost or applied: the client still holds its old state.
    assert_eq!(c.get(3, &19u32.to_be_bytes()), Some(b"value-19".to_vec()));
    assert_eq!(c.get(3, &20u32.to_be_bytes()), None);
}

fn hb_cfg(nsites: u32) -> impl Fn(Eid) -> EnvConfig {
    move |_| {
        let mut c = EnvConfig::default();
        c.rep.nsites = nsites;
        c.rep.heartbeat_send_us = 1_000_000;
        c.rep.heartbeat_monitor_us = 3_000_000;
        c
    }
}

#[test]
fn stale_master_steps_down_and_reports_rolled_back_transactions() {
    let mut c = group(3, 40, hb_cfg(3));
    let permanent = workload(&mut c, 1, 0, 10, 1_000);
    c.run_for(100_000);
    assert!(c.core(1).is_permanent(permanent));
    let old_gen = c.core(1).gen();
    c.isolate(1);
    // The old master keeps committing; nothing of this can become permanent.
    let a = c.put(1, b"lost-a", b"1").unwrap();
    let b = c
        .commit(
            1,
            &[
                Op::Put {
                    key: b"lost-b".to_vec(),
                    value: b"2".to_vec(),
                },
                Op::Delete {
                    key: b"k3".to_vec(),
                },
            ],
        )
        .unwrap();
    let elected = c.run_until(20_000_000, 100_000, |c| c.masters().iter().any(|&m| m != 1));
    assert!(elected, "the majority elected no master");
    assert!(!c.core(1).is_permanent(b));
    let new_master = *c.masters().iter().find(|&&m| m != 1).unwrap();
    assert!(c.core(new_master).gen() > old_gen);
    c.put(new_master, b"after", b"x").unwrap();
    c.heal();
    c.run_for(5_000_000);
    assert_eq!(c.masters(), vec![new_master]);
    assert_eq!(c.core(1).role(), Role::Client);
    let rolled: Vec<_> = c
        .site(1)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RolledBack(t) => Some(t.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let lsns: Vec<Lsn> = rolled.iter().map(|t| t.lsn).collect();
    assert_eq!(lsns, vec![a, b], "rolled back: {rolled:?}");
    assert_eq!(rolled[0].keys, vec![b"lost-a".to_vec()]);
    assert_eq!(rolled[1].keys, vec![b"lost-b".to_vec(), b"k3".to_vec()]);
    assert!(rolled.iter().all(|t| t.gen == old_gen));
    assert_eq!(c.get(1, b"lost-a"), None);
    assert_eq!(c.get(1, b"after"), Some(b"x".to_vec()));
    let others: Vec<Eid> = (1..=3).filter(|&s| s != new_master).collect();
    assert_converged(&mut c, new_master, &others);
}

#[test]
fn newsite_carries_cdata() {
    let mut c = group(3, 50, cfg(3));
    c.add_site(4).unwrap();
    c.start(4, StartAs::Client);
    c.run_for(200_000);
    for s in 1..=3 {
        assert!(
            c.site(s).statuses.contains(&Status::NewSite {
                eid: 4,
                cdata: b"site4".to_vec()
            }),
            "site {s}: {:?}",
            c.site(s).statuses
        );
    }
    assert_converged(&mut c, 1, &[4]);
}

/// Takes the packets in flight that match `pred` out of the network.
fn grab(c: &mut Cluster, pred: impl Fn(&Packet, MsgType) -> bool) -> Vec<Packet> {
    let keys: Vec<_> = c
        .queue
        .iter()
        .filter(|(_, p)| wire::peek_control(&p.control).is_ok_and(|(t, ..)| pred(p, t)))
        .map(|(k, _)| *k)
        .collect();
    keys.iter().map(|k| c.queue.remove(k).unwrap()).collect()
}

#[test]
fn old_generation_messages_are_ignored_and_counted() {
    let mut c = group(3, 60, cfg(3));
    c.put(1, b"a", b"1").unwrap();
    // Keep a copy of a live message from the generation-1 master.
    let old = grab(&mut c, |p, t| t == MsgType::Log && p.to == 3);
    assert_eq!(old.len(), 1);
    c.run_for(100_000);
    // Site 2 takes over as master with a newer generation.
    let now = c.now;
    c.core(1).start(now, StartAs::Client, b"").unwrap();
    c.collect(1);
    appoint(&mut c, 2);
    c.run_for(1_000_000);
    assert_eq!(c.masters(), vec![2]);
    assert!(c.core(3).gen() > 1);
    let before = c.core(3).stats(false).msgs_badgen;
    let now = c.now;
    let st = c
        .core(3)
        .process(now, &old[0].control, &old[0].rec, 1)
        .unwrap();
    assert_eq!(st, Status::Ignore);
    assert_eq!(c.core(3).stats(false).msgs_badgen, before + 1);
}

#[test]
fn duplicate_masters_resolve_to_one() {
    let mut c = Cluster::new(3, 70, cfg(3));
    c.partition(&[&[1, 2], &[3]]);
    c.start(1, StartAs::Master);
    c.start(2, StartAs::Client);
    c.start(3, StartAs::Master);
    c.run_for(200_000);
    assert_eq!(c.core(1).gen(), c.core(3).gen());
    c.put(1, b"one", b"1").unwrap();
    c.heal();
    c.put(3, b"three", b"3").unwrap();
    let ok = c.run_until(30_000_000, 100_000, |c| {
        c.masters().len() == 1 && {
            let m = c.masters().first().copied();
            (1..=3).all(|s| c.core(s).master() == m)
        }
    });
    assert!(ok, "masters: {:?}", c.masters());
    let dup = (1..=3).any(|s| c.site(s).statuses.contains(&Status::DupMaster));
    assert!(dup, "no site reported DUPMASTER");
    assert!(
        (1..=3)
            .map(|s| c.core(s).stats(false).dupmasters)
            .sum::<u64>()
            > 0
    );
    let m = c.masters()[0];
    c.put(m, b"after", b"x").unwrap();
    c.run_for(1_000_000);
    let others: Vec<Eid> = (1..=3).filter(|&s| s != m).collect();
    assert_converged(&mut c, m, &others);
}

/// Snapshot of the state a bad message must not change.
fn state(c: &mut Cluster, s: Eid) -> (u64, Lsn, Role, u32, Option<Eid>) {
    let core = c.core(s);
    (
        core.storage().store().digest(),
        core.storage().log().last_lsn(),
        core.role(),
        core.gen(),
        core.master(),
    )
}

#[test]
fn malformed_messages_are_errors_and_change_nothing() {
    let mut c = group(3, 80, cfg(3));
    workload(&mut c, 1, 0, 5, 1_000);
    c.run_for(100_000);
    c.put(1, b"x", b"y").unwrap();
    let live = grab(&mut c, |p, t| t == MsgType::Log && p.to == 2).remove(0);
    let mut rng = dbrep::testing::testkit::Rng::new(99);
    let mut bad: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for len in [0usize, 1, 5, 27, 28, 29, 100] {
        let mut control = vec![0u8; len];
        let mut rec = vec![0u8; (rng.below(64)) as usize];
        control.iter_mut().for_each(|b| *b = rng.below(256) as u8);
        rec.iter_mut().for_each(|b| *b = rng.below(256) as u8);
        bad.push((control, rec));
    }
    // Truncated control and truncated rec.
    bad.push((
        live.control[..live.control.len() - 1].to_vec(),
        live.rec.clone(),
    ));
    bad.push((
        live.control.clone(),
        live.rec[..live.rec.len() - 1].to_vec(),
    ));
    // A valid control header with garbage of the right length as rec.
    let mut garbage = live.rec.clone();
    for b in garbage.iter_mut().skip(12) {
        *b = rng.below(256) as u8;
    }
    bad.push((live.control.clone(), garbage));
    // A Log message whose record fails its CRC (flip the last payload byte).
    let mut broken = live.rec.clone();
    *broken.last_mut().unwrap() ^= 0x5a;
    bad.push((live.control.clone(), broken));
    // Every message type with random bodies.
    for t in 1u8..=18 {
        let mut control = live.control.clone();
        control[4] = t;
        control[5] = 0;
        let rec: Vec<u8> = (0..live.rec.len()).map(|_| rng.below(256) as u8).collect();
        bad.push((control, rec));
    }
    for target in [1, 2] {
        let before = state(&mut c, target);
        for (control, rec) in &bad {
            let now = c.now;
            let from = if target == 1 { 2 } else { 1 };
            // Random bodies may decode to something harmless; what matters
            // is that nothing panics and that decode failures are errors.
            let r = c.core(target).process(now, control, rec, from);
            if wire::peek_control(control).is_err() {
                assert!(r.is_err(), "bad control accepted: {r:?}");
            }
            // Drop whatever the site answered (requests to peers).
            let (mut m, mut e) = (Vec::new(), Vec::new());
            c.core(target).take_output(&mut m, &mut e);
        }
        // The specific corrupt Log messages are errors.
        for (control, rec) in &bad[7..11] {
            let now = c.now;
            let from = if target == 1 { 2 } else { 1 };
            if target == 2 {
                let r = c.core(target).process(now, control, rec, from);
                assert!(r.is_err(), "accepted: {r:?}");
            }
        }
        let after = state(&mut c, target);
        assert_eq!(before.0, after.0, "site {target} store changed");
        assert_eq!(before.1, after.1, "site {target} log changed");
        assert_eq!(before.2, after.2, "site {target} role changed");
        assert_eq!(before.3, after.3, "site {target} generation changed");
    }
    // The real message still applies afterwards.
    let now = c.now;
    let st = c.core(2).process(now, &live.control, &live.rec, 1).unwrap();
    assert!(matches!(st, Status::IsPerm(_)), "{st:?}");
    c.run_for(1_000_000);
    assert_converged(&mut c, 1, &[2, 3]);
}

#[test]
fn delayed_client_waits_for_sync() {
    let mut c = Cluster::new(3, 90, |eid| {
        let mut e = EnvConfig::default();
        e.rep.nsites = 3;
        e.rep.delay_client = eid == 3;
        e
    });
    c.start(1, StartAs::Master);
    workload(&mut c, 1, 0, 10, 1_000);
    c.start(2, StartAs::Client);
    c.start(3, StartAs::Client);
    c.run_for(1_000_000);
    workload(&mut c, 1, 10, 20, 1_000);
    c.run_for(1_000_000);
    assert!(c.site(3).events.contains(&Event::NewMaster(1)));
    assert_eq!(c.core(3).master(), Some(1));
    assert_eq!(c.core(3).storage().log().last_lsn(), Lsn::ZERO);
    assert!(!c.core(3).stats(false).startup_complete);
    assert_converged(&mut c, 1, &[2]);
    let now = c.now;
    c.core(3).sync(now).unwrap();
    c.collect(3);
    c.run_for(1_000_000);
    assert_converged(&mut c, 1, &[3]);
    assert!(c.site(3).events.contains(&Event::StartupDone));
}

#[test]
fn startupdone_follows_newmaster() {
    let mut c = Cluster::new(3, 100, cfg(3));
    c.start(1, StartAs::Master);
    workload(&mut c, 1, 0, 30, 100);
    c.start(2, StartAs::Client);
    c.start(3, StartAs::Client);
    c.run_for(1_000_000);
    for s in [2, 3] {
        let ev = c.site(s).events.clone();
        let nm = ev.iter().position(|e| *e == Event::NewMaster(1));
        let sd = ev.iter().position(|e| *e == Event::StartupDone);
        assert!(
            matches!((nm, sd), (Some(a), Some(b)) if a < b),
            "site {s}: {ev:?}"
        );
        assert!(c.core(s).stats(false).startup_complete);
        assert_eq!(ev.iter().filter(|e| **e == Event::StartupDone).count(), 1);
    }
}

#[test]
fn notperm_behind_a_gap_becomes_isperm_when_it_fills() {
    let mut c = group(3, 110, cfg(3));
    c.put(1, b"a", b"1").unwrap();
    c.run_for(100_000);
    let l1 = c.put(1, b"b", b"2").unwrap();
    let first = grab(&mut c, |p, t| t == MsgType::Log && p.to == 2).remove(0);
    let l2 = c.put(1, b"c", b"3").unwrap();
    let second = grab(&mut c, |p, t| t == MsgType::Log && p.to == 2).remove(0);
    assert!(l2 > l1);
    let now = c.now;
    let st = c
        .core(2)
        .process(now, &second.control, &second.rec, 1)
        .unwrap();
    assert_eq!(st, Status::NotPerm(l2));
    assert_eq!(c.core(2).stats(false).waiting_lsn, l2);
    let now = c.now;
    let st = c
        .core(2)
        .process(now, &first.control, &first.rec, 1)
        .unwrap();
    match st {
        Status::IsPerm(l) => assert!(l >= l2, "IsPerm({l}) below NotPerm({l2})"),
        other => panic!("expected IsPerm, got {other:?}"),
    }
    assert_eq!(c.core(2).stats(false).waiting_lsn, Lsn::ZERO);
    c.collect(2);
    c.run_for(500_000);
    assert_converged(&mut c, 1, &[2, 3]);
}

#[test]
fn gap_is_rerequested_when_the_record_is_lost() {
    let mut c = group(3, 111, cfg(3));
    c.put(1, b"a", b"1").unwrap();
    grab(&mut c, |p, t| t == MsgType::Log && p.to == 2);
    let l2 = c.put(1, b"b", b"2").unwrap();
    c.run_for(1_000_000);
    assert!(c.site(2).statuses.contains(&Status::NotPerm(l2)));
    assert!(c.core(2).stats(false).log_requested > 0);
    assert_converged(&mut c, 1, &[2, 3]);
    assert!(c.core(1).is_permanent(l2));
}

fn bare_core() -> dbrep::rep::Core {
    let storage = Storage::in_memory(Default::default());
    let rc = RepConfig {
        nsites: 3,
        ..RepConfig::default()
    };
    dbrep::rep::Core::new(storage, RepMeta::default(), rc).unwrap()
}

#[test]
fn calls_out_of_order_are_errors() {
    let mut c = Cluster::new(2, 120, cfg(2));
    c.start(1, StartAs::Master);
    c.put(1, b"a", b"1").unwrap();
    let p = grab(&mut c, |_, t| t == MsgType::Log).remove(0);

    let mut core = bare_core();
    assert!(core.process(0, &p.control, &p.rec, 1).is_err());
    assert!(core.elect(0, 0, 0, 0).is_err());
    assert!(core.start(0, StartAs::Client, b"").is_err());
    assert!(core.set_local_eid(-1).is_err());
    core.set_local_eid(2).unwrap();
    // Local id set but not started: the message is answered, not lost silently.
    assert_eq!(
        core.process(0, &p.control, &p.rec, 1).unwrap(),
        dbrep::Status::NotStarted
    );
    assert!(core.elect(0, 0, 0, 0).is_err());
    assert!(core.commit(0, b"").is_err());
    core.start(0, StartAs::Client, b"").unwrap();
    // Messages labelled with our own id or a negative id are refused.
    assert!(core.process(0, &p.control, &p.rec, 2).is_err());
    assert!(core.process(0, &p.control, &p.rec, -5).is_err());
    // A client cannot commit.
    assert!(core.commit(0, b"").is_err());
}

#[test]
fn elect_checks_its_arguments() {
    let mut core = bare_core();
    core.set_local_eid(1).unwrap();
    core.start(0, StartAs::Client, b"").unwrap();
    assert!(core.elect(0, 3, 4, 0).is_err(), "nvotes > nsites");
    assert!(core.elect(0, 3, 2, 1).is_err(), "non-zero flags");
    assert!(core.elect(0, 5, 2, 0).is_err(), "sub-majority");
    assert!(core.elect(0, 4, 2, 0).is_err(), "half is not a majority");
    let mut cfg = core.config().clone();
    cfg.allow_sub_majority = true;
    core.set_config(cfg).unwrap();
    assert!(
        core.elect(0, 5, 2, 0).is_ok(),
        "sub-majority allowed by opt-in"
    );

    let mut core = bare_core();
    core.set_local_eid(1).unwrap();
    core.start(0, StartAs::Client, b"").unwrap();
    core.elect(0, 0, 0, 0).unwrap();
    let (mut m, mut e) = (Vec::new(), Vec::new());
    core.take_output(&mut m, &mut e);
    let vote1 = m
        .iter()
        .find_map(|o| {
            let env = wire::decode(&o.control, &o.rec, &Default::default()).ok()?;
            match env.msg {
                wire::Message::Vote1 { nsites, nvotes, .. } => Some((nsites, nvotes)),
                _ => None,
            }
        })
        .expect("a Vote1 was broadcast");
    assert_eq!(
        vote1,
        (3, 2),
        "elect(0,0,0) uses the configured nsites and a majority"
    );

    let mut core = bare_core();
    let mut cfg = core.config().clone();
    cfg.nsites = 0;
    core.set_config(cfg).unwrap();
    core.set_local_eid(1).unwrap();
    core.start(0, StartAs::Client, b"").unwrap();
    assert!(core.elect(0, 0, 0, 0).is_err(), "no nsites anywhere");
}

#[test]
fn a_syncing_client_with_nowait_is_locked_out() {
    use dbrep::{ConfigFlag, Env, Error, Status};
    use std::sync::{Arc, Mutex};
    let mut cfg = EnvConfig::default();
    cfg.log.in_memory = true;
    cfg.rep.set_flag(ConfigFlag::NoWait, true);
    let master = Env::open_in_memory(cfg.clone()).unwrap();
    let client = Env::open_in_memory(cfg).unwrap();
    let to_client = Arc::new(Mutex::new(Vec::new()));
    let q = to_client.clone();
    master
        .rep_set_transport(1, move |m| {
            q.lock().unwrap().push((m.control, m.rec.clone()));
            Ok(())
        })
        .unwrap();
    client.rep_set_transport(2, |_| Ok(())).unwrap();
    // The future client holds a log of its own, so it must verify it.
    client.rep_start(&[], StartAs::Master).unwrap();
    let mut t = client.txn();
    t.put(b"k", b"mine");
    t.commit().unwrap();
    client.rep_start(&[], StartAs::Client).unwrap();
    assert_eq!(
        client.get(b"k").unwrap(),
        Some(b"mine".to_vec()),
        "not syncing yet"
    );
    master.rep_start(&[], StartAs::Master).unwrap();
    let announcements: Vec<_> = to_client.lock().unwrap().drain(..).collect();
    let mut adopted = false;
    for (c, r) in announcements {
        adopted |= client.rep_process_message(&c, &r, 1).unwrap() == Status::NewMaster(1);
    }
    assert!(adopted, "the client follows the new master");
    // Its verify request went nowhere: it is still matching its log to the master's.
    assert!(matches!(client.get(b"k"), Err(Error::Lockout)));
}
