//! The CLI as users meet it: every command through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{example, ok_stdout as ok, TempDir};
use entitle_tests::conformance_files;
use serde_json::Value;

/// Runs `entitle`, asserts that it fails with a one-line error, and returns it.
fn fails(args: &[&str]) -> String {
    let err = common::fails(args);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error, got: {err}"
    );
    err
}

#[test]
fn conformance_suite_through_check_on_catalog_and_snapshot() {
    let dir = TempDir::new("cli");
    let mut runs = 0;
    for (path, file) in conformance_files() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let catalog = dir.path(&format!("{name}.catalog.json"));
        std::fs::write(&catalog, file.catalog.get()).expect("write catalog");
        if let Some(expected) = &file.expect_error {
            let snap = dir.path(&format!("{name}.snap"));
            let err = fails(&["build", &catalog, "-o", &snap]);
            assert!(err.contains(&format!("{expected}:")), "{name}: {err}");
            assert!(
                !Path::new(&snap).exists(),
                "{name}: nothing written on error"
            );
            continue;
        }
        let snap = dir.path(&format!("{name}.snap"));
        ok(&["build", &catalog, "-o", &snap, "--version", "9"]);
        for case in &file.cases {
            for source in [&catalog, &snap] {
                let at = case.at.to_string();
                let mut args = vec!["check", source, &case.customer, &case.feature, "--at", &at];
                let usage = case.usage.map(|u| u.to_string());
                let requested = case.requested.map(|r| r.to_string());
                if let Some(u) = &usage {
                    args.extend(["--usage", u]);
                }
                if let Some(r) = &requested {
                    args.extend(["--requested", r]);
                }
                let out = ok(&args);
                assert_eq!(out.lines().count(), 1, "one line of output");
                let got: Value = serde_json::from_str(&out).expect("check prints JSON");
                assert_eq!(got, case.expected, "{name} / {} via {source}", case.name);
                runs += 1;
            }
        }
    }
    assert!(runs > 600, "ran {runs} checks");
}

#[test]
fn build_is_deterministic_and_ignores_customer_order() {
    let dir = TempDir::new("cli");
    let (a, b, c) = (dir.path("a.snap"), dir.path("b.snap"), dir.path("c.snap"));
    ok(&["build", &example(), "-o", &a, "--version", "4"]);
    ok(&["build", &example(), "-o", &b, "--version", "4"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let mut catalog: Value = serde_json::from_slice(&std::fs::read(example()).unwrap()).unwrap();
    catalog["customers"].as_array_mut().unwrap().reverse();
    let reversed = dir.path("reversed.json");
    std::fs::write(&reversed, catalog.to_string()).unwrap();
    ok(&["build", &reversed, "-o", &c, "--version", "4"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());

    let info: Value = serde_json::from_str(&ok(&["inspect", &a])).unwrap();
    assert_eq!(info["kind"], "snapshot");
    assert_eq!(info["version"], 4);
    assert_eq!(info["customers"], 10);
    assert_eq!(info["features"], 7);
}

#[test]
fn diff_apply_round_trip_and_wrong_base_is_refused() {
    let dir = TempDir::new("cli");
    let (v1, v2, delta, out) = (
        dir.path("v1.snap"),
        dir.path("v2.snap"),
        dir.path("d"),
        dir.path("out.snap"),
    );
    ok(&["build", &example(), "-o", &v1, "--version", "1"]);
    let mut catalog: Value = serde_json::from_slice(&std::fs::read(example()).unwrap()).unwrap();
    // cus_free_ada upgrades to pro with 3 seats.
    catalog["customers"][0]["subscriptions"][0]["items"][0] =
        serde_json::json!({"product": "prod_pro", "quantity": 3});
    let changed = dir.path("v2.json");
    std::fs::write(&changed, catalog.to_string()).unwrap();
    ok(&["build", &changed, "-o", &v2, "--version", "2"]);
    ok(&["diff", &v1, &v2, "-o", &delta]);
    let info: Value = serde_json::from_str(&ok(&["inspect", &delta])).unwrap();
    assert_eq!(info["kind"], "delta");
    assert_eq!(info["changes"], 1);
    assert_eq!(info["full"], false);
    ok(&["apply", &v1, &delta, "-o", &out]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&v2).unwrap());
    let seats: Value =
        serde_json::from_str(&ok(&["check", &out, "cus_free_ada", "seats", "--at", "0"])).unwrap();
    assert_eq!(seats["limit"], 3);

    let err = fails(&["apply", &v2, &delta, "-o", &dir.path("bad.snap")]);
    assert!(err.contains("delta is for base version 1"), "{err}");
    assert!(!Path::new(&dir.path("bad.snap")).exists());
}

#[test]
fn dump_evaluates_identically() {
    let dir = TempDir::new("cli");
    let snap = dir.path("s.snap");
    ok(&["build", &example(), "-o", &snap]);
    let dumped = dir.path("dumped.json");
    std::fs::write(&dumped, ok(&["dump", &snap])).unwrap();
    let catalog: Value = serde_json::from_slice(&std::fs::read(example()).unwrap()).unwrap();
    let features: Vec<String> = catalog["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect();
    for c in catalog["customers"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        for f in &features {
            for at in [
                "0",
                "1798761599",
                "1798761600",
                "1800000000",
                "1830297600",
                "1900000000",
            ] {
                let a = ok(&["check", &example(), id, f, "--at", at]);
                let b = ok(&["check", &dumped, id, f, "--at", at]);
                assert_eq!(a, b, "{id} {f} at {at}");
            }
        }
    }
}

#[test]
fn bad_input_gets_a_one_line_error() {
    let dir = TempDir::new("cli");
    let snap = dir.path("s.snap");
    ok(&["build", &example(), "-o", &snap]);
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let corrupt = dir.path("corrupt.snap");
    std::fs::write(&corrupt, &bytes).unwrap();
    let err = fails(&["check", &corrupt, "cus_pro_bob", "sso"]);
    assert!(err.contains("checksum mismatch"), "{err}");
    let err = fails(&["check", &dir.path("missing.snap"), "c", "f"]);
    assert!(err.contains("missing.snap"), "{err}");
    let truncated = dir.path("truncated.snap");
    std::fs::write(&truncated, &bytes[..40]).unwrap();
    let err = fails(&["inspect", &truncated]);
    assert!(err.contains("truncated"), "{err}");
    let garbage = dir.path("garbage.json");
    std::fs::write(&garbage, "{\"features\": [").unwrap();
    let err = fails(&["check", &garbage, "c", "f"]);
    assert!(err.contains("invalid JSON"), "{err}");
}

#[test]
fn synth_is_deterministic_and_valid() {
    let dir = TempDir::new("cli");
    let (a, b, s) = (dir.path("a.json"), dir.path("b.json"), dir.path("a.snap"));
    ok(&["synth", "--customers", "500", "--seed", "3", "-o", &a]);
    ok(&["synth", "--customers", "500", "--seed", "3", "-o", &b]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    ok(&["build", &a, "-o", &s]);
    let info: Value = serde_json::from_str(&ok(&["inspect", &s])).unwrap();
    assert_eq!(info["customers"], 500);
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "check", "build", "diff", "apply", "dump", "inspect", "synth",
    ] {
        let out = ok(&[cmd, "--help"]);
        assert!(out.contains("Usage: entitle"), "{cmd}: {out}");
    }
    assert!(ok(&["--help"]).contains("Commands:"));
}
