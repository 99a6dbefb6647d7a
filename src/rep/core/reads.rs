//! What a read may return: follower reads' commit points (read index), the
//! permanence of a key's value, and where a commit token stands. The lease
//! and confirmation rules reads rest on are in [`super::lease`].

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::token::{CommitToken, TokenStatus};
use crate::rep::types::{Role, SendFlags, Status};
use crate::wire::Message;

/// At most this many follower-read answers a client keeps.
const MAX_READ_RESULTS: usize = 4096;
/// A follower read's request as the client tracks it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadIndexState {
    /// Sent; no answer yet.
    Waiting,
    /// The master's commit point: apply up to here, then read locally.
    Ready(Lsn),
}

impl Core {
    /// A client starts a follower read: asks the master for its commit point.
    pub fn read_index_start(&mut self, now: u64) -> Result<u64> {
        self.advance(now);
        if self.role != Role::Client {
            return Err(Error::invalid("follower reads are started on clients"));
        }
        let Some(master) = self.master else {
            return Err(Error::Unavail(
                "no master is known for a follower read".into(),
            ));
        };
        if self.lease.next_read_id == 0 {
            // Ids must not repeat across restarts: an answer to a read sent
            // before a crash may still arrive, and must not match a new read.
            let hi = u64::from(self.next_random());
            let lo = u64::from(self.next_random());
            self.lease.next_read_id = (hi << 32 | lo) >> 1;
        }
        self.lease.next_read_id += 1;
        let id = self.lease.next_read_id;
        if self.lease.reads.len() >= MAX_READ_RESULTS {
            let oldest = *self.lease.reads.keys().next().expect("non-empty");
            self.lease.reads.remove(&oldest);
        }
        self.lease.reads.insert(id, ReadIndexState::Waiting);
        self.send(Outgoing::to(master, Message::ReadIndexReq { id }).hints(SendFlags::NOBUFFER));
        Ok(id)
    }

    /// Where follower read `id` stands (`None` if unknown or forgotten).
    pub fn read_index_state(&self, id: u64) -> Option<ReadIndexState> {
        self.lease.reads.get(&id).copied()
    }

    /// Forgets follower read `id`.
    pub fn read_index_finish(&mut self, id: u64) {
        self.lease.reads.remove(&id);
    }

    /// The client receives its master's commit point for a follower read.
    pub(crate) fn on_read_index(&mut self, id: u64, lsn: Lsn) -> Result<Status> {
        if let Some(s) = self.lease.reads.get_mut(&id) {
            *s = ReadIndexState::Ready(lsn);
        }
        // The answer is the master's commit point: it also tells us how much
        // of our own log is permanent.
        self.note_master_perm_point(lsn);
        Ok(Status::Processed)
    }

    /// True when everything this site has applied is known permanent, so a
    /// read of its store cannot return a write that a rollback may undo.
    pub fn applied_is_permanent(&self) -> bool {
        self.storage.log().last_lsn() <= self.known_permanent_point()
    }

    /// True when the value of `key` in this site's store is permanent: no
    /// record after the known permanent point touches it. Scans only the
    /// not-yet-permanent tail of the log, so a read of one key need not wait
    /// for a stream of writes to other keys to become permanent.
    pub fn key_is_permanent(&self, key: &[u8]) -> Result<bool> {
        let floor = self.known_permanent_point();
        let log = self.storage.log();
        if log.last_lsn() <= floor {
            return Ok(true);
        }
        if floor < log.base_lsn() {
            // The records between were trimmed into a checkpoint: unknown.
            return Ok(false);
        }
        for rec in log.iter_from(floor) {
            let rec = rec?;
            if rec.lsn <= floor || rec.rtype != crate::log::RecordType::Commit {
                continue;
            }
            let mut touched = false;
            crate::db::for_each_op(&rec.payload, self.storage.op_limits(), |op| match op {
                crate::db::OpRef::Put { key: k, .. } | crate::db::OpRef::Delete { key: k } => {
                    touched |= k == key
                }
            })?;
            if touched {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(super) fn known_permanent_point(&self) -> Lsn {
        match self.role {
            Role::Master => self.master_state.perm_lsn,
            _ => self.client_state.known_perm,
        }
    }

    /// True when this client has applied its master's log up to `lsn`.
    pub fn applied_through(&self, lsn: Lsn) -> bool {
        (self.role == Role::Master
            || (self.role == Role::Client && self.client_state.sync.is_online()))
            && self.storage.log().last_lsn() >= lsn
    }

    /// Where a commit token stands on this site. A positive answer can be
    /// undone by a later rollback, as in Berkeley DB.
    pub fn token_status(&self, token: &CommitToken) -> TokenStatus {
        if token.lsn.is_zero() {
            return TokenStatus::Empty;
        }
        let log = self.storage.log();
        let last = log.last_lsn();
        if token.lsn <= last {
            if token.lsn <= log.base_lsn() || token.lsn < log.first_lsn() {
                // Trimmed into a checkpoint: it is applied unless a later generation came first.
                return if token.gen <= log.last_gen() {
                    TokenStatus::Applied
                } else {
                    TokenStatus::Pending
                };
            }
            return match log.read(token.lsn) {
                Ok(rec) if rec.gen == token.gen => TokenStatus::Applied,
                Ok(rec) if rec.gen > token.gen => TokenStatus::Never,
                Ok(_) => TokenStatus::Pending,
                Err(_) if log.last_gen() > token.gen => TokenStatus::Never,
                Err(_) => TokenStatus::Pending,
            };
        }
        if log.last_gen() > token.gen {
            TokenStatus::Never
        } else {
            TokenStatus::Pending
        }
    }
}
