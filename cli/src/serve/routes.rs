//! The edge server's routes: the edge files (manifest with long-polls, snapshots, deltas), the
//! customer-state API, `/healthz` and `/metrics`, behind one guard (method, token, metrics, access
//! log).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use entitle_core::edge::{LONG_POLL_HEADER, MAX_LONG_POLL_SECONDS};
use entitle_core::internal::unix_now;
use entitle_core::{Engine, SyncState};
use serde_json::json;
use tokio::sync::watch;

use super::conn::{wait_true, ConnStats, Peer};
use super::files::{self, Refusal};
use super::log::AccessLog;
use super::manifest::Watcher;
use super::metrics::Metrics;
use super::state::{customer_state, StateSource};

/// Where the customer-state API gets its answers.
pub struct Content {
    /// The version served, with its subscriptions.
    pub source: Arc<StateSource>,
    /// With `--upstream`: the engine syncing from the upstream edge (its status feeds `/healthz`).
    pub upstream: Option<Arc<Engine>>,
    /// With `--upstream`: its URL, left out of what `/healthz` shows.
    pub upstream_url: Option<String>,
}

/// Everything the handlers share.
pub struct Edge {
    /// The served directory (canonical), when one is served.
    pub root: Option<PathBuf>,
    /// Its manifest watcher.
    pub watcher: Option<Arc<Watcher>>,
    /// The bearer token every request but `/healthz` must carry.
    pub token: Option<Vec<u8>>,
    /// The engine behind the customer-state API.
    pub content: Content,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// Connection counters.
    pub conns: Arc<ConnStats>,
    /// Turns true at shutdown; held long-polls then answer at once.
    pub shutdown: watch::Receiver<bool>,
    /// Where to write one JSON line per request, when asked to.
    pub access_log: Option<AccessLog>,
    /// Largest snapshot or delta served.
    pub max_file_bytes: u64,
}

/// The router of the edge server.
pub fn router(edge: Arc<Edge>) -> Router {
    Router::new()
        .route("/manifest.json", get(manifest))
        .route("/snapshots/{name}", get(artifact))
        .route("/deltas/{name}", get(artifact))
        .route("/subscriptions/{name}", get(artifact))
        .route("/v1/customers/{id}/state", get(customer))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&edge), guard))
        .with_state(edge)
}

/// Compares in time that depends only on the expected token's length.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, &e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

/// Whether `headers` carry `Authorization: Bearer <token>` (always true without a token). The
/// scheme is matched without regard to case, as HTTP defines it; the token exactly.
pub fn authorized(headers: &HeaderMap, token: Option<&[u8]>) -> bool {
    let Some(token) = token else { return true };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().split_at_checked(7))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"Bearer "))
        .map_or(&b""[..], |(_, credentials)| credentials);
    constant_time_eq(given.trim_ascii(), token)
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn guard(State(edge): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let response = if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET and HEAD only\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else if path != "/healthz" && !authorized(req.headers(), edge.token.as_deref()) {
        let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"entitle\""),
        );
        r
    } else {
        let mut response = next.run(req).await;
        // A shared cache (a CDN) may keep a `public` answer to a request with a token, and must
        // then give it only to requests with the same `Authorization`.
        let public = response
            .headers()
            .get(header::CACHE_CONTROL)
            .is_some_and(|v| v.as_bytes().starts_with(b"public"));
        if edge.token.is_some() && public {
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("authorization"));
        }
        response
    };
    let status = response.status().as_u16();
    let bytes = body_bytes(&method, &response);
    edge.metrics.record(status, bytes);
    if let Some(log) = &edge.access_log {
        let time = UNIX_EPOCH.elapsed().map_or(0.0, |d| d.as_secs_f64());
        let line = json!({
            "time": (time * 1000.0).round() / 1000.0,
            "remote": peer.map(|p| p.to_string()),
            "method": method.as_str(),
            "path": path,
            "status": status,
            "bytes": bytes,
            "ms": (start.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        });
        if !log.line(line.to_string()) {
            edge.metrics
                .access_log_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    response
}

/// The body bytes a response sends: none for `HEAD`; otherwise its declared `Content-Length` (a
/// streamed artifact), or the exact size of a body held in memory, which is only measured when
/// hyper writes the head and so is not in the headers yet.
fn body_bytes(method: &Method, response: &Response) -> u64 {
    if *method == Method::HEAD {
        return 0;
    }
    response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .or_else(|| response.body().size_hint().exact())
        .unwrap_or(0)
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// Whether an `If-None-Match` header names `etag` (a list, weak tags and `*` included).
pub fn etag_matches(header: Option<&str>, etag: &str) -> bool {
    header.is_some_and(|h| {
        h.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        })
    })
}

/// The long-poll wait a manifest request asks for, capped.
pub fn wait_seconds(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|w| w.is_finite() && *w > 0.0)
        .map(|w| (w.ceil() as u64).min(MAX_LONG_POLL_SECONDS))
}

/// Counts a held long-poll for as long as it lives.
struct Held<'a>(&'a Metrics);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.long_polls.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn manifest(State(edge): State<Arc<Edge>>, req: Request) -> Response {
    let Some(watcher) = &edge.watcher else {
        return not_found().await;
    };
    watcher.refresh();
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let mut current = watcher.current();
    let wait = wait_seconds(req.uri().query().unwrap_or(""));
    if let (Some(wait), Some(tag)) = (wait, if_none_match) {
        if !tag.contains(',') && tag != "*" && current.etag.as_deref() == Some(tag) {
            edge.metrics.long_polls.fetch_add(1, Ordering::Relaxed);
            let _held = Held(&edge.metrics);
            let mut rx = watcher.subscribe();
            let mut shutdown = edge.shutdown.clone();
            tokio::select! {
                _ = rx.wait_for(|c| c.etag.as_deref() != Some(tag)) => {}
                () = tokio::time::sleep(Duration::from_secs(wait)) => {}
                () = wait_true(&mut shutdown) => {}
            }
            current = watcher.current();
        }
    }
    let (Some(body), Some(etag)) = (&current.body, &current.etag) else {
        return text(StatusCode::NOT_FOUND, "no manifest published yet\n");
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=1, must-revalidate"),
    );
    headers.insert(LONG_POLL_HEADER, HeaderValue::from(MAX_LONG_POLL_SECONDS));
    if etag_matches(if_none_match, etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (StatusCode::OK, headers, Body::from(Bytes::clone(body))).into_response()
}

async fn artifact(State(edge): State<Arc<Edge>>, req: Request) -> Response {
    let Some(root) = edge.root.clone() else {
        return not_found().await;
    };
    let rel = req.uri().path().trim_start_matches('/').to_owned();
    let max = edge.max_file_bytes;
    let opened = tokio::task::spawn_blocking(move || files::open(&root, &rel, max)).await;
    let (file, meta) = match opened {
        Ok(Ok(f)) => f,
        Ok(Err(Refusal::TooLarge)) => {
            return text(StatusCode::FORBIDDEN, "larger than this server serves\n")
        }
        Ok(Err(Refusal::Unavailable)) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "cannot read it now\n");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        Ok(Err(Refusal::NotFound)) | Err(_) => return not_found().await,
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", modified, meta.len());
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if etag_matches(if_none_match, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let kind = if req.uri().path().ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    if req.method() == Method::HEAD {
        return (StatusCode::OK, headers).into_response();
    }
    // Never more than the size seen at open, even if the file grows meanwhile.
    let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), meta.len());
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        reader,
        64 * 1024,
    ));
    (StatusCode::OK, headers, body).into_response()
}

fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

#[derive(serde::Deserialize)]
struct StateQuery {
    at: Option<i64>,
}

async fn customer(
    State(edge): State<Arc<Edge>>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Response {
    // The API's errors are JSON, like its answers.
    let (id, q) = match (id, q) {
        (Ok(Path(id)), Ok(Query(q))) => (id, q),
        (Err(e), _) => return bad_request(&e.body_text()),
        (_, Err(e)) => return bad_request(&e.body_text()),
    };
    let Some(served) = edge.content.source.current() else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "no content loaded yet"}),
        );
    };
    let at = q.at.unwrap_or_else(unix_now);
    match customer_state(&served, &id, at) {
        Some(state) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    HeaderName::from_static("entitle-version"),
                    HeaderValue::from(served.view.version()),
                ),
            ],
            state,
        )
            .into_response(),
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("customer {id} not found")}),
        ),
    }
}

/// `/healthz`: ready or not for anyone (load balancers carry no token); the problems, which name
/// paths and the upstream host, only for a request with the token, and never the upstream URL's
/// credentials or query.
async fn healthz(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    let mut problems = Vec::new();
    let mut version = None;
    if let Some(w) = &edge.watcher {
        w.refresh();
        let current = w.current();
        match &current.manifest {
            Some(m) => version = Some(m.version),
            None => problems.push(current.error.clone().unwrap_or_default()),
        }
    }
    let source = &edge.content.source;
    let served = source.current().map(|s| s.view.version());
    if let Some(engine) = &edge.content.upstream {
        let status = engine.status();
        version = version.or(Some(status.version));
        if status.state != SyncState::Ready {
            problems.push(format!(
                "upstream sync is {}: {}",
                status.state,
                status.last_error.as_deref().unwrap_or("no content yet")
            ));
        }
    }
    if let Some(e) = source.last_error() {
        problems.push(format!("loading the version: {e}"));
    } else if version.is_some_and(|v| served != Some(v)) {
        problems.push("the version is still loading".to_owned());
    }
    let ready = problems.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "version": version,
        "state_version": served,
    });
    if authorized(&headers, edge.token.as_deref()) {
        if let Some(url) = &edge.content.upstream_url {
            let (given, shown) = (url.trim_end_matches('/'), super::redact_url(url));
            let shown = shown.trim_end_matches('/');
            // The sync's own messages already leave the credentials out, not the query.
            let bare = super::without_userinfo(given);
            for p in &mut problems {
                *p = p.replace(given, shown).replace(&bare, shown);
            }
        }
        body["problems"] = json!(problems);
    }
    json_response(status, &body)
}

async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        edge.metrics
            .render(&edge.conns, unix_now(), &edge.content.source),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret1", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn etags() {
        assert!(etag_matches(Some("\"a\""), "\"a\""));
        assert!(etag_matches(Some("\"b\", W/\"a\""), "\"a\""));
        assert!(etag_matches(Some("*"), "\"a\""));
        assert!(!etag_matches(Some("\"b\""), "\"a\""));
        assert!(!etag_matches(None, "\"a\""));
    }

    #[test]
    fn wait_parameter() {
        assert_eq!(wait_seconds("wait=5"), Some(5));
        assert_eq!(wait_seconds("a=1&wait=0.5"), Some(1));
        assert_eq!(wait_seconds("wait=1000"), Some(MAX_LONG_POLL_SECONDS));
        assert_eq!(wait_seconds("wait=-1"), None);
        assert_eq!(wait_seconds("wait=x"), None);
        assert_eq!(wait_seconds(""), None);
    }
}
