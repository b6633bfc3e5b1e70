//! The store: the current [`View`] behind an [`ArcSwap`], so readers never lock and never block.
//!
//! Writers (snapshot replacement, delta application, compaction) serialize on a fork-safe lock that
//! readers never touch. A reader holding a view keeps reading it whole while a writer swaps in the next one;
//! the old view is freed when its last reader lets go. When the overlay grows past a threshold, a
//! background thread folds it into a new base snapshot and swaps that in, carrying over any deltas
//! applied meanwhile.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use crate::delta::{ApplyError, Delta};
use crate::events::{EventKind, EventLog};
use crate::snapshot::{FormatError, Snapshot};
use crate::view::View;

/// The default overlay size (in customers) past which a background compaction starts.
pub const DEFAULT_COMPACTION_THRESHOLD: usize = 4096;

/// A mutual-exclusion lock that survives `fork()`.
///
/// A `std::sync::Mutex` held by another thread when a process forks stays locked forever in the
/// child (the holder does not exist there): the child's restarted sync thread would block on its
/// first update and its answers would freeze. This lock records the holder's process id instead, and
/// [`PidLock::release_foreign`] frees a lock whose holder is in another process. Writers hold it for
/// microseconds (a pointer swap, or copying a small overlay), so waiting spins briefly, then sleeps.
pub(crate) struct PidLock<T> {
    holder: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a `PidGuard`, and a guard exists only while `holder` was
// moved from 0 to this process's id by a successful compare-exchange (Acquire), so at most one thread
// at a time touches it; the guard's drop publishes its writes with a Release store. `T: Send` is
// required because the value is handed from thread to thread.
unsafe impl<T: Send> Sync for PidLock<T> {}

// Like `Mutex`, the lock may be used again after a panic: the guard's drop unlocks while unwinding,
// and every value it guards here is replaced by a single write, never left half-updated.
impl<T> std::panic::RefUnwindSafe for PidLock<T> {}
impl<T> std::panic::UnwindSafe for PidLock<T> {}

pub(crate) struct PidGuard<'a, T> {
    lock: &'a PidLock<T>,
}

impl<T> PidLock<T> {
    pub(crate) const fn new(value: T) -> PidLock<T> {
        PidLock {
            holder: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    fn me() -> u32 {
        std::process::id().max(1)
    }

    pub(crate) fn lock(&self) -> PidGuard<'_, T> {
        let me = Self::me();
        let mut spins = 0u32;
        while self
            .holder
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins = spins.saturating_add(1);
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        PidGuard { lock: self }
    }

    /// Frees the lock if a thread of another process holds it: call only in a freshly forked child,
    /// where no thread of this process can be holding it yet.
    pub(crate) fn release_foreign(&self) {
        let holder = self.holder.load(Ordering::Acquire);
        if holder != 0 && holder != Self::me() {
            let _ = self
                .holder
                .compare_exchange(holder, 0, Ordering::Release, Ordering::Relaxed);
        }
    }
}

impl<T> std::ops::Deref for PidGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock (see `PidLock`'s Sync impl), so no other reference to
        // the value exists while it lives.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> std::ops::DerefMut for PidGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this the only reference derived from the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for PidGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.holder.store(0, Ordering::Release);
    }
}

struct Inner {
    current: ArcSwap<View>,
    writer: PidLock<()>,
    compacting: AtomicBool,
    threshold: usize,
    compactions: AtomicU64,
    compaction_error: PidLock<Option<String>>,
    compactor: PidLock<Option<JoinHandle<()>>>,
    /// What happened to the content (and, through the engine, to its sync). Swapped whole only by
    /// `after_fork`, whose child must not inherit a lock held by a parent's thread.
    events: ArcSwap<EventLog>,
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

fn lock<T>(m: &PidLock<T>) -> PidGuard<'_, T> {
    // A panic while holding the writer lock cannot leave a torn view (views are swapped whole), and
    // the guard's drop still unlocks during unwinding.
    m.lock()
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
                writer: PidLock::new(()),
                compacting: AtomicBool::new(false),
                threshold,
                compactions: AtomicU64::new(0),
                compaction_error: PidLock::new(None),
                compactor: PidLock::new(None),
                events: ArcSwap::from_pointee(EventLog::new()),
            }),
        }
    }

    /// A second handle on the same content, for a thread that updates it (the sync thread). Both
    /// see every swap; dropping either waits for a running compaction.
    // Used by the sync thread (feature `sync`).
    #[cfg_attr(not(feature = "sync"), allow(dead_code))]
    pub(crate) fn share(&self) -> Store {
        Store {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Makes the store usable in a child process after `fork()`: frees locks that a parent thread
    /// (the sync or compaction thread) held at the fork, and forgets a compaction thread that does
    /// not exist in the child, so it will never finish or be joined.
    // Used by the sync thread (feature `sync`).
    #[cfg_attr(not(feature = "sync"), allow(dead_code))]
    pub(crate) fn after_fork(&self) {
        self.inner.writer.release_foreign();
        self.inner.compaction_error.release_foreign();
        self.inner.compactor.release_foreign();
        if let Some(handle) = lock(&self.inner.compactor).take() {
            // Joining or detaching a thread that exists only in the parent is meaningless here.
            std::mem::forget(handle);
        }
        self.inner.compacting.store(false, Ordering::Release);
        let child = Arc::new(self.inner.events.load().for_child());
        // A parent's thread may have been inside the old log (its lock taken, its ring half
        // updated) at the fork: never lock, touch or drop it here.
        std::mem::forget(self.inner.events.swap(child));
    }

    /// The event log of this content (shared by every handle on it).
    pub(crate) fn events(&self) -> Guard<Arc<EventLog>> {
        self.inner.events.load()
    }

    /// Records a version change, if `from` and `to` differ. Called under the writer lock so that
    /// events are in the order of the swaps.
    fn changed(&self, from: u64, to: u64, how: &str) {
        if from != to {
            self.events().push(
                EventKind::VersionChanged,
                from,
                to,
                format!("version {from} -> {to} ({how})"),
            );
        }
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
        let (from, to) = (self.inner.current.load().version(), snapshot.version());
        self.inner.current.store(Arc::new(View::from(snapshot)));
        self.changed(from, to, "snapshot");
    }

    /// Replaces the content with `view` only if the current view is still `expected` (compare-and-swap
    /// under the writer lock). Returns whether it was stored.
    pub fn replace_if(&self, expected: &Arc<View>, view: View) -> bool {
        let _w = lock(&self.inner.writer);
        if !Arc::ptr_eq(&self.inner.current.load_full(), expected) {
            return false;
        }
        let (from, to) = (expected.version(), view.version());
        self.inner.current.store(Arc::new(view));
        self.changed(from, to, "snapshot");
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
            let current = self.inner.current.load();
            let from = current.version();
            let next = current.apply(delta)?;
            drop(current);
            let version = next.version();
            let overlay = next.overlay_len();
            self.inner.current.store(Arc::new(next));
            self.changed(from, version, "delta");
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
    let Some(next) = now.over_compacted(&before, snapshot) else {
        // The content was replaced wholesale meanwhile; this compaction is moot.
        return Ok(());
    };
    inner.current.store(Arc::new(next));
    inner.compactions.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pid_lock_excludes_and_frees_only_foreign_holders() {
        let lock = Arc::new(PidLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);

        // Held by this process: a child-side release must not free it.
        let guard = lock.lock();
        lock.release_foreign();
        assert_eq!(lock.holder.load(Ordering::Acquire), PidLock::<u64>::me());
        drop(guard);

        // Held by a thread of another process (what a child inherits from a fork mid-update).
        lock.holder
            .store(PidLock::<u64>::me() + 1, Ordering::Release);
        lock.release_foreign();
        *lock.lock() += 1;
        assert_eq!(*lock.lock(), 40_001);
    }
}
