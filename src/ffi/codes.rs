//! Return codes, `dbrep_strerror`, and the mapping from [`Error`] and
//! [`Status`] to codes.
//!
//! Where Berkeley DB 5.3 has a code, dbrep uses its name with `DBREP_` for
//! `DB_` and the same value, so a port is a rename and numeric logging stays
//! comparable. Codes Berkeley DB lacks sit in `-30899..=-30800`.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

use crate::error::Error;
use crate::rep::Status;

/// Success.
pub const DBREP_OK: c_int = 0;
/// A bad argument (a null pointer, a length that does not fit, invalid UTF-8
/// in a path, an unknown flag or kind) or a call in the wrong order or role
/// (a commit on a client, `rep_start` before `rep_set_transport`): Berkeley
/// DB's `EINVAL`. `dbrep_last_error` says which.
pub const DBREP_EINVAL: c_int = 22;
/// Returned by `dbrep_rep_process_message` (and `dbrep_rep_tick`): hold an
/// election by calling `dbrep_rep_elect` from another thread (`DB_REP_HOLDELECTION`).
pub const DBREP_HOLDELECTION: c_int = -30983;
/// Returned by `dbrep_rep_process_message`: this master met another master of
/// its generation; restart as client and elect (`DB_REP_DUPMASTER`).
pub const DBREP_DUPMASTER: c_int = -30985;
/// Returned by `dbrep_rep_process_message`: the message was irrelevant; drop it (`DB_REP_IGNORE`).
pub const DBREP_IGNORE: c_int = -30982;
/// Returned by `dbrep_rep_process_message`: permanent records are durable
/// here up to the returned LSN (`DB_REP_ISPERM`).
pub const DBREP_ISPERM: c_int = -30981;
/// Returned by `dbrep_rep_process_message`: this client cannot join the
/// master without losing permanent data (`DB_REP_JOIN_FAILURE`).
pub const DBREP_JOIN_FAILURE: c_int = -30980;
/// A commit or read on a master whose lease could not be confirmed (`DB_REP_LEASE_EXPIRED`).
pub const DBREP_LEASE_EXPIRED: c_int = -30979;
/// A data call on a synchronising client with `DBREP_CONF_NOWAIT` set (`DB_REP_LOCKOUT`).
pub const DBREP_LOCKOUT: c_int = -30978;
/// Returned by `dbrep_rep_process_message`: first contact from a site; the
/// returned eid is the one the message was labelled with (`DB_REP_NEWSITE`).
pub const DBREP_NEWSITE: c_int = -30977;
/// Returned by `dbrep_rep_process_message`: a permanent record (the returned
/// LSN) was accepted but is not yet durable (`DB_REP_NOTPERM`).
pub const DBREP_NOTPERM: c_int = -30976;
/// No master, or no election winner, or the site cannot do what was asked
/// in its current role (`DB_REP_UNAVAIL`).
pub const DBREP_UNAVAIL: c_int = -30975;
/// The environment failed (a storage failure, or a panic inside the library
/// caught at the boundary) and must be closed and reopened (`DB_RUNRECOVERY`).
pub const DBREP_RUNRECOVERY: c_int = -30973;
/// A wait ran out of time (`DB_TIMEOUT`).
pub const DBREP_TIMEOUT: c_int = -30971;
/// The key is not in the store; or `dbrep_txn_applied`: the transaction can
/// never be applied here (`DB_NOTFOUND`).
pub const DBREP_NOTFOUND: c_int = -30988;
/// `dbrep_txn_applied`: the token is of a transaction that wrote nothing (`DB_KEYEMPTY`).
pub const DBREP_KEYEMPTY: c_int = -30995;
/// Another site became master: the eid out-parameter names it. Returned by
/// `dbrep_rep_process_message` and by the election calls (Berkeley DB's
/// pre-4.6 `DB_REP_NEWMASTER`; 5.3 reports it as an event only).
pub const DBREP_NEWMASTER: c_int = -30892;
/// Bytes handed in as a message could not be decoded (dbrep only).
pub const DBREP_MALFORMED: c_int = -30899;
/// An operating-system I/O call failed (dbrep only).
pub const DBREP_IO: c_int = -30898;
/// Data on disk is damaged (dbrep only).
pub const DBREP_CORRUPT: c_int = -30897;
/// A size or count limit would be exceeded (dbrep only).
pub const DBREP_LIMIT: c_int = -30896;
/// `dbrep_rep_elect_nowait`: the election is still running; its end comes as
/// an event (dbrep only).
pub const DBREP_IN_PROGRESS: c_int = -30895;
/// The handle was closed with `dbrep_env_close` (dbrep only).
pub const DBREP_CLOSED: c_int = -30894;
/// A log record was asked for that the log does not hold (dbrep only).
pub const DBREP_LOG_NOTFOUND: c_int = -30891;
/// `dbrep_rep_process_message`: the message arrived before `dbrep_rep_start`
/// and was not processed; start the site, and the sender's retries bring it
/// again (dbrep only).
pub const DBREP_NOT_STARTED: c_int = -30893;
/// A read-write transaction conflicted with one that committed first: it
/// wrote nothing; retry it (Berkeley DB's `DB_LOCK_DEADLOCK` value).
pub const DBREP_LOCK_DEADLOCK: c_int = -30993;
/// A read handle (cursor, read transaction) outlived a rollback or snapshot
/// install on this client: close it and open a new one (Berkeley DB's
/// `DB_REP_HANDLE_DEAD` value).
pub const DBREP_HANDLE_DEAD: c_int = -30984;
/// No database of that name exists, or it was removed (dbrep only).
pub const DBREP_NO_DATABASE: c_int = -30890;

/// Every code `dbrep_strerror` describes, with its text.
const MESSAGES: &[(c_int, &str)] = &[
    (DBREP_OK, "success\0"),
    (DBREP_EINVAL, "invalid argument\0"),
    (
        DBREP_HOLDELECTION,
        "an election is needed: call dbrep_rep_elect from another thread\0",
    ),
    (
        DBREP_DUPMASTER,
        "two masters of one generation: restart as client and elect\0",
    ),
    (DBREP_IGNORE, "the message was irrelevant and was ignored\0"),
    (
        DBREP_ISPERM,
        "permanent records are durable here up to the returned LSN\0",
    ),
    (
        DBREP_JOIN_FAILURE,
        "this client cannot join the master without losing permanent data\0",
    ),
    (DBREP_LEASE_EXPIRED, "the master lease has expired\0"),
    (
        DBREP_LOCKOUT,
        "the client is synchronising; data calls are locked out\0",
    ),
    (DBREP_NEWSITE, "first contact from a new site\0"),
    (
        DBREP_NOTPERM,
        "a permanent record was accepted but is not yet durable\0",
    ),
    (
        DBREP_UNAVAIL,
        "unavailable: no master or no election winner\0",
    ),
    (
        DBREP_RUNRECOVERY,
        "the environment failed and must be reopened\0",
    ),
    (DBREP_TIMEOUT, "timed out\0"),
    (DBREP_NOTFOUND, "not found\0"),
    (DBREP_KEYEMPTY, "the transaction wrote nothing\0"),
    (DBREP_NEWMASTER, "another site is master\0"),
    (DBREP_MALFORMED, "malformed message\0"),
    (DBREP_IO, "I/O error\0"),
    (DBREP_CORRUPT, "corrupt data on disk\0"),
    (DBREP_LIMIT, "a size or count limit would be exceeded\0"),
    (DBREP_IN_PROGRESS, "the election is in progress\0"),
    (DBREP_CLOSED, "the handle is closed\0"),
    (DBREP_LOG_NOTFOUND, "no such log record\0"),
    (
        DBREP_NOT_STARTED,
        "the site is not started: call dbrep_rep_start first\0",
    ),
    (
        DBREP_LOCK_DEADLOCK,
        "transaction conflict: it wrote nothing, retry it\0",
    ),
    (
        DBREP_HANDLE_DEAD,
        "the handle outlived a rollback or snapshot install: reopen it\0",
    ),
    (DBREP_NO_DATABASE, "no such database\0"),
];

/// Describes any return code.
///
/// Returns a static, NUL-terminated string: never free it. Unknown codes get
/// "unknown dbrep return code". Thread-safe.
#[no_mangle]
pub extern "C" fn dbrep_strerror(code: c_int) -> *const c_char {
    MESSAGES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unknown dbrep return code\0", |(_, m)| m)
        .as_ptr()
        .cast()
}

/// A failed call: the code returned to C and a message kept for `dbrep_last_error`.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) code: c_int,
    pub(crate) msg: String,
}

impl Fail {
    pub(crate) fn new(code: c_int, msg: impl Into<String>) -> Fail {
        Fail {
            code,
            msg: msg.into(),
        }
    }

    pub(crate) fn einval(msg: impl Into<String>) -> Fail {
        Fail::new(DBREP_EINVAL, msg)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let code = match &e {
            Error::Io { .. } => DBREP_IO,
            Error::Corrupt { .. } => DBREP_CORRUPT,
            Error::Malformed(_) => DBREP_MALFORMED,
            Error::Limit { .. } => DBREP_LIMIT,
            Error::Invalid(_) => DBREP_EINVAL,
            Error::Unavail(_) => DBREP_UNAVAIL,
            Error::LeaseExpired => DBREP_LEASE_EXPIRED,
            Error::Lockout => DBREP_LOCKOUT,
            Error::Timeout => DBREP_TIMEOUT,
            Error::NotFound(_) => DBREP_LOG_NOTFOUND,
            Error::RunRecovery(_) => DBREP_RUNRECOVERY,
            Error::Conflict(_) => DBREP_LOCK_DEADLOCK,
            Error::HandleDead => DBREP_HANDLE_DEAD,
            Error::NoDatabase(_) => DBREP_NO_DATABASE,
            #[allow(unreachable_patterns)]
            _ => DBREP_RUNRECOVERY,
        };
        Fail::new(code, e.to_string())
    }
}

/// The code a `rep_process_message` (or tick) status maps to.
pub(crate) fn status_code(status: &Status) -> c_int {
    match status {
        Status::Processed => DBREP_OK,
        Status::HoldElection => DBREP_HOLDELECTION,
        Status::NewMaster(_) => DBREP_NEWMASTER,
        Status::NewSite { .. } => DBREP_NEWSITE,
        Status::IsPerm(_) => DBREP_ISPERM,
        Status::NotPerm(_) => DBREP_NOTPERM,
        Status::DupMaster => DBREP_DUPMASTER,
        Status::Ignore => DBREP_IGNORE,
        Status::JoinFailure => DBREP_JOIN_FAILURE,
        Status::NotStarted => DBREP_NOT_STARTED,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(msg: &str) {
    // A message with an interior NUL is cut there rather than lost.
    let end = msg.find('\0').unwrap_or(msg.len());
    let c = CString::new(&msg[..end]).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The message of the last call on this thread that returned an error code
/// (an empty string if none did).
///
/// The string belongs to the library and stays valid until the next dbrep
/// call on this thread: copy it to keep it. Never free it. Thread-safe: each
/// thread has its own message.
#[no_mangle]
pub extern "C" fn dbrep_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
