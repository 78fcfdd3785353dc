//! Snapshots: the immutable, shared values subscriptions and reads hand to apps.
//!
//! Nested data is live: a message's `sender` is the sender's current data, and the same
//! `Arc` is shared by every snapshot that shows it until it changes.

use std::sync::Arc;

use serde::Serialize;

use super::{
    Access, ContentBlock, ConversationId, Custom, MessageId, MessageType, Notify, Origin,
    ReactionSnapshot, Timestamp, UserSnapshot,
};

/// A conversation as the current user sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConversationSnapshot {
    /// The conversation's id.
    pub id: ConversationId,
    /// Subject, if set.
    pub subject: Option<String>,
    /// Photo URL, if set.
    pub photo_url: Option<String>,
    /// Welcome messages (shown by UIs, not real messages).
    pub welcome_messages: Vec<String>,
    /// Custom fields.
    pub custom: Custom,
    /// When the conversation was created.
    pub created_at: Timestamp,
    /// When the current user joined.
    pub joined_at: Timestamp,
    /// The newest message, if any.
    pub last_message: Option<Arc<MessageSnapshot>>,
    /// Messages from others after `read_until`.
    pub unread_message_count: u64,
    /// Messages created after this are unread for the current user.
    pub read_until: Timestamp,
    /// The smallest `read_until` over all participants: everything up to it is read by all.
    pub everyone_read_until: Timestamp,
    /// Unread messages exist, or the user marked the conversation unread.
    pub is_unread: bool,
    /// The current user's access.
    pub access: Access,
    /// The current user's notification setting.
    pub notify: Notify,
}

impl ConversationSnapshot {
    /// The time of the last activity: the last message's creation or the user's joining,
    /// whichever is later. Conversation lists are ordered by it, newest first.
    pub fn last_activity_at(&self) -> Timestamp {
        self.last_message
            .as_ref()
            .map_or(self.joined_at, |m| m.created_at.max(self.joined_at))
    }
}

/// A message with its nested data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MessageSnapshot {
    /// The message's id.
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// User or system message.
    #[serde(rename = "type")]
    pub message_type: MessageType,
    /// The sender's current data: always for user messages, never for system messages (and
    /// `None` while the sender's record is unavailable).
    pub sender: Option<Arc<UserSnapshot>>,
    /// Custom fields.
    pub custom: Custom,
    /// When it was sent.
    pub created_at: Timestamp,
    /// When it was last edited.
    pub edited_at: Option<Timestamp>,
    /// The message this one replies to, if it still exists.
    pub referenced_message: Option<Arc<ReferencedMessageSnapshot>>,
    /// Where it came from.
    pub origin: Origin,
    /// The body as plain text.
    pub plaintext: String,
    /// The body.
    pub content: Arc<[ContentBlock]>,
    /// Its reactions: per emoji the number of users and whether you are one of them, in the
    /// order each emoji first appeared on the message (an emoji whose last reaction is removed
    /// leaves; added again, it goes last). At most [`crate::MAX_REACTIONS_PER_MESSAGE`].
    pub reactions: Vec<ReactionSnapshot>,
}

/// A message that another message replies to. Its own reference is not expanded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReferencedMessageSnapshot {
    /// The message's id.
    pub id: MessageId,
    /// The sender's current data (`None` while unavailable).
    pub sender: Option<Arc<UserSnapshot>>,
    /// Custom fields.
    pub custom: Custom,
    /// When it was sent.
    pub created_at: Timestamp,
    /// When it was last edited.
    pub edited_at: Option<Timestamp>,
    /// The id of the message it replies to, not expanded.
    pub referenced_message_id: Option<MessageId>,
    /// Where it came from.
    pub origin: Origin,
    /// The body as plain text.
    pub plaintext: String,
    /// The body.
    pub content: Arc<[ContentBlock]>,
    /// Its reactions, as [`MessageSnapshot::reactions`].
    pub reactions: Vec<ReactionSnapshot>,
}

/// A participant of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ParticipantSnapshot {
    /// The participating user's current data.
    pub user: Arc<UserSnapshot>,
    /// Their access.
    pub access: Access,
    /// Their notification setting.
    pub notify: Notify,
    /// When they joined.
    pub joined_at: Timestamp,
}
