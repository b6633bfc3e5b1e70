//! Criterion benchmarks of the core on synthetic catalogs of 10,000 and 1,000,000 customers:
//! lookups (hot, random, unknown customers; plain and with a 1,000-customer overlay), building a
//! snapshot from catalog JSON, loading one from bytes, and applying deltas. Targets and recorded
//! results are in `benches/RESULTS.md`.

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use entitle_benches::{
    build, changed_ids, hot_customer, parse, shuffled_ids, synth_json, unknown_ids,
    view_with_overlay, with_changed_plans, Ids, SIZES,
};
use entitle_core::store::DEFAULT_COMPACTION_THRESHOLD;
use entitle_core::synth::SYNTH_EPOCH;
use entitle_core::{diff, BuildOptions, Catalog, Delta, Engine, Snapshot, Store, View};

/// The flag every lookup benchmark asks about.
const FEATURE: &str = "sso";

/// Everything the benchmarks of one catalog size need, built once per run (not timed).
struct Fixture {
    json: String,
    snapshot: Arc<Snapshot>,
    /// The snapshot with 1 / 1,000 customers moved to another plan (version 2).
    changed_1: Snapshot,
    changed_1000: Snapshot,
    /// Existing customer ids in random order.
    ids: Ids,
    hot: String,
    unknown: Ids,
    /// The ids in `with_overlay`'s overlay.
    overlay_ids: Ids,
}

impl Fixture {
    fn new(customers: u64) -> Fixture {
        let json = synth_json(customers);
        let catalog = parse(&json);
        let snapshot = Arc::new(build(&catalog, 1));
        let changed_1 = build(&with_changed_plans(&catalog, 1), 2);
        let changed_1000 = build(&with_changed_plans(&catalog, 1000), 2);
        Fixture {
            snapshot,
            changed_1,
            changed_1000,
            ids: shuffled_ids(&catalog),
            hot: hot_customer(&catalog),
            unknown: unknown_ids(100_000),
            overlay_ids: changed_ids(&catalog, 1000),
            json,
        }
    }

    fn get(customers: u64) -> &'static Fixture {
        static SMALL: OnceLock<Fixture> = OnceLock::new();
        static LARGE: OnceLock<Fixture> = OnceLock::new();
        let cell = if customers == SIZES[0] {
            &SMALL
        } else {
            &LARGE
        };
        cell.get_or_init(|| Fixture::new(customers))
    }

    fn delta(&self, changed: &Snapshot) -> Delta {
        diff(&self.snapshot, changed).unwrap_or_else(|e| panic!("diff: {e}"))
    }
}

fn label(customers: u64) -> &'static str {
    if customers == SIZES[0] {
        "10k"
    } else {
        "1M"
    }
}

fn lookups(c: &mut Criterion) {
    for customers in SIZES {
        let fx = Fixture::get(customers);
        let engine = Engine::from_snapshot(
            Snapshot::from_bytes(fx.snapshot.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}")),
        );
        let view = View::from(Arc::clone(&fx.snapshot));
        let with_overlay = view_with_overlay(&fx.snapshot, &fx.changed_1000);
        assert_eq!(with_overlay.overlay_len(), 1000);

        let mut g = c.benchmark_group(format!("lookup_{}", label(customers)));
        g.bench_function("engine_enabled/hot", |b| {
            b.iter(|| engine.enabled(black_box(fx.hot.as_str()), black_box(FEATURE)))
        });
        g.bench_function("view_check_at/hot", |b| {
            b.iter(|| view.check_at(black_box(fx.hot.as_str()), black_box(FEATURE), SYNTH_EPOCH))
        });
        // Through a feature handle (resolved once): no feature-key hashing or probing.
        let handle = engine.feature(FEATURE).unwrap_or_else(|e| panic!("{e}"));
        g.bench_function("engine_check_feature/hot", |b| {
            b.iter(|| {
                engine
                    .check_feature(black_box(fx.hot.as_str()), black_box(handle))
                    .enabled()
            })
        });
        g.bench_function("view_check_feature_at/hot", |b| {
            b.iter(|| {
                view.check_feature_at(black_box(fx.hot.as_str()), black_box(handle), SYNTH_EPOCH)
            })
        });
        // Resolving the feature key alone: a key that is not a feature is answered right after
        // the feature table probe, before any customer lookup.
        g.bench_function("view_check_at/unknown_feature", |b| {
            b.iter(|| {
                view.check_at(
                    black_box(fx.hot.as_str()),
                    black_box("no_such"),
                    SYNTH_EPOCH,
                )
            })
        });
        g.bench_function("engine_enabled/random", |b| {
            let mut next = fx.ids.cycle();
            b.iter(|| engine.enabled(black_box(next()), black_box(FEATURE)))
        });
        g.bench_function("view_check_at/random", |b| {
            let mut next = fx.ids.cycle();
            b.iter(|| view.check_at(black_box(next()), black_box(FEATURE), SYNTH_EPOCH))
        });
        g.bench_function("engine_check_feature/random", |b| {
            let mut next = fx.ids.cycle();
            b.iter(|| {
                engine
                    .check_feature(black_box(next()), black_box(handle))
                    .enabled()
            })
        });
        // 64 customers per call; the time reported is per call (divide by 64 for per lookup).
        g.bench_function("view_check_customers_at_64/random", |b| {
            let mut next = fx.ids.cycle();
            let mut batch: Vec<&[u8]> = Vec::with_capacity(64);
            b.iter(|| {
                batch.clear();
                batch.extend((0..64).map(|_| next()));
                let mut on = 0usize;
                view.check_customers_at(
                    black_box(handle),
                    &batch[..],
                    Some(SYNTH_EPOCH),
                    |_, d| on += usize::from(d.enabled()),
                );
                on
            })
        });
        g.bench_function("engine_check_feature/unknown", |b| {
            let mut next = fx.unknown.cycle();
            b.iter(|| {
                engine
                    .check_feature(black_box(next()), black_box(handle))
                    .enabled()
            })
        });
        g.bench_function("engine_enabled/unknown", |b| {
            let mut next = fx.unknown.cycle();
            b.iter(|| engine.enabled(black_box(next()), black_box(FEATURE)))
        });
        g.bench_function("view_check_at/unknown", |b| {
            let mut next = fx.unknown.cycle();
            b.iter(|| view.check_at(black_box(next()), black_box(FEATURE), SYNTH_EPOCH))
        });
        // A view carrying 1,000 customers in its overlay: random customers (nearly all miss the
        // overlay, then hit the base), and customers that are in the overlay.
        g.bench_function("overlay_check_at/random", |b| {
            let mut next = fx.ids.cycle();
            b.iter(|| with_overlay.check_at(black_box(next()), black_box(FEATURE), SYNTH_EPOCH))
        });
        g.bench_function("overlay_check_at/in_overlay", |b| {
            let mut next = fx.overlay_ids.cycle();
            b.iter(|| with_overlay.check_at(black_box(next()), black_box(FEATURE), SYNTH_EPOCH))
        });
        g.finish();
    }
}

fn building(c: &mut Criterion) {
    for customers in SIZES {
        let fx = Fixture::get(customers);
        let json = fx.json.as_bytes();
        let options = BuildOptions {
            version: 1,
            created_at: SYNTH_EPOCH,
        };
        let mut g = c.benchmark_group(format!("build_{}", label(customers)));
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
        if customers > SIZES[0] {
            g.measurement_time(Duration::from_secs(40));
        }
        // What `entitle build` does: parse and validate the JSON, then compile. Drops of the
        // results are not timed.
        g.bench_function("from_json+build", |b| {
            b.iter_with_large_drop(|| {
                let catalog = Catalog::from_json(black_box(json)).unwrap_or_else(|e| panic!("{e}"));
                let snapshot = Snapshot::build(&catalog, options).unwrap_or_else(|e| panic!("{e}"));
                (catalog, snapshot)
            })
        });
        g.bench_function("from_json", |b| {
            b.iter_with_large_drop(|| {
                Catalog::from_json(black_box(json)).unwrap_or_else(|e| panic!("{e}"))
            })
        });
        let catalog = Catalog::from_json(json).unwrap_or_else(|e| panic!("{e}"));
        g.bench_function("build", |b| {
            b.iter_with_large_drop(|| {
                Snapshot::build(black_box(&catalog), options).unwrap_or_else(|e| panic!("{e}"))
            })
        });
        g.finish();
    }
}

fn loading(c: &mut Criterion) {
    for customers in SIZES {
        let fx = Fixture::get(customers);
        let bytes = fx.snapshot.as_bytes();
        let mut g = c.benchmark_group(format!("load_{}", label(customers)));
        g.sample_size(20);
        // Decoding and validating owned bytes (as read from a file); the copy is not timed.
        g.bench_function("from_bytes", |b| {
            b.iter_batched(
                || bytes.to_vec(),
                |bytes| Snapshot::from_bytes(bytes).unwrap_or_else(|e| panic!("{e}")),
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

fn applying(c: &mut Criterion) {
    let customers = SIZES[1];
    let fx = Fixture::get(customers);
    let base = View::from(Arc::clone(&fx.snapshot));
    let one = fx.delta(&fx.changed_1);
    let thousand = fx.delta(&fx.changed_1000);
    assert!(!one.is_full() && one.change_count() == 1);
    assert!(!thousand.is_full() && thousand.change_count() == 1000);

    let mut g = c.benchmark_group(format!("apply_{}", label(customers)));
    for (name, delta) in [("1_customer", &one), ("1000_customers", &thousand)] {
        g.bench_function(format!("view_apply/{name}"), |b| {
            b.iter_with_large_drop(|| {
                base.apply(black_box(delta))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
        // Through the store: apply, then swap the new view in. A fresh store per iteration (not
        // timed), as a delta applies only once; below the compaction threshold, so no compaction.
        g.bench_function(format!("store_apply/{name}"), |b| {
            b.iter_batched(
                || Store::with_threshold(base.clone(), DEFAULT_COMPACTION_THRESHOLD),
                |store| {
                    store
                        .apply(black_box(delta))
                        .unwrap_or_else(|e| panic!("{e}"));
                    store
                },
                BatchSize::PerIteration,
            )
        });
    }
    // The publisher's side, and the background compaction that folds an overlay back in.
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.bench_function("diff/1000_customers", |b| {
        b.iter_with_large_drop(|| diff(&fx.snapshot, black_box(&fx.changed_1000)))
    });
    let with_overlay = base.apply(&thousand).unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("view_compact/1000_overlay", |b| {
        b.iter_with_large_drop(|| with_overlay.compact().unwrap_or_else(|e| panic!("{e}")))
    });
    g.finish();
}

/// The machine's floor for a random customer: one load from a random cache line of a buffer the
/// size of the 1M snapshot's slot table, on the same allocation (4 KiB pages), with nothing else
/// to do. "dependent" chains the loads, so each waits for the last (the latency of one miss);
/// "independent" lets the processor overlap them (the throughput).
fn machine(c: &mut Criterion) {
    const LINES: usize = (32 << 20) / 64;
    // A random cyclic permutation of the cache lines, stored as "next line" at each line's start.
    let mut order: Vec<usize> = (0..LINES).collect();
    let mut state = 0x1234_5678_u64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((u128::from(state) * n as u128) >> 64) as usize
    };
    for i in (1..LINES).rev() {
        order.swap(i, rand(i + 1));
    }
    let mut next = vec![0usize; LINES * 8];
    for w in 0..LINES {
        next[order[w] * 8] = order[(w + 1) % LINES] * 8;
    }
    let mut g = c.benchmark_group("machine");
    g.bench_function("dependent_load_32MiB", |b| {
        let mut at = 0usize;
        b.iter(|| {
            at = next[at];
            at
        })
    });
    g.bench_function("independent_load_32MiB", |b| {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            next[((u128::from(x) * LINES as u128) >> 64) as usize * 8]
        })
    });
    g.finish();
}

/// The group `criterion_main!` runs (in a module so the function the macro generates, which
/// cannot carry a doc comment, can be exempted from `missing_docs`).
#[allow(missing_docs)]
mod group {
    use super::*;

    criterion_group! {
        name = core;
        config = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        targets = machine, lookups, building, loading, applying
    }
}
criterion_main!(group::core);
