//! The sync thread: rounds of the client with pauses between them (polling with jitter, or at
//! once after a long-poll), exponential backoff with jitter after failures, staleness, events
//! in the store's log, and persisting new content to the cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::events::EventKind;
use crate::hash::xxh64;
use crate::store::Store;

use super::cache::{Cache, CacheError};
use super::client::{EdgeClient, Outcome};
use super::config::{unix, SyncConfig, MIN_INTERVAL};
use super::lock;

/// What the sync has done so far, shared by the thread and the status.
#[derive(Clone, Debug, Default)]
pub(super) struct Progress {
    pub(super) stop: bool,
    pub(super) has_data: bool,
    pub(super) warm_start: bool,
    pub(super) fresh_at: Option<SystemTime>,
    pub(super) last_success: Option<SystemTime>,
    pub(super) last_error: Option<String>,
    pub(super) last_error_at: Option<i64>,
    pub(super) cache_error: Option<String>,
    pub(super) syncs: u64,
    pub(super) failures: u64,
    pub(super) consecutive_failures: u64,
    pub(super) updates: u64,
    pub(super) deltas_applied: u64,
    pub(super) snapshots_fetched: u64,
    pub(super) lineage: Option<String>,
    pub(super) edge_version: Option<u64>,
    pub(super) long_poll: bool,
    /// Whether a [`EventKind::Stale`] event was recorded since the last success.
    pub(super) stale_reported: bool,
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

/// The state the thread shares with its handle.
pub(super) struct Shared {
    pub(super) config: SyncConfig,
    pub(super) store: Store,
    pub(super) progress: Mutex<Progress>,
    pub(super) changed: Condvar,
    pub(super) agent: Mutex<Option<ureq::Agent>>,
}

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
        backoff_ceiling(&self.config, failures).mul_f64(jitter.factor(0.5, 1.0))
    }
}

/// The longest pause after `failures` failed rounds in a row (the pause is drawn from its upper
/// half): the poll interval (within 5 ms..1 s) doubled per failure, up to `max_backoff`.
fn backoff_ceiling(config: &SyncConfig, failures: u64) -> Duration {
    let base = config
        .poll_interval
        .clamp(MIN_INTERVAL, Duration::from_secs(1));
    let cap = config.max_backoff.max(base);
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    exp.min(cap)
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

/// Writes new content to the cache.
pub(super) struct Persister {
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
    ) -> Option<Result<(), CacheError>> {
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
                Err(e) => Err(CacheError::Fold(e)),
            }
        };
        self.last = Some(Instant::now());
        if result.is_ok() {
            self.persisted = Some(key);
        }
        Some(result)
    }
}

impl Persister {
    /// A persister to `cache`, which holds nothing of this process yet.
    pub(super) fn new(cache: Cache) -> Persister {
        Persister {
            cache,
            persisted: None,
            last: None,
        }
    }
}

/// The thread's body: rounds until the handle says stop, then a last write to the cache.
pub(super) fn run(shared: Arc<Shared>, mut client: EdgeClient, mut persister: Option<Persister>) {
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
                let error = result.err().map(|e| e.to_string());
                if let Some(e) = &error {
                    events.push((EventKind::CacheError, e.clone()));
                }
                lock(&shared.progress).cache_error = error;
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
            lock(&shared.progress).cache_error = result.err().map(|e| e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_poll_interval_up_to_max_backoff() {
        let ms = Duration::from_millis;
        let config = |poll: u64, max: u64| SyncConfig {
            poll_interval: ms(poll),
            max_backoff: ms(max),
            ..SyncConfig::default()
        };
        for (poll, max, failures, ceiling) in [
            (100, 60_000, 1, 100),
            (100, 60_000, 2, 200),
            (100, 60_000, 4, 800),
            (100, 1_000, 5, 1_000),
            (100, 1_000, 64, 1_000),
            (5_000, 60_000, 1, 1_000),
            (5_000, 60_000, 3, 4_000),
            (1, 60_000, 1, 5),
            (500, 10, 3, 500),
        ] {
            assert_eq!(
                backoff_ceiling(&config(poll, max), failures),
                ms(ceiling),
                "poll {poll} ms, max {max} ms, {failures} failures"
            );
        }
        let mut jitter = Jitter::new();
        for _ in 0..1000 {
            let f = jitter.factor(0.5, 1.0);
            assert!((0.5..1.0).contains(&f), "{f}");
        }
    }

    #[test]
    fn staleness_is_due_once_per_outage_and_only_with_content() {
        let now = SystemTime::now();
        let max = Duration::from_secs(120);
        let fresh = |ago: u64| Progress {
            has_data: true,
            fresh_at: Some(now - Duration::from_secs(ago)),
            ..Progress::default()
        };
        assert_eq!(
            stale_in(&fresh(20), max, now),
            Some(Duration::from_secs(100))
        );
        assert_eq!(stale_in(&fresh(500), max, now), Some(Duration::ZERO));
        let reported = Progress {
            stale_reported: true,
            ..fresh(500)
        };
        assert_eq!(stale_in(&reported, max, now), None);
        let empty = Progress {
            has_data: false,
            ..fresh(500)
        };
        assert_eq!(stale_in(&empty, max, now), None);
    }
}
