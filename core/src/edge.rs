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

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::delta::{diff, Delta};
use crate::hash::xxh64;
use crate::snapshot::{BuildOptions, FormatError, Snapshot};
use crate::subscriptions::{self, MAX_SUBSCRIPTIONS_BYTES};
use crate::view::unix_now;

/// The edge directory's subdirectories of artifacts.
const ARTIFACT_DIRS: [&str; 3] = ["snapshots", "deltas", "subscriptions"];

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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EdgeError + '_ {
    move |source| EdgeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The full snapshot a manifest names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// Its content version.
    pub version: u64,
    /// Its content checksum (the XXH64 trailer of the file).
    pub checksum: u64,
    /// Its creation time (unix seconds), as stamped in its header.
    pub created_at: i64,
    /// The file's size in bytes.
    pub bytes: u64,
    /// The file's path relative to the edge root (see [`snapshot_path`]).
    pub path: String,
}

impl SnapshotEntry {
    /// The entry describing `snapshot`, stored at [`snapshot_path`].
    pub fn for_snapshot(snapshot: &Snapshot) -> SnapshotEntry {
        SnapshotEntry {
            version: snapshot.version(),
            checksum: snapshot.checksum(),
            created_at: snapshot.created_at(),
            bytes: snapshot.as_bytes().len() as u64,
            path: snapshot_path(snapshot.version(), snapshot.checksum()),
        }
    }
}

/// One delta of a manifest's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaEntry {
    /// The version it applies to.
    pub from: u64,
    /// The version it produces.
    pub to: u64,
    /// The checksum of the content it applies to.
    pub from_checksum: u64,
    /// The checksum of the content it produces.
    pub to_checksum: u64,
    /// The checksum of the delta file itself (its XXH64 trailer).
    pub checksum: u64,
    /// The file's size in bytes.
    pub bytes: u64,
    /// The file's path relative to the edge root (see [`delta_path`]).
    pub path: String,
}

impl DeltaEntry {
    /// The entry describing `delta`, stored at [`delta_path`].
    pub fn for_delta(delta: &Delta) -> DeltaEntry {
        let (from, from_checksum) = delta.base();
        let (to, to_checksum) = delta.target();
        let bytes = delta.as_bytes();
        DeltaEntry {
            from,
            to,
            from_checksum,
            to_checksum,
            checksum: trailer(bytes),
            bytes: bytes.len() as u64,
            path: delta_path(from, to, to_checksum),
        }
    }
}

/// The subscriptions document of the manifest's version (see [`crate::subscriptions`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionsEntry {
    /// The XXH64 (seed 0) of the whole file.
    pub checksum: u64,
    /// The file's size in bytes.
    pub bytes: u64,
    /// The file's path relative to the edge root (see [`subscriptions_path`]).
    pub path: String,
}

impl SubscriptionsEntry {
    /// The entry describing the document `bytes` of `version`, stored at [`subscriptions_path`].
    pub fn for_document(version: u64, bytes: &[u8]) -> SubscriptionsEntry {
        let checksum = xxh64(bytes, 0);
        SubscriptionsEntry {
            checksum,
            bytes: bytes.len() as u64,
            path: subscriptions_path(version, checksum),
        }
    }
}

/// The last 8 bytes of a snapshot or delta file: its XXH64 checksum.
pub fn trailer(bytes: &[u8]) -> u64 {
    match bytes.len().checked_sub(8) {
        Some(at) => {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..]);
            u64::from_le_bytes(w)
        }
        None => 0,
    }
}

/// Where a snapshot of `version` with `checksum` is stored, relative to the edge root.
pub fn snapshot_path(version: u64, checksum: u64) -> String {
    format!("snapshots/v{version:06}-{checksum:016x}.snap")
}

/// Where the delta from `from` to `to` (with target checksum `to_checksum`) is stored.
pub fn delta_path(from: u64, to: u64, to_checksum: u64) -> String {
    format!("deltas/v{from:06}-v{to:06}-{to_checksum:016x}.delta")
}

/// Where the subscriptions document of `version` with file checksum `checksum` is stored.
pub fn subscriptions_path(version: u64, checksum: u64) -> String {
    format!("subscriptions/v{version:06}-{checksum:016x}.json")
}

/// The edge's table of contents: what the current version is and where to get it.
///
/// # Examples
/// ```
/// use entitle_core::edge::Manifest;
/// let m = Manifest::from_json(br#"{"format": 1, "lineage": "l1", "version": 1, "created_at": 0,
///   "snapshot": {"version": 1, "checksum": "00000000000000ff", "created_at": 0, "bytes": 200,
///                "path": "snapshots/v000001-00000000000000ff.snap"},
///   "deltas": []}"#)?;
/// assert_eq!(m.snapshot.checksum, 0xff);
/// assert_eq!(Manifest::from_json(m.to_json().as_bytes())?, m);
/// # Ok::<(), entitle_core::edge::EdgeError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Identifies one publishing history: versions compare only within a lineage.
    pub lineage: String,
    /// The current content version.
    pub version: u64,
    /// When the current version was created (unix seconds).
    pub created_at: i64,
    /// The full snapshot of the current version.
    pub snapshot: SnapshotEntry,
    /// Recent deltas, oldest first; normally a contiguous chain ending at `version`.
    pub deltas: Vec<DeltaEntry>,
    /// The subscriptions document of `version`, when the publisher wrote one.
    pub subscriptions: Option<SubscriptionsEntry>,
}

#[derive(Serialize, Deserialize)]
struct RawManifest {
    format: u32,
    lineage: String,
    version: u64,
    created_at: i64,
    snapshot: RawSnapshot,
    #[serde(default)]
    deltas: Vec<RawDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subscriptions: Option<RawSubscriptions>,
}

#[derive(Serialize, Deserialize)]
struct RawSubscriptions {
    checksum: String,
    bytes: u64,
    path: String,
}

#[derive(Serialize, Deserialize)]
struct RawSnapshot {
    version: u64,
    checksum: String,
    created_at: i64,
    bytes: u64,
    path: String,
}

#[derive(Serialize, Deserialize)]
struct RawDelta {
    from: u64,
    to: u64,
    from_checksum: String,
    to_checksum: String,
    checksum: String,
    bytes: u64,
    path: String,
}

fn hex(v: u64) -> String {
    format!("{v:016x}")
}

fn parse_hex(s: &str, what: &str) -> Result<u64, EdgeError> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EdgeError::Manifest(format!(
            "{what}: expected 16 hex digits, got {s:?}"
        )));
    }
    u64::from_str_radix(s, 16).map_err(|e| EdgeError::Manifest(format!("{what}: {e}")))
}

/// Whether `path` is a safe relative artifact path: `/`-separated segments of ASCII letters, digits,
/// `.`, `_` and `-`, none of them empty, `.` or `..`. A manifest cannot point a client elsewhere.
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

fn is_valid_lineage(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 64
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

impl Manifest {
    /// Parses and validates manifest JSON. Unknown fields are ignored.
    ///
    /// # Errors
    /// [`EdgeError::Manifest`] naming what is wrong: bad JSON, another format version, a bad
    /// checksum or path, a snapshot that is not the current version.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, EdgeError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(EdgeError::Manifest(format!(
                "{} bytes is larger than the {MAX_MANIFEST_BYTES} allowed",
                bytes.len()
            )));
        }
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| EdgeError::Manifest(e.to_string()))?;
        if raw.format != MANIFEST_FORMAT {
            return Err(EdgeError::Manifest(format!(
                "format {} is not supported (this build reads format {MANIFEST_FORMAT})",
                raw.format
            )));
        }
        if !is_valid_lineage(&raw.lineage) {
            return Err(EdgeError::Manifest(format!(
                "lineage {:?} is not 1-64 letters, digits, '_' or '-'",
                raw.lineage
            )));
        }
        let s = raw.snapshot;
        if s.version != raw.version {
            return Err(EdgeError::Manifest(format!(
                "snapshot is version {}, the manifest's version is {}",
                s.version, raw.version
            )));
        }
        if !is_safe_path(&s.path) {
            return Err(EdgeError::Manifest(format!(
                "snapshot.path {:?} is not a safe relative path",
                s.path
            )));
        }
        let snapshot = SnapshotEntry {
            version: s.version,
            checksum: parse_hex(&s.checksum, "snapshot.checksum")?,
            created_at: s.created_at,
            bytes: s.bytes,
            path: s.path,
        };
        let mut deltas = Vec::with_capacity(raw.deltas.len());
        for (i, d) in raw.deltas.into_iter().enumerate() {
            if d.to <= d.from {
                return Err(EdgeError::Manifest(format!(
                    "deltas[{i}] goes from version {} to {}",
                    d.from, d.to
                )));
            }
            if !is_safe_path(&d.path) {
                return Err(EdgeError::Manifest(format!(
                    "deltas[{i}].path {:?} is not a safe relative path",
                    d.path
                )));
            }
            deltas.push(DeltaEntry {
                from: d.from,
                to: d.to,
                from_checksum: parse_hex(&d.from_checksum, &format!("deltas[{i}].from_checksum"))?,
                to_checksum: parse_hex(&d.to_checksum, &format!("deltas[{i}].to_checksum"))?,
                checksum: parse_hex(&d.checksum, &format!("deltas[{i}].checksum"))?,
                bytes: d.bytes,
                path: d.path,
            });
        }
        let subscriptions = match raw.subscriptions {
            Some(s) => {
                if !is_safe_path(&s.path) {
                    return Err(EdgeError::Manifest(format!(
                        "subscriptions.path {:?} is not a safe relative path",
                        s.path
                    )));
                }
                Some(SubscriptionsEntry {
                    checksum: parse_hex(&s.checksum, "subscriptions.checksum")?,
                    bytes: s.bytes,
                    path: s.path,
                })
            }
            None => None,
        };
        Ok(Manifest {
            lineage: raw.lineage,
            version: raw.version,
            created_at: raw.created_at,
            snapshot,
            deltas,
            subscriptions,
        })
    }

    /// The manifest as JSON (checksums as 16 hex digits, so that no JSON reader loses precision).
    pub fn to_json(&self) -> String {
        let raw = RawManifest {
            format: MANIFEST_FORMAT,
            lineage: self.lineage.clone(),
            version: self.version,
            created_at: self.created_at,
            snapshot: RawSnapshot {
                version: self.snapshot.version,
                checksum: hex(self.snapshot.checksum),
                created_at: self.snapshot.created_at,
                bytes: self.snapshot.bytes,
                path: self.snapshot.path.clone(),
            },
            deltas: self
                .deltas
                .iter()
                .map(|d| RawDelta {
                    from: d.from,
                    to: d.to,
                    from_checksum: hex(d.from_checksum),
                    to_checksum: hex(d.to_checksum),
                    checksum: hex(d.checksum),
                    bytes: d.bytes,
                    path: d.path.clone(),
                })
                .collect(),
            subscriptions: self.subscriptions.as_ref().map(|s| RawSubscriptions {
                checksum: hex(s.checksum),
                bytes: s.bytes,
                path: s.path.clone(),
            }),
        };
        let mut text = serde_json::to_string_pretty(&raw).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The deltas that take content at (`version`, `checksum`) to this manifest's version, in order;
    /// `None` when the chain does not reach from there to the current snapshot.
    pub fn chain_from(&self, version: u64, checksum: u64) -> Option<&[DeltaEntry]> {
        let start = self
            .deltas
            .iter()
            .position(|d| d.from == version && d.from_checksum == checksum)?;
        let chain = &self.deltas[start..];
        let linked = chain
            .windows(2)
            .all(|w| w[1].from == w[0].to && w[1].from_checksum == w[0].to_checksum);
        let last = chain.last()?;
        (linked && last.to == self.version && last.to_checksum == self.snapshot.checksum)
            .then_some(chain)
    }

    /// Every artifact path the manifest names.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.snapshot.path.as_str())
            .chain(self.deltas.iter().map(|d| &*d.path))
            .chain(self.subscriptions.iter().map(|s| &*s.path))
    }
}

/// Reads the manifest of the edge at `dir`; `None` when there is none yet.
///
/// # Errors
/// [`EdgeError::Io`] when it cannot be read, [`EdgeError::Manifest`] when it is invalid.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, EdgeError> {
    let path = dir.join(MANIFEST_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Manifest::from_json(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Options for [`publish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOptions {
    /// How many deltas the manifest's chain keeps (0: none; clients always fetch the snapshot). The
    /// chain is also trimmed so that the manifest fits [`MAX_MANIFEST_BYTES`].
    pub keep: usize,
    /// Start a new lineage at version 1 instead of continuing the edge's history.
    pub new_lineage: bool,
    /// The creation time to stamp (unix seconds); `None` for now, so that data age means something.
    pub created_at: Option<i64>,
    /// How long to wait while another publisher holds the edge directory (default
    /// [`DEFAULT_LOCK_TIMEOUT`]); then [`EdgeError::Locked`].
    pub lock_timeout: Duration,
}

impl Default for PublishOptions {
    fn default() -> PublishOptions {
        PublishOptions {
            keep: DEFAULT_KEEP,
            new_lineage: false,
            created_at: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// What [`publish`] wrote.
#[derive(Clone, Debug)]
pub struct Published {
    /// The new manifest.
    pub manifest: Manifest,
    /// The delta from the previous version, unless this started a lineage (or `keep` is 0).
    pub delta: Option<DeltaEntry>,
    /// Artifacts removed because neither the new manifest nor the previous one names them.
    pub removed: Vec<String>,
    /// Damage found on the edge and worked around (a missing artifact the previous manifest named:
    /// the chain then starts after it, and clients behind it fetch the snapshot).
    pub repaired: Vec<String>,
    /// What this version was published without, and why (a subscriptions document larger than
    /// [`MAX_SUBSCRIPTIONS_BYTES`]).
    pub omitted: Vec<String>,
}

/// A new lineage id: time and process based, unique enough that two publishers starting over never
/// pick the same one.
pub fn new_lineage_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut seed = Vec::with_capacity(32);
    seed.extend_from_slice(&nanos.to_le_bytes());
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    seed.extend_from_slice(&(&seed as *const Vec<u8> as usize).to_le_bytes());
    format!("{:x}-{:08x}", nanos / 1_000_000, xxh64(&seed, 0) as u32)
}

/// Publishes `catalog` as the edge's next version: validates nothing more (a [`Catalog`] is valid),
/// builds the snapshot, writes it and the delta from the current version, then switches the manifest
/// atomically and removes artifacts that no manifest still names.
///
/// On a fresh directory (or with [`PublishOptions::new_lineage`]) it starts a new lineage at version 1.
///
/// One publisher at a time: it holds an advisory lock on [`LOCK_FILE`] from reading the manifest to
/// the switch and the clean-up, waiting up to [`PublishOptions::lock_timeout`] for another
/// publisher (in this or another process) to finish. The manifest it writes names only files that
/// exist: when an artifact of the previous manifest is missing, the chain starts after it (and a
/// missing current snapshot means no delta this time); [`Published::repaired`] says so.
///
/// # Errors
/// [`EdgeError::Io`] when a file cannot be written (the manifest is then unchanged);
/// [`EdgeError::Manifest`] / [`EdgeError::Snapshot`] when the edge's current state is unreadable
/// (publish with `new_lineage` to start over); [`EdgeError::Locked`] when another publisher kept
/// the lock for longer than the timeout.
pub fn publish(
    dir: &Path,
    catalog: &Catalog,
    options: &PublishOptions,
) -> Result<Published, EdgeError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let _lock = EdgeLock::acquire(dir, options.lock_timeout)?;
    let previous = if options.new_lineage {
        None
    } else {
        read_manifest(dir)?
    };
    let mut repaired = Vec::new();
    let base = match &previous {
        Some(m) => match read_current_snapshot(dir, m) {
            Ok(s) => Some(s),
            Err(EdgeError::Io { path, source })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                repaired.push(format!(
                    "{}: missing; published without a delta from version {}",
                    path.display(),
                    m.version
                ));
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let version = previous.as_ref().map_or(1, |m| m.version + 1);
    let created_at = options.created_at.unwrap_or_else(unix_now);
    let snapshot = Snapshot::build(
        catalog,
        BuildOptions {
            version,
            created_at,
        },
    )
    .map_err(|source| EdgeError::Snapshot {
        path: dir.to_owned(),
        source,
    })?;

    let entry = SnapshotEntry::for_snapshot(&snapshot);
    write_artifact(dir, &entry.path, snapshot.as_bytes())?;
    let mut deltas = Vec::new();
    let mut new_delta = None;
    if let (Some(prev), Some(base)) = (&previous, &base) {
        if options.keep > 0 {
            let delta = diff(base, &snapshot).map_err(|source| EdgeError::Snapshot {
                path: dir.to_owned(),
                source,
            })?;
            let d = DeltaEntry::for_delta(&delta);
            write_artifact(dir, &d.path, delta.as_bytes())?;
            deltas = prev.deltas.clone();
            deltas.push(d.clone());
            let excess = deltas.len().saturating_sub(options.keep);
            deltas.drain(..excess);
            new_delta = Some(d);
        }
    }
    // The chain starts after the newest delta whose file is missing (all of them are named by the
    // previous manifest, whose files this publisher's lock protects: missing means lost earlier).
    if let Some(gap) = deltas.iter().rposition(|d| !dir.join(&d.path).is_file()) {
        for d in &deltas[..=gap] {
            if !dir.join(&d.path).is_file() {
                repaired.push(format!(
                    "{}: missing; the chain now starts at version {}",
                    d.path,
                    deltas.get(gap + 1).map_or(version, |n| n.from)
                ));
            }
        }
        deltas.drain(..=gap);
    }
    let mut omitted = Vec::new();
    let doc = subscriptions::document(catalog, version, entry.checksum);
    let subscriptions = if doc.len() as u64 <= MAX_SUBSCRIPTIONS_BYTES {
        let s = SubscriptionsEntry::for_document(version, &doc);
        write_artifact(dir, &s.path, &doc)?;
        Some(s)
    } else {
        omitted.push(format!(
            "the subscriptions document: {} bytes, more than the {MAX_SUBSCRIPTIONS_BYTES} allowed",
            doc.len()
        ));
        None
    };
    for sub in ARTIFACT_DIRS {
        sync_dir(&dir.join(sub));
    }
    let mut manifest = Manifest {
        lineage: previous
            .as_ref()
            .map_or_else(new_lineage_id, |m| m.lineage.clone()),
        version,
        created_at,
        snapshot: entry,
        deltas,
        subscriptions,
    };
    trim_to_fit(&mut manifest);
    write_manifest(dir, &manifest)?;
    let removed = collect_garbage(dir, &manifest, previous.as_ref());
    Ok(Published {
        manifest,
        delta: new_delta,
        removed,
        repaired,
        omitted,
    })
}

/// The edge directory's publish lock, released when dropped (or when the process dies).
struct EdgeLock {
    _file: File,
}

impl EdgeLock {
    /// Takes the exclusive lock on `dir/LOCK_FILE`, waiting up to `timeout` for its holder.
    fn acquire(dir: &Path, timeout: Duration) -> Result<EdgeLock, EdgeError> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let started = Instant::now();
        loop {
            match try_lock_exclusive(&file) {
                Ok(true) => return Ok(EdgeLock { _file: file }),
                Ok(false) => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(EdgeError::Locked { path, waited });
            }
            std::thread::sleep((timeout - waited).min(Duration::from_millis(20)));
        }
    }
}

/// Tries to take an exclusive `flock` on `file` without blocking: `Ok(false)` when another open
/// file description holds it. The lock goes with the descriptor: closing it (or dying) releases it.
#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open for this call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EWOULDBLOCK => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Publishing needs `flock(2)`; elsewhere it fails with `Unsupported` rather than run unguarded.
#[cfg(not(unix))]
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    let _ = file;
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "publishing needs flock(2): a Unix file system",
    ))
}

/// Drops the oldest deltas until the manifest's JSON fits [`MAX_MANIFEST_BYTES`], which every client
/// refuses to exceed (clients further behind fetch the snapshot).
fn trim_to_fit(manifest: &mut Manifest) {
    loop {
        let len = manifest.to_json().len();
        let n = manifest.deltas.len();
        if len <= MAX_MANIFEST_BYTES || n == 0 {
            return;
        }
        let per_entry = (len / (n + 1)).max(1);
        let drop = ((len - MAX_MANIFEST_BYTES) / per_entry + 1).min(n);
        manifest.deltas.drain(..drop);
    }
}

/// Loads and verifies the snapshot the manifest names as current.
fn read_current_snapshot(dir: &Path, manifest: &Manifest) -> Result<Snapshot, EdgeError> {
    let path = dir.join(&manifest.snapshot.path);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let snapshot = Snapshot::from_bytes(bytes).map_err(|source| EdgeError::Snapshot {
        path: path.clone(),
        source,
    })?;
    if (snapshot.version(), snapshot.checksum())
        != (manifest.snapshot.version, manifest.snapshot.checksum)
    {
        return Err(EdgeError::Snapshot {
            path,
            source: FormatError::Invalid(format!(
                "it is version {} (checksum {:016x}), the manifest names version {} (checksum {:016x})",
                snapshot.version(),
                snapshot.checksum(),
                manifest.snapshot.version,
                manifest.snapshot.checksum
            )),
        });
    }
    Ok(snapshot)
}

/// Writes `bytes` to `path` through a temporary file in the same directory: write, fsync, rename.
/// When `mtime` is given the file gets that modification time before the rename.
///
/// The temporary file's name is unique per call (process id and a process-wide counter) and it is
/// created exclusively, so concurrent writers of the same path, in one process or several, never
/// write into each other's file: each rename installs one whole file, and readers see a whole file.
pub fn write_file_atomic(
    path: &Path,
    bytes: &[u8],
    mtime: Option<SystemTime>,
) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    let mut created = false;
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        created = true;
        f.write_all(bytes)?;
        if let Some(t) = mtime {
            f.set_modified(t)?;
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs a directory so that renames in it are durable (best effort: some file systems refuse).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn write_artifact(dir: &Path, rel: &str, bytes: &[u8]) -> Result<(), EdgeError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    write_file_atomic(&path, bytes, None).map_err(io_err(&path))
}

/// Writes the manifest atomically. Its modification time is made strictly later, in whole seconds,
/// than the previous manifest's: static servers that derive the ETag from the mtime in seconds and
/// the size (nginx) would otherwise give two manifests written within one second the same ETag, and
/// a client revalidating with If-None-Match would miss the second one.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), EdgeError> {
    let path = dir.join(MANIFEST_FILE);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let previous = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mtime = UNIX_EPOCH + Duration::from_secs(now.max(previous + 1));
    write_file_atomic(&path, manifest.to_json().as_bytes(), Some(mtime)).map_err(io_err(&path))?;
    sync_dir(dir);
    Ok(())
}

/// Removes artifacts that neither `current` nor `previous` names (the previous manifest's files stay
/// one more publish, for clients that read it just before the switch), and temporary files of
/// interrupted publishes older than an hour. Best effort: what cannot be removed stays.
fn collect_garbage(dir: &Path, current: &Manifest, previous: Option<&Manifest>) -> Vec<String> {
    let keep: HashSet<&str> = current
        .paths()
        .chain(previous.into_iter().flat_map(Manifest::paths))
        .collect();
    let mut removed = Vec::new();
    for sub in ARTIFACT_DIRS {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{sub}/{name}");
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if name.starts_with('.') {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(3600));
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            let artifact = name.ends_with(".snap")
                || name.ends_with(".delta")
                || (sub == "subscriptions" && name.ends_with(".json"));
            if artifact
                && !keep.contains(rel.as_str())
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed.push(rel);
            }
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn catalog(n: usize) -> Catalog {
        let customers: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"id":"c{i}","overrides":{{"seats":{i}}}}}"#))
            .collect();
        Catalog::from_json(
            format!(
                r#"{{"features":[{{"key":"seats","type":"limit"}}],"customers":[{}]}}"#,
                customers.join(",")
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("entitle-edge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn publishes_a_chain_and_keeps_the_last_n() {
        let dir = temp("chain");
        let opts = PublishOptions {
            keep: 2,
            ..PublishOptions::default()
        };
        let first = publish(&dir, &catalog(1), &opts).unwrap();
        assert_eq!(first.manifest.version, 1);
        assert!(first.delta.is_none());
        for n in 2..=5 {
            let p = publish(&dir, &catalog(n), &opts).unwrap();
            assert_eq!(p.manifest.version, n as u64);
            assert_eq!(p.manifest.lineage, first.manifest.lineage);
        }
        let m = read_manifest(&dir).unwrap().unwrap();
        assert_eq!(m.version, 5);
        assert_eq!(
            m.deltas.iter().map(|d| (d.from, d.to)).collect::<Vec<_>>(),
            [(3, 4), (4, 5)]
        );
        assert!(m.chain_from(3, m.deltas[0].from_checksum).is_some());
        assert!(m.chain_from(2, m.deltas[0].from_checksum).is_none());
        // The files of manifests 4 and 5 remain; the rest was removed.
        let snaps = std::fs::read_dir(dir.join("snapshots")).unwrap().count();
        assert_eq!(snaps, 2);
        let deltas = std::fs::read_dir(dir.join("deltas")).unwrap().count();
        assert_eq!(deltas, 3);
        for p in m.paths() {
            assert!(dir.join(p).is_file(), "{p} is missing");
        }
        // Manifest mtimes strictly increase in whole seconds.
        let mtime = std::fs::metadata(dir.join(MANIFEST_FILE))
            .unwrap()
            .modified()
            .unwrap();
        assert!(mtime.duration_since(UNIX_EPOCH).unwrap().as_secs() >= 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_chain_that_would_overflow_the_manifest_is_trimmed() {
        let dir = temp("overflow");
        let first = publish(&dir, &catalog(2), &PublishOptions::default()).unwrap();
        // A history of deltas (files present) that fills the manifest to within one entry of the
        // cap: one more delta would overflow it.
        let mut m = first.manifest.clone();
        let c = m.snapshot.checksum;
        std::fs::create_dir_all(dir.join("deltas")).unwrap();
        let entry = |i: u64| DeltaEntry {
            from: i + 1,
            to: i + 2,
            from_checksum: c,
            to_checksum: c,
            checksum: 7,
            bytes: 100,
            path: delta_path(i + 1, i + 2, c),
        };
        let top = 99_999;
        m.version = top;
        m.snapshot.version = top;
        let base = m.to_json().len();
        m.deltas.push(entry(9_999));
        let per = m.to_json().len() - base;
        let mut n = ((MAX_MANIFEST_BYTES - base) / per).saturating_sub(10) as u64;
        m.deltas = (0..n).map(entry).collect();
        while m.to_json().len() + per <= MAX_MANIFEST_BYTES {
            m.deltas.push(entry(n));
            n += 1;
        }
        for d in &m.deltas {
            std::fs::write(dir.join(&d.path), b"x").unwrap();
        }
        assert!(m.to_json().len() <= MAX_MANIFEST_BYTES);
        // Its current snapshot: the real content, built as that version.
        let snap = std::fs::read(dir.join(&first.manifest.snapshot.path)).unwrap();
        let s = Snapshot::from_bytes(snap).unwrap();
        let bumped = Snapshot::build(
            &catalog(2),
            BuildOptions {
                version: top,
                created_at: s.created_at(),
            },
        )
        .unwrap();
        m.snapshot = SnapshotEntry::for_snapshot(&bumped);
        m.deltas.last_mut().unwrap().to_checksum = bumped.checksum();
        write_artifact(&dir, &m.snapshot.path, bumped.as_bytes()).unwrap();
        write_manifest(&dir, &m).unwrap();
        let opts = PublishOptions {
            keep: usize::MAX,
            ..PublishOptions::default()
        };
        let next = publish(&dir, &catalog(3), &opts).unwrap();
        assert!(next.manifest.to_json().len() <= MAX_MANIFEST_BYTES);
        assert!(next.manifest.deltas.len() > 1000);
        assert_eq!(next.manifest.deltas.last().unwrap().to, top + 1);
        // Readers accept it, and the next publish works.
        assert_eq!(read_manifest(&dir).unwrap().unwrap(), next.manifest);
        publish(&dir, &catalog(4), &opts).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_lineage_starts_over() {
        let dir = temp("lineage");
        let a = publish(&dir, &catalog(2), &PublishOptions::default()).unwrap();
        publish(&dir, &catalog(3), &PublishOptions::default()).unwrap();
        let b = publish(
            &dir,
            &catalog(3),
            &PublishOptions {
                new_lineage: true,
                ..PublishOptions::default()
            },
        )
        .unwrap();
        assert_eq!(b.manifest.version, 1);
        assert!(b.manifest.deltas.is_empty());
        assert_ne!(a.manifest.lineage, b.manifest.lineage);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_current_snapshot_stops_publishing() {
        let dir = temp("corrupt");
        let a = publish(&dir, &catalog(2), &PublishOptions::default()).unwrap();
        let path = dir.join(&a.manifest.snapshot.path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let before = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
        let err = publish(&dir, &catalog(3), &PublishOptions::default()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert_eq!(std::fs::read(dir.join(MANIFEST_FILE)).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifest_validation_names_the_problem() {
        let m = Manifest {
            lineage: "abc".into(),
            version: 2,
            created_at: 5,
            snapshot: SnapshotEntry {
                version: 2,
                checksum: 7,
                created_at: 5,
                bytes: 10,
                path: snapshot_path(2, 7),
            },
            deltas: vec![DeltaEntry {
                from: 1,
                to: 2,
                from_checksum: 3,
                to_checksum: 7,
                checksum: 9,
                bytes: 4,
                path: delta_path(1, 2, 7),
            }],
            subscriptions: Some(SubscriptionsEntry {
                checksum: 0x11,
                bytes: 40,
                path: subscriptions_path(2, 0x11),
            }),
        };
        let json = m.to_json();
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
        for (from, to, what) in [
            (
                "snapshots/v000002",
                "../../etc/passwd",
                "safe relative path",
            ),
            ("\"format\": 1", "\"format\": 2", "format 2"),
            ("\"lineage\": \"abc\"", "\"lineage\": \"\"", "lineage"),
            ("0000000000000007\"", "7\"", "16 hex digits"),
            (
                "subscriptions/v000002",
                "subscriptions/../v000002",
                "subscriptions.path",
            ),
            ("0000000000000011\"", "11\"", "subscriptions.checksum"),
        ] {
            let bad = json.replacen(from, to, 1);
            let err = Manifest::from_json(bad.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(what), "{err} should mention {what}");
        }
        assert!(!is_safe_path("a//b"));
        assert!(!is_safe_path("/abs"));
        assert!(!is_safe_path("a/%2e%2e"));
        assert!(is_safe_path(
            "deltas/v000001-v000002-0000000000000007.delta"
        ));
    }
}
