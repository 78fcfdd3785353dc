//! How a session reaches an engine. Both transports carry the same protocol frames.

#[cfg(feature = "websocket")]
mod websocket;

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

#[cfg(feature = "websocket")]
pub(crate) use self::websocket::Websocket;

use crate::{
    engine::{ConnId, Engine},
    model::UserId,
    protocol::{ClientFrame, ServerFrame, WireError},
};

/// What a session needs from its transport's task; both transports deliver through it. The
/// in-process one needs no token and never idles, so it uses only `replay`, `receive` and
/// `fail`.
#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
pub(crate) trait Peer: Send + Sync + 'static {
    /// Frames to send on a fresh connection: live subscriptions, then unanswered requests.
    fn replay(&self) -> Vec<ClientFrame>;
    /// A frame from the server.
    fn receive(self: &Arc<Self>, frame: ServerFrame);
    /// Whether the session has live subscriptions or requests in flight.
    fn busy(&self) -> bool;
    /// The token to connect with.
    fn token(&self) -> Option<String>;
    /// The token is about to expire, or was refused: ask the app for a new one. Returns
    /// whether an `on_need_token` callback exists.
    fn need_token(&self) -> bool;
    /// The connection cannot recover (refused credentials, expired token): end the session.
    fn fail(&self, error: WireError);
}

/// How many frames an embedded session's pump may fall behind before the engine drops it. The
/// pump applies frames as fast as they come, so only a stalled runtime gets there.
const EMBEDDED_QUEUE: usize = 1 << 16;

/// The in-process transport: frames go straight to an [`Engine`], and one task per session
/// delivers the engine's frames to its [`Peer`], as the websocket transport's task does.
///
/// In debug builds every frame makes a round trip through JSON, so that every test of the
/// embedded engine also checks that the wire format carries it faithfully.
pub(crate) struct Embedded(Arc<Link>);

struct Link {
    engine: Engine,
    user: UserId,
    /// The live connection, `None` once the transport is dropped: replaced when the engine
    /// drops it (see [`deliver`]).
    conn: Mutex<Option<ConnId>>,
}

impl Embedded {
    /// Connects to `engine` as `user` and starts the task that delivers to `peer`.
    pub(crate) fn start<P: Peer>(
        runtime: &tokio::runtime::Handle,
        engine: Engine,
        user: UserId,
        peer: Weak<P>,
    ) -> Self {
        let (conn, inbox, _) = engine.connect(user.clone(), EMBEDDED_QUEUE);
        let link = Arc::new(Link {
            engine,
            user,
            conn: Mutex::new(Some(conn)),
        });
        runtime.spawn(deliver(Arc::downgrade(&link), peer, inbox));
        Embedded(link)
    }

    /// Runs `frame` (which records what waits for the answer) and sends what it returns, both
    /// under the connection's lock: a call is either sent on the live connection or replayed
    /// by a new one, never both.
    pub(crate) fn send(&self, frame: impl FnOnce() -> Option<ClientFrame>) {
        let conn = self.0.conn();
        if let (Some(conn), Some(frame)) = (*conn, frame()) {
            self.0.engine.handle(conn, wire_round_trip(frame));
        }
    }
}

impl Link {
    fn conn(&self) -> std::sync::MutexGuard<'_, Option<ConnId>> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(conn) = self.0.conn().take() {
            self.0.engine.disconnect(conn);
        }
    }
}

/// Delivers the engine's frames to `peer` in order, each as one batch. When the engine drops
/// the connection (a batch of writes failed in storage, or the session fell a whole queue
/// behind), opens a new one and sends it what `peer` replays before anything else, as the
/// websocket transport does after a disconnect. Ends with the transport or the peer.
async fn deliver<P: Peer>(link: Weak<Link>, peer: Weak<P>, mut inbox: mpsc::Receiver<ServerFrame>) {
    loop {
        while let Some(frame) = inbox.recv().await {
            let Some(peer) = peer.upgrade() else {
                return;
            };
            // Frames from a websocket were JSON already; in process, check they could have been.
            // A frame that does not survive the wire is a bug: end the session with it rather
            // than end delivery silently (every later call would wait forever).
            match std::panic::catch_unwind(|| wire_round_trip(frame)) {
                Ok(frame) => peer.receive(frame),
                Err(_) => {
                    peer.fail(WireError {
                        code: crate::ErrorCode::Internal,
                        reasons: vec![
                            "a frame did not survive the wire (a bug in talkstore)".into(),
                        ],
                    });
                    return;
                }
            }
        }
        let (Some(link), Some(peer)) = (link.upgrade(), peer.upgrade()) else {
            return;
        };
        let mut conn = link.conn();
        if conn.is_none() {
            return;
        }
        tracing::warn!(user = %link.user, "the engine dropped the session's connection; resuming");
        let (new, fresh, _) = link.engine.connect(link.user.clone(), EMBEDDED_QUEUE);
        *conn = Some(new);
        for frame in peer.replay() {
            link.engine.handle(new, wire_round_trip(frame));
        }
        inbox = fresh;
    }
}

/// A jittered delay around `base`: between half and one and a half times it.
pub(crate) fn jitter(base: std::time::Duration) -> std::time::Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

/// In debug builds, serializes and parses a frame as the websocket transport would.
pub(crate) fn wire_round_trip<T>(frame: T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if cfg!(debug_assertions) {
        let json = serde_json::to_string(&frame);
        let parsed = json
            .as_ref()
            .ok()
            .map(|json| serde_json::from_str::<T>(json));
        match parsed {
            Some(Ok(parsed)) if parsed == frame => parsed,
            other => panic!("frame does not survive the wire: {frame:?} became {other:?}"),
        }
    } else {
        frame
    }
}
