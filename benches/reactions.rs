//! Reactions at scale: one reaction on the last message of a conversation whose `n`
//! participants all have their conversation lists open (so every list shows the message),
//! against a baseline measured in the same run that reaches the same rows: a rename of the
//! message's sender. Both are timed from the write until every list has emitted.
//!
//! Run with `cargo bench --bench reactions`. After criterion's report it prints, per `n`, the
//! median µs per write and per delivered update for both, and the ratio; see
//! `benches/README.md`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion};
use talkstore::{
    ConversationParams, Engine, MessageRef, ParticipantParams, SessionOptions, TalkSession,
    UserParams, get_talk_session,
};
use tokio::sync::Notify;

/// Per-iteration µs per write, by (kind, n).
static SAMPLES: Mutex<BTreeMap<(usize, &'static str), Vec<f64>>> = Mutex::new(BTreeMap::new());

/// Counts list emissions across every watcher.
struct Deliveries {
    count: AtomicUsize,
    notify: Notify,
}

impl Deliveries {
    /// Waits until `target` emissions have been counted.
    async fn reach(&self, target: usize) {
        loop {
            let notified = self.notify.notified();
            if self.count.load(Ordering::SeqCst) >= target {
                return;
            }
            notified.await;
        }
    }
}

struct World {
    sender: TalkSession,
    last: MessageRef,
    deliveries: Arc<Deliveries>,
    _sessions: Vec<TalkSession>,
}

/// An engine with one conversation of `n` participants (the sender among them), each with
/// their conversation list open, and one message from the sender as its last message.
fn setup(runtime: &tokio::runtime::Runtime, n: usize) -> World {
    runtime.block_on(async {
        let engine = Engine::new();
        // Sessions are kept per app and user: a fresh app id per world.
        let app = format!("reactions-{n}");
        let session = |user: &str| {
            get_talk_session(SessionOptions::new(&app, user).engine(engine.clone())).unwrap()
        };
        let sender = session("sender");
        sender
            .current_user()
            .set(UserParams::new().name("Sender"))
            .await
            .unwrap();
        let chat = sender.conversation("chat").unwrap();
        chat.set(ConversationParams::new()).await.unwrap();
        let deliveries = Arc::new(Deliveries {
            count: AtomicUsize::new(0),
            notify: Notify::new(),
        });
        let mut sessions = Vec::new();
        for i in 1..n {
            let user = format!("watcher{i}");
            let watcher = session(&user);
            let params = UserParams::new().name(user.as_str());
            watcher.current_user().set(params).await.unwrap();
            let participant = chat.participant(user.as_str()).unwrap();
            participant.set(ParticipantParams::new()).await.unwrap();
            sessions.push(watcher);
        }
        let last = chat.send("react to me").await.unwrap();
        // A standing reaction: the timed ones change counts, not what the rows read (a
        // message's first reaction, which does, costs more: see benches/README.md).
        last.reactions("❤️").add().await.unwrap();
        for watcher in sessions.iter().chain([&sender]) {
            let counter = deliveries.clone();
            let list = watcher.subscribe_conversations_with(
                None,
                Some(Box::new(move |_, _| {
                    counter.count.fetch_add(1, Ordering::SeqCst);
                    counter.notify.notify_waiters();
                })),
            );
            list.connected().await.unwrap();
            std::mem::forget(list);
        }
        World {
            sender,
            last,
            deliveries,
            _sessions: sessions,
        }
    })
}

fn writes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("update_shown_in_n_lists");
    group.sample_size(10);
    for n in [100, 1_000] {
        let world = setup(&runtime, n);
        let mut version = 0_u64;
        for kind in ["reaction", "rename (baseline)"] {
            group.bench_with_input(BenchmarkId::new(kind, n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        version += 1;
                        let target = world.deliveries.count.load(Ordering::SeqCst) + n;
                        runtime.block_on(async {
                            if kind == "reaction" {
                                // Alternately added and removed: each is a change.
                                let thumbs = world.last.reactions("👍");
                                if version % 2 == 1 {
                                    thumbs.add().await.unwrap();
                                } else {
                                    thumbs.remove().await.unwrap();
                                }
                            } else {
                                let name = UserParams::new().name(format!("Sender {version}"));
                                world.sender.current_user().set(name).await.unwrap();
                            }
                            world.deliveries.reach(target).await;
                        });
                    }
                    let elapsed = start.elapsed();
                    let us = elapsed.as_secs_f64() * 1e6 / iters as f64;
                    SAMPLES
                        .lock()
                        .unwrap()
                        .entry((n, kind))
                        .or_default()
                        .push(us);
                    elapsed
                });
            });
        }
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
    writes(&mut criterion);
    criterion.final_summary();
    let mut samples = SAMPLES.lock().unwrap();
    println!(
        "{:>6} {:>20} {:>12} {:>16} {:>8}",
        "lists", "write", "µs/write", "µs/delivery", "ratio"
    );
    let mut ns: Vec<usize> = samples.keys().map(|(n, _)| *n).collect();
    ns.dedup();
    for n in ns {
        let Some(base) = samples
            .get_mut(&(n, "rename (baseline)"))
            .map(|s| median(s))
        else {
            continue;
        };
        for kind in ["reaction", "rename (baseline)"] {
            if let Some(s) = samples.get_mut(&(n, kind)) {
                let us = median(s);
                println!(
                    "{n:>6} {kind:>20} {us:>12.1} {:>16.2} {:>7.2}x",
                    us / n as f64,
                    us / base
                );
            }
        }
    }
}
