//! A small client of a running `talkstore-server`: it joins a conversation, prints every
//! message as it arrives, and sends one line.
//!
//! Start a server (in another terminal):
//!
//! ```text
//! cargo run --features server --bin talkstore-server -- --app demo:demo-secret-0123456789
//! ```
//!
//! then run this client twice, as two users:
//!
//! ```text
//! cargo run --features server --example client -- alice "Hello from Alice"
//! cargo run --features server --example client -- bob "Hi Alice"
//! ```
//!
//! It mints its own token with the app secret, which only a trusted backend should hold: a real
//! app gets tokens from its backend. Holding the secret, it also plays the backend's other part:
//! under the server's default policy users never join a conversation uninvited, so it adds its
//! user to the lobby through the REST API. Options: `TALKSTORE_URL` (default `ws://127.0.0.1:8080`),
//! `TALKSTORE_APP` (`demo`), `TALKSTORE_SECRET` (`demo-secret-0123456789`).

use std::time::Duration;

use axum::http::{Request, header};
use futures_util::StreamExt;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use talkstore::{
    SessionOptions, UserParams, get_talk_session,
    server::{AppCredentials, mint_user_token},
};

/// As the app's backend: creates the lobby if needed and adds `user` to it
/// (`PUT /v1/{app}/conversations/lobby`, authenticated with the secret).
async fn join_lobby(
    url: &str,
    app: &str,
    secret: &str,
    user: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let base = url.replacen("ws", "http", 1);
    let body = serde_json::json!({"subject": "Lobby", "participants": [user]}).to_string();
    let request = Request::put(format!("{base}/v1/{app}/conversations/lobby"))
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)?;
    let response = Client::builder(TokioExecutor::new())
        .build_http()
        .request(request)
        .await?;
    if !response.status().is_success() {
        return Err(format!(
            "the server refused to add {user} to the lobby: {}",
            response.status()
        )
        .into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let user = args.next().unwrap_or_else(|| "alice".to_owned());
    let line = args.next().unwrap_or_else(|| format!("Hello from {user}"));
    let url = std::env::var("TALKSTORE_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080".into());
    let app = std::env::var("TALKSTORE_APP").unwrap_or_else(|_| "demo".into());
    let secret =
        std::env::var("TALKSTORE_SECRET").unwrap_or_else(|_| "demo-secret-0123456789".into());

    let token = mint_user_token(&AppCredentials::new(&app, &secret), &user, 3600)?;
    let session = get_talk_session(SessionOptions::new(&app, &user).url(&url).token(token))?;
    let _errors = session.on_error(|error| eprintln!("session ended: {error}"));
    session
        .current_user()
        .set(UserParams::new().name(&user))
        .await?;
    join_lobby(&url, &app, &secret, &user).await?;
    let lobby = session.conversation("lobby")?;

    let messages = lobby.subscribe_messages(None);
    let mut snapshots = messages.stream();
    lobby.send(line.as_str()).await?;
    println!("── {user} in the lobby (Ctrl-C to quit)");
    let mut seen = std::collections::HashSet::new();
    loop {
        tokio::select! {
            snapshot = snapshots.next() => {
                let Some(Some(list)) = snapshot else { break };
                for m in list.iter().rev().filter(|m| seen.insert(m.id.clone())) {
                    let sender = m.sender.as_ref().map_or("system", |u| u.name.as_str());
                    println!("{sender}: {}", m.plaintext);
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(3600)) => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}
