//! `entitle stripe pull` and `entitle stripe webhook` against a loopback server that plays a Stripe
//! account (examples/stripe/account.json: expanded objects, metadata, every subscription status)
//! and sends signed events; and, when scripts/test-stripe.sh provides it, against stripe-mock.
//!
//! End to end: an event → the webhook publishes → an engine syncing from `entitle serve` on the
//! edge answers the new value; the delay is printed (see benches/RESULTS.md, "Stripe").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use common::{address, ok_stdout, Running, Server, TempDir};
use entitle_core::edge::read_manifest;
use entitle_core::{Engine, Limit, Snapshot, SyncConfig, View};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const KEY: &str = "sk_test_entitle_fake_key_51";
const SECRET: &str = "whsec_entitle_test_secret";

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stripe")
}

// ---------------------------------------------------------------------------------------------
// The fake account

/// The account's objects plus knobs for failures; every request is logged.
struct Account {
    features: Vec<Value>,
    products: Vec<Value>,
    product_features: BTreeMap<String, Vec<Value>>,
    subscriptions: Vec<Value>,
    /// Largest page served, whatever `limit` asks (forces pagination).
    page_size: usize,
    /// Answer 503 to everything.
    down: bool,
    /// The next this-many requests get 429 with `Retry-After: 1`.
    throttle: u32,
    /// `path?query` of every request answered.
    log: Vec<String>,
    /// Requests without the right key or without the pinned version.
    refused: u32,
}

struct Fake {
    account: Arc<Mutex<Account>>,
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fake {
    fn start() -> Fake {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(examples().join("account.json")).unwrap())
                .unwrap();
        let list = |k: &str| doc[k].as_array().unwrap().clone();
        let product_features = doc["product_features"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_array().unwrap().clone()))
            .collect();
        let account = Arc::new(Mutex::new(Account {
            features: list("features"),
            products: list("products"),
            product_features,
            subscriptions: list("subscriptions"),
            page_size: 3,
            down: false,
            throttle: 0,
            log: Vec::new(),
            refused: 0,
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&account));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Fake {
            account,
            addr,
            _runtime: runtime,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Account) -> R) -> R {
        f(&mut lock(&self.account))
    }

    /// Applies `edit` to product `id`.
    fn edit_product(&self, id: &str, edit: impl FnOnce(&mut Value)) {
        self.with(|a| {
            let p = a
                .products
                .iter_mut()
                .find(|p| p["id"] == id)
                .expect("known product");
            edit(p);
        });
    }

    /// Applies `edit` to subscription `id`.
    fn edit_subscription(&self, id: &str, edit: impl FnOnce(&mut Value)) {
        self.with(|a| {
            let s = a
                .subscriptions
                .iter_mut()
                .find(|s| s["id"] == id)
                .expect("known subscription");
            edit(s);
        });
    }

    fn subscription(&self, id: &str) -> Value {
        self.with(|a| {
            a.subscriptions
                .iter()
                .find(|s| s["id"] == id)
                .cloned()
                .expect("known subscription")
        })
    }

    fn log_len(&self) -> usize {
        self.with(|a| a.log.len())
    }
}

fn stripe_error(status: StatusCode, message: &str) -> (StatusCode, HeaderMap, String) {
    let body = json!({"error": {"type": "invalid_request_error", "message": message}});
    (status, HeaderMap::new(), body.to_string())
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A page of `items` as Stripe lists them.
fn page(items: Vec<Value>, q: &[(String, String)], cap: usize, url: &str) -> Value {
    let param = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = param("limit")
        .map_or(10, |l| l.parse::<usize>().unwrap())
        .min(cap);
    let start = match param("starting_after") {
        Some(after) => {
            items
                .iter()
                .position(|o| o["id"] == after)
                .expect("starting_after names a listed object")
                + 1
        }
        None => 0,
    };
    let data: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    json!({"object": "list", "url": url, "has_more": start + data.len() < items.len(), "data": data})
}

async fn answer(
    State(account): State<Arc<Mutex<Account>>>,
    uri: Uri,
    headers: HeaderMap,
) -> (StatusCode, HeaderMap, String) {
    let mut a = lock(&account);
    let q = query_pairs(&uri);
    let path = uri.path().to_owned();
    a.log.push(uri.to_string());
    if a.down {
        return stripe_error(StatusCode::SERVICE_UNAVAILABLE, "down for the test");
    }
    if a.throttle > 0 {
        a.throttle -= 1;
        let (s, mut h, b) = stripe_error(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        h.insert("retry-after", "1".parse().unwrap());
        return (s, h, b);
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {KEY}")) {
        a.refused += 1;
        return stripe_error(StatusCode::UNAUTHORIZED, "Invalid API Key provided");
    }
    if headers.get("stripe-version").is_none() {
        a.refused += 1;
        return stripe_error(StatusCode::BAD_REQUEST, "no Stripe-Version");
    }
    let cap = a.page_size;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let found = match segments.as_slice() {
        ["v1", "entitlements", "features"] => {
            let active = a
                .features
                .iter()
                .filter(|f| f["active"] == true)
                .cloned()
                .collect();
            Some(page(active, &q, cap, &path))
        }
        ["v1", "products"] => Some(page(a.products.clone(), &q, cap, &path)),
        ["v1", "products", id] => a.products.iter().find(|p| p["id"] == *id).cloned(),
        ["v1", "products", id, "features"] => {
            let pf = a.product_features.get(*id).cloned().unwrap_or_default();
            Some(page(pf, &q, cap, &path))
        }
        ["v1", "subscriptions"] => {
            let status = q
                .iter()
                .find(|(k, _)| k == "status")
                .map(|(_, v)| v.clone());
            let customer = q
                .iter()
                .find(|(k, _)| k == "customer")
                .map(|(_, v)| v.clone());
            let subs = a
                .subscriptions
                .iter()
                .filter(|s| match status.as_deref() {
                    Some("all") => true,
                    Some(st) => s["status"] == st,
                    // Stripe's default leaves canceled subscriptions out.
                    None => s["status"] != "canceled",
                })
                .filter(|s| customer.as_deref().is_none_or(|c| s["customer"] == c))
                .cloned()
                .collect();
            Some(page(subs, &q, cap, &path))
        }
        ["v1", "subscriptions", id] => {
            let expand = q
                .iter()
                .any(|(k, v)| k == "expand[]" && v == "items.data.price.product");
            a.subscriptions
                .iter()
                .find(|s| s["id"] == *id)
                .cloned()
                .map(|mut s| {
                    if expand {
                        for item in s["items"]["data"].as_array_mut().unwrap() {
                            let pid = item["price"]["product"].clone();
                            if let Some(p) = a.products.iter().find(|p| p["id"] == pid) {
                                item["price"]["product"] = p.clone();
                            }
                        }
                    }
                    s
                })
        }
        _ => None,
    };
    match found {
        Some(v) => (StatusCode::OK, HeaderMap::new(), v.to_string()),
        None => stripe_error(StatusCode::NOT_FOUND, "No such object"),
    }
}

// ---------------------------------------------------------------------------------------------
// Processes, events and the edge

/// `entitle ARGS` with this environment's Stripe keys removed and `env` set; stderr discarded.
fn spawn_entitle(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_entitle"));
    cmd.args(args)
        .env_remove("STRIPE_API_KEY")
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .envs(env.iter().copied())
        .stderr(Stdio::null());
    Running::spawn(cmd)
}

struct Webhook {
    process: Running,
    addr: String,
}

impl Webhook {
    fn start(fake: &Fake, edge: &str, extra: &[&str]) -> Webhook {
        let base = fake.base();
        let mut args = vec![
            "stripe",
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--edge",
            edge,
            "--api-base",
            &base,
        ];
        if !extra.contains(&"--coalesce-ms") {
            args.extend(["--coalesce-ms", "100"]);
        }
        args.extend_from_slice(extra);
        let process = spawn_entitle(
            &args,
            &[("STRIPE_API_KEY", KEY), ("STRIPE_WEBHOOK_SECRET", SECRET)],
        );
        let addr = address(&process.line());
        Webhook { process, addr }
    }

    /// Waits for the publish line of `version`.
    fn published(&self, version: u64) -> Value {
        self.process.until(|v| v["published"] == version)
    }

    fn status(&self) -> Value {
        let body = ureq::get(&format!("http://{}/status", self.addr))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `/status` until `pred` holds (bounded).
    fn status_until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POSTs `body` with `signature`; returns the status and body.
    fn post(&self, body: &str, signature: Option<&str>) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent
            .post(&format!("http://{}/webhook", self.addr))
            .header("content-type", "application/json");
        if let Some(s) = signature {
            req = req.header("stripe-signature", s);
        }
        let mut resp = req.send(body).unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap())
    }

    /// Sends `event` signed as Stripe signs it, now.
    fn send(&self, event: &Value) -> (u16, String) {
        let body = event.to_string();
        let sig = sign(SECRET, now(), &body);
        self.post(&body, Some(&sig))
    }
}

fn now() -> i64 {
    entitle_core::internal::unix_now()
}

fn sign(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

fn event(id: &str, kind: &str, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2025-03-31.basil", "created": now(),
        "livemode": false, "pending_webhooks": 1, "type": kind,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": object}
    })
}

/// Decides on the edge's current snapshot, read from disk: (enabled, limit).
fn edge_check(edge: &str, customer: &str, feature: &str) -> (bool, Option<Limit>) {
    let m = read_manifest(Path::new(edge)).unwrap().expect("a manifest");
    let bytes = std::fs::read(Path::new(edge).join(&m.snapshot.path)).unwrap();
    let view = View::from(Snapshot::from_bytes(bytes).unwrap());
    let d = view.check_at(customer, feature, now());
    (d.enabled(), d.limit())
}

fn edge_limit(edge: &str, customer: &str, feature: &str) -> Option<Limit> {
    edge_check(edge, customer, feature).1
}

fn edge_version(edge: &str) -> u64 {
    read_manifest(Path::new(edge))
        .unwrap()
        .map_or(0, |m| m.version)
}

fn check(catalog: &str, customer: &str, feature: &str, at: i64) -> Value {
    let at = at.to_string();
    let out = ok_stdout(&["check", catalog, customer, feature, "--at", &at]);
    serde_json::from_str(&out).unwrap()
}

// ---------------------------------------------------------------------------------------------
// pull

fn pull(fake: &Fake, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let base = fake.base();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_entitle"));
    cmd.args(["stripe", "pull", "--api-base", &base])
        .args(extra)
        .env_remove("STRIPE_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn pull_writes_the_catalog_the_account_describes() {
    let fake = Fake::start();
    fake.with(|a| a.throttle = 1);
    let dir = TempDir::new("stripe-pull");
    let key_file = dir.path("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let out = dir.path("catalog.json");
    let base = examples().join("base.json");
    let base = base.to_str().unwrap();
    let run = pull(
        &fake,
        &["--api-key-file", &key_file, "--catalog", base, "-o", &out],
        &[],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (
            &summary["features"],
            &summary["products"],
            &summary["subscriptions"]
        ),
        (&json!(5), &json!(5), &json!(14)),
        "{summary}"
    );

    // The documented example: this account and base file give exactly this catalog
    // (ENTITLE_BLESS=1 rewrites it after a deliberate change).
    let written = std::fs::read_to_string(&out).unwrap();
    if std::env::var_os("ENTITLE_BLESS").is_some() {
        std::fs::write(examples().join("catalog.json"), &written).unwrap();
    }
    let expected = std::fs::read_to_string(examples().join("catalog.json")).unwrap();
    assert_eq!(
        written, expected,
        "examples/stripe/catalog.json is what pull writes"
    );

    // SPEC's rules on the result answer as Stripe's statuses mean.
    let t = 1_780_000_000; // 2026-05-28, before every scheduled cancellation
    let cases: &[(&str, &str, i64, Value, Value)] = &[
        ("cus_ada", "projects", t, json!(true), json!(3)),
        ("cus_bob", "seats", t, json!(true), json!(5)),
        ("cus_bob", "sso", t, json!(true), json!(null)),
        ("cus_bob", "projects", t, json!(true), json!(75)), // override from the base file
        ("cus_cy", "projects", t, json!(true), json!(200)), // add-on beats the plan
        ("cus_cy", "seats", t, json!(true), json!(12)),
        ("cus_dee", "projects", t, json!(true), json!("unlimited")),
        ("cus_dee", "beta_dashboard", t, json!(true), json!(null)), // base product feature
        ("cus_dee", "legacy_reports", t, json!(false), json!(null)), // archived: not a feature
        ("cus_eve", "seats", t, json!(true), json!(3)),             // trialing grants
        ("cus_fay", "seats", t, json!(true), json!(8)),             // past_due grants
        ("cus_gus", "seats", t, json!(true), json!(1)),             // canceled: default
        ("cus_gus", "sso", t, json!(false), json!(null)),
        ("cus_ivy", "sso", t, json!(false), json!(null)), // unpaid grants nothing
        ("cus_jo", "audit_log", t, json!(false), json!(null)), // incomplete_expired
        ("cus_max", "sso", t, json!(false), json!(null)), // incomplete
        (
            "cus_hal",
            "audit_log",
            1_799_999_999,
            json!(true),
            json!(null),
        ), // cancel at period end
        (
            "cus_hal",
            "audit_log",
            1_800_000_000,
            json!(false),
            json!(null),
        ),
        ("cus_kai", "seats", 1_798_761_599, json!(true), json!(40)), // cancel_at
        ("cus_kai", "seats", 1_798_761_600, json!(true), json!(1)),
        ("cus_lea", "seats", t, json!(true), json!(2)), // a canceled and an active subscription
        ("cus_partner_zed", "audit_log", t, json!(true), json!(null)), // base-file subscription
        ("cus_nobody", "projects", t, json!(true), json!(3)),
    ];
    for (customer, feature, at, enabled, limit) in cases {
        let got = check(&out, customer, feature, *at);
        assert_eq!(
            (&got["enabled"], &got["limit"]),
            (enabled, limit),
            "{customer} {feature} at {at}: {got}"
        );
    }

    // Pagination, the 429 retried after Retry-After, every request authenticated and pinned.
    let log = fake.with(|a| a.log.clone());
    assert!(log.iter().any(|l| l.contains("starting_after=")), "{log:?}");
    assert!(log
        .iter()
        .any(|l| l.starts_with("/v1/subscriptions?") && l.contains("status=all")));
    assert_eq!(fake.with(|a| a.refused), 0);
    assert_eq!(
        fake.with(|a| a.throttle),
        0,
        "the throttled request was retried"
    );

    // Deterministic: the same account gives the same bytes.
    let again = dir.path("again.json");
    let run = pull(
        &fake,
        &["--catalog", base, "-o", &again],
        &[("STRIPE_API_KEY", KEY)],
    );
    assert!(run.status.success());
    assert_eq!(std::fs::read(&again).unwrap(), written.as_bytes());
}

#[test]
fn pull_errors_name_the_cause_and_write_nothing() {
    let fake = Fake::start();
    let dir = TempDir::new("stripe-pull-errors");
    let out = dir.path("catalog.json");
    let fail = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = extra.to_vec();
        args.extend(["-o", out.as_str()]);
        let run = pull(&fake, &args, env);
        assert!(!run.status.success(), "{extra:?} should fail");
        assert!(!Path::new(&out).exists(), "nothing written");
        String::from_utf8(run.stderr).unwrap()
    };
    let key = [("STRIPE_API_KEY", KEY)];

    let err = fail(&[], &[]);
    assert!(err.contains("STRIPE_API_KEY"), "{err}");

    let err = fail(&[], &[("STRIPE_API_KEY", "sk_test_wrong_key_123")]);
    assert!(
        err.contains("HTTP 401") && err.contains("Invalid API Key"),
        "{err}"
    );
    assert!(
        !err.contains("sk_test_wrong_key_123"),
        "the key is never printed: {err}"
    );

    // A limit attached to a product without its value.
    fake.edit_product("prod_pro", |pro| {
        pro["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("entitle_seats");
    });
    let err = fail(&[], &key);
    assert!(
        err.contains("product prod_pro: feature seats is a limit but the product has no metadata entitle_seats"),
        "{err}"
    );
    fake.edit_product("prod_pro", |pro| {
        pro["metadata"]["entitle_seats"] = json!("1");
    });

    // A base file that defines a Stripe feature differently.
    let conflict = dir.path("base.json");
    std::fs::write(
        &conflict,
        r#"{"features": [{"key": "sso", "type": "limit"}]}"#,
    )
    .unwrap();
    let err = fail(&["--catalog", &conflict], &key);
    assert!(err.contains("feature sso: Stripe defines it as"), "{err}");

    // A feature whose metadata says something else than flag or limit.
    fake.with(|a| a.features[0]["metadata"]["entitle_type"] = json!("number"));
    let err = fail(&[], &key);
    assert!(
        err.contains("feature sso: metadata entitle_type=\"number\""),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// webhook

/// An event about subscription `id` carrying its current state (as Stripe sends it).
fn subscription_event(fake: &Fake, evt: &str, kind: &str, id: &str) -> Value {
    event(evt, kind, fake.subscription(id))
}

fn set_quantity(fake: &Fake, sub: &str, quantity: u64) {
    fake.edit_subscription(sub, |s| s["items"]["data"][0]["quantity"] = json!(quantity));
}

#[test]
fn webhook_events_reach_an_engine_syncing_from_the_edge() {
    let fake = Fake::start();
    let dir = TempDir::new("stripe-e2e");
    let edge = dir.path("edge");
    // The floor's catalog: what a pull of the same account writes.
    let pulled = dir.path("pulled.json");
    let run = pull(&fake, &["-o", &pulled], &[("STRIPE_API_KEY", KEY)]);
    assert!(run.status.success());
    let mut floor_doc: Value = serde_json::from_slice(&std::fs::read(&pulled).unwrap()).unwrap();
    let requests = fake.log_len();

    let hook = Webhook::start(&fake, &edge, &["--coalesce-ms", "200"]);
    hook.published(1);
    assert!(fake.log_len() > requests, "the startup pull");
    assert_eq!(
        edge_limit(&edge, "cus_bob", "seats"),
        Some(Limit::Finite(5))
    );

    let server = Server::start(Some(&edge), &[]);
    let url = format!("http://{}", server.addr);
    let engine = Engine::connect(SyncConfig {
        url,
        long_poll: Some(Duration::from_secs(20)),
        request_timeout: Duration::from_secs(30),
        ..SyncConfig::default()
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.version() < 1 {
        assert!(Instant::now() < deadline, "the engine never synced");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(engine.limit("cus_bob", "seats"), Limit::Finite(5));
    let visible = |seats: u64, since: Instant| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while engine.limit("cus_bob", "seats") != Limit::Finite(seats) {
            assert!(
                Instant::now() < deadline,
                "{seats} seats never reached the engine"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        since.elapsed().as_secs_f64() * 1e3
    };

    // Rounds take turns: an event through the webhook (event → fetch → publish → long-poll →
    // engine, from the delivery), then the floor: `publish` of the same change done directly.
    // Once with the default coalescing window, once without one.
    let mut hook = Some(hook);
    for (phase, window) in ["200", "0"].into_iter().enumerate() {
        let hook = match hook.take() {
            Some(h) => h,
            None => {
                let h = Webhook::start(&fake, &edge, &["--coalesce-ms", window]);
                h.process
                    .until(|v| v["published"].is_u64() || v["up_to_date"].is_u64());
                h
            }
        };
        let (mut event_ms, mut answer_ms, mut floor_ms) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..7u64 {
            let seats = 10 + 100 * phase as u64 + 2 * round;
            set_quantity(&fake, "sub_bob", seats);
            let evt = subscription_event(
                &fake,
                &format!("evt_e2e_{phase}_{round}"),
                "customer.subscription.updated",
                "sub_bob",
            );
            let sent = Instant::now();
            let (status, body) = hook.send(&evt);
            answer_ms.push(sent.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200, "{body}");
            event_ms.push(visible(seats, sent));
            // The webhook's publish ends (clean-up included) before the floor's begins, so the
            // floor never waits for the edge's lock.
            hook.process.until(|v| v["published"].is_u64());

            let seats = seats + 1;
            for c in floor_doc["customers"].as_array_mut().unwrap() {
                if c["id"] == "cus_bob" {
                    c["subscriptions"][0]["items"][0]["quantity"] = json!(seats);
                }
            }
            let catalog =
                entitle_core::Catalog::from_json(floor_doc.to_string().as_bytes()).unwrap();
            let start = Instant::now();
            entitle_core::edge::publish(
                Path::new(&edge),
                &catalog,
                &entitle_core::edge::PublishOptions::default(),
            )
            .unwrap();
            floor_ms.push(visible(seats, start));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (e, a, f) = (
            median(&mut event_ms),
            median(&mut answer_ms),
            median(&mut floor_ms),
        );
        eprintln!(
            "stripe e2e, 7 rounds each, coalescing window {window} ms: event→visible median \
             {e:.1} ms (min {:.1}, max {:.1}); 2xx answer median {a:.2} ms (max {:.2}); floor \
             publish→visible median {f:.1} ms (min {:.1}, max {:.1}); ratio {:.1}×",
            event_ms[0],
            event_ms[event_ms.len() - 1],
            answer_ms[answer_ms.len() - 1],
            floor_ms[0],
            floor_ms[floor_ms.len() - 1],
            e / f
        );
    }
}

#[test]
fn webhook_refuses_what_stripe_did_not_sign_and_ignores_what_does_not_matter() {
    let fake = Fake::start();
    let dir = TempDir::new("stripe-negative");
    let edge = dir.path("edge");
    let hook = Webhook::start(&fake, &edge, &[]);
    hook.published(1);
    let requests = fake.log_len();

    set_quantity(&fake, "sub_bob", 9);
    let evt = subscription_event(
        &fake,
        "evt_neg_1",
        "customer.subscription.updated",
        "sub_bob",
    );
    let body = evt.to_string();
    let t = now();
    let refused: Vec<(&str, String, Option<String>)> = vec![
        (
            "wrong secret",
            body.clone(),
            Some(sign("whsec_not_this_one", t, &body)),
        ),
        (
            "stale timestamp",
            body.clone(),
            Some(sign(SECRET, t - 301, &body)),
        ),
        (
            "future timestamp",
            body.clone(),
            Some(sign(SECRET, t + 400, &body)),
        ),
        ("no signature", body.clone(), None),
        (
            "signed for another body",
            body.replace("evt_neg_1", "evt_neg_2"),
            Some(sign(SECRET, t, &body)),
        ),
        (
            "malformed body",
            "{\"id\": \"evt_x\", ".to_owned(),
            Some(sign(SECRET, t, "{\"id\": \"evt_x\", ")),
        ),
        (
            "not an event",
            "[1, 2]".to_owned(),
            Some(sign(SECRET, t, "[1, 2]")),
        ),
    ];
    for (what, body, sig) in &refused {
        let (status, answer) = hook.post(body, sig.as_deref());
        assert_eq!(status, 400, "{what}: {answer}");
    }
    // Unknown and irrelevant event types are acknowledged and ignored.
    for (i, kind) in ["invoice.paid", "charge.succeeded", "some.future_event"]
        .iter()
        .enumerate()
    {
        let (status, answer) =
            hook.send(&event(&format!("evt_ign_{i}"), kind, json!({"id": "x_1"})));
        assert_eq!(status, 200, "{kind}: {answer}");
        assert!(answer.contains("ignored"), "{answer}");
    }
    let s = hook.status();
    assert_eq!(s["rejected"], refused.len() as u64, "{s}");
    assert_eq!(s["ignored"], 3, "{s}");
    // Nothing was fetched, nothing published.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fake.log_len(),
        requests,
        "refused and ignored events fetch nothing"
    );
    assert_eq!(edge_version(&edge), 1);
    assert_eq!(
        edge_limit(&edge, "cus_bob", "seats"),
        Some(Limit::Finite(5))
    );

    // The genuine event is accepted — here signed as during a secret rotation, with a signature
    // from the old secret beside the current one; its replay is a duplicate that changes nothing.
    let t = now();
    let old = sign("whsec_rolled_out_secret", t, &body);
    let current = sign(SECRET, t, &body);
    let rotation = format!("{old},{}", current.split_once(',').unwrap().1);
    assert_eq!(rotation.matches("v1=").count(), 2);
    let (status, answer) = hook.post(&body, Some(&rotation));
    assert_eq!(status, 200, "{answer}");
    hook.published(2);
    assert_eq!(
        edge_limit(&edge, "cus_bob", "seats"),
        Some(Limit::Finite(9))
    );
    let requests = fake.log_len();
    let (status, answer) = hook.send(&evt);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("duplicate"), "{answer}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fake.log_len(), requests, "a replayed event fetches nothing");
    assert_eq!(edge_version(&edge), 2);
    assert_eq!(hook.status()["duplicates"], 1);
}

#[test]
fn webhook_coalesces_bursts_and_trusts_the_api_over_event_order() {
    let fake = Fake::start();
    let dir = TempDir::new("stripe-burst");
    let edge = dir.path("edge");
    let hook = Webhook::start(&fake, &edge, &["--coalesce-ms", "2000"]);
    hook.published(1);

    // A burst: twelve subscriptions change, twelve events, one publish.
    let subs = [
        "sub_ada", "sub_bob", "sub_cy", "sub_dee", "sub_eve", "sub_fay", "sub_gus", "sub_hal",
        "sub_ivy", "sub_jo", "sub_kai", "sub_lea",
    ];
    for (i, sub) in subs.iter().enumerate() {
        set_quantity(&fake, sub, 100 + i as u64);
    }
    for (i, sub) in subs.iter().enumerate() {
        let evt = subscription_event(
            &fake,
            &format!("evt_burst_{i}"),
            "customer.subscription.updated",
            sub,
        );
        assert_eq!(hook.send(&evt).0, 200);
    }
    hook.published(2);
    assert_eq!(
        edge_limit(&edge, "cus_bob", "seats"),
        Some(Limit::Finite(101))
    );
    assert_eq!(
        edge_limit(&edge, "cus_dee", "seats"),
        Some(Limit::Finite(103))
    );
    hook.status_until("the burst is done", |s| {
        s["pending"] == 0 && s["accepted"] == 12
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(edge_version(&edge), 2, "one publish for the burst");

    // Out of order: the subscription is canceled; the "deleted" event arrives first, then a late
    // "updated" carrying the old active state. The API's current state wins.
    let stale = fake.subscription("sub_bob");
    fake.edit_subscription("sub_bob", |s| {
        s["status"] = json!("canceled");
        s["ended_at"] = json!(now());
    });
    let deleted = subscription_event(
        &fake,
        "evt_order_2",
        "customer.subscription.deleted",
        "sub_bob",
    );
    let late = event("evt_order_1", "customer.subscription.updated", stale);
    assert_eq!(hook.send(&deleted).0, 200);
    assert_eq!(hook.send(&late).0, 200);
    hook.published(3);
    hook.status_until("both events done", |s| {
        s["pending"] == 0 && s["accepted"] == 14
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        edge_limit(&edge, "cus_bob", "seats"),
        Some(Limit::Finite(1))
    );
    assert!(!edge_check(&edge, "cus_bob", "sso").0);
    assert_eq!(edge_version(&edge), 3, "the late event changed nothing");

    // Products and features: an attached feature's value changes in product metadata.
    fake.edit_product("prod_pro", |pro| {
        pro["metadata"]["entitle_projects"] = json!("60");
    });
    let product = fake.with(|a| {
        a.products
            .iter()
            .find(|p| p["id"] == "prod_pro")
            .cloned()
            .unwrap()
    });
    assert_eq!(
        hook.send(&event("evt_prod_1", "product.updated", product))
            .0,
        200
    );
    hook.published(4);
    assert_eq!(
        edge_limit(&edge, "cus_fay", "projects"),
        Some(Limit::Finite(60))
    );

    // A customer deleted: Stripe cancels their subscriptions; the customer's list is refetched.
    fake.edit_subscription("sub_dee", |s| s["status"] = json!("canceled"));
    let customer = json!({"id": "cus_dee", "object": "customer", "deleted": true});
    assert_eq!(
        hook.send(&event("evt_cus_1", "customer.deleted", customer))
            .0,
        200
    );
    hook.published(5);
    assert_eq!(
        edge_limit(&edge, "cus_dee", "projects"),
        Some(Limit::Finite(3))
    );

    // Features attached to a product and a feature's metadata changed: Stripe tells each affected
    // customer's entitlement summary; the feature list and the customer's products are refetched.
    assert!(!edge_check(&edge, "cus_fay", "audit_log").0);
    fake.with(|a| {
        let audit = a
            .features
            .iter()
            .find(|f| f["lookup_key"] == "audit_log")
            .cloned()
            .unwrap();
        a.product_features.get_mut("prod_pro").unwrap().push(json!({
            "id": "prodft_new", "object": "product_feature", "livemode": false,
            "entitlement_feature": audit
        }));
        let projects = a
            .features
            .iter_mut()
            .find(|f| f["lookup_key"] == "projects")
            .unwrap();
        projects["metadata"]["entitle_default"] = json!("4");
    });
    let summary = json!({
        "object": "entitlements.active_entitlement_summary", "customer": "cus_fay", "livemode": false,
        "entitlements": {"object": "list", "data": [], "has_more": false}
    });
    let evt = event(
        "evt_sum_1",
        "entitlements.active_entitlement_summary.updated",
        summary,
    );
    assert_eq!(hook.send(&evt).0, 200);
    hook.published(6);
    assert!(edge_check(&edge, "cus_fay", "audit_log").0);
    assert!(
        edge_check(&edge, "cus_cy", "audit_log").0,
        "every Pro customer"
    );
    assert_eq!(
        edge_limit(&edge, "cus_nobody", "projects"),
        Some(Limit::Finite(4))
    );
}

#[test]
fn webhook_loses_no_event_when_the_api_is_down_or_the_endpoint_restarts() {
    let fake = Fake::start();
    let dir = TempDir::new("stripe-outage");
    let edge = dir.path("edge");
    let hook = Webhook::start(&fake, &edge, &[]);
    hook.published(1);

    // The API is down when the event arrives: the event is acknowledged, the fetch retried.
    fake.with(|a| a.down = true);
    set_quantity(&fake, "sub_bob", 42);
    let evt = subscription_event(
        &fake,
        "evt_down_1",
        "customer.subscription.updated",
        "sub_bob",
    );
    let (status, answer) = hook.send(&evt);
    assert_eq!(status, 200, "{answer}");
    let s = hook.status_until("a failed fetch", |s| s["fetch_failures"].as_u64() > Some(0));
    assert!(s["last_error"].as_str().unwrap().contains("503"), "{s}");
    assert_eq!(s["pending"], 1, "{s}");
    assert_eq!(edge_version(&edge), 1);
    fake.with(|a| a.down = false);
    hook.published(2);
    assert_eq!(
        edge_limit(&edge, "cus_bob", "seats"),
        Some(Limit::Finite(42))
    );

    // The endpoint is down while the account changes and the event is lost: the startup pull
    // of the next run reconciles.
    drop(hook);
    set_quantity(&fake, "sub_bob", 43);
    let hook = Webhook::start(&fake, &edge, &[]);
    hook.published(3);
    assert_eq!(
        edge_limit(&edge, "cus_bob", "seats"),
        Some(Limit::Finite(43))
    );

    // A restart with nothing new adds no version; the periodic reconciliation catches a change
    // no event announced.
    drop(hook);
    let hook = Webhook::start(&fake, &edge, &["--reconcile-secs", "1"]);
    hook.process.until(|v| v["up_to_date"] == 3);
    set_quantity(&fake, "sub_bob", 44);
    hook.published(4);
    assert_eq!(
        edge_limit(&edge, "cus_bob", "seats"),
        Some(Limit::Finite(44))
    );

    // SIGTERM stops the receiver cleanly.
    let mut hook = hook;
    let pid = hook.process.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = hook.process.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------------------------
// stripe-mock: Stripe's own mock validates request shapes against the API's specification.

/// stripe-mock listening on a free loopback port; `STRIPE_MOCK` names the binary.
struct StripeMock {
    child: Child,
    base: String,
}

impl StripeMock {
    fn start() -> StripeMock {
        let bin = std::env::var("STRIPE_MOCK")
            .expect("STRIPE_MOCK names the stripe-mock binary (scripts/test-stripe.sh sets it)");
        // Both listeners on loopback ports of the system's choosing; the log names them.
        let mut child = Command::new(bin)
            .args(["-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stripe-mock");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("Listening for HTTP at address: ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("stripe-mock listening");
        let base = format!("http://{addr}");
        StripeMock { child, base }
    }
}

impl Drop for StripeMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs stripe-mock: run scripts/test-stripe.sh"]
fn stripe_mock_accepts_every_request_and_the_pull_makes_a_valid_catalog() {
    let mock = StripeMock::start();
    let dir = TempDir::new("stripe-mock");
    let out = dir.path("catalog.json");
    let run = |key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_entitle"));
        cmd.args(["stripe", "pull", "--api-base", &mock.base, "-o", &out])
            .env_remove("STRIPE_API_KEY");
        if let Some(k) = key {
            cmd.env("STRIPE_API_KEY", k);
        }
        cmd.output().unwrap()
    };
    // stripe-mock refuses parameters its specification does not allow (a request-shape check).
    let ok = run(Some("sk_test_123"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    entitle_core::Catalog::from_json(text.as_bytes()).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(!doc["customers"].as_array().unwrap().is_empty(), "{text}");
    assert!(!doc["features"].as_array().unwrap().is_empty(), "{text}");
    let again = std::fs::read(&out).unwrap();
    assert!(run(Some("sk_test_123")).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), again, "deterministic");

    // Authentication errors come back with Stripe's message, never the key.
    std::fs::remove_file(&out).unwrap();
    let bad = run(Some("not_a_stripe_key_zz9"));
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(!err.contains("not_a_stripe_key_zz9"), "{err}");
    assert!(!Path::new(&out).exists());
}

#[test]
#[ignore = "needs stripe-mock: run scripts/test-stripe.sh"]
fn stripe_mock_serves_the_webhook_refetches() {
    let mock = StripeMock::start();
    let dir = TempDir::new("stripe-mock-hook");
    let edge = dir.path("edge");
    let process = spawn_entitle(
        &[
            "stripe",
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--edge",
            &edge,
            "--api-base",
            &mock.base,
            "--coalesce-ms",
            "50",
        ],
        &[
            ("STRIPE_API_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", SECRET),
        ],
    );
    let addr = address(&process.line());
    process.until(|v| v["published"] == 1);
    let hook = Webhook { process, addr };
    // Each refetch kind, validated by stripe-mock: subscription (expanded), customer's list,
    // product with its features, the feature list.
    let events = [
        event(
            "evt_m1",
            "customer.subscription.updated",
            json!({"id": "sub_mock"}),
        ),
        event("evt_m2", "customer.deleted", json!({"id": "cus_mock"})),
        event("evt_m3", "product.updated", json!({"id": "prod_mock"})),
        event(
            "evt_m4",
            "entitlements.active_entitlement_summary.updated",
            json!({"customer": "cus_mock", "object": "entitlements.active_entitlement_summary"}),
        ),
    ];
    for e in &events {
        assert_eq!(hook.send(e).0, 200);
    }
    let s = hook.status_until("the refetches", |s| s["accepted"] == 4 && s["pending"] == 0);
    assert_eq!(s["fetch_failures"], 0, "{s}");
    assert!(s["last_error"].is_null(), "{s}");
}
