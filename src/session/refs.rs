//! Refs: cheap handles holding ids, through which every operation goes.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use super::{
    SessionInner,
    subscription::{
        ConversationSubscription, ListSubscription, MessageListSubscription, OnSnapshot,
        ParticipantListSubscription, ParticipantSubscription, ReactionListSubscription,
        Subscription, UserSubscription,
    },
};
use crate::{
    Error,
    model::{
        ConversationId, ConversationSnapshot, MessageFilter, MessageId, MessageSnapshot,
        ParticipantSnapshot, SingleReactionSnapshot, UserId, UserSnapshot, normalize_emoji,
        validate_send,
    },
    params::{ConversationParams, EditParams, ParticipantParams, SendParams, UserParams, WireSend},
    protocol::{ParticipantWrite, Request, Response, Target},
    store::Node,
};

macro_rules! node_as {
    ($node:expr, $variant:ident) => {
        match $node {
            Some(Node::$variant(x)) => Some(x),
            _ => None,
        }
    };
}

fn single<X: Clone>(rows: Option<&imbl::Vector<Arc<X>>>) -> Option<Arc<X>> {
    rows.and_then(|rows| rows.front().cloned())
}

fn list<X: Clone>(rows: Option<&imbl::Vector<Arc<X>>>) -> Option<imbl::Vector<Arc<X>>> {
    rows.cloned()
}

async fn ack(session: &Arc<SessionInner>, request: Request) -> Result<(), Error> {
    session.request(request).await.map(drop)
}

/// A reference to a user. Holds ids only; creating one does no IO.
///
/// Refs are equal when they point at the same user in the same session.
#[derive(Clone)]
pub struct UserRef {
    session: Arc<SessionInner>,
    id: UserId,
}

impl PartialEq for UserRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.session, &other.session) && self.id == other.id
    }
}

impl std::fmt::Debug for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UserRef").field(&self.id).finish()
    }
}

impl UserRef {
    pub(crate) fn new(session: Arc<SessionInner>, id: UserId) -> Self {
        Self { session, id }
    }

    /// The user's id.
    pub fn id(&self) -> &UserId {
        &self.id
    }

    /// The user's public data, or `None` if the user does not exist.
    pub async fn get(&self) -> Result<Option<Arc<UserSnapshot>>, Error> {
        let node = self
            .session
            .get(Request::GetUser {
                user: self.id.clone(),
            })
            .await?;
        Ok(node_as!(node, User))
    }

    /// Creates the user (then `name` is required) or patches the given fields.
    pub async fn set(&self, params: UserParams) -> Result<(), Error> {
        let request = Request::SetUser {
            user: self.id.clone(),
            params,
            create_only: false,
        };
        ack(&self.session, request).await
    }

    /// Creates the user with `params` (`name` required) unless they exist; an existing user
    /// is left unchanged.
    pub async fn create_if_not_exists(&self, params: UserParams) -> Result<(), Error> {
        let request = Request::SetUser {
            user: self.id.clone(),
            params,
            create_only: true,
        };
        ack(&self.session, request).await
    }

    /// Subscribes to the user: `None` while they do not exist; emits on creation and every
    /// change.
    pub fn subscribe(&self) -> UserSubscription {
        self.subscribe_with(None)
    }

    /// Like [`Self::subscribe`], calling `on_snapshot` on every change.
    pub fn subscribe_with(
        &self,
        on_snapshot: Option<OnSnapshot<Option<Arc<UserSnapshot>>>>,
    ) -> UserSubscription {
        let target = Target::User {
            id: self.id.clone(),
        };
        Subscription::new(self.session.subscribe(target, single, on_snapshot))
    }
}

/// A reference to a conversation as the current user sees it: it does not exist for you unless
/// you participate. Holds ids only; creating one does no IO.
#[derive(Clone)]
pub struct ConversationRef {
    session: Arc<SessionInner>,
    id: ConversationId,
}

impl PartialEq for ConversationRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.session, &other.session) && self.id == other.id
    }
}

impl std::fmt::Debug for ConversationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConversationRef").field(&self.id).finish()
    }
}

static SEND_KEYS: AtomicU64 = AtomicU64::new(0);

/// A random prefix per process, so that idempotency keys of different processes (or of one
/// restarted process) never collide.
static SEND_KEY_PREFIX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use std::hash::{BuildHasher, RandomState};
    let (a, b) = (RandomState::new(), RandomState::new());
    format!(
        "{:016x}{:016x}",
        a.hash_one(std::process::id()),
        b.hash_one(0u8)
    )
});

impl ConversationRef {
    pub(crate) fn new(session: Arc<SessionInner>, id: ConversationId) -> Self {
        Self { session, id }
    }

    /// The conversation's id.
    pub fn id(&self) -> &ConversationId {
        &self.id
    }

    /// A reference to a participant of this conversation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] if `user` is empty.
    pub fn participant(&self, user: impl AsRef<str>) -> Result<ParticipantRef, Error> {
        Ok(ParticipantRef {
            session: self.session.clone(),
            conversation: self.id.clone(),
            user: UserId::try_new(user)?,
        })
    }

    /// A reference to a message of this conversation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] if `id` is empty.
    pub fn message(&self, id: impl AsRef<str>) -> Result<MessageRef, Error> {
        Ok(MessageRef {
            session: self.session.clone(),
            conversation: self.id.clone(),
            id: MessageId::try_new(id)?,
        })
    }

    /// The conversation, or `None` if it does not exist or you do not participate.
    pub async fn get(&self) -> Result<Option<Arc<ConversationSnapshot>>, Error> {
        let node = self.session.get(Request::GetConversation {
            conversation: self.id.clone(),
        });
        Ok(node_as!(node.await?, Conversation))
    }

    /// Creates the conversation if needed, joins you if needed, and patches its fields and your
    /// own access and notify settings.
    pub async fn set(&self, params: ConversationParams) -> Result<(), Error> {
        let conversation = self.id.clone();
        ack(
            &self.session,
            Request::SetConversation {
                conversation,
                params,
                create_only: false,
            },
        )
        .await
    }

    /// Creates the conversation with `params` (`None`: the defaults of
    /// [`ConversationParams`]) and joins you, each only if needed; succeeds unchanged if both
    /// already hold.
    pub async fn create_if_not_exists(
        &self,
        params: impl Into<Option<ConversationParams>>,
    ) -> Result<(), Error> {
        let conversation = self.id.clone();
        let params = params.into().unwrap_or_default();
        ack(
            &self.session,
            Request::SetConversation {
                conversation,
                params,
                create_only: true,
            },
        )
        .await
    }

    /// Marks every message up to now as read.
    pub async fn mark_as_read(&self) -> Result<(), Error> {
        ack(
            &self.session,
            Request::MarkRead {
                conversation: self.id.clone(),
            },
        )
        .await
    }

    /// Marks the conversation unread (`is_unread` becomes true even with no unread messages).
    pub async fn mark_as_unread(&self) -> Result<(), Error> {
        ack(
            &self.session,
            Request::MarkUnread {
                conversation: self.id.clone(),
            },
        )
        .await
    }

    /// Sends a message: markup text (`"*hi*"`) or a [`SendParams`] with content, custom
    /// fields and a replied-to message. A retry after a dropped connection never duplicates.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidContent`] before sending if the content is not allowed (links, action
    /// buttons, empty text, bad coordinates); a rejection if you do not participate, have Read
    /// access, or reply to a message of another conversation.
    pub async fn send(&self, params: impl Into<SendParams>) -> Result<MessageRef, Error> {
        let params = params.into();
        let content = params.body.into_content();
        for block in &content {
            validate_send(block, false)?;
        }
        let key = format!(
            "{}-{}",
            *SEND_KEY_PREFIX,
            SEND_KEYS.fetch_add(1, Ordering::Relaxed)
        );
        let message = WireSend {
            content,
            custom: params.custom,
            referenced_message: params.referenced_message,
            idempotency_key: key,
        };
        let request = Request::Send {
            conversation: self.id.clone(),
            message,
        };
        match self.session.request(request).await? {
            Response::Sent { message } => Ok(MessageRef {
                session: self.session.clone(),
                conversation: self.id.clone(),
                id: message,
            }),
            other => Err(Error::Rejected {
                action: format!("Send message to conversation {}", self.id),
                code: crate::ErrorCode::Internal,
                reasons: vec![format!("unexpected response {other:?}")],
            }),
        }
    }

    /// Subscribes to the conversation: `None` unless you participate; emits on every change,
    /// including nested ones (`last_message.referenced_message.sender.name`).
    pub fn subscribe(&self) -> ConversationSubscription {
        self.subscribe_with(None)
    }

    /// Like [`Self::subscribe`], calling `on_snapshot` on every change.
    pub fn subscribe_with(
        &self,
        on_snapshot: Option<OnSnapshot<Option<Arc<ConversationSnapshot>>>>,
    ) -> ConversationSubscription {
        let target = Target::Conversation {
            id: self.id.clone(),
        };
        Subscription::new(self.session.subscribe(target, single, on_snapshot))
    }

    /// Subscribes to the messages, newest first: the 30 newest, then every new one;
    /// `load_more` takes 1..=100 (default 30). `None` unless you participate. An optional
    /// filter keeps only matching messages.
    pub fn subscribe_messages(&self, filter: Option<MessageFilter>) -> MessageListSubscription {
        self.subscribe_messages_with(filter, None)
    }

    /// Like [`Self::subscribe_messages`], calling `on_snapshot` on every change.
    pub fn subscribe_messages_with(
        &self,
        filter: Option<MessageFilter>,
        on_snapshot: Option<OnSnapshot<Option<imbl::Vector<Arc<MessageSnapshot>>>>>,
    ) -> MessageListSubscription {
        let target = Target::Messages {
            conversation: self.id.clone(),
            filter,
        };
        ListSubscription::new(self.session.subscribe(target, list, on_snapshot))
    }

    /// Subscribes to the participants, most recently joined first: the first 10, then every
    /// new one; `load_more` takes 1..=50 (default 10). `None` unless you participate.
    pub fn subscribe_participants(&self) -> ParticipantListSubscription {
        self.subscribe_participants_with(None)
    }

    /// Like [`Self::subscribe_participants`], calling `on_snapshot` on every change.
    pub fn subscribe_participants_with(
        &self,
        on_snapshot: Option<OnSnapshot<Option<imbl::Vector<Arc<ParticipantSnapshot>>>>>,
    ) -> ParticipantListSubscription {
        let target = Target::Participants {
            conversation: self.id.clone(),
        };
        ListSubscription::new(self.session.subscribe(target, list, on_snapshot))
    }
}

/// A reference to one user's participation in one conversation.
#[derive(Clone)]
pub struct ParticipantRef {
    session: Arc<SessionInner>,
    conversation: ConversationId,
    user: UserId,
}

impl PartialEq for ParticipantRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.session, &other.session)
            && self.conversation == other.conversation
            && self.user == other.user
    }
}

impl std::fmt::Debug for ParticipantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ParticipantRef")
            .field(&self.conversation)
            .field(&self.user)
            .finish()
    }
}

impl ParticipantRef {
    /// The participating user's id.
    pub fn user_id(&self) -> &UserId {
        &self.user
    }

    /// The conversation's id.
    pub fn conversation_id(&self) -> &ConversationId {
        &self.conversation
    }

    /// The participant, or `None` if the user does not participate.
    ///
    /// # Errors
    ///
    /// A `NOT_A_PARTICIPANT` rejection if you do not participate and ask about someone else.
    pub async fn get(&self) -> Result<Option<Arc<ParticipantSnapshot>>, Error> {
        let request = Request::GetParticipant {
            conversation: self.conversation.clone(),
            user: self.user.clone(),
        };
        Ok(node_as!(self.session.get(request).await?, Participant))
    }

    async fn write(&self, params: ParticipantParams, mode: ParticipantWrite) -> Result<(), Error> {
        let request = Request::SetParticipant {
            conversation: self.conversation.clone(),
            user: self.user.clone(),
            params,
            mode,
        };
        ack(&self.session, request).await
    }

    /// Adds the user (who must exist) or updates their settings.
    pub async fn set(&self, params: ParticipantParams) -> Result<(), Error> {
        self.write(params, ParticipantWrite::Upsert).await
    }

    /// Updates the settings of an existing participant; fails if they do not participate.
    pub async fn edit(&self, params: ParticipantParams) -> Result<(), Error> {
        self.write(params, ParticipantWrite::Edit).await
    }

    /// Adds the user with `params` (`None`: the defaults of [`ParticipantParams`]) unless they
    /// participate already.
    pub async fn create_if_not_exists(
        &self,
        params: impl Into<Option<ParticipantParams>>,
    ) -> Result<(), Error> {
        let params = params.into().unwrap_or_default();
        self.write(params, ParticipantWrite::Create).await
    }

    /// Removes the user from the conversation; succeeds if they are not in it. Their live
    /// updates for the conversation stop at once.
    pub async fn delete(&self) -> Result<(), Error> {
        let request = Request::DeleteParticipant {
            conversation: self.conversation.clone(),
            user: self.user.clone(),
        };
        ack(&self.session, request).await
    }

    /// Subscribes to the participant: `None` unless both you and they participate.
    pub fn subscribe(&self) -> ParticipantSubscription {
        self.subscribe_with(None)
    }

    /// Like [`Self::subscribe`], calling `on_snapshot` on every change.
    pub fn subscribe_with(
        &self,
        on_snapshot: Option<OnSnapshot<Option<Arc<ParticipantSnapshot>>>>,
    ) -> ParticipantSubscription {
        let target = Target::Participant {
            conversation: self.conversation.clone(),
            user: self.user.clone(),
        };
        Subscription::new(self.session.subscribe(target, single, on_snapshot))
    }
}

/// A reference to a message.
#[derive(Clone)]
pub struct MessageRef {
    session: Arc<SessionInner>,
    conversation: ConversationId,
    id: MessageId,
}

impl PartialEq for MessageRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.session, &other.session)
            && self.conversation == other.conversation
            && self.id == other.id
    }
}

impl std::fmt::Debug for MessageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MessageRef")
            .field(&self.conversation)
            .field(&self.id)
            .finish()
    }
}

impl MessageRef {
    /// The message's id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The conversation's id.
    pub fn conversation_id(&self) -> &ConversationId {
        &self.conversation
    }

    /// The message, or `None` if it or the conversation does not exist or you do not
    /// participate.
    pub async fn get(&self) -> Result<Option<Arc<MessageSnapshot>>, Error> {
        let request = Request::GetMessage {
            conversation: self.conversation.clone(),
            message: self.id.clone(),
        };
        Ok(node_as!(self.session.get(request).await?, Message))
    }

    /// Edits your own message: new text (markup) or content replaces the body; `custom`
    /// patches.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidContent`] before sending for content that may not be sent; a rejection
    /// if the message is missing or not yours.
    pub async fn edit(&self, params: impl Into<EditParams>) -> Result<(), Error> {
        let params = params.into();
        for block in params.content.iter().flatten() {
            validate_send(block, false)?;
        }
        let request = Request::EditMessage {
            conversation: self.conversation.clone(),
            message: self.id.clone(),
            params,
        };
        ack(&self.session, request).await
    }

    /// Deletes your own message; succeeds if it is already gone.
    pub async fn delete(&self) -> Result<(), Error> {
        let request = Request::DeleteMessage {
            conversation: self.conversation.clone(),
            message: self.id.clone(),
        };
        ack(&self.session, request).await
    }

    /// The reactions to this message with `emoji`. Creating the ref does no IO and checks
    /// nothing: its operations check the emoji (see [`ReactionsRef`]).
    pub fn reactions(&self, emoji: impl Into<String>) -> ReactionsRef {
        ReactionsRef {
            message: self.clone(),
            emoji: emoji.into(),
        }
    }
}

/// The reactions to one message with one emoji. Holds ids only; creating one does no IO.
///
/// # Emoji
///
/// An emoji is one Unicode emoji (a single emoji of Unicode 17.0, skin tones and ZWJ
/// sequences included, such as `"👍🏽"` or `"👩‍👩‍👧"`), stored in its fully-qualified form (so
/// `"\u{2764}"` and `"❤️"` are the same reaction), or a custom emoji `:name:` whose name is 1
/// to [`MAX_CUSTOM_EMOJI_NAME`](crate::MAX_CUSTOM_EMOJI_NAME) ASCII letters, digits, `_`, `+`
/// or `-` (case-sensitive). Anything else fails with [`Error::InvalidEmoji`] before it is
/// sent.
///
/// # Who may react
///
/// Every participant, Read access included (a reaction is not a message); others are refused
/// with `NOT_A_PARTICIPANT`. Each user reacts at most once per message and emoji, so repeated
/// and concurrent adds count once. A message carries at most
/// [`MAX_REACTIONS_PER_MESSAGE`](crate::MAX_REACTIONS_PER_MESSAGE) distinct emoji: adding
/// another is refused with `LIMIT_EXCEEDED` (more users may still react with the ones it has).
/// Deleting a message deletes its reactions.
#[derive(Clone, Debug, PartialEq)]
pub struct ReactionsRef {
    message: MessageRef,
    emoji: String,
}

/// How many reactions [`ReactionsRef::get_first_reactions`] returns at most.
const FIRST_REACTIONS: u32 = 10;

impl ReactionsRef {
    /// The emoji, as given.
    pub fn emoji(&self) -> &str {
        &self.emoji
    }

    /// The message reacted to.
    pub fn message(&self) -> &MessageRef {
        &self.message
    }

    /// Adds your reaction; succeeds unchanged if you already reacted with this emoji.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEmoji`]; a rejection if the message does not exist (`NOT_FOUND`), you
    /// do not participate, or the message has the most distinct emoji already and not this one.
    pub async fn add(&self) -> Result<(), Error> {
        self.react(true).await
    }

    /// Removes your reaction; succeeds if there is none (or no message).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEmoji`]; a rejection if you do not participate.
    pub async fn remove(&self) -> Result<(), Error> {
        self.react(false).await
    }

    async fn react(&self, add: bool) -> Result<(), Error> {
        let request = Request::React {
            conversation: self.message.conversation.clone(),
            message: self.message.id.clone(),
            emoji: normalize_emoji(&self.emoji)?,
            add,
        };
        ack(&self.message.session, request).await
    }

    /// Subscribes to the users who reacted with this emoji, oldest first: the first 10;
    /// `load_more` takes 1..=100 (default 30). Reactions newer than the window's last join it
    /// only once it holds them all ([`ListSubscription::loaded_all`]), like older messages in
    /// a message window; a removed reaction leaves at once. `None` unless the message exists
    /// and you participate. An emoji that is not one ends the subscription with an
    /// `INVALID_REQUEST` error.
    ///
    /// # Performance
    ///
    /// Starting (and a reconnect, or the message's deletion) reads every reaction with this
    /// emoji once; each later reaction costs O(1) reads.
    pub fn subscribe(&self) -> ReactionListSubscription {
        self.subscribe_with(None)
    }

    /// Like [`Self::subscribe`], calling `on_snapshot` on every change.
    pub fn subscribe_with(
        &self,
        on_snapshot: Option<OnSnapshot<Option<imbl::Vector<Arc<SingleReactionSnapshot>>>>>,
    ) -> ReactionListSubscription {
        let target = Target::Reactions {
            conversation: self.message.conversation.clone(),
            message: self.message.id.clone(),
            emoji: normalize_emoji(&self.emoji).unwrap_or_else(|_| self.emoji.clone()),
        };
        let session = &self.message.session;
        ListSubscription::new(session.subscribe(target, list, on_snapshot))
    }

    /// The first 10 users who reacted with this emoji, oldest first (empty if none did), as
    /// of the read; `None` if the message does not exist or you do not participate.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEmoji`] before anything is sent.
    pub async fn get_first_reactions(&self) -> Result<Option<Vec<SingleReactionSnapshot>>, Error> {
        let request = Request::GetReactions {
            conversation: self.message.conversation.clone(),
            message: self.message.id.clone(),
            emoji: normalize_emoji(&self.emoji)?,
            limit: FIRST_REACTIONS,
        };
        match self.message.session.request(request).await? {
            Response::Reactions { reactions } => Ok(reactions.map(|list| {
                list.into_iter()
                    .map(|r| SingleReactionSnapshot {
                        user: Arc::new(r.user),
                        created_at: r.created_at,
                    })
                    .collect()
            })),
            _ => Ok(None),
        }
    }
}
