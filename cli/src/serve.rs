//! `entitle serve`: a small HTTP/1.1 server for an edge directory, for local use and tests.
//!
//! GET and HEAD only; ETag and 304; `Cache-Control` short for the manifest and immutable for
//! artifacts; an optional bearer token compared in constant time; no path outside the directory;
//! long-poll on the manifest (`?wait=SECONDS`). One thread per connection, at most
//! [`MAX_CONNECTIONS`] at once (more get a 503); keep-alive connections idle for
//! [`IDLE_TIMEOUT`] are closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use entitle_core::edge::{is_safe_path, LONG_POLL_HEADER, MANIFEST_FILE, MAX_LONG_POLL_SECONDS};
use entitle_core::hash::xxh64;

/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a keep-alive connection may sit idle between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the manifest is checked for changes while requests long-poll.
const WATCH_EVERY: Duration = Duration::from_millis(10);
const MAX_HEAD: usize = 16 * 1024;

/// The manifest as last seen on disk, shared by long-polling requests.
struct ManifestWatch {
    path: PathBuf,
    state: Mutex<Seen>,
    changed: Condvar,
}

#[derive(Clone, Default, PartialEq, Eq)]
struct Seen {
    /// (modified, length, inode) of the file when it was read.
    stamp: Option<(std::time::SystemTime, u64, u64)>,
    etag: Option<String>,
    body: Option<Arc<Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{:016x}\"", xxh64(bytes, 0))
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

impl ManifestWatch {
    /// Re-reads the manifest when its stamp changed; wakes long-polls when its content did.
    fn refresh(&self) {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| {
            (
                m.modified().unwrap_or(std::time::UNIX_EPOCH),
                m.len(),
                inode(&m),
            )
        });
        if lock(&self.state).stamp == stamp && stamp.is_some() {
            return;
        }
        let body = std::fs::read(&self.path).ok().map(Arc::new);
        let etag = body.as_deref().map(|b| etag_of(b));
        let mut seen = lock(&self.state);
        let changed = seen.etag != etag;
        *seen = Seen { stamp, etag, body };
        drop(seen);
        if changed {
            self.changed.notify_all();
        }
    }

    /// Waits until the manifest's ETag differs from `etag`, at most until `deadline`.
    fn wait_change(&self, etag: &str, deadline: Instant) -> Seen {
        let mut seen = lock(&self.state);
        loop {
            if seen.etag.as_deref() != Some(etag) {
                return seen.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return seen.clone();
            }
            seen = self
                .changed
                .wait_timeout(seen, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

struct Server {
    root: PathBuf,
    token: Option<Vec<u8>>,
    manifest: ManifestWatch,
    active: AtomicUsize,
}

/// Serves `dir` on `addr` until the process is stopped. Prints `serving DIR at http://ADDR` on
/// stdout once listening (with port 0 the system picks the port; the line tells which).
pub fn serve(dir: &Path, addr: &str, token: Option<String>) -> Result<(), String> {
    let root = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if !root.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let listener = TcpListener::bind(addr).map_err(|e| format!("{addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let server = Arc::new(Server {
        manifest: ManifestWatch {
            path: root.join(MANIFEST_FILE),
            state: Mutex::new(Seen::default()),
            changed: Condvar::new(),
        },
        root,
        token: token.map(String::into_bytes),
        active: AtomicUsize::new(0),
    });
    server.manifest.refresh();
    let watcher = Arc::clone(&server);
    std::thread::Builder::new()
        .name("manifest-watch".into())
        .spawn(move || loop {
            std::thread::sleep(WATCH_EVERY);
            watcher.manifest.refresh();
        })
        .map_err(|e| format!("cannot start the manifest watcher: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "serving {} at http://{local}", dir.display())
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing output: {e}"))?;
    }
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if server.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            server.active.fetch_sub(1, Ordering::AcqRel);
            let _ = respond_simple(&stream, 503, "too many connections\n", &[], false);
            continue;
        }
        let s = Arc::clone(&server);
        let spawned = std::thread::Builder::new()
            .name("edge-conn".into())
            .spawn(move || {
                let _ = s.connection(stream);
                s.active.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            server.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
    Ok(())
}

/// A parsed request head.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    keep_alive: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request head; `Ok(None)` on a clean end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, u16> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - head.len().min(MAX_HEAD)) as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|_| 0u16)?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(400) };
        }
        if head.len() + line.len() > MAX_HEAD {
            return Err(431);
        }
        let blank = line == b"\r\n" || line == b"\n";
        if blank && head.is_empty() {
            continue; // tolerate stray blank lines between requests
        }
        head.extend_from_slice(&line);
        if blank {
            break;
        }
    }
    let text = std::str::from_utf8(&head).map_err(|_| 400u16)?;
    let mut lines = text.lines();
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(505);
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(400);
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        keep_alive: version != "HTTP/1.0",
    };
    match req.header("connection").map(str::to_ascii_lowercase) {
        Some(c) if c.contains("close") => req.keep_alive = false,
        Some(c) if c.contains("keep-alive") => req.keep_alive = true,
        _ => {}
    }
    let has_body = req
        .header("content-length")
        .is_some_and(|v| v.trim() != "0")
        || req.header("transfer-encoding").is_some();
    if has_body {
        return Err(400);
    }
    Ok(Some(req))
}

/// Compares in time that depends only on the expected token's length.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, &e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn write_head(
    mut out: impl Write,
    code: u16,
    headers: &[(&str, String)],
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {code} {}\r\n", status_text(code));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.write_all(head.as_bytes())
}

fn respond_simple(
    mut out: &TcpStream,
    code: u16,
    body: &str,
    extra: &[(&str, String)],
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut headers: Vec<(&str, String)> = vec![
        ("Content-Type", "text/plain; charset=utf-8".into()),
        ("Content-Length", body.len().to_string()),
        ("Cache-Control", "no-store".into()),
    ];
    headers.extend(extra.iter().cloned());
    write_head(out, code, &headers, keep_alive)?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

/// Whether an `If-None-Match` header names `etag` (a list, weak tags and `*` included).
fn etag_matches(header: Option<&str>, etag: &str) -> bool {
    header.is_some_and(|h| {
        h.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        })
    })
}

/// The long-poll wait a manifest request asks for, capped.
fn wait_seconds(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|w| w.is_finite() && *w > 0.0)
        .map(|w| (w.ceil() as u64).min(MAX_LONG_POLL_SECONDS))
}

impl Server {
    fn connection(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
        stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(stream.try_clone()?);
        loop {
            let req = match read_request(&mut reader) {
                Ok(Some(r)) => r,
                Ok(None) | Err(0) => return Ok(()),
                Err(code) => {
                    return respond_simple(&stream, code, "bad request\n", &[], false);
                }
            };
            let keep_alive = req.keep_alive;
            self.handle(&stream, &req)?;
            if !keep_alive {
                return Ok(());
            }
        }
    }

    fn handle(&self, stream: &TcpStream, req: &Request) -> std::io::Result<()> {
        let keep = req.keep_alive;
        if req.method != "GET" && req.method != "HEAD" {
            let allow = [("Allow", "GET, HEAD".to_owned())];
            return respond_simple(stream, 405, "GET and HEAD only\n", &allow, keep);
        }
        if let Some(token) = &self.token {
            let given = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !constant_time_eq(given.trim().as_bytes(), token) {
                let challenge = [("WWW-Authenticate", "Bearer realm=\"entitle\"".to_owned())];
                return respond_simple(
                    stream,
                    401,
                    "a bearer token is required\n",
                    &challenge,
                    keep,
                );
            }
        }
        let Some(rel) = req.path.strip_prefix('/').filter(|p| is_safe_path(p)) else {
            return respond_simple(stream, 404, "not found\n", &[], keep);
        };
        let head_only = req.method == "HEAD";
        if rel == MANIFEST_FILE {
            return self.manifest(stream, req, head_only);
        }
        let path = self.root.join(rel);
        // Symlinks must not lead out of the edge directory.
        let inside = path
            .canonicalize()
            .is_ok_and(|p| p.starts_with(&self.root) && p.is_file());
        let file = if inside {
            std::fs::File::open(&path).ok()
        } else {
            None
        };
        let Some(mut file) = file else {
            return respond_simple(stream, 404, "not found\n", &[], keep);
        };
        let meta = file.metadata()?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let etag = format!("\"{:x}-{:x}\"", modified, meta.len());
        let artifact = rel.starts_with("snapshots/") || rel.starts_with("deltas/");
        let cache = if artifact {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let mut headers = vec![("ETag", etag.clone()), ("Cache-Control", cache.to_owned())];
        if etag_matches(req.header("if-none-match"), &etag) {
            write_head(stream, 304, &headers, keep)?;
            return Ok(());
        }
        headers.push(("Content-Type", "application/octet-stream".to_owned()));
        headers.push(("Content-Length", meta.len().to_string()));
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, stream);
        write_head(&mut out, 200, &headers, keep)?;
        if !head_only {
            std::io::copy(&mut file, &mut out)?;
        }
        out.flush()
    }

    fn manifest(&self, stream: &TcpStream, req: &Request, head_only: bool) -> std::io::Result<()> {
        let keep = req.keep_alive;
        self.manifest.refresh();
        let if_none_match = req.header("if-none-match");
        let seen = match (wait_seconds(&req.query), if_none_match) {
            (Some(wait), Some(tag)) if !tag.contains(',') && tag != "*" => self
                .manifest
                .wait_change(tag, Instant::now() + Duration::from_secs(wait)),
            _ => lock(&self.manifest.state).clone(),
        };
        let (Some(body), Some(etag)) = (seen.body, seen.etag) else {
            return respond_simple(stream, 404, "no manifest published yet\n", &[], keep);
        };
        let mut headers = vec![
            ("ETag", etag.clone()),
            (
                "Cache-Control",
                "public, max-age=1, must-revalidate".to_owned(),
            ),
            (LONG_POLL_HEADER, MAX_LONG_POLL_SECONDS.to_string()),
        ];
        if etag_matches(if_none_match, &etag) {
            write_head(stream, 304, &headers, keep)?;
            return Ok(());
        }
        headers.push(("Content-Type", "application/json".to_owned()));
        headers.push(("Content-Length", body.len().to_string()));
        let mut out = std::io::BufWriter::new(stream);
        write_head(&mut out, 200, &headers, keep)?;
        if !head_only {
            out.write_all(&body)?;
        }
        out.flush()
    }
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
