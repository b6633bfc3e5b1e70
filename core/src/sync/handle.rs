//! The engine's handle on its sync thread: starting it (from the cache, or again in a forked
//! child), waiting for content, the status, stopping.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::events::EventKind;
use crate::snapshot::Snapshot;
use crate::store::Store;

use super::cache::Cache;
use super::client::EdgeClient;
use super::config::{data_age, unix, Status, SyncConfig, SyncState};
use super::lock;
use super::worker::{run, Persister, Progress, Shared};

/// The engine's handle on its sync thread.
pub(crate) struct SyncHandle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The process the thread runs in. In a child forked without `after_fork()` the thread does not
    /// exist, and locks its copy held at the fork stay locked: the handle then acts as closed.
    pid: u32,
}

/// What an engine starts from: the cache's content, when it has some, and what is known of it.
pub(crate) struct WarmStart {
    /// The cached snapshot (`None`: no usable cache; serve an empty snapshot until the first sync).
    pub(crate) snapshot: Option<Snapshot>,
    progress: Progress,
    lineage: Option<String>,
}

impl SyncHandle {
    /// Checks `config` and reads its cache directory, before anything starts.
    ///
    /// # Errors
    /// The configuration's error. A missing, corrupt or unreadable cache is not an error: it is
    /// reported in the status's `cache_error` (and as an event once the sync starts).
    pub(crate) fn prepare(config: &SyncConfig) -> Result<WarmStart, Error> {
        // Validate before touching the cache.
        let base = config.edge_base()?;
        let mut warm = WarmStart {
            snapshot: None,
            progress: Progress::default(),
            lineage: None,
        };
        if let Some(dir) = &config.cache_dir {
            match Cache::new(dir, &base).load() {
                Ok(Some(cached)) => {
                    warm.progress.has_data = true;
                    warm.progress.warm_start = true;
                    warm.progress.fresh_at = Some(cached.written_at);
                    warm.progress.lineage = cached.lineage.clone();
                    warm.lineage = cached.lineage;
                    warm.snapshot = Some(cached.snapshot);
                }
                Ok(None) => {}
                Err(e) => warm.progress.cache_error = Some(format!("ignoring the cache: {e}")),
            }
        }
        Ok(warm)
    }

    /// Starts syncing `store` (which serves the warm start's content, or an empty snapshot), after
    /// recording a cache problem met by [`SyncHandle::prepare`] in its event log.
    ///
    /// # Errors
    /// The configuration's error, or the thread's when it cannot be started.
    pub(crate) fn start(
        config: SyncConfig,
        store: Store,
        warm: WarmStart,
    ) -> Result<SyncHandle, Error> {
        if let Some(problem) = &warm.progress.cache_error {
            let version = store.load().version();
            store
                .events()
                .push(EventKind::CacheError, version, version, problem.clone());
        }
        SyncHandle::spawn(config, store, warm.progress, warm.lineage)
    }

    /// A new sync thread for `store` in a child process after `fork()`, carrying over this
    /// handle's content, counters and lineage; `None` when this handle was stopped. This handle
    /// names the parent's thread and connections: the caller must forget it, not drop it.
    ///
    /// # Errors
    /// When the thread cannot be started; the error is also recorded as this handle's last error.
    pub(crate) fn restart_after_fork(&self, store: Store) -> Option<Result<SyncHandle, Error>> {
        // The parent's thread may have held this lock at the fork; its copy here never unlocks.
        let mut progress = match self.shared.progress.try_lock() {
            Ok(p) => p.clone(),
            Err(_) => Progress {
                has_data: store.load().version() > 0,
                ..Progress::default()
            },
        };
        if progress.stop {
            return None;
        }
        progress.long_poll = false;
        let lineage = progress.lineage.clone();
        let config = self.shared.config.clone();
        let started = SyncHandle::spawn(config, store, progress, lineage);
        if let Err(e) = &started {
            if let Ok(mut p) = self.shared.progress.try_lock() {
                p.last_error = Some(format!("cannot restart the sync thread: {e}"));
            }
        }
        Some(started)
    }

    fn spawn(
        config: SyncConfig,
        store: Store,
        progress: Progress,
        lineage: Option<String>,
    ) -> Result<SyncHandle, Error> {
        let mut client = EdgeClient::new(&config)?;
        client.set_lineage(lineage);
        let persister = config
            .cache_dir
            .as_deref()
            .map(|dir| Persister::new(Cache::new(dir, client.base_url())));
        let shared = Arc::new(Shared {
            agent: Mutex::new(Some(client.shutdown_handle())),
            config,
            store,
            progress: Mutex::new(progress),
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("entitle-sync".into())
            .spawn(move || run(thread_shared, client, persister))
            .map_err(|source| Error::ThreadStart {
                thread: "entitle-sync",
                source,
            })?;
        Ok(SyncHandle {
            shared,
            thread: Mutex::new(Some(thread)),
            pid: std::process::id(),
        })
    }

    /// Whether this is a child process forked without `after_fork()`: the thread is the parent's.
    fn forked(&self) -> bool {
        self.pid != std::process::id()
    }

    /// Stops the thread and waits for it (in a forked child: forgets the parent's).
    pub(crate) fn stop(&self) {
        if self.forked() {
            // Joining, detaching or shutting down what belongs to the parent would act on its
            // behalf (or panic: there is no such thread here). Forget it; nothing syncs in this
            // process until after_fork().
            if let Ok(mut t) = self.thread.try_lock() {
                std::mem::forget(t.take());
            }
            if let Ok(mut p) = self.shared.progress.try_lock() {
                p.stop = true;
            }
            return;
        }
        lock(&self.shared.progress).stop = true;
        self.shared.changed.notify_all();
        if let Some(agent) = lock(&self.shared.agent).take() {
            agent.shutdown();
        }
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// Waits until the store has content, at most `timeout`; whether it has.
    pub(crate) fn wait_ready(&self, timeout: Duration) -> bool {
        if self.forked() {
            // No thread will bring content here: answer for what there is, without waiting.
            return self.progress_copy().has_data;
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut p = lock(&self.shared.progress);
        loop {
            if p.has_data {
                return true;
            }
            if p.stop {
                return false;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            p = self
                .shared
                .changed
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The progress; in a forked child without `after_fork()` a copy taken without waiting (the
    /// parent's thread may have held the lock at the fork, and then it never unlocks here).
    fn progress_copy(&self) -> Progress {
        if !self.forked() {
            return lock(&self.shared.progress).clone();
        }
        match self.shared.progress.try_lock() {
            Ok(p) => p.clone(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clone(),
            Err(std::sync::TryLockError::WouldBlock) => Progress {
                has_data: self.shared.store.load().version() > 0,
                ..Progress::default()
            },
        }
    }

    /// The sync status.
    pub(crate) fn status(&self) -> Status {
        let p = self.progress_copy();
        let view = self.shared.store.load();
        let state = if !p.has_data {
            if p.failures > 0 {
                SyncState::Failed
            } else {
                SyncState::Starting
            }
        } else {
            let age = p
                .fresh_at
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if age > self.shared.config.max_staleness {
                SyncState::Stale
            } else {
                SyncState::Ready
            }
        };
        Status {
            state,
            version: view.version(),
            last_success: p.last_success.map(unix),
            data_age: if p.has_data {
                data_age(view.created_at())
            } else {
                None
            },
            last_error: p.last_error,
            syncs: p.syncs,
            failures: p.failures,
            consecutive_failures: p.consecutive_failures,
            last_error_at: p.last_error_at,
            updates: p.updates,
            deltas_applied: p.deltas_applied,
            snapshots_fetched: p.snapshots_fetched,
            lineage: p.lineage,
            edge_version: p.edge_version,
            warm_start: p.warm_start,
            cache_error: p.cache_error,
            long_poll: p.long_poll,
        }
    }
}
