//! `entitle`: build, check, diff, apply, dump, inspect and synthesize entitlement snapshots; publish
//! them to an edge directory, serve it, and watch a syncing engine.

mod serve;
mod stripe;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use entitle_core::edge::{publish, PublishOptions, DEFAULT_KEEP, MAX_KEEP};
use entitle_core::internal::{read_file, unix_now};
use entitle_core::snapshot::format::FileKind;
use entitle_core::{
    diff, dump, load_source, synth, BuildOptions, Catalog, Decision, Delta, Engine, Error, Limit,
    Snapshot, SyncConfig, View,
};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "entitle",
    version,
    about = "Embedded entitlement engine: compile catalogs to snapshots, check, diff and apply"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide one feature for one customer; prints one JSON object.
    Check {
        /// A catalog (JSON) or a snapshot, told apart by content.
        source: PathBuf,
        /// The customer id.
        customer: String,
        /// The feature key.
        feature: String,
        /// Unix seconds to evaluate at (default: now).
        #[arg(long, allow_hyphen_values = true)]
        at: Option<i64>,
        /// Current usage; adds "allowed" to the output.
        #[arg(long)]
        usage: Option<u64>,
        /// Amount requested on top of usage (default 1).
        #[arg(long, requires = "usage")]
        requested: Option<u64>,
    },
    /// Compile a catalog into a snapshot (deterministic: same input, same bytes).
    Build {
        /// The catalog JSON.
        catalog: PathBuf,
        /// Where to write the snapshot.
        #[arg(short, long)]
        output: PathBuf,
        /// The content version to stamp.
        #[arg(long, default_value_t = 1)]
        version: u64,
        /// Creation time to stamp (unix seconds); default $SOURCE_DATE_EPOCH, else 0.
        #[arg(long, allow_hyphen_values = true)]
        created_at: Option<i64>,
    },
    /// Compute the delta from one snapshot to another.
    Diff {
        /// The base snapshot.
        old: PathBuf,
        /// The target snapshot.
        new: PathBuf,
        /// Where to write the delta.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Apply a delta to the snapshot it was made for.
    Apply {
        /// The base snapshot.
        old: PathBuf,
        /// The delta.
        delta: PathBuf,
        /// Where to write the resulting snapshot.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a catalog that evaluates identically to a snapshot.
    Dump {
        /// The snapshot.
        snapshot: PathBuf,
    },
    /// Print a snapshot's or a delta's version, counts, sizes and checksum as JSON.
    Inspect {
        /// A snapshot or a delta.
        file: PathBuf,
    },
    /// Generate a deterministic, realistic test catalog.
    Synth {
        /// Number of customers.
        #[arg(long)]
        customers: u64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the catalog.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Publish a catalog as the next version of an edge directory (snapshot, delta, manifest).
    Publish {
        /// The catalog JSON (validated first: nothing is written when it is invalid).
        catalog: PathBuf,
        /// The edge directory (created when missing).
        #[arg(long)]
        edge: PathBuf,
        /// How many deltas the manifest keeps (at most 1000); clients further behind fetch the full
        /// snapshot.
        #[arg(long, default_value_t = DEFAULT_KEEP, value_parser = keep_arg)]
        keep: usize,
        /// Start a new lineage at version 1 (clients then fetch the full snapshot).
        #[arg(long)]
        new_lineage: bool,
        /// Seconds to wait while another publish of the same edge is in progress (one publisher at
        /// a time); then fail.
        #[arg(long, default_value_t = 60.0)]
        wait: f64,
    },
    /// Serve an edge directory over HTTP (GET/HEAD, ETag, long-poll) and the customer-state API.
    Serve(serve::Args),
    /// Run a syncing engine and print one JSON line at start and whenever the answer or the sync
    /// state changes.
    Watch {
        /// The edge's base URL.
        url: String,
        /// The customer id.
        customer: String,
        /// The feature key.
        feature: String,
        /// A file holding the bearer token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Where to keep the last good snapshot (warm start).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Seconds between manifest checks when the server does not long-poll.
        #[arg(long, default_value_t = 5.0)]
        poll: f64,
        /// Ask the server to long-poll for up to this many seconds (0: plain polling).
        #[arg(long, default_value_t = 0.0)]
        long_poll: f64,
        /// Seconds without a successful sync after which the state is "stale".
        #[arg(long, default_value_t = 120.0)]
        max_staleness: f64,
        /// Seconds per request (a long-poll adds its wait).
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        /// The largest snapshot or delta to download, in bytes (default 256 MiB).
        #[arg(long, default_value_t = entitle_core::DEFAULT_MAX_ARTIFACT_BYTES,
              value_parser = clap::value_parser!(u64).range(1..))]
        max_artifact_bytes: u64,
    },
    /// Build the catalog from a Stripe account and keep an edge current from its webhooks.
    Stripe {
        #[command(subcommand)]
        command: stripe::StripeCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("entitle: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Check {
            source,
            customer,
            feature,
            at,
            usage,
            requested,
        } => {
            let at = at.unwrap_or_else(unix_now);
            let bytes = read(&source)?;
            let decision = if FileKind::of(&bytes) == Some(FileKind::Snapshot) {
                View::from(snapshot(bytes, &source)?).check_at(&customer, &feature, at)
            } else {
                let catalog = Catalog::from_json(&bytes).map_err(|e| at_path(&source, e))?;
                catalog.check(&customer, &feature, at)
            };
            print_line(&decision_json(&decision, usage, requested.unwrap_or(1)))
        }
        Command::Build {
            catalog,
            output,
            version,
            created_at,
        } => {
            let created_at = match created_at {
                Some(t) => t,
                None => match std::env::var("SOURCE_DATE_EPOCH") {
                    Ok(v) => v
                        .parse()
                        .map_err(|_| format!("SOURCE_DATE_EPOCH is not a number: {v}"))?,
                    Err(_) => 0,
                },
            };
            let parsed = Catalog::from_json(&read(&catalog)?).map_err(|e| at_path(&catalog, e))?;
            let snap = Snapshot::build(
                &parsed,
                BuildOptions {
                    version,
                    created_at,
                },
            )
            .map_err(|e| e.to_string())?;
            write_atomic(&output, snap.as_bytes())
        }
        Command::Diff { old, new, output } => {
            let a = snapshot(read(&old)?, &old)?;
            let b = snapshot(read(&new)?, &new)?;
            let delta = diff(&a, &b).map_err(|e| e.to_string())?;
            write_atomic(&output, delta.as_bytes())
        }
        Command::Apply { old, delta, output } => {
            let base = snapshot(read(&old)?, &old)?;
            let d = Delta::from_bytes(read(&delta)?).map_err(|e| at_path(&delta, e))?;
            let view = View::from(base).apply(&d).map_err(|e| at_path(&delta, e))?;
            let result = view.compact().map_err(|e| at_path(&delta, e))?;
            write_atomic(&output, result.as_bytes())
        }
        Command::Dump { snapshot: path } => {
            let view = View::from(snapshot(read(&path)?, &path)?);
            let catalog = dump(&view).map_err(|e| at_path(&path, e))?;
            let text =
                serde_json::to_string_pretty(&catalog.to_json()).map_err(|e| e.to_string())?;
            print_line(&text)
        }
        Command::Inspect { file } => {
            let bytes = read(&file)?;
            let info = if FileKind::of(&bytes) == Some(FileKind::Delta) {
                let d = Delta::from_bytes(bytes).map_err(|e| at_path(&file, e))?;
                json!({
                    "kind": "delta",
                    "format_version": entitle_core::snapshot::format::DELTA_FORMAT_VERSION,
                    "base_version": d.base().0,
                    "base_checksum": format!("{:016x}", d.base().1),
                    "target_version": d.target().0,
                    "target_checksum": format!("{:016x}", d.target().1),
                    "target_created_at": d.target_created_at(),
                    "full": d.is_full(),
                    "changes": d.change_count(),
                    "bytes": d.as_bytes().len(),
                })
            } else {
                let s = snapshot(bytes, &file)?;
                let per_customer = if s.customer_count() > 0 {
                    json!(s.as_bytes().len() as f64 / s.customer_count() as f64)
                } else {
                    json!(null)
                };
                json!({
                    "kind": "snapshot",
                    "format_version": entitle_core::snapshot::format::SNAPSHOT_FORMAT_VERSION,
                    "version": s.version(),
                    "created_at": s.created_at(),
                    "checksum": format!("{:016x}", s.checksum()),
                    "features": s.feature_count(),
                    "customers": s.customer_count(),
                    "profiles": s.profile_count(),
                    "tables": s.table_count(),
                    "epochs": s.epoch_count(),
                    "customer_slots": s.slot_count(),
                    "bytes": s.as_bytes().len(),
                    "bytes_per_customer": per_customer,
                    "memory_bytes": s.heap_size(),
                })
            };
            let text = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
            print_line(&text)
        }
        Command::Synth {
            customers,
            seed,
            output,
        } => write_atomic(&output, synth::catalog_json(customers, seed).as_bytes()),
        Command::Publish {
            catalog,
            edge,
            keep,
            new_lineage,
            wait,
        } => {
            let parsed = Catalog::from_json(&read(&catalog)?).map_err(|e| at_path(&catalog, e))?;
            let options = PublishOptions {
                keep,
                new_lineage,
                created_at: None,
                lock_timeout: seconds(wait, "--wait")?,
            };
            let done = publish(&edge, &parsed, &options).map_err(|e| e.to_string())?;
            for note in &done.repaired {
                eprintln!("entitle: repaired the edge: {note}");
            }
            for note in &done.omitted {
                eprintln!("entitle: published without {note}");
            }
            let m = &done.manifest;
            let info = json!({
                "version": m.version,
                "lineage": m.lineage,
                "created_at": m.created_at,
                "snapshot": m.snapshot.path,
                "snapshot_bytes": m.snapshot.bytes,
                "delta": done.delta.as_ref().map(|d| &d.path),
                "delta_bytes": done.delta.as_ref().map(|d| d.bytes),
                "deltas_kept": m.deltas.len(),
                "subscriptions": m.subscriptions.as_ref().map(|s| &s.path),
                "removed": done.removed,
            });
            print_line(&info.to_string())
        }
        Command::Serve(args) => serve::run(args),
        Command::Watch {
            url,
            customer,
            feature,
            token_file,
            cache_dir,
            poll,
            long_poll,
            max_staleness,
            timeout,
            max_artifact_bytes,
        } => {
            let config = SyncConfig {
                url,
                token: token_file.map(|f| read_token(&f)).transpose()?,
                poll_interval: positive_seconds(poll, "--poll")?,
                request_timeout: positive_seconds(timeout, "--timeout")?,
                cache_dir,
                max_staleness: positive_seconds(max_staleness, "--max-staleness")?,
                // 0 means plain polling.
                long_poll: Some(seconds(long_poll, "--long-poll")?).filter(|d| !d.is_zero()),
                max_artifact_bytes,
                ..SyncConfig::default()
            };
            watch(config, &customer, &feature)
        }
        Command::Stripe { command } => stripe::run(command),
    }
}

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{flag}: {value} is not a number of seconds"))
}

/// A duration that must be above zero (as the Python package and the C ABI's non-default values
/// require): at least a millisecond.
fn positive_seconds(value: f64, flag: &str) -> Result<Duration, String> {
    let d = seconds(value, flag)?;
    if d < Duration::from_millis(1) {
        return Err(format!(
            "{flag}: {value} is not a number of seconds > 0 (at least 0.001)"
        ));
    }
    Ok(d)
}

fn keep_arg(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if n > MAX_KEEP {
        return Err(format!(
            "{n} is more than {MAX_KEEP}: a longer chain would not fit the manifest (1 MiB), and a \
             client that far behind is better served by the snapshot"
        ));
    }
    Ok(n)
}

/// Reads a bearer token: the file's content without surrounding whitespace.
fn read_token(path: &Path) -> Result<String, String> {
    let text =
        String::from_utf8(read(path)?).map_err(|_| at_path(path, "the token is not UTF-8"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(at_path(path, "the token file is empty"));
    }
    Ok(token.to_owned())
}

/// Prints what an application syncing from the edge sees: a line at start and at every change of
/// the answer or the sync state. Runs until SIGTERM or SIGINT, then closes the engine (which writes
/// the newest content to the cache directory) and exits successfully.
fn watch(config: SyncConfig, customer: &str, feature: &str) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let engine = Engine::connect(config).map_err(|e| e.to_string())?;
    let mut last: Option<(String, entitle_core::SyncState)> = None;
    while !stop.load(Ordering::Relaxed) {
        let decision = engine.check(customer, feature);
        let status = engine.status();
        let answer = decision_json(&decision, None, 1);
        let key = (answer, status.state);
        if last.as_ref() != Some(&key) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let mut line = key.0.trim_end_matches('}').to_owned();
            line.push_str(&format!(
                ", \"version\": {}, \"state\": \"{}\", \"data_age\": {}, \"time\": {now:.3}, \"last_error\": {}}}",
                status.version,
                status.state,
                status
                    .data_age
                    .map_or("null".to_owned(), |d| format!("{:.3}", d.as_secs_f64())),
                status
                    .last_error
                    .as_deref()
                    .map_or("null".to_owned(), |e| serde_json::Value::from(e).to_string()),
            ));
            print_line(&line)?;
            last = Some(key);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    engine.close();
    if let Some(e) = engine.status().cache_error {
        return Err(format!("stopped; the cache was not written: {e}"));
    }
    Ok(())
}

/// The `check` answer as SPEC section 3 prints it, keys in the documented order.
fn decision_json(d: &Decision, usage: Option<u64>, requested: u64) -> String {
    let feature_type = match d.feature_type() {
        Some(t) => format!("\"{}\"", t.as_str()),
        None => "null".to_string(),
    };
    let limit = match d.limit() {
        Some(Limit::Finite(n)) => n.to_string(),
        Some(Limit::Unlimited) => "\"unlimited\"".to_string(),
        None => "null".to_string(),
    };
    let mut out = format!(
        "{{\"feature_type\": {feature_type}, \"enabled\": {}, \"limit\": {limit}, \"reason\": \"{}\"",
        d.enabled(),
        d.reason.as_str()
    );
    if let Some(usage) = usage {
        out.push_str(&format!(", \"allowed\": {}", d.allows(usage, requested)));
    }
    out.push('}');
    out
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    read_file(path).map_err(|e| e.to_string())
}

fn at_path(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Loads a snapshot, or compiles a catalog when given one (so every command accepts both).
fn snapshot(bytes: Vec<u8>, path: &Path) -> Result<Snapshot, String> {
    load_source(bytes).map_err(|e: Error| at_path(path, e))
}

fn print_line(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| format!("writing output: {e}"))
}

/// Writes via a temporary file and a rename, so a failure never leaves a partial file behind, and
/// makes the rename durable.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    entitle_core::fs::write_file_atomic(path, bytes, None).map_err(|e| at_path(path, e))?;
    entitle_core::fs::sync_parent(path);
    Ok(())
}
