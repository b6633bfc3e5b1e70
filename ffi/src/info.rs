//! Library and format versions, and names for the enums' values.

use std::ffi::c_char;

use entitle_core::snapshot::format::{DELTA_FORMAT_VERSION, SNAPSHOT_FORMAT_VERSION};

use crate::error::guard_value;

/// The library's version, e.g. `"0.1.0"`.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library's version as a NUL-terminated static string, e.g. `"0.1.0"`.
///
/// # Safety
/// Always safe, from any thread. The string is owned by the library and lives as long as the
/// process: do not free it.
#[no_mangle]
pub extern "C" fn entitle_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The snapshot format version this library reads and writes.
///
/// # Safety
/// Always safe, from any thread.
#[no_mangle]
pub extern "C" fn entitle_snapshot_format_version() -> u32 {
    SNAPSHOT_FORMAT_VERSION
}

/// The delta format version this library reads and writes.
///
/// # Safety
/// Always safe, from any thread.
#[no_mangle]
pub extern "C" fn entitle_delta_format_version() -> u32 {
    DELTA_FORMAT_VERSION
}

/// The conformance suite's name for a reason code (an `entitle_reason`): `"default"`,
/// `"subscription"`, `"override"`, `"customer_not_found"` or `"feature_not_found"`; `"unknown"` for
/// any other number.
///
/// # Safety
/// Always safe, from any thread. The string is NUL-terminated, static and owned by the library: do
/// not free it.
#[no_mangle]
pub extern "C" fn entitle_reason_name(reason: u32) -> *const c_char {
    let name: &'static str = guard_value("unknown\0", || match reason {
        0 => "default\0",
        1 => "subscription\0",
        2 => "override\0",
        3 => "customer_not_found\0",
        4 => "feature_not_found\0",
        _ => "unknown\0",
    });
    name.as_ptr().cast()
}

/// The conformance suite's name for a feature type (an `entitle_feature_type`): `"flag"`, `"limit"`,
/// or `"unknown"` for an unknown feature (the suite's `null`) and any other number.
///
/// # Safety
/// Always safe, from any thread. The string is NUL-terminated, static and owned by the library: do
/// not free it.
#[no_mangle]
pub extern "C" fn entitle_feature_type_name(feature_type: u32) -> *const c_char {
    let name: &'static str = guard_value("unknown\0", || match feature_type {
        1 => "flag\0",
        2 => "limit\0",
        _ => "unknown\0",
    });
    name.as_ptr().cast()
}
