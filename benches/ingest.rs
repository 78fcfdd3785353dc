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

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use talkstore::{
    ConversationParams, SessionOptions, TalkSession, UserParams, get_talk_session,
    server::{AppCredentials, Server, ServerConfig, mint_user_token},
};

/// Messages per load: 100,000 (long enough for the log to restart a few times), or
/// `--messages N`.
static MESSAGES: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| arg("--messages").unwrap_or(100_000));

/// The number after `name` on the command line.
fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    Some(
        args.get(at + 1)?
            .parse()
            .expect("a number after the option"),
    )
}

/// A fresh directory, deleted when dropped: each run starts on an empty disk cache, with no
/// earlier run's files still being written back.
fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A server on loopback, with one session per sender.
struct Running {
    addr: std::net::SocketAddr,
    credentials: AppCredentials,
    sessions: Vec<TalkSession>,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), talkstore::server::ServerError>>,
    _data: tempfile::TempDir,
}

impl Running {
    /// Shuts the server down and deletes its data.
    async fn stop(self) {
        drop(self.sessions);
        let _ = self.stop.send(());
        self.served.await.unwrap().unwrap();
    }
}

/// A server on loopback with `senders` users, each in its own conversation `c{n}`, and a
/// session for each.
async fn server_with_senders(senders: usize) -> Running {
    let app = "ingest";
    let credentials = AppCredentials::new(app, "ingest-secret-0123456789");
    let data = temp();
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        data.path().to_owned(),
        vec![credentials.clone()],
    );
    config.limits.requests_per_second = 1_000_000;
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let served = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let mut sessions = Vec::new();
    for n in 0..senders {
        let user = format!("u{n}");
        let token = mint_user_token(&credentials, &user, 3600).unwrap();
        let session = get_talk_session(
            SessionOptions::new(app, &user)
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
    Running {
        addr,
        credentials,
        sessions,
        stop,
        served,
        _data: data,
    }
}

/// Messages/s and sorted ack latencies of one load.
struct Load {
    rate: f64,
    latencies: Vec<Duration>,
}

/// Sends `MESSAGES` messages from `senders` concurrent sessions, each waiting for one
/// acknowledgement before it sends the next.
async fn session_run(senders: usize) -> Load {
    let server = server_with_senders(senders).await;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(*MESSAGES)));
    let start = Instant::now();
    let tasks: Vec<_> = server
        .sessions
        .iter()
        .enumerate()
        .map(|(n, session)| {
            let chat = session.conversation(format!("c{n}")).unwrap();
            let latencies = latencies.clone();
            tokio::spawn(async move {
                for i in 0..*MESSAGES / senders {
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
    let load = finish(start, &latencies);
    server.stop().await;
    load
}

fn finish(start: Instant, latencies: &Mutex<Vec<Duration>>) -> Load {
    let elapsed = start.elapsed();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    Load {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
    }
}

/// Sends `MESSAGES` messages over `connections` raw websocket connections (one per sender),
/// keeping `depth` sends in flight on each, as a client that does not wait for one
/// acknowledgement before the next send would. The load generator is a bare tungstenite client
/// on its own thread, so that it costs the server as little CPU as possible.
async fn pipelined_run(connections: usize, depth: usize) -> Load {
    let mut server = server_with_senders(connections).await;
    server.sessions.clear();
    let (addr, credentials) = (server.addr, server.credentials.clone());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(*MESSAGES)));
    let app = credentials.id.clone();
    let generator = {
        let latencies = latencies.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut sockets = Vec::new();
                for n in 0..connections {
                    let user = format!("u{n}");
                    let token = mint_user_token(&credentials, &user, 3600).unwrap();
                    let mut request = format!("ws://{addr}/v1/{app}/realtime/{user}")
                        .into_client_request()
                        .unwrap();
                    request
                        .headers_mut()
                        .insert("authorization", format!("Bearer {token}").parse().unwrap());
                    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
                    sockets.push(socket);
                }
                let start = Instant::now();
                let tasks: Vec<_> = sockets
                    .into_iter()
                    .enumerate()
                    .map(|(n, socket)| {
                        tokio::spawn(pipeline(socket, n, *MESSAGES / connections, depth))
                    })
                    .collect();
                for task in tasks {
                    let done = task.await.unwrap();
                    latencies.lock().unwrap().extend(done);
                }
                start
            })
        })
    };
    let start = tokio::task::spawn_blocking(move || generator.join().unwrap())
        .await
        .unwrap();
    let load = finish(start, &latencies);
    server.stop().await;
    load
}

/// One pipelined sender: sends `count` messages to `c{n}` with at most `depth` unacknowledged;
/// returns the ack latencies.
async fn pipeline(
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    n: usize,
    count: usize,
    depth: usize,
) -> Vec<Duration> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut sink, mut stream) = socket.split();
    let mut in_flight = std::collections::VecDeque::with_capacity(depth);
    let mut latencies = Vec::with_capacity(count);
    let mut sent = 0;
    while latencies.len() < count {
        while sent < count && in_flight.len() < depth {
            let frame = format!(
                r#"{{"id":{sent},"op":"send","conversation":"c{n}","message":{{"content":[{{"type":"text","children":["message {sent}"]}}],"custom":{{}},"referencedMessage":null,"idempotencyKey":"k{sent}"}}}}"#
            );
            sink.feed(Message::text(frame)).await.unwrap();
            in_flight.push_back(Instant::now());
            sent += 1;
        }
        sink.flush().await.unwrap();
        match stream.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"response""#) => {
                assert!(text.contains(r#""Ok""#), "send failed: {text}");
                let at = in_flight.pop_front().expect("a response to a send");
                latencies.push(at.elapsed());
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    latencies
}

/// The raw rusqlite baseline for a load of `senders`: the same rows (`MESSAGES` messages, each
/// sender in its own conversation), 100 per transaction; messages/s, the median of 3 runs.
fn raw_run(senders: usize) -> f64 {
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let dir = temp();
            let elapsed = talkstore::bench::raw_ingest(
                &dir.path().join("raw.sqlite"),
                *MESSAGES,
                100,
                senders,
            );
            *MESSAGES as f64 / elapsed.as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[1]
}

/// The same sends on the embedded engine with SQLite storage: no network, one sender.
async fn embedded_run() -> f64 {
    let dir = temp();
    let engine = talkstore::Engine::open(dir.path().join("e.sqlite")).unwrap();
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
    for i in 0..*MESSAGES {
        chat.send(format!("message {i}")).await.unwrap();
    }
    *MESSAGES as f64 / start.elapsed().as_secs_f64()
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
    let mut raws = std::collections::HashMap::new();
    let mut raw = |senders: usize| *raws.entry(senders).or_insert_with(|| raw_run(senders));
    // For profiling: `--senders N` measures one session load only, `--pipelined N` one
    // pipelined load, and either skips the embedded run.
    let loads: Vec<Spec> = match (arg("--senders"), arg("--pipelined")) {
        (None, None) => {
            let embedded = runtime.block_on(embedded_run());
            println!(
                "embedded engine + SQLite, 1 sender, no network: {embedded:.0} messages/s ({:.2}x raw)",
                embedded / raw(1)
            );
            let sessions = [1, 4, 16, 64, 256].map(Spec::Sessions);
            let pipelined = [(1, 8), (8, 16), (8, 32), (8, 48), (8, 64), (16, 32)]
                .map(|(connections, depth)| Spec::Pipelined { connections, depth });
            sessions.into_iter().chain(pipelined).collect()
        }
        (senders, connections) => senders
            .map(Spec::Sessions)
            .into_iter()
            .chain(connections.map(|connections| Spec::Pipelined {
                connections,
                depth: arg("--depth").unwrap_or(8),
            }))
            .collect(),
    };
    println!(
        "{:>28} {:>12} {:>8} {:>8} {:>12} {:>7}",
        "load", "messages/s", "p50 ms", "p99 ms", "raw msg/s", "ratio"
    );
    let mut best: Option<(f64, f64, String)> = None;
    for spec in loads {
        let senders = match spec {
            Spec::Sessions(n) => n,
            Spec::Pipelined { connections, .. } => connections,
        };
        let raw = raw(senders);
        let (label, Load { rate, latencies }) = match spec {
            Spec::Sessions(n) => (format!("{n} sessions"), runtime.block_on(session_run(n))),
            Spec::Pipelined { connections, depth } => (
                format!("{connections} connections x {depth} deep"),
                runtime.block_on(pipelined_run(connections, depth)),
            ),
        };
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "{label:>28} {rate:>12.0} {:>8.2} {:>8.2} {raw:>12.0} {:>6.2}x",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            rate / raw
        );
        if p99 <= Duration::from_millis(10) && best.as_ref().is_none_or(|(b, ..)| rate > *b) {
            best = Some((rate, raw, label));
        }
    }
    match best {
        Some((rate, raw, label)) => println!(
            "best at ack p99 <= 10 ms: {rate:.0} messages/s = {:.2}x raw ({label})",
            rate / raw
        ),
        None => println!("no load kept ack p99 <= 10 ms"),
    }
}

/// One load of the server runs.
enum Spec {
    /// This many sessions, each waiting for one acknowledgement before its next send.
    Sessions(usize),
    /// Raw websocket connections, each keeping `depth` sends in flight.
    Pipelined { connections: usize, depth: usize },
}
