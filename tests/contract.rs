//! The host contract made exact (issue 14): election outcomes, what
//! "permanent" promises, the failed state after a storage failure, and the
//! smaller points. Each test here failed on the code before the fix.
//! NOTES-h-rep.md maps every point of the issue to its test.

#[path = "../examples/common/hub.rs"]
mod hub;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbrep::log::LogConfig;
use dbrep::testing::testkit::{Cluster, Packet};
use dbrep::testing::{CrashMode, SimFs};
use dbrep::vfs::Vfs;
use dbrep::wire::{self, Envelope, Message, MsgFlags, MsgType};
use dbrep::{
    AckPolicy, ConfigFlag, ElectionOutcome, Env, EnvConfig, Error, Event, ReadLevel, Role, StartAs,
    Status, TimeoutKind,
};

/// A message as sent: control and rec bytes.
type Wire = (Vec<u8>, Vec<u8>);

fn cfg(nsites: u32) -> impl Fn(i32) -> EnvConfig {
    move |eid| {
        let mut c = EnvConfig::default();
        c.rep.nsites = nsites;
        c.rep.priority = match eid {
            1 => 100,
            2 => 50,
            _ => 10,
        };
        c
    }
}

fn grab(c: &mut Cluster, pred: impl Fn(&Packet, MsgType) -> bool) -> Vec<Packet> {
    let keys: Vec<_> = c
        .queue
        .iter()
        .filter(|(_, p)| wire::peek_control(&p.control).is_ok_and(|(t, ..)| pred(p, t)))
        .map(|(k, _)| *k)
        .collect();
    keys.iter().map(|k| c.queue.remove(k).unwrap()).collect()
}

fn group(n: usize, seed: u64) -> Cluster {
    let mut c = Cluster::new(n, seed, cfg(n as u32));
    c.start(1, StartAs::Master);
    for s in 2..=n as i32 {
        c.start(s, StartAs::Client);
    }
    c.run_for(200_000);
    c
}

fn elect(c: &mut Cluster, sites: &[i32]) {
    let now = c.now;
    for &s in sites {
        let local = c.local_now(s);
        c.core(s).elect(local, 0, 0, 0).expect("rep_elect");
        c.collect(s);
    }
    let _ = now;
}

fn wait(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    pred()
}

fn mem_config() -> EnvConfig {
    let mut c = EnvConfig {
        log: LogConfig {
            in_memory: true,
            ..LogConfig::default()
        },
        ..EnvConfig::default()
    };
    c.rep.nsites = 3;
    c.rep.set_timeout(TimeoutKind::Ack, 2_000_000);
    c.rep.set_timeout(TimeoutKind::Election, 500_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatSend, 50_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatMonitor, 300_000);
    c
}

// ---------------------------------------------------------------- elections

/// `rep_elect` says who won, and a win's `Elected` event reaches the host on
/// the thread that called `rep_elect`, before it returns (the Berkeley DB
/// example checks "did I win?" right after the call).
#[test]
fn rep_elect_returns_the_outcome_and_delivers_elected_on_the_calling_thread() {
    let hub = hub::Hub::new();
    let envs: Vec<Env> = (1..=3)
        .map(|i| {
            let mut c = mem_config();
            c.rep.priority = if i == 1 { 100 } else { 10 };
            // No election of the hub's own before the test's.
            c.rep.set_timeout(TimeoutKind::MasterSearch, 600_000_000);
            Env::open_in_memory(c).unwrap()
        })
        .collect();
    for (i, env) in envs.iter().enumerate() {
        hub.join(i as i32 + 1, env);
    }
    // Site 1's events, with the thread that delivered each; no automatic
    // rep_start on Elected, so the test sees what rep_elect returns.
    let seen: Arc<Mutex<Vec<(std::thread::ThreadId, Event)>>> = Arc::default();
    let log = seen.clone();
    envs[0].set_event_notify(move |e| {
        log.lock()
            .unwrap()
            .push((std::thread::current().id(), e.clone()))
    });
    for env in &envs {
        env.rep_start(&[], StartAs::Client).unwrap();
    }
    let outcome = envs[0]
        .rep_elect(0, 0, 0)
        .expect("an election with all three sites");
    assert_eq!(outcome, ElectionOutcome::Won);
    let me = std::thread::current().id();
    let elected: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| *e == Event::Elected)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        elected,
        vec![me],
        "Elected once, on the electing thread, before return"
    );
    envs[0].rep_start(&[], StartAs::Master).unwrap();
    assert!(wait(Duration::from_secs(10), || envs[1..]
        .iter()
        .all(|e| e.rep_stat(false).master == Some(1))));
    // A site that loses learns who won.
    let other = envs[1].rep_elect(0, 0, 0);
    assert!(
        matches!(
            other,
            Ok(ElectionOutcome::OtherWon { master: 1 }) | Err(Error::Unavail(_))
        ),
        "{other:?}"
    );
    hub.shutdown();
}

/// No winner: `Unavail`.
#[test]
fn rep_elect_without_a_winner_is_unavail() {
    let env = Env::open_in_memory(mem_config()).unwrap();
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    env.rep_start(&[], StartAs::Client).unwrap();
    let r = env.rep_elect(3, 2, 0);
    assert!(matches!(r, Err(Error::Unavail(_))), "{r:?}");
}

/// A win overtaken by a later election (another site won it and this site
/// followed it) is no licence: rep_start(MASTER) fails instead of appointing
/// the site with a higher generation that deposes the elected master.
#[test]
fn a_stale_win_does_not_make_rep_start_master_an_appointment() {
    let mut c = Cluster::new(3, 901, cfg(3));
    c.auto_host = false;
    for s in 1..=3 {
        c.start(s, StartAs::Client);
    }
    c.run_for(100_000);
    elect(&mut c, &[1, 2, 3]);
    c.run_for(3_000_000);
    assert!(
        c.site(1).events.contains(&Event::Elected),
        "site 1 wins first"
    );
    // Site 1 sits on its win; the others elect again without it.
    c.partition(&[&[1], &[2, 3]]);
    elect(&mut c, &[2, 3]);
    c.run_for(3_000_000);
    assert!(
        c.site(2).events.contains(&Event::Elected),
        "site 2 wins the later election"
    );
    c.start(2, StartAs::Master);
    c.put(2, b"k", b"from the elected master").unwrap();
    c.run_for(500_000);
    c.heal();
    c.put(2, b"k2", b"v").unwrap();
    c.run_for(1_000_000);
    assert_eq!(
        c.core(1).master(),
        Some(2),
        "site 1 follows the elected master"
    );
    let local = c.local_now(1);
    let r = c.core(1).start(local, StartAs::Master, b"");
    let err = r.expect_err("a stale win must not appoint");
    assert!(err.to_string().contains("ManualMaster"), "{err}");
    c.collect(1);
    c.run_for(500_000);
    assert_eq!(c.masters(), vec![2], "the elected master is not deposed");
}

/// Appointment stays possible: a fresh site (never voted, never followed a
/// master) as at start-up, and any site in manual-master mode.
#[test]
fn appointment_needs_a_fresh_site_or_manual_master_mode() {
    let mut c = group(3, 902);
    assert_eq!(c.masters(), vec![1], "a fresh site may be appointed");
    let local = c.local_now(1);
    c.core(1).start(local, StartAs::Client, b"").unwrap();
    c.collect(1);
    c.run_for(100_000);
    let local = c.local_now(2);
    assert!(
        c.core(2).start(local, StartAs::Master, b"").is_err(),
        "a site that followed a master is not appointed by default"
    );
    let mut cfg = c.core(2).config().clone();
    cfg.set_flag(ConfigFlag::ManualMaster, true);
    c.core(2).set_config(cfg).unwrap();
    c.start(2, StartAs::Master);
    c.run_for(500_000);
    assert_eq!(c.masters(), vec![2]);
}

/// A master that learns of a newer master reports DupMaster (it used to
/// step down silently).
#[test]
fn a_master_meeting_a_newer_master_reports_dupmaster() {
    let mut c = Cluster::new(3, 903, move |eid| {
        let mut e = cfg(3)(eid);
        e.rep.set_flag(ConfigFlag::ManualMaster, true);
        e
    });
    c.auto_host = false;
    c.partition(&[&[1], &[2, 3]]);
    c.start(1, StartAs::Master);
    c.start(3, StartAs::Client);
    // Site 2 leads twice, so its generation passes site 1's.
    c.start(2, StartAs::Master);
    c.run_for(100_000);
    c.start(2, StartAs::Client);
    c.start(2, StartAs::Master);
    c.run_for(100_000);
    assert!(c.core(2).gen() > c.core(1).gen());
    c.heal();
    c.put(2, b"k", b"v").unwrap();
    c.run_for(500_000);
    assert!(
        c.site(1).statuses.contains(&Status::DupMaster),
        "{:?}",
        c.site(1).statuses
    );
    assert!(c.site(1).events.contains(&Event::DupMaster));
    assert_eq!(c.masters(), vec![2]);
}

// ------------------------------------------------------------- permanence

/// With nsites never set, a lone master does not call a commit permanent:
/// no replica holds it.
#[test]
fn with_nsites_unset_a_commit_held_by_no_replica_is_not_permanent() {
    let mut config = EnvConfig::default();
    config.log.in_memory = true;
    config.rep.set_timeout(TimeoutKind::Ack, 50_000);
    let env = Env::open_in_memory(config).unwrap();
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    env.rep_start(&[], StartAs::Master).unwrap();
    let mut t = env.txn();
    t.put(b"k", b"v");
    assert!(!t.commit().unwrap().permanent);
    // A group of one says so.
    env.rep_set_nsites(1).unwrap();
    let mut t = env.txn();
    t.put(b"k", b"w");
    assert!(t.commit().unwrap().permanent);
}

/// Acknowledgements from ids beyond the group do not grow the peer table,
/// so they cannot make a commit permanent.
#[test]
fn acks_from_unknown_ids_do_not_count() {
    let mut c = group(3, 904);
    c.partition(&[&[1], &[2, 3]]);
    let lsn = c.put(1, b"k", b"v").unwrap();
    let (gen, egen) = (c.core(1).gen(), c.core(1).egen());
    for fake in 10..30 {
        let env: Envelope = Envelope {
            gen,
            egen,
            lsn,
            flags: MsgFlags::EMPTY,
            msg: Message::Ack { priority: 100 },
        };
        let (mut control, mut rec) = (Vec::new(), Vec::new());
        wire::encode(&env, &mut control, &mut rec);
        let now = c.local_now(1);
        let _ = c.core(1).process(now, &control, &rec, fake);
    }
    assert!(
        !c.core(1).is_permanent(lsn),
        "forged acks made a commit permanent"
    );
}

/// With leases, a commit and a default read on a master without a valid
/// lease fail with LeaseExpired; a Stale read says it ignores the lease.
#[test]
fn without_a_valid_lease_commits_and_default_reads_fail_with_lease_expired() {
    let hub = hub::Hub::new();
    let envs: Vec<Env> = (1..=3)
        .map(|i| {
            let mut c = mem_config();
            c.rep.priority = if i == 1 { 100 } else { 10 };
            c.rep.set_timeout(TimeoutKind::Ack, 300_000);
            c.rep.set_flag(ConfigFlag::Lease, true);
            c.rep.set_timeout(TimeoutKind::Lease, 300_000);
            c.rep.set_timeout(TimeoutKind::MasterSearch, 200_000);
            Env::open_in_memory(c).unwrap()
        })
        .collect();
    for (i, env) in envs.iter().enumerate() {
        hub.join(i as i32 + 1, env);
    }
    for env in &envs {
        env.rep_start(&[], StartAs::Client).unwrap();
    }
    assert!(wait(Duration::from_secs(20), || envs
        .iter()
        .any(|e| e.role() == Role::Master)));
    let m = envs.iter().position(|e| e.role() == Role::Master).unwrap();
    let mut txn = envs[m].txn();
    txn.put(b"k", b"v");
    assert!(txn.commit().unwrap().permanent);
    assert_eq!(envs[m].get(b"k").unwrap(), Some(b"v".to_vec()));
    hub.cut(m as i32 + 1);
    std::thread::sleep(Duration::from_millis(500));
    if envs[m].role() == Role::Master {
        let got = envs[m].get(b"k");
        assert!(
            matches!(got, Err(Error::LeaseExpired)),
            "default read: {got:?}"
        );
        let stale = envs[m].get_at(b"k", ReadLevel::Stale, Duration::ZERO);
        assert_eq!(
            stale.unwrap(),
            Some(b"v".to_vec()),
            "Stale ignores the lease"
        );
        let mut txn = envs[m].txn();
        txn.put(b"k", b"w");
        let r = txn.commit();
        assert!(matches!(r, Err(Error::LeaseExpired)), "commit: {r:?}");
    }
    hub.shutdown();
}

// ------------------------------------------------------- the failed state

fn disk_env(fs: &SimFs) -> Env {
    let mut config = EnvConfig::default();
    config.rep.nsites = 1;
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let env = Env::open_with_vfs(vfs, Path::new("/env"), config).unwrap();
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    env.rep_start(&[], StartAs::Master).unwrap();
    env
}

/// A failed log write at commit puts the environment into its failed state:
/// every later call returns RunRecovery, even once the disk works again.
#[test]
fn a_failed_write_at_commit_latches_run_recovery() {
    let fs = SimFs::new();
    let env = disk_env(&fs);
    let mut t = env.txn();
    t.put(b"a", b"1");
    t.commit().unwrap();
    fs.fail_writes_after(Some(0));
    let mut t = env.txn();
    t.put(b"b", b"2");
    assert!(t.commit().is_err());
    fs.fail_writes_after(None);
    let mut t = env.txn();
    t.put(b"c", b"3");
    assert!(matches!(t.commit(), Err(Error::RunRecovery(_))));
    assert!(matches!(env.get(b"a"), Err(Error::RunRecovery(_))));
    assert!(matches!(env.rep_tick(), Err(Error::RunRecovery(_))));
}

/// Likewise a failed checkpoint.
#[test]
fn a_failed_checkpoint_latches_run_recovery() {
    let fs = SimFs::new();
    let env = disk_env(&fs);
    let mut t = env.txn();
    t.put(b"a", b"1");
    t.commit().unwrap();
    fs.fail_writes_after(Some(0));
    assert!(env.checkpoint().is_err());
    fs.fail_writes_after(None);
    assert!(matches!(env.checkpoint(), Err(Error::RunRecovery(_))));
    assert!(matches!(env.get(b"a"), Err(Error::RunRecovery(_))));
}

/// A client whose log write fails before it acknowledges does not retry and
/// ack: it stops, and says why.
#[test]
fn a_client_failing_to_write_before_an_ack_stops() {
    let mut c = group(2, 905);
    let fs = c.site(2).fs.clone();
    fs.fail_writes_after(Some(0));
    fs.fail_sync(true);
    let lsn = c.put(1, b"k", b"v").unwrap();
    c.run_for(300_000);
    fs.fail_writes_after(None);
    fs.fail_sync(false);
    c.run_for(300_000);
    assert!(
        c.core(2).failure().is_some(),
        "the client latched its failure"
    );
    assert!(
        !c.core(1).is_permanent(lsn),
        "nothing acknowledged what is not durable"
    );
    let now = c.local_now(2);
    assert!(matches!(c.core(2).tick(now), Err(Error::RunRecovery(_))));
}

// -------------------------------------------------- smaller contract points

/// `next_lsn` is the LSN the next record takes.
#[test]
fn next_lsn_is_the_next_expected_lsn() {
    let mut c = group(2, 906);
    c.put(1, b"a", b"1").unwrap();
    c.run_for(100_000);
    let next = c.core(1).stats(false).next_lsn;
    assert!(next > c.core(1).stats(false).last_lsn);
    assert_eq!(
        c.core(2).stats(false).next_lsn,
        next,
        "the client expects it too"
    );
    let lsn = c.put(1, b"b", b"2").unwrap();
    assert_eq!(lsn, next);
}

/// `NewSite` once per site, not on every restart of a known one.
#[test]
fn new_site_is_reported_once_per_site() {
    let mut c = group(3, 907);
    for _ in 0..3 {
        c.start(2, StartAs::Client);
        c.run_for(100_000);
    }
    let n = c
        .site(1)
        .statuses
        .iter()
        .filter(|s| matches!(s, Status::NewSite { eid: 2, .. }))
        .count();
    assert_eq!(n, 1);
}

/// `IsPerm` only for a message the master sent permanent: records re-sent
/// on request are processed without it.
#[test]
fn is_perm_only_for_records_sent_permanent() {
    let mut c = group(2, 908);
    c.put(1, b"a", b"1").unwrap();
    let lost = grab(&mut c, |p, t| t == MsgType::Log && p.to == 2);
    assert_eq!(lost.len(), 1, "the live broadcast of the first commit");
    c.put(1, b"b", b"2").unwrap();
    // Hold every message in flight so the test delivers them by hand.
    c.latency_us = 10_000_000;
    let live = grab(&mut c, |p, t| t == MsgType::Log && p.to == 2);
    let now = c.local_now(2);
    let st = c
        .core(2)
        .process(now, &live[0].control, &live[0].rec, 1)
        .unwrap();
    assert!(
        matches!(st, Status::NotPerm(_)),
        "{st:?}: the first record is missing"
    );
    c.collect(2);
    let mut resent = 0;
    for _ in 0..100 {
        c.run_for(10_000);
        // The client's timer asks for the missing record.
        let now = c.local_now(2);
        c.core(2).tick(now).unwrap();
        c.collect(2);
        let reqs = grab(&mut c, |p, t| t == MsgType::LogReq && p.to == 1);
        if reqs.is_empty() {
            continue;
        }
        let now = c.local_now(1);
        c.core(1)
            .process(now, &reqs[0].control, &reqs[0].rec, 2)
            .unwrap();
        c.collect(1);
        for p in grab(&mut c, |p, t| t == MsgType::Log && p.to == 2) {
            let (_, flags, ..) = wire::peek_control(&p.control).unwrap();
            assert!(flags.contains(MsgFlags::RESEND));
            let now = c.local_now(2);
            let st = c.core(2).process(now, &p.control, &p.rec, 1).unwrap();
            assert!(
                !matches!(st, Status::IsPerm(_)),
                "{st:?} for re-sent records"
            );
            resent += 1;
        }
        break;
    }
    assert!(resent > 0, "the client asked for the missing record");
    assert_eq!(c.get(2, b"a"), Some(b"1".to_vec()));
}

/// A message before rep_start gets its own status, not an error nor silence.
#[test]
fn a_message_before_rep_start_is_answered_not_started() {
    let master = Env::open_in_memory(mem_config()).unwrap();
    let sent: Arc<Mutex<Vec<Wire>>> = Arc::default();
    let s = sent.clone();
    master
        .rep_set_transport(1, move |m| {
            s.lock().unwrap().push((m.control.to_vec(), m.rec.clone()));
            Ok(())
        })
        .unwrap();
    master.rep_start(&[], StartAs::Master).unwrap();
    let late = Env::open_in_memory(mem_config()).unwrap();
    late.rep_set_transport(2, |_| Ok(())).unwrap();
    let (control, rec) = sent.lock().unwrap()[0].clone();
    assert_eq!(
        late.rep_process_message(&control, &rec, 1).unwrap(),
        Status::NotStarted
    );
    assert_eq!(late.rep_stat(false).msgs_not_started, 1);
}

/// A setting the core would ignore is refused: bulk transfer cannot be
/// turned off (records always travel in batches).
#[test]
fn ignored_settings_are_refused() {
    let env = Env::open_in_memory(mem_config()).unwrap();
    assert!(env.rep_get_config(ConfigFlag::Bulk), "batching is on");
    let err = env.rep_set_config(ConfigFlag::Bulk, false).unwrap_err();
    assert!(err.to_string().contains("Bulk"), "{err}");
}

/// `AllAvailable` with every client unreachable: not permanent.
#[test]
fn all_available_with_no_client_reachable_is_not_permanent() {
    let mut c = Cluster::new(3, 909, move |eid| {
        let mut e = cfg(3)(eid);
        e.rep.ack_policy = AckPolicy::AllAvailable;
        e
    });
    c.start(1, StartAs::Master);
    c.start(2, StartAs::Client);
    c.start(3, StartAs::Client);
    c.run_for(200_000);
    c.partition(&[&[1], &[2, 3]]);
    let lsn = c.put(1, b"k", b"v").unwrap();
    c.run_for(31_000_000);
    assert!(!c.core(1).is_permanent(lsn));
}

/// A commit rolled back here is never applied, also once a checkpoint has
/// trimmed the records that replaced it.
#[test]
fn a_rolled_back_commit_stays_never_applied_after_a_checkpoint() {
    let mut c = Cluster::new(3, 910, move |eid| {
        let mut e = cfg(3)(eid);
        e.log.segment_size_bytes = 600;
        e.rep.heartbeat_send_us = 1_000_000;
        e.rep.heartbeat_monitor_us = 3_000_000;
        e
    });
    c.start(1, StartAs::Master);
    c.start(2, StartAs::Client);
    c.start(3, StartAs::Client);
    c.run_for(200_000);
    c.put(1, b"k", b"v").unwrap();
    c.run_for(100_000);
    let old_gen = c.core(1).gen();
    c.isolate(1);
    let lost = c.put(1, b"lost", b"1").unwrap();
    let token = dbrep::CommitToken {
        gen: old_gen,
        lsn: lost,
    };
    let elected = c.run_until(20_000_000, 100_000, |c| c.masters().iter().any(|&m| m != 1));
    assert!(elected, "the majority elected no master");
    let m = *c.masters().iter().find(|&&m| m != 1).unwrap();
    c.heal();
    c.run_for(5_000_000);
    assert_eq!(c.core(1).token_status(&token), dbrep::TokenStatus::Never);
    for i in 0..60 {
        c.put(m, format!("after{i}").as_bytes(), &[7; 40]).unwrap();
        c.run_for(10_000);
    }
    c.run_for(1_000_000);
    c.core(1).storage_mut().checkpoint().unwrap();
    assert!(
        c.core(1).storage().log().first_lsn() > lost,
        "the checkpoint trimmed the records past the rolled-back commit"
    );
    assert_eq!(c.core(1).token_status(&token), dbrep::TokenStatus::Never);
    // And after a restart: the list of undone commits is on disk.
    c.crash(1, CrashMode::LoseUnsynced);
    c.restart(1).unwrap();
    assert_eq!(
        c.core(1).token_status(&token),
        dbrep::TokenStatus::Never,
        "a restart must not turn an undone commit into an applied one"
    );
}

/// The durable state changes only after the write that makes it durable
/// succeeded, and a failed metadata write is fatal.
#[test]
fn a_failed_metadata_write_changes_nothing_and_latches_run_recovery() {
    let mut c = group(3, 911);
    let (gen, egen) = (c.core(2).gen(), c.core(2).egen());
    let fs = c.site(2).fs.clone();
    fs.fail_writes_after(Some(0));
    let now = c.local_now(2);
    let r = c.core(2).elect(now, 0, 0, 0);
    assert!(matches!(r, Err(Error::RunRecovery(_))), "{r:?}");
    assert_eq!(
        (c.core(2).gen(), c.core(2).egen()),
        (gen, egen),
        "nothing changed in memory that is not on disk"
    );
    assert!(c.core(2).failure().is_some());
    fs.fail_writes_after(None);
    let now = c.local_now(2);
    assert!(matches!(
        c.core(2).elect(now, 0, 0, 0),
        Err(Error::RunRecovery(_))
    ));
}
