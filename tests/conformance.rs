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

/// The same cases through feature handles and the batch calls: a handle resolved on the view, one
/// resolved before a swap from a snapshot whose features were renamed away (re-resolved by key), one
/// resolved on the same content with the features in reverse order (the index differs), every case
/// with the same feature and time in one `check_customers_at` batch, and every case with the same
/// customer and time in one `check_features_at` batch. Then the reverse swap: handles resolved on the
/// real content answer `feature_not_found` once a snapshot without the feature is in place.
#[test]
fn handle_and_batch_paths_answer_as_expected() {
    use entitle_core::{Engine, FeatureHandle, Reason};
    use std::collections::BTreeMap;

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
        let build = |c: &Catalog| {
            Snapshot::build(c, BuildOptions::default())
                .unwrap_or_else(|e| panic!("{name}: build: {e}"))
        };
        let features: Vec<Feature> = catalog.features().to_vec();
        let products = catalog.products().to_vec();
        let customers = catalog.customers().to_vec();
        // Same content, features in reverse order (only the feature order changes).
        let reversed = Catalog::new(
            features.iter().rev().cloned().collect(),
            products.clone(),
            customers.clone(),
        )
        .unwrap_or_else(|e| panic!("{name}: reversed catalog: {e}"));
        // Every feature renamed (and so every case's feature absent); no products or customers.
        let renamed = Catalog::new(
            features
                .iter()
                .map(|f| Feature {
                    key: format!("{}~renamed", f.key),
                    ..f.clone()
                })
                .collect(),
            Vec::new(),
            Vec::new(),
        )
        .unwrap_or_else(|e| panic!("{name}: renamed catalog: {e}"));

        let engine = Engine::from_snapshot(build(&catalog));
        let reversed_view = View::from(build(&reversed));
        let renamed_engine = Engine::from_snapshot(build(&renamed));
        let handle = |key: &str| {
            engine
                .feature(key)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let before_swap = |key: &str| {
            renamed_engine
                .feature(key)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let from_reversed = |key: &str| {
            reversed_view
                .feature(key)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };

        // Batches: by (feature, at) and by (customer, at).
        let mut by_feature: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
        let mut by_customer: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
        for (i, case) in file.cases.iter().enumerate() {
            by_feature
                .entry((case.feature.as_str(), case.at))
                .or_default()
                .push(i);
            by_customer
                .entry((case.customer.as_str(), case.at))
                .or_default()
                .push(i);
        }
        let mut batched = vec![Vec::new(); file.cases.len()];
        for ((feature, at), idx) in &by_feature {
            let ids: Vec<&str> = idx
                .iter()
                .map(|&i| file.cases[i].customer.as_str())
                .collect();
            engine.check_customers_at(handle(feature), &ids, Some(*at), |k, d| {
                batched[idx[k]].push(("customers batch", d));
            });
        }
        for ((customer, at), idx) in &by_customer {
            let hs: Vec<FeatureHandle> = idx
                .iter()
                .map(|&i| before_swap(&file.cases[i].feature))
                .collect();
            engine.check_features_at(customer, &hs, Some(*at), |k, d| {
                batched[idx[k]].push(("features batch (handles from before a swap)", d));
            });
        }

        for (i, case) in file.cases.iter().enumerate() {
            cases += 1;
            let (c, f, at) = (case.customer.as_str(), case.feature.as_str(), case.at);
            let mut answers = vec![
                ("handle", engine.check_feature_at(c, handle(f), at)),
                (
                    "handle from before a rename swap",
                    engine.check_feature_at(c, before_swap(f), at),
                ),
                (
                    "handle from reordered features",
                    engine.check_feature_at(c, from_reversed(f), at),
                ),
                (
                    "reordered view, handle from the original",
                    reversed_view.check_feature_at(c, handle(f), at),
                ),
            ];
            answers.extend(batched[i].iter().copied());
            for (how, d) in answers {
                let got = decision_json(&d, case.usage, case.requested);
                if got != case.expected {
                    failures.push(format!(
                        "{name} / {} via {how}: expected {}, got {got}",
                        case.name, case.expected
                    ));
                }
            }
            // The reverse swap: the feature renamed away answers feature_not_found.
            let gone = renamed_engine.check_feature_at(c, handle(f), at);
            if gone.reason != Reason::FeatureNotFound || gone.value.is_some() {
                failures.push(format!(
                    "{name} / {}: a handle after its feature was renamed away answered {gone:?}",
                    case.name
                ));
            }
        }
    }
    assert!(cases > 300, "found only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
