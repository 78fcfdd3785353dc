//! Engine fan-out: what a send costs while other users have their conversation lists open
//! (none of them in the conversation), against the same send with nobody else connected,
//! measured in the same run.
//!
//! Run with `cargo bench --bench fanout`. After criterion's report it prints the median µs per
//! send for each number of open lists and its ratio to the run without; see
//! `benches/README.md`.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion};
use talkstore::{
    ConversationParams, ConversationRef, Engine, SessionOptions, TalkSession, UserParams,
    get_talk_session,
};

/// Per-iteration µs per send, by number of open lists.
static SAMPLES: Mutex<BTreeMap<usize, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// An engine where `lists` users watch their (empty) conversation lists, and a sender's
/// conversation. The sessions are returned so that they stay connected.
fn setup(runtime: &tokio::runtime::Runtime, lists: usize) -> (ConversationRef, Vec<TalkSession>) {
    runtime.block_on(async {
        let engine = Engine::new();
        let session = |user: &str| {
            get_talk_session(SessionOptions::new("fanout", user).engine(engine.clone())).unwrap()
        };
        let mut sessions = Vec::new();
        for i in 0..lists {
            let watcher = session(&format!("watcher{i}"));
            let list = watcher.subscribe_conversations(None);
            list.connected().await.unwrap();
            std::mem::forget(list);
            sessions.push(watcher);
        }
        let sender = session("sender");
        sender
            .current_user()
            .set(UserParams::new().name("Sender"))
            .await
            .unwrap();
        let chat = sender.conversation("chat").unwrap();
        chat.set(ConversationParams::new()).await.unwrap();
        sessions.push(sender);
        (chat, sessions)
    })
}

fn sends(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("send_with_open_lists");
    group.sample_size(20);
    for lists in [0, 100, 1_000] {
        let (chat, _sessions) = setup(&runtime, lists);
        group.bench_with_input(BenchmarkId::from_parameter(lists), &lists, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    runtime.block_on(chat.send("hello")).unwrap();
                }
                let elapsed = start.elapsed();
                let us = elapsed.as_secs_f64() * 1e6 / iters as f64;
                SAMPLES.lock().unwrap().entry(lists).or_default().push(us);
                elapsed
            });
        });
    }
    group.finish();
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    sends(&mut criterion);
    criterion.final_summary();
    let mut samples = SAMPLES.lock().unwrap();
    let Some(base) = samples.get_mut(&0).map(|s| median(s)) else {
        return;
    };
    println!("{:>12} {:>12} {:>8}", "open lists", "µs per send", "ratio");
    for (lists, samples) in samples.iter_mut() {
        let us = median(samples);
        println!("{lists:>12} {us:>12.1} {:>7.2}x", us / base);
    }
}
