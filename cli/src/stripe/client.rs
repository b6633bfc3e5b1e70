//! A small blocking client for the parts of Stripe's API entitle reads: pagination, rate limits and
//! bounded retries, and the API version pinned in a header.
//!
//! The API key is sent in the `Authorization` header only; it is never part of an error message,
//! a log line or a `Debug` output.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::account::{self, Account, Product, Subscription};

/// The Stripe API version every request pins (`Stripe-Version`), so that Stripe's answers keep the
/// shape the mapping reads whatever the account's default version is.
pub const STRIPE_VERSION: &str = "2025-03-31.basil";
/// Stripe's API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// Objects per page (Stripe's maximum).
const PAGE_SIZE: &str = "100";
/// Expansion for one subscription: each item's price's product (four levels, Stripe's maximum).
const EXPAND_SUBSCRIPTION: &str = "items.data.price.product";

/// An API key; its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key read from a file or the environment (surrounding whitespace removed).
    ///
    /// # Errors
    /// When the key is empty or has characters a header cannot carry.
    pub fn new(text: &str) -> Result<ApiKey, String> {
        let key = text.trim();
        if key.is_empty() {
            return Err("the Stripe API key is empty".into());
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the Stripe API key has characters other than printable ASCII".into());
        }
        Ok(ApiKey(key.to_owned()))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// How failed requests are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Longest wait between two attempts (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// What one attempt ended with, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The server answered with this status; `retry_after` and `should_retry` are the
    /// `Retry-After` and `Stripe-Should-Retry` headers.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` (seconds), when sent.
        retry_after: Option<&'a str>,
        /// `Stripe-Should-Retry`, when sent.
        should_retry: Option<&'a str>,
    },
    /// No answer: connection refused, reset, timed out.
    Network,
}

/// How long to wait before attempt `attempt + 1` (attempts count from 1) after `outcome`, or `None`
/// to give up: success and client errors are final; 429, 409 (lock contention), 5xx and network
/// errors are retried while attempts remain, honouring `Retry-After` and Stripe-Should-Retry.
pub fn retry_delay(policy: &RetryPolicy, attempt: u32, outcome: Outcome<'_>) -> Option<Duration> {
    if attempt >= policy.attempts {
        return None;
    }
    let backoff = policy
        .base_delay
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(policy.max_delay);
    match outcome {
        Outcome::Network => Some(backoff),
        Outcome::Status {
            status,
            retry_after,
            should_retry,
        } => {
            let retryable = match should_retry {
                Some("true") => true,
                Some("false") => false,
                _ => status == 429 || status == 409 || (500..600).contains(&status),
            };
            if !retryable || (200..300).contains(&status) {
                return None;
            }
            let asked = retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(policy.max_delay));
            Some(asked.unwrap_or(backoff))
        }
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// Stripe answered with an error status (after retries, when it was retryable).
    Status {
        /// The path requested (no query, no key).
        path: String,
        /// HTTP status.
        status: u16,
        /// Stripe's `error.message`, when the body had one.
        message: Option<String>,
    },
    /// No answer after the retries.
    Network {
        /// The path requested.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An answer that is not what the API documents.
    Shape(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Status {
                path,
                status,
                message,
            } => {
                write!(f, "Stripe API {path}: HTTP {status}")?;
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            ApiError::Network { path, message } => write!(f, "Stripe API {path}: {message}"),
            ApiError::Shape(m) => write!(f, "Stripe API: {m}"),
        }
    }
}

impl std::error::Error for ApiError {}

enum Attempt {
    Done(Result<Option<Value>, ApiError>),
    Failed {
        error: ApiError,
        status: Option<u16>,
        retry_after: Option<String>,
        should_retry: Option<String>,
    },
}

/// A blocking Stripe API client.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    key: ApiKey,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes a query component (ids are plain, but nothing is trusted).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client for the API at `base` (e.g. [`DEFAULT_API_BASE`], or stripe-mock's address).
    pub fn new(base: &str, key: ApiKey, retry: RetryPolicy, timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .user_agent(concat!("entitle/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            base: base.trim_end_matches('/').to_owned(),
            key,
            retry,
        }
    }

    /// GETs `path` with `query`; `Ok(None)` for 404 (a deleted or unknown object). Retries as
    /// [`retry_delay`] says.
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Value>, ApiError> {
        let mut url = format!("{}{path}", self.base);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
        }
        let mut attempt = 1;
        loop {
            let (failure, delay) = match self.attempt(&url, path) {
                Attempt::Done(result) => return result,
                Attempt::Failed {
                    error,
                    status,
                    retry_after,
                    should_retry,
                } => {
                    let outcome = match status {
                        None => Outcome::Network,
                        Some(status) => Outcome::Status {
                            status,
                            retry_after: retry_after.as_deref(),
                            should_retry: should_retry.as_deref(),
                        },
                    };
                    let delay = retry_delay(&self.retry, attempt, outcome);
                    (error, delay)
                }
            };
            match delay {
                Some(wait) => {
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                None => return Err(failure),
            }
        }
    }

    fn attempt(&self, url: &str, path: &str) -> Attempt {
        let network = |e: ureq::Error| Attempt::Failed {
            error: ApiError::Network {
                path: path.to_owned(),
                message: e.to_string(),
            },
            status: None,
            retry_after: None,
            should_retry: None,
        };
        let mut resp = match self
            .agent
            .get(url)
            .header("authorization", format!("Bearer {}", self.key.0))
            .header("stripe-version", STRIPE_VERSION)
            .call()
        {
            Ok(r) => r,
            Err(e) => return network(e),
        };
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header("retry-after");
        let should_retry = header("stripe-should-retry");
        let body = match resp.body_mut().with_config().limit(64 << 20).read_to_vec() {
            Ok(b) => b,
            Err(e) => return network(e),
        };
        match status {
            200 => Attempt::Done(
                serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|e| ApiError::Shape(format!("{path}: the answer is not JSON: {e}"))),
            ),
            404 => Attempt::Done(Ok(None)),
            _ => Attempt::Failed {
                error: ApiError::Status {
                    path: path.to_owned(),
                    status,
                    // Some servers echo the Authorization header in their message.
                    message: serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                        .map(|m| m.replace(&self.key.0, "[redacted]")),
                },
                status: Some(status),
                retry_after,
                should_retry,
            },
        }
    }

    /// Every object of a list endpoint, page by page (`has_more` / `starting_after`).
    fn list(&self, path: &str, query: &[(&str, &str)]) -> Result<Vec<Value>, ApiError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", PAGE_SIZE));
            if let Some(a) = &after {
                q.push(("starting_after", a));
            }
            let page = self.get(path, &q)?.ok_or_else(|| ApiError::Status {
                path: path.to_owned(),
                status: 404,
                message: None,
            })?;
            let data = page["data"]
                .as_array()
                .ok_or_else(|| ApiError::Shape(format!("{path}: a list without data")))?;
            all.extend(data.iter().cloned());
            if page["has_more"].as_bool() != Some(true) {
                return Ok(all);
            }
            let last = data
                .last()
                .and_then(|o| o["id"].as_str())
                .ok_or_else(|| ApiError::Shape(format!("{path}: has_more on a page without ids")))?
                .to_owned();
            if after.as_deref() == Some(last.as_str()) {
                return Err(ApiError::Shape(format!(
                    "{path}: pagination does not advance past {last}"
                )));
            }
            after = Some(last);
        }
    }

    /// The account's active features.
    ///
    /// # Errors
    /// [`ApiError`] when the API fails or answers in an unknown shape.
    pub fn features(&self) -> Result<Vec<account::Feature>, ApiError> {
        self.list("/v1/entitlements/features", &[])?
            .iter()
            .map(|v| account::parse_feature(v).map_err(ApiError::Shape))
            .filter(|f| f.as_ref().map_or(true, |f| f.active))
            .collect()
    }

    /// The features attached to product `id`: the lookup keys of the active ones.
    fn product_features(&self, id: &str) -> Result<BTreeSet<String>, ApiError> {
        let path = format!("/v1/products/{}/features", encode(id));
        let mut keys = BTreeSet::new();
        for v in self.list(&path, &[])? {
            let pf = account::parse_product_feature(&v).map_err(ApiError::Shape)?;
            if pf.entitlement_feature.active {
                keys.insert(pf.entitlement_feature.lookup_key);
            }
        }
        Ok(keys)
    }

    /// Product `id` with its features; `None` when it no longer exists.
    ///
    /// # Errors
    /// [`ApiError`] when the API fails.
    pub fn product(&self, id: &str) -> Result<Option<Product>, ApiError> {
        let path = format!("/v1/products/{}", encode(id));
        let Some(v) = self.get(&path, &[])? else {
            return Ok(None);
        };
        let raw = account::parse_product(&v).map_err(ApiError::Shape)?;
        if raw.deleted {
            return Ok(None);
        }
        Ok(Some(Product {
            features: self.product_features(&raw.id)?,
            id: raw.id,
            metadata: raw.metadata,
        }))
    }

    /// Every product (active and archived) with its features.
    ///
    /// # Errors
    /// [`ApiError`] when the API fails.
    pub fn products(&self) -> Result<Vec<Product>, ApiError> {
        let mut out = Vec::new();
        for v in self.list("/v1/products", &[])? {
            let raw = account::parse_product(&v).map_err(ApiError::Shape)?;
            out.push(Product {
                features: self.product_features(&raw.id)?,
                id: raw.id,
                metadata: raw.metadata,
            });
        }
        Ok(out)
    }

    /// Every subscription, whatever its status, or only `customer`'s.
    ///
    /// # Errors
    /// [`ApiError`] when the API fails.
    pub fn subscriptions(&self, customer: Option<&str>) -> Result<Vec<Subscription>, ApiError> {
        let mut query = vec![("status", "all")];
        if let Some(c) = customer {
            query.push(("customer", c));
        }
        self.list("/v1/subscriptions", &query)?
            .iter()
            .map(|v| account::parse_subscription(v).map_err(ApiError::Shape))
            .collect()
    }

    /// Subscription `id` as it is now (its items' products expanded); `None` when unknown.
    ///
    /// # Errors
    /// [`ApiError`] when the API fails.
    pub fn subscription(&self, id: &str) -> Result<Option<Subscription>, ApiError> {
        let path = format!("/v1/subscriptions/{}", encode(id));
        match self.get(&path, &[("expand[]", EXPAND_SUBSCRIPTION)])? {
            None => Ok(None),
            Some(v) => account::parse_subscription(&v)
                .map(Some)
                .map_err(ApiError::Shape),
        }
    }

    /// The whole account: features, products with their features, every subscription.
    ///
    /// # Errors
    /// [`ApiError`] when the API fails.
    pub fn account(&self) -> Result<Account, ApiError> {
        let mut account = Account::default();
        for f in self.features()? {
            account.features.insert(f.id.clone(), f);
        }
        for p in self.products()? {
            account.products.insert(p.id.clone(), p);
        }
        for s in self.subscriptions(None)? {
            account.subscriptions.insert(s.id.clone(), s);
        }
        Ok(account)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_policy() {
        let p = RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        let status = |status, retry_after, should_retry| Outcome::Status {
            status,
            retry_after,
            should_retry,
        };
        let ms = Duration::from_millis;
        let cases: Vec<(u32, Outcome<'_>, Option<Duration>)> = vec![
            (1, status(200, None, None), None),
            (1, status(400, None, None), None),
            (1, status(401, None, None), None),
            (1, status(402, None, None), None),
            (1, status(429, None, None), Some(ms(100))),
            (2, status(429, None, None), Some(ms(200))),
            (3, status(429, None, None), Some(ms(400))),
            (4, status(429, None, None), None),
            (1, status(429, Some("1"), None), Some(ms(1000))),
            (1, status(429, Some(" 0 "), None), Some(ms(0))),
            (1, status(429, Some("3600"), None), Some(ms(2000))),
            (1, status(429, Some("soon"), None), Some(ms(100))),
            (1, status(409, None, None), Some(ms(100))),
            (1, status(500, None, None), Some(ms(100))),
            (1, status(503, None, None), Some(ms(100))),
            (1, status(500, None, Some("false")), None),
            (1, status(400, None, Some("true")), Some(ms(100))),
            (1, Outcome::Network, Some(ms(100))),
            (3, Outcome::Network, Some(ms(400))),
            (4, Outcome::Network, None),
        ];
        for (attempt, outcome, want) in cases {
            assert_eq!(
                retry_delay(&p, attempt, outcome),
                want,
                "{attempt} {outcome:?}"
            );
        }
        let long = RetryPolicy { attempts: 40, ..p };
        assert_eq!(retry_delay(&long, 30, Outcome::Network), Some(ms(2000)));
    }

    #[test]
    fn keys_never_show() {
        let key = ApiKey::new(" sk_test_secret\n").unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        let client = Client::new(
            "http://127.0.0.1:1",
            key,
            RetryPolicy::default(),
            Duration::from_secs(1),
        );
        assert!(!format!("{client:?}").contains("secret"));
        assert!(ApiKey::new("  ").is_err());
        assert!(ApiKey::new("sk test").is_err());
    }

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode("expand[]"), "expand%5B%5D");
        assert_eq!(encode("sub_1AB-c.~"), "sub_1AB-c.~");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
