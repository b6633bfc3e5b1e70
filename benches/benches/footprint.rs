//! Snapshot size and resident memory per customer on synthetic catalogs of 10,000 and 1,000,000
//! customers. Prints a Markdown table (recorded in `benches/RESULTS.md`).
//!
//! Resident memory is measured in a fresh child process (this program, re-run with
//! `ENTITLE_FOOTPRINT_LOAD` set), so that memory the parent used to generate and build the
//! snapshot cannot be reused and hide the growth: the child reads its resident memory, reads the
//! snapshot file, loads it with `Snapshot::from_bytes`, and reads its resident memory again. The
//! growth is given both in all (`VmRSS`) and in anonymous (`RssAnon`) memory: the first includes
//! the pages of code the load runs for the first time, which do not grow with the snapshot.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use entitle_benches::{build, data_dir, parse, resident, synth_json, SIZES};
use entitle_core::Snapshot;

const CHILD: &str = "ENTITLE_FOOTPRINT_LOAD";

fn main() {
    if let Some(path) = std::env::var_os(CHILD) {
        load(Path::new(&path));
        return;
    }
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    println!(
        "| customers | snapshot bytes | bytes / customer | RSS growth | RSS / customer | \
         anon RSS growth | anon RSS / customer | heap_size / customer | profiles | tables | slots |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for customers in SIZES {
        let snapshot = build(&parse(&synth_json(customers)), 1);
        let path = dir.join(format!("synth-{customers}.snap"));
        std::fs::write(&path, snapshot.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(exe)
            .env(CHILD, &path)
            .output()
            .unwrap_or_else(|e| panic!("running the measuring child: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let numbers: Vec<u64> = text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [total, anon, heap] = numbers[..] else {
            panic!(
                "the measuring child printed {text:?} (stderr: {})",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let n = customers as f64;
        let size = snapshot.as_bytes().len();
        println!(
            "| {customers} | {size} | {:.1} | {total} | {:.1} | {anon} | {:.1} | {:.1} | {} | {} | {} |",
            size as f64 / n,
            total as f64 / n,
            anon as f64 / n,
            heap as f64 / n,
            snapshot.profile_count(),
            snapshot.table_count(),
            snapshot.slot_count(),
        );
    }
}

/// The child: prints the growth of all and of anonymous resident memory over reading and loading
/// the snapshot, and the snapshot's own accounting of its memory.
fn load(path: &Path) {
    let before = resident().unwrap_or_else(|| panic!("no /proc/self/status"));
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let snapshot = Snapshot::from_bytes(bytes).unwrap_or_else(|e| panic!("{e}"));
    let after = resident().unwrap_or_else(|| panic!("no /proc/self/status"));
    println!(
        "{} {} {}",
        after.total.saturating_sub(before.total),
        after.anon.saturating_sub(before.anon),
        black_box(&snapshot).heap_size()
    );
}
