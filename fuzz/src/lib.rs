//! Helpers shared by the fuzz targets: a fixed base snapshot, re-framing of mutated bytes, and
//! every lookup a view offers.

use std::sync::{Arc, OnceLock};

use entitle_core::hash::xxh64;
use entitle_core::{dump, BuildOptions, Catalog, Snapshot, View};

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
