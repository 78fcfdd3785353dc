//! Soak: S sessions on loopback, in conversations of G users each, every user subscribed to
//! their conversation's messages over their own websocket, while one message is sent every
//! 1/R s (round robin over the conversations and their members) for D seconds.
//!
//! The server is the `talkstore-server` binary in a process of its own (pinned to core 0 with
//! `taskset` when it exists), so that its RSS is its own; the sessions run in this process,
//! on core 1. Every 5 s a line shows the server's RSS and the interval's delivery latency
//! (send to `on_snapshot`) p50/p99. At the end it checks:
//!
//! - every acknowledged message is in the window of every subscriber of its conversation, once;
//! - no subscription ended and no session reported an error;
//! - the server's RSS at the end is within 10% of its RSS after warm-up: the first sample
//!   after 20% of the run (at least 10 s) and after `--warm-messages` (20,000) messages, by
//!   when the engine's caches of 10,000 records and SQLite's page caches have filled (a run
//!   that never warms up fails the check). Windows are reopened (each member's every
//!   `sessions / rate` seconds, as users switch conversations; `--keep-windows` keeps them), so
//!   the live state stays bounded.
//! - no snapshot of any window ever showed a message twice.
//!
//! With `--check` a failed check exits with status 1 (CI runs `--seconds 60 --rate 500
//! --check`). Speed
//! is reported, never checked. Options: `--sessions 1000`, `--group 10`, `--rate 50`,
//! `--seconds 600`. Run with `cargo bench --features server --bench soak`; see
//! `benches/README.md`.

use std::{
    collections::HashSet,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use measure::{number, rss_kib};
use process::ServerProcess;
use talkstore::{
    ConversationParams, MessageListSubscription, MessageSnapshot, OnSnapshot, ParticipantParams,
    SessionOptions, SubscriptionState, TalkSession, UserParams, Vector, get_talk_session,
    server::{AppCredentials, mint_user_token},
};

#[path = "support/measure.rs"]
mod measure;
#[path = "../tests/it/support/process.rs"]
mod process;

const APP: &str = "soak";
const SECRET: &str = "soak-secret-0123456789";
const SAMPLE: Duration = Duration::from_secs(5);
/// How long deliveries may trail the last send before they count as missing.
const GRACE: Duration = Duration::from_secs(10);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

/// What one subscriber has seen.
#[derive(Default)]
struct Seen {
    ids: Mutex<HashSet<String>>,
}

/// Rows shown twice in one snapshot, over every window.
static DUPLICATED: AtomicUsize = AtomicUsize::new(0);

/// Records each new message of a window (newest first) once, with its delivery latency.
fn watcher(
    seen: Arc<Seen>,
    latencies: Arc<Mutex<Vec<u64>>>,
) -> Option<OnSnapshot<Option<Vector<Arc<MessageSnapshot>>>>> {
    Some(Box::new(move |rows, _| {
        let Some(rows) = rows else { return };
        let unique: HashSet<_> = rows.iter().map(|m| &m.id).collect();
        DUPLICATED.fetch_add(rows.len() - unique.len(), Ordering::Relaxed);
        let now = now_ns();
        let mut ids = seen.ids.lock().unwrap();
        let mut fresh = Vec::new();
        for message in rows.iter() {
            if !ids.insert(message.id.to_string()) {
                break;
            }
            let sent = message.plaintext.split(' ').nth(1);
            if let Some(sent) = sent.and_then(|t| t.parse::<u64>().ok()) {
                fresh.push(now.saturating_sub(sent));
            }
        }
        drop(ids);
        latencies.lock().unwrap().extend(fresh);
    }))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at] as f64 / 1e6
}

struct Member {
    session: TalkSession,
    group: usize,
    /// Reopened every `--reopen` seconds, as a user who switches conversations does.
    window: Mutex<MessageListSubscription>,
    seen: Arc<Seen>,
}

impl Member {
    fn open(&self, latencies: &Arc<Mutex<Vec<u64>>>) -> MessageListSubscription {
        let c = self
            .session
            .conversation(format!("g{}", self.group))
            .unwrap();
        c.subscribe_messages_with(None, watcher(self.seen.clone(), latencies.clone()))
    }
}

fn main() {
    let sessions = number("--sessions", 1_000);
    let group = number("--group", 10).max(1);
    let rate = number("--rate", 50).max(1);
    let seconds = number("--seconds", 600).max(1);
    let check = std::env::args().any(|a| a == "--check");
    let reopen = !std::env::args().any(|a| a == "--keep-windows");
    let groups = sessions.div_ceil(group);

    let data = tempfile::tempdir().unwrap();
    let (server, addr) = ServerProcess::start(data.path(), APP, SECRET, Some(0));
    // Every thread of this process (the sessions' too) inherits core 1.
    if !core_affinity::set_for_current(core_affinity::CoreId { id: 1 }) {
        eprintln!("soak: cannot pin to core 1; running unpinned");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let credentials = AppCredentials::new(APP, SECRET);
    let errors = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    println!(
        "soak: {sessions} sessions in {groups} conversations of {group}, {rate} messages/s for {seconds} s"
    );

    let started = Instant::now();
    let members: Vec<Member> = runtime.block_on(async {
        let mut members = Vec::new();
        for n in 0..sessions {
            let user = format!("u{n}");
            let token = mint_user_token(&credentials, &user, 24 * 3600).unwrap();
            let options = SessionOptions::new(APP, &user)
                .url(format!("ws://{addr}"))
                .token(token);
            let session = get_talk_session(options).unwrap();
            let counted = errors.clone();
            std::mem::forget(session.on_error(move |error| {
                eprintln!("soak: a session ended: {error}");
                counted.fetch_add(1, Ordering::SeqCst);
            }));
            members.push(session);
        }
        for chunk in members.chunks(100) {
            join_all(chunk.iter().map(|s| {
                let me = s.current_user();
                async move {
                    let name = me.id().to_string();
                    me.set(UserParams::new().name(name)).await.unwrap()
                }
            }))
            .await;
        }
        // The first member of each group creates its conversation and invites the others.
        join_all(
            members
                .chunks(group)
                .enumerate()
                .map(|(g, chunk)| async move {
                    let c = chunk[0].conversation(format!("g{g}")).unwrap();
                    c.set(ConversationParams::new().subject(format!("group {g}")))
                        .await
                        .unwrap();
                    for other in &chunk[1..] {
                        let id = other.current_user().id().clone();
                        let p = c.participant(id.as_str()).unwrap();
                        p.set(ParticipantParams::new()).await.unwrap();
                    }
                }),
        )
        .await;
        let mut watched = Vec::new();
        for (n, session) in members.into_iter().enumerate() {
            let seen = Arc::new(Seen::default());
            let c = session.conversation(format!("g{}", n / group)).unwrap();
            let window = c.subscribe_messages_with(None, watcher(seen.clone(), latencies.clone()));
            window.connected().await.unwrap();
            watched.push(Member {
                session,
                group: n / group,
                window: Mutex::new(window),
                seen,
            });
        }
        watched
    });
    println!(
        "set up in {:.1} s; server RSS {} KiB",
        started.elapsed().as_secs_f64(),
        rss_kib(server.id())
    );

    let acked: Arc<Vec<Mutex<Vec<String>>>> =
        Arc::new((0..groups).map(|_| Mutex::new(Vec::new())).collect());
    let failed = Arc::new(AtomicUsize::new(0));
    let by_group: Vec<Vec<TalkSession>> = members
        .chunks(group)
        .map(|chunk| chunk.iter().map(|m| m.session.clone()).collect())
        .collect();
    let members_per_group: Vec<usize> = by_group.iter().map(Vec::len).collect();
    let warm_messages = number("--warm-messages", 20_000);
    let warm_at = Duration::from_secs(seconds as u64 / 5).max(Duration::from_secs(10));
    let mut warm_rss = None;
    let mut samples = Vec::new();
    runtime.block_on(async {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut next_sample = start + SAMPLE;
        let mut k = 0usize;
        let mut sends = Vec::new();
        while start.elapsed() < Duration::from_secs(seconds as u64) {
            tick.tick().await;
            // Message k goes to group k % groups, from the member k / groups of it.
            let g = k % groups;
            let in_group = &by_group[g];
            let c = in_group[(k / groups) % in_group.len()]
                .conversation(format!("g{g}")).unwrap();
            let text = format!("m{k} {}", now_ns());
            let (acked, failed) = (acked.clone(), failed.clone());
            sends.push(tokio::spawn(async move {
                match c.send(text.as_str()).await {
                    Ok(message) => acked[g].lock().unwrap().push(message.id().to_string()),
                    Err(error) => {
                        eprintln!("soak: a send failed: {error}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
            // Each tick one member reopens its window: every member every sessions / rate s.
            if reopen {
                let member = &members[k % sessions];
                let fresh = member.open(&latencies);
                *member.window.lock().unwrap() = fresh;
            }
            k += 1;
            if Instant::now() >= next_sample {
                next_sample += SAMPLE;
                let mut interval = std::mem::take(&mut *latencies.lock().unwrap());
                interval.sort_unstable();
                let rss = rss_kib(server.id());
                let at = start.elapsed();
                if warm_rss.is_none() && at >= warm_at && k >= warm_messages {
                    warm_rss = Some(rss);
                }
                println!(
                    "{:>6.0} s  sent {k:>7}  delivered {:>7}  p50 {:>7.1} ms  p99 {:>7.1} ms  server RSS {rss} KiB",
                    at.as_secs_f64(),
                    interval.len(),
                    percentile(&interval, 0.5),
                    percentile(&interval, 0.99),
                );
                samples.push((percentile(&interval, 0.99), rss));
            }
        }
        join_all(sends).await;
    });

    // Every acknowledged message in every window of its conversation, once.
    let deadline = Instant::now() + GRACE;
    let missing = || {
        members
            .iter()
            .map(|m| {
                let ids = m.seen.ids.lock().unwrap();
                let acked = acked[m.group].lock().unwrap();
                acked.iter().filter(|id| !ids.contains(*id)).count()
            })
            .sum::<usize>()
    };
    while missing() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let missing = missing();
    let (windows, sessions): (Vec<MessageListSubscription>, Vec<TalkSession>) = members
        .into_iter()
        .map(|m| (m.window.into_inner().unwrap(), m.session))
        .unzip();
    runtime.block_on(async {
        for window in &windows {
            let _ = window.connected().await;
        }
    });
    let duplicated = DUPLICATED.load(Ordering::Relaxed);
    let ended = windows
        .iter()
        .filter(|window| !matches!(window.state(), SubscriptionState::Active { .. }))
        .count();
    let acked_total: usize = acked.iter().map(|a| a.lock().unwrap().len()).sum();
    let expected: usize = acked
        .iter()
        .zip(members_per_group.iter())
        .map(|(a, n)| a.lock().unwrap().len() * n)
        .sum();
    let final_rss = rss_kib(server.id());
    if warm_rss.is_none() {
        println!("soak: the run never warmed up ({warm_messages} messages): RSS not checked");
    }
    let growth = final_rss as f64 / warm_rss.unwrap_or(final_rss).max(1) as f64;
    let warm_rss = warm_rss.unwrap_or(0);
    println!(
        "acknowledged {acked_total} (failed {}), deliveries expected {}, missing {missing}, duplicated {duplicated}, subscriptions ended {ended}, session errors {}",
        failed.load(Ordering::SeqCst),
        expected,
        errors.load(Ordering::SeqCst),
    );
    let p99s: Vec<f64> = samples.iter().map(|(p99, _)| *p99).collect();
    println!(
        "server RSS after warm-up {warm_rss} KiB, at the end {final_rss} KiB ({growth:.3}x); p99 per interval: first {:.1} ms, last {:.1} ms, max {:.1} ms",
        p99s.first().copied().unwrap_or(f64::NAN),
        p99s.last().copied().unwrap_or(f64::NAN),
        p99s.iter().copied().fold(f64::NAN, f64::max),
    );
    let ok = missing == 0
        && duplicated == 0
        && ended == 0
        && errors.load(Ordering::SeqCst) == 0
        && failed.load(Ordering::SeqCst) == 0
        && warm_rss > 0
        && growth <= 1.10;
    println!("soak: {}", if ok { "passed" } else { "FAILED" });
    drop((windows, sessions));
    drop(server);
    if check && !ok {
        std::process::exit(1);
    }
}
