//! entitle-core: an embedded entitlement engine.
//!
//! The data flows one way: a JSON [`Catalog`] is validated and compiled into a compact binary
//! [`Snapshot`]; a [`Store`] holds the current [`View`] (a snapshot plus an overlay of applied
//! [`Delta`]s) behind an atomic pointer; lookups evaluate SPEC section 2 against it without locks or
//! allocation. See `docs/ARCHITECTURE.md` for the design and `docs/FORMAT.md` for the bytes.
//!
//! # Examples
//! ```
//! use entitle_core::{BuildOptions, Catalog, Reason, Snapshot, Store};
//! let catalog = Catalog::from_json(br#"{
//!   "features": [{"key": "sso", "type": "flag"}, {"key": "seats", "type": "limit", "default": 1, "per_unit": true}],
//!   "products": [{"id": "pro", "features": {"sso": true, "seats": 1}}],
//!   "customers": [{"id": "cus_A", "subscriptions": [
//!       {"id": "sub_1", "status": "active", "items": [{"product": "pro", "quantity": 5}]}]}]
//! }"#)?;
//! let store = Store::new(Snapshot::build(&catalog, BuildOptions { version: 1, created_at: 0 })?);
//! let view = store.load();
//! let seats = view.check_at("cus_A", "seats", 1_700_000_000);
//! assert_eq!(seats.limit(), Some(entitle_core::Limit::Finite(5)));
//! assert_eq!(seats.reason, Reason::Subscription);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Features an application knows at start-up are resolved once into a [`FeatureHandle`], which
//! skips finding the key on every lookup and stays correct across snapshot swaps; many customers
//! (or many features) are answered in one call whose cache misses overlap:
//!
//! ```
//! use entitle_core::Engine;
//! let engine = Engine::from_catalog_json(br#"{"features": [{"key": "sso", "type": "flag"}],
//!   "customers": [{"id": "cus_A", "overrides": {"sso": true}}]}"#)?;
//! let sso = engine.feature("sso")?;
//! assert!(engine.check_feature("cus_A", sso).enabled());
//! let answers = engine.check_customers(sso, &["cus_A", "cus_B", "cus_C"]);
//! assert_eq!(answers.iter().filter(|d| d.enabled()).count(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod catalog;
pub mod delta;
pub mod dump;
pub mod edge;
mod engine;
mod error;
pub mod events;
pub mod fs;
pub mod handle;
pub mod hash;
pub mod model;
pub mod snapshot;
pub mod store;
pub mod subscriptions;
#[cfg(feature = "sync")]
mod sync;
#[cfg(any(test, feature = "synth"))]
pub mod synth;
mod view;

pub use catalog::{
    Catalog, CatalogError, Customer, Feature, Item, Override, Product, Subscription,
};
pub use delta::{diff, ApplyError, Delta};
pub use dump::{dump, DumpError};
pub use engine::{load_source, Engine, MAX_INPUT_BYTES};
pub use error::{Error, ErrorKind};
pub use events::{Event, EventKind, WaitError, EVENT_RING_CAPACITY};
pub use handle::{CustomerIds, FeatureHandle, PackedIds, TooManyFeatureKeys, MAX_FEATURE_KEYS};
pub use model::{Decision, FeatureType, Limit, Reason, Value, MAX_LIMIT};
pub use snapshot::{BuildOptions, FeatureInfo, FormatError, Snapshot};
pub use store::Store;
#[cfg(feature = "sync")]
pub use sync::{Status, SyncConfig, SyncError, SyncState, DEFAULT_MAX_ARTIFACT_BYTES};
pub use view::View;

/// Not part of the API: helpers the workspace's own crates share (the CLI, the C ABI, examples,
/// benchmarks). They may change in any release; applications use [`Engine`] and the items above.
#[doc(hidden)]
pub mod internal {
    pub use crate::engine::read_file;
    #[cfg(feature = "sync")]
    pub use crate::sync::{EdgeClient, Outcome, Round};
    pub use crate::view::unix_now;
}
