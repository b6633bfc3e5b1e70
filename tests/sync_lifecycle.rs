//! The sync thread's life: close() interrupts a long-poll and joins, dropping the engine does the
//! same, nothing leaks across many engines, and after_fork() restarts syncing in a forked child.
//! These tests count the process's threads and file descriptors, so they run one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "sync_support/mod.rs"]
mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use entitle_core::{Engine, Limit, SyncConfig, SyncState};
use support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether no thread of this process named `entitle-sync` is left. A joined thread has finished,
/// but the kernel removes its `/proc/self/task` entry a moment after `pthread_join` returns (the
/// join wakes when the thread clears its id, before the task is released), so this waits briefly.
fn no_sync_threads() -> bool {
    wait_until(Duration::from_secs(5), || sync_threads() == 0)
}

/// Threads of this process named `entitle-sync`.
fn sync_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "entitle-sync")
        .count()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn long_poll_config(url: &str) -> SyncConfig {
    SyncConfig {
        poll_interval: Duration::from_secs(60),
        long_poll: Some(Duration::from_secs(20)),
        ..config(url)
    }
}

#[test]
fn close_interrupts_a_long_poll_and_joins_the_thread() {
    let _serial = serial();
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let engine = Engine::connect(long_poll_config(&edge.url())).unwrap();
    assert!(engine.wait_ready(CONVERGE));
    assert!(wait_until(CONVERGE, || edge.waiting() == 1));
    assert_eq!(sync_threads(), 1);
    let started = Instant::now();
    engine.close();
    // The long-poll would hold for 20 s; close() cuts it short.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(no_sync_threads(), "{} sync threads left", sync_threads());
    // Idempotent, and the engine keeps answering from its last content.
    engine.close();
    assert_eq!(engine.limit("cus_bob", "projects"), Limit::Finite(10));
    assert_eq!(engine.status().state, SyncState::Ready);
    assert!(engine.wait_ready(Duration::ZERO));
}

#[test]
fn close_during_backoff_and_before_any_data() {
    let _serial = serial();
    let engine = Engine::connect(SyncConfig {
        max_backoff: Duration::from_secs(60),
        ..config(&format!("http://127.0.0.1:{}", free_port()))
    })
    .unwrap();
    assert!(wait_until(CONVERGE, || engine.status().failures >= 3));
    let started = Instant::now();
    engine.close();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(no_sync_threads(), "{} sync threads left", sync_threads());
    // Closed without data: wait_ready does not wait and does not claim readiness.
    assert!(!engine.wait_ready(Duration::from_secs(5)));
    assert_eq!(engine.status().state, SyncState::Failed);
}

#[test]
fn dropping_engines_leaks_no_thread_socket_or_file() {
    let _serial = serial();
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let cache = TempDir::new("leaks");
    // One engine first, so that one-time allocations (TLS roots, thread-locals) are out of the way.
    drop(Engine::connect(config(&edge.url())).unwrap());
    assert!(wait_until(CONVERGE, || edge.active() == 0));
    let fds = open_fds();
    for i in 0..20 {
        let engine = Engine::connect(SyncConfig {
            cache_dir: Some(cache.0.clone()),
            long_poll: (i % 2 == 0).then_some(Duration::from_secs(20)),
            ..config(&edge.url())
        })
        .unwrap();
        assert!(engine.wait_ready(CONVERGE));
        if i % 3 == 0 {
            edge.publish(&mut publisher, &catalog(10 + i));
            assert!(wait_until(CONVERGE, || engine.version()
                == publisher.manifest.as_ref().unwrap().version));
        }
        drop(engine);
        assert!(no_sync_threads(), "{} sync threads left", sync_threads());
    }
    assert!(wait_until(CONVERGE, || edge.active() == 0));
    assert!(
        wait_until(CONVERGE, || open_fds() == fds),
        "{} open file descriptors, {fds} before",
        open_fds()
    );
}

/// A forked child has no sync thread; after_fork() starts one, and the child then follows the edge.
#[test]
fn after_fork_restarts_syncing_in_the_child() {
    let _serial = serial();
    extern "C" {
        fn fork() -> i32;
        fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
        fn _exit(code: i32) -> !;
    }
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let engine = Engine::connect(long_poll_config(&edge.url())).unwrap();
    assert!(engine.wait_ready(CONVERGE));

    // SAFETY: fork() has no preconditions; the child only runs the engine's code and leaves by
    // _exit without returning into the test harness.
    let pid = unsafe { fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(|| {
            engine.after_fork();
            let synced = wait_until(CONVERGE, || engine.version() == 2);
            let answer = engine.limit("cus_bob", "projects") == Limit::Finite(20);
            engine.close();
            if synced && answer {
                0
            } else {
                1
            }
        })
        .unwrap_or(2);
        // SAFETY: ends the child at once, without running the parent's destructors or harness.
        unsafe { _exit(code) }
    }
    // The child is waiting for version 2 from the edge this process serves.
    std::thread::sleep(Duration::from_millis(100));
    edge.publish(&mut publisher, &catalog(20));
    let mut status = 0;
    // SAFETY: pid is the child forked above; status is a valid place for the exit status.
    let waited = unsafe { waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    // WIFEXITED and WEXITSTATUS, as glibc defines them.
    assert_eq!(status & 0x7f, 0, "child did not exit normally: {status}");
    assert_eq!((status >> 8) & 0xff, 0, "the child did not follow the edge");
    // The parent syncs on as before.
    assert!(wait_until(CONVERGE, || engine.version() == 2));
    engine.close();
}
