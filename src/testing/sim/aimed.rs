//! Aimed faults, in the way of FoundationDB's `BUGGIFY`: at the moments
//! where a replication protocol is most fragile, a crash or a partition
//! strikes with a raised chance, instead of waiting for a uniformly random
//! fault to land there by luck.

use super::Sim;
use crate::rep::Eid;
use crate::wire::MsgType;

/// A moment worth aiming a fault at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// A client's ack reached its master (`a` acked to `b`).
    Ack = 0,
    /// A vote, made durable, reached the candidate (`a` voted for `b`).
    DurableVote = 1,
    /// A new master took office (`a` = `b` = the master).
    NewMaster = 2,
    /// A lease grant reached the master (`a` granted to `b`): the lease runs.
    LeaseGrant = 3,
    /// A site began installing a snapshot (`a` = `b` = the site).
    SnapshotInstall = 4,
}

impl Moment {
    /// The moment a delivered message of type `t` marks, if any.
    pub fn of_message(t: MsgType) -> Option<Moment> {
        match t {
            MsgType::Ack => Some(Moment::Ack),
            MsgType::Vote2 => Some(Moment::DurableVote),
            MsgType::LeaseGrant => Some(Moment::LeaseGrant),
            _ => None,
        }
    }
}

impl Sim {
    /// Notes that `moment` happened between `a` and `b`; [`Sim::fire_aimed`]
    /// decides whether a fault strikes.
    pub(super) fn aim(&mut self, moment: Moment, a: Eid, b: Eid) {
        let p = &self.plan;
        if p.p_aim == 0 || p.aim_moments & (1 << moment as u8) == 0 || self.step >= p.steps {
            return;
        }
        self.aimed.push((moment, a, b));
    }

    /// Strikes at the moments noted since the last call, each with the
    /// plan's chance: crashes one of the two sites (if crashes are on and
    /// another site stays up), or else cuts it off (if partitions are on).
    pub(super) fn fire_aimed(&mut self) {
        for (moment, a, b) in std::mem::take(&mut self.aimed) {
            if !self.rng.chance(self.plan.p_aim) {
                continue;
            }
            let target = if self.rng.chance(500) { a } else { b };
            if !self.cluster.is_up(target) {
                continue;
            }
            let can_crash = self.plan.p_crash > 0 && self.up_sites().len() > 1;
            if can_crash && (self.plan.p_partition == 0 || self.rng.chance(600)) {
                self.note(format!("aimed at {moment:?} ({a} -> {b}): crash {target}"));
                self.coverage.aimed_strikes += 1;
                self.crash(target);
            } else if self.plan.p_partition > 0 {
                self.note(format!(
                    "aimed at {moment:?} ({a} -> {b}): isolate {target}"
                ));
                self.coverage.aimed_strikes += 1;
                self.cluster.isolate(target);
                self.after_network_change();
            }
        }
    }
}
