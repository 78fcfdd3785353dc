//! Who may change what: the one place that decides whether a user's request may run, under the
//! app's [`Policy`]. What a user may *see* is the same under both policies (participants see a
//! conversation, its participants and its messages; everyone sees users) and is decided where
//! snapshots are collected (`view`). The backend REST API is not a user and is never asked.

use super::{
    EngineResult, Storage,
    commands::{forbidden, not_participant},
    storage::StoredParticipant,
};
use crate::{
    model::{Access, ConversationId, MessageId, UserId},
    params::{ConversationParams, Patch},
    protocol::Request,
};

/// What users may change through their own sessions, chosen per app.
///
/// | A user may … | `Permissive` | `Restricted` |
/// |---|---|---|
/// | create and edit their own user | yes | yes |
/// | create or edit another user | yes | no (`FORBIDDEN`) |
/// | create a conversation (and join it with any access) | yes | yes |
/// | edit an existing conversation's subject, photo, welcome messages, custom fields | anyone (and joins it) | ReadWrite participants |
/// | join an existing conversation uninvited (`set` on it or on yourself as participant) | yes | no (`NOT_A_PARTICIPANT`) |
/// | raise their own access from Read to ReadWrite | yes | no (`FORBIDDEN`) |
/// | change their own notification setting, lower their own access, leave | participants | participants |
/// | add, edit or remove other participants | participants | ReadWrite participants |
/// | mark a conversation read or unread | participants | participants |
/// | react to messages (add or remove their own reactions) | participants | participants |
/// | send | ReadWrite participants | ReadWrite participants |
/// | edit or delete their own messages | ReadWrite participants | ReadWrite participants |
/// | edit or delete other users' messages | no | no |
///
/// Under both policies the first user to write a new conversation id creates that conversation
/// (as its ReadWrite participant): ids that users can guess before the backend creates them
/// (the members' ids alone) let a user create, and so join, a conversation meant for others.
///
/// A user's `role` gives no rights under either policy: under `Permissive` users may set
/// their own role, so a role that granted rights would be a way to take them. Moderation
/// (deleting anyone's messages, managing any conversation) is the backend's: the REST API may
/// do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// As TalkJS with "client-side conversation syncing" enabled: any user may join any
    /// conversation and edit any user. The default of an embedded [`Engine`](crate::Engine),
    /// whose app code is the only client.
    #[default]
    Permissive,
    /// Membership and users are the backend's to grant: users create conversations and invite
    /// others, but never join uninvited, never raise their own access and edit only their own
    /// user. The default of `talkstore-server`.
    Restricted,
}

/// Refuses `request` if `me` may not run it under `policy`. Reads, subscriptions and acks are
/// always allowed here (what they show is decided by `view`). Rules that are about the data
/// rather than about who asks (a user that must exist first, a missing message) are left to
/// the command.
pub(super) fn authorize(
    policy: Policy,
    storage: &dyn Storage,
    me: &UserId,
    request: &Request,
) -> EngineResult<()> {
    let restricted = match policy {
        Policy::Permissive => false,
        Policy::Restricted => true,
    };
    match request {
        Request::Authenticate { .. }
        | Request::Sync
        | Request::Subscribe { .. }
        | Request::LoadMore { .. }
        | Request::Unsubscribe { .. }
        | Request::GetUser { .. }
        | Request::GetConversation { .. }
        | Request::GetParticipant { .. }
        | Request::GetMessage { .. }
        | Request::GetReactions { .. } => Ok(()),
        Request::SetUser {
            user, create_only, ..
        } => {
            // `create_if_not_exists` of an existing user writes nothing.
            if !restricted || user == me || (*create_only && storage.user(user)?.is_some()) {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "users may only change their own user record, not {user}"
                )))
            }
        }
        Request::SetConversation {
            conversation,
            params,
            create_only,
        } => {
            if !restricted || storage.conversation(conversation)?.is_none() {
                return Ok(());
            }
            let mine = member(storage, conversation, me)?;
            if *create_only {
                return Ok(()); // already a participant: nothing is written
            }
            if changes_shared_fields(params) {
                read_write(&mine, conversation, "edit it")?;
            }
            no_raise(&mine, conversation, &params.access)
        }
        Request::SetParticipant {
            conversation,
            user,
            params,
            ..
        } => {
            if user != me {
                let mine = member(storage, conversation, me)?;
                return if restricted {
                    read_write(&mine, conversation, "add or change participants")
                } else {
                    Ok(())
                };
            }
            if !restricted {
                return Ok(());
            }
            let mine = member(storage, conversation, me)?;
            no_raise(&mine, conversation, &params.access)
        }
        Request::DeleteParticipant { conversation, user } => {
            if user == me {
                return Ok(()); // leaving
            }
            let mine = member(storage, conversation, me)?;
            if restricted {
                read_write(&mine, conversation, "remove participants")?;
            }
            Ok(())
        }
        Request::MarkRead { conversation }
        | Request::MarkUnread { conversation }
        | Request::React { conversation, .. } => member(storage, conversation, me).map(drop),
        Request::Send { conversation, .. } => {
            read_write(&member(storage, conversation, me)?, conversation, "send")
        }
        Request::EditMessage {
            conversation,
            message,
            ..
        }
        | Request::DeleteMessage {
            conversation,
            message,
        } => {
            let mine = member(storage, conversation, me)?;
            read_write(&mine, conversation, "change messages")?;
            own_message(storage, me, conversation, message)
        }
    }
}

/// `me`'s participation in `conversation`, or `NOT_A_PARTICIPANT`.
fn member(
    storage: &dyn Storage,
    conversation: &ConversationId,
    me: &UserId,
) -> EngineResult<StoredParticipant> {
    storage
        .participant(conversation, me)?
        .ok_or_else(|| not_participant(conversation))
}

fn read_write(
    mine: &StoredParticipant,
    conversation: &ConversationId,
    to: &str,
) -> EngineResult<()> {
    if mine.record.access == Access::ReadWrite {
        Ok(())
    } else {
        Err(forbidden(format!(
            "you have Read access to conversation {conversation} and cannot {to}"
        )))
    }
}

/// Refuses a change of `me`'s own access from Read to ReadWrite.
fn no_raise(
    mine: &StoredParticipant,
    conversation: &ConversationId,
    access: &Patch<Access>,
) -> EngineResult<()> {
    let wanted = match access {
        Patch::Unchanged => mine.record.access,
        Patch::Reset => Access::default(),
        Patch::Set(access) => *access,
    };
    if mine.record.access == Access::Read && wanted == Access::ReadWrite {
        Err(forbidden(format!(
            "you cannot raise your own access to conversation {conversation}"
        )))
    } else {
        Ok(())
    }
}

/// Whether `params` change what all participants share (not just `me`'s access and notify).
fn changes_shared_fields(params: &ConversationParams) -> bool {
    !(params.subject.is_unchanged()
        && params.photo_url.is_unchanged()
        && params.welcome_messages.is_unchanged()
        && params.custom.is_unchanged())
}

/// Refuses a change to someone else's message; a missing message is the command's to answer.
fn own_message(
    storage: &dyn Storage,
    me: &UserId,
    conversation: &ConversationId,
    id: &MessageId,
) -> EngineResult<()> {
    match storage.message(id)? {
        Some((m, _)) if &m.conversation_id == conversation && m.sender_id.as_ref() != Some(me) => {
            Err(forbidden(format!("message {id} was not sent by you")))
        }
        _ => Ok(()),
    }
}
