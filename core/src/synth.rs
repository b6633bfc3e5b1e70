//! A deterministic generator of realistic catalogs, for benchmarks and load tests.
//!
//! Compiled with the cargo feature `synth` (the CLI, benchmarks and fuzzing enable it); not part of
//! the engine's API.
//!
//! The shape follows a typical B2B SaaS: free / starter / pro / enterprise plans, per-seat pricing,
//! a storage add-on, trials, past-due and cancelled subscriptions, scheduled cancellations and a few
//! overrides. The same `customers` and `seed` always give the same JSON.

use std::fmt::Write;

/// A small, fast, deterministic PRNG (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform-ish in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// SplitMix64's finalizer: a bijection on u64, so distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A Stripe-like customer id (`cus_` + 14 characters), unique per index for a given seed.
pub fn customer_id(index: u64, seed: u64) -> String {
    let mut v = mix(index ^ mix(seed));
    let mut id = String::with_capacity(18);
    id.push_str("cus_");
    // 11 base-62 digits hold any u64, so the id is unique per index.
    for _ in 0..11 {
        id.push(BASE62[(v % 62) as usize] as char);
        v /= 62;
    }
    let mut tail = mix(index.wrapping_add(seed).wrapping_mul(31));
    for _ in 0..3 {
        id.push(BASE62[(tail % 62) as usize] as char);
        tail /= 62;
    }
    id
}

/// The reference instant synthetic times are drawn around (2026-01-01T00:00:00Z).
pub const SYNTH_EPOCH: i64 = 1_767_225_600;

const CATALOG_HEAD: &str = r#"{
  "features": [
    {"key": "sso", "type": "flag", "default": false},
    {"key": "audit_log", "type": "flag", "default": false},
    {"key": "api_access", "type": "flag", "default": true},
    {"key": "priority_support", "type": "flag", "default": false},
    {"key": "webhooks", "type": "flag", "default": false},
    {"key": "projects", "type": "limit", "default": 3},
    {"key": "seats", "type": "limit", "default": 1, "per_unit": true},
    {"key": "api_calls", "type": "limit", "default": 1000},
    {"key": "storage_gb", "type": "limit", "default": 1, "per_unit": true},
    {"key": "custom_domains", "type": "limit", "default": 0}
  ],
  "products": [
    {"id": "prod_free", "features": {"projects": 3, "seats": 1, "api_calls": 1000}},
    {"id": "prod_starter", "features": {"projects": 10, "seats": 1, "api_calls": 10000, "webhooks": true}},
    {"id": "prod_pro", "features": {"sso": true, "projects": 50, "seats": 1, "api_calls": 100000, "webhooks": true, "custom_domains": 3}},
    {"id": "prod_enterprise", "features": {"sso": true, "audit_log": true, "priority_support": true, "webhooks": true, "projects": "unlimited", "seats": 1, "api_calls": "unlimited", "custom_domains": "unlimited"}},
    {"id": "addon_storage", "features": {"storage_gb": 10}},
    {"id": "addon_audit", "features": {"audit_log": true}}
  ],
  "customers": [
"#;

/// Generates a catalog of `customers` customers as JSON text.
///
/// # Examples
/// ```
/// let json = entitle_core::synth::catalog_json(100, 7);
/// let catalog = entitle_core::Catalog::from_json(json.as_bytes())?;
/// assert_eq!(catalog.customers().len(), 100);
/// assert_eq!(json, entitle_core::synth::catalog_json(100, 7));
/// # Ok::<(), entitle_core::CatalogError>(())
/// ```
pub fn catalog_json(customers: u64, seed: u64) -> String {
    let mut out = String::with_capacity(CATALOG_HEAD.len() + customers as usize * 170);
    out.push_str(CATALOG_HEAD);
    let mut rng = Rng(seed);
    for i in 0..customers {
        if i > 0 {
            out.push_str(",\n");
        }
        customer(&mut out, &mut rng, i, seed);
    }
    out.push_str("\n  ]\n}\n");
    out
}

fn customer(out: &mut String, rng: &mut Rng, index: u64, seed: u64) {
    let id = customer_id(index, seed);
    let _ = write!(out, r#"    {{"id": "{id}", "subscriptions": ["#);
    let roll = rng.below(100);
    let plan = match roll {
        0..=29 => None,
        30..=54 => Some(("prod_free", "active", 1)),
        55..=74 => Some(("prod_starter", "active", rng.range(1, 5))),
        75..=86 => Some(("prod_pro", "active", rng.range(1, 50))),
        87..=89 => Some(("prod_pro", "trialing", rng.range(1, 10))),
        90..=92 => Some(("prod_enterprise", "active", rng.range(10, 500))),
        93..=95 => Some(("prod_pro", "past_due", rng.range(1, 20))),
        _ => Some(("prod_pro", "canceled", rng.range(1, 20))),
    };
    if let Some((product, status, quantity)) = plan {
        let _ = write!(out, r#"{{"id": "sub_{index}", "status": "{status}""#);
        if product != "prod_free" && rng.below(100) < 5 {
            let _ = write!(
                out,
                r#", "cancel_at": {}"#,
                SYNTH_EPOCH + rng.below(365 * 86_400) as i64
            );
        }
        let _ = write!(
            out,
            r#", "items": [{{"product": "{product}", "quantity": {quantity}}}"#
        );
        if product != "prod_free" && rng.below(100) < 10 {
            let _ = write!(
                out,
                r#", {{"product": "addon_storage", "quantity": {}}}"#,
                rng.range(1, 10)
            );
        }
        out.push_str("]}");
    }
    out.push(']');
    if rng.below(100) < 2 {
        if rng.below(2) == 0 {
            out.push_str(r#", "overrides": {"projects": 100}"#);
        } else {
            let _ = write!(
                out,
                r#", "overrides": {{"sso": {{"value": true, "expires_at": {}}}}}"#,
                SYNTH_EPOCH + rng.below(90 * 86_400) as i64
            );
        }
    }
    out.push('}');
}
