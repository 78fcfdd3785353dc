//! Emoji reactions: the rule of what an emoji is, and the reaction parts of records and
//! snapshots.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ConversationId, MessageId, Timestamp, UserId, UserSnapshot};

/// The most distinct emoji one message may carry; a reaction with a 51st is refused.
pub const MAX_REACTIONS_PER_MESSAGE: usize = 50;

/// The most characters of a custom emoji's name (between its colons).
pub const MAX_CUSTOM_EMOJI_NAME: usize = 32;

/// An emoji that is not one (see [`ReactionsRef`](crate::ReactionsRef) for the rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an emoji: give one Unicode emoji (with its skin tone, if any) or a custom \
     emoji :name: of 1 to {MAX_CUSTOM_EMOJI_NAME} letters, digits, '_', '+' or '-'"
)]
#[non_exhaustive]
pub struct InvalidEmoji(pub String);

/// The form in which an emoji is stored, compared and shown.
///
/// An emoji is either one Unicode emoji (one of the Unicode 17.0 emoji, skin tone and
/// ZWJ sequences included), which is stored in its fully-qualified form (so `"\u{2764}"` and
/// `"\u{2764}\u{fe0f}"` are the same reaction, shown as the second), or a custom emoji
/// `:name:` whose name is 1 to [`MAX_CUSTOM_EMOJI_NAME`] ASCII letters, digits, `_`, `+` or
/// `-`, stored as given (case-sensitive).
///
/// # Errors
///
/// [`InvalidEmoji`] for anything else: empty text, text, several emoji, a lone skin tone.
pub(crate) fn normalize_emoji(emoji: &str) -> Result<String, InvalidEmoji> {
    if let Some(known) = emojis::get(emoji) {
        return Ok(known.as_str().to_owned());
    }
    let custom = emoji
        .strip_prefix(':')
        .and_then(|rest| rest.strip_suffix(':'))
        .filter(|name| {
            (1..=MAX_CUSTOM_EMOJI_NAME).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
        });
    match custom {
        Some(_) => Ok(emoji.to_owned()),
        None => Err(InvalidEmoji(emoji.to_owned())),
    }
}

/// How many users reacted to a message with one emoji (part of the message record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReactionCount {
    pub(crate) emoji: String,
    pub(crate) count: u64,
}

/// The viewer's own reactions to one message: present only while there is at least one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReactedRecord {
    pub(crate) message_id: MessageId,
    pub(crate) emoji: Vec<String>,
}

/// One user's reaction to a message with one emoji: an item of a reactions window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReactionRecord {
    pub(crate) conversation_id: ConversationId,
    pub(crate) message_id: MessageId,
    pub(crate) emoji: String,
    pub(crate) user_id: UserId,
    pub(crate) created_at: Timestamp,
}

/// One emoji's reactions to a message, as the current user sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReactionSnapshot {
    /// The emoji, in its stored form (see [`crate::ReactionsRef`]).
    pub emoji: String,
    /// How many users reacted with it; at least 1.
    pub count: u64,
    /// Whether the current user is one of them.
    pub current_user_reacted: bool,
}

/// One user's reaction with one emoji.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SingleReactionSnapshot {
    /// The user who reacted, as of the read.
    pub user: Arc<UserSnapshot>,
    /// When they reacted.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unicode emoji are stored fully qualified; custom emoji as given; anything else fails.
    #[test]
    fn emoji_rule() {
        assert_eq!(normalize_emoji("👍").unwrap(), "👍");
        assert_eq!(normalize_emoji("👍🏽").unwrap(), "👍🏽");
        assert_eq!(normalize_emoji("\u{2764}").unwrap(), "\u{2764}\u{fe0f}");
        assert_eq!(normalize_emoji("👩‍👩‍👧").unwrap(), "👩‍👩‍👧");
        assert_eq!(normalize_emoji("🇳🇱").unwrap(), "🇳🇱");
        assert_eq!(normalize_emoji(":party_parrot:").unwrap(), ":party_parrot:");
        assert_eq!(normalize_emoji(":+1:").unwrap(), ":+1:");
        for bad in [
            "",
            " ",
            "a",
            "👍👍",
            "👍 ",
            "🏽",
            "::",
            ":a b:",
            ":é:",
            "party",
            ":open",
            &format!(":{}:", "x".repeat(MAX_CUSTOM_EMOJI_NAME + 1)),
        ] {
            assert!(normalize_emoji(bad).is_err(), "{bad:?}");
        }
        let message = normalize_emoji("ab").unwrap_err().to_string();
        assert!(message.contains("\"ab\" is not an emoji"), "{message}");
    }
}
