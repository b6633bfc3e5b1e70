//! The edge: a directory of static files from which engines pull snapshots and deltas.
//!
//! ```text
//! EDGE/
//!   manifest.json                                 small, revalidated (ETag / If-None-Match)
//!   snapshots/v000042-89abcdef01234567.snap       immutable, named by version + checksum
//!   deltas/v000041-v000042-89abcdef01234567.delta immutable, named by versions + target checksum
//!   subscriptions/v000042-0123456789abcdef.json   optional, immutable: the version's subscriptions
//! ```
//!
//! The [`Manifest`] names the lineage (changes when the publisher starts over), the current version,
//! its full snapshot and the chain of recent deltas, each with the checksums a client verifies before
//! use. [`publish`] writes the next version: artifacts first, then the manifest by write + fsync +
//! rename, so a reader sees the old manifest or the new one and every file either names exists.
//! The protocol is described in `docs/edge-protocol.md`; nothing here does HTTP.
//!
//! # Examples
//! ```
//! use entitle_core::edge::{publish, read_manifest, PublishOptions};
//! use entitle_core::Catalog;
//! let dir = std::env::temp_dir().join(format!("entitle-edge-doc-{}", std::process::id()));
//! let catalog = Catalog::from_json(br#"{"features":[{"key":"sso","type":"flag"}]}"#)?;
//! publish(&dir, &catalog, &PublishOptions::default())?;
//! let second = publish(&dir, &catalog, &PublishOptions::default())?;
//! assert_eq!(second.manifest.version, 2);
//! assert_eq!(second.manifest.deltas.len(), 1);
//! assert_eq!(read_manifest(&dir)?.map(|m| m.version), Some(2));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod manifest;
mod publish;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::snapshot::FormatError;

pub use manifest::{
    delta_path, is_safe_path, read_manifest, snapshot_path, subscriptions_path, trailer,
    DeltaEntry, Manifest, SnapshotEntry, SubscriptionsEntry,
};
pub use publish::{new_lineage_id, publish, PublishOptions, Published};

/// The manifest's file name inside the edge directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// How many deltas [`publish`] keeps in the manifest's chain by default.
pub const DEFAULT_KEEP: usize = 32;
/// The most deltas `entitle publish --keep` accepts: a chain of 1,000 entries (about 330 bytes
/// each) stays well inside [`MAX_MANIFEST_BYTES`]; [`publish`] trims any chain to fit regardless.
pub const MAX_KEEP: usize = 1000;
/// The largest manifest a client accepts.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// The lock file inside an edge directory: [`publish`] holds an exclusive advisory lock (`flock`)
/// on it from reading the manifest to the switch and the clean-up, so publishers take turns.
pub const LOCK_FILE: &str = ".publish.lock";
/// How long [`publish`] waits for another publisher by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest long-poll wait a client asks for and a server grants (seconds).
pub const MAX_LONG_POLL_SECONDS: u64 = 25;
/// The response header by which a server says it honors `?wait=SECONDS` on the manifest; its value
/// is the number of seconds it will hold a request at most.
pub const LONG_POLL_HEADER: &str = "entitle-long-poll";

/// Why an edge directory or manifest could not be read or written.
#[derive(Debug)]
pub enum EdgeError {
    /// A file could not be read or written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The manifest is not valid.
    Manifest(String),
    /// A snapshot on the edge is corrupt or not the one the manifest names.
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        source: FormatError,
    },
    /// Another publisher held the edge directory's lock for longer than
    /// [`PublishOptions::lock_timeout`]; nothing was written.
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long this publisher waited.
        waited: Duration,
    },
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            EdgeError::Manifest(msg) => write!(f, "invalid manifest: {msg}"),
            EdgeError::Snapshot { path, source } => write!(f, "{}: {source}", path.display()),
            EdgeError::Locked { path, waited } => write!(
                f,
                "another publish of this edge is in progress (it holds the lock on {}); gave up \
                 after waiting {:.1} s: one publisher at a time",
                path.display(),
                waited.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for EdgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EdgeError::Io { source, .. } => Some(source),
            EdgeError::Manifest(_) => None,
            EdgeError::Snapshot { source, .. } => Some(source),
            EdgeError::Locked { .. } => None,
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EdgeError + '_ {
    move |source| EdgeError::Io {
        path: path.to_owned(),
        source,
    }
}
