//! The served manifest as last read from disk, shared with long-polls through a watch channel, and
//! the engine kept at the version that manifest names (by its deltas when they lead there).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use entitle_core::edge::{trailer, DeltaEntry, Manifest, MANIFEST_FILE, MAX_MANIFEST_BYTES};
use entitle_core::hash::xxh64;
use entitle_core::subscriptions::Subscriptions;
use entitle_core::{Engine, Snapshot};
use tokio::sync::watch;

use super::files::{self, Refusal};
use super::metrics::Metrics;
use super::state::{subscriptions_bound, verify_subscriptions, Served, StateSource};

/// How often the manifest is checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_millis(10);

/// The manifest being served.
#[derive(Debug, Default)]
pub struct Current {
    /// Its bytes, when it could be read (a symbolic link, a special file or more than 1 MiB cannot).
    pub body: Option<Bytes>,
    /// Its ETag: the content hash in quotes.
    pub etag: Option<String>,
    /// The parsed manifest, when valid.
    pub manifest: Option<Manifest>,
    /// Why there is no valid manifest.
    pub error: Option<String>,
}

/// (modified, length, inode, is a regular file) of the manifest when it was last read.
type Stamp = (SystemTime, u64, u64, bool);

/// Re-reads the manifest when its directory entry changed and publishes it when its content did.
pub struct Watcher {
    root: PathBuf,
    stamp: Mutex<Option<Stamp>>,
    tx: watch::Sender<Arc<Current>>,
    metrics: Arc<Metrics>,
}

fn stamp_of(path: &std::path::Path) -> Option<Stamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((
        m.modified().unwrap_or(UNIX_EPOCH),
        m.len(),
        ino,
        m.file_type().is_file(),
    ))
}

impl Watcher {
    /// A watcher of `root/manifest.json` (`root` canonical), read once now.
    pub fn new(root: PathBuf, metrics: Arc<Metrics>) -> Arc<Watcher> {
        let (tx, _) = watch::channel(Arc::new(Current::default()));
        let w = Arc::new(Watcher {
            root,
            stamp: Mutex::new(None),
            tx,
            metrics,
        });
        w.refresh();
        w
    }

    /// A receiver of every change of the manifest's content.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Current>> {
        self.tx.subscribe()
    }

    /// The manifest being served.
    pub fn current(&self) -> Arc<Current> {
        Arc::clone(&self.tx.borrow())
    }

    /// Checks the manifest's directory entry; re-reads it when that changed (cheap when not).
    pub fn refresh(&self) {
        let mut stamp = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp_of(&self.root.join(MANIFEST_FILE));
        if *stamp == now && now.is_some() {
            return;
        }
        let read = files::read(&self.root, MANIFEST_FILE, MAX_MANIFEST_BYTES as u64);
        if read == Err(Refusal::Unavailable) {
            // Out of descriptors or memory: keep serving the manifest held, and read this one at
            // the next check (the stamp stays as it was).
            return;
        }
        *stamp = now;
        let body = read.ok();
        let etag = body.as_deref().map(|b| format!("\"{:016x}\"", xxh64(b, 0)));
        if etag == self.tx.borrow().etag {
            return;
        }
        let (manifest, error) = match body.as_deref().map(Manifest::from_json) {
            Some(Ok(m)) => (Some(m), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (
                None,
                Some("no readable manifest.json (missing, a link, not a regular file, or larger than 1 MiB)".to_owned()),
            ),
        };
        let (version, created) = manifest
            .as_ref()
            .map_or((-1, -1), |m| (m.version as i64, m.created_at));
        self.metrics
            .manifest_version
            .store(version, Ordering::Relaxed);
        self.metrics
            .manifest_created_at
            .store(created, Ordering::Relaxed);
        self.tx.send_replace(Arc::new(Current {
            body: body.map(Bytes::from),
            etag,
            manifest,
            error,
        }));
    }

    /// Checks the manifest every [`WATCH_EVERY`] until the watcher is the last owner.
    pub async fn run(self: Arc<Watcher>) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh();
        }
    }

    /// Keeps `engine` and `source` at the version the manifest names: applies the manifest's
    /// deltas when they lead from the version held (and add up to less than the snapshot), and
    /// otherwise, or when a delta fails, loads the snapshot; in both cases the version's
    /// subscriptions document is read and verified first, and the two are swapped into `source`
    /// together. Every file is bounded by the manifest's size for it and by `max_bytes`.
    /// Failures are kept in `source` and retried at the next manifest change or every second.
    pub async fn feed(
        self: Arc<Watcher>,
        engine: Arc<Engine>,
        source: Arc<StateSource>,
        max_bytes: u64,
    ) {
        let mut rx = self.subscribe();
        loop {
            let current = Arc::clone(&rx.borrow_and_update());
            if let Some(m) = &current.manifest {
                let (root, m) = (self.root.clone(), m.clone());
                let (engine, target) = (Arc::clone(&engine), Arc::clone(&source));
                let loaded = tokio::task::spawn_blocking(move || {
                    load_version(&root, &m, &engine, &target, max_bytes)
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                source.set_error(loaded.err());
            }
            let failed = source.last_error().is_some();
            let retry = async {
                if failed {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                () = retry => {}
            }
        }
    }
}

/// Brings `engine` and `source` to the version `m` names (see [`Watcher::feed`]).
fn load_version(
    root: &Path,
    m: &Manifest,
    engine: &Engine,
    source: &StateSource,
    max_bytes: u64,
) -> Result<(), String> {
    if source.serves(m.version, m.snapshot.checksum) {
        return Ok(());
    }
    let subscriptions = match &m.subscriptions {
        Some(entry) => {
            let bytes = files::read(root, &entry.path, subscriptions_bound(m, max_bytes))
                .map_err(|e| format!("{}: {e:?}", entry.path))?;
            verify_subscriptions(&bytes, m)?
        }
        None => Subscriptions::none(m.version, m.snapshot.checksum),
    };
    let view = engine.view();
    if (view.version(), view.checksum()) != (m.version, m.snapshot.checksum) {
        let chain = m
            .chain_from(view.version(), view.checksum())
            .filter(|c| c.iter().map(|d| d.bytes).sum::<u64>() < m.snapshot.bytes);
        let via_deltas = chain.is_some_and(|chain| {
            apply_chain(root, chain, engine, max_bytes).is_ok()
                && (engine.view().version(), engine.view().checksum())
                    == (m.version, m.snapshot.checksum)
        });
        if via_deltas {
            source.deltas_applied.fetch_add(1, Ordering::Relaxed);
        } else {
            let entry = &m.snapshot;
            let bytes = files::read(root, &entry.path, entry.bytes.min(max_bytes))
                .map_err(|e| format!("{}: {e:?}", entry.path))?;
            let snap = Snapshot::from_bytes(bytes).map_err(|e| format!("{}: {e}", entry.path))?;
            if snap.version() != entry.version || snap.checksum() != entry.checksum {
                return Err(format!(
                    "{}: version {} checksum {:016x}, the manifest says {} {:016x}",
                    entry.path,
                    snap.version(),
                    snap.checksum(),
                    entry.version,
                    entry.checksum
                ));
            }
            engine.replace(snap);
            source.snapshots_loaded.fetch_add(1, Ordering::Relaxed);
        }
    }
    source.set(Served {
        view: engine.view(),
        subscriptions: Arc::new(subscriptions),
    });
    Ok(())
}

/// Applies the deltas of `chain` in order, each read bounded by its announced size and verified
/// against its size and checksum; stops at the first that fails.
fn apply_chain(
    root: &Path,
    chain: &[DeltaEntry],
    engine: &Engine,
    max_bytes: u64,
) -> Result<(), String> {
    for d in chain {
        let bytes = files::read(root, &d.path, d.bytes.min(max_bytes))
            .map_err(|e| format!("{}: {e:?}", d.path))?;
        if bytes.len() as u64 != d.bytes || trailer(&bytes) != d.checksum {
            return Err(format!("{}: not the delta the manifest names", d.path));
        }
        engine
            .apply_delta(bytes)
            .map_err(|e| format!("{}: {e}", d.path))?;
    }
    Ok(())
}
