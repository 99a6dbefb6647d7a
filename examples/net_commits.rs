//! A small commit loop through `dbrep::net`: three sites in this process on
//! loopback, site 1 master, and N commits of a small record. Used to
//! measure what a commit costs through the host, e.g.
//!
//! `strace -c -f target/release/examples/net_commits 2000`
//!
//! (run it twice with different N and divide the difference in syscalls by
//! the difference in N, so set-up and shut-down cancel out).

use std::time::{Duration, Instant};

use dbrep::net::{Net, NetConfig};
use dbrep::{Env, EnvConfig, StartAs};

fn main() -> dbrep::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let root = tempfile::tempdir().expect("temporary directory");
    let mut cfg = EnvConfig::default();
    cfg.rep.nsites = 3;
    let mut sites = Vec::new();
    for eid in 1..=3 {
        let env = Env::open(root.path().join(format!("site{eid}")), cfg.clone())?;
        let mut nc = NetConfig::new(eid, "127.0.0.1:0".parse().unwrap());
        if eid == 1 {
            nc.start_as = StartAs::Master;
        }
        let net = Net::new(env.clone(), nc)?;
        sites.push((env, net));
    }
    let addrs: Vec<_> = sites.iter().map(|(_, n)| n.local_addr()).collect();
    for (i, (_, net)) in sites.iter().enumerate() {
        for (j, a) in addrs.iter().enumerate() {
            if i != j {
                net.add_peer(*a)?;
            }
        }
        net.start()?;
    }
    let master = &sites[0].0;
    // Warm up until both clients follow and acknowledge.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sites[1..]
        .iter()
        .any(|(env, _)| env.rep_stat(false).master != Some(1))
        || !commit(master, 0)?
    {
        assert!(Instant::now() < deadline, "the clients never joined");
    }
    let start = Instant::now();
    let mut permanent = 0;
    for i in 0..n {
        permanent += u32::from(commit(master, i)?);
    }
    let took = start.elapsed();
    println!(
        "{n} commits in {:.3} s ({:.0} µs each), {permanent} permanent",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / f64::from(n.max(1))
    );
    for (_, net) in &sites {
        net.stop()?;
    }
    Ok(())
}

fn commit(env: &Env, i: u32) -> dbrep::Result<bool> {
    let mut txn = env.txn();
    txn.put(format!("key{}", i % 100).as_bytes(), b"a small value");
    Ok(txn.commit()?.permanent)
}
