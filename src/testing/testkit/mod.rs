//! A deterministic in-process cluster: sites on simulated disks, a network
//! the test controls, a simulated clock, and a host model that reacts to
//! return codes and events the way the documentation tells applications to.
//!
//! It drives the real [`Core`], log and store code. Everything random comes
//! from one seed, so a run can be replayed exactly. Tests, the simulator and
//! examples use it; applications do not need it.
//!
//! ```
//! use dbrep::testing::testkit::Cluster;
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

mod accessors;
mod clock;
mod host;
mod network;
mod rng;
mod site;

pub use clock::SiteClock;
pub use network::{NetFaults, Packet};
pub use rng::Rng;
pub use site::Site;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::db::{encode_ops, Op};
use crate::env::EnvConfig;
use crate::error::Result;
use crate::lsn::Lsn;
use crate::rep::{Core, Eid, Role, StartAs};
use crate::storage::Storage;
use crate::testing::sim_fs::{CrashMode, SimFs};
use crate::vfs::Vfs;

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
    pub(super) seq: u64,
    pub(super) make_config: Arc<dyn Fn(Eid) -> EnvConfig>,
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
            commits: Vec::new(),
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
        // A crashed process's commits died with it.
        site.commits.clear();
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

    /// Commits a transaction on `eid` (must be master) and returns its LSN
    /// at once. The commit is the core's sequence, as `Env` runs it:
    /// [`Core::commit_begin`], the fsync it asks for (on the simulated
    /// disk, at once: no group commit to join), [`Core::note_local_sync`].
    /// `Env` then blocks in [`Core::commit_poll`]; a test's thread must go
    /// on running the network for acknowledgements to arrive, so here the
    /// host model keeps the ticket and polls it after every call into the
    /// core (see [`Cluster::collect`]), which settles it (statistics,
    /// `Event::PermFailed`) as `Env` would. Tests read permanence with
    /// [`Core::is_permanent`].
    pub fn commit(&mut self, eid: Eid, ops: &[Op]) -> Result<Lsn> {
        let mut payload = Vec::new();
        encode_ops(ops, &mut payload);
        self.commit_payload(eid, &payload)
    }

    /// Commits an encoded transaction payload (any op kinds: named
    /// databases too) on `eid`, as [`Cluster::commit`] does.
    pub fn commit_payload(&mut self, eid: Eid, payload: &[u8]) -> Result<Lsn> {
        let now = self.now;
        let local = self.local_now(eid);
        let core = self.core(eid);
        let ticket = core.commit_begin(local, payload)?;
        if ticket.needs_sync {
            let lsn = ticket.lsn;
            if let Err(e) = core.storage_mut().log_mut().force_sync() {
                return Err(core.fail(format!("log fsync failed at commit {lsn}: {e}")));
            }
            core.note_local_sync();
        }
        let lsn = ticket.lsn;
        let site = self.site_mut(eid);
        site.commits.push(ticket);
        // A call can move the core's deadlines: ask it again, as a host would.
        site.next_tick = now;
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

    /// Crashes `eid` and gives it a new, empty disk that keeps only its
    /// replication metadata (generation, election generation, vote), as an
    /// operator restoring a site that failed to join keeps the site's own
    /// vote record: without it the site could vote twice in one election
    /// generation (soak seed 1067818: two masters of generation 2).
    pub fn crash_wipe_keeping_vote(&mut self, eid: Eid) {
        let dir = site_dir(eid);
        let meta_path = crate::vfs::join(&dir, crate::storage::meta::META_FILE);
        let site = self.site_mut(eid);
        site.core = None;
        site.fs.crash(CrashMode::LoseUnsynced);
        let meta = site.fs.contents(&meta_path);
        site.fs = SimFs::new();
        site.want_election = false;
        if let Some(bytes) = meta {
            let fs = &site.fs;
            fs.create_dir_all(&dir)
                .expect("the simulated disk creates a directory");
            crate::vfs::write_atomic(fs, &dir, crate::storage::meta::META_FILE, &bytes)
                .expect("the simulated disk writes the metadata");
        }
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
}

/// Settings for a group of `nsites` with short timeouts (50 ms heartbeats,
/// 300 ms elections, re-requests between 10 and 160 ms), so scenarios elect
/// and recover in simulated fractions of a second.
pub fn short_timeouts(nsites: u32) -> EnvConfig {
    let mut c = EnvConfig::default();
    let r = &mut c.rep;
    r.nsites = nsites;
    r.heartbeat_send_us = 50_000;
    r.heartbeat_monitor_us = 200_000;
    r.election_timeout_us = 300_000;
    r.master_search_us = 300_000;
    r.request_us_min = 10_000;
    r.request_us_max = 160_000;
    c
}
