//! A deterministic simulator: one seed drives a whole group of sites through
//! the real replication core, log and store on simulated disks, a simulated
//! network and a simulated clock, injects faults, runs a client workload,
//! and checks the protocol's invariants after every delivered message and
//! every timer round.
//!
//! Everything random comes from the seed, so a run replays bit for bit:
//! `DBREP_SIM_SEED=<seed> DBREP_SIM_SEEDS=1 cargo test --test sim -- --nocapture`.
//!
//! # What a run does
//!
//! [`Plan::from_seed`] picks the group size (3, 5 or 7), priorities (some 0,
//! a majority electable), and for every fault class whether it is on and how
//! often it strikes: message drop, duplication, reordering (jitter),
//! partitions (symmetric splits, majority/minority, one site isolated,
//! one-way links) that heal, crashes with every [`CrashMode`] (torn writes
//! included) and restarts from disk, clock jumps, and one site joining the
//! group part-way. Then [`Sim::run`] takes `steps` steps; each applies one
//! action (a commit on the master, a fault, a heal, a restart, ...) and runs
//! the cluster for a few simulated milliseconds. At the end every fault is
//! healed, every site restarted, and the group must converge.
//!
//! # Invariants
//!
//! 1. At most one master per generation, ever (checked after every event).
//! 2. Every commit a master reported permanent (its `perm_lsn` reached it)
//!    is, with the same LSN, generation and bytes, in the log of every site
//!    that later becomes master, and in every site's log at the end.
//! 3. Logs agree on the committed prefix: every record a site holds at or
//!    below its own permanent point (the master's `perm_lsn`, a client's
//!    known permanent point) equals the record every master declared
//!    permanent at that LSN; two masters never declare different records
//!    permanent at one LSN.
//! 4. After healing and quiescence every site holds the same log and the
//!    same store, and the store is exactly the replay of the log.
//! 5. Liveness: after healing, within a bounded quiet period, there is one
//!    master, every site follows it, and a new write becomes permanent.
//!
//! 6. Linearizability, checked per key at the end of every seed
//!    ([`linearizability`]): the workload also reads, linearizable reads on
//!    the master (served when `lease_valid()` holds with leases on, when
//!    `confirmed_since(since)` holds with leases off, mirroring
//!    `Env::get_at`) and follower reads on clients (served when the read
//!    index is `Ready(point)` and `applied_through(point)`). Every completed
//!    read of those kinds, and every write (invoked at `commit`, completed
//!    when its master reported it permanent, otherwise of unknown outcome),
//!    must fit one register history per key. Stale reads are recorded, not
//!    checked. A read that does not complete within [`READ_TIMEOUT_US`] is
//!    abandoned.
//!
//! # Clocks and leases
//!
//! Every site has its own clock (`testkit::SiteClock`): an offset and a
//! rate drawn per seed within the configured skew (`clockskew` (102, 100):
//! rates in [1.0, 1.02]); in seeds without leases a site's clock also jumps
//! forward now and then. (Not with leases: a forward jump on a client ends
//! its lease promise early, outside the skew bound leases assume.) About 40%
//! of the seeds run with master leases on (lease 150 ms, election 300 ms);
//! every site starts as a client and the first master is elected.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub mod linearizability;

use crate::db::{encode_ops, Op, Store};
use crate::env::EnvConfig;
use crate::log::record::RecordType;
use crate::lsn::Lsn;
use crate::rep::{AckPolicy, Eid, Event, ReadIndexState, Role, StartAs, Status};
use crate::testkit::{Cluster, NetFaults, Rng, SiteClock};
use linearizability::{check_register, RegKind, RegOp, Verdict};

/// Keys of the workload: few, so reads and writes conflict.
pub const KEYS: u64 = 6;
/// A read not served within this (simulated) time is abandoned.
pub const READ_TIMEOUT_US: u64 = 1_000_000;
/// The linearizability search gives up on a key after this many states.
pub const MAX_LIN_STATES: usize = 200_000;
use crate::vfs::CrashMode;

/// 64-bit FNV-1a, for trace hashes and record digests.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// Feeds a number.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hash_of(b: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.bytes(b);
    h.0
}

/// Which fault classes a run may use. [`FaultSet::all`] is the default mix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSet {
    /// Message loss.
    pub drop: bool,
    /// Duplicated messages.
    pub dup: bool,
    /// Random extra delay (reorders messages).
    pub reorder: bool,
    /// Network partitions of every shape.
    pub partition: bool,
    /// Site crashes and restarts.
    pub crash: bool,
    /// Crashes that tear the last write (`KeepPrefix`).
    pub torn_crash: bool,
    /// Whole-cluster clock jumps (every process stalls, timers fire late).
    pub clock_jump: bool,
    /// A site joins the group part-way.
    pub add_site: bool,
    /// The network changes the moment a new master takes office (Jepsen's
    /// nemesis). It found `regression_voter_acks_stale_master` (tests/sim.rs).
    pub nemesis: bool,
    /// One site has a slow disk: it takes in every message late.
    pub slow_disk: bool,
    /// Test-only, breaks the durability contract: a crash wipes the disk
    /// (see [`Cluster::crash_wipe`]). Off in the default mix.
    pub lying_disk: bool,
    /// Test-only, breaks the documented host rules: the host calls
    /// `rep_start(MASTER)` on a site of its own accord. Off in the default mix.
    pub rogue_master: bool,
    /// Test-only host bug: "linearizable" reads on a master are served at
    /// once, without waiting for `lease_valid`/`confirmed_since`. Off in the
    /// default mix.
    pub unsafe_master_reads: bool,
    /// Test-only host bug: reads are served the moment the confirmation or
    /// read-index condition holds, from a store that may hold writes not yet
    /// permanent (how `Env::get_at` first served them; see
    /// `regression_read_sees_write_not_yet_permanent` in tests/sim.rs).
    /// Off in the default mix.
    pub reads_ignore_permanence: bool,
}

impl FaultSet {
    /// Every legitimate fault class.
    pub fn all() -> FaultSet {
        FaultSet {
            drop: true,
            dup: true,
            reorder: true,
            partition: true,
            crash: true,
            torn_crash: true,
            clock_jump: true,
            add_site: true,
            nemesis: true,
            slow_disk: true,
            lying_disk: false,
            rogue_master: false,
            unsafe_master_reads: false,
            reads_ignore_permanence: false,
        }
    }

    /// The mix `cargo test` runs: every legitimate fault class.
    pub fn default_mix() -> FaultSet {
        FaultSet::all()
    }
}

/// Everything a seed decides before the run starts.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// Sites at the start.
    pub n: usize,
    /// Priority of every site (index 0 is site 1), the joining one included.
    pub priorities: Vec<u32>,
    /// Number of workload/fault steps.
    pub steps: u32,
    /// Network faults while not healed.
    pub net: NetFaults,
    /// Per-mille chance per step of a network change (partition).
    pub p_partition: u32,
    /// Per-mille chance per step of healing the network.
    pub p_heal: u32,
    /// Per-mille chance per step of a crash.
    pub p_crash: u32,
    /// Per-mille chance per step of restarting a crashed site.
    pub p_restart: u32,
    /// Per-mille chance per step of a clock jump.
    pub p_jump: u32,
    /// Per-mille chance per step of a commit attempt.
    pub p_commit: u32,
    /// Step at which a site joins, if one does.
    pub add_at: Option<u32>,
    /// Per-mille chance per step that the host starts a rogue master (test-only).
    pub p_rogue: u32,
    /// Per-mille chance that the network changes the moment a new master takes office.
    pub p_nemesis: u32,
    /// Longest simulated time between two steps (short = flapping network).
    pub max_quantum_us: u64,
    /// The fault classes in use.
    pub faults: FaultSet,
    /// Master leases on.
    pub lease: bool,
    /// Per-mille chance per step of starting reads.
    pub p_read: u32,
    /// Every site's clock at the start (index 0 is site 1).
    pub clocks: Vec<SiteClock>,
    /// Per-mille chance per step that one site's clock jumps forward.
    pub p_site_jump: u32,
    /// Every site's slow-disk delay per message (index 0 is site 1; mostly 0).
    pub slow_us: Vec<u64>,
}

impl Plan {
    /// Derives a plan from a seed, using only the classes in `faults`.
    pub fn from_seed(seed: u64, faults: &FaultSet) -> Plan {
        let mut r = Rng::new(seed ^ 0x05EE_D0FD_82E9);
        let n = [3usize, 5, 7][r.below(3) as usize];
        let total = n + 1;
        let steps = 60 + r.below(240) as u32;
        let add_at = (faults.add_site && r.chance(300)).then(|| r.below(u64::from(steps)) as u32);
        // Priorities: at least a majority of the initial group electable.
        let group = if add_at.is_some() { total } else { n };
        let majority = group / 2 + 1;
        let mut priorities: Vec<u32> = (0..total)
            .map(|_| {
                if r.chance(250) {
                    0
                } else {
                    1 + r.below(3) as u32 * 50
                }
            })
            .collect();
        let electable = priorities[..group].iter().filter(|&&p| p > 0).count();
        if electable < majority {
            for p in priorities[..majority].iter_mut() {
                if *p == 0 {
                    *p = 10;
                }
            }
        }
        let on = |r: &mut Rng, enabled: bool| enabled && r.chance(650);
        let net = NetFaults {
            drop_per_mille: if on(&mut r, faults.drop) {
                1 + r.below(150) as u32
            } else {
                0
            },
            dup_per_mille: if on(&mut r, faults.dup) {
                1 + r.below(150) as u32
            } else {
                0
            },
            max_jitter_us: if on(&mut r, faults.reorder) {
                r.below(30_000)
            } else {
                0
            },
        };
        let p_partition = if on(&mut r, faults.partition) {
            30 + r.below(200) as u32
        } else {
            0
        };
        let p_crash = if on(&mut r, faults.crash || faults.lying_disk) {
            20 + r.below(130) as u32
        } else {
            0
        };
        let p_jump = if on(&mut r, faults.clock_jump) {
            5 + r.below(50) as u32
        } else {
            0
        };
        let p_rogue = if faults.rogue_master { 30 } else { 0 };
        // A third of the runs flap: short steps, frequent partition changes.
        let flap = r.chance(333);
        let p_nemesis = if faults.nemesis && p_partition > 0 && r.chance(500) {
            100 + r.below(500) as u32
        } else {
            0
        };
        let max_quantum_us = if flap { 10_000 } else { 60_000 };
        // Drawn last, so the plan's other choices stay what they were.
        let lease = r.chance(400);
        let p_read = 300 + r.below(600) as u32;
        let drift = r.chance(700);
        let clocks = (0..total)
            .map(|_| {
                if drift {
                    SiteClock {
                        offset_us: r.below(5_000_000),
                        rate_ppm: 1_000_000 + r.below(20_001),
                    }
                } else {
                    SiteClock::default()
                }
            })
            .collect();
        let p_site_jump = if !lease && drift && faults.clock_jump && r.chance(500) {
            5 + r.below(40) as u32
        } else {
            0
        };
        let p_partition = if flap && p_partition > 0 {
            p_partition + 200
        } else {
            p_partition
        };
        // Drawn from a separate stream so the rest of a seed's plan (and the
        // regression seeds) stay as they were before slow disks existed.
        let mut rs = Rng::new(seed ^ 0x5104_D15C);
        let mut slow_us = vec![0u64; total];
        if faults.slow_disk && rs.chance(300) {
            let victim = rs.below(total as u64) as usize;
            slow_us[victim] = 5_000 + rs.below(45_000);
        }
        Plan {
            seed,
            n,
            priorities,
            steps,
            net,
            p_partition,
            p_heal: 50 + r.below(200) as u32,
            p_crash,
            p_restart: 100 + r.below(300) as u32,
            p_jump,
            p_commit: 300 + r.below(500) as u32,
            add_at,
            p_rogue,
            max_quantum_us,
            p_nemesis,
            faults: faults.clone(),
            lease,
            p_read,
            clocks,
            slow_us,
            p_site_jump,
        }
    }

    fn config(&self, eid: Eid) -> EnvConfig {
        let mut c = EnvConfig::default();
        let r = &mut c.rep;
        r.nsites = self.n as u32;
        r.priority = self.priorities[(eid - 1) as usize];
        r.ack_policy = AckPolicy::Quorum;
        r.heartbeat_send_us = 50_000;
        r.heartbeat_monitor_us = 200_000;
        r.election_timeout_us = 300_000;
        r.election_retry_us = 600_000;
        r.master_search_us = 300_000;
        r.ack_timeout_us = 200_000;
        r.request_us_min = 10_000;
        r.request_us_max = 160_000;
        r.clockskew = (102, 100);
        if self.lease {
            r.lease = true;
            r.lease_timeout_us = 150_000;
        }
        c.seed = Some(self.seed);
        c
    }
}

/// One commit of the workload.
#[derive(Clone, Debug)]
pub struct CommitRecord {
    /// Step it was made in.
    pub step: u32,
    /// Simulated time of the commit.
    pub at_us: u64,
    /// The master that made it.
    pub eid: Eid,
    /// Its LSN.
    pub lsn: Lsn,
    /// Its generation.
    pub gen: u32,
    /// The operations.
    pub ops: Vec<Op>,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// When the master reported it permanent, if it did.
    pub perm_at_us: Option<u64>,
}

/// The client-visible history of a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every commit the master accepted, in order.
    pub commits: Vec<CommitRecord>,
    /// Commits not yet reported permanent whose master may still report them.
    pending: Vec<usize>,
    /// Commit attempts that failed (no master, or a master that lost its role).
    pub failed_attempts: u64,
    /// Every read started, in order.
    pub reads: Vec<ReadRecord>,
    /// Reads in flight.
    pending_reads: Vec<PendingRead>,
}

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// On the master, after `lease_valid`/`confirmed_since`.
    Linearizable,
    /// On a client, through a read index.
    Follower,
    /// Any site's local store (recorded, not checked).
    Stale,
}

/// One read of the workload.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    /// Step it was started in.
    pub step: u32,
    /// The site.
    pub eid: Eid,
    /// How it is served.
    pub kind: ReadKind,
    /// The key.
    pub key: Vec<u8>,
    /// Invocation (simulated global time).
    pub inv_us: u64,
    /// Response, if it completed.
    pub resp_us: Option<u64>,
    /// What it read, if it completed (inner `None` = absent).
    pub value: Option<Option<Vec<u8>>>,
}

#[derive(Clone, Debug)]
struct PendingRead {
    idx: usize,
    eid: Eid,
    wait: ReadWait,
}

#[derive(Clone, Debug)]
enum ReadWait {
    /// A master read in generation `gen`: `since` is the confirmation
    /// round's start (leases off), `None` with leases (then `asked` tells
    /// whether fresh grants were requested).
    Master {
        gen: u32,
        since: Option<u64>,
        asked: bool,
    },
    /// A follower read with this read-index id.
    Follower { id: u64 },
}

/// An invariant violation: everything needed to replay it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// The step it was found in (`steps` or more: during the final heal).
    pub step: u32,
    /// Simulated time.
    pub now_us: u64,
    /// What went wrong.
    pub what: String,
    /// The last actions before it (most recent last).
    pub recent: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} step {} t={}us: {}",
            self.seed, self.step, self.now_us, self.what
        )?;
        writeln!(f, "  last actions:")?;
        for a in &self.recent {
            writeln!(f, "    {a}")?;
        }
        write!(
            f,
            "  replay: DBREP_SIM_SEED={} DBREP_SIM_SEEDS=1 cargo test --test sim -- --nocapture",
            self.seed
        )
    }
}

/// What a successful run produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Hash of every action, every delivered message and the final state.
    pub trace_hash: u64,
    /// Final store digest of every site.
    pub digests: Vec<(Eid, u64)>,
    /// Simulated time the run took.
    pub sim_us: u64,
    /// Commits accepted / reported permanent.
    pub commits: usize,
    /// Commits reported permanent.
    pub perm_commits: usize,
    /// Masters seen (distinct generations).
    pub generations: usize,
    /// Messages delivered.
    pub delivered: u64,
    /// Reads started (every kind).
    pub reads_started: usize,
    /// Completed linearizable and follower reads the checker validated.
    pub reads_checked: usize,
    /// Keys whose linearizability search hit its bound.
    pub keys_inconclusive: usize,
}

type Check = std::result::Result<(), String>;

/// One simulated run. See the module docs.
pub struct Sim {
    /// The plan.
    pub plan: Plan,
    /// The cluster under test.
    pub cluster: Cluster,
    /// The workload history.
    pub history: History,
    rng: Rng,
    step: u32,
    trace: Fnv,
    recent: Vec<String>,
    /// generation -> the one site that was master in it.
    master_of_gen: BTreeMap<u32, Eid>,
    /// (site, generation) pairs already checked as new masters.
    masters_seen: BTreeSet<(Eid, u32)>,
    /// Highest perm_lsn seen per (site, generation).
    perm_seen: BTreeMap<(Eid, u32), Lsn>,
    /// Every record some master declared permanent: LSN -> (gen, hash of the encoded record).
    committed: BTreeMap<Lsn, (u32, u64)>,
    next_eid: Eid,
    nsites: u32,
    /// A master just took office: the nemesis may strike before its announcement lands.
    nemesis: Option<Eid>,
}

impl Sim {
    /// Builds the cluster for `plan` and starts every site as a client.
    pub fn new(plan: Plan) -> Sim {
        let p2 = plan.clone();
        let mut cluster = Cluster::new(plan.n, plan.seed, move |eid| p2.config(eid));
        cluster.latency_us = 200;
        // A host timer of 1 ms resolution, as a real host's would be.
        cluster.min_tick_us = 1_000;
        cluster.faults = plan.net.clone();
        let rng = Rng::new(plan.seed ^ 0xC0FF_EE00_D15E_A5E5);
        let n = plan.n;
        let mut sim = Sim {
            plan,
            cluster,
            history: History::default(),
            rng,
            step: 0,
            trace: Fnv::default(),
            recent: Vec::new(),
            master_of_gen: BTreeMap::new(),
            masters_seen: BTreeSet::new(),
            perm_seen: BTreeMap::new(),
            committed: BTreeMap::new(),
            next_eid: n as Eid + 1,
            nsites: n as u32,
            nemesis: None,
        };
        for eid in 1..=n as Eid {
            sim.cluster.site_mut(eid).clock = sim.plan.clocks[(eid - 1) as usize];
            sim.cluster.site_mut(eid).slow_us = sim.plan.slow_us[(eid - 1) as usize];
        }
        // Every site starts as a client: the first master is elected (with
        // leases, `rep_start(MASTER)` fails unless elected).
        for eid in 1..=n as Eid {
            sim.cluster.start(eid, StartAs::Client);
        }
        sim
    }

    fn note(&mut self, s: String) {
        self.trace.bytes(s.as_bytes());
        self.trace.u64(self.cluster.now);
        if self.recent.len() >= 300 {
            self.recent.remove(0);
        }
        self.recent
            .push(format!("step {} t={} {s}", self.step, self.cluster.now));
    }

    fn violation(&self, what: String) -> Violation {
        Violation {
            seed: self.plan.seed,
            step: self.step,
            now_us: self.cluster.now,
            what,
            recent: self.recent.clone(),
        }
    }

    /// Runs the plan, the final heal and the convergence checks.
    pub fn run(mut self) -> std::result::Result<Outcome, Violation> {
        self.run_mut()
    }

    /// Like [`Sim::run`], but leaves the cluster for inspection afterwards.
    pub fn run_mut(&mut self) -> std::result::Result<Outcome, Violation> {
        self.run_inner().map_err(|w| self.violation(w))?;
        let (reads_checked, keys_inconclusive) = self
            .check_linearizability()
            .map_err(|w| self.violation(w))?;
        let mut digests = Vec::new();
        for (&eid, s) in &self.cluster.sites {
            let d = s.core().storage().store().digest();
            digests.push((eid, d));
            self.trace.u64(d);
        }
        self.trace.u64(self.cluster.delivered);
        self.trace.u64(self.cluster.lost);
        Ok(Outcome {
            seed: self.plan.seed,
            trace_hash: self.trace.0,
            digests,
            sim_us: self.cluster.now,
            commits: self.history.commits.len(),
            perm_commits: self
                .history
                .commits
                .iter()
                .filter(|c| c.perm_at_us.is_some())
                .count(),
            generations: self.master_of_gen.len(),
            delivered: self.cluster.delivered,
            reads_started: self.history.reads.len(),
            reads_checked,
            keys_inconclusive,
        })
    }

    fn run_inner(&mut self) -> Check {
        self.run_checked(50_000)?;
        for step in 0..self.plan.steps {
            self.step = step;
            self.act()?;
            if self.rng.chance(self.plan.p_read) {
                self.start_reads()?;
            }
            let quantum = 500 + self.rng.below(self.plan.max_quantum_us);
            self.run_checked(quantum)?;
            self.full_check(false)?;
        }
        self.step = self.plan.steps;
        self.final_heal()
    }

    // ------------------------------------------------------------ reads

    fn random_key(&mut self) -> Vec<u8> {
        format!("k{}", self.rng.below(KEYS)).into_bytes()
    }

    /// Starts one to three reads of random kinds on random sites.
    fn start_reads(&mut self) -> Check {
        let n = 1 + self.rng.below(3);
        for _ in 0..n {
            let key = self.random_key();
            let kind = match self.rng.below(10) {
                0..=4 => ReadKind::Linearizable,
                5..=8 => ReadKind::Follower,
                _ => ReadKind::Stale,
            };
            self.start_read(kind, key)?;
        }
        Ok(())
    }

    fn start_read(&mut self, kind: ReadKind, key: Vec<u8>) -> Check {
        let now = self.cluster.now;
        let eid = match kind {
            ReadKind::Linearizable => {
                let m = self.masters_up();
                self.pick(&m)
            }
            ReadKind::Follower => {
                let c: Vec<Eid> = self
                    .cluster
                    .sites
                    .values()
                    .filter(|s| {
                        s.core
                            .as_ref()
                            .is_some_and(|c| c.role() == Role::Client && c.master().is_some())
                    })
                    .map(|s| s.eid)
                    .collect();
                self.pick(&c)
            }
            ReadKind::Stale => {
                let up = self.up_sites();
                self.pick(&up)
            }
        };
        let Some(eid) = eid else {
            return Ok(());
        };
        let local = self.cluster.local_now(eid);
        let wait = match kind {
            ReadKind::Stale => None,
            ReadKind::Linearizable => {
                let core = self.cluster.core(eid);
                let gen = core.gen();
                let since = if core.config().lease {
                    None
                } else {
                    match core.confirm_start(local) {
                        Ok(t) => Some(t),
                        Err(_) => return Ok(()),
                    }
                };
                self.cluster.collect(eid);
                Some(ReadWait::Master {
                    gen,
                    since,
                    asked: false,
                })
            }
            ReadKind::Follower => {
                let r = self.cluster.core(eid).read_index_start(local);
                self.cluster.collect(eid);
                match r {
                    Ok(id) => Some(ReadWait::Follower { id }),
                    Err(_) => return Ok(()),
                }
            }
        };
        let idx = self.history.reads.len();
        self.history.reads.push(ReadRecord {
            step: self.step,
            eid,
            kind,
            key: key.clone(),
            inv_us: now,
            resp_us: None,
            value: None,
        });
        self.note(format!("{kind:?} read of {} on {eid}", show(&key)));
        match wait {
            None => {
                let v = self.cluster.get(eid, &key);
                self.finish_read(idx, v);
            }
            Some(wait) => {
                self.history
                    .pending_reads
                    .push(PendingRead { idx, eid, wait });
                self.poll_reads();
            }
        }
        Ok(())
    }

    fn finish_read(&mut self, idx: usize, v: Option<Vec<u8>>) {
        let now = self.cluster.now;
        let r = &mut self.history.reads[idx];
        r.resp_us = Some(now);
        r.value = Some(v);
    }

    /// Serves every read in flight whose condition now holds, as the host
    /// (`Env::get_at`) would; abandons those that cannot complete.
    fn poll_reads(&mut self) {
        if self.history.pending_reads.is_empty() {
            return;
        }
        let now = self.cluster.now;
        let unsafe_reads = self.plan.faults.unsafe_master_reads;
        let loose = self.plan.faults.reads_ignore_permanence;
        let pending = std::mem::take(&mut self.history.pending_reads);
        let mut still = Vec::new();
        for mut p in pending {
            let inv = self.history.reads[p.idx].inv_us;
            let key = self.history.reads[p.idx].key.clone();
            if !self.cluster.site(p.eid).is_up() {
                continue;
            }
            let local = self.cluster.local_now(p.eid);
            let timed_out = now > inv + READ_TIMEOUT_US;
            match &mut p.wait {
                ReadWait::Master { gen, since, asked } => {
                    let core = self.cluster.core(p.eid);
                    core.advance(local);
                    if core.role() != Role::Master || core.gen() != *gen {
                        continue;
                    }
                    let ok = unsafe_reads
                        || (match since {
                            None => core.lease_valid(),
                            Some(t) => core.confirmed_since(*t),
                        } && (loose || core.key_is_permanent(&key).unwrap_or(false)));
                    if ok {
                        let v = core.storage().store().get(&key).map(<[u8]>::to_vec);
                        self.finish_read(p.idx, v);
                        continue;
                    }
                    if timed_out {
                        continue;
                    }
                    if since.is_none() && !*asked {
                        // Ask for fresh grants rather than wait for the next refresh.
                        *asked = true;
                        let _ = core.confirm_start(local);
                        self.cluster.collect(p.eid);
                    }
                }
                ReadWait::Follower { id } => {
                    let id = *id;
                    let core = self.cluster.core(p.eid);
                    match core.read_index_state(id) {
                        None => continue,
                        Some(ReadIndexState::Ready(lsn))
                            if core.applied_through(lsn)
                                && (loose || core.key_is_permanent(&key).unwrap_or(false)) =>
                        {
                            let v = core.storage().store().get(&key).map(<[u8]>::to_vec);
                            core.read_index_finish(id);
                            self.finish_read(p.idx, v);
                            continue;
                        }
                        Some(_) if timed_out => {
                            core.read_index_finish(id);
                            continue;
                        }
                        Some(_) => {}
                    }
                }
            }
            still.push(p);
        }
        // A read started while polling (none today) would be kept too.
        still.append(&mut self.history.pending_reads);
        self.history.pending_reads = still;
    }

    /// The per-key histories: every write (with its outcome) and every
    /// completed linearizable or follower read.
    pub fn key_histories(&self) -> BTreeMap<Vec<u8>, Vec<RegOp>> {
        let mut h: BTreeMap<Vec<u8>, Vec<RegOp>> = BTreeMap::new();
        for c in &self.history.commits {
            // The last op on a key in one commit is what the commit writes there.
            let mut last: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
            for op in &c.ops {
                match op {
                    Op::Put { key, value } => last.insert(key, Some(value)),
                    Op::Delete { key } => last.insert(key, None),
                };
            }
            for (k, v) in last {
                h.entry(k.to_vec()).or_default().push(RegOp {
                    inv: c.at_us,
                    resp: c.perm_at_us,
                    kind: RegKind::Write(v.map(<[u8]>::to_vec)),
                    note: format!(
                        "commit step {} on {} gen {} at {}",
                        c.step, c.eid, c.gen, c.lsn
                    ),
                });
            }
        }
        for r in &self.history.reads {
            if r.kind == ReadKind::Stale {
                continue;
            }
            let (Some(resp), Some(v)) = (r.resp_us, &r.value) else {
                continue;
            };
            h.entry(r.key.clone()).or_default().push(RegOp {
                inv: r.inv_us,
                resp: Some(resp),
                kind: RegKind::Read(v.clone()),
                note: format!("{:?} read step {} on {}", r.kind, r.step, r.eid),
            });
        }
        h
    }

    /// Invariant 6: per key, the history is linearizable. Returns the reads
    /// checked and the keys whose search was inconclusive.
    fn check_linearizability(&mut self) -> std::result::Result<(usize, usize), String> {
        self.history.pending_reads.clear();
        let mut checked = 0;
        let mut inconclusive = 0;
        for (key, mut ops) in self.key_histories() {
            let reads = ops
                .iter()
                .filter(|o| matches!(o.kind, RegKind::Read(_)))
                .count();
            if reads == 0 {
                continue;
            }
            ops.sort_by_key(|o| (o.inv, o.resp));
            match check_register(None, &ops, MAX_LIN_STATES) {
                Verdict::Ok => checked += reads,
                Verdict::Inconclusive => inconclusive += 1,
                Verdict::Violation => {
                    let mut s = format!(
                        "invariant 6 (linearizability): key {} has no linearization; its history (times in us, resp - = never reported permanent):",
                        show(&key)
                    );
                    for o in &ops {
                        let (what, v) = match &o.kind {
                            RegKind::Write(v) => ("write", v),
                            RegKind::Read(v) => ("read ", v),
                        };
                        let resp = o.resp.map_or("-".to_string(), |r| r.to_string());
                        let v = v.as_deref().map_or("<absent>".to_string(), show);
                        s.push_str(&format!(
                            "\n    [{} .. {resp}] {what} {v}  ({})",
                            o.inv, o.note
                        ));
                    }
                    return Err(s);
                }
            }
        }
        Ok((checked, inconclusive))
    }

    // ---------------------------------------------------------------- actions

    fn up_sites(&self) -> Vec<Eid> {
        self.cluster
            .sites
            .values()
            .filter(|s| s.is_up())
            .map(|s| s.eid)
            .collect()
    }

    fn down_sites(&self) -> Vec<Eid> {
        self.cluster
            .sites
            .values()
            .filter(|s| !s.is_up())
            .map(|s| s.eid)
            .collect()
    }

    fn pick(&mut self, v: &[Eid]) -> Option<Eid> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.below(v.len() as u64) as usize])
        }
    }

    fn act(&mut self) -> Check {
        let p = self.plan.clone();
        if p.add_at == Some(self.step) {
            return self.add_site();
        }
        if p.p_rogue > 0 && self.rng.chance(p.p_rogue) {
            // Test-only: a host that makes a site master by hand, against the rules.
            let up = self.up_sites();
            if let Some(e) = self.pick(&up) {
                self.note(format!("ROGUE rep_start(MASTER) on {e}"));
                let local = self.cluster.local_now(e);
                let _ = self.cluster.core(e).start(local, StartAs::Master, &[]);
                self.cluster.collect(e);
                return Ok(());
            }
        }
        if p.p_partition > 0 && self.rng.chance(p.p_partition) {
            self.partition();
            return Ok(());
        }
        if !self.cluster.blocked.is_empty() && self.rng.chance(p.p_heal) {
            self.note("heal network".into());
            self.cluster.heal();
            return Ok(());
        }
        if p.p_crash > 0 && self.rng.chance(p.p_crash) {
            // Keep a majority of the group able to come back: never crash
            // below one up site (the rest restart later).
            let up = self.up_sites();
            if up.len() > 1 {
                // Half the time the master: the interesting case.
                let masters = self.masters_up();
                let e = match self.pick(&masters) {
                    Some(m) if self.rng.chance(500) => m,
                    _ => self.pick(&up).expect("non-empty"),
                };
                self.crash(e);
                return Ok(());
            }
        }
        if self.rng.chance(p.p_restart) {
            let down = self.down_sites();
            if let Some(e) = self.pick(&down) {
                return self.restart(e);
            }
        }
        if p.p_jump > 0 && self.rng.chance(p.p_jump) {
            // Every process stalls: time moves on with nothing delivered,
            // then every due timer and message fires at once.
            let jump = 100_000 + self.rng.below(1_500_000);
            self.note(format!("clock jump +{jump}us"));
            self.cluster.now += jump;
            return Ok(());
        }
        if p.p_site_jump > 0 && self.rng.chance(p.p_site_jump) {
            let ids = self.cluster.ids();
            let e = self.pick(&ids).expect("sites");
            let jump = 1_000 + self.rng.below(800_000);
            self.note(format!("site {e}'s clock jumps +{jump}us"));
            self.cluster.jump_clock(e, jump);
            return Ok(());
        }
        if self.rng.chance(p.p_commit) {
            return self.commit();
        }
        Ok(())
    }

    fn partition(&mut self) {
        let ids = self.cluster.ids();
        match self.rng.below(4) {
            0 => {
                // Majority/minority or random split.
                let mut a = Vec::new();
                let mut b = Vec::new();
                for &e in &ids {
                    if self.rng.chance(500) {
                        a.push(e)
                    } else {
                        b.push(e)
                    }
                }
                self.note(format!("partition {a:?} | {b:?}"));
                self.cluster.partition(&[&a, &b]);
            }
            1 => {
                let masters = self.masters_up();
                let e = match self.pick(&masters) {
                    Some(m) if self.rng.chance(600) => m,
                    _ => self.pick(&ids).expect("sites"),
                };
                self.note(format!("isolate {e}"));
                self.cluster.isolate(e);
            }
            2 => {
                // One-way: `a` cannot hear from `b` (b hears a).
                let a = self.pick(&ids).expect("sites");
                let others: Vec<Eid> = ids.iter().copied().filter(|&x| x != a).collect();
                let k = 1 + self.rng.below(others.len() as u64) as usize;
                let from: Vec<Eid> = others[..k].to_vec();
                self.note(format!("one-way: {a} cannot hear {from:?}"));
                for f in from {
                    self.cluster.blocked.insert((f, a));
                }
            }
            _ => {
                // Three-way split.
                let mut g: [Vec<Eid>; 3] = Default::default();
                for &e in &ids {
                    g[self.rng.below(3) as usize].push(e);
                }
                self.note(format!("partition {:?} | {:?} | {:?}", g[0], g[1], g[2]));
                self.cluster.partition(&[&g[0], &g[1], &g[2]]);
            }
        }
    }

    /// The nemesis reacts to a new master (Jepsen style): with the seed's
    /// chance, right when it takes office and before its announcement is
    /// delivered, the network changes: the new master is cut off while
    /// everyone else is reconnected, or a random split happens.
    fn strike(&mut self) {
        let Some(m) = self.nemesis.take() else {
            return;
        };
        if self.step >= self.plan.steps
            || self.plan.p_nemesis == 0
            || !self.rng.chance(self.plan.p_nemesis)
        {
            return;
        }
        if self.rng.chance(600) {
            self.note(format!("nemesis: heal all, then isolate new master {m}"));
            self.cluster.heal();
            self.cluster.isolate(m);
        } else {
            self.note(format!("nemesis: repartition as {m} takes office"));
            self.partition();
        }
    }

    fn crash(&mut self, e: Eid) {
        let f = self.plan.faults.clone();
        if f.lying_disk && self.rng.chance(300) {
            self.note(format!("crash {e} LYING DISK (wiped)"));
            self.history.pending_reads.retain(|p| p.eid != e);
            self.cluster.crash_wipe(e);
            return;
        }
        let pending = self.cluster.site(e).fs.pending_ops();
        let mode = match self.rng.below(3) {
            0 => CrashMode::LoseUnsynced,
            1 => CrashMode::KeepAll,
            _ if f.torn_crash => CrashMode::KeepPrefix {
                ops: self.rng.below(pending as u64 + 1) as usize,
                torn_bytes: self.rng.below(200) as usize,
            },
            _ => CrashMode::LoseUnsynced,
        };
        self.note(format!("crash {e} {mode:?} (pending ops {pending})"));
        if !f.crash && !f.lying_disk {
            return;
        }
        self.history.pending_reads.retain(|p| p.eid != e);
        self.cluster.crash(e, mode);
    }

    fn restart(&mut self, e: Eid) -> Check {
        self.note(format!("restart {e}"));
        self.cluster
            .restart(e)
            .map_err(|err| format!("site {e} failed to restart from its disk: {err}"))?;
        let n = self.nsites;
        // A restarted site reads its settings from the plan; keep the current group size.
        self.cluster
            .set_nsites_all(n)
            .map_err(|err| format!("set nsites {n} after restarting {e}: {err}"))
    }

    fn add_site(&mut self) -> Check {
        let e = self.next_eid;
        // With leases the group size is fixed once started (as in Berkeley
        // DB): growing it would need every site's nsites changed at once.
        if (e as usize) > self.plan.priorities.len() || self.plan.lease {
            return Ok(());
        }
        self.next_eid += 1;
        self.nsites += 1;
        self.note(format!("add site {e} (nsites {})", self.nsites));
        self.cluster
            .add_site(e)
            .map_err(|err| format!("add_site {e}: {err}"))?;
        self.cluster.site_mut(e).clock = self.plan.clocks[(e - 1) as usize];
        self.cluster.site_mut(e).slow_us = self.plan.slow_us[(e - 1) as usize];
        let n = self.nsites;
        self.cluster
            .set_nsites_all(n)
            .map_err(|err| format!("set nsites {n} for new site {e}: {err}"))?;
        self.cluster.start(e, StartAs::Client);
        Ok(())
    }

    fn masters_up(&self) -> Vec<Eid> {
        self.cluster.masters()
    }

    fn commit(&mut self) -> Check {
        let masters = self.masters_up();
        let Some(m) = self.pick(&masters) else {
            self.history.failed_attempts += 1;
            return Ok(());
        };
        let nops = 1 + self.rng.below(3);
        let mut ops = Vec::new();
        for i in 0..nops {
            let key = self.random_key();
            if self.rng.chance(200) {
                ops.push(Op::Delete { key });
            } else {
                ops.push(Op::Put {
                    key,
                    value: format!("v{}-{}-{i}", self.step, self.cluster.now).into_bytes(),
                });
            }
        }
        let gen = self.cluster.core(m).gen();
        match self.cluster.commit(m, &ops) {
            Ok(lsn) => {
                let mut payload = Vec::new();
                encode_ops(&ops, &mut payload);
                self.note(format!("commit on {m} gen {gen} at {lsn}"));
                self.history.commits.push(CommitRecord {
                    step: self.step,
                    at_us: self.cluster.now,
                    eid: m,
                    lsn,
                    gen,
                    ops,
                    payload,
                    perm_at_us: None,
                });
                self.history.pending.push(self.history.commits.len() - 1);
                self.fast_check()
            }
            Err(e) => {
                self.note(format!("commit on {m} failed: {e}"));
                self.history.failed_attempts += 1;
                Ok(())
            }
        }
    }

    // ------------------------------------------------------------ event loop

    /// Runs the cluster for `us`, checking the per-event invariants after
    /// every delivery and every timer round.
    fn run_checked(&mut self, us: u64) -> Check {
        let end = self.cluster.now.saturating_add(us);
        loop {
            while let Some((&(at, _), p)) = self.cluster.queue.iter().next() {
                if at > self.cluster.now {
                    break;
                }
                self.trace.u64(at);
                self.trace.u64(p.from as u64);
                self.trace.u64(p.to as u64);
                self.trace.bytes(&p.control);
                self.cluster.deliver_one();
                self.fast_check()?;
                self.poll_reads();
                self.strike();
            }
            self.cluster.tick_due();
            self.fast_check()?;
            self.poll_reads();
            self.strike();
            if self
                .cluster
                .queue
                .keys()
                .next()
                .is_some_and(|k| k.0 <= self.cluster.now)
            {
                continue;
            }
            let next = self.cluster.next_event_time();
            if next > end {
                break;
            }
            self.cluster.now = self.cluster.now.max(next);
        }
        self.cluster.now = end;
        Ok(())
    }

    // ------------------------------------------------------------ invariants

    /// Cheap checks after every event: one master per generation, new
    /// masters hold every permanent record, and permanence bookkeeping.
    fn fast_check(&mut self) -> Check {
        let masters: Vec<(Eid, u32)> = self
            .cluster
            .sites
            .values()
            .filter_map(|s| {
                let c = s.core.as_ref()?;
                (c.role() == Role::Master).then(|| (s.eid, c.gen()))
            })
            .collect();
        for &(eid, gen) in &masters {
            match self.master_of_gen.get(&gen) {
                Some(&other) if other != eid => {
                    return Err(format!(
                        "invariant 1: two masters in generation {gen}: sites {other} and {eid}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.master_of_gen.insert(gen, eid);
                }
            }
            if self.masters_seen.insert((eid, gen)) {
                self.note(format!("site {eid} is master of gen {gen}"));
                self.nemesis = Some(eid);
                self.check_holds_committed(eid, "new master")?;
            }
            self.absorb_perm(eid, gen)?;
        }
        // Commits reported permanent by their own master.
        let now = self.cluster.now;
        let mut still = Vec::new();
        let pending = std::mem::take(&mut self.history.pending);
        for i in pending {
            let c = &self.history.commits[i];
            let Some(core) = self.cluster.site(c.eid).core.as_ref() else {
                continue;
            };
            if core.role() != Role::Master || core.gen() != c.gen {
                continue;
            }
            if core.is_permanent(c.lsn) {
                let rec = core.storage().log().read(c.lsn).map_err(|e| {
                    format!("master {} cannot read its commit {}: {e}", c.eid, c.lsn)
                })?;
                if rec.payload != c.payload || rec.gen != c.gen {
                    return Err(format!(
                        "invariant 2: master {} reports {} permanent but its record there is not the commit it made",
                        c.eid, c.lsn
                    ));
                }
                self.history.commits[i].perm_at_us = Some(now);
            } else {
                still.push(i);
            }
        }
        self.history.pending = still;
        Ok(())
    }

    /// Records what master `eid` (generation `gen`) declares permanent.
    fn absorb_perm(&mut self, eid: Eid, gen: u32) -> Check {
        let core = self.cluster.site(eid).core();
        let perm = core.perm_lsn();
        let seen = self
            .perm_seen
            .get(&(eid, gen))
            .copied()
            .unwrap_or(Lsn::ZERO);
        if perm <= seen {
            return Ok(());
        }
        self.perm_seen.insert((eid, gen), perm);
        let log = core.storage().log();
        let mut raw = Vec::new();
        let mut newly = Vec::new();
        for rec in log.iter_from(Lsn::ZERO) {
            let rec = rec.map_err(|e| format!("master {eid} cannot read its log: {e}"))?;
            if rec.lsn <= seen {
                continue;
            }
            if rec.lsn > perm {
                break;
            }
            raw.clear();
            log.read_raw_into(rec.lsn, &mut raw)
                .map_err(|e| format!("master {eid} read {}: {e}", rec.lsn))?;
            newly.push((rec.lsn, rec.gen, hash_of(&raw)));
        }
        for (lsn, g, h) in newly {
            match self.committed.get(&lsn) {
                Some(&(g0, h0)) if (g0, h0) != (g, h) => {
                    return Err(format!(
                        "invariant 3: master {eid} (gen {gen}) declares the record at {lsn} (gen {g}) permanent, \
                         but an earlier master declared a different record (gen {g0}) permanent there"
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed.insert(lsn, (g, h));
                }
            }
        }
        Ok(())
    }

    /// Every permanent record is in `eid`'s log (those below its log's start
    /// were replaced by a snapshot and cannot be compared record by record).
    fn check_holds_committed(&self, eid: Eid, who: &str) -> Check {
        let core = self.cluster.site(eid).core();
        let log = core.storage().log();
        let base = log.base_lsn();
        let mut raw = Vec::new();
        for (&lsn, &(g, h)) in &self.committed {
            if lsn <= base {
                continue;
            }
            if lsn > log.last_lsn() {
                return Err(format!(
                    "invariant 2: {who} {eid} (gen {}) lacks the permanent record at {lsn} (gen {g}): its log ends at {}",
                    core.gen(),
                    log.last_lsn()
                ));
            }
            raw.clear();
            match log.read_raw_into(lsn, &mut raw) {
                Ok(hdr) if hdr.gen == g && hash_of(&raw) == h => {}
                Ok(hdr) => {
                    return Err(format!(
                        "invariant 2: {who} {eid} (gen {}) holds a different record at {lsn} (gen {}) than the permanent one (gen {g})",
                        core.gen(),
                        hdr.gen
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "invariant 2: {who} {eid} (gen {}) has no record at the permanent LSN {lsn} (gen {g}): {e}",
                        core.gen()
                    ))
                }
            }
        }
        Ok(())
    }

    /// After every step: every site's records up to its own permanent point
    /// equal the records masters declared permanent.
    fn full_check(&mut self, at_end: bool) -> Check {
        for eid in self.up_sites() {
            let core = self.cluster.core(eid);
            let perm = core.stats(false).perm_lsn;
            let log = core.storage().log();
            let mut raw = Vec::new();
            for (&lsn, &(g, h)) in self.committed.range(..=perm) {
                if lsn <= log.base_lsn() || lsn > log.last_lsn() {
                    continue;
                }
                raw.clear();
                let ok = match log.read_raw_into(lsn, &mut raw) {
                    Ok(hdr) => hdr.gen == g && hash_of(&raw) == h,
                    Err(_) => false,
                };
                if !ok {
                    return Err(format!(
                        "invariant 3: site {eid} considers its log permanent up to {perm}, \
                         but its record at {lsn} differs from the one a master declared permanent (gen {g})"
                    ));
                }
            }
            if at_end {
                self.check_holds_committed(eid, "site at the end")?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ the end

    fn converged(&mut self) -> Option<Eid> {
        let masters = self.cluster.masters();
        if masters.len() != 1 {
            return None;
        }
        let m = masters[0];
        let last = self.cluster.site(m).core().storage().log().last_lsn();
        for s in self.cluster.sites.values() {
            let c = s.core.as_ref()?;
            if s.eid == m {
                continue;
            }
            if c.role() != Role::Client
                || c.master() != Some(m)
                || c.is_syncing()
                || c.storage().log().last_lsn() != last
            {
                return None;
            }
        }
        Some(m)
    }

    fn final_heal(&mut self) -> Check {
        self.note("final heal: network healed, faults off, every site restarted".into());
        self.cluster.heal();
        self.cluster.faults = NetFaults::default();
        for e in self.down_sites() {
            self.restart(e)?;
        }
        // Liveness: a bounded quiet period.
        let deadline = self.cluster.now + 20_000_000;
        let mut master = None;
        while self.cluster.now < deadline {
            self.run_checked(50_000)?;
            if let Some(m) = self.converged() {
                master = Some(m);
                break;
            }
        }
        let Some(m) = master else {
            return Err(format!(
                "invariant 5 (liveness): no stable master followed by every site 20 s after healing; {}",
                self.describe()
            ));
        };
        self.full_check(true)?;
        // A new write must become permanent and reach everyone.
        let ops = [Op::Put {
            key: b"final".to_vec(),
            value: self.plan.seed.to_le_bytes().to_vec(),
        }];
        let lsn = self.cluster.commit(m, &ops).map_err(|e| {
            format!("invariant 5 (liveness): final commit on master {m} failed: {e}")
        })?;
        self.note(format!("final commit on {m} at {lsn}"));
        let deadline = self.cluster.now + 5_000_000;
        loop {
            self.run_checked(20_000)?;
            let perm = self
                .cluster
                .site(m)
                .core
                .as_ref()
                .is_some_and(|c| c.is_permanent(lsn));
            if perm && self.converged() == Some(m) {
                break;
            }
            if self.cluster.now >= deadline {
                return Err(format!(
                    "invariant 5 (liveness): the final write at {lsn} on master {m} did not become permanent everywhere within 5 s; {}",
                    self.describe()
                ));
            }
        }
        self.full_check(true)?;
        // Invariant 4: identical logs and stores, and the store is the log's replay.
        let mcore = self.cluster.site(m).core();
        let mlog = mcore.storage().log();
        let mdigest = mcore.storage().store().digest();
        if mlog.base_lsn().is_zero() {
            let mut replay = Store::new();
            for rec in mlog.iter_from(Lsn::ZERO) {
                let rec = rec.map_err(|e| format!("master {m} log: {e}"))?;
                if rec.rtype == RecordType::Commit {
                    replay
                        .apply_payload(&rec.payload, mcore.storage().op_limits())
                        .map_err(|e| format!("master {m} replay: {e}"))?;
                }
            }
            if replay.digest() != mdigest {
                return Err(format!(
                    "invariant 4: master {m}'s store is not the replay of its log"
                ));
            }
        }
        let mut mrecs = BTreeMap::new();
        let mut raw = Vec::new();
        for rec in mlog.iter_from(Lsn::ZERO) {
            let rec = rec.map_err(|e| format!("master {m} log: {e}"))?;
            raw.clear();
            mlog.read_raw_into(rec.lsn, &mut raw)
                .map_err(|e| format!("master {m} log: {e}"))?;
            mrecs.insert(rec.lsn, hash_of(&raw));
        }
        for s in self.cluster.sites.values() {
            let c = s.core();
            let d = c.storage().store().digest();
            if d != mdigest {
                return Err(format!(
                    "invariant 4: site {}'s store (digest {d:x}) differs from master {m}'s ({mdigest:x}) after quiescence",
                    s.eid
                ));
            }
            let log = c.storage().log();
            for rec in log.iter_from(Lsn::ZERO) {
                let rec = rec.map_err(|e| format!("site {} log: {e}", s.eid))?;
                if rec.lsn <= mlog.base_lsn() {
                    continue;
                }
                raw.clear();
                log.read_raw_into(rec.lsn, &mut raw)
                    .map_err(|e| format!("site {} log: {e}", s.eid))?;
                if mrecs.get(&rec.lsn) != Some(&hash_of(&raw)) {
                    return Err(format!(
                        "invariant 4: site {}'s record at {} differs from master {m}'s after quiescence",
                        s.eid, rec.lsn
                    ));
                }
            }
        }
        // Every commit its master reported permanent is in the final state.
        for c in &self.history.commits {
            if c.perm_at_us.is_none() || c.lsn <= mlog.base_lsn() {
                continue;
            }
            let rec = mlog.read(c.lsn).map_err(|e| {
                format!(
                    "invariant 2: permanent commit {} (gen {}, step {}) is gone from the final log: {e}",
                    c.lsn, c.gen, c.step
                )
            })?;
            if rec.gen != c.gen || rec.payload != c.payload {
                return Err(format!(
                    "invariant 2: permanent commit {} (gen {}, step {}) was replaced by a record of gen {}",
                    c.lsn, c.gen, c.step, rec.gen
                ));
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for site in self.cluster.sites.values() {
            match site.core.as_ref() {
                None => s.push_str(&format!("[{} down] ", site.eid)),
                Some(c) => {
                    let failed = site
                        .statuses
                        .iter()
                        .filter(|st| matches!(st, Status::JoinFailure))
                        .count();
                    let jf = site
                        .events
                        .iter()
                        .filter(|e| matches!(e, Event::JoinFailure))
                        .count();
                    s.push_str(&format!(
                        "[{} {:?} gen {} egen {} master {:?} syncing {} last {} prio {} joinfail {}/{}] ",
                        site.eid,
                        c.role(),
                        c.gen(),
                        c.egen(),
                        c.master(),
                        c.is_syncing(),
                        c.storage().log().last_lsn(),
                        c.config().priority,
                        failed,
                        jf
                    ))
                }
            }
        }
        s
    }
}

/// Runs one seed with the given fault classes.
pub fn run_seed(seed: u64, faults: &FaultSet) -> std::result::Result<Outcome, Violation> {
    Sim::new(Plan::from_seed(seed, faults)).run()
}
