//! The sync client: one round at a time, without a thread. It revalidates the manifest, asks
//! [`plan`](super::plan) what to do, and carries that out, verifying every byte against the
//! manifest before the store sees it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::delta::Delta;
use crate::edge::{trailer, DeltaEntry, Manifest, SnapshotEntry, MANIFEST_FILE};
use crate::error::Error;
use crate::snapshot::Snapshot;
use crate::store::Store;

use super::config::SyncConfig;
use super::error::SyncError;
use super::http::{Http, Limit};
use super::plan::{plan, Plan, Served};

/// What a successful round did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The content is the edge's latest already.
    Unchanged,
    /// The content changed.
    Updated {
        /// The version before.
        from: u64,
        /// The version after.
        to: u64,
        /// Deltas applied.
        deltas: u64,
        /// Whether a full snapshot was fetched.
        snapshot: bool,
    },
}

/// The result of one successful [`EdgeClient::round`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// What changed.
    pub outcome: Outcome,
    /// The edge's version, when the manifest was read (not on a 304).
    pub edge_version: Option<u64>,
    /// Whether the server held the request as a long-poll: the next round can start at once.
    pub long_polled: bool,
    /// Whether the server says it supports long-polling (its `entitle-long-poll` header).
    pub server_long_poll: bool,
    /// A fault the round worked around (for example a corrupt delta replaced by the snapshot).
    pub note: Option<String>,
}

/// One sync round at a time, without a thread: what the sync thread runs, usable directly for
/// tests, tools and measurements.
pub struct EdgeClient {
    http: Http,
    request_timeout: Duration,
    long_poll: Option<u64>,
    max_artifact_bytes: u64,
    etag: Option<String>,
    lineage: Option<String>,
    edge_version: Option<u64>,
}

impl fmt::Debug for EdgeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeClient")
            .field("base", &self.http.base())
            .field("lineage", &self.lineage)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

impl EdgeClient {
    /// A client for the edge in `config` (its URL, token, timeouts and long-poll).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a URL that is not `http://` or `https://`, or a token that is
    /// not printable ASCII.
    pub fn new(config: &SyncConfig) -> Result<EdgeClient, Error> {
        let base = config.edge_base()?;
        Ok(EdgeClient {
            http: Http::new(config, base),
            request_timeout: config.request_timeout,
            long_poll: config.long_poll_seconds(),
            max_artifact_bytes: config.artifact_limit(),
            etag: None,
            lineage: None,
            edge_version: None,
        })
    }

    /// The lineage of the content this client last synced (or was told of).
    pub fn lineage(&self) -> Option<&str> {
        self.lineage.as_deref()
    }

    /// Sets the lineage of the content the store holds (read from a cache), so that the edge is not
    /// allowed to take it back to an older version.
    pub fn set_lineage(&mut self, lineage: Option<String>) {
        self.lineage = lineage;
    }

    /// The edge's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.http.base()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.http.base())
    }

    /// Runs one round against `store`: revalidate the manifest, then apply deltas or fetch the
    /// snapshot as needed. The store is changed only by verified content, one whole version at a time.
    ///
    /// # Errors
    /// A [`SyncError`] saying what failed; the store then holds the last good content (possibly a
    /// later version than before, when a chain broke part way).
    pub fn round(&mut self, store: &Store) -> Result<Round, SyncError> {
        let manifest_url = self.url(MANIFEST_FILE);
        let (request_url, timeout) = match self.long_poll {
            Some(wait) => (
                format!("{manifest_url}?wait={wait}"),
                self.request_timeout + Duration::from_secs(wait),
            ),
            None => (manifest_url.clone(), self.request_timeout),
        };
        let started = Instant::now();
        let fetched =
            self.http
                .get(&request_url, self.etag.as_deref(), timeout, Limit::Manifest)?;
        // A long-poll answer that brings nothing new ("nothing changed in `wait` seconds") lets the
        // next round start at once only if the server really held the request: one that came back
        // early (a 304, or a 200 with the same manifest from a proxy that drops the ETag) did not
        // wait, and the next round must not follow at once.
        let held = self
            .long_poll
            .is_some_and(|w| started.elapsed() >= Duration::from_secs(w) / 2);
        let Some(body) = fetched.body else {
            return Ok(Round {
                outcome: Outcome::Unchanged,
                edge_version: self.edge_version,
                long_polled: fetched.long_poll && held,
                server_long_poll: fetched.long_poll,
                note: None,
            });
        };
        let manifest = Manifest::from_json(&body).map_err(|e| SyncError::Manifest {
            url: manifest_url.clone(),
            message: e.to_string(),
            source: Some(Arc::new(e)),
        })?;
        let (outcome, note) = self.converge(store, &manifest)?;
        let changed = matches!(outcome, Outcome::Updated { .. });
        // A request without an ETag to revalidate cannot be held; once the server has given one,
        // the next request can be (a proxy that drops ETags never gives one: no spinning).
        let can_hold_next = self.etag.is_none() && fetched.etag.is_some();
        self.lineage = Some(manifest.lineage.clone());
        self.etag = fetched.etag;
        self.edge_version = Some(manifest.version);
        Ok(Round {
            outcome,
            edge_version: Some(manifest.version),
            long_polled: fetched.long_poll
                && self.long_poll.is_some()
                && (changed || held || can_hold_next),
            server_long_poll: fetched.long_poll,
            note,
        })
    }

    /// Brings the store to the manifest's version, as [`plan`] decides.
    fn converge(
        &self,
        store: &Store,
        manifest: &Manifest,
    ) -> Result<(Outcome, Option<String>), SyncError> {
        let current = store.view();
        let served = Served {
            version: current.version(),
            checksum: current.checksum(),
            lineage: self.lineage.as_deref(),
        };
        let version = served.version;
        let (applied, note) = match plan(served, manifest)? {
            Plan::Unchanged => return Ok((Outcome::Unchanged, None)),
            Plan::Deltas(chain) => {
                let (n, result) = self.apply_chain(store, chain);
                match result {
                    Ok(()) => {
                        let outcome = Outcome::Updated {
                            from: version,
                            to: manifest.version,
                            deltas: n,
                            snapshot: false,
                        };
                        return Ok((outcome, None));
                    }
                    Err(e) => (n, Some(format!("{e}; fetched the full snapshot instead"))),
                }
            }
            Plan::Snapshot(why) => (0, why.note()),
        };
        self.fetch_snapshot(store, &manifest.snapshot)
            .map_err(|e| match &note {
                Some(n) => e.with_context(n),
                None => e,
            })?;
        let outcome = Outcome::Updated {
            from: version,
            to: manifest.version,
            deltas: applied,
            snapshot: true,
        };
        Ok((outcome, note))
    }

    fn fetch_artifact(&self, path: &str, bytes: u64) -> Result<(String, Vec<u8>), SyncError> {
        let url = self.url(path);
        if bytes > self.max_artifact_bytes {
            return Err(SyncError::mismatch(
                &url,
                format!(
                    "the manifest announces {bytes} bytes, more than max_artifact_bytes \
                     ({}): not downloaded",
                    self.max_artifact_bytes
                ),
            ));
        }
        let fetched = self
            .http
            .get(&url, None, self.request_timeout, Limit::Announced(bytes))?;
        let Some(body) = fetched.body else {
            return Err(SyncError::Http { url, status: 304 });
        };
        if body.len() as u64 != bytes {
            return Err(SyncError::mismatch(
                &url,
                format!(
                    "got {} bytes, the manifest says {bytes}: the body was cut short",
                    body.len()
                ),
            ));
        }
        Ok((url, body))
    }

    /// Applies the chain delta by delta; returns how many were applied, and the error that stopped it.
    fn apply_chain(&self, store: &Store, chain: &[DeltaEntry]) -> (u64, Result<(), SyncError>) {
        let mut applied = 0;
        for d in chain {
            if let Err(e) = self.apply_one(store, d) {
                return (applied, Err(e));
            }
            applied += 1;
        }
        (applied, Ok(()))
    }

    fn apply_one(&self, store: &Store, d: &DeltaEntry) -> Result<(), SyncError> {
        let (url, bytes) = self.fetch_artifact(&d.path, d.bytes)?;
        let bad = |message: String| SyncError::mismatch(&url, message);
        if trailer(&bytes) != d.checksum {
            return Err(bad(format!(
                "checksum {:016x} is not the {:016x} the manifest names",
                trailer(&bytes),
                d.checksum
            )));
        }
        let delta = Delta::from_bytes(bytes).map_err(|e| SyncError::artifact(&url, e))?;
        if delta.base() != (d.from, d.from_checksum) || delta.target() != (d.to, d.to_checksum) {
            return Err(bad(format!(
                "it goes from version {} to {}, the manifest says {} to {}",
                delta.base().0,
                delta.target().0,
                d.from,
                d.to
            )));
        }
        store
            .apply(&delta)
            .map_err(|e| SyncError::artifact(&url, e))?;
        Ok(())
    }

    fn fetch_snapshot(&self, store: &Store, entry: &SnapshotEntry) -> Result<(), SyncError> {
        let (url, bytes) = self.fetch_artifact(&entry.path, entry.bytes)?;
        let snapshot = Snapshot::from_bytes(bytes).map_err(|e| SyncError::artifact(&url, e))?;
        if (snapshot.version(), snapshot.checksum()) != (entry.version, entry.checksum) {
            return Err(SyncError::mismatch(
                &url,
                format!(
                    "it is version {} (checksum {:016x}), the manifest names version {} (checksum {:016x})",
                    snapshot.version(),
                    snapshot.checksum(),
                    entry.version,
                    entry.checksum
                ),
            ));
        }
        store.replace(snapshot);
        Ok(())
    }

    /// A handle that interrupts this client's requests in flight and refuses new ones.
    pub(super) fn shutdown_handle(&self) -> ureq::Agent {
        self.http.shutdown_handle()
    }
}
