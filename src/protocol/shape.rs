//! What each snapshot reads: the one definition of a snapshot's shape, shared by the engine
//! (which records a client must hold, [`walk`]) and the client store (which records it
//! assembles a snapshot from, `store::assemble`). A nested field added to a snapshot is added
//! here, to the links of the record that points to it; both sides then follow it.
//!
//! | Root | Reads besides its own record |
//! |---|---|
//! | user | nothing |
//! | conversation C | read state C, the viewer's participant (C, me) (not its user), and, if both exist, the last message with all it reads |
//! | message M | its sender, its referenced message R read the same way but for R's own reference, and, if M has reactions, the viewer's own reactions to M |
//! | participant (C, U) | user U |
//! | reaction (M, emoji, U) | user U |

use super::{EntityKey, Record};
use crate::model::{ConversationRecord, MessageRecord, ParticipantRecord, ReactionRecord, UserId};

/// The keys a conversation snapshot reads besides the conversation.
pub(crate) struct ConversationLinks {
    /// Read shallowly: the record alone.
    pub(crate) read_state: EntityKey,
    /// The viewer's participation, read shallowly (its user is not read).
    pub(crate) mine: EntityKey,
    /// Read with everything a message snapshot reads.
    pub(crate) last_message: Option<EntityKey>,
}

pub(crate) fn conversation(c: &ConversationRecord, me: &UserId) -> ConversationLinks {
    ConversationLinks {
        read_state: EntityKey::read_state(&c.id),
        mine: EntityKey::participant(&c.id, me),
        last_message: c.last_message_id.as_ref().map(EntityKey::message),
    }
}

/// The keys a message snapshot reads besides the message.
pub(crate) struct MessageLinks {
    pub(crate) sender: Option<EntityKey>,
    /// Read as a referenced message (see [`referenced`]).
    pub(crate) referenced: Option<EntityKey>,
    /// The viewer's reactions, read shallowly; only while the message has any (a missing
    /// record: the viewer reacted with none of them).
    pub(crate) reacted: Option<EntityKey>,
}

pub(crate) fn message(m: &MessageRecord) -> MessageLinks {
    MessageLinks {
        sender: m.sender_id.as_ref().map(EntityKey::user),
        referenced: m.referenced_message_id.as_ref().map(EntityKey::message),
        reacted: (!m.reactions.is_empty()).then(|| EntityKey::reacted(&m.id)),
    }
}

/// What a referenced message's snapshot reads besides the message: what a message reads
/// but its own reference, which is not followed.
pub(crate) fn referenced(r: &MessageRecord) -> MessageLinks {
    MessageLinks {
        referenced: None,
        ..message(r)
    }
}

/// What a reaction snapshot reads besides the reaction: its user.
pub(crate) fn reaction(r: &ReactionRecord) -> EntityKey {
    EntityKey::user(&r.user_id)
}

/// What a participant snapshot reads besides the participation: its user.
pub(crate) fn participant(p: &ParticipantRecord) -> EntityKey {
    EntityKey::user(&p.user_id)
}

/// Visits every key the snapshot rooted at `key` reads (each root and nested key once, in
/// the order assembly reads them), fetching records through `get` (`None`: missing). Returns
/// whether the root record exists.
///
/// # Errors
///
/// The first error of `get`.
pub(crate) fn walk<R: AsRef<Record>, E>(
    key: &EntityKey,
    me: &UserId,
    get: &mut dyn FnMut(&EntityKey) -> Result<Option<R>, E>,
    visit: &mut dyn FnMut(&EntityKey),
) -> Result<bool, E> {
    visit(key);
    let Some(record) = get(key)? else {
        return Ok(false);
    };
    match record.as_ref() {
        Record::User(_) | Record::ReadState(_) | Record::Reacted(_) => {}
        Record::Conversation(c) => {
            // Without both, there is no snapshot to show the last message in.
            let links = conversation(c, me);
            let mut complete = true;
            for shallow in [&links.read_state, &links.mine] {
                visit(shallow);
                complete &= get(shallow)?.is_some();
            }
            if let Some(last) = links.last_message.as_ref().filter(|_| complete) {
                walk(last, me, get, visit)?;
            }
        }
        Record::Message(m) => walk_message(&message(m), me, get, visit)?,
        Record::Participant(p) => {
            walk(&participant(p), me, get, visit)?;
        }
        Record::Reaction(r) => {
            walk(&reaction(r), me, get, visit)?;
        }
    }
    Ok(true)
}

/// [`walk`]'s part for the links of a message or referenced message.
fn walk_message<R: AsRef<Record>, E>(
    links: &MessageLinks,
    me: &UserId,
    get: &mut dyn FnMut(&EntityKey) -> Result<Option<R>, E>,
    visit: &mut dyn FnMut(&EntityKey),
) -> Result<(), E> {
    if let Some(sender) = &links.sender {
        walk(sender, me, get, visit)?;
    }
    if let Some(r) = &links.referenced {
        visit(r);
        if let Some(record) = get(r)?
            && let Record::Message(r) = record.as_ref()
        {
            walk_message(&referenced(r), me, get, visit)?;
        }
    }
    if let Some(reacted) = &links.reacted {
        visit(reacted);
        get(reacted)?;
    }
    Ok(())
}
