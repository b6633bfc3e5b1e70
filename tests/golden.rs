//! Compatibility guard for the v1 byte formats: committed snapshot and delta files must decode,
//! answer as they did when they were written, and be rebuilt byte for byte from their catalogs.
//!
//! A failure here means a change altered what v1 bytes mean or how they are produced. That is a
//! deliberate decision (a new format version that still reads these files), never a side effect.
//! Only for a deliberate change of the golden inputs themselves: `ENTITLE_BLESS=1 cargo test -p
//! entitle-tests --test golden` rewrites the files under `tests/golden/v1/`.

use std::path::{Path, PathBuf};

use entitle_core::{diff, dump, BuildOptions, Catalog, Delta, Snapshot, View};
use entitle_tests::decision_json;

/// The golden catalogs, their versions and creation times: `a` → `b` changes customers (a patch
/// delta), `b` → `c` adds a feature (a delta that carries the whole target).
const GENERATIONS: [(&str, u64, i64); 3] = [
    ("a", 1, 1_767_225_600),
    ("b", 2, 1_767_225_660),
    ("c", 3, 1_767_225_720),
];

/// Instants around every `cancel_at` and `expires_at` of the golden catalogs, and far ends.
const TIMES: [i64; 9] = [
    i64::MIN,
    0,
    1_767_225_599,
    1_767_225_600,
    1_799_999_999,
    1_800_000_000,
    1_893_455_999,
    1_893_456_000,
    i64::MAX,
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join("v1")
}

fn blessing() -> bool {
    std::env::var_os("ENTITLE_BLESS").is_some()
}

fn read(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(name: &str, bytes: &[u8]) {
    let path = dir().join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn catalog(generation: &str) -> Catalog {
    Catalog::from_json(&read(&format!("catalog-{generation}.json")))
        .unwrap_or_else(|e| panic!("catalog-{generation}.json: {e}"))
}

fn build(generation: &str, version: u64, created_at: i64) -> Snapshot {
    Snapshot::build(
        &catalog(generation),
        BuildOptions {
            version,
            created_at,
        },
    )
    .unwrap_or_else(|e| panic!("catalog-{generation}.json compiles: {e}"))
}

/// Every (customer, feature, time) answer of `view`, one line each, for the catalog's customers
/// and features plus an unknown customer and an unknown feature.
fn answers(catalog: &Catalog, view: &View) -> String {
    let mut customers: Vec<&str> = catalog.customers().iter().map(|c| c.id.as_str()).collect();
    customers.push("cus_unknown");
    let mut features: Vec<&str> = catalog.features().iter().map(|f| f.key.as_str()).collect();
    features.push("no_such_feature");
    let mut out = String::new();
    for c in &customers {
        for f in &features {
            for at in TIMES {
                let d = decision_json(&view.check_at(c, f, at), Some(4), Some(1));
                out.push_str(&format!("{c} {f} {at} {d}\n"));
            }
        }
    }
    out
}

fn check_bytes(name: &str, made: &[u8]) {
    if blessing() {
        write(name, made);
    }
    assert!(
        read(name) == made,
        "{name}: the bytes produced today differ from the committed v1 file"
    );
}

#[test]
fn golden_snapshots_decode_answer_and_rebuild_byte_for_byte() {
    for (generation, version, created_at) in GENERATIONS {
        let name = format!("{generation}.snap");
        check_bytes(&name, build(generation, version, created_at).as_bytes());

        let decoded = Snapshot::from_bytes(read(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.version(), version, "{name}: version");
        assert_eq!(decoded.created_at(), created_at, "{name}: created_at");
        let catalog = catalog(generation);
        let view = View::from(decoded);

        let got = answers(&catalog, &view);
        let answers_name = format!("{generation}.answers");
        if blessing() {
            write(&answers_name, got.as_bytes());
        }
        let want = String::from_utf8(read(&answers_name)).unwrap_or_default();
        assert!(
            got == want,
            "{name}: answers differ from {answers_name} (first difference: {:?})",
            got.lines().zip(want.lines()).find(|(g, w)| g != w)
        );

        // The reference evaluator agrees with the committed answers too.
        let reference = View::from(build(generation, version, created_at));
        assert_eq!(answers(&catalog, &reference), want, "{name}: reference");

        // A dump of the decoded snapshot compiles back to the same bytes.
        let dumped = dump(&view).unwrap_or_else(|e| panic!("{name}: dump: {e}"));
        let rebuilt = Snapshot::build(
            &dumped,
            BuildOptions {
                version,
                created_at,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: dumped catalog compiles: {e}"));
        assert!(
            rebuilt.as_bytes() == read(&name).as_slice(),
            "{name}: dump → build is not byte-identical"
        );
    }
}

#[test]
fn golden_deltas_decode_apply_and_rediff_byte_for_byte() {
    for pair in GENERATIONS.windows(2) {
        let (old, old_version, old_created) = pair[0];
        let (new, new_version, new_created) = pair[1];
        let name = format!("{old}-{new}.delta");
        let old_snap = build(old, old_version, old_created);
        let new_snap = build(new, new_version, new_created);
        let made = diff(&old_snap, &new_snap).unwrap_or_else(|e| panic!("{name}: diff: {e}"));
        check_bytes(&name, made.as_bytes());

        let delta = Delta::from_bytes(read(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            delta.base(),
            (old_version, old_snap.checksum()),
            "{name}: base"
        );
        assert_eq!(
            delta.target(),
            (new_version, new_snap.checksum()),
            "{name}: target"
        );
        let patched = View::from(old_snap)
            .apply(&delta)
            .unwrap_or_else(|e| panic!("{name}: apply: {e}"));
        // The committed `{new}.snap` and `{new}.answers` are checked against fresh builds by the
        // snapshot test; comparing with a fresh build here keeps blessing free of ordering.
        let new_bytes = new_snap.as_bytes().to_vec();
        assert_eq!(
            answers(&catalog(new), &patched),
            answers(&catalog(new), &View::from(new_snap)),
            "{name}: answers after apply"
        );
        let compacted = patched
            .compact()
            .unwrap_or_else(|e| panic!("{name}: compact: {e}"));
        assert!(
            compacted.as_bytes() == new_bytes.as_slice(),
            "{name}: base + delta does not compact to {new}.snap"
        );
    }
    // The feature list changes between b and c: that delta carries the whole target.
    let full = Delta::from_bytes(read("b-c.delta")).unwrap_or_else(|e| panic!("b-c.delta: {e}"));
    assert!(full.is_full(), "b-c.delta should carry the whole snapshot");
    let patch = Delta::from_bytes(read("a-b.delta")).unwrap_or_else(|e| panic!("a-b.delta: {e}"));
    assert!(!patch.is_full(), "a-b.delta should be a patch");
}
