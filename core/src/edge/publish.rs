//! Publishing: the next version's snapshot, delta and subscriptions document written to the edge
//! directory, then the manifest switched atomically, one publisher at a time, and old artifacts
//! removed.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::catalog::Catalog;
use crate::delta::diff;
use crate::fs::{sync_dir, try_lock_exclusive, write_file_atomic};
use crate::hash::xxh64;
use crate::snapshot::{BuildOptions, FormatError, Snapshot};
use crate::subscriptions::{self, MAX_SUBSCRIPTIONS_BYTES};
use crate::view::unix_now;

use super::manifest::{read_manifest, DeltaEntry, Manifest, SnapshotEntry, SubscriptionsEntry};
use super::{
    io_err, EdgeError, DEFAULT_KEEP, DEFAULT_LOCK_TIMEOUT, LOCK_FILE, MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
};

/// The edge directory's subdirectories of artifacts.
const ARTIFACT_DIRS: [&str; 3] = ["snapshots", "deltas", "subscriptions"];

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
    use std::path::PathBuf;

    use super::*;
    use crate::edge::delta_path;

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
}
