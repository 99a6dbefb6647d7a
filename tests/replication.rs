//! Replication over the deterministic test kit.

use dbrep::testkit::Cluster;
use dbrep::{EnvConfig, StartAs};

fn cfg3(_: i32) -> EnvConfig {
    let mut c = EnvConfig::default();
    c.rep.nsites = 3;
    c
}

#[test]
fn three_sites_replicate_a_workload() {
    let mut c = Cluster::new(3, 1, cfg3);
    c.start(1, StartAs::Master);
    c.start(2, StartAs::Client);
    c.start(3, StartAs::Client);
    c.run_for(200_000);
    let mut last = dbrep::Lsn::ZERO;
    for i in 0..100u32 {
        last = c
            .put(1, &i.to_be_bytes(), format!("v{i}").as_bytes())
            .unwrap();
        c.run_for(1_000);
    }
    c.run_for(100_000);
    assert!(
        c.core(1).is_permanent(last),
        "perm {:?} last {last}",
        c.core(1).perm_lsn()
    );
    let d1 = c.core(1).storage().store().digest();
    for s in [2, 3] {
        assert_eq!(c.core(s).storage().store().digest(), d1, "site {s}");
        assert_eq!(c.core(s).storage().log().last_lsn(), last);
    }
}
