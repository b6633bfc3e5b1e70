//! A fault-injecting edge for the sync tests: a real HTTP server on loopback that serves an
//! in-memory edge (manifest, snapshots, deltas) and can be told to misbehave, plus an in-memory
//! publisher that produces those files with the same manifest and naming as `entitle publish`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use entitle_core::edge::{DeltaEntry, Manifest, SnapshotEntry, LONG_POLL_HEADER, MANIFEST_FILE};
use entitle_core::hash::xxh64;
use entitle_core::{diff, BuildOptions, Catalog, Snapshot, SyncConfig};

/// Polls `cond` every few milliseconds for at most `limit`; returns whether it became true.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// Waits until `engine` serves `version` from the edge and the sync thread has recorded the round
/// that brought it, and returns the status then. A new version becomes visible to lookups a moment
/// before the thread records that round (`deltas_applied`, `snapshots_fetched`, `edge_version` are
/// written together, after the swap), so a test that reads those counters must wait for the record
/// as well as for the version.
pub fn converged(engine: &entitle_core::Engine, version: u64) -> entitle_core::Status {
    let ok = wait_until(CONVERGE, || {
        engine.version() == version && engine.status().edge_version == Some(version)
    });
    let status = engine.status();
    assert!(ok, "did not reach version {version}: {status:?}");
    status
}

/// Generous bound for convergence on a loaded 2-core machine.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// A catalog where `cus_bob` has `projects` = `projects`, plus `extra` other customers.
pub fn catalog(projects: u64) -> Catalog {
    catalog_with(projects, 20)
}

/// Like [`catalog`] with `extra` filler customers.
pub fn catalog_with(projects: u64, extra: usize) -> Catalog {
    let mut customers = vec![format!(
        r#"{{"id": "cus_bob", "overrides": {{"projects": {projects}}}}}"#
    )];
    for i in 0..extra {
        customers.push(format!(
            r#"{{"id": "cus_{i}", "subscriptions": [{{"id": "s{i}", "status": "active", "items": [{{"product": "pro"}}]}}]}}"#
        ));
    }
    let json = format!(
        r#"{{"features": [{{"key": "projects", "type": "limit", "default": 3}}, {{"key": "sso", "type": "flag"}}],
            "products": [{{"id": "pro", "features": {{"sso": true, "projects": 50}}}}],
            "customers": [{}]}}"#,
        customers.join(",\n")
    );
    Catalog::from_json(json.as_bytes()).expect("test catalog")
}

/// An in-memory publisher: versions, deltas and manifests exactly as `entitle publish` makes them.
pub struct Publisher {
    pub lineage: String,
    pub keep: usize,
    pub current: Option<Snapshot>,
    pub manifest: Option<Manifest>,
    /// Every file ever produced, by path.
    pub files: HashMap<String, Vec<u8>>,
}

impl Publisher {
    pub fn new(lineage: &str) -> Publisher {
        Publisher {
            lineage: lineage.to_owned(),
            keep: 32,
            current: None,
            manifest: None,
            files: HashMap::new(),
        }
    }

    /// Builds the next version from `catalog`; returns its manifest.
    pub fn publish(&mut self, catalog: &Catalog) -> Manifest {
        let version = self.current.as_ref().map_or(1, |s| s.version() + 1);
        let snap = Snapshot::build(
            catalog,
            BuildOptions {
                version,
                created_at: entitle_core::internal::unix_now(),
            },
        )
        .expect("build");
        let entry = SnapshotEntry::for_snapshot(&snap);
        self.files
            .insert(entry.path.clone(), snap.as_bytes().to_vec());
        let mut deltas = self
            .manifest
            .as_ref()
            .map(|m| m.deltas.clone())
            .unwrap_or_default();
        if let Some(prev) = &self.current {
            let delta = diff(prev, &snap).expect("diff");
            let d = DeltaEntry::for_delta(&delta);
            self.files.insert(d.path.clone(), delta.as_bytes().to_vec());
            deltas.push(d);
        }
        let excess = deltas.len().saturating_sub(self.keep);
        deltas.drain(..excess);
        let manifest = Manifest {
            lineage: self.lineage.clone(),
            version,
            created_at: snap.created_at(),
            snapshot: entry,
            deltas,
            subscriptions: None,
        };
        self.current = Some(snap);
        self.manifest = Some(manifest.clone());
        manifest
    }
}

/// What the edge does wrong to requests whose path starts with a prefix.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this HTTP status.
    Status(u16),
    /// Wait this long before answering.
    Delay(Duration),
    /// Send the body in chunks of `chunk` bytes with a pause after each.
    Slow { chunk: usize, pause: Duration },
    /// Announce the full length, send half the body, close.
    CutShort,
    /// Flip one byte in the middle of the body.
    FlipByte,
    /// Close the connection without answering.
    Close,
    /// Answer `302 Found` with this `Location`.
    Redirect(String),
}

#[derive(Clone, Debug)]
struct Rule {
    prefix: String,
    fault: Fault,
    times: Option<usize>,
}

#[derive(Default)]
struct EdgeState {
    files: HashMap<String, Vec<u8>>,
    manifest: Option<Vec<u8>>,
    rules: Vec<Rule>,
    token: Option<String>,
    long_poll: bool,
    requests: Vec<String>,
    /// Serve the manifest without an ETag (as a proxy that drops it would).
    drop_etag: bool,
    /// Extra response headers by path.
    headers: HashMap<String, Vec<(String, String)>>,
}

struct Inner {
    state: Mutex<EdgeState>,
    changed: Condvar,
    stop: AtomicBool,
    active: AtomicUsize,
    waiting: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fault-injecting edge server.
pub struct TestEdge {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

/// A loopback port with nothing listening on it (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

impl TestEdge {
    /// An edge on a fresh port.
    pub fn start() -> TestEdge {
        TestEdge::start_on(0)
    }

    /// An edge on `port` (0: any).
    pub fn start_on(port: u16) -> TestEdge {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot bind port {port}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Inner {
            state: Mutex::new(EdgeState {
                long_poll: true,
                ..EdgeState::default()
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        });
        let acceptor = Arc::clone(&inner);
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if acceptor.stop.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let inner = Arc::clone(&acceptor);
                inner.active.fetch_add(1, Ordering::AcqRel);
                std::thread::spawn(move || {
                    let _ = serve(&inner, stream);
                    inner.active.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
        TestEdge {
            addr,
            inner,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Copies every file of `publisher` and serves its current manifest.
    pub fn load(&self, publisher: &Publisher) {
        let manifest = publisher.manifest.as_ref().expect("published");
        self.load_with(publisher, manifest);
    }

    /// Copies every file of `publisher` and serves `manifest`.
    pub fn load_with(&self, publisher: &Publisher, manifest: &Manifest) {
        let mut s = lock(&self.inner.state);
        for (path, bytes) in &publisher.files {
            s.files.insert(path.clone(), bytes.clone());
        }
        s.manifest = Some(manifest.to_json().into_bytes());
        drop(s);
        self.inner.changed.notify_all();
    }

    /// Publishes `catalog` with `publisher` and serves the result.
    pub fn publish(&self, publisher: &mut Publisher, catalog: &Catalog) -> Manifest {
        let m = publisher.publish(catalog);
        self.load(publisher);
        m
    }

    /// Serves raw manifest bytes.
    pub fn set_manifest_bytes(&self, bytes: Vec<u8>) {
        lock(&self.inner.state).manifest = Some(bytes);
        self.inner.changed.notify_all();
    }

    pub fn remove(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.inner.state).files.remove(path)
    }

    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        lock(&self.inner.state).files.insert(path.to_owned(), bytes);
    }

    /// Adds a fault for paths starting with `prefix` ("" for every path), `times` times or forever.
    pub fn fault(&self, prefix: &str, fault: Fault, times: Option<usize>) {
        lock(&self.inner.state).rules.push(Rule {
            prefix: prefix.to_owned(),
            fault,
            times,
        });
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.state).rules.clear();
    }

    pub fn require_token(&self, token: &str) {
        lock(&self.inner.state).token = Some(token.to_owned());
    }

    pub fn set_long_poll(&self, on: bool) {
        lock(&self.inner.state).long_poll = on;
    }

    /// Serves the manifest without an ETag, so that clients cannot revalidate it.
    pub fn set_drop_etag(&self, on: bool) {
        lock(&self.inner.state).drop_etag = on;
    }

    /// Adds a response header for `path` (for example `Content-Encoding: gzip` on raw bytes).
    pub fn header(&self, path: &str, name: &str, value: &str) {
        lock(&self.inner.state)
            .headers
            .entry(path.to_owned())
            .or_default()
            .push((name.to_owned(), value.to_owned()));
    }

    /// Manifest requests received so far.
    pub fn manifest_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(&format!("/{MANIFEST_FILE}")))
            .count()
    }

    /// Requests received so far (path and query).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.inner.state).requests.clone()
    }

    /// Manifest requests currently held by a long-poll.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire)
    }

    /// Connections being served.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.changed.notify_all();
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Connection threads notice `stop` within a few milliseconds.
        wait_until(Duration::from_secs(5), || self.active() == 0);
    }
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{:016x}\"", xxh64(bytes, 0))
}

/// Serves one request per connection (`Connection: close`).
fn serve(inner: &Inner, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let path = path.trim_start_matches('/').to_owned();
    let wait = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|w| w.parse::<u64>().ok());

    let (fault, token, long_poll, drop_etag, path_headers) = {
        let mut s = lock(&inner.state);
        s.requests.push(target.clone());
        let mut fault = None;
        for rule in s.rules.iter_mut() {
            if path.starts_with(&rule.prefix) && rule.times != Some(0) {
                if let Some(t) = &mut rule.times {
                    *t -= 1;
                }
                fault = Some(rule.fault.clone());
                break;
            }
        }
        let path_headers = s.headers.get(&path).cloned().unwrap_or_default();
        (
            fault,
            s.token.clone(),
            s.long_poll,
            s.drop_etag,
            path_headers,
        )
    };
    let mut out = stream;
    if let Some(token) = token {
        if headers.get("authorization") != Some(&format!("Bearer {token}")) {
            return respond(&mut out, 401, &[], b"token required\n", None);
        }
    }
    match &fault {
        Some(Fault::Close) => return Ok(()),
        Some(Fault::Status(code)) => return respond(&mut out, *code, &[], b"fault\n", None),
        Some(Fault::Redirect(location)) => {
            let headers = [("Location".to_owned(), location.clone())];
            return respond(&mut out, 302, &headers, b"", None);
        }
        Some(Fault::Delay(d)) => {
            let end = Instant::now() + *d;
            while Instant::now() < end && !inner.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        _ => {}
    }

    let mut extra: Vec<(String, String)> = path_headers;
    let body = if path == MANIFEST_FILE {
        if long_poll {
            extra.push((LONG_POLL_HEADER.to_owned(), "25".to_owned()));
        }
        let if_none_match = headers.get("if-none-match").cloned();
        let mut s = lock(&inner.state);
        if let (true, Some(w), Some(tag)) = (long_poll, wait, &if_none_match) {
            let end = Instant::now() + Duration::from_secs(w);
            inner.waiting.fetch_add(1, Ordering::AcqRel);
            while s.manifest.as_deref().map(etag).as_ref() == Some(tag)
                && Instant::now() < end
                && !inner.stop.load(Ordering::Acquire)
            {
                let left = end.saturating_duration_since(Instant::now());
                s = inner
                    .changed
                    .wait_timeout(s, left.min(Duration::from_millis(50)))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        let Some(m) = s.manifest.clone() else {
            drop(s);
            return respond(&mut out, 404, &extra, b"no manifest\n", None);
        };
        drop(s);
        let tag = etag(&m);
        if drop_etag {
            return respond(&mut out, 200, &extra, &m, fault);
        }
        extra.push(("ETag".to_owned(), tag.clone()));
        if if_none_match.as_deref() == Some(tag.as_str()) {
            return respond(&mut out, 304, &extra, b"", None);
        }
        m
    } else {
        match lock(&inner.state).files.get(&path).cloned() {
            Some(b) => b,
            None => return respond(&mut out, 404, &[], b"not found\n", None),
        }
    };
    respond(&mut out, 200, &extra, &body, fault)
}

fn respond(
    out: &mut TcpStream,
    code: u16,
    extra: &[(String, String)],
    body: &[u8],
    fault: Option<Fault>,
) -> std::io::Result<()> {
    let mut body = body.to_vec();
    if let Some(Fault::FlipByte) = fault {
        let at = body.len() / 2;
        if let Some(b) = body.get_mut(at) {
            *b ^= 0x20;
        }
    }
    let mut head = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if code == 304 {
        return out.flush();
    }
    match fault {
        Some(Fault::CutShort) => {
            out.write_all(&body[..body.len() / 2])?;
            out.flush()?;
            out.shutdown(std::net::Shutdown::Both)
        }
        Some(Fault::Slow { chunk, pause }) => {
            for part in body.chunks(chunk.max(1)) {
                out.write_all(part)?;
                out.flush()?;
                std::thread::sleep(pause);
            }
            Ok(())
        }
        _ => {
            out.write_all(&body)?;
            out.flush()
        }
    }
}

/// A sync configuration for tests: fast polling and backoff, short timeouts.
pub fn config(url: &str) -> SyncConfig {
    SyncConfig {
        url: url.to_owned(),
        poll_interval: Duration::from_millis(20),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        max_backoff: Duration::from_millis(100),
        persist_interval: Duration::ZERO,
        ..SyncConfig::default()
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "entitle-sync-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads a whole stream (used by raw HTTP helpers).
pub fn read_all(mut s: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    v
}
