//! `talkstore-server` (feature `server`): the engine behind a websocket, for many users on many
//! machines.
//!
//! Each configured app gets its own engine on its own SQLite file in the data directory. Users
//! connect to `GET /v1/{app_id}/realtime/{user_id}` with a user token (`Authorization: Bearer`
//! or `?token=`), checked before the websocket is accepted; the connection then carries the
//! protocol frames described in `PROTOCOL.md`, one JSON text message each.
//! `GET /health` answers `ok`. An app's own backend uses the REST API under `/v1/{app_id}/…`
//! (users, conversations, participants, messages) with the app secret or an app token.

mod auth;
mod connection;
mod rest;

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt,
};
use dashmap::DashMap;
use serde::Deserialize;
use tokio::{net::TcpListener, sync::watch};

pub use self::{
    auth::{AppCredentials, AuthError, mint_user_token},
    rest::{
        MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_LIST, MAX_MESSAGE_BATCH, MAX_URI_BYTES,
        MAX_USER_BATCH,
    },
};
use crate::{
    Durability, Engine, EngineError,
    model::UserId,
    protocol::{ErrorCode, WireError},
};

/// The websocket read buffer of each connection, in bytes.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Limits of the server, each with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest websocket message accepted, in bytes; larger ones close the connection with
    /// code 1009. The default is 256 KiB.
    pub max_message_bytes: usize,
    /// Frames queued for one connection before it counts as a slow reader and is closed with
    /// code 1008 (it resumes when it reconnects). A single write that takes over 10 s
    /// also ends the connection. The default is 1,024.
    pub outbound_queue: usize,
    /// Requests per second per connection (a burst of the same size is allowed); more are
    /// answered with `RATE_LIMITED`, which sessions retry after a delay (requests up to 10
    /// times, subscribes and unsubscribes until they pass). Subscribes that restore a window
    /// after a reconnect are not counted, up to 1,000 per connection. The default is 100.
    pub requests_per_second: u32,
    /// Open connections per user and app; more are refused with HTTP 429. The default is 16.
    pub connections_per_user: usize,
    /// Frames waiting for an app's engine, over all its connections, past which writes are
    /// answered `RATE_LIMITED` instead of queued (sessions retry them after a delay). It
    /// bounds how far pushes fall behind under overload and how long a shutdown waits for
    /// the engine. The default is 1,024.
    pub engine_backlog: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            outbound_queue: 1_024,
            requests_per_second: 100,
            connections_per_user: 16,
            engine_backlog: 1_024,
        }
    }
}

/// How a server runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where to listen. Use port 0 for any free port.
    pub listen: SocketAddr,
    /// Where each app's database lives (`{app_id}.sqlite`).
    pub data_dir: PathBuf,
    /// The apps served; at least one.
    pub apps: Vec<AppCredentials>,
    /// Let users connect without a token. For development only; never the default.
    pub allow_unauthenticated: bool,
    /// SQLite durability.
    pub durability: Durability,
    /// Limits.
    pub limits: Limits,
}

impl ServerConfig {
    /// A configuration with default limits and durability, authentication required.
    pub fn new(
        listen: SocketAddr,
        data_dir: impl Into<PathBuf>,
        apps: Vec<AppCredentials>,
    ) -> Self {
        Self {
            listen,
            data_dir: data_dir.into(),
            apps,
            allow_unauthenticated: false,
            durability: Durability::default(),
            limits: Limits::default(),
        }
    }
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An app's database could not be opened.
    #[error("cannot open the database of app {app}: {source}")]
    Storage {
        /// The app.
        app: String,
        /// Why.
        source: EngineError,
    },
    /// Listening or serving failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) struct AppEntry {
    pub(crate) credentials: AppCredentials,
    pub(crate) engine: Engine,
}

pub(crate) struct ServerState {
    pub(crate) apps: HashMap<String, Arc<AppEntry>>,
    pub(crate) allow_unauthenticated: bool,
    pub(crate) limits: Limits,
    /// Open connections per (app, user).
    pub(crate) connections: DashMap<(String, UserId), usize>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    router: Router,
    shutdown: watch::Sender<bool>,
    state: Arc<ServerState>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish()
    }
}

fn valid_app_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Server {
    /// Opens every app's database and binds the listener.
    ///
    /// # Errors
    ///
    /// [`ServerError::Config`] without apps or with an app id that is not 1-64 of
    /// `[A-Za-z0-9_-]`, [`ServerError::Storage`] if a database cannot be opened,
    /// [`ServerError::Io`] if the address cannot be bound.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        if config.apps.is_empty() {
            return Err(ServerError::Config("at least one app is required".into()));
        }
        std::fs::create_dir_all(&config.data_dir)?;
        let mut apps = HashMap::new();
        for credentials in config.apps {
            if !valid_app_id(&credentials.id) {
                return Err(ServerError::Config(format!(
                    "app id {:?} must be 1-64 characters of A-Z, a-z, 0-9, - and _",
                    credentials.id
                )));
            }
            let path = config.data_dir.join(format!("{}.sqlite", credentials.id));
            let engine = Engine::open_with(&path, config.durability).map_err(|source| {
                ServerError::Storage {
                    app: credentials.id.clone(),
                    source,
                }
            })?;
            let engine = engine.with_policy(credentials.policy);
            engine.run_on_own_thread()?;
            tracing::info!(
                app = %credentials.id,
                path = %path.display(),
                policy = ?credentials.policy,
                "app ready"
            );
            let id = credentials.id.clone();
            if apps
                .insert(
                    id.clone(),
                    Arc::new(AppEntry {
                        credentials,
                        engine,
                    }),
                )
                .is_some()
            {
                return Err(ServerError::Config(format!("app {id} is configured twice")));
            }
        }
        if config.allow_unauthenticated {
            tracing::warn!("development mode: users may connect without a token");
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = Arc::new(ServerState {
            apps,
            allow_unauthenticated: config.allow_unauthenticated,
            limits: config.limits,
            connections: DashMap::new(),
            shutdown: shutdown_rx,
        });
        let router = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/v1/{app_id}/realtime/{user_id}", get(realtime))
            .merge(rest::routes())
            // After every route: a wrong method anywhere is a `WireError` too.
            .method_not_allowed_fallback(rest::method_not_allowed)
            .with_state(state.clone());
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Server {
            listener,
            router,
            shutdown,
            state,
        })
    }

    /// The address the server listens on.
    ///
    /// # Errors
    ///
    /// If the socket cannot report it.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and stops reading; each connection
    /// is closed with code 1001 once every frame it had read is answered (at most 10 s later).
    /// Returns once every command the engines were handed is committed.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] if serving fails.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, "listening");
        let stop = self.shutdown;
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        };
        // Frames are small and latency matters: no Nagle (else ~40 ms stalls on delayed ACKs).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router)
            .with_graceful_shutdown(signal)
            .await?;
        // Commands the connections queued before they closed are still answered and committed.
        let engines: Vec<Engine> = self
            .state
            .apps
            .values()
            .map(|app| app.engine.clone())
            .collect();
        let settled = tokio::task::spawn_blocking(move || engines.iter().for_each(Engine::settle));
        if let Err(error) = settled.await {
            tracing::error!(%error, "finishing queued commands failed");
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// An HTTP error with the protocol's error body.
pub(crate) fn refuse(status: StatusCode, code: ErrorCode, reason: impl Into<String>) -> Response {
    (
        status,
        Json(WireError {
            code,
            reasons: vec![reason.into()],
        }),
    )
        .into_response()
}

async fn realtime(
    State(state): State<Arc<ServerState>>,
    Path((app_id, user_id)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(app) = state.apps.get(&app_id).cloned() else {
        return refuse(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("the app ID {app_id} does not exist"),
        );
    };
    let Ok(user) = UserId::try_new(&user_id) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "the user id is empty",
        );
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let expires_at = match bearer.or(query.token) {
        Some(token) => match auth::verify_user_token(&app.credentials, &user_id, &token) {
            Ok(claims) => claims.expires_at,
            Err(error) => {
                tracing::info!(app = %app_id, user = %user_id, %error, "refused a connection");
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    error.to_string(),
                );
            }
        },
        None if state.allow_unauthenticated => None,
        None => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                AuthError::Missing.to_string(),
            );
        }
    };
    let key = (app_id.clone(), user.clone());
    {
        let mut count = state.connections.entry(key.clone()).or_insert(0);
        if *count >= state.limits.connections_per_user {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::LimitExceeded,
                format!(
                    "at most {} connections per user",
                    state.limits.connections_per_user
                ),
            );
        }
        *count += 1;
    }
    let max = state.limits.max_message_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        // Frames are small; tungstenite zeroes its whole read buffer as it grows (128 KiB by
        // default), which costs more than the frames themselves.
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            connection::run(socket, &state, &app, user, expires_at).await;
            if let Some(mut count) = state.connections.get_mut(&key) {
                *count = count.saturating_sub(1);
            }
            state.connections.remove_if(&key, |_, count| *count == 0);
        })
}
