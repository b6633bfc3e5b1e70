//! The catalog: the human-authored JSON source (SPEC section 1), its validation, and the reference
//! evaluation of SPEC section 2 over it.
//!
//! Parsing happens in two steps: serde reads the JSON into loose "raw" shapes (so that structural
//! errors carry their path), then [`Catalog::new`] checks every cross-reference and value. Nothing is
//! returned unless the whole catalog is valid.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::hash::{FastMap, FastState};
use crate::model::{Cell, Decision, FeatureType, Limit, Reason, Value, MAX_LIMIT, RAW_UNLIMITED};

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
    #[serde(default = "one", deserialize_with = "de_quantity")]
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
    #[serde(default, deserialize_with = "de_timestamp")]
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
    /// Parses and validates a catalog from JSON bytes.
    ///
    /// # Errors
    /// A [`CatalogError`] naming the path of the first problem found.
    pub fn from_json(json: &[u8]) -> Result<Catalog, CatalogError> {
        // serde would read a struct from a JSON array too; a catalog is an object.
        match json.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | None => {}
            Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_ok() => {
                return Err(CatalogError::new("catalog", "expected a JSON object"))
            }
            Some(_) => {}
        }
        // Path tracking costs an allocation per key, so parse plainly first and only re-parse with
        // it to locate an error.
        match serde_json::from_slice::<RawCatalog>(json) {
            Ok(raw) => raw.into_catalog(),
            Err(plain) => {
                let mut de = serde_json::Deserializer::from_slice(json);
                match serde_path_to_error::deserialize::<_, RawCatalog>(&mut de) {
                    Err(err) => Err(serde_error(err)),
                    Ok(_) => Err(CatalogError::new("catalog", json_message(&plain))),
                }
            }
        }
    }

    /// Builds a catalog from parts, validating it exactly as [`Catalog::from_json`] does.
    ///
    /// # Errors
    /// A [`CatalogError`] naming the path of the first problem found.
    pub fn new(
        features: Vec<Feature>,
        products: Vec<Product>,
        customers: Vec<Customer>,
    ) -> Result<Catalog, CatalogError> {
        let mut feature_index = HashMap::with_capacity(features.len());
        for (i, f) in features.iter().enumerate() {
            let path = format!("features[{i}]");
            if f.key.is_empty() {
                return Err(CatalogError::new(
                    format!("{path}.key"),
                    "must not be empty",
                ));
            }
            if feature_index.insert(f.key.clone(), i).is_some() {
                return Err(CatalogError::new(
                    format!("{path}.key"),
                    format!("duplicate feature key `{}`", f.key),
                ));
            }
            check_value(f.kind, f.default, &format!("{path}.default"))?;
            if f.per_unit && f.kind == FeatureType::Flag {
                return Err(CatalogError::new(
                    format!("{path}.per_unit"),
                    "per_unit applies only to limit features",
                ));
            }
        }
        let lookup = |key: &str, path: &str| -> Result<usize, CatalogError> {
            feature_index
                .get(key)
                .copied()
                .ok_or_else(|| CatalogError::new(path, format!("unknown feature `{key}`")))
        };

        let mut product_index = FastMap::with_capacity_and_hasher(products.len(), FastState);
        let mut grants = Vec::with_capacity(products.len());
        for (i, p) in products.iter().enumerate() {
            if product_index.insert(p.id.clone(), i).is_some() {
                return Err(CatalogError::new(
                    format!("products[{i}].id"),
                    format!("duplicate product id `{}`", p.id),
                ));
            }
            let mut seen = HashSet::new();
            let mut g = Vec::with_capacity(p.features.len());
            for (key, value) in &p.features {
                let path = format!("products[{i}].features.{key}");
                let f = lookup(key, &path)?;
                if !seen.insert(f) {
                    return Err(CatalogError::new(path, format!("duplicate key `{key}`")));
                }
                check_value(features[f].kind, *value, &path)?;
                g.push((f, value.to_raw()));
            }
            grants.push(g);
        }

        // Duplicate ids: sort (hash, index) pairs and compare neighbours with equal hashes; much
        // cheaper than a million-entry hash set.
        let mut by_hash: Vec<(u64, usize)> = customers
            .iter()
            .enumerate()
            .map(|(i, c)| (crate::hash::key_hash(c.id.as_bytes()), i))
            .collect();
        by_hash.sort_unstable();
        let mut duplicate: Option<usize> = None;
        for (k, &(h, i)) in by_hash.iter().enumerate() {
            let earlier = by_hash[..k]
                .iter()
                .rev()
                .take_while(|&&(h2, _)| h2 == h)
                .any(|&(_, j)| customers[j].id == customers[i].id);
            if earlier {
                duplicate = Some(duplicate.map_or(i, |d: usize| d.min(i)));
            }
        }
        drop(by_hash);
        for (i, c) in customers.iter().enumerate() {
            if c.id.is_empty() {
                return Err(CatalogError::new(
                    format!("customers[{i}].id"),
                    "must not be empty",
                ));
            }
            if duplicate == Some(i) {
                return Err(CatalogError::new(
                    format!("customers[{i}].id"),
                    format!("duplicate customer id `{}`", c.id),
                ));
            }
            for (s, sub) in c.subscriptions.iter().enumerate() {
                for (t, item) in sub.items.iter().enumerate() {
                    if item.quantity > MAX_LIMIT {
                        return Err(CatalogError::new(
                            format!("customers[{i}].subscriptions[{s}].items[{t}].quantity"),
                            "out of range (0..=9223372036854775807)",
                        ));
                    }
                }
            }
            for (k, o) in c.overrides.iter().enumerate() {
                let opath = || format!("customers[{i}].overrides.{}", o.feature);
                let Some(&f) = feature_index.get(&o.feature) else {
                    return Err(CatalogError::new(
                        opath(),
                        format!("unknown feature `{}`", o.feature),
                    ));
                };
                if c.overrides[..k].iter().any(|p| p.feature == o.feature) {
                    return Err(CatalogError::new(
                        opath(),
                        format!("duplicate key `{}`", o.feature),
                    ));
                }
                if check_value(features[f].kind, o.value, "").is_err() {
                    check_value(features[f].kind, o.value, &opath())?;
                }
            }
        }

        Ok(Catalog {
            features,
            products,
            customers,
            feature_index,
            product_index,
            customer_index: OnceLock::new(),
            grants,
        })
    }

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

    /// Evaluates feature `feature` for customer `customer` at unix time `at` (SPEC section 2).
    ///
    /// This is the reference evaluation: straightforward and slow. Production lookups go through a
    /// [`Snapshot`](crate::Snapshot), which must answer identically.
    pub fn check(&self, customer: &str, feature: &str, at: i64) -> Decision {
        let Some(f) = self.feature_index(feature) else {
            return Decision::feature_not_found(0);
        };
        let kind = self.features[f].kind;
        let cell = match self.customer(customer) {
            None => Cell {
                raw: self.features[f].default.to_raw(),
                reason: Reason::CustomerNotFound,
            },
            Some(c) => {
                let mut scratch = Scratch::default();
                self.evaluate_into(c, at, &mut scratch);
                scratch.cells[f]
            }
        };
        Decision::new(kind, cell, 0)
    }

    /// Every feature's cell for one customer at time `at`, in feature order.
    pub(crate) fn evaluate(&self, customer: &Customer, at: i64) -> Vec<Cell> {
        let mut scratch = Scratch::default();
        self.evaluate_into(customer, at, &mut scratch);
        scratch.cells
    }

    /// [`Catalog::evaluate`] into reusable buffers (`scratch.cells` holds the result).
    pub(crate) fn evaluate_into(&self, customer: &Customer, at: i64, scratch: &mut Scratch) {
        let contribution = &mut scratch.contribution;
        contribution.clear();
        contribution.resize(self.features.len(), None);
        for sub in customer.subscriptions.iter().filter(|s| s.grants_at(at)) {
            for item in &sub.items {
                let Some(&p) = self.product_index.get(&item.product) else {
                    continue;
                };
                for &(f, raw) in &self.grants[p] {
                    let feature = &self.features[f];
                    let c = if feature.per_unit {
                        mul_saturating(raw, item.quantity)
                    } else {
                        raw
                    };
                    contribution[f] = Some(match contribution[f] {
                        None => c,
                        Some(prev) if feature.per_unit => add_saturating(prev, c),
                        // Flags are 0/1 and unlimited is u64::MAX: OR and max are both `max`.
                        Some(prev) => prev.max(c),
                    });
                }
            }
        }
        let cells = &mut scratch.cells;
        cells.clear();
        cells.extend(
            self.features
                .iter()
                .zip(contribution.iter())
                .map(|(feature, c)| {
                    let default = feature.default.to_raw();
                    match *c {
                        Some(c) if c >= default => Cell {
                            raw: c,
                            reason: Reason::Subscription,
                        },
                        _ => Cell {
                            raw: default,
                            reason: Reason::Default,
                        },
                    }
                }),
        );
        for o in customer.overrides.iter().filter(|o| o.active_at(at)) {
            if let Some(f) = self.feature_index(&o.feature) {
                cells[f] = Cell {
                    raw: o.value.to_raw(),
                    reason: Reason::Override,
                };
            }
        }
    }

    /// The instants at which some answer for `customer` may change: every `cancel_at` of a
    /// subscription that could grant, and every override `expires_at`. Sorted, unique.
    pub(crate) fn boundaries(customer: &Customer) -> Vec<i64> {
        let mut times: Vec<i64> = customer
            .subscriptions
            .iter()
            .filter(|s| s.grants_at(i64::MIN))
            .filter_map(|s| s.cancel_at)
            .chain(customer.overrides.iter().filter_map(|o| o.expires_at))
            .filter(|&t| t != i64::MIN)
            .collect();
        times.sort_unstable();
        times.dedup();
        times
    }
}

/// Reusable buffers for [`Catalog::evaluate_into`].
#[derive(Default)]
pub(crate) struct Scratch {
    contribution: Vec<Option<u64>>,
    pub(crate) cells: Vec<Cell>,
}

/// `raw × quantity` for a per-unit limit: unlimited × q is unlimited for q > 0 and 0 for q = 0;
/// finite products saturate at [`MAX_LIMIT`].
pub(crate) fn mul_saturating(raw: u64, quantity: u64) -> u64 {
    if raw == RAW_UNLIMITED {
        if quantity > 0 {
            RAW_UNLIMITED
        } else {
            0
        }
    } else {
        raw.saturating_mul(quantity).min(MAX_LIMIT)
    }
}

/// Sum of two per-unit contributions, saturating at [`MAX_LIMIT`]; unlimited absorbs.
pub(crate) fn add_saturating(a: u64, b: u64) -> u64 {
    if a == RAW_UNLIMITED || b == RAW_UNLIMITED {
        RAW_UNLIMITED
    } else {
        a.saturating_add(b).min(MAX_LIMIT)
    }
}

fn check_value(kind: FeatureType, value: Value, path: &str) -> Result<(), CatalogError> {
    match (kind, value) {
        (FeatureType::Flag, Value::Flag(_)) => Ok(()),
        (FeatureType::Limit, Value::Limit(Limit::Unlimited)) => Ok(()),
        (FeatureType::Limit, Value::Limit(Limit::Finite(n))) if n <= MAX_LIMIT => Ok(()),
        (FeatureType::Limit, Value::Limit(Limit::Finite(_))) => Err(CatalogError::new(
            path,
            "out of range (0..=9223372036854775807)",
        )),
        (FeatureType::Flag, _) => Err(CatalogError::new(path, "expected true or false")),
        (FeatureType::Limit, _) => Err(CatalogError::new(
            path,
            "expected a whole number or \"unlimited\"",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw JSON shapes. Values are read loosely (any JSON) so that their errors can name their path and
// the expected type of the feature they belong to.

fn serde_error(err: serde_path_to_error::Error<serde_json::Error>) -> CatalogError {
    let mut path = String::new();
    for seg in err.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => path.push_str(".?"),
        }
    }
    let inner = err.into_inner();
    if path.is_empty() || inner.is_syntax() || inner.is_eof() {
        path = "catalog".to_string();
    }
    CatalogError::new(path, json_message(&inner))
}

/// serde_json's message with its position rewritten as "(line L, column C)".
fn json_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let bare = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text.as_str(),
    };
    let prefix = if err.is_syntax() || err.is_eof() {
        "invalid JSON: "
    } else {
        ""
    };
    format!(
        "{prefix}{bare} (line {}, column {})",
        err.line(),
        err.column()
    )
}

#[derive(Deserialize)]
struct RawCatalog {
    features: Vec<RawFeature>,
    products: Option<Vec<RawProduct>>,
    customers: Option<Vec<RawCustomer>>,
}

#[derive(Deserialize)]
struct RawFeature {
    key: String,
    #[serde(rename = "type")]
    kind: String,
    default: Option<Loose>,
    per_unit: Option<bool>,
}

#[derive(Deserialize)]
struct RawProduct {
    id: String,
    features: LooseMap,
}

#[derive(Deserialize)]
struct RawCustomer {
    id: String,
    subscriptions: Option<Vec<Subscription>>,
    overrides: Option<LooseMap>,
}

/// Any JSON value, kept only as far as validation needs it.
#[derive(Debug)]
enum Loose {
    Null,
    Bool(bool),
    UInt(u64),
    NegInt(i64),
    /// A number written with a fraction or exponent, or too large for 64 bits.
    /// A number JSON reads as floating point: written with a fraction or an exponent, or a whole
    /// number too large for 64 bits.
    Float(f64),
    Str(String),
    Array,
    Object(Vec<(String, Loose)>),
}

/// A JSON object read as ordered pairs, keeping duplicate keys so validation can reject them.
struct LooseMap(Vec<(String, Loose)>);

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

impl<'de> Deserialize<'de> for LooseMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LooseMap, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LooseMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LooseMap, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Loose>()? {
                    pairs.push((k, v));
                }
                Ok(LooseMap(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::UInt(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose, E> {
        Ok(if v >= 0 {
            Loose::UInt(v as u64)
        } else {
            Loose::NegInt(v)
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose, E> {
        Ok(Loose::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Loose, E> {
        Ok(Loose::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        let mut pairs = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Loose>()? {
            pairs.push((k, v));
        }
        Ok(Loose::Object(pairs))
    }
}

impl Loose {
    fn describe(&self) -> String {
        match self {
            Loose::Null => "null".into(),
            Loose::Bool(_) => "a boolean".into(),
            Loose::UInt(_) => "a number".into(),
            Loose::NegInt(_) => "a negative number".into(),
            Loose::Float(v) if v.fract() != 0.0 || !v.is_finite() => {
                "a number that is not a whole number".into()
            }
            // 2^64 and above: serde_json reads integers that overflow u64 as floats.
            Loose::Float(v) if v.abs() >= 18_446_744_073_709_551_616.0 => {
                "a number too large for 64 bits".into()
            }
            Loose::Float(v) => format!(
                "{v} written with a decimal point or an exponent (write it as the integer {v:.0})"
            ),
            Loose::Str(_) => "a string".into(),
            Loose::Array => "an array".into(),
            Loose::Object(_) => "an object".into(),
        }
    }

    /// A feature value of the given type; `kind` only chooses the error message for shapes that are
    /// no value at all (type mismatches between valid values are reported by [`Catalog::new`]).
    fn value(
        &self,
        kind: Option<FeatureType>,
        path: impl FnOnce() -> String,
    ) -> Result<Value, CatalogError> {
        let expected = match kind {
            Some(FeatureType::Flag) => "expected true or false",
            _ => "expected a whole number or \"unlimited\"",
        };
        match self {
            Loose::Bool(b) => Ok(Value::Flag(*b)),
            Loose::UInt(n) if *n <= MAX_LIMIT => Ok(Value::Limit(Limit::Finite(*n))),
            Loose::UInt(_) if kind != Some(FeatureType::Flag) => Err(CatalogError::new(
                path(),
                "out of range (0..=9223372036854775807)",
            )),
            Loose::Str(s) if s == "unlimited" => Ok(Value::Limit(Limit::Unlimited)),
            other => Err(CatalogError::new(
                path(),
                format!("{expected}, found {}", other.describe()),
            )),
        }
    }

    fn whole(&self) -> Result<u64, String> {
        match self {
            Loose::UInt(n) if *n <= MAX_LIMIT => Ok(*n),
            Loose::UInt(_) => Err("out of range (0..=9223372036854775807)".into()),
            other => Err(format!(
                "expected a whole number >= 0, found {}",
                other.describe()
            )),
        }
    }

    fn timestamp(&self) -> Result<Option<i64>, String> {
        match self {
            Loose::Null => Ok(None),
            Loose::UInt(n) => match i64::try_from(*n) {
                Ok(t) => Ok(Some(t)),
                Err(_) => Err("out of range for a unix time in seconds (i64)".into()),
            },
            Loose::NegInt(n) => Ok(Some(*n)),
            other => Err(format!(
                "expected a whole number of unix seconds, found {}",
                other.describe()
            )),
        }
    }
}

/// Reads a `cancel_at`: a whole number of unix seconds, or null/absent.
fn de_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Loose::deserialize(d)?
        .timestamp()
        .map_err(de::Error::custom)
}

/// Reads a `quantity`: a whole number >= 0; null means the default, 1.
fn de_quantity<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Loose::deserialize(d)? {
        Loose::Null => Ok(1),
        other => other.whole().map_err(de::Error::custom),
    }
}

fn one() -> u64 {
    1
}

impl RawCatalog {
    fn into_catalog(self) -> Result<Catalog, CatalogError> {
        let mut kinds: HashMap<String, FeatureType> = HashMap::new();
        let mut features = Vec::with_capacity(self.features.len());
        for (i, raw) in self.features.into_iter().enumerate() {
            let path = format!("features[{i}]");
            let kind = match raw.kind.as_str() {
                "flag" => FeatureType::Flag,
                "limit" => FeatureType::Limit,
                other => {
                    return Err(CatalogError::new(
                        format!("{path}.type"),
                        format!("expected \"flag\" or \"limit\", found \"{other}\""),
                    ))
                }
            };
            let default = match raw.default {
                None | Some(Loose::Null) => match kind {
                    FeatureType::Flag => Value::Flag(false),
                    FeatureType::Limit => Value::Limit(Limit::Finite(0)),
                },
                Some(v) => v.value(Some(kind), || format!("{path}.default"))?,
            };
            kinds.entry(raw.key.clone()).or_insert(kind);
            features.push(Feature {
                key: raw.key,
                kind,
                default,
                per_unit: raw.per_unit.unwrap_or(false),
            });
        }

        let read_map = |map: LooseMap, path: &str| -> Result<Vec<(String, Value)>, CatalogError> {
            let mut out = Vec::with_capacity(map.0.len());
            for (key, v) in map.0 {
                let value = v.value(kinds.get(&key).copied(), || format!("{path}.{key}"))?;
                out.push((key, value));
            }
            Ok(out)
        };

        let mut products = Vec::new();
        for (i, raw) in self.products.unwrap_or_default().into_iter().enumerate() {
            let features = read_map(raw.features, &format!("products[{i}].features"))?;
            products.push(Product {
                id: raw.id,
                features,
            });
        }

        let raw_customers = self.customers.unwrap_or_default();
        let mut customers = Vec::with_capacity(raw_customers.len());
        for (i, raw) in raw_customers.into_iter().enumerate() {
            let subscriptions = raw.subscriptions.unwrap_or_default();
            let mut overrides = Vec::new();
            for (key, raw) in raw.overrides.map(|m| m.0).unwrap_or_default() {
                let opath = format!("customers[{i}].overrides.{key}");
                let kind = kinds.get(&key).copied();
                let (value, expires_at) = match raw {
                    Loose::Object(fields) => {
                        let mut value = None;
                        let mut expires_at = None;
                        for (k, v) in fields {
                            match k.as_str() {
                                "value" if !matches!(v, Loose::Null) => {
                                    value = Some(v.value(kind, || format!("{opath}.value"))?)
                                }
                                "expires_at" => {
                                    expires_at = v.timestamp().map_err(|m| {
                                        CatalogError::new(format!("{opath}.expires_at"), m)
                                    })?
                                }
                                _ => {}
                            }
                        }
                        let Some(value) = value else {
                            return Err(CatalogError::new(opath, "missing field `value`"));
                        };
                        (value, expires_at)
                    }
                    other => (other.value(kind, || opath.clone())?, None),
                };
                overrides.push(Override {
                    feature: key,
                    value,
                    expires_at,
                });
            }
            customers.push(Customer {
                id: raw.id,
                subscriptions,
                overrides,
            });
        }
        Catalog::new(features, products, customers)
    }
}

/// Serializes a value as the catalog writes it: `true`/`false`, a number, or `"unlimited"`.
pub(crate) fn value_json(value: Value) -> serde_json::Value {
    match value {
        Value::Flag(b) => serde_json::Value::Bool(b),
        Value::Limit(Limit::Finite(n)) => serde_json::Value::from(n),
        Value::Limit(Limit::Unlimited) => serde_json::Value::from("unlimited"),
    }
}

impl Catalog {
    /// The catalog as JSON, in the shape [`Catalog::from_json`] reads.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map};
        let features: Vec<_> = self
            .features
            .iter()
            .map(|f| {
                let mut m = Map::new();
                m.insert("key".into(), json!(f.key));
                m.insert("type".into(), json!(f.kind.as_str()));
                m.insert("default".into(), value_json(f.default));
                if f.per_unit {
                    m.insert("per_unit".into(), json!(true));
                }
                serde_json::Value::Object(m)
            })
            .collect();
        let products: Vec<_> = self
            .products
            .iter()
            .map(|p| {
                let grants: Map<String, serde_json::Value> = p
                    .features
                    .iter()
                    .map(|(k, v)| (k.clone(), value_json(*v)))
                    .collect();
                json!({"id": p.id, "features": grants})
            })
            .collect();
        let customers: Vec<_> = self
            .customers
            .iter()
            .map(|c| {
                let subs: Vec<_> = c
                    .subscriptions
                    .iter()
                    .map(|s| {
                        let items: Vec<_> = s
                            .items
                            .iter()
                            .map(|i| json!({"product": i.product, "quantity": i.quantity}))
                            .collect();
                        let mut m = Map::new();
                        m.insert("id".into(), json!(s.id));
                        m.insert("status".into(), json!(s.status));
                        if let Some(t) = s.cancel_at {
                            m.insert("cancel_at".into(), json!(t));
                        }
                        m.insert("items".into(), json!(items));
                        serde_json::Value::Object(m)
                    })
                    .collect();
                let overrides: Map<String, serde_json::Value> = c
                    .overrides
                    .iter()
                    .map(|o| {
                        let v = match o.expires_at {
                            None => value_json(o.value),
                            Some(t) => json!({"value": value_json(o.value), "expires_at": t}),
                        };
                        (o.feature.clone(), v)
                    })
                    .collect();
                let mut m = Map::new();
                m.insert("id".into(), json!(c.id));
                m.insert("subscriptions".into(), json!(subs));
                if !overrides.is_empty() {
                    m.insert("overrides".into(), serde_json::Value::Object(overrides));
                }
                serde_json::Value::Object(m)
            })
            .collect();
        json!({"features": features, "products": products, "customers": customers})
    }
}
