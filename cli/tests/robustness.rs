//! The CLI under misuse and races: concurrent publishers, oversized options, special files,
//! misleading inputs and signals. Each test runs the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

mod common;

use common::{entitle, fails, TempDir};
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

#[test]
fn keep_is_bounded_so_the_manifest_fits() {
    let dir = TempDir::new("keep-bound");
    let edge = dir.path("edge");
    let c = catalog(&dir, "c.json", 1, 0);
    let err = fails(&["publish", &c, "--edge", &edge, "--keep", "100000"]);
    assert!(err.contains("is more than 1000"), "{err}");
    assert!(!Path::new(&edge).exists());
    let out = entitle(&["publish", &c, "--edge", &edge, "--keep", "1000"]);
    assert!(out.status.success());
}

#[test]
fn special_files_and_misplaced_inputs_get_clear_errors() {
    let err = fails(&["check", "/dev/zero", "cus_a", "projects"]);
    assert!(err.contains("/dev/zero: not a regular file"), "{err}");
    let dir = TempDir::new("misplaced");
    let err = fails(&["check", &dir.path(""), "cus_a", "projects"]);
    assert!(err.contains("Is a directory"), "{err}");
    // A delta where a snapshot is expected is named as a delta, not as an invalid catalog.
    let (a, b) = (dir.path("a.snap"), dir.path("b.snap"));
    for (n, out) in [(1, &a), (2, &b)] {
        let c = catalog(&dir, &format!("c{n}.json"), n, 0);
        assert!(
            entitle(&["build", &c, "-o", out, "--version", &n.to_string()])
                .status
                .success()
        );
    }
    let d = dir.path("a-b.delta");
    assert!(entitle(&["diff", &a, &b, "-o", &d]).status.success());
    let err = fails(&["apply", &d, &d, "-o", &dir.path("out.snap")]);
    assert!(err.contains("this is a delta"), "{err}");
    assert!(!err.contains("catalog:"), "{err}");
    // Numbers that are whole but not written as integers, and 2^64.
    for (text, says) in [
        ("1e3", "write it as the integer 1000"),
        ("2.0", "write it as the integer 2"),
        ("18446744073709551616", "too large for 64 bits"),
        ("2.5", "not a whole number"),
    ] {
        let path = dir.path("n.json");
        std::fs::write(
            &path,
            format!(r#"{{"features": [{{"key": "p", "type": "limit", "default": {text}}}]}}"#),
        )
        .unwrap();
        let err = fails(&["check", &path, "c", "p"]);
        assert!(err.contains(says), "{text}: {err}");
    }
}

#[test]
fn watch_refuses_zero_durations_as_the_packages_do() {
    for (flag, value) in [
        ("--poll", "0"),
        ("--timeout", "0"),
        ("--max-staleness", "0"),
        ("--poll", "1e-9"),
        ("--max-artifact-bytes", "0"),
    ] {
        let err = fails(&[
            "watch",
            "http://127.0.0.1:9",
            "cus_a",
            "projects",
            flag,
            value,
        ]);
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
}

#[test]
fn watch_stops_cleanly_on_sigterm_and_sigint_and_saves_what_it_has() {
    use std::io::{BufRead, BufReader};
    for signal in ["TERM", "INT"] {
        let dir = TempDir::new("watch-signal");
        let edge = dir.path("edge");
        let cache = dir.path("cache");
        let c1 = catalog(&dir, "c1.json", 10, 50);
        assert!(entitle(&["publish", &c1, "--edge", &edge]).status.success());
        let mut server = Command::new(env!("CARGO_BIN_EXE_entitle"))
            .args(["serve", &edge, "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let start = first.find("http://").expect("serve names its address");
        let url: String = first[start..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        let mut watch = Command::new(env!("CARGO_BIN_EXE_entitle"))
            .args([
                "watch",
                &url,
                "cus_a",
                "projects",
                "--poll",
                "0.05",
                "--cache-dir",
                &cache,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
        let mut until = |text: &str| loop {
            let line = lines.next().expect("watch output").unwrap();
            if line.contains(text) {
                break;
            }
        };
        until("\"limit\": 10,");
        // Version 2 arrives as a delta: not written to the cache before persist_interval (30 s).
        let c2 = catalog(&dir, "c2.json", 20, 50);
        assert!(entitle(&["publish", &c2, "--edge", &edge]).status.success());
        until("\"limit\": 20,");
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &watch.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = watch.wait_with_output().unwrap();
        server.kill().unwrap();
        server.wait().unwrap();
        assert!(
            out.status.success(),
            "SIG{signal}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // The cache holds version 2: a restart with the edge down serves what was served.
        let snap = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "snap"))
            .expect("a cache file");
        let out = entitle(&["check", snap.to_str().unwrap(), "cus_a", "projects"]);
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(answer.contains("\"limit\": 20"), "SIG{signal}: {answer}");
    }
}
