//! The customer-state API in the shape of Spackle's (`GET /v1/customers/{id}/state`), answered from
//! the snapshot in memory.
//!
//! Every feature of the snapshot is listed, in snapshot order, with the customer's value:
//! `{"id", "name", "key", "type", "value_flag", "value_limit"}`, `type` 0 for a flag (`value_flag`
//! a boolean, `value_limit` null) and 1 for a limit (`value_flag` null, `value_limit` a number or
//! null for unlimited). A snapshot carries no feature names and no database ids: `name` is the key
//! and `id` the feature's 1-based position. It carries no Stripe subscription objects either:
//! `subscriptions` is an empty list.

use entitle_core::{Decision, FeatureType, Limit, Reason, View};
use serde_json::{json, Value};

/// The state document for `customer` at unix time `at`; `None` when the snapshot does not know the
/// customer (every feature answered `customer_not_found`, or no features at all).
pub fn customer_state(view: &View, customer: &str, at: i64) -> Option<Value> {
    let mut known = false;
    let features: Vec<Value> = view
        .entitlements_at(customer, at)
        .enumerate()
        .map(|(i, (info, decision))| {
            known |= decision.reason != Reason::CustomerNotFound;
            feature_json(i + 1, info.key, info.kind, &decision)
        })
        .collect();
    known.then(|| json!({"version": 1, "features": features, "subscriptions": []}))
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
    use entitle_core::{BuildOptions, Catalog, Snapshot};

    #[test]
    fn spackle_shape() {
        let c = Catalog::from_json(
            br#"{"features": [{"key": "sso", "type": "flag", "default": false},
                              {"key": "seats", "type": "limit", "default": 1}],
                 "customers": [{"id": "cus_a", "overrides": {"sso": true, "seats": "unlimited"}}]}"#,
        )
        .unwrap();
        let view = View::from(Snapshot::build(&c, BuildOptions::default()).unwrap());
        let state = customer_state(&view, "cus_a", 0).unwrap();
        assert_eq!(
            state,
            json!({"version": 1, "subscriptions": [], "features": [
                {"id": 1, "name": "sso", "key": "sso", "type": 0, "value_flag": true, "value_limit": null},
                {"id": 2, "name": "seats", "key": "seats", "type": 1, "value_flag": null, "value_limit": null}
            ]})
        );
        assert!(customer_state(&view, "cus_nobody", 0).is_none());
    }
}
