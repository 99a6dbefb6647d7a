//! Helpers shared by the integration tests (`mod common;` in a test file).
//! Each test binary uses only some of them.
#![allow(dead_code)]

use dbrep::testing::testkit::short_timeouts;
use dbrep::{Eid, EnvConfig};

/// A number from the environment variable `name`, if set and valid.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// [`short_timeouts`] for every site of a test-kit cluster.
pub fn small_timeouts(nsites: u32) -> impl Fn(Eid) -> EnvConfig {
    move |_| short_timeouts(nsites)
}

/// Replicated-membership settings for test-kit site `eid`: membership on,
/// address `site<eid>`, heartbeats every 200 ms, a dead master noticed after 1 s.
pub fn managed(eid: Eid) -> EnvConfig {
    let mut c = EnvConfig::default();
    c.rep.membership = true;
    c.rep.local_addr = format!("site{eid}").into_bytes();
    c.rep.heartbeat_send_us = 200_000;
    c.rep.heartbeat_monitor_us = 1_000_000;
    c
}

/// The eids of the group in force at `eid` (empty before any).
pub fn members(c: &mut dbrep::testing::testkit::Cluster, eid: Eid) -> Vec<Eid> {
    c.core(eid)
        .membership()
        .map(|g| g.members().iter().map(|m| m.eid).collect())
        .unwrap_or_default()
}

/// A group founded by site 1 that sites `2..=n` joined through the protocol.
pub fn grown(n: usize, seed: u64) -> dbrep::testing::testkit::Cluster {
    let mut c = dbrep::testing::testkit::Cluster::new(n, seed, managed);
    c.start(1, dbrep::StartAs::Master);
    c.run_for(10_000);
    assert_eq!(
        members(&mut c, 1),
        vec![1],
        "the first master founds a group of itself"
    );
    for s in 2..=n as Eid {
        c.start(s, dbrep::StartAs::Client);
    }
    let want: Vec<Eid> = (1..=n as Eid).collect();
    let ok = c.run_until(20_000_000, 50_000, |c| {
        (1..=n as Eid).all(|s| members(c, s) == want)
    });
    assert!(ok, "every site joins the group of {n}");
    c
}
