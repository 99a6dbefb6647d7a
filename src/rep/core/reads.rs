//! What a read may return: follower reads' commit points (read index), the
//! permanence of a key's value, and where a commit token stands. The lease
//! and confirmation rules reads rest on are in [`super::lease`].

use crate::db::Store;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::rep::core::Core;
use crate::rep::outbox::Outgoing;
use crate::rep::token::{CommitToken, TokenStatus};
use crate::rep::types::{ReadLevel, Role, SendFlags, Status};
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
        if self.rolled_back.contains(&(token.gen, token.lsn)) {
            // Undone here to match a later master: it never arrives, even
            // once a checkpoint has trimmed the records that replaced it.
            return TokenStatus::Never;
        }
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

/// A read in progress, from [`Core::read_begin`] (one key) or
/// [`Core::snapshot_begin`] (a snapshot of the whole store) to the poll
/// that answers it. Held by the host; the core keeps nothing for it but a
/// follower read's request id (freed when the poll answers, or by
/// [`Core::read_cancel`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadTicket {
    level: ReadLevel,
    /// The host time after which the read fails.
    deadline: u64,
    wait: ReadWait,
    /// A snapshot read on the master: the store as it was when mastership
    /// was confirmed, handed out once every commit in it is permanent.
    taken: Option<Taken>,
    /// Test hook (the simulator's loose host): answer as soon as the
    /// confirmation or read-index condition holds, ignoring permanence.
    ignore_permanence: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ReadWait {
    /// Nothing to wait for but (on a lease master) the lease.
    Local { asked: bool },
    /// A master's read: confirmed by its lease (`since` = `None`) or by a
    /// majority's answers to a confirmation round started at `since`.
    Master {
        gen: u32,
        since: Option<u64>,
        asked: bool,
    },
    /// A client's follower read: the request `id`; `renew_at` is when to
    /// ask for a newer commit point if the key is still not permanent.
    Follower { id: u64, renew_at: Option<u64> },
}

/// A master's snapshot, taken once it confirmed it is master.
#[derive(Clone, Debug)]
struct Taken {
    store: Store,
    /// The live store's instance when the snapshot was taken.
    instance: u64,
    /// The log's end then: the snapshot is handed out once it is permanent.
    lsn: Lsn,
}

impl PartialEq for Taken {
    fn eq(&self, o: &Taken) -> bool {
        // A clone of the store has its own instance id: it names the snapshot.
        (self.store.instance_id(), self.instance, self.lsn)
            == (o.store.instance_id(), o.instance, o.lsn)
    }
}

impl Eq for Taken {}

impl ReadTicket {
    /// The level this read was started with.
    #[cfg(any(test, feature = "testing"))]
    pub fn level(&self) -> ReadLevel {
        self.level
    }

    /// The host time after which the read fails.
    #[cfg(any(test, feature = "testing"))]
    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Test hook: the read is answered as soon as this site is confirmed
    /// master (or has applied its read index), from a store that may hold
    /// writes not yet permanent: how hosts first served reads, kept so the
    /// simulator can show its checker catches it. Never for real hosts.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn ignore_permanence_for_testing(&mut self) {
        self.ignore_permanence = true;
    }
}

/// What [`Core::read_poll`] (`T`: the key's value) or
/// [`Core::snapshot_poll`] (`T`: the store snapshot) decided.
#[derive(Debug)]
pub enum ReadPoll<T = Option<Vec<u8>>> {
    /// The read is answered: the key's value (`None`: absent), or the
    /// snapshot, as the level promises it. The ticket is spent.
    Ready(T),
    /// Not yet: poll again when the core's state changes (any later call
    /// into it) or at `until` (host time), whichever comes first. `until`
    /// is never later than the ticket's deadline.
    Wait {
        /// When to poll again at the latest.
        until: u64,
    },
    /// The read cannot be answered; the ticket is spent. `LeaseExpired`
    /// (a lease master that could not renew its lease), `Timeout` (the
    /// deadline passed), `Unavail` (the site stopped being master, or the
    /// master changed during a follower read), `Lockout` (a syncing client
    /// with `NoWait`), `HandleDead` (a snapshot whose store was replaced
    /// before it could be handed out).
    Failed(Error),
}

/// What a read waits on: one key's value, or a whole store snapshot.
#[derive(Clone, Copy)]
enum Target<'a> {
    Key(&'a [u8]),
    Store,
}

/// What `Core::read_decide` found.
enum Decided {
    Answer,
    Wait(u64),
    Failed(Error),
}

impl Core {
    /// Starts a read of one key at `level`, to be answered by
    /// [`Core::read_poll`] by host time `deadline`. This is the whole read
    /// policy; hosts (`Env`, the simulator, a network host, the C API) only
    /// wait for what the poll tells them.
    ///
    /// - `Stale`: answered at once from the local store.
    /// - `Local`: likewise, but on a master with leases only while its lease
    ///   is valid; an invalid lease is refreshed once, then the read waits
    ///   for it until the deadline and fails with `LeaseExpired`.
    /// - `Linearizable` on the master: confirmed by a valid lease, or, with
    ///   leases off, by a majority answering a confirmation round started
    ///   now; and the key's value must be permanent. On a client: `Invalid`.
    /// - `Follower` on a client: asks the master for its commit point, waits
    ///   until this site has applied through it and the key's value is
    ///   permanent. On the master: the same as `Linearizable`.
    ///
    /// Errors: `Invalid` (a linearizable read on a client, or before
    /// `rep_start` for a consistent level), `Unavail` (a follower read with
    /// no master known).
    pub fn read_begin(&mut self, now: u64, level: ReadLevel, deadline: u64) -> Result<ReadTicket> {
        self.advance(now);
        self.check_alive()?;
        let wait = match (level, self.role) {
            (ReadLevel::Stale | ReadLevel::Local, _) => ReadWait::Local { asked: false },
            (_, Role::Master) => {
                let since = if self.cfg.lease {
                    None
                } else {
                    Some(self.confirm_start(now)?)
                };
                ReadWait::Master {
                    gen: self.meta.gen,
                    since,
                    asked: false,
                }
            }
            (ReadLevel::Linearizable, _) => return Err(Error::invalid(
                "linearizable reads are served by the master; use ReadLevel::Follower on a client",
            )),
            (ReadLevel::Follower, _) => ReadWait::Follower {
                id: self.read_index_start(now)?,
                renew_at: None,
            },
        };
        Ok(ReadTicket {
            level,
            deadline,
            wait,
            taken: None,
            ignore_permanence: false,
        })
    }

    /// Starts a read of a snapshot of the whole store at `level`, to be
    /// answered by [`Core::snapshot_poll`] by host time `deadline`: the
    /// policy of [`Core::read_begin`], for every key at once.
    ///
    /// - `Stale`, and `Local` on a client: at once (`Local` on a client
    ///   fails with `Lockout` while it syncs under `NoWait`).
    /// - On the master, any level but `Stale`: once it has confirmed it is
    ///   master (its lease, or a majority answering a round started now), a
    ///   snapshot of its store, handed out once every commit in it is
    ///   permanent. (`Local` waits like `Linearizable` here, as snapshots
    ///   at `Local` on a master always have; a single-key `Local` read
    ///   needs only the lease.)
    /// - `Follower` on a client: once it has applied its master's commit
    ///   point and everything it holds is known permanent.
    ///
    /// Errors as for [`Core::read_begin`].
    pub fn snapshot_begin(
        &mut self,
        now: u64,
        level: ReadLevel,
        deadline: u64,
    ) -> Result<ReadTicket> {
        self.advance(now);
        let waits_as = match (level, self.role) {
            (ReadLevel::Local, Role::Master) => ReadLevel::Linearizable,
            _ => level,
        };
        let mut ticket = self.read_begin(now, waits_as, deadline)?;
        ticket.level = level;
        Ok(ticket)
    }

    /// Decides a read begun with [`Core::read_begin`]: answer it, wait, or
    /// fail. May send messages (a lease refresh, a renewed follower-read
    /// request): the host delivers [`Core::take_output`] as after any call.
    /// Polling a spent ticket again gives an answer again (the follower
    /// read's request id is already freed, so it fails with `Unavail`).
    pub fn read_poll(&mut self, now: u64, ticket: &mut ReadTicket, key: &[u8]) -> ReadPoll {
        match self.read_decide(now, ticket, Target::Key(key)) {
            Decided::Answer => ReadPoll::Ready(self.local_value(key)),
            Decided::Wait(until) => ReadPoll::Wait { until },
            Decided::Failed(e) => ReadPoll::Failed(e),
        }
    }

    /// Decides a snapshot read begun with [`Core::snapshot_begin`], as
    /// [`Core::read_poll`] decides a key's: wait, fail, or hand out the
    /// snapshot with the live store's [`Store::instance_id`] when it was
    /// taken (a later different id: the store was replaced under it, and
    /// the snapshot may hold writes that were undone).
    pub fn snapshot_poll(&mut self, now: u64, ticket: &mut ReadTicket) -> ReadPoll<(Store, u64)> {
        match self.read_decide(now, ticket, Target::Store) {
            Decided::Answer => ReadPoll::Ready(match ticket.taken.take() {
                Some(t) => (t.store, t.instance),
                None => {
                    let live = self.storage.store();
                    (live.clone(), live.instance_id())
                }
            }),
            Decided::Wait(until) => ReadPoll::Wait { until },
            Decided::Failed(e) => ReadPoll::Failed(e),
        }
    }

    /// The read policy's decision for `target`, shared by both polls.
    fn read_decide(&mut self, now: u64, ticket: &mut ReadTicket, target: Target<'_>) -> Decided {
        self.advance(now);
        let now = self.now;
        let deadline = ticket.deadline;
        let lockout = self.cfg.nowait && self.is_syncing();
        let loose = ticket.ignore_permanence;
        match &mut ticket.wait {
            ReadWait::Local { .. } if lockout => Decided::Failed(Error::Lockout),
            ReadWait::Local { asked } => {
                let needs_lease =
                    ticket.level == ReadLevel::Local && self.role == Role::Master && self.cfg.lease;
                if !needs_lease || self.lease_valid() {
                    return Decided::Answer;
                }
                if now >= deadline {
                    return Decided::Failed(Error::LeaseExpired);
                }
                if !*asked {
                    // Ask for fresh grants rather than wait for the next refresh.
                    *asked = true;
                    self.send_lease_request();
                }
                Decided::Wait(deadline)
            }
            ReadWait::Master { gen, since, asked } => {
                if self.role != Role::Master || self.meta.gen != *gen {
                    return Decided::Failed(Error::Unavail(
                        "this site stopped being master during the read".into(),
                    ));
                }
                let confirmed = match since {
                    None => self.lease_valid(),
                    Some(t) => self.confirmed_since(*t),
                };
                // What is read must be permanent: a write still waiting for
                // acknowledgements may yet be rolled back.
                let ready = match target {
                    Target::Key(_) if loose => Ok(confirmed),
                    Target::Key(key) => self.key_is_permanent(key).map(|p| p && confirmed),
                    Target::Store => {
                        if confirmed && ticket.taken.is_none() {
                            // Taken once confirmed, so it holds every write
                            // completed before the read began.
                            let live = self.storage.store();
                            ticket.taken = Some(Taken {
                                store: live.clone(),
                                instance: live.instance_id(),
                                lsn: self.storage.log().last_lsn(),
                            });
                        }
                        match &ticket.taken {
                            None => Ok(false),
                            Some(t) if t.instance != self.storage.store().instance_id() => {
                                Err(Error::HandleDead)
                            }
                            Some(t) => Ok(loose || self.is_permanent(t.lsn)),
                        }
                    }
                };
                match ready {
                    Ok(true) => return Decided::Answer,
                    Ok(false) => {}
                    Err(e) => return Decided::Failed(e),
                }
                if now >= deadline {
                    return Decided::Failed(if since.is_none() {
                        Error::LeaseExpired
                    } else {
                        Error::Timeout
                    });
                }
                if since.is_none() && !*asked {
                    *asked = true;
                    self.send_lease_request();
                }
                Decided::Wait(deadline)
            }
            ReadWait::Follower { id, renew_at } => {
                let Some(state) = self.read_index_state(*id) else {
                    return Decided::Failed(Error::Unavail(
                        "the follower read was abandoned: the master changed".into(),
                    ));
                };
                let mut until = deadline;
                if let ReadIndexState::Ready(lsn) = state {
                    if self.applied_through(lsn) {
                        let permanent = match target {
                            _ if loose => Ok(true),
                            Target::Key(key) => self.key_is_permanent(key),
                            Target::Store => Ok(self.applied_is_permanent()),
                        };
                        match permanent {
                            Ok(true) => {
                                self.read_index_finish(*id);
                                return Decided::Answer;
                            }
                            Ok(false) => {}
                            Err(e) => {
                                self.read_index_finish(*id);
                                return Decided::Failed(e);
                            }
                        }
                        // A record past the commit point we were given (one
                        // touching the key, for a key read) may not be
                        // permanent yet: after a back-off, ask for a newer point.
                        match *renew_at {
                            Some(t) if now >= t => {
                                self.read_index_finish(*id);
                                match self.read_index_start(now) {
                                    Ok(new) => *id = new,
                                    Err(e) => return Decided::Failed(e),
                                }
                                *renew_at = None;
                            }
                            Some(t) => until = until.min(t),
                            None => {
                                let t = now.saturating_add(self.cfg.request_us_min.max(1));
                                *renew_at = Some(t);
                                until = until.min(t);
                            }
                        }
                    }
                }
                if now >= deadline {
                    self.read_index_finish(*id);
                    return Decided::Failed(Error::Timeout);
                }
                Decided::Wait(until)
            }
        }
    }

    /// Abandons a read whose ticket will not be polled again (frees a
    /// follower read's request id).
    pub fn read_cancel(&mut self, ticket: ReadTicket) {
        if let ReadWait::Follower { id, .. } = ticket.wait {
            self.read_index_finish(id);
        }
    }

    fn local_value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.storage.store().get(key).map(<[u8]>::to_vec)
    }
}
