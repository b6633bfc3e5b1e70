//! Engines that sync from an edge: connect, wait, status, close, and the fork hook.

use std::time::Duration;

use entitle_core::{Engine, SyncConfig, SyncState};

use crate::engine::{engine_arg, engine_ref, entitle_engine, hand_out};
use crate::error::{entitle_result, guard, guard_value, Failure};
use crate::input::{arg_path, arg_str};

/// How an engine connects to an edge; read by `entitle_engine_connect` during the call only.
///
/// Zero-initialize it (`entitle_sync_config config = {0};`) and set `url`: every other field has a
/// default. Strings are `(pointer, length)` pairs in UTF-8; a NULL pointer with length 0 means
/// "not set". A duration of 0 picks the default shown.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct entitle_sync_config {
    /// The edge's base URL, `http://` or `https://` (the manifest is `{url}/manifest.json`).
    /// Required.
    pub url: *const u8,
    /// Length of `url` in bytes.
    pub url_len: usize,
    /// A bearer token sent with every request (printable ASCII), or NULL for none.
    pub token: *const u8,
    /// Length of `token` in bytes.
    pub token_len: usize,
    /// A directory for the last good snapshot, or NULL for none. With a cached snapshot a new engine
    /// serves at once, before (or without) reaching the edge.
    pub cache_dir: *const u8,
    /// Length of `cache_dir` in bytes.
    pub cache_dir_len: usize,
    /// Time between manifest checks, in milliseconds (default 5000; varied by ±20 %).
    pub poll_interval_ms: u64,
    /// Time allowed to connect (TCP and TLS), in milliseconds (default 2000).
    pub connect_timeout_ms: u64,
    /// Time allowed for one whole request, in milliseconds (default 60000).
    pub request_timeout_ms: u64,
    /// After this long without a successful sync, the state is `ENTITLE_SYNC_STATE_STALE`, in
    /// milliseconds (default 120000).
    pub max_staleness_ms: u64,
    /// Ask the edge to hold manifest requests up to this long and answer as soon as a new version is
    /// published, in milliseconds (at most 25000); 0 (the default) polls instead.
    pub long_poll_ms: u64,
    /// The longest pause between retries after failures, in milliseconds (default 60000).
    pub max_backoff_ms: u64,
    /// The shortest time between two cache writes after deltas, in milliseconds (default 30000).
    pub persist_interval_ms: u64,
    /// The largest snapshot or delta the engine downloads, in bytes after decompression (0: the
    /// default, 268435456 = 256 MiB). A larger one is refused, before it is requested when the
    /// manifest announces it; the status reports it and the engine keeps its content.
    pub max_artifact_bytes: u64,
}

/// Where an engine's sync stands (`entitle_status.state`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum entitle_sync_state {
    /// No content yet and no sync round has finished: answers come from an empty snapshot (every
    /// feature is unknown).
    Starting = 0,
    /// Serving content confirmed by the edge (or read from the cache) within `max_staleness_ms`.
    /// Engines that do not sync are always ready.
    Ready = 1,
    /// Serving content, but the last confirmation is older than `max_staleness_ms`.
    Stale = 2,
    /// No content, and syncing has failed so far: answers come from an empty snapshot.
    Failed = 3,
}

impl From<SyncState> for entitle_sync_state {
    fn from(s: SyncState) -> entitle_sync_state {
        match s {
            SyncState::Starting => entitle_sync_state::Starting,
            SyncState::Ready => entitle_sync_state::Ready,
            SyncState::Stale => entitle_sync_state::Stale,
            SyncState::Failed => entitle_sync_state::Failed,
        }
    }
}

/// A snapshot of an engine's sync status, written by `entitle_engine_status` into a caller-owned
/// struct. Optional values come with a `has_` flag; the texts (last error, cache error, lineage) are
/// read with `entitle_engine_status_text`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct entitle_status {
    /// Where the sync stands (an `entitle_sync_state`).
    pub state: entitle_sync_state,
    /// Whether the engine syncs from an edge (made by `entitle_engine_connect`).
    pub syncing: bool,
    /// Whether the content was read from the cache directory at start.
    pub warm_start: bool,
    /// Whether the edge honors long-polling.
    pub long_poll: bool,
    /// Whether `last_success` is set.
    pub has_last_success: bool,
    /// Whether `data_age_ms` is set.
    pub has_data_age: bool,
    /// Whether `last_error_at` is set.
    pub has_last_error_at: bool,
    /// Whether `edge_version` is set.
    pub has_edge_version: bool,
    /// The content version being served.
    pub version: u64,
    /// When a sync round last succeeded (unix seconds).
    pub last_success: i64,
    /// How old the content is (now minus its creation time), in milliseconds.
    pub data_age_ms: u64,
    /// When the last error happened (unix seconds).
    pub last_error_at: i64,
    /// The latest version the edge announced.
    pub edge_version: u64,
    /// Successful sync rounds (including those that found nothing new).
    pub syncs: u64,
    /// Failed sync rounds.
    pub failures: u64,
    /// Failed rounds since the last success.
    pub consecutive_failures: u64,
    /// Rounds that changed the content.
    pub updates: u64,
    /// Deltas applied.
    pub deltas_applied: u64,
    /// Full snapshots fetched from the edge.
    pub snapshots_fetched: u64,
    /// Length in bytes of the last sync error's text (0: none).
    pub last_error_len: usize,
    /// Length in bytes of the last cache problem's text (0: none).
    pub cache_error_len: usize,
}

/// Which text `entitle_engine_status_text` copies.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum entitle_status_text {
    /// The most recent sync error (kept after recovery: compare `last_error_at` with
    /// `last_success`).
    LastError = 0,
    /// The last problem with the cache file (unreadable, corrupt, unwritable).
    CacheError = 1,
    /// The lineage of the content being served, when known.
    Lineage = 2,
}

fn millis(ms: u64, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(ms)
    }
}

/// An optional `(ptr, len)` string: NULL with length 0 is "not set".
///
/// # Safety
/// As for `arg_str`.
unsafe fn optional_str(
    ptr: *const u8,
    len: usize,
    what: &'static str,
) -> Result<Option<String>, Failure> {
    if ptr.is_null() && len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded to the caller.
    Ok(Some(unsafe { arg_str(ptr, len, what) }?.to_owned()))
}

/// Reads a C configuration into a [`SyncConfig`].
///
/// # Safety
/// Every string of `c` must be valid for reading its length in bytes.
unsafe fn sync_config(c: &entitle_sync_config) -> Result<SyncConfig, Failure> {
    let d = SyncConfig::default();
    // SAFETY: forwarded to the caller.
    let url = unsafe { arg_str(c.url, c.url_len, "config.url") }?;
    Ok(SyncConfig {
        url: url.to_owned(),
        // SAFETY: forwarded to the caller.
        token: unsafe { optional_str(c.token, c.token_len, "config.token") }?,
        // SAFETY: forwarded to the caller.
        cache_dir: if c.cache_dir.is_null() && c.cache_dir_len == 0 {
            None
        } else {
            // SAFETY: forwarded to the caller.
            Some(unsafe { arg_path(c.cache_dir, c.cache_dir_len, "config.cache_dir") }?)
        },
        poll_interval: millis(c.poll_interval_ms, d.poll_interval),
        connect_timeout: millis(c.connect_timeout_ms, d.connect_timeout),
        request_timeout: millis(c.request_timeout_ms, d.request_timeout),
        max_staleness: millis(c.max_staleness_ms, d.max_staleness),
        long_poll: (c.long_poll_ms > 0).then(|| Duration::from_millis(c.long_poll_ms)),
        max_backoff: millis(c.max_backoff_ms, d.max_backoff),
        persist_interval: millis(c.persist_interval_ms, d.persist_interval),
        max_artifact_bytes: if c.max_artifact_bytes == 0 {
            d.max_artifact_bytes
        } else {
            c.max_artifact_bytes
        },
    })
}

/// Creates an engine that keeps itself up to date from an edge, in a background thread.
///
/// Returns at once, without waiting for the network: with a snapshot in `config->cache_dir` the
/// engine serves it immediately; otherwise it serves an empty snapshot (every feature unknown,
/// reason `ENTITLE_REASON_FEATURE_NOT_FOUND`) until the first sync succeeds. Use
/// `entitle_engine_wait_ready` to wait for content and `entitle_engine_status` to watch the sync.
/// An unreachable edge is not an error here: the engine retries with backoff and reports it in its
/// status. On success `*out` receives a new engine owned by the caller; `entitle_engine_free` stops
/// the thread and releases it (`entitle_engine_close` stops the thread earlier).
///
/// # Errors
/// `NULL_PARAMETER` (`config`, `out`, or a set string NULL with a length), `INVALID_PARAMETER`,
/// `INVALID_UTF8` (a string of the config), `INVALID_CONFIG` (a URL that is not `http://` or
/// `https://`, a token that is not printable ASCII), `IO` (the thread cannot be started), `PANIC`.
///
/// # Safety
/// `config` must point to an initialized `entitle_sync_config` whose strings are valid for reading
/// their lengths during the call (they are copied; the caller keeps them). `out` must be valid for
/// writing a pointer. Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_connect(
    config: *const entitle_sync_config,
    out: *mut *mut entitle_engine,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees an initialized config or NULL.
        let config = unsafe { config.as_ref() }.ok_or_else(|| Failure::null("config"))?;
        // SAFETY: the caller guarantees the config's strings are readable.
        let config = unsafe { sync_config(config) }?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let engine = Engine::connect(config).map_err(Failure::from)?;
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { hand_out(out, engine, true) };
        Ok(())
    })
}

/// Waits until the engine has content (from its cache or a first successful sync), at most
/// `timeout_ms` milliseconds. Returns whether it has. Engines that do not sync have content from the
/// start and return true at once; a closed engine that never got content returns false at once; a
/// NULL engine returns false.
///
/// Blocks the calling thread (lookups on other threads go on meanwhile).
///
/// # Safety
/// `engine` must be NULL or a live engine. Safe to call concurrently from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_wait_ready(
    engine: *const entitle_engine,
    timeout_ms: u64,
) -> bool {
    guard_value(false, || {
        // SAFETY: the caller guarantees a live engine or NULL.
        unsafe { engine_ref(engine) }
            .is_some_and(|e| e.wait_ready(Duration::from_millis(timeout_ms)))
    })
}

/// Writes the engine's sync status into the caller's `*out`.
///
/// Engines that do not sync report `ENTITLE_SYNC_STATE_READY`, their version, and zero counters.
///
/// # Errors
/// `NULL_PARAMETER` (`engine` or `out` NULL), `PANIC`. On error `*out` is untouched.
///
/// # Safety
/// `engine` must be a live engine; `out` must be valid for writing an `entitle_status` (owned by
/// the caller). Safe to call concurrently from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_status(
    engine: *const entitle_engine,
    out: *mut entitle_status,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine or NULL.
        let handle = unsafe { engine.as_ref() }.ok_or_else(|| Failure::null("engine"))?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let syncing = handle.syncing;
        let s = handle.inner.status();
        let status = entitle_status {
            state: s.state.into(),
            syncing,
            warm_start: s.warm_start,
            long_poll: s.long_poll,
            has_last_success: s.last_success.is_some(),
            has_data_age: s.data_age.is_some(),
            has_last_error_at: s.last_error_at.is_some(),
            has_edge_version: s.edge_version.is_some(),
            version: s.version,
            last_success: s.last_success.unwrap_or(0),
            data_age_ms: s
                .data_age
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            last_error_at: s.last_error_at.unwrap_or(0),
            edge_version: s.edge_version.unwrap_or(0),
            syncs: s.syncs,
            failures: s.failures,
            consecutive_failures: s.consecutive_failures,
            updates: s.updates,
            deltas_applied: s.deltas_applied,
            snapshots_fetched: s.snapshots_fetched,
            last_error_len: s.last_error.as_ref().map_or(0, String::len),
            cache_error_len: s.cache_error.as_ref().map_or(0, String::len),
        };
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { out.write(status) };
        Ok(())
    })
}

/// Copies one of the engine's status texts (an `entitle_status_text`: the last sync error, the last
/// cache problem, or the content's lineage) into `buf`, UTF-8 without a NUL terminator, and its
/// length into `*out_len` (0 when there is none).
///
/// The texts change as the sync goes on: size `buf` from `entitle_status` and retry on
/// `BUFFER_TOO_SMALL`, or simply use a generous buffer.
///
/// # Errors
/// `NULL_PARAMETER` (`engine` or `out_len` NULL, or `buf` NULL with `buf_len` > 0),
/// `INVALID_PARAMETER` (unknown `which`), `BUFFER_TOO_SMALL` (nothing written), `PANIC`.
///
/// # Safety
/// `engine` must be a live engine; `buf` must be valid for writing `buf_len` bytes (or NULL with
/// `buf_len` 0); `out_len` must be valid for writing a `size_t`. Safe from any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_status_text(
    engine: *const entitle_engine,
    which: u32,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> entitle_result {
    guard(|| {
        // SAFETY: the caller guarantees a live engine or NULL.
        let engine = unsafe { engine_arg(engine) }?;
        if out_len.is_null() {
            return Err(Failure::null("out_len"));
        }
        if buf.is_null() && buf_len != 0 {
            return Err(Failure::null("buf"));
        }
        let status = engine.status();
        let text = match which {
            0 => status.last_error,
            1 => status.cache_error,
            2 => status.lineage,
            _ => {
                return Err(Failure::new(
                    entitle_result::InvalidParameter,
                    format!("unknown status text {which}"),
                ))
            }
        }
        .unwrap_or_default();
        if text.len() > buf_len {
            return Err(Failure::new(
                entitle_result::BufferTooSmall,
                format!(
                    "the text needs {} bytes, the buffer has {buf_len}",
                    text.len()
                ),
            ));
        }
        if !text.is_empty() {
            // SAFETY: `buf` is non-NULL here (text non-empty and `buf_len` >= its length) and
            // writable for `buf_len` bytes; a Rust String never overlaps it.
            unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf, text.len()) };
        }
        // SAFETY: non-NULL; the caller guarantees it is writable.
        unsafe { out_len.write(text.len()) };
        Ok(())
    })
}

/// Closes the engine: stops its sync thread, if any, and waits for it (requests in flight are
/// interrupted; a TCP connect in progress may first run out its `connect_timeout_ms`), then wakes
/// every `entitle_engine_next_event` waiter, which returns `CLOSED` once it has seen every event.
/// The engine keeps answering lookups from its last content until it is freed. Idempotent; NULL is
/// a no-op. `entitle_engine_free` closes too, but must not be called while another thread waits in
/// `entitle_engine_next_event`: close first, let the waiters return, then free. Closing lets a
/// program stop the network activity and its event listeners at a point of its choosing (at
/// shutdown, before the interpreter exits).
///
/// # Safety
/// `engine` must be NULL or a live engine. Safe to call concurrently with lookups and waits from
/// any thread.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_close(engine: *mut entitle_engine) {
    guard_value((), || {
        // SAFETY: the caller guarantees a live engine or NULL.
        if let Some(e) = unsafe { engine_ref(engine) } {
            e.close();
        }
    });
}

/// Restarts the engine's background threads in a child process after `fork()`: threads do not
/// survive a fork, so without this a child's engine would silently stop syncing. Call it in the
/// child, before the child uses the engine, once per fork (pre-fork servers: from the
/// post-fork hook in each worker). The content, status counters and lineage carry over; a closed
/// engine stays closed. Never call it in the parent. NULL is a no-op.
///
/// # Safety
/// `engine` must be NULL or a live engine created in the parent before the fork. Call it from one
/// thread of the child while no other child thread uses the engine.
#[no_mangle]
pub unsafe extern "C" fn entitle_engine_after_fork(engine: *mut entitle_engine) {
    guard_value((), || {
        // SAFETY: the caller guarantees a live engine or NULL.
        if let Some(e) = unsafe { engine_ref(engine) } {
            e.after_fork();
        }
    });
}

/// The name of a sync state (an `entitle_sync_state`): `"starting"`, `"ready"`, `"stale"`,
/// `"failed"`, or `"unknown"` for any other number.
///
/// # Safety
/// Always safe, from any thread. The string is NUL-terminated, static and owned by the library: do
/// not free it.
#[no_mangle]
pub extern "C" fn entitle_sync_state_name(state: u32) -> *const std::ffi::c_char {
    let name: &'static str = guard_value("unknown\0", || match state {
        0 => "starting\0",
        1 => "ready\0",
        2 => "stale\0",
        3 => "failed\0",
        _ => "unknown\0",
    });
    name.as_ptr().cast()
}
