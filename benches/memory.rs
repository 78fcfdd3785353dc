//! Memory: what the client store holds per cached message, and what the server holds per idle
//! connection and per live subscription.
//!
//! - **Client.** A `talkstore-server` process holds a conversation of `--messages` (2,000)
//!   messages. In this process (whose allocations a counting allocator tracks) one session
//!   opens the conversation's message window and loads it whole; the bytes it holds then (dhat's
//!   count of live heap bytes),
//!   less what it held before, per message, are compared with the JSON size of the message
//!   snapshots. Then the window ends: the store must be back to its baseline (no cached
//!   entity; bytes within 128 KiB of the baseline, a constant that does not grow with the
//!   window).
//! - **Server.** `--connections` (5,000) raw websocket connections, one per user, each past
//!   its `hello`: the server's RSS growth per connection. Then each subscribes to one user:
//!   the growth per live subscription.
//!
//! Run with `cargo bench --features server --bench memory` (options `--messages`,
//! `--connections`); see `benches/README.md`. It reports; with `--check` it exits with status
//! 1 if the store does not return to its baseline.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt, future::join_all};
use measure::{number, rss_kib};
use process::ServerProcess;
use talkstore::{
    ConversationParams, ParticipantParams, SessionOptions, TalkSession, UserParams,
    get_talk_session,
    server::{AppCredentials, mint_user_token},
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

#[path = "support/measure.rs"]
mod measure;
#[path = "../tests/it/support/process.rs"]
mod process;

/// What may stay allocated after the window ended: buffers of the connection that grew with
/// its frames (about 68 KiB, whatever the window's length: 68,210 bytes after 500 messages,
/// 70,556 after 4,000).
const RESIDUE: isize = 128 * 1024;

const APP: &str = "memory";
const SECRET: &str = "memory-secret-0123456789";

/// Counts this process's heap (dhat, while its profiler runs).
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Bytes allocated and not freed.
fn live() -> isize {
    dhat::HeapStats::get().curr_bytes as isize
}

fn session(addr: &str, credentials: &AppCredentials, user: &str) -> TalkSession {
    let token = mint_user_token(credentials, user, 3600).unwrap();
    let options = SessionOptions::new(APP, user)
        .url(format!("ws://{addr}"))
        .token(token);
    get_talk_session(options).unwrap()
}

/// Lets background tasks finish what they were doing (frees of the last frames).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn client(addr: &str, credentials: &AppCredentials, messages: usize) -> bool {
    let writer = session(addr, credentials, "writer");
    for s in [&writer, &session(addr, credentials, "reader")] {
        let me = s.current_user();
        let name = me.id().to_string();
        me.set(UserParams::new().name(name)).await.unwrap();
    }
    let c = writer.conversation("c").unwrap();
    c.set(ConversationParams::new().subject("Memory"))
        .await
        .unwrap();
    c.participant("reader")
        .unwrap()
        .set(ParticipantParams::new())
        .await
        .unwrap();
    for chunk in (0..messages).collect::<Vec<_>>().chunks(100) {
        join_all(chunk.iter().map(|n| {
            let c = c.clone();
            async move {
                let text = format!("message {n}: a line of chat of about sixty characters, *bold*");
                c.send(text.as_str()).await.unwrap()
            }
        }))
        .await;
    }

    let reader = session(addr, credentials, "reader");
    reader.sync().await.unwrap();
    settle().await;
    let before = live();
    let empty = reader.stats();
    let window = reader.conversation("c").unwrap().subscribe_messages(None);
    window.connected().await.unwrap();
    while !window.loaded_all() {
        window.load_more(Some(100)).await.unwrap();
    }
    settle().await;
    let held = live() - before;
    let rows = window.rows();
    let json: usize = rows
        .iter()
        .map(|m| serde_json::to_string(&**m).unwrap().len())
        .sum();
    let stats = reader.stats();
    println!(
        "client: {} messages cached ({} entities); {held} bytes held, {:.0} per message; their snapshots' JSON {:.0} bytes each: {:.2}x (goal <= 2x); the store's own estimate {} bytes",
        rows.len(),
        stats.entities(),
        held as f64 / rows.len() as f64,
        json as f64 / rows.len() as f64,
        held as f64 / json as f64,
        stats.approx_bytes,
    );
    drop(rows);
    window.unsubscribe();
    drop(window);
    let mut after = reader.stats();
    for _ in 0..100 {
        if after.entities() <= empty.entities() && after.subscriptions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = reader.stats();
    }
    settle().await;
    let left = live() - before;
    println!(
        "client after the window ended: {} entities (before: {}), {left} bytes above the baseline",
        after.entities(),
        empty.entities()
    );
    after.entities() <= empty.entities() && left < RESIDUE
}

async fn server(server: &ServerProcess, addr: &str, credentials: &AppCredentials, n: usize) {
    let connect = |user: String| {
        let token = mint_user_token(credentials, &user, 3600).unwrap();
        let url = format!("ws://{addr}/v1/{APP}/realtime/{user}");
        async move {
            let mut request = url.into_client_request().unwrap();
            let bearer = format!("Bearer {token}").parse().unwrap();
            request.headers_mut().insert("authorization", bearer);
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            let hello = socket.next().await.unwrap().unwrap();
            assert!(hello.to_text().unwrap().contains("hello"));
            socket
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = rss_kib(server.id());
    let mut sockets = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        sockets.extend(join_all(chunk.iter().map(|i| connect(format!("idle{i}")))).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(server.id());
    let subscribe = r#"{"id":1,"op":"subscribe","sub":1,"target":{"kind":"user","id":"reader"}}"#;
    for socket in &mut sockets {
        socket.send(Message::Text(subscribe.into())).await.unwrap();
    }
    for socket in &mut sockets {
        // The window's push, then the ack.
        while let Some(Ok(message)) = socket.next().await {
            if message.to_text().is_ok_and(|t| t.contains(r#""id":1"#)) {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let subscribed = rss_kib(server.id());
    println!(
        "server: RSS {base} KiB; with {n} idle connections {idle} KiB: {:.1} KiB per connection (goal <= 16); subscribed to one user each {subscribed} KiB: {:.2} KiB per live subscription",
        (idle as f64 - base as f64) / n as f64,
        (subscribed as f64 - idle as f64) / n as f64,
    );
}

fn main() {
    let messages = number("--messages", 2_000);
    let connections = number("--connections", 5_000);
    let data = tempfile::tempdir().unwrap();
    let (process, addr) = ServerProcess::start(data.path(), APP, SECRET, Some(0));
    let addr = addr.to_string();
    let credentials = AppCredentials::new(APP, SECRET);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let profiler = dhat::Profiler::builder().testing().build();
    let returned = runtime.block_on(client(&addr, &credentials, messages));
    drop(profiler);
    runtime.block_on(server(&process, &addr, &credentials, connections));
    drop(process);
    if !returned && std::env::args().any(|a| a == "--check") {
        println!("memory: FAILED: the store did not return to its baseline");
        std::process::exit(1);
    }
}
