//! What a seed decides before the run starts: the fault classes in use
//! ([`FaultSet`]) and everything drawn from the seed ([`Plan`]).

use crate::env::EnvConfig;
use crate::rep::{AckPolicy, Eid};
use crate::testing::testkit::{short_timeouts, NetFaults, Rng, SiteClock};

/// The default [`FaultSet::membership_share`]: one seed in twelve.
pub const MEMBERSHIP_SHARE: u32 = 80;

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
    /// (see [`Cluster::crash_wipe`](crate::testing::testkit::Cluster::crash_wipe)). Off in the default mix.
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
    /// `regression_read_sees_write_not_yet_permanent` in tests/sim.rs),
    /// through the core's test hook `ReadTicket::ignore_permanence_for_testing`.
    /// Off in the default mix.
    pub reads_ignore_permanence: bool,
    /// Test-only host bug: the sites run `AckPolicy::One` while the host
    /// believes (and the checker checks) the plan's policy, as a host that
    /// promised its users more than it configured. Off in the default mix.
    pub configured_one: bool,
    /// Seeds run every ack policy, not only `Quorum` (each checked for what
    /// it promises; see `checks.rs`).
    pub every_ack_policy: bool,
    /// Leases on in half the seeds (instead of 40%).
    pub even_leases: bool,
    /// Some seeds give every electable site the same priority (ties).
    pub tied_priorities: bool,
    /// Hosts take checkpoints on random sites, with small log segments, so
    /// logs get trimmed and lagging clients need a snapshot (internal init).
    pub checkpoint: bool,
    /// Checkpoints on any site at any time (as `Env::checkpoint` allows).
    /// Without it a host checkpoints only on a master whose records are all
    /// permanent, under `All` or `Quorum`. It found
    /// `regression_client_trimmed_past_the_divergence` (tests/sim.rs).
    pub checkpoint_anywhere: bool,
    /// Aimed faults (FoundationDB's `BUGGIFY`): right after an ack, a durable
    /// vote, a new master taking office, a lease grant or the start of a
    /// snapshot install, a crash or a partition strikes with a raised chance.
    pub aimed: bool,
    /// Swarm testing: each seed draws how densely fault classes are on
    /// (few, some or nearly all) and which aimed moments are armed, so rare
    /// combinations get whole runs to themselves.
    pub swarm: bool,
    /// Some seeds run in membership mode (`membership.rs`): the group is
    /// replicated group membership, founded by site 1 and grown, shrunk and
    /// regrown through the protocol only.
    pub membership: bool,
    /// Per mille of the seeds in membership mode, when `membership` is on.
    /// A membership seed costs about 3.5 times another (more sites, more
    /// traffic), so the default keeps `cargo test --test sim` within its
    /// time; the draw is monotonic, so the membership seeds of a smaller
    /// share are those of a larger one, run identically (the seeds in
    /// `tests/sim.rs` were found with 333).
    pub membership_share: u32,
    /// Steers clear of two core liveness bugs in membership mode, each a
    /// failing scenario in `tests/membership_sim_regressions.rs`; turn off
    /// once they are fixed. (1) A change settles only through
    /// acknowledgements, which clients send only when they append, so a
    /// change whose acks were lost stays unsettled, and a joiner whose ack
    /// the master did not keep is not admitted, until the next write: at
    /// the final heal a host whose master has a change unsettled or joiners
    /// waiting writes a record now and then (seeds 18 and 4 stall without). (2) A master that
    /// crashes right after adding the first site to a group of one is never
    /// elected again (the added site does not know it and does not vote):
    /// such a master is not crashed (seed 99 stalls without). (3) The master
    /// admits a removed site that comes back on a new disk on the acks of its
    /// old disk, and counts them towards permanence: removed sites come back
    /// only by a restart from their own disk (seed 1642 breaks invariant 7
    /// without).
    pub membership_workarounds: bool,
    /// Leases in membership seeds as often as in the others. Off replays
    /// the membership seeds found while membership mode ran without
    /// leases (every seed named in `tests/sim.rs` before this knob).
    pub membership_leases: bool,
    /// The data workload (`data.rs`): writes into named databases,
    /// read-modify-write transactions on counters, range reads, and their
    /// checks. Its choices come from a stream of their own, so with it off
    /// the regression seeds replay as they were found.
    pub data_workload: bool,
    /// Test-only host bug: read-modify-write transactions commit without
    /// the commit-time validation of their reads, so concurrent increments
    /// lose updates. Off in the default mix.
    pub rmw_skips_validation: bool,
    /// Test-only host bug: writes meant for a named database land in the
    /// default one (the host encodes the wrong database id), while the
    /// checker believes they went where they were meant. Off in the
    /// default mix.
    pub misfiled_named_writes: bool,
    /// A fifth partition shape: the master with as many clients as stay
    /// short of a majority (one of five, two of seven). That side still
    /// grants, confirms and acknowledges, so only the majority arithmetic
    /// of leases, confirmation rounds and acks keeps it from acting as the
    /// group; no other shape reliably makes one. Off replays the seeds
    /// found before it.
    pub minority_master_partitions: bool,
    /// Timing at the edges the configuration allows ([`Edges`]): clock
    /// rates at the skew bound in both directions, clients that call an
    /// election while their lease promise still binds, and reads on a lease
    /// master at every instant of its lease, most of them around its end.
    /// From a stream of their own; off replays the seeds found before.
    pub timing_edges: bool,
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
            configured_one: false,
            every_ack_policy: true,
            even_leases: true,
            tied_priorities: true,
            checkpoint: true,
            checkpoint_anywhere: true,
            aimed: true,
            swarm: true,
            membership: true,
            membership_share: MEMBERSHIP_SHARE,
            membership_workarounds: false,
            membership_leases: true,
            data_workload: true,
            rmw_skips_validation: false,
            misfiled_named_writes: false,
            minority_master_partitions: true,
            timing_edges: true,
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
    /// The ack policy of every site.
    pub ack_policy: AckPolicy,
    /// Per-mille chance per step that a site takes a checkpoint (then log
    /// segments are small, so it trims its log).
    pub p_checkpoint: u32,
    /// Per-mille chance that an armed aimed moment strikes (0 = off).
    pub p_aim: u32,
    /// Which aimed moments are armed: a bit per [`Moment`](super::Moment).
    pub aim_moments: u8,
    /// Membership mode (see `membership.rs`): every site runs
    /// `GroupMembership`, site 1 founds the group, the rest join.
    pub membership: bool,
    /// Per-mille chance per step of a membership action (membership mode).
    pub p_member: u32,
    /// Per-mille chance that a master crashes right after it wrote a
    /// membership record (membership mode, aimed faults on).
    pub p_crash_after_change: u32,
    /// Timing at the configuration's edges ([`FaultSet::timing_edges`]).
    pub edges: Edges,
}

/// The skew allowance every site is configured with (`clockskew`: fast,
/// slow).
pub const CLOCKSKEW: (u32, u32) = (102, 100);
/// The fastest clock rate [`CLOCKSKEW`] admits, in parts per million of
/// the slowest.
pub const RATE_FAST_PPM: u64 = 1_000_000 * CLOCKSKEW.0 as u64 / CLOCKSKEW.1 as u64;
/// The lease timeout of the seeds with leases.
pub const LEASE_US: u64 = 150_000;

/// A seed's choices of timing at the edges the configuration allows
/// (issue 15): each where a protocol's arithmetic of time is tightest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edges {
    /// Every site's clock runs at one bound of the skew allowance or the
    /// other (both occur), so a master and a client differ by exactly the
    /// allowance, one way or the other, instead of by a uniform draw that
    /// rarely comes near it.
    pub clock_bounds: bool,
    /// A heartbeat monitor (and election timeout and retry) this short:
    /// with leases, shorter than the lease, so clients call elections
    /// while their promises still bind and the first election that can
    /// succeed runs the moment they lapse.
    pub monitor_us: Option<u64>,
    /// Per-mille chance, at each lease grant a master receives, of a
    /// linearizable read on it at an instant of the lease that grant
    /// extends; half of them around its end (see `edge_reads.rs`).
    pub p_edge_read: u32,
}

impl Edges {
    fn draw(seed: u64, faults: &FaultSet, lease: bool) -> Edges {
        if !faults.timing_edges {
            return Edges::default();
        }
        let mut r = Rng::new(seed ^ 0x71_E0ED_6E55);
        let clock_bounds = r.chance(500);
        let monitor_us = r.chance(400).then(|| {
            // Twice the heartbeat interval at least, so heartbeats that a
            // jittery network delays do not call elections all the time.
            let least = 100_000;
            let most = if lease { LEASE_US } else { 200_000 };
            least + r.below(most - least)
        });
        let p_edge_read = if lease && r.chance(700) {
            100 + r.below(400) as u32
        } else {
            0
        };
        Edges {
            clock_bounds,
            monitor_us,
            p_edge_read,
        }
    }

    /// Puts every clock at one bound of the allowance or the other, both
    /// bounds in use.
    fn bound_clocks(&self, seed: u64, clocks: &mut [SiteClock]) {
        if !self.clock_bounds || clocks.is_empty() {
            return;
        }
        let mut r = Rng::new(seed ^ 0xC10C_B0D5);
        let rate = |fast: bool| if fast { RATE_FAST_PPM } else { 1_000_000 };
        for c in clocks.iter_mut() {
            c.rate_ppm = rate(!r.chance(500));
        }
        if clocks.iter().all(|c| c.rate_ppm == clocks[0].rate_ppm) {
            let i = r.below(clocks.len() as u64) as usize;
            clocks[i].rate_ppm = rate(clocks[i].rate_ppm != RATE_FAST_PPM);
        }
    }
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
        // Choices added later come from their own stream, so that with them
        // off every seed's plan (and the regression seeds) stays as it was.
        let mut rv = Rng::new(seed ^ 0xAC4_9011_C1E5);
        let density = if faults.swarm {
            [250, 650, 950][rv.below(3) as usize]
        } else {
            650
        };
        let on = |r: &mut Rng, enabled: bool| enabled && r.chance(density);
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
        let lease = if faults.even_leases {
            rv.chance(500)
        } else {
            lease
        };
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
        let ack_policy = if faults.every_ack_policy {
            match rv.below(8) {
                0..=2 => AckPolicy::Quorum,
                3 | 4 => AckPolicy::All,
                5 => AckPolicy::AllAvailable,
                6 => AckPolicy::One,
                _ => AckPolicy::None,
            }
        } else {
            AckPolicy::Quorum
        };
        if faults.tied_priorities && rv.chance(250) {
            for p in priorities.iter_mut().filter(|p| **p > 0) {
                *p = 100;
            }
        }
        let p_checkpoint = if faults.checkpoint && rv.chance(500) {
            50 + rv.below(250) as u32
        } else {
            0
        };
        let p_aim = if faults.aimed && rv.chance(700) {
            50 + rv.below(250) as u32
        } else {
            0
        };
        let aim_moments = if faults.swarm {
            (rv.next_u64() as u8) | 1 << rv.below(5)
        } else {
            u8::MAX
        };
        // Membership mode, from its own stream (the other seeds stay as they
        // were). Site 1 founds the group (with leases too: founding is the
        // one appointment leases allow), so
        // it is electable, and one or two more sites exist that were never
        // in the group, to join part-way.
        let mut rm = Rng::new(seed ^ 0x3E3B_E125_4170);
        let membership = faults.membership && rm.chance(faults.membership_share);
        let (mut p_member, mut p_crash_after_change) = (0, 0);
        let mut clocks: Vec<SiteClock> = clocks;
        let lease = lease && (!membership || faults.membership_leases);
        let edges = Edges::draw(seed, faults, lease);
        edges.bound_clocks(seed, &mut clocks);
        if membership {
            p_member = 60 + rm.below(200) as u32;
            if faults.aimed && p_crash > 0 && rm.chance(700) {
                p_crash_after_change = 150 + rm.below(500) as u32;
            }
            if priorities[0] == 0 {
                priorities[0] = 10;
            }
            for _ in 0..1 + rm.below(2) {
                priorities.push(if rm.chance(250) {
                    0
                } else {
                    1 + rm.below(3) as u32 * 50
                });
                clocks.push(clocks[0]);
                slow_us.push(0);
            }
            // At the end the group is every site started so far (sites
            // 1..=k, k >= n): keep a majority of each such group electable,
            // or `Quorum` could never be met there.
            for k in n..=priorities.len() {
                while priorities[..k].iter().filter(|&&p| p > 0).count() < k / 2 + 1 {
                    let i = priorities[..k]
                        .iter()
                        .position(|&p| p == 0)
                        .expect("a zero");
                    priorities[i] = 10;
                }
            }
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
            ack_policy,
            p_checkpoint,
            p_aim,
            aim_moments,
            membership,
            p_member,
            p_crash_after_change,
            edges,
        }
    }

    /// True when the ack policy promises that a permanent commit survives
    /// every election (`All`, `Quorum`); the others promise less, and the
    /// checks that rest on that promise are off for them.
    pub fn survives_elections(&self) -> bool {
        matches!(self.ack_policy, AckPolicy::All | AckPolicy::Quorum)
    }

    pub(super) fn config(&self, eid: Eid) -> EnvConfig {
        let mut c = short_timeouts(self.n as u32);
        let r = &mut c.rep;
        r.priority = self.priorities[(eid - 1) as usize];
        r.ack_policy = if self.faults.configured_one {
            AckPolicy::One
        } else {
            self.ack_policy
        };
        r.election_retry_us = 600_000;
        r.ack_timeout_us = 200_000;
        r.clockskew = CLOCKSKEW;
        if self.lease {
            r.lease = true;
            r.lease_timeout_us = LEASE_US;
        }
        if let Some(m) = self.edges.monitor_us {
            r.heartbeat_monitor_us = m;
            r.election_timeout_us = m;
            r.election_retry_us = 2 * m;
        }
        if self.p_checkpoint > 0 {
            c.log.segment_size_bytes = 1024;
        }
        c.seed = Some(self.seed);
        if self.membership {
            // The group's size is what the log says: no nsites at all.
            c.rep.nsites = 0;
            c.rep.membership = true;
            c.rep.local_addr = format!("site{eid}").into_bytes();
        }
        c
    }
}
