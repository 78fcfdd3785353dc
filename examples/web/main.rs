//! A chat page on talkstore: Dioxus LiveView over axum. The virtual DOM runs here and the
//! browser receives DOM edits over a websocket, so no wasm build is needed.
//!
//!     cargo run --example web --features dioxus,server
//!
//! prints the page's URL. Pick a user (a development login: anyone may be anyone), see the
//! conversation list with unread badges and last messages, open a conversation (which marks it
//! read), load older messages, write with markup (`*bold*`, `_italic_`, `` `code` ``, `- `
//! lists, links), start a conversation with another user, rename yourself, and watch every
//! other tab update live.
//!
//! By default the page runs the embedded engine in memory with three demo users; `--db PATH`
//! keeps the data in SQLite, and `--server ws://HOST:PORT --app ID --secret SECRET` talks to a
//! `talkstore-server` instead (the page mints each user's token with the app's secret, as an
//! app's backend would).
//!
//! The LiveView script never reconnects by itself: the page watches its socket, and when it
//! closes (a network cut, a server restart) shows that it is offline, polls `/health` and
//! reloads once the server answers.

mod view;

use std::{net::SocketAddr, path::PathBuf};

use axum::{
    Router,
    extract::{Path, Query, State, WebSocketUpgrade},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use clap::Parser;
use dioxus::prelude::VirtualDom;
use dioxus_liveview::LiveViewPool;
use talkstore::{
    ConversationParams, Engine, ParticipantParams, SessionOptions, TalkSession, UserParams,
    get_talk_session,
    server::{AppCredentials, mint_user_token},
};

#[derive(Parser, Debug)]
#[command(about = "A chat page on talkstore (Dioxus LiveView over axum)")]
struct Options {
    /// Address to serve the page on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Keep the embedded engine's data in this SQLite file (default: in memory).
    #[arg(long, conflicts_with = "server")]
    db: Option<PathBuf>,
    /// A talkstore-server's websocket address, e.g. ws://127.0.0.1:8080, instead of the
    /// embedded engine. Needs --app and --secret.
    #[arg(long, requires_all = ["app", "secret"])]
    server: Option<String>,
    /// The app id (with --server).
    #[arg(long)]
    app: Option<String>,
    /// The app's secret, to mint user tokens (with --server).
    #[arg(long)]
    secret: Option<String>,
}

/// Where sessions connect.
#[derive(Clone)]
enum Backend {
    Embedded(Engine),
    Server { url: String, app: AppCredentials },
}

/// The embedded engine's app id.
const EMBEDDED_APP: &str = "web";
/// How long a minted token lasts; sessions ask for a new one before it expires.
const TOKEN_SECONDS: u64 = 3600;

impl Backend {
    /// The session of `user`; an invalid id or token is the error.
    fn session(&self, user: &str) -> Result<TalkSession, String> {
        let session = match self {
            Backend::Embedded(engine) => {
                get_talk_session(SessionOptions::new(EMBEDDED_APP, user).engine(engine.clone()))
            }
            Backend::Server { url, app } => {
                let token = mint_user_token(app, user, TOKEN_SECONDS).map_err(|e| e.to_string())?;
                let session =
                    get_talk_session(SessionOptions::new(&app.id, user).url(url).token(token));
                if let Ok(session) = &session {
                    // The callback keeps its session alive: the page's sessions live as long as
                    // the process anyway (the registry returns them to every tab).
                    let (app, user, own) = (app.clone(), user.to_owned(), session.clone());
                    session.on_need_token(move || {
                        if let Ok(token) = mint_user_token(&app, &user, TOKEN_SECONDS) {
                            own.set_token(token);
                        }
                    });
                }
                session
            }
        };
        session.map_err(|e| e.to_string())
    }
}

#[derive(Clone)]
struct AppState {
    backend: Backend,
    pool: LiveViewPool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = Options::parse();
    let backend = match (&options.server, &options.db) {
        (Some(url), _) => Backend::Server {
            url: url.clone(),
            app: AppCredentials::new(
                options.app.clone().unwrap_or_default(),
                options.secret.clone().unwrap_or_default(),
            ),
        },
        (None, Some(path)) => Backend::Embedded(Engine::open(path)?),
        (None, None) => Backend::Embedded(Engine::new()),
    };
    seed(&backend).await?;
    let state = AppState {
        backend,
        pool: LiveViewPool::new(),
    };
    let app = Router::new()
        .route("/", get(login))
        .route("/chat", get(sign_in))
        .route("/chat/{user}", get(chat_page))
        .route("/chat/{user}/ws", get(chat_socket))
        .route("/health", get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    println!("talkstore chat on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The demo users, and a conversation of all three that shows the markup.
const DEMO_USERS: [(&str, &str); 3] = [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")];

/// Creates the demo users and their conversation unless they exist.
async fn seed(backend: &Backend) -> Result<(), Box<dyn std::error::Error>> {
    for (id, name) in DEMO_USERS {
        let session = backend.session(id)?;
        session
            .current_user()
            .create_if_not_exists(UserParams::new().name(name))
            .await?;
    }
    let alice = backend.session("alice")?;
    let welcome = alice.conversation("welcome")?;
    if welcome.get().await?.is_none() {
        welcome
            .set(ConversationParams::new().subject("Welcome"))
            .await?;
        for (id, _) in &DEMO_USERS[1..] {
            welcome
                .participant(*id)?
                .set(ParticipantParams::new())
                .await?;
        }
        welcome
            .send("Hi! Messages take *bold*, _italic_, `code`, lists and links:\n- https://example.com\n- another point")
            .await?;
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Login {
    user: Option<String>,
}

/// The development login: pick a demo user or type any user id.
async fn login() -> Html<String> {
    let links: String = DEMO_USERS
        .iter()
        .map(|(id, name)| format!(r#"<li><a href="/chat/{id}">{name}</a></li>"#))
        .collect();
    Html(format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>talkstore chat</title>
<style>{}</style></head><body class="login"><main>
<h1>talkstore chat</h1><p>A development login: pick a user, or enter any user id.</p>
<ul>{links}</ul>
<form action="/chat" method="get"><input name="user" placeholder="user id" required>
<button>Sign in</button></form></main></body></html>"#,
        view::STYLE
    ))
}

/// The login form's answer: the user's page. (The user is in the path, not the query, which
/// LiveView's history support rewrites.)
async fn sign_in(Query(login): Query<Login>) -> Response {
    match login.user.filter(|u| !u.is_empty()) {
        Some(user) => Redirect::to(&format!("/chat/{}", encode(&user))).into_response(),
        None => refused(StatusCode::BAD_REQUEST, "Pick a user first."),
    }
}

/// The chat page of one user: the LiveView glue, and the script that recovers from a closed
/// socket.
async fn chat_page(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    if let Err(response) = signed_in(&state, &user).await {
        return response;
    }
    let glue = dioxus_liveview::interpreter_glue(&format!("/chat/{}/ws", encode(&user)));
    Html(format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>talkstore chat</title>
<style>{}</style></head><body><div id="offline">Offline, reconnecting…</div><div id="main"></div>
<script>{RECONNECT}</script>{glue}</body></html>"#,
        view::STYLE
    ))
    .into_response()
}

/// The LiveView socket of one user's page.
async fn chat_socket(
    State(state): State<AppState>,
    Path(user): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let session = match signed_in(&state, &user).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let pool = state.pool.clone();
    ws.on_upgrade(move |socket| async move {
        let socket = dioxus_liveview::axum_socket(socket);
        let app = move || VirtualDom::new_with_props(view::Chat, view::ChatProps { session });
        if let Err(error) = pool.launch_virtualdom(socket, app).await {
            tracing::info!(?error, "a page's socket ended");
        }
    })
    .into_response()
}

/// The session of `user`, created (named after their id) if new; or the error page.
async fn signed_in(state: &AppState, user: &str) -> Result<TalkSession, Response> {
    let session = state
        .backend
        .session(user)
        .map_err(|why| refused(StatusCode::BAD_REQUEST, &why))?;
    session
        .current_user()
        .create_if_not_exists(UserParams::new().name(user))
        .await
        .map_err(|e| refused(StatusCode::BAD_GATEWAY, &e.to_string()))?;
    Ok(session)
}

/// An error page.
fn refused(status: StatusCode, why: &str) -> Response {
    let body = format!("<p>{}</p><p><a href=\"/\">Back</a></p>", escape(why));
    (status, Html(body)).into_response()
}

/// Percent-encodes a path segment.
fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Runs before the LiveView glue: wraps `WebSocket` so that the page learns when the glue's
/// socket closes, then shows it is offline, polls `/health` (backing off to 5 s) and opens the
/// page again.
const RECONNECT: &str = r#"
(function () {
  // LiveView's history support rewrites the address: keep the one this page was opened at.
  const here = location.href;
  const Native = window.WebSocket;
  function Watched(url, protocols) {
    const ws = new Native(url, protocols);
    ws.addEventListener("open", () => document.body.dataset.live = "yes");
    ws.addEventListener("close", () => {
      document.body.dataset.live = "no";
      let delay = 250;
      const retry = () => setTimeout(() => {
        fetch("/health", { cache: "no-store" })
          .then((r) => { if (r.ok) { location.replace(here); } else { throw r; } })
          .catch(() => { delay = Math.min(delay * 2, 5000); retry(); });
      }, delay);
      retry();
    });
    return ws;
  }
  Watched.prototype = Native.prototype;
  Object.assign(Watched, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = Watched;
})();
"#;
