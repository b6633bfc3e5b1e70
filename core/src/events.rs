//! Engine events: a bounded ring of what happened to an engine (version changes, sync failures and
//! recoveries, staleness, cache problems) that consumers wait on. Lookups never touch it.
//!
//! Every writer of the content (sync, [`Engine::replace`](crate::Engine::replace),
//! [`Engine::apply_delta`](crate::Engine::apply_delta)) records a
//! [`EventKind::VersionChanged`] when the version moves; compaction keeps the version and records
//! nothing. The sync thread records failures, recoveries, staleness and cache problems. Each event
//! gets the next sequence number (from 1); the ring keeps the last [`EVENT_RING_CAPACITY`], so a
//! consumer that fell behind gets the oldest kept event and sees the gap in `seq`.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use entitle_core::{Engine, EventKind, WaitError};
//! let catalog = br#"{"features": [{"key": "sso", "type": "flag"}]}"#;
//! let engine = Engine::from_catalog_json(catalog)?;
//! // Nothing happened yet.
//! assert_eq!(engine.next_event(0, Duration::ZERO), Err(WaitError::Timeout));
//!
//! let catalog = entitle_core::Catalog::from_json(catalog)?;
//! let options = entitle_core::BuildOptions { version: 7, created_at: 0 };
//! engine.replace(entitle_core::Snapshot::build(&catalog, options)?);
//! let event = engine.next_event(0, Duration::from_secs(1))?;
//! assert_eq!((event.seq, event.kind), (1, EventKind::VersionChanged));
//! assert_eq!((event.old_version, event.new_version), (0, 7));
//!
//! engine.close();
//! assert_eq!(engine.next_event(event.seq, Duration::from_secs(60)), Err(WaitError::Closed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many recent events an engine keeps for consumers that fall behind.
pub const EVENT_RING_CAPACITY: usize = 256;

/// What happened. The numbers are part of the C ABI (`entitle_event.kind`) and never change.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The content version changed (`old_version` → `new_version`): a sync round, a replacement
    /// or a delta applied by the application.
    VersionChanged = 1,
    /// A sync round failed; the message says why. The engine keeps serving its last content.
    SyncFailed = 2,
    /// A sync round succeeded after failures (or after the content went stale).
    SyncRecovered = 3,
    /// The content has not been confirmed by the edge for longer than `max_staleness`.
    Stale = 4,
    /// The cache file could not be read or written; the message says why. Syncing goes on.
    CacheError = 5,
}

impl EventKind {
    /// `"version_changed"`, `"sync_failed"`, `"sync_recovered"`, `"stale"` or `"cache_error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::VersionChanged => "version_changed",
            EventKind::SyncFailed => "sync_failed",
            EventKind::SyncRecovered => "sync_recovered",
            EventKind::Stale => "stale",
            EventKind::CacheError => "cache_error",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened to an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its sequence number: 1 for an engine's first event, then one more for each.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The version before (for [`EventKind::VersionChanged`]); the current version otherwise.
    pub old_version: u64,
    /// The version after (for [`EventKind::VersionChanged`]); the current version otherwise.
    pub new_version: u64,
    /// When it happened, in unix milliseconds.
    pub at_ms: i64,
    /// A human-readable detail: the sync error, the cache problem, or a summary.
    pub message: String,
}

/// Why [`Engine::next_event`](crate::Engine::next_event) returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The timeout ran out before an event came.
    Timeout,
    /// The engine is closed and has no later event.
    Closed,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitError::Timeout => "no event before the timeout",
            WaitError::Closed => "the engine is closed",
        })
    }
}

impl std::error::Error for WaitError {}

#[derive(Default)]
struct Ring {
    events: VecDeque<Event>,
    /// The sequence number of the last event recorded (0: none yet).
    last_seq: u64,
    closed: bool,
}

/// The event ring with its waiters. Shared by the store's handles (the engine and its sync thread).
pub(crate) struct EventLog {
    ring: Mutex<Ring>,
    arrived: Condvar,
    /// Mirrors of `ring.last_seq` and `ring.closed`, readable without the lock (after a fork, the
    /// lock may be held by a thread that does not exist in the child).
    last_seq: AtomicU64,
    closed: AtomicBool,
}

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    // Every update of the ring is a push, a pop or a flag write: a panic cannot leave it torn.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl EventLog {
    pub(crate) fn new() -> EventLog {
        EventLog::continuing(0, false)
    }

    /// A log whose next event is `last_seq + 1`, closed or not: the child's log after a fork.
    fn continuing(last_seq: u64, closed: bool) -> EventLog {
        EventLog {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                last_seq,
                closed,
            }),
            arrived: Condvar::new(),
            last_seq: AtomicU64::new(last_seq),
            closed: AtomicBool::new(closed),
        }
    }

    /// The log a forked child continues with: the same numbering and closed state, no history and
    /// no lock state inherited from the parent's threads.
    pub(crate) fn for_child(&self) -> EventLog {
        EventLog::continuing(
            self.last_seq.load(Ordering::Acquire),
            self.closed.load(Ordering::Acquire),
        )
    }

    /// Records an event and wakes every waiter.
    pub(crate) fn push(
        &self,
        kind: EventKind,
        old_version: u64,
        new_version: u64,
        message: impl Into<String>,
    ) {
        let mut ring = lock(&self.ring);
        ring.last_seq += 1;
        let event = Event {
            seq: ring.last_seq,
            kind,
            old_version,
            new_version,
            at_ms: unix_ms(),
            message: message.into(),
        };
        if ring.events.len() == EVENT_RING_CAPACITY {
            ring.events.pop_front();
        }
        ring.events.push_back(event);
        self.last_seq.store(ring.last_seq, Ordering::Release);
        drop(ring);
        self.arrived.notify_all();
    }

    /// Marks the log closed and wakes every waiter. Idempotent.
    pub(crate) fn close(&self) {
        let mut ring = lock(&self.ring);
        ring.closed = true;
        self.closed.store(true, Ordering::Release);
        drop(ring);
        self.arrived.notify_all();
    }

    /// The sequence number of the last event recorded (0: none yet).
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// The first kept event after `after_seq`, waiting up to `timeout` for one.
    pub(crate) fn next(&self, after_seq: u64, timeout: Duration) -> Result<Event, WaitError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut ring = lock(&self.ring);
        loop {
            if after_seq < ring.last_seq {
                let first = ring.events.front().map_or(ring.last_seq, |e| e.seq);
                // Seqs in the ring are contiguous: index directly, or give the oldest kept event
                // to a consumer that fell behind.
                let index = usize::try_from((after_seq + 1).saturating_sub(first)).unwrap_or(0);
                if let Some(e) = ring.events.get(index) {
                    return Ok(e.clone());
                }
            }
            if ring.closed {
                return Err(WaitError::Closed);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                // A timeout too long to represent: wait in long slices, forever.
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(WaitError::Timeout);
            }
            ring = self
                .arrived
                .wait_timeout(ring, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn numbers_events_and_returns_the_first_after_a_seq() {
        let log = EventLog::new();
        assert_eq!(log.next(0, Duration::ZERO), Err(WaitError::Timeout));
        log.push(EventKind::VersionChanged, 0, 1, "a");
        log.push(EventKind::SyncFailed, 1, 1, "b");
        let e = log.next(0, Duration::ZERO).unwrap();
        assert_eq!(
            (e.seq, e.kind, e.message.as_str()),
            (1, EventKind::VersionChanged, "a")
        );
        let e = log.next(1, Duration::ZERO).unwrap();
        assert_eq!((e.seq, e.kind), (2, EventKind::SyncFailed));
        assert_eq!(log.next(2, Duration::ZERO), Err(WaitError::Timeout));
        assert_eq!(log.last_seq(), 2);
        assert!(e.at_ms > 1_600_000_000_000);
    }

    #[test]
    fn a_consumer_that_fell_behind_gets_the_oldest_kept_event() {
        let log = EventLog::new();
        let total = EVENT_RING_CAPACITY as u64 + 10;
        for v in 1..=total {
            log.push(EventKind::VersionChanged, v - 1, v, "");
        }
        let oldest = log.next(0, Duration::ZERO).unwrap();
        assert_eq!(oldest.seq, 11);
        assert_eq!(log.next(5, Duration::ZERO).unwrap().seq, 11);
        assert_eq!(log.next(11, Duration::ZERO).unwrap().seq, 12);
        assert_eq!(log.next(total - 1, Duration::ZERO).unwrap().seq, total);
        assert_eq!(log.next(total, Duration::ZERO), Err(WaitError::Timeout));
        // A seq from the future (another process, say) waits like one that is up to date.
        assert_eq!(
            log.next(total + 100, Duration::ZERO),
            Err(WaitError::Timeout)
        );
    }

    #[test]
    fn close_wakes_waiters_after_they_drained_the_ring() {
        let log = Arc::new(EventLog::new());
        log.push(EventKind::Stale, 3, 3, "old");
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || log.next(1, Duration::from_secs(600)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        log.close();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(WaitError::Closed));
        }
        // Events recorded before the close are still delivered; then CLOSED at once.
        assert_eq!(log.next(0, Duration::from_secs(600)).unwrap().seq, 1);
        assert_eq!(log.next(1, Duration::MAX), Err(WaitError::Closed));
    }

    #[test]
    fn a_waiter_wakes_for_a_new_event() {
        let log = Arc::new(EventLog::new());
        let waiter = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || log.next(0, Duration::MAX))
        };
        std::thread::sleep(Duration::from_millis(20));
        log.push(EventKind::CacheError, 0, 0, "disk full");
        let e = waiter.join().unwrap().unwrap();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (EventKind::CacheError, "disk full")
        );
    }

    #[test]
    fn a_child_log_continues_the_numbering_without_history() {
        let log = EventLog::new();
        log.push(EventKind::VersionChanged, 0, 1, "");
        log.push(EventKind::VersionChanged, 1, 2, "");
        let child = log.for_child();
        assert_eq!(child.next(0, Duration::ZERO), Err(WaitError::Timeout));
        child.push(EventKind::VersionChanged, 2, 3, "");
        assert_eq!(child.next(0, Duration::ZERO).unwrap().seq, 3);
        log.close();
        assert_eq!(
            log.for_child().next(2, Duration::ZERO),
            Err(WaitError::Closed)
        );
    }
}
