//! Turning a snapshot back into a catalog that evaluates identically.
//!
//! A snapshot keeps evaluated answers, not the source, so `dump` reconstructs a *canonical* catalog:
//! per customer, one subscription per epoch (cancelled where the epoch ends) whose synthetic product
//! grants that epoch's subscription values, and overrides for override cells. Every customer is then
//! re-evaluated at each epoch start and compared, so a dump that would answer differently is an error,
//! never a silent divergence.

use std::collections::HashMap;

use crate::catalog::{
    Catalog, CatalogError, Customer, Feature, Item, Override, Product, Subscription,
};
use crate::model::{Cell, FeatureType, Limit, Reason, Value, RAW_UNLIMITED};
use crate::view::View;

/// A profile spelled out: (start, cells) per epoch.
type Epochs = Vec<(i64, Vec<Cell>)>;

/// A snapshot whose profiles no catalog can express (only possible for hand-made snapshots).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DumpError {
    /// An override whose value changes over time (a catalog override has one value).
    OverrideChanges {
        /// The customer's id.
        customer: String,
        /// The feature's key.
        feature: String,
    },
    /// The reconstructed catalog does not validate.
    InvalidCatalog(CatalogError),
    /// The reconstructed catalog answers differently from the snapshot for this customer.
    Diverges {
        /// The customer's id.
        customer: String,
    },
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot express the snapshot as a catalog: ")?;
        match self {
            DumpError::OverrideChanges { customer, feature } => {
                write!(
                    f,
                    "customer `{customer}`: override of `{feature}` changes value"
                )
            }
            DumpError::InvalidCatalog(e) => write!(f, "reconstructed catalog is invalid: {e}"),
            DumpError::Diverges { customer } => {
                write!(f, "customer `{customer}` has answers no catalog produces")
            }
        }
    }
}

impl std::error::Error for DumpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DumpError::InvalidCatalog(e) => Some(e),
            DumpError::OverrideChanges { .. } | DumpError::Diverges { .. } => None,
        }
    }
}

/// Reconstructs a catalog that evaluates like `view` for every customer, feature and time.
///
/// # Errors
/// [`DumpError`] when a profile has no catalog equivalent (never for snapshots built by entitle).
pub fn dump(view: &View) -> Result<Catalog, DumpError> {
    let features: Vec<Feature> = view
        .features()
        .map(|f| Feature {
            key: f.key.to_owned(),
            kind: f.kind,
            default: f.default,
            per_unit: f.per_unit,
        })
        .collect();
    let mut products: Vec<Product> = Vec::new();
    let mut product_ids: HashMap<Vec<(usize, u64)>, usize> = HashMap::new();
    let mut customers: Vec<(Customer, Epochs)> = Vec::with_capacity(view.customer_count());
    let mut failure: Option<DumpError> = None;

    view.for_each_customer(|id, profile| {
        if failure.is_some() {
            return;
        }
        let epochs: Epochs = profile
            .epochs()
            .into_iter()
            .map(|(s, c)| (s, c.to_vec()))
            .collect();
        let id = String::from_utf8_lossy(id).into_owned();
        let k = epochs.len();
        let mut overrides = Vec::new();
        // Per epoch, per feature: the combined subscription contribution wanted (None = none).
        let mut wanted: Vec<Vec<Option<u64>>> = vec![vec![None; features.len()]; k];
        for (f, feature) in features.iter().enumerate() {
            let m = epochs
                .iter()
                .position(|(_, cells)| cells[f].reason != Reason::Override)
                .unwrap_or(k);
            if m > 0 {
                let value = epochs[0].1[f].raw;
                if epochs[..m].iter().any(|(_, c)| c[f].raw != value) {
                    failure = Some(DumpError::OverrideChanges {
                        customer: id.clone(),
                        feature: feature.key.clone(),
                    });
                    return;
                }
                overrides.push(Override {
                    feature: feature.key.clone(),
                    value: Value::from_raw(feature.kind, value),
                    expires_at: epochs.get(m).map(|(s, _)| *s),
                });
            }
            for (j, w) in wanted.iter_mut().enumerate() {
                let source = j.max(m);
                w[f] = epochs
                    .get(source)
                    .filter(|(_, c)| c[f].reason == Reason::Subscription)
                    .map(|(_, c)| c[f].raw);
            }
        }
        let mut subscriptions = Vec::new();
        for j in 0..k {
            let mut grants = Vec::new();
            for (f, feature) in features.iter().enumerate() {
                let Some(g) = wanted[j][f] else { continue };
                let amount = if feature.per_unit {
                    match wanted.get(j + 1).and_then(|w| w[f]) {
                        None => g,
                        Some(_) if g == RAW_UNLIMITED => RAW_UNLIMITED,
                        Some(next) => g.saturating_sub(next),
                    }
                } else {
                    g
                };
                grants.push((f, amount));
            }
            if grants.is_empty() {
                continue;
            }
            let next = products.len();
            let p = *product_ids.entry(grants.clone()).or_insert_with(|| {
                products.push(Product {
                    id: format!("p{next}"),
                    features: grants
                        .iter()
                        .map(|&(f, raw)| {
                            (
                                features[f].key.clone(),
                                Value::from_raw(features[f].kind, raw),
                            )
                        })
                        .collect(),
                });
                next
            });
            subscriptions.push(Subscription {
                id: format!("sub_{j}"),
                status: "active".into(),
                cancel_at: epochs.get(j + 1).map(|(s, _)| *s),
                items: vec![Item {
                    product: products[p].id.clone(),
                    quantity: 1,
                }],
            });
        }
        customers.push((
            Customer {
                id,
                subscriptions,
                overrides,
            },
            epochs,
        ));
    });
    if let Some(e) = failure {
        return Err(e);
    }
    customers.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let (customers, expected): (Vec<Customer>, Vec<Epochs>) = customers.into_iter().unzip();
    let catalog = Catalog::new(features, products, customers).map_err(DumpError::InvalidCatalog)?;
    for (c, epochs) in catalog.customers().iter().zip(&expected) {
        for (start, cells) in epochs {
            if catalog.evaluate(c, *start) != *cells {
                return Err(DumpError::Diverges {
                    customer: c.id.clone(),
                });
            }
        }
    }
    Ok(catalog)
}

impl Value {
    /// The value as a limit, if it is one.
    pub fn as_limit(self) -> Option<Limit> {
        match self {
            Value::Limit(l) => Some(l),
            Value::Flag(_) => None,
        }
    }

    /// The value as a flag, if it is one.
    pub fn as_flag(self) -> Option<bool> {
        match self {
            Value::Flag(b) => Some(b),
            Value::Limit(_) => None,
        }
    }
}

impl FeatureType {
    /// The type named `"flag"` or `"limit"`.
    pub fn parse(s: &str) -> Option<FeatureType> {
        match s {
            "flag" => Some(FeatureType::Flag),
            "limit" => Some(FeatureType::Limit),
            _ => None,
        }
    }
}
