//! Membership bugs the simulator's membership mode found (`src/testing/sim/membership.rs`),
//! each as a small scenario over the deterministic test kit.

mod common;

use common::{grown, managed, members};
use dbrep::testing::testkit::Cluster;
use dbrep::{Eid, Error, StartAs};

/// Simulator seed 18 (membership mode, default mix): after the final heal
/// the new master's change never settled and four joiners waited 20 s.
///
/// A change settles when a majority of the group holds it, but the master
/// learns that only from acknowledgements, and a client acknowledges only
/// when it appends a record. When those acknowledgements are lost (or sent
/// before the client knew the master) and no further write follows, the
/// master never learns that the majority holds the record: the change stays
/// unsettled forever, every later `add_site`/`remove_site` is refused as "in
/// progress" and no joiner is admitted, although every site holds the record.
#[test]
fn a_change_whose_acks_were_lost_settles_without_another_write() {
    let mut c = grown(3, 21);
    c.run_for(1_000_000);
    // The clients hear the master, the master does not hear them.
    c.block(2, 1);
    c.block(3, 1);
    let now = c.now;
    let lsn = c
        .core(1)
        .add_site(now, 4, b"site4", true)
        .expect("the first change is written");
    c.collect(1);
    c.run_for(200_000);
    for s in [2, 3] {
        assert!(
            c.core(s).storage().log().durable_lsn() >= lsn,
            "site {s} holds the record durably"
        );
    }
    c.unblock(2, 1);
    c.unblock(3, 1);
    // Three of the four sites hold it: a majority. No write follows.
    let settled = c.run_until(10_000_000, 50_000, |c| {
        let now = c.now;
        match c.core(1).remove_site(now, 4) {
            Ok(_) => true,
            Err(Error::Unavail(_)) => false,
            Err(e) => panic!("remove_site: {e}"),
        }
    });
    assert!(
        settled,
        "10 s after the partition healed, with the record held by sites 1, 2 and 3 of \
         {{1, 2, 3, 4}}, the master still refuses the next change as in progress"
    );
}

/// Simulator seed 99 (membership mode, default mix, an aimed crash of the
/// master right after a membership record): the founding master admitted
/// its first joiner and crashed before the record reached it. No master
/// was ever elected again, however long the group ran.
///
/// After the restart site 1's log puts the group {1, 2} in force, so
/// site 1 needs both votes; site 2's log still says {1}, so site 2 does
/// not consider itself a member and takes no part in elections (a
/// non-member does not vote). Neither can move: site 2 asks to join, but
/// there is no master to admit it, and site 1 cannot become one. (Raft
/// avoids this by having servers answer vote requests whatever their own
/// configuration says.)
#[test]
fn a_master_that_crashed_after_adding_its_first_site_is_elected_again() {
    let mut c = Cluster::new(2, 99, managed);
    c.start(1, StartAs::Master);
    c.run_for(10_000);
    c.start(2, StartAs::Client);
    // Run in small steps until the master has written the record adding 2.
    let mut added = false;
    for _ in 0..20_000 {
        c.run_for(500);
        if members(&mut c, 1) == vec![1, 2] {
            added = true;
            break;
        }
    }
    assert!(added, "site 2 is admitted");
    // The master crashes at once: the record is durable there, and the
    // messages carrying it are lost with the crash.
    c.drop_in_flight();
    c.crash(1, dbrep::testing::CrashMode::KeepAll);
    assert_eq!(members(&mut c, 2), vec![1], "site 2 never got the record");
    c.restart(1).unwrap();
    assert_eq!(
        members(&mut c, 1),
        vec![1, 2],
        "in force at site 1 from its log"
    );
    let elected = c.run_until(30_000_000, 50_000, |c| !c.masters().is_empty());
    assert!(
        elected,
        "30 s after the restart no master: site 1 needs site 2's vote, and site 2, a \
         non-member by its own log, does not vote"
    );
}

/// Simulator seed 1642 (membership mode, `All`): a removed site came back
/// on a new, empty disk and was admitted 200 µs later, and the master then
/// reported a commit permanent under `All` that the site did not hold.
///
/// A removed site still takes in the master's records and acknowledges
/// them, so the master keeps its acknowledged point; when the site asks to
/// join again from an empty disk, the master admits it on the point its
/// previous disk reached, and counts that point towards permanence. The
/// joiner here cannot hear the master at all, so it holds nothing, yet it
/// is made a member.
#[test]
fn a_joiner_on_a_new_disk_is_not_admitted_on_its_old_disks_acks() {
    let mut c = grown(3, 1642);
    let now = c.now;
    c.core(1).remove_site(now, 3).expect("remove site 3");
    c.collect(1);
    assert!(c.run_until(5_000_000, 20_000, |c| members(c, 1) == vec![1, 2]));
    // The removed site goes on taking in (and acknowledging) records.
    for i in 0..5 {
        c.put(1, format!("k{i}").as_bytes(), b"v").unwrap();
        c.run_for(50_000);
    }
    // Site 3 comes back on an empty disk, and cannot hear the master.
    c.crash_wipe(3);
    c.block(1, 3);
    c.restart(3).unwrap();
    c.run_for(2_000_000);
    assert_eq!(
        c.core(3).storage().log().last_lsn(),
        dbrep::Lsn::ZERO,
        "site 3 holds nothing"
    );
    assert_eq!(
        members(&mut c, 1),
        vec![1, 2],
        "site 3 was admitted although it holds nothing: the master counted the acks \
         of its previous disk"
    );
}

/// Simulator seed 158 (membership mode, default mix, overlap invariant):
/// site 4 became master of generation 9 with the group {1, 2, 4} in force,
/// from a log lacking settled membership records, while {3, 4} was in
/// force at every other site; majorities {1, 2} and {3, 4} are disjoint.
///
/// A change counted as settled once a majority of the group held it,
/// non-electable members included. But a non-electable voter votes for the
/// best electable candidate it hears of, however far behind its own log
/// that candidate is, so its copy stops no lacking candidate from winning.
/// Fixed: only electable holders count towards settling (as only
/// electable acks count under `Quorum`), and a group must keep a majority
/// of electable sites. Here the change is held by the master, one electable
/// and one non-electable site: not settled; the next master must hold it.
#[test]
fn a_change_settled_by_non_electable_members_survives_the_next_election() {
    let config = |eid: Eid| {
        let mut c = managed(eid);
        c.rep.priority = if eid == 4 { 0 } else { 100 };
        c
    };
    let mut c = Cluster::new(4, 158, config);
    c.start(1, StartAs::Master);
    c.run_for(10_000);
    for s in 2..=4 {
        c.start(s, StartAs::Client);
    }
    assert!(c.run_until(20_000_000, 50_000, |c| {
        (1..=4).all(|s| members(c, s) == vec![1, 2, 3, 4])
    }));
    c.run_for(1_000_000);
    // Site 2, an electable site, is down while the master changes the group.
    c.crash(2, dbrep::testing::CrashMode::KeepAll);
    let now = c.now;
    let change = c
        .core(1)
        .add_site(now, 5, b"site5", true)
        .expect("the change is written");
    c.collect(1);
    // Held by 1, 3 and 4 of {1, 2, 3, 4, 5}, but 4 may not become master:
    // two electable holders of the three a majority needs. Probed by adding
    // a member again: refused as "in progress" while unsettled.
    let settled = c.run_until(2_000_000, 10_000, |c| {
        let now = c.now;
        match c.core(1).add_site(now, 2, b"site2", true) {
            Err(Error::Unavail(_)) => false,
            Err(Error::Invalid(_)) => true,
            other => panic!("{other:?}"),
        }
    });
    assert!(!settled, "non-electable copies do not settle a change");
    assert!(c.core(3).storage().log().durable_lsn() >= change);
    assert!(c.core(4).storage().log().durable_lsn() >= change);
    // The master dies; site 2 comes back. Site 3 holds the change and is
    // electable: whoever wins must hold it.
    c.crash(1, dbrep::testing::CrashMode::KeepAll);
    c.restart(2).unwrap();
    let elected = c.run_until(30_000_000, 50_000, |c| !c.masters().is_empty());
    assert!(elected, "an election is won");
    let m = c.masters()[0];
    let g = members(&mut c, m);
    assert!(
        g.contains(&5),
        "site {m} became master with the group {g:?}, without the change to \
         {{1, 2, 3, 4, 5}} at {change} that sites 3 and 4 hold"
    );
}

/// A group keeps a majority of sites that may become master: a change that
/// would leave fewer is refused, and a non-electable joiner waits.
#[test]
fn a_group_keeps_a_majority_of_electable_sites() {
    let config = |eid: Eid| {
        let mut c = managed(eid);
        c.rep.priority = if eid >= 3 { 0 } else { 100 };
        c
    };
    let mut c = Cluster::new(4, 159, config);
    c.start(1, StartAs::Master);
    c.run_for(10_000);
    for s in 2..=4 {
        c.start(s, StartAs::Client);
    }
    // {1, 2, 3} has two electable sites of three; adding 4 (view) would
    // leave two of four.
    assert!(c.run_until(20_000_000, 50_000, |c| members(c, 1) == vec![1, 2, 3]));
    c.run_for(3_000_000);
    assert_eq!(
        members(&mut c, 1),
        vec![1, 2, 3],
        "the non-electable joiner waits"
    );
    let now = c.now;
    match c.core(1).add_site(now, 9, b"site9", false) {
        Err(Error::Invalid(why)) => assert!(why.contains("majority"), "{why}"),
        other => panic!("a view site that breaks the electable majority: {other:?}"),
    }
    match c.core(1).remove_site(now, 2) {
        Err(Error::Invalid(why)) => assert!(why.contains("majority"), "{why}"),
        other => panic!("removing an electable site that leaves too few: {other:?}"),
    }
    // An electable site joins; then the waiting view site fits.
    c.add_site(5).unwrap();
    c.site_mut(5).config.rep.priority = 100;
    c.restart(5).unwrap();
    let ok = c.run_until(20_000_000, 50_000, |c| members(c, 1) == vec![1, 2, 3, 4, 5]);
    assert!(ok, "{:?}", members(&mut c, 1));
}
