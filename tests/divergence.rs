//! A client ahead of a new master must not keep a record the master does
//! not hold: a new master's record that lands at an LSN the client already
//! holds with a different record is not a duplicate; the client re-verifies
//! and rolls back. Each scenario settles and asserts every site holds the
//! same store and the same log.

use dbrep::rep::ConfigFlag;
use dbrep::testing::testkit::Cluster;
use dbrep::{Eid, EnvConfig, Lsn, StartAs};

fn cfg(nsites: u32) -> impl Fn(Eid) -> EnvConfig {
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

/// Starts site 1 as master and the rest as clients, and lets them sync.
fn group(n: usize, seed: u64) -> Cluster {
    let mut c = Cluster::new(n, seed, cfg(n as u32));
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
        let base = c
            .core(s)
            .storage()
            .log()
            .base_lsn()
            .max(c.core(master).storage().log().base_lsn());
        let mine = log_records(c, s, base);
        let theirs = log_records(c, master, base);
        assert!(
            mine == theirs,
            "site {s} log after {base} differs from master {master}: {:?} vs {:?}",
            mine.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            theirs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>()
        );
        assert_eq!(
            c.core(s).storage().log().last_lsn(),
            last,
            "site {s} log end differs from master {master}"
        );
        assert_eq!(
            c.core(s).storage().store().digest(),
            digest,
            "site {s} store differs from master {master}"
        );
    }
}

/// Makes a site that has followed a master master without an election.
fn appoint(c: &mut Cluster, eid: Eid) {
    let mut cfg = c.core(eid).config().clone();
    cfg.set_flag(ConfigFlag::ManualMaster, true);
    c.core(eid).set_config(cfg).unwrap();
    c.start(eid, StartAs::Master);
}

/// The colleague's report: site 1's write reaches site 2 but not 3; site 3
/// is appointed master; its first record lands where site 2 holds site 1's
/// write. Site 2 must roll that write back, not count the new master's
/// record as a duplicate.
#[test]
fn a_client_ahead_of_an_appointed_master_rolls_back() {
    let mut c = group(3, 7001);
    c.put(1, b"base", b"shared").unwrap();
    c.run_for(200_000);
    assert_converged(&mut c, 1, &[2, 3]);

    // The write reaches site 2 only.
    c.block(1, 3);
    let lsn = c.put(1, b"k", b"from site 1").unwrap();
    c.run_for(200_000);
    assert_eq!(c.core(2).storage().log().last_lsn(), lsn);
    assert!(c.core(3).storage().log().last_lsn() < lsn);

    // Site 1 is gone; site 3 is appointed.
    c.isolate(1);
    appoint(&mut c, 3);
    c.run_for(500_000);
    c.put(3, b"k", b"from site 3").unwrap();
    c.run_for(1_000_000);
    c.put(3, b"k2", b"after").unwrap();
    c.run_for(1_000_000);

    assert_eq!(c.core(2).master(), Some(3), "site 2 follows site 3");
    assert_eq!(c.get(2, b"k").as_deref(), Some(&b"from site 3"[..]));
    assert_converged(&mut c, 3, &[2]);
}

/// The same through a real election in a group of five: the write reaches
/// sites 1 and 2 only; site 1 is cut off and site 2 is away while 3, 4 and
/// 5 elect (site 3 has the best priority among them). Site 3's first record
/// of its generation lands where site 2 holds site 1's write. When site 2
/// returns it must roll the write back.
#[test]
fn a_client_ahead_of_an_elected_master_rolls_back() {
    let mut c = group(5, 7002);
    c.put(1, b"base", b"shared").unwrap();
    c.run_for(200_000);
    assert_converged(&mut c, 1, &[2, 3, 4, 5]);

    for s in [3, 4, 5] {
        c.block(1, s);
    }
    let lsn = c.put(1, b"k", b"from site 1").unwrap();
    c.run_for(200_000);
    assert_eq!(c.core(2).storage().log().last_lsn(), lsn);
    assert!(c.core(3).storage().log().last_lsn() < lsn);

    c.partition(&[&[1], &[2], &[3, 4, 5]]);
    for s in [3, 4, 5] {
        c.elect(s).expect("rep_elect");
    }
    c.run_for(5_000_000);
    let new_master = c.core(4).master().expect("3, 4 and 5 elect a master");
    assert_ne!(new_master, 2);
    assert!(
        c.core(new_master).storage().log().last_lsn() >= lsn,
        "the new master's generation starts at or past the write's LSN"
    );
    c.put(new_master, b"k", b"from the new master").unwrap();
    c.run_for(500_000);

    c.partition(&[&[1], &[2, 3, 4, 5]]);
    c.run_for(5_000_000);
    c.put(new_master, b"k2", b"after").unwrap();
    c.run_for(1_000_000);

    assert_eq!(c.core(2).master(), Some(new_master), "site 2 follows it");
    assert_eq!(c.get(2, b"k").as_deref(), Some(&b"from the new master"[..]));
    assert_converged(&mut c, new_master, &[2, 3, 4, 5]);
}
