//! The data calls of [`Env`]: transactions, reads at a chosen consistency,
//! commit tokens, and the commit path with group commit (one fsync for
//! every committer waiting).

use std::time::{Duration, Instant};

use super::{CommitInfo, Env, ReadLevel, Txn, Wait};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::rep::{CommitPoll, CommitToken, Core, ReadPoll, Role, TokenStatus};

impl Env {
    /// Begins a transaction. Its writes are buffered and applied atomically at commit.
    pub fn txn(&self) -> Txn<'_> {
        Txn::new(std::borrow::Cow::Borrowed(self))
    }

    /// Reads the committed value of `key` from the local store: the
    /// default read, [`ReadLevel::Local`]. A client in the middle of
    /// synchronising with a new master waits for the sync to end first, or
    /// with [`ConfigFlag::NoWait`](crate::ConfigFlag::NoWait) answers [`Error::Lockout`] at once. On a
    /// master with leases the read is served only under a valid lease: it
    /// waits up to one lease timeout for a refresh, then fails with
    /// [`Error::LeaseExpired`] (use [`ReadLevel::Stale`] to ignore the lease).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let lease_wait = {
            let core = self.inner.core.lock();
            core.check_alive()?;
            (core.config().lease && core.role() == Role::Master)
                .then(|| Duration::from_micros(core.config().lease_timeout_us))
        };
        match lease_wait {
            // The common case, decided without a ticket or a wait.
            None => self.get_in(&crate::Database::default(), key),
            Some(timeout) => self.get_at(key, ReadLevel::Local, timeout),
        }
    }

    /// Reads `key` at the chosen consistency level, waiting at most `timeout`
    /// for the master's confirmation or for this site to catch up. The
    /// decision is the core's (`Core::read_begin` / `Core::read_poll`).
    ///
    /// Errors: `LeaseExpired` when a master with leases cannot confirm its
    /// lease; `Timeout` when the master cannot be reached or this site does
    /// not catch up in time; `Invalid` for a linearizable read on a client;
    /// `Unavail` when the site stops being master, or the master changes,
    /// during the read; `Lockout` as for [`Env::get`].
    pub fn get_at(
        &self,
        key: &[u8],
        level: ReadLevel,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>> {
        let mut ticket = self.run(|core, now| {
            let deadline = now.saturating_add(timeout.as_micros().min(u128::from(u64::MAX)) as u64);
            core.read_begin(now, level, deadline)
        })?;
        self.wait_on_core(|core, now| match core.read_poll(now, &mut ticket, key) {
            ReadPoll::Ready(v) => Wait::Done(Ok(v)),
            ReadPoll::Failed(e) => Wait::Done(Err(e)),
            ReadPoll::Wait { until } => Wait::Until(until),
        })
    }

    /// Waits up to `timeout` for the commit `token` names to be applied here
    /// (`txn_applied`). Returns at once when it is applied, can never arrive,
    /// or the token is empty; returns `Pending` when the wait ran out.
    pub fn txn_applied(&self, token: &CommitToken, timeout: Duration) -> Result<TokenStatus> {
        self.check_failed()?;
        let deadline = Instant::now() + timeout;
        let mut core = self.inner.core.lock();
        loop {
            let status = core.token_status(token);
            if status != TokenStatus::Pending || Instant::now() >= deadline {
                return Ok(status);
            }
            self.inner.changed.wait_until(&mut core, deadline);
        }
    }

    /// A digest of the whole local store (equal on sites holding equal data).
    pub fn store_digest(&self) -> u64 {
        self.inner.core.lock().storage().store().digest()
    }

    /// Number of keys in the local store.
    pub fn len(&self) -> usize {
        self.inner.core.lock().storage().store().len()
    }

    /// True when the local store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last LSN in the local log.
    pub fn last_lsn(&self) -> Lsn {
        self.inner.core.lock().storage().log().last_lsn()
    }

    /// Writes a checkpoint and removes log segments wholly before it.
    pub fn checkpoint(&self) -> Result<Lsn> {
        self.run(|core, _| {
            let r = core.storage_mut().checkpoint();
            r.map_err(|e| core.fail(format!("writing a checkpoint: {e}")))
        })
    }

    /// Makes every log record durable, whatever the durability mode.
    pub fn log_flush(&self) -> Result<()> {
        self.run(|core, _| {
            let r = core.storage_mut().log_mut().force_sync();
            r.map_err(|e| core.fail(format!("syncing the log: {e}")))
        })
    }

    /// Commits an encoded transaction payload; `check` runs under the
    /// environment lock just before the commit record is written, and its
    /// error stops the commit (the data layer's validation).
    pub(crate) fn commit_payload(
        &self,
        payload: &[u8],
        check: impl FnOnce(&Core) -> Result<()>,
    ) -> Result<CommitInfo> {
        if payload.len() <= 4 {
            return Ok(CommitInfo {
                lsn: Lsn::ZERO,
                token: CommitToken::default(),
                permanent: true,
            });
        }
        let mut ticket = self.run(|core, now| {
            check(core)?;
            core.commit_begin(now, payload)
        })?;
        let (lsn, gen) = (ticket.lsn, ticket.gen);
        if ticket.needs_sync {
            if let Err(e) = self.group_sync(lsn) {
                // The commit may or may not be on disk, and a retried fsync
                // cannot be trusted: nothing may continue as if it were.
                let mut core = self.inner.core.lock();
                return Err(core.fail(format!("log fsync failed at commit {lsn}: {e}")));
            }
            self.run(|core, _| {
                core.note_local_sync();
                Ok(())
            })?;
        }
        let permanent =
            self.wait_on_core(|core, now| match core.commit_poll(now, &mut ticket) {
                CommitPoll::Permanent => Wait::Done(Ok(true)),
                CommitPoll::NotPermanent => Wait::Done(Ok(false)),
                CommitPoll::Failed(e) => Wait::Done(Err(e)),
                CommitPoll::Waiting { until } => Wait::Until(until),
            })?;
        Ok(CommitInfo {
            lsn,
            token: CommitToken { gen, lsn },
            permanent,
        })
    }

    /// Group commit: one thread fsyncs on behalf of every committer waiting.
    fn group_sync(&self, lsn: Lsn) -> Result<()> {
        let mut g = self.inner.group.lock();
        loop {
            if g.durable >= lsn {
                return Ok(());
            }
            if g.running {
                self.inner.group_done.wait(&mut g);
                continue;
            }
            g.running = true;
            drop(g);
            let point = self.inner.core.lock().storage().log().sync_point();
            let fsync = point.as_ref().map(|(file, upto)| (*upto, file.sync()));
            let (result, durable) = {
                let mut core = self.inner.core.lock();
                let log = core.storage_mut().log_mut();
                // The log records the outcome: a failed fsync puts it into
                // its failed state, so nothing retries it and trusts it.
                let result = match fsync {
                    Some((upto, fsync)) => log.sync_finished(upto, fsync),
                    None => Ok(()),
                };
                (result, log.durable_lsn())
            };
            g = self.inner.group.lock();
            g.running = false;
            g.durable = g.durable.max(durable);
            self.inner.group_done.notify_all();
            result?;
            if point.is_none() && g.durable < lsn {
                return Err(Error::RunRecovery(format!(
                    "commit {lsn} is not in the log's unsynced tail and not durable"
                )));
            }
        }
    }
}
