//! Read transactions at the stronger read levels: a snapshot that holds
//! nothing a rollback could undo, taken once this site knows it is not
//! behind (see [`ReadLevel`]). The decision is the core's
//! ([`Core::snapshot_begin`](crate::rep::Core::snapshot_begin) /
//! [`Core::snapshot_poll`](crate::rep::Core::snapshot_poll)); this file only
//! waits for it, as [`Env::get_at`] does for one key.

use std::sync::Arc;
use std::time::Duration;

use super::{ReadTxn, Snap};
use crate::databases::SnapshotSlot;
use crate::env::{Env, ReadLevel, Wait};
use crate::error::Result;
use crate::rep::ReadPoll;

impl Env {
    /// Begins a read transaction at `level`, waiting at most `timeout`:
    ///
    /// - `Stale`: at once, whatever this site has applied ([`Env::read_txn`]).
    /// - On the master, `Local`, `Linearizable` or `Follower`: once the
    ///   master has confirmed it still is (its lease, or a round of
    ///   acknowledgements), a snapshot of its store, returned when every
    ///   commit in it is permanent.
    /// - On a client, `Local`: at once, as `Stale`.
    /// - On a client, `Follower`: once it has applied its master's commit
    ///   point, a snapshot holding nothing past what it knows permanent.
    ///   `Linearizable` on a client is an error, as for [`Env::get_at`].
    ///
    /// Errors: `Timeout` (or `LeaseExpired` with leases) when that cannot
    /// be had in time; `Unavail` when this site stops being master or the
    /// master changes; `HandleDead` when the store is replaced before the
    /// snapshot is returned; `Lockout` and the sync wait as for every data
    /// call.
    pub fn read_txn_at(&self, level: ReadLevel, timeout: Duration) -> Result<ReadTxn> {
        let slot = SnapshotSlot::take(self)?;
        let mut ticket = self.run(|core, now| {
            let deadline = now.saturating_add(timeout.as_micros().min(u128::from(u64::MAX)) as u64);
            core.snapshot_begin(now, level, deadline)
        })?;
        // As every data call: wait out a sync first (or `Lockout`).
        if let Err(e) = self.data_lock() {
            self.inner.core.lock().read_cancel(ticket);
            return Err(e);
        }
        let (store, instance) =
            self.wait_on_core(|core, now| match core.snapshot_poll(now, &mut ticket) {
                ReadPoll::Ready(s) => Wait::Done(Ok(s)),
                ReadPoll::Failed(e) => Wait::Done(Err(e)),
                ReadPoll::Wait { until } => Wait::Until(until),
            })?;
        Ok(ReadTxn {
            snap: Snap {
                env: self.clone(),
                store: Arc::new(store),
                instance,
                _slot: Arc::new(slot),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::env::EnvConfig;
    use crate::error::Error;
    use crate::rep::StartAs;

    /// A master of a group of three whose every message is lost.
    fn lone_master() -> Env {
        let mut config = EnvConfig::default();
        config.rep.nsites = 3;
        let env = Env::open_in_memory(config).unwrap();
        env.rep_set_transport(1, |_| Ok(())).unwrap();
        env.rep_start(&[], StartAs::Master).unwrap();
        env
    }

    #[test]
    fn a_master_without_a_valid_lease_fails_snapshots_with_lease_expired() {
        let env = lone_master();
        {
            // A lease master must be elected, and leases set before
            // `rep_start`: turn them on in place, which leaves a master
            // holding no valid lease (as one whose lease expired).
            let mut core = env.inner.core.lock();
            core.cfg.lease = true;
            core.cfg.lease_timeout_us = 100_000;
        }
        let wait = Duration::from_millis(50);
        for level in [
            ReadLevel::Linearizable,
            ReadLevel::Follower,
            ReadLevel::Local,
        ] {
            let t0 = Instant::now();
            let r = env.read_txn_at(level, wait);
            assert!(matches!(r, Err(Error::LeaseExpired)), "{level:?}");
            assert!(t0.elapsed() >= wait, "{level:?}: it waited for the lease");
        }
        assert!(env.read_txn_at(ReadLevel::Stale, wait).is_ok());
    }

    #[test]
    fn a_master_that_cannot_confirm_itself_times_out() {
        let env = lone_master();
        let wait = Duration::from_millis(50);
        let t0 = Instant::now();
        let r = env.read_txn_at(ReadLevel::Linearizable, wait);
        assert!(matches!(r, Err(Error::Timeout)), "{:?}", r.err());
        assert!(t0.elapsed() >= wait, "it waited for the confirmation");
    }
}
