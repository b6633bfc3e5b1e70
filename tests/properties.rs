//! Property tests of the core's invariants, over randomly generated catalogs:
//!
//! - snapshots and deltas round-trip through their bytes, bit for bit and answer for answer;
//! - a snapshot answers exactly like the reference evaluator, [`Catalog::check`];
//! - evaluation and snapshot bytes do not depend on the order of customers, products,
//!   subscriptions, items or overrides;
//! - `apply(a, diff(a, b))` answers like `b` for every customer, feature and time, also along
//!   chains of deltas, after compaction and through a [`Store`] compacting in the background;
//! - `dump` gives a catalog that answers (and compiles) like the snapshot it came from;
//! - damaged snapshot and delta bytes give an error, never a panic — also when the damage comes
//!   with a valid checksum, so that the structural validation behind it is what is tested — and
//!   whatever still decodes can be looked up, applied, dumped and compacted without panicking;
//!   decoding never makes an allocation sized by a count it has not checked against the bytes.
//!
//! "Every time" is finite because answers are piecewise constant: they can change only at a
//! `cancel_at` or an `expires_at`, so probing each such instant and the second before it (plus
//! both ends of time) visits every piece.
//!
//! The number of cases per property is 128 (256 for the damage properties); set
//! `PROPTEST_CASES` to run more or fewer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;

use entitle_core::hash::xxh64;
use entitle_core::{
    diff, dump, ApplyError, BuildOptions, Catalog, Customer, Decision, Delta, Feature, FeatureType,
    FormatError, Item, Limit, Override, Product, Reason, Snapshot, Store, Subscription, Value,
    View, MAX_LIMIT,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

// ---------------------------------------------------------------------------------------------
// Generating catalogs

/// 2026-01-01T00:00:00Z, the middle of the generated times.
const T0: i64 = 1_767_225_600;

/// Instants many customers share, so that epochs, tables and profiles are shared too; they include
/// both ends of time, where off-by-one and overflow mistakes live.
const INSTANTS: [i64; 10] = [
    i64::MIN,
    i64::MIN + 1,
    -1,
    0,
    T0 - 1,
    T0,
    T0 + 1,
    T0 + 86_400,
    i64::MAX - 1,
    i64::MAX,
];

/// Feature keys: short, long (past the 32 bytes where hashing changes path) and non-ASCII.
const FEATURE_KEYS: [&str; 6] = [
    "sso",
    "seats",
    "projects",
    "api_calls_per_month_for_the_whole_workspace",
    "stockage_go_ü",
    "x",
];

const STATUSES: [&str; 12] = [
    "active",
    "active",
    "active",
    "trialing",
    "past_due",
    "canceled",
    "unpaid",
    "incomplete",
    "incomplete_expired",
    "paused",
    "Active",
    "",
];

fn instant() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => prop::sample::select(INSTANTS.to_vec()),
        1 => T0 - 1_000..T0 + 1_000,
    ]
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        4 => (0u64..=100).prop_map(Limit::Finite),
        1 => Just(Limit::Finite(0)),
        1 => (MAX_LIMIT - 2..=MAX_LIMIT).prop_map(Limit::Finite),
        1 => (0..=MAX_LIMIT).prop_map(Limit::Finite),
        2 => Just(Limit::Unlimited),
    ]
}

fn value(kind: FeatureType) -> BoxedStrategy<Value> {
    match kind {
        FeatureType::Flag => any::<bool>().prop_map(Value::Flag).boxed(),
        FeatureType::Limit => limit().prop_map(Value::Limit).boxed(),
    }
}

fn features() -> impl Strategy<Value = Vec<Feature>> {
    prop::collection::vec((any::<bool>(), any::<bool>()), 0..=FEATURE_KEYS.len()).prop_flat_map(
        |shapes| {
            shapes
                .into_iter()
                .enumerate()
                .map(|(i, (is_limit, per_unit))| {
                    let kind = if is_limit {
                        FeatureType::Limit
                    } else {
                        FeatureType::Flag
                    };
                    value(kind).prop_map(move |default| Feature {
                        key: FEATURE_KEYS[i].to_string(),
                        kind,
                        default,
                        per_unit: is_limit && per_unit,
                    })
                })
                .collect::<Vec<_>>()
        },
    )
}

fn product_id(i: usize) -> String {
    format!("prod_{i}")
}

/// Up to four products, each granting a random subset of the features.
fn products(features: &[Feature]) -> impl Strategy<Value = Vec<Product>> {
    let keys: Vec<String> = features.iter().map(|f| f.key.clone()).collect();
    let grants: Vec<BoxedStrategy<Option<Value>>> = features
        .iter()
        .map(|f| prop::option::weighted(0.6, value(f.kind)).boxed())
        .collect();
    prop::collection::vec(grants, 0..=4).prop_map(move |products| {
        products
            .into_iter()
            .enumerate()
            .map(|(i, grants)| Product {
                id: product_id(i),
                features: keys
                    .iter()
                    .zip(grants)
                    .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
                    .collect(),
            })
            .collect()
    })
}

/// A customer's subscriptions and overrides (everything but the id).
#[derive(Clone, Debug)]
struct Body {
    subscriptions: Vec<Subscription>,
    overrides: Vec<Override>,
}

fn item(product_count: usize) -> impl Strategy<Value = Item> {
    // `product_count` itself names a product that is not in the catalog.
    let quantity = prop_oneof![
        4 => 0u64..=3,
        1 => Just(0u64),
        1 => MAX_LIMIT - 1..=MAX_LIMIT,
        1 => 0..=MAX_LIMIT,
    ];
    (0..=product_count, quantity).prop_map(|(p, quantity)| Item {
        product: product_id(p),
        quantity,
    })
}

fn body(features: &[Feature], product_count: usize) -> BoxedStrategy<Body> {
    let subscription = (
        prop::sample::select(STATUSES.to_vec()),
        prop::option::weighted(0.4, instant()),
        prop::collection::vec(item(product_count), 0..=3),
    )
        .prop_map(|(status, cancel_at, items)| Subscription {
            id: String::new(),
            status: status.to_string(),
            cancel_at,
            items,
        });
    let overrides: Vec<BoxedStrategy<Option<Override>>> = features
        .iter()
        .map(|f| {
            let key = f.key.clone();
            prop::option::weighted(0.2, (value(f.kind), prop::option::weighted(0.5, instant())))
                .prop_map(move |o| {
                    o.map(|(value, expires_at)| Override {
                        feature: key.clone(),
                        value,
                        expires_at,
                    })
                })
                .boxed()
        })
        .collect();
    (prop::collection::vec(subscription, 0..=3), overrides)
        .prop_map(|(mut subscriptions, overrides)| {
            for (k, s) in subscriptions.iter_mut().enumerate() {
                s.id = format!("sub_{k}");
            }
            Body {
                subscriptions,
                overrides: overrides.into_iter().flatten().collect(),
            }
        })
        .boxed()
}

/// Customer ids of several shapes; the shape-specific parts keep them unique for distinct `i`.
fn customer_id(i: usize, style: u8) -> String {
    match style % 6 {
        0 => format!("cus_{i}"),
        // Exactly the 19 bytes a slot stores inline, and one more (stored in the string area).
        1 => format!("{i:0>19}"),
        2 => format!("{i:0>20}"),
        3 => format!("customer-with-a-rather-long-identifier-{i}"),
        4 => format!("клиент-{i}"),
        _ => format!("{i}"),
    }
}

/// What happens to one customer of the pool in one step.
#[derive(Clone, Debug)]
enum Change {
    Keep,
    Remove,
    Replace(Body),
}

/// What happens to the feature list in one step (any change makes the delta a full one).
#[derive(Clone, Debug)]
enum FeatureChange {
    None,
    NewDefault(Index),
    Append,
}

/// A catalog and how it evolves: a pool of customer ids, their initial state, and steps.
#[derive(Clone, Debug)]
struct History {
    features: Vec<Feature>,
    products: Vec<Product>,
    ids: Vec<String>,
    initial: Vec<Option<Body>>,
    steps: Vec<(FeatureChange, Vec<Change>)>,
}

impl History {
    /// The catalog before any step, then after each step.
    fn catalogs(&self) -> Vec<Catalog> {
        let mut features = self.features.clone();
        let mut state = self.initial.clone();
        let mut out = vec![self.catalog(&features, &state)];
        for (n, (feature_change, changes)) in self.steps.iter().enumerate() {
            match feature_change {
                FeatureChange::None => {}
                FeatureChange::NewDefault(i) if !features.is_empty() => {
                    let at = i.index(features.len());
                    let f = &mut features[at];
                    f.default = match f.default {
                        Value::Flag(b) => Value::Flag(!b),
                        Value::Limit(Limit::Finite(0)) => Value::Limit(Limit::Unlimited),
                        Value::Limit(Limit::Finite(n)) => Value::Limit(Limit::Finite(n / 2)),
                        Value::Limit(Limit::Unlimited) => Value::Limit(Limit::Finite(0)),
                    };
                }
                FeatureChange::NewDefault(_) => {}
                FeatureChange::Append => features.push(Feature {
                    key: format!("added_{n}"),
                    kind: FeatureType::Limit,
                    default: Value::Limit(Limit::Finite(5)),
                    per_unit: false,
                }),
            }
            for (slot, change) in state.iter_mut().zip(changes) {
                match change {
                    Change::Keep => {}
                    Change::Remove => *slot = None,
                    Change::Replace(b) => *slot = Some(b.clone()),
                }
            }
            out.push(self.catalog(&features, &state));
        }
        out
    }

    fn catalog(&self, features: &[Feature], state: &[Option<Body>]) -> Catalog {
        let customers = self
            .ids
            .iter()
            .zip(state)
            .filter_map(|(id, body)| {
                body.as_ref().map(|b| Customer {
                    id: id.clone(),
                    subscriptions: b.subscriptions.clone(),
                    overrides: b.overrides.clone(),
                })
            })
            .collect();
        Catalog::new(features.to_vec(), self.products.clone(), customers)
            .unwrap_or_else(|e| panic!("generated catalogs are valid: {e}"))
    }
}

fn feature_change() -> impl Strategy<Value = FeatureChange> {
    prop_oneof![
        8 => Just(FeatureChange::None),
        1 => any::<Index>().prop_map(FeatureChange::NewDefault),
        1 => Just(FeatureChange::Append),
    ]
}

/// A pool of up to `max_customers` ids and `steps` evolutions of it.
fn history(max_customers: usize, steps: usize) -> impl Strategy<Value = History> {
    features().prop_flat_map(move |features| {
        products(&features).prop_flat_map(move |products| {
            let body = body(&features, products.len());
            let (features, products) = (features.clone(), products.clone());
            (0..=max_customers).prop_flat_map(move |n| {
                let change = prop_oneof![
                    6 => Just(Change::Keep),
                    1 => Just(Change::Remove),
                    2 => body.clone().prop_map(Change::Replace),
                ];
                (
                    Just(features.clone()),
                    Just(products.clone()),
                    prop::collection::vec(any::<u8>(), n),
                    prop::collection::vec(prop::option::weighted(0.8, body.clone()), n),
                    prop::collection::vec(
                        (feature_change(), prop::collection::vec(change, n)),
                        steps,
                    ),
                )
                    .prop_map(|(features, products, styles, initial, steps)| {
                        History {
                            features,
                            products,
                            ids: styles
                                .iter()
                                .enumerate()
                                .map(|(i, &s)| customer_id(i, s))
                                .collect(),
                            initial,
                            steps,
                        }
                    })
            })
        })
    })
}

fn one_catalog() -> impl Strategy<Value = Catalog> {
    history(30, 0).prop_map(|h| h.catalogs().remove(0))
}

fn build(catalog: &Catalog, version: u64, created_at: i64) -> Snapshot {
    Snapshot::build(
        catalog,
        BuildOptions {
            version,
            created_at,
        },
    )
    .unwrap_or_else(|e| panic!("a valid catalog compiles: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Comparing answers

/// Where to look: every customer of the catalogs plus unknown ones, every feature plus unknown
/// ones, and every instant at which some answer may change plus the second before it.
struct Probe {
    customers: Vec<String>,
    features: Vec<String>,
    times: Vec<i64>,
}

impl Probe {
    fn new(catalogs: &[&Catalog]) -> Probe {
        let mut customers = BTreeSet::new();
        let mut features = BTreeSet::new();
        let mut times: BTreeSet<i64> = [i64::MIN, i64::MAX, 0, T0].into();
        for catalog in catalogs {
            features.extend(catalog.features().iter().map(|f| f.key.clone()));
            for c in catalog.customers() {
                customers.insert(c.id.clone());
                let instants = c
                    .subscriptions
                    .iter()
                    .filter_map(|s| s.cancel_at)
                    .chain(c.overrides.iter().filter_map(|o| o.expires_at));
                for t in instants {
                    times.insert(t);
                    times.insert(t.saturating_sub(1));
                }
            }
        }
        let mut customers: Vec<String> = customers.into_iter().collect();
        customers.extend(["nobody".to_string(), String::new(), "cus_".to_string()]);
        let mut features: Vec<String> = features.into_iter().collect();
        features.extend(["no_such_feature".to_string(), String::new()]);
        Probe {
            customers,
            features,
            times: times.into_iter().collect(),
        }
    }

    /// Every (customer, feature, time) answer of `check`, in a fixed order.
    fn answers(&self, check: impl Fn(&str, &str, i64) -> Decision) -> Vec<(Option<Value>, Reason)> {
        let mut out =
            Vec::with_capacity(self.customers.len() * self.features.len() * self.times.len());
        for c in &self.customers {
            for f in &self.features {
                for &t in &self.times {
                    let d = check(c, f, t);
                    out.push((d.value, d.reason));
                }
            }
        }
        out
    }

    fn view_answers(&self, view: &View) -> Vec<(Option<Value>, Reason)> {
        self.answers(|c, f, t| view.check_at(c, f, t))
    }

    /// Fails naming the first (customer, feature, time) where the answers differ.
    fn same(
        &self,
        what: &str,
        expected: &[(Option<Value>, Reason)],
        got: &[(Option<Value>, Reason)],
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(expected.len(), got.len());
        if let Some(i) = (0..expected.len()).find(|&i| expected[i] != got[i]) {
            let per_customer = self.features.len() * self.times.len();
            let c = &self.customers[i / per_customer];
            let f = &self.features[i % per_customer / self.times.len()];
            let t = self.times[i % self.times.len()];
            return Err(TestCaseError::fail(format!(
                "{what}: customer {c:?}, feature {f:?}, at {t}: expected {:?}, got {:?}",
                expected[i], got[i]
            )));
        }
        Ok(())
    }
}

/// Every lookup a view offers, over the probe and the base's own customers; checks that each
/// answer has the type of its feature. Used on content that may be forged, so it must not panic.
fn exercise(view: &View, probe: &Probe) -> Result<(), TestCaseError> {
    let kinds: Vec<(String, FeatureType)> = view
        .features()
        .map(|f| (f.key.to_string(), f.kind))
        .collect();
    let mut customers: Vec<String> = view
        .base()
        .customers()
        .map(|(id, _)| String::from_utf8_lossy(id).into_owned())
        .collect();
    customers.extend(probe.customers.iter().cloned());
    for c in &customers {
        for &t in &probe.times {
            for (info, d) in view.entitlements_at(c, t) {
                prop_assert_eq!(d.feature_type(), Some(info.kind));
                prop_assert_eq!(view.check_at(c, info.key, t), d);
            }
            for (key, kind) in &kinds {
                prop_assert_eq!(view.check_at(c, key, t).feature_type(), Some(*kind));
            }
            prop_assert_eq!(
                view.check_at(c, "no_such_feature_here", t).reason,
                Reason::FeatureNotFound
            );
        }
        let _ = view.check(c, "sso");
    }
    if let Ok(catalog) = dump(view) {
        let _ = catalog.to_json();
    }
    let _ = view.compact();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reordering

/// SplitMix64: a tiny deterministic generator for shuffling from one proptest-chosen seed.
struct Mix(u64);

impl Mix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((u128::from(z) * n as u128) >> 64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// The same catalog with customers, products, product grants, subscriptions, items and
/// overrides each in a shuffled order. Only feature order is kept: it is part of the content.
fn shuffled(catalog: &Catalog, seed: u64) -> Catalog {
    let mut rng = Mix(seed);
    let mut products = catalog.products().to_vec();
    rng.shuffle(&mut products);
    for p in &mut products {
        rng.shuffle(&mut p.features);
    }
    let mut customers = catalog.customers().to_vec();
    rng.shuffle(&mut customers);
    for c in &mut customers {
        rng.shuffle(&mut c.subscriptions);
        for s in &mut c.subscriptions {
            rng.shuffle(&mut s.items);
        }
        rng.shuffle(&mut c.overrides);
    }
    Catalog::new(catalog.features().to_vec(), products, customers)
        .unwrap_or_else(|e| panic!("a reordered valid catalog is valid: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Damaging bytes

/// A way to damage encoded bytes.
#[derive(Clone, Debug)]
enum Damage {
    /// XOR bytes with a non-zero mask; the checksum no longer matches.
    Flip(Vec<(Index, u8)>),
    /// Cut the bytes short.
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Overwrite bytes (often in the header and first sections, where the counts and the feature
    /// records are), then store a valid checksum.
    Forge(Vec<(Index, bool, u8)>),
    /// Overwrite an aligned 32-bit word with a value chosen to hit limits, then store a valid
    /// checksum.
    ForgeWord(Index, u32),
    /// Cut or extend the body, then fix its length and store a valid checksum.
    ForgeLength(Index, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let word = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(0x7FFF_FFFF),
        Just(0x8000_0000),
        Just(0x8000_0001),
        Just(u32::MAX),
        Just(u32::MAX - 1),
        any::<u32>(),
    ];
    prop_oneof![
        2 => prop::collection::vec((any::<Index>(), 1u8..=255), 1..=4).prop_map(Damage::Flip),
        1 => any::<Index>().prop_map(Damage::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..=16).prop_map(Damage::Extend),
        4 => prop::collection::vec((any::<Index>(), any::<bool>(), any::<u8>()), 1..=4)
            .prop_map(Damage::Forge),
        3 => (any::<Index>(), word).prop_map(|(i, w)| Damage::ForgeWord(i, w)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 0..=24))
            .prop_map(|(i, b)| Damage::ForgeLength(i, b)),
    ]
}

/// Header bytes (magic, version, lengths) plus the trailing checksum.
const FRAME: usize = 96 + 8;

fn seal(bytes: &mut [u8]) {
    let end = bytes.len() - 8;
    let sum = xxh64(&bytes[..end], 0);
    bytes[end..].copy_from_slice(&sum.to_le_bytes());
}

impl Damage {
    /// The damaged bytes, and whether they must be rejected (true unless the damage was forged
    /// behind a valid checksum).
    fn apply(&self, original: &[u8]) -> (Vec<u8>, bool) {
        let mut b = original.to_vec();
        let len = b.len();
        match self {
            Damage::Flip(edits) => {
                for (i, mask) in edits {
                    b[i.index(len)] ^= mask;
                }
                (b, true)
            }
            Damage::Truncate(i) => {
                b.truncate(i.index(len));
                (b, true)
            }
            Damage::Extend(extra) => {
                b.extend_from_slice(extra);
                (b, true)
            }
            Damage::Forge(edits) => {
                for (i, near_front, v) in edits {
                    let span = if *near_front {
                        (len - 8).min(FRAME + 160)
                    } else {
                        len - 8
                    };
                    b[i.index(span)] = *v;
                }
                seal(&mut b);
                (b, false)
            }
            Damage::ForgeWord(i, w) => {
                let at = i.index((len - 8) / 4) * 4;
                b[at..at + 4].copy_from_slice(&w.to_le_bytes());
                seal(&mut b);
                (b, false)
            }
            Damage::ForgeLength(i, extra) => {
                b.truncate(len - 8);
                b.truncate(96 + i.index(len - 8 - 96 + 1));
                b.extend_from_slice(extra);
                let body_len = (b.len() - 96) as u64;
                b[32..40].copy_from_slice(&body_len.to_le_bytes());
                b.extend_from_slice(&[0; 8]);
                seal(&mut b);
                (b, false)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watching allocations

/// This test binary's allocator: the system's, noting the largest single request a thread makes
/// while [`largest_allocation`] watches it. Decoders must not size an allocation from a count they
/// have not checked against the bytes they were given.
struct Watched;

thread_local! {
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note(size: usize) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = LARGEST.try_with(|largest| {
        if let Some(m) = largest.get() {
            largest.set(Some(m.max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// `note` neither allocates nor unwinds.
unsafe impl GlobalAlloc for Watched {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's guarantees for `layout` are the ones `System.alloc` needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watched = Watched;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(Some(0)));
    let out = f();
    let largest = LARGEST.with(|largest| largest.replace(None)).unwrap_or(0);
    (out, largest)
}

/// What decoding `len` bytes may allocate at once: a few times the input (decoded tables take
/// more room per entry than their encoding), never what an unchecked count asks for.
fn allocation_bound(len: usize) -> usize {
    4 * len + (64 << 10)
}

// ---------------------------------------------------------------------------------------------
// The properties

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        // Relative to the tests crate, where cargo runs its tests. Seeds of past failures are
        // kept there and replayed first.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

proptest! {
    #![proptest_config(config(128))]

    /// Snapshot bytes decode to the same snapshot, and the snapshot answers like the reference
    /// evaluator everywhere.
    #[test]
    fn snapshot_round_trips_and_matches_the_reference(
        catalog in one_catalog(),
        version in any::<u64>(),
        created_at in any::<i64>(),
    ) {
        let snap = build(&catalog, version, created_at);
        let bytes = snap.as_bytes();
        let end = bytes.len() - 8;
        prop_assert_eq!(&bytes[end..], &xxh64(&bytes[..end], 0).to_le_bytes()[..]);
        prop_assert_eq!(snap.checksum(), xxh64(&bytes[..end], 0));
        prop_assert_eq!(snap.version(), version);
        prop_assert_eq!(snap.created_at(), created_at);
        prop_assert_eq!(snap.customer_count(), catalog.customers().len());
        prop_assert_eq!(snap.feature_count(), catalog.features().len());

        let reread = Snapshot::from_bytes(bytes.to_vec())
            .map_err(|e| TestCaseError::fail(format!("re-reading a built snapshot: {e}")))?;
        prop_assert_eq!(reread.as_bytes(), bytes);
        prop_assert_eq!(reread.checksum(), snap.checksum());
        prop_assert_eq!(reread.version(), version);
        prop_assert_eq!(reread.created_at(), created_at);
        prop_assert_eq!(reread.customer_count(), snap.customer_count());
        prop_assert_eq!(reread.profile_count(), snap.profile_count());
        prop_assert_eq!(reread.table_count(), snap.table_count());
        prop_assert_eq!(reread.epoch_count(), snap.epoch_count());
        let again = build(&catalog, version, created_at);
        prop_assert_eq!(again.as_bytes(), bytes, "deterministic");

        let probe = Probe::new(&[&catalog]);
        let reference = probe.answers(|c, f, t| catalog.check(c, f, t));
        let view = View::from(snap);
        probe.same("snapshot", &reference, &probe.view_answers(&view))?;
        probe.same("re-read snapshot", &reference, &probe.view_answers(&View::from(reread)))?;

        // Every answer carries the snapshot's version; entitlements_at agrees with check_at.
        for c in &probe.customers {
            for &t in &probe.times {
                for (info, d) in view.entitlements_at(c, t) {
                    prop_assert_eq!(d, view.check_at(c, info.key, t));
                    prop_assert_eq!(d.version, version);
                }
            }
        }
    }

    /// Neither the answers nor the snapshot bytes depend on the order of customers, products,
    /// grants, subscriptions, items or overrides.
    #[test]
    fn evaluation_is_independent_of_order(catalog in one_catalog(), seed in any::<u64>()) {
        let reordered = shuffled(&catalog, seed);
        let probe = Probe::new(&[&catalog]);
        let reference = probe.answers(|c, f, t| catalog.check(c, f, t));
        probe.same(
            "reference on the reordered catalog",
            &reference,
            &probe.answers(|c, f, t| reordered.check(c, f, t)),
        )?;
        let snap = build(&catalog, 4, 5);
        let snap2 = build(&reordered, 4, 5);
        prop_assert_eq!(snap.as_bytes(), snap2.as_bytes(), "snapshots are canonical");
        probe.same("reordered snapshot", &reference, &probe.view_answers(&View::from(snap2)))?;
    }

    /// Delta bytes decode to the same delta; a delta names its base and target, carries exactly
    /// the customers whose answers change, and is refused by any other base.
    #[test]
    fn delta_round_trips(history in history(30, 1)) {
        let catalogs = history.catalogs();
        let (a, b) = (&catalogs[0], &catalogs[1]);
        let old = build(a, 1, 100);
        let new = build(b, 2, 200);
        let delta = diff(&old, &new)
            .map_err(|e| TestCaseError::fail(format!("diff: {e}")))?;
        prop_assert_eq!(delta.base(), (1, old.checksum()));
        prop_assert_eq!(delta.target(), (2, new.checksum()));
        prop_assert_eq!(delta.target_created_at(), 200);
        let bytes = delta.as_bytes();
        let end = bytes.len() - 8;
        prop_assert_eq!(&bytes[end..], &xxh64(&bytes[..end], 0).to_le_bytes()[..]);

        let reread = Delta::from_bytes(bytes.to_vec())
            .map_err(|e| TestCaseError::fail(format!("re-reading a delta: {e}")))?;
        prop_assert_eq!(reread.as_bytes(), bytes);
        prop_assert_eq!(reread.base(), delta.base());
        prop_assert_eq!(reread.target(), delta.target());
        prop_assert_eq!(reread.target_created_at(), delta.target_created_at());
        prop_assert_eq!(reread.is_full(), delta.is_full());
        prop_assert_eq!(reread.change_count(), delta.change_count());
        let again = diff(&old, &new).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.as_bytes(), bytes, "diff is deterministic");

        let probe = Probe::new(&[a, b]);
        if a.features() != b.features() {
            prop_assert!(delta.is_full(), "a feature change needs a full delta");
        } else if !delta.is_full() {
            // Exactly the customers added, removed, or answering differently at some time.
            let present = |c: &Catalog, id: &str| c.customer(id).is_some();
            let changed = probe
                .customers
                .iter()
                .filter(|id| {
                    present(a, id) != present(b, id)
                        || probe.features.iter().any(|f| {
                            probe.times.iter().any(|&t| a.check(id, f, t) != b.check(id, f, t))
                        })
                })
                .count();
            prop_assert_eq!(delta.change_count(), changed);
        }

        let reference = probe.answers(|c, f, t| b.check(c, f, t));
        let applied = View::from(Snapshot::from_bytes(old.as_bytes().to_vec()).map_err(|e| TestCaseError::fail(e.to_string()))?)
            .apply(&reread)
            .map_err(|e| TestCaseError::fail(format!("apply: {e}")))?;
        probe.same("re-read delta applied", &reference, &probe.view_answers(&applied))?;

        // Any other base is refused, and says which base was expected.
        let other = build(a, 7, 100);
        let refused = View::from(other).apply(&reread);
        prop_assert!(
            matches!(refused, Err(ApplyError::WrongBase { expected, .. }) if expected == (1, old.checksum())),
            "applied to the wrong base: {:?}", refused.map(|v| v.version())
        );
    }

    /// apply(a, diff(a, b)) answers like b for every customer, feature and time; compacting it
    /// gives b's exact bytes; a store compacting in the background ends at b too.
    #[test]
    fn applying_a_diff_evaluates_like_the_target(history in history(30, 1)) {
        let catalogs = history.catalogs();
        let (a, b) = (&catalogs[0], &catalogs[1]);
        let old = build(a, 10, -5);
        let new = build(b, 11, 1_800_000_000);
        let delta = diff(&old, &new).map_err(|e| TestCaseError::fail(format!("diff: {e}")))?;
        let probe = Probe::new(&[a, b]);
        let reference = probe.answers(|c, f, t| b.check(c, f, t));

        let view = View::from(old)
            .apply(&delta)
            .map_err(|e| TestCaseError::fail(format!("apply: {e}")))?;
        prop_assert_eq!(view.version(), 11);
        prop_assert_eq!(view.checksum(), new.checksum());
        prop_assert_eq!(view.created_at(), 1_800_000_000);
        prop_assert_eq!(view.customer_count(), new.customer_count());
        probe.same("applied delta", &reference, &probe.view_answers(&view))?;
        prop_assert_eq!(view.check_at("cus_0", "sso", 0).version, 11);

        let compacted = view
            .compact()
            .map_err(|e| TestCaseError::fail(format!("compact: {e}")))?;
        prop_assert_eq!(compacted.as_bytes(), new.as_bytes(), "compaction is canonical");
        probe.same("compacted", &reference, &probe.view_answers(&View::from(compacted)))?;

        // The same through a store that compacts as soon as the overlay is non-empty.
        let store = Store::with_threshold(View::from(build(a, 10, -5)), 0);
        prop_assert_eq!(store.apply(&delta), Ok(11));
        store.wait_compaction();
        prop_assert_eq!(store.compaction_error(), None);
        let current = store.view();
        prop_assert_eq!(current.checksum(), new.checksum());
        prop_assert_eq!(current.customer_count(), new.customer_count());
        probe.same("store", &reference, &probe.view_answers(&current))?;
        if store.compactions() > 0 {
            prop_assert_eq!(current.overlay_len(), 0);
            prop_assert_eq!(current.base().as_bytes(), new.as_bytes());
        }
    }

    /// Chains a → b → c → d: applied in sequence, with a compaction after each step, or through a
    /// store whose background compactions race the next deltas, the end answers like d.
    #[test]
    fn chains_of_deltas_evaluate_like_the_last(
        history in history(20, 3),
        threshold in 0usize..3,
    ) {
        let catalogs = history.catalogs();
        let snaps: Vec<Snapshot> = catalogs
            .iter()
            .enumerate()
            .map(|(i, c)| build(c, i as u64 + 1, 1_000 * i as i64))
            .collect();
        let deltas: Vec<Delta> = snaps
            .windows(2)
            .map(|w| diff(&w[0], &w[1]))
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("diff: {e}")))?;
        let all: Vec<&Catalog> = catalogs.iter().collect();
        let probe = Probe::new(&all);

        let mut plain = View::from(build(&catalogs[0], 1, 0));
        let mut compacting = plain.clone();
        for (i, delta) in deltas.iter().enumerate() {
            let target = &catalogs[i + 1];
            let reference = probe.answers(|c, f, t| target.check(c, f, t));
            plain = plain
                .apply(delta)
                .map_err(|e| TestCaseError::fail(format!("apply step {i}: {e}")))?;
            prop_assert_eq!(plain.checksum(), snaps[i + 1].checksum());
            prop_assert_eq!(plain.customer_count(), snaps[i + 1].customer_count());
            probe.same(&format!("chain after step {i}"), &reference, &probe.view_answers(&plain))?;

            let applied = compacting
                .apply(delta)
                .map_err(|e| TestCaseError::fail(format!("apply step {i} after compaction: {e}")))?;
            let folded = applied
                .compact()
                .map_err(|e| TestCaseError::fail(format!("compact step {i}: {e}")))?;
            prop_assert_eq!(folded.as_bytes(), snaps[i + 1].as_bytes());
            compacting = View::from(folded);
        }
        let last = catalogs.len() - 1;
        let reference = probe.answers(|c, f, t| catalogs[last].check(c, f, t));
        let folded = plain.compact().map_err(|e| TestCaseError::fail(format!("compact: {e}")))?;
        prop_assert_eq!(folded.as_bytes(), snaps[last].as_bytes());

        let store = Store::with_threshold(View::from(build(&catalogs[0], 1, 0)), threshold);
        for (i, delta) in deltas.iter().enumerate() {
            prop_assert_eq!(store.apply(delta), Ok(i as u64 + 2));
        }
        store.wait_compaction();
        prop_assert_eq!(store.compaction_error(), None);
        store.compact().map_err(|e| TestCaseError::fail(format!("store compact: {e}")))?;
        let current = store.view();
        prop_assert_eq!(current.overlay_len(), 0);
        prop_assert_eq!(current.checksum(), snaps[last].checksum());
        prop_assert_eq!(current.customer_count(), snaps[last].customer_count());
        probe.same("store after the chain", &reference, &probe.view_answers(&current))?;
    }

    /// dump(view) reloads, through its JSON, to a catalog that answers like the view and compiles
    /// to the same bytes; also for a view carrying an overlay.
    #[test]
    fn dump_reloads_to_an_identical_catalog(history in history(30, 1)) {
        let catalogs = history.catalogs();
        let (a, b) = (&catalogs[0], &catalogs[1]);
        let old = build(a, 3, 33);
        let new = build(b, 4, 44);
        let probe = Probe::new(&[a, b]);

        let dumped = dump(&View::from(Snapshot::from_bytes(old.as_bytes().to_vec()).map_err(|e| TestCaseError::fail(e.to_string()))?))
            .map_err(|e| TestCaseError::fail(format!("dump: {e}")))?;
        let reloaded = Catalog::from_json(dumped.to_json().to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("reloading the dump: {e}")))?;
        probe.same(
            "dumped catalog",
            &probe.answers(|c, f, t| a.check(c, f, t)),
            &probe.answers(|c, f, t| reloaded.check(c, f, t)),
        )?;
        let rebuilt = build(&reloaded, 3, 33);
        prop_assert_eq!(rebuilt.as_bytes(), old.as_bytes());

        let delta = diff(&old, &new).map_err(|e| TestCaseError::fail(format!("diff: {e}")))?;
        let view = View::from(old).apply(&delta).map_err(|e| TestCaseError::fail(format!("apply: {e}")))?;
        let dumped = dump(&view).map_err(|e| TestCaseError::fail(format!("dump of a view: {e}")))?;
        let reloaded = Catalog::from_json(dumped.to_json().to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("reloading the dump: {e}")))?;
        probe.same(
            "dumped view",
            &probe.answers(|c, f, t| b.check(c, f, t)),
            &probe.answers(|c, f, t| reloaded.check(c, f, t)),
        )?;
        let rebuilt = build(&reloaded, 4, 44);
        prop_assert_eq!(rebuilt.as_bytes(), new.as_bytes());
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Damaged snapshot bytes are rejected without panicking; forged ones that still decode can
    /// be looked up, dumped, compacted and diffed, and a diff to them applies and answers like them.
    #[test]
    fn damaged_snapshots_fail_cleanly(catalog in one_catalog(), damage in damage()) {
        let snap = build(&catalog, 9, 99);
        let (bytes, must_fail) = damage.apply(snap.as_bytes());
        let changed = bytes != snap.as_bytes();
        let len = bytes.len();
        let (decoded, largest) = largest_allocation(|| Snapshot::from_bytes(bytes));
        prop_assert!(largest <= allocation_bound(len), "decoding {} bytes allocated {} at once", len, largest);
        match decoded {
            Ok(forged) => {
                prop_assert!(!must_fail, "damaged bytes decoded ({:?})", damage);
                let probe = Probe::new(&[&catalog]);
                let view = View::from(forged);
                exercise(&view, &probe)?;
                if !changed {
                    probe.same("undamaged", &probe.view_answers(&View::from(snap)), &probe.view_answers(&view))?;
                } else if let Ok(delta) = diff(&snap, view.base()) {
                    let applied = View::from(snap).apply(&delta)
                        .map_err(|e| TestCaseError::fail(format!("apply to its own base: {e}")))?;
                    probe.same("diff to a forged snapshot", &probe.view_answers(&view), &probe.view_answers(&applied))?;
                    exercise(&applied, &probe)?;
                }
            }
            Err(e) => {
                prop_assert!(changed, "intact bytes were rejected: {}", e);
                // Every error renders as text (what the CLI and the C ABI show).
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// Damaged delta bytes are rejected without panicking; forged ones that still decode can be
    /// applied (or are refused) and the result looked up, dumped and compacted.
    #[test]
    fn damaged_deltas_fail_cleanly(history in history(20, 1), damage in damage()) {
        let catalogs = history.catalogs();
        let old = build(&catalogs[0], 1, 0);
        let new = build(&catalogs[1], 2, 0);
        let delta = diff(&old, &new).map_err(|e| TestCaseError::fail(format!("diff: {e}")))?;
        let (bytes, must_fail) = damage.apply(delta.as_bytes());
        let changed = bytes != delta.as_bytes();
        let len = bytes.len();
        let (decoded, largest) = largest_allocation(|| Delta::from_bytes(bytes));
        prop_assert!(largest <= allocation_bound(len), "decoding {} bytes allocated {} at once", len, largest);
        match decoded {
            Ok(forged) => {
                prop_assert!(!must_fail, "damaged bytes decoded ({:?})", damage);
                let _ = (forged.base(), forged.target(), forged.is_full(), forged.change_count());
                let probe = Probe::new(&[&catalogs[0], &catalogs[1]]);
                let base = View::from(old);
                let (applied, largest) = largest_allocation(|| base.apply(&forged));
                prop_assert!(largest <= allocation_bound(len), "applying {} bytes allocated {} at once", len, largest);
                match applied {
                    Ok(view) => {
                        exercise(&view, &probe)?;
                        let store = Store::with_threshold(base.clone(), 0);
                        prop_assert_eq!(store.apply(&forged), Ok(view.version()));
                        store.wait_compaction();
                        exercise(&store.view(), &probe)?;
                        if !changed {
                            let reference = probe.answers(|c, f, t| catalogs[1].check(c, f, t));
                            probe.same("undamaged delta", &reference, &probe.view_answers(&view))?;
                        }
                    }
                    Err(e) => prop_assert!(changed, "intact delta refused: {}", e),
                }
            }
            Err(e) => {
                prop_assert!(changed, "intact bytes were rejected: {}", e);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// Errors for the plainly damaged cases are the specific ones the format promises.
#[test]
fn damage_is_named() {
    let catalog = Catalog::from_json(
        br#"{"features":[{"key":"sso","type":"flag"}],
             "customers":[{"id":"cus_A","overrides":{"sso":true}}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bytes = build(&catalog, 1, 0).as_bytes().to_vec();

    let mut flipped = bytes.clone();
    flipped[100] ^= 1;
    assert!(matches!(
        Snapshot::from_bytes(flipped),
        Err(FormatError::ChecksumMismatch { .. })
    ));
    assert!(matches!(
        Snapshot::from_bytes(bytes[..bytes.len() - 1].to_vec()),
        Err(FormatError::Truncated { .. })
    ));
    assert!(matches!(
        Snapshot::from_bytes(bytes[..5].to_vec()),
        Err(FormatError::Truncated { what: "header" })
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Snapshot::from_bytes(longer),
        Err(FormatError::Invalid(_))
    ));
    let mut newer = bytes.clone();
    newer[8] = 2;
    assert_eq!(
        Snapshot::from_bytes(newer).err(),
        Some(FormatError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
    assert_eq!(
        Delta::from_bytes(bytes.clone()).err(),
        Some(FormatError::BadMagic { expected: "delta" })
    );
    // A forged feature count behind a valid checksum is caught by the structure checks.
    let mut forged = bytes;
    forged[40] = 2;
    seal(&mut forged);
    assert!(matches!(
        Snapshot::from_bytes(forged),
        Err(FormatError::Invalid(_) | FormatError::Truncated { .. })
    ));
}

/// Regression: a catalog without features used to compile to a snapshot its own decoder rejected
/// ("epoch 0 is corrupt"), because the table count was derived from the number of cells.
#[test]
fn catalogs_without_features_compile_and_diff() {
    let old = Catalog::from_json(br#"{"features":[],"customers":[{"id":"a"},{"id":"b"}]}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let new = Catalog::from_json(br#"{"features":[],"customers":[{"id":"b"},{"id":"c"}]}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let old = build(&old, 1, 0);
    let new = build(&new, 2, 0);
    assert_eq!(old.customer_count(), 2);
    assert_eq!(old.table_count(), 1);
    let delta = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    let view = View::from(old)
        .apply(&delta)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(view.customer_count(), 2);
    assert_eq!(view.check_at("c", "sso", 0).reason, Reason::FeatureNotFound);
    let compacted = view.compact().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(compacted.as_bytes(), new.as_bytes());
}

/// Every aligned 32-bit word of a snapshot and of a delta, overwritten with values at the limits
/// behind a valid checksum, decodes (without outsized allocations) to an error or to something
/// that can be looked up.
///
/// Regressions: a slot whose long-id length pointed past the strings panicked while validation
/// probed through it from an earlier slot (a probe that wrapped around the end of the table)
/// before that slot itself had been checked; and a feature slot table naming one feature twice
/// was accepted, hiding another feature from `check` while `entitlements_at` still listed it.
#[test]
fn every_forged_word_fails_cleanly() {
    // Long ids only: a probe compares long ids through the string area, which is what a forged
    // length can send out of bounds. Enough of them that some probe wraps around.
    let ids: Vec<String> = (0..120).map(|i| customer_id(i, 3)).collect();
    let json = |n: usize| {
        let customers: Vec<String> = ids[..n]
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","overrides":{{"seats":{}}}}}"#, id.len()))
            .collect();
        format!(
            r#"{{"features":[{{"key":"sso","type":"flag"}},{{"key":"seats","type":"limit"}}],
                "customers":[{}]}}"#,
            customers.join(",")
        )
    };
    let old = Catalog::from_json(json(100).as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let new = Catalog::from_json(json(120).as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let (old, new) = (build(&old, 1, 0), build(&new, 2, 0));
    let delta = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    assert!(!delta.is_full());
    let base =
        View::from(Snapshot::from_bytes(old.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}")));
    let look = |view: &View| {
        for id in ids
            .iter()
            .step_by(7)
            .map(String::as_str)
            .chain(["cus_1", ""])
        {
            for (info, d) in view.entitlements_at(id, 0) {
                assert_eq!(d.feature_type(), Some(info.kind));
                assert_eq!(view.check_at(id, info.key, 0), d);
            }
        }
    };
    for (what, bytes) in [("snapshot", old.as_bytes()), ("delta", delta.as_bytes())] {
        for at in (0..bytes.len() - 8).step_by(4) {
            for word in [0u32, 1, 0x7FFF_FFFF, 0xFFFF_FF00, u32::MAX] {
                let mut forged = bytes.to_vec();
                forged[at..at + 4].copy_from_slice(&word.to_le_bytes());
                seal(&mut forged);
                let len = forged.len();
                if what == "snapshot" {
                    let (snap, largest) = largest_allocation(|| Snapshot::from_bytes(forged));
                    assert!(
                        largest <= allocation_bound(len),
                        "word {word:#x} at {at}: {largest}"
                    );
                    if let Ok(snap) = snap {
                        look(&View::from(snap));
                    }
                } else {
                    let (delta, largest) = largest_allocation(|| Delta::from_bytes(forged));
                    assert!(
                        largest <= allocation_bound(len),
                        "word {word:#x} at {at}: {largest}"
                    );
                    if let Ok(Ok(view)) = delta.map(|d| base.apply(&d)) {
                        look(&view);
                    }
                }
            }
        }
    }
}

/// Regression: with no features, tables take no bytes, so a forged table count went unchecked: a
/// patch delta claiming 2^31 - 1 tables decoded, and applying it tried to allocate them all (and
/// aborted). A snapshot with the same forgery decoded too.
#[test]
fn a_forged_table_count_without_features_is_rejected() {
    let catalog = |ids: &str| {
        Catalog::from_json(format!(r#"{{"features":[],"customers":[{ids}]}}"#).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let old = build(&catalog(r#"{"id":"a"}"#), 1, 0);
    let new = build(&catalog(r#"{"id":"a"},{"id":"b"}"#), 2, 0);
    let delta = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    assert!(!delta.is_full());
    for bytes in [old.as_bytes(), delta.as_bytes()] {
        let mut forged = bytes.to_vec();
        // The table count, at the same offset in both headers.
        forged[48..52].copy_from_slice(&0x7FFF_FFFF_u32.to_le_bytes());
        seal(&mut forged);
        let snapshot = Snapshot::from_bytes(forged.clone());
        let delta = Delta::from_bytes(forged);
        assert!(
            matches!(
                (&snapshot, &delta),
                (Err(FormatError::Invalid(_)), Err(_)) | (Err(_), Err(FormatError::Invalid(_)))
            ),
            "{snapshot:?} / {delta:?}"
        );
    }
}
