//! How a session reaches an engine. Both transports carry the same protocol frames.

#[cfg(feature = "websocket")]
mod websocket;

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
    conn: ConnId,
}

impl Embedded {
    /// Connects to `engine` as `user`; server frames arrive on the receiver.
    pub(crate) fn connect(engine: Engine, user: UserId) -> (Self, mpsc::Receiver<ServerFrame>) {
        let (conn, inbox) = engine.connect(user, EMBEDDED_QUEUE);
        (Embedded { engine, conn }, inbox)
    }

    pub(crate) fn send(&self, frame: ClientFrame) {
        self.engine.handle(self.conn, wire_round_trip(frame));
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.engine.disconnect(self.conn);
    }
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
