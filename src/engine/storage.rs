//! The storage boundary of the engine: what any backend (memory, SQLite, PostgreSQL) provides.

use serde::{Deserialize, Serialize};

use crate::model::{
    ConversationId, ConversationRecord, MessageId, MessageRecord, ParticipantRecord, Timestamp,
    UserId, UserSnapshot,
};

/// A storage backend failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StorageError(pub String);

pub(crate) type StorageResult<T> = Result<T, StorageError>;

/// A new log epoch: the current time in nanoseconds, so that a log started again (a new
/// database, a restarted in-memory engine) never reuses its predecessor's epoch.
pub(crate) fn new_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        .max(1)
}

/// A user with the fields the Data API never reveals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredUser {
    pub(crate) public: UserSnapshot,
    pub(crate) email: Vec<String>,
    pub(crate) phone: Vec<String>,
}

/// A conversation with the counter its participants' unread counts are kept against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredConversation {
    pub(crate) record: ConversationRecord,
    /// User messages ever created in the conversation; never decreases (see
    /// [`StoredParticipant::read_base`]).
    pub(crate) user_messages: u64,
}

/// A participant with their read state.
///
/// Their unread count is kept at write time, not counted at read time: it is the
/// conversation's [`StoredConversation::user_messages`] less `read_base` less
/// `sent_since_read` (the rules are in `engine::unread`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredParticipant {
    pub(crate) record: ParticipantRecord,
    /// Messages created after this are unread.
    pub(crate) read_until: Timestamp,
    /// Set by mark-as-unread, cleared by mark-as-read.
    pub(crate) marked_unread: bool,
    /// The conversation's user messages that are not unread for this participant: those
    /// created up to `read_until`, and those deleted since that were created after it.
    #[serde(default)]
    pub(crate) read_base: u64,
    /// This participant's own user messages created after `read_until`, still existing.
    #[serde(default)]
    pub(crate) sent_since_read: u64,
}

/// The position of a message in its conversation: creation time, then insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct MessagePos {
    pub(crate) created_at: Timestamp,
    pub(crate) ordinal: u64,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub(crate) enum Event {
    UserChanged {
        user: UserId,
    },
    ConversationChanged {
        conversation: ConversationId,
    },
    ParticipantChanged {
        conversation: ConversationId,
        user: UserId,
    },
    ParticipantRemoved {
        conversation: ConversationId,
        user: UserId,
    },
    /// A new message, which is also its conversation's new last message (no separate
    /// `ConversationChanged` is logged for that).
    MessageCreated {
        conversation: ConversationId,
        message: MessageId,
    },
    MessageChanged {
        conversation: ConversationId,
        message: MessageId,
    },
    MessageDeleted {
        conversation: ConversationId,
        message: MessageId,
    },
    ReadChanged {
        conversation: ConversationId,
        user: UserId,
    },
    /// `user` added or removed a reaction to a message (whose record's counts changed).
    ReactionChanged {
        conversation: ConversationId,
        message: MessageId,
        emoji: String,
        user: UserId,
        /// Whether the message gained its first reaction or lost its last: then what its
        /// snapshots read changes (see `shape::message`); otherwise only records do.
        reshaped: bool,
    },
}

impl Event {
    /// Whether the event changes (or ends) `user`'s participation in `conversation`: what
    /// they may see there.
    pub(crate) fn changes_participation(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> bool {
        matches!(self,
            Event::ParticipantChanged { conversation: c, user: u }
            | Event::ParticipantRemoved { conversation: c, user: u }
                if c == conversation && u == user)
    }

    pub(crate) fn conversation(&self) -> Option<&ConversationId> {
        match self {
            Event::UserChanged { .. } => None,
            Event::ConversationChanged { conversation }
            | Event::ParticipantChanged { conversation, .. }
            | Event::ParticipantRemoved { conversation, .. }
            | Event::MessageCreated { conversation, .. }
            | Event::MessageChanged { conversation, .. }
            | Event::MessageDeleted { conversation, .. }
            | Event::ReadChanged { conversation, .. }
            | Event::ReactionChanged { conversation, .. } => Some(conversation),
        }
    }
}

/// Durable state of the engine. All calls of one command run under one engine lock and are
/// followed by [`Storage::commit`]; a backend makes that commit atomic.
///
/// Lists return owned records so that a backend may read them from disk.
pub(crate) trait Storage: Send {
    fn user(&self, id: &UserId) -> StorageResult<Option<StoredUser>>;
    fn put_user(&mut self, user: StoredUser) -> StorageResult<()>;

    fn conversation(&self, id: &ConversationId) -> StorageResult<Option<StoredConversation>>;
    fn put_conversation(&mut self, conversation: StoredConversation) -> StorageResult<()>;
    /// Removes a conversation record (its participants and messages are removed separately).
    #[cfg(feature = "server")]
    fn remove_conversation(&mut self, id: &ConversationId) -> StorageResult<()>;

    fn participant(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StorageResult<Option<StoredParticipant>>;
    fn put_participant(&mut self, participant: StoredParticipant) -> StorageResult<()>;
    fn remove_participant(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StorageResult<()>;
    /// Every participant of a conversation, in no particular order.
    fn participants(&self, conversation: &ConversationId) -> StorageResult<Vec<StoredParticipant>>;
    /// The earliest `read_until` of a conversation's participants (`None` without
    /// participants), from an index: O(log participants).
    fn everyone_read_until(
        &self,
        conversation: &ConversationId,
    ) -> StorageResult<Option<Timestamp>>;
    /// How many participants a conversation has.
    fn participant_count(&self, conversation: &ConversationId) -> StorageResult<usize>;

    /// Puts a participation (which exists) in the activity index at `at`, or takes it out
    /// (`None`). A new participation starts out of the index; a removed one leaves it. The
    /// values are `engine::activity`'s business.
    fn set_activity(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
        at: Option<Timestamp>,
    ) -> StorageResult<()>;
    /// Moves every indexed participation of a conversation to `at`. O(indexed participations).
    fn touch_activity(&mut self, conversation: &ConversationId, at: Timestamp)
    -> StorageResult<()>;
    /// Up to `limit` of `user`'s indexed participations strictly below `below`, latest
    /// activity first, ties by greater conversation id first: O(log n + limit).
    fn activity_below(
        &self,
        user: &UserId,
        below: Option<(Timestamp, &ConversationId)>,
        limit: usize,
    ) -> StorageResult<Vec<(Timestamp, ConversationId)>>;
    /// The conversations of `user` whose participation is not in the activity index.
    fn unindexed_of(&self, user: &UserId) -> StorageResult<Vec<ConversationId>>;

    fn message(&self, id: &MessageId) -> StorageResult<Option<(MessageRecord, MessagePos)>>;
    fn put_message(&mut self, message: MessageRecord, pos: MessagePos) -> StorageResult<()>;
    /// Removes a message and its reactions.
    fn remove_message(&mut self, id: &MessageId) -> StorageResult<()>;
    /// Messages of a conversation strictly before `before` (all if `None`), newest first, at
    /// most `limit`.
    fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<MessagePos>,
        limit: usize,
    ) -> StorageResult<Vec<(MessageRecord, MessagePos)>>;
    /// The number of user messages created after `after`, and how many of them `sender`
    /// sent. Reads every such message: only for a participant who joins (see
    /// `engine::unread`), never on the way of a send or a read.
    fn count_user_messages(
        &self,
        conversation: &ConversationId,
        after: Timestamp,
        sender: &UserId,
    ) -> StorageResult<(u64, u64)>;

    /// Records `user`'s reaction to a message with `emoji` (in its stored form) at `at`, unless
    /// it exists: then writes nothing and returns false. O(log reactions).
    fn put_reaction(
        &mut self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
        at: Timestamp,
    ) -> StorageResult<bool>;
    /// Removes that reaction; returns false (and writes nothing) if it did not exist.
    fn remove_reaction(
        &mut self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
    ) -> StorageResult<bool>;
    /// When `user` reacted to a message with `emoji`, if they did.
    fn reaction(
        &self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
    ) -> StorageResult<Option<Timestamp>>;
    /// The emoji `user` reacted to a message with, oldest first.
    fn reactions_of(&self, message: &MessageId, user: &UserId) -> StorageResult<Vec<String>>;
    /// Up to `limit` of the reactions to a message with `emoji`, oldest first (ties by user
    /// id): O(log reactions + limit).
    fn reactions(
        &self,
        message: &MessageId,
        emoji: &str,
        limit: usize,
    ) -> StorageResult<Vec<(UserId, Timestamp)>>;

    /// The message created by an earlier send with this idempotency key.
    fn idempotent_send(&self, sender: &UserId, key: &str) -> StorageResult<Option<MessageId>>;
    /// Records that `sender`'s send with idempotency key `key` creates message `id`, unless
    /// the key names a message already: then returns that one and writes nothing. One lookup
    /// instead of a read and a write.
    fn claim_idempotent_send(
        &mut self,
        sender: &UserId,
        key: &str,
        id: &MessageId,
    ) -> StorageResult<Option<MessageId>>;

    /// How many rows the listing calls (`participants`, `activity_below`, `unindexed_of`,
    /// `messages_before`) returned so far: tests use it to tell an incremental feed from one
    /// that re-lists. Only the memory storage counts.
    #[cfg(test)]
    fn listed(&self) -> usize {
        0
    }

    /// The log's epoch and last sequence number (0 when empty).
    fn log_position(&self) -> StorageResult<(u64, u64)>;
    /// The events after sequence number `after`, oldest first, or `None` if the log no longer
    /// holds all of them.
    fn events_after(&self, after: u64) -> StorageResult<Option<Vec<Event>>>;
    /// Appends events with consecutive sequence numbers after the last one.
    fn append_events(&mut self, events: &[Event]) -> StorageResult<u64>;
    /// The latest time the engine handed out, as of the last commit (0 for a new store). The
    /// engine's clock never goes below it, so that timestamps keep increasing across restarts
    /// even when the engine ran ahead of the wall clock.
    fn last_time(&self) -> Timestamp;
    /// Notes that the engine handed out time `at`; kept with the next commit.
    fn record_time(&mut self, at: Timestamp);
    /// The highest message ordinal handed out so far (0 before the first).
    fn last_ordinal(&self) -> u64;
    /// Hands out the next message ordinal: [`Storage::last_ordinal`] plus one.
    fn next_ordinal(&mut self) -> StorageResult<u64>;

    /// Marks the start of one command inside the open batch. Costs no I/O.
    fn begin_command(&mut self);
    /// Discards the writes of the command begun last, if that can be done alone: when it wrote
    /// nothing, or when no earlier command of the batch wrote. Otherwise returns false and
    /// keeps every write; the whole batch must then be rolled back. (A savepoint per command
    /// would lift the restriction, at about a fifth of SQLite's time under load: it copies
    /// every page a command touches that earlier commands of the batch touched too.)
    fn undo_command(&mut self) -> bool;
    /// Makes every write since the last commit durable and visible together.
    fn commit(&mut self) -> StorageResult<()>;
    /// Discards every write since the last commit.
    fn rollback(&mut self);
}
