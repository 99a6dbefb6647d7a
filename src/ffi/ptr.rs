//! Where raw pointers from C become references and slices, and where a
//! panic is stopped before it reaches C.

use std::any::Any;
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::codes::{set_last_error, Fail, DBREP_OK, DBREP_RUNRECOVERY};
use super::dbrep_buf;
use super::handle::Shared;

/// What most calls return inside the guard: a code, or a failure to report.
pub(crate) type Ret = Result<c_int, Fail>;

/// Runs `f`, turning its failure or panic into a code. A panic marks
/// `shared` (the environment `f` worked on) failed: its state may be
/// half-changed, so nothing may continue as if it were not.
pub(crate) fn guard(shared: Option<&Shared>, f: impl FnOnce() -> Ret) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(fail)) => {
            set_last_error(&fail.msg);
            fail.code
        }
        Err(payload) => {
            let why = panic_message(payload.as_ref());
            if let Some(s) = shared {
                s.mark_failed(&why);
            }
            set_last_error(&format!("internal error (the handle is now failed): {why}"));
            DBREP_RUNRECOVERY
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Borrows `len` bytes at `data`.
///
/// # Safety
/// `data` must be null or point to `len` readable bytes that stay unchanged
/// for `'a`.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    // SAFETY: forwarded contract.
    unsafe { slice(data, len, what) }
}

/// Borrows `len` values of `T` at `data`.
///
/// # Safety
/// `data` must be null or point to `len` initialised, aligned values of `T`
/// that stay unchanged for `'a`.
pub(crate) unsafe fn slice<'a, T>(data: *const T, len: usize, what: &str) -> Result<&'a [T], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Fail::einval(format!("{what} is null with length {len}")));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .map_or(true, |b| b > isize::MAX as usize)
    {
        return Err(Fail::einval(format!("{what} length {len} is too large")));
    }
    // SAFETY: non-null and, by the caller's contract, valid for `len`
    // values; their size fits an allocation (checked above).
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Borrows a NUL-terminated UTF-8 string.
///
/// # Safety
/// `s` must be null or point to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn utf8<'a>(s: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if s.is_null() {
        return Err(Fail::einval(format!("{what} is null")));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(s) };
    c.to_str()
        .map_err(|_| Fail::einval(format!("{what} is not valid UTF-8")))
}

/// Writes `value` through an optional out-parameter.
///
/// # Safety
/// `out` must be null or valid for a write of `T`.
pub(crate) unsafe fn put_opt<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null and writable by the caller's contract; `write`
        // does not read (or drop) whatever garbage was there.
        unsafe { out.write(value) };
    }
}

/// Writes `value` through a required out-parameter.
///
/// # Safety
/// `out` must be null or valid for a write of `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T, what: &str) -> Ret {
    if out.is_null() {
        return Err(Fail::einval(format!("{what} is null")));
    }
    // SAFETY: as for `put_opt`.
    unsafe { out.write(value) };
    Ok(DBREP_OK)
}

/// Moves `v` into a `dbrep_buf` the caller frees with `dbrep_buf_free`.
pub(crate) fn into_buf(v: Vec<u8>) -> dbrep_buf {
    let boxed: Box<[u8]> = v.into_boxed_slice();
    let len = boxed.len();
    let data = Box::into_raw(boxed).cast::<u8>();
    dbrep_buf { data, len }
}

/// An empty `dbrep_buf` (nothing to free).
pub(crate) fn empty_buf() -> dbrep_buf {
    dbrep_buf {
        data: std::ptr::null_mut(),
        len: 0,
    }
}

/// Frees bytes the library handed out in a `dbrep_buf`, and empties the
/// `dbrep_buf` so a second call does nothing. A null `buf` is ignored.
///
/// # Safety
/// `buf` must be null or point to a `dbrep_buf` the library filled in (or one
/// `dbrep_buf_free` already emptied), not changed since. Thread-safe for
/// distinct buffers.
#[no_mangle]
pub unsafe extern "C" fn dbrep_buf_free(buf: *mut dbrep_buf) {
    let _ = guard(None, || {
        // SAFETY: null or a valid `dbrep_buf`, by the contract above.
        let Some(b) = (unsafe { buf.as_mut() }) else {
            return Ok(DBREP_OK);
        };
        if !b.data.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(b.data, b.len);
            // SAFETY: `data`/`len` came from `into_buf`'s `Box<[u8]>` and
            // were not changed; the box is rebuilt once and dropped.
            drop(unsafe { Box::from_raw(slice) });
        }
        *b = empty_buf();
        Ok(DBREP_OK)
    });
}
