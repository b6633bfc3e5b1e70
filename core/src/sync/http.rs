//! HTTP for the sync client: a ureq agent with the configured timeouts, redirects followed within
//! the edge's origin only, bodies bounded by what the manifest announces, and a resolver that
//! reuses a host's addresses for a while.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::edge::{LONG_POLL_HEADER, MAX_MANIFEST_BYTES};

use super::config::{SyncConfig, MIN_INTERVAL};
use super::error::SyncError;
use super::lock;

/// An HTTP client for one edge: GETs with the bearer token, redirects kept within the edge's origin.
pub(super) struct Http {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Http {
    /// A client for the edge at `base` (already checked: see `SyncConfig::edge_base`).
    pub(super) fn new(config: &SyncConfig, base: String) -> Http {
        Http {
            agent: agent_for(config),
            base,
            token: config.token.clone(),
        }
    }

    /// The edge's base URL, without a trailing slash.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// A handle that interrupts requests in flight and refuses new ones (`ureq::Agent::shutdown`).
    pub(super) fn shutdown_handle(&self) -> ureq::Agent {
        self.agent.clone()
    }

    /// GETs `url`, following up to [`MAX_REDIRECTS`] redirects within the edge's origin (the bearer
    /// token goes along); a redirect to another scheme, host or port is refused.
    pub(super) fn get(
        &self,
        url: &str,
        if_none_match: Option<&str>,
        timeout: Duration,
        limit: Limit,
    ) -> Result<Fetched, SyncError> {
        let started = Instant::now();
        let mut target = url.to_owned();
        let mut redirects = 0;
        let mut resp = loop {
            let transport = |e: ureq::Error| SyncError::Transport {
                url: url.to_owned(),
                message: match &e {
                    ureq::Error::Timeout(t) => format!("timed out ({t})"),
                    other => other.to_string(),
                },
                source: Some(Arc::new(e)),
            };
            let mut req = self.agent.get(&target);
            if let Some(t) = &self.token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            if let Some(tag) = if_none_match {
                req = req.header("if-none-match", tag);
            }
            let left = timeout.saturating_sub(started.elapsed()).max(MIN_INTERVAL);
            let resp = req
                .config()
                .timeout_global(Some(left))
                .build()
                .call()
                .map_err(transport)?;
            let status = resp.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                break resp;
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let next = resolve_location(&target, location);
            let refuse = |why: String| SyncError::Transport {
                url: url.to_owned(),
                message: why,
                source: None,
            };
            match next {
                Some(next) if same_origin(&next, &self.base) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(refuse(format!(
                            "more than {MAX_REDIRECTS} redirects (last to {next})"
                        )));
                    }
                    target = next;
                }
                Some(next) => {
                    return Err(refuse(format!(
                        "HTTP {status} redirects to {next}, outside the edge's origin: refused (an \
                         edge cannot send a client to another host)"
                    )))
                }
                None => {
                    return Err(refuse(format!(
                        "HTTP {status} with an unusable Location {location:?}"
                    )))
                }
            }
        };
        let transport = |e: ureq::Error| SyncError::Transport {
            url: url.to_owned(),
            message: match &e {
                ureq::Error::Timeout(t) => format!("timed out ({t})"),
                ureq::Error::BodyExceedsLimit(n) => match limit {
                    Limit::Manifest => {
                        format!("the manifest is larger than the {n} bytes a client accepts")
                    }
                    Limit::Announced(_) => {
                        format!("the body is larger than the {n} bytes the manifest announces")
                    }
                },
                other => other.to_string(),
            },
            source: Some(Arc::new(e)),
        };
        let long_poll = resp.headers().contains_key(LONG_POLL_HEADER);
        match resp.status().as_u16() {
            304 => Ok(Fetched {
                body: None,
                etag: None,
                long_poll,
            }),
            200 => {
                let etag = resp
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(limit.bytes())
                    .read_to_vec()
                    .map_err(transport)?;
                Ok(Fetched {
                    body: Some(body),
                    etag,
                    long_poll,
                })
            }
            status => Err(SyncError::Http {
                url: url.to_owned(),
                status,
            }),
        }
    }
}

/// A response: its body (`None` for 304 Not Modified), its ETag, and whether the server says it
/// supports long-polling.
pub(super) struct Fetched {
    pub(super) body: Option<Vec<u8>>,
    pub(super) etag: Option<String>,
    pub(super) long_poll: bool,
}

/// The most redirects followed for one request (all within the edge's origin).
const MAX_REDIRECTS: usize = 4;

/// What bounds a body, for the error that names it.
#[derive(Clone, Copy)]
pub(super) enum Limit {
    /// A manifest: [`MAX_MANIFEST_BYTES`].
    Manifest,
    /// An artifact: the size its manifest announces.
    Announced(u64),
}

impl Limit {
    fn bytes(self) -> u64 {
        match self {
            Limit::Manifest => MAX_MANIFEST_BYTES as u64,
            Limit::Announced(n) => n,
        }
    }
}

fn agent_for(config: &SyncConfig) -> ureq::Agent {
    let connect = Some(config.connect_timeout);
    let agent_config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(connect)
        .timeout_connect(connect)
        .timeout_global(Some(config.request_timeout))
        // Redirects are followed by EdgeClient::get, within the edge's origin only.
        .max_redirects(0)
        .user_agent(concat!("entitle/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        agent_config,
        ureq::unversioned::transport::DefaultConnector::default(),
        CachingResolver::default(),
    )
}

/// How long a host's resolved addresses are reused.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// Resolves each host at most once per [`RESOLVE_TTL`], and IP literals without a lookup.
///
/// ureq resolves before every request, even on a pooled connection, and with a timeout it does so
/// on a new thread: a thread and a lookup per poll, several milliseconds for a round that otherwise
/// costs a conditional GET on an open connection.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    cache: Mutex<
        Option<(
            String,
            Instant,
            ureq::unversioned::resolver::ResolvedSocketAddrs,
        )>,
    >,
}

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        if let Some(authority) = uri.authority() {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                let port = authority
                    .port_u16()
                    .unwrap_or(if uri.scheme_str() == Some("https") {
                        443
                    } else {
                        80
                    });
                let mut addrs = self.empty();
                addrs.push(std::net::SocketAddr::new(ip, port));
                return Ok(addrs);
            }
        }
        if let Some((k, at, addrs)) = &*lock(&self.cache) {
            if *k == key && at.elapsed() < RESOLVE_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *lock(&self.cache) = Some((key, Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// The absolute URL a `Location` header names, relative to `current`.
fn resolve_location(current: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_owned());
    }
    let (scheme, rest) = current.split_once("://")?;
    if let Some(net) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{net}"));
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let origin = &current[..scheme.len() + 3 + authority_end];
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = &rest[authority_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{origin}{dir}{location}"))
}

/// Scheme, lower-cased host and port of an `http(s)://` URL.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((scheme, authority.host().to_ascii_lowercase(), port))
}

/// Whether `url` has the same scheme, host and port as `base`.
fn same_origin(url: &str, base: &str) -> bool {
    match (origin(url), origin(base)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}
