//! The C API: `extern "C"` functions with a `dbrep_` prefix mirroring
//! [`Env`](crate::Env), for C and C++ programs ported from Berkeley DB's
//! `DB_ENV->rep_*` calls. `include/dbrep.h` is generated from this module by
//! cbindgen; the doc comments here are the header's.
//!
//! This is the only module allowed `unsafe`: every raw pointer from C is
//! turned into a reference or slice in one place (`ptr`), with the
//! conditions that make it sound written beside it.
//!
//! # Rules that hold for every call
//!
//! - Every function returns an `int` code (`DBREP_OK` = 0, see `codes`)
//!   unless documented otherwise; `dbrep_strerror` describes any code and
//!   `dbrep_last_error` gives the failing call's message on this thread.
//! - A null handle, a null pointer with a non-zero length, a path that is not
//!   UTF-8, an unknown flag or kind: `DBREP_EINVAL`. A call on a handle closed
//!   by `dbrep_env_shutdown`: `DBREP_CLOSED`.
//! - No Rust panic crosses into C: a panic is caught, the call returns
//!   `DBREP_RUNRECOVERY`, and the environment is marked failed so every later
//!   call on it returns `DBREP_RUNRECOVERY` until it is closed and reopened.
//! - Thread safety: a `dbrep_env` may be used from any number of threads at
//!   once (it is the Rust `Env`, which is `Send + Sync`), except
//!   `dbrep_env_close`, which must be the last call on the handle. A
//!   `dbrep_txn` belongs to one thread at a time (it may move between threads).
//! - Memory: the library hands out only `dbrep_env` and `dbrep_txn` handles
//!   and `dbrep_buf` values; each says which function frees it. Strings from
//!   `dbrep_strerror` are static; `dbrep_last_error`'s is the library's.
//!
//! # Outgoing messages
//!
//! The C `send` callback receives pointers *into the message's own buffers*
//! (the fixed-size control array and the `rec` vector the core built): the C
//! layer copies nothing and allocates nothing per message. The pointers are
//! valid only for the duration of the callback; a transport that queues a
//! message must copy it. (The core itself still builds one `Vec` per `rec`;
//! the C boundary adds no allocation on top of the Rust API.)
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]

pub mod codes;
pub mod data;
pub mod dbs;
pub mod group;
pub mod handle;
#[cfg(feature = "net")]
pub mod net;
mod ptr;
pub mod rep;
pub mod settings;

use crate::lsn::Lsn;

/// A site's id as this host numbers its peers (Berkeley DB's `envid`).
/// Non-negative ids name sites; negative ones are reserved.
pub type dbrep_eid = i32;

/// Target id meaning every site the host can reach (`DB_EID_BROADCAST`).
pub const DBREP_EID_BROADCAST: dbrep_eid = -1;
/// An id that names no site (`DB_EID_INVALID`).
pub const DBREP_EID_INVALID: dbrep_eid = -2;

/// A log sequence number (`DB_LSN`): segment file number and byte offset.
/// `{0, 0}` means no record.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct dbrep_lsn {
    /// Segment file number, from 1.
    pub file: u32,
    /// Byte offset of the record in its file.
    pub offset: u32,
}

impl From<Lsn> for dbrep_lsn {
    fn from(l: Lsn) -> dbrep_lsn {
        dbrep_lsn {
            file: l.file,
            offset: l.offset,
        }
    }
}

/// Bytes the library allocated and hands to the caller (a value read by a
/// get, a new site's cdata).
///
/// The caller owns it and frees it with `dbrep_buf_free`, once; never with
/// `free()`. An empty value has `len` 0 and `data` may be null.
#[repr(C)]
#[derive(Debug)]
pub struct dbrep_buf {
    /// The bytes (not NUL-terminated).
    pub data: *mut u8,
    /// How many bytes `data` holds.
    pub len: usize,
}
