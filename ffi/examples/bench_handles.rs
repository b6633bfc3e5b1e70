//! The Rust side of the feature-handle benchmark: the same rows as `ffi/bench/bench_handles.c`,
//! calling the core directly. One run measures every row once, in a fixed order, so that rows of
//! the same run share the machine's load; `ffi/bench/run_handles.sh` runs the Rust and the C
//! programs in turns and prints medians with their ratio to the floor of the same run.
//!
//! Rows (ns per lookup, feature `sso`):
//! - `floor_dependent_load`: one random load over 32 MiB that depends on the previous one (the
//!   latency of a cache miss, with nothing else to do);
//! - `hot_key` / `hot_handle`: one customer over and over, by key / through a handle;
//! - `hot_view_handle`: the same through a `View` held for the whole row (Rust only): what a
//!   lookup costs without loading the engine's current view on every call;
//! - `random_key` / `random_handle`: customers drawn uniformly from the snapshot before timing;
//! - `random_batch`: the same stream, 64 customers per `check_customers_at` call;
//! - `unknown_handle`: ids that are in no snapshot.
//!
//! Times are thread CPU time (Linux). `anon_huge_kb` is the process's `AnonHugePages` total from
//! `/proc/self/smaps` before the rows run: a 1M snapshot shows 28,672 kB once the kernel has merged
//! its pages (run with `HUGE_WAIT=60` to wait for that; see `core/src/snapshot/buffer.rs`). Usage: `cargo run --release -p entitle-ffi --example bench_handles -- SNAPSHOT IDS_FILE`

use std::hint::black_box;

use entitle_core::{Engine, PackedIds};

const CALLS: usize = 2_000_000;
const STREAM: usize = 1 << 20;
const BATCH: usize = 64;

fn next_random(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(2_685_821_657_736_338_717)
}

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, out: *mut Timespec) -> i32;
}

/// `CLOCK_THREAD_CPUTIME_ID` on Linux.
const THREAD_CPU: i32 = 3;

/// This thread's CPU time in ns, not wall time: on a machine shared with other work, time spent
/// descheduled would otherwise count as lookup time (as in `bench_handles.c`).
#[derive(Clone, Copy)]
struct Instant(f64);

impl Instant {
    fn now() -> Instant {
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        unsafe { clock_gettime(THREAD_CPU, &mut ts) };
        Instant(ts.sec as f64 * 1e9 + ts.nsec as f64)
    }
}

fn per_call(start: Instant, calls: usize) -> f64 {
    (Instant::now().0 - start.0) / calls as f64
}

/// A random cyclic permutation of the 64-byte lines of 32 MiB: each line holds the next's index.
fn chase_table() -> Vec<usize> {
    const LINES: usize = (32 << 20) / 64;
    let mut order: Vec<usize> = (0..LINES).collect();
    let mut seed = 0x1234_5678_u64;
    for i in (1..LINES).rev() {
        order.swap(i, (next_random(&mut seed) % (i as u64 + 1)) as usize);
    }
    let mut next = vec![0usize; LINES * 8];
    for w in 0..LINES {
        next[order[w] * 8] = order[(w + 1) % LINES] * 8;
    }
    next
}

/// The sum of the `AnonHugePages` lines of `/proc/self/smaps` (0 where there is none).
fn read_anon_huge_kb() -> u64 {
    std::fs::read_to_string("/proc/self/smaps")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("AnonHugePages:"))
        .filter_map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(snapshot), Some(ids_file)) = (args.get(1), args.get(2)) else {
        return Err("usage: bench_handles SNAPSHOT IDS_FILE".into());
    };
    let engine = Engine::from_file(snapshot)?;
    let text = std::fs::read_to_string(ids_file)?;
    let ids: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
    if ids.is_empty() {
        return Err("no ids".into());
    }
    // The random stream, packed end to end (the batch call's input shape; single lookups read
    // the same bytes).
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(STREAM);
    for _ in 0..STREAM {
        bytes.extend_from_slice(ids[(next_random(&mut seed) % ids.len() as u64) as usize]);
        ends.push(bytes.len());
    }
    let stream: Vec<&[u8]> = (0..STREAM)
        .map(|i| &bytes[if i == 0 { 0 } else { ends[i - 1] }..ends[i]])
        .collect();
    let unknown: Vec<String> = (0..STREAM).map(|i| format!("cus_nobody{:08}", i)).collect();
    // Huge pages for a large snapshot come from the kernel's background thread, seconds after
    // loading: with HUGE_WAIT=SECONDS, wait (up to that long) until their total stops growing.
    let wait: u64 = std::env::var("HUGE_WAIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The thread merges pages in steps about 10 s apart: stop once 15 s pass without growth.
    let mut anon_huge_kb = read_anon_huge_kb();
    let (mut waited, mut still) = (0, 0);
    while waited < wait && still < 3 {
        std::thread::sleep(std::time::Duration::from_secs(5));
        waited += 5;
        let now = read_anon_huge_kb();
        still = if now == anon_huge_kb && now > 0 {
            still + 1
        } else {
            0
        };
        anon_huge_kb = now;
    }
    let chase = chase_table();
    let sso = engine.feature("sso")?;
    let feature: &[u8] = b"sso";
    let hot = ids[0];
    let mut sink = 0usize;

    let mut at = 0usize;
    let t = Instant::now();
    for _ in 0..CALLS {
        at = chase[at];
    }
    let floor = per_call(t, CALLS);
    sink += at;

    let t = Instant::now();
    for _ in 0..CALLS {
        sink += usize::from(engine.enabled(black_box(hot), black_box(feature)));
    }
    let hot_key = per_call(t, CALLS);
    let t = Instant::now();
    for _ in 0..CALLS {
        sink += usize::from(
            engine
                .check_feature(black_box(hot), black_box(sso))
                .enabled(),
        );
    }
    let hot_handle = per_call(t, CALLS);
    let view = engine.view();
    let t = Instant::now();
    for _ in 0..CALLS {
        sink += usize::from(view.check_feature(black_box(hot), black_box(sso)).enabled());
    }
    let hot_view_handle = per_call(t, CALLS);
    drop(view);
    let t = Instant::now();
    for i in 0..CALLS {
        let c = stream[i & (STREAM - 1)];
        sink += usize::from(engine.enabled(black_box(c), black_box(feature)));
    }
    let random_key = per_call(t, CALLS);
    let t = Instant::now();
    for i in 0..CALLS {
        let c = stream[i & (STREAM - 1)];
        sink += usize::from(engine.check_feature(black_box(c), black_box(sso)).enabled());
    }
    let random_handle = per_call(t, CALLS);
    let t = Instant::now();
    let mut done = 0;
    while done < CALLS {
        let first = done & (STREAM - 1);
        let start = if first == 0 { 0 } else { ends[first - 1] };
        let window = &ends[first..first + BATCH];
        // The window's ends are offsets into `bytes`; rebase them onto the window's first byte.
        let slice = &bytes[start..window[BATCH - 1]];
        let mut local = [0usize; BATCH];
        for (l, e) in local.iter_mut().zip(window) {
            *l = e - start;
        }
        let packed = PackedIds::new(slice, &local).ok_or("bad ends")?;
        engine.check_customers_at(black_box(sso), &packed, None, |_, d| {
            sink += usize::from(d.enabled());
        });
        done += BATCH;
    }
    let random_batch = per_call(t, done);
    let t = Instant::now();
    for i in 0..CALLS {
        let c = &unknown[i & (STREAM - 1)];
        sink += usize::from(engine.check_feature(black_box(c), black_box(sso)).enabled());
    }
    let unknown_handle = per_call(t, CALLS);
    black_box(sink);

    println!(
        "rust floor_dependent_load={floor:.2} hot_key={hot_key:.2} hot_handle={hot_handle:.2} \
         hot_view_handle={hot_view_handle:.2} \
         random_key={random_key:.2} random_handle={random_handle:.2} \
         random_batch={random_batch:.2} unknown_handle={unknown_handle:.2} customers={} \
         anon_huge_kb={anon_huge_kb}",
        ids.len()
    );
    Ok(())
}
