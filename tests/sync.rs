//! Edge sync against a fault-injecting edge on loopback. For every fault: answers keep coming from
//! the last good data, the status says what happened, and once the fault clears the engine converges
//! to the edge's latest version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "sync_support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use entitle_core::edge::Manifest;
use entitle_core::{Engine, Event, EventKind, Limit, Reason, SyncConfig, SyncState, WaitError};
use support::*;

fn projects(engine: &Engine) -> Limit {
    engine.limit("cus_bob", "projects")
}

/// An edge serving version 1 (projects = 10) and an engine that has synced it.
fn synced(config: impl FnOnce(&str) -> SyncConfig) -> (TestEdge, Publisher, Engine) {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let engine = Engine::connect(config(&edge.url())).unwrap();
    assert!(engine.wait_ready(CONVERGE), "{:?}", engine.status());
    assert_eq!(projects(&engine), Limit::Finite(10));
    (edge, publisher, engine)
}

fn converges_to(engine: &Engine, version: u64) {
    converged(engine, version);
}

fn fails_at_least(engine: &Engine, n: u64) {
    let before = engine.status().failures;
    assert!(
        wait_until(CONVERGE, || engine.status().failures >= before + n),
        "expected failures: {:?}",
        engine.status()
    );
}

fn last_error(engine: &Engine) -> String {
    engine.status().last_error.unwrap_or_default()
}

#[test]
fn edge_down_at_start_without_cache_then_recovers() {
    let port = free_port();
    let engine = Engine::connect(config(&format!("http://127.0.0.1:{port}"))).unwrap();
    fails_at_least(&engine, 2);
    assert!(!engine.wait_ready(Duration::from_millis(50)));
    let status = engine.status();
    assert_eq!(status.state, SyncState::Failed);
    assert_eq!(status.version, 0);
    assert!(status.last_error.is_some());
    assert!(status.data_age.is_none());
    // The empty start-up snapshot: no feature exists.
    assert_eq!(
        engine.check("cus_bob", "projects").reason,
        Reason::FeatureNotFound
    );

    let edge = TestEdge::start_on(port);
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    assert!(engine.wait_ready(CONVERGE));
    converges_to(&engine, 1);
    assert_eq!(projects(&engine), Limit::Finite(10));
    let status = engine.status();
    assert_eq!(status.state, SyncState::Ready);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.lineage.as_deref(), Some("lineage-a"));
    assert!(status.last_success.is_some());
    assert!(status.data_age.is_some());
}

#[test]
fn warm_start_from_cache_with_edge_down_then_catches_up_by_delta() {
    let cache = TempDir::new("warm");
    let port;
    let mut publisher = Publisher::new("lineage-a");
    {
        let edge = TestEdge::start();
        port = edge.port();
        edge.publish(&mut publisher, &catalog(10));
        let first = Engine::connect(SyncConfig {
            cache_dir: Some(cache.0.clone()),
            ..config(&edge.url())
        })
        .unwrap();
        converges_to(&first, 1);
        assert!(wait_until(CONVERGE, || std::fs::read_dir(&cache.0)
            .map(|d| d.count() == 2)
            .unwrap_or(false)));
        first.close();
    }
    // The edge is gone: the cache alone serves, at once.
    let engine = Engine::connect(SyncConfig {
        cache_dir: Some(cache.0.clone()),
        ..config(&format!("http://127.0.0.1:{port}"))
    })
    .unwrap();
    assert!(engine.wait_ready(Duration::ZERO));
    assert_eq!(projects(&engine), Limit::Finite(10));
    let status = engine.status();
    assert!(status.warm_start);
    assert_eq!(status.version, 1);
    assert_eq!(status.lineage.as_deref(), Some("lineage-a"));
    fails_at_least(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(10));
    assert_eq!(engine.status().state, SyncState::Ready);
    assert!(engine.status().last_error.is_some());

    // The edge comes back with a newer version: one delta from the cached version.
    let edge = TestEdge::start_on(port);
    edge.publish(&mut publisher, &catalog(20));
    converges_to(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(20));
    let status = engine.status();
    assert_eq!(status.deltas_applied, 1);
    assert_eq!(status.snapshots_fetched, 0);
}

#[test]
fn server_errors_keep_the_last_good_data() {
    let (edge, mut publisher, engine) = synced(config);
    edge.fault("manifest.json", Fault::Status(500), None);
    edge.publish(&mut publisher, &catalog(20));
    fails_at_least(&engine, 3);
    assert_eq!(projects(&engine), Limit::Finite(10));
    let status = engine.status();
    assert_eq!(status.version, 1);
    assert!(status.consecutive_failures >= 3);
    assert!(last_error(&engine).contains("HTTP 500"), "{status:?}");
    assert_eq!(status.state, SyncState::Ready, "within max_staleness");

    edge.clear_faults();
    converges_to(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(20));
    assert_eq!(engine.status().consecutive_failures, 0);
}

#[test]
fn errors_on_every_artifact_fail_the_round_until_cleared() {
    let (edge, mut publisher, engine) = synced(config);
    edge.fault("deltas/", Fault::Status(503), None);
    edge.fault("snapshots/", Fault::Status(503), None);
    edge.publish(&mut publisher, &catalog(20));
    fails_at_least(&engine, 2);
    assert_eq!(engine.version(), 1);
    assert!(last_error(&engine).contains("HTTP 503"));
    edge.clear_faults();
    converges_to(&engine, 2);
}

#[test]
fn timeouts_and_slow_responses() {
    let (edge, mut publisher, engine) = synced(|url| SyncConfig {
        request_timeout: Duration::from_millis(300),
        ..config(url)
    });
    edge.fault("manifest.json", Fault::Delay(Duration::from_secs(2)), None);
    edge.publish(&mut publisher, &catalog(20));
    fails_at_least(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(10));
    assert!(
        last_error(&engine).contains("timed out"),
        "{}",
        last_error(&engine)
    );

    // Slow but within the timeout: fine.
    edge.clear_faults();
    edge.fault(
        "",
        Fault::Slow {
            chunk: 64,
            pause: Duration::from_millis(2),
        },
        None,
    );
    converges_to(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(20));
}

#[test]
fn a_body_cut_short_is_rejected() {
    let (edge, mut publisher, engine) = synced(config);
    edge.fault("deltas/", Fault::CutShort, None);
    edge.fault("snapshots/", Fault::CutShort, None);
    edge.publish(&mut publisher, &catalog(20));
    fails_at_least(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(10));
    assert!(last_error(&engine).contains("snapshots/v000002"));
    edge.clear_faults();
    converges_to(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(20));
}

#[test]
fn a_body_shorter_than_the_manifest_says_is_rejected() {
    let (edge, mut publisher, engine) = synced(config);
    let m = publisher.publish(&catalog(20));
    edge.load(&publisher);
    let mut short = publisher.files[&m.snapshot.path].clone();
    short.truncate(short.len() - 8);
    edge.put(&m.snapshot.path, short);
    edge.remove(&m.deltas.last().unwrap().path);
    fails_at_least(&engine, 2);
    assert!(
        last_error(&engine).contains("cut short"),
        "{}",
        last_error(&engine)
    );
    edge.load(&publisher);
    converges_to(&engine, 2);
}

#[test]
fn flipped_bytes_in_a_snapshot() {
    // Without data: the engine stays empty and failed.
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.fault("snapshots/", Fault::FlipByte, None);
    edge.publish(&mut publisher, &catalog(10));
    let engine = Engine::connect(config(&edge.url())).unwrap();
    fails_at_least(&engine, 2);
    assert!(!engine.wait_ready(Duration::ZERO));
    assert_eq!(engine.status().state, SyncState::Failed);
    assert!(
        last_error(&engine).contains("checksum"),
        "{}",
        last_error(&engine)
    );
    edge.clear_faults();
    converges_to(&engine, 1);

    // With data, and no delta to fall back on.
    publisher.keep = 0;
    edge.fault("snapshots/", Fault::FlipByte, None);
    edge.publish(&mut publisher, &catalog(20));
    fails_at_least(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(10));
    assert!(last_error(&engine).contains("checksum"));
    edge.clear_faults();
    converges_to(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(20));
}

#[test]
fn a_flipped_byte_in_a_delta_falls_back_to_the_snapshot() {
    let (edge, mut publisher, engine) = synced(config);
    edge.fault("deltas/", Fault::FlipByte, None);
    edge.publish(&mut publisher, &catalog(20));
    converges_to(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(20));
    let status = engine.status();
    assert_eq!(status.deltas_applied, 0);
    assert_eq!(status.snapshots_fetched, 2);
    let err = status.last_error.unwrap_or_default();
    assert!(
        err.contains("checksum") && err.contains("full snapshot"),
        "{err}"
    );

    // Both corrupt: the round fails, the data stays.
    edge.fault("snapshots/", Fault::FlipByte, None);
    edge.publish(&mut publisher, &catalog(30));
    fails_at_least(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(20));
    edge.clear_faults();
    converges_to(&engine, 3);
    assert_eq!(projects(&engine), Limit::Finite(30));
}

#[test]
fn a_manifest_pointing_to_missing_files() {
    let (edge, mut publisher, engine) = synced(config);
    let m = edge.publish(&mut publisher, &catalog(20));
    // Race-free: remove before the engine can have fetched them is not guaranteed, so publish
    // again with the files withheld.
    let _ = m;
    let m = publisher.publish(&catalog(30));
    let snapshot = publisher.files[&m.snapshot.path].clone();
    let delta_path = m.deltas.last().unwrap().path.clone();
    let delta = publisher.files[&delta_path].clone();
    edge.load(&publisher);
    edge.remove(&m.snapshot.path);
    edge.remove(&delta_path);
    fails_at_least(&engine, 2);
    assert!(engine.version() <= 2);
    assert!(
        last_error(&engine).contains("HTTP 404"),
        "{}",
        last_error(&engine)
    );
    edge.put(&m.snapshot.path, snapshot);
    edge.put(&delta_path, delta);
    converges_to(&engine, 3);
    assert_eq!(projects(&engine), Limit::Finite(30));
}

#[test]
fn a_gap_in_the_delta_chain_fetches_the_snapshot() {
    let (edge, mut publisher, engine) = synced(config);
    for p in [20, 30, 40] {
        publisher.publish(&catalog(p));
    }
    let mut m = publisher.manifest.clone().unwrap();
    assert_eq!(m.version, 4);
    m.deltas.retain(|d| d.from != 2);
    edge.load_with(&publisher, &m);
    converges_to(&engine, 4);
    assert_eq!(projects(&engine), Limit::Finite(40));
    let status = engine.status();
    assert_eq!(status.snapshots_fetched, 2);
    assert!(last_error(&engine).contains("gap"), "{status:?}");
}

#[test]
fn an_older_version_after_a_newer_one_is_refused() {
    let (edge, mut publisher, engine) = synced(config);
    let v1 = publisher.manifest.clone().unwrap();
    edge.publish(&mut publisher, &catalog(20));
    converges_to(&engine, 2);
    edge.set_manifest_bytes(v1.to_json().into_bytes());
    fails_at_least(&engine, 2);
    assert_eq!(engine.version(), 2);
    assert_eq!(projects(&engine), Limit::Finite(20));
    assert!(
        last_error(&engine).contains("went back"),
        "{}",
        last_error(&engine)
    );
    edge.publish(&mut publisher, &catalog(30));
    converges_to(&engine, 3);
    assert_eq!(projects(&engine), Limit::Finite(30));
}

#[test]
fn different_content_for_the_same_version_is_refused() {
    let (edge, _publisher, engine) = synced(config);
    let mut other = Publisher::new("lineage-a");
    other.publish(&catalog(99));
    edge.load(&other);
    fails_at_least(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(10));
    assert!(
        last_error(&engine).contains("differs"),
        "{}",
        last_error(&engine)
    );
}

#[test]
fn a_new_lineage_replaces_the_content_even_at_a_lower_version() {
    let (edge, mut publisher, engine) = synced(config);
    edge.publish(&mut publisher, &catalog(20));
    edge.publish(&mut publisher, &catalog(30));
    converges_to(&engine, 3);
    let mut fresh = Publisher::new("lineage-b");
    edge.publish(&mut fresh, &catalog(77));
    assert!(wait_until(CONVERGE, || projects(&engine) == Limit::Finite(77)));
    let status = engine.status();
    assert_eq!(status.version, 1);
    assert_eq!(status.lineage.as_deref(), Some("lineage-b"));
    // And it follows the new lineage from there.
    edge.publish(&mut fresh, &catalog(78));
    converges_to(&engine, 2);
    assert_eq!(projects(&engine), Limit::Finite(78));
}

#[test]
fn a_corrupt_cache_file_is_ignored_and_rewritten() {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let cache = TempDir::new("corrupt");
    {
        let e = Engine::connect(SyncConfig {
            cache_dir: Some(cache.0.clone()),
            ..config(&edge.url())
        })
        .unwrap();
        converges_to(&e, 1);
        assert!(wait_until(CONVERGE, || std::fs::read_dir(&cache.0)
            .map(|d| d.count() == 2)
            .unwrap_or(false)));
    }
    let snap_file = std::fs::read_dir(&cache.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .unwrap();
    let mut bytes = std::fs::read(&snap_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&snap_file, &bytes).unwrap();

    edge.publish(&mut publisher, &catalog(20));
    edge.fault("", Fault::Status(500), None);
    let engine = Engine::connect(SyncConfig {
        cache_dir: Some(cache.0.clone()),
        ..config(&edge.url())
    })
    .unwrap();
    let status = engine.status();
    assert!(!status.warm_start);
    assert!(
        status
            .cache_error
            .as_deref()
            .unwrap_or("")
            .contains("checksum"),
        "{status:?}"
    );
    fails_at_least(&engine, 1);
    assert_eq!(engine.status().state, SyncState::Failed);
    edge.clear_faults();
    converges_to(&engine, 2);
    assert!(wait_until(CONVERGE, || engine
        .status()
        .cache_error
        .is_none()));
    let rewritten = entitle_core::Snapshot::from_bytes(std::fs::read(&snap_file).unwrap()).unwrap();
    assert_eq!(rewritten.version(), 2);
}

#[test]
fn an_unwritable_cache_is_reported_and_syncing_goes_on() {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let dir = TempDir::new("unwritable");
    let not_a_dir = dir.0.join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let engine = Engine::connect(SyncConfig {
        cache_dir: Some(not_a_dir),
        ..config(&edge.url())
    })
    .unwrap();
    converges_to(&engine, 1);
    assert!(wait_until(CONVERGE, || engine
        .status()
        .cache_error
        .is_some()));
    let status = engine.status();
    assert_eq!(status.state, SyncState::Ready);
    assert_eq!(projects(&engine), Limit::Finite(10));
    edge.publish(&mut publisher, &catalog(20));
    converges_to(&engine, 2);
}

#[test]
fn bearer_token() {
    let edge = TestEdge::start();
    edge.require_token("s3cret");
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let without = Engine::connect(config(&edge.url())).unwrap();
    let wrong = Engine::connect(SyncConfig {
        token: Some("wrong".into()),
        ..config(&edge.url())
    })
    .unwrap();
    let right = Engine::connect(SyncConfig {
        token: Some("s3cret".into()),
        ..config(&edge.url())
    })
    .unwrap();
    assert!(right.wait_ready(CONVERGE));
    fails_at_least(&without, 1);
    fails_at_least(&wrong, 1);
    assert!(last_error(&without).contains("HTTP 401"));
    assert!(last_error(&wrong).contains("HTTP 401"));
    assert!(!without.wait_ready(Duration::ZERO));
    assert!(Engine::connect(SyncConfig {
        token: Some("has space".into()),
        ..config(&edge.url())
    })
    .is_err());
    assert!(Engine::connect(config("ftp://example.invalid/")).is_err());
}

#[test]
fn long_poll_delivers_without_polling() {
    // A poll interval of a minute: only the long-poll can bring the change within the test.
    let (edge, mut publisher, engine) = synced(|url| SyncConfig {
        poll_interval: Duration::from_secs(60),
        long_poll: Some(Duration::from_secs(10)),
        ..config(url)
    });
    assert!(wait_until(CONVERGE, || edge.waiting() == 1));
    assert!(engine.status().long_poll);
    edge.publish(&mut publisher, &catalog(20));
    converges_to(&engine, 2);
    assert!(edge
        .requests()
        .iter()
        .any(|r| r.starts_with("/manifest.json?wait=10")));
}

#[test]
fn long_poll_against_a_static_server_falls_back_to_polling() {
    let edge = TestEdge::start();
    edge.set_long_poll(false);
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let engine = Engine::connect(SyncConfig {
        poll_interval: Duration::from_millis(50),
        long_poll: Some(Duration::from_secs(10)),
        ..config(&edge.url())
    })
    .unwrap();
    converges_to(&engine, 1);
    edge.publish(&mut publisher, &catalog(20));
    converges_to(&engine, 2);
    assert!(!engine.status().long_poll);
    // No busy loop: the engine waits its poll interval between manifest requests.
    let before = edge.requests().len();
    std::thread::sleep(Duration::from_millis(500));
    let made = edge.requests().len() - before;
    assert!(made < 50, "{made} requests in half a second");
}

#[test]
fn a_manifest_that_is_not_json_is_an_error() {
    let (edge, _publisher, engine) = synced(config);
    edge.set_manifest_bytes(b"{\"format\": 1, \"lin".to_vec());
    fails_at_least(&engine, 2);
    assert!(last_error(&engine).contains("manifest.json"));
    assert_eq!(projects(&engine), Limit::Finite(10));
    let future = r#"{"format": 9, "lineage": "x", "version": 1, "created_at": 0,
        "snapshot": {"version": 1, "checksum": "0000000000000000", "created_at": 0, "bytes": 1, "path": "a"}}"#;
    edge.set_manifest_bytes(future.as_bytes().to_vec());
    fails_at_least(&engine, 1);
    assert!(last_error(&engine).contains("format 9"));
}

#[test]
fn closed_connections_and_stale_status() {
    let (edge, _publisher, engine) = synced(|url| SyncConfig {
        max_staleness: Duration::from_millis(200),
        ..config(url)
    });
    edge.fault("", Fault::Close, None);
    assert!(wait_until(CONVERGE, || engine.status().state == SyncState::Stale));
    assert_eq!(projects(&engine), Limit::Finite(10));
    edge.clear_faults();
    assert!(wait_until(CONVERGE, || engine.status().state == SyncState::Ready));
}

/// 8 readers check continuously while the sync thread applies 1,000 deltas: every answer matches
/// the version it carries (no torn view), and no reader sees a version older than one it saw.
#[test]
fn readers_see_no_torn_or_stale_reads_across_1000_deltas() {
    const VERSIONS: u64 = 1001;
    const HOT: usize = 4;
    const ROTATING: usize = 40;
    const PER_VERSION: usize = 5;
    // Version v: hot customers have `projects` = v, and 5 rotating customers change.
    let mut rotating = vec![0u64; ROTATING];
    let mut catalog_v = |v: u64| {
        for k in 0..PER_VERSION {
            rotating[(v as usize * PER_VERSION + k) % ROTATING] = v;
        }
        let mut customers = Vec::with_capacity(HOT + ROTATING);
        for h in 0..HOT {
            customers.push(format!(
                r#"{{"id": "hot{h}", "overrides": {{"projects": {v}}}}}"#
            ));
        }
        for (r, value) in rotating.iter().enumerate() {
            customers.push(format!(
                r#"{{"id": "r{r}", "overrides": {{"projects": {value}}}}}"#
            ));
        }
        entitle_core::Catalog::from_json(
            format!(
                r#"{{"features": [{{"key": "projects", "type": "limit"}}], "customers": [{}]}}"#,
                customers.join(",")
            )
            .as_bytes(),
        )
        .unwrap()
    };
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    publisher.keep = 64;
    let first = catalog_v(1);
    edge.publish(&mut publisher, &first);
    let engine = Arc::new(
        Engine::connect(SyncConfig {
            long_poll: Some(Duration::from_secs(5)),
            persist_interval: Duration::from_secs(3600),
            ..config(&edge.url())
        })
        .unwrap(),
    );
    assert!(engine.wait_ready(CONVERGE));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let engine = Arc::clone(&engine);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut seen = 0u64;
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    let d = engine.check(format!("hot{}", i % HOT), "projects");
                    assert!(
                        d.version >= seen,
                        "version went back: {} after {seen}",
                        d.version
                    );
                    assert_eq!(d.limit(), Some(Limit::Finite(d.version)), "torn read");
                    seen = d.version;
                    // A whole view is one version for every customer.
                    let view = engine.view();
                    for h in 0..HOT {
                        let d = view.check_at(format!("hot{h}"), "projects", 0);
                        assert_eq!(d.limit(), Some(Limit::Finite(view.version())));
                    }
                    reads += 1;
                    if reads.is_multiple_of(16) {
                        std::thread::yield_now();
                    }
                }
                reads
            })
        })
        .collect();
    // Publish the next version whenever the engine is within 4 of the edge, so that every version
    // arrives as a delta from a chain the manifest still keeps and that is smaller than the snapshot
    // (a longer chain than the snapshot is skipped for the snapshot).
    let mut next = 2;
    let mut last = first;
    while next <= VERSIONS {
        if next - engine.version() <= 4 {
            last = catalog_v(next);
            edge.publish(&mut publisher, &last);
            next += 1;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    converges_to(&engine, VERSIONS);
    done.store(true, Ordering::Release);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
    let status = engine.status();
    assert_eq!(status.deltas_applied, VERSIONS - 1, "{status:?}");
    assert_eq!(status.snapshots_fetched, 1);
    // Every rotating customer's answer matches a fresh build of the final catalog.
    let expected = entitle_core::Engine::from_catalog(&last).unwrap();
    for r in (0..ROTATING).step_by(97) {
        let id = format!("r{r}");
        assert_eq!(
            engine.check_at(&id, "projects", 0).limit(),
            expected.check_at(&id, "projects", 0).limit()
        );
    }
    assert_eq!(engine.store().compaction_error(), None);
}

#[test]
fn an_artifact_of_unknown_size_is_bounded_by_the_manifest() {
    let (edge, mut publisher, engine) = synced(config);
    let m = publisher.publish(&catalog(20));
    let mut manifest: Manifest = m.clone();
    manifest.snapshot.bytes = 100; // smaller than the real file
    manifest.deltas.clear();
    edge.load_with(&publisher, &manifest);
    fails_at_least(&engine, 2);
    assert!(
        last_error(&engine).contains("larger than"),
        "{}",
        last_error(&engine)
    );
    assert_eq!(engine.version(), 1);
    edge.load(&publisher);
    converges_to(&engine, 2);
}

/// The same guarantee where the sync thread's writes land: the store, with a low compaction
/// threshold so that background compactions swap new bases under the readers all along.
#[test]
fn readers_see_no_torn_or_stale_reads_across_1000_deltas_and_compactions() {
    use entitle_core::{diff, BuildOptions, Catalog, Snapshot, Store, View};
    const HOT: usize = 4;
    const ROTATING: usize = 300;
    let build = |v: u64, rotating: &[u64]| {
        let mut customers: Vec<String> = (0..HOT)
            .map(|h| format!(r#"{{"id": "hot{h}", "overrides": {{"projects": {v}}}}}"#))
            .collect();
        customers.extend(
            rotating
                .iter()
                .enumerate()
                .map(|(r, x)| format!(r#"{{"id": "r{r}", "overrides": {{"projects": {x}}}}}"#)),
        );
        let c = Catalog::from_json(
            format!(
                r#"{{"features": [{{"key": "projects", "type": "limit"}}], "customers": [{}]}}"#,
                customers.join(",")
            )
            .as_bytes(),
        )
        .unwrap();
        Snapshot::build(
            &c,
            BuildOptions {
                version: v,
                created_at: 0,
            },
        )
        .unwrap()
    };
    let mut rotating = vec![0u64; ROTATING];
    let mut prev = build(1, &rotating);
    let store = Arc::new(Store::with_threshold(View::from(build(1, &rotating)), 64));
    let mut deltas = Vec::new();
    for v in 2..=1001u64 {
        for k in 0..5 {
            rotating[(v as usize * 5 + k) % ROTATING] = v;
        }
        let next = build(v, &rotating);
        deltas.push(diff(&prev, &next).unwrap());
        prev = next;
    }
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    let view = store.load();
                    assert!(view.version() >= seen, "version went back");
                    seen = view.version();
                    for h in 0..HOT {
                        let d = view.check_at(format!("hot{}", (h + i) % HOT), "projects", 0);
                        assert_eq!(d.limit(), Some(Limit::Finite(view.version())), "torn");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for d in &deltas {
        store.apply(d).unwrap();
        // Paced like a live edge, so that compactions start and finish many times meanwhile.
        std::thread::sleep(Duration::from_micros(500));
    }
    store.wait_compaction();
    done.store(true, Ordering::Release);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
    assert_eq!(store.load().version(), 1001);
    assert!(
        store.compactions() >= 10,
        "{} compactions",
        store.compactions()
    );
    assert_eq!(store.compaction_error(), None);
    assert_eq!(store.load().checksum(), prev.checksum());
}

/// Every event the engine records from `after`, until `done` holds for the list or `limit` passes.
fn events_until(
    engine: &Engine,
    limit: Duration,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    let mut after = 0;
    while !done(&seen) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match engine.next_event(after, left) {
            Ok(e) => {
                assert_eq!(e.seq, after + 1, "no gap expected: {e:?}");
                after = e.seq;
                seen.push(e);
            }
            Err(WaitError::Timeout) => panic!("events so far: {seen:?}\n{:?}", engine.status()),
            Err(WaitError::Closed) => break,
        }
    }
    seen
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn events_tell_version_changes_failures_staleness_and_recovery() {
    let (edge, mut publisher, engine) = synced(|url| SyncConfig {
        max_staleness: Duration::from_millis(300),
        ..config(url)
    });
    // The first sync: 0 -> 1.
    let first = engine.next_event(0, CONVERGE).unwrap();
    assert_eq!(
        (first.kind, first.old_version, first.new_version),
        (EventKind::VersionChanged, 0, 1)
    );
    edge.publish(&mut publisher, &catalog(20));
    converges_to(&engine, 2);
    edge.fault("", Fault::Close, None);
    let events = events_until(&engine, CONVERGE, |e| kinds(e).contains(&EventKind::Stale));
    let k = kinds(&events);
    assert_eq!(
        &k[..2],
        [EventKind::VersionChanged, EventKind::VersionChanged]
    );
    assert_eq!((events[1].old_version, events[1].new_version), (1, 2));
    assert_eq!(k[2], EventKind::SyncFailed, "{events:?}");
    assert!(!events[2].message.is_empty());
    assert_eq!((events[2].old_version, events[2].new_version), (2, 2));
    // Stale is reported once, after failures, while the content is kept.
    assert_eq!(k.iter().filter(|&&k| k == EventKind::Stale).count(), 1);
    assert_eq!(engine.status().state, SyncState::Stale);
    edge.clear_faults();
    edge.publish(&mut publisher, &catalog(30));
    let after = events.last().unwrap().seq;
    let mut more = Vec::new();
    while !kinds(&more).contains(&EventKind::SyncRecovered)
        || !kinds(&more).contains(&EventKind::VersionChanged)
    {
        let e = engine
            .next_event(more.last().map_or(after, |e: &Event| e.seq), CONVERGE)
            .unwrap();
        more.push(e);
    }
    let change = more
        .iter()
        .find(|e| e.kind == EventKind::VersionChanged)
        .unwrap();
    assert_eq!((change.old_version, change.new_version), (2, 3));
    // close() wakes a waiter, which then hears CLOSED.
    let last = engine.last_event_seq();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| engine.next_event(last, Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(50));
        engine.close();
        assert_eq!(waiter.join().unwrap(), Err(WaitError::Closed));
    });
}

#[test]
fn an_unwritable_cache_is_an_event() {
    let edge = TestEdge::start();
    let mut publisher = Publisher::new("lineage-a");
    edge.publish(&mut publisher, &catalog(10));
    let dir = TempDir::new("unwritable-event");
    let not_a_dir = dir.0.join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let engine = Engine::connect(SyncConfig {
        cache_dir: Some(not_a_dir),
        ..config(&edge.url())
    })
    .unwrap();
    let events = events_until(&engine, CONVERGE, |e| {
        kinds(e).contains(&EventKind::CacheError)
    });
    let cache = events.last().unwrap();
    assert!(cache.message.contains("file"), "{cache:?}");
    assert_eq!(cache.new_version, engine.version());
}
