//! The client-visible history of a run: every commit and read, with
//! when it was invoked and when (if ever) it completed.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::data::key_universe;
use super::linearizability::{RegKind, RegOp};
use super::Sim;
use crate::db::Op;
use crate::lsn::Lsn;
use crate::rep::ReadLevel;
use crate::rep::{Eid, ReadTicket};

/// One commit of the workload.
#[derive(Clone, Debug)]
pub struct CommitRecord {
    /// Step it was made in.
    pub step: u32,
    /// Simulated time of the commit.
    pub at_us: u64,
    /// The master that made it.
    pub eid: Eid,
    /// Its LSN.
    pub lsn: Lsn,
    /// Its generation.
    pub gen: u32,
    /// The database its operations write (empty: the default database);
    /// for a creation, the database created.
    pub db: String,
    /// The operations, on keys of `db` (none for a creation).
    pub ops: Vec<Op>,
    /// For a read-modify-write transaction, the counter it incremented.
    pub increment: Option<Increment>,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// When the master reported it permanent, if it did.
    pub perm_at_us: Option<u64>,
}

/// What a read-modify-write transaction did: read a counter of
/// [`COUNTERS`](super::data::COUNTERS), wrote it plus one. A counter's value
/// is `<count>:<tag>`, the tag naming the transaction that wrote it.
#[derive(Clone, Debug)]
pub struct Increment {
    /// The counter's key.
    pub key: Vec<u8>,
    /// What the transaction read (`None`: absent, a count of 0).
    pub read: Option<Vec<u8>>,
    /// What it wrote.
    pub wrote: Vec<u8>,
}

/// One range read of the data workload: a snapshot at the read's level,
/// walked cursor-style (each entry found by a seek past the previous one).
#[derive(Clone, Debug)]
pub struct RangeRecord {
    /// Step it was started in.
    pub step: u32,
    /// The site.
    pub eid: Eid,
    /// How it is served.
    pub kind: ReadKind,
    /// The database (empty: the default one).
    pub db: String,
    /// The range.
    pub start: Bound<Vec<u8>>,
    /// The range.
    pub end: Bound<Vec<u8>>,
    /// Walked from the end backwards.
    pub reverse: bool,
    /// Invocation (simulated global time).
    pub inv_us: u64,
    /// Response, if it completed.
    pub resp_us: Option<u64>,
    /// What it returned, in key order, if it completed.
    pub entries: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// The client-visible history of a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every commit the master accepted, in order.
    pub commits: Vec<CommitRecord>,
    /// Commits not yet reported permanent whose master may still report them.
    pub(super) pending: Vec<usize>,
    /// Commit attempts that failed (no master, or a master that lost its role).
    pub failed_attempts: u64,
    /// Every read started, in order.
    pub reads: Vec<ReadRecord>,
    /// Reads in flight.
    pub(super) pending_reads: Vec<PendingRead>,
    /// Every range read started, in order.
    pub ranges: Vec<RangeRecord>,
    /// Range reads in flight (their snapshots not handed out yet).
    pub(super) pending_ranges: Vec<PendingRead>,
}

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// On the master, at `ReadLevel::Linearizable`.
    Linearizable,
    /// On a client, at `ReadLevel::Follower` (through a read index).
    Follower,
    /// Any site's local store (recorded, not checked).
    Stale,
}

impl ReadKind {
    /// The level the core reads at; `None` for a stale read, which reads
    /// the local store and waits for nothing.
    pub fn level(self) -> Option<ReadLevel> {
        match self {
            ReadKind::Linearizable => Some(ReadLevel::Linearizable),
            ReadKind::Follower => Some(ReadLevel::Follower),
            ReadKind::Stale => None,
        }
    }
}

/// One read of the workload.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    /// Step it was started in.
    pub step: u32,
    /// The site.
    pub eid: Eid,
    /// How it is served.
    pub kind: ReadKind,
    /// The key.
    pub key: Vec<u8>,
    /// Invocation (simulated global time).
    pub inv_us: u64,
    /// Response, if it completed.
    pub resp_us: Option<u64>,
    /// What it read, if it completed (inner `None` = absent).
    pub value: Option<Option<Vec<u8>>>,
}

#[derive(Clone, Debug)]
pub(super) struct PendingRead {
    pub(super) idx: usize,
    pub(super) eid: Eid,
    /// The core's ticket: the read policy is the core's
    /// ([`Core::read_begin`](crate::rep::Core::read_begin) /
    /// [`Core::read_poll`](crate::rep::Core::read_poll)), not the simulator's.
    pub(super) ticket: ReadTicket,
    /// A lease master's read already polled once (for the coverage count).
    pub(super) polled: bool,
}

impl Sim {
    /// The per-key histories, one register per (database, key): every
    /// write (with its outcome) and every completed linearizable or
    /// follower read, range reads included (one read of each key of the
    /// range's bounds, at the range's window: see `check_linearizability`).
    pub fn key_histories(&self) -> BTreeMap<(String, Vec<u8>), Vec<RegOp>> {
        let mut h: BTreeMap<(String, Vec<u8>), Vec<RegOp>> = BTreeMap::new();
        for c in &self.history.commits {
            // The last op on a key in one commit is what the commit writes there.
            let mut last: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
            for op in &c.ops {
                match op {
                    Op::Put { key, value } => last.insert(key, Some(value)),
                    Op::Delete { key } => last.insert(key, None),
                };
            }
            for (k, v) in last {
                h.entry((c.db.clone(), k.to_vec()))
                    .or_default()
                    .push(RegOp {
                        inv: c.at_us,
                        resp: c.perm_at_us,
                        kind: RegKind::Write(v.map(<[u8]>::to_vec)),
                        note: format!(
                            "commit step {} on {} gen {} at {}",
                            c.step, c.eid, c.gen, c.lsn
                        ),
                    });
            }
        }
        for r in &self.history.reads {
            if r.kind == ReadKind::Stale {
                continue;
            }
            let (Some(resp), Some(v)) = (r.resp_us, &r.value) else {
                continue;
            };
            h.entry((String::new(), r.key.clone()))
                .or_default()
                .push(RegOp {
                    inv: r.inv_us,
                    resp: Some(resp),
                    kind: RegKind::Read(v.clone()),
                    note: format!("{:?} read step {} on {}", r.kind, r.step, r.eid),
                });
        }
        for r in &self.history.ranges {
            if r.kind == ReadKind::Stale {
                continue;
            }
            let (Some(resp), Some(entries)) = (r.resp_us, &r.entries) else {
                continue;
            };
            let bounds = (borrowed(&r.start), borrowed(&r.end));
            for key in key_universe(&r.db) {
                if !std::ops::RangeBounds::contains(&bounds, &&key[..]) {
                    continue;
                }
                let v = entries
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone());
                h.entry((r.db.clone(), key)).or_default().push(RegOp {
                    inv: r.inv_us,
                    resp: Some(resp),
                    kind: RegKind::Read(v),
                    note: format!("{:?} range read step {} on {}", r.kind, r.step, r.eid),
                });
            }
        }
        h
    }
}

fn borrowed(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(&k[..]),
        Bound::Excluded(k) => Bound::Excluded(&k[..]),
        Bound::Unbounded => Bound::Unbounded,
    }
}
