//! The edge as users meet it: `entitle publish`, `entitle serve` and `entitle watch` through the real
//! binary, on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{
    entitle, example, http, limit_catalog as catalog, ok_json as ok, Running, Server, TempDir,
};
use serde_json::Value;

#[test]
fn publish_validates_first_and_writes_nothing_on_error() {
    let dir = TempDir::new("cli-edge");
    let bad = dir.path("bad.json");
    std::fs::write(
        &bad,
        r#"{"features": [{"key": "x", "type": "limit", "default": -1}]}"#,
    )
    .unwrap();
    let edge = dir.path("edge");
    let out = entitle(&["publish", &bad, "--edge", &edge]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("features[0].default"));
    assert!(!Path::new(&edge).exists(), "nothing is written on error");

    let first = ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    assert_eq!(first["version"], 1);
    let manifest = std::fs::read(dir.path("edge/manifest.json")).unwrap();
    let out = entitle(&["publish", &bad, "--edge", &edge]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(dir.path("edge/manifest.json")).unwrap(),
        manifest
    );
}

#[test]
fn publish_writes_versions_deltas_and_keeps_the_last_n() {
    let dir = TempDir::new("cli-edge");
    let edge = dir.path("edge");
    let mut lineage = Value::Null;
    for n in 1..=5u64 {
        let c = catalog(&dir, &format!("c{n}.json"), n * 10);
        let out = ok(&["publish", &c, "--edge", &edge, "--keep", "2"]);
        assert_eq!(out["version"], n);
        if n == 1 {
            lineage = out["lineage"].clone();
            assert!(out["delta"].is_null());
        } else {
            assert_eq!(out["lineage"], lineage);
            let delta = dir.path(&format!("edge/{}", out["delta"].as_str().unwrap()));
            let info = ok(&["inspect", &delta]);
            assert_eq!(info["base_version"], n - 1);
            assert_eq!(info["target_version"], n);
        }
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path("edge/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["version"], 5);
    assert_eq!(manifest["deltas"].as_array().unwrap().len(), 2);
    let snapshot = dir.path(&format!(
        "edge/{}",
        manifest["snapshot"]["path"].as_str().unwrap()
    ));
    let answer = ok(&["check", &snapshot, "cus_a", "projects"]);
    assert_eq!(answer["limit"], 50);
    // The previous manifest's files stay one more publish; older ones are gone.
    assert_eq!(
        std::fs::read_dir(dir.path("edge/snapshots"))
            .unwrap()
            .count(),
        2
    );
    assert_eq!(
        std::fs::read_dir(dir.path("edge/deltas")).unwrap().count(),
        3
    );

    let fresh = ok(&[
        "publish",
        &catalog(&dir, "c6.json", 60),
        "--edge",
        &edge,
        "--new-lineage",
    ]);
    assert_eq!(fresh["version"], 1);
    assert_ne!(fresh["lineage"], lineage);
}

#[test]
fn serve_speaks_http_with_etags_tokens_and_no_traversal() {
    let dir = TempDir::new("cli-edge");
    let edge = dir.path("edge");
    let published = ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let token = dir.path("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    std::fs::write(dir.path("secret.txt"), "outside the edge").unwrap();
    let server = Server::start(Some(&edge), &["--token-file", &token]);
    let addr = server.addr.clone();
    let auth = [("Authorization", "Bearer s3cret")];

    let denied = http(&addr, "GET", "/manifest.json", &[]);
    assert_eq!(denied.status, 401);
    assert!(denied.header("www-authenticate").is_some());
    let wrong = http(
        &addr,
        "GET",
        "/manifest.json",
        &[("Authorization", "Bearer s3cre")],
    );
    assert_eq!(wrong.status, 401);

    let m = http(&addr, "GET", "/manifest.json", &auth);
    assert_eq!(m.status, 200);
    let manifest: Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(manifest["version"], 1);
    let etag = m.header("etag").unwrap().to_owned();
    assert!(m.header("cache-control").unwrap().contains("max-age=1"));
    assert_eq!(m.header("entitle-long-poll"), Some("25"));
    let again = http(
        &addr,
        "GET",
        "/manifest.json",
        &[auth[0], ("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    let snap_path = format!("/{}", published["snapshot"].as_str().unwrap());
    let snap = http(&addr, "GET", &snap_path, &auth);
    assert_eq!(snap.status, 200);
    assert_eq!(
        snap.body,
        std::fs::read(dir.path(&format!("edge{snap_path}"))).unwrap()
    );
    assert!(snap.header("cache-control").unwrap().contains("immutable"));
    let snap_etag = snap.header("etag").unwrap().to_owned();
    let head = http(&addr, "HEAD", &snap_path, &auth);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length").unwrap(),
        snap.body.len().to_string()
    );
    assert!(head.body.is_empty());
    assert_eq!(
        http(
            &addr,
            "GET",
            &snap_path,
            &[auth[0], ("If-None-Match", &snap_etag)]
        )
        .status,
        304
    );

    assert_eq!(http(&addr, "POST", "/manifest.json", &auth).status, 405);
    assert_eq!(http(&addr, "DELETE", &snap_path, &auth).status, 405);
    for bad in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/snapshots/../../secret.txt",
        "//etc/passwd",
        "/",
        "/snapshots",
        "/nope.snap",
    ] {
        let r = http(&addr, "GET", bad, &auth);
        assert_eq!(r.status, 404, "{bad}");
        assert!(!String::from_utf8_lossy(&r.body).contains("outside"));
    }
}

#[test]
fn serve_long_polls_the_manifest() {
    let dir = TempDir::new("cli-edge");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let server = Server::start(Some(&edge), &[]);
    let addr = server.addr.clone();
    let etag = http(&addr, "GET", "/manifest.json", &[])
        .header("etag")
        .unwrap()
        .to_owned();

    // Nothing changes: the server holds the request for the wait, then says 304.
    let started = Instant::now();
    let idle = http(
        &addr,
        "GET",
        "/manifest.json?wait=1",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(idle.status, 304);
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A publish answers a waiting request with the new manifest.
    let waiter = {
        let addr = addr.clone();
        let etag = etag.clone();
        std::thread::spawn(move || {
            http(
                &addr,
                "GET",
                "/manifest.json?wait=25",
                &[("If-None-Match", &etag)],
            )
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    ok(&["publish", &catalog(&dir, "c2.json", 20), "--edge", &edge]);
    let changed = waiter.join().unwrap();
    assert_eq!(changed.status, 200);
    let manifest: Value = serde_json::from_slice(&changed.body).unwrap();
    assert_eq!(manifest["version"], 2);
}

#[test]
fn watch_shows_what_an_application_sees() {
    let dir = TempDir::new("cli-edge");
    let edge = dir.path("edge");
    ok(&["publish", &example(), "--edge", &edge]);
    let server = Server::start(Some(&edge), &[]);
    let addr = server.addr.clone();
    let url = format!("http://{addr}");
    let cache = dir.path("cache");
    let watch = Running::start(&[
        "watch",
        &url,
        "cus_free_ada",
        "projects",
        "--poll",
        "0.2",
        "--long-poll",
        "10",
        "--cache-dir",
        &cache,
    ]);
    let ready = watch.until(|v| v["state"] == "ready");
    assert_eq!(ready["version"], 1);
    assert_eq!(ready["limit"], 3);
    assert_eq!(ready["reason"], "subscription");
    assert!(ready["data_age"].is_number());

    // cus_free_ada moves from the free plan to pro.
    let text = std::fs::read_to_string(example()).unwrap();
    let upgraded: String = text
        .lines()
        .map(|l| {
            if l.contains("sub_ada_1") {
                l.replace("\"prod_free\"", "\"prod_pro\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(upgraded, text.trim_end_matches('\n'));
    let changed = dir.path("upgraded.json");
    std::fs::write(&changed, upgraded).unwrap();
    ok(&["publish", &changed, "--edge", &edge]);
    let line = watch.until(|v| v["limit"] == 50);
    assert_eq!(line["version"], 2);
    assert_eq!(line["state"], "ready");
    drop(watch);

    // The cache file is a plain snapshot that `check` reads.
    let snap = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .expect("cache snapshot");
    let cached = ok(&["check", snap.to_str().unwrap(), "cus_free_ada", "projects"]);
    assert!(cached["limit"] == 3 || cached["limit"] == 50);
}

#[test]
fn watch_reports_a_failing_edge() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let watch = Running::start(&[
        "watch",
        &format!("http://127.0.0.1:{port}"),
        "cus_a",
        "projects",
        "--poll",
        "0.05",
    ]);
    let first: Value = serde_json::from_str(&watch.line()).unwrap();
    assert_eq!(first["reason"], "feature_not_found");
    // The first round may already have failed when the first line is printed.
    let failed = if first["state"] == "failed" {
        first
    } else {
        watch.until(|v| v["state"] == "failed")
    };
    assert!(failed["last_error"].is_string());
    assert_eq!(failed["version"], 0);
}

#[test]
fn serve_and_watch_refuse_bad_arguments() {
    let out = entitle(&["serve", "/nonexistent/edge/dir", "--addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let out = entitle(&["watch", "ftp://x", "c", "f"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
}
