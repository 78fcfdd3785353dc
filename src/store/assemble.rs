//! Snapshot assembly from normalized records, shared by the live store and one-off reads.

use std::{collections::HashMap, sync::Arc};

use crate::{
    model::{
        ConversationRecord, ConversationSnapshot, MessageRecord, MessageSnapshot,
        ParticipantRecord, ParticipantSnapshot, ReactedRecord, ReactionRecord, ReactionSnapshot,
        ReadStateRecord, ReferencedMessageSnapshot, SingleReactionSnapshot, UserId, UserSnapshot,
    },
    protocol::{EntityKey, Record, shape},
};

/// A record as the store keeps it: cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rec {
    User(Arc<UserSnapshot>),
    Conversation(Arc<ConversationRecord>),
    Participant(Arc<ParticipantRecord>),
    ReadState(Arc<ReadStateRecord>),
    Message(Arc<MessageRecord>),
    Reacted(Arc<ReactedRecord>),
    Reaction(Arc<ReactionRecord>),
}

impl From<Record> for Rec {
    fn from(record: Record) -> Self {
        match record {
            Record::User(r) => Rec::User(Arc::new(r)),
            Record::Conversation(r) => Rec::Conversation(Arc::new(r)),
            Record::Participant(r) => Rec::Participant(Arc::new(r)),
            Record::ReadState(r) => Rec::ReadState(Arc::new(r)),
            Record::Message(r) => Rec::Message(Arc::new(r)),
            Record::Reacted(r) => Rec::Reacted(Arc::new(r)),
            Record::Reaction(r) => Rec::Reaction(Arc::new(r)),
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
            (Rec::Reacted(a), Record::Reacted(b)) => **a == *b,
            (Rec::Reaction(a), Record::Reaction(b)) => **a == *b,
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
    Reaction(Arc<SingleReactionSnapshot>),
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
        EntityKey::User { .. } => user(l, key, deps).map(Node::User),
        EntityKey::Conversation { .. } => l.node(key, deps, &|l, deps| conversation(l, key, deps)),
        EntityKey::Message { .. } => l.node(key, deps, &|l, deps| message(l, key, deps)),
        EntityKey::Participant { .. } => l.node(key, deps, &|l, deps| participant(l, key, deps)),
        EntityKey::Reaction { .. } => l.node(key, deps, &|l, deps| reaction(l, key, deps)),
        EntityKey::ReadState { .. } | EntityKey::Reacted { .. } => None,
    }
}

fn user<L: Lookup>(l: &L, key: &EntityKey, deps: &mut Vec<EntityKey>) -> Option<Arc<UserSnapshot>> {
    let record = l.record(key);
    deps.push(key.clone());
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
    let links = shape::message(&m);
    let sender = links.sender.as_ref().and_then(|s| user(l, s, deps));
    let referenced_message = links.referenced.as_ref().and_then(|key| {
        let r = message_record(l, key);
        deps.push(key.clone());
        let r = r?;
        let links = shape::referenced(&r);
        Some(Arc::new(ReferencedMessageSnapshot {
            id: r.id.clone(),
            sender: links.sender.as_ref().and_then(|s| user(l, s, deps)),
            custom: r.custom.clone(),
            created_at: r.created_at,
            edited_at: r.edited_at,
            referenced_message_id: r.referenced_message_id.clone(),
            origin: r.origin,
            plaintext: r.plaintext.clone(),
            content: r.content.clone(),
            reactions: reactions(l, &r, links.reacted, deps),
        }))
    });
    let reactions = reactions(l, &m, links.reacted, deps);
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
        reactions,
    })))
}

/// A message's reactions as the viewer sees them, reading the viewer's own (`reacted`).
fn reactions<L: Lookup>(
    l: &L,
    m: &MessageRecord,
    reacted: Option<EntityKey>,
    deps: &mut Vec<EntityKey>,
) -> Vec<ReactionSnapshot> {
    let mine = reacted.and_then(|key| {
        let record = l.record(&key);
        deps.push(key);
        match record {
            Some(Rec::Reacted(r)) => Some(r),
            _ => None,
        }
    });
    let mine: &[String] = mine.as_ref().map_or(&[], |r| &r.emoji);
    m.reactions
        .iter()
        .map(|r| ReactionSnapshot {
            emoji: r.emoji.clone(),
            count: r.count,
            current_user_reacted: mine.contains(&r.emoji),
        })
        .collect()
}

fn conversation<L: Lookup>(l: &L, key: &EntityKey, deps: &mut Vec<EntityKey>) -> Option<Node> {
    deps.push(key.clone());
    let Some(Rec::Conversation(c)) = l.record(key) else {
        return None;
    };
    let links = shape::conversation(&c, l.me());
    let read = l.record(&links.read_state);
    deps.push(links.read_state);
    let mine = l.record(&links.mine);
    deps.push(links.mine);
    let (Some(Rec::ReadState(read)), Some(Rec::Participant(mine))) = (read, mine) else {
        return None;
    };
    let last_message = links
        .last_message
        .and_then(|key| match node(l, &key, deps) {
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
    let user = user(l, &shape::participant(&p), deps)?;
    Some(Node::Participant(Arc::new(ParticipantSnapshot {
        user,
        access: p.access,
        notify: p.notify,
        joined_at: p.joined_at,
    })))
}

fn reaction<L: Lookup>(l: &L, key: &EntityKey, deps: &mut Vec<EntityKey>) -> Option<Node> {
    deps.push(key.clone());
    let Some(Rec::Reaction(r)) = l.record(key) else {
        return None;
    };
    let user = user(l, &shape::reaction(&r), deps)?;
    Some(Node::Reaction(Arc::new(SingleReactionSnapshot {
        user,
        created_at: r.created_at,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::protocol::shape;

    /// A random little world: which of users u0..u2, messages m0..m3 (each with an optional
    /// sender and reference, and maybe reactions, maybe the viewer's), conversations c0..c1
    /// (each with an optional last message), read states, participations and reactions of
    /// u0..u2 to m0 exist.
    fn records() -> impl Strategy<Value = Vec<Record>> {
        let user = proptest::option::of(0..3_usize);
        let message = proptest::option::of(0..4_usize);
        (
            proptest::collection::vec(any::<bool>(), 3),
            proptest::collection::vec(
                proptest::option::of((user.clone(), message.clone(), any::<Option<bool>>())),
                4,
            ),
            proptest::collection::vec(proptest::option::of(message), 2),
            proptest::collection::vec(any::<bool>(), 2),
            proptest::collection::vec(any::<bool>(), 6),
            proptest::collection::vec(any::<bool>(), 3),
        )
            .prop_map(|(users, messages, conversations, reads, participants, reactions)| {
                let mut records = Vec::new();
                let mut push = |value| records.push(serde_json::from_value(value).unwrap());
                for (u, _) in users.iter().enumerate().filter(|(_, e)| **e) {
                    push(
                        json!({"kind": "user", "record": {"id": format!("u{u}"), "name": "U",
                        "custom": {}, "locale": null, "photoUrl": null, "role": "default",
                        "welcomeMessage": null}}),
                    );
                }
                for (m, message) in messages.iter().enumerate() {
                    let Some((sender, reference, reacted)) = message else {
                        continue;
                    };
                    let counts = match reacted {
                        Some(_) => json!([{"emoji": "👍", "count": 2}]),
                        None => json!([]),
                    };
                    push(json!({"kind": "message", "record": {"id": format!("m{m}"),
                        "conversationId": "c0", "type": "UserMessage",
                        "senderId": sender.map(|u| format!("u{u}")), "custom": {},
                        "createdAt": 1, "editedAt": null,
                        "referencedMessageId": reference.map(|r| format!("m{r}")),
                        "origin": "rest", "plaintext": "x",
                        "content": [{"type": "text", "children": ["x"]}],
                        "reactions": counts}}));
                    if *reacted == Some(true) {
                        push(json!({"kind": "reacted", "record": {"messageId": format!("m{m}"),
                            "emoji": ["👍"]}}));
                    }
                }
                for (u, _) in reactions.iter().enumerate().filter(|(_, e)| **e) {
                    push(json!({"kind": "reaction", "record": {"conversationId": "c0",
                        "messageId": "m0", "emoji": "👍", "userId": format!("u{u}"),
                        "createdAt": 1}}));
                }
                for (c, last) in conversations.iter().enumerate() {
                    let Some(last) = last else { continue };
                    push(
                        json!({"kind": "conversation", "record": {"id": format!("c{c}"),
                        "subject": null, "photoUrl": null, "welcomeMessages": [], "custom": {},
                        "createdAt": 1, "lastMessageId": last.map(|m| format!("m{m}"))}}),
                    );
                }
                for (c, _) in reads.iter().enumerate().filter(|(_, e)| **e) {
                    push(
                        json!({"kind": "readState", "record": {"conversationId": format!("c{c}"),
                        "readUntil": 0, "everyoneReadUntil": 0, "unreadMessageCount": 0,
                        "isUnread": false}}),
                    );
                }
                for (at, _) in participants.iter().enumerate().filter(|(_, e)| **e) {
                    push(json!({"kind": "participant", "record": {
                        "conversationId": format!("c{}", at / 3), "userId": format!("u{}", at % 3),
                        "access": "ReadWrite", "notify": true, "joinedAt": 1}}));
                }
                records
            })
    }

    proptest! {
        /// For every root, the keys the engine's walk visits (the records it sends a client)
        /// are exactly the keys the store's assembly reads, whatever is missing.
        #[test]
        fn the_engine_sends_what_the_store_reads(records in records()) {
            let me = UserId::new("u0");
            let by_key: HashMap<EntityKey, Arc<Record>> =
                records.iter().map(|r| (r.key(), Arc::new(r.clone()))).collect();
            let bundle = Bundle {
                me: &me,
                records: records.iter().map(|r| (r.key(), r.clone().into())).collect(),
            };
            let mut roots: Vec<EntityKey> = (0..3)
                .map(|u| EntityKey::user(&UserId::new(format!("u{u}"))))
                .chain((0..4).map(|m| EntityKey::message(&crate::model::MessageId::new(format!("m{m}")))))
                .chain((0..3).map(|u| {
                    let m0 = crate::model::MessageId::new("m0");
                    EntityKey::reaction(&m0, "👍", &UserId::new(format!("u{u}")))
                }))
                .collect();
            for c in 0..2 {
                let c = crate::model::ConversationId::new(format!("c{c}"));
                roots.push(EntityKey::conversation(&c));
                for u in 0..3 {
                    roots.push(EntityKey::participant(&c, &UserId::new(format!("u{u}"))));
                }
            }
            for root in roots {
                let mut sent = BTreeSet::new();
                let mut get = |key: &EntityKey| Ok::<_, ()>(by_key.get(key).cloned());
                shape::walk(&root, &me, &mut get, &mut |key| {
                    sent.insert(format!("{key:?}"));
                })
                    .unwrap();
                let mut deps = Vec::new();
                node(&bundle, &root, &mut deps);
                let read: BTreeSet<String> = deps.iter().map(|key| format!("{key:?}")).collect();
                prop_assert_eq!(&sent, &read, "root {:?}", root);
            }
        }
    }
}
