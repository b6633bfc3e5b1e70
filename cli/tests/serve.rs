//! `entitle serve` as an edge server: refusing links, dotfiles and special files; health, metrics and
//! the access log; bearer tokens and token files; graceful SIGTERM; the customer-state API (against
//! `entitle check`, and chained through `--upstream`); clients that stop reading; running out of
//! descriptors; and, run by scripts/test-edge.sh, idle and slowloris connections that must not keep
//! an authorized client waiting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{
    address, entitle, eventually, example, http, limit_catalog as catalog, ok_json as ok, Running,
    Server, TempDir,
};
use serde_json::Value;

#[cfg(unix)]
#[test]
fn serve_refuses_links_dotfiles_and_special_files() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    let published = ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    std::fs::write(dir.path("secret.txt"), "outside the edge").unwrap();
    std::fs::write(dir.path("edge/.env"), "SECRET=1").unwrap();
    std::fs::create_dir_all(dir.path("edge/.git")).unwrap();
    std::fs::write(dir.path("edge/.git/config"), "[core]").unwrap();
    std::fs::write(dir.path("edge/notes.txt"), "not an edge file").unwrap();
    std::fs::write(dir.path("edge/snapshots/.hidden.snap"), "hidden").unwrap();
    std::fs::create_dir_all(dir.path("edge/deltas")).unwrap();
    std::os::unix::fs::symlink(dir.path("secret.txt"), dir.path("edge/deltas/link.delta")).unwrap();
    let fifo = dir.path("edge/deltas/fifo.delta");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let server = Server::start(Some(&edge), &[]);

    let snap = format!("/{}", published["snapshot"].as_str().unwrap());
    let served = server.get(&snap, &[]);
    assert_eq!(served.status, 200);
    assert_eq!(
        served.header("vary"),
        None,
        "no token: the same for everyone"
    );
    for path in [
        "/.env",
        "/.git/config",
        "/notes.txt",
        "/snapshots/.hidden.snap",
        "/deltas/link.delta",
        "/deltas/fifo.delta",
        "/snapshots/../.env",
    ] {
        let r = server.get(path, &[]);
        assert_eq!(r.status, 404, "{path}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("SECRET"),
            "{path}"
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("outside"),
            "{path}"
        );
    }

    // A manifest that is a link to a file outside is not read (nor followed by the snapshot loader).
    eventually("ready", || {
        (server.get("/healthz", &[]).status == 200).then_some(())
    });
    std::fs::rename(
        dir.path("edge/manifest.json"),
        dir.path("real-manifest.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path("secret.txt"), dir.path("edge/manifest.json")).unwrap();
    eventually("the linked manifest to be dropped", || {
        (server.get("/healthz", &[]).status == 503).then_some(())
    });
    let m = server.get("/manifest.json", &[]);
    assert_eq!(m.status, 404);
    assert!(!String::from_utf8_lossy(&m.body).contains("outside"));
    // A linked snapshots directory is refused too.
    std::fs::remove_file(dir.path("edge/manifest.json")).unwrap();
    std::fs::rename(
        dir.path("real-manifest.json"),
        dir.path("edge/manifest.json"),
    )
    .unwrap();
    std::fs::rename(dir.path("edge/snapshots"), dir.path("moved-snapshots")).unwrap();
    std::os::unix::fs::symlink(dir.path("moved-snapshots"), dir.path("edge/snapshots")).unwrap();
    assert_eq!(server.get(&snap, &[]).status, 404);
}

#[test]
fn serve_reports_health_metrics_and_access_log() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    let token = dir.path("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    std::fs::create_dir_all(&edge).unwrap();
    let server = Server::start(None, &[&edge, "--token-file", &token, "--access-log"]);
    let auth = [("Authorization", "Bearer t0ken")];

    // Nothing published yet: not ready; /healthz needs no token, /metrics does.
    let h = server.get("/healthz", &[]);
    assert_eq!(h.status, 503);
    assert_eq!(h.json()["status"], "unavailable");
    assert_eq!(server.get("/metrics", &[]).status, 401);

    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let h = eventually("ready", || {
        let h = server.get("/healthz", &[]);
        (h.status == 200).then_some(h)
    });
    assert_eq!(h.json()["version"], 1);
    assert_eq!(h.json()["state_version"], 1);

    let manifest = server.get("/manifest.json", &auth);
    assert_eq!(manifest.status, 200);
    let state = server.get("/v1/customers/cus_a/state", &auth);
    assert_eq!(state.status, 200);
    assert_eq!(server.get("/nope", &auth).status, 404);
    let m = server.get("/metrics", &auth);
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(m.body).unwrap();
    // Earlier connections may still be closing on the server's side: at least this one is open.
    let open = text
        .lines()
        .find_map(|l| l.strip_prefix("entitle_edge_connections "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(open.is_some_and(|n| n >= 1), "{text}");
    for needle in [
        "entitle_edge_long_polls 0\n",
        "entitle_edge_manifest_version 1\n",
        "entitle_edge_state_version 1\n",
        "entitle_edge_requests_total{code=\"200\"}",
        "entitle_edge_requests_total{code=\"401\"} 1\n",
        "entitle_edge_requests_total{code=\"404\"} 1\n",
        "entitle_edge_manifest_age_seconds ",
        "entitle_edge_response_bytes_total ",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }

    let mut logged = Vec::new();
    let line = eventually("an access log line for /nope", || {
        logged.extend(
            server
                .stderr()
                .try_iter()
                .map(|l| serde_json::from_str::<Value>(&l).unwrap()),
        );
        logged.iter().find(|l| l["path"] == "/nope").cloned()
    });
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 404);
    assert_eq!(line["bytes"], "not found\n".len());
    assert!(line["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(line["ms"].is_number() && line["time"].is_number());

    // Every body is counted, whether the handler declared its length or not.
    let bytes_of = |path: &str| {
        logged
            .iter()
            .find(|l| l["path"] == path && l["status"] == 200)
            .unwrap_or_else(|| panic!("an access log line for {path} in {logged:?}"))["bytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(bytes_of("/manifest.json"), manifest.body.len() as u64);
    assert_eq!(
        bytes_of("/v1/customers/cus_a/state"),
        state.body.len() as u64
    );
    let counted = server.metric("entitle_edge_response_bytes_total", &auth);
    assert!(
        counted >= (manifest.body.len() + state.body.len() + text.len()) as f64,
        "{counted} bytes counted"
    );
    let head = http(&server.addr, "HEAD", "/manifest.json", &auth);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let line = eventually("an access log line for HEAD", || {
        server
            .stderr()
            .try_iter()
            .find(|l| l.contains("\"HEAD\""))
            .map(|l| serde_json::from_str::<Value>(&l).unwrap())
    });
    assert_eq!(line["bytes"], 0, "HEAD sends no body");
}

#[test]
fn bearer_tokens_are_checked_by_the_header_alone() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    let published = ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let token = dir.path("token");
    std::fs::write(&token, "t0ken").unwrap();
    let server = Server::start(Some(&edge), &["--token-file", &token]);
    // The scheme is case-insensitive (RFC 9110, section 11.1); the token is not.
    for good in [
        "Bearer t0ken",
        "bearer t0ken",
        "BEARER t0ken",
        "Bearer  t0ken ",
    ] {
        let r = server.get("/manifest.json", &[("Authorization", good)]);
        assert_eq!(r.status, 200, "{good}");
    }
    for bad in [
        "Bearer T0KEN",
        "Bearer t0ke",
        "Bearer t0ken0",
        "Bearer ",
        "Bearer",
        "Bearert0ken",
        "Basic t0ken",
        "t0ken",
    ] {
        let r = server.get("/manifest.json", &[("Authorization", bad)]);
        assert_eq!(r.status, 401, "{bad}");
        assert!(r.header("www-authenticate").is_some());
    }
    assert_eq!(server.get("/manifest.json?token=t0ken", &[]).status, 401);
    // Caches may keep what they answered with the token only for requests with the same token.
    let auth = [("Authorization", "Bearer t0ken")];
    let manifest = server.get("/manifest.json", &auth);
    let etag = manifest.header("etag").unwrap().to_owned();
    let revalidated = server.get("/manifest.json", &[auth[0], ("If-None-Match", &etag)]);
    assert_eq!(revalidated.status, 304);
    let snapshot = server.get(
        &format!("/{}", published["snapshot"].as_str().unwrap()),
        &auth,
    );
    assert_eq!(snapshot.status, 200);
    for r in [&manifest, &revalidated, &snapshot] {
        assert!(r.header("cache-control").unwrap().contains("public"));
        assert_eq!(r.header("vary"), Some("authorization"));
    }
    assert_eq!(
        server
            .get(
                "/manifest.json",
                &[
                    ("Authorization", "Bearer nope"),
                    ("Authorization", "Bearer t0ken")
                ]
            )
            .status,
        401,
        "only the first Authorization field counts"
    );
}

#[test]
fn sigterm_answers_held_long_polls_and_exits() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let mut server = Server::start(Some(&edge), &["--shutdown-timeout", "3"]);
    let etag = server
        .get("/manifest.json", &[])
        .header("etag")
        .unwrap()
        .to_owned();
    let addr = server.addr.clone();
    let held = std::thread::spawn(move || {
        let start = Instant::now();
        let r = http(
            &addr,
            "GET",
            "/manifest.json?wait=25",
            &[("If-None-Match", &etag)],
        );
        (r.status, start.elapsed())
    });
    eventually("the long-poll to be held", || {
        (server.metric("entitle_edge_long_polls", &[]) == 1.0).then_some(())
    });
    let sent = Instant::now();
    server.terminate();
    let (status, waited) = held.join().unwrap();
    assert_eq!(status, 304);
    assert!(waited < Duration::from_secs(20), "answered at shutdown");
    let exit = eventually("the server to exit", || {
        server.process.child.try_wait().unwrap()
    });
    assert!(exit.success(), "{exit:?}");
    assert!(sent.elapsed() < Duration::from_secs(10));
}

#[test]
fn sigterm_does_not_wait_for_connections_that_never_sent_a_request() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let mut server = Server::start(Some(&edge), &["--shutdown-timeout", "20"]);
    eventually("ready", || {
        (server.get("/healthz", &[]).status == 200).then_some(())
    });
    let _idle = TcpStream::connect(&server.addr).unwrap();
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"GET /manifest.json HTTP/1.1\r\nX-Slow: aaa")
        .unwrap();
    // A request being answered is still let finish.
    let mut reading = TcpStream::connect(&server.addr).unwrap();
    reading
        .write_all(b"GET /manifest.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    server.terminate();
    let exit = eventually("the server to exit", || {
        server.process.child.try_wait().unwrap()
    });
    assert!(exit.success(), "{exit:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "exited after {:?}, not at the shutdown timeout",
        sent.elapsed()
    );
    reading
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = reading.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
}

#[test]
fn token_files_with_unsendable_tokens_are_refused() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    std::fs::create_dir_all(&edge).unwrap();
    for (name, content) in [
        ("space", &b"two words\n"[..]),
        ("latin1", "caf\u{e9}".as_bytes()),
        ("control", b"a\x01b"),
        ("empty", b"  \n"),
    ] {
        let token = dir.path(name);
        std::fs::write(&token, content).unwrap();
        let out = entitle(&[
            "serve",
            &edge,
            "--addr",
            "127.0.0.1:0",
            "--token-file",
            &token,
        ]);
        assert!(!out.status.success(), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&token),
            "{name}: the error names the file"
        );
    }
}

fn catalog_ids(path: &str) -> (Vec<String>, Vec<String>) {
    let c: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let ids = |k: &str, f: &str| -> Vec<String> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x[f].as_str().unwrap().to_owned())
            .collect()
    };
    (ids("customers", "id"), ids("features", "key"))
}

/// Asserts that the state document answers like `entitle check SOURCE customer feature --at AT`.
fn assert_state_matches_check(state: &Value, source: &str, customer: &str, at: i64) {
    for f in state["features"].as_array().unwrap() {
        let key = f["key"].as_str().unwrap();
        let check = ok(&["check", source, customer, key, "--at", &at.to_string()]);
        match f["type"].as_u64().unwrap() {
            0 => {
                assert_eq!(check["feature_type"], "flag");
                assert_eq!(f["value_flag"], check["enabled"], "{customer} {key}");
                assert!(f["value_limit"].is_null());
            }
            1 => {
                assert_eq!(check["feature_type"], "limit");
                let expected = match &check["limit"] {
                    Value::String(s) if s == "unlimited" => Value::Null,
                    other => other.clone(),
                };
                assert_eq!(f["value_limit"], expected, "{customer} {key}");
                assert!(f["value_flag"].is_null());
            }
            t => panic!("type {t}"),
        }
        assert_eq!(f["name"], key);
    }
}

/// The Stripe subscription objects the state API lists for `customer` of the catalog at `path`:
/// those not canceled, with what the catalog knows.
fn expected_subscriptions(path: &str, customer: &str) -> Value {
    let c: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let customer = c["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == customer)
        .unwrap();
    let subs = customer["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Value::Array(
        subs.iter()
            .filter(|s| s["status"] != "canceled")
            .map(|s| {
                let items: Vec<Value> = s["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "object": "subscription_item",
                            "price": {"object": "price", "product": i["product"]},
                            "quantity": i.get("quantity").cloned().unwrap_or(Value::from(1)),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "id": s["id"], "object": "subscription", "customer": customer["id"],
                    "status": s["status"], "cancel_at": s["cancel_at"],
                    "items": {"object": "list", "data": items},
                })
            })
            .collect(),
    )
}

#[test]
fn customer_state_answers_like_check_and_follows_publishes() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    let catalog_path = example();
    let published = ok(&["publish", &catalog_path, "--edge", &edge]);
    let snapshot = dir.path(&format!("edge/{}", published["snapshot"].as_str().unwrap()));
    let token = dir.path("token");
    std::fs::write(&token, "sk_edge_1\n").unwrap();
    let server = Server::start(Some(&edge), &["--token-file", &token]);
    let auth = [
        ("Authorization", "Bearer sk_edge_1"),
        ("X-Spackle-Schema-Version", "1"),
    ];
    let (customers, features) = catalog_ids(&catalog_path);
    eventually("content", || {
        (server.get("/healthz", &[]).status == 200).then_some(())
    });

    assert_eq!(
        server.get("/v1/customers/cus_free_ada/state", &[]).status,
        401
    );
    let missing = server.get("/v1/customers/cus_nobody/state", &auth);
    assert_eq!(missing.status, 404);
    for at in [1_700_000_000i64, 1_850_000_000] {
        for c in &customers {
            let r = server.get(&format!("/v1/customers/{c}/state?at={at}"), &auth);
            assert_eq!(r.status, 200, "{c}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            let state = r.json();
            assert_eq!(state["version"], 1);
            assert_eq!(
                state["subscriptions"],
                expected_subscriptions(&catalog_path, c),
                "{c}"
            );
            let keys: Vec<&str> = state["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["key"].as_str().unwrap())
                .collect();
            assert_eq!(keys, features, "every feature is listed");
            assert_state_matches_check(&state, &snapshot, c, at);
        }
    }

    // A publish reaches the state API.
    let before = server.get("/v1/customers/cus_a/state", &auth).status;
    assert_eq!(before, 404);
    ok(&["publish", &catalog(&dir, "c2.json", 77), "--edge", &edge]);
    let state = eventually("the new version", || {
        let r = server.get("/v1/customers/cus_a/state", &auth);
        (r.status == 200).then(|| r.json())
    });
    assert_eq!(state["features"][0]["value_limit"], 77);
    assert_eq!(
        state["subscriptions"],
        expected_subscriptions(&dir.path("c2.json"), "cus_a")
    );

    // Hostile ids and times: JSON errors, never stored.
    let unknown = server.get("/v1/customers/%22%3Cx%3E%00/state", &auth);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "customer \"<x>\u{0} not found");
    for target in [
        "/v1/customers/%ff%fe/state",
        "/v1/customers/cus_a/state?at=soon",
        "/v1/customers/cus_a/state?at=1&at=2",
        "/v1/customers/cus_a/state?at=99999999999999999999",
    ] {
        let r = server.get(target, &auth);
        assert_eq!(r.status, 400, "{target}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{target}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"), "{target}");
        assert!(r.json()["error"].is_string(), "{target}");
    }
    let extreme = server.get(&format!("/v1/customers/cus_a/state?at={}", i64::MIN), &auth);
    assert_eq!(extreme.status, 200);
}

/// A catalog where `cus_a` has `projects` = `n` and one subscription `sub_n` of `quantity` seats.
fn catalog_with_subscription(dir: &TempDir, name: &str, n: u64) -> String {
    let path = dir.path(name);
    std::fs::write(
        &path,
        format!(
            r#"{{"features": [{{"key": "projects", "type": "limit", "default": 3}}],
                "products": [{{"id": "prod_pro", "features": {{"projects": 50}}}}],
                "customers": [{{"id": "cus_a", "overrides": {{"projects": {n}}},
                  "subscriptions": [{{"id": "sub_{n}", "status": "active", "cancel_at": 1900000000,
                                      "items": [{{"product": "prod_pro", "quantity": {n}}}]}},
                                    {{"id": "sub_old", "status": "canceled", "items": []}}]}},
                  {{"id": "cus_b"}}]}}"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_state_api_applies_published_deltas_and_falls_back_to_snapshots() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&[
        "publish",
        &catalog_with_subscription(&dir, "c1.json", 10),
        "--edge",
        &edge,
    ]);
    let server = Server::start(Some(&edge), &[]);
    let limit_and_subs = || {
        let r = server.get("/v1/customers/cus_a/state", &[]);
        (r.status == 200).then(|| {
            let s = r.json();
            let v: u64 = r.header("entitle-version").unwrap().parse().unwrap();
            (
                v,
                s["features"][0]["value_limit"].clone(),
                s["subscriptions"].clone(),
            )
        })
    };
    let loads = || {
        (
            server.metric("entitle_edge_state_deltas_applied_total", &[]),
            server.metric("entitle_edge_state_snapshots_loaded_total", &[]),
        )
    };
    eventually("the first version", || {
        limit_and_subs().filter(|s| s.0 == 1)
    });
    assert_eq!(loads(), (0.0, 1.0));

    // A publish with a delta from the served version: applied, not reloaded.
    let c2 = catalog_with_subscription(&dir, "c2.json", 20);
    let published = ok(&["publish", &c2, "--edge", &edge]);
    assert!(published["delta"].is_string());
    let (_, limit, subs) = eventually("version 2", || limit_and_subs().filter(|s| s.0 == 2));
    assert_eq!(limit, 20);
    assert_eq!(subs, expected_subscriptions(&c2, "cus_a"));
    assert_eq!(subs[0]["id"], "sub_20");
    assert_eq!(
        subs.as_array().unwrap().len(),
        1,
        "canceled subscriptions are left out"
    );
    assert_eq!(loads(), (1.0, 1.0));
    let b = server.get("/v1/customers/cus_b/state", &[]).json();
    assert_eq!(b["subscriptions"], Value::Array(vec![]));

    // No delta leads there (--keep 0): the snapshot is loaded.
    ok(&[
        "publish",
        &catalog_with_subscription(&dir, "c3.json", 30),
        "--edge",
        &edge,
        "--keep",
        "0",
    ]);
    let (_, limit, subs) = eventually("version 3", || limit_and_subs().filter(|s| s.0 == 3));
    assert_eq!(
        (limit, &subs[0]["id"]),
        (Value::from(30), &Value::from("sub_30"))
    );
    assert_eq!(loads(), (1.0, 2.0));
}

#[test]
fn subscriptions_documents_are_verified_and_optional() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    let published = ok(&[
        "publish",
        &catalog_with_subscription(&dir, "c1.json", 10),
        "--edge",
        &edge,
    ]);
    let doc_path = dir.path(&format!(
        "edge/{}",
        published["subscriptions"].as_str().unwrap()
    ));
    let manifest_path = dir.path("edge/manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();

    // A document that is not what the manifest names: the version is not served, and /healthz says why.
    let good = std::fs::read(&doc_path).unwrap();
    let mut bad = good.clone();
    let at = bad.iter().position(|&b| b == b'0').unwrap();
    bad[at] = b'1';
    std::fs::write(&doc_path, &bad).unwrap();
    let server = Server::start(Some(&edge), &[]);
    let h = eventually("the failure", || {
        let h = server.get("/healthz", &[]);
        (h.status == 503 && h.json()["problems"].to_string().contains("checksum")).then_some(h)
    });
    assert!(
        h.json()["problems"].to_string().contains("subscriptions/"),
        "{:?}",
        h.json()
    );
    assert_eq!(server.get("/v1/customers/cus_a/state", &[]).status, 503);
    std::fs::write(&doc_path, &good).unwrap();
    eventually("the retry", || {
        (server.get("/healthz", &[]).status == 200).then_some(())
    });
    let served = server.get(
        &format!("/{}", published["subscriptions"].as_str().unwrap()),
        &[],
    );
    assert_eq!(served.header("content-type"), Some("application/json"));
    assert_eq!((served.status, served.body), (200, good));
    drop(server);

    // An edge published without a document (an older publisher): no subscriptions, no error.
    let mut m: Value = serde_json::from_str(&manifest).unwrap();
    m.as_object_mut().unwrap().remove("subscriptions");
    std::fs::write(&manifest_path, m.to_string()).unwrap();
    let server = Server::start(Some(&edge), &[]);
    let state = eventually("content", || {
        let r = server.get("/v1/customers/cus_a/state", &[]);
        (r.status == 200).then(|| r.json())
    });
    assert_eq!(state["subscriptions"], Value::Array(vec![]));
    assert_eq!(state["features"][0]["value_limit"], 10);
}

#[test]
fn upstream_edges_chain_and_answer_the_state_api() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let token = dir.path("token");
    std::fs::write(&token, "origin-token").unwrap();
    let origin = Server::start(Some(&edge), &["--token-file", &token]);
    let url = format!("http://{}", origin.addr);
    let relay = Server::start(None, &["--upstream", &url, "--upstream-token-file", &token]);
    let state = eventually("the relay's first sync", || {
        let r = relay.get("/v1/customers/cus_a/state", &[]);
        (r.status == 200).then(|| r.json())
    });
    assert_eq!(state["features"][0]["value_limit"], 10);
    assert_eq!(state["subscriptions"], Value::Array(vec![]));
    assert_eq!(relay.get("/healthz", &[]).json()["status"], "ready");
    // The relay serves no directory.
    assert_eq!(relay.get("/manifest.json", &[]).status, 404);

    let c2 = catalog_with_subscription(&dir, "c2.json", 20);
    ok(&["publish", &c2, "--edge", &edge]);
    let state = eventually("the relay to follow the publish", || {
        let r = relay.get("/v1/customers/cus_a/state", &[]);
        let s = r.json();
        (s["features"][0]["value_limit"] == 20).then_some(s)
    });
    // The subscriptions arrive with the version they were published for.
    assert_eq!(state["subscriptions"], expected_subscriptions(&c2, "cus_a"));
}

#[test]
fn healthz_shows_problems_only_to_clients_with_the_token_and_no_credentials() {
    let dir = TempDir::new("cli-serve");
    let token = dir.path("token");
    std::fs::write(&token, "t0ken").unwrap();
    // An upstream that refuses connections, named with credentials in its URL.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://user:s3cret@{}/edge?key=k3y",
        dead.local_addr().unwrap()
    );
    drop(dead);
    let relay = Server::start(None, &["--upstream", &url, "--token-file", &token]);
    let anonymous = eventually("the failed sync", || {
        let r = relay.get("/healthz", &[]);
        (r.status == 503).then_some(r)
    });
    let body = String::from_utf8_lossy(&anonymous.body).into_owned();
    assert_eq!(anonymous.json()["status"], "unavailable");
    for secret in ["s3cret", "k3y", "user", "127.0.0.1"] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }
    let authorized = eventually("the problems", || {
        let r = relay.get("/healthz", &[("Authorization", "Bearer t0ken")]);
        let problems = r.json()["problems"].clone();
        (problems.as_array().is_some_and(|p| !p.is_empty())).then_some(problems)
    });
    let shown = authorized.to_string();
    assert!(shown.contains("upstream sync"), "{shown}");
    // Even then the URL's credentials and query are left out; its host is named.
    assert!(shown.contains("http://127.0.0.1:"), "{shown}");
    for secret in ["s3cret", "k3y", "user"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // Nor does the line naming the address.
    let other = Running::start(&["serve", "--upstream", &url, "--addr", "127.0.0.1:0"]);
    let line = other.line();
    assert!(
        line.starts_with("serving upstream http://127.0.0.1:"),
        "{line}"
    );
    assert!(!line.contains("s3cret") && !line.contains("k3y"), "{line}");
}

/// Opens `n` connections to `addr` that send nothing.
fn idle_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
}

/// Raises this process's open-file limit so that it can hold the attack's sockets.
fn raise_open_files(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= want,
        "the hard open-file limit ({}) is below {want}",
        lim.rlim_max
    );
}

/// One attack against a server started with `extra`: 1,000 idle and 500 slowloris connections (a
/// request head trickled a byte at a time) stay open while an authorized client long-polls and
/// fetches; each of its requests must be answered within a second. Returns the slowest answer.
fn attack(extra: &[&str]) -> (Duration, Server) {
    raise_open_files(4096);
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let token = dir.path("token");
    std::fs::write(&token, "abuse-test").unwrap();
    let mut args = vec!["--token-file", token.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(Some(&edge), &args);
    let auth = [("Authorization", "Bearer abuse-test")];
    let addr = server.addr.clone();

    let _idle = idle_connections(&addr, 1000);
    let mut slow = idle_connections(&addr, 500);
    let head = format!("GET /manifest.json HTTP/1.1\r\nHost: {addr}\r\nX-Padding: ");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 400 {
                let byte = head.as_bytes().get(sent).copied().unwrap_or(b'a');
                for s in &mut slow {
                    let _ = s.write_all(&[byte]);
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            slow
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let start = Instant::now();
        let r = server.get("/manifest.json", &auth);
        let took = start.elapsed();
        assert_eq!(r.status, 200);
        slowest = slowest.max(took);
        let start = Instant::now();
        let s = server.get("/v1/customers/cus_a/state", &auth);
        slowest = slowest.max(start.elapsed());
        assert_eq!(s.status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(trickle.join().unwrap());
    (slowest, server)
}

#[test]
#[ignore = "opens 1,500 connections: run by scripts/test-edge.sh"]
fn idle_and_slowloris_connections_do_not_lock_out_clients() {
    let auth = [("Authorization", "Bearer abuse-test")];
    // Room for every attacker: all 1,500 are held open at once.
    let (slowest, server) = attack(&["--max-pending", "4096"]);
    println!(
        "4,096 pending slots (all 1,500 held): slowest authorized answer {slowest:?} under 1,000 idle + 500 slowloris"
    );
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(server.metric("entitle_edge_accept_errors_total", &auth) == 0.0);
    drop(server);

    // Fewer pending slots than attackers: the oldest are evicted, clients still get in.
    let (slowest, server) = attack(&["--max-pending", "200"]);
    println!("200 pending slots: slowest authorized answer {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(server.metric("entitle_edge_connections_evicted_total", &auth) >= 1300.0);
    assert!(server.metric("entitle_edge_connections_pending", &auth) <= 200.0);
}

#[test]
fn a_client_that_stops_reading_is_cut_off() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    // Larger than every socket buffer between the server and this client (a sparse file).
    let size = 64u64 << 20;
    std::fs::create_dir_all(dir.path("edge/deltas")).unwrap();
    std::fs::File::create(dir.path("edge/deltas/big.delta"))
        .unwrap()
        .set_len(size)
        .unwrap();
    // No token: the client's request makes its connection trusted, so only the write deadline
    // can free it.
    let server = Server::start(Some(&edge), &["--write-timeout", "2"]);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET /deltas/big.delta HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    eventually("the stalled connection to be closed", || {
        (server.metric("entitle_edge_connections_write_timeouts_total", &[]) == 1.0).then_some(())
    });
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "not before the deadline"
    );
    // What was sent before the deadline arrives; the rest never does.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    assert!(got > 0 && got < size, "{got} of {size} bytes");
    eventually("the connection to be gone", || {
        (server.metric("entitle_edge_connections", &[]) == 1.0).then_some(())
    });

    // A client that reads, even slowly, is never cut off; nor is a held long-poll, which writes
    // nothing while it waits.
    let etag = server
        .get("/manifest.json", &[])
        .header("etag")
        .unwrap()
        .to_owned();
    let held = http(
        &server.addr,
        "GET",
        "/manifest.json?wait=3",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(held.status, 304);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET /deltas/big.delta HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // A megabyte every 250 ms for longer than the deadline (the socket buffers hold several: the
    // server keeps waiting to write, but its writes progress within the deadline).
    let mut got = 0u64;
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(250));
        let mut step = vec![0u8; 1 << 20];
        s.read_exact(&mut step).unwrap();
        got += step.len() as u64;
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    got += rest.len() as u64;
    assert!(got > size, "the whole body and its head: {got}");
    assert_eq!(
        server.metric("entitle_edge_connections_write_timeouts_total", &[]),
        1.0
    );
}

/// How many of the descriptor numbers below `limit` process `pid` has in use (an inherited
/// descriptor may sit above the limit).
#[cfg(target_os = "linux")]
fn descriptors_in_use(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
        .filter(|&fd| fd < limit)
        .count()
}

/// `entitle serve EDGE EXTRA...` with a descriptor table of `limit` entries, small enough to fill.
#[cfg(target_os = "linux")]
fn server_with_descriptors(edge: &str, limit: usize, extra: &[&str]) -> Server {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_entitle"),
        "serve",
        "--addr",
        "127.0.0.1:0",
        edge,
    ])
    .args(extra)
    .stderr(std::process::Stdio::null());
    let process = Running::spawn(cmd);
    Server {
        addr: address(&process.line()),
        process,
    }
}

/// Opens long-polls with `open`, one at a time, until the server, out of descriptors, answers one
/// `503` at once (at most `limit`); returns the others, held.
#[cfg(target_os = "linux")]
fn fill_descriptors(limit: usize, open: impl Fn() -> TcpStream) -> Vec<TcpStream> {
    let mut held = Vec::new();
    loop {
        assert!(held.len() < limit, "the server's descriptors never ran out");
        let mut s = open();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut head = [0u8; 12];
        match s.read(&mut head) {
            Ok(n) if n > 0 => {
                assert_eq!(&head[..n], &b"HTTP/1.1 503"[..n]);
                // The descriptor given up to answer is taken back.
                std::thread::sleep(Duration::from_millis(100));
                return held;
            }
            _ => held.push(s),
        }
    }
}

/// Reads one response of known length off a kept-alive connection.
fn read_response(s: &mut TcpStream) -> common::Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        raw.push(byte[0]);
    }
    let head = common::parse_response(&raw);
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    raw.extend_from_slice(&body);
    common::parse_response(&raw)
}

#[cfg(target_os = "linux")]
#[test]
fn running_out_of_descriptors_does_not_lose_the_manifest() {
    const LIMIT: usize = 64;
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    let published = ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let server = server_with_descriptors(&edge, LIMIT, &[]);
    let pid = server.process.child.id();
    let etag = server
        .get("/manifest.json", &[])
        .header("etag")
        .unwrap()
        .to_owned();
    let addr = server.addr.clone();
    let long_poll =
        format!("GET /manifest.json?wait=25 HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n");
    let held = std::thread::spawn(move || {
        http(
            &addr,
            "GET",
            "/manifest.json?wait=25",
            &[("If-None-Match", &etag)],
        )
    });
    eventually("the long-poll to be held", || {
        (server.metric("entitle_edge_long_polls", &[]) == 1.0).then_some(())
    });

    // A kept-alive connection made before the descriptors run out, to ask for a file afterwards.
    let mut early = TcpStream::connect(&server.addr).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    early
        .write_all(b"GET /manifest.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut early).status, 200);
    // Every other descriptor taken by long-polls (clients the server must keep).
    let polls = fill_descriptors(LIMIT, || {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.write_all(long_poll.as_bytes()).unwrap();
        s
    });
    // A publish while the server cannot open a file: it keeps the manifest it has...
    ok(&["publish", &catalog(&dir, "c2.json", 20), "--edge", &edge]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(descriptors_in_use(pid, LIMIT), LIMIT);
    // A file that cannot be opened for now is not reported missing.
    early
        .write_all(
            format!(
                "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                published["snapshot"].as_str().unwrap()
            )
            .as_bytes(),
        )
        .unwrap();
    let r = read_response(&mut early);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    // ...and reads the new one once descriptors are free again.
    drop(polls);
    let r = held.join().unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["version"], 2);
    let state = eventually("the state API at version 2", || {
        let r = server.get("/v1/customers/cus_a/state", &[]);
        (r.header("entitle-version") == Some("2")).then_some(r)
    });
    assert_eq!(state.json()["features"][0]["value_limit"], 20);
}

#[cfg(target_os = "linux")]
#[test]
fn out_of_descriptors_with_every_connection_trusted_new_ones_are_refused() {
    const LIMIT: usize = 64;
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let server = server_with_descriptors(&edge, LIMIT, &[]);
    let pid = server.process.child.id();
    let etag = server
        .get("/manifest.json", &[])
        .header("etag")
        .unwrap()
        .to_owned();
    let long_poll =
        format!("GET /manifest.json?wait=25 HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n");
    let _polls = fill_descriptors(LIMIT, || {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.write_all(long_poll.as_bytes()).unwrap();
        s
    });
    // No pending connection to close: a new client is told so at once (503), not left waiting
    // for a long-poll to end.
    let start = Instant::now();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let answer = String::from_utf8_lossy(&raw);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The descriptor kept for that is kept again.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(descriptors_in_use(pid, LIMIT), LIMIT);
}

#[cfg(target_os = "linux")]
#[test]
fn idle_connections_cannot_hold_every_descriptor() {
    const LIMIT: usize = 64;
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let token = dir.path("token");
    std::fs::write(&token, "t0ken").unwrap();
    // Fewer descriptors than pending slots: the descriptors run out first.
    let server = server_with_descriptors(
        &edge,
        LIMIT,
        &[
            "--token-file",
            &token,
            "--max-pending",
            "1000",
            "--header-timeout",
            "10",
        ],
    );
    // Twice as many idle connections as descriptors (this many used to leave the rest waiting to
    // be accepted until the idle ones timed out).
    let _idle: Vec<TcpStream> = (0..2 * LIMIT)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(5));
            TcpStream::connect(&server.addr).unwrap()
        })
        .collect();
    // The server closes the oldest idle connections to take new ones, instead of leaving every
    // client waiting until the idle ones time out.
    let start = Instant::now();
    let auth = [("Authorization", "Bearer t0ken")];
    assert_eq!(server.get("/manifest.json", &auth).status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(server.metric("entitle_edge_connections_evicted_total", &auth) >= 1.0);
}

#[test]
fn a_stalled_access_log_reader_does_not_stall_the_server() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    // The access log goes to a pipe that nobody reads for now.
    let (mut log, writer) = std::io::pipe().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_entitle"));
    cmd.args(["serve", "--addr", "127.0.0.1:0", &edge, "--access-log"])
        .stderr(writer);
    let process = Running::spawn(cmd);
    let mut server = Server {
        addr: address(&process.line()),
        process,
    };
    eventually("ready", || {
        (server.get("/healthz", &[]).status == 200).then_some(())
    });
    // Far more lines than the pipe (64 KiB: some 500 lines) and the server's queue hold: 12,000
    // requests, 500 pipelined on each connection.
    for c in 0..24 {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut batch = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(499);
        batch.push_str("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(batch.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let answered = raw.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
        assert_eq!(answered, 500, "connection {c}");
    }
    assert!(server.metric("entitle_edge_access_log_dropped_total", &[]) > 0.0);
    // Once read again, the log carries whole lines, and new requests are logged again.
    let lines = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = log.read_to_string(&mut text);
        text
    });
    eventually("a logged request after the stall", || {
        let dropped = server.metric("entitle_edge_access_log_dropped_total", &[]);
        assert_eq!(server.get("/nope", &[]).status, 404);
        (server.metric("entitle_edge_access_log_dropped_total", &[]) == dropped).then_some(())
    });
    // A graceful stop writes out what is still queued.
    server.terminate();
    let exit = eventually("the server to exit", || {
        server.process.child.try_wait().unwrap()
    });
    assert!(exit.success(), "{exit:?}");
    let text = lines.join().unwrap();
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["status"].is_number(), "{line}");
    }
    assert!(
        text.lines().count() >= 500,
        "{} lines",
        text.lines().count()
    );
    assert!(text.contains("\"/nope\""));
}

#[test]
fn a_head_that_takes_too_long_is_cut_off() {
    let dir = TempDir::new("cli-serve");
    let edge = dir.path("edge");
    ok(&["publish", &catalog(&dir, "c1.json", 10), "--edge", &edge]);
    let server = Server::start(Some(&edge), &["--header-timeout", "1"]);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    // A byte every 200 ms never finishes the head: the deadline covers the head, not each read.
    for b in b"GET /manifest.json HTTP/1.1\r\nX-Slow: aaaaaaaaaaaa" {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(start.elapsed() < Duration::from_secs(5), "cut off near 1 s");
    // Too many header fields: 431.
    let mut req = String::from("GET /manifest.json HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 431"));
    // A malformed head: 400.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /manifest.json\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 400"));
    // All three are counted, though no handler saw them.
    eventually("the three to be counted", || {
        let text = String::from_utf8(server.get("/metrics", &[]).body).unwrap();
        [
            "entitle_edge_connections_head_timeouts_total 1\n",
            "entitle_edge_requests_total{code=\"431\"} 1\n",
            "entitle_edge_requests_total{code=\"400\"} 1\n",
        ]
        .iter()
        .all(|line| text.contains(line))
        .then_some(())
    });
}
