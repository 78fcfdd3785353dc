//! Durable ingest: messages per second acknowledged by a real `talkstore-server` (websocket,
//! SQLite, `synchronous=NORMAL`), at several numbers of concurrent senders, against a raw
//! rusqlite batched-insert loop writing the same rows with the same schema in the same run.
//!
//! Run with `cargo bench --features server,bench-internals --bench ingest`. Prints the table
//! recorded in `benches/README.md`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use talkstore::{
    ConversationParams, SessionOptions, UserParams, get_talk_session,
    server::{AppCredentials, Server, ServerConfig, mint_user_token},
};

const MESSAGES: usize = 20_000;

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("talkstore-ingest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Sends `MESSAGES` messages from `senders` concurrent sessions; returns messages/s and the
/// sorted ack latencies.
async fn server_run(senders: usize, run: usize) -> (f64, Vec<Duration>) {
    let app = format!("ingest{run}");
    let credentials = AppCredentials::new(&app, "ingest-secret-0123456789");
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        temp(&app),
        vec![credentials.clone()],
    );
    config.limits.requests_per_second = 1_000_000;
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    let mut sessions = Vec::new();
    for n in 0..senders {
        let user = format!("u{n}");
        let token = mint_user_token(&credentials, &user, 3600).unwrap();
        let session = get_talk_session(
            SessionOptions::new(&app, &user)
                .url(format!("ws://{addr}"))
                .token(token),
        )
        .unwrap();
        session
            .current_user()
            .set(UserParams::new().name(&user))
            .await
            .unwrap();
        session
            .conversation(format!("c{n}"))
            .unwrap()
            .set(ConversationParams::new())
            .await
            .unwrap();
        sessions.push(session);
    }
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(MESSAGES)));
    let start = Instant::now();
    let tasks: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(n, session)| {
            let chat = session.conversation(format!("c{n}")).unwrap();
            let latencies = latencies.clone();
            tokio::spawn(async move {
                for i in 0..MESSAGES / senders {
                    let sent = Instant::now();
                    chat.send(format!("message {i}")).await.unwrap();
                    latencies.lock().unwrap().push(sent.elapsed());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    (latencies.len() as f64 / elapsed.as_secs_f64(), latencies)
}

/// The same sends on the embedded engine with SQLite storage: no network, one sender.
async fn embedded_run() -> f64 {
    let engine = talkstore::Engine::open(temp("embedded").join("e.sqlite")).unwrap();
    let session =
        get_talk_session(SessionOptions::new("ingest-embedded", "u").engine(engine)).unwrap();
    session
        .current_user()
        .set(UserParams::new().name("u"))
        .await
        .unwrap();
    let chat = session.conversation("c").unwrap();
    chat.set(ConversationParams::new()).await.unwrap();
    let start = Instant::now();
    for i in 0..MESSAGES {
        chat.send(format!("message {i}")).await.unwrap();
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut raw = Vec::new();
    for run in 0..3 {
        let path = temp(&format!("raw{run}")).join("raw.sqlite");
        let elapsed = talkstore::bench::raw_ingest(&path, 20_000, 100);
        raw.push(20_000.0 / elapsed.as_secs_f64());
    }
    raw.sort_by(f64::total_cmp);
    let raw = raw[1];
    println!("raw rusqlite, 100 messages per transaction: {raw:.0} messages/s (median of 3)");
    let embedded = runtime.block_on(embedded_run());
    if std::env::args().any(|a| a == "--embedded-only") {
        println!("embedded: {embedded:.0} messages/s");
        return;
    }
    println!(
        "embedded engine + SQLite, 1 sender, no network: {embedded:.0} messages/s ({:.2}x raw)",
        embedded / raw
    );
    println!(
        "{:>8} {:>14} {:>10} {:>10} {:>8}",
        "senders", "messages/s", "p50 ms", "p99 ms", "ratio"
    );
    let mut best: Option<f64> = None;
    // `--senders N` measures one load only (for profiling).
    let args: Vec<String> = std::env::args().collect();
    let loads = match args.iter().position(|a| a == "--senders") {
        Some(at) => vec![args[at + 1].parse().expect("--senders N")],
        None => vec![1, 4, 16, 64, 256],
    };
    for (run, senders) in loads.into_iter().enumerate() {
        let (rate, latencies) = runtime.block_on(server_run(senders, run));
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "{senders:>8} {rate:>14.0} {:>10.2} {:>10.2} {:>7.2}x",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            rate / raw
        );
        if p99 <= Duration::from_millis(10) {
            best = Some(best.map_or(rate, |b: f64| b.max(rate)));
        }
    }
    match best {
        Some(rate) => println!(
            "best at ack p99 <= 10 ms: {rate:.0} messages/s = {:.2}x raw",
            rate / raw
        ),
        None => println!("no load kept ack p99 <= 10 ms"),
    }
}
