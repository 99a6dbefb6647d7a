//! The client workload: commits on the master and reads of every kind,
//! served the way a host serves them.

use super::history::{CommitRecord, PendingRead, ReadKind, ReadRecord, ReadWait};
use super::{show, Check, Sim, KEYS, READ_TIMEOUT_US};
use crate::db::{encode_ops, Op};
use crate::rep::{Eid, ReadIndexState, Role};

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

    pub(super) fn start_read(&mut self, kind: ReadKind, key: Vec<u8>) -> Check {
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

    pub(super) fn finish_read(&mut self, idx: usize, v: Option<Vec<u8>>) {
        let now = self.cluster.now;
        let r = &mut self.history.reads[idx];
        r.resp_us = Some(now);
        r.value = Some(v);
    }

    /// Serves every read in flight whose condition now holds, as the host
    /// (`Env::get_at`) would; abandons those that cannot complete.
    pub(super) fn poll_reads(&mut self) {
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
                        if !core.lease_valid() {
                            self.coverage.lease_lapsed_read_pending += 1;
                        }
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
}
