//! Store benchmarks: applying recorded event streams, no-op updates, and a rename nested in a
//! conversation list, each against a baseline measured in the same run.
//!
//! Run with `cargo bench --features bench-internals --bench store`. After criterion's own
//! report it prints a table of medians (ns per event) and ratios to the baselines; see
//! `benches/README.md` for method and recorded figures.

use std::{
    collections::BTreeMap,
    hint::black_box,
    sync::Mutex,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput};
use talkstore::bench::{BareHarness, Frame, Harness, ListHarness, recorded_events};

const EVENTS: usize = 100_000;
const USERS: usize = 1_000;
const CONVERSATIONS: usize = 100;
const MESSAGES: usize = 10_000;

/// Per-iteration times (ns per element) of every benchmark, for the ratio table.
static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn record(id: &str, elapsed: Duration, elements: usize) {
    let ns = elapsed.as_nanos() as f64 / elements as f64;
    SAMPLES
        .lock()
        .unwrap()
        .entry(id.to_owned())
        .or_default()
        .push(ns);
}

/// Times `apply` over freshly built frames; frame building is outside the timed code.
fn timed<S>(
    id: &str,
    iters: u64,
    state: &mut S,
    frames: impl Fn(&mut S) -> Vec<Frame>,
    apply: impl Fn(&mut S, Frame) -> usize,
    expect_emissions: impl Fn(usize, usize) -> bool,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let batch = frames(state);
        let n = batch.len();
        let start = Instant::now();
        let mut emitted = 0;
        for frame in batch {
            emitted += apply(state, black_box(frame));
        }
        let elapsed = start.elapsed();
        assert!(
            expect_emissions(emitted, n),
            "{id}: {emitted} emissions for {n} frames"
        );
        record(id, elapsed, n);
        total += elapsed;
    }
    total
}

fn apply_events(c: &mut Criterion) {
    let events = recorded_events(EVENTS, USERS, CONVERSATIONS, MESSAGES);
    let mut group = c.benchmark_group("apply_events");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(EVENTS as u64));
    for k in [0, 1, 10] {
        let mut store = Harness::new(USERS, CONVERSATIONS, MESSAGES, k);
        let source = Harness::new(USERS, CONVERSATIONS, MESSAGES, 0);
        let id = format!("apply_events/store/{k} subscribers");
        group.bench_function(BenchmarkId::new("store", format!("{k} subscribers")), |b| {
            b.iter_custom(|iters| {
                timed(
                    &id,
                    iters,
                    &mut store,
                    |s| s.frames(&events),
                    Harness::apply,
                    |e, n| e == n * k,
                )
            })
        });
        let mut bare = (source, BareHarness::new(USERS, CONVERSATIONS, MESSAGES, k));
        let name = if k == 0 {
            "floor (plain HashMap)"
        } else {
            "bare (HashMap of Mutable)"
        };
        let id = format!("apply_events/{name}/{k} subscribers");
        group.bench_function(BenchmarkId::new(name, format!("{k} subscribers")), |b| {
            b.iter_custom(|iters| {
                timed(
                    &id,
                    iters,
                    &mut bare,
                    |(source, _)| source.frames(&events),
                    |(_, bare), f| bare.apply(f),
                    |e, n| e == n * k,
                )
            })
        });
    }
    group.finish();
}

fn noop_updates(c: &mut Criterion) {
    // Renames and edits that re-send the current version: pure no-ops.
    let events = recorded_events(EVENTS, USERS, CONVERSATIONS, MESSAGES);
    let mut group = c.benchmark_group("noop_updates");
    for k in [1, 10] {
        let mut store = Harness::new(USERS, CONVERSATIONS, MESSAGES, k);
        for frame in store.frames(&events) {
            store.apply(frame);
        }
        let frames = store.noop_frames(&events);
        group
            .sample_size(10)
            .throughput(Throughput::Elements(frames.len() as u64));
        let id = format!("noop_updates/store/{k} subscribers");
        group.bench_function(BenchmarkId::new("store", format!("{k} subscribers")), |b| {
            b.iter_custom(|iters| {
                timed(
                    &id,
                    iters,
                    &mut store,
                    |_| frames.clone(),
                    Harness::apply,
                    |e, _| e == 0,
                )
            })
        });
        let mut bare = BareHarness::new(USERS, CONVERSATIONS, MESSAGES, k);
        bare.compare = true;
        for frame in frames.clone() {
            bare.apply(frame);
        }
        let id = format!("noop_updates/bare (compare, then set)/{k} subscribers");
        group.bench_function(
            BenchmarkId::new("bare (compare, then set)", format!("{k} subscribers")),
            |b| {
                b.iter_custom(|iters| {
                    timed(
                        &id,
                        iters,
                        &mut bare,
                        |_| frames.clone(),
                        BareHarness::apply,
                        |e, _| e == 0,
                    )
                })
            },
        );
    }
    group.finish();
}

fn rename_in_list(c: &mut Criterion) {
    const RENAMES: usize = 200;
    let mut group = c.benchmark_group("rename_in_list");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(RENAMES as u64));
    for (rows, r) in [(1_000, 1), (1_000, 10), (1_000, 100), (10_000, 10)] {
        let mut list = ListHarness::new(rows, r);
        let label = format!("R={r} of {rows} rows");
        let id = format!("rename_in_list/store/{label}");
        group.bench_function(BenchmarkId::new("store", &label), |b| {
            b.iter_custom(|iters| {
                timed(
                    &id,
                    iters,
                    &mut list,
                    |list| (0..RENAMES).map(|_| list.rename_frame()).collect(),
                    |list, f| usize::from(list.apply(f)),
                    |e, n| e == n,
                )
            })
        });
    }
    group.finish();
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Prints medians, and for each store benchmark its ratio to the baseline of the same group
/// and parameter (ids are `group/kind/parameter`).
fn print_ratios() {
    let samples = SAMPLES.lock().unwrap();
    let medians: Vec<(Vec<&str>, f64)> = samples
        .iter()
        .map(|(id, s)| (id.splitn(3, '/').collect(), median(s)))
        .collect();
    println!(
        "\n{:<66} {:>11} {:>8}",
        "benchmark (median of iterations)", "ns/element", "ratio"
    );
    for (parts, ns) in &medians {
        let baseline = medians.iter().find(|(other, _)| {
            parts[1] == "store"
                && other[1] != "store"
                && other[0] == parts[0]
                && other.get(2) == parts.get(2)
        });
        let ratio = baseline.map_or(String::from("-"), |(_, base)| format!("{:.2}x", ns / base));
        println!("{:<66} {ns:>11.1} {ratio:>8}", parts.join("/"));
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    apply_events(&mut criterion);
    noop_updates(&mut criterion);
    rename_in_list(&mut criterion);
    criterion.final_summary();
    print_ratios();
}
