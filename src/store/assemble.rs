//! Snapshot assembly from normalized records, shared by the live store and one-off reads.

use std::{collections::HashMap, sync::Arc};

use crate::{
    model::{
        ConversationRecord, ConversationSnapshot, MessageRecord, MessageSnapshot,
        ParticipantRecord, ParticipantSnapshot, ReadStateRecord, ReferencedMessageSnapshot, UserId,
        UserSnapshot,
    },
    protocol::{EntityKey, Record},
};

/// A record as the store keeps it: cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rec {
    User(Arc<UserSnapshot>),
    Conversation(Arc<ConversationRecord>),
    Participant(Arc<ParticipantRecord>),
    ReadState(Arc<ReadStateRecord>),
    Message(Arc<MessageRecord>),
}

impl From<Record> for Rec {
    fn from(record: Record) -> Self {
        match record {
            Record::User(r) => Rec::User(Arc::new(r)),
            Record::Conversation(r) => Rec::Conversation(Arc::new(r)),
            Record::Participant(r) => Rec::Participant(Arc::new(r)),
            Record::ReadState(r) => Rec::ReadState(Arc::new(r)),
            Record::Message(r) => Rec::Message(Arc::new(r)),
        }
    }
}

impl Rec {
    /// Whether two records hold the same data (compares pointers first).
    pub(crate) fn same(&self, record: &Record) -> bool {
        match (self, record) {
            (Rec::User(a), Record::User(b)) => **a == *b,
            (Rec::Conversation(a), Record::Conversation(b)) => **a == *b,
            (Rec::Participant(a), Record::Participant(b)) => **a == *b,
            (Rec::ReadState(a), Record::ReadState(b)) => **a == *b,
            (Rec::Message(a), Record::Message(b)) => **a == *b,
            _ => false,
        }
    }
}

/// An assembled snapshot of one entity.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    User(Arc<UserSnapshot>),
    Conversation(Arc<ConversationSnapshot>),
    Message(Arc<MessageSnapshot>),
    Participant(Arc<ParticipantSnapshot>),
}

/// Where assembly reads records, and optionally caches nodes.
pub(crate) trait Lookup {
    /// The record behind `key`, if present.
    fn record(&self, key: &EntityKey) -> Option<Rec>;

    /// Returns the node for `key`, building it with `build` unless a valid cached node
    /// exists. Appends the keys the node read to `deps`.
    fn node(
        &self,
        key: &EntityKey,
        deps: &mut Vec<EntityKey>,
        build: &dyn Fn(&Self, &mut Vec<EntityKey>) -> Option<Node>,
    ) -> Option<Node>;

    /// The viewing user.
    fn me(&self) -> &UserId;
}

/// Assembles the snapshot rooted at `key`, appending every key it reads to `deps`.
pub(crate) fn node<L: Lookup>(l: &L, key: &EntityKey, deps: &mut Vec<EntityKey>) -> Option<Node> {
    match key {
        EntityKey::User { id } => user(l, id, deps).map(Node::User),
        EntityKey::Conversation { .. } => l.node(key, deps, &|l, deps| conversation(l, key, deps)),
        EntityKey::Message { .. } => l.node(key, deps, &|l, deps| message(l, key, deps)),
        EntityKey::Participant { .. } => l.node(key, deps, &|l, deps| participant(l, key, deps)),
        EntityKey::ReadState { .. } => None,
    }
}

fn user<L: Lookup>(l: &L, id: &UserId, deps: &mut Vec<EntityKey>) -> Option<Arc<UserSnapshot>> {
    let key = EntityKey::user(id);
    let record = l.record(&key);
    deps.push(key);
    match record {
        Some(Rec::User(user)) => Some(user),
        _ => None,
    }
}

fn message_record<L: Lookup>(l: &L, key: &EntityKey) -> Option<Arc<MessageRecord>> {
    match l.record(key) {
        Some(Rec::Message(m)) => Some(m),
        _ => None,
    }
}

fn message<L: Lookup>(l: &L, key: &EntityKey, deps: &mut Vec<EntityKey>) -> Option<Node> {
    deps.push(key.clone());
    let m = message_record(l, key)?;
    let sender = m.sender_id.as_ref().and_then(|s| user(l, s, deps));
    let referenced_message = m.referenced_message_id.as_ref().and_then(|id| {
        let key = EntityKey::message(id);
        let r = message_record(l, &key);
        deps.push(key);
        let r = r?;
        Some(Arc::new(ReferencedMessageSnapshot {
            id: r.id.clone(),
            sender: r.sender_id.as_ref().and_then(|s| user(l, s, deps)),
            custom: r.custom.clone(),
            created_at: r.created_at,
            edited_at: r.edited_at,
            referenced_message_id: r.referenced_message_id.clone(),
            origin: r.origin,
            plaintext: r.plaintext.clone(),
            content: r.content.clone(),
        }))
    });
    Some(Node::Message(Arc::new(MessageSnapshot {
        id: m.id.clone(),
        conversation_id: m.conversation_id.clone(),
        message_type: m.message_type,
        sender,
        custom: m.custom.clone(),
        created_at: m.created_at,
        edited_at: m.edited_at,
        referenced_message,
        origin: m.origin,
        plaintext: m.plaintext.clone(),
        content: m.content.clone(),
    })))
}

fn conversation<L: Lookup>(l: &L, key: &EntityKey, deps: &mut Vec<EntityKey>) -> Option<Node> {
    deps.push(key.clone());
    let Some(Rec::Conversation(c)) = l.record(key) else {
        return None;
    };
    let read_key = EntityKey::read_state(&c.id);
    let read = l.record(&read_key);
    deps.push(read_key);
    let mine_key = EntityKey::participant(&c.id, l.me());
    let mine = l.record(&mine_key);
    deps.push(mine_key);
    let (Some(Rec::ReadState(read)), Some(Rec::Participant(mine))) = (read, mine) else {
        return None;
    };
    let last_message =
        c.last_message_id
            .as_ref()
            .and_then(|id| match node(l, &EntityKey::message(id), deps) {
                Some(Node::Message(m)) => Some(m),
                _ => None,
            });
    Some(Node::Conversation(Arc::new(ConversationSnapshot {
        id: c.id.clone(),
        subject: c.subject.clone(),
        photo_url: c.photo_url.clone(),
        welcome_messages: c.welcome_messages.clone(),
        custom: c.custom.clone(),
        created_at: c.created_at,
        joined_at: mine.joined_at,
        last_message,
        unread_message_count: read.unread_message_count,
        read_until: read.read_until,
        everyone_read_until: read.everyone_read_until,
        is_unread: read.is_unread,
        access: mine.access,
        notify: mine.notify,
    })))
}

fn participant<L: Lookup>(l: &L, key: &EntityKey, deps: &mut Vec<EntityKey>) -> Option<Node> {
    deps.push(key.clone());
    let Some(Rec::Participant(p)) = l.record(key) else {
        return None;
    };
    let user = user(l, &p.user_id, deps)?;
    Some(Node::Participant(Arc::new(ParticipantSnapshot {
        user,
        access: p.access,
        notify: p.notify,
        joined_at: p.joined_at,
    })))
}

/// A one-off set of records (the answer to a read), assembled without caching.
pub(crate) struct Bundle<'a> {
    pub(crate) me: &'a UserId,
    pub(crate) records: HashMap<EntityKey, Rec>,
}

impl Lookup for Bundle<'_> {
    fn record(&self, key: &EntityKey) -> Option<Rec> {
        self.records.get(key).cloned()
    }

    fn node(
        &self,
        _key: &EntityKey,
        deps: &mut Vec<EntityKey>,
        build: &dyn Fn(&Self, &mut Vec<EntityKey>) -> Option<Node>,
    ) -> Option<Node> {
        build(self, deps)
    }

    fn me(&self) -> &UserId {
        self.me
    }
}
