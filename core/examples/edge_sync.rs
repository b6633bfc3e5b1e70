//! Measures edge sync and prints a Markdown report: publish-to-visible latency with long-poll and
//! with plain polling, the cost of a sync round that finds nothing new, and warm start from the
//! cache file for a large catalog. The edge is served by `entitle serve` on loopback.
//!
//! ```sh
//! cargo build --release -p entitle-cli
//! cargo run --release -p entitle-core --features sync --example edge_sync -- \
//!     target/release/entitle [CUSTOMERS]
//! ```

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use entitle_core::edge::{publish, PublishOptions};
use entitle_core::internal::{EdgeClient, Outcome};
use entitle_core::{synth, Catalog, Engine, Store, SyncConfig};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(entitle: &Path, dir: &Path) -> Result<(Server, String)> {
    let mut child = Command::new(entitle)
        .arg("serve")
        .arg(dir)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .rsplit(" at ")
        .next()
        .ok_or("no address")?
        .to_owned();
    Ok((server, url))
}

/// The example catalog with `cus_free_ada`'s `projects` overridden to `n`.
fn example_with(base: &serde_json::Value, n: u64) -> Result<Catalog> {
    let mut json = base.clone();
    let customers = json["customers"]
        .as_array_mut()
        .ok_or("example has customers")?;
    for c in customers.iter_mut() {
        if c["id"] == "cus_free_ada" {
            c["overrides"] = serde_json::json!({ "projects": n });
        }
    }
    Ok(Catalog::from_json(json.to_string().as_bytes())?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// A cheap pseudo-random pause in `[0, max)`, so that publishes do not line up with polls.
fn pause(i: u64, max: Duration) -> Duration {
    let x = entitle_core::hash::xxh64(&i.to_le_bytes(), 7);
    max.mul_f64((x >> 11) as f64 / (1u64 << 53) as f64)
}

/// Publishes `rounds` changes and measures, for each, the time from the start of `publish` until
/// the engine serves the new version (a long-polling engine often has it before `publish` returns:
/// the manifest switch comes before the final directory fsync and cleanup).
fn propagation(
    dir: &Path,
    base: &serde_json::Value,
    engine: &Engine,
    rounds: u64,
    spread: Duration,
    start: u64,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut visible = Vec::new();
    let mut publishing = Vec::new();
    for i in 0..rounds {
        std::thread::sleep(pause(start + i, spread));
        let catalog = example_with(base, 1000 + start + i)?;
        let t = Instant::now();
        let done = publish(dir, &catalog, &PublishOptions::default())?;
        publishing.push(t.elapsed());
        let target = done.manifest.version;
        while engine.version() < target {
            if t.elapsed() > Duration::from_secs(60) {
                return Err(format!("version {target} not visible after 60 s").into());
            }
            std::hint::spin_loop();
            std::thread::yield_now();
        }
        visible.push(t.elapsed());
    }
    Ok((visible, publishing))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let entitle = PathBuf::from(
        args.next()
            .ok_or("usage: edge_sync ENTITLE_BINARY [CUSTOMERS]")?,
    );
    let big: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let root = std::env::temp_dir().join(format!("entitle-measure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let example_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(example_path)?)?;

    // --- Propagation on the example catalog.
    let small = root.join("small");
    publish(&small, &example_with(&base, 0)?, &PublishOptions::default())?;
    let (_server, url) = serve(&entitle, &small)?;
    let rounds = 20;
    let long_poll = Engine::connect(SyncConfig {
        long_poll: Some(Duration::from_secs(25)),
        poll_interval: Duration::from_secs(60),
        ..SyncConfig::new(&url)
    })?;
    if !long_poll.wait_ready(Duration::from_secs(10)) {
        return Err("long-poll engine not ready".into());
    }
    let (lp, publish_small) = propagation(
        &small,
        &base,
        &long_poll,
        rounds,
        Duration::from_millis(200),
        0,
    )?;
    long_poll.close();
    let poll_every = Duration::from_secs(1);
    let polling = Engine::connect(SyncConfig {
        poll_interval: poll_every,
        ..SyncConfig::new(&url)
    })?;
    if !polling.wait_ready(Duration::from_secs(10)) {
        return Err("polling engine not ready".into());
    }
    let (pp, _) = propagation(&small, &base, &polling, rounds, poll_every, 100)?;
    polling.close();

    // --- A round that finds nothing new: a conditional GET answered 304.
    let store = Store::new(entitle_core::Snapshot::build(
        &Catalog::from_json(br#"{"features": []}"#)?,
        Default::default(),
    )?);
    let mut client = EdgeClient::new(&SyncConfig::new(&url))?;
    let first = client.round(&store)?;
    if !matches!(first.outcome, Outcome::Updated { .. }) {
        return Err("the first round should fetch the edge".into());
    }
    let mut idle = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let r = client.round(&store)?;
        idle.push(t.elapsed());
        if r.outcome != Outcome::Unchanged {
            return Err("expected no change".into());
        }
    }

    // --- Warm start from the cache file for a large catalog.
    let t = Instant::now();
    let json = synth::catalog_json(big, 1);
    let catalog = Catalog::from_json(json.as_bytes())?;
    drop(json);
    let synth_time = t.elapsed();
    let large = root.join("large");
    let t = Instant::now();
    let first = publish(&large, &catalog, &PublishOptions::default())?;
    let publish_large = t.elapsed();
    let (large_server, large_url) = serve(&entitle, &large)?;
    let cache = root.join("cache");
    let t = Instant::now();
    let cold = Engine::connect(SyncConfig {
        cache_dir: Some(cache.clone()),
        long_poll: Some(Duration::from_secs(25)),
        ..SyncConfig::new(&large_url)
    })?;
    if !cold.wait_ready(Duration::from_secs(120)) {
        return Err("large engine not ready".into());
    }
    let cold_sync = t.elapsed();
    let cache_written = Instant::now();
    while std::fs::read_dir(&cache).map_or(0, |d| d.count()) < 2 {
        if cache_written.elapsed() > Duration::from_secs(60) {
            return Err("cache not written".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // One customer changes: the delta and its propagation at this size.
    let mut changed = catalog.clone();
    drop(catalog);
    let (features, products, mut customers) = (
        changed.features().to_vec(),
        changed.products().to_vec(),
        changed.customers().to_vec(),
    );
    customers[0].overrides.clear();
    customers[0].subscriptions.clear();
    changed = Catalog::new(features, products, customers)?;
    let t = Instant::now();
    let second = publish(&large, &changed, &PublishOptions::default())?;
    let publish_large_delta = t.elapsed();
    while cold.version() < second.manifest.version {
        if t.elapsed() > Duration::from_secs(60) {
            return Err("large delta not visible".into());
        }
        std::thread::yield_now();
    }
    let large_visible = t.elapsed();
    cold.close();
    drop(cold);
    let snapshot_bytes = first.manifest.snapshot.bytes;
    let delta_bytes = second.delta.as_ref().map_or(0, |d| d.bytes);

    // The edge goes down; the cache (named after the edge's URL) still serves.
    drop(large_server);
    let mut warm = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let engine = Engine::connect(SyncConfig {
            cache_dir: Some(cache.clone()),
            ..SyncConfig::new(&large_url)
        })?;
        let ready = engine.wait_ready(Duration::ZERO);
        let elapsed = t.elapsed();
        if !ready || !engine.status().warm_start {
            return Err(
                format!("warm start did not serve the cache: {:?}", engine.status()).into(),
            );
        }
        warm.push(elapsed);
    }
    let _ = std::fs::remove_dir_all(&root);

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| publish → visible (from the start of `publish`), long-poll (`entitle serve`), example catalog, {rounds} publishes | median {}, p90 {}, max {} |",
        ms(median(lp.clone())),
        ms(percentile(lp.clone(), 0.9)),
        ms(percentile(lp, 1.0))
    );
    println!(
        "| publish → visible (from the start of `publish`), plain polling every {} s (±20 % jitter), {rounds} publishes | median {}, p90 {}, max {} |",
        poll_every.as_secs(),
        ms(median(pp.clone())),
        ms(percentile(pp.clone(), 0.9)),
        ms(percentile(pp, 1.0))
    );
    println!(
        "| `publish` itself (build, delta, fsync'd writes, manifest switch, cleanup), example catalog | median {} |",
        ms(median(publish_small))
    );
    println!(
        "| sync round that finds nothing new (conditional GET → 304, keep-alive), 500 rounds | median {}, p90 {} |",
        us(median(idle.clone())),
        us(percentile(idle, 0.9))
    );
    println!(
        "| {big} customers: synth + parse / publish first version / snapshot size | {} / {} / {:.1} MB |",
        ms(synth_time),
        ms(publish_large),
        snapshot_bytes as f64 / 1e6
    );
    println!(
        "| {big} customers: cold start, first sync from the edge (download, verify, swap) | {} |",
        ms(cold_sync)
    );
    println!(
        "| {big} customers: one customer changes: `publish` / delta size / publish start → visible (long-poll) | {} / {delta_bytes} bytes / {} |",
        ms(publish_large_delta),
        ms(large_visible)
    );
    println!(
        "| {big} customers: warm start from the cache file, edge down (`connect` → serving), 5 runs | median {}, max {} |",
        ms(median(warm.clone())),
        ms(percentile(warm, 1.0))
    );
    Ok(())
}
