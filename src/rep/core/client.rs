//! The client's side of the protocol once it follows a master: applying
//! records strictly in LSN order, buffering early ones, filling gaps with
//! re-requests, and acknowledging permanent records once durable. Finding
//! the master's and this log's common point is in [`super::sync`].

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::log::record::{CheckedBatch, RecordType};
use crate::lsn::Lsn;
use crate::rep::config::RepConfig;
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::retry::Retry;
use crate::rep::types::{Eid, Event, Role, SendFlags, Status};
use crate::wire::{Envelope, Message, MsgFlags};

/// Where a client stands with its master.
#[derive(Clone, Debug, Default)]
pub(crate) enum SyncState {
    /// No master known; looking for one.
    #[default]
    Searching,
    /// A master is known but the host asked to synchronise only on `rep_sync`.
    Delayed,
    /// Asking the master for its record at `lsn` to find the last shared record.
    Verifying { lsn: Lsn, retry: Retry },
    /// Fetching the master's snapshot.
    Initializing {
        ckpt_lsn: Lsn,
        total: u64,
        buf: Vec<u8>,
        retry: Retry,
    },
    /// The local log is a prefix of the master's: records apply as they come.
    Online,
    /// Joining failed; waits for a new master or `rep_start`.
    Failed,
}

impl SyncState {
    /// Verifying, rolling back or loading a snapshot: see [`Core::is_syncing`].
    pub(crate) fn is_rewriting(&self) -> bool {
        matches!(
            self,
            SyncState::Verifying { .. } | SyncState::Initializing { .. }
        )
    }

    /// The local log is a prefix of the master's and records apply as they come.
    pub(crate) fn is_online(&self) -> bool {
        matches!(self, SyncState::Online)
    }
}
/// A record that arrived ahead of a gap.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    prev: Lsn,
    raw: Vec<u8>,
}
/// Client-only state.
#[derive(Default)]
pub(crate) struct ClientState {
    pub sync: SyncState,
    pub pending: BTreeMap<Lsn, Pending>,
    pub pending_bytes: u64,
    pub gap: Option<Retry>,
    pub master_last: Lsn,
    /// Records of the local log up to here were declared permanent by a master.
    pub known_perm: Lsn,
    pub startup_target: Option<Lsn>,
    pub startup_done: bool,
    pub master_heard_us: u64,
    /// When a master of a generation older than ours last spoke to us
    /// (`None`: not since we last had a master). See
    /// [`Core::stale_master_is_live`].
    pub stale_master_heard_us: Option<u64>,
    pub search_since: u64,
    pub search_retry: Option<Retry>,
    pub search_held: bool,
}
impl ClientState {
    pub(crate) fn next_deadline(&self, cfg: &RepConfig) -> Option<u64> {
        let mut d: Option<u64> = None;
        let mut consider = |t: u64| d = Some(d.map_or(t, |d: u64| d.min(t)));
        if let Some(g) = &self.gap {
            consider(g.next_at);
        }
        match &self.sync {
            SyncState::Verifying { retry, .. } | SyncState::Initializing { retry, .. } => {
                consider(retry.next_at)
            }
            SyncState::Searching => {
                if let Some(r) = &self.search_retry {
                    consider(r.next_at);
                }
                if !self.search_held {
                    consider(self.search_since + cfg.master_search_us);
                }
            }
            _ => {}
        }
        if cfg.heartbeat_monitor_us > 0 && !matches!(self.sync, SyncState::Searching) {
            consider(self.master_heard_us + cfg.heartbeat_monitor_us);
        }
        d
    }

    pub(super) fn clear_stream(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.gap = None;
    }
}

impl Core {
    /// `rep_sync`: a delayed client starts synchronising with its master.
    pub fn sync(&mut self, now: u64) -> Result<()> {
        self.advance(now);
        self.check_alive()?;
        if self.role != Role::Client {
            return Err(Error::invalid("rep_sync is for clients"));
        }
        if matches!(self.client_state.sync, SyncState::Delayed) {
            self.begin_sync()?;
        }
        Ok(())
    }

    #[inline]
    pub(super) fn send_to_master(&mut self, msg: Message, lsn: Lsn, sflags: SendFlags) {
        if let Some(m) = self.master {
            self.send(Outgoing::to(m, msg).lsn(lsn).hints(sflags));
        }
    }

    pub(super) fn request_log(&mut self, after: Lsn, rerequest: bool) {
        let mut flags = MsgFlags::default();
        let mut sflags = SendFlags::ANYWHERE;
        if rerequest {
            flags |= MsgFlags::REREQUEST;
            sflags |= SendFlags::REREQUEST;
        }
        let upto = self
            .client_state
            .pending
            .values()
            .next()
            .map(|p| p.prev)
            .unwrap_or(Lsn::ZERO);
        self.stats.log_requested += 1;
        if let Some(m) = self.master {
            self.send(
                Outgoing::to(m, Message::LogReq { after, upto })
                    .lsn(after)
                    .flags(flags)
                    .hints(sflags),
            );
        }
    }

    /// A message sent by this site's master (generation already checked).
    /// Always inline: `dispatch` is its one caller, and out of line
    /// every log message and heartbeat paid for a second call.
    #[inline(always)]
    pub(crate) fn client_message(&mut self, env: Envelope<&[u8]>, from: Eid) -> Result<Status> {
        if self.role != Role::Client || self.master != Some(from) {
            return Ok(Status::Ignore);
        }
        self.client_state.master_heard_us = self.now;
        match env.msg {
            Message::Log { perm_lsn, records } => {
                self.on_log(env.lsn, env.flags, perm_lsn, records)
            }
            Message::NewMaster { perm_lsn } | Message::Heartbeat { perm_lsn } => {
                self.client_state.master_last = self.client_state.master_last.max(env.lsn);
                self.note_master_perm(perm_lsn);
                if matches!(self.client_state.sync, SyncState::Failed) {
                    return Ok(Status::Processed);
                }
                self.check_gap();
                self.maybe_startup_done();
                if matches!(env.msg, Message::Heartbeat { .. }) {
                    self.ack_heartbeat(env.lsn);
                }
                Ok(Status::Processed)
            }
            Message::Verify { record } => self.on_verify(env.lsn, record),
            Message::LeaseReq { master_time_us } => self.on_lease_request(from, master_time_us),
            Message::ReadIndex { id } => self.on_read_index(id, env.lsn),
            Message::VerifyFail { reason } => self.on_verify_fail(env.lsn, reason),
            Message::Snapshot {
                ckpt_lsn,
                ckpt_gen: _,
                total_len,
                offset,
                data,
            } => self.on_snapshot(ckpt_lsn, total_len, offset, data),
            _ => Ok(Status::Ignore),
        }
    }

    pub(crate) fn note_master_perm_point(&mut self, perm_lsn: Lsn) {
        self.note_master_perm(perm_lsn);
    }

    pub(super) fn note_master_perm(&mut self, perm_lsn: Lsn) {
        if matches!(self.client_state.sync, SyncState::Online) {
            let last = self.storage.log().last_lsn();
            let mine = perm_lsn.min(last);
            self.client_state.known_perm = self.client_state.known_perm.max(mine);
            debug_assert!(
                self.client_state.known_perm <= last,
                "the known permanent point {} is past the log's end {last}",
                self.client_state.known_perm
            );
        }
    }

    pub(super) fn on_log(
        &mut self,
        last_in_msg: Lsn,
        flags: MsgFlags,
        perm_lsn: Lsn,
        records: &[u8],
    ) -> Result<Status> {
        if !matches!(self.client_state.sync, SyncState::Online) {
            return Ok(Status::Processed);
        }
        let max = self.storage.log().config().max_payload();
        // Check the whole batch (framing and CRC) before touching anything;
        // the checked records are then appended without checking again.
        let batch = CheckedBatch::check(records, max)?;
        let start_last = self.storage.log().last_lsn();
        let mut appended_perm: Option<Lsn> = None;
        let mut not_perm: Option<Lsn> = None;
        let mut recs = batch.iter();
        while let Some(rec) = recs.next() {
            let hdr = *rec.header();
            let last = self.storage.log().last_lsn();
            if hdr.lsn <= last {
                self.stats.log_duplicated += 1;
                continue;
            }
            if hdr.prev_lsn == last && recs.is_empty() {
                // The last (often the only) record: no run to batch.
                self.storage.append_checked_from_master(rec)?;
                self.stats.log_records += 1;
                appended_perm = Some(hdr.lsn);
            } else if hdr.prev_lsn == last {
                // This record and the ones after it that continue it.
                let mut n = 0;
                let r = self
                    .storage
                    .append_chain_from_master(rec, &mut recs, &mut n);
                self.stats.log_records += n;
                r?;
                appended_perm = Some(self.storage.log().last_lsn());
            } else {
                if flags.contains(MsgFlags::PERMANENT) && hdr.rtype == RecordType::Commit {
                    not_perm = Some(hdr.lsn);
                }
                self.buffer_record(hdr.lsn, hdr.prev_lsn, rec.bytes());
            }
        }
        if let Some(l) = self.drain_pending()? {
            appended_perm = Some(l);
        }
        self.client_state.master_last = self.client_state.master_last.max(last_in_msg);
        self.note_master_perm(perm_lsn);
        let last = self.storage.log().last_lsn();
        let progressed = last > start_last;
        if progressed {
            // Progress ends the wait on the old gap: a gap that remains or
            // appears later is a new one, re-requested after `request_min`
            // again rather than after a back-off grown on the old one.
            self.client_state.gap = None;
        }
        if flags.contains(MsgFlags::MORE) {
            self.request_log(last, false);
        } else if progressed
            && flags.contains(MsgFlags::RESEND)
            && (!self.client_state.pending.is_empty() || self.client_state.master_last > last)
        {
            // The answer to our request filled one gap and another follows
            // (several records were lost): ask for the next one now, as the
            // master evidently answers, instead of one gap per back-off.
            self.request_log(last, false);
            self.client_state.gap = Some(Retry::new(self.now, self.cfg.request_us_min));
        }
        self.check_gap();
        let status = match appended_perm {
            Some(lsn) => {
                // The ack promises durability: a failed write or fsync
                // cannot be retried with trust, so the site stops here.
                if let Err(e) = self.storage.log_mut().flush() {
                    return Err(self.fail(format!("writing the log before an ack: {e}")));
                }
                let last = self.storage.log().last_lsn();
                let priority = self.election_priority();
                if self.group_state.refused.is_none() {
                    // A site refused for claiming a member's eid must not
                    // speak for that member.
                    self.send_to_master(Message::Ack { priority }, last, SendFlags::default());
                }
                self.report_caught_up();
                if flags.contains(MsgFlags::PERMANENT) {
                    Status::IsPerm(lsn)
                } else {
                    Status::Processed
                }
            }
            None => match not_perm {
                Some(lsn) => Status::NotPerm(lsn),
                None => Status::Processed,
            },
        };
        self.maybe_startup_done();
        Ok(status)
    }

    pub(super) fn buffer_record(&mut self, lsn: Lsn, prev: Lsn, raw: &[u8]) {
        if self.client_state.pending.contains_key(&lsn) {
            self.stats.log_duplicated += 1;
            return;
        }
        if self.client_state.pending_bytes + raw.len() as u64 > self.cfg.pending_bytes_max {
            // Dropped; the gap request will fetch it again.
            return;
        }
        self.client_state.pending_bytes += raw.len() as u64;
        self.stats.log_queued += 1;
        self.client_state.pending.insert(
            lsn,
            Pending {
                prev,
                raw: raw.to_vec(),
            },
        );
    }

    /// Appends buffered records that now follow the log; returns the last appended.
    pub(super) fn drain_pending(&mut self) -> Result<Option<Lsn>> {
        if self.client_state.pending.is_empty() {
            // The usual case, checked without starting a walk of the map.
            return Ok(None);
        }
        let mut appended = None;
        loop {
            let last = self.storage.log().last_lsn();
            let Some((&lsn, p)) = self.client_state.pending.iter().next() else {
                break;
            };
            if lsn <= last {
                let p = self
                    .client_state
                    .pending
                    .remove(&lsn)
                    .map(|p| p.raw.len())
                    .unwrap_or(0);
                self.client_state.pending_bytes -= p as u64;
                continue;
            }
            if p.prev != last {
                break;
            }
            let p = self
                .client_state
                .pending
                .remove(&lsn)
                .expect("entry seen above");
            self.client_state.pending_bytes -= p.raw.len() as u64;
            self.storage.append_from_master(&p.raw)?;
            self.stats.log_records += 1;
            appended = Some(lsn);
        }
        Ok(appended)
    }

    /// Requests missing records once a gap has waited `request_min`, then at
    /// doubling intervals up to `request_max`.
    #[inline]
    pub(super) fn check_gap(&mut self) {
        if !matches!(self.client_state.sync, SyncState::Online) {
            self.client_state.gap = None;
            return;
        }
        let last = self.storage.log().last_lsn();
        let behind = !self.client_state.pending.is_empty() || self.client_state.master_last > last;
        if !behind {
            self.client_state.gap = None;
            return;
        }
        let now = self.now;
        let min = self.cfg.request_us_min;
        let max = self.cfg.request_us_max;
        let gap = self
            .client_state
            .gap
            .get_or_insert_with(|| Retry::new(now, min));
        if gap.due(now) {
            let rerequest = gap.count > 0;
            gap.fired(now, max);
            self.request_log(last, rerequest);
        }
    }

    pub(super) fn maybe_startup_done(&mut self) {
        if self.client_state.startup_done || !matches!(self.client_state.sync, SyncState::Online) {
            return;
        }
        if let Some(target) = self.client_state.startup_target {
            if self.storage.log().last_lsn() >= target {
                self.client_state.startup_done = true;
                self.event(Event::StartupDone);
            }
        }
    }

    pub(crate) fn client_tick(&mut self) -> Result<Status> {
        let now = self.now;
        let max = self.cfg.request_us_max;
        if self.cfg.heartbeat_monitor_us > 0
            && self.master.is_some()
            && now >= self.client_state.master_heard_us + self.cfg.heartbeat_monitor_us
        {
            log::warn!(
                "no word from master {:?} for {} µs",
                self.master,
                self.cfg.heartbeat_monitor_us
            );
            self.event(Event::MasterFailure);
            self.start_search();
            self.client_state.search_held = true;
            return Ok(Status::HoldElection);
        }
        match &mut self.client_state.sync {
            SyncState::Searching => {
                if let Some(r) = &mut self.client_state.search_retry {
                    if r.due(now) {
                        r.fired(now, max);
                        self.send(
                            Outgoing::broadcast(Message::MasterReq)
                                .flags(MsgFlags::REREQUEST)
                                .hints(SendFlags::REREQUEST),
                        );
                    }
                }
                if !self.client_state.search_held
                    && now >= self.client_state.search_since + self.cfg.master_search_us
                {
                    self.client_state.search_held = true;
                    return Ok(Status::HoldElection);
                }
            }
            SyncState::Verifying { lsn, retry } => {
                if retry.due(now) {
                    retry.fired(now, max);
                    let lsn = *lsn;
                    self.send_to_master(Message::VerifyReq, lsn, SendFlags::REREQUEST);
                }
            }
            SyncState::Initializing {
                ckpt_lsn,
                buf,
                retry,
                ..
            } => {
                if retry.due(now) {
                    retry.fired(now, max);
                    let msg = Message::InitReq {
                        ckpt_lsn: *ckpt_lsn,
                        offset: buf.len() as u64,
                    };
                    self.send_to_master(msg, Lsn::ZERO, SendFlags::REREQUEST);
                }
            }
            SyncState::Online => self.check_gap(),
            SyncState::Delayed | SyncState::Failed => {}
        }
        Ok(Status::Processed)
    }
}
