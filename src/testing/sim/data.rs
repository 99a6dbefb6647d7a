//! The data workload ([`FaultSet::data_workload`](super::FaultSet)): what
//! the data API adds to plain puts, driven through the core as the `Env`
//! drives it, with its own random stream (so that with it off every seed
//! runs as before).
//!
//! - Writes into named databases ([`NAMED_DBS`]), each created by a commit
//!   record the first time a master writes to it, as
//!   `Env::create_database` does. The keys are those of the default
//!   database (`k0`...), so a write that landed in the wrong database would
//!   be read under another database's key: the checker keeps one register
//!   per (database, key).
//! - Read-modify-write transactions: read a counter of [`COUNTERS`] from a
//!   snapshot on the master, commit counter + 1 a few steps later, after
//!   the library's own commit-time validation (`txn::reads::ReadCheck`,
//!   what `Txn::commit` runs); a conflict is an expected outcome.
//! - Range reads: a snapshot at the linearizable (master), follower
//!   (client) or stale level, through the core's snapshot read policy
//!   (`Core::snapshot_begin` / `Core::snapshot_poll`, what `Env::read_txn_at`
//!   and its cursors use), walked cursor-style in either direction.
//!
//! What the checker makes of them: `checks.rs` (`check_range_shape`,
//! `check_counters`) and `history.rs` (`key_histories`).

use std::ops::Bound;

use super::history::{CommitRecord, Increment, PendingRead, RangeRecord, ReadKind};
use super::{show, Check, Sim, COUNTER_KEYS, KEYS, READ_TIMEOUT_US};
use crate::databases::{check_db, Database};
use crate::db::{encode_count, DbId, DbOpRef, Op, Store, DEFAULT_DB};
use crate::error::Error;
use crate::rep::{Core, Eid, ReadLevel, ReadPoll};
use crate::txn::reads::ReadCheck;

/// The named databases plain writes go to (besides the default one).
pub const NAMED_DBS: [&str; 2] = ["d1", "d2"];
/// The database of the read-modify-write counters.
pub const COUNTERS: &str = "counters";

/// A read-modify-write transaction between its read and its commit.
pub(super) struct PendingRmw {
    eid: Eid,
    check: ReadCheck,
    db: Database,
    key: Vec<u8>,
    read: Option<Vec<u8>>,
    tag: u64,
    due_step: u32,
}

/// Every key the workload may write in database `db`, in key order.
pub fn key_universe(db: &str) -> Vec<Vec<u8>> {
    let (prefix, n) = if db == COUNTERS {
        ("c", COUNTER_KEYS)
    } else {
        ("k", KEYS)
    };
    let mut keys: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .collect();
    keys.sort();
    keys
}

/// The count a counter value (`<count>:<tag>`) holds; absent is 0.
pub fn counter_value(v: Option<&[u8]>) -> Option<u64> {
    match v {
        None => Some(0),
        Some(v) => std::str::from_utf8(v).ok()?.split_once(':')?.0.parse().ok(),
    }
}

/// The tag of a counter value (`<count>:<tag>`).
pub fn counter_tag(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.split_once(':')?.1.parse().ok()
}

/// The entries of database `db` of `store` within the bounds, found one by
/// one as a cursor steps (each a seek past the previous key), in key order
/// whichever way it walked. A database that does not exist holds nothing.
fn walk(
    store: &Store,
    db: &str,
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let id = if db.is_empty() {
        Some(DEFAULT_DB)
    } else {
        store.database_id(db.as_bytes())
    };
    let Some(d) = id.and_then(|id| store.database(id)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let (mut lo, mut hi) = (start.clone(), end.clone());
    loop {
        let bounds = (as_ref(&lo), as_ref(&hi));
        let next = if reverse {
            d.range(bounds).next_back()
        } else {
            d.range(bounds).next()
        };
        let Some((k, v)) = next else { break };
        let (k, v) = (k.to_vec(), v.to_vec());
        if reverse {
            hi = Bound::Excluded(k.clone());
        } else {
            lo = Bound::Excluded(k.clone());
        }
        out.push((k, v));
        if out.len() > KEYS as usize * 4 {
            break; // more than the workload ever writes: the shape check says so
        }
    }
    if reverse {
        out.reverse();
    }
    out
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(&k[..]),
        Bound::Excluded(k) => Bound::Excluded(&k[..]),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Sim {
    fn dpick(&mut self, v: &[Eid]) -> Option<Eid> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.drng.below(v.len() as u64) as usize])
        }
    }

    /// One step of the data workload.
    pub(super) fn data_step(&mut self) -> Check {
        self.finish_rmws()?;
        // Rates chosen to keep `cargo test --test sim` within about a fifth
        // of its time without the data workload.
        if self.drng.chance(50) {
            self.named_commit()?;
        }
        if self.drng.chance(80) {
            self.start_rmw()?;
        }
        if self.drng.chance(100) {
            self.start_range_read()?;
        }
        Ok(())
    }

    /// Commits `payload` on master `m` and records it, as the plain
    /// workload's commits are recorded.
    fn record_commit(
        &mut self,
        m: Eid,
        db: &str,
        ops: Vec<Op>,
        payload: Vec<u8>,
        increment: Option<Increment>,
    ) -> Check {
        let gen = self.cluster.core(m).gen();
        match self.cluster.commit_payload(m, &payload) {
            Ok(lsn) => {
                self.note(format!(
                    "commit in {:?} on {m} gen {gen} at {lsn}{}",
                    db,
                    if increment.is_some() {
                        " (increment)"
                    } else {
                        ""
                    }
                ));
                self.history.commits.push(CommitRecord {
                    step: self.step,
                    at_us: self.cluster.now,
                    eid: m,
                    lsn,
                    gen,
                    db: db.to_string(),
                    ops,
                    increment,
                    payload,
                    perm_at_us: None,
                });
                self.history.pending.push(self.history.commits.len() - 1);
                self.fast_check()
            }
            Err(e) => {
                self.note(format!("commit in {db:?} on {m} failed: {e}"));
                self.history.failed_attempts += 1;
                Ok(())
            }
        }
    }

    /// The id of database `name` on master `m`, creating it (by a commit of
    /// its own, as `Env::create_database` does) if it does not exist yet;
    /// `None` when it had to be created (or could not be).
    fn database_on(&mut self, m: Eid, name: &str) -> Result<Option<DbId>, String> {
        let store = self.cluster.core(m).storage().store();
        if let Some(id) = store.database_id(name.as_bytes()) {
            return Ok(Some(id));
        }
        let id = store.next_database_id();
        let mut payload = Vec::new();
        encode_count(&mut payload, 1);
        DbOpRef::CreateDb {
            id,
            name: name.as_bytes(),
        }
        .encode(&mut payload);
        self.record_commit(m, name, Vec::new(), payload, None)?;
        Ok(None)
    }

    /// One to two writes into one named database on the master.
    fn named_commit(&mut self) -> Check {
        let masters = self.masters_up();
        let Some(m) = self.dpick(&masters) else {
            return Ok(());
        };
        let name = NAMED_DBS[self.drng.below(NAMED_DBS.len() as u64) as usize];
        let Some(id) = self.database_on(m, name)? else {
            return Ok(());
        };
        // The test-only host bug: the default database's id instead.
        let id = if self.plan.faults.misfiled_named_writes {
            DEFAULT_DB
        } else {
            id
        };
        let n = 1 + self.drng.below(2);
        let mut ops = Vec::new();
        let mut payload = Vec::new();
        encode_count(&mut payload, n as u32);
        for i in 0..n {
            let key = format!("k{}", self.drng.below(KEYS)).into_bytes();
            if self.drng.chance(150) {
                DbOpRef::Delete { db: id, key: &key }.encode(&mut payload);
                ops.push(Op::Delete { key });
            } else {
                let value = format!("{name}-v{}-{}-{i}", self.step, self.cluster.now).into_bytes();
                DbOpRef::Put {
                    db: id,
                    key: &key,
                    value: &value,
                }
                .encode(&mut payload);
                ops.push(Op::Put { key, value });
            }
        }
        self.record_commit(m, name, ops, payload, None)
    }

    /// Reads a counter from a snapshot of the master's store; the commit
    /// comes zero to three steps later ([`Sim::finish_rmws`]).
    fn start_rmw(&mut self) -> Check {
        let masters = self.masters_up();
        let Some(m) = self.dpick(&masters) else {
            return Ok(());
        };
        let Some(id) = self.database_on(m, COUNTERS)? else {
            return Ok(());
        };
        let db = Database::from_parts(id, COUNTERS);
        let key = format!("c{}", self.drng.below(COUNTER_KEYS)).into_bytes();
        let mut check = ReadCheck::take(self.cluster.core(m));
        let read = check
            .get(&db, &key, usize::MAX)
            .map_err(|e| format!("a snapshot read of counter {} failed: {e}", show(&key)))?;
        self.rmw_tags += 1;
        let tag = self.rmw_tags;
        let due_step = self.step + self.drng.below(4) as u32;
        self.note(format!(
            "rmw t{tag} on {m} reads {} = {:?}",
            show(&key),
            read.as_deref().map(show)
        ));
        self.rmws.push(PendingRmw {
            eid: m,
            check,
            db,
            key,
            read,
            tag,
            due_step,
        });
        Ok(())
    }

    /// Commits the read-modify-write transactions that are due, each
    /// validated first as `Txn::commit` validates (the database it writes
    /// still exists, nothing it read has changed).
    fn finish_rmws(&mut self) -> Check {
        let step = self.step;
        let (due, later): (Vec<PendingRmw>, Vec<PendingRmw>) = std::mem::take(&mut self.rmws)
            .into_iter()
            .partition(|p| p.due_step <= step);
        self.rmws = later;
        for p in due {
            if !self.cluster.site(p.eid).is_up() {
                self.note(format!("rmw t{} abandoned: site {} is down", p.tag, p.eid));
                continue;
            }
            let skip = self.plan.faults.rmw_skips_validation;
            let core = self.cluster.core(p.eid);
            let valid = check_db(core, p.db.id(), p.db.name()).and_then(|()| {
                if skip {
                    Ok(())
                } else {
                    p.check.validate(core)
                }
            });
            match valid {
                Ok(()) => {}
                Err(Error::Conflict(e)) => {
                    self.coverage.rmw_conflicts += 1;
                    self.note(format!("rmw t{} conflict: {e}", p.tag));
                    continue;
                }
                Err(e) => {
                    self.note(format!("rmw t{} failed: {e}", p.tag));
                    self.history.failed_attempts += 1;
                    continue;
                }
            }
            let Some(n) = counter_value(p.read.as_deref()) else {
                return Err(format!(
                    "rmw t{} read counter {} = {:?}, which no increment wrote",
                    p.tag,
                    show(&p.key),
                    p.read.as_deref().map(show)
                ));
            };
            let wrote = format!("{}:{}", n + 1, p.tag).into_bytes();
            let mut payload = Vec::new();
            encode_count(&mut payload, 1);
            DbOpRef::Put {
                db: p.db.id(),
                key: &p.key,
                value: &wrote,
            }
            .encode(&mut payload);
            let ops = vec![Op::Put {
                key: p.key.clone(),
                value: wrote.clone(),
            }];
            let increment = Increment {
                key: p.key,
                read: p.read,
                wrote,
            };
            self.record_commit(p.eid, COUNTERS, ops, payload, Some(increment))?;
        }
        Ok(())
    }

    /// Starts one range read of a random database, bounds and direction.
    fn start_range_read(&mut self) -> Check {
        let kind = match self.drng.below(10) {
            0..=5 => ReadKind::Linearizable,
            6..=8 => ReadKind::Follower,
            _ => ReadKind::Stale,
        };
        let candidates: Vec<Eid> = match kind {
            ReadKind::Linearizable => self.masters_up(),
            ReadKind::Follower => self.followers_up(),
            ReadKind::Stale => self.up_sites(),
        };
        let Some(eid) = self.dpick(&candidates) else {
            return Ok(());
        };
        let dbs = ["", NAMED_DBS[0], NAMED_DBS[1], COUNTERS];
        let db = dbs[self.drng.below(dbs.len() as u64) as usize].to_string();
        let keys = key_universe(&db);
        let bound = |sim: &mut Sim| -> Bound<Vec<u8>> {
            let k = keys[sim.drng.below(keys.len() as u64) as usize].clone();
            match sim.drng.below(3) {
                0 => Bound::Unbounded,
                1 => Bound::Included(k),
                _ => Bound::Excluded(k),
            }
        };
        let start = bound(self);
        let end = bound(self);
        let reverse = self.drng.chance(500);
        let Ok(ticket) = self.begin_read(eid, kind, Core::snapshot_begin) else {
            return Ok(());
        };
        let idx = self.history.ranges.len();
        self.note(format!(
            "{kind:?} range read of {db:?} {start:?}..{end:?}{} on {eid}",
            if reverse { " backwards" } else { "" }
        ));
        self.history.ranges.push(RangeRecord {
            step: self.step,
            eid,
            kind,
            db,
            start,
            end,
            reverse,
            inv_us: self.cluster.now,
            resp_us: None,
            entries: None,
        });
        match ticket {
            None => {
                let store = self.cluster.core(eid).storage().store().clone();
                self.finish_range(idx, &store)?;
            }
            Some(ticket) => {
                self.history.pending_ranges.push(PendingRead {
                    idx,
                    eid,
                    ticket,
                    polled: false,
                });
                self.poll_ranges()?;
            }
        }
        Ok(())
    }

    fn finish_range(&mut self, idx: usize, store: &Store) -> Check {
        let r = &self.history.ranges[idx];
        let entries = walk(store, &r.db, &r.start, &r.end, r.reverse);
        let now = self.cluster.now;
        let r = &mut self.history.ranges[idx];
        r.resp_us = Some(now);
        r.entries = Some(entries);
        if r.kind != ReadKind::Stale {
            self.coverage.range_reads += 1;
        }
        self.check_range_shape(idx)
    }

    /// Polls every range read in flight through the core's snapshot read
    /// policy, as `Env::read_txn_at` does; drops those it fails and those
    /// past [`READ_TIMEOUT_US`].
    pub(super) fn poll_ranges(&mut self) -> Check {
        if self.history.pending_ranges.is_empty() {
            return Ok(());
        }
        let now = self.cluster.now;
        let unsafe_reads = self.plan.faults.unsafe_master_reads;
        let pending = std::mem::take(&mut self.history.pending_ranges);
        let mut still = Vec::new();
        for mut p in pending {
            let inv = self.history.ranges[p.idx].inv_us;
            if !self.cluster.site(p.eid).is_up() {
                continue;
            }
            let local = self.cluster.local_now(p.eid);
            let core = self.cluster.core(p.eid);
            if unsafe_reads && p.ticket.level() == ReadLevel::Linearizable {
                let store = core.storage().store().clone();
                core.read_cancel(p.ticket);
                self.finish_range(p.idx, &store)?;
                continue;
            }
            let poll = core.snapshot_poll(local, &mut p.ticket);
            self.cluster.collect(p.eid);
            match poll {
                ReadPoll::Ready((store, _instance)) => self.finish_range(p.idx, &store)?,
                ReadPoll::Failed(_) => {}
                ReadPoll::Wait { .. } if now > inv + READ_TIMEOUT_US => {
                    self.cluster.core(p.eid).read_cancel(p.ticket);
                }
                ReadPoll::Wait { .. } => still.push(p),
            }
        }
        still.append(&mut self.history.pending_ranges);
        self.history.pending_ranges = still;
        Ok(())
    }
}
