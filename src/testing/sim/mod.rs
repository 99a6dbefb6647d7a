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
//! one-way links) that heal, crashes with every [`CrashMode`](crate::testing::CrashMode) (torn writes
//! included) and restarts from disk, clock jumps, and one site joining the
//! group part-way, hosts taking checkpoints (small log segments, so lagging
//! sites install snapshots). It also draws the ack policy (every one of
//! them; `Quorum` and `All` most often), leases (half the seeds), tied
//! priorities, and, for swarm testing, how densely fault classes are on and
//! which aimed moments are armed (`aimed.rs`: a crash or an isolation right
//! after an ack, a durable vote, a lease grant, a new master taking office,
//! the start of a snapshot install). Draws added after the regression seeds
//! were found come from their own random stream, each behind a [`FaultSet`]
//! switch, so those seeds replay as they were. Then [`Sim::run`] takes `steps` steps; each applies one
//! action (a commit on the master, a fault, a heal, a restart, ...) and runs
//! the cluster for a few simulated milliseconds. At the end every fault is
//! healed, every site restarted, and the group must converge.
//!
//! # Invariants
//!
//! Each is checked by its own function in `checks.rs` (TigerBeetle's
//! `state_checker.zig` style), named after what it asserts.
//!
//! Invariants 2, 3 and 6 rest on the promise of `All` and `Quorum` that a
//! permanent commit survives every election; with `One`, `None` and
//! `AllAvailable` they are off, invariant 7 checks what those promise, and a
//! client that cannot roll back a record it knew as permanent (`JoinFailure`)
//! is restored from the master, as Berkeley DB documents for hosts.
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
//!    the master and follower reads on clients, served as `Env::get_at`
//!    serves them: through the core's own read policy
//!    ([`Core::read_begin`](crate::rep::Core::read_begin) /
//!    [`Core::read_poll`](crate::rep::Core::read_poll)), so the checker
//!    checks the policy real hosts run, not a copy of it. Every completed
//!    read of those kinds, and every write (invoked at `commit`, completed
//!    when its master reported it permanent, otherwise of unknown outcome),
//!    must fit one register history per key. Stale reads are recorded, not
//!    checked. A read that does not complete within [`READ_TIMEOUT_US`] is
//!    abandoned.
//! 7. Whenever a master reports a commit permanent, its own log is durable
//!    there and as many clients as its ack policy names hold the record
//!    durably (`All`: every other site; `Quorum`: electable clients forming a
//!    majority with the master; `One`: one client). In membership mode
//!    only the master's group counts.
//! 8. Membership mode (a third of the seeds, `membership.rs`): every master
//!    is a member of the group in force there, and the groups masters use
//!    have overlapping majorities (each against the one it replaced, a new
//!    master's against the previous generation's master's last).
//! 9. The data workload (`data.rs`, [`FaultSet::data_workload`]): writes
//!    into named databases (created through the log), read-modify-write
//!    transactions on counters, and range reads through the core's snapshot
//!    read policy. Invariant 6 keeps one register per (database, key), so
//!    keys of different databases never stand for each other, and takes a
//!    linearizable or follower range read as a read of every key within its
//!    bounds at the read's window (per key: not that all of them come from
//!    one common point; see `check_linearizability`). Every range read, of
//!    any level, is in ascending key order, within its bounds, and returns
//!    only values some commit wrote there. At the end, each counter's value
//!    is a chain of exactly that many increments of the run, each one more
//!    than what it read, holding every increment reported permanent: no
//!    lost update, none counted twice (`check_counters`). A conflict at
//!    commit is an expected outcome.
//!
//! # Coverage
//!
//! Every run counts how often it reached each risky situation
//! ([`Coverage`]); `tests/sim.rs` prints the table and requires every
//! count above zero over the default seed range.
//!
//! # Clocks and leases
//!
//! Every site has its own clock ([`SiteClock`](crate::testing::testkit::SiteClock)): an offset and a
//! rate drawn per seed within the configured skew (`clockskew` (102, 100):
//! rates in [1.0, 1.02]); in seeds without leases a site's clock also jumps
//! forward now and then. (Not with leases: a forward jump on a client ends
//! its lease promise early, outside the skew bound leases assume.) Half the
//! seeds run with master leases on (lease 150 ms, election 300 ms);
//! every site starts as a client and the first master is elected.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod aimed;
mod checks;
mod coverage;
mod data;
mod data_checks;
mod edge_reads;
mod faults;
mod history;
pub mod linearizability;
mod membership;
mod plan;
mod workload;

use crate::lsn::Lsn;
use crate::rep::{Eid, Event, StartAs, Status};
use crate::testing::testkit::{Cluster, Rng};
use crate::wire::{peek_control, MsgType};

pub use aimed::Moment;
pub use coverage::Coverage;
pub use data::{COUNTERS, NAMED_DBS};
pub use history::{CommitRecord, History, Increment, RangeRecord, ReadKind, ReadRecord};
pub use membership::{majorities_can_be_disjoint, OverlapChecker};
pub use plan::{Edges, FaultSet, Plan, CLOCKSKEW, LEASE_US, RATE_FAST_PPM};

/// Keys of the workload: few, so reads and writes conflict.
pub const KEYS: u64 = 6;
/// Counters of the read-modify-write transactions: few, so they conflict.
pub const COUNTER_KEYS: u64 = 2;
/// A read not served within this (simulated) time is abandoned.
pub const READ_TIMEOUT_US: u64 = 1_000_000;
/// The linearizability search gives up on a key after this many states.
pub const MAX_LIN_STATES: usize = 200_000;

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
    /// How often the run reached each risky situation.
    pub coverage: Coverage,
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
    /// Until this simulated time the network keeps its partition (see
    /// `partition_minority_master`).
    partition_held_until: u64,
    /// Every crashed site's last LSN when it crashed.
    last_at_crash: BTreeMap<Eid, Lsn>,
    /// Per site, the join failures the host has already acted on.
    joins_restored: BTreeMap<Eid, usize>,
    /// The risky situations reached so far.
    coverage: Coverage,
    /// Per site, the type of the last message it sent or took in.
    last_msg: BTreeMap<Eid, MsgType>,
    /// Sites installing a snapshot (internal init) now.
    installing: BTreeSet<Eid>,
    /// Moments noted for aimed faults, not yet decided.
    aimed: Vec<(aimed::Moment, Eid, Eid)>,
    /// Membership mode's state (see `membership.rs`).
    memb: membership::MembState,
    /// The data workload's random stream (`data.rs`), apart from `rng` so
    /// that with the workload off every seed runs as it did before it.
    drng: Rng,
    /// Read-modify-write transactions between their read and their commit.
    rmws: Vec<data::PendingRmw>,
    /// Read-modify-write transactions started (their tags).
    rmw_tags: u64,
    /// Reads scheduled at instants of a lease (`edge_reads.rs`).
    edge_reads: Vec<edge_reads::EdgeRead>,
    /// Their random stream, apart from `rng` like `drng`.
    erng: Rng,
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
        let drng = Rng::new(plan.seed ^ 0xDA7A_0B5E_55ED);
        let erng = Rng::new(plan.seed ^ 0xED6E_5EAD);
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
            partition_held_until: 0,
            last_at_crash: BTreeMap::new(),
            joins_restored: BTreeMap::new(),
            coverage: Coverage::default(),
            last_msg: BTreeMap::new(),
            installing: BTreeSet::new(),
            aimed: Vec::new(),
            memb: Default::default(),
            drng,
            rmws: Vec::new(),
            rmw_tags: 0,
            edge_reads: Vec::new(),
            erng,
        };
        for eid in 1..=n as Eid {
            sim.cluster.site_mut(eid).clock = sim.plan.clocks[(eid - 1) as usize];
            sim.cluster.site_mut(eid).slow_us = sim.plan.slow_us[(eid - 1) as usize];
        }
        if sim.plan.membership {
            sim.start_membership();
            return sim;
        }
        // Every site starts as a client: the first master is elected (with
        // leases, `rep_start(MASTER)` fails unless elected).
        for eid in 1..=n as Eid {
            sim.cluster.start(eid, StartAs::Client);
        }
        sim
    }

    pub(super) fn note(&mut self, s: String) {
        self.trace.bytes(s.as_bytes());
        self.trace.u64(self.cluster.now);
        if self.recent.len() >= 300 {
            self.recent.remove(0);
        }
        self.recent
            .push(format!("step {} t={} {s}", self.step, self.cluster.now));
    }

    pub(super) fn violation(&self, what: String) -> Violation {
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
        for eid in self.up_sites() {
            self.coverage.rollback_prev_gen += self.cluster.core(eid).stats(false).txns_rolled_back;
        }
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
            coverage: self.coverage,
        })
    }

    pub(super) fn run_inner(&mut self) -> Check {
        self.run_checked(50_000)?;
        for step in 0..self.plan.steps {
            self.step = step;
            self.act()?;
            if self.rng.chance(self.plan.p_read) {
                self.start_reads()?;
            }
            if self.plan.faults.data_workload {
                self.data_step()?;
            }
            let quantum = 500 + self.rng.below(self.plan.max_quantum_us);
            self.run_checked(quantum)?;
            self.full_check(false)?;
            self.restore_failed_joins()?;
        }
        self.step = self.plan.steps;
        self.final_heal()
    }

    /// Runs the cluster for `us`, checking the per-event invariants after
    /// every delivery and every timer round.
    pub(super) fn run_checked(&mut self, us: u64) -> Check {
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
                let (from, to) = (p.from, p.to);
                let moment = match peek_control(&p.control) {
                    Ok((t, ..)) => {
                        self.last_msg.insert(from, t);
                        self.last_msg.insert(to, t);
                        aimed::Moment::of_message(t)
                    }
                    Err(_) => None,
                };
                let up = self.cluster.is_up(to) && !self.cluster.is_blocked(from, to);
                self.cluster.deliver_one();
                if let (Some(m), true) = (moment, up) {
                    self.aim(m, from, to);
                    if m == aimed::Moment::LeaseGrant {
                        self.on_lease_grant(from, to);
                    }
                }
                self.observe_installs();
                self.fast_check()?;
                self.poll_reads();
                self.poll_ranges()?;
                self.strike();
                self.fire_aimed();
            }
            self.cluster.tick_due();
            self.observe_installs();
            self.fast_check()?;
            self.start_due_edge_reads()?;
            self.poll_reads();
            self.poll_ranges()?;
            self.strike();
            self.fire_aimed();
            if self
                .cluster
                .queue
                .keys()
                .next()
                .is_some_and(|k| k.0 <= self.cluster.now)
            {
                continue;
            }
            let next = self.cluster.next_event_time().min(self.next_edge_read());
            if next > end {
                break;
            }
            self.cluster.now = self.cluster.now.max(next);
        }
        self.cluster.now = end;
        Ok(())
    }

    pub(super) fn describe(&self) -> String {
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
                    let group = c.membership().map(|g| {
                        let e: Vec<Eid> = g.members().iter().map(|m| m.eid).collect();
                        let gs = &c.group_state;
                        let j: Vec<Eid> = gs.joiners.keys().copied().collect();
                        format!(
                            " group {e:?} removed {} leaving {} refused {} joiners {j:?} settled {}",
                            gs.removed,
                            gs.leaving,
                            gs.refused.is_some(),
                            c.role() == crate::rep::Role::Master && c.change_settled()
                        )
                    });
                    s.push_str(&format!(
                        "[{} {:?} gen {} egen {} master {:?} syncing {} last {} prio {} joinfail {}/{}{}] ",
                        site.eid,
                        c.role(),
                        c.gen(),
                        c.egen(),
                        c.master(),
                        c.is_syncing(),
                        c.storage().log().last_lsn(),
                        c.config().priority,
                        failed,
                        jf,
                        group.unwrap_or_default()
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
