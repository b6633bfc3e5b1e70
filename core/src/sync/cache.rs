//! The cache directory, so that the next process starts warm: `edge-<hash of the URL>.snap` (a plain
//! snapshot, readable by `entitle check`) and `edge-<hash>.json` (its lineage and when it was
//! written).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fs::{sync_dir, write_file_atomic};
use crate::hash::xxh64;
use crate::snapshot::{FormatError, Snapshot};
use crate::view::unix_now;

/// Why the cache could not be read or written. Syncing goes on either way; the status reports it.
#[derive(Debug)]
pub(super) enum CacheError {
    /// A cache file (or its directory) could not be read or written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The cached snapshot is not a valid snapshot.
    Corrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        source: FormatError,
    },
    /// The metadata could not be encoded.
    Encode(serde_json::Error),
    /// Folding the applied deltas into one snapshot to write failed.
    Fold(FormatError),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CacheError::Corrupt { path, source } => write!(f, "{}: {source}", path.display()),
            CacheError::Encode(e) => e.fmt(f),
            CacheError::Fold(e) => write!(f, "folding the content for the cache: {e}"),
        }
    }
}

impl std::error::Error for CacheError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CacheError::Io { source, .. } => Some(source),
            CacheError::Corrupt { source, .. } => Some(source),
            CacheError::Encode(e) => Some(e),
            CacheError::Fold(e) => Some(e),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The cache files of one edge.
pub(super) struct Cache {
    snapshot: PathBuf,
    meta: PathBuf,
    url: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheMeta {
    url: String,
    lineage: String,
    version: u64,
    checksum: String,
    written_at: i64,
}

/// What the cache holds.
pub(super) struct Cached {
    /// The snapshot.
    pub(super) snapshot: Snapshot,
    /// Its lineage, when the metadata file names this snapshot.
    pub(super) lineage: Option<String>,
    /// When it was confirmed by the edge and written (else the file's modification time).
    pub(super) written_at: SystemTime,
}

impl Cache {
    /// The cache files in `dir` for the edge at `url`.
    pub(super) fn new(dir: &Path, url: &str) -> Cache {
        let stem = format!("edge-{:016x}", xxh64(url.as_bytes(), 0));
        Cache {
            snapshot: dir.join(format!("{stem}.snap")),
            meta: dir.join(format!("{stem}.json")),
            url: url.to_owned(),
        }
    }

    /// The cached snapshot; `Ok(None)` when there is none.
    pub(super) fn load(&self) -> Result<Option<Cached>, CacheError> {
        let bytes = match std::fs::read(&self.snapshot) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&self.snapshot)(e)),
        };
        let snapshot = Snapshot::from_bytes(bytes).map_err(|source| CacheError::Corrupt {
            path: self.snapshot.clone(),
            source,
        })?;
        let modified = std::fs::metadata(&self.snapshot)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH);
        let meta: Option<CacheMeta> = std::fs::read(&self.meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (lineage, written_at) = match meta {
            Some(m)
                if m.version == snapshot.version()
                    && m.checksum == format!("{:016x}", snapshot.checksum()) =>
            {
                let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(m.written_at).unwrap_or(0));
                (Some(m.lineage), at)
            }
            _ => (None, modified),
        };
        Ok(Some(Cached {
            snapshot,
            lineage,
            written_at,
        }))
    }

    /// Writes `snapshot` (of `version` and `checksum`, in `lineage`) and its metadata, each file
    /// atomically, then makes the renames durable.
    pub(super) fn store(
        &self,
        snapshot: &[u8],
        version: u64,
        checksum: u64,
        lineage: &str,
    ) -> Result<(), CacheError> {
        if let Some(dir) = self.snapshot.parent() {
            std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        }
        write_file_atomic(&self.snapshot, snapshot, None).map_err(io_at(&self.snapshot))?;
        let meta = CacheMeta {
            url: self.url.clone(),
            lineage: lineage.to_owned(),
            version,
            checksum: format!("{checksum:016x}"),
            written_at: unix_now(),
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(CacheError::Encode)?;
        write_file_atomic(&self.meta, &text, None).map_err(io_at(&self.meta))?;
        if let Some(dir) = self.snapshot.parent() {
            sync_dir(dir);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{BuildOptions, Catalog};

    #[test]
    fn a_stored_snapshot_loads_with_its_lineage_and_corruption_is_named() {
        let dir = std::env::temp_dir().join(format!("entitle-cache-{}", std::process::id()));
        let cache = Cache::new(&dir.join("nested"), "http://127.0.0.1:1/edge");
        assert!(cache.load().unwrap().is_none());
        let catalog = Catalog::from_json(br#"{"features":[{"key":"a","type":"flag"}]}"#).unwrap();
        let options = BuildOptions {
            version: 3,
            created_at: 0,
        };
        let snapshot = Snapshot::build(&catalog, options).unwrap();
        let (version, checksum) = (snapshot.version(), snapshot.checksum());
        cache
            .store(snapshot.as_bytes(), version, checksum, "lin")
            .unwrap();
        let cached = cache.load().unwrap().unwrap();
        assert_eq!(
            (cached.snapshot.version(), cached.snapshot.checksum()),
            (version, checksum)
        );
        assert_eq!(cached.lineage.as_deref(), Some("lin"));
        // Metadata for other content is ignored: the lineage is then unknown.
        cache.store(snapshot.as_bytes(), version, 1, "lin").unwrap();
        assert_eq!(cache.load().unwrap().unwrap().lineage, None);
        std::fs::write(&cache.snapshot, b"not a snapshot").unwrap();
        let err = cache.load().err().unwrap();
        assert!(matches!(err, CacheError::Corrupt { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with(&cache.snapshot.display().to_string()));
        assert!(std::error::Error::source(&err).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
