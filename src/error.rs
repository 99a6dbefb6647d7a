//! Errors are values: every failure the library can meet is one of these.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::lsn::Lsn;

/// The result type of every fallible dbrep call.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong, each with enough context to act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    Io {
        /// What dbrep was doing ("append to log segment", "rename checkpoint", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Data found on disk is damaged somewhere other than a torn tail.
    Corrupt {
        /// The file holding the damage.
        path: PathBuf,
        /// Byte offset of the damaged record or block inside `path`.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// Bytes received from a peer (or handed in by the host) could not be decoded.
    Malformed(String),
    /// A size or count limit would be exceeded.
    Limit {
        /// What would grow past its limit.
        what: &'static str,
        /// The configured limit.
        limit: u64,
        /// The size that was asked for.
        got: u64,
    },
    /// A bad argument or a call made in the wrong order (Berkeley DB's `EINVAL`).
    Invalid(String),
    /// The call needs a master, or an elected site, and there is none (`DB_REP_UNAVAIL`).
    Unavail(String),
    /// A read or commit on a master whose lease could not be confirmed (`DB_REP_LEASE_EXPIRED`).
    LeaseExpired,
    /// A data call on a client that is being synchronised, with no-wait configured (`DB_REP_LOCKOUT`).
    Lockout,
    /// A wait ran out of time (`DB_TIMEOUT`).
    Timeout,
    /// A log record was asked for that the log does not hold.
    NotFound(Lsn),
    /// The environment hit an unrecoverable failure and must be reopened (`DB_RUNRECOVERY`).
    RunRecovery(String),
    /// No database of this name (or the handle's database was removed) (`ENOENT`).
    NoDatabase(String),
    /// A transaction read data that another transaction changed before it
    /// could commit; nothing was written: retry it (`DB_LOCK_DEADLOCK`).
    Conflict(String),
    /// A read transaction or cursor whose snapshot a rollback or snapshot
    /// install made obsolete: close it and open another (`DB_REP_HANDLE_DEAD`).
    HandleDead,
}

impl Error {
    /// Builds an [`Error::Io`] from an `io::Error`, the operation and the path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }

    /// Builds an [`Error::Malformed`].
    pub fn malformed(msg: impl Into<String>) -> Error {
        Error::Malformed(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "I/O error during {op} on {}: {source}", path.display())
            }
            Error::Corrupt { path, offset, what } => {
                write!(
                    f,
                    "corrupt data in {} at offset {offset}: {what}",
                    path.display()
                )
            }
            Error::Malformed(what) => write!(f, "malformed message: {what}"),
            Error::Limit { what, limit, got } => {
                write!(f, "{what} of {got} exceeds the limit of {limit}")
            }
            Error::Invalid(what) => write!(f, "invalid call: {what}"),
            Error::Unavail(what) => write!(f, "unavailable: {what}"),
            Error::LeaseExpired => write!(f, "the master lease has expired"),
            Error::Lockout => write!(f, "the client is synchronising; data calls are locked out"),
            Error::Timeout => write!(f, "timed out"),
            Error::NotFound(lsn) => write!(f, "no log record at {lsn}"),
            Error::RunRecovery(what) => write!(f, "environment must be recovered: {what}"),
            Error::NoDatabase(name) => write!(f, "no database named {name:?}"),
            Error::Conflict(what) => write!(f, "transaction conflict, retry it: {what}"),
            Error::HandleDead => write!(
                f,
                "the handle's snapshot was invalidated by a rollback or snapshot install; reopen it"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
