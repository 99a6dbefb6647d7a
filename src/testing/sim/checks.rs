//! The invariants, checked while the run goes and at its end.

use std::collections::BTreeMap;

use super::aimed::Moment;
use super::linearizability::{check_register, RegKind, Verdict};
use super::{hash_of, show, Check, Sim, MAX_LIN_STATES};
use crate::db::{Op, Store};
use crate::log::record::RecordType;
use crate::lsn::Lsn;
use crate::rep::{AckPolicy, Eid, Role};
use crate::testing::testkit::NetFaults;

impl Sim {
    /// Cheap checks after every event (TigerBeetle's state checker: one
    /// function per invariant, each run on every event).
    pub(super) fn fast_check(&mut self) -> Check {
        for (eid, gen) in self.running_masters() {
            self.check_one_master_per_generation(eid, gen)?;
            if self.masters_seen.insert((eid, gen)) {
                self.note(format!("site {eid} is master of gen {gen}"));
                self.count_master_change(gen);
                self.aim(Moment::NewMaster, eid, eid);
                self.on_new_master(eid);
                self.check_new_master_holds_permanent(eid)?;
            }
            if self.plan.survives_elections() {
                self.check_masters_agree_on_permanent(eid, gen)?;
            }
        }
        self.check_membership()?;
        self.check_reported_commits()
    }

    /// Coverage: a master change with records unacknowledged or a snapshot
    /// being installed.
    fn count_master_change(&mut self, gen: u32) {
        let h = &self.history;
        if h.pending.iter().any(|&i| h.commits[i].gen < gen) {
            self.coverage.master_change_unacked += 1;
        }
        if !self.installing.is_empty() {
            self.coverage.snapshot_interrupted += 1;
        }
    }

    /// Coverage: which sites are installing a snapshot now.
    pub(super) fn observe_installs(&mut self) {
        let mut started = Vec::new();
        for s in self.cluster.sites.values() {
            let Some(c) = s.core.as_ref() else {
                continue;
            };
            if c.in_internal_init() {
                if self.installing.insert(s.eid) {
                    self.coverage.snapshot_installs += 1;
                    started.push(s.eid);
                }
            } else {
                self.installing.remove(&s.eid);
            }
        }
        for e in started {
            self.aim(Moment::SnapshotInstall, e, e);
        }
    }

    fn running_masters(&self) -> Vec<(Eid, u32)> {
        self.cluster
            .sites
            .values()
            .filter_map(|s| {
                let c = s.core.as_ref()?;
                (c.role() == Role::Master).then(|| (s.eid, c.gen()))
            })
            .collect()
    }

    /// Invariant 1: at most one master per generation, ever.
    fn check_one_master_per_generation(&mut self, eid: Eid, gen: u32) -> Check {
        match self.master_of_gen.get(&gen) {
            Some(&other) if other != eid => Err(format!(
                "invariant 1: two masters in generation {gen}: sites {other} and {eid}"
            )),
            Some(_) => Ok(()),
            None => {
                self.master_of_gen.insert(gen, eid);
                Ok(())
            }
        }
    }

    /// Invariant 2, at the moment a master takes office: it holds every
    /// record any master declared permanent.
    ///
    /// (With an ack policy that promises less than surviving every election,
    /// no records are collected as permanent, and this holds trivially.)
    fn check_new_master_holds_permanent(&self, eid: Eid) -> Check {
        self.check_holds_committed(eid, "new master")
    }

    /// Invariant 2, as commits are reported: a commit its own master reports
    /// permanent is, at its LSN, the record that master made (and is timed
    /// as complete for the linearizability check).
    fn check_reported_commits(&mut self) -> Check {
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
            if core.is_permanent(c.lsn) && c.lsn <= core.storage().log().base_lsn() {
                // A checkpoint trimmed it before it could be compared.
                self.history.commits[i].perm_at_us = Some(now);
            } else if core.is_permanent(c.lsn) {
                let rec = core.storage().log().read(c.lsn).map_err(|e| {
                    format!("master {} cannot read its commit {}: {e}", c.eid, c.lsn)
                })?;
                if rec.payload != c.payload || rec.gen != c.gen {
                    return Err(format!(
                        "invariant 2: master {} reports {} permanent but its record there is not the commit it made",
                        c.eid, c.lsn
                    ));
                }
                let (eid, lsn, gen) = (c.eid, c.lsn, c.gen);
                self.check_ack_policy_promise(eid, lsn, gen)?;
                self.history.commits[i].perm_at_us = Some(now);
            } else {
                still.push(i);
            }
        }
        self.history.pending = still;
        Ok(())
    }

    /// Invariant 7: when master `eid` reports the commit at `lsn` (of
    /// generation `gen`) permanent, what its ack policy promises holds: the
    /// record is durable in the master's log and in the logs of as many
    /// clients as the policy names (`All`: every other site of `nsites`;
    /// `Quorum`: enough electable clients to form a majority with the
    /// master; `One`: one client; `None` and `AllAvailable`: none required).
    ///
    /// A client counts as holding the record when its log has it, of that
    /// generation, at or below its durable point. A crashed site counts when
    /// its log reached `lsn` before the crash (its disk is out of reach).
    fn check_ack_policy_promise(&self, eid: Eid, lsn: Lsn, gen: u32) -> Check {
        let core = self.cluster.site(eid).core();
        let durable = core.storage().log().durable_lsn();
        if durable < lsn {
            return Err(format!(
                "invariant 7: master {eid} reports {lsn} permanent but its own log is durable only to {durable}"
            ));
        }
        let group = core.membership().filter(|_| self.plan.membership);
        let r = self.check_ack_policy_promise_in(eid, lsn, gen, group);
        match self.group_before_change(eid, lsn) {
            // The commit may have become permanent under the group the
            // master had until this very event (a change that shrank the
            // group of one made everything permanent at once).
            Some(prev) if r.is_err() => self.check_ack_policy_promise_in(eid, lsn, gen, Some(prev)),
            _ => r,
        }
    }

    fn check_ack_policy_promise_in(
        &self,
        eid: Eid,
        lsn: Lsn,
        gen: u32,
        group: Option<&crate::membership::Membership>,
    ) -> Check {
        let core = self.cluster.site(eid).core();
        let nsites = group.map_or(core.config().nsites as usize, |g| g.len());
        let policy = self.plan.ack_policy;
        let (mut copies, mut electable) = (0usize, 0usize);
        let mut raw = Vec::new();
        // Under `One` any other site's copy keeps the promise: the master
        // may report a commit (when its host polls) after the client that
        // acked it left the group, and a removal takes no copy away.
        let counted = |s: Eid| policy == AckPolicy::One || group.map_or(true, |g| g.contains(s));
        for s in self
            .cluster
            .sites
            .values()
            .filter(|s| s.eid != eid && counted(s.eid))
        {
            let holds = match s.core.as_ref() {
                None => self.last_at_crash.get(&s.eid).is_some_and(|&l| l >= lsn),
                // Under `One`, a client that acked may since have followed a
                // newer master that lacks the record: the policy allows it.
                Some(c) if c.gen() > gen && policy == AckPolicy::One => true,
                Some(c) => {
                    let log = c.storage().log();
                    lsn <= log.base_lsn()
                        || (log.durable_lsn() >= lsn
                            && log.read_raw_into(lsn, &mut raw).is_ok_and(|h| h.gen == gen))
                }
            };
            if holds {
                copies += 1;
                if s.config.rep.priority > 0 {
                    electable += 1;
                }
            }
        }
        let (ok, need) = match policy {
            AckPolicy::All => (copies + 1 >= nsites, "every other site"),
            AckPolicy::Quorum => (
                electable >= nsites / 2,
                "electable clients forming a majority with the master",
            ),
            // A replicated group of one has no client to ask.
            AckPolicy::One => (copies >= 1 || nsites == 1 && group.is_some(), "one client"),
            AckPolicy::None | AckPolicy::AllAvailable => (true, ""),
        };
        if ok {
            return Ok(());
        }
        Err(format!(
            "invariant 7: master {eid} (gen {gen}, {policy:?}, nsites {nsites}) reports {lsn} permanent, \
             but only {copies} other sites ({electable} electable) hold it durably; the policy promises {need}"
        ))
    }

    /// Invariant 3, among masters: records what master `eid` (generation
    /// `gen`) declares permanent; two masters never declare different
    /// records permanent at one LSN.
    fn check_masters_agree_on_permanent(&mut self, eid: Eid, gen: u32) -> Check {
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

    /// Invariant 3, after every step: every site's records up to its own
    /// permanent point equal the records masters declared permanent (at the
    /// end, every site holds every permanent record: invariant 2).
    pub(super) fn full_check(&mut self, at_end: bool) -> Check {
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

    /// Invariant 6: per key, the history is linearizable. Returns the reads
    /// checked and the keys whose search was inconclusive.
    ///
    /// Registers are (database, key): a named database's keys are other
    /// registers than the default database's of the same name, so a write
    /// that landed in the wrong database is a read of a value never written
    /// there. A range read counts as one read of every key of the workload
    /// within its bounds (absent where it returned nothing), each at the
    /// range's window. That checks each key of a range against the model,
    /// not that all of them come from one common point: the search stays
    /// per key (a search over every key at once costs too much), and the
    /// snapshot's atomicity across keys is left to the store's own tests.
    /// `check_range_shape` adds what holds for every range read, stale ones
    /// included.
    pub(super) fn check_linearizability(&mut self) -> std::result::Result<(usize, usize), String> {
        self.history.pending_reads.clear();
        if !self.plan.survives_elections() {
            // A write the policy called permanent may be lost to an election
            // by design, and a read may have seen it first.
            return Ok((0, 0));
        }
        let mut checked = 0;
        let mut inconclusive = 0;
        for ((db, key), mut ops) in self.key_histories() {
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
                        "invariant 6 (linearizability): key {} of {} has no linearization; its history (times in us, resp - = never reported permanent):",
                        show(&key),
                        if db.is_empty() { "the default database".to_string() } else { format!("database {db:?}") }
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

    pub(super) fn converged(&mut self) -> Option<Eid> {
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
        self.membership_converged(m).then_some(m)
    }

    pub(super) fn final_heal(&mut self) -> Check {
        self.note("final heal: network healed, faults off, every site restarted".into());
        // Range reads still waiting would be served a store holding the
        // final heal's own write, which is not part of the workload's
        // history: the host gives up on them.
        for p in std::mem::take(&mut self.history.pending_ranges) {
            if self.cluster.site(p.eid).is_up() {
                self.cluster.core(p.eid).read_cancel(p.ticket);
            }
        }
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
            self.restore_failed_joins()?;
            self.membership_heal()?;
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
            self.membership_heal()?;
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
        self.check_store_is_log_replay(m)?;
        self.check_sites_identical(m)?;
        if !self.plan.survives_elections() {
            return Ok(());
        }
        self.check_permanent_commits_survive(m)?;
        self.check_counters(m)
    }

    /// Invariant 4: after quiescence the master's store is exactly the
    /// replay of its log (when the log still starts at the beginning).
    fn check_store_is_log_replay(&self, m: Eid) -> Check {
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
                } else if rec.rtype == RecordType::Membership {
                    // The store holds the group its log implies, too.
                    replay.set_group_bytes(rec.lsn, &rec.payload);
                }
            }
            if replay.digest() != mdigest {
                return Err(format!(
                    "invariant 4: master {m}'s store is not the replay of its log"
                ));
            }
        }
        Ok(())
    }

    /// Invariant 4: after quiescence every site holds the master's log and
    /// store.
    fn check_sites_identical(&self, m: Eid) -> Check {
        let mcore = self.cluster.site(m).core();
        let mlog = mcore.storage().log();
        let mdigest = mcore.storage().store().digest();
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
        Ok(())
    }

    /// Invariant 2, at the end: every commit its master reported permanent
    /// is in the final state.
    fn check_permanent_commits_survive(&self, m: Eid) -> Check {
        let mlog = self.cluster.site(m).core().storage().log();
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
}
