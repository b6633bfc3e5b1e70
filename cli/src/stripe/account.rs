//! The Stripe objects entitle reads, as the API returns them, and the account they make up.
//!
//! Only the fields the mapping needs are kept; everything else Stripe sends is ignored, so newer API
//! shapes still parse. A related object may come as its id or expanded: both are accepted.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

/// An Entitlements feature (`entitlements.feature`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Feature {
    /// `feat_...`
    pub id: String,
    /// The key entitle uses for the feature.
    pub lookup_key: String,
    /// Inactive (archived) features are not listed by Stripe and grant nothing.
    #[serde(default = "yes")]
    pub active: bool,
    /// `entitle_type`, `entitle_default`, `entitle_per_unit` say how the feature maps.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A product with the lookup keys of the features attached to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// `prod_...`
    pub id: String,
    /// `entitle_<lookup_key>` gives a limit feature's value for this product.
    pub metadata: BTreeMap<String, String>,
    /// Lookup keys of the active features attached (`/v1/products/{id}/features`), sorted.
    pub features: BTreeSet<String>,
}

/// A product as `/v1/products` returns it (without its features).
#[derive(Clone, Debug, Deserialize)]
pub struct RawProduct {
    /// `prod_...`
    pub id: String,
    /// Set on the object a deleted product's event carries.
    #[serde(default)]
    pub deleted: bool,
    /// The product's metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// One entry of `/v1/products/{id}/features` (`product_feature`).
#[derive(Clone, Debug, Deserialize)]
pub struct ProductFeature {
    /// The attached feature, always expanded by Stripe.
    pub entitlement_feature: Feature,
}

/// A subscription, reduced to what decides entitlements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// `sub_...`
    pub id: String,
    /// The customer's id.
    pub customer: String,
    /// Stripe's status, carried over as is.
    pub status: String,
    /// When the subscription stops granting: `cancel_at`, or the end of the current period when
    /// it is set to cancel at period end.
    pub cancel_at: Option<i64>,
    /// (product id, quantity) per item; `None` for prices without a quantity (metered).
    pub items: Vec<(String, Option<u64>)>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdOrObject {
    Id(String),
    Object { id: String },
}

impl IdOrObject {
    fn into_id(self) -> String {
        match self {
            IdOrObject::Id(id) | IdOrObject::Object { id } => id,
        }
    }
}

#[derive(Deserialize)]
struct RawSubscription {
    id: String,
    customer: IdOrObject,
    status: String,
    cancel_at: Option<i64>,
    #[serde(default)]
    cancel_at_period_end: bool,
    /// Before API version 2025-03-31 the period lives on the subscription...
    current_period_end: Option<i64>,
    items: RawList<RawItem>,
}

#[derive(Deserialize)]
struct RawItem {
    price: Option<RawPrice>,
    plan: Option<RawPrice>,
    quantity: Option<u64>,
    /// ...from it on, on each item.
    current_period_end: Option<i64>,
}

#[derive(Deserialize)]
struct RawPrice {
    product: IdOrObject,
}

#[derive(Deserialize)]
struct RawList<T> {
    data: Vec<T>,
}

fn yes() -> bool {
    true
}

/// Parses a subscription object (as listed, retrieved, or carried by an event).
///
/// # Errors
/// A message naming the subscription when a field entitle needs is missing or has the wrong type.
pub fn parse_subscription(object: &Value) -> Result<Subscription, String> {
    let raw: RawSubscription = serde_json::from_value(object.clone()).map_err(|e| {
        let id = object.get("id").and_then(Value::as_str).unwrap_or("?");
        format!("subscription {id}: unexpected shape: {e}")
    })?;
    let mut items = Vec::with_capacity(raw.items.data.len());
    let mut item_period_end: Option<i64> = None;
    for item in raw.items.data {
        let price = item.price.or(item.plan).ok_or_else(|| {
            format!(
                "subscription {}: an item has neither price nor plan",
                raw.id
            )
        })?;
        items.push((price.product.into_id(), item.quantity));
        if let Some(end) = item.current_period_end {
            item_period_end = Some(item_period_end.map_or(end, |e: i64| e.min(end)));
        }
    }
    Ok(Subscription {
        cancel_at: effective_cancel_at(
            raw.cancel_at,
            raw.cancel_at_period_end,
            raw.current_period_end.or(item_period_end),
        ),
        id: raw.id,
        customer: raw.customer.into_id(),
        status: raw.status,
        items,
    })
}

/// When a subscription stops granting: Stripe's `cancel_at` when set; otherwise, for one set to
/// cancel at period end, the end of its current period (the earliest item's, when items carry it).
pub fn effective_cancel_at(
    cancel_at: Option<i64>,
    cancel_at_period_end: bool,
    period_end: Option<i64>,
) -> Option<i64> {
    match (cancel_at, cancel_at_period_end) {
        (Some(t), _) => Some(t),
        (None, true) => period_end,
        (None, false) => None,
    }
}

/// Parses a feature object.
///
/// # Errors
/// A message naming the object when it is not a feature.
pub fn parse_feature(object: &Value) -> Result<Feature, String> {
    serde_json::from_value(object.clone()).map_err(|e| {
        let id = object.get("id").and_then(Value::as_str).unwrap_or("?");
        format!("feature {id}: unexpected shape: {e}")
    })
}

/// Parses a product object.
///
/// # Errors
/// A message naming the object when it is not a product.
pub fn parse_product(object: &Value) -> Result<RawProduct, String> {
    serde_json::from_value(object.clone()).map_err(|e| {
        let id = object.get("id").and_then(Value::as_str).unwrap_or("?");
        format!("product {id}: unexpected shape: {e}")
    })
}

/// Parses a `product_feature` object.
///
/// # Errors
/// A message when the object is not a product feature.
pub fn parse_product_feature(object: &Value) -> Result<ProductFeature, String> {
    serde_json::from_value(object.clone()).map_err(|e| {
        let id = object.get("id").and_then(Value::as_str).unwrap_or("?");
        format!("product feature {id}: unexpected shape: {e}")
    })
}

/// Everything of a Stripe account that decides entitlements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Active features by id.
    pub features: BTreeMap<String, Feature>,
    /// Products by id.
    pub products: BTreeMap<String, Product>,
    /// Subscriptions by id.
    pub subscriptions: BTreeMap<String, Subscription>,
}

impl Account {
    /// Replaces every subscription of `customer` with `subs`.
    pub fn set_customer_subscriptions(&mut self, customer: &str, subs: Vec<Subscription>) {
        self.subscriptions.retain(|_, s| s.customer != customer);
        for s in subs {
            self.subscriptions.insert(s.id.clone(), s);
        }
    }

    /// Product ids the subscriptions of `customer` name, sorted.
    pub fn customer_products(&self, customer: &str) -> BTreeSet<String> {
        self.subscriptions
            .values()
            .filter(|s| s.customer == customer)
            .flat_map(|s| s.items.iter().map(|(p, _)| p.clone()))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(extra: Value, items: Value) -> Value {
        let mut s = json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
            "cancel_at": null, "cancel_at_period_end": false, "items": {"object": "list", "data": items}
        });
        if let (Some(m), Value::Object(e)) = (s.as_object_mut(), extra) {
            m.extend(e);
        }
        s
    }

    #[test]
    fn subscriptions_parse_from_the_shapes_stripe_sends() {
        let price_id = json!([{"price": {"id": "price_1", "product": "prod_a"}, "quantity": 3}]);
        let price_obj = json!([{"price": {"id": "price_1", "product": {"id": "prod_a", "object": "product"}}, "quantity": 3}]);
        let plan_only = json!([{"plan": {"id": "plan_1", "product": "prod_a"}, "quantity": 3}]);
        let metered = json!([{"price": {"id": "price_1", "product": "prod_a"}}]);
        let cases: Vec<(&str, Value, Value, Option<i64>, Option<u64>)> = vec![
            ("product id", json!({}), price_id.clone(), None, Some(3)),
            ("expanded product", json!({}), price_obj, None, Some(3)),
            ("legacy plan", json!({}), plan_only, None, Some(3)),
            ("metered: no quantity", json!({}), metered, None, None),
            (
                "cancel_at",
                json!({"cancel_at": 1900}),
                price_id.clone(),
                Some(1900),
                Some(3),
            ),
            (
                "cancel at period end (subscription period)",
                json!({"cancel_at_period_end": true, "current_period_end": 1800}),
                price_id.clone(),
                Some(1800),
                Some(3),
            ),
            (
                "cancel at period end (item periods)",
                json!({"cancel_at_period_end": true}),
                json!([
                    {"price": {"product": "prod_a"}, "quantity": 3, "current_period_end": 1700},
                    {"price": {"product": "prod_b"}, "quantity": 1, "current_period_end": 1600}
                ]),
                Some(1600),
                Some(3),
            ),
            (
                "period end without cancellation",
                json!({"current_period_end": 1800}),
                price_id.clone(),
                None,
                Some(3),
            ),
            (
                "expanded customer",
                json!({"customer": {"id": "cus_1", "object": "customer"}}),
                price_id,
                None,
                Some(3),
            ),
        ];
        for (name, extra, items, cancel_at, quantity) in cases {
            let s =
                parse_subscription(&sub(extra, items)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.customer, "cus_1", "{name}");
            assert_eq!(s.cancel_at, cancel_at, "{name}");
            assert_eq!(s.items[0], ("prod_a".to_owned(), quantity), "{name}");
        }
    }

    #[test]
    fn malformed_subscriptions_name_themselves() {
        let cases = [
            json!({"id": "sub_x", "status": "active", "items": {"data": []}}),
            json!({"id": "sub_x", "customer": "c", "status": 3, "items": {"data": []}}),
            json!({"id": "sub_x", "customer": "c", "status": "active", "items": {"data": [{"quantity": 1}]}}),
        ];
        for case in cases {
            let err = parse_subscription(&case).unwrap_err();
            assert!(err.contains("sub_x"), "{err}");
        }
    }

    #[test]
    fn customer_subscriptions_are_replaced_whole() {
        let mut account = Account::default();
        let s = |id: &str, c: &str| Subscription {
            id: id.into(),
            customer: c.into(),
            status: "active".into(),
            cancel_at: None,
            items: vec![("prod_a".into(), Some(1))],
        };
        account.set_customer_subscriptions("cus_1", vec![s("sub_1", "cus_1"), s("sub_2", "cus_1")]);
        account.set_customer_subscriptions("cus_2", vec![s("sub_3", "cus_2")]);
        account.set_customer_subscriptions("cus_1", vec![s("sub_2", "cus_1")]);
        let ids: Vec<_> = account.subscriptions.keys().cloned().collect();
        assert_eq!(ids, ["sub_2", "sub_3"]);
        assert_eq!(account.customer_products("cus_2").len(), 1);
    }
}
