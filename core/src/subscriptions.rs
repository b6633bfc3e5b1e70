//! The subscriptions document: for one published version, every customer's subscriptions that are not
//! `canceled`, as Stripe subscription objects, so that an edge server can list them in Spackle's
//! customer-state API. The snapshot format has no place for them (and keeps none); the publisher
//! writes this document next to the snapshot and the manifest names it (see
//! [`SubscriptionsEntry`](crate::edge::SubscriptionsEntry)).
//!
//! ```json
//! {"format": 1, "version": 42, "snapshot_checksum": "89abcdef01234567",
//!  "customers": {"cus_a": [{"id": "sub_1", "object": "subscription", "customer": "cus_a",
//!                           "status": "active", "cancel_at": null,
//!                           "items": {"object": "list", "data": [
//!                             {"object": "subscription_item", "quantity": 5,
//!                              "price": {"object": "price", "product": "prod_pro"}}]}}]}}
//! ```
//!
//! A subscription carries what the catalog knows: `id`, `status`, `cancel_at` (`null` when not set)
//! and its items' products and quantities. Fields the catalog does not hold (price ids, billing
//! periods, …) are absent rather than invented. Customers without such subscriptions are left out.
//!
//! # Examples
//! ```
//! use entitle_core::subscriptions::{document, Subscriptions};
//! use entitle_core::Catalog;
//! let catalog = Catalog::from_json(br#"{"features": [], "customers": [{"id": "cus_a",
//!   "subscriptions": [{"id": "sub_1", "status": "active", "items": [{"product": "prod_pro"}]},
//!                     {"id": "sub_0", "status": "canceled", "items": []}]}]}"#)?;
//! let bytes = document(&catalog, 7, 0xabc);
//! let subs = Subscriptions::parse(&bytes)?;
//! assert_eq!((subs.version(), subs.snapshot_checksum()), (7, 0xabc));
//! let listed: serde_json::Value = serde_json::from_str(subs.customer("cus_a").unwrap_or("[]"))?;
//! assert_eq!(listed[0]["id"], "sub_1");
//! assert_eq!(listed[0]["items"]["data"][0]["price"]["product"], "prod_pro");
//! assert_eq!(listed.as_array().map(Vec::len), Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::catalog::{Catalog, Subscription};
use crate::snapshot::FormatError;

/// The document's format number; readers refuse others.
pub const SUBSCRIPTIONS_FORMAT: u32 = 1;

/// The largest subscriptions document a publisher writes and a server reads (64 MiB). A catalog
/// whose document would be larger is published without one.
pub const MAX_SUBSCRIPTIONS_BYTES: u64 = 64 << 20;

/// The Stripe subscription object for `customer`'s subscription `s`, with what the catalog knows.
pub fn stripe_subscription(customer: &str, s: &Subscription) -> Value {
    let items: Vec<Value> = s
        .items
        .iter()
        .map(|i| {
            json!({
                "object": "subscription_item",
                "price": {"object": "price", "product": i.product},
                "quantity": i.quantity,
            })
        })
        .collect();
    json!({
        "id": s.id,
        "object": "subscription",
        "customer": customer,
        "status": s.status,
        "cancel_at": s.cancel_at,
        "items": {"object": "list", "data": items},
    })
}

/// The document for `catalog` published as `version` with snapshot checksum `snapshot_checksum`:
/// compact JSON, customers sorted by id, each customer's subscriptions in catalog order.
pub fn document(catalog: &Catalog, version: u64, snapshot_checksum: u64) -> Vec<u8> {
    let mut customers = serde_json::Map::new();
    for c in catalog.customers() {
        let subs: Vec<Value> = c
            .subscriptions
            .iter()
            .filter(|s| s.status != "canceled")
            .map(|s| stripe_subscription(&c.id, s))
            .collect();
        if !subs.is_empty() {
            customers.insert(c.id.clone(), Value::Array(subs));
        }
    }
    let doc = json!({
        "format": SUBSCRIPTIONS_FORMAT,
        "version": version,
        "snapshot_checksum": format!("{snapshot_checksum:016x}"),
        "customers": customers,
    });
    let mut bytes = doc.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// A parsed subscriptions document: each customer's list kept as its JSON text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscriptions {
    version: u64,
    snapshot_checksum: u64,
    customers: HashMap<String, Box<str>>,
}

#[derive(Deserialize)]
struct RawDocument {
    format: u32,
    version: u64,
    snapshot_checksum: String,
    customers: BTreeMap<String, Vec<Value>>,
}

impl Subscriptions {
    /// No subscriptions for anyone, for content published without a document.
    pub fn none(version: u64, snapshot_checksum: u64) -> Subscriptions {
        Subscriptions {
            version,
            snapshot_checksum,
            customers: HashMap::new(),
        }
    }

    /// Parses a document.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] naming the problem: not JSON of this shape, another format, a
    /// checksum that is not 16 hex digits, a list entry that is not an object.
    pub fn parse(bytes: &[u8]) -> Result<Subscriptions, FormatError> {
        let bad = |m: String| FormatError::Invalid(format!("subscriptions document: {m}"));
        let raw: RawDocument = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if raw.format != SUBSCRIPTIONS_FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this build reads format {SUBSCRIPTIONS_FORMAT})",
                raw.format
            )));
        }
        let snapshot_checksum = (raw.snapshot_checksum.len() == 16)
            .then(|| u64::from_str_radix(&raw.snapshot_checksum, 16).ok())
            .flatten()
            .ok_or_else(|| {
                bad(format!(
                    "snapshot_checksum {:?} is not 16 hex digits",
                    raw.snapshot_checksum
                ))
            })?;
        let mut customers = HashMap::with_capacity(raw.customers.len());
        for (id, subs) in raw.customers {
            if let Some(i) = subs.iter().position(|s| !s.is_object()) {
                return Err(bad(format!("customers.{id}[{i}] is not an object")));
            }
            customers.insert(id, Value::Array(subs).to_string().into_boxed_str());
        }
        Ok(Subscriptions {
            version: raw.version,
            snapshot_checksum,
            customers,
        })
    }

    /// The version the document was published for.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The checksum of the snapshot it was published with.
    pub fn snapshot_checksum(&self) -> u64 {
        self.snapshot_checksum
    }

    /// `customer`'s subscriptions as a JSON array; `None` when the customer has none listed.
    pub fn customer(&self, customer: &str) -> Option<&str> {
        self.customers.get(customer).map(|s| &**s)
    }

    /// How many customers have subscriptions listed.
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    /// Whether no customer has subscriptions listed.
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stripe_shape_and_canceled_left_out() {
        let c = Catalog::from_json(
            br#"{"features": [], "customers": [
                {"id": "cus_b", "subscriptions": [{"id": "sub_b", "status": "canceled", "items": []}]},
                {"id": "cus_a", "subscriptions": [
                    {"id": "sub_a", "status": "trialing", "cancel_at": 1800000000,
                     "items": [{"product": "prod_pro", "quantity": 3}, {"product": "addon"}]}]}]}"#,
        )
        .unwrap();
        let bytes = document(&c, 3, 0x0123_4567_89ab_cdef);
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["snapshot_checksum"], "0123456789abcdef");
        assert_eq!(
            doc["customers"],
            json!({"cus_a": [{
                "id": "sub_a", "object": "subscription", "customer": "cus_a", "status": "trialing",
                "cancel_at": 1800000000,
                "items": {"object": "list", "data": [
                    {"object": "subscription_item", "price": {"object": "price", "product": "prod_pro"}, "quantity": 3},
                    {"object": "subscription_item", "price": {"object": "price", "product": "addon"}, "quantity": 1}
                ]}
            }]})
        );
        let subs = Subscriptions::parse(&bytes).unwrap();
        assert_eq!(subs.len(), 1);
        assert!(subs.customer("cus_b").is_none());
        assert_eq!(
            serde_json::from_str::<Value>(subs.customer("cus_a").unwrap()).unwrap(),
            doc["customers"]["cus_a"]
        );
    }

    #[test]
    fn bad_documents_are_refused_with_the_reason() {
        for (bytes, why) in [
            (&br#"{"format": 2, "version": 1, "snapshot_checksum": "0000000000000000", "customers": {}}"#[..], "format 2"),
            (br#"{"format": 1, "version": 1, "snapshot_checksum": "12", "customers": {}}"#, "16 hex"),
            (br#"{"format": 1, "version": 1, "snapshot_checksum": "0000000000000000", "customers": {"a": [1]}}"#, "customers.a[0]"),
            (br#"{"format": 1"#, "EOF"),
        ] {
            let e = Subscriptions::parse(bytes).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
