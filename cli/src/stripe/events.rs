//! Which Stripe event asks to refetch what: pure.
//!
//! Events are hints, not data: the worker fetches the object's current state, so duplicates,
//! late and out-of-order deliveries all end in the same catalog.

use serde_json::Value;

/// Something to bring up to date from the API. The order is the order work is done in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Work {
    /// Every object (startup, the periodic reconciliation).
    Everything,
    /// The account's feature list.
    Features,
    /// One product and its attached features.
    Product(String),
    /// Every subscription of one customer.
    Customer(String),
    /// The products one customer's subscriptions name (their features may have changed).
    CustomerProducts(String),
    /// One subscription.
    Subscription(String),
}

/// A verified event, reduced to what decides the work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `evt_...`: duplicates share it.
    pub id: String,
    /// e.g. `customer.subscription.updated`.
    pub kind: String,
    /// The work it asks for; empty for event types that do not change entitlements.
    pub work: Vec<Work>,
}

/// Parses an event body (already verified).
///
/// # Errors
/// A message when the body is not an event (not JSON, or no `id`, `type` or `data.object`).
pub fn parse(body: &[u8]) -> Result<Event, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let id = v["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("no event id")?;
    let kind = v["type"].as_str().ok_or("no event type")?;
    let object = v["data"]["object"].as_object().ok_or("no data.object")?;
    let object = Value::Object(object.clone());
    Ok(Event {
        id: id.to_owned(),
        kind: kind.to_owned(),
        work: work_for(kind, &object)?,
    })
}

/// The work an event of type `kind` about `object` asks for.
///
/// # Errors
/// When an event type that matters lacks the id it needs.
pub fn work_for(kind: &str, object: &Value) -> Result<Vec<Work>, String> {
    let field = |name: &str| -> Result<String, String> {
        match &object[name] {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Object(o) => o
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("{kind}: data.object.{name} has no id")),
            _ => Err(format!("{kind}: data.object.{name} is missing")),
        }
    };
    Ok(match kind {
        k if k.starts_with("customer.subscription.") => vec![Work::Subscription(field("id")?)],
        "customer.deleted" => vec![Work::Customer(field("id")?)],
        "product.created" | "product.updated" | "product.deleted" => {
            vec![Work::Product(field("id")?)]
        }
        "entitlements.active_entitlement_summary.updated" => {
            let customer = field("customer")?;
            vec![
                Work::Features,
                Work::Customer(customer.clone()),
                Work::CustomerProducts(customer),
            ]
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_map_to_work() {
        let s = |x: &str| x.to_owned();
        let cases: Vec<(&str, Value, Result<Vec<Work>, &str>)> = vec![
            (
                "customer.subscription.created",
                json!({"id": "sub_1"}),
                Ok(vec![Work::Subscription(s("sub_1"))]),
            ),
            (
                "customer.subscription.updated",
                json!({"id": "sub_1"}),
                Ok(vec![Work::Subscription(s("sub_1"))]),
            ),
            (
                "customer.subscription.deleted",
                json!({"id": "sub_1"}),
                Ok(vec![Work::Subscription(s("sub_1"))]),
            ),
            (
                "customer.subscription.paused",
                json!({"id": "sub_1"}),
                Ok(vec![Work::Subscription(s("sub_1"))]),
            ),
            (
                "customer.subscription.trial_will_end",
                json!({"id": "sub_1"}),
                Ok(vec![Work::Subscription(s("sub_1"))]),
            ),
            (
                "customer.deleted",
                json!({"id": "cus_1"}),
                Ok(vec![Work::Customer(s("cus_1"))]),
            ),
            (
                "product.updated",
                json!({"id": "prod_1"}),
                Ok(vec![Work::Product(s("prod_1"))]),
            ),
            (
                "product.deleted",
                json!({"id": "prod_1"}),
                Ok(vec![Work::Product(s("prod_1"))]),
            ),
            (
                "entitlements.active_entitlement_summary.updated",
                json!({"customer": "cus_1", "entitlements": {"data": []}}),
                Ok(vec![
                    Work::Features,
                    Work::Customer(s("cus_1")),
                    Work::CustomerProducts(s("cus_1")),
                ]),
            ),
            (
                "entitlements.active_entitlement_summary.updated",
                json!({"customer": {"id": "cus_1"}}),
                Ok(vec![
                    Work::Features,
                    Work::Customer(s("cus_1")),
                    Work::CustomerProducts(s("cus_1")),
                ]),
            ),
            ("invoice.paid", json!({"id": "in_1"}), Ok(vec![])),
            ("customer.created", json!({"id": "cus_1"}), Ok(vec![])),
            ("price.updated", json!({"id": "price_1"}), Ok(vec![])),
            (
                "customer.subscription.updated",
                json!({}),
                Err("data.object.id is missing"),
            ),
            (
                "customer.subscription.updated",
                json!({"id": ""}),
                Err("data.object.id is missing"),
            ),
            (
                "entitlements.active_entitlement_summary.updated",
                json!({}),
                Err("data.object.customer"),
            ),
        ];
        for (kind, object, want) in cases {
            let got = work_for(kind, &object);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{kind}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{kind}: {e}"),
                (got, want) => panic!("{kind}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bodies_that_are_not_events_are_refused() {
        let ok = br#"{"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}"#;
        assert_eq!(parse(ok).unwrap().work, vec![]);
        for bad in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"type": "invoice.paid", "data": {"object": {}}}"#,
            br#"{"id": "", "type": "invoice.paid", "data": {"object": {}}}"#,
            br#"{"id": "evt_1", "data": {"object": {}}}"#,
            br#"{"id": "evt_1", "type": "invoice.paid"}"#,
            br#"{"id": "evt_1", "type": "invoice.paid", "data": {"object": 3}}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
