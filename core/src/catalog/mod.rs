//! The catalog: the human-authored JSON source (SPEC section 1), its validation, and the reference
//! evaluation of SPEC section 2 over it.
//!
//! Parsing happens in two steps: serde reads the JSON into loose "raw" shapes (so that structural
//! errors carry their path), then [`Catalog::new`] checks every cross-reference and value. Nothing is
//! returned unless the whole catalog is valid.

mod compile;
mod eval;
mod parse;
mod validate;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::hash::{FastMap, FastState};
use crate::model::{FeatureType, Value};

pub(crate) use self::eval::Scratch;

/// A catalog that failed to parse or validate. The message starts with the path of the offending
/// value, e.g. `customers[3].overrides.seats: expected a whole number or "unlimited"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogError {
    path: String,
    message: String,
}

impl CatalogError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> CatalogError {
        CatalogError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Where the error is, e.g. `customers[3].overrides.seats` (`catalog` for the document itself).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong there.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for CatalogError {}

/// A feature: a flag or a limit, with its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    /// Unique, non-empty key, e.g. `"sso"`.
    pub key: String,
    /// Flag or limit.
    pub kind: FeatureType,
    /// The value when nothing grants more (must match `kind`).
    pub default: Value,
    /// For limits: each item contributes the product's value × its quantity, and contributions sum.
    pub per_unit: bool,
}

/// A product (a plan or an add-on) and the feature values it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Unique product id, e.g. `"prod_pro"`.
    pub id: String,
    /// Feature key → value granted, in catalog order.
    pub features: Vec<(String, Value)>,
}

/// One line of a subscription.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Item {
    /// A product id; one not in the catalog grants nothing.
    pub product: String,
    /// Units bought; only `per_unit` limits multiply by it.
    #[serde(default = "parse::one", deserialize_with = "parse::de_quantity")]
    pub quantity: u64,
}

/// A subscription of a customer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    /// The subscription's id (informational).
    pub id: String,
    /// Billing status; only `active`, `trialing` and `past_due` grant.
    pub status: String,
    /// Unix seconds from which the subscription no longer grants.
    #[serde(default, deserialize_with = "parse::de_timestamp")]
    pub cancel_at: Option<i64>,
    /// The products subscribed to.
    pub items: Vec<Item>,
}

impl Subscription {
    /// Whether this subscription grants at time `at` (SPEC 2.4).
    pub fn grants_at(&self, at: i64) -> bool {
        matches!(self.status.as_str(), "active" | "trialing" | "past_due")
            && self.cancel_at.is_none_or(|c| c > at)
    }
}

/// A per-customer override of one feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// The feature overridden.
    pub feature: String,
    /// The value that replaces the evaluated one.
    pub value: Value,
    /// Unix seconds from which the override no longer applies.
    pub expires_at: Option<i64>,
}

impl Override {
    /// Whether the override applies at time `at` (SPEC 2.3).
    pub fn active_at(&self, at: i64) -> bool {
        self.expires_at.is_none_or(|e| e > at)
    }
}

/// A customer with its subscriptions and overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    /// Unique, non-empty customer id.
    pub id: String,
    /// The customer's subscriptions, in any order.
    pub subscriptions: Vec<Subscription>,
    /// The customer's overrides, at most one per feature.
    pub overrides: Vec<Override>,
}

/// A validated catalog (SPEC section 1), with the reference evaluation of SPEC section 2.
///
/// # Examples
/// ```
/// use entitle_core::{Catalog, Reason};
/// let catalog = Catalog::from_json(br#"{
///   "features": [{"key": "sso", "type": "flag"}],
///   "products": [{"id": "prod_pro", "features": {"sso": true}}],
///   "customers": [{"id": "cus_A", "subscriptions": [
///     {"id": "sub_1", "status": "active", "items": [{"product": "prod_pro"}]}]}]
/// }"#)?;
/// let d = catalog.check("cus_A", "sso", 1_700_000_000);
/// assert!(d.enabled());
/// assert_eq!(d.reason, Reason::Subscription);
/// # Ok::<(), entitle_core::CatalogError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Catalog {
    features: Vec<Feature>,
    products: Vec<Product>,
    customers: Vec<Customer>,
    feature_index: HashMap<String, usize>,
    product_index: FastMap<String, usize>,
    /// Built on first lookup by id: compiling a catalog never needs it.
    customer_index: OnceLock<FastMap<Box<str>, usize>>,
    /// Per product: (feature index, raw value) pairs.
    grants: Vec<Vec<(usize, u64)>>,
}

impl Catalog {
    /// The features, in catalog order.
    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The products, in catalog order.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The customers, in catalog order.
    pub fn customers(&self) -> &[Customer] {
        &self.customers
    }

    /// The index of the feature with this key.
    pub fn feature_index(&self, key: &str) -> Option<usize> {
        self.feature_index.get(key).copied()
    }

    /// The customer with this id.
    pub fn customer(&self, id: &str) -> Option<&Customer> {
        let index = self.customer_index.get_or_init(|| {
            let mut m = FastMap::with_capacity_and_hasher(self.customers.len(), FastState);
            for (i, c) in self.customers.iter().enumerate() {
                m.insert(Box::from(c.id.as_str()), i);
            }
            m
        });
        index.get(id).map(|&i| &self.customers[i])
    }
}

/// Compiles a catalog JSON document into a snapshot of `version`, created at 0: the fixture the
/// core's unit tests share.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_snapshot(json: &str, version: u64) -> crate::snapshot::Snapshot {
    let c = Catalog::from_json(json.as_bytes()).unwrap();
    crate::snapshot::Snapshot::build(
        &c,
        crate::snapshot::BuildOptions {
            version,
            created_at: 0,
        },
    )
    .unwrap()
}
