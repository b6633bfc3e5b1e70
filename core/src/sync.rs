//! Edge sync: a background thread that keeps an [`Engine`](crate::Engine)'s content equal to an edge's latest
//! version (cargo feature `sync`).
//!
//! Each round revalidates the edge's manifest (`If-None-Match`, optionally long-polled with
//! `?wait=SECONDS`), then applies the chain of deltas from the current version or, when there is no
//! usable chain, fetches the full snapshot. Every byte is verified against the manifest's checksums
//! before use, updates are swapped in atomically (readers never wait), and the new content is
//! persisted to the cache directory so that the next process starts warm. On any fault the engine
//! keeps serving its last good content, backs off exponentially with jitter and recovers by itself.
//! The protocol is in `docs/edge-protocol.md`.
//!
//! # Examples
//! ```no_run
//! use std::time::Duration;
//! use entitle_core::{Engine, SyncConfig, SyncState};
//! let engine = Engine::connect(SyncConfig {
//!     url: "https://edge.example.com/entitle".into(),
//!     token: Some("secret".into()),
//!     cache_dir: Some("/var/cache/entitle".into()),
//!     ..SyncConfig::default()
//! })?;
//! if !engine.wait_ready(Duration::from_secs(5)) {
//!     eprintln!("no entitlement data yet: {:?}", engine.status().last_error);
//! }
//! let allowed = engine.enabled("cus_A", "sso");
//! assert_ne!(engine.status().state, SyncState::Starting);
//! engine.close();
//! # Ok::<(), entitle_core::Error>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::delta::Delta;
use crate::edge::{
    trailer, DeltaEntry, Manifest, SnapshotEntry, LONG_POLL_HEADER, MANIFEST_FILE,
    MAX_LONG_POLL_SECONDS, MAX_MANIFEST_BYTES,
};
use crate::engine::Error;
use crate::events::EventKind;
use crate::hash::xxh64;
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::view::{unix_now, View};

/// How an engine syncs from an edge. Build it with struct-update syntax over [`Default`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// The edge's base URL (`http://` or `https://`); the manifest is `{url}/manifest.json`.
    pub url: String,
    /// A bearer token sent on every request (`Authorization: Bearer ...`).
    pub token: Option<String>,
    /// Time between manifest checks when the server does not long-poll (default 5 s), varied by
    /// ±20 % so that many processes do not poll in step.
    pub poll_interval: Duration,
    /// Time allowed to connect (TCP and TLS; default 2 s).
    pub connect_timeout: Duration,
    /// Time allowed for one whole request, body included (default 60 s; a long-poll adds its wait).
    pub request_timeout: Duration,
    /// Where to keep the last good snapshot; with a cached snapshot an engine serves at once.
    pub cache_dir: Option<PathBuf>,
    /// After this long without a successful sync the status says [`SyncState::Stale`] (default 120 s).
    pub max_staleness: Duration,
    /// Ask the server to hold manifest requests for up to this long (`?wait=SECONDS`, at most 25 s)
    /// and answer as soon as the manifest changes. Servers that do not support it answer at once,
    /// and the engine falls back to polling. Default `None`.
    pub long_poll: Option<Duration>,
    /// The longest pause between retries after failures (default 60 s).
    pub max_backoff: Duration,
    /// The shortest time between two cache writes after deltas (default 30 s); a full snapshot from
    /// the edge is written at once, and `close()` (or dropping the engine) writes what is newer.
    pub persist_interval: Duration,
    /// The largest snapshot or delta the engine downloads (default [`DEFAULT_MAX_ARTIFACT_BYTES`],
    /// 256 MiB), counted after decompression. An artifact the manifest announces as larger is refused
    /// before any byte of it is requested; a body that turns out larger is cut off at the limit and
    /// refused. Either way the status reports it and the last good content keeps serving.
    pub max_artifact_bytes: u64,
}

/// The default [`SyncConfig::max_artifact_bytes`]: 256 MiB. Snapshots take about 60-100 bytes per
/// customer, so this leaves room for a few million customers, while a hostile or broken edge cannot
/// make an engine hold more than this per download (or wait for more to arrive).
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 256 << 20;

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            url: String::new(),
            token: None,
            poll_interval: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(60),
            cache_dir: None,
            max_staleness: Duration::from_secs(120),
            long_poll: None,
            max_backoff: Duration::from_secs(60),
            persist_interval: Duration::from_secs(30),
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
        }
    }
}

impl SyncConfig {
    /// The default configuration for the edge at `url`.
    pub fn new(url: impl Into<String>) -> SyncConfig {
        SyncConfig {
            url: url.into(),
            ..SyncConfig::default()
        }
    }
}

/// Where an engine's sync stands.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncState {
    /// No content yet and no sync round has finished: answers come from an empty snapshot.
    Starting = 0,
    /// Serving content confirmed by the edge (or read from the cache) within `max_staleness`.
    Ready = 1,
    /// Serving content, but the last confirmation is older than `max_staleness`.
    Stale = 2,
    /// No content, and syncing has failed so far: answers come from an empty snapshot.
    Failed = 3,
}

impl SyncState {
    /// `"starting"`, `"ready"`, `"stale"` or `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Starting => "starting",
            SyncState::Ready => "ready",
            SyncState::Stale => "stale",
            SyncState::Failed => "failed",
        }
    }
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an engine's sync has done, for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Where the sync stands.
    pub state: SyncState,
    /// The content version being served.
    pub version: u64,
    /// When a sync round last succeeded (unix seconds); `None` before the first.
    pub last_success: Option<i64>,
    /// How old the content is: now minus its creation time; `None` without content.
    pub data_age: Option<Duration>,
    /// The most recent error, including faults a round worked around (a corrupt delta replaced by
    /// the full snapshot); kept after recovery: compare `last_error_at` with `last_success`.
    pub last_error: Option<String>,
    /// Successful sync rounds (including those that found nothing new).
    pub syncs: u64,
    /// Failed sync rounds.
    pub failures: u64,
    /// Failed rounds since the last success.
    pub consecutive_failures: u64,
    /// When `last_error` happened (unix seconds).
    pub last_error_at: Option<i64>,
    /// Rounds that changed the content.
    pub updates: u64,
    /// Deltas applied.
    pub deltas_applied: u64,
    /// Full snapshots fetched from the edge.
    pub snapshots_fetched: u64,
    /// The lineage of the content being served, when known.
    pub lineage: Option<String>,
    /// The latest version the edge announced.
    pub edge_version: Option<u64>,
    /// Whether the content came from the cache file at start.
    pub warm_start: bool,
    /// The last problem with the cache file (unreadable, corrupt, unwritable); syncing goes on.
    pub cache_error: Option<String>,
    /// Whether the server honors long-polling (so changes arrive as soon as they are published).
    pub long_poll: bool,
}

impl Status {
    /// The status of an engine without sync: [`SyncState::Ready`], serving `view`.
    pub(crate) fn unsynced(view: &View) -> Status {
        Status {
            state: SyncState::Ready,
            version: view.version(),
            last_success: None,
            data_age: data_age(view.created_at()),
            last_error: None,
            syncs: 0,
            failures: 0,
            consecutive_failures: 0,
            last_error_at: None,
            updates: 0,
            deltas_applied: 0,
            snapshots_fetched: 0,
            lineage: None,
            edge_version: None,
            warm_start: false,
            cache_error: None,
            long_poll: false,
        }
    }
}

/// Why a sync round failed. The engine keeps serving its last good content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncError {
    /// The request did not complete: connection refused or reset, timeout, body cut short.
    Transport {
        /// The URL requested.
        url: String,
        /// What happened.
        message: String,
    },
    /// The server answered with an unexpected HTTP status.
    Http {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The manifest is not valid.
    Manifest {
        /// The manifest's URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A snapshot or delta is corrupt, or not what the manifest says.
    Artifact {
        /// The artifact's URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The edge announces an older version of the same lineage than the one being served.
    Regressed {
        /// The edge's version.
        edge: u64,
        /// The version being served.
        current: u64,
    },
    /// The edge's content for the version being served is different content.
    Diverged {
        /// The version.
        version: u64,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Transport { url, message } => write!(f, "{url}: {message}"),
            SyncError::Http { url, status } => write!(f, "{url}: HTTP {status}"),
            SyncError::Manifest { url, message } => write!(f, "{url}: {message}"),
            SyncError::Artifact { url, message } => write!(f, "{url}: {message}"),
            SyncError::Regressed { edge, current } => write!(
                f,
                "the edge went back to version {edge} (serving {current}); keeping {current}"
            ),
            SyncError::Diverged { version } => write!(
                f,
                "the edge's version {version} differs from the version {version} being served; keeping it"
            ),
        }
    }
}

impl std::error::Error for SyncError {}

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
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
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
            .field("base", &self.base)
            .field("lineage", &self.lineage)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

fn invalid_config(url: &str, msg: impl Into<String>) -> Error {
    Error::Io {
        path: PathBuf::from(url),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.into()),
    }
}

fn agent_for(config: &SyncConfig) -> ureq::Agent {
    let connect = Some(config.connect_timeout);
    let agent_config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(connect)
        .timeout_connect(connect)
        .timeout_global(Some(config.request_timeout))
        // Redirects are followed by EdgeClient::get, within the edge's origin only.
        .max_redirects(0)
        .user_agent(concat!("entitle/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        agent_config,
        ureq::unversioned::transport::DefaultConnector::default(),
        CachingResolver::default(),
    )
}

/// How long a host's resolved addresses are reused.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// Resolves each host at most once per [`RESOLVE_TTL`], and IP literals without a lookup.
///
/// ureq resolves before every request, even on a pooled connection, and with a timeout it does so
/// on a new thread: a thread and a lookup per poll, several milliseconds for a round that otherwise
/// costs a conditional GET on an open connection.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    cache: Mutex<
        Option<(
            String,
            Instant,
            ureq::unversioned::resolver::ResolvedSocketAddrs,
        )>,
    >,
}

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        if let Some(authority) = uri.authority() {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                let port = authority
                    .port_u16()
                    .unwrap_or(if uri.scheme_str() == Some("https") {
                        443
                    } else {
                        80
                    });
                let mut addrs = self.empty();
                addrs.push(std::net::SocketAddr::new(ip, port));
                return Ok(addrs);
            }
        }
        if let Some((k, at, addrs)) = &*lock(&self.cache) {
            if *k == key && at.elapsed() < RESOLVE_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *lock(&self.cache) = Some((key, Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

impl EdgeClient {
    /// A client for the edge in `config` (its URL, token, timeouts and long-poll).
    ///
    /// # Errors
    /// [`Error::Io`] of kind `InvalidInput` for a URL that is not `http://` or `https://`, or a
    /// token that is not printable ASCII.
    pub fn new(config: &SyncConfig) -> Result<EdgeClient, Error> {
        let mut base = config.url.trim().to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(invalid_config(
                &config.url,
                "the edge URL must start with http:// or https://",
            ));
        }
        if let Some(stripped) = base.strip_suffix(MANIFEST_FILE) {
            base = stripped.to_owned();
        }
        while base.ends_with('/') {
            base.pop();
        }
        if let Some(t) = &config.token {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid_config(
                    &config.url,
                    "the token must be non-empty printable ASCII without spaces",
                ));
            }
        }
        Ok(EdgeClient {
            agent: agent_for(config),
            base,
            token: config.token.clone(),
            request_timeout: config.request_timeout,
            long_poll: config
                .long_poll
                .map(|d| d.as_secs().min(MAX_LONG_POLL_SECONDS))
                .filter(|&s| s > 0),
            max_artifact_bytes: if config.max_artifact_bytes == 0 {
                DEFAULT_MAX_ARTIFACT_BYTES
            } else {
                config.max_artifact_bytes
            },
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
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// GETs `url`, following up to [`MAX_REDIRECTS`] redirects within the edge's origin (the bearer
    /// token goes along); a redirect to another scheme, host or port is refused.
    fn get(
        &self,
        url: &str,
        if_none_match: Option<&str>,
        timeout: Duration,
        limit: Limit,
    ) -> Result<Fetched, SyncError> {
        let started = Instant::now();
        let mut target = url.to_owned();
        let mut redirects = 0;
        let mut resp = loop {
            let transport = |e: ureq::Error| SyncError::Transport {
                url: url.to_owned(),
                message: match e {
                    ureq::Error::Timeout(t) => format!("timed out ({t})"),
                    other => other.to_string(),
                },
            };
            let mut req = self.agent.get(&target);
            if let Some(t) = &self.token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            if let Some(tag) = if_none_match {
                req = req.header("if-none-match", tag);
            }
            let left = timeout.saturating_sub(started.elapsed()).max(MIN_INTERVAL);
            let resp = req
                .config()
                .timeout_global(Some(left))
                .build()
                .call()
                .map_err(transport)?;
            let status = resp.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                break resp;
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let next = resolve_location(&target, location);
            let refuse = |why: String| SyncError::Transport {
                url: url.to_owned(),
                message: why,
            };
            match next {
                Some(next) if same_origin(&next, &self.base) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(refuse(format!(
                            "more than {MAX_REDIRECTS} redirects (last to {next})"
                        )));
                    }
                    target = next;
                }
                Some(next) => {
                    return Err(refuse(format!(
                        "HTTP {status} redirects to {next}, outside the edge's origin: refused (an \
                         edge cannot send a client to another host)"
                    )))
                }
                None => {
                    return Err(refuse(format!(
                        "HTTP {status} with an unusable Location {location:?}"
                    )))
                }
            }
        };
        let transport = |e: ureq::Error| SyncError::Transport {
            url: url.to_owned(),
            message: match e {
                ureq::Error::Timeout(t) => format!("timed out ({t})"),
                ureq::Error::BodyExceedsLimit(n) => match limit {
                    Limit::Manifest => {
                        format!("the manifest is larger than the {n} bytes a client accepts")
                    }
                    Limit::Announced(_) => {
                        format!("the body is larger than the {n} bytes the manifest announces")
                    }
                },
                other => other.to_string(),
            },
        };
        let long_poll = resp.headers().contains_key(LONG_POLL_HEADER);
        match resp.status().as_u16() {
            304 => Ok(Fetched {
                body: None,
                etag: None,
                long_poll,
            }),
            200 => {
                let etag = resp
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(limit.bytes())
                    .read_to_vec()
                    .map_err(transport)?;
                Ok(Fetched {
                    body: Some(body),
                    etag,
                    long_poll,
                })
            }
            status => Err(SyncError::Http {
                url: url.to_owned(),
                status,
            }),
        }
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
        let fetched = self.get(&request_url, self.etag.as_deref(), timeout, Limit::Manifest)?;
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

    /// Brings the store to the manifest's version.
    fn converge(
        &self,
        store: &Store,
        manifest: &Manifest,
    ) -> Result<(Outcome, Option<String>), SyncError> {
        let current = store.view();
        let (version, checksum) = (current.version(), current.checksum());
        let same_lineage = self.lineage.as_deref() == Some(manifest.lineage.as_str());
        let holds_it = manifest.version == version && manifest.snapshot.checksum == checksum;
        if holds_it && (same_lineage || self.lineage.is_none()) {
            return Ok((Outcome::Unchanged, None));
        }
        if same_lineage {
            if manifest.version < version {
                return Err(SyncError::Regressed {
                    edge: manifest.version,
                    current: version,
                });
            }
            if manifest.version == version {
                return Err(SyncError::Diverged { version });
            }
        }
        let mut note = None;
        let mut applied = 0;
        // Deltas are only trusted within a lineage (or from content of unknown lineage that the
        // chain names by checksum, such as a cache file without its metadata).
        if same_lineage || self.lineage.is_none() {
            let full_chain = manifest.chain_from(version, checksum);
            // Catching up through a chain larger than the snapshot would download more than the
            // snapshot: fetch the snapshot instead.
            let cheaper = full_chain.filter(|c| {
                c.iter().fold(0u64, |n, d| n.saturating_add(d.bytes)) <= manifest.snapshot.bytes
            });
            if let Some(chain) = cheaper {
                let (n, result) = self.apply_chain(store, chain);
                applied = n;
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
                    Err(e) => note = Some(format!("{e}; fetched the full snapshot instead")),
                }
            } else if full_chain.is_none()
                && same_lineage
                && manifest.deltas.first().is_some_and(|d| d.from <= version)
            {
                note = Some(format!(
                    "the edge's delta chain has a gap after version {version}; fetched the full \
                     snapshot instead"
                ));
            }
        }
        self.fetch_snapshot(store, &manifest.snapshot)
            .map_err(|e| match &note {
                Some(n) => with_context(e, n),
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
            return Err(SyncError::Artifact {
                url,
                message: format!(
                    "the manifest announces {bytes} bytes, more than max_artifact_bytes \
                     ({}): not downloaded",
                    self.max_artifact_bytes
                ),
            });
        }
        let fetched = self.get(&url, None, self.request_timeout, Limit::Announced(bytes))?;
        let Some(body) = fetched.body else {
            return Err(SyncError::Http { url, status: 304 });
        };
        if body.len() as u64 != bytes {
            return Err(SyncError::Artifact {
                url,
                message: format!(
                    "got {} bytes, the manifest says {bytes}: the body was cut short",
                    body.len()
                ),
            });
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
        let bad = |message: String| SyncError::Artifact {
            url: url.clone(),
            message,
        };
        if trailer(&bytes) != d.checksum {
            return Err(bad(format!(
                "checksum {:016x} is not the {:016x} the manifest names",
                trailer(&bytes),
                d.checksum
            )));
        }
        let delta = Delta::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
        if delta.base() != (d.from, d.from_checksum) || delta.target() != (d.to, d.to_checksum) {
            return Err(bad(format!(
                "it goes from version {} to {}, the manifest says {} to {}",
                delta.base().0,
                delta.target().0,
                d.from,
                d.to
            )));
        }
        store.apply(&delta).map_err(|e| bad(e.to_string()))?;
        Ok(())
    }

    fn fetch_snapshot(&self, store: &Store, entry: &SnapshotEntry) -> Result<(), SyncError> {
        let (url, bytes) = self.fetch_artifact(&entry.path, entry.bytes)?;
        let snapshot = Snapshot::from_bytes(bytes).map_err(|e| SyncError::Artifact {
            url: url.clone(),
            message: e.to_string(),
        })?;
        if (snapshot.version(), snapshot.checksum()) != (entry.version, entry.checksum) {
            return Err(SyncError::Artifact {
                url,
                message: format!(
                    "it is version {} (checksum {:016x}), the manifest names version {} (checksum {:016x})",
                    snapshot.version(),
                    snapshot.checksum(),
                    entry.version,
                    entry.checksum
                ),
            });
        }
        store.replace(snapshot);
        Ok(())
    }

    /// Interrupts requests in flight and refuses new ones (the client cannot be used afterwards).
    fn shutdown_handle(&self) -> ureq::Agent {
        self.agent.clone()
    }
}

fn with_context(e: SyncError, context: &str) -> SyncError {
    match e {
        SyncError::Transport { url, message } => SyncError::Transport {
            url,
            message: format!("{message} (after: {context})"),
        },
        SyncError::Artifact { url, message } => SyncError::Artifact {
            url,
            message: format!("{message} (after: {context})"),
        },
        other => other,
    }
}

struct Fetched {
    body: Option<Vec<u8>>,
    etag: Option<String>,
    long_poll: bool,
}

/// The most redirects followed for one request (all within the edge's origin).
const MAX_REDIRECTS: usize = 4;

/// What bounds a body, for the error that names it.
#[derive(Clone, Copy)]
enum Limit {
    /// A manifest: [`MAX_MANIFEST_BYTES`].
    Manifest,
    /// An artifact: the size its manifest announces.
    Announced(u64),
}

impl Limit {
    fn bytes(self) -> u64 {
        match self {
            Limit::Manifest => MAX_MANIFEST_BYTES as u64,
            Limit::Announced(n) => n,
        }
    }
}

/// The absolute URL a `Location` header names, relative to `current`.
fn resolve_location(current: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_owned());
    }
    let (scheme, rest) = current.split_once("://")?;
    if let Some(net) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{net}"));
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let origin = &current[..scheme.len() + 3 + authority_end];
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = &rest[authority_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{origin}{dir}{location}"))
}

/// Scheme, lower-cased host and port of an `http(s)://` URL.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((scheme, authority.host().to_ascii_lowercase(), port))
}

/// Whether `url` has the same scheme, host and port as `base`.
fn same_origin(url: &str, base: &str) -> bool {
    match (origin(url), origin(base)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The cache directory: `edge-<hash of the URL>.snap` (a plain snapshot, readable by `entitle check`)
// and `edge-<hash>.json` (its lineage and when it was written).

struct Cache {
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

struct Cached {
    snapshot: Snapshot,
    lineage: Option<String>,
    written_at: SystemTime,
}

impl Cache {
    fn new(dir: &Path, url: &str) -> Cache {
        let stem = format!("edge-{:016x}", xxh64(url.as_bytes(), 0));
        Cache {
            snapshot: dir.join(format!("{stem}.snap")),
            meta: dir.join(format!("{stem}.json")),
            url: url.to_owned(),
        }
    }

    /// The cached snapshot; `Ok(None)` when there is none.
    fn load(&self) -> Result<Option<Cached>, String> {
        let bytes = match std::fs::read(&self.snapshot) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.snapshot.display())),
        };
        let snapshot =
            Snapshot::from_bytes(bytes).map_err(|e| format!("{}: {e}", self.snapshot.display()))?;
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

    fn store(
        &self,
        snapshot: &[u8],
        version: u64,
        checksum: u64,
        lineage: &str,
    ) -> Result<(), String> {
        let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        if let Some(dir) = self.snapshot.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        }
        crate::edge::write_file_atomic(&self.snapshot, snapshot, None)
            .map_err(|e| err(&self.snapshot, e))?;
        let meta = CacheMeta {
            url: self.url.clone(),
            lineage: lineage.to_owned(),
            version,
            checksum: format!("{checksum:016x}"),
            written_at: unix_now(),
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
        crate::edge::write_file_atomic(&self.meta, &text, None).map_err(|e| err(&self.meta, e))?;
        if let Some(dir) = self.snapshot.parent() {
            crate::edge::sync_dir(dir);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The sync thread and the state it shares with the engine.

#[derive(Clone, Debug, Default)]
struct Progress {
    stop: bool,
    has_data: bool,
    warm_start: bool,
    fresh_at: Option<SystemTime>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
    last_error_at: Option<i64>,
    cache_error: Option<String>,
    syncs: u64,
    failures: u64,
    consecutive_failures: u64,
    updates: u64,
    deltas_applied: u64,
    snapshots_fetched: u64,
    lineage: Option<String>,
    edge_version: Option<u64>,
    long_poll: bool,
    /// Whether a [`EventKind::Stale`] event was recorded since the last success.
    stale_reported: bool,
}

/// How long until content with this progress goes stale: `None` when that cannot happen now
/// (no content, or already reported), zero when it is stale already.
fn stale_in(p: &Progress, max_staleness: Duration, now: SystemTime) -> Option<Duration> {
    if !p.has_data || p.stale_reported {
        return None;
    }
    let fresh_at = p.fresh_at?;
    let age = now.duration_since(fresh_at).unwrap_or_default();
    Some(max_staleness.saturating_sub(age))
}

struct Shared {
    config: SyncConfig,
    store: Store,
    progress: Mutex<Progress>,
    changed: Condvar,
    agent: Mutex<Option<ureq::Agent>>,
}

/// The engine's handle on its sync thread.
pub(crate) struct SyncHandle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The process the thread runs in. In a child forked without `after_fork()` the thread does not
    /// exist, and locks its copy held at the fork stay locked: the handle then acts as closed.
    pid: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update of the guarded state is a plain field write: a panic cannot leave it torn.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Data age: now minus the content's creation time (`None` when it has none: built at time 0).
pub(crate) fn data_age(created_at: i64) -> Option<Duration> {
    if created_at <= 0 {
        return None;
    }
    let created = UNIX_EPOCH + Duration::from_secs(u64::try_from(created_at).unwrap_or(0));
    Some(
        SystemTime::now()
            .duration_since(created)
            .unwrap_or_default(),
    )
}

/// A small xorshift generator for jitter, seeded from the clock, the process id and a counter so
/// that processes forked from one parent do not draw in step.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut seed = [0u8; 24];
        seed[..8].copy_from_slice(&nanos.to_le_bytes());
        seed[8..16].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
        seed[16..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        Jitter(xxh64(&seed, 0) | 1)
    }

    /// A factor uniformly drawn from `[lo, hi)`.
    fn factor(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (hi - lo) * ((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }
}

const MIN_INTERVAL: Duration = Duration::from_millis(5);

impl Shared {
    fn sleep(&self, d: Duration) -> bool {
        let p = lock(&self.progress);
        if d.is_zero() || p.stop {
            return p.stop;
        }
        let (p, _) = self
            .changed
            .wait_timeout_while(p, d, |p| !p.stop)
            .unwrap_or_else(|e| e.into_inner());
        p.stop
    }

    fn stopping(&self) -> bool {
        lock(&self.progress).stop
    }

    fn backoff(&self, failures: u64, jitter: &mut Jitter) -> Duration {
        let base = self
            .config
            .poll_interval
            .clamp(MIN_INTERVAL, Duration::from_secs(1));
        let cap = self.config.max_backoff.max(base);
        let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        exp.min(cap).mul_f64(jitter.factor(0.5, 1.0))
    }
}

struct Persister {
    cache: Cache,
    persisted: Option<(u64, u64)>,
    last: Option<Instant>,
}

impl Persister {
    /// Writes the store's content to the cache when it changed: at once when the base snapshot is
    /// the content (a fetched or compacted snapshot), else at most once per `interval` (folding the
    /// overlay costs a full build).
    fn persist(
        &mut self,
        store: &Store,
        lineage: Option<&str>,
        interval: Duration,
    ) -> Option<Result<(), String>> {
        let lineage = lineage?;
        let view = store.view();
        let key = (view.version(), view.checksum());
        if self.persisted == Some(key) {
            return None;
        }
        let result = if view.base().checksum() == view.checksum() {
            self.cache
                .store(view.base().as_bytes(), key.0, key.1, lineage)
        } else {
            if self.last.is_some_and(|t| t.elapsed() < interval) {
                return None;
            }
            match view.compact() {
                Ok(s) => self.cache.store(s.as_bytes(), key.0, key.1, lineage),
                Err(e) => Err(format!("folding the content for the cache: {e}")),
            }
        };
        self.last = Some(Instant::now());
        if result.is_ok() {
            self.persisted = Some(key);
        }
        Some(result)
    }
}

fn run(shared: Arc<Shared>, mut client: EdgeClient, mut persister: Option<Persister>) {
    let mut jitter = Jitter::new();
    loop {
        if shared.stopping() {
            break;
        }
        let result = client.round(&shared.store);
        if shared.stopping() {
            // A request cut short by close() is not a fault of the edge.
            break;
        }
        let mut events: Vec<(EventKind, String)> = Vec::new();
        let delay = {
            let mut p = lock(&shared.progress);
            let now = SystemTime::now();
            let delay = match &result {
                Ok(round) => {
                    if p.consecutive_failures > 0 || p.stale_reported {
                        events.push((
                            EventKind::SyncRecovered,
                            format!(
                                "synced again after {} failed round(s)",
                                p.consecutive_failures
                            ),
                        ));
                    }
                    p.stale_reported = false;
                    p.syncs += 1;
                    p.consecutive_failures = 0;
                    p.has_data = true;
                    p.last_success = Some(now);
                    p.fresh_at = Some(now);
                    p.edge_version = round.edge_version.or(p.edge_version);
                    p.long_poll = round.server_long_poll;
                    if let Outcome::Updated {
                        deltas, snapshot, ..
                    } = round.outcome
                    {
                        p.updates += 1;
                        p.deltas_applied += deltas;
                        p.snapshots_fetched += u64::from(snapshot);
                    }
                    if let Some(note) = &round.note {
                        p.last_error = Some(note.clone());
                        p.last_error_at = Some(unix(now));
                    }
                    p.lineage = client.lineage().map(str::to_owned);
                    if round.long_polled {
                        Duration::ZERO
                    } else {
                        let interval = shared.config.poll_interval.max(MIN_INTERVAL);
                        interval.mul_f64(jitter.factor(0.8, 1.2))
                    }
                }
                Err(e) => {
                    p.failures += 1;
                    p.consecutive_failures += 1;
                    p.last_error = Some(e.to_string());
                    p.last_error_at = Some(unix(now));
                    events.push((EventKind::SyncFailed, e.to_string()));
                    shared.backoff(p.consecutive_failures, &mut jitter)
                }
            };
            // Staleness is a matter of time, not of a round: report it once when it is reached,
            // and wake up for it rather than sleep through it.
            let delay = match stale_in(&p, shared.config.max_staleness, now) {
                Some(left) if left.is_zero() => {
                    p.stale_reported = true;
                    events.push((
                        EventKind::Stale,
                        format!(
                            "no successful sync for more than {:?}; serving the last content",
                            shared.config.max_staleness
                        ),
                    ));
                    delay
                }
                Some(left) => delay.min(left + MIN_INTERVAL),
                None => delay,
            };
            shared.changed.notify_all();
            delay
        };
        if let Some(persister) = &mut persister {
            let interval = shared.config.persist_interval;
            if let Some(result) = persister.persist(&shared.store, client.lineage(), interval) {
                if let Err(e) = &result {
                    events.push((EventKind::CacheError, e.clone()));
                }
                lock(&shared.progress).cache_error = result.err();
            }
        }
        let version = shared.store.load().version();
        for (kind, message) in events {
            shared.store.events().push(kind, version, version, message);
        }
        if shared.sleep(delay) {
            break;
        }
    }
    // Stopping (close() or drop): write what the cache does not have yet, whatever
    // `persist_interval` says, so that a restart with the edge down serves the newest content this
    // process had. One snapshot build and one file write at most.
    if let Some(persister) = &mut persister {
        if let Some(result) = persister.persist(&shared.store, client.lineage(), Duration::ZERO) {
            lock(&shared.progress).cache_error = result.err();
        }
    }
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
        let probe = EdgeClient::new(config)?;
        let mut warm = WarmStart {
            snapshot: None,
            progress: Progress::default(),
            lineage: None,
        };
        if let Some(dir) = &config.cache_dir {
            match Cache::new(dir, probe.base_url()).load() {
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
        let persister = config.cache_dir.as_deref().map(|dir| Persister {
            cache: Cache::new(dir, client.base_url()),
            persisted: None,
            last: None,
        });
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
            .map_err(|source| Error::Io {
                path: PathBuf::from("entitle-sync thread"),
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
