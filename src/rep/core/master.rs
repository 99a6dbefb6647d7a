//! The master's side of the protocol: announcing itself, appending commits
//! and broadcasting them, and answering clients' requests (log records,
//! verification, snapshots).

use std::sync::Arc;

use crate::error::Result;
use crate::lsn::Lsn;
use crate::rep::config::{AckPolicy, RepConfig};
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::quorum::{available_window, PeerMap};
use crate::rep::types::{Eid, Role, SendFlags, Status, EID_BROADCAST};
use crate::wire::{self, VerifyFailReason};
use crate::wire::{Envelope, Message, MsgFlags};

/// A batch of records waiting to be broadcast is sent once it grows past this.
const BROADCAST_BATCH_BYTES: usize = 1 << 20;
/// Snapshot chunks sent during internal init are at most this big.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
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

impl Core {
    /// Sends this master's announcement to one site or to all.
    pub(crate) fn announce(&mut self, to: Eid) {
        let last = self.storage.log().last_lsn();
        let perm_lsn = self.master_state.perm_lsn;
        self.send(Outgoing::to(to, Message::NewMaster { perm_lsn }).lsn(last));
    }

    /// Appends a committed transaction (encoded ops) and queues it for the
    /// clients, leaving the log write to the host. Hosts should prefer
    /// [`Core::commit_begin`], which also writes the log out, latches the
    /// failed state on a write error and returns the ticket for
    /// [`Core::commit_poll`]; this stays for the test kit and the benchmark.
    #[cfg(any(test, feature = "testing"))]
    pub fn commit(&mut self, now: u64, payload: &[u8]) -> Result<Lsn> {
        let (lsn, _) = self.append_commit(now, payload)?;
        self.queue_broadcast(lsn)?;
        self.recompute_perm();
        Ok(lsn)
    }

    #[inline]
    pub(super) fn queue_broadcast(&mut self, lsn: Lsn) -> Result<()> {
        if self.master_state.bcast.is_empty() {
            // The records go straight into the body of the message that
            // will carry them; its fixed fields are filled in at the flush.
            // Sized like the last one, so a batch grows without copying.
            if self.master_state.bcast.capacity() == 0 {
                // The last batch left with its message: allocate directly
                // rather than through `reserve`'s growth path.
                self.master_state.bcast = Vec::with_capacity(self.master_state.bcast_cap);
            } else {
                self.master_state.bcast.reserve(self.master_state.bcast_cap);
            }
            self.master_state.bcast.resize(wire::LOG_BODY_PREFIX, 0);
        }
        let log = self.storage.log();
        let r = match log.last_record_bytes(lsn) {
            // A commit broadcasts the record it just appended: copied from
            // where it lies, without looking it up or parsing it again.
            Some(bytes) => {
                self.master_state.bcast.extend_from_slice(bytes);
                Ok(())
            }
            None => log
                .read_raw_into(lsn, &mut self.master_state.bcast)
                .map(|_| ()),
        };
        if let Err(e) = r {
            if self.master_state.bcast.len() == wire::LOG_BODY_PREFIX {
                self.master_state.bcast.clear();
            }
            return Err(e);
        }
        self.master_state.bcast_last = lsn;
        if self.master_state.bcast.len() - wire::LOG_BODY_PREFIX >= BROADCAST_BATCH_BYTES {
            self.flush_broadcast();
        }
        Ok(())
    }

    /// Sends the queued records as one permanent log message.
    pub(crate) fn flush_broadcast(&mut self) {
        if self.master_state.bcast.len() <= wire::LOG_BODY_PREFIX || self.role != Role::Master {
            self.master_state.bcast.clear();
            return;
        }
        let mut body = std::mem::take(&mut self.master_state.bcast);
        self.master_state.bcast_cap = body.len();
        let perm_lsn = self.master_state.perm_lsn;
        let lsn = self.master_state.bcast_last;
        let now = self.now;
        for p in self.master_state.peers.values_mut() {
            if p.acked < lsn && p.owed_since.is_none() {
                p.owed_since = Some(now);
            }
        }
        wire::finish_log_body(perm_lsn, &mut body);
        let env = self.sender().envelope(
            Message::Log {
                perm_lsn,
                records: (),
            },
            lsn,
            MsgFlags::PERMANENT,
        );
        self.queue_encoded(EID_BROADCAST, env, body, SendFlags::PERMANENT);
    }

    /// `rep_flush`: re-broadcasts the last log record, so clients that missed
    /// the tail notice the gap.
    pub fn flush(&mut self, now: u64) -> Result<()> {
        self.advance(now);
        self.check_alive()?;
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

    pub(crate) fn master_message(&mut self, env: Envelope<&[u8]>, from: Eid) -> Result<Status> {
        let now = self.now;
        if let Some(peer) = self.peer_entry(from) {
            peer.last_heard_us = now;
        }
        if env.gen > self.meta.gen {
            // A client knows a newer generation: this master is stale.
            log::info!(
                "master of generation {} steps down: site {from} knows generation {}",
                self.meta.gen,
                env.gen
            );
            self.become_client();
            // Our next election must be newer than what the peer knows, or
            // it elects us again below the peer's generation and the peer
            // deposes us again, forever: a removed site that has not yet
            // learnt of its removal keeps voting for another such site and
            // raising its generation one election at a time (seed 309691).
            // Remembering a heard egen needs no write: it only narrows
            // which elections this site takes part in.
            self.meta.egen = self.meta.egen.max(env.gen);
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
            Message::Ack { priority } => self.on_ack(from, env.lsn, priority),
            Message::LogReq { after, upto } => self.serve_log_request(from, after, upto),
            Message::VerifyReq => self.serve_verify(from, env.lsn),
            Message::InitReq { ckpt_lsn, offset } => self.serve_init(from, ckpt_lsn, offset),
            Message::LeaseGrant { master_time_us } => self.on_lease_grant(from, master_time_us),
            Message::ReadIndexReq { id } => self.on_read_index_request(from, id),
            _ => Ok(Status::Ignore),
        }
    }

    pub(super) fn serve_log_request(&mut self, from: Eid, after: Lsn, upto: Lsn) -> Result<Status> {
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
        let limit = match self.cfg.answer_bytes_max {
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
                let perm_lsn = self.master_state.perm_lsn;
                self.send(
                    Outgoing::to(from, Message::Log { perm_lsn, records })
                        .lsn(last)
                        .flags(flags),
                );
            }
            Err(_) => {
                self.send_verify_fail(from, after, VerifyFailReason::NoRecord);
            }
        }
        Ok(Status::Processed)
    }

    pub(super) fn send_verify_fail(&mut self, to: Eid, lsn: Lsn, reason: VerifyFailReason) {
        let msg = Message::VerifyFail { reason };
        self.send(Outgoing::to(to, msg).lsn(lsn));
    }

    pub(super) fn serve_verify(&mut self, from: Eid, lsn: Lsn) -> Result<Status> {
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
            Ok(_) => self.send(Outgoing::to(from, Message::Verify { record }).lsn(lsn)),
            Err(_) => self.send_verify_fail(from, lsn, VerifyFailReason::NoRecord),
        }
        Ok(Status::Processed)
    }

    pub(super) fn serve_init(&mut self, from: Eid, ckpt_lsn: Lsn, offset: u64) -> Result<Status> {
        let reuse = self
            .master_state
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
                self.master_state.snapshot = Some(s.clone());
                s
            }
        };
        let offset = if snap.lsn == ckpt_lsn {
            offset.min(snap.bytes.len() as u64)
        } else {
            0
        };
        let chunk = match self.cfg.answer_bytes_max {
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
        self.send(
            Outgoing::to(from, msg)
                .lsn(snap.lsn)
                .flags(MsgFlags::RESEND),
        );
        Ok(Status::Processed)
    }

    pub(crate) fn master_tick(&mut self) -> Result<Status> {
        self.recompute_perm();
        let hb = self.cfg.heartbeat_send_us;
        if hb > 0 && self.now >= self.master_state.last_send_us + hb {
            self.flush_broadcast();
            let last = self.storage.log().last_lsn();
            let perm_lsn = self.master_state.perm_lsn;
            self.send(Outgoing::broadcast(Message::Heartbeat { perm_lsn }).lsn(last));
        }
        Ok(Status::Processed)
    }
}
