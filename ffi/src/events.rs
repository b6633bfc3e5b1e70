//! Engine events: waiting for version changes, sync failures and recoveries, staleness and cache
//! problems, from any thread, off the lookup path.

use std::time::Duration;

use entitle_core::{Error, EventKind, WaitError};

use crate::engine::{engine_arg, entitle_engine};
use crate::error::{entitle_result, guard, Failure};

/// What an `entitle_event` reports (its `kind`). The numbers are stable.
/// cbindgen:prefix-with-name=false
/// cbindgen:rename-all=None
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum entitle_event_kind {
    /// The content version changed, `old_version` → `new_version`: a sync round, or a
    /// replacement or delta applied by the application. Compaction never changes the version.
    ENTITLE_EVENT_VERSION_CHANGED = 1,
    /// A sync round failed; the message says why. The engine keeps serving its last content and
    /// retries with backoff.
    ENTITLE_EVENT_SYNC_FAILED = 2,
    /// A sync round succeeded after failures, or after the content went stale.
    ENTITLE_EVENT_SYNC_RECOVERED = 3,
    /// The content has not been confirmed by the edge for longer than `max_staleness_ms`.
    /// Reported once per stale period.
    ENTITLE_EVENT_STALE = 4,
    /// The cache file could not be read or written; the message says why. Syncing goes on.
    ENTITLE_EVENT_CACHE_ERROR = 5,
}

impl From<EventKind> for entitle_event_kind {
    fn from(k: EventKind) -> entitle_event_kind {
        match k {
            EventKind::VersionChanged => entitle_event_kind::ENTITLE_EVENT_VERSION_CHANGED,
            EventKind::SyncFailed => entitle_event_kind::ENTITLE_EVENT_SYNC_FAILED,
            EventKind::SyncRecovered => entitle_event_kind::ENTITLE_EVENT_SYNC_RECOVERED,
            EventKind::Stale => entitle_event_kind::ENTITLE_EVENT_STALE,
            EventKind::CacheError => entitle_event_kind::ENTITLE_EVENT_CACHE_ERROR,
        }
    }
}

/// One thing that happened to an engine, written by `entitle_engine_next_event` into a
/// caller-owned struct. Its message travels separately (see there).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct entitle_event {
    /// The event's sequence number: 1 for the engine's first, then one more for each. Pass it as
    /// `after_seq` to get the next one.
    pub seq: u64,
    /// What happened (an `entitle_event_kind`; treat unknown numbers as informational).
    pub kind: u32,
    /// The version before, for `ENTITLE_EVENT_VERSION_CHANGED`; the current version otherwise.
    pub old_version: u64,
    /// The version after, for `ENTITLE_EVENT_VERSION_CHANGED`; the current version otherwise.
    pub new_version: u64,
    /// When it happened, in unix milliseconds.
    pub at_ms: i64,
}

/// The longest prefix of `s` of at most `cap` bytes that ends on a character boundary.
fn truncated(s: &str, cap: usize) -> &str {
    if s.len() <= cap {
        return s;
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Waits up to `timeout_ms` milliseconds for the engine's first event with a sequence number
/// above `after_seq`, and writes it to `*out`.
///
/// Events are version changes from any writer (sync, `entitle_engine_replace_*`,
/// `entitle_engine_apply_delta`), sync failures, recoveries, staleness and cache problems. Pass 0
/// the first time, then the `seq` of the last event handled. The engine keeps a bounded ring of
/// recent events (256): a consumer that fell further behind gets the oldest kept one and sees the
/// gap in `seq`. The event's message (UTF-8, truncated at a character boundary to `msg_cap`
/// bytes, not NUL-terminated) is copied into `msg_buf` and its length into `*msg_len`; a
/// 1024-byte buffer holds every message in practice.
///
/// `entitle_engine_close` wakes every waiter: once a waiter has seen every event, it gets
/// `CLOSED`. Lookups never touch the events. Blocks only the calling thread: run it on a thread of
/// its own (one per engine), never on the lookup path. A `timeout_ms` of 0 polls;
/// `UINT64_MAX` waits as long as it takes.
///
/// # Errors
/// `TIMEOUT` (no such event yet; nothing written), `CLOSED` (the engine is closed and has no later
/// event; nothing written), `NULL_PARAMETER` (`engine` or `out` NULL, or `msg_buf` NULL with
/// `msg_cap` > 0), `PANIC`.
///
/// # Safety
/// `engine` must be a live engine, and stay live until the call returns: close it
/// (`entitle_engine_close`) to end every wait, and free it only after each waiting call has
/// returned. `out` must be valid for writing an `entitle_event`; `msg_buf` valid for writing
/// `msg_cap` bytes (or NULL with `msg_cap` 0); `msg_len` NULL or valid for writing a `size_t`.
/// All stay owned by the caller. Safe from any thread, concurrently with every other call except
/// `entitle_engine_free`.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_next_event(
    engine: *const entitle_engine,
    after_seq: u64,
    timeout_ms: u64,
    out: *mut entitle_event,
    msg_buf: *mut u8,
    msg_cap: usize,
    msg_len: *mut usize,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine or NULL.
        let engine = unsafe { engine_arg(engine) }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        if msg_buf.is_null() && msg_cap != 0 {
            return Err(Failure::null("msg_buf"));
        }
        let event = engine
            .next_event(after_seq, Duration::from_millis(timeout_ms))
            .map_err(|e| {
                let detail = match e {
                    WaitError::Timeout => {
                        format!("no event after {after_seq} within {timeout_ms} ms")
                    }
                    WaitError::Closed => {
                        format!("the engine is closed and has no event after {after_seq}")
                    }
                };
                Failure::from(Error::from(e)).with_detail(detail)
            })?;
        let message = truncated(&event.message, msg_cap);
        if !message.is_empty() {
            // SAFETY: `msg_buf` is non-NULL here (message non-empty implies `msg_cap` > 0) and
            // writable for `msg_cap` >= `message.len()` bytes; a Rust String never overlaps it.
            unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), msg_buf, message.len()) };
        }
        if !msg_len.is_null() {
            // SAFETY: non-NULL; the caller guarantees it is writable.
            unsafe { msg_len.write(message.len()) };
        }
        let kind: entitle_event_kind = event.kind.into();
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe {
            out.write(entitle_event {
                seq: event.seq,
                kind: kind as u32,
                old_version: event.old_version,
                new_version: event.new_version,
                at_ms: event.at_ms,
            })
        };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::truncated;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncated("héllo", 100), "héllo");
        assert_eq!(truncated("héllo", 2), "h");
        assert_eq!(truncated("héllo", 3), "hé");
        assert_eq!(truncated("€", 2), "");
        assert_eq!(truncated("", 0), "");
    }
}
