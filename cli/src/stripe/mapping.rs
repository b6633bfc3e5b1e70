//! From a Stripe account (and the user's own catalog file) to an entitle catalog: pure functions.
//!
//! The rules are written out in docs/stripe.md. The output is deterministic: features sorted by key,
//! products and customers by id, subscriptions by id, items by product then quantity, object keys
//! sorted, one line per feature, product and customer — the same account and base file always give
//! the same bytes.

use std::collections::BTreeMap;

use entitle_core::Catalog;
use serde_json::{json, Map, Value};

use super::account::{Account, Feature, Subscription};

/// Metadata key on a feature: `flag` (the default) or `limit`.
pub const META_TYPE: &str = "entitle_type";
/// Metadata key on a feature: its default (`true`/`false` for a flag; a whole number or
/// `unlimited` for a limit).
pub const META_DEFAULT: &str = "entitle_default";
/// Metadata key on a limit feature: `true` when each unit of quantity counts (seats).
pub const META_PER_UNIT: &str = "entitle_per_unit";
/// Prefix of the product metadata key that gives a limit's value: `entitle_<lookup_key>`.
pub const META_PRODUCT_PREFIX: &str = "entitle_";

/// A limit value as metadata writes it: a whole number `0..=i64::MAX` or `unlimited`.
fn limit_value(text: &str) -> Option<Value> {
    if text == "unlimited" {
        return Some(json!("unlimited"));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().map(|n| json!(n))
}

fn flag_value(text: &str) -> Option<Value> {
    match text {
        "true" => Some(json!(true)),
        "false" => Some(json!(false)),
        _ => None,
    }
}

/// A Stripe feature as a catalog feature object (`key`, `type`, `default`, `per_unit` when true).
///
/// # Errors
/// A message naming the feature's lookup key and the metadata entry that is wrong.
pub fn feature_json(feature: &Feature) -> Result<Value, String> {
    let key = &feature.lookup_key;
    let meta = |k: &str| feature.metadata.get(k).map(String::as_str);
    let bad =
        |k: &str, v: &str, want: &str| format!("feature {key}: metadata {k}={v:?} is not {want}");
    let kind = meta(META_TYPE).unwrap_or("flag");
    let mut m = Map::new();
    m.insert("key".into(), json!(key));
    match kind {
        "flag" => {
            let default = match meta(META_DEFAULT) {
                None => json!(false),
                Some(v) => flag_value(v).ok_or_else(|| bad(META_DEFAULT, v, "true or false"))?,
            };
            if let Some(v) = meta(META_PER_UNIT) {
                if v != "false" {
                    return Err(format!(
                        "feature {key}: metadata {META_PER_UNIT} is only for limits ({META_TYPE}=limit)"
                    ));
                }
            }
            m.insert("type".into(), json!("flag"));
            m.insert("default".into(), default);
        }
        "limit" => {
            let default = match meta(META_DEFAULT) {
                None => json!(0),
                Some(v) => limit_value(v)
                    .ok_or_else(|| bad(META_DEFAULT, v, "a whole number or \"unlimited\""))?,
            };
            let per_unit = match meta(META_PER_UNIT) {
                None | Some("false") => false,
                Some("true") => true,
                Some(v) => return Err(bad(META_PER_UNIT, v, "true or false")),
            };
            m.insert("type".into(), json!("limit"));
            m.insert("default".into(), default);
            if per_unit {
                m.insert("per_unit".into(), json!(true));
            }
        }
        other => return Err(bad(META_TYPE, other, "flag or limit")),
    }
    Ok(Value::Object(m))
}

/// The catalog part that comes from Stripe, before merging with a base file.
struct Parts {
    /// key → feature object
    features: BTreeMap<String, Value>,
    /// product id → (feature key → value)
    products: BTreeMap<String, BTreeMap<String, Value>>,
    /// customer id → subscription objects by id
    customers: BTreeMap<String, BTreeMap<String, Value>>,
    /// customer id → overrides (base file only)
    overrides: BTreeMap<String, Value>,
}

fn subscription_json(s: &Subscription) -> Value {
    let mut items: Vec<(String, Option<u64>)> = s.items.clone();
    items.sort();
    let items: Vec<Value> = items
        .into_iter()
        .map(|(product, quantity)| match quantity {
            Some(q) => json!({"product": product, "quantity": q}),
            None => json!({"product": product}),
        })
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(s.id));
    m.insert("status".into(), json!(s.status));
    if let Some(t) = s.cancel_at {
        m.insert("cancel_at".into(), json!(t));
    }
    m.insert("items".into(), Value::Array(items));
    Value::Object(m)
}

fn stripe_parts(account: &Account) -> Result<Parts, String> {
    let mut features = BTreeMap::new();
    // lookup key → is a limit
    let mut kinds: BTreeMap<&str, bool> = BTreeMap::new();
    for f in account.features.values().filter(|f| f.active) {
        let value = feature_json(f)?;
        if features
            .insert(f.lookup_key.clone(), value.clone())
            .is_some()
        {
            return Err(format!(
                "feature {}: two active features share this lookup key",
                f.lookup_key
            ));
        }
        kinds.insert(&f.lookup_key, value["type"] == "limit");
    }
    let mut products = BTreeMap::new();
    for p in account.products.values() {
        let mut grants = BTreeMap::new();
        for key in &p.features {
            let Some(&is_limit) = kinds.get(key.as_str()) else {
                continue; // archived feature: Stripe grants nothing for it
            };
            let value = if is_limit {
                let meta_key = format!("{META_PRODUCT_PREFIX}{key}");
                let text = p.metadata.get(&meta_key).ok_or_else(|| {
                    format!(
                        "product {}: feature {key} is a limit but the product has no metadata {meta_key} (a whole number or \"unlimited\")",
                        p.id
                    )
                })?;
                limit_value(text).ok_or_else(|| {
                    format!(
                        "product {}: metadata {meta_key}={text:?} is not a whole number or \"unlimited\"",
                        p.id
                    )
                })?
            } else {
                json!(true)
            };
            grants.insert(key.clone(), value);
        }
        if !grants.is_empty() {
            products.insert(p.id.clone(), grants);
        }
    }
    let mut customers: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for s in account.subscriptions.values() {
        customers
            .entry(s.customer.clone())
            .or_default()
            .insert(s.id.clone(), subscription_json(s));
    }
    Ok(Parts {
        features,
        products,
        customers,
        overrides: BTreeMap::new(),
    })
}

/// Adds the user's catalog file to the Stripe part (rules in docs/stripe.md): features and products
/// only one side has are kept; a feature both define must be defined alike; a product both define
/// gets both sides' features, which must agree where both set one; customers get the base file's
/// subscriptions and overrides beside Stripe's subscriptions (subscription ids must not clash).
fn merge_base(parts: &mut Parts, base: &Catalog, base_name: &str) -> Result<(), String> {
    let base = base.to_json();
    let empty = Vec::new();
    let list = |k: &str| base[k].as_array().unwrap_or(&empty).clone();
    for f in list("features") {
        let key = f["key"].as_str().unwrap_or_default().to_owned();
        match parts.features.get(&key) {
            None => {
                parts.features.insert(key, f);
            }
            Some(existing) if *existing == f => {}
            Some(existing) => {
                return Err(format!(
                    "feature {key}: Stripe defines it as {existing} and {base_name} as {f}; define it alike in both or in one only"
                ))
            }
        }
    }
    for p in list("products") {
        let id = p["id"].as_str().unwrap_or_default().to_owned();
        let grants = parts.products.entry(id.clone()).or_default();
        if let Some(features) = p["features"].as_object() {
            for (k, v) in features {
                match grants.get(k) {
                    None => {
                        grants.insert(k.clone(), v.clone());
                    }
                    Some(existing) if existing == v => {}
                    Some(existing) => {
                        return Err(format!(
                            "product {id}: feature {k} is {existing} from Stripe and {v} in {base_name}"
                        ))
                    }
                }
            }
        }
    }
    for c in list("customers") {
        let id = c["id"].as_str().unwrap_or_default().to_owned();
        let subs = parts.customers.entry(id.clone()).or_default();
        for s in c["subscriptions"].as_array().unwrap_or(&empty) {
            let sid = s["id"].as_str().unwrap_or_default().to_owned();
            if subs.contains_key(&sid) {
                return Err(format!(
                    "customer {id}: subscription {sid} is both in Stripe and in {base_name}"
                ));
            }
            subs.insert(sid, s.clone());
        }
        if let Some(o) = c.get("overrides") {
            parts.overrides.insert(id, o.clone());
        }
    }
    Ok(())
}

/// Reads the user's catalog file (`name` is how errors call it). It may use Stripe's features
/// without declaring them: those it does not declare are added before it is checked, so its errors
/// name their place (`customers[0].overrides.seats: ...`) as `entitle check` would.
///
/// # Errors
/// A message naming the file and the place in it, or a Stripe feature whose metadata is wrong.
pub fn parse_base(bytes: &[u8], account: &Account, name: &str) -> Result<Catalog, String> {
    let mut doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{name}: not JSON: {e}"))?;
    if let Some(features) = doc.get_mut("features").and_then(Value::as_array_mut) {
        let declared: Vec<Value> = features.iter().map(|f| f["key"].clone()).collect();
        for f in account.features.values().filter(|f| f.active) {
            if !declared.contains(&json!(f.lookup_key)) {
                features.push(feature_json(f)?);
            }
        }
    }
    let text = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    Catalog::from_json(&text).map_err(|e| format!("{name}: {e}"))
}

/// The catalog for `account`, merged with the user's catalog file when given (its bytes and the
/// name errors use), as the JSON text `entitle stripe pull` writes (ends with a newline). The
/// result is checked by [`Catalog::from_json`].
///
/// # Errors
/// A message naming the Stripe object (feature, product) or the base file entry that is wrong.
pub fn catalog_text(account: &Account, base: Option<(&[u8], &str)>) -> Result<String, String> {
    let mut parts = stripe_parts(account)?;
    if let Some((bytes, name)) = base {
        let catalog = parse_base(bytes, account, name)?;
        merge_base(&mut parts, &catalog, name)?;
    }
    let features: Vec<Value> = parts.features.into_values().collect();
    let products: Vec<Value> = parts
        .products
        .into_iter()
        .map(|(id, grants)| json!({"id": id, "features": grants}))
        .collect();
    let mut ids: Vec<&String> = parts.customers.keys().collect();
    ids.extend(parts.overrides.keys());
    ids.sort();
    ids.dedup();
    let customers: Vec<Value> = ids
        .into_iter()
        .map(|id| {
            let mut m = Map::new();
            m.insert("id".into(), json!(id));
            let subs: Vec<Value> = parts
                .customers
                .get(id)
                .map(|s| s.values().cloned().collect())
                .unwrap_or_default();
            m.insert("subscriptions".into(), Value::Array(subs));
            if let Some(o) = parts.overrides.get(id) {
                m.insert("overrides".into(), o.clone());
            }
            Value::Object(m)
        })
        .collect();
    // One line per feature, product and customer: readable, and a change is a one-line diff.
    let mut text = String::from("{\n");
    let sections = [
        ("features", features),
        ("products", products),
        ("customers", customers),
    ];
    for (i, (name, entries)) in sections.iter().enumerate() {
        text.push_str(&format!("  \"{name}\": ["));
        for (j, entry) in entries.iter().enumerate() {
            text.push_str(if j == 0 { "\n    " } else { ",\n    " });
            text.push_str(&serde_json::to_string(entry).map_err(|e| e.to_string())?);
        }
        text.push_str(if entries.is_empty() { "]" } else { "\n  ]" });
        text.push_str(if i + 1 < sections.len() { ",\n" } else { "\n" });
    }
    text.push_str("}\n");
    Catalog::from_json(text.as_bytes())
        .map_err(|e| format!("the catalog made from Stripe: {e}"))?;
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::stripe::account::Product;
    use std::collections::BTreeSet;

    fn feature(key: &str, meta: &[(&str, &str)]) -> Feature {
        Feature {
            id: format!("feat_{key}"),
            lookup_key: key.into(),
            active: true,
            metadata: meta
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn features_map_from_metadata() {
        let cases: Vec<(&[(&str, &str)], Result<Value, &str>)> = vec![
            (
                &[],
                Ok(json!({"key": "f", "type": "flag", "default": false})),
            ),
            (
                &[("entitle_default", "true")],
                Ok(json!({"key": "f", "type": "flag", "default": true})),
            ),
            (
                &[("entitle_type", "flag")],
                Ok(json!({"key": "f", "type": "flag", "default": false})),
            ),
            (
                &[("entitle_type", "limit")],
                Ok(json!({"key": "f", "type": "limit", "default": 0})),
            ),
            (
                &[("entitle_type", "limit"), ("entitle_default", "5")],
                Ok(json!({"key": "f", "type": "limit", "default": 5})),
            ),
            (
                &[("entitle_type", "limit"), ("entitle_default", "unlimited")],
                Ok(json!({"key": "f", "type": "limit", "default": "unlimited"})),
            ),
            (
                &[("entitle_type", "limit"), ("entitle_per_unit", "true")],
                Ok(json!({"key": "f", "type": "limit", "default": 0, "per_unit": true})),
            ),
            (
                &[("entitle_type", "limit"), ("entitle_per_unit", "false")],
                Ok(json!({"key": "f", "type": "limit", "default": 0})),
            ),
            (
                &[("other", "x")],
                Ok(json!({"key": "f", "type": "flag", "default": false})),
            ),
            (&[("entitle_type", "Limit")], Err("entitle_type")),
            (
                &[("entitle_type", "limit"), ("entitle_default", "-1")],
                Err("entitle_default"),
            ),
            (
                &[("entitle_type", "limit"), ("entitle_default", "5.0")],
                Err("entitle_default"),
            ),
            (
                &[("entitle_type", "limit"), ("entitle_default", "")],
                Err("entitle_default"),
            ),
            (
                &[
                    ("entitle_type", "limit"),
                    ("entitle_default", "9223372036854775808"),
                ],
                Err("entitle_default"),
            ),
            (
                &[("entitle_type", "limit"), ("entitle_per_unit", "yes")],
                Err("entitle_per_unit"),
            ),
            (&[("entitle_per_unit", "true")], Err("only for limits")),
            (&[("entitle_default", "1")], Err("entitle_default")),
        ];
        for (meta, want) in cases {
            let got = feature_json(&feature("f", meta));
            match (got, want) {
                (Ok(v), Ok(w)) => assert_eq!(v, w, "{meta:?}"),
                (Err(e), Err(w)) => {
                    assert!(e.contains(w) && e.contains("feature f"), "{meta:?}: {e}")
                }
                (got, want) => panic!("{meta:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn account() -> Account {
        let mut a = Account::default();
        for f in [
            feature("sso", &[]),
            feature(
                "projects",
                &[("entitle_type", "limit"), ("entitle_default", "3")],
            ),
            feature(
                "seats",
                &[("entitle_type", "limit"), ("entitle_per_unit", "true")],
            ),
        ] {
            a.features.insert(f.id.clone(), f);
        }
        let product = |id: &str, meta: &[(&str, &str)], features: &[&str]| Product {
            id: id.into(),
            metadata: meta
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            features: features
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>(),
        };
        for p in [
            product(
                "prod_pro",
                &[
                    ("entitle_projects", "50"),
                    ("entitle_seats", "1"),
                    ("entitle_unused", "x"),
                ],
                &["sso", "projects", "seats"],
            ),
            product(
                "prod_ent",
                &[("entitle_projects", "unlimited")],
                &["projects", "archived"],
            ),
            product("prod_bare", &[], &[]),
        ] {
            a.products.insert(p.id.clone(), p);
        }
        let sub = |id: &str, c: &str, status: &str, cancel_at, items: Vec<(&str, Option<u64>)>| {
            Subscription {
                id: id.into(),
                customer: c.into(),
                status: status.into(),
                cancel_at,
                items: items.into_iter().map(|(p, q)| (p.to_owned(), q)).collect(),
            }
        };
        for s in [
            sub(
                "sub_2",
                "cus_b",
                "trialing",
                Some(1900),
                vec![("prod_pro", Some(4))],
            ),
            sub(
                "sub_1",
                "cus_a",
                "active",
                None,
                vec![("prod_pro", Some(2)), ("prod_ent", None)],
            ),
            sub(
                "sub_3",
                "cus_a",
                "canceled",
                None,
                vec![("prod_pro", Some(9))],
            ),
        ] {
            a.subscriptions.insert(s.id.clone(), s);
        }
        a
    }

    #[test]
    fn an_account_becomes_a_sorted_valid_catalog() {
        let text = catalog_text(&account(), None).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc,
            json!({
                "features": [
                    {"key": "projects", "type": "limit", "default": 3},
                    {"key": "seats", "type": "limit", "default": 0, "per_unit": true},
                    {"key": "sso", "type": "flag", "default": false}
                ],
                "products": [
                    {"id": "prod_ent", "features": {"projects": "unlimited"}},
                    {"id": "prod_pro", "features": {"projects": 50, "seats": 1, "sso": true}}
                ],
                "customers": [
                    {"id": "cus_a", "subscriptions": [
                        {"id": "sub_1", "status": "active",
                         "items": [{"product": "prod_ent"}, {"product": "prod_pro", "quantity": 2}]},
                        {"id": "sub_3", "status": "canceled",
                         "items": [{"product": "prod_pro", "quantity": 9}]}
                    ]},
                    {"id": "cus_b", "subscriptions": [
                        {"id": "sub_2", "status": "trialing", "cancel_at": 1900,
                         "items": [{"product": "prod_pro", "quantity": 4}]}
                    ]}
                ]
            })
        );
        let catalog = Catalog::from_json(text.as_bytes()).unwrap();
        let limit = |c: &str, f: &str, at: i64| {
            catalog
                .check(c, f, at)
                .limit()
                .map(|l| format!("{l:?}"))
                .unwrap_or_default()
        };
        assert_eq!(limit("cus_a", "projects", 0), "Unlimited");
        assert_eq!(limit("cus_a", "seats", 0), "Finite(2)");
        assert_eq!(limit("cus_b", "seats", 1899), "Finite(4)");
        assert_eq!(limit("cus_b", "seats", 1900), "Finite(0)");
        assert_eq!(
            catalog_text(&account(), None).unwrap(),
            text,
            "deterministic"
        );
    }

    #[test]
    fn account_errors_name_the_object() {
        type Edit = fn(&mut Account);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |a| {
                    a.products.get_mut("prod_pro").unwrap().metadata.remove("entitle_seats");
                },
                "product prod_pro: feature seats is a limit but the product has no metadata entitle_seats",
            ),
            (
                |a| {
                    a.products
                        .get_mut("prod_ent")
                        .unwrap()
                        .metadata
                        .insert("entitle_projects".into(), "lots".into());
                },
                "product prod_ent: metadata entitle_projects=\"lots\"",
            ),
            (
                |a| {
                    let mut f = feature("sso", &[]);
                    f.id = "feat_sso_2".into();
                    a.features.insert(f.id.clone(), f);
                },
                "feature sso: two active features",
            ),
        ];
        for (edit, want) in cases {
            let mut a = account();
            edit(&mut a);
            let err = catalog_text(&a, None).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        // An archived duplicate is not a clash.
        let mut a = account();
        let mut f = feature("sso", &[("entitle_type", "limit")]);
        f.id = "feat_old".into();
        f.active = false;
        a.features.insert(f.id.clone(), f);
        assert!(catalog_text(&a, None).is_ok());
    }

    #[test]
    fn base_files_merge_by_the_documented_rules() {
        let cases: Vec<(Value, Result<&str, &str>)> = vec![
            // A feature only the base declares, with a product value and an override.
            (
                json!({"features": [{"key": "beta", "type": "flag"}],
                       "products": [{"id": "prod_pro", "features": {"beta": true}}],
                       "customers": [{"id": "cus_a", "overrides": {"projects": 7}}]}),
                Ok("beta"),
            ),
            // The same feature, defined alike: fine.
            (
                json!({"features": [{"key": "sso", "type": "flag", "default": false}]}),
                Ok("sso"),
            ),
            // A customer only the base knows, with a manual subscription.
            (
                json!({"features": [], "customers": [{"id": "cus_z", "subscriptions": [
                    {"id": "deal_1", "status": "active", "items": [{"product": "prod_pro"}]}]}]}),
                Ok("deal_1"),
            ),
            (
                json!({"features": [{"key": "sso", "type": "limit"}]}),
                Err("feature sso: Stripe defines it as"),
            ),
            (
                json!({"features": [], "products": [{"id": "prod_pro", "features": {"projects": 51}}]}),
                Err("product prod_pro: feature projects is 50 from Stripe and 51 in base.json"),
            ),
            (
                json!({"features": [], "customers": [{"id": "cus_a", "subscriptions": [
                    {"id": "sub_1", "status": "active", "items": []}]}]}),
                Err("customer cus_a: subscription sub_1 is both in Stripe and in base.json"),
            ),
        ];
        for (base, want) in cases {
            let bytes = base.to_string();
            let got = catalog_text(&account(), Some((bytes.as_bytes(), "base.json")));
            match (got, want) {
                (Ok(text), Ok(w)) => assert!(text.contains(w), "{base}: {text}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{base}: {e}"),
                (got, want) => panic!("{base}: got {got:?}, want {want:?}"),
            }
        }
        // Errors inside the base file name their place, as `entitle check` does.
        let bad =
            br#"{"features": [], "customers": [{"id": "cus_a", "overrides": {"seats": true}}]}"#;
        let err = catalog_text(&account(), Some((bad, "base.json"))).unwrap_err();
        assert!(
            err.starts_with("base.json: customers[0].overrides.seats"),
            "{err}"
        );
    }
}
