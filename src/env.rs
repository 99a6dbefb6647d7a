//! [`Env`]: the synchronous, thread-safe environment handle.
//!
//! `Env` wraps the deterministic [`Core`] with a mutex, condition variables
//! for the calls that block (commit waiting for acknowledgements, `rep_elect`),
//! the real clock, group commit, and the host's callbacks. Callbacks always
//! run with no internal lock held, so a callback may call back into the
//! handle.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::log::LogConfig;
use crate::lsn::Lsn;
use crate::rep::{
    CommitPoll, CommitToken, ConfigFlag, Core, Eid, ElectionOutcome, ElectionProgress, Event,
    OutMsg, ReadPoll, RepConfig, RepStats, Role, StartAs, Status, TimeoutKind, TokenStatus,
};
use crate::storage::Storage;
pub use crate::txn::Txn;
use crate::vfs::{StdFs, Vfs};

/// The error a host's `send` callback returns when it could not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendError;

/// The host's transport: delivers one message, or says it could not.
pub type SendFn = dyn Fn(&OutMsg) -> std::result::Result<(), SendError> + Send + Sync;
/// The host's event handler.
pub type EventFn = dyn Fn(&Event) + Send + Sync;

/// Everything `Env::open` needs.
#[derive(Clone, Debug, Default)]
pub struct EnvConfig {
    /// Log settings (durability, segment size, in-memory).
    pub log: LogConfig,
    /// Replication settings.
    pub rep: RepConfig,
    /// Seed for election tie-breakers; `None` draws one from the clock.
    pub seed: Option<u64>,
    /// Limits of the data calls (key and value sizes, transaction size,
    /// open snapshots).
    pub data: crate::databases::DataLimits,
}

pub use crate::rep::ReadLevel;

/// What a commit achieved.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// LSN of the commit record (zero for a transaction that changed nothing).
    pub lsn: Lsn,
    /// Identifies the commit on every site, for [`Env::txn_applied`].
    pub token: CommitToken,
    /// The commit became permanent under the ack policy within the ack
    /// timeout: the acknowledgements the policy waits for arrived (see
    /// [`AckPolicy`](crate::AckPolicy)). What that promises depends on the
    /// policy: under `All` and `Quorum` the commit survives any election;
    /// under `AllAvailable` any election the then-available clients take
    /// part in; under `One` the loss of the master but not every election;
    /// under `None` only a crash of the master, not an election. `false`:
    /// the commit is in the local log and may still become permanent, or be
    /// rolled back by a later master.
    pub permanent: bool,
}

/// What the timer call reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TickOutcome {
    /// What the host must act on (`HoldElection` after a silent master, ...).
    pub status: Status,
    /// How long the host may sleep before calling again; `None`: no timer
    /// runs (sleep until the next message or call).
    pub next: Option<Duration>,
}

#[derive(Default)]
struct GroupSync {
    durable: Lsn,
    running: bool,
}

pub(crate) struct Inner {
    pub(crate) core: Mutex<Core>,
    pub(crate) changed: Condvar,
    transport: RwLock<Option<Arc<SendFn>>>,
    events: RwLock<Option<Arc<EventFn>>>,
    epoch: Instant,
    group: Mutex<GroupSync>,
    group_done: Condvar,
    pub(crate) data: crate::databases::DataState,
    /// `rep_elect` calls waiting now.
    election_waiters: AtomicUsize,
    /// An `Event::Elected` held back for the electing thread.
    elected_held: AtomicBool,
    /// Serialises the delivery of a held `Event::Elected`.
    elected_delivery: Mutex<()>,
}

/// A replicated transactional key-value environment.
///
/// Cloning an `Env` gives another handle to the same environment.
///
/// ```
/// use dbrep::{Env, EnvConfig, StartAs};
/// let env = Env::open_in_memory(EnvConfig::default()).unwrap();
/// env.rep_set_nsites(1).unwrap(); // a group of one site
/// env.rep_set_transport(1, |_msg| Ok(())).unwrap();
/// env.rep_start(&[], StartAs::Master).unwrap();
/// let mut txn = env.txn();
/// txn.put(b"k", b"v");
/// let info = txn.commit().unwrap();
/// assert!(info.permanent); // a group of one needs no acks
/// assert_eq!(env.get(b"k").unwrap(), Some(b"v".to_vec()));
/// ```
#[derive(Clone)]
pub struct Env {
    pub(crate) inner: Arc<Inner>,
}

impl Env {
    /// Opens (or creates) an environment in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, config: EnvConfig) -> Result<Env> {
        Env::open_with_vfs(Arc::new(StdFs), dir.as_ref(), config)
    }

    /// Opens an environment on any file layer (a simulated one in tests).
    pub fn open_with_vfs(vfs: Arc<dyn Vfs>, dir: &Path, config: EnvConfig) -> Result<Env> {
        if config.log.in_memory {
            return Env::open_in_memory(config);
        }
        let (storage, meta) = Storage::open(vfs, dir, config.log.clone())?;
        if let Some(r) = storage.recovery_report() {
            if let Some((path, offset, bytes)) = &r.cut {
                log::warn!(
                    "recovery cut a torn tail of {bytes} bytes from {} at offset {offset}",
                    path.display()
                );
            }
        }
        Env::with_core(Core::new(storage, meta, config.rep.clone())?, &config)
    }

    /// An environment that keeps everything in memory.
    pub fn open_in_memory(config: EnvConfig) -> Result<Env> {
        let storage = Storage::in_memory(config.log.clone());
        let meta = Default::default();
        Env::with_core(Core::new(storage, meta, config.rep.clone())?, &config)
    }

    fn with_core(mut core: Core, config: &EnvConfig) -> Result<Env> {
        config.data.check(config.log.max_record_bytes)?;
        let seed = config.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ (u64::from(std::process::id()) << 32)
        });
        core.set_random_seed(seed);
        Ok(Env {
            inner: Arc::new(Inner {
                core: Mutex::new(core),
                changed: Condvar::new(),
                transport: RwLock::new(None),
                events: RwLock::new(None),
                epoch: Instant::now(),
                group: Mutex::new(GroupSync::default()),
                group_done: Condvar::new(),
                data: crate::databases::DataState::new(config.data),
                election_waiters: AtomicUsize::new(0),
                elected_held: AtomicBool::new(false),
                elected_delivery: Mutex::new(()),
            }),
        })
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.inner.epoch.elapsed().as_micros() as u64
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        self.inner.core.lock().check_alive()
    }

    /// The host time `us` (microseconds since the epoch of this handle) as an instant.
    fn instant_at(&self, us: u64) -> Instant {
        self.inner.epoch + Duration::from_micros(us)
    }

    /// Polls the core until `poll` gives an answer, delivering what each
    /// poll sends, and between polls blocks until the core changes or the
    /// time the poll asked to be woken at. No fixed polling interval: the
    /// poll and the wait happen under one lock hold, so a change cannot
    /// slip between them unseen.
    pub(crate) fn wait_on_core<T>(&self, mut poll: impl FnMut(&mut Core, u64) -> Wait<T>) -> T {
        let mut core = self.inner.core.lock();
        loop {
            let now = self.now_us();
            let step = poll(&mut core, now);
            let mut msgs = Vec::new();
            let mut events = Vec::new();
            core.take_output(&mut msgs, &mut events);
            self.hold_elected(&mut events);
            let produced = !msgs.is_empty() || !events.is_empty();
            if produced {
                self.inner.changed.notify_all();
            }
            match step {
                Wait::Done(t) => {
                    drop(core);
                    self.deliver(msgs, events);
                    return t;
                }
                Wait::Until(_) if produced => {
                    // Deliver with the lock released, then poll again at once:
                    // what was sent may already have been answered.
                    drop(core);
                    self.deliver(msgs, events);
                    core = self.inner.core.lock();
                }
                Wait::Until(until) => {
                    self.inner
                        .changed
                        .wait_until(&mut core, self.instant_at(until));
                }
            }
        }
    }

    /// Runs `f` on the core under the lock, then delivers what it produced
    /// with the lock released.
    pub(crate) fn run<R>(&self, f: impl FnOnce(&mut Core, u64) -> Result<R>) -> Result<R> {
        let mut msgs = Vec::new();
        let mut events = Vec::new();
        let r = {
            let mut core = self.inner.core.lock();
            core.check_alive()?;
            let now = self.now_us();
            let r = f(&mut core, now);
            core.take_output(&mut msgs, &mut events);
            self.hold_elected(&mut events);
            self.inner.changed.notify_all();
            r
        };
        self.deliver(msgs, events);
        r
    }

    /// While a `rep_elect` call waits, keeps `Event::Elected` back from
    /// whichever thread produced it, for the electing thread to deliver
    /// before `rep_elect` returns. Called under the core lock, in the same
    /// hold as the call that decided the win, so the electing thread cannot
    /// see the win without the event being held.
    fn hold_elected(&self, events: &mut Vec<Event>) {
        if self.inner.election_waiters.load(Ordering::SeqCst) == 0 || events.is_empty() {
            return;
        }
        let before = events.len();
        events.retain(|e| !matches!(e, Event::Elected));
        if events.len() != before {
            self.inner.elected_held.store(true, Ordering::SeqCst);
        }
    }

    fn deliver(&self, msgs: Vec<OutMsg>, events: Vec<Event>) {
        if !msgs.is_empty() {
            let transport = self.inner.transport.read().clone();
            if let Some(send) = transport {
                for m in &msgs {
                    if send(m).is_err() {
                        let mut core = self.inner.core.lock();
                        if let Err(e) = core.send_failed(m) {
                            log::error!("flushing the log after a failed send: {e}");
                        }
                    }
                }
            }
        }
        if !events.is_empty() {
            let handler = self.inner.events.read().clone();
            if let Some(h) = handler {
                for e in &events {
                    h(e);
                }
            }
        }
    }

    // ---- replication set-up -------------------------------------------

    /// Sets this site's id and the function that sends messages to other sites.
    pub fn rep_set_transport<F>(&self, local_eid: Eid, send: F) -> Result<()>
    where
        F: Fn(&OutMsg) -> std::result::Result<(), SendError> + Send + Sync + 'static,
    {
        self.inner.core.lock().set_local_eid(local_eid)?;
        *self.inner.transport.write() = Some(Arc::new(send));
        Ok(())
    }

    /// Sets the event handler.
    pub fn set_event_notify<F>(&self, f: F)
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        *self.inner.events.write() = Some(Arc::new(f));
    }

    fn update_config(&self, f: impl FnOnce(&mut RepConfig)) -> Result<()> {
        let mut core = self.inner.core.lock();
        let mut cfg = core.config().clone();
        f(&mut cfg);
        core.set_config(cfg)
    }

    /// Sets the election priority (0 = never master).
    pub fn rep_set_priority(&self, priority: u32) -> Result<()> {
        self.update_config(|c| c.priority = priority)
    }
    /// The election priority.
    pub fn rep_get_priority(&self) -> u32 {
        self.inner.core.lock().config().priority
    }
    /// Sets the number of sites in the group.
    pub fn rep_set_nsites(&self, nsites: u32) -> Result<()> {
        self.update_config(|c| c.nsites = nsites)
    }
    /// The number of sites in the group.
    pub fn rep_get_nsites(&self) -> u32 {
        self.inner.core.lock().config().nsites
    }
    /// Sets one timeout, in microseconds.
    pub fn rep_set_timeout(&self, kind: TimeoutKind, us: u64) -> Result<()> {
        self.update_config(|c| c.set_timeout(kind, us))
    }
    /// Reads one timeout, in microseconds.
    pub fn rep_get_timeout(&self, kind: TimeoutKind) -> u64 {
        self.inner.core.lock().config().timeout(kind)
    }
    /// Turns a setting on or off.
    pub fn rep_set_config(&self, flag: ConfigFlag, on: bool) -> Result<()> {
        self.update_config(|c| c.set_flag(flag, on))
    }
    /// Reads a setting.
    pub fn rep_get_config(&self, flag: ConfigFlag) -> bool {
        self.inner.core.lock().config().flag(flag)
    }
    /// Sets the acknowledgement policy.
    pub fn rep_set_ack_policy(&self, policy: crate::rep::AckPolicy) -> Result<()> {
        self.update_config(|c| c.ack_policy = policy)
    }
    /// Caps the bytes one call sends in answer to requests (0 = no cap).
    pub fn rep_set_limit(&self, bytes: u64) -> Result<()> {
        self.update_config(|c| c.answer_bytes_max = bytes)
    }
    /// The cap on bytes sent per call.
    pub fn rep_get_limit(&self) -> u64 {
        self.inner.core.lock().config().answer_bytes_max
    }
    /// Sets the re-request back-off bounds, in microseconds.
    pub fn rep_set_request(&self, min_us: u64, max_us: u64) -> Result<()> {
        self.update_config(|c| {
            c.request_us_min = min_us;
            c.request_us_max = max_us;
        })
    }
    /// The re-request back-off bounds.
    pub fn rep_get_request(&self) -> (u64, u64) {
        let core = self.inner.core.lock();
        (core.config().request_us_min, core.config().request_us_max)
    }
    /// Sets the clock-skew allowance (must precede `rep_start`).
    pub fn rep_set_clockskew(&self, fast: u32, slow: u32) -> Result<()> {
        self.update_config(|c| c.clockskew = (fast, slow))
    }
    /// The clock-skew allowance.
    pub fn rep_get_clockskew(&self) -> (u32, u32) {
        self.inner.core.lock().config().clockskew
    }

    // ---- replication calls --------------------------------------------

    /// Starts this site as master or client (`rep_start`).
    pub fn rep_start(&self, cdata: &[u8], as_: StartAs) -> Result<()> {
        self.run(|core, now| core.start(now, as_, cdata))
    }

    /// Processes one incoming message (`rep_process_message`).
    pub fn rep_process_message(&self, control: &[u8], rec: &[u8], from: Eid) -> Result<Status> {
        self.run(|core, now| core.process(now, control, rec, from))
    }

    /// The timer call (see [`Core::tick`] for the contract): heartbeats,
    /// re-requests, master-failure detection, election phases, lease
    /// refreshes. [`TickOutcome::next`] is how long the host may sleep;
    /// `None` means no timer runs until another call changes the state.
    /// Any call into the handle (`rep_process_message`, `rep_start`,
    /// `rep_elect`, a commit, a read) can move the deadline earlier: call
    /// `rep_tick` again after those to learn it.
    pub fn rep_tick(&self) -> Result<TickOutcome> {
        let (status, next) = self.run(|core, now| core.tick(now))?;
        let now = self.now_us();
        Ok(TickOutcome {
            status,
            next: next.map(|t| Duration::from_micros(t.saturating_sub(now))),
        })
    }

    /// Holds an election and blocks until it ends (`rep_elect`): returns
    /// [`ElectionOutcome::Won`] when this site won (then call
    /// `rep_start(MASTER)`), [`ElectionOutcome::OtherWon`] when another site
    /// became master, and `Err(Unavail)` when no master was chosen within the
    /// election timeout.
    ///
    /// `nsites` 0 means the configured `rep_set_nsites`; `nvotes` 0 means a
    /// simple majority of `nsites`. A sub-majority `nvotes` is refused unless
    /// [`ConfigFlag::AllowSubMajority`] is set; with leases `nsites` must be 0.
    ///
    /// Threads and events: other threads must keep delivering messages
    /// (`rep_process_message`) meanwhile; this call runs the timers itself,
    /// waking at the deadlines the core gives. On a win, `Event::Elected` is
    /// delivered on this thread before the call returns, whichever thread
    /// processed the deciding vote. `Event::NewMaster`, `Event::Master`,
    /// `Event::Client` and the others are delivered on the thread whose call
    /// produced them. Callbacks (`send`, the event handler) run with no
    /// internal lock held, so they may call back into this handle.
    pub fn rep_elect(&self, nsites: u32, nvotes: u32, flags: u32) -> Result<ElectionOutcome> {
        self.inner.election_waiters.fetch_add(1, Ordering::SeqCst);
        let result = self.elect_and_wait(nsites, nvotes, flags);
        self.inner.election_waiters.fetch_sub(1, Ordering::SeqCst);
        // The win's event, on this thread, before returning; exactly once
        // when several rep_elect calls wait together: the first to get here
        // delivers it, and the others wait for that delivery to finish.
        let _delivering = self.inner.elected_delivery.lock();
        let held = {
            let _core = self.inner.core.lock();
            self.inner.elected_held.swap(false, Ordering::SeqCst)
        };
        if held {
            self.deliver(Vec::new(), vec![Event::Elected]);
        }
        result
    }

    fn elect_and_wait(&self, nsites: u32, nvotes: u32, flags: u32) -> Result<ElectionOutcome> {
        self.run(|core, now| core.elect(now, nsites, nvotes, flags))?;
        let progress = self.wait_on_core(|core, now| {
            if core.election_progress() == ElectionProgress::InProgress {
                // The election ends through messages (other threads) or
                // through its own deadlines, which this thread runs.
                let next = match core.tick(now) {
                    Ok((_, next)) => next,
                    Err(e) => return Wait::Done(Err(e)),
                };
                if core.election_progress() == ElectionProgress::InProgress {
                    let fallback = now.saturating_add(core.config().election_timeout_us.max(1));
                    return Wait::Until(next.unwrap_or(fallback));
                }
            }
            Wait::Done(Ok(core.election_progress()))
        })?;
        match progress {
            ElectionProgress::Won => Ok(ElectionOutcome::Won),
            ElectionProgress::OtherWon { master } => Ok(ElectionOutcome::OtherWon { master }),
            ElectionProgress::Failed(why) => Err(Error::Unavail(why)),
            ElectionProgress::InProgress => Err(Error::Unavail("the election did not end".into())),
        }
    }

    /// Starts (or joins) an election and returns at once; the election goes
    /// on through `rep_process_message` and `rep_tick`, and ends with
    /// `Event::Elected`, `Event::NewMaster` or `Event::ElectionFailed`,
    /// delivered on whichever thread's call decided it.
    pub fn rep_elect_nowait(
        &self,
        nsites: u32,
        nvotes: u32,
        flags: u32,
    ) -> Result<ElectionProgress> {
        self.run(|core, now| core.elect(now, nsites, nvotes, flags))
    }

    /// Re-broadcasts the master's last record (`rep_flush`).
    pub fn rep_flush(&self) -> Result<()> {
        self.run(|core, now| core.flush(now))
    }

    // ---- replicated group membership ----------------------------------

    /// Sets the address the replicated group advertises for this site
    /// (opaque bytes: the `net` host uses its listen address). A joining
    /// site sends it to the master; set it before `rep_start`.
    pub fn rep_set_local_addr(&self, addr: &[u8]) -> Result<()> {
        self.update_config(|c| c.local_addr = addr.to_vec())
    }

    /// The group membership in force here (from this site's log), or
    /// `None` before any membership record. See
    /// [`ConfigFlag::GroupMembership`].
    pub fn rep_membership(&self) -> Option<crate::membership::Membership> {
        self.inner.core.lock().membership().cloned()
    }

    /// The sites this site should be connected to: the group in force, or,
    /// for a site not yet a member, the group a member told it of.
    pub fn rep_known_members(&self) -> Option<crate::membership::Membership> {
        self.inner.core.lock().known_members().cloned()
    }

    /// Master: adds site `eid`, reachable at `addr`, to the replicated
    /// group; returns the LSN of the membership record. A site that joins
    /// by itself needs no call (the master adds it once it has caught up).
    /// Refused while an earlier change is not yet held by a majority
    /// (`Unavail`: try again), on a client, and for a member.
    pub fn rep_add_site(&self, eid: Eid, addr: &[u8], electable: bool) -> Result<Lsn> {
        self.run(|core, now| core.add_site(now, eid, addr, electable))
    }

    /// Master: removes site `eid` (dead, or leaving) from the replicated
    /// group; returns the LSN of the membership record. Removing the master
    /// itself is refused: hand over first. Refused while an earlier change
    /// is not yet held by a majority (`Unavail`: try again).
    pub fn rep_remove_site(&self, eid: Eid) -> Result<Lsn> {
        self.run(|core, now| core.remove_site(now, eid))
    }

    /// Client: asks the master to remove this site from the replicated
    /// group. Returns at once; the site has left when an
    /// [`Event::GroupChanged`] without it arrives.
    pub fn rep_leave(&self) -> Result<()> {
        self.run(|core, now| core.leave_group(now))
    }

    /// Starts synchronising a delayed client (`rep_sync`).
    pub fn rep_sync(&self) -> Result<()> {
        self.run(|core, now| core.sync(now))
    }

    /// Replication statistics; `clear` resets the counters.
    pub fn rep_stat(&self, clear: bool) -> RepStats {
        self.inner.core.lock().stats(clear)
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.inner.core.lock().role()
    }

    // ---- data ---------------------------------------------------------

    /// Begins a transaction. Its writes are buffered and applied atomically at commit.
    pub fn txn(&self) -> Txn<'_> {
        Txn::new(std::borrow::Cow::Borrowed(self))
    }

    /// Reads the committed value of `key` from the local store: the
    /// default read, [`ReadLevel::Local`]. A client in the middle of
    /// synchronising with a new master waits for the sync to end first, or
    /// with [`ConfigFlag::NoWait`] answers [`Error::Lockout`] at once. On a
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
    /// decision is the core's ([`Core::read_begin`] / [`Core::read_poll`]).
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

/// What one poll of [`Env::wait_on_core`] found.
pub(crate) enum Wait<T> {
    /// The answer.
    Done(T),
    /// No answer yet: wait for a change, or until this host time.
    Until(u64),
}
