//! The customer-state API in the shape of Spackle's (`GET /v1/customers/{id}/state`), answered from
//! the content in memory: one version's view and that version's subscriptions, swapped together.
//!
//! Every feature of the snapshot is listed, in snapshot order, with the customer's value:
//! `{"id", "name", "key", "type", "value_flag", "value_limit"}`, `type` 0 for a flag (`value_flag`
//! a boolean, `value_limit` null) and 1 for a limit (`value_flag` null, `value_limit` a number or
//! null for unlimited). A snapshot carries no feature names and no database ids: `name` is the key
//! and `id` the feature's 1-based position. `subscriptions` lists the customer's subscriptions from
//! the version's subscriptions document (see [`entitle_core::subscriptions`]); content published
//! without one lists none.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use entitle_core::edge::{Manifest, MANIFEST_FILE, MAX_MANIFEST_BYTES};
use entitle_core::hash::xxh64;
use entitle_core::subscriptions::{Subscriptions, MAX_SUBSCRIPTIONS_BYTES};
use entitle_core::{Decision, Engine, FeatureType, Limit, Reason, View, WaitError};
use serde_json::{json, Value};

/// One version as the state API serves it.
#[derive(Debug)]
pub struct Served {
    /// The content.
    pub view: Arc<View>,
    /// Its subscriptions (published for the same version and snapshot checksum).
    pub subscriptions: Arc<Subscriptions>,
}

/// What the state API answers from, and how it got there.
#[derive(Debug, Default)]
pub struct StateSource {
    current: RwLock<Option<Arc<Served>>>,
    last_error: Mutex<Option<String>>,
    /// Updates made by applying published deltas.
    pub deltas_applied: AtomicU64,
    /// Updates made by loading a whole snapshot.
    pub snapshots_loaded: AtomicU64,
}

impl StateSource {
    /// The version served now; `None` before any content is loaded.
    pub fn current(&self) -> Option<Arc<Served>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the version served is (`version`, `checksum`).
    pub fn serves(&self, version: u64, checksum: u64) -> bool {
        self.current()
            .is_some_and(|s| s.view.version() == version && s.view.checksum() == checksum)
    }

    /// Swaps in a version; both halves must belong to it.
    pub fn set(&self, served: Served) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(served));
    }

    /// Why the last attempt to reach the newest version failed; `None` after a success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the outcome of an attempt.
    pub fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// Checks a subscriptions document's bytes against the manifest entry that named them and the
/// version they must belong to, then parses it.
///
/// # Errors
/// A message naming the path and the mismatch.
pub fn verify_subscriptions(bytes: &[u8], manifest: &Manifest) -> Result<Subscriptions, String> {
    let Some(entry) = &manifest.subscriptions else {
        return Ok(Subscriptions::none(
            manifest.version,
            manifest.snapshot.checksum,
        ));
    };
    let at = |m: String| format!("{}: {m}", entry.path);
    if bytes.len() as u64 != entry.bytes {
        return Err(at(format!(
            "{} bytes, the manifest says {}",
            bytes.len(),
            entry.bytes
        )));
    }
    let sum = xxh64(bytes, 0);
    if sum != entry.checksum {
        return Err(at(format!(
            "checksum {sum:016x}, the manifest says {:016x}",
            entry.checksum
        )));
    }
    let subs = Subscriptions::parse(bytes).map_err(|e| at(e.to_string()))?;
    if (subs.version(), subs.snapshot_checksum()) != (manifest.version, manifest.snapshot.checksum)
    {
        return Err(at(format!(
            "published for version {} (snapshot {:016x}), the manifest is version {} ({:016x})",
            subs.version(),
            subs.snapshot_checksum(),
            manifest.version,
            manifest.snapshot.checksum
        )));
    }
    Ok(subs)
}

/// The largest subscriptions document read for a manifest entry: its announced size, bounded.
pub fn subscriptions_bound(manifest: &Manifest, max_file_bytes: u64) -> u64 {
    manifest.subscriptions.as_ref().map_or(0, |s| {
        s.bytes.min(max_file_bytes).min(MAX_SUBSCRIPTIONS_BYTES)
    })
}

/// Keeps `source` at the version `engine` (synced from the upstream edge at `url`) serves: after
/// each version change, reads the upstream manifest and, when it describes that version, its
/// subscriptions document, then swaps both in. Until then the previous version stays served, so an
/// answer never mixes versions. Runs until the engine is closed.
pub fn follow_upstream(
    engine: &Engine,
    source: &StateSource,
    url: &str,
    token: Option<&str>,
    max_file_bytes: u64,
) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .user_agent(concat!("entitle/", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let base = url.trim_end_matches('/');
    let get = |path: &str, limit: u64| -> Result<Vec<u8>, String> {
        let url = format!("{base}/{path}");
        let mut req = agent.get(&url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().map_err(|e| format!("{url}: {e}"))?;
        if resp.status() != 200 {
            return Err(format!("{url}: HTTP {}", resp.status().as_u16()));
        }
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))
    };
    let mut seen = engine.last_event_seq();
    loop {
        let view = engine.view();
        if view.version() > 0 && !source.serves(view.version(), view.checksum()) {
            let attempt = get(MANIFEST_FILE, MAX_MANIFEST_BYTES as u64).and_then(|body| {
                let m = Manifest::from_json(&body)
                    .map_err(|e| format!("{base}/{MANIFEST_FILE}: {e}"))?;
                if (m.version, m.snapshot.checksum) != (view.version(), view.checksum()) {
                    // The edge has moved on; the engine follows and wakes this loop.
                    return Ok(None);
                }
                let subs = match &m.subscriptions {
                    Some(entry) => verify_subscriptions(
                        &get(&entry.path, subscriptions_bound(&m, max_file_bytes))?,
                        &m,
                    )?,
                    None => Subscriptions::none(m.version, m.snapshot.checksum),
                };
                Ok(Some(subs))
            });
            match attempt {
                Ok(Some(subs)) => {
                    source.set(Served {
                        view: Arc::clone(&view),
                        subscriptions: Arc::new(subs),
                    });
                    source.set_error(None);
                }
                Ok(None) => {}
                Err(e) => source.set_error(Some(format!("subscriptions: {e}"))),
            }
        }
        match engine.next_event(seen, Duration::from_secs(1)) {
            Ok(event) => seen = event.seq,
            Err(WaitError::Timeout) => {}
            Err(WaitError::Closed) => return,
        }
    }
}

/// The state document for `customer` at unix time `at`, as JSON text; `None` when the snapshot
/// does not know the customer (every feature answered `customer_not_found`, or no features at all).
pub fn customer_state(served: &Served, customer: &str, at: i64) -> Option<String> {
    let mut known = false;
    let features: Vec<Value> = served
        .view
        .entitlements_at(customer, at)
        .enumerate()
        .map(|(i, (info, decision))| {
            known |= decision.reason != Reason::CustomerNotFound;
            feature_json(i + 1, info.key, info.kind, &decision)
        })
        .collect();
    known.then(|| {
        format!(
            r#"{{"version":1,"features":{},"subscriptions":{}}}"#,
            Value::Array(features),
            served.subscriptions.customer(customer).unwrap_or("[]")
        )
    })
}

fn feature_json(id: usize, key: &str, kind: FeatureType, d: &Decision) -> Value {
    match kind {
        FeatureType::Flag => json!({
            "id": id, "name": key, "key": key, "type": 0,
            "value_flag": d.enabled(), "value_limit": null,
        }),
        FeatureType::Limit => {
            let limit = match d.limit() {
                Some(Limit::Finite(n)) => json!(n),
                Some(Limit::Unlimited) | None => Value::Null,
            };
            json!({
                "id": id, "name": key, "key": key, "type": 1,
                "value_flag": null, "value_limit": limit,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use entitle_core::{subscriptions, BuildOptions, Catalog, Snapshot};

    #[test]
    fn spackle_shape() {
        let c = Catalog::from_json(
            br#"{"features": [{"key": "sso", "type": "flag", "default": false},
                              {"key": "seats", "type": "limit", "default": 1}],
                 "customers": [{"id": "cus_a", "overrides": {"sso": true, "seats": "unlimited"}},
                               {"id": "cus_b", "subscriptions": [
                                   {"id": "sub_b", "status": "active", "items": [{"product": "prod_x", "quantity": 2}]},
                                   {"id": "sub_c", "status": "canceled", "items": [{"product": "prod_x"}]}]}]}"#,
        )
        .unwrap();
        let snap = Snapshot::build(&c, BuildOptions::default()).unwrap();
        let subs = subscriptions::document(&c, snap.version(), snap.checksum());
        let served = Served {
            view: Arc::new(View::from(snap)),
            subscriptions: Arc::new(Subscriptions::parse(&subs).unwrap()),
        };
        let state: Value =
            serde_json::from_str(&customer_state(&served, "cus_a", 0).unwrap()).unwrap();
        assert_eq!(
            state,
            json!({"version": 1, "subscriptions": [], "features": [
                {"id": 1, "name": "sso", "key": "sso", "type": 0, "value_flag": true, "value_limit": null},
                {"id": 2, "name": "seats", "key": "seats", "type": 1, "value_flag": null, "value_limit": null}
            ]})
        );
        assert!(customer_state(&served, "cus_nobody", 0).is_none());
        let state: Value =
            serde_json::from_str(&customer_state(&served, "cus_b", 0).unwrap()).unwrap();
        assert_eq!(
            state["subscriptions"],
            json!([{"id": "sub_b", "object": "subscription", "customer": "cus_b", "status": "active",
                    "cancel_at": null, "items": {"object": "list", "data": [
                        {"object": "subscription_item", "price": {"object": "price", "product": "prod_x"}, "quantity": 2}]}}])
        );
    }
}
