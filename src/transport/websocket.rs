//! The websocket transport (feature `websocket`): a session's connection to `talkstore-server`.
//!
//! One background task per session owns the socket. It connects lazily (when there is something
//! to send), authenticates on the upgrade request, replays the session's live subscriptions and
//! unanswered requests on every (re)connection, pings to detect dead connections, disconnects
//! when idle, and reconnects with jittered exponential backoff. Resynchronizing is safe: the
//! store skips records and windows equal to what it holds, so unchanged snapshots are not
//! re-emitted.

use std::{
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};
use tokio_tungstenite::tungstenite::{
    self, Message, client::IntoClientRequest, http::HeaderValue, protocol::CloseFrame,
};

use crate::{
    protocol::{ClientFrame, ErrorCode, ServerFrame, WireError},
    transport::{Peer, jitter},
};

/// Ping after this long without traffic.
const PING_AFTER: Duration = Duration::from_secs(25);
/// Reconnect if nothing arrives for this long.
const DEAD_AFTER: Duration = Duration::from_secs(40);
/// Disconnect after this long with no subscription and no request in flight.
const IDLE_AFTER: Duration = Duration::from_secs(3);
/// Backoff bounds between reconnection attempts (jittered ±50%).
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// The wait before reconnecting after a connection that was up dropped (jittered ±50%).
const RECONNECT_FIRST: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The close code of an expired token.
const TOKEN_EXPIRED: u16 = 4001;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Shared {
    /// The live connection's writer; `None` while disconnected.
    writer: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    wake: Notify,
}

/// The client side of a websocket connection.
pub(crate) struct Websocket {
    shared: Arc<Shared>,
}

impl Websocket {
    /// Starts the connection task for `url` (`ws://host:port/v1/{app}/realtime/{user}`).
    pub(crate) fn start<P: Peer>(
        runtime: &tokio::runtime::Handle,
        peer: Weak<P>,
        url: String,
    ) -> Self {
        let shared = Arc::new(Shared {
            writer: Mutex::new(None),
            wake: Notify::new(),
        });
        runtime.spawn(run(shared.clone(), peer, url));
        Websocket { shared }
    }

    /// Runs `frame` (which records what waits for the answer) and sends what it returns,
    /// atomically with respect to (re)connection: a call registered before a connection is
    /// replayed by it, one registered after is sent on it.
    pub(crate) fn send(&self, frame: impl FnOnce() -> Option<ClientFrame>) {
        let writer = lock(&self.shared.writer);
        if let Some(frame) = frame()
            && let Some(writer) = &*writer
            && let Ok(text) = serde_json::to_string(&frame)
        {
            let _ = writer.send(Message::Text(text.into()));
        }
        drop(writer);
        self.shared.wake.notify_one();
    }
}

impl Drop for Websocket {
    /// Ends the connection at once: the task sees its outbox close, sends a close frame and
    /// stops (or, while disconnected, wakes and stops).
    fn drop(&mut self) {
        lock(&self.shared.writer).take();
        self.shared.wake.notify_one();
    }
}

enum Ended {
    /// The session is gone or ended.
    Stop,
    /// The connection was idle and closed; wait for work.
    Idle,
    /// The connection dropped; retry after backoff.
    Retry,
}

async fn run<P: Peer>(shared: Arc<Shared>, peer: Weak<P>, url: String) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        // Lazy: connect only when there is something to do.
        loop {
            match peer.upgrade() {
                None => return,
                Some(p) if p.busy() => break,
                Some(_) => {}
            }
            shared.wake.notified().await;
        }
        let Some(p) = peer.upgrade() else { return };
        let connected = connect(&url, p.token()).await;
        drop(p);
        let ended = match connected {
            Ok(socket) => {
                // A connection that was up and dropped is retried almost at once; only
                // failures to connect back off.
                backoff = RECONNECT_FIRST;
                serve(&shared, &peer, socket).await
            }
            Err(ConnectError::Refused(error)) => {
                let Some(p) = peer.upgrade() else { return };
                tracing::info!(reasons = ?error.reasons, "the server refused the token");
                if p.need_token() {
                    Ended::Retry
                } else {
                    p.fail(error);
                    return;
                }
            }
            Err(ConnectError::Fatal(error)) => {
                if let Some(p) = peer.upgrade() {
                    p.fail(error);
                }
                return;
            }
            Err(ConnectError::Network(error)) => {
                tracing::debug!(%error, "connection failed");
                Ended::Retry
            }
        };
        *lock(&shared.writer) = None;
        match ended {
            Ended::Stop => return,
            Ended::Idle => {}
            Ended::Retry => {
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX);
            }
        }
    }
}

enum ConnectError {
    /// HTTP 401: the token was refused; a new token may help.
    Refused(WireError),
    /// Another 4xx (an unknown app, a bad user id): retrying cannot help.
    Fatal(WireError),
    /// A network failure, a 5xx, or too many connections (429): retry later.
    Network(String),
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: Option<String>) -> Result<Socket, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Network(e.to_string()))?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ConnectError::Refused(unauthorized("the token is not a valid header")))?;
        request.headers_mut().insert("authorization", value);
    }
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024);
    match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) if response.status().as_u16() == 401 => {
            let error = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice::<WireError>(body).ok())
                .unwrap_or_else(|| unauthorized("the server refused the connection"));
            Err(ConnectError::Refused(error))
        }
        Err(tungstenite::Error::Http(response))
            if response.status().is_client_error() && response.status().as_u16() != 429 =>
        {
            let status = response.status();
            let error = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice::<WireError>(body).ok())
                .unwrap_or_else(|| WireError {
                    code: ErrorCode::InvalidRequest,
                    reasons: vec![format!("the server answered {status}")],
                });
            Err(ConnectError::Fatal(error))
        }
        Err(error) => Err(ConnectError::Network(error.to_string())),
    }
}

fn unauthorized(reason: &str) -> WireError {
    WireError {
        code: ErrorCode::Unauthorized,
        reasons: vec![reason.to_owned()],
    }
}

async fn serve<P: Peer>(shared: &Shared, peer: &Weak<P>, socket: Socket) -> Ended {
    let (mut sink, mut stream) = socket.split();
    let (writer, mut outbox) = mpsc::unbounded_channel::<Message>();
    {
        let mut slot = lock(&shared.writer);
        let Some(p) = peer.upgrade() else {
            return Ended::Stop;
        };
        for frame in p.replay() {
            if let Ok(text) = serde_json::to_string(&frame) {
                let _ = writer.send(Message::Text(text.into()));
            }
        }
        *slot = Some(writer);
    }
    let mut last_heard = Instant::now();
    let mut idle_since: Option<Instant> = None;
    let mut refresh_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            message = stream.next() => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        let Some(p) = peer.upgrade() else { return Ended::Stop };
                        match serde_json::from_str::<ServerFrame>(text.as_str()) {
                            Ok(ServerFrame::Hello { expires_at, .. }) => {
                                refresh_at = expires_at.map(refresh_time);
                            }
                            Ok(frame) => p.receive(frame),
                            Err(error) => tracing::warn!(%error, "unreadable frame from the server"),
                        }
                    }
                    Some(Ok(Message::Close(frame))) => return closed(peer, frame),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ended::Retry,
                }
            }
            message = outbox.recv() => {
                let Some(message) = message else {
                    // Only a session going away closes the outbox.
                    let _ = sink.send(Message::Close(None)).await;
                    return Ended::Stop;
                };
                // What is queued goes out with one flush (up to 64 frames).
                let mut write = sink.feed(message).await;
                for _ in 1..64 {
                    if write.is_err() {
                        break;
                    }
                    let Ok(message) = outbox.try_recv() else { break };
                    write = sink.feed(message).await;
                }
                if write.is_err() || sink.flush().await.is_err() {
                    return Ended::Retry;
                }
            }
            _ = tick.tick() => {
                let Some(p) = peer.upgrade() else { return Ended::Stop };
                let now = Instant::now();
                if now.duration_since(last_heard) > DEAD_AFTER {
                    return Ended::Retry;
                }
                if now.duration_since(last_heard) > PING_AFTER
                    && sink.send(Message::Ping(Vec::new().into())).await.is_err()
                {
                    return Ended::Retry;
                }
                if refresh_at.is_some_and(|at| now >= at) {
                    refresh_at = None;
                    p.need_token();
                }
                if p.busy() {
                    idle_since = None;
                } else if idle_since.get_or_insert(now).elapsed() >= IDLE_AFTER {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ended::Idle;
                }
            }
        }
    }
}

/// When to ask for a new token: five minutes before expiry, or halfway for short tokens.
fn refresh_time(expires_at: u64) -> Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let left = expires_at.saturating_sub(now);
    let after = if left > 600 { left - 300 } else { left / 2 };
    Instant::now() + Duration::from_secs(after)
}

fn closed<P: Peer>(peer: &Weak<P>, frame: Option<CloseFrame>) -> Ended {
    let Some(p) = peer.upgrade() else {
        return Ended::Stop;
    };
    match frame {
        Some(frame) if u16::from(frame.code) == TOKEN_EXPIRED => {
            if p.need_token() {
                Ended::Retry
            } else {
                p.fail(unauthorized(
                    "the token expired and no on_need_token callback is set",
                ));
                Ended::Stop
            }
        }
        _ => Ended::Retry,
    }
}
