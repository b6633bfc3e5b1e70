//! The hardened HTTP/1.1 connection loop shared by the CLI's servers (`entitle serve` and any other
//! server of the `entitle` binary): accept, cap, time out, evict and shut down connections in front
//! of an axum [`Router`].
//!
//! What an idle or slow client can do is bounded:
//! - a request head must arrive whole within [`Limits::header_timeout`] (one deadline for the whole
//!   head, not per read; it also bounds how long a keep-alive connection may sit idle between
//!   requests), and is at most [`Limits::max_head_bytes`] bytes and [`Limits::max_headers`] headers;
//!   a body the application reads must then arrive whole within the same time (a trusted head
//!   with a body that never ends cannot hold its connection);
//! - a response must make progress: a connection whose socket accepts no bytes for
//!   [`Limits::write_timeout`] (a client that stopped reading) is closed, like nginx's
//!   `send_timeout`; a request still being worked on (a held long-poll) writes nothing and is not
//!   affected;
//! - a connection is *pending* until it sends a request the application trusts (for the edge: one
//!   that carries the token). At most [`Limits::max_pending`] connections are pending; beyond that,
//!   or when all [`Limits::max_connections`] are taken, the oldest pending connection is closed to
//!   make room; so is it when the process runs out of file descriptors. Connections that hold no
//!   trusted request can therefore never lock a real client out; only when every connection is
//!   trusted is a new one refused (`503`, out of descriptors too: one is kept in reserve for that).
//!
//! Shutdown: once the shutdown signal fires, the listener is closed, a connection that never sent a
//! whole request is closed at once, every other one finishes the request it is serving (handlers
//! see the same signal and answer at once) and closes; whatever is still open after
//! [`Limits::shutdown_timeout`] is dropped.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Sleep;
use tower::ServiceExt;

/// Bounds on what connections may hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once (trusted and pending together).
    pub max_connections: usize,
    /// Connections that have not yet sent a trusted request.
    pub max_pending: usize,
    /// Deadline for a whole request head, counted from the first moment the server waits for it;
    /// once the head is in, the same deadline again for its body.
    pub header_timeout: Duration,
    /// Largest request head in bytes (at least 8192).
    pub max_head_bytes: usize,
    /// Most header fields in a request head.
    pub max_headers: usize,
    /// How long a response may wait for the socket to accept more bytes.
    pub write_timeout: Duration,
    /// How long shutdown waits for connections to finish.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 50_000,
            max_pending: 1024,
            header_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// Connection counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections open now that have not sent a trusted request yet.
    pub pending: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Pending connections closed to make room for new ones.
    pub evicted: AtomicU64,
    /// Connections refused because every slot held a trusted connection.
    pub refused: AtomicU64,
    /// Accept calls that failed (for example when out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Connections closed because the client stopped reading a response.
    pub write_timeouts: AtomicU64,
    /// Connections closed because no whole request head arrived within the deadline (idle
    /// keep-alive connections included).
    pub head_timeouts: AtomicU64,
    /// Request heads answered `400` by the HTTP layer (malformed), before any handler.
    pub bad_heads: AtomicU64,
    /// Request heads answered `431` by the HTTP layer (too large or too many fields).
    pub large_heads: AtomicU64,
}

impl ConnStats {
    /// Counts how a connection ended, when the HTTP layer ended it.
    fn ended(&self, error: &hyper::Error) {
        let counter = if error.is_timeout() {
            &self.head_timeouts
        } else if error.is_parse_too_large() {
            &self.large_heads
        } else if error.is_parse() && !error.is_parse_version_h2() {
            &self.bad_heads
        } else {
            return;
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The peer address of the connection a request arrived on (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Decides from a request head whether its connection is trusted (no longer pending).
pub type Trust = Arc<dyn Fn(&Request<Incoming>) -> bool + Send + Sync>;

/// Pending connections, oldest first, each with the signal that closes it.
#[derive(Default)]
struct Pending {
    next_id: u64,
    conns: BTreeMap<u64, Arc<Notify>>,
}

struct Shared {
    stats: Arc<ConnStats>,
    pending: Mutex<Pending>,
    all_closed: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the oldest pending connection; false when none is pending.
    fn evict_oldest(&self) -> bool {
        let oldest = self.lock().conns.pop_first();
        match oldest {
            Some((_, close)) => {
                self.stats.pending.fetch_sub(1, Ordering::AcqRel);
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Takes a connection out of the pending set; false when it was already evicted.
    fn promote(&self, id: u64) -> bool {
        let removed = self.lock().conns.remove(&id).is_some();
        if removed {
            self.stats.pending.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }
}

const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 21\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections\n";

/// Serves `app` on `listener` until `shutdown` turns true, then shuts down gracefully (see the
/// module documentation). Returns once every connection is closed or the shutdown timeout passed.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    trust: Trust,
    stats: Arc<ConnStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        stats,
        pending: Mutex::new(Pending::default()),
        all_closed: Notify::new(),
    });
    // A descriptor held in reserve, given up to answer a client `503` when none is left.
    let mut reserve = reserve_descriptor();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_headers(limits.max_headers)
        .half_close(false)
        .keep_alive(true);
    loop {
        if reserve.is_none() {
            reserve = reserve_descriptor();
        }
        let accepted = tokio::select! {
            biased;
            _ = wait_true(&mut shutdown) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if out_of_descriptors(&e) {
                    match take_waiting(&listener, &shared, &mut reserve).await {
                        Some(a) => a,
                        None => continue,
                    }
                } else {
                    // A connection reset before accept: pause instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let open = shared.stats.open.load(Ordering::Acquire) as usize;
        let pending = shared.stats.pending.load(Ordering::Acquire) as usize;
        if (open >= limits.max_connections || pending >= limits.max_pending)
            && !shared.evict_oldest()
        {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(REFUSED);
            continue;
        }
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        shared.stats.open.fetch_add(1, Ordering::AcqRel);
        shared.stats.pending.fetch_add(1, Ordering::AcqRel);
        let close = Arc::new(Notify::new());
        let id = {
            let mut p = shared.lock();
            let id = p.next_id;
            p.next_id += 1;
            p.conns.insert(id, Arc::clone(&close));
            id
        };
        tokio::spawn(connection(
            WriteDeadline::new(stream, limits.write_timeout, Arc::clone(&shared.stats)),
            Peer(peer),
            id,
            close,
            http.clone(),
            app.clone(),
            Arc::clone(&trust),
            Arc::clone(&shared),
            shutdown.clone(),
            limits.header_timeout,
        ));
    }
    drop(listener);
    let drained = async {
        loop {
            let closed = shared.all_closed.notified();
            if shared.stats.open.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    };
    let _ = tokio::time::timeout(limits.shutdown_timeout, drained).await;
}

/// Out of descriptors (an accept failed for want of one, whether or not a client is waiting):
/// gives up the descriptor kept in `reserve` to take the waiting client, if any. To make room for
/// it the oldest pending connection is closed; when every connection is trusted it is answered
/// `503` instead, and the reserve is taken back. Without a reserve, closes the oldest pending
/// connection (or, with none, waits a moment) and takes no client.
async fn take_waiting(
    listener: &TcpListener,
    shared: &Shared,
    reserve: &mut Option<std::fs::File>,
) -> Option<(TcpStream, SocketAddr)> {
    let Some(spare) = reserve.take() else {
        let pause = if shared.evict_oldest() { 2 } else { 20 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        return None;
    };
    drop(spare);
    let waiting = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await;
    match waiting {
        Poll::Ready(Ok(client)) if shared.evict_oldest() => Some(client),
        Poll::Ready(Ok((stream, _))) => {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(REFUSED);
            drop(stream);
            *reserve = reserve_descriptor();
            None
        }
        // Nobody waiting (the failed accept did not look), or another failure.
        Poll::Ready(Err(_)) | Poll::Pending => {
            *reserve = reserve_descriptor();
            None
        }
    }
}

/// A file descriptor to hold in reserve (`/dev/null` opened), when one is left.
fn reserve_descriptor() -> Option<std::fs::File> {
    #[cfg(unix)]
    {
        std::fs::File::open("/dev/null").ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Whether an accept failed for want of a file descriptor (the process's or the system's).
fn out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Resolves once the watched flag is true (or its sender is gone).
pub async fn wait_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: WriteDeadline,
    peer: Peer,
    id: u64,
    close: Arc<Notify>,
    http: hyper::server::conn::http1::Builder,
    app: Router,
    trust: Trust,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    http_body_timeout: Duration,
) {
    let body_timeout = http_body_timeout;
    let trusted = Arc::new(AtomicBool::new(false));
    // Whether a whole request ever arrived: one that never did has nothing in flight.
    let asked = Arc::new(AtomicBool::new(false));
    let service = {
        let shared = Arc::clone(&shared);
        let trusted = Arc::clone(&trusted);
        let asked = Arc::clone(&asked);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            asked.store(true, Ordering::Relaxed);
            if !trusted.load(Ordering::Relaxed) && trust(&req) {
                trusted.store(true, Ordering::Relaxed);
                shared.promote(id);
            }
            let mut req = req.map(|body| BodyDeadline::new(body, body_timeout));
            req.extensions_mut().insert(peer);
            app.clone().oneshot(req)
        })
    };
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    shared.stats.ended(&e);
                }
                break;
            }
            _ = close.notified() => break,
            _ = wait_true(&mut shutdown), if !shutting_down => {
                // A connection that never sent a whole request (idle, or trickling its first
                // head) is closed at once; the others finish the request they are on.
                if !asked.load(Ordering::Relaxed) {
                    break;
                }
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    // An evicted connection was already taken out of the pending set.
    if !trusted.load(Ordering::Relaxed) {
        shared.promote(id);
    }
    if shared.stats.open.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.all_closed.notify_waiters();
    }
}

/// A request body that fails once it has not arrived whole by a deadline (counted from when the
/// head arrived); the deadline's timer is only set when the body has to be waited for.
pub struct BodyDeadline {
    body: Incoming,
    deadline: tokio::time::Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl BodyDeadline {
    fn new(body: Incoming, timeout: Duration) -> BodyDeadline {
        BodyDeadline {
            body,
            deadline: tokio::time::Instant::now() + timeout,
            timer: None,
        }
    }
}

impl hyper::body::Body for BodyDeadline {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket whose writes fail with `TimedOut` once it has accepted no bytes for the
/// deadline (the client stopped reading). Only a write that is waiting counts: a connection with
/// nothing to send is never timed out here.
pub struct WriteDeadline {
    io: TcpStream,
    timeout: Duration,
    /// Armed while a write waits for the socket; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    stats: Arc<ConnStats>,
}

impl WriteDeadline {
    fn new(io: TcpStream, timeout: Duration, stats: Arc<ConnStats>) -> WriteDeadline {
        WriteDeadline {
            io,
            timeout,
            stalled: None,
            stats,
        }
    }

    /// Passes a write's outcome through, keeping the deadline: progress disarms it, waiting arms
    /// it (once) and fails when it has passed.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stats.write_timeouts.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading the response",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.deadline(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.deadline(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.deadline(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.deadline(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Bytes;
    use axum::routing::post;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// POSTs `request` (raw) to a server whose handler reads the body; returns the answer and how
    /// long the connection stayed open.
    fn post_raw(request: &[u8]) -> (String, Duration) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            post(|body: Bytes| async move { body.len().to_string() }),
        );
        let limits = Limits {
            header_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let (_stop, stop) = watch::channel(false);
        runtime.spawn(run(
            listener,
            app,
            limits,
            Arc::new(|_| true),
            Arc::new(ConnStats::default()),
            stop,
        ));
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let start = Instant::now();
        s.write_all(request).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        (String::from_utf8_lossy(&raw).into_owned(), start.elapsed())
    }

    #[test]
    fn a_request_body_must_arrive_in_time() {
        // The head is trusted, but its body never comes whole: the connection is not held.
        let (answer, open) =
            post_raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
        assert!(open < Duration::from_secs(3), "held {open:?}: {answer}");
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
        // A body that comes in time is read whole.
        let (answer, _) = post_raw(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n10"), "{answer}");
    }
}
