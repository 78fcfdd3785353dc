//! The authoritative engine: commands in, events out.
//!
//! One [`Engine`] holds the data of one app. Sessions reach it through a transport (in process
//! for the embedded engine, a websocket for `talkstore-server`); either way each session is a
//! *connection* that sends [`ClientFrame`]s and receives [`ServerFrame`]s. Every command runs
//! under one lock and is validated completely before it writes; its writes and events are kept
//! or discarded together, and every connection's feed turns the events into one push.
//!
//! Nobody waits for the lock: a command is queued, and whichever thread holds the engine runs
//! every queued command before it lets go (flat combining). Commands that queued meanwhile share
//! one commit (group commit), and nothing is sent before it. A server runs each engine on a
//! thread of its own instead (`Engine::run_on_own_thread`), so that its async workers only do
//! I/O.

mod activity;
#[cfg(feature = "server")]
pub(crate) mod backend;
mod commands;
mod feed;
mod interest;
mod memory;
mod policy;
mod queue;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod state;
mod storage;
mod unread;
mod view;

use std::{
    sync::{Arc, Mutex, OnceLock, mpsc::SyncSender},
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc;

#[cfg(feature = "sqlite")]
pub use self::sqlite::Durability;
#[cfg(feature = "server")]
pub(crate) use self::state::Dropped;
pub(crate) use self::state::{DropReason, State};
pub(crate) use self::storage::{Event, Storage};
use self::{
    feed::Feed,
    memory::MemoryStorage,
    queue::{Command, Shared},
    state::{Clock, Connection},
};
pub use self::{policy::Policy, storage::StorageError};
use crate::{
    model::{ConversationId, Timestamp, UserId},
    params::plain_text,
    protocol::{ClientFrame, ErrorCode, Request, ServerFrame, WireError},
};

/// An engine command was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The command broke a rule; nothing was written.
    #[error("{code}: {reason}")]
    Rejected {
        /// The machine-readable code.
        code: ErrorCode,
        /// Why, for humans.
        reason: String,
    },
    /// Storage failed; nothing was written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl EngineError {
    pub(crate) fn rejected(code: ErrorCode, reason: impl Into<String>) -> Self {
        EngineError::Rejected {
            code,
            reason: reason.into(),
        }
    }

    pub(crate) fn into_wire(self) -> WireError {
        match self {
            EngineError::Rejected { code, reason } => WireError {
                code,
                reasons: vec![reason],
            },
            EngineError::Storage(error) => WireError {
                code: ErrorCode::Internal,
                reasons: vec![error.to_string()],
            },
        }
    }
}

pub(crate) type EngineResult<T> = Result<T, EngineError>;

/// Identifies one connection to the engine.
pub(crate) type ConnId = u64;

/// The maximum number of live subscriptions per connection. Subscribing past it fails with
/// [`ErrorCode::LimitExceeded`].
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 1_000;

/// The maximum size of a message's plaintext, in bytes. Larger sends and edits fail with
/// [`ErrorCode::LimitExceeded`]. The markup of one message makes at most 1,000 formatting,
/// link, code, mention and bullet nodes; the text after them stays plain text, so a message's
/// stored size stays within a small multiple of its text.
pub const MAX_MESSAGE_TEXT_BYTES: usize = 64 * 1024;

fn system_clock() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An in-process chat engine: the embedded backend of `talkstore`.
///
/// Cloning gives another handle to the same engine. Data lives in memory and is lost when the
/// last handle (and every session using it) is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), talkstore::Error> {
/// use talkstore::{Engine, SessionOptions, UserParams, get_talk_session};
///
/// let engine = Engine::new();
/// let session = get_talk_session(
///     SessionOptions::new("my-app", "alice").engine(engine.clone()),
/// )?;
/// session.current_user().set(UserParams::new().name("Alice")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    /// Wakes the engine's own thread, once `Engine::run_on_own_thread` started it. Kept
    /// outside `Shared`, which that thread holds, so that dropping the last handle ends it.
    runner: Arc<OnceLock<SyncSender<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// Creates an empty in-memory engine using the system clock.
    pub fn new() -> Self {
        Self::with_clock(system_clock)
    }

    /// Creates an empty in-memory engine reading time from `clock` (milliseconds since the
    /// Unix epoch). Timestamps the engine assigns are still strictly increasing.
    pub fn with_clock(clock: impl Fn() -> Timestamp + Send + 'static) -> Self {
        Self::with_storage(
            Box::new(MemoryStorage::new(storage::new_epoch())),
            Box::new(clock),
        )
    }

    /// Opens a persistent engine on the SQLite database at `path` (created if missing), with
    /// [`Durability::Normal`]: safe against process crashes. Requires the `sqlite` feature.
    ///
    /// # Errors
    ///
    /// [`EngineError::Storage`] if the file cannot be opened or migrated.
    #[cfg(feature = "sqlite")]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, EngineError> {
        Self::open_with(path, Durability::Normal)
    }

    /// Like [`Engine::open`], with a chosen durability.
    ///
    /// # Errors
    ///
    /// [`EngineError::Storage`] if the file cannot be opened or migrated.
    #[cfg(feature = "sqlite")]
    pub fn open_with(
        path: impl AsRef<std::path::Path>,
        durability: Durability,
    ) -> Result<Self, EngineError> {
        let storage = sqlite::SqliteStorage::open(path.as_ref(), durability)?;
        Ok(Self::with_storage(
            Box::new(storage),
            Box::new(system_clock),
        ))
    }

    fn with_storage(storage: Box<dyn Storage>, clock: Clock) -> Self {
        let state = State::new(storage, clock);
        Engine {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                queue: Mutex::default(),
            }),
            runner: Arc::default(),
        }
    }

    /// Sets what users' own sessions may change ([`Policy`]), for this engine and every clone
    /// of it, from the next request on. The default is [`Policy::Permissive`]; the backend
    /// calls of the server's REST API are never restricted.
    pub fn with_policy(self, policy: Policy) -> Self {
        self.with_state(|state| state.policy = policy);
        self
    }

    /// The policy set with [`Engine::with_policy`].
    pub fn policy(&self) -> Policy {
        self.with_state(|state| state.policy)
    }

    /// From now on, runs queued commands on a thread of the engine's own instead of on the
    /// threads that queue them: [`Engine::handle`] then returns at once, and an async runtime's
    /// workers only do I/O while the engine works. The thread ends when the last handle to
    /// the engine is dropped. Calling it again does nothing.
    ///
    /// # Errors
    ///
    /// If the thread cannot be started.
    #[cfg(feature = "server")]
    pub(crate) fn run_on_own_thread(&self) -> std::io::Result<()> {
        let (nudge, nudges) = std::sync::mpsc::sync_channel(1);
        if self.runner.set(nudge).is_err() {
            return Ok(());
        }
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("talkstore-engine".into())
            .spawn(move || {
                while nudges.recv().is_ok() {
                    shared.drain();
                }
            })?;
        Ok(())
    }

    /// Runs `f` with the engine held, then the commands queued meanwhile.
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock cannot leave half a command behind (writes roll back
        // or commit as a whole), so a poisoned lock is still consistent.
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = f(&mut state);
        drop(state);
        self.shared.drain();
        result
    }

    /// Returns once every command queued so far has run and been committed. Blocks.
    #[cfg(feature = "server")]
    pub(crate) fn settle(&self) {
        // Whoever holds the engine drains the queue before letting go, so each round either
        // empties it or waits for the holder's batch.
        while !self.shared.queue().is_empty() {
            self.with_state(|_| ());
        }
        self.with_state(|_| ());
    }

    /// Queues a command and runs the queue, unless another thread holds the engine (it runs
    /// the command before it lets go) or the engine runs on its own thread (which is woken).
    fn submit(&self, command: Command) {
        self.shared.queue().push_back(command);
        match self.runner.get() {
            // Full means the thread was woken already and has not started draining.
            Some(nudge) => drop(nudge.try_send(())),
            None => self.shared.drain(),
        }
    }

    /// Opens a connection acting as `user`; frames for it arrive on the returned receiver,
    /// which holds at most `queue` frames: a connection that falls further behind is dropped
    /// (its receiver ends).
    pub(crate) fn connect(
        &self,
        user: UserId,
        queue: usize,
    ) -> (ConnId, mpsc::Receiver<ServerFrame>, DropReason) {
        let (outbox, inbox) = mpsc::channel(queue.max(1));
        let dropped = DropReason::default();
        let id = self.with_state(|state| {
            let id = state.next_conn;
            state.next_conn += 1;
            state.connections.insert(
                id,
                Connection {
                    feed: Feed::new(user),
                    outbox,
                    dropped: dropped.clone(),
                },
            );
            id
        });
        (id, inbox, dropped)
    }

    /// Frames and disconnects queued for the engine and not yet run.
    #[cfg(feature = "server")]
    pub(crate) fn backlog(&self) -> usize {
        self.shared.queue().len()
    }

    /// Closes a connection and drops its subscriptions, after the frames it sent before.
    pub(crate) fn disconnect(&self, conn: ConnId) {
        self.submit(Command::Disconnect(conn));
    }

    /// Handles one frame from a connection, in order with its other frames. Its pushes are
    /// queued before its response, and both are sent once its writes are committed. Never
    /// waits for another thread: if one holds the engine, it runs this frame too, in the same
    /// commit as its own (group commit); if the engine runs on its own thread, that thread
    /// does.
    pub(crate) fn handle(&self, conn: ConnId, frame: ClientFrame) {
        self.submit(Command::Frame(conn, Box::new(frame)));
    }

    /// Runs an app backend's write (the REST API, system messages): committed, published and
    /// flushed before it returns.
    pub(crate) fn backend_write<T>(
        &self,
        command: impl FnOnce(&mut State) -> EngineResult<(T, Vec<Event>)>,
    ) -> EngineResult<T> {
        self.with_state(|state| {
            let result = state.write(command).map(|(value, events)| {
                state.pending.extend(events);
                value
            });
            state.flush();
            result
        })
    }

    /// Runs an app backend's read (the REST API).
    #[cfg(feature = "server")]
    pub(crate) fn backend_read<T>(
        &self,
        read: impl FnOnce(&State) -> EngineResult<T>,
    ) -> EngineResult<T> {
        self.with_state(|state| read(state))
    }

    /// Posts a system message (no sender, origin `rest`) to a conversation, as an app's backend
    /// would. Returns the new message's id.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::NotFound`] if the conversation does not exist, [`ErrorCode::InvalidRequest`]
    /// if `text` is empty.
    pub fn post_system_message(
        &self,
        conversation: &ConversationId,
        text: &str,
    ) -> Result<crate::model::MessageId, EngineError> {
        self.backend_write(|state| {
            commands::post_system_message(state, conversation, plain_text(text))
        })
    }
}

impl Request {
    /// Whether the request writes (its events are pushed with the batch's other writes).
    /// Exhaustive: a new request must say.
    pub(crate) fn is_write(&self) -> bool {
        match self {
            Request::SetUser { .. }
            | Request::SetConversation { .. }
            | Request::MarkRead { .. }
            | Request::MarkUnread { .. }
            | Request::Send { .. }
            | Request::SetParticipant { .. }
            | Request::DeleteParticipant { .. }
            | Request::EditMessage { .. }
            | Request::DeleteMessage { .. }
            | Request::React { .. } => true,
            Request::GetUser { .. }
            | Request::GetConversation { .. }
            | Request::GetParticipant { .. }
            | Request::GetMessage { .. }
            | Request::GetReactions { .. }
            | Request::Subscribe { .. }
            | Request::LoadMore { .. }
            | Request::Unsubscribe { .. }
            | Request::Authenticate { .. }
            | Request::Sync => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::state::Dropped;
    use super::*;
    use crate::protocol::{Response, Update};
    use crate::{
        model::ConversationId,
        params::UserParams,
        protocol::{EntityKey, Target},
    };

    fn frame(id: u64, request: Request) -> ClientFrame {
        ClientFrame { id, request }
    }

    /// User `u` in conversation `c` with `messages` messages, on a connection with room for
    /// 20,000 frames.
    pub(super) fn chat(engine: &Engine, messages: u64) -> (ConnId, mpsc::Receiver<ServerFrame>) {
        let (conn, rx, _) = engine.connect(UserId::new("u"), 20_000);
        let user = Request::SetUser {
            user: UserId::new("u"),
            params: UserParams::new().name("U"),
            create_only: false,
        };
        engine.handle(conn, frame(1, user));
        let conversation = Request::SetConversation {
            conversation: ConversationId::new("c"),
            params: Default::default(),
            create_only: false,
        };
        engine.handle(conn, frame(2, conversation));
        for id in 3..3 + messages {
            send(engine, conn, id, "hello");
        }
        (conn, rx)
    }

    fn send(engine: &Engine, conn: ConnId, id: u64, text: &str) {
        send_keyed(engine, conn, id, text, &format!("k{id}"));
    }

    fn send_keyed(engine: &Engine, conn: ConnId, id: u64, text: &str, key: &str) {
        let message = crate::params::WireSend {
            content: plain_text(text),
            custom: Default::default(),
            referenced_message: None,
            idempotency_key: key.to_owned(),
        };
        let conversation = ConversationId::new("c");
        engine.handle(
            conn,
            frame(
                id,
                Request::Send {
                    conversation,
                    message,
                },
            ),
        );
    }

    /// Subscribes to the messages of `c` on a new connection of `u`; returns the keys of the
    /// records it was sent, what it held afterwards (every key sent), and the log position.
    fn subscribe(
        engine: &Engine,
        restore: Option<crate::protocol::Restore>,
    ) -> (Vec<EntityKey>, crate::protocol::Position) {
        let target = Target::Messages {
            conversation: ConversationId::new("c"),
            filter: None,
        };
        subscribe_to(engine, target, restore)
    }

    /// Like [`subscribe`], to `target`.
    fn subscribe_to(
        engine: &Engine,
        target: Target,
        restore: Option<crate::protocol::Restore>,
    ) -> (Vec<EntityKey>, crate::protocol::Position) {
        let (conn, mut rx, _) = engine.connect(UserId::new("u"), 100);
        engine.handle(
            conn,
            frame(
                100,
                Request::Subscribe {
                    sub: 1,
                    target,
                    restore,
                },
            ),
        );
        let (mut sent, mut position) = (Vec::new(), None);
        while let Ok(frame) = rx.try_recv() {
            if let ServerFrame::Push {
                updates,
                epoch,
                seq,
                ..
            } = frame
            {
                position = Some(crate::protocol::Position { epoch, seq });
                for update in updates {
                    match update {
                        Update::Upsert { record } => sent.push(record.key()),
                        Update::Remove { key } => sent.push(key),
                        Update::Window { .. } | Update::Rows { .. } | Update::Failed { .. } => {}
                    }
                }
            }
        }
        engine.disconnect(conn);
        (sent, position.expect("a push"))
    }

    /// The answers among the frames queued for a connection: (request id, ok?).
    fn answers(rx: &mut mpsc::Receiver<ServerFrame>) -> Vec<(u64, bool)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|frame| match frame {
                ServerFrame::Response { id, result } => Some((id, result.is_ok())),
                _ => None,
            })
            .collect()
    }

    /// A send repeated with its idempotency key answers with the first send's message and
    /// stores nothing; another key makes another message. On both storages.
    #[test]
    fn sends_are_idempotent() {
        #[cfg(feature = "sqlite")]
        let dir = tempfile::tempdir().unwrap();
        let engines = [
            Engine::new(),
            #[cfg(feature = "sqlite")]
            Engine::open(dir.path().join("engine.sqlite")).unwrap(),
        ];
        for engine in engines {
            let (conn, mut rx) = chat(&engine, 0);
            answers(&mut rx);
            send_keyed(&engine, conn, 10, "first", "x");
            send_keyed(&engine, conn, 11, "again", "x");
            send_keyed(&engine, conn, 12, "other", "y");
            let sent: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
                .filter_map(|frame| match frame {
                    ServerFrame::Response {
                        result: Ok(Response::Sent { message }),
                        ..
                    } => Some(message.to_string()),
                    _ => None,
                })
                .collect();
            assert_eq!(sent, ["msg_1", "msg_1", "msg_2"]);
            let stored = engine.with_state(|s| {
                let c = ConversationId::new("c");
                s.storage().messages_before(&c, None, 10).unwrap().len()
            });
            assert_eq!(stored, 2);
        }
    }

    /// The engine's clock runs ahead of a wall clock that does not move (more than one write
    /// per millisecond) and does not fall back when the database is reopened: a message sent
    /// after a restart is still the newest.
    #[cfg(feature = "sqlite")]
    #[test]
    fn time_keeps_increasing_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sqlite");
        let open = || {
            let storage = sqlite::SqliteStorage::open(&path, Durability::Normal).unwrap();
            Engine::with_storage(Box::new(storage), Box::new(|| 1_000))
        };
        drop(chat(&open(), 20));
        let engine = open();
        let (conn, _rx) = chat(&engine, 0);
        send(&engine, conn, 100, "after the restart");
        let newest = engine.with_state(|s| {
            let c = ConversationId::new("c");
            s.storage().messages_before(&c, None, 1).unwrap()
        });
        assert_eq!(newest[0].0.plaintext, "after the restart");
    }

    /// A command that fails in storage is undone alone when it is the first of its batch to
    /// write; after another command's writes, the batch is lost as a whole: every request is
    /// answered with an error and every connection closed, and none of its writes is kept.
    #[cfg(feature = "sqlite")]
    #[test]
    fn a_storage_failure_fails_its_batch_when_it_cannot_be_undone_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sqlite");
        let engine = Engine::open(&path).unwrap();
        let (conn, mut rx) = chat(&engine, 0);
        answers(&mut rx);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.data LIKE '%boom%'
                 BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
            )
            .unwrap();
        // The messages kept, and whether the conversation's last message is the newest of them
        // (SQLite storage caches conversations: a rollback must not leave a stale one).
        let kept = || {
            engine.with_state(|s| {
                let c = ConversationId::new("c");
                let page = s.storage().messages_before(&c, None, 10).unwrap();
                let last = s
                    .storage()
                    .conversation(&c)
                    .unwrap()
                    .unwrap()
                    .record
                    .last_message_id;
                assert_eq!(last.as_ref(), page.first().map(|(m, _)| &m.id));
                page.len()
            })
        };
        send(&engine, conn, 10, "boom");
        send(&engine, conn, 11, "fine");
        assert_eq!(answers(&mut rx), [(10, false), (11, true)]);
        assert_eq!(kept(), 1);
        engine.with_state(|_| {
            send(&engine, conn, 12, "fine");
            send(&engine, conn, 13, "boom");
        });
        assert_eq!(answers(&mut rx), [(12, false), (13, false)]);
        assert!(rx.is_closed(), "the connection is closed");
        assert_eq!(kept(), 1, "the batch's first send is gone too");
    }

    /// A new message is its conversation's new last message: a conversation subscription that
    /// resumes after one gets the conversation again (and the message), not only the message.
    #[test]
    fn resume_resends_a_conversation_whose_last_message_changed() {
        let engine = Engine::new();
        let (conn, _rx) = chat(&engine, 1);
        let c = ConversationId::new("c");
        let target = Target::Conversation { id: c.clone() };
        let (held, since) = subscribe_to(&engine, target.clone(), None);
        assert!(held.contains(&EntityKey::conversation(&c)), "{held:?}");
        send(&engine, conn, 10, "new");
        let restore = crate::protocol::Restore {
            len: 1,
            oldest: None,
            since: Some(since),
            held,
            exact: false,
        };
        let (resumed, _) = subscribe_to(&engine, target, Some(restore));
        assert!(
            resumed.contains(&EntityKey::conversation(&c)),
            "{resumed:?}"
        );
    }

    /// A client that resumes gets only the records changed since its position; with another
    /// epoch, or a position the log no longer reaches, it gets everything again.
    #[test]
    fn resume_sends_only_what_changed() {
        let engine = Engine::new();
        let (conn, _rx) = chat(&engine, 10);
        let (held, since) = subscribe(&engine, None);
        // Ten messages and their sender.
        assert_eq!(held.len(), 11, "{held:?}");
        send(&engine, conn, 13, "new");
        let restore = |since: crate::protocol::Position| crate::protocol::Restore {
            len: 10,
            oldest: None,
            since: Some(since),
            held: held.clone(),
            exact: false,
        };
        let (resumed, _) = subscribe(&engine, Some(restore(since)));
        let new = EntityKey::message(&crate::model::MessageId::new("msg_11"));
        assert_eq!(resumed, vec![new]);
        let me = EntityKey::user(&UserId::new("u"));
        // Another epoch: everything again.
        let other = crate::protocol::Position {
            epoch: since.epoch + 1,
            ..since
        };
        // (A restore takes at least a first page: all eleven messages, and their sender.)
        let (resynced, _) = subscribe(&engine, Some(restore(other)));
        assert!(
            resynced.len() == 12 && resynced.contains(&me),
            "{resynced:?}"
        );
        // A log that no longer reaches back: everything again.
        for id in 0..feed::MAX_RESUME_EVENTS {
            let user = Request::SetUser {
                user: UserId::new("v"),
                params: UserParams::new().name(format!("V{id}")),
                create_only: false,
            };
            engine.handle(conn, frame(1_000 + id, user));
        }
        let (resynced, _) = subscribe(&engine, Some(restore(since)));
        assert!(
            resynced.len() == 12 && resynced.contains(&me),
            "{resynced:?}"
        );
    }

    /// A connection that does not drain its bounded queue is dropped when it overflows; the
    /// others carry on.
    #[test]
    fn slow_connections_are_dropped() {
        let engine = Engine::new();
        let u = UserId::new("u");
        let (slow, mut slow_rx, slow_dropped) = engine.connect(u.clone(), 2);
        let (fast, mut fast_rx, fast_dropped) = engine.connect(u.clone(), 100);
        let target = Target::User { id: u.clone() };
        // A window push and the response fill the slow queue.
        engine.handle(
            slow,
            frame(
                1,
                Request::Subscribe {
                    sub: 1,
                    target,
                    restore: None,
                },
            ),
        );
        let mut params = UserParams::new().name("U");
        for id in 1..=3 {
            let request = Request::SetUser {
                user: u.clone(),
                params: params.clone(),
                create_only: false,
            };
            engine.handle(fast, frame(id, request));
            params = UserParams::new().name(format!("U{id}"));
        }
        let mut slow_frames = 0;
        while slow_rx.try_recv().is_ok() {
            slow_frames += 1;
        }
        assert_eq!(slow_frames, 2);
        assert!(matches!(
            slow_rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(slow_dropped.get(), Some(&Dropped::SlowReader));
        assert_eq!(fast_dropped.get(), None);
        let mut fast_responses = 0;
        while let Ok(frame) = fast_rx.try_recv() {
            fast_responses += usize::from(matches!(frame, ServerFrame::Response { .. }));
        }
        assert_eq!(fast_responses, 3);
    }

    /// With many viewers' conversation lists open, a new conversation reaches the lists of its
    /// participants (found by listing them) and no other connection.
    #[test]
    fn conversations_reach_the_lists_of_their_participants_only() {
        let engine = Engine::new();
        let list = |user: &str| {
            let (c, mut r, _) = engine.connect(UserId::new(user), 100);
            let target = Target::Conversations { filter: None };
            let subscribe = Request::Subscribe {
                sub: 1,
                target,
                restore: None,
            };
            engine.handle(c, frame(1, subscribe));
            while r.try_recv().is_ok() {}
            r
        };
        let mut others: Vec<_> = (0..2 * interest::FEW_VIEWERS)
            .map(|i| list(&format!("other{i}")))
            .collect();
        let mut mine = list("u");
        // User "u" creates conversation "c", taking part in it.
        chat(&engine, 1);
        let c = EntityKey::conversation(&ConversationId::new("c"));
        let shows_c = |update: &Update| {
            match update {
            Update::Window { items, .. } => items.iter().flatten().any(|key| *key == c),
            Update::Rows { changes, .. } => changes.iter().any(
                |change| matches!(change, crate::protocol::RowChange::Insert { key, .. } if *key == c),
            ),
            _ => false,
        }
        };
        let shown = std::iter::from_fn(|| mine.try_recv().ok()).any(|frame| {
            matches!(frame, ServerFrame::Push { updates, .. } if updates.iter().any(shows_c))
        });
        assert!(shown, "the participant's list shows the new conversation");
        assert!(others.iter_mut().all(|r| r.try_recv().is_err()));
    }
}
