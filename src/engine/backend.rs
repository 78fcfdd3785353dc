//! What an app's backend may do through the REST API: the same rules as users' commands where
//! they are about data (users must exist, content must be valid, idempotency), none of the
//! participant checks that guard one user's view.

use super::{
    EngineResult, Event, State,
    commands::{
        apply_edit, check_content, check_reference, forbidden, insert_message, invalid, not_found,
        not_participant, react, reactions, remove_message, remove_participant, require_user,
        set_user, upsert_conversation, write_participant,
    },
    storage::{StoredParticipant, StoredUser},
};
use crate::{
    model::{
        ConversationId, ConversationRecord, Custom, MessageId, MessageRecord, MessageType, Origin,
        ParticipantRecord, SendContentBlock, UserId, content_to_blocks, parse_markup,
    },
    params::{ConversationParams, EditParams, ParticipantParams, UserParams},
    protocol::{ParticipantWrite, Reaction},
};

/// Upserts users, all or nothing.
pub(crate) fn put_users(
    state: &mut State,
    users: Vec<(UserId, UserParams)>,
) -> EngineResult<((), Vec<Event>)> {
    let mut events = Vec::new();
    for (id, params) in users {
        events.extend(set_user(state, &id, params, false)?.1);
    }
    Ok(((), events))
}

/// A user with the fields only a backend sees (email, phone).
pub(crate) fn get_user(state: &State, id: &UserId) -> EngineResult<Option<StoredUser>> {
    Ok(state.storage().user(id)?)
}

/// Creates or patches a conversation and adds the listed participants (it never removes any).
pub(crate) fn put_conversation(
    state: &mut State,
    id: &ConversationId,
    params: ConversationParams,
    participants: Vec<UserId>,
) -> EngineResult<((), Vec<Event>)> {
    for user in &participants {
        require_user(state.storage(), user)?;
    }
    let now = state.now();
    let mut events = upsert_conversation(state, id, params, false, now)?;
    for user in participants {
        let old = state.storage().participant(id, &user)?;
        let create = ParticipantWrite::Create;
        events.extend(write_participant(
            state,
            id,
            &user,
            ParticipantParams::new(),
            create,
            now,
            old,
        )?);
    }
    Ok(((), events))
}

/// A conversation as a backend sees it: with all its participants and its last message.
pub(crate) struct Conversation {
    pub(crate) record: ConversationRecord,
    pub(crate) participants: Vec<ParticipantRecord>,
    pub(crate) last_message: Option<MessageRecord>,
}

pub(crate) fn get_conversation(
    state: &State,
    id: &ConversationId,
) -> EngineResult<Option<Conversation>> {
    let storage = state.storage();
    let Some(stored) = storage.conversation(id)? else {
        return Ok(None);
    };
    let record = stored.record;
    let participants = storage
        .participants(id)?
        .into_iter()
        .map(|p: StoredParticipant| p.record)
        .collect();
    let last_message = match &record.last_message_id {
        Some(m) => storage.message(m)?.map(|(m, _)| m),
        None => None,
    };
    Ok(Some(Conversation {
        record,
        participants,
        last_message,
    }))
}

/// Adds, overwrites (`Upsert`) or edits a participant.
pub(crate) fn put_participant(
    state: &mut State,
    conversation: &ConversationId,
    user: &UserId,
    params: ParticipantParams,
    mode: ParticipantWrite,
) -> EngineResult<((), Vec<Event>)> {
    if state.storage().conversation(conversation)?.is_none() {
        return Err(not_found(format!(
            "conversation {conversation} does not exist"
        )));
    }
    require_user(state.storage(), user)?;
    let old = state.storage().participant(conversation, user)?;
    let now = state.now();
    Ok((
        (),
        write_participant(state, conversation, user, params, mode, now, old)?,
    ))
}

pub(crate) fn delete_participant(
    state: &mut State,
    conversation: &ConversationId,
    user: &UserId,
) -> EngineResult<((), Vec<Event>)> {
    Ok(((), remove_participant(state, conversation, user)?))
}

/// A message posted by an app's backend.
pub(crate) struct Post {
    /// Markup text; backends may send links.
    pub(crate) text: String,
    /// Required for user messages; none for system messages.
    pub(crate) sender: Option<UserId>,
    pub(crate) message_type: MessageType,
    pub(crate) referenced_message_id: Option<MessageId>,
    pub(crate) custom: Custom,
    pub(crate) idempotency_key: Option<String>,
}

/// Posts messages, all or nothing; returns their ids in order.
pub(crate) fn post_messages(
    state: &mut State,
    conversation: &ConversationId,
    messages: Vec<Post>,
) -> EngineResult<(Vec<MessageId>, Vec<Event>)> {
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for message in messages {
        let (id, more) = post_message(state, conversation, message)?;
        ids.push(id);
        events.extend(more);
    }
    Ok((ids, events))
}

fn post_message(
    state: &mut State,
    conversation: &ConversationId,
    message: Post,
) -> EngineResult<(MessageId, Vec<Event>)> {
    let sender = match (message.message_type, message.sender) {
        (MessageType::UserMessage, Some(sender)) => {
            if state
                .storage()
                .participant(conversation, &sender)?
                .is_none()
            {
                return Err(not_participant(conversation));
            }
            Some(sender)
        }
        (MessageType::UserMessage, None) => return Err(invalid("a user message needs a sender")),
        (MessageType::SystemMessage, Some(_)) => {
            return Err(invalid("a system message has no sender"));
        }
        (MessageType::SystemMessage, None) => None,
    };
    if message.message_type == MessageType::SystemMessage && message.referenced_message_id.is_some()
    {
        return Err(forbidden("only user messages can reply"));
    }
    let scope = sender.clone().unwrap_or_else(|| UserId::new("\u{0}system"));
    if let Some(key) = &message.idempotency_key {
        if key.is_empty() || key.len() > 256 {
            return Err(invalid("the idempotency key must be 1 to 256 bytes"));
        }
        if let Some(existing) = state.storage().idempotent_send(&scope, key)? {
            return Ok((existing, Vec::new()));
        }
    }
    let content = vec![SendContentBlock::Text {
        children: parse_markup(&message.text),
    }];
    let plaintext = check_content(&content, true)?;
    if let Some(referenced) = &message.referenced_message_id {
        check_reference(state.storage(), conversation, referenced)?;
    }
    let record = MessageRecord {
        id: MessageId::new("pending"),
        conversation_id: conversation.clone(),
        message_type: message.message_type,
        sender_id: sender,
        custom: message.custom,
        created_at: 0,
        edited_at: None,
        referenced_message_id: message.referenced_message_id,
        origin: Origin::Rest,
        plaintext,
        reactions: Vec::new(),
        content: content_to_blocks(&content),
    };
    let idempotency = message.idempotency_key.as_deref().map(|key| (&scope, key));
    insert_message(state, record, idempotency)
}

/// Messages of a conversation, newest first, after the message `starting_after` (exclusive).
pub(crate) fn list_messages(
    state: &State,
    conversation: &ConversationId,
    limit: usize,
    starting_after: Option<&MessageId>,
) -> EngineResult<Option<Vec<MessageRecord>>> {
    let storage = state.storage();
    if storage.conversation(conversation)?.is_none() {
        return Ok(None);
    }
    let before = match starting_after {
        Some(id) => match storage.message(id)? {
            Some((m, pos)) if &m.conversation_id == conversation => Some(pos),
            _ => {
                return Err(invalid(format!(
                    "startingAfter {id} is not a message of {conversation}"
                )));
            }
        },
        None => None,
    };
    Ok(Some(
        storage
            .messages_before(conversation, before, limit)?
            .into_iter()
            .map(|(m, _)| m)
            .collect(),
    ))
}

/// Edits any message of a conversation (a backend may send links).
pub(crate) fn edit_message(
    state: &mut State,
    conversation: &ConversationId,
    id: &MessageId,
    params: EditParams,
) -> EngineResult<((), Vec<Event>)> {
    match state.storage().message(id)? {
        Some((old, pos)) if &old.conversation_id == conversation => {
            Ok(((), apply_edit(state, old, pos, params, true)?))
        }
        _ => Err(not_found(format!(
            "message {id} does not exist in {conversation}"
        ))),
    }
}

/// Deletes any message of a conversation; succeeds if it is already gone.
pub(crate) fn delete_message(
    state: &mut State,
    conversation: &ConversationId,
    id: &MessageId,
) -> EngineResult<((), Vec<Event>)> {
    match state.storage().message(id)? {
        Some((m, _)) if &m.conversation_id == conversation => {
            Ok(((), remove_message(state, conversation, id)?))
        }
        _ => Ok(((), Vec::new())),
    }
}

/// Adds (`add`) or removes `user`'s reaction to a message, as that user would but whether or
/// not they participate; the user must exist.
pub(crate) fn set_reaction(
    state: &mut State,
    conversation: &ConversationId,
    message: &MessageId,
    emoji: &str,
    user: &UserId,
    add: bool,
) -> EngineResult<((), Vec<Event>)> {
    require_user(state.storage(), user)?;
    let (_, events) = react(state, user, conversation, message, emoji, add)?;
    Ok(((), events))
}

/// The first `limit` reactions to a message with `emoji`, oldest first; `None` if the message
/// is not in the conversation.
pub(crate) fn list_reactions(
    state: &State,
    conversation: &ConversationId,
    message: &MessageId,
    emoji: &str,
    limit: u32,
) -> EngineResult<Option<Vec<Reaction>>> {
    reactions(state.storage(), conversation, message, emoji, limit)
}

/// Deletes a conversation with its participants and messages, irrevocably; succeeds if it is
/// already gone. Every participant's live views of it end at once.
pub(crate) fn delete_conversation(
    state: &mut State,
    conversation: &ConversationId,
) -> EngineResult<((), Vec<Event>)> {
    if state.storage().conversation(conversation)?.is_none() {
        return Ok(((), Vec::new()));
    }
    let mut events = Vec::new();
    for participant in state.storage().participants(conversation)? {
        let user = participant.record.user_id;
        state
            .storage_mut()
            .remove_participant(conversation, &user)?;
        events.push(Event::ParticipantRemoved {
            conversation: conversation.clone(),
            user,
        });
    }
    loop {
        let page = state.storage().messages_before(conversation, None, 256)?;
        if page.is_empty() {
            break;
        }
        for (message, _) in page {
            state.storage_mut().remove_message(&message.id)?;
        }
    }
    state.storage_mut().remove_conversation(conversation)?;
    events.push(Event::ConversationChanged {
        conversation: conversation.clone(),
    });
    Ok(((), events))
}
