//! What one user can see: visibility rules and the records a snapshot needs.

use std::sync::Arc;

use super::{
    Storage,
    storage::{MessagePos, StorageResult},
    unread,
};
use crate::{
    HashMap,
    model::{ConversationId, MessageId, ReactedRecord, ReactionRecord, ReadStateRecord, UserId},
    protocol::{EntityKey, Record, SharedRecord, shape},
};

/// Whether `user` participates in `conversation`.
pub(crate) fn is_participant(
    storage: &dyn Storage,
    conversation: &ConversationId,
    user: &UserId,
) -> StorageResult<bool> {
    Ok(storage.participant(conversation, user)?.is_some())
}

/// The viewer's read state in a conversation, or `None` if they are not a participant.
pub(crate) fn read_state(
    storage: &dyn Storage,
    conversation: &ConversationId,
    me: &UserId,
) -> StorageResult<Option<ReadStateRecord>> {
    let (Some(mine), Some(conversation)) = (
        storage.participant(conversation, me)?,
        storage.conversation(conversation)?,
    ) else {
        return Ok(None);
    };
    unread::read_state(storage, &conversation, &mine).map(Some)
}

/// Records read from storage, shared by every viewer they are read for: during one commit's
/// pushes each record is read (on SQLite, parsed) once, however many connections show it.
/// Visibility is checked per viewer (and remembered); read states, which differ per viewer,
/// are not kept.
///
/// Valid only while storage does not change: make one per commit or request.
#[derive(Default)]
pub(crate) struct Reads {
    records: HashMap<EntityKey, Option<SharedRecord>>,
    /// Where each message read sorts.
    positions: HashMap<MessageId, MessagePos>,
    /// Whether each (conversation, user) asked about is a participation.
    members: HashMap<(ConversationId, UserId), bool>,
    /// The memory of the last [`Collector`]'s records, empty: each of a commit's pushes
    /// collects into it instead of growing a new map.
    scratch: HashMap<EntityKey, SharedRecord>,
    /// Snapshots collected once for every viewer (see [`Collector::collect_shared`]).
    shared: HashMap<EntityKey, Arc<Collected>>,
}

/// One snapshot's reads: its keys, each once, in walk order, and the records found except
/// those that differ per viewer (which are read for each).
struct Collected {
    keys: Arc<[EntityKey]>,
    records: Vec<(EntityKey, SharedRecord)>,
    per_viewer: Vec<EntityKey>,
}

impl Reads {
    /// The current record behind `key` as `me` may see it, or `None` if it is missing or
    /// hidden.
    pub(crate) fn fetch(
        &mut self,
        storage: &dyn Storage,
        me: &UserId,
        key: &EntityKey,
    ) -> StorageResult<Option<SharedRecord>> {
        match key {
            EntityKey::ReadState { conversation } => {
                let record = read_state(storage, conversation, me)?;
                return Ok(record.map(|r| SharedRecord::new(Record::ReadState(r))));
            }
            // Read only through a message the viewer sees.
            EntityKey::Reacted { message } => {
                let emoji = storage.reactions_of(message, me)?;
                let record = ReactedRecord {
                    message_id: message.clone(),
                    emoji,
                };
                return Ok(
                    (!record.emoji.is_empty()).then(|| SharedRecord::new(Record::Reacted(record)))
                );
            }
            _ => {}
        }
        let Some(record) = self.load(storage, key)? else {
            return Ok(None);
        };
        let conversation = match &*record {
            Record::User(_) => return Ok(Some(record)),
            Record::Conversation(c) => &c.id,
            Record::Participant(p) => &p.conversation_id,
            Record::Message(m) => &m.conversation_id,
            Record::Reaction(r) => &r.conversation_id,
            Record::ReadState(_) | Record::Reacted(_) => return Ok(None),
        };
        let visible = self.is_participant(storage, conversation, me)?;
        Ok(visible.then_some(record))
    }

    /// The message `id`, whoever may see it, and where it sorts.
    pub(crate) fn message(
        &mut self,
        storage: &dyn Storage,
        id: &MessageId,
    ) -> StorageResult<Option<(SharedRecord, MessagePos)>> {
        let record = self.load(storage, &EntityKey::message(id))?;
        Ok(record.and_then(|record| Some((record, *self.positions.get(id)?))))
    }

    /// Whether `user` participates in `conversation` (see [`is_participant`]).
    pub(crate) fn is_participant(
        &mut self,
        storage: &dyn Storage,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StorageResult<bool> {
        let key = (conversation.clone(), user.clone());
        if let Some(member) = self.members.get(&key) {
            return Ok(*member);
        }
        let member = is_participant(storage, conversation, user)?;
        self.members.insert(key, member);
        Ok(member)
    }

    /// The record behind `key`, whoever may see it (not for read states, which are per
    /// viewer).
    fn load(
        &mut self,
        storage: &dyn Storage,
        key: &EntityKey,
    ) -> StorageResult<Option<SharedRecord>> {
        if let Some(record) = self.records.get(key) {
            return Ok(record.clone());
        }
        let record = match key {
            EntityKey::User { id } => storage.user(id)?.map(|u| Record::User(u.public)),
            EntityKey::Conversation { id } => storage
                .conversation(id)?
                .map(|c| Record::Conversation(c.record)),
            EntityKey::Participant { conversation, user } => storage
                .participant(conversation, user)?
                .map(|p| Record::Participant(p.record)),
            EntityKey::Message { id } => storage.message(id)?.map(|(m, pos)| {
                self.positions.insert(id.clone(), pos);
                Record::Message(m)
            }),
            EntityKey::Reaction {
                message,
                emoji,
                user,
            } => match storage.reaction(message, emoji, user)? {
                Some(created_at) => self.message(storage, message)?.and_then(|(m, _)| {
                    let Record::Message(m) = &*m else { return None };
                    Some(Record::Reaction(ReactionRecord {
                        conversation_id: m.conversation_id.clone(),
                        message_id: message.clone(),
                        emoji: emoji.clone(),
                        user_id: user.clone(),
                        created_at,
                    }))
                }),
                None => None,
            },
            EntityKey::ReadState { .. } | EntityKey::Reacted { .. } => None,
        }
        .map(SharedRecord::new);
        self.records.insert(key.clone(), record.clone());
        Ok(record)
    }
}

impl Drop for Collector<'_> {
    fn drop(&mut self) {
        self.records.clear();
        self.reads.scratch = std::mem::take(&mut self.records);
    }
}

/// Gathers the records needed to assemble snapshots: each root record and everything nested
/// in it, as [`shape::walk`] says (last message, senders, referenced message, participant
/// users).
pub(crate) struct Collector<'r> {
    reads: &'r mut Reads,
    pub(crate) records: HashMap<EntityKey, SharedRecord>,
}

impl<'r> Collector<'r> {
    pub(crate) fn new(reads: &'r mut Reads) -> Self {
        let records = std::mem::take(&mut reads.scratch);
        Self { reads, records }
    }

    /// The shared reads.
    pub(crate) fn reads(&mut self) -> &mut Reads {
        self.reads
    }

    /// The current record behind `key` as `me` may see it (see [`Reads::fetch`]).
    pub(crate) fn fetch(
        &mut self,
        storage: &dyn Storage,
        me: &UserId,
        key: &EntityKey,
    ) -> StorageResult<Option<SharedRecord>> {
        self.reads.fetch(storage, me, key)
    }

    /// Collects the snapshot rooted at `key` and returns the keys it reads, each once, walking
    /// it once per commit for all viewers. Only for a snapshot that every viewer who asks sees
    /// the same way, but for the records of per-viewer keys (read for each viewer): a message
    /// in a message window, which only the conversation's participants hold, and all of whose
    /// reads (its sender, a reply's message of the same conversation and its sender, the
    /// viewer's reactions) they may see.
    pub(crate) fn collect_shared(
        &mut self,
        storage: &dyn Storage,
        me: &UserId,
        key: &EntityKey,
    ) -> StorageResult<Arc<[EntityKey]>> {
        let collected = match self.reads.shared.get(key) {
            Some(collected) => collected.clone(),
            None => {
                let (mut keys, mut records, mut per_viewer) = (Vec::new(), Vec::new(), Vec::new());
                let reads = &mut *self.reads;
                let mut get = |key: &EntityKey| -> StorageResult<Option<SharedRecord>> {
                    let record = reads.fetch(storage, me, key)?;
                    if key.per_viewer() {
                        per_viewer.push(key.clone());
                    } else if let Some(record) = &record {
                        records.push((key.clone(), record.clone()));
                    }
                    Ok(record)
                };
                shape::walk(key, me, &mut get, &mut |key| {
                    if !keys.contains(key) {
                        keys.push(key.clone());
                    }
                })?;
                let collected = Arc::new(Collected {
                    keys: keys.into(),
                    records,
                    per_viewer,
                });
                self.reads.shared.insert(key.clone(), collected.clone());
                collected
            }
        };
        for (key, record) in &collected.records {
            self.records.insert(key.clone(), record.clone());
        }
        for key in &collected.per_viewer {
            if let Some(record) = self.reads.fetch(storage, me, key)? {
                self.records.insert(key.clone(), record);
            }
        }
        Ok(collected.keys.clone())
    }

    /// Collects the snapshot rooted at `key`, passing `visit` every key it reads; returns
    /// whether the root is visible.
    pub(crate) fn collect(
        &mut self,
        storage: &dyn Storage,
        me: &UserId,
        key: &EntityKey,
        visit: &mut dyn FnMut(&EntityKey),
    ) -> StorageResult<bool> {
        let Self { reads, records } = self;
        let mut get = |key: &EntityKey| -> StorageResult<Option<SharedRecord>> {
            if let Some(record) = records.get(key) {
                return Ok(Some(record.clone()));
            }
            let record = reads.fetch(storage, me, key)?;
            if let Some(record) = &record {
                records.insert(key.clone(), record.clone());
            }
            Ok(record)
        };
        shape::walk(key, me, &mut get, visit)
    }
}
