//! `entitle stripe webhook`: Stripe's events in, published edge versions out.
//!
//! The HTTP side (tokio, hyper, axum) only verifies, de-duplicates and queues: it answers within
//! microseconds and never waits for Stripe or the disk. One worker thread does the rest: it fetches
//! the current state of whatever an event names (never trusting the event's copy, so order does not
//! matter), gathers a burst into one publish, retries when the API or the edge fails, and pulls the
//! whole account at startup and periodically, so a missed or lost event cannot leave a customer
//! wrong for longer than one reconciliation period.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use entitle_core::edge::{publish, read_manifest, PublishOptions};
use entitle_core::internal::unix_now;
use entitle_core::{diff, BuildOptions, Catalog, Snapshot};
use serde_json::json;

use super::account::Account;
use super::client::Client;
use super::events::{self, Work};
use super::mapping;
use super::signature::{self, DEFAULT_TOLERANCE_SECS};
use crate::serve::conn::{self, ConnStats, Limits, Trust};

/// Largest event body accepted (Stripe's events are a few kilobytes).
const MAX_BODY: usize = 1 << 20;
/// Event ids remembered for de-duplication (oldest forgotten first). Stripe retries a delivery
/// for up to three days; a redelivery older than this window only causes a refetch.
const SEEN_CAPACITY: usize = 100_000;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 256;
/// Longest wait between retries of a failed fetch or publish.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What `entitle stripe webhook` needs.
pub struct Options {
    /// The Stripe API.
    pub client: Client,
    /// Address to listen on.
    pub listen: String,
    /// The edge directory.
    pub edge: PathBuf,
    /// The user's catalog file, re-read at every publish.
    pub base: Option<PathBuf>,
    /// The endpoint's signing secret.
    pub secret: Vec<u8>,
    /// How long a burst is gathered before the work starts.
    pub coalesce: Duration,
    /// Time between full pulls.
    pub reconcile: Duration,
    /// Deltas the manifest keeps.
    pub keep: usize,
}

/// Counters and the last error, served as JSON at `GET /status`.
#[derive(Clone, Debug, Default)]
struct Status {
    accepted: u64,
    duplicates: u64,
    ignored: u64,
    rejected: u64,
    fetch_failures: u64,
    publishes: u64,
    version: Option<u64>,
    pending: usize,
    last_error: Option<String>,
}

/// Event ids already accepted, bounded.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// Whether `id` was recorded (and not yet forgotten).
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Records `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == SEEN_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

struct Shared {
    secret: Vec<u8>,
    seen: Mutex<Seen>,
    queue: Mutex<Sender<Work>>,
    status: Mutex<Status>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn log_error(message: &str) {
    eprintln!("{}", json!({"error": message}));
}

/// Runs the endpoint until SIGINT or SIGTERM.
///
/// # Errors
/// When the address cannot be bound or the runtime cannot start.
pub fn run(options: Options) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        secret: options.secret.clone(),
        seen: Mutex::new(Seen::default()),
        queue: Mutex::new(tx),
        status: Mutex::new(Status::default()),
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&options.listen))
        .map_err(|e| format!("{}: {e}", options.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let worker_shared = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("stripe-worker".into())
        .spawn(move || Worker::new(options, worker_shared).run(rx))
        .map_err(|e| format!("starting the worker: {e}"))?;
    crate::print_line(&json!({"listening": format!("http://{local}")}).to_string())?;
    // The connection loop `entitle serve` uses: head deadline and limits, a cap on connections,
    // connections that never send a signed POST evicted first, graceful shutdown.
    let limits = Limits {
        max_connections: MAX_CONNECTIONS,
        max_pending: MAX_CONNECTIONS / 2,
        ..Limits::default()
    };
    let trust: Trust = Arc::new(|req| {
        req.method() == axum::http::Method::POST && req.headers().contains_key("stripe-signature")
    });
    runtime.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop_signal().await;
            let _ = stop_tx.send(true);
        });
        conn::run(
            listener,
            router(shared),
            limits,
            trust,
            Arc::new(ConnStats::default()),
            stop,
        )
        .await;
    });
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", post(receive))
        .route("/webhook", post(receive))
        .route("/status", get(status))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn status(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    let s = lock(&shared.status).clone();
    let body = json!({
        "accepted": s.accepted,
        "duplicates": s.duplicates,
        "ignored": s.ignored,
        "rejected": s.rejected,
        "fetch_failures": s.fetch_failures,
        "publishes": s.publishes,
        "version": s.version,
        "pending": s.pending,
        "last_error": s.last_error,
    });
    (StatusCode::OK, body.to_string())
}

/// One delivery: verify, parse, de-duplicate, queue; the answer never waits for the work.
async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let refuse = |why: String| {
        lock(&shared.status).rejected += 1;
        (StatusCode::BAD_REQUEST, json!({"error": why}).to_string())
    };
    if let Err(e) = signature::verify(
        header,
        &body,
        &shared.secret,
        unix_now(),
        DEFAULT_TOLERANCE_SECS,
    ) {
        return refuse(e.to_string());
    }
    let event = match events::parse(&body) {
        Ok(e) => e,
        Err(e) => return refuse(format!("not a Stripe event: {e}")),
    };
    if lock(&shared.seen).contains(&event.id) {
        lock(&shared.status).duplicates += 1;
        return (StatusCode::OK, json!({"duplicate": event.id}).to_string());
    }
    let queue = lock(&shared.queue);
    for w in &event.work {
        if queue.send(w.clone()).is_err() {
            // The worker is gone; a 500 (and the id not recorded) makes Stripe deliver again.
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "not processing events"}).to_string(),
            );
        }
    }
    drop(queue);
    // Recorded once queued: two copies racing in both get queued, which is harmless (a refetch).
    lock(&shared.seen).insert(&event.id);
    if event.work.is_empty() {
        lock(&shared.status).ignored += 1;
        return (StatusCode::OK, json!({"ignored": event.kind}).to_string());
    }
    lock(&shared.status).accepted += 1;
    (StatusCode::OK, json!({"accepted": event.id}).to_string())
}

/// The edge's current version when its snapshot answers exactly as `catalog` would (the delta
/// between them changes no customer); `None` when it differs or cannot be read.
fn edge_answers_alike(edge: &Path, catalog: &Catalog) -> Option<u64> {
    let manifest = read_manifest(edge).ok()??;
    let bytes = std::fs::read(edge.join(&manifest.snapshot.path)).ok()?;
    let current = Snapshot::from_bytes(bytes).ok()?;
    let candidate = Snapshot::build(
        catalog,
        BuildOptions {
            version: manifest.version + 1,
            created_at: manifest.created_at,
        },
    )
    .ok()?;
    let delta = diff(&current, &candidate).ok()?;
    (!delta.is_full() && delta.change_count() == 0).then_some(manifest.version)
}

/// The worker: owns the account's current state and the edge.
struct Worker {
    options: Options,
    shared: Arc<Shared>,
    account: Option<Account>,
    pending: BTreeSet<Work>,
    /// The catalog text last published (or found unchanged).
    published: Option<String>,
    failures: u32,
    next_reconcile: Instant,
}

impl Worker {
    fn new(options: Options, shared: Arc<Shared>) -> Worker {
        let next_reconcile = Instant::now() + options.reconcile;
        Worker {
            options,
            shared,
            account: None,
            pending: BTreeSet::from([Work::Everything]),
            published: None,
            failures: 0,
            next_reconcile,
        }
    }

    fn backoff(&self) -> Duration {
        Duration::from_millis(250)
            .saturating_mul(1 << self.failures.min(8))
            .min(MAX_BACKOFF)
    }

    /// Waits up to `wait` for work; then gathers whatever else arrives within the coalescing
    /// window. Returns false when the queue is closed.
    fn gather(&mut self, rx: &Receiver<Work>, wait: Duration) -> bool {
        match rx.recv_timeout(wait) {
            Ok(w) => {
                self.pending.insert(w);
                let until = Instant::now() + self.options.coalesce;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(w) => {
                            self.pending.insert(w);
                        }
                        Err(RecvTimeoutError::Timeout) => return true,
                        Err(RecvTimeoutError::Disconnected) => return false,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    fn run(mut self, rx: Receiver<Work>) {
        loop {
            let wait = if self.failures > 0 {
                self.backoff()
            } else if self.pending.is_empty() {
                self.next_reconcile
                    .saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if !self.gather(&rx, wait) {
                return;
            }
            if Instant::now() >= self.next_reconcile {
                self.pending.insert(Work::Everything);
                self.next_reconcile = Instant::now() + self.options.reconcile;
            }
            lock(&self.shared.status).pending = self.pending.len();
            if self.pending.is_empty() && self.failures == 0 {
                continue;
            }
            match self.step() {
                Ok(()) => {
                    self.failures = 0;
                    let mut s = lock(&self.shared.status);
                    s.pending = self.pending.len();
                    s.last_error = None;
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    log_error(&e);
                    let mut s = lock(&self.shared.status);
                    s.pending = self.pending.len();
                    s.last_error = Some(e);
                }
            }
        }
    }

    /// Does the pending work, then publishes when the catalog changed.
    fn step(&mut self) -> Result<(), String> {
        self.fetch().inspect_err(|_| {
            lock(&self.shared.status).fetch_failures += 1;
        })?;
        let Some(account) = &self.account else {
            return Ok(());
        };
        let base = match &self.options.base {
            Some(p) => Some((
                std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
                p.display().to_string(),
            )),
            None => None,
        };
        let text = match mapping::catalog_text(
            account,
            base.as_ref().map(|(b, n)| (b.as_slice(), n.as_str())),
        ) {
            Ok(t) => t,
            Err(e) => {
                // Not transient: wait for the next event or reconciliation instead of retrying.
                log_error(&e);
                lock(&self.shared.status).last_error = Some(e);
                return Ok(());
            }
        };
        if self.published.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let catalog = Catalog::from_json(text.as_bytes()).map_err(|e| e.to_string())?;
        if self.published.is_none() {
            // First publish of this process: a restart with nothing new adds no version.
            if let Some(version) = edge_answers_alike(&self.options.edge, &catalog) {
                self.published = Some(text);
                lock(&self.shared.status).version = Some(version);
                return crate::print_line(&json!({ "up_to_date": version }).to_string());
            }
        }
        let options = PublishOptions {
            keep: self.options.keep,
            ..PublishOptions::default()
        };
        let done = publish(&self.options.edge, &catalog, &options)
            .map_err(|e| format!("publishing to {}: {e}", self.options.edge.display()))?;
        self.published = Some(text);
        {
            let mut s = lock(&self.shared.status);
            s.publishes += 1;
            s.version = Some(done.manifest.version);
        }
        crate::print_line(
            &json!({
                "published": done.manifest.version,
                "delta_bytes": done.delta.as_ref().map(|d| d.bytes),
                "customers": catalog.customers().len(),
            })
            .to_string(),
        )
    }

    /// Brings the account up to date with the pending work, removing each item once done.
    fn fetch(&mut self) -> Result<(), String> {
        let client = &self.options.client;
        if self.account.is_none() || self.pending.contains(&Work::Everything) {
            let account = client.account().map_err(|e| e.to_string())?;
            self.account = Some(account);
            self.pending.clear();
            return Ok(());
        }
        let Some(account) = self.account.as_mut() else {
            return Ok(());
        };
        while let Some(work) = self.pending.first().cloned() {
            match &work {
                Work::Everything => unreachable!("handled above"),
                Work::Features => {
                    let features = client.features().map_err(|e| e.to_string())?;
                    account.features = features.into_iter().map(|f| (f.id.clone(), f)).collect();
                }
                Work::Product(id) => match client.product(id).map_err(|e| e.to_string())? {
                    Some(p) => {
                        account.products.insert(id.clone(), p);
                    }
                    None => {
                        account.products.remove(id);
                    }
                },
                Work::Customer(id) => {
                    let subs = client.subscriptions(Some(id)).map_err(|e| e.to_string())?;
                    account.set_customer_subscriptions(id, subs);
                }
                Work::CustomerProducts(id) => {
                    for p in account.customer_products(id) {
                        match client.product(&p).map_err(|e| e.to_string())? {
                            Some(product) => {
                                account.products.insert(p, product);
                            }
                            None => {
                                account.products.remove(&p);
                            }
                        }
                    }
                }
                Work::Subscription(id) => {
                    match client.subscription(id).map_err(|e| e.to_string())? {
                        Some(s) => {
                            account.subscriptions.insert(id.clone(), s);
                        }
                        None => {
                            account.subscriptions.remove(id);
                        }
                    }
                }
            }
            self.pending.remove(&work);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]
mod tests {
    use super::*;

    #[test]
    fn seen_ids_are_bounded_and_forget_the_oldest() {
        let mut seen = Seen::default();
        assert!(seen.insert("evt_0"));
        assert!(!seen.insert("evt_0"));
        for i in 1..SEEN_CAPACITY {
            assert!(seen.insert(&format!("evt_{i}")));
        }
        assert_eq!(seen.order.len(), SEEN_CAPACITY);
        assert!(seen.insert("evt_new"));
        assert_eq!(seen.ids.len(), SEEN_CAPACITY);
        assert!(seen.insert("evt_0"), "the oldest id was forgotten");
        assert!(!seen.insert("evt_new"));
    }
}
