//! The thread-safe handle under real threads: several host threads deliver
//! messages while others commit, `rep_elect` blocks while delivery goes on,
//! and event callbacks call back into the handle.

#[path = "../examples/common/hub.rs"]
mod hub;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbrep::log::LogConfig;
use dbrep::{Env, EnvConfig, Event, Role, StartAs, TimeoutKind};
use hub::Hub;

fn config() -> EnvConfig {
    let mut c = EnvConfig {
        log: LogConfig {
            in_memory: true,
            ..LogConfig::default()
        },
        ..EnvConfig::default()
    };
    c.rep.nsites = 3;
    c.rep.set_timeout(TimeoutKind::Ack, 2_000_000);
    c.rep.set_timeout(TimeoutKind::Election, 500_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatSend, 50_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatMonitor, 300_000);
    c
}

fn wait(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    pred()
}

fn group() -> (Hub, Vec<Env>) {
    let hub = Hub::new();
    let envs: Vec<Env> = (1..=3)
        .map(|_| Env::open_in_memory(config()).unwrap())
        .collect();
    for (i, env) in envs.iter().enumerate() {
        hub.join(i as i32 + 1, env);
    }
    envs[0].rep_start(&[], StartAs::Master).unwrap();
    envs[1].rep_start(&[], StartAs::Client).unwrap();
    envs[2].rep_start(&[], StartAs::Client).unwrap();
    (hub, envs)
}

#[test]
fn concurrent_committers_all_become_permanent() {
    let (hub, envs) = group();
    let permanent = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let env = envs[0].clone();
            let permanent = permanent.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let mut txn = env.txn();
                    txn.put(format!("t{t}-{i}").as_bytes(), b"v");
                    if txn.commit().unwrap().permanent {
                        permanent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(permanent.load(Ordering::Relaxed), 200);
    let last = envs[0].last_lsn();
    assert!(wait(Duration::from_secs(10), || envs[1..]
        .iter()
        .all(|e| e.last_lsn() >= last)));
    assert!(envs
        .iter()
        .all(|e| e.store_digest() == envs[0].store_digest()));
    assert_eq!(envs[2].len(), 200);
    let stats = envs[0].rep_stat(false);
    assert_eq!(stats.perm_commits, 200);
    hub.shutdown();
}

#[test]
fn failover_elects_a_new_master_and_the_old_one_rejoins() {
    let (hub, envs) = group();
    for i in 0..20 {
        let mut txn = envs[0].txn();
        txn.put(format!("k{i}").as_bytes(), b"before");
        assert!(txn.commit().unwrap().permanent);
    }
    hub.cut(1);
    // The Elected callback calls rep_start(MASTER) on its own handle.
    assert!(wait(Duration::from_secs(20), || envs[1..]
        .iter()
        .any(|e| e.role() == Role::Master)));
    let new = if envs[1].role() == Role::Master { 1 } else { 2 };
    let other = 3 - new;
    assert_eq!(envs[other].role(), Role::Client);
    let mut txn = envs[new].txn();
    txn.put(b"k-after", b"after");
    assert!(
        txn.commit().unwrap().permanent,
        "two of three sites are up: QUORUM holds"
    );
    let events = hub.events();
    assert!(events.contains(&(new as i32 + 1, Event::Elected)));
    assert!(events.contains(&(other as i32 + 1, Event::NewMaster(new as i32 + 1))));
    assert!(!events.contains(&(other as i32 + 1, Event::Elected)));

    hub.reconnect(1);
    envs[0].rep_flush().unwrap();
    assert!(wait(Duration::from_secs(20), || {
        envs[0].role() == Role::Client && envs[0].get(b"k-after").unwrap().is_some()
    }));
    assert!(envs
        .iter()
        .all(|e| e.store_digest() == envs[new].store_digest()));
    hub.shutdown();
}

#[test]
fn blocking_elect_returns_unavail_when_no_majority_answers() {
    let env = Env::open_in_memory(config()).unwrap();
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    env.rep_start(&[], StartAs::Client).unwrap();
    let start = Instant::now();
    let err = env.rep_elect(3, 2, 0).unwrap_err();
    assert!(matches!(err, dbrep::Error::Unavail(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_ne!(env.role(), Role::Master);
}

#[test]
fn wrong_call_order_is_an_error() {
    let env = Env::open_in_memory(config()).unwrap();
    assert!(
        env.rep_start(&[], StartAs::Master).is_err(),
        "no transport yet"
    );
    assert!(env.rep_set_transport(-1, |_| Ok(())).is_err());
    env.rep_set_transport(1, |_| Ok(())).unwrap();
    assert!(
        env.rep_process_message(&[0; 28], &[], 2).is_err(),
        "before rep_start"
    );
    assert!(env.rep_elect(3, 2, 0).is_err(), "before rep_start");
    env.rep_start(&[], StartAs::Client).unwrap();
    let mut t = env.txn();
    t.put(b"k", b"v");
    assert!(t.commit().is_err(), "a client cannot write");
    assert!(env.rep_elect(3, 4, 0).is_err(), "nvotes > nsites");
    assert!(env.rep_elect(3, 2, 1).is_err(), "flags must be 0");
    assert!(
        env.rep_elect(4, 2, 0).is_err(),
        "sub-majority needs an explicit opt-in"
    );
}

#[test]
fn an_isolated_master_refuses_linearizable_reads_once_its_lease_lapses() {
    use dbrep::{ConfigFlag, Error, ReadLevel};
    let hub = Hub::new();
    let envs: Vec<Env> = (1..=3)
        .map(|i| {
            let mut c = config();
            c.rep.priority = if i == 1 { 100 } else { 10 };
            c.rep.set_flag(ConfigFlag::Lease, true);
            c.rep.set_timeout(TimeoutKind::Lease, 300_000);
            c.rep.set_timeout(TimeoutKind::MasterSearch, 200_000);
            Env::open_in_memory(c).unwrap()
        })
        .collect();
    for (i, env) in envs.iter().enumerate() {
        hub.join(i as i32 + 1, env);
    }
    // With leases the first master must be elected: all start as clients.
    for env in &envs {
        env.rep_start(&[], StartAs::Client).unwrap();
    }
    assert!(wait(Duration::from_secs(20), || envs
        .iter()
        .any(|e| e.role() == Role::Master)));
    let m = envs.iter().position(|e| e.role() == Role::Master).unwrap();
    let mut txn = envs[m].txn();
    txn.put(b"k", b"v");
    assert!(txn.commit().unwrap().permanent);
    // The master keeps its lease fresh through the timer call (the hub ticks).
    let read = envs[m].get_at(b"k", ReadLevel::Linearizable, Duration::from_secs(2));
    assert_eq!(read.unwrap(), Some(b"v".to_vec()));
    let stale = envs[m].get_at(b"k", ReadLevel::Stale, Duration::ZERO);
    assert_eq!(stale.unwrap(), Some(b"v".to_vec()));

    hub.cut(m as i32 + 1);
    std::thread::sleep(Duration::from_millis(400));
    let refused = envs[m].get_at(b"k", ReadLevel::Linearizable, Duration::from_millis(200));
    assert!(
        matches!(refused, Err(Error::LeaseExpired) | Err(Error::Unavail(_))),
        "an isolated master must not serve linearizable reads: {refused:?}"
    );
    hub.shutdown();
}
