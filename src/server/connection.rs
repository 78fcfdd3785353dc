//! One websocket connection: frames in, engine, frames out, with the limits enforced.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};

use super::{AppEntry, ServerState, auth};
use crate::{
    engine::{Dropped, MAX_SUBSCRIPTIONS_PER_CONNECTION},
    model::UserId,
    protocol::{
        ClientFrame, ErrorCode, MAX_PUSH_FRAME_BYTES, PROTOCOL_VERSION, Request, Response,
        ServerFrame, WireError,
    },
};

/// Close codes the server uses.
pub(crate) mod close {
    /// The server is shutting down.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// The client read too slowly (outbound queue full); reconnect and resume.
    pub(crate) const POLICY: u16 = 1008;
    /// A batch of writes failed in storage; reconnect and resume.
    pub(crate) const INTERNAL: u16 = 1011;
    /// A message was larger than the limit.
    pub(crate) const TOO_BIG: u16 = 1009;
    /// The connection's token expired and was not replaced.
    pub(crate) const TOKEN_EXPIRED: u16 = 4001;
}

/// A token bucket: `rate` requests a second, bursts of `rate`.
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Subscribes that restore a window (a client resubscribing after a reconnect) are not
/// counted against the rate limit, up to one full set of subscriptions per connection: a
/// reconnect of a busy client must never lose or delay subscriptions. Past the allowance they
/// count like any request.
struct ReplayAllowance(usize);

impl ReplayAllowance {
    /// Whether `frame` is a restoring subscribe within the allowance (and spends it).
    fn take(&mut self, frame: &ClientFrame) -> bool {
        let restores = matches!(
            frame.request,
            Request::Subscribe {
                restore: Some(_),
                ..
            }
        );
        if restores && self.0 > 0 {
            self.0 -= 1;
            true
        } else {
            false
        }
    }
}

fn error_frame(code: ErrorCode, reason: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        error: WireError {
            code,
            reasons: vec![reason.into()],
        },
    }
}

fn text(frame: &ServerFrame) -> Message {
    Message::Text(json(frame).into())
}

fn json(value: &impl serde::Serialize) -> String {
    // Serializing our own frame types cannot fail: they hold no maps with non-string keys and
    // no non-finite floats (content is validated before it is stored).
    serde_json::to_string(value).unwrap_or_default()
}

/// A frame as websocket messages: one, or for a push larger than [`MAX_PUSH_FRAME_BYTES`]
/// its parts, each at most that large unless one update alone is larger.
fn texts(frame: ServerFrame) -> Vec<Message> {
    let whole = json(&frame);
    let ServerFrame::Push {
        seq,
        epoch,
        updates,
        ..
    } = frame
    else {
        return vec![Message::Text(whole.into())];
    };
    if whole.len() <= MAX_PUSH_FRAME_BYTES {
        return vec![Message::Text(whole.into())];
    }
    // What a part holds besides its updates: the envelope with the largest numbers.
    let envelope = json(&ServerFrame::Push {
        seq: u64::MAX,
        epoch: u64::MAX,
        updates: Vec::new(),
        more: true,
    })
    .len();
    let mut parts = vec![Vec::new()];
    let mut size = envelope;
    for update in updates {
        let len = json(&update).len() + 1;
        if size + len > MAX_PUSH_FRAME_BYTES && parts.last().is_some_and(|p| !p.is_empty()) {
            parts.push(Vec::new());
            size = envelope;
        }
        size += len;
        if let Some(part) = parts.last_mut() {
            part.push(update);
        }
    }
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(at, updates)| {
            text(&ServerFrame::Push {
                seq,
                epoch,
                updates,
                more: at < last,
            })
        })
        .collect()
}

fn closing(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// How long from `now` (seconds since the Unix epoch) until a token that expires at
/// `expires_at` stops being accepted: `exp` + the leeway, as for a new connection.
fn until(expires_at: Option<u64>, now: u64) -> Option<Duration> {
    let end = |at: u64| at.saturating_add(auth::LEEWAY_SECONDS);
    expires_at.map(|at| Duration::from_secs(end(at).saturating_sub(now)))
}

/// How long one websocket write may take before the reader counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Writes one message; false if the connection is broken or the reader stopped reading.
async fn send(sink: &mut Sink, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// Writes `first` and every other frame already queued behind it (at most [`MAX_WRITE_BATCH`])
/// with one flush, counting the responses off `unanswered`; false like [`send`].
async fn send_queued(
    sink: &mut Sink,
    first: ServerFrame,
    inbox: &mut tokio::sync::mpsc::Receiver<ServerFrame>,
    unanswered: &mut usize,
) -> bool {
    let write = async {
        let (mut next, mut written) = (Some(first), 0);
        while let Some(frame) = next {
            if matches!(frame, ServerFrame::Response { .. }) {
                *unanswered = unanswered.saturating_sub(1);
            }
            for message in texts(frame) {
                sink.feed(message).await?;
            }
            written += 1;
            next = (written < MAX_WRITE_BATCH)
                .then(|| inbox.try_recv().ok())
                .flatten();
        }
        sink.flush().await
    };
    matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
}

/// The most frames written with one flush.
const MAX_WRITE_BATCH: usize = 64;

/// Answers the frames the engine must not see (a new token); empty passes the frame on.
/// A good token is acknowledged and followed by a new hello carrying its expiry.
fn intercept(
    frame: &ClientFrame,
    app: &AppEntry,
    user: &UserId,
    expires_at: &mut Option<u64>,
) -> Vec<ServerFrame> {
    let Request::Authenticate { token } = &frame.request else {
        return Vec::new();
    };
    match auth::verify_user_token(&app.credentials, user.as_str(), token) {
        Ok(claims) => {
            *expires_at = claims.expires_at;
            vec![
                ServerFrame::Response {
                    id: frame.id,
                    result: Ok(Response::Ack),
                },
                ServerFrame::Hello {
                    protocol: PROTOCOL_VERSION,
                    expires_at: claims.expires_at,
                },
            ]
        }
        Err(error) => {
            let error = WireError {
                code: ErrorCode::Unauthorized,
                reasons: vec![error.to_string()],
            };
            vec![ServerFrame::Response {
                id: frame.id,
                result: Err(error),
            }]
        }
    }
}

/// Serves one accepted connection until either side closes it or the server shuts down.
pub(crate) async fn run(
    socket: WebSocket,
    state: &ServerState,
    app: &AppEntry,
    user: UserId,
    mut expires_at: Option<u64>,
) {
    let (conn, mut inbox, dropped) = app
        .engine
        .connect(user.clone(), state.limits.outbound_queue);
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = state.shutdown.clone();
    let mut limit = RateLimit::new(state.limits.requests_per_second);
    let mut replay_allowance = ReplayAllowance(MAX_SUBSCRIPTIONS_PER_CONNECTION);
    let hello = ServerFrame::Hello {
        protocol: PROTOCOL_VERSION,
        expires_at,
    };
    let mut open = send(&mut sink, text(&hello)).await;
    tracing::debug!(%user, conn, "connection open");
    // Frames handed to the engine and not answered yet.
    let mut unanswered = 0_usize;
    // Once the server shuts down, no more frames are read, and the connection closes when the
    // engine has answered every frame it was handed, or at this deadline.
    let mut stopping: Option<Instant> = None;
    while open {
        if stopping.is_some() && unanswered == 0 {
            send(
                &mut sink,
                closing(close::GOING_AWAY, "server shutting down"),
            )
            .await;
            break;
        }
        let expiry = until(expires_at, auth::now().unwrap_or_default());
        let expired = async {
            match expiry {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let gave_up = async {
            match stopping {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = stream.next(), if stopping.is_none() => match message {
                Some(Ok(Message::Text(body))) => {
                    let replies = match serde_json::from_str::<ClientFrame>(body.as_str()) {
                        Err(error) => vec![error_frame(ErrorCode::InvalidRequest, format!("invalid frame: {error}"))],
                        Ok(frame) => {
                            let replies = intercept(&frame, app, &user, &mut expires_at);
                            let limited = |reason: String| {
                                let error = WireError { code: ErrorCode::RateLimited, reasons: vec![reason] };
                                vec![ServerFrame::Response { id: frame.id, result: Err(error) }]
                            };
                            let backlog = state.limits.engine_backlog;
                            if !replies.is_empty() {
                                replies
                            } else if !(replay_allowance.take(&frame) || limit.allow()) {
                                limited(format!("more than {} requests per second", state.limits.requests_per_second))
                            } else if frame.request.is_write() && app.engine.backlog() >= backlog {
                                limited(format!("the server is busy ({backlog} requests wait); retry later"))
                            } else {
                                app.engine.handle(conn, frame);
                                unanswered += 1;
                                Vec::new()
                            }
                        }
                    };
                    for reply in replies {
                        open = open && send(&mut sink, text(&reply)).await;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let reply = error_frame(ErrorCode::InvalidRequest, "binary frames are not supported; send JSON text");
                    open = send(&mut sink, text(&reply)).await;
                }
                Some(Ok(Message::Close(_))) | None => open = false,
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    let message = error.to_string();
                    let code = if message.contains("too long") || message.contains("Space limit") {
                        close::TOO_BIG
                    } else {
                        1002
                    };
                    tracing::debug!(%user, %message, code, "closing a connection after a read error");
                    send(&mut sink, closing(code, "message too large or malformed")).await;
                    open = false;
                }
            },
            frame = inbox.recv() => match frame {
                Some(frame) => open = send_queued(&mut sink, frame, &mut inbox, &mut unanswered).await,
                None => {
                    let (code, reason) = match dropped.get() {
                        Some(Dropped::SlowReader) => (close::POLICY, "outbound queue full; reconnect to resume"),
                        _ => (close::INTERNAL, "storage failure; reconnect to resume"),
                    };
                    tracing::info!(%user, code, reason, "the engine dropped a connection");
                    send(&mut sink, closing(code, reason)).await;
                    open = false;
                }
            },
            () = expired => {
                send(&mut sink, closing(close::TOKEN_EXPIRED, "token expired")).await;
                open = false;
            }
            _ = shutdown.changed(), if stopping.is_none() => {
                stopping = Some(Instant::now() + SEND_TIMEOUT);
            }
            () = gave_up => {
                tracing::warn!(%user, unanswered, "closing at shutdown before the engine answered");
                send(&mut sink, closing(close::GOING_AWAY, "server shutting down")).await;
                open = false;
            }
        }
    }
    app.engine.disconnect(conn);
    tracing::debug!(%user, conn, "connection closed");
}

#[cfg(test)]
mod tests {

    use super::*;

    /// A connection ends at `exp` + the leeway, however late in the leeway it connected and
    /// however often it is asked (the deadline does not move).
    #[test]
    fn tokens_expire_at_exp_plus_the_leeway() {
        let secs = Duration::from_secs;
        assert_eq!(until(None, 100), None);
        assert_eq!(until(Some(100), 40), Some(secs(70)));
        assert_eq!(until(Some(100), 95), Some(secs(15)));
        assert_eq!(until(Some(100), 108), Some(secs(2)));
        assert_eq!(until(Some(100), 110), Some(secs(0)));
        assert_eq!(until(Some(100), 500), Some(secs(0)));
        assert_eq!(until(Some(u64::MAX), 0), Some(secs(u64::MAX)));
    }
    use crate::{
        model::UserSnapshot,
        protocol::{Record, Update},
    };

    fn push(users: usize, name_bytes: usize) -> ServerFrame {
        let updates = (0..users)
            .map(|i| Update::Upsert {
                record: Record::User(UserSnapshot {
                    id: UserId::new(format!("u{i}")),
                    name: "n".repeat(name_bytes),
                    custom: Default::default(),
                    locale: None,
                    photo_url: None,
                    role: "default".into(),
                    welcome_message: None,
                })
                .into(),
            })
            .collect();
        ServerFrame::Push {
            seq: 7,
            epoch: 3,
            updates,
            more: false,
        }
    }

    fn parse(message: &Message) -> ServerFrame {
        serde_json::from_str(message.to_text().unwrap()).unwrap()
    }

    /// A small push is one frame, exactly as serialized; a large one is split into parts of
    /// at most the maximum, all but the last marked `more`, which together hold every update
    /// in order.
    #[test]
    fn large_pushes_are_split_into_bounded_parts() {
        let small = push(3, 10);
        let messages = texts(small.clone());
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].to_text().unwrap(), json(&small));

        let large = push(300, 3_000);
        assert!(json(&large).len() > 3 * MAX_PUSH_FRAME_BYTES);
        let messages = texts(large.clone());
        assert!(messages.len() >= 4, "{} parts", messages.len());
        let mut updates = Vec::new();
        for (at, message) in messages.iter().enumerate() {
            assert!(
                message.to_text().unwrap().len() <= MAX_PUSH_FRAME_BYTES,
                "part {at}: {}",
                message.to_text().unwrap().len()
            );
            let ServerFrame::Push {
                seq: 7,
                epoch: 3,
                updates: part,
                more,
            } = parse(message)
            else {
                panic!("part {at} is not the push");
            };
            assert_eq!(more, at + 1 < messages.len(), "part {at}");
            updates.extend(part);
        }
        let ServerFrame::Push { updates: all, .. } = large else {
            unreachable!()
        };
        assert_eq!(updates, all);

        // An update larger than the maximum travels alone.
        let huge = texts(push(3, MAX_PUSH_FRAME_BYTES));
        assert_eq!(huge.len(), 3);
    }
}
