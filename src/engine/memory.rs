//! In-memory storage: the embedded default and the reference for other backends.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use super::storage::{
    Event, MessagePos, Storage, StorageResult, StoredConversation, StoredParticipant, StoredUser,
};
use crate::model::{ConversationId, MessageId, MessageRecord, MessageType, Timestamp, UserId};

/// How many events the in-memory log keeps. Older events are dropped; a client that needs
/// them resynchronizes instead of resuming.
pub(crate) const MEMORY_LOG_CAPACITY: usize = 10_000;

/// Previous values, restored by `rollback`.
#[derive(Debug)]
enum Undo {
    User(UserId, Option<StoredUser>),
    Conversation(ConversationId, Option<StoredConversation>),
    Participant(ConversationId, UserId, Option<StoredParticipant>),
    Activity(ConversationId, UserId, Option<Timestamp>),
    Message(MessageId, Option<(MessageRecord, MessagePos)>),
    Reaction(MessageId, String, UserId, Option<Timestamp>),
    Idempotency(UserId, String),
    Log { last_seq: u64, len: usize },
    Ordinal(u64),
}

#[derive(Debug, Default)]
pub(crate) struct MemoryStorage {
    users: HashMap<UserId, StoredUser>,
    conversations: HashMap<ConversationId, StoredConversation>,
    participants: HashMap<ConversationId, HashMap<UserId, StoredParticipant>>,
    /// Each conversation's participants by read mark (for `everyone_read_until`).
    read_marks: HashMap<ConversationId, BTreeSet<(Timestamp, UserId)>>,
    memberships: HashMap<UserId, HashSet<ConversationId>>,
    /// The activity index (see [`Storage::set_activity`]): each conversation's indexed
    /// participations, the same by user in activity order, and each user's others.
    indexed: HashMap<ConversationId, HashMap<UserId, Timestamp>>,
    by_activity: HashMap<UserId, BTreeSet<(Timestamp, ConversationId)>>,
    unindexed: HashMap<UserId, HashSet<ConversationId>>,
    messages: HashMap<MessageId, (MessageRecord, MessagePos)>,
    timelines: HashMap<ConversationId, BTreeMap<MessagePos, MessageId>>,
    /// Each message's reactions by emoji, oldest first, and each user's by message.
    reactions: HashMap<MessageId, HashMap<String, BTreeSet<(Timestamp, UserId)>>>,
    reacted: HashMap<(MessageId, UserId), Vec<(String, Timestamp)>>,
    idempotency: HashMap<(UserId, String), MessageId>,
    log: VecDeque<(u64, Event)>,
    epoch: u64,
    last_seq: u64,
    ordinal: u64,
    /// The latest time handed out.
    time: Timestamp,
    undo: Vec<Undo>,
    /// The undo log's length when the current command began.
    command_start: usize,
    /// Rows returned by the calls that list (see [`Storage::listed`]).
    #[cfg(test)]
    listed: std::cell::Cell<usize>,
}

impl MemoryStorage {
    pub(crate) fn new(epoch: u64) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    /// Counts rows returned by a listing call, in tests (see [`Storage::listed`]).
    fn count_listed(&self, _rows: usize) {
        #[cfg(test)]
        self.listed.set(self.listed.get() + _rows);
    }

    fn set_participant(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
        value: Option<StoredParticipant>,
    ) -> Option<StoredParticipant> {
        let members = self.memberships.entry(user.clone()).or_default();
        let joined = value.is_some() && members.insert(conversation.clone());
        if value.is_none() {
            members.remove(conversation);
            // Out of the index, and not counted as unindexed either.
            self.put_activity(conversation, user, None);
            if let Some(unindexed) = self.unindexed.get_mut(user) {
                unindexed.remove(conversation);
            }
        } else if joined {
            self.unindexed
                .entry(user.clone())
                .or_default()
                .insert(conversation.clone());
        }
        let table = self.participants.entry(conversation.clone()).or_default();
        let marks = self.read_marks.entry(conversation.clone()).or_default();
        if let Some(value) = &value {
            marks.insert((value.read_until, user.clone()));
        }
        let old = match value {
            Some(value) => table.insert(user.clone(), value),
            None => table.remove(user),
        };
        if let Some(old) = &old
            && table
                .get(user)
                .is_none_or(|new| new.read_until != old.read_until)
        {
            marks.remove(&(old.read_until, user.clone()));
        }
        old
    }

    /// Sets a participation's place in the activity index; returns the old one.
    fn put_activity(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
        at: Option<Timestamp>,
    ) -> Option<Timestamp> {
        let old = match at {
            Some(at) => self
                .indexed
                .entry(conversation.clone())
                .or_default()
                .insert(user.clone(), at),
            None => self
                .indexed
                .get_mut(conversation)
                .and_then(|users| users.remove(user)),
        };
        let by_activity = self.by_activity.entry(user.clone()).or_default();
        if let Some(old) = old {
            by_activity.remove(&(old, conversation.clone()));
        }
        let unindexed = self.unindexed.entry(user.clone()).or_default();
        match at {
            Some(at) => {
                by_activity.insert((at, conversation.clone()));
                unindexed.remove(conversation);
            }
            None if self
                .memberships
                .get(user)
                .is_some_and(|m| m.contains(conversation)) =>
            {
                unindexed.insert(conversation.clone());
            }
            None => {}
        }
        old
    }

    fn set_message(
        &mut self,
        id: &MessageId,
        value: Option<(MessageRecord, MessagePos)>,
    ) -> Option<(MessageRecord, MessagePos)> {
        let old = match value {
            Some((record, pos)) => {
                self.timelines
                    .entry(record.conversation_id.clone())
                    .or_default()
                    .insert(pos, id.clone());
                self.messages.insert(id.clone(), (record, pos))
            }
            None => self.messages.remove(id),
        };
        if let Some((old_record, old_pos)) = &old {
            let still_there = self.messages.get(id).is_some_and(|(_, pos)| pos == old_pos);
            if !still_there
                && let Some(timeline) = self.timelines.get_mut(&old_record.conversation_id)
            {
                timeline.remove(old_pos);
            }
        }
        old
    }

    /// Sets whether (and since when) `user` reacted to `message` with `emoji`; returns the
    /// old value.
    fn set_reaction(
        &mut self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
        at: Option<Timestamp>,
    ) -> Option<Timestamp> {
        let key = (message.clone(), user.clone());
        let mine = self.reacted.entry(key.clone()).or_default();
        let old = mine
            .iter()
            .position(|(e, _)| e == emoji)
            .map(|at| mine.remove(at).1);
        if let Some(at) = at {
            mine.push((emoji.to_owned(), at));
        }
        if mine.is_empty() {
            self.reacted.remove(&key);
        }
        let by_emoji = self.reactions.entry(message.clone()).or_default();
        let users = by_emoji.entry(emoji.to_owned()).or_default();
        if let Some(old) = old {
            users.remove(&(old, user.clone()));
        }
        if let Some(at) = at {
            users.insert((at, user.clone()));
        }
        if users.is_empty() {
            by_emoji.remove(emoji);
        }
        if by_emoji.is_empty() {
            self.reactions.remove(message);
        }
        old
    }
}

impl Storage for MemoryStorage {
    fn user(&self, id: &UserId) -> StorageResult<Option<StoredUser>> {
        Ok(self.users.get(id).cloned())
    }

    fn put_user(&mut self, user: StoredUser) -> StorageResult<()> {
        let id = user.public.id.clone();
        let old = self.users.insert(id.clone(), user);
        self.undo.push(Undo::User(id, old));
        Ok(())
    }

    fn conversation(&self, id: &ConversationId) -> StorageResult<Option<StoredConversation>> {
        Ok(self.conversations.get(id).cloned())
    }

    fn put_conversation(&mut self, conversation: StoredConversation) -> StorageResult<()> {
        let id = conversation.record.id.clone();
        let old = self.conversations.insert(id.clone(), conversation);
        self.undo.push(Undo::Conversation(id, old));
        Ok(())
    }

    #[cfg(feature = "server")]
    fn remove_conversation(&mut self, id: &ConversationId) -> StorageResult<()> {
        let old = self.conversations.remove(id);
        self.undo.push(Undo::Conversation(id.clone(), old));
        Ok(())
    }

    fn participant(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StorageResult<Option<StoredParticipant>> {
        Ok(self
            .participants
            .get(conversation)
            .and_then(|t| t.get(user))
            .cloned())
    }

    fn put_participant(&mut self, participant: StoredParticipant) -> StorageResult<()> {
        let conversation = participant.record.conversation_id.clone();
        let user = participant.record.user_id.clone();
        let old = self.set_participant(&conversation, &user, Some(participant));
        self.undo.push(Undo::Participant(conversation, user, old));
        Ok(())
    }

    fn remove_participant(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StorageResult<()> {
        // Its place in the index first: undone after the participation is back.
        let at = self.put_activity(conversation, user, None);
        self.undo
            .push(Undo::Activity(conversation.clone(), user.clone(), at));
        let old = self.set_participant(conversation, user, None);
        self.undo
            .push(Undo::Participant(conversation.clone(), user.clone(), old));
        Ok(())
    }

    fn participants(&self, conversation: &ConversationId) -> StorageResult<Vec<StoredParticipant>> {
        let rows: Vec<_> = self
            .participants
            .get(conversation)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default();
        self.count_listed(rows.len());
        Ok(rows)
    }

    fn everyone_read_until(
        &self,
        conversation: &ConversationId,
    ) -> StorageResult<Option<Timestamp>> {
        Ok(self
            .read_marks
            .get(conversation)
            .and_then(BTreeSet::first)
            .map(|(at, _)| *at))
    }

    fn participant_count(&self, conversation: &ConversationId) -> StorageResult<usize> {
        Ok(self.participants.get(conversation).map_or(0, HashMap::len))
    }

    fn set_activity(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
        at: Option<Timestamp>,
    ) -> StorageResult<()> {
        let old = self.put_activity(conversation, user, at);
        if old != at {
            self.undo
                .push(Undo::Activity(conversation.clone(), user.clone(), old));
        }
        Ok(())
    }

    fn touch_activity(
        &mut self,
        conversation: &ConversationId,
        at: Timestamp,
    ) -> StorageResult<()> {
        let users: Vec<UserId> = self
            .indexed
            .get(conversation)
            .map(|users| users.keys().cloned().collect())
            .unwrap_or_default();
        for user in users {
            self.set_activity(conversation, &user, Some(at))?;
        }
        Ok(())
    }

    fn activity_below(
        &self,
        user: &UserId,
        below: Option<(Timestamp, &ConversationId)>,
        limit: usize,
    ) -> StorageResult<Vec<(Timestamp, ConversationId)>> {
        let Some(index) = self.by_activity.get(user) else {
            return Ok(Vec::new());
        };
        let range = match below {
            Some((at, id)) => index.range(..(at, id.clone())),
            None => index.range(..),
        };
        let rows: Vec<_> = range.rev().take(limit).cloned().collect();
        self.count_listed(rows.len());
        Ok(rows)
    }

    fn unindexed_of(&self, user: &UserId) -> StorageResult<Vec<ConversationId>> {
        let rows: Vec<_> = self
            .unindexed
            .get(user)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        self.count_listed(rows.len());
        Ok(rows)
    }

    fn message(&self, id: &MessageId) -> StorageResult<Option<(MessageRecord, MessagePos)>> {
        Ok(self.messages.get(id).cloned())
    }

    fn put_message(&mut self, message: MessageRecord, pos: MessagePos) -> StorageResult<()> {
        let id = message.id.clone();
        let old = self.set_message(&id, Some((message, pos)));
        self.undo.push(Undo::Message(id, old));
        Ok(())
    }

    fn remove_message(&mut self, id: &MessageId) -> StorageResult<()> {
        let old = self.set_message(id, None);
        self.undo.push(Undo::Message(id.clone(), old));
        let reactions: Vec<(String, UserId)> = self
            .reactions
            .get(id)
            .into_iter()
            .flatten()
            .flat_map(|(emoji, users)| users.iter().map(|(_, u)| (emoji.clone(), u.clone())))
            .collect();
        for (emoji, user) in reactions {
            self.remove_reaction(id, &emoji, &user)?;
        }
        Ok(())
    }

    fn put_reaction(
        &mut self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
        at: Timestamp,
    ) -> StorageResult<bool> {
        let exists = self
            .reacted
            .get(&(message.clone(), user.clone()))
            .is_some_and(|mine| mine.iter().any(|(e, _)| e == emoji));
        if !exists {
            let old = self.set_reaction(message, emoji, user, Some(at));
            self.undo.push(Undo::Reaction(
                message.clone(),
                emoji.to_owned(),
                user.clone(),
                old,
            ));
        }
        Ok(!exists)
    }

    fn remove_reaction(
        &mut self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
    ) -> StorageResult<bool> {
        let old = self.set_reaction(message, emoji, user, None);
        if old.is_some() {
            self.undo.push(Undo::Reaction(
                message.clone(),
                emoji.to_owned(),
                user.clone(),
                old,
            ));
        }
        Ok(old.is_some())
    }

    fn reaction(
        &self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
    ) -> StorageResult<Option<Timestamp>> {
        Ok(self
            .reacted
            .get(&(message.clone(), user.clone()))
            .and_then(|mine| mine.iter().find(|(e, _)| e == emoji))
            .map(|(_, at)| *at))
    }

    fn reactions_of(&self, message: &MessageId, user: &UserId) -> StorageResult<Vec<String>> {
        Ok(self
            .reacted
            .get(&(message.clone(), user.clone()))
            .into_iter()
            .flatten()
            .map(|(emoji, _)| emoji.clone())
            .collect())
    }

    fn reactions(
        &self,
        message: &MessageId,
        emoji: &str,
        limit: usize,
    ) -> StorageResult<Vec<(UserId, Timestamp)>> {
        let rows: Vec<_> = self
            .reactions
            .get(message)
            .and_then(|by_emoji| by_emoji.get(emoji))
            .into_iter()
            .flatten()
            .take(limit)
            .map(|(at, user)| (user.clone(), *at))
            .collect();
        self.count_listed(rows.len());
        Ok(rows)
    }

    fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<MessagePos>,
        limit: usize,
    ) -> StorageResult<Vec<(MessageRecord, MessagePos)>> {
        let Some(timeline) = self.timelines.get(conversation) else {
            return Ok(Vec::new());
        };
        let range = match before {
            Some(before) => timeline.range(..before),
            None => timeline.range(..),
        };
        let rows: Vec<_> = range
            .rev()
            .take(limit)
            .filter_map(|(_, id)| self.messages.get(id).cloned())
            .collect();
        self.count_listed(rows.len());
        Ok(rows)
    }

    #[cfg(test)]
    fn listed(&self) -> usize {
        self.listed.get()
    }

    fn count_user_messages(
        &self,
        conversation: &ConversationId,
        after: Timestamp,
        sender: &UserId,
    ) -> StorageResult<(u64, u64)> {
        let Some(timeline) = self.timelines.get(conversation) else {
            return Ok((0, 0));
        };
        let from = MessagePos {
            created_at: after.saturating_add(1),
            ordinal: 0,
        };
        let mut counts = (0, 0);
        let user_messages = timeline
            .range(from..)
            .filter_map(|(_, id)| self.messages.get(id))
            .filter(|(m, _)| m.message_type == MessageType::UserMessage);
        for (message, _) in user_messages {
            counts.0 += 1;
            counts.1 += u64::from(message.sender_id.as_ref() == Some(sender));
        }
        Ok(counts)
    }

    fn idempotent_send(&self, sender: &UserId, key: &str) -> StorageResult<Option<MessageId>> {
        Ok(self
            .idempotency
            .get(&(sender.clone(), key.to_owned()))
            .cloned())
    }

    fn claim_idempotent_send(
        &mut self,
        sender: &UserId,
        key: &str,
        id: &MessageId,
    ) -> StorageResult<Option<MessageId>> {
        let entry = self.idempotency.entry((sender.clone(), key.to_owned()));
        if let std::collections::hash_map::Entry::Occupied(existing) = &entry {
            return Ok(Some(existing.get().clone()));
        }
        entry.or_insert_with(|| id.clone());
        self.undo
            .push(Undo::Idempotency(sender.clone(), key.to_owned()));
        Ok(None)
    }

    fn log_position(&self) -> StorageResult<(u64, u64)> {
        Ok((self.epoch, self.last_seq))
    }

    fn events_after(&self, after: u64) -> StorageResult<Option<Vec<Event>>> {
        let first = self.log.front().map_or(self.last_seq + 1, |(seq, _)| *seq);
        if after + 1 < first || after > self.last_seq {
            return Ok(None);
        }
        let skip = (after + 1 - first) as usize;
        Ok(Some(
            self.log.iter().skip(skip).map(|(_, e)| e.clone()).collect(),
        ))
    }

    fn append_events(&mut self, events: &[Event]) -> StorageResult<u64> {
        self.undo.push(Undo::Log {
            last_seq: self.last_seq,
            len: self.log.len(),
        });
        for event in events {
            self.last_seq += 1;
            self.log.push_back((self.last_seq, event.clone()));
        }
        Ok(self.last_seq)
    }

    fn last_time(&self) -> Timestamp {
        self.time
    }

    fn record_time(&mut self, at: Timestamp) {
        self.time = self.time.max(at);
    }

    fn last_ordinal(&self) -> u64 {
        self.ordinal
    }

    fn next_ordinal(&mut self) -> StorageResult<u64> {
        self.undo.push(Undo::Ordinal(self.ordinal));
        self.ordinal += 1;
        Ok(self.ordinal)
    }

    fn begin_command(&mut self) {
        self.command_start = self.undo.len();
    }

    fn undo_command(&mut self) -> bool {
        // The same rule as SQLite's, so that both storages behave alike.
        if self.command_start > 0 && self.undo.len() > self.command_start {
            return false;
        }
        self.undo_to(self.command_start);
        true
    }

    fn commit(&mut self) -> StorageResult<()> {
        self.undo.clear();
        self.command_start = 0;
        while self.log.len() > MEMORY_LOG_CAPACITY {
            self.log.pop_front();
        }
        Ok(())
    }

    fn rollback(&mut self) {
        self.undo_to(0);
        self.command_start = 0;
    }
}

impl MemoryStorage {
    /// Undoes writes until the undo log is `mark` entries long.
    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let Some(undo) = self.undo.pop() else { break };
            match undo {
                Undo::User(id, old) => match old {
                    Some(old) => self.users.insert(id, old),
                    None => self.users.remove(&id),
                }
                .map_or((), drop),
                Undo::Conversation(id, old) => match old {
                    Some(old) => self.conversations.insert(id, old),
                    None => self.conversations.remove(&id),
                }
                .map_or((), drop),
                Undo::Participant(c, u, old) => {
                    self.set_participant(&c, &u, old);
                }
                Undo::Activity(c, u, old) => {
                    self.put_activity(&c, &u, old);
                }
                Undo::Message(id, old) => {
                    self.set_message(&id, old);
                }
                Undo::Reaction(message, emoji, user, old) => {
                    self.set_reaction(&message, &emoji, &user, old);
                }
                Undo::Idempotency(u, k) => {
                    self.idempotency.remove(&(u, k));
                }
                Undo::Log { last_seq, len } => {
                    self.last_seq = last_seq;
                    self.log.truncate(len);
                }
                Undo::Ordinal(ordinal) => self.ordinal = ordinal,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Origin;

    fn message(id: &str, conversation: &str, at: Timestamp) -> MessageRecord {
        MessageRecord {
            id: MessageId::new(id),
            conversation_id: ConversationId::new(conversation),
            message_type: MessageType::UserMessage,
            sender_id: Some(UserId::new("alice")),
            custom: Default::default(),
            created_at: at,
            edited_at: None,
            referenced_message_id: None,
            origin: Origin::Rest,
            plaintext: String::new(),
            content: Vec::new().into(),
            reactions: Vec::new(),
        }
    }

    /// The index of read marks follows every write of a participant, and rollbacks.
    #[test]
    fn everyone_read_until_follows_the_read_marks() {
        use crate::model::{Access, Notify, ParticipantRecord};
        let mut s = MemoryStorage::new(1);
        let c = ConversationId::new("c");
        let participant = |user: &str, read_until| StoredParticipant {
            record: ParticipantRecord {
                conversation_id: c.clone(),
                user_id: UserId::new(user),
                access: Access::ReadWrite,
                notify: Notify::default(),
                joined_at: 1,
            },
            read_until,
            marked_unread: false,
            read_base: 0,
            sent_since_read: 0,
        };
        let earliest = |s: &MemoryStorage| s.everyone_read_until(&c).unwrap();
        assert_eq!(earliest(&s), None);
        s.put_participant(participant("a", 10)).unwrap();
        s.put_participant(participant("b", 20)).unwrap();
        s.commit().unwrap();
        assert_eq!(earliest(&s), Some(10));
        s.put_participant(participant("a", 30)).unwrap();
        assert_eq!(earliest(&s), Some(20));
        s.rollback();
        assert_eq!(earliest(&s), Some(10));
        s.put_participant(participant("a", 10)).unwrap();
        s.remove_participant(&c, &UserId::new("a")).unwrap();
        assert_eq!(earliest(&s), Some(20));
        s.remove_participant(&c, &UserId::new("b")).unwrap();
        assert_eq!(earliest(&s), None);
    }

    /// Rollback restores every table, including the timeline index and the log.
    #[test]
    fn rollback_undoes_everything_since_commit() {
        let mut s = MemoryStorage::new(1);
        let pos = MessagePos {
            created_at: 5,
            ordinal: 1,
        };
        s.put_message(message("m1", "c", 5), pos).unwrap();
        s.commit().unwrap();
        s.remove_message(&MessageId::new("m1")).unwrap();
        s.put_message(
            message("m2", "c", 6),
            MessagePos {
                created_at: 6,
                ordinal: 2,
            },
        )
        .unwrap();
        s.append_events(&[Event::UserChanged {
            user: UserId::new("u"),
        }])
        .unwrap();
        s.rollback();
        let page = s
            .messages_before(&ConversationId::new("c"), None, 10)
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].0.id.as_str(), "m1");
        assert_eq!(s.log_position().unwrap(), (1, 0));
    }

    /// A failed command is undone alone if it wrote nothing or wrote first in its batch;
    /// otherwise only the whole batch can be rolled back.
    #[test]
    fn commands_are_undone_alone_only_when_first_to_write() {
        let mut s = MemoryStorage::new(1);
        let put = |s: &mut MemoryStorage, id: &str, at: i64| {
            s.begin_command();
            let pos = MessagePos {
                created_at: at,
                ordinal: at as u64,
            };
            s.put_message(message(id, "c", at), pos).unwrap();
        };
        let ids = |s: &MemoryStorage| {
            let page = s.messages_before(&ConversationId::new("c"), None, 10);
            let page = page.unwrap().into_iter().map(|(m, _)| m.id.to_string());
            page.collect::<Vec<_>>()
        };
        put(&mut s, "m0", 4);
        assert!(s.undo_command(), "the first command to write");
        put(&mut s, "m1", 5);
        s.begin_command();
        assert!(s.undo_command(), "a command that wrote nothing");
        put(&mut s, "m2", 6);
        assert!(!s.undo_command(), "a command after another that wrote");
        assert_eq!(ids(&s), ["m2", "m1"], "nothing was undone");
        s.rollback();
        s.commit().unwrap();
        assert!(ids(&s).is_empty());
    }

    /// Counting covers user messages strictly after the mark, and tells the sender's apart.
    #[test]
    fn unread_counting() {
        let mut s = MemoryStorage::new(1);
        for (i, at) in [10, 20, 30].into_iter().enumerate() {
            let mut m = message(&format!("m{i}"), "c", at);
            if i == 2 {
                m.sender_id = Some(UserId::new("bob"));
            }
            s.put_message(
                m,
                MessagePos {
                    created_at: at,
                    ordinal: i as u64,
                },
            )
            .unwrap();
        }
        let c = ConversationId::new("c");
        let count = |after, user| {
            s.count_user_messages(&c, after, &UserId::new(user))
                .unwrap()
        };
        assert_eq!(count(10, "bob"), (2, 1));
        assert_eq!(count(0, "alice"), (3, 2));
        assert_eq!(count(30, "carol"), (0, 0));
    }
}
