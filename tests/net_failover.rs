//! Real TCP on loopback: sites elect a master by themselves, commit, lose
//! the master, elect another, and take the old one back as a client.
#![cfg(feature = "net")]

mod net_support;

use dbrep::Role;
use net_support::{init_log, wait_until, Cluster};

fn fail_over(n: usize) {
    init_log();
    let mut c = Cluster::start(n);
    let m = c.wait_for_master();
    let mut permanent = Vec::new();
    for k in 0..20u32 {
        let key = format!("first-{k}");
        if c.commit(m, key.as_bytes(), b"1").permanent {
            permanent.push(key);
        }
    }
    c.wait_converged(m);
    assert!(
        !permanent.is_empty(),
        "no commit became permanent with every site up"
    );

    c.stop(m);
    let m2 = c.wait_for_master();
    assert_ne!(m2, m);
    for k in 0..20u32 {
        let key = format!("second-{k}");
        if c.commit(m2, key.as_bytes(), b"2").permanent {
            permanent.push(key);
        }
    }

    c.restart(m);
    wait_until("the old master to rejoin as a client", || {
        c.env(m).role() == Role::Client && c.env(m).rep_stat(false).master == Some(m2 as i32 + 1)
    });
    c.wait_converged(m2);
    c.assert_all_hold(&permanent);
    let stats = c.site(m2).net.stats();
    assert!(
        stats.peers.iter().filter(|p| p.connected).count() == n - 1,
        "{stats:?}"
    );
}

#[test]
fn three_sites_fail_over_and_the_old_master_catches_up() {
    fail_over(3);
}

#[test]
fn five_sites_fail_over_and_the_old_master_catches_up() {
    fail_over(5);
}
