//! Replays the fuzz targets' checks in `cargo test`: every input under `fuzz/regressions/`, plus the
//! golden v1 files, goes through exactly what the `snapshot` and `delta` fuzz targets do with an
//! input (the targets' code is included from `fuzz/src/lib.rs`).

use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_support;

fn inputs(dir: &Path, golden_ext: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for (dir, ext) in [
        (root.join("../fuzz/regressions").join(dir), None),
        (root.join("golden/v1"), Some(golden_ext)),
    ] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let wanted = match ext {
                Some(ext) => path.extension().is_some_and(|x| x == ext),
                None => path.is_file(),
            };
            if wanted {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(kind: &str, golden_ext: &str, run: fn(&[u8])) {
    let files = inputs(Path::new(kind), golden_ext);
    assert!(files.len() >= 4, "expected {kind} inputs, found {files:?}");
    for path in files {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{kind}: {}", path.display());
        run(&bytes);
    }
}

#[test]
fn snapshot_regressions_replay() {
    replay("snapshot", "snap", fuzz_support::snapshot_input);
}

#[test]
fn delta_regressions_replay() {
    replay("delta", "delta", fuzz_support::delta_input);
}
