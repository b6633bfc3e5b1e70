//! Edge sync: a background thread that keeps an [`Engine`](crate::Engine)'s content equal to an edge's latest
//! version (cargo feature `sync`).
//!
//! Each round revalidates the edge's manifest (`If-None-Match`, optionally long-polled with
//! `?wait=SECONDS`), then applies the chain of deltas from the current version or, when there is no
//! usable chain, fetches the full snapshot. Every byte is verified against the manifest's checksums
//! before use, updates are swapped in atomically (readers never wait), and the new content is
//! persisted to the cache directory so that the next process starts warm. On any fault the engine
//! keeps serving its last good content, backs off exponentially with jitter and recovers by itself.
//! The protocol is in `docs/edge-protocol.md`.
//!
//! # Examples
//! ```no_run
//! use std::time::Duration;
//! use entitle_core::{Engine, SyncConfig, SyncState};
//! let engine = Engine::connect(SyncConfig {
//!     url: "https://edge.example.com/entitle".into(),
//!     token: Some("secret".into()),
//!     cache_dir: Some("/var/cache/entitle".into()),
//!     ..SyncConfig::default()
//! })?;
//! if !engine.wait_ready(Duration::from_secs(5)) {
//!     eprintln!("no entitlement data yet: {:?}", engine.status().last_error);
//! }
//! let allowed = engine.enabled("cus_A", "sso");
//! assert_ne!(engine.status().state, SyncState::Starting);
//! engine.close();
//! # Ok::<(), entitle_core::Error>(())
//! ```

mod cache;
mod client;
mod config;
mod error;
mod handle;
mod http;
mod plan;
mod worker;

use std::sync::{Mutex, MutexGuard};

pub use client::{EdgeClient, Outcome, Round};
pub use config::{Status, SyncConfig, SyncState, DEFAULT_MAX_ARTIFACT_BYTES};
pub use error::SyncError;
pub(crate) use handle::SyncHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update of the guarded state is a plain field write: a panic cannot leave it torn.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
