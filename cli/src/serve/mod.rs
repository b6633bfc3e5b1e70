//! `entitle serve`: the edge server. Serves an edge directory over HTTP/1.1 with long-polls on the
//! manifest, and answers Spackle's customer-state API from a snapshot kept in memory.
//!
//! Built on tokio, hyper and axum. The modules:
//! - [`conn`]: the hardened connection loop (deadlines, limits, caps, eviction, graceful shutdown),
//!   shared with the binary's other servers;
//! - [`files`]: reading edge files without following links or reading beyond a bound;
//! - [`log`]: the access log, written by a thread of its own;
//! - [`manifest`]: the manifest as served, its watcher, and the engine fed from it;
//! - [`routes`]: the HTTP routes and the guard in front of them;
//! - [`state`]: the customer-state document;
//! - [`metrics`]: counters and their Prometheus text.

pub mod conn;
pub mod files;
pub mod log;
pub mod manifest;
pub mod metrics;
pub mod routes;
pub mod state;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use entitle_core::edge::MAX_LONG_POLL_SECONDS;
use entitle_core::{BuildOptions, Catalog, Engine, Snapshot, SyncConfig};
use tokio::sync::watch;

use conn::{ConnStats, Limits, Trust};
use manifest::Watcher;
use metrics::Metrics;
use routes::{Content, Edge};
use state::StateSource;

/// The longest bearer token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Options of `entitle serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The edge directory to serve (may be left out with --upstream: then only the customer-state
    /// API, /healthz and /metrics are served).
    #[arg(required_unless_present = "upstream")]
    pub dir: Option<PathBuf>,
    /// The address to listen on (port 0 picks a free port; the first output line names it).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,
    /// A file holding the bearer token every request but /healthz must carry (visible ASCII only).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Keep the customer-state API synced to this upstream edge (long-polling) instead of the
    /// served directory.
    #[arg(long)]
    pub upstream: Option<String>,
    /// A file holding the bearer token for the upstream edge.
    #[arg(long, requires = "upstream")]
    pub upstream_token_file: Option<PathBuf>,
    /// Print one JSON line per request on stderr.
    #[arg(long)]
    pub access_log: bool,
    /// Connections open at once.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Connections that have not yet sent an authorized request; beyond this the oldest is closed.
    #[arg(long, default_value_t = Limits::default().max_pending)]
    pub max_pending: usize,
    /// Seconds a client has to send a whole request head (also the keep-alive idle limit).
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds a response may wait for the client to read more before the connection is closed.
    #[arg(long, default_value_t = 30.0)]
    pub write_timeout: f64,
    /// Seconds SIGTERM waits for connections to finish before exiting.
    #[arg(long, default_value_t = 5.0)]
    pub shutdown_timeout: f64,
    /// Largest snapshot or delta file served, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_file_bytes: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag}: {value} is not a positive number of seconds"))
}

/// Reads a bearer token from `path`: the content without surrounding whitespace, refused unless it
/// is 1 to [`MAX_TOKEN_BYTES`] visible ASCII characters (what every client can send in an
/// `Authorization` header).
///
/// # Errors
/// A message naming the file and what is wrong with it.
pub fn read_token(path: &Path) -> Result<String, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| at(&e))?;
    if !meta.is_file() || meta.len() > (MAX_TOKEN_BYTES + 1024) as u64 {
        return Err(at(&"not a token file (a regular file of at most 4 KiB)"));
    }
    let bytes = std::fs::read(path).map_err(|e| at(&e))?;
    check_token(bytes.trim_ascii()).map_err(|e| at(&e))
}

/// Checks a token's bytes (see [`read_token`]).
pub fn check_token(token: &[u8]) -> Result<String, String> {
    if token.is_empty() {
        return Err("the token file is empty".to_owned());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("the token is longer than {MAX_TOKEN_BYTES} bytes"));
    }
    if let Some(i) = token.iter().position(|b| !(0x21..=0x7e).contains(b)) {
        return Err(format!(
            "the token has byte 0x{:02x} at offset {i}: a client can only send visible ASCII \
             characters (no spaces, control characters or non-ASCII) in an Authorization header",
            token[i]
        ));
    }
    Ok(String::from_utf8_lossy(token).into_owned())
}

/// `url` without its user and password (`https://user:key@host/p?q` becomes `https://host/p?q`), as
/// the sync's error messages quote it.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{tail}")
}

/// `url` without its credentials and query (`https://user:key@host/p?token=x` becomes
/// `https://host/p?…`), to be shown where the URL's secrets must not be.
pub fn redact_url(url: &str) -> String {
    let mut shown = without_userinfo(url);
    if let Some(query) = shown.find(['?', '#']) {
        shown.replace_range(query.., "?…");
    }
    shown
}

/// Raises the soft limit on open files to the hard limit: every held connection is a descriptor.
#[cfg(unix)]
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read just above; failure leaves the limit as it was.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

#[cfg(not(unix))]
fn raise_fd_limit() {}

/// An engine with no content (version 0) until the first snapshot is loaded.
fn empty_engine() -> Result<Engine, String> {
    let catalog = Catalog::from_json(br#"{"features": []}"#).map_err(|e| e.to_string())?;
    let snap = Snapshot::build(
        &catalog,
        BuildOptions {
            version: 0,
            created_at: 0,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(Engine::from_snapshot(snap))
}

/// Runs `entitle serve` until SIGTERM or SIGINT, then shuts down gracefully. Prints
/// `serving DIR at http://ADDR` on stdout once listening.
///
/// # Errors
/// Bad options, a missing directory, an address that cannot be bound.
pub fn run(args: Args) -> Result<(), String> {
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let limits = Limits {
        max_connections: args.max_connections.max(1),
        max_pending: args.max_pending.max(1),
        header_timeout: seconds(args.header_timeout, "--header-timeout")?,
        write_timeout: seconds(args.write_timeout, "--write-timeout")?,
        shutdown_timeout: seconds(args.shutdown_timeout, "--shutdown-timeout")?,
        ..Limits::default()
    };
    let root = match &args.dir {
        Some(dir) => {
            let root = dir
                .canonicalize()
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            if !root.is_dir() {
                return Err(format!("{}: not a directory", dir.display()));
            }
            Some(root)
        }
        None => None,
    };
    let upstream_token = args
        .upstream_token_file
        .as_deref()
        .map(read_token)
        .transpose()?;
    let upstream = match &args.upstream {
        Some(url) => {
            let config = SyncConfig {
                url: url.clone(),
                token: upstream_token.clone(),
                long_poll: Some(Duration::from_secs(MAX_LONG_POLL_SECONDS)),
                ..SyncConfig::default()
            };
            Some(Arc::new(
                Engine::connect(config).map_err(|e| format!("--upstream: {e}"))?,
            ))
        }
        None => None,
    };
    raise_fd_limit();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (access_log, flushed) = match args.access_log {
        true => {
            let (log, flushed) = log::AccessLog::start()?;
            (Some(log), Some(flushed))
        }
        false => (None, None),
    };
    let result = runtime.block_on(serve(
        args,
        root,
        token,
        upstream.map(|e| (e, upstream_token)),
        limits,
        access_log,
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Every task, and with them the log's senders, is gone: write out what is queued.
    if let Some(flushed) = flushed {
        flushed.wait(Duration::from_secs(1));
    }
    result
}

async fn serve(
    args: Args,
    root: Option<PathBuf>,
    token: Option<String>,
    upstream: Option<(Arc<Engine>, Option<String>)>,
    limits: Limits,
    access_log: Option<log::AccessLog>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|e| format!("{}: {e}", args.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::default());
    let conns = Arc::new(ConnStats::default());
    let (shutdown_tx, shutdown) = watch::channel(false);
    let watcher = root.clone().map(|r| Watcher::new(r, Arc::clone(&metrics)));
    if let Some(w) = &watcher {
        tokio::spawn(Arc::clone(w).run());
    }
    let source = Arc::new(StateSource::default());
    let content = match (upstream, &watcher) {
        (Some((engine, upstream_token)), _) => {
            let (follower, target) = (Arc::clone(&engine), Arc::clone(&source));
            let url = args.upstream.clone().unwrap_or_default();
            let max = args.max_file_bytes;
            std::thread::Builder::new()
                .name("entitle-state".to_owned())
                .spawn(move || {
                    state::follow_upstream(
                        &follower,
                        &target,
                        &url,
                        upstream_token.as_deref(),
                        max,
                    );
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
            Content {
                source,
                upstream: Some(engine),
                upstream_url: args.upstream.clone(),
            }
        }
        (None, Some(w)) => {
            let engine = Arc::new(empty_engine()?);
            tokio::spawn(Arc::clone(w).feed(engine, Arc::clone(&source), args.max_file_bytes));
            Content {
                source,
                upstream: None,
                upstream_url: None,
            }
        }
        (None, None) => return Err("serve: a directory or --upstream is required".to_owned()),
    };
    let token_bytes = token.map(String::into_bytes);
    let trust_token = token_bytes.clone();
    let trust: Trust =
        Arc::new(move |req| routes::authorized(req.headers(), trust_token.as_deref()));
    let edge = Arc::new(Edge {
        root,
        watcher,
        token: token_bytes,
        content,
        metrics,
        conns: Arc::clone(&conns),
        shutdown: shutdown.clone(),
        access_log,
        max_file_bytes: args.max_file_bytes,
    });
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = shutdown_tx.send(true);
    });
    {
        let what = match (&args.dir, &args.upstream) {
            (Some(dir), _) => dir.display().to_string(),
            (None, Some(url)) => format!("upstream {}", redact_url(url)),
            (None, None) => String::new(),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "serving {what} at http://{local}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing output: {e}"))?;
    }
    conn::run(
        listener,
        routes::router(edge),
        limits,
        trust,
        conns,
        shutdown,
    )
    .await;
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        for (url, shown) in [
            ("http://user:pw@host:1/edge?key=k#f", "http://host:1/edge?…"),
            ("https://host/edge/", "https://host/edge/"),
            ("https://a@b@host", "https://host"),
            ("http://host?x=1", "http://host?…"),
            ("host/path", "host/path"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        for (url, bare) in [
            (
                "http://user:pw@host:1/edge?key=k#f",
                "http://host:1/edge?key=k#f",
            ),
            ("https://a@b@host?x=1", "https://host?x=1"),
            ("https://host/edge", "https://host/edge"),
            ("host/path", "host/path"),
        ] {
            assert_eq!(without_userinfo(url), bare, "{url}");
        }
    }

    #[test]
    fn tokens_a_client_cannot_send_are_refused() {
        assert_eq!(
            check_token(b"s3cret-_.~+/=").as_deref(),
            Ok("s3cret-_.~+/=")
        );
        for bad in [
            &b""[..],
            b"two words",
            b"tab\there",
            b"line\nbreak",
            "caf\u{e9}".as_bytes(),
            b"nul\0",
            &[b'a'; MAX_TOKEN_BYTES + 1],
        ] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
    }
}
