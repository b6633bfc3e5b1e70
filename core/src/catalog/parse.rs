//! Reading the JSON source: serde reads it into loose "raw" shapes, so that structural errors carry
//! their path and values their expected type, then [`Catalog::new`] validates the whole.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{Catalog, CatalogError, Customer, Feature, Override, Product, Subscription};
use crate::model::{FeatureType, Limit, Value, MAX_LIMIT};

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
pub(super) fn de_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Loose::deserialize(d)?
        .timestamp()
        .map_err(de::Error::custom)
}

/// Reads a `quantity`: a whole number >= 0; null means the default, 1.
pub(super) fn de_quantity<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Loose::deserialize(d)? {
        Loose::Null => Ok(1),
        other => other.whole().map_err(de::Error::custom),
    }
}

pub(super) fn one() -> u64 {
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
