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

use crate::error::Result;
use crate::log::LogConfig;
use crate::lsn::Lsn;
use crate::rep::{CommitToken, Core, Event, OutMsg, RepConfig, Status};
use crate::storage::Storage;
pub use crate::txn::Txn;
use crate::vfs::{StdFs, Vfs};

mod data;
mod replication;

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
        Env::open_on(Arc::new(StdFs), dir.as_ref(), config)
    }

    /// Opens an environment on any file layer (a simulated one in tests;
    /// the file layer is internal, so this is there with the `testing`
    /// feature only).
    #[cfg(feature = "testing")]
    pub fn open_with_vfs(vfs: Arc<dyn Vfs>, dir: &Path, config: EnvConfig) -> Result<Env> {
        Env::open_on(vfs, dir, config)
    }

    fn open_on(vfs: Arc<dyn Vfs>, dir: &Path, config: EnvConfig) -> Result<Env> {
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
}

/// What one poll of [`Env::wait_on_core`] found.
pub(crate) enum Wait<T> {
    /// The answer.
    Done(T),
    /// No answer yet: wait for a change, or until this host time.
    Until(u64),
}
