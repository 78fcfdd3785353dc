//! Read state kept at write time: every participant's unread count is a difference of
//! counters, so that no read and no send counts messages.
//!
//! A conversation counts its user messages ever created (`user_messages`, never decreasing).
//! A participant keeps `read_base`, the user messages that are not unread for them (created up
//! to their read mark, or deleted since), and `sent_since_read`, their own user messages after
//! the mark. Their unread count is `user_messages - read_base - sent_since_read`:
//!
//! | write | cost | what changes |
//! |---|---|---|
//! | a user message | O(1) | `user_messages` + 1; the sender's `sent_since_read` + 1 |
//! | mark as read | O(1) | `read_base` = `user_messages`, `sent_since_read` = 0 |
//! | a user message deleted | O(participants) | for each participant whose mark is before it: `read_base` + 1 (and the sender's `sent_since_read` - 1) |
//! | a participant joins | O(messages after their mark) | both counted once (a new participant's mark is 0) |
//!
//! `everyone_read_until` comes from the storage's index of read marks.

use super::{
    Storage,
    storage::{StorageResult, StoredConversation, StoredParticipant},
};
use crate::model::{MessageRecord, MessageType, ReadStateRecord, Timestamp};

/// The unread count of `participant` in `conversation`.
fn count(conversation: &StoredConversation, participant: &StoredParticipant) -> u64 {
    conversation
        .user_messages
        .saturating_sub(participant.read_base)
        .saturating_sub(participant.sent_since_read)
}

/// The read state of `participant`, who is in `conversation`.
pub(super) fn read_state(
    storage: &dyn Storage,
    conversation: &StoredConversation,
    participant: &StoredParticipant,
) -> StorageResult<ReadStateRecord> {
    let id = &conversation.record.id;
    let unread_message_count = count(conversation, participant);
    let everyone_read_until = storage
        .everyone_read_until(id)?
        .unwrap_or(participant.read_until);
    Ok(ReadStateRecord {
        conversation_id: id.clone(),
        read_until: participant.read_until,
        everyone_read_until,
        unread_message_count,
        is_unread: participant.marked_unread || unread_message_count > 0,
    })
}

/// Sets the counters of a participant who joins with read mark `read_until`.
pub(super) fn join(
    storage: &dyn Storage,
    conversation: &StoredConversation,
    participant: &mut StoredParticipant,
) -> StorageResult<()> {
    let (after, own) = storage.count_user_messages(
        &conversation.record.id,
        participant.read_until,
        &participant.record.user_id,
    )?;
    participant.read_base = conversation.user_messages.saturating_sub(after);
    participant.sent_since_read = own;
    Ok(())
}

/// Marks everything in `conversation` read for `participant`, as of `now`.
pub(super) fn mark_read(
    conversation: &StoredConversation,
    participant: &mut StoredParticipant,
    now: Timestamp,
) {
    participant.read_until = now;
    participant.read_base = conversation.user_messages;
    participant.sent_since_read = 0;
}

/// Counts a new message of `conversation` (the newest: created after every read mark) sent by
/// `sender`, whose participant record is given if they are one; returns it to be stored.
pub(super) fn sent(
    conversation: &mut StoredConversation,
    message: &MessageRecord,
    sender: Option<StoredParticipant>,
) -> Option<StoredParticipant> {
    if message.message_type != MessageType::UserMessage {
        return None;
    }
    conversation.user_messages += 1;
    let mut sender = sender?;
    sender.sent_since_read += 1;
    Some(sender)
}

/// The participants whose counters change when `message` (created at `created_at`) is
/// deleted, changed accordingly.
pub(super) fn deleted(
    participants: Vec<StoredParticipant>,
    message: &MessageRecord,
) -> Vec<StoredParticipant> {
    if message.message_type != MessageType::UserMessage {
        return Vec::new();
    }
    participants
        .into_iter()
        .filter(|p| p.read_until < message.created_at)
        .map(|mut p| {
            p.read_base += 1;
            if message.sender_id.as_ref() == Some(&p.record.user_id) {
                p.sent_since_read = p.sent_since_read.saturating_sub(1);
            }
            p
        })
        .collect()
}
