//! Runs tests/conformance/*.json against every way the core answers: the catalog's reference
//! evaluation, the compiled snapshot, the snapshot re-read from bytes, a view reached by applying a
//! delta onto an empty snapshot, the same after compaction, and the catalog `dump` reconstructs.

use entitle_core::{diff, dump, BuildOptions, Catalog, Feature, Snapshot, View};
use entitle_tests::{conformance_files, decision_json};

#[test]
fn valid_files_answer_as_expected_everywhere() {
    let mut cases = 0;
    let mut failures = Vec::new();
    for (path, file) in conformance_files() {
        if file.expect_error.is_some() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let catalog = Catalog::from_json(file.catalog.get().as_bytes())
            .unwrap_or_else(|e| panic!("{name}: catalog should load: {e}"));
        let snap = Snapshot::build(
            &catalog,
            BuildOptions {
                version: 3,
                created_at: 11,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: build: {e}"));
        let reread = View::from(
            Snapshot::from_bytes(snap.as_bytes().to_vec())
                .unwrap_or_else(|e| panic!("{name}: reread: {e}")),
        );

        // The same content reached through a patch delta from a snapshot with no customers.
        let features: Vec<Feature> = catalog.features().to_vec();
        let empty = Catalog::new(features, Vec::new(), Vec::new())
            .unwrap_or_else(|e| panic!("{name}: empty catalog: {e}"));
        let empty = Snapshot::build(
            &empty,
            BuildOptions {
                version: 2,
                created_at: 11,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: empty: {e}"));
        let delta = diff(&empty, &snap).unwrap_or_else(|e| panic!("{name}: diff: {e}"));
        let patched = View::from(empty)
            .apply(&delta)
            .unwrap_or_else(|e| panic!("{name}: apply: {e}"));
        assert_eq!(patched.checksum(), snap.checksum(), "{name}");
        let compacted = View::from(
            patched
                .compact()
                .unwrap_or_else(|e| panic!("{name}: compact: {e}")),
        );
        assert_eq!(
            compacted.base().as_bytes(),
            snap.as_bytes(),
            "{name}: compaction is canonical"
        );
        let dumped = dump(&reread).unwrap_or_else(|e| panic!("{name}: dump: {e}"));
        let redumped = Catalog::from_json(dumped.to_json().to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{name}: dumped catalog reloads: {e}"));

        let snap = View::from(snap);
        for case in &file.cases {
            cases += 1;
            let c = case.customer.as_str();
            let f = case.feature.as_str();
            let render = |d| decision_json(&d, case.usage, case.requested);
            let answers = [
                ("catalog", render(catalog.check(c, f, case.at))),
                ("snapshot", render(snap.check_at(c, f, case.at))),
                ("reread", render(reread.check_at(c, f, case.at))),
                ("delta", render(patched.check_at(c, f, case.at))),
                ("compacted", render(compacted.check_at(c, f, case.at))),
                ("dump", render(redumped.check(c, f, case.at))),
            ];
            for (how, got) in answers {
                if got != case.expected {
                    failures.push(format!(
                        "{name} / {} via {how}: expected {}, got {got}",
                        case.name, case.expected
                    ));
                }
            }
        }
    }
    assert!(
        cases > 300,
        "the suite should hold hundreds of cases, found {cases}"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn invalid_files_fail_at_the_named_path() {
    let mut count = 0;
    let mut failures = Vec::new();
    for (path, file) in conformance_files() {
        let Some(expected) = &file.expect_error else {
            continue;
        };
        count += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match Catalog::from_json(file.catalog.get().as_bytes()) {
            Ok(_) => failures.push(format!("{name}: loaded, expected an error at {expected}")),
            Err(e) => {
                let msg = e.to_string();
                if !msg.starts_with(&format!("{expected}:")) {
                    failures.push(format!("{name}: expected `{expected}: ...`, got `{msg}`"));
                }
            }
        }
    }
    assert!(count > 30, "expected many invalid files, found {count}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
