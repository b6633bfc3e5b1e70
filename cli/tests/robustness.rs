//! The CLI under misuse and races: concurrent publishers, oversized options, special files,
//! misleading inputs and signals. Each test runs the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

mod common;

use common::{entitle, TempDir};
use entitle_core::edge::read_manifest;

/// A catalog where `cus_a` has `projects` = `n`, plus `extra` filler customers.
fn catalog(dir: &TempDir, name: &str, n: u64, extra: usize) -> String {
    let mut customers = vec![format!(
        r#"{{"id": "cus_a", "overrides": {{"projects": {n}}}}}"#
    )];
    for i in 0..extra {
        customers.push(format!(
            r#"{{"id": "cus_{i}", "overrides": {{"projects": {}}}}}"#,
            i as u64 + n
        ));
    }
    let path = dir.path(name);
    std::fs::write(
        &path,
        format!(
            r#"{{"features": [{{"key": "projects", "type": "limit", "default": 3}}],
                "customers": [{}]}}"#,
            customers.join(",")
        ),
    )
    .unwrap();
    path
}

/// Every file the manifest names exists.
fn assert_consistent(edge: &Path) {
    let m = read_manifest(edge).unwrap().expect("a manifest");
    for p in m.paths() {
        assert!(edge.join(p).is_file(), "the manifest names {p}, missing");
    }
}

#[test]
fn concurrent_publishes_take_turns_and_leave_a_consistent_edge() {
    let dir = TempDir::new("publish-race");
    let edge = dir.path("edge");
    let first = catalog(&dir, "c0.json", 1, 2000);
    let out = entitle(&["publish", &first, "--edge", &edge]);
    assert!(out.status.success());
    let writers = 4;
    let rounds = 5;
    let mut published = 1;
    for round in 0..rounds {
        let children: Vec<_> = (0..writers)
            .map(|w| {
                let c = catalog(
                    &dir,
                    &format!("c{round}-{w}.json"),
                    (round * writers + w + 2) as u64,
                    2000,
                );
                Command::new(env!("CARGO_BIN_EXE_entitle"))
                    .args(["publish", &c, "--edge", &edge])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut versions = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "a concurrent publish failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            versions.push(v["version"].as_u64().unwrap());
        }
        versions.sort_unstable();
        let expected: Vec<u64> = (published + 1..=published + writers as u64).collect();
        assert_eq!(versions, expected, "each publish got its own version");
        published += writers as u64;
        assert_consistent(Path::new(&edge));
    }
    // The chain is whole: one delta per publish since the first.
    let m = read_manifest(Path::new(&edge)).unwrap().unwrap();
    assert_eq!(m.version, published);
    assert_eq!(m.deltas.len() as u64, published - 1);
    assert!(m
        .chain_from(m.deltas[0].from, m.deltas[0].from_checksum)
        .is_some());
    let last = catalog(&dir, "last.json", 999, 10);
    let out = entitle(&["publish", &last, "--edge", &edge]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_publisher_that_cannot_get_the_lock_in_time_fails_clearly() {
    let dir = TempDir::new("publish-locked");
    let edge = dir.path("edge");
    let c = catalog(&dir, "c.json", 1, 0);
    assert!(entitle(&["publish", &c, "--edge", &edge]).status.success());
    let before = std::fs::read(Path::new(&edge).join("manifest.json")).unwrap();
    // flock(1) holds the edge's lock like another publisher would, until it is killed.
    let mut holder = Command::new("flock")
        .args(["-o", &format!("{edge}/.publish.lock"), "sleep", "30"])
        .spawn()
        .expect("flock(1) from util-linux");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = entitle(&["publish", &c, "--edge", &edge, "--wait", "0.5"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another publish of this edge is in progress"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(Path::new(&edge).join("manifest.json")).unwrap(),
        before
    );
    // Once the holder is gone the next publish goes through.
    assert!(entitle(&["publish", &c, "--edge", &edge]).status.success());
}

#[test]
fn publish_repairs_an_edge_that_lost_files() {
    let dir = TempDir::new("publish-repair");
    let edge = dir.path("edge");
    for n in 1..=4 {
        let c = catalog(&dir, &format!("c{n}.json"), n, 5);
        assert!(entitle(&["publish", &c, "--edge", &edge]).status.success());
    }
    let m = read_manifest(Path::new(&edge)).unwrap().unwrap();
    // Lose the current snapshot and the oldest delta (as a racing publisher's clean-up once did).
    std::fs::remove_file(Path::new(&edge).join(&m.snapshot.path)).unwrap();
    std::fs::remove_file(Path::new(&edge).join(&m.deltas[0].path)).unwrap();
    let c = catalog(&dir, "c5.json", 5, 5);
    let out = entitle(&["publish", &c, "--edge", &edge]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("repaired the edge"));
    assert_consistent(Path::new(&edge));
    let c = catalog(&dir, "c6.json", 6, 5);
    assert!(entitle(&["publish", &c, "--edge", &edge]).status.success());
    assert_consistent(Path::new(&edge));
    let m = read_manifest(Path::new(&edge)).unwrap().unwrap();
    assert_eq!(m.version, 6);
    assert_eq!(m.deltas.len(), 1, "{:?}", m.deltas);
}
