//! Read consistency: master leases, follower reads, read-your-writes tokens.

use dbrep::db::Store;
use dbrep::rep::{ReadIndexState, ReadPoll, ReadTicket, TokenStatus};
use dbrep::testing::testkit::Cluster;
use dbrep::{
    CommitToken, ConfigFlag, EnvConfig, Error, Event, ReadLevel, Role, StartAs, TimeoutKind,
};

const MS: u64 = 1_000;

fn config(eid: i32, leases: bool) -> EnvConfig {
    let mut c = EnvConfig::default();
    c.rep.nsites = 3;
    c.rep.priority = if eid == 1 { 100 } else { 10 };
    c.rep.set_timeout(TimeoutKind::Election, 400 * MS);
    c.rep.set_timeout(TimeoutKind::HeartbeatSend, 50 * MS);
    c.rep.set_timeout(TimeoutKind::HeartbeatMonitor, 200 * MS);
    c.rep.set_timeout(TimeoutKind::MasterSearch, 300 * MS);
    if leases {
        c.rep.set_flag(ConfigFlag::Lease, true);
        c.rep.set_timeout(TimeoutKind::Lease, 500 * MS);
        c.rep.clockskew = (102, 100);
    }
    c
}

/// Three sites, all started as clients; the host model elects site 1.
fn elected_group(leases: bool) -> Cluster {
    let mut c = Cluster::new(3, 11, move |eid| config(eid, leases));
    for eid in 1..=3 {
        c.start(eid, StartAs::Client);
    }
    assert!(
        c.run_until(10_000 * MS, 10 * MS, |c| c.masters() == vec![1]),
        "site 1 was not elected"
    );
    c.run_for(200 * MS);
    c
}

#[test]
fn with_leases_the_first_master_must_be_elected() {
    let mut c = Cluster::new(1, 3, |eid| config(eid, true));
    let err = c.core(1).start(0, StartAs::Master, &[]).unwrap_err();
    assert!(err.to_string().contains("elected"), "{err}");
}

#[test]
fn isolated_master_loses_its_lease_before_another_master_is_elected() {
    let mut c = elected_group(true);
    c.put(1, b"k", b"v1").unwrap();
    c.run_for(100 * MS);
    assert!(
        c.core(1).lease_valid(),
        "a master with a majority of grants holds a lease"
    );
    let lsn = c.put(1, b"k", b"v2").unwrap();
    c.run_for(50 * MS);
    assert!(c.core(1).is_permanent(lsn));

    c.isolate(1);
    let cut_at = c.now;
    let mut lease_lost_at = None;
    let mut new_master_at = None;
    while c.now < cut_at + 10_000 * MS && new_master_at.is_none() {
        c.run_for(5 * MS);
        if lease_lost_at.is_none() && !c.core(1).lease_valid() {
            lease_lost_at = Some(c.now);
        }
        if c.masters().iter().any(|&m| m != 1) {
            new_master_at = Some(c.now);
        }
    }
    let lost = lease_lost_at.expect("the isolated master's lease ran out");
    let elected = new_master_at.expect("the majority elected a new master");
    assert!(
        lost <= cut_at + 500 * MS,
        "lease outlived its timeout: lost {} ms after the cut",
        (lost - cut_at) / MS
    );
    assert!(
        elected > lost,
        "new master at {elected} while the old lease was valid until {lost}"
    );
    // The old master now refuses permanence: its commits cannot be confirmed.
    let lsn = c.put(1, b"k", b"lost").unwrap();
    c.run_for(100 * MS);
    assert!(!c.core(1).is_permanent(lsn));
    eprintln!(
        "lease lapsed {} ms after isolation; new master {} ms after isolation",
        (lost - cut_at) / MS,
        (elected - cut_at) / MS
    );
}

/// Five sites, site 1 elected (all started as clients).
fn elected_group_of_five(leases: bool) -> Cluster {
    let mut c = Cluster::new(5, 17, move |eid| {
        let mut cfg = config(eid, leases);
        cfg.rep.nsites = 5;
        cfg
    });
    for eid in 1..=5 {
        c.start(eid, StartAs::Client);
    }
    assert!(
        c.run_until(10_000 * MS, 10 * MS, |c| c.masters() == vec![1]),
        "site 1 was not elected"
    );
    c.run_for(200 * MS);
    c
}

/// In a group of five a master cut off with one client holds two sites
/// of five: that client keeps granting, yet one grant is no majority. The
/// lease must lapse within its timeout and before the other three elect a
/// master, and no confirmation round may succeed. (With three sites one
/// grant is a majority, so only a larger group tests this arithmetic.)
#[test]
fn a_master_cut_off_with_a_minority_of_five_loses_its_lease() {
    let mut c = elected_group_of_five(true);
    let lsn = c.put(1, b"k", b"v1").unwrap();
    c.run_for(100 * MS);
    assert!(c.core(1).is_permanent(lsn));
    assert!(
        c.core(1).lease_valid(),
        "a master with every grant holds a lease"
    );

    c.partition(&[&[1, 2], &[3, 4, 5]]);
    let cut_at = c.now;
    let since = c.core(1).confirm_start(cut_at).unwrap();
    c.collect(1);
    let mut lease_lost_at = None;
    let mut new_master_at = None;
    while c.now < cut_at + 10_000 * MS && new_master_at.is_none() {
        c.run_for(5 * MS);
        if lease_lost_at.is_none() && !c.core(1).lease_valid() {
            lease_lost_at = Some(c.now);
        }
        assert!(
            !c.core(1).confirmed_since(since),
            "a master with two of five sites confirmed itself"
        );
        if c.masters().iter().any(|&m| m != 1) {
            new_master_at = Some(c.now);
        }
    }
    let lost = lease_lost_at.expect("the minority master's lease ran out");
    let elected = new_master_at.expect("the majority elected a new master");
    assert!(
        lost <= cut_at + 500 * MS,
        "lease outlived its timeout with one grant of two needed: lost {} ms after the cut",
        (lost - cut_at) / MS
    );
    assert!(elected > lost, "new master while the old lease was valid");
}

/// The same cut, seen by a reader: once the majority has elected a master
/// and overwritten a key, the old master's linearizable read of that key
/// never answers with the old value (it waits, then fails).
#[test]
fn a_minority_master_never_answers_a_read_with_an_overwritten_value() {
    let mut c = elected_group_of_five(true);
    let lsn = c.put(1, b"k", b"old").unwrap();
    c.run_for(100 * MS);
    assert!(c.core(1).is_permanent(lsn));

    c.partition(&[&[1, 2], &[3, 4, 5]]);
    let cut_at = c.now;
    assert!(
        c.run_until(cut_at + 10_000 * MS, 5 * MS, |c| c
            .masters()
            .iter()
            .any(|&m| m != 1)),
        "the majority elected no master"
    );
    let m = *c.masters().iter().find(|&&m| m != 1).unwrap();
    let lsn = c.put(m, b"k", b"new").unwrap();
    assert!(
        c.run_until(c.now + 1_000 * MS, 5 * MS, |c| c.core(m).is_permanent(lsn)),
        "the new master's write did not become permanent"
    );
    if c.core(1).role() != Role::Master {
        return; // It stepped down: nothing to read from it.
    }
    let now = c.local_now(1);
    let mut t = c
        .core(1)
        .read_begin(now, ReadLevel::Linearizable, now + 300 * MS)
        .unwrap();
    c.collect(1);
    for _ in 0..100 {
        let now = c.local_now(1);
        match c.core(1).read_poll(now, &mut t, b"k") {
            ReadPoll::Ready(v) => {
                panic!("the minority master answered {v:?} after the majority wrote")
            }
            ReadPoll::Failed(_) => return,
            ReadPoll::Wait { .. } => c.run_for(5 * MS),
        }
    }
    panic!("the read neither answered nor failed by its deadline");
}

/// Without leases the same minority master cannot confirm itself either,
/// so its linearizable reads wait and fail rather than answer.
#[test]
fn a_master_with_a_minority_of_five_cannot_confirm_itself() {
    let mut c = elected_group_of_five(false);
    // A round with everyone first: every client's answer is on record.
    let now = c.now;
    let since = c.core(1).confirm_start(now).unwrap();
    c.collect(1);
    c.run_for(100 * MS);
    assert!(c.core(1).confirmed_since(since), "the whole group confirms");

    c.partition(&[&[1, 2], &[3, 4, 5]]);
    let now = c.now;
    let since = c.core(1).confirm_start(now).unwrap();
    c.collect(1);
    c.run_for(500 * MS);
    if c.core(1).role() == Role::Master {
        assert!(
            !c.core(1).confirmed_since(since),
            "a master with two of five sites confirmed itself"
        );
    }
    c.heal();
    c.run_for(2_000 * MS);
    let masters = c.masters();
    assert_eq!(masters.len(), 1, "one master after the heal: {masters:?}");
    let m = masters[0];
    let now = c.now;
    let since = c.core(m).confirm_start(now).unwrap();
    c.collect(m);
    c.run_for(100 * MS);
    assert!(
        c.core(m).confirmed_since(since),
        "the healed group confirms its master"
    );
}

#[test]
fn a_site_with_an_outstanding_grant_cannot_be_made_master() {
    let mut c = elected_group(true);
    c.run_for(100 * MS);
    let now = c.now;
    let err = c.core(2).start(now, StartAs::Master, &[]).unwrap_err();
    assert!(
        err.to_string().contains("elected") || err.to_string().contains("lease"),
        "{err}"
    );
}

#[test]
fn follower_read_on_a_lagging_client_waits_for_the_commit_point() {
    for leases in [false, true] {
        let mut c = elected_group(leases);
        c.put(1, b"k", b"old").unwrap();
        c.run_for(100 * MS);
        // Site 3 stops hearing the master's log; the master commits a new value.
        c.blocked.insert((1, 3));
        let lsn = c.put(1, b"k", b"new").unwrap();
        c.run_for(20 * MS);
        assert!(c.core(1).is_permanent(lsn), "sites 1 and 2 form a quorum");
        assert_eq!(c.get(3, b"k"), Some(b"old".to_vec()), "site 3 lags");
        // A stale read answers at once with what site 3 has.
        let now = c.now;
        let id = c.core(3).read_index_start(now).unwrap();
        c.collect(3);
        c.blocked.clear();
        let done = c.run_until(2_000 * MS, MS, |c| match c.core(3).read_index_state(id) {
            Some(ReadIndexState::Ready(point)) => c.core(3).applied_through(point),
            _ => false,
        });
        assert!(done, "leases {leases}: follower read never became ready");
        match c.core(3).read_index_state(id) {
            Some(ReadIndexState::Ready(point)) => assert!(
                point >= lsn,
                "commit point {point} is before the write {lsn}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.get(3, b"k"), Some(b"new".to_vec()), "leases {leases}");
    }
}

#[test]
fn master_without_a_majority_cannot_confirm_itself() {
    let mut c = elected_group(false);
    c.isolate(1);
    let now = c.now;
    let since = c.core(1).confirm_start(now).unwrap();
    c.collect(1);
    c.run_for(500 * MS);
    assert!(!c.core(1).confirmed_since(since));
    c.heal();
    let now = c.now;
    let since = c.core(1).confirm_start(now).unwrap();
    c.collect(1);
    c.run_for(50 * MS);
    if c.core(1).role() == Role::Master {
        assert!(c.core(1).confirmed_since(since));
    }
}

#[test]
fn tokens_report_applied_pending_and_rolled_back() {
    let mut c = elected_group(false);
    let lsn = c.put(1, b"a", b"1").unwrap();
    let good = CommitToken {
        gen: c.core(1).gen(),
        lsn,
    };
    c.run_for(100 * MS);
    for eid in 1..=3 {
        assert_eq!(
            c.core(eid).token_status(&good),
            TokenStatus::Applied,
            "site {eid}"
        );
    }
    assert_eq!(
        c.core(2).token_status(&CommitToken::default()),
        TokenStatus::Empty
    );

    // The master is cut off and commits alone: that commit will be rolled back.
    c.isolate(1);
    let lost_lsn = c.put(1, b"b", b"lost").unwrap();
    let lost = CommitToken {
        gen: c.core(1).gen(),
        lsn: lost_lsn,
    };
    assert_eq!(c.core(2).token_status(&lost), TokenStatus::Pending);
    assert!(c.run_until(10_000 * MS, 10 * MS, |c| c
        .masters()
        .iter()
        .any(|&m| m != 1)));
    let new = *c.masters().iter().find(|&&m| m != 1).unwrap();
    let lsn = c.put(new, b"c", b"new master").unwrap();
    let newer = CommitToken {
        gen: c.core(new).gen(),
        lsn,
    };
    c.heal();
    assert!(
        c.run_until(10_000 * MS, 10 * MS, |c| c.core(1).role() == Role::Client
            && c.core(1).token_status(&newer) == TokenStatus::Applied)
    );
    let rolled_back = c
        .site(1)
        .events
        .iter()
        .any(|e| matches!(e, Event::RolledBack(t) if t.iter().any(|t| t.lsn == lost_lsn)));
    assert!(
        rolled_back,
        "the old master reports the transaction it undid"
    );
    for eid in 1..=3 {
        assert_eq!(
            c.core(eid).token_status(&lost),
            TokenStatus::Never,
            "site {eid}"
        );
        assert_eq!(
            c.core(eid).token_status(&good),
            TokenStatus::Applied,
            "site {eid}"
        );
    }
    let future = CommitToken {
        gen: newer.gen,
        lsn: dbrep::Lsn::new(newer.lsn.file + 5, 32),
    };
    assert_eq!(c.core(2).token_status(&future), TokenStatus::Pending);
    let bytes = newer.to_bytes();
    assert_eq!(CommitToken::from_bytes(&bytes).unwrap(), newer);
    assert!(CommitToken::from_bytes(&bytes[..5]).is_err());
}

/// Begins a snapshot read on `eid` that may wait `wait_us`; returns the
/// ticket and its deadline (`eid`'s time).
fn begin_snapshot(c: &mut Cluster, eid: i32, level: ReadLevel, wait_us: u64) -> (ReadTicket, u64) {
    let now = c.local_now(eid);
    let deadline = now + wait_us;
    let t = c.core(eid).snapshot_begin(now, level, deadline).unwrap();
    c.collect(eid);
    (t, deadline)
}

/// Polls a snapshot read on `eid` once, now.
fn poll_now(c: &mut Cluster, eid: i32, ticket: &mut ReadTicket) -> ReadPoll<(Store, u64)> {
    let now = c.local_now(eid);
    let poll = c.core(eid).snapshot_poll(now, ticket);
    c.collect(eid);
    poll
}

/// Polls a snapshot read on `eid` as a host would, running the cluster a
/// millisecond between polls, until the core answers.
fn poll_snapshot(c: &mut Cluster, eid: i32, ticket: &mut ReadTicket) -> ReadPoll<(Store, u64)> {
    loop {
        match poll_now(c, eid, ticket) {
            ReadPoll::Wait { until } => {
                assert!(
                    until <= ticket.deadline(),
                    "asked to wait past the deadline"
                );
                c.run_for(MS);
            }
            answered => return answered,
        }
    }
}

/// The value of `k` in the snapshot `poll` answered with.
fn value_read(poll: ReadPoll<(Store, u64)>) -> Vec<u8> {
    match poll {
        ReadPoll::Ready((store, _)) => store.get(b"k").expect("k is in the snapshot").to_vec(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn snapshots_on_a_master_whose_lease_expired_fail_with_lease_expired() {
    let mut c = elected_group(true);
    c.put(1, b"k", b"v").unwrap();
    c.run_for(100 * MS);
    c.isolate(1);
    assert!(
        c.run_until(1_000 * MS, MS, |c| !c.core(1).lease_valid()),
        "the isolated master's lease ran out"
    );
    for level in [
        ReadLevel::Linearizable,
        ReadLevel::Follower,
        ReadLevel::Local,
    ] {
        let (mut t, deadline) = begin_snapshot(&mut c, 1, level, 100 * MS);
        match poll_snapshot(&mut c, 1, &mut t) {
            ReadPoll::Failed(Error::LeaseExpired) => {}
            other => panic!("{level:?}: {other:?}"),
        }
        assert!(c.local_now(1) >= deadline, "{level:?}: failed early");
    }
    // Stale ignores the lease.
    let (mut t, _) = begin_snapshot(&mut c, 1, ReadLevel::Stale, 0);
    assert_eq!(value_read(poll_now(&mut c, 1, &mut t)), b"v");
}

#[test]
fn snapshots_on_a_lease_master_wait_for_permanence() {
    let mut c = elected_group(true);
    c.put(1, b"k", b"v1").unwrap();
    c.run_for(100 * MS);
    // Site 1 commits while its clients hear nothing: the commit is not
    // permanent, so neither is a snapshot holding it.
    c.isolate(1);
    c.put(1, b"k", b"v2").unwrap();
    let (mut t, _) = begin_snapshot(&mut c, 1, ReadLevel::Linearizable, 2_000 * MS);
    assert!(matches!(poll_now(&mut c, 1, &mut t), ReadPoll::Wait { .. }));
    c.heal();
    assert_eq!(value_read(poll_snapshot(&mut c, 1, &mut t)), b"v2");
}

#[test]
fn follower_snapshots_wait_for_the_commit_point_and_time_out_without_it() {
    let mut c = elected_group(false);
    c.put(1, b"k", b"old").unwrap();
    c.run_for(100 * MS);
    let now = c.local_now(2);
    assert!(matches!(
        c.core(2).snapshot_begin(now, ReadLevel::Linearizable, now),
        Err(Error::Invalid(_))
    ));
    // Site 3 lags: a follower snapshot waits until it has the new value.
    c.blocked.insert((1, 3));
    c.put(1, b"k", b"new").unwrap();
    c.run_for(20 * MS);
    let (mut t, _) = begin_snapshot(&mut c, 3, ReadLevel::Follower, 2_000 * MS);
    assert!(matches!(poll_now(&mut c, 3, &mut t), ReadPoll::Wait { .. }));
    // (The request is on its way; a lost answer is not asked for again.)
    c.blocked.clear();
    assert_eq!(value_read(poll_snapshot(&mut c, 3, &mut t)), b"new");
    // Cut off from its master, it times out at its deadline (shorter than
    // the heartbeat monitor, so the master is still known).
    c.isolate(3);
    let (mut t, deadline) = begin_snapshot(&mut c, 3, ReadLevel::Follower, 100 * MS);
    match poll_snapshot(&mut c, 3, &mut t) {
        ReadPoll::Failed(Error::Timeout) => {}
        other => panic!("{other:?}"),
    }
    assert!(c.local_now(3) >= deadline);
}
