//! Feature handles and batched lookups: a feature key resolved once into a plain value, lookups
//! through it, and calls that answer many customers or many features at once.

use entitle_core::{Decision, Engine, Error, FeatureHandle, PackedIds, Reason};

use crate::engine::{engine_arg, engine_ref, entitle_decision, entitle_engine, limit_number};
use crate::error::{entitle_result, guard, guard_value, Failure};
use crate::input::{arg_bytes, arg_str, bytes, utf8};

/// A feature key resolved once by `entitle_engine_feature`: pass it to the `entitle_engine_feature_*`
/// lookups and the batch calls instead of the key, which saves hashing and finding the key on every
/// call.
///
/// A plain value: copy it, store it in a global, share it between threads; there is nothing to
/// free. Its fields are opaque numbers, not to be set by hand. It stays correct across every
/// snapshot swap and delta: when the engine's feature list is the one it was resolved against, a
/// lookup uses the stored index; when a later snapshot added, removed, renamed or reordered
/// features, the lookup finds the key again (as costly as a lookup by key) — a feature that no
/// longer exists answers `ENTITLE_REASON_FEATURE_NOT_FOUND`, never another feature's value. Resolve
/// again after such a swap to get the direct path back. A zero-initialized `entitle_feature` answers
/// `FEATURE_NOT_FOUND` everywhere.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct entitle_feature {
    /// Identity of the feature list the handle was resolved against (opaque).
    pub table: u64,
    /// The feature's position in that list (opaque).
    pub index: u32,
    /// The number of the key in the process's table of resolved keys (opaque; never freed).
    pub key: u32,
}

impl From<FeatureHandle> for entitle_feature {
    #[inline(always)]
    fn from(h: FeatureHandle) -> entitle_feature {
        let (table, index, key) = h.to_parts();
        entitle_feature { table, index, key }
    }
}

impl From<entitle_feature> for FeatureHandle {
    #[inline(always)]
    fn from(f: entitle_feature) -> FeatureHandle {
        FeatureHandle::from_parts(f.table, f.index, f.key)
    }
}

/// Resolves a feature key into an `entitle_feature` for later lookups.
///
/// A key that is not in the current snapshot still gives a handle: it answers
/// `ENTITLE_REASON_FEATURE_NOT_FOUND` until a snapshot has the feature. Resolve the features an
/// application knows at start-up; the process keeps each distinct key resolved (at most 65,535).
///
/// # Errors
/// `NULL_PARAMETER` (`engine` or `out` NULL, or `key` NULL with a non-zero length),
/// `INVALID_PARAMETER` (a length above `PTRDIFF_MAX`, or 65,535 distinct keys already resolved),
/// `INVALID_UTF8`, `PANIC`. On error `*out` is untouched.
///
/// # Safety
/// `engine` must be NULL or a live engine; `key` valid for reading `key_len` bytes during the call;
/// `out` valid for writing an `entitle_feature`. Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature(
    engine: *const entitle_engine,
    key: *const u8,
    key_len: usize,
    out: *mut entitle_feature,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and a readable key.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let key = unsafe { arg_str(key, key_len, "key") }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let handle = engine.feature(key).map_err(Error::from)?;
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { out.write(handle.into()) };
        Ok(())
    })
}

/// Runs `eval` on the engine and customer of a handle lookup that answers a plain value.
///
/// # Safety
/// `engine` must be NULL or a live engine; `customer` readable for `customer_len` bytes.
#[inline(always)]
unsafe fn lookup<T>(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    misuse: T,
    eval: impl FnOnce(&Engine, &[u8]) -> T,
) -> T
where
    T: Copy,
{
    guard_value(misuse, || {
        // SAFETY: the caller guarantees a live engine (or NULL) and a readable customer id.
        let args = unsafe { (engine_ref(engine), bytes(customer, customer_len)) };
        match args {
            (Some(e), Some(c)) => eval(e, c),
            _ => misuse,
        }
    })
}

/// Like `entitle_engine_enabled`, for the feature of a handle: whether `customer` may use it now.
///
/// The hot path: no lock, no allocation, no hashing of the feature key. Misuse (`engine` NULL,
/// `customer` NULL with a non-zero length) answers false.
///
/// # Safety
/// `engine` must be NULL or a live engine; `customer` valid for reading `customer_len` bytes during
/// the call. Safe to call concurrently from any number of threads.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature_enabled(
    engine: *const entitle_engine,
    feature: entitle_feature,
    customer: *const u8,
    customer_len: usize,
) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(engine, customer, customer_len, false, |e, c| {
            e.check_feature(c, feature.into()).enabled()
        })
    }
}

/// Like `entitle_engine_feature_enabled`, at unix time `at` (seconds).
///
/// # Safety
/// As for `entitle_engine_feature_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature_enabled_at(
    engine: *const entitle_engine,
    feature: entitle_feature,
    customer: *const u8,
    customer_len: usize,
    at: i64,
) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(engine, customer, customer_len, false, |e, c| {
            e.check_feature_at(c, feature.into(), at).enabled()
        })
    }
}

/// Like `entitle_engine_limit`, for the feature of a handle: the limit now, `ENTITLE_UNLIMITED`, or
/// 0 for flags, features not found and misuse.
///
/// # Safety
/// As for `entitle_engine_feature_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature_limit(
    engine: *const entitle_engine,
    feature: entitle_feature,
    customer: *const u8,
    customer_len: usize,
) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(engine, customer, customer_len, 0, |e, c| {
            limit_number(e.check_feature(c, feature.into()).limit())
        })
    }
}

/// Like `entitle_engine_feature_limit`, at unix time `at` (seconds).
///
/// # Safety
/// As for `entitle_engine_feature_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature_limit_at(
    engine: *const entitle_engine,
    feature: entitle_feature,
    customer: *const u8,
    customer_len: usize,
    at: i64,
) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(engine, customer, customer_len, 0, |e, c| {
            limit_number(e.check_feature_at(c, feature.into(), at).limit())
        })
    }
}

/// Like `entitle_engine_allows`, for the feature of a handle: whether `customer` may use `requested`
/// more on top of `usage` now. Misuse answers false.
///
/// # Safety
/// As for `entitle_engine_feature_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature_allows(
    engine: *const entitle_engine,
    feature: entitle_feature,
    customer: *const u8,
    customer_len: usize,
    usage: u64,
    requested: u64,
) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(engine, customer, customer_len, false, |e, c| {
            e.check_feature(c, feature.into()).allows(usage, requested)
        })
    }
}

/// Like `entitle_engine_feature_allows`, at unix time `at` (seconds).
///
/// # Safety
/// As for `entitle_engine_feature_enabled`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature_allows_at(
    engine: *const entitle_engine,
    feature: entitle_feature,
    customer: *const u8,
    customer_len: usize,
    usage: u64,
    requested: u64,
    at: i64,
) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe {
        lookup(engine, customer, customer_len, false, |e, c| {
            e.check_feature_at(c, feature.into(), at)
                .allows(usage, requested)
        })
    }
}

/// The shared body of `entitle_engine_feature_check*`.
///
/// # Safety
/// As for `entitle_engine_feature_check`.
#[inline(always)]
unsafe fn feature_check_into(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    out: *mut entitle_decision,
    eval: impl FnOnce(&Engine, &[u8]) -> Decision,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and a readable customer id.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let c = unsafe { arg_bytes(customer, customer_len, "customer") }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let d = eval(engine, c);
        // Ids in a snapshot are valid UTF-8, so only an id that was not found needs checking.
        if d.reason == Reason::CustomerNotFound {
            utf8(c, "customer")?;
        }
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { out.write(d.into()) };
        Ok(())
    })
}

/// Like `entitle_engine_check`, for the feature of a handle: evaluates it for `customer` now and
/// writes the whole decision into `*out`. A handle whose feature is not in the current snapshot
/// answers `ENTITLE_RESULT_OK` with reason `ENTITLE_REASON_FEATURE_NOT_FOUND`.
///
/// # Errors
/// `NULL_PARAMETER` (`engine` or `out` NULL, `customer` NULL with a non-zero length),
/// `INVALID_PARAMETER`, `INVALID_UTF8` (the customer id), `PANIC`. On error `*out` is untouched.
///
/// # Safety
/// `engine` must be NULL or a live engine; `customer` valid for reading `customer_len` bytes during
/// the call; `out` valid for writing an `entitle_decision`. Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature_check(
    engine: *const entitle_engine,
    feature: entitle_feature,
    customer: *const u8,
    customer_len: usize,
    out: *mut entitle_decision,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe {
        feature_check_into(engine, customer, customer_len, out, |e, c| {
            e.check_feature(c, feature.into())
        })
    }
}

/// Like `entitle_engine_feature_check`, at unix time `at` (seconds).
///
/// # Errors
/// As for `entitle_engine_feature_check`.
///
/// # Safety
/// As for `entitle_engine_feature_check`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_feature_check_at(
    engine: *const entitle_engine,
    feature: entitle_feature,
    customer: *const u8,
    customer_len: usize,
    at: i64,
    out: *mut entitle_decision,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe {
        feature_check_into(engine, customer, customer_len, out, |e, c| {
            e.check_feature_at(c, feature.into(), at)
        })
    }
}

/// A caller's array of `count` elements as a slice; NULL is allowed only when `count` is 0.
///
/// # Safety
/// Unless NULL, `ptr` must be valid for reading `count` elements during `'a`.
unsafe fn array<'a, T>(
    ptr: *const T,
    count: usize,
    what: &'static str,
) -> Result<&'a [T], Failure> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::new(
            entitle_result::NullParameter,
            format!("{what} is NULL with a count of {count}"),
        ));
    }
    if count > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Failure::new(
            entitle_result::InvalidParameter,
            format!("{what}: count {count} is too large"),
        ));
    }
    // SAFETY: non-NULL, the size fits `isize`, and the caller guarantees `count` readable elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// Checks an output array of `count` decisions.
fn out_array(out: *mut entitle_decision, count: usize) -> Result<(), Failure> {
    if count > 0 && out.is_null() {
        return Err(Failure::new(
            entitle_result::NullParameter,
            format!("out is NULL with a count of {count}"),
        ));
    }
    if count > isize::MAX as usize / std::mem::size_of::<entitle_decision>() {
        return Err(Failure::new(
            entitle_result::InvalidParameter,
            format!("out: count {count} is too large"),
        ));
    }
    Ok(())
}

/// The shared body of `entitle_engine_check_customers*`.
///
/// # Safety
/// As for `entitle_engine_check_customers`.
#[allow(clippy::too_many_arguments)]
unsafe fn check_customers(
    engine: *const entitle_engine,
    feature: entitle_feature,
    ids: *const u8,
    ids_len: usize,
    ends: *const usize,
    count: usize,
    at: Option<i64>,
    out: *mut entitle_decision,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and readable arrays.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let ids = unsafe { arg_bytes(ids, ids_len, "ids") }?;
        // SAFETY: as above.
        let ends = unsafe { array(ends, count, "ends") }?;
        out_array(out, count)?;
        let packed = PackedIds::new(ids, ends).ok_or_else(|| {
            Failure::new(
                entitle_result::InvalidParameter,
                "ends: the ends must never decrease and must not pass ids_len",
            )
        })?;
        engine.check_customers_at(feature.into(), &packed, at, |i, d| {
            // SAFETY: i < count, and the caller guarantees `count` writable decisions at `out`.
            unsafe { out.add(i).write(d.into()) }
        });
        Ok(())
    })
}

/// Decides one feature for many customers now, in one call: `out[i]` receives the decision for
/// customer `i`. The customers' memory loads are issued in groups before they are used, so that
/// their cache misses overlap: for customers spread over a large snapshot this costs a fraction
/// of as many single calls. Every decision comes from the same content version.
///
/// The ids are packed end to end in `ids` (`ids_len` bytes): customer `i` is the bytes from
/// `ends[i - 1]` (0 for the first) to `ends[i]`. Ids are compared as exact bytes; an id that is not
/// valid UTF-8 is never found (it gets the feature's default, reason `CUSTOMER_NOT_FOUND`).
///
/// # Errors
/// `NULL_PARAMETER` (`engine` NULL, or `ids`, `ends` or `out` NULL while their count is not 0),
/// `INVALID_PARAMETER` (`ends` decrease or pass `ids_len`, a size above `PTRDIFF_MAX`), `PANIC`.
/// On error nothing is written to `out`.
///
/// # Safety
/// `engine` must be NULL or a live engine; `ids` valid for reading `ids_len` bytes, `ends` for
/// reading `count` `size_t`s and `out` for writing `count` `entitle_decision`s, during the call; the
/// caller owns all three. Safe to call concurrently from any number of threads.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_check_customers(
    engine: *const entitle_engine,
    feature: entitle_feature,
    ids: *const u8,
    ids_len: usize,
    ends: *const usize,
    count: usize,
    out: *mut entitle_decision,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe { check_customers(engine, feature, ids, ids_len, ends, count, None, out) }
}

/// Like `entitle_engine_check_customers`, at unix time `at` (seconds).
///
/// # Errors
/// As for `entitle_engine_check_customers`.
///
/// # Safety
/// As for `entitle_engine_check_customers`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_check_customers_at(
    engine: *const entitle_engine,
    feature: entitle_feature,
    ids: *const u8,
    ids_len: usize,
    ends: *const usize,
    count: usize,
    at: i64,
    out: *mut entitle_decision,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe { check_customers(engine, feature, ids, ids_len, ends, count, Some(at), out) }
}

/// The shared body of `entitle_engine_check_features*`.
///
/// # Safety
/// As for `entitle_engine_check_features`.
unsafe fn check_features(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    features: *const entitle_feature,
    count: usize,
    at: Option<i64>,
    out: *mut entitle_decision,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and readable arrays.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let c = unsafe { arg_bytes(customer, customer_len, "customer") }?;
        utf8(c, "customer")?;
        // SAFETY: as above.
        let features = unsafe { array(features, count, "features") }?;
        out_array(out, count)?;
        // `entitle_feature` and `FeatureHandle` differ in type, not in size: convert in chunks on
        // the stack to keep the call free of allocation.
        const CHUNK: usize = 32;
        let mut handles = [FeatureHandle::from_parts(0, 0, 0); CHUNK];
        let view = engine.store().load();
        for (k, chunk) in features.chunks(CHUNK).enumerate() {
            for (h, f) in handles.iter_mut().zip(chunk) {
                *h = (*f).into();
            }
            view.check_features_at(c, &handles[..chunk.len()], at, |i, d| {
                // SAFETY: k * CHUNK + i < count, and the caller guarantees `count` writable
                // decisions at `out`.
                unsafe { out.add(k * CHUNK + i).write(d.into()) }
            });
        }
        Ok(())
    })
}

/// Decides many features for one customer now, in one call: `out[i]` receives the decision for
/// `features[i]`. The customer is found once. Every decision comes from the same content version.
///
/// # Errors
/// `NULL_PARAMETER` (`engine` NULL, `customer` NULL with a non-zero length, `features` or `out`
/// NULL while `count` is not 0), `INVALID_PARAMETER`, `INVALID_UTF8` (the customer id), `PANIC`.
/// On error nothing is written to `out`.
///
/// # Safety
/// `engine` must be NULL or a live engine; `customer` valid for reading `customer_len` bytes,
/// `features` for reading `count` handles and `out` for writing `count` `entitle_decision`s during
/// the call; the caller owns them. Safe to call concurrently from any number of threads.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_check_features(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    features: *const entitle_feature,
    count: usize,
    out: *mut entitle_decision,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe { check_features(engine, customer, customer_len, features, count, None, out) }
}

/// Like `entitle_engine_check_features`, at unix time `at` (seconds).
///
/// # Errors
/// As for `entitle_engine_check_features`.
///
/// # Safety
/// As for `entitle_engine_check_features`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_check_features_at(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    features: *const entitle_feature,
    count: usize,
    at: i64,
    out: *mut entitle_decision,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe {
        check_features(
            engine,
            customer,
            customer_len,
            features,
            count,
            Some(at),
            out,
        )
    }
}
