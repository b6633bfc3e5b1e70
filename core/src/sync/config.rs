//! How an engine syncs (its configuration and the checks on it) and what it reports (its state
//! and status): plain values, no I/O.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::edge::{MANIFEST_FILE, MAX_LONG_POLL_SECONDS};
use crate::error::Error;
use crate::view::View;

/// The shortest pause between two rounds, and the least time a request is given.
pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(5);

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

impl SyncConfig {
    /// The edge's base URL from [`SyncConfig::url`]: trimmed, without `manifest.json` or trailing
    /// slashes; also checks the token.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a URL that is not `http://` or `https://`, or a token that is
    /// not printable ASCII.
    pub(super) fn edge_base(&self) -> Result<String, Error> {
        let mut base = self.url.trim().to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::InvalidConfig {
                setting: "url",
                message: format!(
                    "{:?}: the edge URL must start with http:// or https://",
                    self.url
                ),
            });
        }
        if let Some(stripped) = base.strip_suffix(MANIFEST_FILE) {
            base = stripped.to_owned();
        }
        while base.ends_with('/') {
            base.pop();
        }
        if let Some(t) = &self.token {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::InvalidConfig {
                    setting: "token",
                    message: "the token must be non-empty printable ASCII without spaces".into(),
                });
            }
        }
        Ok(base)
    }

    /// The long-poll wait to ask for, in whole seconds (at most the protocol's maximum).
    pub(super) fn long_poll_seconds(&self) -> Option<u64> {
        self.long_poll
            .map(|d| d.as_secs().min(MAX_LONG_POLL_SECONDS))
            .filter(|&s| s > 0)
    }

    /// [`SyncConfig::max_artifact_bytes`], with 0 meaning the default.
    pub(super) fn artifact_limit(&self) -> u64 {
        if self.max_artifact_bytes == 0 {
            DEFAULT_MAX_ARTIFACT_BYTES
        } else {
            self.max_artifact_bytes
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

/// Unix seconds of `t` (0 before the epoch).
pub(super) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Data age: now minus the content's creation time (`None` when it has none: built at time 0).
pub(super) fn data_age(created_at: i64) -> Option<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_base_is_normalized_and_bad_settings_are_invalid_config() {
        for (url, base) in [
            ("http://edge", "http://edge"),
            (" https://edge/x/ ", "https://edge/x"),
            ("http://edge/x/manifest.json", "http://edge/x"),
            ("http://edge//", "http://edge"),
        ] {
            assert_eq!(SyncConfig::new(url).edge_base().ok().as_deref(), Some(base));
        }
        let bad_token = |t: &str| SyncConfig {
            token: Some(t.into()),
            ..SyncConfig::new("http://edge")
        };
        for (config, setting) in [
            (SyncConfig::new("ftp://edge"), "url"),
            (SyncConfig::new(""), "url"),
            (bad_token(""), "token"),
            (bad_token("has space"), "token"),
            (bad_token("line\nbreak"), "token"),
        ] {
            match config.edge_base() {
                Err(Error::InvalidConfig { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{config:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn zero_means_the_default_artifact_limit_and_long_polls_are_capped() {
        let config = SyncConfig {
            max_artifact_bytes: 0,
            long_poll: Some(Duration::from_secs(600)),
            ..SyncConfig::new("http://edge")
        };
        assert_eq!(config.artifact_limit(), DEFAULT_MAX_ARTIFACT_BYTES);
        assert_eq!(config.long_poll_seconds(), Some(MAX_LONG_POLL_SECONDS));
        let config = SyncConfig {
            max_artifact_bytes: 7,
            long_poll: Some(Duration::from_millis(900)),
            ..config
        };
        assert_eq!(config.artifact_limit(), 7);
        assert_eq!(config.long_poll_seconds(), None);
    }
}
