//! Writing a catalog back as JSON, in the shape [`Catalog::from_json`] reads.

use super::Catalog;
use crate::model::{Limit, Value};

/// Serializes a value as the catalog writes it: `true`/`false`, a number, or `"unlimited"`.
fn value_json(value: Value) -> serde_json::Value {
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
