//! Instructions per lookup, counted by `valgrind --tool=callgrind` (see `benches/callgrind.sh`):
//! a count that does not depend on the machine's load, for comparing versions of the lookup path.
//!
//! The snapshot is `synth::catalog_json(10000, 1)` built in-process; the feature is `sso`; the hot
//! customer is the catalog's first. Each run
//! performs one row: it sets up everything first, then calls `measured` once, which does `CALLS`
//! lookups of that row. Run under callgrind with `--collect-atstart=no
//! --toggle-collect=*callgrind_lookups*measured*`, the collected total divided by `CALLS` is the
//! cost of one lookup, including its share of the loop (a handful of instructions) and, for the
//! `*_key` rows, resolving the feature key on every call.
//!
//! Rows:
//! - `hot_key` / `hot_handle`: one customer over and over (`Engine::enabled` / `check_feature`);
//! - `hot_view_handle`: the same through a `View` held by the caller (no store load per call);
//! - `c_hot_key` / `c_hot_handle`: the hot customer through the C ABI
//!   (`entitle_engine_enabled` / `entitle_engine_feature_enabled`);
//! - `random_key` / `random_handle`: the known customers in a shuffled order;
//! - `random_batch`: the same stream, 64 customers per `check_customers_at` call, per customer;
//! - `unknown_key` / `unknown_handle`: ids that are in no snapshot.
//!
//! Usage: `callgrind_lookups ROW [CALLS]` (CALLS defaults to 200000).

use std::hint::black_box;

use entitle::{
    entitle_engine, entitle_engine_enabled, entitle_engine_feature, entitle_engine_feature_enabled,
    entitle_engine_free, entitle_engine_from_snapshot, entitle_feature, entitle_result,
};
use entitle_core::{Catalog, Engine, PackedIds};

const ROWS: &[&str] = &[
    "hot_key",
    "hot_handle",
    "hot_view_handle",
    "c_hot_key",
    "c_hot_handle",
    "random_key",
    "random_handle",
    "random_batch",
    "unknown_key",
    "unknown_handle",
];
const BATCH: usize = 64;

fn next_random(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(2_685_821_657_736_338_717)
}

/// What a row needs, set up before measuring.
struct Setup {
    engine: Engine,
    c_engine: *mut entitle_engine,
    c_sso: entitle_feature,
    /// The catalog's first customer (as in `ffi/bench/run_handles.sh`).
    hot: Vec<u8>,
    /// The known ids in a shuffled order, packed end to end.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    unknown: Vec<String>,
}

impl Setup {
    fn id(&self, i: usize) -> &[u8] {
        let i = i % self.ends.len();
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// Performs `calls` lookups of `row`; the only function whose instructions callgrind collects.
#[inline(never)]
fn measured(row: &str, s: &Setup, calls: usize) -> usize {
    let engine = &s.engine;
    let sso = engine.feature("sso").unwrap_or_else(|e| panic!("{e}"));
    let feature: &[u8] = b"sso";
    let hot = &s.hot[..];
    let mut sink = 0usize;
    match row {
        "hot_key" => {
            for _ in 0..calls {
                sink += usize::from(engine.enabled(black_box(hot), black_box(feature)));
            }
        }
        "hot_handle" => {
            for _ in 0..calls {
                sink += usize::from(
                    engine
                        .check_feature(black_box(hot), black_box(sso))
                        .enabled(),
                );
            }
        }
        "hot_view_handle" => {
            let view = engine.view();
            for _ in 0..calls {
                sink += usize::from(view.check_feature(black_box(hot), black_box(sso)).enabled());
            }
        }
        "c_hot_key" => {
            for _ in 0..calls {
                // SAFETY: `c_engine` is live until the end of `main`; the strings are readable.
                sink += usize::from(unsafe {
                    entitle_engine_enabled(
                        black_box(s.c_engine),
                        hot.as_ptr(),
                        hot.len(),
                        feature.as_ptr(),
                        feature.len(),
                    )
                });
            }
        }
        "c_hot_handle" => {
            for _ in 0..calls {
                // SAFETY: as above.
                sink += usize::from(unsafe {
                    entitle_engine_feature_enabled(
                        black_box(s.c_engine),
                        black_box(s.c_sso),
                        hot.as_ptr(),
                        hot.len(),
                    )
                });
            }
        }
        "random_key" => {
            for i in 0..calls {
                sink += usize::from(engine.enabled(black_box(s.id(i)), black_box(feature)));
            }
        }
        "random_handle" => {
            for i in 0..calls {
                sink += usize::from(
                    engine
                        .check_feature(black_box(s.id(i)), black_box(sso))
                        .enabled(),
                );
            }
        }
        "random_batch" => {
            let n = s.ends.len() / BATCH * BATCH;
            let mut local = [0usize; BATCH];
            let mut done = 0;
            while done < calls {
                let first = done % n;
                let start = if first == 0 { 0 } else { s.ends[first - 1] };
                let window = &s.ends[first..first + BATCH];
                for (l, e) in local.iter_mut().zip(window) {
                    *l = e - start;
                }
                let packed = PackedIds::new(&s.bytes[start..window[BATCH - 1]], &local)
                    .unwrap_or_else(|| panic!("bad ends"));
                engine.check_customers_at(black_box(sso), &packed, None, |_, d| {
                    sink += usize::from(d.enabled());
                });
                done += BATCH;
            }
        }
        "unknown_key" => {
            for i in 0..calls {
                let c = &s.unknown[i % s.unknown.len()];
                sink += usize::from(engine.enabled(black_box(c), black_box(feature)));
            }
        }
        "unknown_handle" => {
            for i in 0..calls {
                let c = &s.unknown[i % s.unknown.len()];
                sink += usize::from(engine.check_feature(black_box(c), black_box(sso)).enabled());
            }
        }
        other => panic!("unknown row {other}"),
    }
    sink
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(row) = args.get(1).filter(|r| ROWS.contains(&r.as_str())) else {
        return Err(format!(
            "usage: callgrind_lookups ROW [CALLS]; rows: {}",
            ROWS.join(" ")
        )
        .into());
    };
    let calls: usize = match args.get(2) {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    let catalog = Catalog::from_json(entitle_core::synth::catalog_json(10_000, 1).as_bytes())?;
    let hot = catalog.customers()[0].id.as_bytes().to_vec();
    let engine = Engine::from_catalog(&catalog)?;
    let snapshot = engine.view().base().as_bytes().to_vec();
    let mut c_engine: *mut entitle_engine = std::ptr::null_mut();
    let mut c_sso = entitle_feature::default();
    // SAFETY: the bytes and the key are readable for the calls; the out pointers are writable.
    let (made, resolved) = unsafe {
        let made = entitle_engine_from_snapshot(snapshot.as_ptr(), snapshot.len(), &mut c_engine);
        let resolved = entitle_engine_feature(c_engine, b"sso".as_ptr(), 3, &mut c_sso);
        (made, resolved)
    };
    if made != entitle_result::Ok || resolved != entitle_result::Ok {
        return Err("could not set up the C engine".into());
    }

    let mut ids: Vec<Vec<u8>> = engine
        .view()
        .base()
        .customers()
        .map(|(id, _)| id.to_vec())
        .collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for i in (1..ids.len()).rev() {
        ids.swap(i, (next_random(&mut seed) % (i as u64 + 1)) as usize);
    }
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(ids.len());
    for id in &ids {
        bytes.extend_from_slice(id);
        ends.push(bytes.len());
    }
    let unknown = (0..ids.len())
        .map(|i| format!("cus_nobody{i:08}"))
        .collect();
    let setup = Setup {
        engine,
        hot,
        c_engine,
        c_sso,
        bytes,
        ends,
        unknown,
    };
    let sink = measured(row, &setup, calls);
    println!("{row} calls={calls} sink={sink}");
    // SAFETY: the engine came from `entitle_engine_from_snapshot` and is not used after this.
    unsafe { entitle_engine_free(setup.c_engine) };
    Ok(())
}
