//! `entitle stripe`: build the catalog from a Stripe account (`pull`) and keep an edge directory
//! current from Stripe's webhooks (`webhook`). The mapping is in docs/stripe.md.
//!
//! - [`account`]: the Stripe objects read, as the API returns them.
//! - [`mapping`]: account (+ the user's catalog file) → catalog JSON; pure.
//! - [`client`]: the API client (pagination, retries, pinned version).
//! - [`signature`]: `Stripe-Signature` verification.
//! - [`events`]: which event asks to refetch what; pure.
//! - [`webhook`]: the HTTP endpoint and the worker that refetches and publishes.

pub mod account;
pub mod client;
pub mod events;
pub mod mapping;
pub mod signature;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use entitle_core::edge::DEFAULT_KEEP;

use client::{ApiKey, Client, RetryPolicy, DEFAULT_API_BASE};

/// Environment variable read for the API key when `--api-key-file` is not given.
pub const API_KEY_ENV: &str = "STRIPE_API_KEY";
/// Environment variable read for the webhook secret when `--webhook-secret-file` is not given.
pub const WEBHOOK_SECRET_ENV: &str = "STRIPE_WEBHOOK_SECRET";

/// `entitle stripe ...`
#[derive(Subcommand)]
pub enum StripeCommand {
    /// Pull the whole account and write the catalog it makes (deterministic: the same account and
    /// base file give the same bytes); prints one JSON line counting what Stripe returned.
    Pull {
        #[command(flatten)]
        api: ApiArgs,
        /// Your own catalog file to merge in (features, products, customers' overrides).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Where to write the catalog.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Receive Stripe's webhook events and publish each resulting change to an edge directory.
    Webhook {
        #[command(flatten)]
        api: ApiArgs,
        /// The address to listen on (port 0 picks a free port; the first output line names it).
        #[arg(long)]
        listen: String,
        /// The edge directory to publish to.
        #[arg(long)]
        edge: PathBuf,
        /// Your own catalog file to merge in (re-read at every publish).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// A file holding the endpoint's signing secret (`whsec_...`); default: the
        /// STRIPE_WEBHOOK_SECRET environment variable.
        #[arg(long)]
        webhook_secret_file: Option<PathBuf>,
        /// Milliseconds to gather a burst of events into one publish.
        #[arg(long, default_value_t = 200)]
        coalesce_ms: u64,
        /// Seconds between full reconciliation pulls (a missed event cannot stay wrong longer).
        #[arg(long, default_value_t = 900)]
        reconcile_secs: u64,
        /// How many deltas the edge's manifest keeps.
        #[arg(long, default_value_t = DEFAULT_KEEP)]
        keep: usize,
    },
}

/// How to reach the Stripe API.
#[derive(Args)]
pub struct ApiArgs {
    /// The API's base URL (stripe-mock or a test server for local runs).
    #[arg(long, default_value = DEFAULT_API_BASE)]
    api_base: String,
    /// A file holding the secret API key (a restricted key with read access suffices); default:
    /// the STRIPE_API_KEY environment variable. Never on the command line.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Seconds per API request.
    #[arg(long, default_value_t = 30)]
    api_timeout: u64,
}

impl ApiArgs {
    fn client(&self) -> Result<Client, String> {
        let key = secret(self.api_key_file.as_deref(), API_KEY_ENV, "API key")?;
        Ok(Client::new(
            &self.api_base,
            ApiKey::new(&key)?,
            RetryPolicy::default(),
            Duration::from_secs(self.api_timeout.max(1)),
        ))
    }
}

/// A secret from `file`, else from the environment variable `env`.
fn secret(file: Option<&Path>, env: &str, what: &str) -> Result<String, String> {
    match file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{}: the {what} is not UTF-8", path.display()))?;
            if text.trim().is_empty() {
                return Err(format!("{}: the {what} file is empty", path.display()));
            }
            Ok(text.trim().to_owned())
        }
        None => match std::env::var(env) {
            Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
            _ => Err(format!(
                "no Stripe {what}: set {env} or pass a file holding it"
            )),
        },
    }
}

fn read_base(path: Option<&Path>) -> Result<Option<(Vec<u8>, String)>, String> {
    path.map(|p| {
        std::fs::read(p)
            .map(|b| (b, p.display().to_string()))
            .map_err(|e| format!("{}: {e}", p.display()))
    })
    .transpose()
}

/// Runs `entitle stripe ...`.
///
/// # Errors
/// A message for the user when the command fails.
pub fn run(command: StripeCommand) -> Result<(), String> {
    match command {
        StripeCommand::Pull {
            api,
            catalog,
            output,
        } => {
            let client = api.client()?;
            let base = read_base(catalog.as_deref())?;
            let account = client.account().map_err(|e| e.to_string())?;
            let text = mapping::catalog_text(
                &account,
                base.as_ref().map(|(b, n)| (b.as_slice(), n.as_str())),
            )?;
            crate::write_atomic(&output, text.as_bytes())?;
            let summary = serde_json::json!({
                "features": account.features.len(),
                "products": account.products.len(),
                "subscriptions": account.subscriptions.len(),
                "bytes": text.len(),
            });
            crate::print_line(&summary.to_string())
        }
        StripeCommand::Webhook {
            api,
            listen,
            edge,
            catalog,
            webhook_secret_file,
            coalesce_ms,
            reconcile_secs,
            keep,
        } => {
            let client = api.client()?;
            let secret = secret(
                webhook_secret_file.as_deref(),
                WEBHOOK_SECRET_ENV,
                "webhook signing secret",
            )?;
            webhook::run(webhook::Options {
                client,
                listen,
                edge,
                base: catalog,
                secret: secret.into_bytes(),
                coalesce: Duration::from_millis(coalesce_ms),
                reconcile: Duration::from_secs(reconcile_secs.max(1)),
                keep,
            })
        }
    }
}
