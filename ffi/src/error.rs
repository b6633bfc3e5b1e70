//! Result codes, the per-thread error detail, and the panic boundary every export runs inside.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use entitle_core::{Error, ErrorKind};

/// The outcome of a fallible call.
///
/// The numbers are part of the ABI: they are never changed or reused, and new codes are only ever
/// added. Turn a code into text with `entitle_result_message`; the calling thread's detail of its last
/// failure is read with `entitle_last_error_message`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum entitle_result {
    /// Success.
    Ok = 0,
    /// A required pointer was NULL (or a string pointer was NULL with a non-zero length).
    NullParameter = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// An argument was out of its domain (for example a length above `PTRDIFF_MAX`).
    InvalidParameter = 3,
    /// The library panicked inside the call; the call had no effect. Please report it.
    Panic = 4,
    /// A caller-provided buffer is too small for the result; nothing was written.
    BufferTooSmall = 5,
    /// An index is past the end of a list.
    OutOfRange = 6,
    /// A file could not be read (the detail names it and the system error), or the system refused
    /// to start a background thread (`entitle_engine_connect`).
    Io = 7,
    /// The catalog JSON is invalid (the detail starts with the path of the offending value).
    InvalidCatalog = 8,
    /// The bytes are not an entitle snapshot (or delta): wrong magic.
    BadMagic = 9,
    /// A snapshot or delta of a format version this library does not read.
    UnsupportedVersion = 10,
    /// Snapshot or delta bytes are truncated, fail their checksum, or are inconsistent.
    Corrupt = 11,
    /// The content exceeds what the snapshot format can address.
    TooLarge = 12,
    /// A delta was made for another base snapshot than the engine's current content.
    WrongBase = 13,
    /// A delta's features do not match the engine's current features.
    FeatureMismatch = 14,
    /// The sync configuration is invalid (a URL that is not `http://` or `https://`, a token that
    /// is not printable ASCII).
    InvalidConfig = 15,
    /// A wait ran out before what it waited for happened (`entitle_engine_next_event`).
    Timeout = 16,
    /// The engine is closed (`entitle_engine_close`) and has nothing more to give.
    Closed = 17,
}

impl entitle_result {
    /// Every code, for tests and exhaustive tables.
    pub const ALL: &'static [entitle_result] = &[
        entitle_result::Ok,
        entitle_result::NullParameter,
        entitle_result::InvalidUtf8,
        entitle_result::InvalidParameter,
        entitle_result::Panic,
        entitle_result::BufferTooSmall,
        entitle_result::OutOfRange,
        entitle_result::Io,
        entitle_result::InvalidCatalog,
        entitle_result::BadMagic,
        entitle_result::UnsupportedVersion,
        entitle_result::Corrupt,
        entitle_result::TooLarge,
        entitle_result::WrongBase,
        entitle_result::FeatureMismatch,
        entitle_result::InvalidConfig,
        entitle_result::Timeout,
        entitle_result::Closed,
    ];

    /// The code's description as a NUL-terminated static string.
    pub(crate) fn message(self) -> &'static str {
        match self {
            entitle_result::Ok => "success\0",
            entitle_result::NullParameter => "a required pointer argument was NULL\0",
            entitle_result::InvalidUtf8 => "a string argument is not valid UTF-8\0",
            entitle_result::InvalidParameter => "an argument is out of range\0",
            entitle_result::Panic => "internal error: the library panicked (please report it)\0",
            entitle_result::BufferTooSmall => "the buffer is too small for the result\0",
            entitle_result::OutOfRange => "index out of range\0",
            entitle_result::Io => "a file could not be read\0",
            entitle_result::InvalidCatalog => "invalid catalog\0",
            entitle_result::BadMagic => "not an entitle snapshot or delta (bad magic bytes)\0",
            entitle_result::UnsupportedVersion => "unsupported snapshot or delta format version\0",
            entitle_result::Corrupt => "corrupt snapshot or delta data\0",
            entitle_result::TooLarge => "too large for the snapshot format\0",
            entitle_result::WrongBase => "the delta is for another base snapshot\0",
            entitle_result::FeatureMismatch => {
                "the delta's features do not match the current snapshot\0"
            }
            entitle_result::InvalidConfig => "invalid sync configuration\0",
            entitle_result::Timeout => "the wait timed out\0",
            entitle_result::Closed => "the engine is closed\0",
        }
    }
}

/// A failed call: its code and a detail for the thread-local error message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: entitle_result,
    pub(crate) detail: Cow<'static, str>,
}

impl Failure {
    pub(crate) fn new(code: entitle_result, detail: impl Into<Cow<'static, str>>) -> Failure {
        Failure {
            code,
            detail: detail.into(),
        }
    }

    pub(crate) fn null(what: &'static str) -> Failure {
        Failure::new(entitle_result::NullParameter, format!("{what} is NULL"))
    }
}

impl Failure {
    /// Replaces the detail (keeping the code): for a call that can say more than the core's text.
    pub(crate) fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Failure {
        self.detail = detail.into();
        self
    }
}

/// The result code of each kind of core error: the one place where a core failure becomes a code.
pub(crate) fn code_of(kind: ErrorKind) -> entitle_result {
    match kind {
        ErrorKind::InvalidCatalog => entitle_result::InvalidCatalog,
        ErrorKind::BadMagic => entitle_result::BadMagic,
        ErrorKind::UnsupportedVersion => entitle_result::UnsupportedVersion,
        ErrorKind::Corrupt => entitle_result::Corrupt,
        ErrorKind::TooLarge => entitle_result::TooLarge,
        ErrorKind::WrongBase => entitle_result::WrongBase,
        ErrorKind::FeatureMismatch => entitle_result::FeatureMismatch,
        ErrorKind::Io | ErrorKind::ThreadStart => entitle_result::Io,
        ErrorKind::InvalidConfig => entitle_result::InvalidConfig,
        ErrorKind::TooManyFeatureKeys => entitle_result::InvalidParameter,
        ErrorKind::Timeout => entitle_result::Timeout,
        ErrorKind::Closed => entitle_result::Closed,
        // A kind added to the core without a code here is a bug of this library; the test
        // `every_core_error_kind_has_its_own_code` catches it before it ships.
        _ => entitle_result::Panic,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = code_of(e.kind());
        match e {
            // The catalog's own message starts with the path of the offending value.
            Error::InvalidCatalog(c) => Failure::new(code, c.to_string()),
            e => Failure::new(code, e.to_string()),
        }
    }
}

thread_local! {
    /// The detail of this thread's most recent failed call.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(detail: &str) {
    // `try_with`: during thread teardown the slot may be gone; the detail is then simply lost.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            slot.clear();
            slot.push_str(detail);
        }
    });
}

fn panic_detail(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic payload");
    format!("internal error: the library panicked: {what}")
}

/// Runs a result-returning export body inside the panic boundary, recording the detail of a failure.
#[inline(always)]
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> entitle_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => entitle_result::Ok,
        Ok(Err(failure)) => fail(failure),
        Err(payload) => {
            set_last_error(&panic_detail(&*payload));
            entitle_result::Panic
        }
    }
}

#[cold]
#[inline(never)]
fn fail(failure: Failure) -> entitle_result {
    set_last_error(&failure.detail);
    failure.code
}

/// Runs a plain-value export body inside the panic boundary; a panic yields `on_panic`.
#[inline(always)]
pub(crate) fn guard_value<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&panic_detail(&*payload));
            on_panic
        }
    }
}

/// The description of a result code, as static text.
///
/// Unknown codes (from a newer header, say) give `"unknown result code"`.
///
/// # Safety
/// Always safe to call, from any thread. The returned pointer is never NULL and points to a
/// NUL-terminated static string owned by the library: do not free it; it stays valid for the life
/// of the process.
#[no_mangle]
pub extern "C" fn entitle_result_message(result: u32) -> *const c_char {
    const UNKNOWN: &str = "unknown result code\0";
    guard_value(UNKNOWN.as_ptr().cast(), || {
        entitle_result::ALL
            .iter()
            .find(|r| **r as u32 == result)
            .map_or(UNKNOWN, |r| r.message())
            .as_ptr()
            .cast()
    })
}

/// The length in bytes of the calling thread's last error detail (0 when no call on this thread has
/// failed yet).
///
/// # Safety
/// Always safe to call, from any thread. Reading the detail does not change it.
#[no_mangle]
pub extern "C" fn entitle_last_error_len() -> usize {
    guard_value(0, || {
        LAST_ERROR
            .try_with(|slot| slot.try_borrow().map_or(0, |s| s.len()))
            .unwrap_or(0)
    })
}

/// Copies the calling thread's last error detail into `buf`.
///
/// Every call that returns something other than `ENTITLE_RESULT_OK` first records a detailed UTF-8
/// message for its thread (for example `customers[3].overrides.seats: expected a whole number or
/// "unlimited"`, or a file name and the system error). The detail stays until the thread's next
/// failing call; successful calls leave it alone, so read it right after the failure. The copy is not
/// NUL-terminated: `*out_len` says how many bytes were written (0 when there is no detail).
///
/// # Errors
/// `ENTITLE_RESULT_NULL_PARAMETER` when `out_len` is NULL, or `buf` is NULL while `buf_len` is not 0;
/// `ENTITLE_RESULT_BUFFER_TOO_SMALL` when the detail is longer than `buf_len` (size the buffer with
/// `entitle_last_error_len`). On error nothing is written. This function never changes the detail.
///
/// # Safety
/// `buf` must be valid for writing `buf_len` bytes (or NULL with `buf_len` 0); `out_len` must be
/// valid for writing a `size_t`. Both stay owned by the caller. Safe from any thread: each thread
/// reads its own detail.
#[no_mangle]
pub unsafe extern "C" fn entitle_last_error_message(
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> entitle_result {
    let copied = catch_unwind(AssertUnwindSafe(|| {
        if out_len.is_null() || (buf.is_null() && buf_len != 0) {
            return entitle_result::NullParameter;
        }
        LAST_ERROR
            .try_with(|slot| {
                let Ok(detail) = slot.try_borrow() else {
                    return entitle_result::Panic;
                };
                if detail.len() > buf_len {
                    return entitle_result::BufferTooSmall;
                }
                if !detail.is_empty() {
                    // SAFETY: the caller guarantees `buf` is writable for `buf_len` >= `detail.len()`
                    // bytes; a Rust-owned String cannot overlap a caller buffer we only write to.
                    unsafe { std::ptr::copy_nonoverlapping(detail.as_ptr(), buf, detail.len()) };
                }
                // SAFETY: `out_len` is non-NULL and the caller guarantees it is writable.
                unsafe { out_len.write(detail.len()) };
                entitle_result::Ok
            })
            .unwrap_or(entitle_result::Panic)
    }));
    copied.unwrap_or(entitle_result::Panic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail() -> String {
        let mut buf = vec![0u8; entitle_last_error_len()];
        let mut n = 0;
        // SAFETY: `buf` is writable for its length and `n` is a valid `usize`.
        let r = unsafe { entitle_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) };
        assert_eq!(r, entitle_result::Ok);
        buf.truncate(n);
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn a_panic_becomes_a_result_code_with_its_message() {
        let r = guard(|| panic!("boom at the boundary"));
        assert_eq!(r, entitle_result::Panic);
        assert!(detail().contains("boom at the boundary"), "{}", detail());
        assert_eq!(guard_value(7u64, || panic!("again")), 7);
        assert!(detail().contains("again"));
    }

    #[test]
    fn failures_record_their_detail_and_successes_keep_it() {
        let r = guard(|| Err(Failure::new(entitle_result::Io, "/nowhere: not found")));
        assert_eq!(r, entitle_result::Io);
        assert_eq!(detail(), "/nowhere: not found");
        assert_eq!(guard(|| Ok(())), entitle_result::Ok);
        assert_eq!(detail(), "/nowhere: not found");
    }

    #[test]
    fn codes_are_numbered_in_order_and_each_has_its_own_text() {
        for (i, code) in entitle_result::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i, "{code:?}");
            let text = code.message();
            assert!(text.ends_with('\0') && text.len() > 1, "{code:?}");
            assert_eq!(text.find('\0'), Some(text.len() - 1), "{code:?}");
            for other in &entitle_result::ALL[..i] {
                assert_ne!(other.message(), text, "{code:?} and {other:?}");
            }
        }
    }

    #[test]
    fn every_core_error_kind_has_its_own_code() {
        let expected = [
            (ErrorKind::InvalidCatalog, entitle_result::InvalidCatalog, 8),
            (ErrorKind::BadMagic, entitle_result::BadMagic, 9),
            (
                ErrorKind::UnsupportedVersion,
                entitle_result::UnsupportedVersion,
                10,
            ),
            (ErrorKind::Corrupt, entitle_result::Corrupt, 11),
            (ErrorKind::TooLarge, entitle_result::TooLarge, 12),
            (ErrorKind::WrongBase, entitle_result::WrongBase, 13),
            (
                ErrorKind::FeatureMismatch,
                entitle_result::FeatureMismatch,
                14,
            ),
            (ErrorKind::Io, entitle_result::Io, 7),
            (ErrorKind::InvalidConfig, entitle_result::InvalidConfig, 15),
            (ErrorKind::ThreadStart, entitle_result::Io, 7),
            (
                ErrorKind::TooManyFeatureKeys,
                entitle_result::InvalidParameter,
                3,
            ),
            (ErrorKind::Timeout, entitle_result::Timeout, 16),
            (ErrorKind::Closed, entitle_result::Closed, 17),
        ];
        assert_eq!(expected.len(), ErrorKind::ALL.len());
        for (kind, code, number) in expected {
            assert!(ErrorKind::ALL.contains(&kind), "{kind:?}");
            assert_eq!(code_of(kind), code, "{kind:?}");
            assert_eq!(code as u32, number, "{kind:?}");
        }
    }

    #[test]
    fn core_errors_keep_their_text_as_the_detail() {
        let catalog = entitle_core::Catalog::from_json(b"{\"features\": 3}")
            .err()
            .map(Error::from);
        let Some(e) = catalog else {
            panic!("the catalog is invalid")
        };
        let Error::InvalidCatalog(inner) = &e else {
            panic!("{e:?}")
        };
        let text = inner.to_string();
        let f = Failure::from(e);
        assert_eq!(f.code, entitle_result::InvalidCatalog);
        assert_eq!(f.detail, text);
        let io = Error::Io {
            path: "/nowhere".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
        };
        let f = Failure::from(io);
        assert_eq!(
            (f.code, &*f.detail),
            (entitle_result::Io, "/nowhere: not found")
        );
    }
}
