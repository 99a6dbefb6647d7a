//! dbrep: replication for a transactional key-value store, in the style of
//! the Berkeley DB replication base API.
//!
//! One site is the **master**: it commits transactions to a durable,
//! CRC-checked log and hands every record to the host's `send` callback.
//! The other sites are **clients**: the host feeds what arrives into
//! [`Env::rep_process_message`], and its [`Status`] says what to do next.
//! dbrep starts no threads and opens no sockets: the host owns both.
//!
//! # Driving the library, step by step
//!
//! 1. Open an environment: [`Env::open`] (files in a directory, recovered at
//!    open) or [`Env::open_in_memory`].
//! 2. [`Env::rep_set_transport`] with this site's id and a `send` function,
//!    and [`Env::set_event_notify`] for [`Event`]s. Ids are the host's own,
//!    local to each site. Callbacks run with no lock held and may call back
//!    into the handle.
//! 3. Settings: [`Env::rep_set_nsites`], priority, timeouts, ack policy.
//! 4. [`Env::rep_start`] as client (or as master, if this site is the only
//!    one that could be, or just won an election).
//! 5. Deliver every message to [`Env::rep_process_message`] with the
//!    sender's id, and act on the status: `HoldElection` → call
//!    [`Env::rep_elect`] *from another thread* (it blocks while messages keep
//!    flowing); `NewSite` → connect to it; `DupMaster` → restart as client and
//!    elect. On [`Event::Elected`], call `rep_start(Master)`.
//! 6. Call [`Env::rep_tick`] when the deadline it returns comes: it sends
//!    heartbeats, re-requests missing records and notices a silent master.
//!
//! The rule that matters at every step: **nothing is acknowledged that a
//! crash could take back.** A commit reports `permanent` only when the
//! master's log is durable and the clients the [`AckPolicy`] asks for have
//! made it durable too.
//!
//! # Two sites in one process
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use dbrep::{Env, EnvConfig, Eid, LogConfig, StartAs, Status, CONTROL_LEN, EID_BROADCAST};
//!
//! // A mailbox: (from, to, control, rec). A real host would use sockets.
//! type Mail = Arc<Mutex<Vec<(Eid, Eid, [u8; CONTROL_LEN], Vec<u8>)>>>;
//! let mail: Mail = Arc::default();
//! let mut config = EnvConfig::default();
//! config.log = LogConfig { in_memory: true, ..LogConfig::default() };
//! config.rep.nsites = 2;
//!
//! let mut sites = Vec::new();
//! for (eid, peer) in [(1, 2), (2, 1)] {
//!     let env = Env::open_in_memory(config.clone())?;
//!     let mail = mail.clone();
//!     env.rep_set_transport(eid, move |m| {
//!         let to = if m.eid == EID_BROADCAST { peer } else { m.eid };
//!         mail.lock().unwrap().push((eid, to, m.control, m.rec.clone()));
//!         Ok(())
//!     })?;
//!     sites.push(env);
//! }
//! sites[0].rep_start(b"site 1", StartAs::Master)?;
//! sites[1].rep_start(b"site 2", StartAs::Client)?;
//! let deliver = |sites: &[Env]| -> dbrep::Result<()> {
//!     loop {
//!         let batch: Vec<_> = mail.lock().unwrap().drain(..).collect();
//!         if batch.is_empty() {
//!             return Ok(());
//!         }
//!         for (from, to, control, rec) in batch {
//!             let status = sites[to as usize - 1].rep_process_message(&control, &rec, from)?;
//!             assert!(!matches!(status, Status::DupMaster | Status::JoinFailure));
//!         }
//!     }
//! };
//! deliver(&sites)?;
//!
//! // Commit on the master. With two sites, QUORUM needs the client's ack,
//! // which only arrives once we deliver: so this commit times out as not
//! // permanent (PERM_FAILED) but stays committed, and replicates.
//! sites[0].rep_set_timeout(dbrep::TimeoutKind::Ack, 1_000)?;
//! let mut txn = sites[0].txn();
//! txn.put(b"colour", b"blue");
//! let info = txn.commit()?;
//! deliver(&sites)?;
//! assert_eq!(sites[1].get(b"colour")?, Some(b"blue".to_vec()));
//! assert!(sites[0].rep_stat(false).perm_lsn >= info.lsn, "the ack arrived since");
//! # Ok::<(), dbrep::Error>(())
//! ```
//!
//! # Hosts with their own event loop
//!
//! A single-threaded host drives [`Env`] without blocking: it starts an
//! election with [`Env::rep_elect_nowait`] (the election goes on through
//! `rep_process_message` and `rep_tick`, and ends with an [`Event`]), and
//! sleeps until the deadline [`Env::rep_tick`] returns or the next message.
//! Under `Env` is a deterministic state machine that takes the time as an
//! argument; it is internal, and the test kit (`testing::testkit::Cluster`,
//! behind the cargo feature `testing`) drives it directly for tests.
//!
//! # Reads
//!
//! [`Env::get_at`] takes a [`ReadLevel`]: `Linearizable` (on the master,
//! with a lease or a confirmation round), `Follower` (on a client, waiting for
//! the master's commit point) or `Stale`. [`Env::txn_applied`] waits for a
//! commit token from [`CommitInfo`] to be applied locally.
#![deny(missing_docs)]
// `unsafe` lives only in `ffi`, where every block says why it is sound.
#![deny(unsafe_code)]

// The crate's internals: public with the cargo feature `testing` (for the
// test suite, the fuzzers and the benchmarks, which reach into them),
// crate-private otherwise, so an application's documentation and API hold
// only what it uses.
#[cfg(feature = "testing")]
pub mod db;
#[cfg(feature = "testing")]
pub mod log;
/// The replication core; applications use the re-exports below.
#[cfg(feature = "testing")]
pub mod rep;
#[cfg(feature = "testing")]
pub mod storage;
#[cfg(feature = "testing")]
pub mod vfs;
#[cfg(feature = "testing")]
pub mod wire;

/// The same modules, crate-private without the feature. Declared through
/// a macro so that a tool reading the module tree without expanding macros
/// (cargo-mutants) finds each module once, by the declarations above.
macro_rules! private_modules {
    ($($name:ident),*) => {
        $(
            #[cfg(not(feature = "testing"))]
            mod $name;
        )*
    };
}
private_modules!(db, log, rep, storage, vfs, wire);

mod cursor;
mod databases;
mod env;
mod error;
#[allow(unsafe_code)]
pub mod ffi;
mod flags;
mod lsn;
pub mod membership;
#[cfg(feature = "net")]
pub mod net;
#[cfg(feature = "testing")]
pub mod testing;
mod txn;

pub use crate::log::{Durability, LogConfig};
pub use cursor::{Cursor, Entry, RangeIter, ReadTxn};
pub use databases::{DataLimits, Database};
pub use env::{CommitInfo, Env, EnvConfig, ReadLevel, SendError, TickOutcome, Txn};
pub use error::{Error, Result};
pub use lsn::Lsn;
pub use membership::{Member, Membership};
pub use rep::{
    AckPolicy, ConfigFlag, Eid, ElectionOutcome, ElectionProgress, Event, OutMsg, RepConfig,
    RepStats, Role, SendFlags, StartAs, Status, TimeoutKind, EID_BROADCAST, EID_INVALID,
};
pub use rep::{CommitToken, TokenStatus};
pub use wire::CONTROL_LEN;
