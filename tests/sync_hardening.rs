//! Sync against edges that are hostile, broken or shared, on loopback: limits on what a client
//! downloads and how often it asks, what it keeps at close, engines sharing a cache directory,
//! redirects, and the choice between a delta chain and the snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "sync_support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
