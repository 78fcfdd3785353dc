//! The cost of one commit with fixed live subscriptions, varying only the size of the data
//! around them, on the memory and the SQLite storage (the engine's write path; issue 10).
//!
//! Each case is a pair measured in the same run: bob posts one message that alice's open
//! subscription shows, with a small and a large amount of data around it:
//!
//! - `backlog`: alice's conversation list is open, and she has 0 or 20,000 unread messages
//!   in another conversation;
//! - `window`: alice's message window of the conversation holds 30 or 3,000 rows;
//! - `conversations`: alice's conversation list is open, and she is in 20 or 1,000
//!   conversations;
//! - `open-list`: not a post but alice opening her conversation list (its first page of 20)
//!   and closing it again, with 20 or 1,000 conversations (read from the activity index).
//!
//! Only the send (or the opening) is timed; each posted message is deleted again outside the timing, so the
//! data stays the same size. Run with `cargo bench --features sqlite --bench commit`; after
//! criterion's report it prints the median µs per post of each pair and the ratio small ÷
//! large (1.0 means the data size costs nothing). See `benches/README.md`.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion};
use talkstore::{
    ConversationParams, ConversationRef, Engine, ParticipantParams, SessionOptions, TalkSession,
    UserParams, get_talk_session,
};

/// A measured case: storage, case, data size.
type Case = (&'static str, &'static str, usize);

/// Per-iteration µs per post, by case.
static SAMPLES: Mutex<BTreeMap<Case, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// What stays alive while a case is measured: the sessions and alice's subscription.
struct Fixture {
    post_into: ConversationRef,
    /// For `open-list`: alice, whose list is opened instead of posting.
    opener: Option<TalkSession>,
    _keep: Vec<Box<dyn std::any::Any>>,
}

fn session(app: &str, user: &str, engine: &Engine) -> TalkSession {
    get_talk_session(SessionOptions::new(app, user).engine(engine.clone())).unwrap()
}

/// Creates conversation `id` with alice and bob, and `messages` messages from bob.
async fn conversation(bob: &TalkSession, id: &str, messages: usize) -> ConversationRef {
    let c = bob.conversation(id).unwrap();
    c.set(ConversationParams::new()).await.unwrap();
    let alice = c.participant("alice").unwrap();
    alice.set(ParticipantParams::new()).await.unwrap();
    for i in 0..messages {
        c.send(format!("backlog {i}").as_str()).await.unwrap();
    }
    c
}

async fn fixture(engine: Engine, case: &str, size: usize) -> Fixture {
    let app = format!("commit-{case}-{size}-{}", std::process::id());
    let alice = session(&app, "alice", &engine);
    let bob = session(&app, "bob", &engine);
    for (s, name) in [(&alice, "Alice"), (&bob, "Bob")] {
        s.current_user()
            .set(UserParams::new().name(name))
            .await
            .unwrap();
    }
    let post_into = conversation(&bob, "chat", 0).await;
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut opener = None;
    match case {
        "backlog" => {
            conversation(&bob, "backlog", size).await;
            let list = alice.subscribe_conversations(None);
            list.connected().await.unwrap();
            keep.push(Box::new(list));
        }
        "window" => {
            for i in 0..size {
                post_into.send(format!("old {i}").as_str()).await.unwrap();
            }
            let c = alice.conversation("chat").unwrap();
            let window = c.subscribe_messages(None);
            window.connected().await.unwrap();
            while window.latest().unwrap().map_or(0, |w| w.len()) < size {
                window.load_more(Some(100)).await.unwrap();
            }
            keep.push(Box::new(window));
        }
        "conversations" | "open-list" => {
            for i in 1..size {
                conversation(&bob, &format!("other{i}"), 1).await;
            }
            if case == "conversations" {
                let list = alice.subscribe_conversations(None);
                list.connected().await.unwrap();
                keep.push(Box::new(list));
            } else {
                opener = Some(alice.clone());
            }
        }
        other => unreachable!("unknown case {other}"),
    }
    keep.push(Box::new(alice));
    keep.push(Box::new(bob));
    Fixture {
        post_into,
        opener,
        _keep: keep,
    }
}

fn engine(storage: &str, dir: &std::path::Path, name: &str) -> Engine {
    match storage {
        "memory" => Engine::new(),
        _ => Engine::open(dir.join(format!("{name}.sqlite"))).unwrap(),
    }
}

fn posts(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("backlog", [0, 20_000]),
        ("window", [30, 3_000]),
        ("conversations", [20, 1_000]),
        ("open-list", [20, 1_000]),
    ];
    for storage in ["memory", "sqlite"] {
        let mut group = c.benchmark_group(format!("post/{storage}"));
        group.sample_size(10);
        for (case, sizes) in cases {
            for size in sizes {
                let name = format!("{case}-{size}");
                let engine = engine(storage, dir.path(), &name);
                let fixture = runtime.block_on(fixture(engine, case, size));
                let id = BenchmarkId::new(case, size);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let mut elapsed = Duration::ZERO;
                        for _ in 0..iters {
                            let start = Instant::now();
                            if let Some(alice) = &fixture.opener {
                                let list = alice.subscribe_conversations(None);
                                let rows = runtime.block_on(list.connected()).unwrap();
                                elapsed += start.elapsed();
                                assert_eq!(rows.len(), size.min(20));
                                continue;
                            }
                            let sent = runtime.block_on(fixture.post_into.send("new")).unwrap();
                            elapsed += start.elapsed();
                            runtime.block_on(sent.delete()).unwrap();
                        }
                        let us = elapsed.as_secs_f64() * 1e6 / iters as f64;
                        let key = (storage, case, size);
                        SAMPLES.lock().unwrap().entry(key).or_default().push(us);
                        elapsed
                    });
                });
            }
        }
        group.finish();
    }
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    posts(&mut criterion);
    criterion.final_summary();
    let mut samples = SAMPLES.lock().unwrap();
    let mut medians: BTreeMap<(&str, &str), Vec<(usize, f64)>> = BTreeMap::new();
    for ((storage, case, size), samples) in samples.iter_mut() {
        medians
            .entry((*storage, *case))
            .or_default()
            .push((*size, median(samples)));
    }
    println!(
        "{:>8} {:>14} {:>8} {:>12} {:>8} {:>12} {:>8}",
        "storage", "case", "small", "µs/post", "large", "µs/post", "ratio"
    );
    for ((storage, case), pair) in medians {
        if let [(small, a), (large, b)] = pair[..] {
            println!(
                "{storage:>8} {case:>14} {small:>8} {a:>12.1} {large:>8} {b:>12.1} {:>7.2}x",
                a / b
            );
        }
    }
}
