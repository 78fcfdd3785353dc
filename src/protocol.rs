//! The wire protocol: the one contract between a session and an engine.
//!
//! Both transports carry these frames: the embedded transport passes them in process (and, in
//! debug builds, through JSON to keep the format honest), the websocket transport as JSON text.
//! The server sends normalized entity records and window memberships, never denormalized
//! snapshots; the client store assembles snapshots (DESIGN.md, decision 1).

pub(crate) mod shape;

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{
    ConversationFilter, ConversationId, ConversationRecord, MessageFilter, MessageId,
    MessageRecord, ParticipantRecord, ReactedRecord, ReactionRecord, ReadStateRecord, Timestamp,
    UserId, UserSnapshot,
};
use crate::params::{ConversationParams, EditParams, ParticipantParams, UserParams, WireSend};

/// The largest frame the server sends, in bytes: a larger push is split into parts (see
/// [`ServerFrame::Push`]). A single update larger than this (a record of an exceptionally
/// large message) travels alone in a larger part.
#[cfg(feature = "server")]
pub(crate) const MAX_PUSH_FRAME_BYTES: usize = 256 * 1024;

/// The protocol version, sent in [`ServerFrame::Hello`]; bumped on incompatible changes.
#[cfg(feature = "server")]
pub(crate) const PROTOCOL_VERSION: u32 = 2;

/// Identifies a subscription within one connection; chosen by the client.
pub(crate) type SubId = u64;

/// The key of one normalized entity in the viewer's cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub(crate) enum EntityKey {
    User {
        id: UserId,
    },
    Conversation {
        id: ConversationId,
    },
    /// One user's membership of one conversation.
    Participant {
        conversation: ConversationId,
        user: UserId,
    },
    /// The viewer's own read state in a conversation.
    ReadState {
        conversation: ConversationId,
    },
    Message {
        id: MessageId,
    },
    /// The viewer's own reactions to a message.
    Reacted {
        message: MessageId,
    },
    /// One user's reaction to a message with one emoji.
    Reaction {
        message: MessageId,
        emoji: String,
        user: UserId,
    },
}

impl EntityKey {
    pub(crate) fn user(id: &UserId) -> Self {
        EntityKey::User { id: id.clone() }
    }
    pub(crate) fn conversation(id: &ConversationId) -> Self {
        EntityKey::Conversation { id: id.clone() }
    }
    pub(crate) fn participant(conversation: &ConversationId, user: &UserId) -> Self {
        EntityKey::Participant {
            conversation: conversation.clone(),
            user: user.clone(),
        }
    }
    pub(crate) fn read_state(conversation: &ConversationId) -> Self {
        EntityKey::ReadState {
            conversation: conversation.clone(),
        }
    }
    pub(crate) fn message(id: &MessageId) -> Self {
        EntityKey::Message { id: id.clone() }
    }
    pub(crate) fn reacted(message: &MessageId) -> Self {
        EntityKey::Reacted {
            message: message.clone(),
        }
    }
    pub(crate) fn reaction(message: &MessageId, emoji: &str, user: &UserId) -> Self {
        EntityKey::Reaction {
            message: message.clone(),
            emoji: emoji.to_owned(),
            user: user.clone(),
        }
    }
    /// Whether the record behind the key depends on who views it (the same key names each
    /// viewer's own record).
    pub(crate) fn per_viewer(&self) -> bool {
        matches!(
            self,
            EntityKey::ReadState { .. } | EntityKey::Reacted { .. }
        )
    }
}

/// One normalized entity record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record", rename_all = "camelCase")]
pub(crate) enum Record {
    User(UserSnapshot),
    Conversation(ConversationRecord),
    Participant(ParticipantRecord),
    ReadState(ReadStateRecord),
    Message(MessageRecord),
    Reacted(ReactedRecord),
    Reaction(ReactionRecord),
}

impl Record {
    pub(crate) fn key(&self) -> EntityKey {
        match self {
            Record::User(u) => EntityKey::user(&u.id),
            Record::Conversation(c) => EntityKey::conversation(&c.id),
            Record::Participant(p) => EntityKey::participant(&p.conversation_id, &p.user_id),
            Record::ReadState(r) => EntityKey::read_state(&r.conversation_id),
            Record::Message(m) => EntityKey::message(&m.id),
            Record::Reacted(r) => EntityKey::reacted(&r.message_id),
            Record::Reaction(r) => EntityKey::reaction(&r.message_id, &r.emoji, &r.user_id),
        }
    }
}

/// A record as pushes carry it: one record often goes to many connections, so it is shared,
/// and encoded to JSON at most once however many connections send it. The encoding is kept
/// as long as the record (about the record's size again).
///
/// Serializing it outside JSON is not supported (it writes the JSON as a raw value, which
/// only `serde_json` understands); the protocol is JSON only.
#[derive(Clone)]
pub(crate) struct SharedRecord(Arc<Encoded>);

struct Encoded {
    record: Record,
    json: OnceLock<Box<RawValue>>,
}

impl SharedRecord {
    pub(crate) fn new(record: Record) -> Self {
        SharedRecord(Arc::new(Encoded {
            record,
            json: OnceLock::new(),
        }))
    }

    /// Whether both are the same shared record (not merely equal ones).
    pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The record, cloned only if it is still shared.
    pub(crate) fn into_record(self) -> Record {
        match Arc::try_unwrap(self.0) {
            Ok(encoded) => encoded.record,
            Err(shared) => shared.record.clone(),
        }
    }
}

impl From<Record> for SharedRecord {
    fn from(record: Record) -> Self {
        SharedRecord::new(record)
    }
}

impl std::ops::Deref for SharedRecord {
    type Target = Record;
    fn deref(&self) -> &Record {
        &self.0.record
    }
}

impl AsRef<Record> for SharedRecord {
    fn as_ref(&self) -> &Record {
        &self.0.record
    }
}

impl PartialEq for SharedRecord {
    fn eq(&self, other: &Self) -> bool {
        Self::ptr_eq(self, other) || self.0.record == other.0.record
    }
}

impl std::fmt::Debug for SharedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.record.fmt(f)
    }
}

impl Serialize for SharedRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(json) = self.0.json.get() {
            return json.serialize(serializer);
        }
        match serde_json::value::to_raw_value(&self.0.record) {
            Ok(json) => self.0.json.get_or_init(|| json).serialize(serializer),
            Err(_) => self.0.record.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for SharedRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Record::deserialize(deserializer).map(SharedRecord::new)
    }
}

/// What a subscription watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub(crate) enum Target {
    User {
        id: UserId,
    },
    Conversation {
        id: ConversationId,
    },
    Conversations {
        filter: Option<ConversationFilter>,
    },
    Messages {
        conversation: ConversationId,
        filter: Option<MessageFilter>,
    },
    Participants {
        conversation: ConversationId,
    },
    Participant {
        conversation: ConversationId,
        user: UserId,
    },
    /// The users who reacted to a message with one emoji (in its stored form), oldest first.
    Reactions {
        conversation: ConversationId,
        message: MessageId,
        emoji: String,
    },
}

impl Target {
    /// The window's first page, and the bounds of `load_more` (min is always 1).
    pub(crate) fn paging(&self) -> Paging {
        match self {
            Target::Conversations { .. } => Paging {
                first: 20,
                default: 20,
                max: 30,
            },
            Target::Messages { .. } => Paging {
                first: 30,
                default: 30,
                max: 100,
            },
            Target::Participants { .. } => Paging {
                first: 10,
                default: 10,
                max: 50,
            },
            Target::Reactions { .. } => Paging {
                first: 10,
                default: 30,
                max: 100,
            },
            _ => Paging {
                first: 1,
                default: 1,
                max: 1,
            },
        }
    }
}

/// Window paging rules of one subscription kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paging {
    pub(crate) first: usize,
    pub(crate) default: usize,
    pub(crate) max: usize,
}

/// A request from client to engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub(crate) enum Request {
    GetUser {
        user: UserId,
    },
    SetUser {
        user: UserId,
        params: UserParams,
        create_only: bool,
    },
    GetConversation {
        conversation: ConversationId,
    },
    SetConversation {
        conversation: ConversationId,
        params: ConversationParams,
        create_only: bool,
    },
    MarkRead {
        conversation: ConversationId,
    },
    MarkUnread {
        conversation: ConversationId,
    },
    Send {
        conversation: ConversationId,
        message: WireSend,
    },
    GetParticipant {
        conversation: ConversationId,
        user: UserId,
    },
    SetParticipant {
        conversation: ConversationId,
        user: UserId,
        params: ParticipantParams,
        mode: ParticipantWrite,
    },
    DeleteParticipant {
        conversation: ConversationId,
        user: UserId,
    },
    GetMessage {
        conversation: ConversationId,
        message: MessageId,
    },
    EditMessage {
        conversation: ConversationId,
        message: MessageId,
        params: EditParams,
    },
    DeleteMessage {
        conversation: ConversationId,
        message: MessageId,
    },
    /// Adds (`add`) or removes the viewer's reaction with `emoji`; either is idempotent.
    React {
        conversation: ConversationId,
        message: MessageId,
        emoji: String,
        add: bool,
    },
    /// The first `limit` users who reacted with `emoji`, oldest first.
    GetReactions {
        conversation: ConversationId,
        message: MessageId,
        emoji: String,
        limit: u32,
    },
    /// Starts a subscription: the first page, or with `restore` the window a client held
    /// before a reconnect.
    Subscribe {
        sub: SubId,
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restore: Option<Restore>,
    },
    LoadMore {
        sub: SubId,
        count: u32,
    },
    Unsubscribe {
        sub: SubId,
    },
    /// Replaces the connection's token (answered by the server, not the engine).
    Authenticate {
        token: String,
    },
    /// Answered once every push for the writes the engine ran before it was sent: a barrier.
    Sync,
}

impl Request {
    /// A human-readable description of the action, used in error messages.
    pub(crate) fn action(&self) -> String {
        match self {
            Request::GetUser { user } => format!("Get user {user}"),
            Request::SetUser {
                user,
                create_only: false,
                ..
            } => format!("Set user {user}"),
            Request::SetUser { user, .. } => format!("Create user {user}"),
            Request::GetConversation { conversation } => format!("Get conversation {conversation}"),
            Request::SetConversation {
                conversation,
                create_only: false,
                ..
            } => {
                format!("Set conversation {conversation}")
            }
            Request::SetConversation { conversation, .. } => {
                format!("Create conversation {conversation}")
            }
            Request::MarkRead { conversation } => format!("Mark conversation {conversation} read"),
            Request::MarkUnread { conversation } => {
                format!("Mark conversation {conversation} unread")
            }
            Request::Send { conversation, .. } => {
                format!("Send message to conversation {conversation}")
            }
            Request::GetParticipant { conversation, user } => {
                format!("Get participant {user} of conversation {conversation}")
            }
            Request::SetParticipant {
                conversation, user, ..
            } => {
                format!("Set participant {user} of conversation {conversation}")
            }
            Request::DeleteParticipant { conversation, user } => {
                format!("Delete participant {user} of conversation {conversation}")
            }
            Request::GetMessage { message, .. } => format!("Get message {message}"),
            Request::EditMessage { message, .. } => format!("Edit message {message}"),
            Request::DeleteMessage { message, .. } => format!("Delete message {message}"),
            Request::React {
                message,
                emoji,
                add: true,
                ..
            } => format!("Add reaction {emoji} to message {message}"),
            Request::React { message, emoji, .. } => {
                format!("Remove reaction {emoji} from message {message}")
            }
            Request::GetReactions { message, emoji, .. } => {
                format!("Get reactions {emoji} to message {message}")
            }
            Request::Subscribe { sub, .. } => format!("Subscribe {sub}"),
            Request::LoadMore { sub, .. } => format!("Load more of subscription {sub}"),
            Request::Unsubscribe { sub } => format!("Unsubscribe {sub}"),
            Request::Authenticate { .. } => "Authenticate".to_owned(),
            Request::Sync => "Sync".to_owned(),
        }
    }
}

/// What a client held of a subscription before a reconnect.
///
/// The window: at least `len` items, and every item down to `oldest` if it still exists.
///
/// Resume: `held` lists the keys the subscription's snapshot read when the client had applied
/// every push up to `since`. The engine does not send those records again unless an event after
/// `since` touched them; if it cannot tell (another epoch, or the log no longer reaches back),
/// it sends everything.
///
/// `exact`: the window is exactly `len` items, even below a first page (a client splitting a
/// shared window on `loadMore` asks for what that handle held plus the count, nothing more).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Restore {
    pub(crate) len: u32,
    pub(crate) oldest: Option<EntityKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<Position>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) held: Vec<EntityKey>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) exact: bool,
}

/// The most keys a [`Restore`] may list as held; the engine ignores a longer list (and sends
/// every record), and clients send none rather than more.
pub(crate) const MAX_HELD_KEYS: usize = 2_000;

/// A point in an engine's event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

/// How `SetParticipant` treats an existing or missing participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ParticipantWrite {
    /// Add or update.
    Upsert,
    /// Update only; fails if not a participant.
    Edit,
    /// Add only; succeeds unchanged if already a participant.
    Create,
}

/// A client frame: a request with the id its response will carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClientFrame {
    pub(crate) id: u64,
    #[serde(flatten)]
    pub(crate) request: Request,
}

/// A successful response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub(crate) enum Response {
    /// Done, nothing to return.
    Ack,
    /// A message was created.
    Sent { message: MessageId },
    /// The records needed to assemble the root entity, or `root: None` if it is missing or
    /// not visible.
    Found {
        root: Option<EntityKey>,
        records: Vec<Record>,
    },
    /// The users who reacted, oldest first, or `None` if the message is missing or not
    /// visible.
    Reactions { reactions: Option<Vec<Reaction>> },
}

/// One user's reaction, as [`Response::Reactions`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Reaction {
    pub(crate) user: UserSnapshot,
    pub(crate) created_at: Timestamp,
}

/// A machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request was malformed or broke a rule (HTTP 400).
    InvalidRequest,
    /// The current user is not a participant of the conversation (HTTP 403).
    NotAParticipant,
    /// The current user may not do this, for example send with Read access (HTTP 403).
    Forbidden,
    /// The thing does not exist (HTTP 404).
    NotFound,
    /// The thing already exists (HTTP 409).
    Conflict,
    /// A limit was exceeded (HTTP 413 or 429).
    LimitExceeded,
    /// The engine failed; the request may be retried (HTTP 500).
    Internal,
    /// The token is missing, invalid or expired (HTTP 401).
    Unauthorized,
    /// Too many requests; sessions retry after a delay (HTTP 429).
    RateLimited,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::NotAParticipant => "NOT_A_PARTICIPANT",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::RateLimited => "RATE_LIMITED",
        };
        f.write_str(code)
    }
}

/// An error as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub(crate) code: ErrorCode,
    pub(crate) reasons: Vec<String>,
}

/// One change in a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub(crate) enum Update {
    /// An entity was created or changed.
    Upsert { record: SharedRecord },
    /// An entity no longer exists (or is no longer visible).
    Remove { key: EntityKey },
    /// A subscription's window: its items in order, or `None` if the root is missing or not
    /// visible; `loaded_all` when nothing is left to load.
    Window {
        sub: SubId,
        items: Option<Vec<EntityKey>>,
        loaded_all: bool,
    },
    /// Changes to a subscription's window since the last `window` or `rows` update, applied
    /// in order; `loaded_all` as after them.
    Rows {
        sub: SubId,
        changes: Vec<RowChange>,
        loaded_all: bool,
    },
    /// A subscription failed and ended.
    Failed { sub: SubId, error: WireError },
}

/// One change to a window's items, at indices of the window as it is when the change applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub(crate) enum RowChange {
    /// `key` joins the window at `index`.
    Insert { index: usize, key: EntityKey },
    /// The item at `index` leaves the window.
    Remove { index: usize },
    /// The item at `from` moves to `to` (its index once it is out of the way).
    Move { from: usize, to: usize },
}

/// A server frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub(crate) enum ServerFrame {
    /// The first frame of a websocket connection.
    Hello {
        protocol: u32,
        /// When the connection's token expires (seconds since the Unix epoch), if it does.
        expires_at: Option<u64>,
    },
    /// A client frame that could not be answered (not JSON, not a known request, binary).
    Error { error: WireError },
    /// The answer to request `id`.
    Response {
        id: u64,
        result: Result<Response, WireError>,
    },
    /// Changes committed by the engine as one batch; apply atomically. `seq` is the position
    /// in the engine's event log that the push brings the client to: it never decreases on a
    /// connection, and may skip numbers (events this connection does not see). `epoch`
    /// changes when the log restarts.
    ///
    /// A push too large for one frame is split into several (see [`MAX_PUSH_FRAME_BYTES`]):
    /// every part but the last has `more`, and the client applies them as one push when
    /// the last arrives.
    Push {
        seq: u64,
        epoch: u64,
        updates: Vec<Update>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared record is encoded once, as the record itself would be, and parsed back whole.
    #[test]
    fn shared_records_encode_once_as_their_record() {
        let record = Record::User(UserSnapshot {
            id: UserId::new("u\"1"),
            name: "Ada \u{1F600}".into(),
            custom: Default::default(),
            locale: None,
            photo_url: None,
            role: "default".into(),
            welcome_message: None,
        });
        let shared = SharedRecord::new(record.clone());
        let push = Update::Upsert {
            record: shared.clone(),
        };
        let first = serde_json::to_string(&push).unwrap();
        assert!(shared.0.json.get().is_some(), "the encoding is kept");
        assert_eq!(serde_json::to_string(&push).unwrap(), first);
        let plain = serde_json::json!({ "op": "upsert", "record": record });
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&first).unwrap(),
            plain
        );
        assert_eq!(serde_json::from_str::<Update>(&first).unwrap(), push);
    }

    /// The JSON shape of frames is a conscious decision: these snapshots change only on purpose.
    #[test]
    fn wire_format_snapshots() {
        let frame = ClientFrame {
            id: 7,
            request: Request::LoadMore { sub: 3, count: 20 },
        };
        assert_eq!(
            serde_json::to_string(&frame).unwrap(),
            r#"{"id":7,"op":"loadMore","sub":3,"count":20}"#
        );
        let push = ServerFrame::Push {
            seq: 1,
            epoch: 9,
            more: false,
            updates: vec![
                Update::Remove {
                    key: EntityKey::message(&MessageId::new("m1")),
                },
                Update::Window {
                    sub: 3,
                    items: Some(vec![EntityKey::user(&UserId::new("u"))]),
                    loaded_all: true,
                },
                Update::Rows {
                    sub: 4,
                    changes: vec![
                        RowChange::Insert {
                            index: 0,
                            key: EntityKey::message(&MessageId::new("m2")),
                        },
                        RowChange::Move { from: 3, to: 0 },
                        RowChange::Remove { index: 30 },
                    ],
                    loaded_all: false,
                },
            ],
        };
        let json = serde_json::to_string(&push).unwrap();
        assert_eq!(
            json,
            r#"{"type":"push","seq":1,"epoch":9,"updates":[{"op":"remove","key":{"kind":"message","id":"m1"}},{"op":"window","sub":3,"items":[{"kind":"user","id":"u"}],"loadedAll":true},{"op":"rows","sub":4,"changes":[{"op":"insert","index":0,"key":{"kind":"message","id":"m2"}},{"op":"move","from":3,"to":0},{"op":"remove","index":30}],"loadedAll":false}]}"#
        );
        assert_eq!(serde_json::from_str::<ServerFrame>(&json).unwrap(), push);
        let err = ServerFrame::Response {
            id: 2,
            result: Err(WireError {
                code: ErrorCode::NotFound,
                reasons: vec!["x".into()],
            }),
        };
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"type":"response","id":2,"result":{"Err":{"code":"NOT_FOUND","reasons":["x"]}}}"#
        );
    }

    /// Frames with empty ids are rejected by deserialization, before reaching the engine.
    #[test]
    fn empty_ids_do_not_parse() {
        assert!(
            serde_json::from_str::<ClientFrame>(r#"{"id":1,"op":"getUser","user":""}"#).is_err()
        );
    }
}
