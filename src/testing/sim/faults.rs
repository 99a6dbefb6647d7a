//! Fault injection: the step action (crash, restart, partition, heal,
//! clock jump, group growth, a rogue host) and the nemesis.

use super::{Check, Sim};
use crate::lsn::Lsn;
use crate::rep::{Core, Eid, Role, StartAs, Status};
use crate::testing::sim_fs::CrashMode;
use crate::wire::MsgType;

impl Sim {
    pub(super) fn up_sites(&self) -> Vec<Eid> {
        self.cluster
            .sites
            .values()
            .filter(|s| s.is_up())
            .map(|s| s.eid)
            .collect()
    }

    /// The running sites whose core satisfies `keep`, in eid order.
    pub(super) fn sites_where(&self, keep: impl Fn(Eid, &Core) -> bool) -> Vec<Eid> {
        self.cluster
            .sites
            .values()
            .filter(|s| s.core.as_ref().is_some_and(|c| keep(s.eid, c)))
            .map(|s| s.eid)
            .collect()
    }

    /// The running clients that follow a master.
    pub(super) fn followers_up(&self) -> Vec<Eid> {
        self.sites_where(|_, c| c.role() == Role::Client && c.master().is_some())
    }

    pub(super) fn down_sites(&self) -> Vec<Eid> {
        self.cluster
            .sites
            .values()
            .filter(|s| !s.is_up())
            .map(|s| s.eid)
            .collect()
    }

    pub(super) fn pick(&mut self, v: &[Eid]) -> Option<Eid> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.below(v.len() as u64) as usize])
        }
    }

    pub(super) fn act(&mut self) -> Check {
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
        // A held partition (`partition_minority_master`) stays as it is.
        let held = self.cluster.now < self.partition_held_until;
        if !held && p.p_partition > 0 && self.rng.chance(p.p_partition) {
            self.partition();
            return Ok(());
        }
        if !held && !self.cluster.blocked.is_empty() && self.rng.chance(p.p_heal) {
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
        if p.p_member > 0 && self.rng.chance(p.p_member) {
            return self.membership_action();
        }
        if p.p_checkpoint > 0 && self.rng.chance(p.p_checkpoint) {
            let up = if p.faults.checkpoint_anywhere {
                self.up_sites()
            } else {
                self.settled_masters()
            };
            if let Some(e) = self.pick(&up) {
                return self.checkpoint(e);
            }
        }
        if self.rng.chance(p.p_commit) {
            return self.commit();
        }
        Ok(())
    }

    pub(super) fn partition(&mut self) {
        let ids = self.cluster.ids();
        // With the fifth shape off the draw is the same one as before it,
        // so older seeds replay unchanged.
        let shapes = if self.plan.faults.minority_master_partitions {
            5
        } else {
            4
        };
        match self.rng.below(shapes) {
            4 => self.partition_minority_master(&ids),
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
                self.after_network_change();
            }
            1 => {
                let masters = self.masters_up();
                let e = match self.pick(&masters) {
                    Some(m) if self.rng.chance(600) => m,
                    _ => self.pick(&ids).expect("sites"),
                };
                self.note(format!("isolate {e}"));
                self.cluster.isolate(e);
                self.after_network_change();
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
                self.after_network_change();
            }
            _ => {
                // Three-way split.
                let mut g: [Vec<Eid>; 3] = Default::default();
                for &e in &ids {
                    g[self.rng.below(3) as usize].push(e);
                }
                self.note(format!("partition {:?} | {:?} | {:?}", g[0], g[1], g[2]));
                self.cluster.partition(&[&g[0], &g[1], &g[2]]);
                self.after_network_change();
            }
        }
    }

    /// Cuts the group in two with a master on the smaller side, which holds
    /// as many sites as a side can without a majority of `ids` (half,
    /// rounded down: the master alone of three, with one client of five or
    /// four, two of seven); without a master, a random site stands in.
    fn partition_minority_master(&mut self, ids: &[Eid]) {
        let masters = self.masters_up();
        let Some(m) = self.pick(&masters).or_else(|| self.pick(ids)) else {
            return;
        };
        let mut rest: Vec<Eid> = ids.iter().copied().filter(|&e| e != m).collect();
        let mut minority = vec![m];
        let side = ids.len() / 2;
        while minority.len() < side && !rest.is_empty() {
            let i = self.rng.below(rest.len() as u64) as usize;
            minority.push(rest.swap_remove(i));
        }
        // Held long enough for the majority to outwait its lease promises,
        // elect, and commit while the old master still takes requests (the
        // other shapes rarely last that long: heals and new shapes come
        // every few steps).
        let hold_us = 1_000_000 + self.rng.below(1_500_000);
        self.partition_held_until = self.cluster.now + hold_us;
        self.note(format!(
            "partition {minority:?} | {rest:?} (master {m} in the minority, held {hold_us}us)"
        ));
        self.cluster.partition(&[&minority, &rest]);
        self.after_network_change();
    }

    /// A master just took office: the nemesis may strike before its
    /// announcement lands.
    pub(super) fn on_new_master(&mut self, eid: Eid) {
        self.nemesis = Some(eid);
    }

    /// The nemesis reacts to a new master (Jepsen style): with the seed's
    /// chance, right when it takes office and before its announcement is
    /// delivered, the network changes: the new master is cut off while
    /// everyone else is reconnected, or a random split happens.
    pub(super) fn strike(&mut self) {
        self.strike_after_change();
        let Some(m) = self.nemesis.take() else {
            return;
        };
        if self.cluster.now < self.partition_held_until {
            return;
        }
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
            self.after_network_change();
        } else {
            self.note(format!("nemesis: repartition as {m} takes office"));
            self.partition();
        }
    }

    pub(super) fn crash(&mut self, e: Eid) {
        if self.spares_lone_master(e) {
            return;
        }
        let f = self.plan.faults.clone();
        if f.lying_disk && self.rng.chance(300) {
            self.note(format!("crash {e} LYING DISK (wiped)"));
            self.before_crash(e);
            self.last_at_crash.insert(e, Lsn::ZERO);
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
        self.before_crash(e);
        self.cluster.crash(e, mode);
    }

    /// With an ack policy that does not promise to survive elections, a
    /// client may hold a record it knew as permanent that the new master
    /// lacks: it cannot roll it back and reports `JoinFailure`. The host
    /// then does what Berkeley DB documents for that status: restores the
    /// site from the master (here: an empty disk, then a full sync).
    /// Under `All` and `Quorum` a join failure is left alone: the group must
    /// converge without help, or liveness fails.
    pub(super) fn restore_failed_joins(&mut self) -> Check {
        if self.plan.survives_elections() {
            return Ok(());
        }
        for e in self.up_sites() {
            let failures = self
                .cluster
                .statuses(e)
                .iter()
                .filter(|s| matches!(s, Status::JoinFailure))
                .count();
            let done = self.joins_restored.entry(e).or_insert(0);
            if failures > *done {
                *done = failures;
                self.note(format!(
                    "site {e} failed to join: restore it from the master"
                ));
                self.coverage.joins_restored += 1;
                self.before_crash(e);
                self.last_at_crash.insert(e, Lsn::ZERO);
                self.cluster.crash_wipe_keeping_vote(e);
                self.restart(e)?;
            }
        }
        Ok(())
    }

    /// What a crash of `e` ends: its reads, and (counted) a snapshot
    /// install or the rollbacks it made.
    pub(super) fn before_crash(&mut self, e: Eid) {
        self.count_membership_crash(e);
        self.history.pending_reads.retain(|p| p.eid != e);
        if self.last_msg.get(&e) == Some(&MsgType::Ack) {
            self.coverage.crash_near_ack += 1;
        }
        if self.installing.remove(&e) {
            self.coverage.snapshot_interrupted += 1;
        }
        let core = self.cluster.core(e);
        self.coverage.rollback_prev_gen += core.stats(false).txns_rolled_back;
        let last = core.storage().log().last_lsn();
        self.last_at_crash.insert(e, last);
    }

    /// The network changed: a snapshot being installed may have lost its master.
    pub(super) fn after_network_change(&mut self) {
        if !self.installing.is_empty() {
            self.coverage.snapshot_interrupted += 1;
        }
    }

    /// The host of `e` takes a checkpoint (`Env::checkpoint`), trimming log
    /// segments wholly before it.
    fn checkpoint(&mut self, e: Eid) -> Check {
        let storage = self.cluster.core(e).storage_mut();
        let before = storage.log().base_lsn();
        let lsn = storage
            .checkpoint()
            .map_err(|err| format!("site {e} failed to checkpoint: {err}"))?;
        let trimmed = storage.log().base_lsn() > before;
        self.note(format!("checkpoint on {e} at {lsn} (trimmed {trimmed})"));
        if trimmed {
            self.coverage.checkpoints += 1;
        }
        Ok(())
    }

    /// Masters all of whose records are permanent: a checkpoint there holds
    /// nothing an election can take back (under `All` and `Quorum`).
    fn settled_masters(&mut self) -> Vec<Eid> {
        if !self.plan.survives_elections() {
            return Vec::new();
        }
        let mut v = self.masters_up();
        v.retain(|&m| {
            let c = self.cluster.site(m).core();
            c.is_permanent(c.storage().log().last_lsn())
        });
        v
    }

    pub(super) fn restart(&mut self, e: Eid) -> Check {
        self.note(format!("restart {e}"));
        self.cluster
            .restart(e)
            .map_err(|err| format!("site {e} failed to restart from its disk: {err}"))?;
        if self.plan.membership {
            // The group is in the site's log.
            return Ok(());
        }
        let n = self.nsites;
        // A restarted site reads its settings from the plan; keep the current group size.
        self.cluster
            .set_nsites_all(n)
            .map_err(|err| format!("set nsites {n} after restarting {e}: {err}"))
    }

    pub(super) fn add_site(&mut self) -> Check {
        let e = self.next_eid;
        // With leases the group size is fixed once started (as in Berkeley
        // DB): growing it would need every site's nsites changed at once.
        if (e as usize) > self.plan.priorities.len() || self.plan.lease {
            return Ok(());
        }
        self.next_eid += 1;
        if self.plan.membership {
            // A site never in the group starts as a client and joins
            // through the protocol; nobody else's settings change.
            self.note(format!("start site {e}, never in the group, to join"));
            self.cluster
                .add_site(e)
                .map_err(|err| format!("add_site {e}: {err}"))?;
            self.cluster.site_mut(e).clock = self.plan.clocks[(e - 1) as usize];
            self.cluster.site_mut(e).slow_us = self.plan.slow_us[(e - 1) as usize];
            self.cluster.start(e, StartAs::Client);
            return Ok(());
        }
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

    pub(super) fn masters_up(&self) -> Vec<Eid> {
        self.cluster.masters()
    }
}
