//! The client workload: commits on the master and reads of every kind,
//! served the way a host serves them.

use super::history::{CommitRecord, PendingRead, ReadKind, ReadRecord};
use super::{show, Check, Sim, KEYS, READ_TIMEOUT_US};
use crate::db::{encode_ops, Op};
use crate::rep::{Core, Eid, ReadLevel, ReadPoll, ReadTicket, Role};

impl Sim {
    pub(super) fn random_key(&mut self) -> Vec<u8> {
        format!("k{}", self.rng.below(KEYS)).into_bytes()
    }

    /// Starts one to three reads of random kinds on random sites.
    pub(super) fn start_reads(&mut self) -> Check {
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

    /// Begins a read of `kind` on `eid` through the core's own read policy
    /// (`begin` is `Core::read_begin` for a key, `Core::snapshot_begin` for
    /// a range): `Ok(None)` for a stale read, which waits for nothing;
    /// `Err(())` when the core refuses the read, which is then dropped.
    pub(super) fn begin_read(
        &mut self,
        eid: Eid,
        kind: ReadKind,
        begin: fn(&mut Core, u64, ReadLevel, u64) -> crate::error::Result<ReadTicket>,
    ) -> Result<Option<ReadTicket>, ()> {
        let Some(level) = kind.level() else {
            return Ok(None);
        };
        let local = self.cluster.local_now(eid);
        let deadline = local.saturating_add(READ_TIMEOUT_US);
        let r = begin(self.cluster.core(eid), local, level, deadline);
        self.cluster.collect(eid);
        let mut t = r.map_err(|_| ())?;
        if self.plan.faults.reads_ignore_permanence {
            t.ignore_permanence_for_testing();
        }
        Ok(Some(t))
    }

    pub(super) fn start_read(&mut self, kind: ReadKind, key: Vec<u8>) -> Check {
        let eid = match kind {
            ReadKind::Linearizable => {
                let m = self.masters_up();
                self.pick(&m)
            }
            ReadKind::Follower => {
                let c = self.followers_up();
                self.pick(&c)
            }
            ReadKind::Stale => {
                let up = self.up_sites();
                self.pick(&up)
            }
        };
        match eid {
            Some(eid) => self.start_read_on(eid, kind, key),
            None => Ok(()),
        }
    }

    /// Begins a read of `kind` of `key` on `eid`, recorded in the history
    /// (dropped if the core refuses it).
    pub(super) fn start_read_on(&mut self, eid: Eid, kind: ReadKind, key: Vec<u8>) -> Check {
        let now = self.cluster.now;
        let Ok(ticket) = self.begin_read(eid, kind, Core::read_begin) else {
            return Ok(());
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
        match ticket {
            None => {
                let v = self.cluster.get(eid, &key);
                self.finish_read(idx, v);
            }
            Some(ticket) => {
                self.history.pending_reads.push(PendingRead {
                    idx,
                    eid,
                    ticket,
                    polled: false,
                });
                self.poll_reads();
            }
        }
        Ok(())
    }

    pub(super) fn finish_read(&mut self, idx: usize, v: Option<Vec<u8>>) {
        let now = self.cluster.now;
        let r = &mut self.history.reads[idx];
        r.resp_us = Some(now);
        r.value = Some(v);
    }

    /// Polls every read in flight through the core, as the host
    /// (`Env::get_at`) does: records those it answers, drops those it fails
    /// and those past [`READ_TIMEOUT_US`] of simulated time.
    pub(super) fn poll_reads(&mut self) {
        if self.history.pending_reads.is_empty() {
            return;
        }
        let now = self.cluster.now;
        let unsafe_reads = self.plan.faults.unsafe_master_reads;
        let pending = std::mem::take(&mut self.history.pending_reads);
        let mut still = Vec::new();
        for mut p in pending {
            let inv = self.history.reads[p.idx].inv_us;
            let key = self.history.reads[p.idx].key.clone();
            if !self.cluster.site(p.eid).is_up() {
                continue;
            }
            let local = self.cluster.local_now(p.eid);
            let core = self.cluster.core(p.eid);
            if unsafe_reads && p.ticket.level() == ReadLevel::Linearizable {
                // The broken host: serves at once, asking the core nothing.
                let v = core.storage().store().get(&key).map(<[u8]>::to_vec);
                core.read_cancel(p.ticket);
                self.finish_read(p.idx, v);
                continue;
            }
            let poll = core.read_poll(local, &mut p.ticket, &key);
            let lease_master_read = p.ticket.level() == ReadLevel::Linearizable
                && core.config().lease
                && core.role() == Role::Master;
            if lease_master_read && !p.polled && !core.lease_valid() {
                self.coverage.lease_lapsed_read_pending += 1;
            }
            p.polled = true;
            self.cluster.collect(p.eid);
            match poll {
                ReadPoll::Ready(v) => self.finish_read(p.idx, v),
                ReadPoll::Failed(_) => {}
                ReadPoll::Wait { .. } if now > inv + READ_TIMEOUT_US => {
                    self.cluster.core(p.eid).read_cancel(p.ticket);
                }
                // Polled again after the next delivery or timer round (the
                // simulator wakes for nothing else; sites' timers run every
                // few milliseconds, well within `until`).
                ReadPoll::Wait { .. } => still.push(p),
            }
        }
        // A read started while polling (none today) would be kept too.
        still.append(&mut self.history.pending_reads);
        self.history.pending_reads = still;
    }

    pub(super) fn commit(&mut self) -> Check {
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
                    db: String::new(),
                    ops,
                    increment: None,
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
}
