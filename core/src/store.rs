//! The store: the current [`View`] behind an [`ArcSwap`], so readers never lock and never block.
//!
//! Writers (snapshot replacement, delta application, compaction) serialize on a mutex that readers
//! never touch. A reader holding a view keeps reading it whole while a writer swaps in the next one;
//! the old view is freed when its last reader lets go. When the overlay grows past a threshold, a
//! background thread folds it into a new base snapshot and swaps that in, carrying over any deltas
//! applied meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use arc_swap::{ArcSwap, Guard};

use crate::delta::{ApplyError, Delta};
use crate::snapshot::{FormatError, Snapshot};
use crate::view::{Overlay, View};

/// The default overlay size (in customers) past which a background compaction starts.
pub const DEFAULT_COMPACTION_THRESHOLD: usize = 4096;

struct Inner {
    current: ArcSwap<View>,
    writer: Mutex<()>,
    compacting: AtomicBool,
    threshold: usize,
    compactions: AtomicU64,
    compaction_error: Mutex<Option<String>>,
    compactor: Mutex<Option<JoinHandle<()>>>,
}

/// Holds the current view; lookups are lock-free, updates are atomic swaps.
///
/// # Examples
/// ```
/// use entitle_core::{BuildOptions, Catalog, Snapshot, Store};
/// let c = Catalog::from_json(br#"{"features":[{"key":"sso","type":"flag","default":true}]}"#)?;
/// let store = Store::new(Snapshot::build(&c, BuildOptions { version: 1, created_at: 0 })?);
/// assert!(store.load().check_at("anyone", "sso", 0).enabled());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Store {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the writer lock cannot leave a torn view (views are swapped whole), so
    // a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// A store serving `snapshot`, compacting at [`DEFAULT_COMPACTION_THRESHOLD`].
    pub fn new(snapshot: Snapshot) -> Store {
        Store::with_threshold(View::from(snapshot), DEFAULT_COMPACTION_THRESHOLD)
    }

    /// A store serving `view`, compacting once the overlay holds more than `threshold` customers.
    pub fn with_threshold(view: View, threshold: usize) -> Store {
        Store {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(view),
                writer: Mutex::new(()),
                compacting: AtomicBool::new(false),
                threshold,
                compactions: AtomicU64::new(0),
                compaction_error: Mutex::new(None),
                compactor: Mutex::new(None),
            }),
        }
    }

    /// A second handle on the same content, for a thread that updates it (the sync thread). Both
    /// see every swap; dropping either waits for a running compaction.
    pub(crate) fn share(&self) -> Store {
        Store {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Forgets a compaction thread inherited through `fork()`: in the child it does not exist, so it
    /// will never finish or be joined.
    pub(crate) fn after_fork(&self) {
        if let Ok(mut slot) = self.inner.compactor.try_lock() {
            if let Some(handle) = slot.take() {
                // Joining or detaching a thread that exists only in the parent is meaningless here.
                std::mem::forget(handle);
            }
        }
        self.inner.compacting.store(false, Ordering::Release);
    }

    /// The current view, for lookups. Lock-free; hold it only briefly (it pins that view in memory).
    #[inline]
    pub fn load(&self) -> Guard<Arc<View>> {
        self.inner.current.load()
    }

    /// The current view as an owned handle.
    pub fn view(&self) -> Arc<View> {
        self.inner.current.load_full()
    }

    /// Replaces the content with a whole snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        let _w = lock(&self.inner.writer);
        self.inner.current.store(Arc::new(View::from(snapshot)));
    }

    /// Replaces the content with `view` only if the current view is still `expected` (compare-and-swap
    /// under the writer lock). Returns whether it was stored.
    pub fn replace_if(&self, expected: &Arc<View>, view: View) -> bool {
        let _w = lock(&self.inner.writer);
        if !Arc::ptr_eq(&self.inner.current.load_full(), expected) {
            return false;
        }
        self.inner.current.store(Arc::new(view));
        true
    }

    /// Applies a delta to the current view and swaps the result in; returns the new version. Starts a
    /// background compaction when the overlay has grown past the threshold.
    ///
    /// # Errors
    /// [`ApplyError`] when the delta does not fit the current view; the current view is kept.
    pub fn apply(&self, delta: &Delta) -> Result<u64, ApplyError> {
        let next = {
            let _w = lock(&self.inner.writer);
            let next = self.inner.current.load().apply(delta)?;
            let version = next.version();
            let overlay = next.overlay_len();
            self.inner.current.store(Arc::new(next));
            (version, overlay)
        };
        if next.1 > self.inner.threshold {
            self.spawn_compaction();
        }
        Ok(next.0)
    }

    /// Number of compactions completed.
    pub fn compactions(&self) -> u64 {
        self.inner.compactions.load(Ordering::Relaxed)
    }

    /// The last compaction failure, if the last compaction failed.
    pub fn compaction_error(&self) -> Option<String> {
        lock(&self.inner.compaction_error).clone()
    }

    fn spawn_compaction(&self) {
        if self.inner.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut slot = lock(&self.inner.compactor);
        if let Some(done) = slot.take() {
            let _ = done.join();
        }
        let inner = Arc::clone(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("entitle-compact".into())
            .spawn(move || {
                let result = compact(&inner);
                *lock(&inner.compaction_error) = result.err().map(|e| e.to_string());
                inner.compacting.store(false, Ordering::Release);
            });
        match spawned {
            Ok(handle) => *slot = Some(handle),
            Err(e) => {
                *lock(&self.inner.compaction_error) = Some(format!("cannot start compaction: {e}"));
                self.inner.compacting.store(false, Ordering::Release);
            }
        }
    }

    /// Folds the overlay into a new base now, on this thread.
    ///
    /// # Errors
    /// A [`FormatError`] if the folded content does not match its promised checksum; the current
    /// view is kept.
    pub fn compact(&self) -> Result<(), FormatError> {
        compact(&self.inner)
    }

    /// Waits for a running background compaction to finish.
    pub fn wait_compaction(&self) {
        let handle = lock(&self.inner.compactor).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.wait_compaction();
    }
}

fn compact(inner: &Inner) -> Result<(), FormatError> {
    let before = inner.current.load_full();
    if before.overlay_len() == 0 {
        return Ok(());
    }
    let snapshot = Arc::new(before.compact()?);
    let _w = lock(&inner.writer);
    let now = inner.current.load_full();
    let next = if Arc::ptr_eq(&now, &before) {
        View::from(snapshot)
    } else if Arc::ptr_eq(&now.base, &before.base) {
        // Deltas landed while we compacted: keep the overlay entries they added or replaced.
        let mut overlay = Overlay::default();
        let mut count = snapshot.customer_count();
        for e in now.overlay.entries() {
            let unchanged = before
                .overlay
                .get(e.hash, &e.id)
                .is_some_and(|old| Arc::ptr_eq(old, e));
            if unchanged {
                continue;
            }
            let in_base = snapshot.customer_profile(&e.id, e.hash).is_some();
            count = (count + usize::from(e.profile.is_some())).saturating_sub(usize::from(in_base));
            overlay.insert(Arc::clone(e));
        }
        View {
            base: snapshot,
            overlay: Arc::new(overlay),
            version: now.version,
            checksum: now.checksum,
            created_at: now.created_at,
            customer_count: count,
        }
    } else {
        // The content was replaced wholesale meanwhile; this compaction is moot.
        return Ok(());
    };
    inner.current.store(Arc::new(next));
    inner.compactions.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
