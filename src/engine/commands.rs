//! The rules of every command: validation first, then writes and the events they cause.

use super::{
    EngineError, EngineResult, Event, MAX_MESSAGE_TEXT_BYTES, State, Storage, activity,
    storage::{MessagePos, StoredConversation, StoredParticipant, StoredUser},
    unread,
    view::{self, Collector, Reads},
};
use crate::{
    model::{
        Access, ConversationId, ConversationRecord, MAX_REACTIONS_PER_MESSAGE, MessageId,
        MessageRecord, MessageType, Notify, Origin, ParticipantRecord, ReactionCount,
        SendContentBlock, UserId, UserSnapshot, content_to_blocks, normalize_emoji, plaintext,
        validate_send,
    },
    params::{
        ConversationParams, EditParams, ParticipantParams, UserParams, WireSend, apply_custom,
        custom_from_patch,
    },
    protocol::{
        EntityKey, ErrorCode, ParticipantWrite, Reaction, Request, Response, Restore, SubId, Target,
    },
};

pub(super) fn invalid(reason: impl Into<String>) -> EngineError {
    EngineError::rejected(ErrorCode::InvalidRequest, reason)
}

pub(super) fn not_found(reason: impl Into<String>) -> EngineError {
    EngineError::rejected(ErrorCode::NotFound, reason)
}

pub(super) fn not_participant(conversation: &ConversationId) -> EngineError {
    EngineError::rejected(
        ErrorCode::NotAParticipant,
        format!("you are not a participant of conversation {conversation}"),
    )
}

pub(super) fn forbidden(reason: impl Into<String>) -> EngineError {
    EngineError::rejected(ErrorCode::Forbidden, reason)
}

/// A write command, ready to run in the batch's transaction as its user.
pub(super) type Write =
    Box<dyn FnOnce(&mut State, &UserId) -> EngineResult<(Response, Vec<Event>)> + Send>;

/// What runs a request. [`route`] matches every request variant, so a new variant does not
/// compile until it is routed here (and classified by `Request::is_write`).
#[allow(clippy::large_enum_variant)] // built and matched once per request, never stored
pub(super) enum Route {
    /// A subscription operation on the connection's feed.
    Subscribe {
        sub: SubId,
        target: Target,
        restore: Option<Restore>,
    },
    LoadMore {
        sub: SubId,
        count: u32,
    },
    Unsubscribe {
        sub: SubId,
    },
    /// An ack, after the pushes of the writes before it: `sync`, and `authenticate` (tokens are
    /// checked by the server in front of the engine; in process, any goes).
    Ack,
    /// A read of one snapshot.
    Read(Read),
    Write(Write),
}

/// A read of one snapshot, as a user.
pub(super) enum Read {
    User(UserId),
    Conversation(ConversationId),
    Participant(ConversationId, UserId),
    Message(ConversationId, MessageId),
    /// The first `limit` reactions with an emoji.
    Reactions {
        conversation: ConversationId,
        message: MessageId,
        emoji: String,
        limit: u32,
    },
}

/// Sorts `request` by what runs it.
pub(super) fn route(request: Request) -> Route {
    match request {
        Request::Subscribe {
            sub,
            target,
            restore,
        } => Route::Subscribe {
            sub,
            target,
            restore,
        },
        Request::LoadMore { sub, count } => Route::LoadMore { sub, count },
        Request::Unsubscribe { sub } => Route::Unsubscribe { sub },
        Request::Authenticate { .. } | Request::Sync => Route::Ack,
        Request::GetUser { user } => Route::Read(Read::User(user)),
        Request::GetConversation { conversation } => Route::Read(Read::Conversation(conversation)),
        Request::GetParticipant { conversation, user } => {
            Route::Read(Read::Participant(conversation, user))
        }
        Request::GetMessage {
            conversation,
            message,
        } => Route::Read(Read::Message(conversation, message)),
        Request::GetReactions {
            conversation,
            message,
            emoji,
            limit,
        } => Route::Read(Read::Reactions {
            conversation,
            message,
            emoji,
            limit,
        }),
        Request::React {
            conversation,
            message,
            emoji,
            add,
        } => Route::Write(Box::new(move |state, me| {
            react(state, me, &conversation, &message, &emoji, add)
        })),
        Request::SetUser {
            user,
            params,
            create_only,
        } => Route::Write(Box::new(move |state, _| {
            set_user(state, &user, params, create_only)
        })),
        Request::SetConversation {
            conversation,
            params,
            create_only,
        } => Route::Write(Box::new(move |state, me| {
            set_conversation(state, me, &conversation, params, create_only)
        })),
        Request::MarkRead { conversation } => Route::Write(Box::new(move |state, me| {
            mark(state, me, &conversation, false)
        })),
        Request::MarkUnread { conversation } => Route::Write(Box::new(move |state, me| {
            mark(state, me, &conversation, true)
        })),
        Request::Send {
            conversation,
            message,
        } => Route::Write(Box::new(move |state, me| {
            send(state, me, &conversation, message)
        })),
        Request::SetParticipant {
            conversation,
            user,
            params,
            mode,
        } => Route::Write(Box::new(move |state, _| {
            set_participant(state, &conversation, &user, params, mode)
        })),
        Request::DeleteParticipant { conversation, user } => {
            Route::Write(Box::new(move |state, _| {
                let events = remove_participant(state, &conversation, &user)?;
                Ok((Response::Ack, events))
            }))
        }
        Request::EditMessage {
            conversation,
            message,
            params,
        } => Route::Write(Box::new(move |state, _| {
            edit_message(state, &conversation, &message, params)
        })),
        Request::DeleteMessage {
            conversation,
            message,
        } => Route::Write(Box::new(move |state, _| {
            delete_message(state, &conversation, &message)
        })),
    }
}

/// Answers a read with the records of the requested snapshot.
pub(super) fn read(state: &State, me: &UserId, read: Read) -> EngineResult<Response> {
    let storage = state.storage();
    let key = match read {
        Read::User(user) => EntityKey::user(&user),
        Read::Conversation(conversation) => EntityKey::conversation(&conversation),
        Read::Participant(conversation, user) => {
            if &user != me && !view::is_participant(storage, &conversation, me)? {
                return Err(not_participant(&conversation));
            }
            EntityKey::participant(&conversation, &user)
        }
        Read::Message(conversation, message) => {
            match storage.message(&message)? {
                Some((m, _)) if m.conversation_id == conversation => {}
                _ => {
                    return Ok(Response::Found {
                        root: None,
                        records: Vec::new(),
                    });
                }
            }
            EntityKey::message(&message)
        }
        Read::Reactions {
            conversation,
            message,
            emoji,
            limit,
        } => {
            let visible = view::is_participant(storage, &conversation, me)?;
            let reactions = match visible {
                true => reactions(storage, &conversation, &message, &emoji, limit)?,
                false => None,
            };
            return Ok(Response::Reactions { reactions });
        }
    };
    let mut reads = Reads::default();
    let mut collector = Collector::new(&mut reads);
    let root = collector
        .collect(storage, me, &key, &mut |_| {})?
        .then_some(key);
    Ok(Response::Found {
        root,
        records: collector
            .records
            .drain()
            .map(|(_, record)| record.into_record())
            .collect(),
    })
}

pub(super) fn set_user(
    state: &mut State,
    id: &UserId,
    params: UserParams,
    create_only: bool,
) -> EngineResult<(Response, Vec<Event>)> {
    if params.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(invalid("name must not be empty"));
    }
    let old = state.storage().user(id)?;
    let mut user = match (&old, create_only) {
        (Some(_), true) => return Ok((Response::Ack, Vec::new())),
        (Some(old), false) => old.clone(),
        (None, _) => {
            let Some(name) = params.name.clone() else {
                return Err(invalid(format!("name is required to create user {id}")));
            };
            StoredUser {
                public: UserSnapshot {
                    id: id.clone(),
                    name,
                    custom: Default::default(),
                    locale: None,
                    photo_url: None,
                    role: "default".to_owned(),
                    welcome_message: None,
                },
                email: Vec::new(),
                phone: Vec::new(),
            }
        }
    };
    let public = &mut user.public;
    if let Some(name) = params.name {
        public.name = name;
    }
    apply_custom(params.custom, &mut public.custom);
    params.locale.apply_to(&mut public.locale);
    params.photo_url.apply_to(&mut public.photo_url);
    params
        .role
        .apply_or(&mut public.role, || "default".to_owned());
    params.welcome_message.apply_to(&mut public.welcome_message);
    params.email.apply_or(&mut user.email, Vec::new);
    params.phone.apply_or(&mut user.phone, Vec::new);
    if old.as_ref() == Some(&user) {
        return Ok((Response::Ack, Vec::new()));
    }
    state.storage_mut().put_user(user)?;
    Ok((Response::Ack, vec![Event::UserChanged { user: id.clone() }]))
}

pub(super) fn require_user(storage: &dyn Storage, user: &UserId) -> EngineResult<()> {
    match storage.user(user)? {
        Some(_) => Ok(()),
        None => Err(not_found(format!(
            "user {user} does not exist; create the user first"
        ))),
    }
}

fn set_conversation(
    state: &mut State,
    me: &UserId,
    id: &ConversationId,
    params: ConversationParams,
    create_only: bool,
) -> EngineResult<(Response, Vec<Event>)> {
    require_user(state.storage(), me)?;
    let exists = state.storage().conversation(id)?.is_some();
    let mine = state.storage().participant(id, me)?;
    if create_only && exists && mine.is_some() {
        return Ok((Response::Ack, Vec::new()));
    }
    let now = state.now();
    let participant = ParticipantParams {
        access: params.access.clone(),
        notify: params.notify.clone(),
    };
    let mut events = upsert_conversation(state, id, params, create_only, now)?;
    let mode = if create_only {
        ParticipantWrite::Create
    } else {
        ParticipantWrite::Upsert
    };
    events.extend(write_participant(
        state,
        id,
        me,
        participant,
        mode,
        now,
        mine,
    )?);
    Ok((Response::Ack, events))
}

/// Creates a conversation, or (unless `create_only`) patches its shared fields; `access` and
/// `notify` of `params` are not used here.
pub(super) fn upsert_conversation(
    state: &mut State,
    id: &ConversationId,
    params: ConversationParams,
    create_only: bool,
    now: i64,
) -> EngineResult<Vec<Event>> {
    let old = state.storage().conversation(id)?;
    let conversation = match (old.clone(), create_only) {
        (Some(old), true) => old,
        (
            Some(StoredConversation {
                record: mut conversation,
                user_messages,
            }),
            false,
        ) => {
            params.subject.apply_to(&mut conversation.subject);
            params.photo_url.apply_to(&mut conversation.photo_url);
            params
                .welcome_messages
                .apply_or(&mut conversation.welcome_messages, Vec::new);
            apply_custom(params.custom, &mut conversation.custom);
            StoredConversation {
                record: conversation,
                user_messages,
            }
        }
        (None, _) => StoredConversation {
            record: ConversationRecord {
                id: id.clone(),
                subject: params.subject.into_option(),
                photo_url: params.photo_url.into_option(),
                welcome_messages: params.welcome_messages.into_option().unwrap_or_default(),
                custom: custom_from_patch(params.custom),
                created_at: now,
                last_message_id: None,
            },
            user_messages: 0,
        },
    };
    if old.as_ref() == Some(&conversation) {
        return Ok(Vec::new());
    }
    state.storage_mut().put_conversation(conversation)?;
    Ok(vec![Event::ConversationChanged {
        conversation: id.clone(),
    }])
}

/// Adds or updates a participant; returns the events (none if nothing changed).
pub(super) fn write_participant(
    state: &mut State,
    conversation: &ConversationId,
    user: &UserId,
    params: ParticipantParams,
    mode: ParticipantWrite,
    now: i64,
    old: Option<StoredParticipant>,
) -> EngineResult<Vec<Event>> {
    let participant = match (old.clone(), mode) {
        (Some(_), ParticipantWrite::Create) => return Ok(Vec::new()),
        (None, ParticipantWrite::Edit) => {
            return Err(not_found(format!(
                "user {user} is not a participant of conversation {conversation}"
            )));
        }
        (Some(mut p), _) => {
            params
                .access
                .apply_or(&mut p.record.access, Access::default);
            params
                .notify
                .apply_or(&mut p.record.notify, Notify::default);
            p
        }
        (None, _) => {
            let Some(stored) = state.storage().conversation(conversation)? else {
                return Err(not_found(format!(
                    "conversation {conversation} does not exist"
                )));
            };
            let mut participant = StoredParticipant {
                record: ParticipantRecord {
                    conversation_id: conversation.clone(),
                    user_id: user.clone(),
                    access: params.access.into_option().unwrap_or_default(),
                    notify: params.notify.into_option().unwrap_or_default(),
                    joined_at: now,
                },
                read_until: 0,
                marked_unread: false,
                read_base: 0,
                sent_since_read: 0,
            };
            unread::join(state.storage(), &stored, &mut participant)?;
            participant
        }
    };
    if old.as_ref() == Some(&participant) {
        return Ok(Vec::new());
    }
    state.storage_mut().put_participant(participant)?;
    if old.is_none() {
        activity::joined(state.storage_mut(), conversation, user)?;
    }
    Ok(vec![Event::ParticipantChanged {
        conversation: conversation.clone(),
        user: user.clone(),
    }])
}

fn set_participant(
    state: &mut State,
    conversation: &ConversationId,
    user: &UserId,
    params: ParticipantParams,
    mode: ParticipantWrite,
) -> EngineResult<(Response, Vec<Event>)> {
    let storage = state.storage();
    if storage.conversation(conversation)?.is_none() {
        return Err(not_found(format!(
            "conversation {conversation} does not exist"
        )));
    }
    require_user(storage, user)?;
    let old = storage.participant(conversation, user)?;
    let now = state.now();
    let events = write_participant(state, conversation, user, params, mode, now, old)?;
    Ok((Response::Ack, events))
}

/// Removes `user` from `conversation`, if they participate.
pub(super) fn remove_participant(
    state: &mut State,
    conversation: &ConversationId,
    user: &UserId,
) -> EngineResult<Vec<Event>> {
    if state.storage().participant(conversation, user)?.is_none() {
        return Ok(Vec::new());
    }
    state.storage_mut().remove_participant(conversation, user)?;
    activity::left(state.storage_mut(), conversation)?;
    Ok(vec![Event::ParticipantRemoved {
        conversation: conversation.clone(),
        user: user.clone(),
    }])
}

fn mark(
    state: &mut State,
    me: &UserId,
    conversation: &ConversationId,
    unread: bool,
) -> EngineResult<(Response, Vec<Event>)> {
    // `policy::authorize` refused non-participants already; the row is what this changes.
    let Some(old) = state.storage().participant(conversation, me)? else {
        return Err(not_participant(conversation));
    };
    let mut participant = old.clone();
    participant.marked_unread = unread;
    if !unread && let Some(stored) = state.storage().conversation(conversation)? {
        let now = state.now();
        unread::mark_read(&stored, &mut participant, now);
    }
    state.storage_mut().put_participant(participant)?;
    let event = Event::ReadChanged {
        conversation: conversation.clone(),
        user: me.clone(),
    };
    Ok((Response::Ack, vec![event]))
}

/// Checks a message body: exactly one valid block, within the size limit.
pub(super) fn check_content(
    content: &[SendContentBlock],
    allow_links: bool,
) -> EngineResult<String> {
    let [block] = content else {
        return Err(invalid(format!(
            "a message must have exactly one content block, got {}",
            content.len()
        )));
    };
    validate_send(block, allow_links).map_err(|e| invalid(e.to_string()))?;
    if let SendContentBlock::File { file_token } = block {
        return Err(invalid(format!(
            "unknown file token {:?}",
            file_token.as_str()
        )));
    }
    let text = plaintext(&content_to_blocks(content));
    if text.len() > MAX_MESSAGE_TEXT_BYTES {
        return Err(EngineError::rejected(
            ErrorCode::LimitExceeded,
            format!(
                "message text is {} bytes, the limit is {MAX_MESSAGE_TEXT_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(text)
}

fn send(
    state: &mut State,
    me: &UserId,
    conversation: &ConversationId,
    message: WireSend,
) -> EngineResult<(Response, Vec<Event>)> {
    let storage = state.storage();
    if message.idempotency_key.is_empty() || message.idempotency_key.len() > 256 {
        return Err(invalid("the idempotency key must be 1 to 256 bytes"));
    }
    let key = message.idempotency_key.as_str();
    let plaintext = check_content(&message.content, false)?;
    if let Some(referenced) = &message.referenced_message
        && let Err(error) = check_reference(storage, conversation, referenced)
    {
        // A retry still gets its message if the referenced one went away since.
        return match storage.idempotent_send(me, key)? {
            Some(existing) => Ok((Response::Sent { message: existing }, Vec::new())),
            None => Err(error),
        };
    }
    let record = MessageRecord {
        id: MessageId::new("pending"),
        conversation_id: conversation.clone(),
        message_type: MessageType::UserMessage,
        sender_id: Some(me.clone()),
        custom: message.custom,
        created_at: 0,
        edited_at: None,
        referenced_message_id: message.referenced_message,
        origin: Origin::Rest,
        plaintext,
        reactions: Vec::new(),
        content: content_to_blocks(&message.content),
    };
    let (id, events) = insert_message(state, record, Some((me, key)))?;
    Ok((Response::Sent { message: id }, events))
}

/// A reply must reference a user message of the same conversation.
pub(super) fn check_reference(
    storage: &dyn Storage,
    conversation: &ConversationId,
    referenced: &MessageId,
) -> EngineResult<()> {
    match storage.message(referenced)? {
        Some((m, _)) if &m.conversation_id == conversation => {
            if m.message_type == MessageType::UserMessage {
                Ok(())
            } else {
                Err(invalid("only user messages can be replied to"))
            }
        }
        _ => Err(not_found(format!(
            "referenced message {referenced} is not in conversation {conversation}"
        ))),
    }
}

/// Stores a new message (its id and time assigned here) as its conversation's last message. With
/// an idempotency key (its sender's or scope's, and the key), a key that names a message
/// already returns that message and writes nothing.
pub(super) fn insert_message(
    state: &mut State,
    mut record: MessageRecord,
    idempotency: Option<(&UserId, &str)>,
) -> EngineResult<(MessageId, Vec<Event>)> {
    let conversation_id = record.conversation_id.clone();
    let Some(mut conversation) = state.storage().conversation(&conversation_id)? else {
        return Err(not_found(format!(
            "conversation {conversation_id} does not exist"
        )));
    };
    let id = message_id(state.storage().last_ordinal() + 1);
    if let Some((sender, key)) = idempotency
        && let Some(existing) = state
            .storage_mut()
            .claim_idempotent_send(sender, key, &id)?
    {
        return Ok((existing, Vec::new()));
    }
    let ordinal = state.storage_mut().next_ordinal()?;
    debug_assert_eq!(id, message_id(ordinal));
    let now = state.now();
    record.id = id.clone();
    record.created_at = now;
    let sender = match &record.sender_id {
        Some(sender) => state.storage().participant(&conversation_id, sender)?,
        None => None,
    };
    if let Some(sender) = unread::sent(&mut conversation, &record, sender) {
        state.storage_mut().put_participant(sender)?;
    }
    state.storage_mut().put_message(
        record,
        MessagePos {
            created_at: now,
            ordinal,
        },
    )?;
    conversation.record.last_message_id = Some(id.clone());
    state.storage_mut().put_conversation(conversation)?;
    activity::message_created(state.storage_mut(), &conversation_id, now)?;
    // A new message is also its conversation's new last message (see `touched_keys`).
    let events = vec![Event::MessageCreated {
        conversation: conversation_id,
        message: id.clone(),
    }];
    Ok((id, events))
}

pub(super) fn post_system_message(
    state: &mut State,
    conversation: &ConversationId,
    content: Vec<SendContentBlock>,
) -> EngineResult<(MessageId, Vec<Event>)> {
    let plaintext = check_content(&content, false)?;
    let record = MessageRecord {
        id: MessageId::new("pending"),
        conversation_id: conversation.clone(),
        message_type: MessageType::SystemMessage,
        sender_id: None,
        custom: Default::default(),
        created_at: 0,
        edited_at: None,
        referenced_message_id: None,
        origin: Origin::Rest,
        plaintext,
        reactions: Vec::new(),
        content: content_to_blocks(&content),
    };
    insert_message(state, record, None)
}

fn message_id(ordinal: u64) -> MessageId {
    MessageId::new(format!("msg_{ordinal}"))
}

/// The message `id` of `conversation`, if it exists.
fn message_in(
    storage: &dyn Storage,
    conversation: &ConversationId,
    id: &MessageId,
) -> EngineResult<Option<(MessageRecord, MessagePos)>> {
    Ok(storage
        .message(id)?
        .filter(|(m, _)| &m.conversation_id == conversation))
}

fn edit_message(
    state: &mut State,
    conversation: &ConversationId,
    id: &MessageId,
    params: EditParams,
) -> EngineResult<(Response, Vec<Event>)> {
    let Some((old, pos)) = message_in(state.storage(), conversation, id)? else {
        return Err(not_found(format!(
            "message {id} does not exist in {conversation}"
        )));
    };
    Ok((Response::Ack, apply_edit(state, old, pos, params, false)?))
}

/// Replaces a message's body and patches its custom fields.
pub(super) fn apply_edit(
    state: &mut State,
    old: MessageRecord,
    pos: MessagePos,
    params: EditParams,
    allow_links: bool,
) -> EngineResult<Vec<Event>> {
    let mut message = old.clone();
    if let Some(content) = params.content {
        message.plaintext = check_content(&content, allow_links)?;
        message.content = content_to_blocks(&content);
    }
    apply_custom(params.custom, &mut message.custom);
    if message == old {
        return Ok(Vec::new());
    }
    message.edited_at = Some(state.now());
    let event = Event::MessageChanged {
        conversation: message.conversation_id.clone(),
        message: message.id.clone(),
    };
    state.storage_mut().put_message(message, pos)?;
    Ok(vec![event])
}

fn delete_message(
    state: &mut State,
    conversation: &ConversationId,
    id: &MessageId,
) -> EngineResult<(Response, Vec<Event>)> {
    if message_in(state.storage(), conversation, id)?.is_none() {
        return Ok((Response::Ack, Vec::new()));
    }
    Ok((Response::Ack, remove_message(state, conversation, id)?))
}

/// The most reactions one `GetReactions` lists.
pub(crate) const MAX_REACTIONS_PAGE: u32 = 100;

/// Adds or removes `me`'s reaction to a message; both are idempotent (a removal from a
/// missing message too). The message record's counts change in the same write.
pub(super) fn react(
    state: &mut State,
    me: &UserId,
    conversation: &ConversationId,
    id: &MessageId,
    emoji: &str,
    add: bool,
) -> EngineResult<(Response, Vec<Event>)> {
    let emoji = normalize_emoji(emoji).map_err(|e| invalid(e.to_string()))?;
    let Some((mut message, pos)) = message_in(state.storage(), conversation, id)? else {
        return if add {
            Err(not_found(format!(
                "message {id} does not exist in {conversation}"
            )))
        } else {
            Ok((Response::Ack, Vec::new()))
        };
    };
    let existing = message.reactions.iter().position(|r| r.emoji == emoji);
    let had_reactions = !message.reactions.is_empty();
    if add {
        if existing.is_none() && message.reactions.len() >= MAX_REACTIONS_PER_MESSAGE {
            return Err(EngineError::rejected(
                ErrorCode::LimitExceeded,
                format!(
                    "message {id} already has {MAX_REACTIONS_PER_MESSAGE} distinct emoji, \
                     the most one message may carry"
                ),
            ));
        }
        let now = state.now();
        if !state.storage_mut().put_reaction(id, &emoji, me, now)? {
            return Ok((Response::Ack, Vec::new()));
        }
        match existing {
            Some(i) => message.reactions[i].count += 1,
            None => message.reactions.push(ReactionCount {
                emoji: emoji.clone(),
                count: 1,
            }),
        }
    } else {
        if !state.storage_mut().remove_reaction(id, &emoji, me)? {
            return Ok((Response::Ack, Vec::new()));
        }
        // A stored reaction implies its count: the record and the reactions change together.
        if let Some(i) = existing {
            message.reactions[i].count -= 1;
            if message.reactions[i].count == 0 {
                message.reactions.remove(i);
            }
        }
    }
    let reshaped = had_reactions == message.reactions.is_empty();
    state.storage_mut().put_message(message, pos)?;
    let event = Event::ReactionChanged {
        conversation: conversation.clone(),
        message: id.clone(),
        emoji,
        user: me.clone(),
        reshaped,
    };
    Ok((Response::Ack, vec![event]))
}

/// The first `limit` reactions to a message with `emoji`, oldest first; `None` unless the
/// message is in `conversation`.
pub(super) fn reactions(
    storage: &dyn Storage,
    conversation: &ConversationId,
    id: &MessageId,
    emoji: &str,
    limit: u32,
) -> EngineResult<Option<Vec<Reaction>>> {
    if !(1..=MAX_REACTIONS_PAGE).contains(&limit) {
        return Err(invalid(format!(
            "a reactions page holds 1 to {MAX_REACTIONS_PAGE} reactions, not {limit}"
        )));
    }
    let emoji = normalize_emoji(emoji).map_err(|e| invalid(e.to_string()))?;
    if message_in(storage, conversation, id)?.is_none() {
        return Ok(None);
    }
    let mut list = Vec::new();
    for (user, created_at) in storage.reactions(id, &emoji, limit as usize)? {
        // Users are never deleted, so each reactor exists.
        if let Some(user) = storage.user(&user)? {
            list.push(Reaction {
                user: user.public,
                created_at,
            });
        }
    }
    Ok(Some(list))
}

/// Deletes a message and, if it was the last one, points its conversation at the one before.
pub(super) fn remove_message(
    state: &mut State,
    conversation: &ConversationId,
    id: &MessageId,
) -> EngineResult<Vec<Event>> {
    if let Some((message, _)) = state.storage().message(id)? {
        let participants = state.storage().participants(conversation)?;
        for participant in unread::deleted(participants, &message) {
            state.storage_mut().put_participant(participant)?;
        }
    }
    state.storage_mut().remove_message(id)?;
    let mut events = vec![Event::MessageDeleted {
        conversation: conversation.clone(),
        message: id.clone(),
    }];
    if let Some(mut stored) = state.storage().conversation(conversation)?
        && stored.record.last_message_id.as_ref() == Some(id)
    {
        let newest = state.storage().messages_before(conversation, None, 1)?;
        stored.record.last_message_id = newest.into_iter().next().map(|(m, _)| m.id);
        state.storage_mut().put_conversation(stored)?;
        activity::last_message_changed(state.storage_mut(), conversation)?;
        events.push(Event::ConversationChanged {
            conversation: conversation.clone(),
        });
    }
    Ok(events)
}
