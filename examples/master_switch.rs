//! The Berkeley DB "switching masters" walkthrough, narrated as it runs:
//! three sites in this process, each with its own directory and a
//! `dbrep::net` host on a real loopback socket.
//!
//! 1. Sites 1 and 2 run as a group, site 1 master.
//! 2. Site 3, the preferred site (higher priority), joins and catches up.
//! 3. The master, site 1, shuts down.
//! 4. The remaining sites elect site 3: equally up to date, higher priority.
//! 5. Writes continue on site 3.
//! 6. Site 1 returns as a client and catches up.
//!
//! Every step prints one line and is checked; if a step does not happen the
//! program says which and exits with status 1.
//!
//! Run: `cargo run --example master_switch` (`RUST_LOG=info` or `debug` for the hosts' logs)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dbrep::net::{Net, NetConfig};
use dbrep::{Durability, Env, EnvConfig, LogConfig, Role, StartAs, TimeoutKind};

/// Generous: the machine may be busy. Steps finish far sooner.
const DEADLINE: Duration = Duration::from_secs(60);
const NSITES: u32 = 3;
/// The preferred site and its priority; the others have `NORMAL`.
const PREFERRED: i32 = 3;
const HIGH: u32 = 200;
const NORMAL: u32 = 100;

fn env_config(priority: u32) -> EnvConfig {
    let mut c = EnvConfig {
        log: LogConfig {
            durability: Durability::Sync,
            ..LogConfig::default()
        },
        ..EnvConfig::default()
    };
    c.rep.nsites = NSITES;
    c.rep.priority = priority;
    c.rep.set_timeout(TimeoutKind::Ack, 2_000_000);
    c.rep.set_timeout(TimeoutKind::Election, 1_500_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatSend, 100_000);
    c.rep.set_timeout(TimeoutKind::HeartbeatMonitor, 1_000_000);
    c.rep.set_timeout(TimeoutKind::MasterSearch, 1_000_000);
    c
}

/// One site: its directory, port and, while it runs, its environment and host.
struct Site {
    eid: i32,
    dir: PathBuf,
    addr: SocketAddr,
    priority: u32,
    running: Option<(Env, Net)>,
}

impl Site {
    /// Opens the environment and binds the host (port 0 the first time, the old port after).
    fn open(eid: i32, root: &Path, priority: u32, start_as: StartAs) -> Result<Site, String> {
        let mut site = Site {
            eid,
            dir: root.join(format!("site{eid}")),
            addr: "127.0.0.1:0".parse().unwrap(),
            priority,
            running: None,
        };
        site.bind(start_as)?;
        Ok(site)
    }

    fn bind(&mut self, start_as: StartAs) -> Result<(), String> {
        let env = Env::open(&self.dir, env_config(self.priority))
            .map_err(|e| format!("site {}: open {}: {e}", self.eid, self.dir.display()))?;
        let mut nc = NetConfig::new(self.eid, self.addr);
        nc.start_as = start_as;
        nc.initial_election_wait = Duration::from_millis(500);
        nc.election_retry_min = Duration::from_millis(200);
        nc.election_retry_max = Duration::from_secs(2);
        nc.connect_retry_min = Duration::from_millis(20);
        nc.connect_retry_max = Duration::from_millis(500);
        let net = Net::new(env.clone(), nc).map_err(|e| format!("site {}: {e}", self.eid))?;
        self.addr = net.local_addr();
        self.running = Some((env, net));
        Ok(())
    }

    fn start(&self, peers: &[SocketAddr]) -> Result<(), String> {
        let (_, net) = self.running.as_ref().expect("bound");
        for p in peers.iter().filter(|p| **p != self.addr) {
            net.add_peer(*p).map_err(|e| e.to_string())?;
        }
        net.start()
            .map_err(|e| format!("site {}: start: {e}", self.eid))
    }

    fn env(&self) -> &Env {
        &self.running.as_ref().expect("site is running").0
    }

    fn shut_down(&mut self) -> Result<(), String> {
        if let Some((env, net)) = self.running.take() {
            net.stop().map_err(|e| e.to_string())?;
            drop(net);
            drop(env);
        }
        Ok(())
    }

    /// One site's part of a step's line.
    fn describe(&self) -> String {
        match &self.running {
            None => format!("site {}: down", self.eid),
            Some((env, _)) => {
                let s = env.rep_stat(false);
                let role = match s.role {
                    Some(Role::Master) => "master",
                    Some(Role::Client) => "client",
                    _ => "none",
                };
                format!(
                    "site {} (prio {}): {role} gen {} lsn {} holds {} keys",
                    self.eid,
                    self.priority,
                    s.gen,
                    env.last_lsn(),
                    env.len()
                )
            }
        }
    }
}

struct Walkthrough {
    sites: Vec<Site>,
    step: u32,
    _root: tempfile::TempDir,
}

impl Walkthrough {
    /// Prints the step's line: what happened, then every site's state.
    fn narrate(&mut self, what: &str) {
        self.step += 1;
        let sites: Vec<String> = self.sites.iter().map(Site::describe).collect();
        println!("step {}: {what}\n         {}", self.step, sites.join(" | "));
    }

    fn site(&self, eid: i32) -> &Site {
        &self.sites[eid as usize - 1]
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.sites.iter().map(|s| s.addr).collect()
    }

    /// Waits until `pred` holds; the error names the step that did not happen.
    fn wait(&self, what: &str, mut pred: impl FnMut(&Self) -> bool) -> Result<Duration, String> {
        let start = Instant::now();
        while !pred(self) {
            if start.elapsed() > DEADLINE {
                let sites: Vec<String> = self.sites.iter().map(Site::describe).collect();
                return Err(format!(
                    "step {} did not happen: {what} (after {} s; {})",
                    self.step + 1,
                    DEADLINE.as_secs(),
                    sites.join(" | ")
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(start.elapsed())
    }

    /// Site `eid` is master and every other running site follows it.
    fn master_is(&self, eid: i32) -> bool {
        self.sites.iter().all(|s| match &s.running {
            None => true,
            Some((env, _)) if s.eid == eid => env.role() == Role::Master,
            Some((env, _)) => {
                let st = env.rep_stat(false);
                st.role == Some(Role::Client) && st.master == Some(eid)
            }
        })
    }

    /// Every running site holds exactly what site `eid` holds.
    fn caught_up_with(&self, eid: i32) -> bool {
        let m = self.site(eid).env();
        let (last, digest) = (m.last_lsn(), m.store_digest());
        self.sites
            .iter()
            .filter_map(|s| s.running.as_ref())
            .all(|(env, _)| env.last_lsn() >= last && env.store_digest() == digest)
    }

    /// Commits `n` writes on site `eid`, retrying each until it is permanent.
    fn write(&self, eid: i32, prefix: &str, n: u32) -> Result<(), String> {
        let env = self.site(eid).env();
        for i in 0..n {
            let key = format!("{prefix}-{i:02}");
            let value = format!("written by site {eid}");
            let start = Instant::now();
            loop {
                let mut txn = env.txn();
                txn.put(key.as_bytes(), value.as_bytes());
                match txn.commit() {
                    Ok(info) if info.permanent => break,
                    Ok(_) => {}
                    Err(e) => {
                        return Err(format!("step {}: commit on site {eid}: {e}", self.step + 1))
                    }
                }
                if start.elapsed() > DEADLINE {
                    return Err(format!(
                        "step {} did not happen: {key} never became permanent on site {eid}",
                        self.step + 1
                    ));
                }
            }
        }
        Ok(())
    }

    fn holds(&self, eid: i32, prefix: &str, n: u32) -> bool {
        let env = self.site(eid).env();
        (0..n).all(|i| {
            env.get(format!("{prefix}-{i:02}").as_bytes())
                .ok()
                .flatten()
                .is_some()
        })
    }
}

fn run() -> Result<(), String> {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut w = Walkthrough {
        sites: Vec::new(),
        step: 0,
        _root: root,
    };
    let root = w._root.path().to_path_buf();
    for eid in 1..=NSITES as i32 {
        let prio = if eid == PREFERRED { HIGH } else { NORMAL };
        let start_as = if eid == 1 {
            StartAs::Master
        } else {
            StartAs::Client
        };
        w.sites.push(Site::open(eid, &root, prio, start_as)?);
    }
    // Site 3 is bound (so everyone knows its address) but not started yet.
    let addrs = w.addrs();

    // Step 1: sites 1 and 2 form the group; site 1 is master.
    w.site(1).start(&addrs)?;
    w.site(2).start(&addrs)?;
    w.wait("site 2 follows master site 1", |w| {
        w.site(2).env().rep_stat(false).master == Some(1)
    })?;
    w.write(1, "before", 10)?;
    w.wait("site 2 holds the master's 10 writes", |w| {
        w.holds(2, "before", 10)
    })?;
    w.narrate("the group runs with site 1 as master; 10 writes are permanent on sites 1 and 2");

    // Step 2: the preferred site joins and catches up.
    w.site(3).start(&addrs)?;
    let took = w.wait("site 3 joins as a client and catches up", |w| {
        w.master_is(1) && w.holds(3, "before", 10) && w.caught_up_with(1)
    })?;
    w.narrate(&format!(
        "site 3 (priority {HIGH}) joined and caught up in {} ms",
        took.as_millis()
    ));

    // Step 3: the master shuts down.
    let old_gen = w.site(2).env().rep_stat(false).gen;
    w.sites[0].shut_down()?;
    w.narrate("site 1, the master, shut down");

    // Step 4: the election picks the preferred site.
    let took = w.wait("sites 2 and 3 elect site 3, the preferred site", |w| {
        w.master_is(PREFERRED)
    })?;
    let gen = w.site(3).env().rep_stat(false).gen;
    if gen <= old_gen {
        return Err(format!(
            "step 4: the new master's generation {gen} is not past the old one's {old_gen}"
        ));
    }
    w.narrate(&format!(
        "site 3 elected master {} ms later, generation {old_gen} -> {gen}",
        took.as_millis()
    ));

    // Step 5: writes continue.
    w.write(3, "after", 10)?;
    w.wait("site 2 holds the new master's writes", |w| {
        w.holds(2, "after", 10) && w.caught_up_with(3)
    })?;
    w.narrate("10 more writes on site 3, permanent with site 2's acknowledgements");

    // Step 6: the old master returns as a client and catches up.
    w.sites[0].bind(StartAs::Client)?;
    w.site(1).start(&addrs)?;
    let took = w.wait("site 1 rejoins as a client and catches up", |w| {
        w.master_is(PREFERRED)
            && w.holds(1, "before", 10)
            && w.holds(1, "after", 10)
            && w.caught_up_with(3)
    })?;
    w.narrate(&format!(
        "site 1 returned as a client and caught up in {} ms; all three hold identical data",
        took.as_millis()
    ));

    for site in &mut w.sites {
        site.shut_down()?;
    }
    println!("every step happened as narrated");
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(e) = run() {
        eprintln!("master_switch: {e}");
        std::process::exit(1);
    }
}
