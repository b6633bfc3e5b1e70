//! The C ABI of entitle: `libentitle.so` / `libentitle.a` and `include/entitle.h`.
//!
//! Every language package (Python, Node, Go, Ruby) reaches the engine through these functions, so
//! their shape is chosen for speed and safety from any language:
//!
//! - One prefix: every exported symbol, type and constant starts with `entitle_` / `ENTITLE_`.
//!   Functions are `entitle_<object>_<verb>`, the object pointer first.
//! - The engine is a typed opaque handle, [`entitle_engine`]. Creators return it through an
//!   `entitle_engine **out` and an [`entitle_result`]; out-parameters are written only on success;
//!   [`entitle_engine_free`] releases it and ignores NULL.
//! - Strings go in as `(const uint8_t *ptr, size_t len)`: UTF-8, not NUL-terminated, NUL allowed with
//!   a length of 0 (the empty string).
//! - The hot path ([`entitle_engine_enabled`], [`entitle_engine_limit`], [`entitle_engine_allows`],
//!   [`entitle_engine_check`] and their `_at` variants) crosses once per check, takes no lock,
//!   allocates nothing and touches no JSON.
//! - A feature key can be resolved once into an [`entitle_feature`] (a plain value, nothing to
//!   free) with [`entitle_engine_feature`]; the `entitle_engine_feature_*` lookups take it instead of
//!   the key, and [`entitle_engine_check_customers`] / [`entitle_engine_check_features`] answer many
//!   customers (or many features) in one call, into caller-owned arrays.
//! - Every export runs inside a panic boundary: a panic becomes [`entitle_result::Panic`] (or the
//!   fail-closed answer for the calls that return a plain value), never an unwind into C.
//! - A failing call leaves a detailed message for the calling thread, read with
//!   [`entitle_last_error_message`], so a wrapper can raise a precise exception.
//!
//! `docs/ffi.md` describes the conventions, ownership and thread-safety rules, with a C example.

#![allow(non_camel_case_types)]

mod engine;
mod error;
mod events;
mod handle;
mod info;
mod input;
mod list;
mod sync;

pub use engine::*;
pub use error::*;
pub use events::*;
pub use handle::*;
pub use info::*;
pub use list::*;
pub use sync::*;
