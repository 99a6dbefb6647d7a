//! dbrep: replication for a transactional key-value store, in the style of
//! the Berkeley DB replication base API.
#![deny(missing_docs)]

pub mod db;
pub mod error;
pub mod log;
pub mod lsn;
pub mod vfs;
pub mod wire;

pub use error::{Error, Result};
pub use lsn::Lsn;
