//! What one user can see: visibility rules and the records a snapshot needs.

use super::{Storage, storage::StorageResult, unread};
use crate::{
    HashMap, HashSet,
    model::{ConversationId, MessageId, ReadStateRecord, UserId},
    protocol::{EntityKey, Record},
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

/// The current record behind `key` as `me` may see it, or `None` if it is missing or hidden.
pub(crate) fn fetch(
    storage: &dyn Storage,
    me: &UserId,
    key: &EntityKey,
) -> StorageResult<Option<Record>> {
    Ok(match key {
        EntityKey::User { id } => storage.user(id)?.map(|u| Record::User(u.public)),
        EntityKey::Conversation { id } => {
            if is_participant(storage, id, me)? {
                storage
                    .conversation(id)?
                    .map(|c| Record::Conversation(c.record))
            } else {
                None
            }
        }
        EntityKey::Participant { conversation, user } => {
            if is_participant(storage, conversation, me)? {
                storage
                    .participant(conversation, user)?
                    .map(|p| Record::Participant(p.record))
            } else {
                None
            }
        }
        EntityKey::ReadState { conversation } => {
            read_state(storage, conversation, me)?.map(Record::ReadState)
        }
        EntityKey::Message { id } => match storage.message(id)? {
            Some((message, _)) if is_participant(storage, &message.conversation_id, me)? => {
                Some(Record::Message(message))
            }
            _ => None,
        },
    })
}

/// Gathers the records needed to assemble snapshots: each root record and everything nested
/// in it (last message, senders, referenced message, participant users).
#[derive(Default)]
pub(crate) struct Collector {
    pub(crate) records: HashMap<EntityKey, Record>,
    expanded: HashSet<EntityKey>,
}

impl Collector {
    /// Collects the snapshot rooted at `key`; returns whether the root is visible.
    pub(crate) fn collect(
        &mut self,
        storage: &dyn Storage,
        me: &UserId,
        key: &EntityKey,
    ) -> StorageResult<bool> {
        if self.expanded.contains(key) {
            return Ok(true);
        }
        let record = match self.records.get(key) {
            Some(record) => record.clone(),
            None => match fetch(storage, me, key)? {
                Some(record) => record,
                None => return Ok(false),
            },
        };
        self.expanded.insert(key.clone());
        let mut nested: Vec<EntityKey> = Vec::new();
        match &record {
            Record::User(_) | Record::ReadState(_) => {}
            Record::Conversation(c) => {
                self.shallow(storage, me, EntityKey::read_state(&c.id))?;
                self.shallow(storage, me, EntityKey::participant(&c.id, me))?;
                nested.extend(c.last_message_id.as_ref().map(EntityKey::message));
            }
            Record::Participant(p) => nested.push(EntityKey::user(&p.user_id)),
            Record::Message(m) => {
                nested.extend(m.sender_id.as_ref().map(EntityKey::user));
                if let Some(referenced) = &m.referenced_message_id {
                    self.collect_referenced(storage, me, referenced)?;
                }
            }
        }
        self.records.insert(key.clone(), record);
        for key in nested {
            self.collect(storage, me, &key)?;
        }
        Ok(true)
    }

    /// One record, without what is nested in it.
    fn shallow(&mut self, storage: &dyn Storage, me: &UserId, key: EntityKey) -> StorageResult<()> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.records.entry(key)
            && let Some(record) = fetch(storage, me, slot.key())?
        {
            slot.insert(record);
        }
        Ok(())
    }

    /// A referenced message and its sender, without following its own reference.
    fn collect_referenced(
        &mut self,
        storage: &dyn Storage,
        me: &UserId,
        id: &MessageId,
    ) -> StorageResult<()> {
        let key = EntityKey::message(id);
        if self.records.contains_key(&key) {
            return Ok(());
        }
        if let Some(record) = fetch(storage, me, &key)? {
            if let Record::Message(m) = &record
                && let Some(sender) = &m.sender_id
            {
                self.collect(storage, me, &EntityKey::user(sender))?;
            }
            self.records.insert(key, record);
        }
        Ok(())
    }
}
