//! The main demo: three sites in one process replicate a key-value store,
//! survive the loss of their master through an election, and take the old
//! master back as a client. Each site's data lives in its own directory and
//! is recovered from disk when reopened.
//!
//! Run: `cargo run --example demo`

mod common;

use std::time::{Duration, Instant};

use common::hub::Hub;
use dbrep::{Env, EnvConfig, Role, StartAs, TimeoutKind};

fn config() -> EnvConfig {
    let mut c = EnvConfig::default();
    c.rep.nsites = 3;
    c.rep.set_timeout(TimeoutKind::Ack, 500_000);
    c.rep.set_timeout(TimeoutKind::Election, 600_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatSend, 100_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatMonitor, 400_000);
    c
}

fn wait_for(what: &str, limit: Duration, mut pred: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !pred() {
        if start.elapsed() > limit {
            eprintln!("gave up waiting for {what}");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

fn main() -> dbrep::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let root = tempfile::tempdir().expect("temporary directory");

    // 1. Durability: commit, close, reopen, and the data is still there.
    {
        let dir = root.path().join("solo");
        let env = Env::open(&dir, EnvConfig::default())?;
        env.rep_set_nsites(1)?; // a group of one: permanent once durable here
        env.rep_set_transport(0, |_| Ok(()))?;
        env.rep_start(&[], StartAs::Master)?;
        let mut t = env.txn();
        t.put(b"greeting", b"hello, durable world");
        let info = t.commit()?;
        println!(
            "solo: committed at {} (permanent: {})",
            info.lsn, info.permanent
        );
        drop(env);
        let env = Env::open(&dir, EnvConfig::default())?;
        let v = env.get(b"greeting")?.expect("recovered from the log");
        println!(
            "solo: reopened, greeting = {:?}",
            String::from_utf8_lossy(&v)
        );
    }

    // 2. Three sites: site 1 is master, 2 and 3 are clients.
    let hub = Hub::new();
    let mut envs = Vec::new();
    for eid in 1..=3 {
        let env = Env::open(root.path().join(format!("site{eid}")), config())?;
        hub.join(eid, &env);
        envs.push(env);
    }
    envs[0].rep_start(b"site 1", StartAs::Master)?;
    envs[1].rep_start(b"site 2", StartAs::Client)?;
    envs[2].rep_start(b"site 3", StartAs::Client)?;

    let mut permanent = 0;
    for i in 0..100u32 {
        let mut t = envs[0].txn();
        t.put(
            format!("key{i:03}").as_bytes(),
            format!("value {i}").as_bytes(),
        );
        if t.commit()?.permanent {
            permanent += 1;
        }
    }
    println!("master: 100 commits, {permanent} permanent under QUORUM acks");
    let last = envs[0].last_lsn();
    wait_for("clients to catch up", Duration::from_secs(10), || {
        envs[1].last_lsn() >= last && envs[2].last_lsn() >= last
    });
    println!(
        "clients: site 2 has {} keys, site 3 has {} keys; stores identical: {}",
        envs[1].len(),
        envs[2].len(),
        envs[0].store_digest() == envs[1].store_digest()
            && envs[1].store_digest() == envs[2].store_digest()
    );

    // 3. The master goes silent; the clients notice and elect a new one.
    hub.cut(1);
    let took = wait_for("a new master", Duration::from_secs(20), || {
        envs[1].role() == Role::Master || envs[2].role() == Role::Master
    });
    let new = if envs[1].role() == Role::Master { 2 } else { 3 };
    println!(
        "site 1 cut off; site {new} elected master {} ms later",
        took.as_millis()
    );
    let mut t = envs[new - 1].txn();
    t.put(b"after-failover", b"written by the new master");
    let info = t.commit()?;
    println!(
        "new master: committed at {} (permanent: {})",
        info.lsn, info.permanent
    );

    // 4. The old master comes back and rejoins as a client.
    hub.reconnect(1);
    envs[0].rep_flush()?;
    let took = wait_for("the old master to rejoin", Duration::from_secs(20), || {
        envs[0].role() == Role::Client && envs[0].get(b"after-failover").ok().flatten().is_some()
    });
    println!(
        "site 1 reconnected and rejoined as a client in {} ms",
        took.as_millis()
    );
    let same = envs
        .iter()
        .all(|e| e.store_digest() == envs[0].store_digest());
    println!("all three stores identical: {same}");
    hub.shutdown();
    if !same {
        std::process::exit(1);
    }
    Ok(())
}
