//! Entity records: what the engine stores and the wire carries, normalized (no nesting).

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{ContentBlock, ConversationId, MessageId, ReactionCount, UserId};

/// A string map of custom fields.
pub type Custom = BTreeMap<String, String>;

/// Milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// A participant's access to a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Access {
    /// May read but not send.
    Read,
    /// May read and send. The default.
    #[default]
    ReadWrite,
}

/// When a participant is notified of new messages.
///
/// On the wire this is `true`, `false` or `"MentionsOnly"`, as in TalkJS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Notify {
    /// Notified of every message. The default.
    #[default]
    Always,
    /// Never notified.
    Never,
    /// Notified only when mentioned.
    MentionsOnly,
}

impl Serialize for Notify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Notify::Always => s.serialize_bool(true),
            Notify::Never => s.serialize_bool(false),
            Notify::MentionsOnly => s.serialize_str("MentionsOnly"),
        }
    }
}

impl<'de> Deserialize<'de> for Notify {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bool(bool),
            Str(String),
        }
        match Repr::deserialize(d)? {
            Repr::Bool(true) => Ok(Notify::Always),
            Repr::Bool(false) => Ok(Notify::Never),
            Repr::Str(s) if s == "MentionsOnly" => Ok(Notify::MentionsOnly),
            Repr::Str(s) => Err(serde::de::Error::custom(format_args!(
                "invalid notify value {s:?}: expected true, false or \"MentionsOnly\""
            ))),
        }
    }
}

impl From<bool> for Notify {
    /// `true` is [`Notify::Always`], `false` [`Notify::Never`] (as on the wire).
    fn from(value: bool) -> Self {
        if value { Notify::Always } else { Notify::Never }
    }
}

/// Whether a message was sent by a user or by the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageType {
    /// Sent by a user; has a sender.
    UserMessage,
    /// Sent by the app's backend; has no sender.
    SystemMessage,
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A chat UI.
    Web,
    /// The REST API or the Data API's `send`.
    Rest,
    /// An import.
    Import,
    /// A reply by email.
    Email,
}

/// A user's public data. This is both the normalized record and the snapshot apps see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserSnapshot {
    /// The user's id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Custom fields.
    pub custom: Custom,
    /// Locale, or `None` for the app's default.
    pub locale: Option<String>,
    /// Photo URL.
    pub photo_url: Option<String>,
    /// Role; `"default"` unless set.
    pub role: String,
    /// Welcome message.
    pub welcome_message: Option<String>,
}

/// The shared part of a conversation (everything that is the same for every participant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConversationRecord {
    pub(crate) id: ConversationId,
    pub(crate) subject: Option<String>,
    pub(crate) photo_url: Option<String>,
    pub(crate) welcome_messages: Vec<String>,
    pub(crate) custom: Custom,
    pub(crate) created_at: Timestamp,
    pub(crate) last_message_id: Option<MessageId>,
}

/// One user's membership of one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ParticipantRecord {
    pub(crate) conversation_id: ConversationId,
    pub(crate) user_id: UserId,
    pub(crate) access: Access,
    pub(crate) notify: Notify,
    pub(crate) joined_at: Timestamp,
}

/// The viewing user's read state in one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadStateRecord {
    pub(crate) conversation_id: ConversationId,
    pub(crate) read_until: Timestamp,
    pub(crate) everyone_read_until: Timestamp,
    pub(crate) unread_message_count: u64,
    pub(crate) is_unread: bool,
}

/// A message without nested data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageRecord {
    pub(crate) id: MessageId,
    pub(crate) conversation_id: ConversationId,
    #[serde(rename = "type")]
    pub(crate) message_type: MessageType,
    pub(crate) sender_id: Option<UserId>,
    pub(crate) custom: Custom,
    pub(crate) created_at: Timestamp,
    pub(crate) edited_at: Option<Timestamp>,
    pub(crate) referenced_message_id: Option<MessageId>,
    pub(crate) origin: Origin,
    pub(crate) plaintext: String,
    pub(crate) content: Arc<[ContentBlock]>,
    /// Per emoji, how many users reacted, in the order each emoji first appeared; no zero
    /// counts, at most `MAX_REACTIONS_PER_MESSAGE` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) reactions: Vec<ReactionCount>,
}
