//! The engine handle: creation, the hot-path lookups, content updates and release.

use entitle_core::internal::read_file;
use entitle_core::{load_source, Decision, Engine, Error, Limit, Reason, Snapshot, Value};

use crate::error::{entitle_result, guard, guard_value, Failure};
use crate::input::{arg_bytes, arg_path, arg_str, bytes, utf8};

/// An in-process entitlement engine: the current snapshot plus the deltas applied to it.
///
/// Opaque: create one with `entitle_engine_from_file`, `entitle_engine_from_snapshot` or
/// `entitle_engine_from_catalog_json`, use it from any number of threads, and release it with
/// `entitle_engine_free` exactly once, after its last use on every thread.
///
/// Thread safety: every function taking an engine may be called concurrently with any other on the
/// same engine, except `entitle_engine_free`. Lookups take no lock and never wait for a writer: a
/// lookup sees the content before or after a concurrent replacement, never a mix.
pub struct entitle_engine {
    pub(crate) inner: Engine,
    /// Whether the engine was made by `entitle_engine_connect`.
    pub(crate) syncing: bool,
}

/// The answer of `entitle_engine_limit` for an unlimited limit; also the `value` of an unlimited
/// `entitle_decision`. Finite limits never exceed `INT64_MAX`, so this never collides with one.
pub const ENTITLE_UNLIMITED: u64 = u64::MAX;

/// Why a decision came out as it did (SPEC section 2). The numbers are stable (they are also the
/// codes stored in snapshots); `entitle_reason_name` gives the conformance suite's spelling.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum entitle_reason {
    /// The feature's default applied: no granting subscription gave more.
    Default = 0,
    /// A granting subscription's products gave the value.
    Subscription = 1,
    /// A customer override replaced the value.
    Override = 2,
    /// The customer is not in the snapshot: the feature's default applied.
    CustomerNotFound = 3,
    /// The feature is not in the snapshot.
    FeatureNotFound = 4,
}

impl From<Reason> for entitle_reason {
    #[inline(always)]
    fn from(r: Reason) -> entitle_reason {
        match r {
            Reason::Default => entitle_reason::Default,
            Reason::Subscription => entitle_reason::Subscription,
            Reason::Override => entitle_reason::Override,
            Reason::CustomerNotFound => entitle_reason::CustomerNotFound,
            Reason::FeatureNotFound => entitle_reason::FeatureNotFound,
        }
    }
}

/// The type of the feature a decision is about.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum entitle_feature_type {
    /// The feature is not in the snapshot (the conformance suite's `null`).
    Unknown = 0,
    /// An on/off feature.
    Flag = 1,
    /// A numeric allowance, possibly unlimited.
    Limit = 2,
}

/// One evaluated decision, written by `entitle_engine_check` into a caller-owned struct.
///
/// | feature            | `value`                               | `unlimited` | `enabled`        |
/// |--------------------|---------------------------------------|-------------|------------------|
/// | flag               | 0 or 1                                | false       | `value == 1`     |
/// | limit, finite      | the limit, `0 ..= INT64_MAX`          | false       | `value > 0`      |
/// | limit, unlimited   | `ENTITLE_UNLIMITED`                   | true        | true             |
/// | not in the snapshot| 0                                     | false       | false            |
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct entitle_decision {
    /// The value: a flag's 0/1, a limit's number, `ENTITLE_UNLIMITED`, or 0 for an unknown feature.
    pub value: u64,
    /// The content version of the snapshot that answered.
    pub version: u64,
    /// Why the value is what it is (an `entitle_reason`).
    pub reason: entitle_reason,
    /// Flag, limit, or unknown feature (an `entitle_feature_type`).
    pub feature_type: entitle_feature_type,
    /// SPEC 2.6: a flag's value; for a limit, unlimited or greater than 0; false for unknown features.
    pub enabled: bool,
    /// Whether the limit is unlimited (then `value` is `ENTITLE_UNLIMITED`).
    pub unlimited: bool,
}

impl From<Decision> for entitle_decision {
    #[inline(always)]
    fn from(d: Decision) -> entitle_decision {
        let (value, unlimited, feature_type) = match d.value {
            Some(Value::Flag(b)) => (u64::from(b), false, entitle_feature_type::Flag),
            Some(Value::Limit(Limit::Finite(n))) => (n, false, entitle_feature_type::Limit),
            Some(Value::Limit(Limit::Unlimited)) => {
                (ENTITLE_UNLIMITED, true, entitle_feature_type::Limit)
            }
            None => (0, false, entitle_feature_type::Unknown),
        };
        entitle_decision {
            value,
            version: d.version,
            reason: d.reason.into(),
            feature_type,
            enabled: d.enabled(),
            unlimited,
        }
    }
}

/// The engine behind a handle, or `None` for NULL.
///
/// # Safety
/// Unless NULL, `engine` must come from an `entitle_engine_*` creator and not be freed yet.
#[inline(always)]
pub(crate) unsafe fn engine_ref<'a>(engine: *const entitle_engine) -> Option<&'a Engine> {
    // SAFETY: the caller guarantees a live engine or NULL.
    unsafe { engine.as_ref() }.map(|e| &e.inner)
}

/// The engine behind a handle, or a `NullParameter` failure.
///
/// # Safety
/// As for [`engine_ref`].
pub(crate) unsafe fn engine_arg<'a>(engine: *const entitle_engine) -> Result<&'a Engine, Failure> {
    // SAFETY: forwarded to the caller.
    unsafe { engine_ref(engine) }.ok_or_else(|| Failure::null("engine"))
}

/// Hands a new engine to the caller through `out`.
///
/// # Safety
/// `out` must be non-NULL and valid for writing a pointer.
pub(crate) unsafe fn hand_out(out: *mut *mut entitle_engine, engine: Engine, syncing: bool) {
    let boxed = Box::into_raw(Box::new(entitle_engine {
        inner: engine,
        syncing,
    }));
    // SAFETY: checked non-NULL by every caller; the caller guarantees it is writable.
    unsafe { out.write(boxed) };
}

/// Creates an engine from a file holding a binary snapshot or a catalog JSON (told apart by
/// content, not by name).
///
/// On success `*out` receives a new engine owned by the caller, to be released with
/// `entitle_engine_free`. On failure `*out` is untouched and the thread's error detail names the
/// file and the problem.
///
/// # Errors
/// `NULL_PARAMETER` (`out` NULL, or `path` NULL with a non-zero length), `INVALID_PARAMETER`
/// (length above `PTRDIFF_MAX`, or a NUL byte in the path), `IO` (unreadable file, or not a
/// regular file), `INVALID_CATALOG`, `BAD_MAGIC`, `UNSUPPORTED_VERSION`, `CORRUPT`, `TOO_LARGE`,
/// `PANIC`.
///
/// # Safety
/// `path` must be valid for reading `path_len` bytes (the path's bytes as the OS takes them, which
/// on Unix need not be UTF-8; no NUL terminator needed) during the call; the caller keeps it. `out` must be valid for writing a pointer. Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_from_file(
    path: *const u8,
    path_len: usize,
    out: *mut *mut entitle_engine,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees `path_len` readable bytes at `path`.
        let path = unsafe { arg_path(path, path_len, "path") }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let engine = Engine::from_file(&path)?;
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { hand_out(out, engine, false) };
        Ok(())
    })
}

/// Creates an engine from binary snapshot bytes (as written by `entitle build`).
///
/// The bytes are validated once and copied: the caller may free them as soon as the call returns.
/// On success `*out` receives a new engine owned by the caller (release with `entitle_engine_free`).
///
/// # Errors
/// `NULL_PARAMETER`, `INVALID_PARAMETER`, `BAD_MAGIC`, `UNSUPPORTED_VERSION`, `CORRUPT`, `TOO_LARGE`,
/// `PANIC`.
///
/// # Safety
/// `bytes` must be valid for reading `len` bytes during the call; the caller keeps ownership. `out`
/// must be valid for writing a pointer. Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_from_snapshot(
    bytes: *const u8,
    len: usize,
    out: *mut *mut entitle_engine,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees `len` readable bytes at `bytes`.
        let bytes = unsafe { arg_bytes(bytes, len, "bytes") }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let engine = Engine::from_bytes(bytes.to_vec())?;
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { hand_out(out, engine, false) };
        Ok(())
    })
}

/// Creates an engine by validating and compiling a catalog JSON document (content version 0). Meant
/// for tests and small applications; production loads snapshots.
///
/// On failure the thread's error detail starts with the path of the offending value, for example
/// `customers[3].overrides.seats: expected a whole number or "unlimited"`.
/// On success `*out` receives a new engine owned by the caller (release with `entitle_engine_free`).
///
/// # Errors
/// `NULL_PARAMETER`, `INVALID_PARAMETER`, `INVALID_UTF8` (the document is not UTF-8),
/// `INVALID_CATALOG`, `TOO_LARGE`, `PANIC`.
///
/// # Safety
/// `json` must be valid for reading `len` bytes during the call; the caller keeps ownership. `out`
/// must be valid for writing a pointer. Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_from_catalog_json(
    json: *const u8,
    len: usize,
    out: *mut *mut entitle_engine,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees `len` readable bytes at `json`.
        let json = unsafe { arg_str(json, len, "json") }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let engine = Engine::from_catalog_json(json.as_bytes())?;
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { hand_out(out, engine, false) };
        Ok(())
    })
}

/// Releases an engine and everything it holds. NULL is a no-op.
///
/// For an engine that syncs, this first stops its sync thread and waits for it, as
/// `entitle_engine_close` does (a TCP connect in progress may first run out its connect timeout).
///
/// # Safety
/// `engine` must be NULL or come from an `entitle_engine_*` creator, and must not have been freed
/// already. Call it exactly once, after the last use of the engine on every thread: no other call
/// may use `engine` concurrently with or after this one.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_free(engine: *mut entitle_engine) {
    guard_value((), || {
        if !engine.is_null() {
            // SAFETY: the caller hands back a pointer from `Box::into_raw` exactly once.
            drop(unsafe { Box::from_raw(engine) });
        }
    });
}

/// Checks the arguments of a by-key lookup and evaluates it with `eval`; misuse (`engine` NULL, a
/// string NULL with a non-zero length, a length above `PTRDIFF_MAX`) and panics answer `misuse`.
///
/// # Safety
/// `engine` must be NULL or a live engine; `customer` / `feature` readable for their lengths.
#[inline(always)]
unsafe fn lookup<T: Copy>(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
    misuse: T,
    eval: impl FnOnce(&Engine, &[u8], &[u8]) -> T,
) -> T {
    guard_value(misuse, || {
        // SAFETY: the caller guarantees a live engine (or NULL) and readable strings.
        let args = unsafe {
            (
                engine_ref(engine),
                bytes(customer, customer_len),
                bytes(feature, feature_len),
            )
        };
        match args {
            (Some(e), Some(c), Some(f)) => eval(e, c, f),
            _ => misuse,
        }
    })
}

/// Whether `customer` may use `feature` now (SPEC 2.6): a flag's value; for a limit, unlimited or
/// greater than 0.
///
/// The hot path: no lock, no allocation. The clock is read only for customers whose answers change
/// with time. Unknown features answer false; unknown customers get the feature's default.
/// Customer ids and feature keys are compared as exact bytes: bytes that are not valid UTF-8 never
/// match (they read as an unknown customer or feature; use `entitle_engine_check` to have them
/// rejected). Misuse answers false: `engine` NULL, a string pointer NULL with a non-zero length, or a
/// length above `PTRDIFF_MAX`.
///
/// # Safety
/// `engine` must be NULL or a live engine. `customer` / `feature` must be valid for reading
/// `customer_len` / `feature_len` bytes during the call (NULL with a length of 0 is the empty
/// string); the caller keeps them. Safe to call concurrently from any number of threads.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_enabled(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(
            engine,
            customer,
            customer_len,
            feature,
            feature_len,
            false,
            |e, c, f| e.enabled(c, f),
        )
    }
}

/// Like `entitle_engine_enabled`, evaluated at unix time `at` (seconds) instead of now.
///
/// # Safety
/// As for `entitle_engine_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_enabled_at(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
    at: i64,
) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(
            engine,
            customer,
            customer_len,
            feature,
            feature_len,
            false,
            |e, c, f| e.check_at(c, f, at).enabled(),
        )
    }
}

#[inline(always)]
pub(crate) fn limit_number(l: Option<Limit>) -> u64 {
    match l {
        Some(Limit::Finite(n)) => n,
        Some(Limit::Unlimited) => ENTITLE_UNLIMITED,
        None => 0,
    }
}

/// The limit of `feature` for `customer` now: the number (`0 ..= INT64_MAX`), or
/// `ENTITLE_UNLIMITED` (`UINT64_MAX`) for an unlimited limit.
///
/// Flags and unknown features answer 0 (SPEC 2.1: an API that must return a number returns 0); use
/// `entitle_engine_check` to tell those apart. Unknown customers get the feature's default. Bytes
/// that are not valid UTF-8 never match. Misuse (as for `entitle_engine_enabled`) answers 0.
/// The hot path: no lock, no allocation.
///
/// # Safety
/// As for `entitle_engine_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_limit(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(
            engine,
            customer,
            customer_len,
            feature,
            feature_len,
            0,
            |e, c, f| limit_number(e.check(c, f).limit()),
        )
    }
}

/// Like `entitle_engine_limit`, evaluated at unix time `at` (seconds) instead of now.
///
/// # Safety
/// As for `entitle_engine_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_limit_at(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
    at: i64,
) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(
            engine,
            customer,
            customer_len,
            feature,
            feature_len,
            0,
            |e, c, f| limit_number(e.check_at(c, f, at).limit()),
        )
    }
}

/// Whether `customer` may use `requested` more of `feature` on top of `usage` now (SPEC 2.7): a flag
/// allows when enabled; a limit when it is unlimited or `usage + requested <= limit` (a sum that
/// overflows never fits). Pass `requested` = 1 for the usual "one more?" question.
///
/// Unknown features answer false; unknown customers are judged by the feature's default. Bytes that
/// are not valid UTF-8 never match. Misuse (as for `entitle_engine_enabled`) answers false.
/// The hot path: no lock, no allocation.
///
/// # Safety
/// As for `entitle_engine_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_allows(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
    usage: u64,
    requested: u64,
) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(
            engine,
            customer,
            customer_len,
            feature,
            feature_len,
            false,
            |e, c, f| e.allows(c, f, usage, requested),
        )
    }
}

/// Like `entitle_engine_allows`, evaluated at unix time `at` (seconds) instead of now.
///
/// # Safety
/// As for `entitle_engine_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_allows_at(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
    usage: u64,
    requested: u64,
    at: i64,
) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(
            engine,
            customer,
            customer_len,
            feature,
            feature_len,
            false,
            |e, c, f| e.check_at(c, f, at).allows(usage, requested),
        )
    }
}

/// Checks the arguments of `entitle_engine_check*`, evaluates with `eval`, and writes the decision.
///
/// # Safety
/// As for `entitle_engine_check`.
#[inline(always)]
unsafe fn check_into(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
    out: *mut entitle_decision,
    eval: impl FnOnce(&Engine, &[u8], &[u8]) -> Decision,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and readable strings.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let c = unsafe { arg_bytes(customer, customer_len, "customer") }?;
        // SAFETY: as above.
        let f = unsafe { arg_bytes(feature, feature_len, "feature") }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let d = eval(engine, c, f);
        // Every key in a loaded snapshot is valid UTF-8 (loading checks it), so bytes that matched
        // one are valid too: only a key that was not found needs checking, which keeps the check
        // off the common path.
        match d.reason {
            Reason::FeatureNotFound => {
                utf8(f, "feature")?;
                utf8(c, "customer")?;
            }
            Reason::CustomerNotFound => {
                utf8(c, "customer")?;
            }
            _ => {}
        }
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { out.write(d.into()) };
        Ok(())
    })
}

/// Evaluates `feature` for `customer` now and writes the whole decision (value, unlimited, enabled,
/// feature type, reason, snapshot version) into the caller's `*out`.
///
/// Unknown customers and features are answers, not errors: they come back as `ENTITLE_RESULT_OK`
/// with reason `ENTITLE_REASON_CUSTOMER_NOT_FOUND` / `ENTITLE_REASON_FEATURE_NOT_FOUND`. The empty
/// string is a valid (never found) key. The hot path: no lock, no allocation on success.
///
/// # Errors
/// `NULL_PARAMETER` (`engine` or `out` NULL, or a string NULL with a non-zero length),
/// `INVALID_PARAMETER` (a length above `PTRDIFF_MAX`), `INVALID_UTF8` (the customer or feature is
/// not valid UTF-8), `PANIC`. On error `*out` is untouched.
///
/// # Safety
/// `engine` must be NULL or a live engine. `customer` / `feature` must be valid for reading
/// `customer_len` / `feature_len` bytes during the call (NULL with a length of 0 is the empty
/// string). `out` must be valid for writing an `entitle_decision`; the caller owns it. Safe to call
/// concurrently from any number of threads.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_check(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
    out: *mut entitle_decision,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe {
        check_into(
            engine,
            customer,
            customer_len,
            feature,
            feature_len,
            out,
            |e, c, f| e.check(c, f),
        )
    }
}

/// Like `entitle_engine_check`, evaluated at unix time `at` (seconds) instead of now.
///
/// # Errors
/// As for `entitle_engine_check`.
///
/// # Safety
/// As for `entitle_engine_check`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_check_at(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    feature: *const u8,
    feature_len: usize,
    at: i64,
    out: *mut entitle_decision,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe {
        check_into(
            engine,
            customer,
            customer_len,
            feature,
            feature_len,
            out,
            |e, c, f| e.check_at(c, f, at),
        )
    }
}

/// The engine's current content version (of the last snapshot loaded or delta applied); 0 for a
/// NULL engine or a catalog-built one.
///
/// # Safety
/// `engine` must be NULL or a live engine. Safe to call concurrently from any number of threads.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_version(engine: *const entitle_engine) -> u64 {
    guard_value(0, || {
        // SAFETY: the caller guarantees a live engine or NULL.
        unsafe { engine_ref(engine) }.map_or(0, Engine::version)
    })
}

/// Replaces the engine's whole content with the snapshot in `bytes` (copied; the caller may free
/// them when the call returns).
///
/// Lookups running meanwhile finish on the old content; later ones see the new. On failure the
/// current content is kept. On an engine that syncs from an edge, the sync thread may replace this
/// content again at its next poll.
///
/// # Errors
/// `NULL_PARAMETER`, `INVALID_PARAMETER`, `BAD_MAGIC`, `UNSUPPORTED_VERSION`, `CORRUPT`,
/// `TOO_LARGE`, `PANIC`.
///
/// # Safety
/// `engine` must be a live engine; `bytes` must be valid for reading `len` bytes during the call.
/// Safe to call concurrently with lookups and other updates from any thread (updates serialize).
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_replace_snapshot(
    engine: *mut entitle_engine,
    bytes: *const u8,
    len: usize,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and readable bytes.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let bytes = unsafe { arg_bytes(bytes, len, "bytes") }?;
        engine.replace(Snapshot::from_bytes(bytes.to_vec()).map_err(Error::InvalidSnapshot)?);
        Ok(())
    })
}

/// Replaces the engine's whole content with the snapshot or catalog JSON in the file at `path`
/// (told apart by content).
///
/// Lookups running meanwhile finish on the old content; later ones see the new. On failure the
/// current content is kept.
///
/// # Errors
/// `NULL_PARAMETER`, `INVALID_PARAMETER` (a NUL byte in the path), `IO`, `INVALID_CATALOG`,
/// `BAD_MAGIC`, `UNSUPPORTED_VERSION`, `CORRUPT`, `TOO_LARGE`, `PANIC`.
///
/// # Safety
/// `engine` must be a live engine; `path` must be valid for reading `path_len` bytes (the path's
/// bytes; on Unix they need not be UTF-8) during the call. Safe to call concurrently with lookups and other updates from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_replace_file(
    engine: *mut entitle_engine,
    path: *const u8,
    path_len: usize,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and a readable path.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let path = unsafe { arg_path(path, path_len, "path") }?;
        engine.replace(load_source(read_file(&path)?)?);
        Ok(())
    })
}

/// Applies delta bytes (as written by `entitle diff`) to the engine's current content.
///
/// The cost follows the size of the delta, not of the snapshot. On success, if `out_version` is not
/// NULL, it receives the new content version. On failure the current content is kept.
///
/// # Errors
/// `NULL_PARAMETER`, `INVALID_PARAMETER`, `BAD_MAGIC`, `UNSUPPORTED_VERSION`, `CORRUPT`,
/// `TOO_LARGE`, `WRONG_BASE` (the delta was made for another base), `FEATURE_MISMATCH`, `PANIC`.
///
/// # Safety
/// `engine` must be a live engine; `bytes` must be valid for reading `len` bytes during the call
/// (copied; the caller keeps them); `out_version` must be NULL or valid for writing a `uint64_t`.
/// Safe to call concurrently with lookups and other updates from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_apply_delta(
    engine: *mut entitle_engine,
    bytes: *const u8,
    len: usize,
    out_version: *mut u64,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and readable bytes.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let bytes = unsafe { arg_bytes(bytes, len, "bytes") }?;
        let version = engine.apply_delta(bytes.to_vec())?;
        if !out_version.is_null() {
            // SAFETY: non-NULL; the caller guarantees it is writable.
            unsafe { out_version.write(version) };
        }
        Ok(())
    })
}

// The handle is shared across threads by C callers: the engine must allow it.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<entitle_engine>();
};
