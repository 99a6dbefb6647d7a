//! dbrep: replication for a transactional key-value store, in the style of
//! the Berkeley DB replication base API.
#![deny(missing_docs)]

pub mod db;
pub mod env;
pub mod error;
pub mod log;
pub mod lsn;
pub mod rep;
pub mod sim;
pub mod storage;
pub mod testkit;
pub mod vfs;
pub mod wire;

pub use env::{CommitInfo, Env, EnvConfig, SendError, TickOutcome, Txn};
pub use error::{Error, Result};
pub use lsn::Lsn;
pub use rep::{
    AckPolicy, ConfigFlag, Eid, Event, OutMsg, RepConfig, Role, SendFlags, StartAs, Status,
    TimeoutKind,
};
