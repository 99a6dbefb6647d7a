//! Replicated group membership over the deterministic test kit (issue
//! 18): growing and shrinking a group through the protocol only, joins
//! during partitions, removing dead sites, and the refusals the rule asks for.

mod common;

use common::{grown, members};
use dbrep::membership::Membership;
use dbrep::testing::testkit::Cluster;
use dbrep::testing::CrashMode;
use dbrep::{Eid, Error, Event, Role, StartAs, Status};

fn nsites(c: &mut Cluster, eid: Eid) -> u32 {
    c.core(eid).config().nsites
}

#[test]
fn sites_join_one_at_a_time_and_every_site_learns_the_group() {
    let mut c = grown(5, 1);
    for s in 1..=5 {
        assert_eq!(nsites(&mut c, s), 5, "site {s} derives nsites from its log");
        let addr = c.core(s).membership().unwrap().get(3).unwrap().addr.clone();
        assert_eq!(addr, b"site3");
    }
    // The group arrived as events, too.
    assert!(c
        .events(5)
        .iter()
        .any(|e| matches!(e, Event::GroupChanged(g) if g.len() == 5)));
}

#[test]
fn grow_three_to_five_and_shrink_back_while_committing() {
    let mut c = grown(3, 2);
    let mut written = 0;
    for s in 4..=5 {
        c.add_site(s).unwrap();
        c.start(s, StartAs::Client);
        for _ in 0..20 {
            c.put(1, format!("k{written}").as_bytes(), b"v").unwrap();
            written += 1;
            c.run_for(20_000);
        }
        let ok = c.run_until(10_000_000, 50_000, |c| members(c, 1).len() == s as usize);
        assert!(ok, "site {s} joins while commits go on");
    }
    for s in [5, 4] {
        let now = c.now;
        loop {
            match c.core(1).remove_site(now, s) {
                Ok(_) => break,
                Err(Error::Unavail(_)) => c.run_for(50_000),
                Err(e) => panic!("remove_site({s}): {e}"),
            }
        }
        c.collect(1);
        c.put(1, format!("k{written}").as_bytes(), b"v").unwrap();
        written += 1;
        let ok = c.run_until(5_000_000, 50_000, |c| {
            (1..=3).all(|x| members(c, x).len() == s as usize - 1)
        });
        assert!(ok, "site {s} removed everywhere");
    }
    c.run_for(1_000_000);
    for s in 1..=3 {
        assert_eq!(nsites(&mut c, s), 3, "site {s}: {:?}", members(&mut c, s));
        for k in 0..written {
            assert_eq!(
                c.get(s, format!("k{k}").as_bytes()),
                Some(b"v".to_vec()),
                "site {s} key {k}"
            );
        }
    }
}

#[test]
fn a_second_change_waits_for_the_first_to_settle() {
    let mut c = grown(3, 3);
    // Cut the master off from both clients: a change it writes now cannot
    // reach a majority of the new group.
    for s in [2, 3] {
        c.block(1, s);
        c.block(s, 1);
    }
    let now = c.now;
    c.core(1)
        .add_site(now, 9, b"site9", true)
        .expect("the first change is written");
    assert_eq!(
        members(&mut c, 1),
        vec![1, 2, 3, 9],
        "in force on the master at once"
    );
    let now = c.now;
    match c.core(1).add_site(now, 10, b"site10", true) {
        Err(Error::Unavail(why)) => assert!(why.contains("in progress"), "{why}"),
        other => panic!("a second change must wait: {other:?}"),
    }
    match c.core(1).remove_site(now, 1) {
        Err(Error::Invalid(why)) => assert!(why.contains("master"), "{why}"),
        other => panic!("removing the master is refused: {other:?}"),
    }
}

#[test]
fn a_dead_site_is_removed_from_a_group_that_lost_others() {
    // Five sites, two of them dead: removing one dead site (4 sites,
    // majority 3: the master and two live clients) settles, so the second
    // removal is allowed after it.
    let mut c = grown(5, 4);
    c.crash(4, CrashMode::KeepAll);
    c.crash(5, CrashMode::KeepAll);
    let now = c.now;
    c.core(1).remove_site(now, 5).expect("first removal");
    c.collect(1);
    let ok = c.run_until(5_000_000, 20_000, |c| {
        let now = c.now;
        match c.core(1).remove_site(now, 4) {
            Ok(_) => true,
            Err(Error::Unavail(_)) => false,
            Err(e) => panic!("{e}"),
        }
    });
    assert!(ok, "the second removal is allowed once the first settled");
    c.collect(1);
    let ok = c.run_until(5_000_000, 20_000, |c| {
        (1..=3).all(|s| members(c, s) == vec![1, 2, 3])
    });
    assert!(ok);
    // And the group of three goes on: a commit becomes permanent.
    c.put(1, b"after", b"v").unwrap();
    c.run_for(500_000);
    assert_eq!(c.get(3, b"after"), Some(b"v".to_vec()));

    // Refused: three sites with two dead. The removal is written (group
    // of two, majority two) but cannot settle with the only other live
    // site dead, so a further change waits.
    c.crash(3, CrashMode::KeepAll);
    c.crash(2, CrashMode::KeepAll);
    let now = c.now;
    c.core(1).remove_site(now, 3).expect("written");
    c.collect(1);
    c.run_for(2_000_000);
    let now = c.now;
    assert!(matches!(
        c.core(1).remove_site(now, 2),
        Err(Error::Unavail(_))
    ));
}

#[test]
fn a_join_during_a_partition_completes_when_it_heals() {
    let mut c = grown(3, 5);
    c.add_site(4).unwrap();
    for s in 1..=3 {
        c.block(4, s);
        c.block(s, 4);
    }
    c.start(4, StartAs::Client);
    c.run_for(3_000_000);
    assert_eq!(members(&mut c, 1), vec![1, 2, 3], "no join while cut off");
    assert!(c.core(4).membership().is_none());
    for s in 1..=3 {
        c.unblock(4, s);
        c.unblock(s, 4);
    }
    let ok = c.run_until(10_000_000, 50_000, |c| {
        (1..=4).all(|s| members(c, s).len() == 4)
    });
    assert!(ok, "the join completes after the partition heals");
}

#[test]
fn a_joiner_with_an_eid_in_use_is_refused() {
    let mut c = grown(3, 6);
    // A second site calling itself 3, at another address, on a fresh disk.
    c.crash_wipe(3);
    c.site_mut(3).config.rep.local_addr = b"impostor".to_vec();
    c.restart(3).unwrap();
    let ok = c.run_until(5_000_000, 20_000, |c| c.core(3).join_refused().is_some());
    assert!(ok, "refused");
    let why = c.core(3).join_refused().unwrap().to_string();
    assert!(why.contains("already a member"), "{why}");
    assert!(c.statuses(3).contains(&Status::JoinFailure));
    assert!(c
        .events(3)
        .iter()
        .any(|e| matches!(e, Event::JoinRefused(_))));
}

#[test]
fn the_master_fails_and_the_grown_group_elects_with_its_own_majority() {
    let mut c = grown(5, 7);
    c.put(1, b"before", b"v").unwrap();
    c.run_for(500_000);
    c.crash(1, CrashMode::KeepAll);
    c.crash(2, CrashMode::KeepAll);
    let ok = c.run_until(30_000_000, 50_000, |c| {
        c.masters().iter().any(|&m| m != 1 && m != 2)
    });
    assert!(ok, "three of five elect a master");
    let m = *c.masters().iter().find(|&&m| m != 1).unwrap();
    assert_eq!(c.core(m).role(), Role::Master);
    c.put(m, b"after", b"v").unwrap();
    c.run_for(1_000_000);
    for s in 3..=5 {
        assert_eq!(c.get(s, b"before"), Some(b"v".to_vec()));
        assert_eq!(c.get(s, b"after"), Some(b"v".to_vec()));
    }
}

#[test]
fn membership_survives_a_restart_and_nsites_cannot_be_combined() {
    let mut c = grown(3, 8);
    c.crash(2, CrashMode::KeepAll);
    c.restart(2).unwrap();
    assert_eq!(members(&mut c, 2), vec![1, 2, 3], "read back from the log");
    let mut cfg = c.core(2).config().clone();
    cfg.nsites = 7;
    assert!(
        c.core(2).set_config(cfg).is_err(),
        "rep_set_nsites is refused"
    );
    let mut cfg = c.core(2).config().clone();
    cfg.membership = false;
    assert!(c.core(2).set_config(cfg).is_err());
    let _ = Membership::default();
}

/// Garbage where a group should be, from a peer: an error that changes
/// nothing, on a joiner (`JoinInfo`) and on the master (`JoinReq` with an
/// address over the limit).
#[test]
fn malformed_membership_messages_are_errors_and_change_nothing() {
    use dbrep::wire::{encode, Envelope, Message, MsgFlags};
    let mut c = grown(2, 9);
    c.add_site(3).unwrap();
    c.start(3, StartAs::Client);
    let send = |c: &mut Cluster, to: Eid, from: Eid, msg: Message| {
        let env = Envelope {
            gen: 0,
            egen: 0,
            lsn: dbrep::Lsn::ZERO,
            flags: MsgFlags::default(),
            msg,
        };
        let (mut control, mut rec) = (Vec::new(), Vec::new());
        encode(&env, &mut control, &mut rec);
        let now = c.now;
        c.core(to).process(now, &control, &rec, from)
    };
    let bad_group = Message::JoinInfo {
        master: 1,
        members: vec![9, 9, 9],
    };
    let r = send(&mut c, 3, 2, bad_group);
    assert!(matches!(r, Err(Error::Malformed(_))), "{r:?}");
    assert!(
        c.core(3).known_members().is_none(),
        "nothing learned from garbage"
    );
    let huge = Message::JoinReq {
        electable: true,
        addr: vec![b'x'; dbrep::membership::ADDR_MAX + 1],
    };
    let r = send(&mut c, 1, 7, huge);
    assert!(matches!(r, Err(Error::Malformed(_))), "{r:?}");
    assert_eq!(members(&mut c, 1), vec![1, 2]);
    // The group goes on: site 3 joins as usual.
    let ok = c.run_until(10_000_000, 50_000, |c| members(c, 1) == vec![1, 2, 3]);
    assert!(ok);
}
