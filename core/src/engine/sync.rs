//! The engine's side of edge sync: connecting, waiting for content, the status, closing and
//! restarting after `fork()`. The sync itself (client, plan, cache, thread) is [`crate::sync`],
//! which knows the store and its event log, not the engine.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::snapshot::{BuildOptions, Snapshot};
use crate::sync::{Status, SyncConfig, SyncHandle};

use super::{Engine, Error};

/// An empty snapshot (no features): what an engine serves before its first sync.
fn empty_snapshot() -> Result<Snapshot, Error> {
    let catalog = Catalog::from_json(br#"{"features": []}"#)?;
    Snapshot::build(&catalog, BuildOptions::default()).map_err(Error::InvalidSnapshot)
}

impl Engine {
    /// An engine that syncs from the edge at `config.url` in a background thread. Returns at once:
    /// with a snapshot in `config.cache_dir` it serves that (warm start, no edge needed); without
    /// one it serves an empty snapshot (every check is `feature_not_found`) until the first sync
    /// succeeds — see [`Engine::wait_ready`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid URL or token; [`Error::ThreadStart`] when the
    /// thread cannot be started. A missing, corrupt or unreadable cache is not an error: the status
    /// reports it in `cache_error`.
    pub fn connect(config: SyncConfig) -> Result<Engine, Error> {
        let mut warm = SyncHandle::prepare(&config)?;
        let snapshot = match warm.snapshot.take() {
            Some(s) => s,
            None => empty_snapshot()?,
        };
        let engine = Engine::from_snapshot(snapshot);
        let handle = SyncHandle::start(config, engine.store().share(), warm)?;
        engine.sync.store(Some(Arc::new(handle)));
        Ok(engine)
    }

    /// Waits until the engine has content (from the cache or a first successful sync), at most
    /// `timeout`. Returns whether it has: never `true` while it serves the empty start-up snapshot.
    /// Engines without sync have content from the start.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        match &*self.sync.load() {
            Some(h) => h.wait_ready(timeout),
            None => true,
        }
    }

    /// The sync status. An engine without sync reports [`SyncState::Ready`](crate::SyncState) and
    /// its version.
    pub fn status(&self) -> Status {
        match &*self.sync.load() {
            Some(h) => h.status(),
            None => Status::unsynced(&self.store().load()),
        }
    }

    /// Restarts the sync thread in a child process after `fork()`: the parent's thread does not
    /// exist there. Call it in the child only (language packages call it from their fork hooks).
    /// The content, status counters and lineage carry over; a closed engine stays closed.
    pub fn after_fork(&self) {
        self.store().after_fork();
        let Some(old) = self.sync.load_full() else {
            return;
        };
        if let Some(Ok(handle)) = old.restart_after_fork(self.store().share()) {
            self.sync.store(Some(Arc::new(handle)));
        }
        // The old handle names a thread and connections that belong to the parent: joining,
        // detaching or shutting them down here would act on the parent's behalf. Leave them be.
        std::mem::forget(old);
    }

    /// Stops the sync thread, if any, and waits for it (part of [`Engine::close`]).
    pub(super) fn stop_sync(&self) {
        if let Some(h) = &*self.sync.load() {
            h.stop();
        }
    }
}
