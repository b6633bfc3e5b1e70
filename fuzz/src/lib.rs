//! What the fuzz targets do with each input (`snapshot_input`, `delta_input`), and their helpers: a
//! fixed base snapshot, re-framing of mutated bytes, and every lookup a view offers.
//!
//! `tests/fuzz_replay.rs` includes this file to replay `fuzz/regressions/` in `cargo test`, so it
//! depends on nothing but `entitle-core` and std.

use std::sync::{Arc, OnceLock};

use entitle_core::hash::xxh64;
use entitle_core::{diff, dump, BuildOptions, Catalog, Delta, Snapshot, Store, View};

/// The `snapshot` target: `Snapshot::from_bytes` on the input as given, then with its body length
/// and checksum made right; whatever decodes is looked up, dumped, compacted and diffed from the
/// fixed base, and that diff must apply and agree.
pub fn snapshot_input(data: &[u8]) {
    check_snapshot(data.to_vec());
    if let Some(fixed) = framed(data, None) {
        check_snapshot(fixed);
    }
}

/// The `delta` target: `Delta::from_bytes` on the input as given, then with its body length and
/// checksum made right and its base pointed at the fixed base; whatever applies is looked up,
/// dumped and compacted, also through a store that compacts in the background.
pub fn delta_input(data: &[u8]) {
    check_delta(data.to_vec());
    let base = fixture();
    if let Some(fixed) = framed(data, Some((base.version(), base.checksum()))) {
        check_delta(fixed);
    }
}

fn check_snapshot(bytes: Vec<u8>) {
    let Ok(snapshot) = Snapshot::from_bytes(bytes) else {
        return;
    };
    let view = View::from(snapshot);
    exercise(&view);
    let base = fixture();
    if let Ok(delta) = diff(base, view.base()) {
        let applied = match View::from(Arc::clone(base)).apply(&delta) {
            Ok(applied) => applied,
            Err(e) => panic!("a diff does not apply to its own base: {e}"),
        };
        same_answers(&view, &applied);
    }
}

fn check_delta(bytes: Vec<u8>) {
    let Ok(delta) = Delta::from_bytes(bytes) else {
        return;
    };
    let _ = (
        delta.target(),
        delta.target_created_at(),
        delta.is_full(),
        delta.change_count(),
    );
    let base = View::from(Arc::clone(fixture()));
    let Ok(view) = base.apply(&delta) else {
        return;
    };
    exercise(&view);
    let store = Store::with_threshold(base, 0);
    match store.apply(&delta) {
        Ok(version) => assert_eq!(version, view.version()),
        Err(e) => panic!("the store refused a delta its view accepted: {e}"),
    }
    store.wait_compaction();
    exercise(&store.view());
}

/// Header length of snapshots and deltas; the checksum trailer adds 8 bytes.
const HEADER_LEN: usize = 96;

/// The base the delta target applies to and the snapshot target diffs from: a small synthetic
/// catalog (the same `entitle synth --customers 40 --seed 7` gives), version 1, created at 0.
pub fn fixture() -> &'static Arc<Snapshot> {
    static BASE: OnceLock<Arc<Snapshot>> = OnceLock::new();
    BASE.get_or_init(|| {
        let json = entitle_core::synth::catalog_json(40, 7);
        let catalog = match Catalog::from_json(json.as_bytes()) {
            Ok(c) => c,
            Err(e) => panic!("the synthetic catalog is valid: {e}"),
        };
        match Snapshot::build(
            &catalog,
            BuildOptions {
                version: 1,
                created_at: 0,
            },
        ) {
            Ok(s) => Arc::new(s),
            Err(e) => panic!("the synthetic catalog compiles: {e}"),
        }
    })
}

/// `data` with its body length and checksum made consistent (and, for a delta, its base set to
/// `base`), or `None` when it is too short to hold a header and a checksum.
pub fn framed(data: &[u8], base: Option<(u64, u64)>) -> Option<Vec<u8>> {
    if data.len() < HEADER_LEN + 8 {
        return None;
    }
    let mut b = data.to_vec();
    let body_len = (b.len() - HEADER_LEN - 8) as u64;
    b[32..40].copy_from_slice(&body_len.to_le_bytes());
    if let Some((version, checksum)) = base {
        b[72..80].copy_from_slice(&version.to_le_bytes());
        b[80..88].copy_from_slice(&checksum.to_le_bytes());
    }
    let end = b.len() - 8;
    let sum = xxh64(&b[..end], 0);
    b[end..].copy_from_slice(&sum.to_le_bytes());
    Some(b)
}

/// Customer ids to look up: the base's own (at most 64) plus a few that are not there.
fn ids(view: &View) -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = view
        .base()
        .customers()
        .take(64)
        .map(|(id, _)| id.to_vec())
        .collect();
    ids.extend([
        b"".to_vec(),
        b"cus_nobody".to_vec(),
        b"a-customer-id-longer-than-nineteen".to_vec(),
    ]);
    ids
}

const TIMES: [i64; 6] = [i64::MIN, -1, 0, 1_767_225_600, 1_800_000_000, i64::MAX];

/// Every lookup a view offers; `check_at` and `entitlements_at` must agree, every answer must have
/// its feature's type; then dump and compact (which may fail, but must not panic).
pub fn exercise(view: &View) {
    for id in ids(view) {
        for t in TIMES {
            for (info, d) in view.entitlements_at(&id, t) {
                assert_eq!(d.feature_type(), Some(info.kind));
                assert_eq!(view.check_at(&id, info.key, t), d);
            }
            assert!(view.check_at(&id, "no such feature", t).value.is_none());
        }
        let _ = view.check(&id, "sso");
    }
    if let Ok(catalog) = dump(view) {
        let _ = catalog.to_json();
    }
    let _ = view.compact();
}

/// Asserts that two views answer alike over the first view's customers and features.
pub fn same_answers(expected: &View, got: &View) {
    for id in ids(expected) {
        for t in TIMES {
            for (info, d) in expected.entitlements_at(&id, t) {
                let g = got.check_at(&id, info.key, t);
                assert_eq!((d.value, d.reason), (g.value, g.reason), "{info:?} at {t}");
            }
        }
    }
}
