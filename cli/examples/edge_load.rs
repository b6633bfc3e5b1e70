//! Load client for `scripts/bench-serve.sh`: holds many manifest requests against an edge server,
//! switches the manifest by a rename, and measures how long until every client has the new one.
//!
//! ```text
//! edge_load ADDR CLIENTS NEW_MANIFEST EDGE_MANIFEST MODE [INTERVAL_SECONDS] [SERVER_PID]
//! ```
//! - `MODE` `longpoll`: every client sends `GET /manifest.json?wait=25` with the current ETag and
//!   waits; once the server reports them all held (`entitle_edge_long_polls` in `/metrics`), the
//!   server's resident memory is read again (`SERVER_PID`) and the manifest is switched.
//! - `MODE` `poll`: every client polls `GET /manifest.json` with `If-None-Match` on a keep-alive
//!   connection every `INTERVAL_SECONDS` (±20 %, as entitle's sync does), starting at random phases;
//!   after two intervals the manifest is switched.
//!
//! The switch is `rename(NEW_MANIFEST, EDGE_MANIFEST)`; the time of each client is from just before
//! the rename to the end of its `200` response. Prints one JSON object. Every wait is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SetOnce};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One response: status, ETag and when it was complete.
struct Answer {
    status: u16,
    etag: Option<String>,
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from `s`, keeping leftovers in `buf`.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Answer, Error> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head.split(' ').nth(1).ok_or("no status")?.parse()?;
            let mut len = 0usize;
            let mut etag = None;
            for line in head.split("\r\n").skip(1) {
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse()?;
                    } else if k.eq_ignore_ascii_case("etag") {
                        etag = Some(v.trim().to_owned());
                    }
                }
            }
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err("closed mid-body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + len);
            return Ok(Answer { status, etag });
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn get(addr: &str, target: &str) -> Result<(Answer, String), Error> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut buf = raw;
    let answer = read_response_from(&mut buf)?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((answer, body))
}

fn read_response_from(buf: &mut [u8]) -> Result<Answer, Error> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no head")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.split(' ').nth(1).ok_or("no status")?.parse()?;
    let etag = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.trim().to_owned());
    Ok(Answer { status, etag })
}

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat` (100 ticks a second).
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .parse()
        .ok()
}

/// A tiny deterministic generator for poll phases and jitter.
fn jitter(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

/// Long-poll client: holds one request, returns when its response is complete. The connect slot
/// is given back once the request is sent.
async fn long_poll(
    addr: Arc<str>,
    etag: Arc<str>,
    held: Arc<AtomicUsize>,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Answer, Error> {
    let mut s = TcpStream::connect(&*addr).await?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET /manifest.json?wait=25 HTTP/1.1\r\nHost: {addr}\r\nIf-None-Match: {etag}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    drop(slot);
    held.fetch_add(1, Ordering::Relaxed);
    let mut buf = Vec::with_capacity(1024);
    read_response(&mut s, &mut buf).await
}

/// Polling client: polls until it sees an ETag other than `etag` after the switch.
async fn poller(
    addr: Arc<str>,
    etag: Arc<str>,
    interval: Duration,
    mut seed: u64,
    switched: Arc<SetOnce<Instant>>,
    give_up: Instant,
) -> Result<Option<Instant>, Error> {
    tokio::time::sleep(interval.mul_f64(jitter(&mut seed))).await;
    let mut s = TcpStream::connect(&*addr).await?;
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    loop {
        let req =
            format!("GET /manifest.json HTTP/1.1\r\nHost: {addr}\r\nIf-None-Match: {etag}\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let a = read_response(&mut s, &mut buf).await?;
        if a.status == 200 && a.etag.as_deref() != Some(&*etag) && switched.get().is_some() {
            return Ok(Some(Instant::now()));
        }
        if Instant::now() > give_up {
            return Ok(None);
        }
        tokio::time::sleep(interval.mul_f64(0.8 + 0.4 * jitter(&mut seed))).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        return Err(
            "usage: edge_load ADDR CLIENTS NEW_MANIFEST EDGE_MANIFEST MODE [INTERVAL] [PID]".into(),
        );
    }
    let addr: Arc<str> = Arc::from(args[1].as_str());
    let clients: usize = args[2].parse()?;
    let (new_manifest, edge_manifest, mode) = (&args[3], &args[4], args[5].as_str());
    let interval = Duration::from_secs_f64(args.get(6).map_or(Ok(5.0), |s| s.parse())?);
    let pid: Option<u32> = args.get(7).map(|s| s.parse()).transpose()?;

    let (first, _) = get(&addr, "/manifest.json").await?;
    let etag: Arc<str> = Arc::from(first.etag.ok_or("the manifest has no ETag")?.as_str());
    let rss_idle = rss_kib(pid);
    let started = Instant::now();
    let connecting = Arc::new(Semaphore::new(256));
    let held = Arc::new(AtomicUsize::new(0));
    let switched = Arc::new(SetOnce::new());
    let give_up = Instant::now() + interval * 3 + Duration::from_secs(20);
    let mut tasks = Vec::with_capacity(clients);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..clients {
        let (addr, etag, held) = (Arc::clone(&addr), Arc::clone(&etag), Arc::clone(&held));
        let permit = Arc::clone(&connecting).acquire_owned().await?;
        let client_seed = {
            jitter(&mut seed);
            seed
        };
        let switched = Arc::clone(&switched);
        let mode = mode.to_owned();
        tasks.push(tokio::spawn(async move {
            if mode == "longpoll" {
                long_poll(addr, etag, held, permit)
                    .await
                    .map(|a| (a.status == 200).then(Instant::now))
            } else {
                drop(permit);
                poller(addr, etag, interval, client_seed, switched, give_up).await
            }
        }));
    }
    let connect_secs = started.elapsed().as_secs_f64();

    let mut server_held = 0.0;
    if mode == "longpoll" {
        // Every request held by the server (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((_, body)) = get(&addr, "/metrics").await {
                server_held = metric(&body, "entitle_edge_long_polls").unwrap_or(0.0);
                if server_held >= clients as f64 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        tokio::time::sleep(interval * 2).await;
    }
    let rss_held = rss_kib(pid);

    let (server_cpu0, client_cpu0) = (cpu_seconds(pid), cpu_seconds(None));
    let t0 = Instant::now();
    std::fs::rename(new_manifest, edge_manifest)?;
    let _ = switched.set(t0);
    let mut latencies = Vec::with_capacity(clients);
    let mut failed = 0usize;
    let mut errors = std::collections::BTreeMap::new();
    for t in tasks {
        // Bounded from the switch (the connect phase may take long on a busy machine).
        let deadline = give_up.max(t0 + interval * 2 + Duration::from_secs(20));
        match tokio::time::timeout_at(deadline.into(), t).await {
            Ok(Ok(Ok(Some(done)))) => {
                latencies.push(done.saturating_duration_since(t0).as_secs_f64())
            }
            other => {
                failed += 1;
                let why = match other {
                    Ok(Ok(Ok(_))) => "no change seen in time (or not a 200)".to_owned(),
                    Ok(Ok(Err(e))) => e.to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_owned(),
                };
                *errors.entry(why).or_insert(0usize) += 1;
            }
        }
    }
    let server_cpu = pid
        .and(server_cpu0)
        .zip(cpu_seconds(pid))
        .map(|(a, b)| b - a);
    let client_cpu = client_cpu0.zip(cpu_seconds(None)).map(|(a, b)| b - a);
    latencies.sort_by(f64::total_cmp);
    let per_conn = match (rss_idle, rss_held) {
        (Some(a), Some(b)) if clients > 0 => {
            Some((b.saturating_sub(a) as f64 * 1024.0) / clients as f64)
        }
        _ => None,
    };
    println!(
        "{{\"mode\": \"{mode}\", \"clients\": {clients}, \"held_by_server\": {server_held}, \
         \"answered\": {}, \"failed\": {failed}, \"connect_s\": {connect_secs:.2}, \
         \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"max_ms\": {:.1}, \
         \"server_rss_idle_kib\": {}, \"server_rss_held_kib\": {}, \"bytes_per_connection\": {}, \
         \"server_cpu_s\": {}, \"client_cpu_s\": {}, \"errors\": {:?}}}",
        latencies.len(),
        percentile(&latencies, 0.5) * 1e3,
        percentile(&latencies, 0.99) * 1e3,
        latencies.last().copied().unwrap_or(f64::NAN) * 1e3,
        rss_idle.map_or("null".into(), |v| v.to_string()),
        rss_held.map_or("null".into(), |v| v.to_string()),
        per_conn.map_or("null".into(), |v| format!("{v:.0}")),
        server_cpu.map_or("null".into(), |v| format!("{v:.2}")),
        client_cpu.map_or("null".into(), |v| format!("{v:.2}")),
        errors,
    );
    Ok(())
}
