//! Membership mode (a third of the seeds, [`Plan::membership`]): the group
//! is replicated group membership (`ConfigFlag::GroupMembership`), never a
//! size the simulator sets on every site at once.
//!
//! Site 1 starts as master on an empty disk and founds a group of itself;
//! every other site starts as a client and joins through the protocol
//! (`JoinReq`, admitted by the master once caught up, one change at a
//! time). During the run the workload sometimes has the master remove a
//! member (possibly a dead one), has a client member leave
//! (`leave_group`), brings a removed site back as a fresh joiner (a restart
//! from its disk, or a new empty disk once its removal is permanent) and
//! starts sites that were never in the group. Every fault of the plan
//! stays on; an aimed fault crashes a master right after it wrote a
//! membership record, while the change is unsettled.
//!
//! # The overlap invariant
//!
//! Every two majorities the group used must overlap. A master counts
//! acknowledgements and lease grants against the group in force there, and
//! won its election with votes counted against the group in force when it
//! took office. After every event the simulator records the group in force
//! at every master and checks, with [`majorities_can_be_disjoint`], that no
//! majority of it can be disjoint from a majority of the group it replaced
//! at that master; that the group a master takes office with overlaps the
//! last group of the master of the generation before; and that a change
//! made by a master still in office after a newer one took office overlaps
//! the group the newer one took office with.
//! Every master must also be a member of the group in force at it.
//!
//! Not compared: groups at clients and candidates (a site that was down for
//! two changes legitimately holds a group two steps behind, and may stand
//! in an election with it; it cannot win, as the voters that hold the newer
//! group have longer logs), and masters generations apart (a master cut
//! off since an older generation stays in office while later masters make
//! several changes; what it can no longer gather is a majority, which the
//! other invariants check).
//!
//! [`Plan::membership`]: super::Plan::membership

use std::collections::{BTreeMap, BTreeSet};

use super::{Check, Sim};
use crate::lsn::Lsn;
use crate::membership::Membership;
use crate::rep::{Eid, Role};

/// True when some majority of `a` and some majority of `b` share no site:
/// with `x = |a \ b|`, `y = |b \ a|`, `z = |a ∩ b|`, a majority of `a` needs
/// `ma - min(ma, x)` sites of the intersection at least, one of `b`
/// `mb - min(mb, y)`; they can be disjoint iff those fit in `z` together.
pub fn majorities_can_be_disjoint(a: &BTreeSet<Eid>, b: &BTreeSet<Eid>) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let x = a.difference(b).count();
    let y = b.difference(a).count();
    let z = a.intersection(b).count();
    let (ma, mb) = (a.len() / 2 + 1, b.len() / 2 + 1);
    (ma - ma.min(x)) + (mb - mb.min(y)) <= z
}

/// Checks groups in use together for overlapping majorities, remembering
/// the pairs already checked.
#[derive(Clone, Debug, Default)]
pub struct OverlapChecker {
    checked: BTreeSet<(BTreeSet<Eid>, BTreeSet<Eid>)>,
}

impl OverlapChecker {
    /// Checks that every two of `groups` (each with a note of where it was
    /// in force), all in use together, have overlapping majorities.
    pub fn check_together(&mut self, groups: &[(String, BTreeSet<Eid>)]) -> Result<(), String> {
        for (i, (wa, a)) in groups.iter().enumerate() {
            for (wb, b) in &groups[i + 1..] {
                if a == b {
                    continue;
                }
                let key = if a < b {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                };
                if self.checked.contains(&key) {
                    continue;
                }
                if majorities_can_be_disjoint(a, b) {
                    return Err(format!(
                        "membership invariant: groups {a:?} ({wa}) and {b:?} ({wb}) were in use \
                         together, and a majority of one can be disjoint from a majority of the other"
                    ));
                }
                self.checked.insert(key);
            }
        }
        Ok(())
    }
}

/// What membership mode tracks during a run.
#[derive(Clone, Debug, Default)]
pub(super) struct MembState {
    /// Per live site: the group in force, and whether it uses majorities
    /// (master) and its generation, when last looked at.
    last: BTreeMap<Eid, (Option<Membership>, bool, u32)>,
    /// Per live site: a cheap key of `last` (record LSN, group size,
    /// master, generation), compared first.
    keys: BTreeMap<Eid, (Lsn, Option<usize>, bool, u32)>,
    /// Per generation: the group in force at its master when it took office.
    office: BTreeMap<u32, BTreeSet<Eid>>,
    /// Per generation: the group last in force at its master.
    last_of: BTreeMap<u32, BTreeSet<Eid>>,
    /// Every distinct membership record seen: (LSN, members).
    records: BTreeSet<(Lsn, BTreeSet<Eid>)>,
    overlap: OverlapChecker,
    /// A master that just wrote a membership record: the aimed fault may
    /// crash it before the record spreads.
    fresh_change: Option<Eid>,
    /// Final heal: when the host may next write to settle a change.
    next_nudge_us: u64,
    /// Per master: the group it had before its latest change, and the
    /// event count (messages delivered, simulated time) of that change.
    replaced: BTreeMap<Eid, (Membership, u64, u64)>,
}

fn eids(g: &Membership) -> BTreeSet<Eid> {
    g.members().iter().map(|m| m.eid).collect()
}

impl Sim {
    /// Membership mode: site 1 founds the group as master; the others start
    /// as clients and join through the protocol.
    pub(super) fn start_membership(&mut self) {
        use crate::rep::StartAs;
        self.cluster.start(1, StartAs::Master);
        for eid in 2..=self.plan.n as Eid {
            self.cluster.start(eid, StartAs::Client);
        }
    }

    /// The membership invariants, after every event: every master is a
    /// member of its group; groups in use together, or by one master during
    /// its term, have overlapping majorities. Also counts the membership
    /// records written and notes a master that just wrote one.
    pub(super) fn check_membership(&mut self) -> Check {
        if !self.plan.membership {
            return Ok(());
        }
        let mut changed = false;
        let mut gone = Vec::new();
        for (&eid, _) in self.memb.last.iter() {
            if !self.cluster.is_up(eid) {
                gone.push(eid);
            }
        }
        for eid in gone {
            self.memb.last.remove(&eid);
            self.memb.keys.remove(&eid);
        }
        let mut new_records = Vec::new();
        for s in self.cluster.sites.values() {
            let Some(c) = s.core.as_ref() else {
                continue;
            };
            let uses = c.role() == Role::Master;
            let g = c.membership();
            // Cheap first: the record's LSN, the group's size, the role and
            // generation; the groups themselves only when one differs.
            let key = (c.group_state.change_lsn, g.map(|g| g.len()), uses, c.gen());
            if self.memb.keys.get(&s.eid) == Some(&key) {
                continue;
            }
            self.memb.keys.insert(s.eid, key);
            let same = self.memb.last.get(&s.eid).is_some_and(|(lg, lu, lgen)| {
                lg.as_ref() == g && *lu == uses && (!uses || *lgen == c.gen())
            });
            if same {
                continue;
            }
            changed = true;
            let group_changed = self
                .memb
                .last
                .get(&s.eid)
                .map_or(true, |(lg, _, _)| lg.as_ref() != g);
            if let (Some(g), true) = (g, group_changed) {
                new_records.push((s.eid, c.group_state.change_lsn, eids(g), c.role()));
                if let Some((Some(old), true, _)) = self.memb.last.get(&s.eid) {
                    let at = (self.cluster.delivered, self.cluster.now);
                    self.memb.replaced.insert(s.eid, (old.clone(), at.0, at.1));
                }
            }
            self.memb.last.insert(s.eid, (g.cloned(), uses, c.gen()));
        }
        for (eid, lsn, members, role) in new_records {
            let prev = self
                .memb
                .records
                .range(..(lsn, BTreeSet::new()))
                .next_back()
                .map(|(_, m)| m.len());
            if !self.memb.records.insert((lsn, members.clone())) {
                continue;
            }
            self.coverage.member_changes += 1;
            match prev {
                Some(p) if members.len() > p => self.coverage.member_joins += 1,
                Some(p) if members.len() < p => self.coverage.member_removals += 1,
                _ => {}
            }
            self.note(format!(
                "membership record at {lsn}: {members:?} (first seen at {eid})"
            ));
            if role == Role::Master {
                self.memb.fresh_change = Some(eid);
            }
        }
        if !changed {
            return Ok(());
        }
        let mut masters = Vec::new();
        for s in self.cluster.sites.values() {
            let Some(c) = s.core.as_ref() else {
                continue;
            };
            if c.role() != Role::Master {
                continue;
            }
            let Some(g) = c.membership() else {
                return Err(format!(
                    "membership invariant: site {} is master of gen {} with no group in force",
                    s.eid,
                    c.gen()
                ));
            };
            let members = eids(g);
            if !members.contains(&s.eid) {
                return Err(format!(
                    "membership invariant: site {} is master of gen {} but not a member of \
                     the group in force there {members:?}",
                    s.eid,
                    c.gen()
                ));
            }
            masters.push((s.eid, c.gen(), members));
        }
        for (eid, gen, members) in masters {
            self.check_master_group(eid, gen, members)
                .map_err(|e| format!("{e}; {}", self.describe()))?;
        }
        Ok(())
    }

    /// The overlap rule for the group `members` in force at master `eid`
    /// of generation `gen`: it overlaps the group it replaced there; the
    /// group a master took office with overlaps the last group of the
    /// master of the generation before; and a change an older master still
    /// in office makes overlaps the group the next master took office with.
    fn check_master_group(&mut self, eid: Eid, gen: u32, members: BTreeSet<Eid>) -> Check {
        let new_term = !self.memb.office.contains_key(&gen);
        if new_term {
            if let Some((&g, prev)) = self.memb.last_of.range(..gen).next_back() {
                let pair = [
                    (
                        format!("master {eid} taking office in gen {gen}"),
                        members.clone(),
                    ),
                    (format!("the master of gen {g}, last"), prev.clone()),
                ];
                self.memb.overlap.check_together(&pair)?;
            }
            self.memb.office.insert(gen, members.clone());
        } else if let Some(prev) = self.memb.last_of.get(&gen).filter(|p| **p != members) {
            let pair = [
                (format!("master {eid} earlier in gen {gen}"), prev.clone()),
                (format!("master {eid} next in gen {gen}"), members.clone()),
            ];
            self.memb.overlap.check_together(&pair)?;
            if let Some((&g, next)) = self.memb.office.range(gen + 1..).next() {
                let pair = [
                    (
                        format!("master {eid} of gen {gen}, still in office"),
                        members.clone(),
                    ),
                    (format!("the master of gen {g} taking office"), next.clone()),
                ];
                self.memb.overlap.check_together(&pair)?;
            }
        }
        self.memb.last_of.insert(gen, members);
        Ok(())
    }

    /// The group master `eid` had before its latest change, if a record at
    /// `lsn` may have become permanent under it: the change happened in the
    /// current event, or `lsn` comes before the change's record (the host
    /// may learn of a commit's permanence only when it polls, after a
    /// change that removed a site holding it; the majorities of the two
    /// groups overlap, so it stays safe).
    pub(super) fn group_before_change(&self, eid: Eid, lsn: Lsn) -> Option<&Membership> {
        let change_lsn = self.cluster.site(eid).core().group_state.change_lsn;
        self.memb
            .replaced
            .get(&eid)
            .filter(|(_, d, t)| {
                (*d == self.cluster.delivered && *t == self.cluster.now) || lsn < change_lsn
            })
            .map(|(g, _, _)| g)
    }

    /// The aimed fault: a master that just wrote a membership record
    /// crashes, with the plan's chance, before the record spreads.
    pub(super) fn strike_after_change(&mut self) {
        let Some(m) = self.memb.fresh_change.take() else {
            return;
        };
        if self.step >= self.plan.steps
            || self.plan.p_crash_after_change == 0
            || !self.cluster.is_up(m)
            || self.up_sites().len() < 2
            || !self.rng.chance(self.plan.p_crash_after_change)
        {
            return;
        }
        self.note(format!("aimed at a membership change: crash master {m}"));
        self.coverage.aimed_strikes += 1;
        self.crash(m);
    }

    /// The second workaround of `FaultSet::membership_workarounds`: a
    /// master whose unsettled change added the first site to a group of
    /// one is not crashed.
    pub(super) fn spares_lone_master(&mut self, e: Eid) -> bool {
        if !self.plan.membership || !self.plan.faults.membership_workarounds {
            return false;
        }
        let Some(c) = self.cluster.site(e).core.as_ref() else {
            return false;
        };
        let lone = c.role() == Role::Master
            && c.membership().is_some_and(|g| g.len() == 2)
            && !c.change_settled();
        if lone {
            self.note(format!(
                "spare master {e}: its first added site may not know it yet"
            ));
        }
        lone
    }

    /// Coverage, before `e` crashes: a master with a change unsettled.
    pub(super) fn count_membership_crash(&mut self, e: Eid) {
        if !self.plan.membership {
            return;
        }
        let c = self.cluster.core(e);
        if c.role() == Role::Master && c.membership().is_some() && !c.change_settled() {
            self.coverage.crash_unsettled_change += 1;
        }
    }

    /// One membership action of the workload: remove a member, ask a client
    /// to leave, bring a removed site back, or start a site never in the group.
    pub(super) fn membership_action(&mut self) -> Check {
        match self.rng.below(4) {
            0 => self.remove_member(),
            1 => self.leave_member(),
            2 => self.rejoin_removed(),
            _ => self.add_site(),
        }
    }

    fn remove_member(&mut self) -> Check {
        let masters = self.masters_up();
        let Some(m) = self.pick(&masters) else {
            return Ok(());
        };
        let Some(g) = self.cluster.core(m).membership() else {
            return Ok(());
        };
        let others: Vec<Eid> = g
            .members()
            .iter()
            .map(|x| x.eid)
            .filter(|&e| e != m)
            .collect();
        let Some(e) = self.pick(&others) else {
            return Ok(());
        };
        let local = self.cluster.local_now(m);
        let dead = !self.cluster.is_up(e);
        let r = self.cluster.core(m).remove_site(local, e);
        self.cluster.collect(m);
        match r {
            Ok(lsn) => self.note(format!(
                "master {m} removes {}site {e} at {lsn}",
                if dead { "dead " } else { "" }
            )),
            Err(err) => self.note(format!("master {m} cannot remove {e}: {err}")),
        }
        Ok(())
    }

    fn leave_member(&mut self) -> Check {
        let clients = self.sites_where(|e, c| {
            c.role() == Role::Client && c.membership().is_some_and(|g| g.contains(e))
        });
        let Some(e) = self.pick(&clients) else {
            return Ok(());
        };
        let local = self.cluster.local_now(e);
        let r = self.cluster.core(e).leave_group(local);
        self.cluster.collect(e);
        match r {
            Ok(()) => self.note(format!("site {e} asks to leave the group")),
            Err(err) => self.note(format!("site {e} cannot leave: {err}")),
        }
        Ok(())
    }

    /// A site no group holds any more comes back as a joiner: restarted
    /// from its disk, or, once its removal is permanent at the master, from
    /// a new empty disk.
    fn rejoin_removed(&mut self) -> Check {
        let removed = self.sites_where(|_, c| c.group_state.removed);
        let Some(e) = self.pick(&removed) else {
            return Ok(());
        };
        let masters = self.masters_up();
        let fresh_ok = masters.iter().any(|&m| {
            let c = self.cluster.site(m).core();
            c.membership().is_some_and(|g| !g.contains(e))
                && c.is_permanent(c.group_state.change_lsn)
        });
        self.before_crash(e);
        // Not while the core admits a joiner on its previous disk's acks
        // (the third workaround of `FaultSet::membership_workarounds`).
        let fresh_ok = fresh_ok && !self.plan.faults.membership_workarounds;
        if fresh_ok && self.rng.chance(500) {
            self.note(format!("removed site {e} comes back on a new disk"));
            self.cluster.crash_wipe(e);
            self.last_at_crash.insert(e, Lsn::ZERO);
        } else {
            self.note(format!("removed site {e} is restarted to join again"));
            self.cluster.crash(e, crate::testing::CrashMode::KeepAll);
        }
        self.restart(e)
    }

    /// Final heal: a site the group no longer holds is restarted, so that
    /// it asks to join again (a host that wants it back does so).
    pub(super) fn membership_heal(&mut self) -> Check {
        if !self.plan.membership {
            return Ok(());
        }
        let removed = self.sites_where(|_, c| c.group_state.removed);
        for e in removed {
            self.note(format!(
                "final heal: removed site {e} restarts to join again"
            ));
            self.before_crash(e);
            self.cluster.crash(e, crate::testing::CrashMode::KeepAll);
            self.restart(e)?;
        }
        if !self.plan.faults.membership_workarounds || self.cluster.now < self.memb.next_nudge_us {
            return Ok(());
        }
        for m in self.masters_up() {
            let c = self.cluster.core(m);
            if c.change_settled() && c.group_state.joiners.is_empty() {
                continue;
            }
            // The workaround (see `FaultSet::membership_workarounds`).
            self.memb.next_nudge_us = self.cluster.now + 500_000;
            let ops = [crate::db::Op::Put {
                key: b"settle".to_vec(),
                value: self.cluster.now.to_le_bytes().to_vec(),
            }];
            match self.cluster.commit(m, &ops) {
                Ok(lsn) => self.note(format!(
                    "final heal: master {m} has a change unsettled or joiners waiting: write at {lsn}"
                )),
                Err(e) => self.note(format!("final heal: write on {m} to settle failed: {e}")),
            }
        }
        Ok(())
    }

    /// Converged in membership mode: every site is a member of the
    /// master's group, and holds that group.
    pub(super) fn membership_converged(&self, m: Eid) -> bool {
        if !self.plan.membership {
            return true;
        }
        let Some(g) = self.cluster.site(m).core().membership() else {
            return false;
        };
        self.cluster.sites.values().all(|s| {
            g.contains(s.eid) && s.core.as_ref().is_some_and(|c| c.membership() == Some(g))
        })
    }
}
