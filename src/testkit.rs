//! A deterministic in-process cluster: sites on simulated disks, a network
//! the test controls, a simulated clock, and a host model that reacts to
//! return codes and events the way the documentation tells applications to.
//!
//! It drives the real [`Core`], log and store code. Everything random comes
//! from one seed, so a run can be replayed exactly. Tests, the simulator and
//! examples use it; applications do not need it.
//!
//! ```
//! use dbrep::testkit::Cluster;
//! use dbrep::StartAs;
//! let mut c = Cluster::new(3, 7, |_| Default::default());
//! c.start(1, StartAs::Master);
//! c.start(2, StartAs::Client);
//! c.start(3, StartAs::Client);
//! c.run_for(100_000);
//! c.put(1, b"k", b"v").unwrap();
//! c.run_for(100_000);
//! assert_eq!(c.get(3, b"k"), Some(b"v".to_vec()));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::db::{encode_ops, Op};
use crate::env::EnvConfig;
use crate::error::Result;
use crate::lsn::Lsn;
use crate::rep::{Core, Eid, Event, OutMsg, Role, StartAs, Status, EID_BROADCAST};
use crate::storage::Storage;
use crate::vfs::{CrashMode, SimFs, Vfs};

/// A small deterministic random generator (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }
}

/// A message in flight.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sender.
    pub from: Eid,
    /// Receiver.
    pub to: Eid,
    /// Control bytes.
    pub control: Vec<u8>,
    /// Rec bytes.
    pub rec: Vec<u8>,
}

/// Network fault rates.
#[derive(Clone, Debug, Default)]
pub struct NetFaults {
    /// Chance (per mille) a message is lost.
    pub drop_per_mille: u32,
    /// Chance (per mille) a message is delivered twice.
    pub dup_per_mille: u32,
    /// Extra random delay, up to this, per message (reorders messages).
    pub max_jitter_us: u64,
}

/// A site's own clock: local time = `offset_us` + global time x `rate_ppm` / 1e6.
/// It never runs backwards: jumps only move the offset forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteClock {
    /// Added to the scaled global time.
    pub offset_us: u64,
    /// Rate in parts per million (1,000,000 = the global rate).
    pub rate_ppm: u64,
}

impl Default for SiteClock {
    fn default() -> Self {
        SiteClock {
            offset_us: 0,
            rate_ppm: 1_000_000,
        }
    }
}

impl SiteClock {
    /// Local time at global time `g`.
    pub fn local(&self, g: u64) -> u64 {
        let scaled = (u128::from(g) * u128::from(self.rate_ppm) / 1_000_000) as u64;
        self.offset_us.saturating_add(scaled)
    }
    /// The earliest global time at which local time reaches `l`.
    pub fn global(&self, l: u64) -> u64 {
        if l == u64::MAX {
            return u64::MAX;
        }
        let d = u128::from(l.saturating_sub(self.offset_us));
        let rate = u128::from(self.rate_ppm.max(1));
        let g = (d * 1_000_000).div_ceil(rate);
        u64::try_from(g).unwrap_or(u64::MAX)
    }
}

/// One site of the cluster.
pub struct Site {
    /// Its id (ids are global in the test kit).
    pub eid: Eid,
    /// The running core; `None` while crashed.
    pub core: Option<Core>,
    /// Its simulated disk.
    pub fs: SimFs,
    /// Its settings.
    pub config: EnvConfig,
    /// Every event it reported, in order.
    pub events: Vec<Event>,
    /// Every non-trivial `rep_process_message` status it returned.
    pub statuses: Vec<Status>,
    /// The host model owes this site an election.
    pub want_election: bool,
    /// The role the host last started it in.
    pub started_as: Option<StartAs>,
    /// Its clock; every core call gets its local time.
    pub clock: SiteClock,
    /// Extra time this site takes to take in each message: a slow disk
    /// stalls a synchronous site while it fsyncs (0 = none).
    pub slow_us: u64,
    next_tick: u64,
}

impl Site {
    /// The core; panics if the site is crashed (a test-kit convenience).
    pub fn core(&self) -> &Core {
        self.core.as_ref().expect("site is crashed")
    }
    /// The core, mutably; panics if the site is crashed.
    pub fn core_mut(&mut self) -> &mut Core {
        self.core.as_mut().expect("site is crashed")
    }
    /// True unless crashed.
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }
    /// Its local time at global time `g`.
    pub fn local(&self, g: u64) -> u64 {
        self.clock.local(g)
    }
}

/// A cluster of sites wired by a simulated network.
pub struct Cluster {
    /// Simulated time in microseconds.
    pub now: u64,
    /// The sites, by id.
    pub sites: BTreeMap<Eid, Site>,
    /// Messages in flight, by (delivery time, sequence number).
    pub queue: BTreeMap<(u64, u64), Packet>,
    /// Directed links that are cut: (from, to).
    pub blocked: BTreeSet<(Eid, Eid)>,
    /// Fault rates.
    pub faults: NetFaults,
    /// Base one-way latency of every message.
    pub latency_us: u64,
    /// The randomness of the run.
    pub rng: Rng,
    /// React to return codes and events like a documented host would.
    pub auto_host: bool,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Messages lost to faults or cuts.
    pub lost: u64,
    /// When `Some`, every message a site sends is recorded here (one entry
    /// per target, before faults), so a test can check protocol invariants.
    pub trace: Option<Vec<Packet>>,
    /// The host's timer resolution: a site's timer call runs at most this
    /// often even when the core asks for an earlier deadline (default 1 µs).
    pub min_tick_us: u64,
    seq: u64,
    make_config: Arc<dyn Fn(Eid) -> EnvConfig>,
}

fn site_dir(eid: Eid) -> PathBuf {
    PathBuf::from(format!("/site{eid}"))
}

impl Cluster {
    /// `n` sites with ids `1..=n` on simulated disks; `make_config` gives each its settings.
    pub fn new(n: usize, seed: u64, make_config: impl Fn(Eid) -> EnvConfig + 'static) -> Cluster {
        let mut c = Cluster {
            now: 0,
            sites: BTreeMap::new(),
            queue: BTreeMap::new(),
            blocked: BTreeSet::new(),
            faults: NetFaults::default(),
            latency_us: 100,
            rng: Rng::new(seed),
            auto_host: true,
            delivered: 0,
            lost: 0,
            trace: None,
            min_tick_us: 1,
            seq: 0,
            make_config: Arc::new(make_config),
        };
        for i in 1..=n {
            c.add_site(i as Eid).expect("a fresh simulated disk opens");
        }
        c
    }

    /// Adds a site with a fresh disk (not started).
    pub fn add_site(&mut self, eid: Eid) -> Result<()> {
        let config = (self.make_config)(eid);
        let fs = SimFs::new();
        let site = Site {
            eid,
            core: None,
            fs,
            config,
            events: Vec::new(),
            statuses: Vec::new(),
            want_election: false,
            started_as: None,
            clock: SiteClock::default(),
            slow_us: 0,
            next_tick: 0,
        };
        self.sites.insert(eid, site);
        self.open_site(eid)
    }

    fn open_site(&mut self, eid: Eid) -> Result<()> {
        let seed = self.rng.next_u64();
        let site = self.sites.get_mut(&eid).expect("site exists");
        let core = if site.config.log.in_memory {
            Core::new(
                Storage::in_memory(site.config.log.clone()),
                Default::default(),
                site.config.rep.clone(),
            )?
        } else {
            let vfs: Arc<dyn Vfs> = Arc::new(site.fs.clone());
            let (storage, meta) = Storage::open(vfs, &site_dir(eid), site.config.log.clone())?;
            Core::new(storage, meta, site.config.rep.clone())?
        };
        let mut core = core;
        core.set_local_eid(eid)?;
        core.set_random_seed(seed);
        site.core = Some(core);
        site.next_tick = self.now;
        Ok(())
    }

    /// The site with id `eid`.
    pub fn site(&self, eid: Eid) -> &Site {
        &self.sites[&eid]
    }

    /// The site with id `eid`, mutably.
    pub fn site_mut(&mut self, eid: Eid) -> &mut Site {
        self.sites.get_mut(&eid).expect("no such site")
    }

    /// The core of site `eid` (panics if crashed).
    pub fn core(&mut self, eid: Eid) -> &mut Core {
        self.site_mut(eid).core_mut()
    }

    /// Site `eid`'s local time now.
    pub fn local_now(&self, eid: Eid) -> u64 {
        self.site(eid).local(self.now)
    }

    /// Moves site `eid`'s clock forward by `us` (never backwards).
    pub fn jump_clock(&mut self, eid: Eid, us: u64) {
        let now = self.now;
        let site = self.site_mut(eid);
        site.clock.offset_us = site.clock.offset_us.saturating_add(us);
        // The host notices the new time at its next wake-up; ask the core again.
        site.next_tick = now;
    }

    /// Ids of every site.
    pub fn ids(&self) -> Vec<Eid> {
        self.sites.keys().copied().collect()
    }

    /// Ids of the running sites that consider themselves master.
    pub fn masters(&self) -> Vec<Eid> {
        self.sites
            .values()
            .filter(|s| s.core.as_ref().is_some_and(|c| c.role() == Role::Master))
            .map(|s| s.eid)
            .collect()
    }

    /// Starts a site (`rep_start`).
    pub fn start(&mut self, eid: Eid, as_: StartAs) {
        let now = self.now;
        let site = self.site_mut(eid);
        site.started_as = Some(as_);
        site.next_tick = now;
        let local = site.local(now);
        let r = site
            .core_mut()
            .start(local, as_, format!("site{eid}").as_bytes());
        if let Err(e) = r {
            panic!("rep_start on site {eid}: {e}");
        }
        self.collect(eid);
    }

    /// Commits a transaction on `eid` (must be master).
    pub fn commit(&mut self, eid: Eid, ops: &[Op]) -> Result<Lsn> {
        let mut payload = Vec::new();
        encode_ops(ops, &mut payload);
        let now = self.now;
        let local = self.local_now(eid);
        let lsn = self.core(eid).commit(local, &payload)?;
        self.core(eid).storage_mut().log_mut().flush()?;
        self.core(eid).note_local_sync();
        // A call can move the core's deadlines: ask it again, as a host would.
        self.site_mut(eid).next_tick = now;
        self.collect(eid);
        Ok(lsn)
    }

    /// Commits one put on `eid`.
    pub fn put(&mut self, eid: Eid, key: &[u8], value: &[u8]) -> Result<Lsn> {
        self.commit(
            eid,
            &[Op::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            }],
        )
    }

    /// Reads a key from site `eid`'s store.
    pub fn get(&mut self, eid: Eid, key: &[u8]) -> Option<Vec<u8>> {
        self.core(eid)
            .storage()
            .store()
            .get(key)
            .map(<[u8]>::to_vec)
    }

    /// Moves the site's output into the network and handles its events.
    pub fn collect(&mut self, eid: Eid) {
        let mut msgs = Vec::new();
        let mut events = Vec::new();
        {
            let site = self.site_mut(eid);
            let Some(core) = site.core.as_mut() else {
                return;
            };
            core.take_output(&mut msgs, &mut events);
        }
        for m in msgs {
            self.send(eid, m);
        }
        for e in events {
            self.on_event(eid, e);
        }
    }

    fn send(&mut self, from: Eid, m: OutMsg) {
        let targets: Vec<Eid> = if m.eid == EID_BROADCAST {
            self.sites.keys().copied().filter(|&e| e != from).collect()
        } else {
            vec![m.eid]
        };
        for to in targets {
            if let Some(trace) = &mut self.trace {
                trace.push(Packet {
                    from,
                    to,
                    control: m.control.to_vec(),
                    rec: m.rec.clone(),
                });
            }
            if self.faults.drop_per_mille > 0 && self.rng.chance(self.faults.drop_per_mille) {
                self.lost += 1;
                continue;
            }
            let copies =
                if self.faults.dup_per_mille > 0 && self.rng.chance(self.faults.dup_per_mille) {
                    2
                } else {
                    1
                };
            for _ in 0..copies {
                let jitter = self.rng.below(self.faults.max_jitter_us + 1);
                let slow = self.sites.get(&to).map_or(0, |s| s.slow_us);
                let at = self.now + self.latency_us + jitter + slow;
                self.seq += 1;
                self.queue.insert(
                    (at, self.seq),
                    Packet {
                        from,
                        to,
                        control: m.control.to_vec(),
                        rec: m.rec.clone(),
                    },
                );
            }
        }
    }

    fn on_event(&mut self, eid: Eid, e: Event) {
        let auto = self.auto_host;
        self.site_mut(eid).events.push(e.clone());
        if !auto {
            return;
        }
        if e == Event::Elected {
            // The documented response: become master now.
            let now = self.now;
            let site = self.site_mut(eid);
            site.started_as = Some(StartAs::Master);
            let local = site.local(now);
            if let Err(err) = site.core_mut().start(local, StartAs::Master, &[]) {
                log::warn!("site {eid}: rep_start(MASTER) after winning: {err}");
            }
            self.collect(eid);
        }
    }

    fn on_status(&mut self, eid: Eid, st: Status) {
        if !matches!(st, Status::Processed | Status::IsPerm(_)) {
            self.site_mut(eid).statuses.push(st.clone());
        }
        if !self.auto_host {
            return;
        }
        match st {
            Status::HoldElection => self.site_mut(eid).want_election = true,
            Status::DupMaster => {
                let now = self.now;
                let site = self.site_mut(eid);
                site.started_as = Some(StartAs::Client);
                let local = site.local(now);
                let _ = site.core_mut().start(local, StartAs::Client, &[]);
                site.want_election = true;
                self.collect(eid);
            }
            _ => {}
        }
    }

    /// Delivers the earliest message due by `now`; false if none is.
    pub fn deliver_one(&mut self) -> bool {
        let Some((&(at, seq), _)) = self.queue.iter().next() else {
            return false;
        };
        if at > self.now {
            return false;
        }
        let p = self.queue.remove(&(at, seq)).expect("present");
        let up = self.sites.get(&p.to).is_some_and(|s| s.is_up());
        if !up || self.blocked.contains(&(p.from, p.to)) {
            self.lost += 1;
            return true;
        }
        self.delivered += 1;
        let now = self.now;
        let site = self.site_mut(p.to);
        let local = site.local(now);
        let r = site.core_mut().process(local, &p.control, &p.rec, p.from);
        site.next_tick = now;
        match r {
            Ok(st) => self.on_status(p.to, st),
            Err(e) => log::debug!("site {} rejected a message from {}: {e}", p.to, p.from),
        }
        self.collect(p.to);
        true
    }

    /// Runs timers due by `now` and owed elections.
    pub fn tick_due(&mut self) {
        let min_tick = self.min_tick_us.max(1);
        for eid in self.ids() {
            let now = self.now;
            let site = self.site_mut(eid);
            if !site.is_up() || site.started_as.is_none() {
                continue;
            }
            let local = site.local(now);
            if site.next_tick <= now {
                let r = site.core_mut().tick(local);
                match r {
                    Ok((st, next)) => {
                        // The core's deadline is by the site's clock.
                        let next = next.map_or(u64::MAX, |l| site.clock.global(l));
                        site.next_tick = next.max(now + min_tick);
                        self.on_status(eid, st);
                    }
                    Err(e) => {
                        // A failed site (RunRecovery) answers every tick so:
                        // nothing more to run until it is restarted.
                        log::warn!("site {eid} tick: {e}");
                        site.next_tick = u64::MAX;
                    }
                }
                self.collect(eid);
            }
            let auto = self.auto_host;
            let site = self.site_mut(eid);
            if auto && site.want_election {
                site.want_election = false;
                let core = site.core_mut();
                if core.role() == Role::Client && !core.in_election() {
                    if let Err(e) = core.elect(local, 0, 0, 0) {
                        log::debug!("site {eid}: rep_elect: {e}");
                    }
                    site.next_tick = now;
                    self.collect(eid);
                }
            }
        }
    }

    /// The time of the next due message or timer (`u64::MAX` if none): lets
    /// a driver (the simulator) run its own event loop with checks between events.
    pub fn next_event_time(&self) -> u64 {
        let q = self.queue.keys().next().map_or(u64::MAX, |k| k.0);
        let t = self
            .sites
            .values()
            .filter(|s| s.is_up() && s.started_as.is_some())
            .map(|s| s.next_tick)
            .min()
            .unwrap_or(u64::MAX);
        q.min(t)
    }

    /// Runs the cluster for `us` of simulated time: delivers messages and
    /// fires timers in time order.
    pub fn run_for(&mut self, us: u64) {
        let end = self.now.saturating_add(us);
        loop {
            while self.deliver_one() {}
            self.tick_due();
            if self.queue.keys().next().is_some_and(|k| k.0 <= self.now) {
                continue;
            }
            let next = self.next_event_time();
            if next > end {
                break;
            }
            self.now = self.now.max(next);
        }
        self.now = end;
    }

    /// Runs until `pred` holds or `max_us` passes; returns whether it held.
    pub fn run_until(
        &mut self,
        max_us: u64,
        step_us: u64,
        mut pred: impl FnMut(&mut Cluster) -> bool,
    ) -> bool {
        let end = self.now.saturating_add(max_us);
        while self.now < end {
            if pred(self) {
                return true;
            }
            self.run_for(step_us.min(end - self.now));
        }
        pred(self)
    }

    /// Crashes a site: its process dies and its disk loses what `mode` says.
    pub fn crash(&mut self, eid: Eid, mode: CrashMode) {
        let site = self.site_mut(eid);
        site.core = None;
        site.fs.crash(mode);
        site.want_election = false;
    }

    /// A *lying disk* (test-only fault that breaks the durability contract):
    /// the site crashes and its disk loses everything, synced data, votes and
    /// metadata included, as if it were replaced by an empty one. Correct
    /// code cannot survive this in general; the simulator uses it to prove
    /// that its checker notices lost permanent commits.
    pub fn crash_wipe(&mut self, eid: Eid) {
        let site = self.site_mut(eid);
        site.core = None;
        site.fs.crash(CrashMode::LoseUnsynced);
        site.fs = SimFs::new();
        site.want_election = false;
    }

    /// Changes `nsites` on every site (running cores and the settings a
    /// restart uses), as a host does when the group grows.
    ///
    /// Fails if a running site refuses (with leases on, `nsites` is fixed
    /// once started): a group whose sites disagree about its size can form
    /// two disjoint "majorities".
    pub fn set_nsites_all(&mut self, nsites: u32) -> Result<()> {
        for site in self.sites.values_mut() {
            site.config.rep.nsites = nsites;
            if let Some(core) = site.core.as_mut() {
                let mut cfg = core.config().clone();
                cfg.nsites = nsites;
                core.set_config(cfg)?;
            }
        }
        Ok(())
    }

    /// Restarts a crashed site from its disk and starts it as a client.
    pub fn restart(&mut self, eid: Eid) -> Result<()> {
        self.open_site(eid)?;
        self.start(eid, StartAs::Client);
        Ok(())
    }

    /// Cuts every link between sites in different groups.
    pub fn partition(&mut self, groups: &[&[Eid]]) {
        self.blocked.clear();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for &x in a.iter() {
                        for &y in b.iter() {
                            self.blocked.insert((x, y));
                        }
                    }
                }
            }
        }
    }

    /// Cuts a site off from every other.
    pub fn isolate(&mut self, eid: Eid) {
        for other in self.ids() {
            if other != eid {
                self.blocked.insert((eid, other));
                self.blocked.insert((other, eid));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }
}
