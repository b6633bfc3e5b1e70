//! One customer's entitlements as a caller-freed list.

use entitle_core::internal::unix_now;

use crate::engine::{engine_arg, entitle_decision, entitle_engine};
use crate::error::{entitle_result, guard, guard_value, Failure};
use crate::input::arg_str;

/// Every feature's decision for one customer, in the snapshot's feature order.
///
/// Opaque: created by `entitle_engine_entitlements` / `entitle_engine_entitlements_at`, read with
/// `entitle_entitlements_len` and `entitle_entitlements_get`, released with
/// `entitle_entitlements_free`. It is a copy: it does not change when the engine's content does, and
/// it does not keep the engine alive (it may outlive it). Immutable, so it may be read from several
/// threads at once.
pub struct entitle_entitlements {
    items: Box<[Item]>,
}

struct Item {
    /// The feature key followed by a NUL byte.
    key: Box<[u8]>,
    decision: entitle_decision,
}

/// One entry of an `entitle_entitlements` list, borrowed from it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct entitle_entitlement {
    /// The feature key: UTF-8, `key_len` bytes, followed by a NUL byte for convenience (a key may
    /// itself contain NUL: trust `key_len`). Owned by the list: valid until `entitle_entitlements_free`.
    pub key: *const u8,
    /// The key's length in bytes, without the trailing NUL.
    pub key_len: usize,
    /// The customer's decision for this feature.
    pub decision: entitle_decision,
}

/// Lists every feature's decision for `customer` at unix time `at` (seconds).
///
/// An unknown customer is not an error: the list then holds each feature's default with reason
/// `ENTITLE_REASON_CUSTOMER_NOT_FOUND`. On success `*out` receives a new list owned by the caller,
/// to be released with `entitle_entitlements_free`.
///
/// # Errors
/// `NULL_PARAMETER`, `INVALID_PARAMETER`, `INVALID_UTF8` (the customer), `PANIC`. On error `*out` is
/// untouched.
///
/// # Safety
/// `engine` must be a live engine; `customer` must be valid for reading `customer_len` bytes during
/// the call; `out` must be valid for writing a pointer. Safe to call concurrently from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_entitlements_at(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    at: i64,
    out: *mut *mut entitle_entitlements,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine (or NULL) and a readable customer id.
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let customer = unsafe { arg_str(customer, customer_len, "customer") }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let items = engine
            .entitlements_at(customer, at)
            .into_iter()
            .map(|(key, d)| {
                let mut key = key.into_bytes();
                key.push(0);
                Item {
                    key: key.into_boxed_slice(),
                    decision: d.into(),
                }
            })
            .collect();
        let list = Box::into_raw(Box::new(entitle_entitlements { items }));
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { out.write(list) };
        Ok(())
    })
}

/// Like `entitle_engine_entitlements_at`, evaluated now.
///
/// # Errors
/// As for `entitle_engine_entitlements_at`.
///
/// # Safety
/// As for `entitle_engine_entitlements_at`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_entitlements(
    engine: *const entitle_engine,
    customer: *const u8,
    customer_len: usize,
    out: *mut *mut entitle_entitlements,
) -> entitle_result {
    // SAFETY: forwarded to the caller.
    unsafe { entitle_engine_entitlements_at(engine, customer, customer_len, unix_now(), out) }
}

/// The number of entries in `list` (0 for NULL).
///
/// # Safety
/// `list` must be NULL or a live list. Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_entitlements_len(list: *const entitle_entitlements) -> usize {
    guard_value(0, || {
        // SAFETY: the caller guarantees a live list or NULL.
        unsafe { list.as_ref() }.map_or(0, |l| l.items.len())
    })
}

/// Reads entry `index` of `list` into `*out`. The entry's `key` points into the list and stays valid
/// until the list is freed.
///
/// # Errors
/// `NULL_PARAMETER` (`list` or `out` NULL), `OUT_OF_RANGE` (`index >= entitle_entitlements_len`),
/// `PANIC`. On error `*out` is untouched.
///
/// # Safety
/// `list` must be a live list; `out` must be valid for writing an `entitle_entitlement`. Safe from
/// any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_entitlements_get(
    list: *const entitle_entitlements,
    index: usize,
    out: *mut entitle_entitlement,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live list or NULL.
        let list = unsafe { list.as_ref() }.ok_or_else(|| Failure::null("list"))?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let item = list.items.get(index).ok_or_else(|| {
            Failure::new(
                entitle_result::OutOfRange,
                format!(
                    "index {index} is past the end of a list of {}",
                    list.items.len()
                ),
            )
        })?;
        let entry = entitle_entitlement {
            key: item.key.as_ptr(),
            key_len: item.key.len() - 1,
            decision: item.decision,
        };
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { out.write(entry) };
        Ok(())
    })
}

/// Releases a list (and the keys it lent out). NULL is a no-op.
///
/// # Safety
/// `list` must be NULL or a list from `entitle_engine_entitlements*` not freed yet; call it once,
/// after the last use of the list and of every key read from it.
#[no_mangle]
pub unsafe extern "C" fn entitle_entitlements_free(list: *mut entitle_entitlements) {
    guard_value((), || {
        if !list.is_null() {
            // SAFETY: the caller hands back a pointer from `Box::into_raw` exactly once.
            drop(unsafe { Box::from_raw(list) });
        }
    });
}
