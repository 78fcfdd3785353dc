//! How a session reaches an engine. Both transports carry the same protocol frames.

#[cfg(feature = "websocket")]
mod websocket;

use std::sync::Mutex;

use tokio::sync::mpsc;

#[cfg(feature = "websocket")]
pub(crate) use self::websocket::{Peer, Websocket};

use crate::{
    engine::{ConnId, Engine},
    model::UserId,
    protocol::{ClientFrame, ServerFrame},
};

/// How many frames an embedded session's pump may fall behind before the engine drops it. The
/// pump applies frames as fast as they come, so only a stalled runtime gets there.
const EMBEDDED_QUEUE: usize = 1 << 16;

/// The in-process transport: frames go straight to an [`Engine`].
///
/// In debug builds every frame makes a round trip through JSON, so that every test of the
/// embedded engine also checks that the wire format carries it faithfully.
pub(crate) struct Embedded {
    engine: Engine,
    user: UserId,
    /// The live connection: replaced when the engine drops it (see [`Embedded::reconnect`]).
    conn: Mutex<ConnId>,
}

impl Embedded {
    /// Connects to `engine` as `user`; server frames arrive on the receiver, which ends if the
    /// engine drops the connection.
    pub(crate) fn connect(engine: Engine, user: UserId) -> (Self, mpsc::Receiver<ServerFrame>) {
        let (conn, inbox, _) = engine.connect(user.clone(), EMBEDDED_QUEUE);
        let link = Embedded {
            engine,
            user,
            conn: Mutex::new(conn),
        };
        (link, inbox)
    }

    /// Runs `frame` (which records what waits for the answer) and sends what it returns, both
    /// under the connection's lock: a call is either sent on the live connection or replayed
    /// by a new one, never both.
    pub(crate) fn send(&self, frame: impl FnOnce() -> Option<ClientFrame>) {
        let conn = self.conn();
        if let Some(frame) = frame() {
            self.engine.handle(*conn, wire_round_trip(frame));
        }
    }

    /// Opens a new connection once the engine dropped the live one (a batch of writes failed
    /// in storage, or the session fell a whole queue behind), and sends it the frames `replay`
    /// returns (subscriptions to resume, unanswered requests) before anything else.
    pub(crate) fn reconnect(
        &self,
        replay: impl FnOnce() -> Vec<ClientFrame>,
    ) -> mpsc::Receiver<ServerFrame> {
        let mut conn = self.conn();
        let (new, inbox, _) = self.engine.connect(self.user.clone(), EMBEDDED_QUEUE);
        *conn = new;
        for frame in replay() {
            self.engine.handle(new, wire_round_trip(frame));
        }
        inbox
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, ConnId> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.engine.disconnect(*self.conn());
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
