//! The Rust side of the C ABI benchmark: the same loop as `ffi/bench/bench_enabled.c` (one hot
//! customer, then random customers drawn before timing), calling `Engine::enabled` directly.
//!
//! Usage: `cargo run --release -p entitle-ffi --example bench_enabled -- SNAPSHOT IDS_FILE [RUNS]`
//! (`ffi/bench/run.sh` runs both and writes the comparison).

use std::hint::black_box;
use std::time::Instant;

use entitle_core::Engine;

const CALLS: usize = 4_000_000;
const STREAM: usize = 1 << 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn next_random(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(2_685_821_657_736_338_717)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(snapshot), Some(ids_file)) = (args.get(1), args.get(2)) else {
        return Err("usage: bench_enabled SNAPSHOT IDS_FILE [RUNS]".into());
    };
    let runs: usize = match args.get(3) {
        Some(r) => r.parse()?,
        None => 7,
    };
    let engine = Engine::from_file(snapshot)?;
    let text = std::fs::read_to_string(ids_file)?;
    let ids: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
    if ids.is_empty() {
        return Err("no ids".into());
    }
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let stream: Vec<&[u8]> = (0..STREAM)
        .map(|_| ids[(next_random(&mut seed) % ids.len() as u64) as usize])
        .collect();

    let feature: &[u8] = b"sso";
    let (mut hot, mut random) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let mut enabled = 0usize;
        let h = ids[0];
        let t0 = Instant::now();
        for _ in 0..CALLS {
            enabled += usize::from(engine.enabled(black_box(h), black_box(feature)));
        }
        let t1 = Instant::now();
        for i in 0..CALLS {
            let c = stream[i & (STREAM - 1)];
            enabled += usize::from(engine.enabled(black_box(c), black_box(feature)));
        }
        let t2 = Instant::now();
        black_box(enabled);
        hot.push((t1 - t0).as_nanos() as f64 / CALLS as f64);
        random.push((t2 - t1).as_nanos() as f64 / CALLS as f64);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "rust hot_ns={:.2} random_ns={:.2} hot_best_ns={:.2} random_best_ns={:.2} customers={} \
         runs={} calls={CALLS}",
        median(hot.clone()),
        median(random.clone()),
        best(&hot),
        best(&random),
        ids.len(),
        runs.max(1)
    );
    Ok(())
}
