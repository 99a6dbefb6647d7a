//! Elections over the deterministic test kit (issue 4): controlled
//! delivery, simulated clock, crashes and partitions.

use std::collections::{BTreeMap, BTreeSet};

use dbrep::testing::testkit::Cluster;
use dbrep::testing::CrashMode;
use dbrep::wire::{self, MsgType};
use dbrep::{Eid, EnvConfig, Event, Lsn, Role, StartAs, Status, TimeoutKind};

/// nsites, default timeouts, heartbeats off, per-site priorities.
fn prio(nsites: u32, priorities: &'static [u32]) -> impl Fn(Eid) -> EnvConfig {
    move |eid| {
        let mut c = EnvConfig::default();
        c.rep.nsites = nsites;
        c.rep.priority = priorities[(eid - 1) as usize];
        c
    }
}

/// Like `prio`, with heartbeats: send every 1 s, monitor 3 s.
fn prio_hb(nsites: u32, priorities: &'static [u32]) -> impl Fn(Eid) -> EnvConfig {
    move |eid| {
        let mut c = EnvConfig::default();
        c.rep.nsites = nsites;
        c.rep.priority = priorities[(eid - 1) as usize];
        c.rep.heartbeat_send_us = 1_000_000;
        c.rep.heartbeat_monitor_us = 3_000_000;
        c
    }
}

fn group(n: usize, seed: u64, make: impl Fn(Eid) -> EnvConfig + 'static) -> Cluster {
    let mut c = Cluster::new(n, seed, make);
    c.start(1, StartAs::Master);
    for s in 2..=n as Eid {
        c.start(s, StartAs::Client);
    }
    c.run_for(200_000);
    c
}

fn commits(c: &mut Cluster, master: Eid, n: u32, tag: &str) -> Lsn {
    let mut last = Lsn::ZERO;
    for i in 0..n {
        last = c
            .put(master, format!("{tag}{i}").as_bytes(), b"v")
            .expect("commit");
        c.run_for(2_000);
    }
    c.run_for(100_000);
    last
}

/// The host calls `rep_elect(0, 0, 0)` on each listed site now.
fn elect(c: &mut Cluster, sites: &[Eid]) {
    for &s in sites {
        let now = c.now;
        c.core(s).elect(now, 0, 0, 0).expect("rep_elect");
        c.collect(s);
    }
}

/// Running sites.
fn up(c: &Cluster) -> Vec<Eid> {
    c.sites
        .values()
        .filter(|s| s.is_up())
        .map(|s| s.eid)
        .collect()
}

/// Exactly one master among the running sites, followed by every other running site.
fn settled(c: &mut Cluster) -> Option<Eid> {
    let masters = c.masters();
    if masters.len() != 1 {
        return None;
    }
    let m = masters[0];
    let all = up(c)
        .into_iter()
        .all(|s| c.core(s).master() == Some(m) && !c.core(s).is_syncing());
    all.then_some(m)
}

fn assert_same_data(c: &mut Cluster, master: Eid) {
    let d = c.core(master).storage().store().digest();
    let l = c.core(master).storage().log().last_lsn();
    for s in up(c) {
        assert_eq!(c.core(s).storage().store().digest(), d, "site {s}");
        assert_eq!(c.core(s).storage().log().last_lsn(), l, "site {s}");
    }
}

#[test]
fn most_recent_log_beats_higher_priority() {
    let mut c = group(3, 1, prio(3, &[100, 10, 200]));
    commits(&mut c, 1, 5, "a");
    // Site 3 (highest priority) stops hearing the master; site 2 keeps up.
    c.blocked.insert((1, 3));
    let last = commits(&mut c, 1, 5, "b");
    assert!(c.core(1).is_permanent(last));
    c.crash(1, CrashMode::KeepAll);
    c.heal();
    elect(&mut c, &[2, 3]);
    c.run_for(5_000_000);
    assert_eq!(c.masters(), vec![2]);
    assert!(c.site(2).events.contains(&Event::Elected));
    assert!(c.site(3).events.contains(&Event::NewMaster(2)));
    assert!(!c.site(3).events.contains(&Event::Elected));
    assert!(c.core(2).storage().store().get(b"b4").is_some());
    assert_eq!(settled(&mut c), Some(2));
    assert_same_data(&mut c, 2);
}

#[test]
fn priority_breaks_ties_between_equal_logs() {
    let mut c = group(3, 2, prio(3, &[100, 50, 200]));
    commits(&mut c, 1, 5, "a");
    c.crash(1, CrashMode::KeepAll);
    elect(&mut c, &[2, 3]);
    c.run_for(5_000_000);
    assert_eq!(c.masters(), vec![3]);
    assert_eq!(settled(&mut c), Some(3));
}

#[test]
fn equal_logs_and_priorities_agree_on_one_winner() {
    for seed in 0..20 {
        let mut c = group(5, 100 + seed, prio(5, &[100; 5]));
        commits(&mut c, 1, 3, "a");
        c.crash(1, CrashMode::KeepAll);
        elect(&mut c, &[2, 3, 4, 5]);
        c.run_for(5_000_000);
        assert_eq!(c.masters().len(), 1, "seed {seed}: {:?}", c.masters());
        assert!(settled(&mut c).is_some(), "seed {seed}");
        // Winner got ELECTED, every other participant NEWMASTER, nobody both.
        let m = c.masters()[0];
        for s in 2..=5 {
            let ev = &c.site(s).events;
            let elected = ev.contains(&Event::Elected);
            let newmaster = ev.contains(&Event::NewMaster(m));
            assert_eq!(elected, s == m, "seed {seed} site {s}: {ev:?}");
            assert!(!(elected && newmaster), "seed {seed} site {s} got both");
        }
    }
}

#[test]
fn priority_zero_never_wins_even_with_the_best_log() {
    let mut c = group(3, 3, prio(3, &[100, 0, 100]));
    commits(&mut c, 1, 5, "a");
    c.blocked.insert((1, 3));
    commits(&mut c, 1, 5, "b");
    c.crash(1, CrashMode::KeepAll);
    c.heal();
    elect(&mut c, &[2, 3]);
    c.run_for(5_000_000);
    assert_eq!(c.masters(), vec![3]);
    assert_eq!(settled(&mut c), Some(3));
    // Site 2's records that site 3 never had were not permanent (its ack
    // does not count for QUORUM) and are rolled back.
    assert!(c
        .site(2)
        .events
        .iter()
        .any(|e| matches!(e, Event::RolledBack(_))));
    assert_same_data(&mut c, 3);
}

#[test]
fn all_priority_zero_fails() {
    let mut c = group(3, 4, prio(3, &[100, 0, 0]));
    commits(&mut c, 1, 3, "a");
    c.crash(1, CrashMode::KeepAll);
    elect(&mut c, &[2, 3]);
    c.run_for(5_000_000);
    assert!(c.masters().is_empty());
    for s in [2, 3] {
        assert!(
            c.site(s).events.contains(&Event::ElectionFailed),
            "site {s}"
        );
        assert!(matches!(
            c.core(s).election_progress(),
            dbrep::rep::ElectionProgress::Failed(_)
        ));
    }
}

#[test]
fn no_winner_without_nvotes() {
    let mut c = group(3, 5, prio_hb(3, &[100, 100, 100]));
    commits(&mut c, 1, 3, "a");
    c.crash(1, CrashMode::KeepAll);
    c.crash(2, CrashMode::KeepAll);
    c.run_for(30_000_000);
    assert!(c.masters().is_empty());
    assert!(c.core(3).stats(false).elections > 1, "site 3 kept trying");
    assert!(c.site(3).events.contains(&Event::ElectionFailed));
}

/// Every Vote2 in the trace as (sender, egen) -> receivers.
fn votes(c: &Cluster) -> BTreeMap<(Eid, u32), BTreeSet<Eid>> {
    let mut v: BTreeMap<(Eid, u32), BTreeSet<Eid>> = BTreeMap::new();
    for p in c.trace.as_ref().expect("tracing on") {
        if let Ok((MsgType::Vote2, _, _, egen, _)) = wire::peek_control(&p.control) {
            v.entry((p.from, egen)).or_default().insert(p.to);
        }
    }
    v
}

fn assert_one_vote_per_egen(c: &Cluster) {
    for ((from, egen), to) in votes(c) {
        assert!(to.len() <= 1, "site {from} voted for {to:?} in egen {egen}");
    }
}

#[test]
fn a_vote_survives_a_crash() {
    for mode in [CrashMode::LoseUnsynced, CrashMode::KeepAll] {
        let mut c = group(3, 6, prio(3, &[100, 100, 200]));
        c.trace = Some(Vec::new());
        commits(&mut c, 1, 3, "a");
        c.crash(1, CrashMode::KeepAll);
        c.auto_host = false;
        elect(&mut c, &[2, 3]);
        // Let both phase-1 messages arrive and the phase-1 wait run out, but
        // hold back the votes.
        c.run_until(2_000_000, 10_000, |c| !votes(c).is_empty());
        let cast = votes(&c);
        let (&(voter, egen), _) = cast.iter().next().expect("a vote was cast");
        assert_eq!(voter, 2, "site 2 votes for site 3 (higher priority)");
        c.crash(2, mode);
        c.restart(2).unwrap();
        assert!(c.core(2).egen() >= egen, "egen forgotten across the crash");
        // Site 2 hears site 3's campaign in `egen` again (a replay of its
        // phase-1 message) and is asked to elect: it must not vote a second
        // time in `egen`, which only the durable vote can tell it.
        let replay = c
            .trace
            .as_ref()
            .unwrap()
            .iter()
            .find(|p| {
                p.from == 3
                    && wire::peek_control(&p.control)
                        .is_ok_and(|(t, _, _, e, _)| t == MsgType::Vote1 && e == egen)
            })
            .cloned()
            .expect("site 3 campaigned in egen");
        let now = c.now;
        let st = c
            .core(2)
            .process(now, &replay.control, &replay.rec, 3)
            .unwrap();
        assert_eq!(st, Status::HoldElection);
        c.collect(2);
        elect(&mut c, &[2]);
        c.run_for(5_000_000);
        assert_one_vote_per_egen(&c);
        // Not even a second vote for the same candidate: after the restart
        // site 2 sends no Vote2 at all in `egen`.
        let sent = c
            .trace
            .as_ref()
            .unwrap()
            .iter()
            .filter(|p| {
                p.from == 2
                    && wire::peek_control(&p.control)
                        .is_ok_and(|(t, _, _, e, _)| t == MsgType::Vote2 && e == egen)
            })
            .count();
        assert_eq!(sent, 1, "site 2 voted {sent} times in egen {egen}");
        assert!(c.masters().len() <= 1);
    }
}

/// Runs `c` in small steps, checking that no generation ever has two masters.
fn run_checking_one_master_per_gen(
    c: &mut Cluster,
    us: u64,
    seen: &mut BTreeMap<u32, BTreeSet<Eid>>,
) {
    let end = c.now + us;
    while c.now < end {
        c.run_for(10_000);
        for m in c.masters() {
            let gen = c.core(m).gen();
            seen.entry(gen).or_default().insert(m);
        }
    }
    for (gen, ms) in seen.iter() {
        assert!(ms.len() <= 1, "generation {gen} had masters {ms:?}");
    }
}

#[test]
fn five_sites_survive_the_loss_of_any_two() {
    let mut pairs = Vec::new();
    for a in 1..=5 {
        for b in a + 1..=5 {
            pairs.push((a, b));
        }
    }
    assert_eq!(pairs.len(), 10);
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let mut c = group(5, 10 + i as u64, prio_hb(5, &[100; 5]));
        let last = commits(&mut c, 1, 10, "a");
        assert!(c.core(1).is_permanent(last));
        let gen = c.core(1).gen();
        c.crash(a, CrashMode::LoseUnsynced);
        c.crash(b, CrashMode::LoseUnsynced);
        let mut seen = BTreeMap::new();
        run_checking_one_master_per_gen(&mut c, 15_000_000, &mut seen);
        let m = settled(&mut c)
            .unwrap_or_else(|| panic!("pair ({a},{b}): no settled master: {:?}", c.masters()));
        assert!(m != a && m != b);
        if a == 1 {
            assert!(c.core(m).gen() > gen, "pair ({a},{b})");
        } else {
            assert_eq!(m, 1, "pair ({a},{b}): a healthy master was deposed");
            assert_eq!(c.core(1).gen(), gen, "pair ({a},{b})");
        }
        // Every permanent commit survived, and the group still takes writes.
        assert!(c.core(m).storage().store().get(b"a9").is_some());
        let l = c.put(m, b"after", b"x").unwrap();
        c.run_for(500_000);
        assert!(c.core(m).is_permanent(l), "pair ({a},{b})");
        assert_same_data(&mut c, m);
    }
}

#[test]
fn a_minority_never_elects() {
    // Master on the majority side: the two cut-off clients never elect.
    let mut c = group(5, 20, prio_hb(5, &[100; 5]));
    commits(&mut c, 1, 3, "a");
    c.partition(&[&[1, 2, 3], &[4, 5]]);
    let mut seen = BTreeMap::new();
    run_checking_one_master_per_gen(&mut c, 30_000_000, &mut seen);
    assert_eq!(c.masters(), vec![1]);
    assert!(c.core(4).stats(false).elections > 0, "site 4 tried");
    assert!(c.core(4).master().is_none());
    let l = c.put(1, b"maj", b"1").unwrap();
    c.run_for(200_000);
    assert!(c.core(1).is_permanent(l));

    // Master on the minority side: the majority elects, the old master
    // cannot make anything permanent, and healing leaves one master.
    let mut c = group(5, 21, prio_hb(5, &[100; 5]));
    commits(&mut c, 1, 3, "a");
    c.partition(&[&[1, 2], &[3, 4, 5]]);
    let mut seen = BTreeMap::new();
    run_checking_one_master_per_gen(&mut c, 15_000_000, &mut seen);
    let new = *c
        .masters()
        .iter()
        .find(|&&m| m != 1)
        .expect("majority elected");
    assert!([3, 4, 5].contains(&new));
    assert!(
        c.core(2).master() != Some(new),
        "the minority client followed nobody new"
    );
    let stale = c.put(1, b"stale", b"1").unwrap();
    c.run_for(2_000_000);
    assert!(!c.core(1).is_permanent(stale));
    c.heal();
    run_checking_one_master_per_gen(&mut c, 10_000_000, &mut seen);
    assert_eq!(settled(&mut c), Some(new));
    assert_same_data(&mut c, new);
    assert!(c.get(1, b"stale").is_none());
}

#[test]
fn a_partitioned_site_rejoins_without_deposing_the_master() {
    let mut c = group(3, 30, prio_hb(3, &[100, 100, 100]));
    commits(&mut c, 1, 3, "a");
    let gen = c.core(1).gen();
    c.isolate(3);
    let egen_before = c.core(3).egen();
    commits(&mut c, 1, 3, "b");
    c.run_for(30_000_000);
    assert!(c.core(3).stats(false).elections > 1, "site 3 kept electing");
    assert!(c.core(3).egen() > egen_before);
    c.heal();
    let mut seen = BTreeMap::new();
    run_checking_one_master_per_gen(&mut c, 5_000_000, &mut seen);
    assert_eq!(c.masters(), vec![1]);
    assert_eq!(c.core(1).gen(), gen, "the master's generation changed");
    assert_eq!(settled(&mut c), Some(1));
    assert_same_data(&mut c, 1);
}

#[test]
fn switching_masters() {
    let mut c = Cluster::new(3, 40, prio_hb(3, &[100, 100, 200]));
    c.start(1, StartAs::Master);
    c.start(2, StartAs::Client);
    c.run_for(200_000);
    commits(&mut c, 1, 10, "a");
    // The preferred site joins as a client and catches up.
    c.start(3, StartAs::Client);
    c.run_until(5_000_000, 50_000, |c| {
        c.core(3).stats(false).startup_complete
    });
    assert!(!c.core(3).is_syncing());
    let last = commits(&mut c, 1, 5, "b");
    assert!(c.core(1).is_permanent(last));
    // Shut the master down: the election picks the preferred site.
    c.crash(1, CrashMode::KeepAll);
    let ok = c.run_until(15_000_000, 50_000, |c| settled(c).is_some());
    assert!(ok);
    assert_eq!(c.masters(), vec![3]);
    let gen3 = c.core(3).gen();
    // The old master comes back as a client, without an election.
    c.restart(1).unwrap();
    c.run_for(2_000_000);
    assert_eq!(c.core(1).role(), Role::Client);
    assert_eq!(c.core(1).master(), Some(3));
    assert_eq!(c.core(1).stats(false).elections, 0);
    assert_eq!(c.core(3).gen(), gen3);
    assert_eq!(settled(&mut c), Some(3));
    assert_same_data(&mut c, 3);
}

/// Crashes the master of a settled group and returns the simulated time
/// until a new master is followed by every remaining site.
fn failover_time(n: usize, seed: u64, phase_us: u64) -> u64 {
    let mut c = group(n, seed, prio_hb(n as u32, &[100; 5]));
    commits(&mut c, 1, 5, "a");
    c.run_for(1_500_000 + phase_us);
    let t0 = c.now;
    c.crash(1, CrashMode::KeepAll);
    let ok = c.run_until(30_000_000, 1_000, |c| settled(c).is_some());
    assert!(ok, "no new master");
    for s in 2..=n as Eid {
        assert!(c.site(s).events.contains(&Event::MasterFailure), "site {s}");
        assert!(
            c.site(s).statuses.contains(&Status::HoldElection),
            "site {s}"
        );
    }
    c.now - t0
}

#[test]
fn heartbeats_detect_a_dead_master_and_a_new_one_is_elected() {
    let mut worst = 0;
    let mut best = u64::MAX;
    for (n, seed) in [(3usize, 50u64), (5, 52)] {
        // Crash at several points of the heartbeat cycle.
        for phase in [0, 250_000, 500_000, 750_000] {
            let t = failover_time(n, seed, phase);
            eprintln!(
                "failover: {n} sites, crash {:.2} s into the cycle: new master {:.3} s after \
                 the master crashed (heartbeat 1 s / monitor 3 s, election timeout 2 s)",
                phase as f64 / 1e6,
                t as f64 / 1e6
            );
            worst = worst.max(t);
            best = best.min(t);
        }
    }
    eprintln!(
        "failover summary: {:.3} s .. {:.3} s from master crash to a new master",
        best as f64 / 1e6,
        worst as f64 / 1e6
    );
    // Detection takes at most the monitor timeout plus one heartbeat; the
    // election itself must not take a full election timeout on a healthy network.
    assert!(worst < 6_000_000, "failover took {worst} µs");
}

#[test]
fn priority_never_stalls_the_group() {
    let mut c = group(5, 60, prio_hb(5, &[300, 250, 100, 50, 0]));
    commits(&mut c, 1, 5, "a");
    c.crash(1, CrashMode::KeepAll);
    c.crash(2, CrashMode::KeepAll);
    let ok = c.run_until(20_000_000, 50_000, |c| settled(c).is_some());
    assert!(ok, "masters {:?}", c.masters());
    assert_eq!(c.masters(), vec![3]);
    // With only priority 50 and 0 left plus 3 gone, 4 still wins.
    let mut c = group(5, 61, prio_hb(5, &[300, 250, 100, 50, 0]));
    commits(&mut c, 1, 5, "a");
    c.crash(1, CrashMode::KeepAll);
    c.crash(3, CrashMode::KeepAll);
    let ok = c.run_until(20_000_000, 50_000, |c| settled(c).is_some());
    assert!(ok, "masters {:?}", c.masters());
    assert_eq!(c.masters(), vec![2]);
}

#[test]
fn random_failures_never_make_two_masters_of_one_generation() {
    for seed in 0..6u64 {
        let mut c = group(5, 1000 + seed, prio_hb(5, &[100, 90, 80, 70, 0]));
        c.trace = Some(Vec::new());
        c.faults.max_jitter_us = 20_000;
        c.faults.drop_per_mille = 20;
        let mut rng = dbrep::testing::testkit::Rng::new(seed);
        let mut seen = BTreeMap::new();
        for round in 0..8 {
            // Crash or restart a random site, or cut the network.
            let s = 1 + rng.below(5) as Eid;
            match rng.below(3) {
                0 if c.site(s).is_up() && up(&c).len() > 3 => c.crash(s, CrashMode::LoseUnsynced),
                1 if !c.site(s).is_up() => c.restart(s).unwrap(),
                _ => {
                    let t = 1 + rng.below(5) as Eid;
                    c.isolate(t);
                }
            }
            if let Some(m) = c.masters().first().copied() {
                let _ = c.put(m, format!("r{round}").as_bytes(), b"v");
            }
            run_checking_one_master_per_gen(&mut c, 4_000_000, &mut seen);
            c.heal();
            run_checking_one_master_per_gen(&mut c, 4_000_000, &mut seen);
            assert_one_vote_per_egen(&c);
        }
        for s in 1..=5 {
            if !c.site(s).is_up() {
                c.restart(s).unwrap();
            }
        }
        c.faults = Default::default();
        run_checking_one_master_per_gen(&mut c, 15_000_000, &mut seen);
        assert!(settled(&mut c).is_some(), "seed {seed}: {:?}", c.masters());
        let m = settled(&mut c).unwrap();
        assert_same_data(&mut c, m);
    }
}

/// After the whole group crashes, the first election with a full-election
/// timeout waits for every site, so the slow-booting preferred site is not
/// out-voted; without it, the sites that came up first elect one of them.
#[test]
fn full_election_timeout_waits_for_a_slow_booting_site() {
    fn run(full_election_us: u64) -> i32 {
        let mut c = Cluster::new(3, 21, move |eid| {
            let mut cfg = EnvConfig::default();
            cfg.rep.nsites = 3;
            cfg.rep.priority = [0, 50, 40, 100][eid as usize];
            cfg.rep.set_timeout(TimeoutKind::Election, 1_000_000);
            cfg.rep.set_timeout(TimeoutKind::MasterSearch, 300_000);
            cfg.rep
                .set_timeout(TimeoutKind::FullElection, full_election_us);
            cfg
        });
        c.start(3, StartAs::Master);
        c.start(1, StartAs::Client);
        c.start(2, StartAs::Client);
        c.run_for(200_000);
        for i in 0..5u8 {
            c.put(3, &[i], b"v").unwrap();
        }
        c.run_for(200_000);
        for eid in 1..=3 {
            c.crash(eid, CrashMode::KeepAll);
        }
        // Sites 1 and 2 come back at once; site 3 takes two seconds longer.
        c.restart(1).unwrap();
        c.restart(2).unwrap();
        c.run_for(2_000_000);
        c.restart(3).unwrap();
        assert!(c.run_until(20_000_000, 10_000, |c| c.masters().len() == 1));
        c.masters()[0]
    }
    assert_eq!(
        run(5_000_000),
        3,
        "the full election waited for the preferred site"
    );
    assert_ne!(
        run(0),
        3,
        "control: without it, the sites up first elect one of them"
    );
}
