//! Sync against edges that are hostile, broken or shared, on loopback: limits on what a client
//! downloads and how often it asks, what it keeps at close, engines sharing a cache directory,
//! redirects, and the choice between a delta chain and the snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "sync_support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use entitle_core::{Engine, Limit, Snapshot, SyncConfig};
use support::*;

fn projects(engine: &Engine) -> Limit {
    engine.limit("cus_bob", "projects")
}

#[test]
fn engines_sharing_a_cache_directory_never_collide() {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    publisher.keep = 0; // every version arrives as a snapshot, written to the cache at once
    edge.publish(&mut publisher, &catalog_with(1, 3000));
    let cache = TempDir::new("shared");
    let engines: Vec<Engine> = (0..4)
        .map(|_| {
            Engine::connect(SyncConfig {
                cache_dir: Some(cache.0.clone()),
                ..config(&edge.url())
            })
            .unwrap()
        })
        .collect();
    // A reader that keeps loading the cache file: it must always be one whole snapshot.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let dir = cache.0.clone();
        std::thread::spawn(move || {
            let mut loads = 0u64;
            while !stop.load(Ordering::Acquire) {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|x| x == "snap") {
                        if let Ok(bytes) = std::fs::read(&path) {
                            Snapshot::from_bytes(bytes)
                                .unwrap_or_else(|e| panic!("a torn cache file: {e}"));
                            loads += 1;
                        }
                    }
                }
            }
            loads
        })
    };
    let mut errors = Vec::new();
    for v in 2..=25u64 {
        edge.publish(&mut publisher, &catalog_with(v, 3000));
        for e in &engines {
            assert!(
                wait_until(CONVERGE, || {
                    if let Some(err) = e.status().cache_error {
                        errors.push(err);
                    }
                    e.version() == v && e.status().cache_error.is_none()
                }),
                "{:?}",
                e.status()
            );
        }
    }
    stop.store(true, Ordering::Release);
    let loads = reader.join().unwrap();
    assert!(loads > 0);
    assert!(errors.is_empty(), "cache errors: {errors:?}");
    for e in &engines {
        assert_eq!(projects(e), Limit::Finite(25));
    }
    drop(engines);
    // Nothing temporary is left behind.
    let names: Vec<String> = std::fs::read_dir(&cache.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

fn synced(config: impl FnOnce(&str) -> SyncConfig) -> (TestEdge, Publisher, Engine) {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let engine = Engine::connect(config(&edge.url())).unwrap();
    assert!(engine.wait_ready(CONVERGE), "{:?}", engine.status());
    assert_eq!(projects(&engine), Limit::Finite(10));
    (edge, publisher, engine)
}

fn fails_with(engine: &Engine, text: &str) {
    assert!(
        wait_until(CONVERGE, || engine
            .status()
            .last_error
            .is_some_and(|e| e.contains(text))),
        "expected an error with {text:?}: {:?}",
        engine.status()
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn an_artifact_announced_larger_than_the_limit_is_never_downloaded() {
    let (edge, mut publisher, engine) = synced(|url| SyncConfig {
        max_artifact_bytes: 1 << 20,
        ..config(url)
    });
    // Version 2 announced as 1.5 GB, served as 1.5 MB of gzip that inflates to it.
    let mut manifest = publisher.publish(&catalog(20));
    manifest.deltas.clear();
    manifest.snapshot.bytes = 1_500_000_000;
    edge.load_with(&publisher, &manifest);
    edge.put(&manifest.snapshot.path, gzip(&vec![0u8; 64 << 20]));
    edge.header(&manifest.snapshot.path, "Content-Encoding", "gzip");
    fails_with(
        &engine,
        "more than max_artifact_bytes (1048576): not downloaded",
    );
    assert!(
        !edge
            .requests()
            .iter()
            .any(|r| r.contains("snapshots/v000002")),
        "the oversized snapshot was requested"
    );
    assert_eq!(engine.version(), 1);
    assert_eq!(projects(&engine), Limit::Finite(10));
    // A delta chain is bounded the same way, and the snapshot after it.
    let status = engine.status();
    assert!(status.failures > 0, "{status:?}");
}

#[test]
fn a_gzip_body_that_inflates_past_its_announced_size_is_cut_off() {
    let (edge, mut publisher, engine) = synced(|url| SyncConfig {
        max_artifact_bytes: 1 << 20,
        ..config(url)
    });
    let mut manifest = publisher.publish(&catalog(20));
    manifest.deltas.clear();
    manifest.snapshot.bytes = 900 << 10; // under the limit
    edge.load_with(&publisher, &manifest);
    edge.put(&manifest.snapshot.path, gzip(&vec![0u8; 64 << 20]));
    edge.header(&manifest.snapshot.path, "Content-Encoding", "gzip");
    fails_with(
        &engine,
        "the body is larger than the 921600 bytes the manifest announces",
    );
    assert_eq!(projects(&engine), Limit::Finite(10));
}

#[test]
fn a_manifest_over_the_cap_is_named_as_such() {
    let (edge, _publisher, engine) = synced(config);
    edge.set_manifest_bytes(vec![b' '; (1 << 20) + 10]);
    fails_with(
        &engine,
        "the manifest is larger than the 1048576 bytes a client accepts",
    );
    assert_eq!(projects(&engine), Limit::Finite(10));
}

#[test]
fn a_long_poll_answered_at_once_without_news_does_not_spin() {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    // A long-poll server behind a proxy that drops the ETag: every request is a 200 at once with
    // the same manifest, and carries the long-poll header.
    edge.set_drop_etag(true);
    let engine = Engine::connect(SyncConfig {
        long_poll: Some(Duration::from_secs(20)),
        poll_interval: Duration::from_millis(200),
        ..config(&edge.url())
    })
    .unwrap();
    assert!(engine.wait_ready(CONVERGE));
    let before = edge.manifest_requests();
    std::thread::sleep(Duration::from_secs(2));
    let during = edge.manifest_requests() - before;
    // About one request per poll interval (10 in 2 s); without the pause it was thousands.
    assert!(during <= 25, "{during} manifest requests in 2 s");
    // A change still arrives.
    edge.publish(&mut publisher, &catalog(20));
    assert!(wait_until(CONVERGE, || engine.version() == 2));
    assert_eq!(projects(&engine), Limit::Finite(20));
}

#[test]
fn close_writes_content_reached_by_deltas_to_the_cache() {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let cache = TempDir::new("flush");
    let cfg = SyncConfig {
        cache_dir: Some(cache.0.clone()),
        persist_interval: Duration::from_secs(3600),
        ..config(&edge.url())
    };
    let engine = Engine::connect(cfg.clone()).unwrap();
    assert!(wait_until(CONVERGE, || engine.version() == 1));
    edge.publish(&mut publisher, &catalog(20));
    edge.publish(&mut publisher, &catalog(30));
    assert!(converged(&engine, 3).deltas_applied >= 1);
    engine.close();
    drop(engine);
    // The edge goes down; a new process starts from the cache with what the last one had.
    edge.fault("", Fault::Status(503), None);
    let restarted = Engine::connect(cfg).unwrap();
    let status = restarted.status();
    assert!(status.warm_start, "{status:?}");
    assert_eq!(restarted.version(), 3);
    assert_eq!(projects(&restarted), Limit::Finite(30));
}

#[test]
fn redirects_stay_within_the_edge() {
    let (edge, mut publisher, engine) = synced(|url| SyncConfig {
        token: Some("secret".into()),
        ..config(url)
    });
    edge.require_token("secret");
    // Same origin: followed, with the token.
    let m = publisher.publish(&catalog(20));
    edge.load(&publisher);
    let moved = format!("/moved/{}", m.snapshot.path);
    edge.put(
        &moved[1..],
        publisher.files.get(&m.snapshot.path).unwrap().clone(),
    );
    for d in &m.deltas {
        edge.fault(&d.path, Fault::Status(404), None);
    }
    edge.fault(&m.snapshot.path, Fault::Redirect(moved.clone()), None);
    assert!(
        wait_until(CONVERGE, || engine.version() == 2),
        "{:?}",
        engine.status()
    );
    assert!(edge.requests().contains(&moved));
    // Another port on the same host: refused, and not requested.
    let other = TestEdge::start();
    other.load(&publisher);
    edge.clear_faults();
    let m = publisher.publish(&catalog(30));
    edge.load(&publisher);
    for d in &m.deltas {
        edge.fault(&d.path, Fault::Status(404), None);
    }
    edge.fault(
        &m.snapshot.path,
        Fault::Redirect(format!("{}/{}", other.url(), m.snapshot.path)),
        None,
    );
    fails_with(&engine, "outside the edge's origin: refused");
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    assert_eq!(projects(&engine), Limit::Finite(20));
}

/// A catalog where every one of `n` customers has `projects` = `v`: each version changes them all.
fn all_change(v: u64, n: usize) -> entitle_core::Catalog {
    let customers: Vec<String> = std::iter::once(format!(
        r#"{{"id": "cus_bob", "overrides": {{"projects": {v}}}}}"#
    ))
    .chain((0..n).map(|i| {
        format!(
            r#"{{"id": "c{i}", "overrides": {{"projects": {}}}}}"#,
            v + i as u64
        )
    }))
    .collect();
    entitle_core::Catalog::from_json(
        format!(
            r#"{{"features": [{{"key": "projects", "type": "limit", "default": 3}}],
                "customers": [{}]}}"#,
            customers.join(",")
        )
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn a_delta_chain_larger_than_the_snapshot_is_skipped_for_the_snapshot() {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &all_change(1, 300));
    let engine = Engine::connect(config(&edge.url())).unwrap();
    let before = converged(&engine, 1);
    // Eight versions that each rewrite every customer, published while the engine cannot see them.
    edge.fault(MANIFEST_PATH, Fault::Status(503), None);
    let mut manifest = None;
    for v in 2..=9 {
        manifest = Some(edge.publish(&mut publisher, &all_change(v, 300)));
    }
    let manifest = manifest.unwrap();
    let chain: u64 = manifest.deltas.iter().map(|d| d.bytes).sum();
    assert!(
        chain > manifest.snapshot.bytes,
        "{chain} vs {}",
        manifest.snapshot.bytes
    );
    let seen = edge.requests().len();
    edge.clear_faults();
    let after = converged(&engine, 9);
    assert_eq!(after.deltas_applied, before.deltas_applied, "{after:?}");
    assert_eq!(after.snapshots_fetched, before.snapshots_fetched + 1);
    let fetched: Vec<String> = edge.requests()[seen..].to_vec();
    assert!(
        !fetched.iter().any(|r| r.starts_with("/deltas/")),
        "{fetched:?}"
    );
    assert_eq!(projects(&engine), Limit::Finite(9));
    // One version behind, the single delta is cheaper, and used.
    edge.publish(&mut publisher, &all_change(10, 300));
    let last = converged(&engine, 10);
    assert_eq!(last.deltas_applied, after.deltas_applied + 1);
}

const MANIFEST_PATH: &str = "manifest.json";

/// A child forked without after_fork(): status, wait_ready, lookups, close and drop work, quietly.
#[test]
fn a_fork_without_after_fork_closes_quietly_in_the_child() {
    extern "C" {
        fn fork() -> i32;
        fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
        fn _exit(code: i32) -> !;
    }
    let (_edge, _publisher, engine) = synced(config);
    // SAFETY: fork() has no preconditions; the child runs only the engine's code and leaves by
    // _exit without returning into the test harness.
    let pid = unsafe { fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(|| {
            let ready = engine.wait_ready(Duration::from_secs(60));
            let status = engine.status();
            let answer = projects(&engine) == Limit::Finite(10);
            engine.close();
            engine.close();
            let after = engine.status();
            drop(engine);
            if ready && status.version == 1 && answer && after.version == 1 {
                0
            } else {
                1
            }
        })
        .unwrap_or(2);
        // SAFETY: ends the child at once, without running the parent's destructors or harness.
        unsafe { _exit(code) }
    }
    let mut status = 0;
    // SAFETY: pid is the child forked above; status is a valid place for the exit status.
    let waited = unsafe { waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert_eq!(status & 0x7f, 0, "child did not exit normally: {status}");
    assert_eq!((status >> 8) & 0xff, 0, "the child's engine misbehaved");
    // The parent's engine is unaffected.
    assert_eq!(projects(&engine), Limit::Finite(10));
    engine.close();
}
