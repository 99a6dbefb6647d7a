//! The master's side of the protocol: commits, broadcasting records,
//! counting acknowledgements, and answering clients' requests.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::rep::config::{AckPolicy, RepConfig};
use crate::rep::core::Core;
use crate::rep::types::{Eid, Event, Role, SendFlags, Status, EID_BROADCAST};
use crate::wire::{self, Envelope, Message, MsgFlags, VerifyFailReason};

/// A batch of records waiting to be broadcast is sent once it grows past this.
const BROADCAST_BATCH_BYTES: usize = 1 << 20;
/// Snapshot chunks sent during internal init are at most this big.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// With heartbeats off, how long a client may leave a record unacknowledged
/// and still count as available (`AckPolicy::AllAvailable`).
const DEFAULT_AVAILABLE_US: u64 = 30_000_000;

/// What the master knows about one client.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peer {
    pub acked: Lsn,
    pub priority: u32,
    pub last_heard_us: u64,
    /// Since when the client has owed an acknowledgement for a record sent
    /// to it (`None`: it has acknowledged everything sent). Availability is
    /// judged from this, not from when we last heard from it: a client of
    /// an idle master sends nothing, yet is perfectly available.
    pub owed_since: Option<u64>,
}

/// The master's clients by id, in id order (as a `BTreeMap` would keep
/// them): a sorted vector, since a group has a handful of sites, one is
/// looked up on every message a master receives and all are walked on
/// every acknowledgement.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerMap(Vec<(Eid, Peer)>);

impl PeerMap {
    /// Number of clients.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Where `eid` is, or where it would go. A linear scan: shorter than
    /// a binary search's bookkeeping for the few sites of a group.
    #[inline]
    fn find(&self, eid: Eid) -> std::result::Result<usize, usize> {
        for (i, (e, _)) in self.0.iter().enumerate() {
            if *e >= eid {
                return if *e == eid { Ok(i) } else { Err(i) };
            }
        }
        Err(self.0.len())
    }

    /// The client `eid`, if known.
    pub fn get(&self, eid: &Eid) -> Option<&Peer> {
        let i = self.find(*eid).ok()?;
        Some(&self.0[i].1)
    }

    /// The client `eid`, added with default state if new.
    #[inline]
    pub fn get_or_default(&mut self, eid: Eid) -> &mut Peer {
        let i = match self.find(eid) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (eid, Peer::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    /// The clients, in id order.
    pub fn values(&self) -> impl Iterator<Item = &Peer> {
        self.0.iter().map(|(_, p)| p)
    }

    /// The clients, in id order, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.0.iter_mut().map(|(_, p)| p)
    }
}

/// A snapshot kept while clients fetch it chunk by chunk.
pub(crate) struct SnapshotCache {
    pub lsn: Lsn,
    pub gen: u32,
    pub bytes: Vec<u8>,
}

/// Master-only state; reset whenever the site stops being master.
#[derive(Default)]
pub(crate) struct MasterState {
    pub peers: PeerMap,
    /// The largest `acked` of any peer (`Lsn::ZERO` if none): no quorum of
    /// acks can reach past it, so while it is at or before `perm_lsn` a
    /// recomputation that needs any ack cannot move the permanent point.
    pub max_acked: Lsn,
    pub perm_lsn: Lsn,
    pub gen_start_lsn: Lsn,
    pub bcast: Vec<u8>,
    pub bcast_last: Lsn,
    /// Size of the last broadcast batch (at most a little over
    /// `BROADCAST_BATCH_BYTES`): the next one starts with that capacity.
    pub bcast_cap: usize,
    pub last_send_us: u64,
    pub snapshot: Option<Arc<SnapshotCache>>,
}

impl MasterState {
    pub(crate) fn next_deadline(&self, cfg: &RepConfig, now: u64) -> Option<u64> {
        let mut d = (cfg.heartbeat_send_us > 0 && !self.gen_start_lsn.is_zero())
            .then(|| self.last_send_us + cfg.heartbeat_send_us);
        if cfg.ack_policy == AckPolicy::AllAvailable {
            // A client dropping out of the available set may make records
            // permanent: the tick must run then to notice.
            let window = available_window(cfg);
            let out = self
                .peers
                .values()
                .filter_map(|p| p.owed_since.map(|t| t + window))
                .filter(|&t| t > now)
                .min();
            if let Some(t) = out {
                d = Some(d.map_or(t, |d| d.min(t)));
            }
        }
        d
    }
}

/// How long a client may owe an acknowledgement and still count as available.
fn available_window(cfg: &RepConfig) -> u64 {
    if cfg.heartbeat_monitor_us > 0 {
        cfg.heartbeat_monitor_us
    } else {
        DEFAULT_AVAILABLE_US
    }
}

impl Core {
    pub(crate) fn start_master(&mut self, local: Eid) -> Result<()> {
        if self.in_internal_init() {
            return Err(Error::Unavail(
                "cannot become master during internal initialisation".into(),
            ));
        }
        if self.role == Role::Master {
            self.announce(EID_BROADCAST);
            return Ok(());
        }
        self.lease_check_start_master()?;
        let gen = self.next_master_gen()?;
        self.meta.gen = gen;
        self.meta.egen = self.meta.egen.max(gen);
        self.save_meta()?;
        self.role = Role::Master;
        self.master = Some(local);
        self.m = MasterState::default();
        self.c = Default::default();
        self.lease = Default::default();
        let lsn = self.storage.append_gen_start(gen)?;
        self.storage.log_mut().force_sync()?;
        self.m.gen_start_lsn = lsn;
        self.queue_broadcast(lsn)?;
        self.announce(EID_BROADCAST);
        self.event(Event::Master);
        self.recompute_perm();
        log::info!("site {local} is master of generation {gen}");
        Ok(())
    }

    /// Sends this master's announcement to one site or to all.
    pub(crate) fn announce(&mut self, to: Eid) {
        let last = self.storage.log().last_lsn();
        let perm_lsn = self.m.perm_lsn;
        self.send(
            to,
            Message::NewMaster { perm_lsn },
            last,
            MsgFlags::default(),
            SendFlags::default(),
        );
    }

    /// Appends a committed transaction (encoded ops) and queues it for the clients.
    pub fn commit(&mut self, now: u64, payload: &[u8]) -> Result<Lsn> {
        self.advance(now);
        if self.role != Role::Master {
            return Err(Error::invalid(
                "only the master can commit; this site is not master",
            ));
        }
        let gen = self.meta.gen;
        let lsn = self.storage.commit(gen, payload)?;
        self.queue_broadcast(lsn)?;
        self.recompute_perm();
        Ok(lsn)
    }

    #[inline]
    fn queue_broadcast(&mut self, lsn: Lsn) -> Result<()> {
        if self.m.bcast.is_empty() {
            // The records go straight into the body of the message that
            // will carry them; its fixed fields are filled in at the flush.
            // Sized like the last one, so a batch grows without copying.
            if self.m.bcast.capacity() == 0 {
                // The last batch left with its message: allocate directly
                // rather than through `reserve`'s growth path.
                self.m.bcast = Vec::with_capacity(self.m.bcast_cap);
            } else {
                self.m.bcast.reserve(self.m.bcast_cap);
            }
            self.m.bcast.resize(wire::LOG_BODY_PREFIX, 0);
        }
        let log = self.storage.log();
        let r = match log.last_record_bytes(lsn) {
            // A commit broadcasts the record it just appended: copied from
            // where it lies, without looking it up or parsing it again.
            Some(bytes) => {
                self.m.bcast.extend_from_slice(bytes);
                Ok(())
            }
            None => log.read_raw_into(lsn, &mut self.m.bcast).map(|_| ()),
        };
        if let Err(e) = r {
            if self.m.bcast.len() == wire::LOG_BODY_PREFIX {
                self.m.bcast.clear();
            }
            return Err(e);
        }
        self.m.bcast_last = lsn;
        if self.m.bcast.len() - wire::LOG_BODY_PREFIX >= BROADCAST_BATCH_BYTES {
            self.flush_broadcast();
        }
        Ok(())
    }

    /// Sends the queued records as one permanent log message.
    pub(crate) fn flush_broadcast(&mut self) {
        if self.m.bcast.len() <= wire::LOG_BODY_PREFIX || self.role != Role::Master {
            self.m.bcast.clear();
            return;
        }
        let mut body = std::mem::take(&mut self.m.bcast);
        self.m.bcast_cap = body.len();
        let perm_lsn = self.m.perm_lsn;
        let lsn = self.m.bcast_last;
        let now = self.now;
        for p in self.m.peers.values_mut() {
            if p.acked < lsn && p.owed_since.is_none() {
                p.owed_since = Some(now);
            }
        }
        wire::finish_log_body(perm_lsn, &mut body);
        let env = self.envelope(
            Message::Log {
                perm_lsn,
                records: (),
            },
            lsn,
            MsgFlags::PERMANENT,
        );
        self.queue_out(EID_BROADCAST, env, body, SendFlags::PERMANENT);
    }

    /// `rep_flush`: re-broadcasts the last log record, so clients that missed
    /// the tail notice the gap.
    pub fn flush(&mut self, now: u64) -> Result<()> {
        self.advance(now);
        if self.role != Role::Master {
            return Ok(());
        }
        let last = self.storage.log().last_lsn();
        if !last.is_zero() && last >= self.storage.log().first_lsn() {
            self.queue_broadcast(last)?;
            self.flush_broadcast();
        }
        Ok(())
    }

    /// The master's permanent point: every commit at or before it is permanent
    /// under the ack policy.
    pub fn perm_lsn(&self) -> Lsn {
        self.m.perm_lsn
    }

    /// True if the commit at `lsn` is permanent.
    pub fn is_permanent(&self, lsn: Lsn) -> bool {
        self.role == Role::Master
            && lsn <= self.m.perm_lsn
            && (!self.cfg.lease || self.lease_valid())
    }

    /// The host made the log durable (group commit): permanence may advance.
    pub fn note_local_sync(&mut self) {
        self.recompute_perm();
    }

    /// How many client acks make a record permanent, and whose acks count.
    #[inline]
    fn acks_needed(&self) -> (usize, AckFilter) {
        let clients = self.m.peers.len();
        let nsites = (self.cfg.nsites as usize).max(clients + 1);
        match self.cfg.ack_policy {
            AckPolicy::None => (0, AckFilter::Any),
            AckPolicy::One => (1, AckFilter::Any),
            AckPolicy::All => (nsites - 1, AckFilter::Any),
            AckPolicy::Quorum => (nsites / 2, AckFilter::Electable),
            AckPolicy::AllAvailable => {
                let since = self.now.saturating_sub(available_window(&self.cfg));
                let filter = AckFilter::OwingSince(since);
                let n = self.m.peers.values().filter(|p| filter.counts(p)).count();
                (n, filter)
            }
        }
    }

    #[inline]
    pub(crate) fn recompute_perm(&mut self) {
        if self.role != Role::Master {
            return;
        }
        let (need, filter) = self.acks_needed();
        if need > 0 && self.m.max_acked <= self.m.perm_lsn {
            // The candidate is at most the `need`-th largest ack, hence at
            // most `max_acked`: it cannot pass `perm_lsn`. (The common case
            // of a commit: it moves the local end, which acks then bound.)
            return;
        }
        self.recompute_perm_from(need, filter);
    }

    /// The rest of [`Core::recompute_perm`]: counts the acks.
    #[inline(never)]
    fn recompute_perm_from(&mut self, need: usize, filter: AckFilter) {
        let local = self.local_durable_lsn();
        let candidate = if need == 0 {
            local
        } else {
            match nth_largest_ack(self.m.peers.values().filter(|p| filter.counts(p)), need) {
                Some(ack) => ack.min(local),
                None => return,
            }
        };
        // Only a record of this generation can be declared permanent by
        // counting copies; earlier ones become permanent with it.
        if candidate >= self.m.gen_start_lsn && candidate > self.m.perm_lsn {
            self.m.perm_lsn = candidate;
            // Follower reads may have waited for this generation's first
            // record to become permanent.
            self.answer_pending_reads();
        }
    }

    pub(crate) fn master_message(&mut self, env: Envelope<&[u8]>, from: Eid) -> Result<Status> {
        let peer = self.m.peers.get_or_default(from);
        peer.last_heard_us = self.now;
        if env.gen > self.meta.gen {
            // A client knows a newer generation: this master is stale.
            log::info!(
                "master of generation {} steps down: site {from} knows generation {}",
                self.meta.gen,
                env.gen
            );
            self.m = MasterState::default();
            self.role = Role::Client;
            self.event(Event::Client);
            self.start_search();
            return Ok(Status::Processed);
        }
        if env.gen < self.meta.gen && !matches!(env.msg, Message::MasterReq) {
            self.stats.msgs_badgen += 1;
            self.announce(from);
            return Ok(Status::Ignore);
        }
        match env.msg {
            Message::MasterReq => {
                self.announce(from);
                Ok(Status::Processed)
            }
            Message::Ack { priority } => {
                if env.lsn > self.storage.log().last_lsn() {
                    return Err(Error::malformed(format!(
                        "ack for {} beyond the master's last record {}",
                        env.lsn,
                        self.storage.log().last_lsn()
                    )));
                }
                let master_last = self.storage.log().last_lsn();
                let now = self.now;
                let peer = self.m.peers.get_or_default(from);
                let progressed = env.lsn > peer.acked;
                peer.acked = peer.acked.max(env.lsn);
                peer.priority = priority;
                self.m.max_acked = self.m.max_acked.max(peer.acked);
                if peer.acked >= master_last {
                    peer.owed_since = None;
                } else if progressed {
                    // Responsive, and still catching up: the wait starts over.
                    peer.owed_since = Some(now);
                }
                self.recompute_perm();
                Ok(Status::Processed)
            }
            Message::LogReq { after, upto } => self.serve_log_request(from, after, upto),
            Message::VerifyReq => self.serve_verify(from, env.lsn),
            Message::InitReq { ckpt_lsn, offset } => self.serve_init(from, ckpt_lsn, offset),
            Message::LeaseGrant { master_time_us } => self.on_lease_grant(from, master_time_us),
            Message::ReadIndexReq { id } => self.on_read_index_request(from, id),
            _ => Ok(Status::Ignore),
        }
    }

    fn serve_log_request(&mut self, from: Eid, after: Lsn, upto: Lsn) -> Result<Status> {
        let log = self.storage.log();
        let base = log.base_lsn();
        if after < base || (after.is_zero() && !base.is_zero()) {
            self.send_verify_fail(from, after, VerifyFailReason::Outdated);
            return Ok(Status::Processed);
        }
        if after > log.last_lsn() {
            self.send_verify_fail(from, after, VerifyFailReason::NoRecord);
            return Ok(Status::Processed);
        }
        let limit = match self.cfg.limit_bytes {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let mut records = Vec::new();
        match log.read_after(after, upto, limit, &mut records) {
            Ok((last, more)) => {
                if last.is_zero() {
                    return Ok(Status::Processed);
                }
                let mut flags = MsgFlags::RESEND;
                if more {
                    flags |= MsgFlags::MORE;
                    self.stats.nthrottles += 1;
                }
                let perm_lsn = self.m.perm_lsn;
                self.send(
                    from,
                    Message::Log { perm_lsn, records },
                    last,
                    flags,
                    SendFlags::default(),
                );
            }
            Err(_) => {
                self.send_verify_fail(from, after, VerifyFailReason::NoRecord);
            }
        }
        Ok(Status::Processed)
    }

    fn send_verify_fail(&mut self, to: Eid, lsn: Lsn, reason: VerifyFailReason) {
        let msg = Message::VerifyFail { reason };
        self.send(to, msg, lsn, MsgFlags::default(), SendFlags::default());
    }

    fn serve_verify(&mut self, from: Eid, lsn: Lsn) -> Result<Status> {
        let mut record = Vec::new();
        let log = self.storage.log();
        if lsn.is_zero() || lsn < log.first_lsn() || log.first_lsn().is_zero() {
            let reason = if lsn <= log.base_lsn() && !log.base_lsn().is_zero() {
                VerifyFailReason::Outdated
            } else {
                VerifyFailReason::NoRecord
            };
            self.send_verify_fail(from, lsn, reason);
            return Ok(Status::Processed);
        }
        match log.read_raw_into(lsn, &mut record) {
            Ok(_) => self.send(
                from,
                Message::Verify { record },
                lsn,
                MsgFlags::default(),
                SendFlags::default(),
            ),
            Err(_) => self.send_verify_fail(from, lsn, VerifyFailReason::NoRecord),
        }
        Ok(Status::Processed)
    }

    fn serve_init(&mut self, from: Eid, ckpt_lsn: Lsn, offset: u64) -> Result<Status> {
        let reuse = self
            .m
            .snapshot
            .as_ref()
            .filter(|s| !ckpt_lsn.is_zero() && s.lsn == ckpt_lsn)
            .cloned();
        let snap = match reuse {
            Some(s) => s,
            None => {
                let s = Arc::new(SnapshotCache {
                    lsn: self.storage.log().last_lsn(),
                    gen: self.storage.log().last_gen(),
                    bytes: self.storage.snapshot_bytes(),
                });
                self.m.snapshot = Some(s.clone());
                s
            }
        };
        let offset = if snap.lsn == ckpt_lsn {
            offset.min(snap.bytes.len() as u64)
        } else {
            0
        };
        let chunk = match self.cfg.limit_bytes {
            0 => SNAPSHOT_CHUNK_BYTES,
            n => SNAPSHOT_CHUNK_BYTES
                .min(usize::try_from(n).unwrap_or(usize::MAX))
                .max(1),
        };
        let start = offset as usize;
        let end = (start + chunk).min(snap.bytes.len());
        let msg = Message::Snapshot {
            ckpt_lsn: snap.lsn,
            ckpt_gen: snap.gen,
            total_len: snap.bytes.len() as u64,
            offset,
            data: snap.bytes[start..end].to_vec(),
        };
        self.send(from, msg, snap.lsn, MsgFlags::RESEND, SendFlags::default());
        Ok(Status::Processed)
    }

    pub(crate) fn master_tick(&mut self) -> Result<Status> {
        self.recompute_perm();
        let hb = self.cfg.heartbeat_send_us;
        if hb > 0 && self.now >= self.m.last_send_us + hb {
            self.flush_broadcast();
            let last = self.storage.log().last_lsn();
            let perm_lsn = self.m.perm_lsn;
            self.send(
                EID_BROADCAST,
                Message::Heartbeat { perm_lsn },
                last,
                MsgFlags::default(),
                SendFlags::default(),
            );
        }
        Ok(Status::Processed)
    }
}

/// The `n`-th largest acknowledged LSN among `peers` (n from 1), or `None`
/// when fewer than `n` peers count. Runs on every commit and every ack, so
/// small groups are handled on the stack.
fn nth_largest_ack<'a>(mut peers: impl Iterator<Item = &'a Peer>, n: usize) -> Option<Lsn> {
    if n == 1 {
        // One ack needed (QUORUM of three, ONE): the largest, without sorting.
        let first = peers.next()?.acked;
        return Some(peers.fold(first, |m, p| m.max(p.acked)));
    }
    const INLINE: usize = 16;
    let mut inline = [Lsn::ZERO; INLINE];
    let mut spill = Vec::new();
    let mut len = 0;
    for p in peers {
        if len < INLINE {
            inline[len] = p.acked;
        } else {
            if spill.is_empty() {
                spill.extend_from_slice(&inline);
            }
            spill.push(p.acked);
        }
        len += 1;
    }
    if len < n {
        return None;
    }
    let acks = if spill.is_empty() {
        &mut inline[..len]
    } else {
        &mut spill[..]
    };
    acks.sort_unstable_by(|a, b| b.cmp(a));
    Some(acks[n - 1])
}

#[derive(Copy, Clone)]
enum AckFilter {
    Any,
    Electable,
    /// Clients that owe no acknowledgement, or have owed one only since after this time.
    OwingSince(u64),
}

impl AckFilter {
    fn counts(self, p: &Peer) -> bool {
        match self {
            AckFilter::Any => true,
            AckFilter::Electable => p.priority > 0,
            AckFilter::OwingSince(t) => p.owed_since.map_or(true, |o| o > t),
        }
    }
}

impl Core {
    /// Records how a commit ended for the statistics, and fires
    /// `Event::PermFailed` when it did not become permanent.
    pub fn record_commit_outcome(&mut self, lsn: Lsn, permanent: bool) {
        if permanent {
            self.stats.perm_commits += 1;
        } else {
            self.stats.perm_failed += 1;
            self.event(Event::PermFailed(lsn));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A PeerMap holds what a BTreeMap of the same inserts holds, in
        /// the same (id) order.
        #[test]
        fn peer_map_matches_btree_map(ops in proptest::collection::vec((0i32..12, 0u32..100), 0..60)) {
            let mut map = PeerMap::default();
            let mut model = std::collections::BTreeMap::<Eid, Peer>::new();
            for &(eid, prio) in &ops {
                map.get_or_default(eid).priority = prio;
                model.entry(eid).or_default().priority = prio;
                prop_assert_eq!(map.len(), model.len());
            }
            let got: Vec<u32> = map.values().map(|p| p.priority).collect();
            let want: Vec<u32> = model.values().map(|p| p.priority).collect();
            prop_assert_eq!(got, want);
            for eid in -1i32..13 {
                prop_assert_eq!(map.get(&eid).map(|p| p.priority), model.get(&eid).map(|p| p.priority));
            }
        }

        /// The n-th largest ack is what sorting all acks in descending
        /// order and taking the n-th gives, on every path (one ack
        /// needed, a few, more peers than fit on the stack).
        #[test]
        fn nth_largest_ack_is_the_nth_of_the_sorted_acks(
            acks in proptest::collection::vec((0u32..4, 0u32..1000), 0..40),
            n in 1usize..8,
        ) {
            let peers: Vec<Peer> = acks
                .iter()
                .map(|&(f, o)| Peer { acked: Lsn::new(f, o), ..Peer::default() })
                .collect();
            let mut sorted: Vec<Lsn> = peers.iter().map(|p| p.acked).collect();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            prop_assert_eq!(nth_largest_ack(peers.iter(), n), sorted.get(n - 1).copied());
        }
    }
}
