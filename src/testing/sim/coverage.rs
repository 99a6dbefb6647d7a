//! A measure of how much of the protocol a run exercised: how often each
//! risky situation occurred (issue 15). A seed range that never reaches one
//! of them tests nothing there, however many seeds pass.

use std::fmt;
use std::ops::AddAssign;

/// Counts of the risky situations a run (or a seed range) reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// A site crashed when the last message it sent or took in was an ack.
    pub crash_near_ack: u64,
    /// A new master took office while commits of an earlier master were
    /// not yet reported permanent.
    pub master_change_unacked: u64,
    /// A linearizable read on a lease master waited while the lease was not
    /// valid (it expired, or was never granted, with the read pending).
    pub lease_lapsed_read_pending: u64,
    /// Transactions a client rolled back to match a new master (records of
    /// a previous generation).
    pub rollback_prev_gen: u64,
    /// A site was crashed, cut off or saw a master change while it was
    /// installing a snapshot (internal init).
    pub snapshot_interrupted: u64,
    /// Snapshots started (internal init).
    pub snapshot_installs: u64,
    /// Checkpoints that trimmed a site's log.
    pub checkpoints: u64,
    /// Join failures the host restored from the master (weaker ack policies).
    pub joins_restored: u64,
    /// Aimed faults that struck (a crash or partition right after an ack, a
    /// durable vote, a new master taking office, within a lease).
    pub aimed_strikes: u64,
    /// Membership records written (membership mode; founding included).
    pub member_changes: u64,
    /// Membership records that added a site.
    pub member_joins: u64,
    /// Membership records that removed a site (by `remove_site` or a leave).
    pub member_removals: u64,
    /// A master crashed while its latest membership change (or its own
    /// generation's first record) was not yet held by a majority.
    pub crash_unsettled_change: u64,
    /// Read-modify-write transactions that failed their commit-time
    /// validation with a conflict (data workload).
    pub rmw_conflicts: u64,
    /// Range reads at the linearizable or follower level served (data
    /// workload), each checked by the linearizability check.
    pub range_reads: u64,
    /// Linearizable reads begun on a lease master around the end of the
    /// lease a grant extended, from just before the end the master counts
    /// to just after the granting client's promise (timing edges).
    pub lease_edge_reads: u64,
}

impl Coverage {
    /// The situations a seed range must reach (name, count).
    pub fn required(&self) -> [(&'static str, u64); 10] {
        [
            ("crash within one message of an ack", self.crash_near_ack),
            (
                "master change with unacknowledged records in flight",
                self.master_change_unacked,
            ),
            (
                "lease lapsing with reads pending",
                self.lease_lapsed_read_pending,
            ),
            (
                "rollback of a previous generation's records",
                self.rollback_prev_gen,
            ),
            ("snapshot install interrupted", self.snapshot_interrupted),
            ("membership changes made", self.member_changes),
            ("sites joining the group", self.member_joins),
            ("sites removed from the group", self.member_removals),
            (
                "master crashing with a membership change unsettled",
                self.crash_unsettled_change,
            ),
            ("reads at the end of a lease", self.lease_edge_reads),
        ]
    }

    /// The situations a seed range with the data workload must reach too.
    pub fn required_data(&self) -> [(&'static str, u64); 2] {
        [
            ("read-modify-write conflicts", self.rmw_conflicts),
            ("linearizable and follower range reads", self.range_reads),
        ]
    }

    fn rows(&self) -> Vec<(&'static str, u64)> {
        let mut rows = self.required().to_vec();
        rows.extend(self.required_data());
        rows.extend([
            ("snapshot installs started", self.snapshot_installs),
            ("checkpoints", self.checkpoints),
            ("join failures restored", self.joins_restored),
            ("aimed faults that struck", self.aimed_strikes),
        ]);
        rows
    }
}

impl AddAssign for Coverage {
    fn add_assign(&mut self, o: Coverage) {
        self.crash_near_ack += o.crash_near_ack;
        self.master_change_unacked += o.master_change_unacked;
        self.lease_lapsed_read_pending += o.lease_lapsed_read_pending;
        self.rollback_prev_gen += o.rollback_prev_gen;
        self.snapshot_interrupted += o.snapshot_interrupted;
        self.snapshot_installs += o.snapshot_installs;
        self.checkpoints += o.checkpoints;
        self.joins_restored += o.joins_restored;
        self.aimed_strikes += o.aimed_strikes;
        self.member_changes += o.member_changes;
        self.member_joins += o.member_joins;
        self.member_removals += o.member_removals;
        self.crash_unsettled_change += o.crash_unsettled_change;
        self.rmw_conflicts += o.rmw_conflicts;
        self.range_reads += o.range_reads;
        self.lease_edge_reads += o.lease_edge_reads;
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| risky situation | times |")?;
        writeln!(f, "|---|---:|")?;
        for (name, n) in self.rows() {
            writeln!(f, "| {name} | {n} |")?;
        }
        Ok(())
    }
}
