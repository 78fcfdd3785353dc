//! Fan-out over websockets: N users in one conversation, each subscribed to its messages over
//! its own connection, while one more connection sends R messages per second. A real
//! `talkstore-server` (SQLite, in this process) and a bare tokio-tungstenite broadcast server
//! (every text it receives goes to every connection) are measured in the same run, with the
//! same N, R, duration and 64-character texts.
//!
//! The server (its Tokio workers, the engine thread, SQLite's checkpointer) runs on core 0,
//! the load generator (one thread: every subscriber and the sender) on core 1. Each text
//! carries its send time; a subscriber that receives it records the delay. A case is
//! *sustained* when every message reached every subscriber within 2 s after the last send.
//!
//! Last, posts per second through the real server from four closed-loop connections, with
//! nobody watching and with one user's conversation list open while she has 20,000 unread
//! messages elsewhere (issue 10: the second should be at least half the first).
//!
//! Run with `cargo bench --features server --bench broadcast`; options: `--subscribers
//! 100,1000,5000`, `--rates 100`, `--ramp 100,300,600,800,1000,3000` (rates tried at 1,000
//! subscribers), `--seconds 4`, `--only talkstore` (one server alone, no posts: for profiles).
//! See `benches/README.md`.

use std::{
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt, future::join_all};
use talkstore::{
    ConversationParams, ParticipantParams, Policy, SessionOptions, UserParams, get_talk_session,
    server::{AppCredentials, Server, ServerConfig, mint_user_token},
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

const APP: &str = "broadcast";
/// How long deliveries may trail the last send.
const GRACE: Duration = Duration::from_secs(2);

/// The clock of every timestamp in the texts.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

/// The numbers after `name` on the command line, or `default`.
fn list(name: &str, default: &[usize]) -> Vec<usize> {
    match arg(name) {
        Some(numbers) => numbers
            .split(',')
            .map(|n| n.parse().expect("numbers separated by commas"))
            .collect(),
        None => default.to_vec(),
    }
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

fn pin(core: usize) {
    assert!(
        core_affinity::set_for_current(core_affinity::CoreId { id: core }),
        "cannot pin to core {core}"
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bare,
    Talkstore,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Talkstore => "talkstore",
        }
    }
}

/// One server under test, on the server runtime.
struct Running {
    addr: std::net::SocketAddr,
    credentials: AppCredentials,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
    _data: Option<tempfile::TempDir>,
}

/// A bare broadcast server: every text frame any connection sends goes to every connection.
async fn bare() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let (tx, _) = tokio::sync::broadcast::channel::<Message>(1 << 16);
    let served = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => accepted.unwrap().0,
                _ = &mut stopped => return,
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut write, mut read) = socket.split();
                let mut rx = tx.subscribe();
                let forward = tokio::spawn(async move {
                    while let Ok(message) = rx.recv().await {
                        if write.send(message).await.is_err() {
                            return;
                        }
                    }
                });
                while let Some(Ok(message)) = read.next().await {
                    if message.is_text() {
                        let _ = tx.send(message);
                    }
                }
                forward.abort();
            });
        }
    });
    Running {
        addr,
        credentials: AppCredentials::new(APP, "broadcast-secret-0123456789"),
        stop,
        served,
        _data: None,
    }
}

/// A `talkstore-server` with users u0..u{n} and conversation `room` holding all of them, set
/// up through one session.
async fn talkstore(n: usize) -> Running {
    let mut credentials = AppCredentials::new(APP, "broadcast-secret-0123456789");
    // The set-up session writes every user's record and participation.
    credentials.policy = Policy::Permissive;
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        data.path().to_owned(),
        vec![credentials.clone()],
    );
    config.limits.requests_per_second = 1_000_000;
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        server
            .serve(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let token = mint_user_token(&credentials, "u0", 3600).unwrap();
    let admin = get_talk_session(
        SessionOptions::new(APP, "u0")
            .url(format!("ws://{addr}"))
            .token(token),
    )
    .unwrap();
    admin
        .current_user()
        .set(UserParams::new().name("User 0"))
        .await
        .unwrap();
    let room = admin.conversation("room").unwrap();
    room.set(ConversationParams::new().subject("Room"))
        .await
        .unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        join_all(chunk.iter().map(|i| {
            let user = admin.user(format!("u{i}")).unwrap();
            async move { user.set(UserParams::new().name(format!("User {i}"))).await }
        }))
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
        join_all(chunk.iter().map(|i| {
            let participant = room.participant(format!("u{i}")).unwrap();
            async move { participant.set(ParticipantParams::new()).await }
        }))
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    }
    Running {
        addr,
        credentials,
        stop,
        served,
        _data: Some(data),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(running: &Running, kind: Kind, user: &str) -> Socket {
    let url = match kind {
        Kind::Bare => format!("ws://{}/", running.addr),
        Kind::Talkstore => format!("ws://{}/v1/{APP}/realtime/{user}", running.addr),
    };
    let mut request = url.into_client_request().unwrap();
    let token = mint_user_token(&running.credentials, user, 3600).unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The send times carried by the texts of one frame.
fn stamps(kind: Kind, text: &str) -> impl Iterator<Item = u64> + '_ {
    let marker = match kind {
        Kind::Bare => "t=",
        Kind::Talkstore => "\"plaintext\":\"t=",
    };
    text.match_indices(marker).filter_map(move |(at, _)| {
        let digits = &text[at + marker.len()..];
        let end = digits.find(|c: char| !c.is_ascii_digit())?;
        digits[..end].parse().ok()
    })
}

/// What one case measured.
struct Outcome {
    sent: u64,
    delivered: u64,
    elapsed: Duration,
    latencies: Vec<u64>,
}

impl Outcome {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let at = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
        self.latencies[at] as f64 / 1e6
    }

    fn fraction(&self) -> f64 {
        self.delivered as f64 / self.sent.max(1) as f64
    }
}

/// Connects `n` subscribers and a sender, sends `rate` texts per second for `seconds`, and
/// waits for the deliveries (at most [`GRACE`] after the last send).
async fn load(running: &Running, kind: Kind, n: usize, rate: usize, seconds: u64) -> Outcome {
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut subscribers = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let sockets = join_all(chunk.iter().map(|i| async move {
            let user = format!("u{i}");
            let mut socket = connect(running, kind, &user).await;
            if kind == Kind::Talkstore {
                let subscribe = r#"{"id":1,"op":"subscribe","sub":1,"target":{"kind":"messages","conversation":"room","filter":null}}"#;
                socket.send(Message::text(subscribe)).await.unwrap();
                while let Some(Ok(frame)) = socket.next().await {
                    let text = frame.to_text().unwrap_or_default();
                    if text.starts_with(r#"{"type":"response","id":1,"result":{"Ok""#) {
                        break;
                    }
                    assert!(!text.contains("\"Err\""), "subscribe failed: {text}");
                }
            }
            socket
        }))
        .await;
        subscribers.extend(sockets);
    }
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut socket| {
            let (delivered, latencies) = (delivered.clone(), latencies.clone());
            tokio::spawn(async move {
                while let Some(Ok(frame)) = socket.next().await {
                    let now = now_ns();
                    if let Message::Text(text) = &frame {
                        let mut latencies = latencies.lock().unwrap();
                        for sent in stamps(kind, text.as_str()) {
                            latencies.push(now.saturating_sub(sent));
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    let sender = connect(running, kind, "u0").await;
    let total = rate as u64 * seconds;
    let start = tokio::time::Instant::now();
    let (mut write, mut read) = sender.split();
    let acks = tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
    for k in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate as f64)).await;
        let text = format!("t={:<62}", now_ns());
        let frame = match kind {
            Kind::Bare => text,
            Kind::Talkstore => format!(
                r#"{{"id":{},"op":"send","conversation":"room","message":{{"content":[{{"type":"text","children":["{text}"]}}],"custom":{{}},"referencedMessage":null,"idempotencyKey":"b{k}"}}}}"#,
                k + 1
            ),
        };
        write.send(Message::text(frame)).await.unwrap();
    }
    let sent_all = start.elapsed();
    let expected = total * n as u64;
    let deadline = tokio::time::Instant::now() + GRACE;
    while delivered.load(Ordering::Relaxed) < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed().min(sent_all + GRACE);
    let _ = write.close().await;
    acks.abort();
    for reader in &readers {
        reader.abort();
    }
    for reader in readers {
        let _ = reader.await;
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_unstable();
    Outcome {
        sent: expected,
        delivered: delivered.load(Ordering::Relaxed),
        elapsed,
        latencies,
    }
}

/// Runs `load` on the generator thread (core 1, a runtime of its own).
fn on_generator<T: Send>(load: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                pin(1);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(load)
            })
            .join()
            .unwrap()
    })
}

/// Stops a server, noting if it takes more than 30 s.
fn stop(server_runtime: &tokio::runtime::Runtime, running: Running, name: &str) {
    let _ = running.stop.send(());
    server_runtime.block_on(async {
        let stopped = tokio::time::timeout(Duration::from_secs(30), running.served).await;
        if stopped.is_err() {
            eprintln!("{name} did not stop within 30 s");
        }
    });
}

/// Runs one case on a fresh server: setup on the server runtime, load on the generator
/// thread.
fn case(server_runtime: &tokio::runtime::Runtime, kind: Kind, n: usize, rate: usize) -> Outcome {
    let seconds = list("--seconds", &[4])[0] as u64;
    let running = server_runtime.block_on(async {
        match kind {
            Kind::Bare => bare().await,
            Kind::Talkstore => talkstore(n).await,
        }
    });
    let outcome = on_generator(load(&running, kind, n, rate, seconds));
    stop(server_runtime, running, kind.name());
    outcome
}

/// Posts per second into `room` from four connections of u1, each sending its next message
/// when the last is answered, for `seconds`; with `list_open`, u0 has her conversation list
/// open, and 20,000 unread messages from u1 in another conversation.
fn posts(server_runtime: &tokio::runtime::Runtime, list_open: bool) -> f64 {
    let seconds = list("--seconds", &[4])[0] as u64;
    let running = server_runtime.block_on(async {
        let running = talkstore(2).await;
        if list_open {
            let token = mint_user_token(&running.credentials, "u1", 3600).unwrap();
            let u1 = get_talk_session(
                SessionOptions::new(APP, "u1")
                    .url(format!("ws://{}", running.addr))
                    .token(token),
            )
            .unwrap();
            let backlog = u1.conversation("backlog").unwrap();
            backlog.set(ConversationParams::new()).await.unwrap();
            let u0 = backlog.participant("u0").unwrap();
            u0.set(ParticipantParams::new()).await.unwrap();
            for chunk in (0..20_000).collect::<Vec<_>>().chunks(500) {
                let sends = chunk.iter().map(|i| backlog.send(format!("backlog {i}")));
                join_all(sends)
                    .await
                    .into_iter()
                    .for_each(|r| drop(r.unwrap()));
            }
        }
        running
    });
    let rate = on_generator(async {
        let mut watcher = connect(&running, Kind::Talkstore, "u0").await;
        if list_open {
            let subscribe = r#"{"id":1,"op":"subscribe","sub":1,"target":{"kind":"conversations","filter":null}}"#;
            watcher.send(Message::text(subscribe)).await.unwrap();
        }
        let watching = tokio::spawn(async move { while let Some(Ok(_)) = watcher.next().await {} });
        let posted = Arc::new(AtomicU64::new(0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let senders = (0..4).map(|s| {
            let (running, posted) = (&running, posted.clone());
            async move {
                let mut socket = connect(running, Kind::Talkstore, "u1").await;
                for k in 0.. {
                    if tokio::time::Instant::now() >= deadline {
                        return;
                    }
                    let frame = format!(
                        r#"{{"id":{k},"op":"send","conversation":"room","message":{{"content":[{{"type":"text","children":["post"]}}],"custom":{{}},"referencedMessage":null,"idempotencyKey":"p{s}-{k}"}}}}"#
                    );
                    socket.send(Message::text(frame)).await.unwrap();
                    let answered = format!(r#"{{"type":"response","id":{k},"#);
                    while let Some(Ok(frame)) = socket.next().await {
                        if frame.to_text().unwrap_or_default().starts_with(&answered) {
                            break;
                        }
                    }
                    posted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        join_all(senders).await;
        watching.abort();
        posted.load(Ordering::Relaxed) as f64 / seconds as f64
    });
    stop(server_runtime, running, "talkstore");
    rate
}

fn report(kind: Kind, n: usize, rate: usize, outcome: &Outcome, bare_rate: Option<f64>) -> f64 {
    let per_second = outcome.delivered as f64 / outcome.elapsed.as_secs_f64();
    let ratio = bare_rate.map_or(String::new(), |bare| format!("{:.2}x", per_second / bare));
    println!(
        "{:>10} {n:>6} {rate:>6} {:>8.2}% {:>12.0} {:>9.2} {:>9.2} {:>7}",
        kind.name(),
        outcome.fraction() * 100.0,
        per_second,
        outcome.percentile_ms(0.5),
        outcome.percentile_ms(0.99),
        ratio,
    );
    per_second
}

fn header() {
    println!(
        "{:>10} {:>6} {:>6} {:>9} {:>12} {:>9} {:>9} {:>7}",
        "server", "N", "R/s", "delivered", "deliveries/s", "p50 ms", "p99 ms", "÷ bare"
    );
}

fn main() {
    pin(0);
    let only = arg("--only");
    let runs = |kind: Kind| only.as_deref().is_none_or(|only| only == kind.name());
    LazyLock::force(&EPOCH);
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| pin(0))
        .enable_all()
        .build()
        .unwrap();
    let rates = list("--rates", &[100]);
    header();
    for n in list("--subscribers", &[100, 1_000, 5_000]) {
        for &rate in &rates {
            let bare_rate = runs(Kind::Bare).then(|| {
                let bare = case(&server_runtime, Kind::Bare, n, rate);
                report(Kind::Bare, n, rate, &bare, None)
            });
            if runs(Kind::Talkstore) {
                let ours = case(&server_runtime, Kind::Talkstore, n, rate);
                report(Kind::Talkstore, n, rate, &ours, bare_rate);
            }
        }
    }
    println!("\nsustained at N = 1,000 (every message delivered within 2 s of the last send):");
    header();
    let mut best = [(Kind::Bare, 0.0), (Kind::Talkstore, 0.0)];
    for rate in list("--ramp", &[100, 300, 600, 800, 1_000, 3_000]) {
        for (kind, best) in best.iter_mut().filter(|(kind, _)| runs(*kind)) {
            let outcome = case(&server_runtime, *kind, 1_000, rate);
            let per_second = report(*kind, 1_000, rate, &outcome, None);
            if outcome.delivered == outcome.sent {
                *best = f64::max(*best, per_second);
            }
        }
    }
    let [(_, bare), (_, ours)] = best;
    println!(
        "\nmaximum sustained deliveries/s at N = 1,000: bare {bare:.0}, talkstore {ours:.0} ({:.2}x)",
        ours / bare
    );
    if only.is_some() {
        return;
    }
    let alone = posts(&server_runtime, false);
    let watched = posts(&server_runtime, true);
    println!(
        "\nposts/s from 4 closed-loop connections: {alone:.0} with nobody watching, {watched:.0} \
         with a conversation list open over 20,000 unread messages ({:.2}x)",
        watched / alone
    );
}
