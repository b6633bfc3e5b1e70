//! The manifest: the edge's table of contents, its JSON form and its checks, and where artifacts
//! are stored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::delta::Delta;
use crate::hash::xxh64;
use crate::snapshot::Snapshot;

use super::{io_err, EdgeError, MANIFEST_FILE, MANIFEST_FORMAT, MAX_MANIFEST_BYTES};

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
