//! Read transactions at the stronger read levels: a snapshot that holds
//! nothing a rollback could undo, taken once this site knows it is not
//! behind (see [`ReadLevel`]).

use std::time::{Duration, Instant};

use super::{ReadTxn, Snap};
use crate::databases::SnapshotSlot;
use crate::env::{Env, ReadLevel};
use crate::error::{Error, Result};
use crate::rep::{ReadIndexState, Role};

/// Longest a wait sleeps before looking again (a wake-up also comes with
/// every change to the environment).
const RECHECK: Duration = Duration::from_millis(20);

impl Env {
    /// Begins a read transaction at `level`, waiting at most `timeout`:
    ///
    /// - `Stale`: at once, whatever this site has applied ([`Env::read_txn`]).
    /// - On the master, `Linearizable` or `Follower`: once the master has
    ///   confirmed it still is (its lease, or a round of acknowledgements),
    ///   a snapshot of its store, returned when every commit in it is
    ///   permanent.
    /// - On a client, `Follower`: once it has applied its master's commit
    ///   point, a snapshot holding nothing past what it knows permanent.
    ///   `Linearizable` on a client is an error, as for [`Env::get_at`].
    ///
    /// Errors: `Timeout` (or `LeaseExpired` with leases) when that cannot
    /// be had in time; `Unavail` when this site stops being master or the
    /// master changes.
    pub fn read_txn_at(&self, level: ReadLevel, timeout: Duration) -> Result<ReadTxn> {
        let deadline = Instant::now() + timeout;
        match (level, self.role()) {
            (ReadLevel::Stale, _) => self.read_txn(),
            (_, Role::Master) => self.master_read_txn(deadline),
            (ReadLevel::Local, _) => self.read_txn(),
            (ReadLevel::Linearizable, _) => Err(Error::invalid(
                "linearizable reads are served by the master; use ReadLevel::Follower on a client",
            )),
            (ReadLevel::Follower, _) => self.follower_read_txn(deadline),
        }
    }

    fn master_read_txn(&self, deadline: Instant) -> Result<ReadTxn> {
        let slot = SnapshotSlot::take(self)?;
        let leases = self.inner.core.lock().config().lease;
        let since = if leases {
            None
        } else {
            Some(self.run(|core, now| core.confirm_start(now))?)
        };
        let mut snap: Option<(Snap, crate::Lsn)> = None;
        let mut slot = Some(slot);
        let mut core = self.data_lock()?;
        loop {
            core.advance(self.now_us());
            if core.role() != Role::Master {
                return Err(Error::Unavail(
                    "this site stopped being master during the read".into(),
                ));
            }
            let confirmed = match since {
                None => core.lease_valid(),
                Some(t) => core.confirmed_since(t),
            };
            if confirmed && snap.is_none() {
                // Taken once confirmed, so it holds every write completed
                // before the read began; returned once all of it is permanent.
                let lsn = core.storage().log().last_lsn();
                let slot = slot.take().expect("taken once");
                snap = Some((Snap::of(self, core.storage().store(), slot), lsn));
            }
            if let Some((s, lsn)) = &snap {
                if core.storage().store().instance_id() != s.instance {
                    return Err(Error::HandleDead);
                }
                if core.is_permanent(*lsn) {
                    let (snap, _) = snap.take().expect("checked just above");
                    return Ok(ReadTxn { snap });
                }
            }
            if Instant::now() >= deadline {
                return Err(if leases {
                    Error::LeaseExpired
                } else {
                    Error::Timeout
                });
            }
            self.inner
                .changed
                .wait_until(&mut core, deadline.min(Instant::now() + RECHECK));
        }
    }

    fn follower_read_txn(&self, deadline: Instant) -> Result<ReadTxn> {
        let slot = SnapshotSlot::take(self)?;
        let mut id = self.run(|core, now| core.read_index_start(now))?;
        let mut core = self.data_lock()?;
        let result = loop {
            let mut renew = false;
            if let Some(ReadIndexState::Ready(lsn)) = core.read_index_state(id) {
                if core.applied_through(lsn) {
                    if core.applied_is_permanent() {
                        break Ok(ReadTxn {
                            snap: Snap::of(self, core.storage().store(), slot),
                        });
                    }
                    // Records past the commit point we were given may not
                    // be permanent yet: ask for a newer point.
                    renew = true;
                }
            }
            if core.read_index_state(id).is_none() {
                break Err(Error::Unavail(
                    "the follower read was abandoned: the master changed".into(),
                ));
            }
            if Instant::now() >= deadline {
                break Err(Error::Timeout);
            }
            let timed_out = self
                .inner
                .changed
                .wait_until(&mut core, deadline.min(Instant::now() + RECHECK))
                .timed_out();
            if renew && timed_out {
                core.read_index_finish(id);
                drop(core);
                id = self.run(|core, now| core.read_index_start(now))?;
                core = self.data_lock()?;
            }
        };
        core.read_index_finish(id);
        result
    }
}
