//! Validation: every cross-reference and value of a catalog, checked before one exists.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use super::{Catalog, CatalogError, Customer, Feature, Product};
use crate::hash::{FastMap, FastState};
use crate::model::{FeatureType, Limit, Value, MAX_LIMIT};

impl Catalog {
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
