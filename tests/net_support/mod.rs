//! Sites on loopback for the `dbrep::net` tests: each an `Env` in its own
//! directory with a `Net` host, restartable from the same directory and port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dbrep::log::{Durability, LogConfig};
use dbrep::net::{Net, NetConfig, NetEvent};
use dbrep::{CommitInfo, Env, EnvConfig, Role, TimeoutKind};

/// Generous: the machine is shared, so waits are long and only the outcome is asserted.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub fn env_config(nsites: u32) -> EnvConfig {
    let mut c = EnvConfig {
        log: LogConfig {
            durability: Durability::WriteNoSync,
            ..LogConfig::default()
        },
        ..EnvConfig::default()
    };
    c.rep.nsites = nsites;
    c.rep.set_timeout(TimeoutKind::Ack, 2_000_000);
    c.rep.set_timeout(TimeoutKind::Election, 1_500_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatSend, 100_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatMonitor, 1_000_000);
    c.rep.set_timeout(TimeoutKind::MasterSearch, 1_000_000);
    c
}

pub fn net_config(eid: i32, listen: SocketAddr) -> NetConfig {
    let mut c = NetConfig::new(eid, listen);
    c.initial_election_wait = Duration::from_millis(500);
    c.election_retry_min = Duration::from_millis(200);
    c.election_retry_max = Duration::from_secs(2);
    c.connect_retry_min = Duration::from_millis(20);
    c.connect_retry_max = Duration::from_millis(500);
    c
}

pub struct Site {
    pub eid: i32,
    pub env: Env,
    pub net: Net,
}

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub sites: Vec<Option<Site>>,
    pub addrs: Vec<SocketAddr>,
    pub nsites: u32,
    pub tweak: fn(&mut NetConfig),
}

fn no_tweak(_: &mut NetConfig) {}

impl Cluster {
    /// `n` sites, eids 1..=n, every one started as a client.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, no_tweak)
    }

    pub fn start_with(n: usize, tweak: fn(&mut NetConfig)) -> Cluster {
        let mut c = Cluster {
            root: tempfile::tempdir().expect("temporary directory"),
            sites: Vec::new(),
            addrs: Vec::new(),
            nsites: n as u32,
            tweak,
        };
        for i in 0..n {
            let site = c.open(i, "127.0.0.1:0".parse().unwrap());
            c.addrs.push(site.net.local_addr());
            c.sites.push(Some(site));
        }
        for i in 0..n {
            c.connect_and_start(i);
        }
        c
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("site{}", i + 1))
    }

    fn open(&self, i: usize, listen: SocketAddr) -> Site {
        let eid = i as i32 + 1;
        let env = Env::open(self.dir(i), env_config(self.nsites)).expect("open env");
        let mut cfg = net_config(eid, listen);
        (self.tweak)(&mut cfg);
        let net = Net::new(env.clone(), cfg).expect("bind");
        Site { eid, env, net }
    }

    fn connect_and_start(&self, i: usize) {
        let site = self.site(i);
        for (j, addr) in self.addrs.iter().enumerate() {
            if j != i {
                site.net.add_peer(*addr).unwrap();
            }
        }
        site.net.start().expect("start");
    }

    pub fn site(&self, i: usize) -> &Site {
        self.sites[i].as_ref().expect("site is running")
    }

    pub fn env(&self, i: usize) -> &Env {
        &self.site(i).env
    }

    pub fn running(&self) -> impl Iterator<Item = (usize, &Site)> {
        self.sites
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    /// Stops site `i`'s host and closes its environment.
    pub fn stop(&mut self, i: usize) {
        let site = self.sites[i].take().expect("running");
        site.net.stop().unwrap();
        drop(site);
    }

    /// Reopens site `i` from its directory on its old port.
    pub fn restart(&mut self, i: usize) {
        assert!(self.sites[i].is_none());
        let site = self.open(i, self.addrs[i]);
        self.sites[i] = Some(site);
        self.connect_and_start(i);
    }

    /// Waits for one running site to be master and every other running site
    /// to follow it; returns its index.
    pub fn wait_for_master(&self) -> usize {
        let mut found = None;
        wait_until("a master every site follows", || {
            let masters: Vec<usize> = self
                .running()
                .filter(|(_, s)| s.env.role() == Role::Master)
                .map(|(i, _)| i)
                .collect();
            if masters.len() != 1 {
                return false;
            }
            let m = masters[0];
            let eid = m as i32 + 1;
            let all = self
                .running()
                .all(|(i, s)| i == m || s.env.rep_stat(false).master == Some(eid));
            found = Some(m);
            all
        });
        found.unwrap()
    }

    /// Commits `key = value` on site `i`, retrying while the site is not
    /// master yet; returns what the commit reported.
    pub fn commit(&self, i: usize, key: &[u8], value: &[u8]) -> CommitInfo {
        let mut txn = self.env(i).txn();
        txn.put(key, value);
        txn.commit().expect("commit on the master")
    }

    /// Waits until every running site holds the same data as site `i`.
    pub fn wait_converged(&self, i: usize) {
        wait_until("every site to hold the master's data", || {
            let d = self.env(i).store_digest();
            let last = self.env(i).last_lsn();
            self.running()
                .all(|(_, s)| s.env.last_lsn() >= last && s.env.store_digest() == d)
        });
    }
}

/// Polls `pred` until it holds, failing the test after [`DEADLINE`].
pub fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let start = Instant::now();
    while !pred() {
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Collects the events waiting now.
pub fn drain(rx: &crossbeam_channel::Receiver<NetEvent>) -> Vec<NetEvent> {
    rx.try_iter().collect()
}

impl Cluster {
    /// Asserts every running site holds every key in `keys`.
    pub fn assert_all_hold(&self, keys: &[String]) {
        for (_, site) in self.running() {
            for key in keys {
                assert!(
                    site.env.get(key.as_bytes()).unwrap().is_some(),
                    "site {} lost permanent commit {key}",
                    site.eid
                );
            }
        }
    }
}

/// Logs to the test's output (`RUST_LOG=dbrep=debug` to see the host's detail).
pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}
