//! Turning C arguments into Rust references, with the checks every export shares.

use crate::error::{entitle_result, Failure};

/// Lengths above this cannot describe a real buffer (`slice::from_raw_parts` requires it).
const MAX_LEN: usize = isize::MAX as usize;

/// The bytes at `(ptr, len)`, or `None` when they cannot be read: `ptr` NULL with `len` > 0, or `len`
/// above `PTRDIFF_MAX`. NULL with `len` 0 is the empty string.
///
/// # Safety
/// Unless it is NULL, `ptr` must be valid for reading `len` bytes for `'a`, unmodified meanwhile.
#[inline(always)]
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() || len > MAX_LEN {
        return None;
    }
    // SAFETY: non-NULL, `len` fits `isize`, and the caller guarantees `len` readable bytes for 'a.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Like [`bytes`], but saying why the argument named `what` cannot be read.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn arg_bytes<'a>(
    ptr: *const u8,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], Failure> {
    if len > MAX_LEN {
        return Err(Failure::new(
            entitle_result::InvalidParameter,
            format!("{what}: length {len} exceeds PTRDIFF_MAX"),
        ));
    }
    // SAFETY: forwarded to the caller.
    unsafe { bytes(ptr, len) }.ok_or_else(|| {
        Failure::new(
            entitle_result::NullParameter,
            format!("{what} is NULL with a length of {len}"),
        )
    })
}

/// The UTF-8 string at `(ptr, len)`.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn arg_str<'a>(
    ptr: *const u8,
    len: usize,
    what: &'static str,
) -> Result<&'a str, Failure> {
    // SAFETY: forwarded to the caller.
    let b = unsafe { arg_bytes(ptr, len, what) }?;
    utf8(b, what)
}

/// `b` as UTF-8, or an `InvalidUtf8` failure naming `what` and the offset of the first bad byte.
pub(crate) fn utf8<'a>(b: &'a [u8], what: &'static str) -> Result<&'a str, Failure> {
    std::str::from_utf8(b).map_err(|e| {
        Failure::new(
            entitle_result::InvalidUtf8,
            format!(
                "{what} is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// The file system path at `(ptr, len)`: any bytes but NUL on Unix, where paths are bytes (a name
/// need not be UTF-8); UTF-8 elsewhere.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn arg_path(
    ptr: *const u8,
    len: usize,
    what: &'static str,
) -> Result<std::path::PathBuf, Failure> {
    // SAFETY: forwarded to the caller.
    let b = unsafe { arg_bytes(ptr, len, what) }?;
    if b.contains(&0) {
        return Err(Failure::new(
            entitle_result::InvalidParameter,
            format!("{what} contains a NUL byte"),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b)))
    }
    #[cfg(not(unix))]
    {
        Ok(std::path::PathBuf::from(utf8(b, what)?))
    }
}
