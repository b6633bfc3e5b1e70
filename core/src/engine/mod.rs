//! The engine: what applications hold. A [`Store`] plus convenience constructors and lookups.

mod handles;
#[cfg(feature = "sync")]
mod sync;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::delta::Delta;
pub(crate) use crate::error::Error;
use crate::events::{Event, WaitError};
use crate::model::{Decision, Limit};
use crate::snapshot::format::FileKind;
use crate::snapshot::{BuildOptions, FeatureInfo, FormatError, Snapshot};
use crate::store::Store;
use crate::view::View;

/// The largest input file [`read_file`] reads: 2 GiB, far above any real catalog or snapshot.
pub const MAX_INPUT_BYTES: u64 = 2 << 30;

/// Reads a snapshot, delta or catalog file, naming it in the error. Only regular files and pipes
/// are read (a device such as `/dev/zero` is refused at once, a directory fails with `EISDIR`), and
/// at most
/// [`MAX_INPUT_BYTES`]: a larger regular file is refused before it is read, a pipe once it has sent
/// more.
///
/// # Errors
/// [`Error::Io`] naming `path`: unreadable, not a regular file or pipe, or too large.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let io = |source: std::io::Error| Error::io(path, source);
    let refuse = |msg: String| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg));
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    #[cfg(unix)]
    let pipe = std::os::unix::fs::FileTypeExt::is_fifo(&kind);
    #[cfg(not(unix))]
    let pipe = false;
    // A directory fails below with the system's own error (EISDIR), which callers map to
    // IsADirectoryError and the like; devices (`/dev/zero` never ends) are refused here.
    if !kind.is_file() && !pipe && !kind.is_dir() {
        return Err(refuse(
            "not a regular file (a device or other special file); give a snapshot, delta or \
             catalog file"
                .into(),
        ));
    }
    let too_large = |n: u64| {
        refuse(format!(
            "{n} bytes or more is larger than the {MAX_INPUT_BYTES}-byte limit for input files"
        ))
    };
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(if kind.is_file() {
        meta.len() as usize
    } else {
        0
    });
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Loads a snapshot or a catalog from bytes, told apart by content: snapshot magic, else JSON.
///
/// # Errors
/// The catalog's or the snapshot's error.
pub fn load_source(bytes: Vec<u8>) -> Result<Snapshot, Error> {
    match FileKind::of(&bytes) {
        Some(FileKind::Snapshot) => {
            return Snapshot::from_bytes(bytes).map_err(Error::InvalidSnapshot)
        }
        Some(FileKind::Delta) => {
            // Not JSON either: say what it is rather than report an invalid catalog.
            return Err(Error::InvalidSnapshot(FormatError::BadMagic {
                expected: "snapshot or catalog (this is a delta: apply it to its base snapshot)",
            }));
        }
        None => {}
    }
    let catalog = Catalog::from_json(&bytes)?;
    Snapshot::build(&catalog, BuildOptions::default()).map_err(Error::InvalidSnapshot)
}

/// An in-process entitlement engine: lock-free lookups over the current snapshot, atomic updates.
///
/// # Examples
/// ```
/// use entitle_core::{Engine, Limit};
/// let engine = Engine::from_catalog_json(br#"{
///   "features": [{"key": "projects", "type": "limit", "default": 3}],
///   "products": [{"id": "pro", "features": {"projects": 50}}],
///   "customers": [{"id": "cus_A", "subscriptions": [
///     {"id": "s", "status": "active", "items": [{"product": "pro"}]}]}]
/// }"#)?;
/// assert_eq!(engine.limit("cus_A", "projects"), Limit::Finite(50));
/// assert!(engine.allows("cus_A", "projects", 49, 1));
/// assert!(!engine.allows("cus_A", "projects", 50, 1));
/// # Ok::<(), entitle_core::Error>(())
/// ```
pub struct Engine {
    store: Store,
    /// The sync thread, for engines made by `Engine::connect`. Never touched by lookups; swapped
    /// whole (lock-free) so that `after_fork` can replace it in a child whatever the parent's threads
    /// held at the fork.
    #[cfg(feature = "sync")]
    sync: arc_swap::ArcSwapOption<crate::sync::SyncHandle>,
}

impl Engine {
    /// An engine serving `snapshot`.
    pub fn from_snapshot(snapshot: Snapshot) -> Engine {
        Engine {
            store: Store::new(snapshot),
            #[cfg(feature = "sync")]
            sync: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// An engine serving the snapshot in `bytes`.
    ///
    /// # Errors
    /// [`Error::InvalidSnapshot`] when the bytes are not a valid snapshot.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Engine, Error> {
        Snapshot::from_bytes(bytes)
            .map(Engine::from_snapshot)
            .map_err(Error::InvalidSnapshot)
    }

    /// An engine serving the snapshot (or catalog) in the file at `path`.
    ///
    /// # Errors
    /// [`Error::Io`], or the content's error.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Engine, Error> {
        Ok(Engine::from_snapshot(load_source(read_file(
            path.as_ref(),
        )?)?))
    }

    /// An engine compiled from a catalog (version 0), for tests and small applications.
    ///
    /// # Errors
    /// [`Error::InvalidSnapshot`] (of kind [`TooLarge`](crate::ErrorKind::TooLarge)) past the
    /// format's limits.
    pub fn from_catalog(catalog: &Catalog) -> Result<Engine, Error> {
        Snapshot::build(catalog, BuildOptions::default())
            .map(Engine::from_snapshot)
            .map_err(Error::InvalidSnapshot)
    }

    /// An engine compiled from catalog JSON.
    ///
    /// # Errors
    /// [`Error::InvalidCatalog`] when the catalog is invalid.
    pub fn from_catalog_json(json: &[u8]) -> Result<Engine, Error> {
        Engine::from_catalog(&Catalog::from_json(json)?)
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current view (hold briefly; it pins that content).
    pub fn view(&self) -> Arc<View> {
        self.store.view()
    }

    /// The current content version.
    pub fn version(&self) -> u64 {
        self.store.load().version()
    }

    /// Decides `feature` for `customer` now.
    #[inline]
    pub fn check(&self, customer: impl AsRef<[u8]>, feature: impl AsRef<[u8]>) -> Decision {
        self.store.load().check(customer, feature)
    }

    /// Decides `feature` for `customer` at unix time `at`.
    #[inline]
    pub fn check_at(
        &self,
        customer: impl AsRef<[u8]>,
        feature: impl AsRef<[u8]>,
        at: i64,
    ) -> Decision {
        self.store.load().check_at(customer, feature, at)
    }

    /// Whether `customer` may use `feature` now (SPEC 2.6).
    #[inline]
    pub fn enabled(&self, customer: impl AsRef<[u8]>, feature: impl AsRef<[u8]>) -> bool {
        self.check(customer, feature).enabled()
    }

    /// The limit of `feature` for `customer` now; `Finite(0)` for flags and unknown features.
    #[inline]
    pub fn limit(&self, customer: impl AsRef<[u8]>, feature: impl AsRef<[u8]>) -> Limit {
        self.check(customer, feature)
            .limit()
            .unwrap_or(Limit::Finite(0))
    }

    /// Whether `customer` may use `requested` more of `feature` given `usage` (SPEC 2.7).
    #[inline]
    pub fn allows(
        &self,
        customer: impl AsRef<[u8]>,
        feature: impl AsRef<[u8]>,
        usage: u64,
        requested: u64,
    ) -> bool {
        self.check(customer, feature).allows(usage, requested)
    }

    /// Every feature's decision for `customer` at `at`, in feature order (owned keys).
    pub fn entitlements_at(&self, customer: impl AsRef<[u8]>, at: i64) -> Vec<(String, Decision)> {
        let view = self.store.load();
        view.entitlements_at(customer, at)
            .map(|(f, d): (FeatureInfo<'_>, Decision)| (f.key.to_owned(), d))
            .collect()
    }

    /// Replaces the content with a whole snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        self.store.replace(snapshot);
    }

    /// Applies delta bytes; returns the new version.
    ///
    /// # Errors
    /// [`Error::InvalidDelta`] for invalid bytes, [`Error::WrongBase`] for a delta made for another
    /// base; the current content is kept either way.
    pub fn apply_delta(&self, bytes: Vec<u8>) -> Result<u64, Error> {
        let delta = Delta::from_bytes(bytes).map_err(Error::InvalidDelta)?;
        Ok(self.store.apply(&delta)?)
    }

    /// Waits up to `timeout` for the first event with a sequence number above `after_seq`:
    /// version changes from any writer, sync failures and recoveries, staleness, cache problems
    /// (see [`crate::events`]). Pass 0 first, then the `seq` of the last event handled.
    ///
    /// The engine keeps the last [`EVENT_RING_CAPACITY`](crate::EVENT_RING_CAPACITY) events: a
    /// consumer that fell further behind gets the oldest kept one and sees the gap in `seq`.
    /// Lookups never touch the events; waiting blocks only the calling thread.
    ///
    /// # Errors
    /// [`WaitError::Timeout`] when no such event came in time; [`WaitError::Closed`] when the
    /// engine is closed (by [`Engine::close`], which wakes every waiter) and has no later event.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use entitle_core::{Engine, EventKind, WaitError};
    /// let engine = Engine::from_catalog_json(br#"{"features": []}"#)?;
    /// let listener = std::thread::scope(|s| {
    ///     let listener = s.spawn(|| {
    ///         let mut seen = 0;
    ///         let mut changes = Vec::new();
    ///         loop {
    ///             match engine.next_event(seen, Duration::from_secs(5)) {
    ///                 Ok(e) => {
    ///                     seen = e.seq;
    ///                     if e.kind == EventKind::VersionChanged {
    ///                         changes.push((e.old_version, e.new_version));
    ///                     }
    ///                 }
    ///                 Err(WaitError::Timeout) => continue,
    ///                 Err(WaitError::Closed) => return changes,
    ///             }
    ///         }
    ///     });
    ///     let v2 = entitle_core::Snapshot::build(
    ///         &entitle_core::Catalog::from_json(br#"{"features": []}"#)?,
    ///         entitle_core::BuildOptions { version: 2, created_at: 0 },
    ///     )
    ///     .map_err(entitle_core::Error::InvalidSnapshot)?;
    ///     engine.replace(v2);
    ///     engine.close();
    ///     Ok::<_, entitle_core::Error>(listener.join().expect("listener"))
    /// })?;
    /// assert_eq!(listener, vec![(0, 2)]);
    /// # Ok::<(), entitle_core::Error>(())
    /// ```
    pub fn next_event(&self, after_seq: u64, timeout: Duration) -> Result<Event, WaitError> {
        // Hold the log, not the guard: the wait may be long.
        let log = arc_swap::Guard::into_inner(self.store.events());
        log.next(after_seq, timeout)
    }

    /// The sequence number of the engine's last event (0: none yet): a consumer that wants only
    /// what happens from now on starts [`Engine::next_event`] there.
    pub fn last_event_seq(&self) -> u64 {
        self.store.events().last_seq()
    }

    /// Closes the engine: stops its sync thread, if any, and waits for it (requests in flight,
    /// long-polls included, are interrupted; a TCP connect in progress first runs out its
    /// `connect_timeout`), then wakes every [`Engine::next_event`] waiter, which returns
    /// [`WaitError::Closed`] once it has seen every event. Idempotent; the engine keeps answering
    /// from its last content. Dropping the engine does the same.
    pub fn close(&self) {
        #[cfg(feature = "sync")]
        self.stop_sync();
        self.store.events().close();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}
