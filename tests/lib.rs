//! Shared helpers for entitle's cross-cutting tests: reading the conformance suite.

use std::path::{Path, PathBuf};

use entitle_core::{Decision, Limit};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One case of a conformance file.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// Unique name within the file.
    pub name: String,
    /// Customer id to evaluate.
    pub customer: String,
    /// Feature key to evaluate.
    pub feature: String,
    /// Unix time of the evaluation.
    pub at: i64,
    /// Current usage, when the case tests `allows`.
    pub usage: Option<u64>,
    /// Requested amount (default 1).
    pub requested: Option<u64>,
    /// The expected answer, as the CLI prints it.
    pub expected: Value,
}

/// A conformance file: a catalog (exact bytes) and either cases or an expected error path.
#[derive(Debug, Deserialize)]
pub struct ConformanceFile {
    /// What the file covers.
    pub description: String,
    /// The catalog's exact text.
    pub catalog: Box<RawValue>,
    /// Cases, for valid catalogs.
    #[serde(default)]
    pub cases: Vec<Case>,
    /// The path the error must name, for invalid catalogs.
    pub expect_error: Option<String>,
}

/// The `tests/conformance` directory.
pub fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// Every conformance file (valid ones first, then `invalid/`), sorted by name.
///
/// # Panics
/// When the directory or a file cannot be read or parsed: the suite itself is broken.
pub fn conformance_files() -> Vec<(PathBuf, ConformanceFile)> {
    let mut paths = Vec::new();
    for dir in [conformance_dir(), conformance_dir().join("invalid")] {
        let mut here: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        here.sort();
        paths.extend(here);
    }
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let file: ConformanceFile =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, file)
        })
        .collect()
}

/// A decision rendered exactly as `entitle check` prints it (the shape of `expected`).
pub fn decision_json(d: &Decision, usage: Option<u64>, requested: Option<u64>) -> Value {
    let limit = match d.limit() {
        Some(Limit::Finite(n)) => Value::from(n),
        Some(Limit::Unlimited) => Value::from("unlimited"),
        None => Value::Null,
    };
    let mut out = serde_json::json!({
        "feature_type": d.feature_type().map(|t| t.as_str()),
        "enabled": d.enabled(),
        "limit": limit,
        "reason": d.reason.as_str(),
    });
    if let Some(usage) = usage {
        out["allowed"] = Value::from(d.allows(usage, requested.unwrap_or(1)));
    }
    out
}
