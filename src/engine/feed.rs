//! One connection's live subscriptions on the engine side.
//!
//! For each subscription the feed keeps its window bound and the set of entity keys its
//! snapshot needs; for the connection it keeps the last record sent for every needed key. After
//! each commit it recomputes the windows the events can affect, sends the records the client
//! lacks or holds stale versions of, and removes nothing else: the client store collects its own
//! garbage.

use std::collections::{HashMap, HashSet};

use super::{
    EngineError, EngineResult, Event, MAX_SUBSCRIPTIONS_PER_CONNECTION, Storage,
    storage::{MessagePos, StorageResult},
    view::{self, Collector},
};
use crate::{
    model::{ConversationFacts, MessageFacts, UserId},
    protocol::{
        EntityKey, ErrorCode, MAX_HELD_KEYS, Position, Record, Restore, SubId, Target, Update,
    },
};

/// The largest window length a subscribe may ask to restore; larger asks are clamped.
const MAX_RESTORED_WINDOW: usize = 10_000;

/// The most events a resume reads from the log; a client further behind gets every record of
/// its subscriptions again (a resync).
pub(crate) const MAX_RESUME_EVENTS: u64 = 10_000;

/// The keys touched by the events after a log position, kept while a client resumes so that
/// each resumed subscription reads only the events that are new since the previous one.
struct Touched {
    since: Position,
    upto: u64,
    keys: HashSet<EntityKey>,
}

/// Where a window ends. Items at or above the bound (in window order) are in it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    /// Not computed yet: take the first page of this size.
    First(usize),
    /// Not computed yet: restore a client's window (see [`Restore`]).
    Restore {
        len: usize,
        oldest: Option<EntityKey>,
    },
    /// Everything is loaded.
    All,
    /// Items whose sort key is at least this one.
    From(SortKey),
}

/// Orders window items: greater keys come first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey(i64, u64, String);

struct FeedSub {
    target: Target,
    bound: Bound,
    /// The keys this subscription's snapshot needs.
    needed: HashSet<EntityKey>,
    /// The last window sent: items and `loaded_all`.
    window: Option<(Option<Vec<EntityKey>>, bool)>,
}

pub(crate) struct Feed {
    me: UserId,
    subs: HashMap<SubId, FeedSub>,
    /// The last record sent per needed key, with the number of subscriptions needing it.
    known: HashMap<EntityKey, (Option<Record>, usize)>,
    /// Keys added to (`true`) or removed from `known` since [`Feed::take_key_changes`].
    key_changes: Vec<(EntityKey, bool)>,
    resume: Option<Touched>,
}

impl Feed {
    pub(crate) fn new(me: UserId) -> Self {
        Self {
            me,
            subs: HashMap::new(),
            known: HashMap::new(),
            key_changes: Vec::new(),
            resume: None,
        }
    }

    pub(crate) fn me(&self) -> &UserId {
        &self.me
    }

    /// The targets of the live subscriptions.
    pub(crate) fn targets(&self) -> impl Iterator<Item = &Target> {
        self.subs.values().map(|sub| &sub.target)
    }

    /// The keys whose records the client holds, as far as this feed knows.
    pub(crate) fn held(&self) -> impl Iterator<Item = &EntityKey> {
        self.known.keys()
    }

    /// The keys the feed started (`true`) or stopped (`false`) holding since the last call.
    pub(crate) fn take_key_changes(&mut self) -> std::vec::Drain<'_, (EntityKey, bool)> {
        self.key_changes.drain(..)
    }

    pub(crate) fn subscribe(
        &mut self,
        storage: &dyn Storage,
        sub: SubId,
        target: Target,
        restore: Option<Restore>,
    ) -> EngineResult<Vec<Update>> {
        if self.subs.contains_key(&sub) {
            return Err(EngineError::rejected(
                ErrorCode::InvalidRequest,
                format!("subscription {sub} already exists"),
            ));
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            return Err(EngineError::rejected(
                ErrorCode::LimitExceeded,
                format!("at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection"),
            ));
        }
        let (bound, unchanged) = match restore {
            None => (Bound::First(target.paging().first), HashSet::new()),
            Some(Restore {
                len,
                oldest,
                since,
                held,
            }) => {
                // Never less than a first page: a window that was empty or pending when the
                // connection dropped must still show what arrived meanwhile.
                let len = (len as usize)
                    .min(MAX_RESTORED_WINDOW)
                    .max(target.paging().first);
                let bound = Bound::Restore { len, oldest };
                (bound, self.unchanged(storage, since, held)?)
            }
        };
        self.subs.insert(
            sub,
            FeedSub {
                target,
                bound,
                needed: HashSet::new(),
                window: None,
            },
        );
        let mut updates = Vec::new();
        let mut collector = Collector::default();
        self.recompute(storage, sub, 0, &mut collector, &mut updates)?;
        // The client holds these current: count them as sent.
        for key in &unchanged {
            if let (Some((sent @ None, _)), Some(record)) =
                (self.known.get_mut(key), collector.records.get(key))
            {
                *sent = Some(record.clone());
            }
        }
        self.send_records(collector, &HashSet::new(), storage, &mut updates)?;
        Ok(updates)
    }

    /// The keys of `held` (what a reconnecting client holds, current as of `since`) that no
    /// event after `since` touched: the client's copies of those are current. Empty when that
    /// cannot be told: no `since`, another epoch, a log that no longer reaches back, more than
    /// [`MAX_RESUME_EVENTS`] events or [`MAX_HELD_KEYS`] keys.
    fn unchanged(
        &mut self,
        storage: &dyn Storage,
        since: Option<Position>,
        held: Vec<EntityKey>,
    ) -> StorageResult<HashSet<EntityKey>> {
        let (epoch, now) = storage.log_position()?;
        let Some(since) = since.filter(|since| {
            since.epoch == epoch
                && since.seq <= now
                && now - since.seq <= MAX_RESUME_EVENTS
                && held.len() <= MAX_HELD_KEYS
        }) else {
            return Ok(HashSet::new());
        };
        let mut touched = match self.resume.take() {
            Some(touched) if touched.since == since => touched,
            _ => Touched {
                since,
                upto: since.seq,
                keys: HashSet::new(),
            },
        };
        // Only the events after those already read for this position.
        let Some(events) = storage.events_after(touched.upto)? else {
            return Ok(HashSet::new());
        };
        touched.keys.extend(touched_keys(&events));
        touched.upto = now;
        let unchanged = held
            .into_iter()
            .filter(|key| !touched.keys.contains(key))
            .collect();
        self.resume = Some(touched);
        Ok(unchanged)
    }

    pub(crate) fn load_more(
        &mut self,
        storage: &dyn Storage,
        sub: SubId,
        count: u32,
    ) -> EngineResult<Vec<Update>> {
        let Some(feed_sub) = self.subs.get(&sub) else {
            return Err(EngineError::rejected(
                ErrorCode::NotFound,
                format!("subscription {sub} does not exist"),
            ));
        };
        let paging = feed_sub.target.paging();
        let count = count as usize;
        if !(1..=paging.max).contains(&count) {
            return Err(EngineError::rejected(
                ErrorCode::InvalidRequest,
                format!(
                    "load_more count must be between 1 and {}, got {count}",
                    paging.max
                ),
            ));
        }
        let mut updates = Vec::new();
        let mut collector = Collector::default();
        self.recompute(storage, sub, count, &mut collector, &mut updates)?;
        self.send_records(collector, &HashSet::new(), storage, &mut updates)?;
        Ok(updates)
    }

    pub(crate) fn unsubscribe(&mut self, sub: SubId) -> Vec<Update> {
        if let Some(old) = self.subs.remove(&sub) {
            self.release(&old.needed);
        }
        Vec::new()
    }

    /// Computes the push for committed events, which touched the keys `touched` (see
    /// [`touched_keys`]).
    pub(crate) fn on_events(
        &mut self,
        storage: &dyn Storage,
        events: &[Event],
        touched: &HashSet<EntityKey>,
    ) -> StorageResult<Vec<Update>> {
        if self.subs.is_empty() {
            return Ok(Vec::new());
        }
        let affected: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, s)| self.affects(storage, &s.target, s.window.as_ref(), events))
            .map(|(id, _)| *id)
            .collect();
        let mut updates = Vec::new();
        let mut collector = Collector::default();
        for sub in affected {
            match self.recompute(storage, sub, 0, &mut collector, &mut updates) {
                Ok(()) => {}
                Err(EngineError::Storage(e)) => return Err(e),
                Err(EngineError::Rejected { .. }) => {}
            }
        }
        self.send_records(collector, touched, storage, &mut updates)?;
        Ok(updates)
    }

    /// Whether `events` can change the window of a subscription.
    fn affects(
        &self,
        storage: &dyn Storage,
        target: &Target,
        window: Option<&(Option<Vec<EntityKey>>, bool)>,
        events: &[Event],
    ) -> bool {
        let me = &self.me;
        events.iter().any(|event| match (target, event) {
            (Target::User { id }, Event::UserChanged { user }) => id == user,
            (Target::User { .. }, _) => false,
            (Target::Conversation { id }, event) => event.conversation() == Some(id),
            (Target::Conversations { .. }, event) => match event.conversation() {
                None => false,
                Some(c) => {
                    window
                        .and_then(|w| w.0.as_ref())
                        .is_some_and(|items| items.contains(&EntityKey::conversation(c)))
                        || view::is_participant(storage, c, me).unwrap_or(true)
                }
            },
            (
                Target::Messages {
                    conversation,
                    filter,
                },
                event,
            ) => match event {
                Event::UserChanged { .. } => filter.is_some(),
                Event::MessageCreated {
                    conversation: c, ..
                }
                | Event::MessageDeleted {
                    conversation: c, ..
                } => c == conversation,
                Event::MessageChanged {
                    conversation: c, ..
                } => c == conversation && filter.is_some(),
                Event::ParticipantChanged {
                    conversation: c,
                    user,
                }
                | Event::ParticipantRemoved {
                    conversation: c,
                    user,
                } => c == conversation && user == me,
                _ => false,
            },
            (Target::Participants { conversation }, event) => matches!(event,
                Event::ParticipantChanged { conversation: c, .. }
                | Event::ParticipantRemoved { conversation: c, .. } if c == conversation),
            (
                Target::Participant {
                    conversation,
                    user: u,
                },
                event,
            ) => matches!(event,
                Event::ParticipantChanged { conversation: c, user }
                | Event::ParticipantRemoved { conversation: c, user }
                    if c == conversation && (user == u || user == me)),
        })
    }

    /// Recomputes one window (growing it by `extra` items), sends it if it changed, and
    /// re-counts the keys its snapshot needs.
    fn recompute(
        &mut self,
        storage: &dyn Storage,
        sub: SubId,
        extra: usize,
        collector: &mut Collector,
        updates: &mut Vec<Update>,
    ) -> EngineResult<()> {
        let Some(feed_sub) = self.subs.get_mut(&sub) else {
            return Ok(());
        };
        let reach = Reach::of(&feed_sub.bound, extra);
        let items = list(storage, &self.me, &feed_sub.target, &reach)?;
        let (items, loaded_all) = match items {
            None => (None, true),
            Some(items) => {
                let (items, loaded_all) = window(items, &mut feed_sub.bound, extra);
                (Some(items), loaded_all)
            }
        };
        let mut needed = HashSet::new();
        for key in items.iter().flatten() {
            collector.collect(storage, &self.me, key)?;
            closure(&collector.records, &self.me, key, &mut needed);
        }
        let window = (items, loaded_all);
        if feed_sub.window.as_ref() != Some(&window) {
            updates.push(Update::Window {
                sub,
                items: window.0.clone(),
                loaded_all,
            });
            feed_sub.window = Some(window);
        }
        let old = std::mem::replace(&mut feed_sub.needed, needed);
        let new = feed_sub.needed.clone();
        for key in new.difference(&old) {
            let entry = self.known.entry(key.clone()).or_insert_with(|| {
                self.key_changes.push((key.clone(), true));
                (None, 0)
            });
            entry.1 += 1;
            // A needed record that does not exist (a deleted referenced message): say so, in
            // case the client still holds it from before a reconnect.
            if entry.1 == 1 && !collector.records.contains_key(key) {
                updates.push(Update::Remove { key: key.clone() });
            }
        }
        let released: HashSet<EntityKey> = old.difference(&new).cloned().collect();
        self.release(&released);
        Ok(())
    }

    fn release(&mut self, keys: &HashSet<EntityKey>) {
        for key in keys {
            if let Some(entry) = self.known.get_mut(key) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.known.remove(key);
                    self.key_changes.push((key.clone(), false));
                }
            }
        }
    }

    /// Sends every needed record that the client lacks or has in an older version: those just
    /// collected, and those touched by events.
    fn send_records(
        &mut self,
        collector: Collector,
        touched: &HashSet<EntityKey>,
        storage: &dyn Storage,
        updates: &mut Vec<Update>,
    ) -> StorageResult<()> {
        let mut collected: HashMap<EntityKey, Option<Record>> = collector
            .records
            .into_iter()
            .map(|(key, record)| (key, Some(record)))
            .collect();
        let stale = touched.iter().filter(|key| !collected.contains_key(*key));
        let stale: Vec<EntityKey> = stale.cloned().collect();
        for key in stale {
            if self.known.contains_key(&key) {
                let current = view::fetch(storage, &self.me, &key)?;
                collected.insert(key, current);
            }
        }
        for (key, current) in collected {
            let Some((sent, _)) = self.known.get_mut(&key) else {
                continue;
            };
            if *sent == current {
                continue;
            }

            match &current {
                Some(record) => updates.push(Update::Upsert {
                    record: record.clone(),
                }),
                None => updates.push(Update::Remove { key }),
            }
            *sent = current;
        }
        Ok(())
    }
}

/// The keys whose records the events may have changed.
pub(crate) fn touched_keys(events: &[Event]) -> HashSet<EntityKey> {
    let mut keys = HashSet::new();
    for event in events {
        match event {
            Event::UserChanged { user } => {
                keys.insert(EntityKey::user(user));
            }
            Event::ConversationChanged { conversation } => {
                keys.insert(EntityKey::conversation(conversation));
            }
            Event::ParticipantChanged { conversation, user }
            | Event::ParticipantRemoved { conversation, user } => {
                keys.insert(EntityKey::participant(conversation, user));
                keys.insert(EntityKey::read_state(conversation));
            }
            Event::MessageCreated {
                conversation,
                message,
            } => {
                keys.insert(EntityKey::message(message));
                keys.insert(EntityKey::read_state(conversation));
                // It is the conversation's new last message.
                keys.insert(EntityKey::conversation(conversation));
            }
            Event::MessageDeleted {
                conversation,
                message,
            } => {
                keys.insert(EntityKey::message(message));
                keys.insert(EntityKey::read_state(conversation));
            }
            Event::MessageChanged { message, .. } => {
                keys.insert(EntityKey::message(message));
            }
            Event::ReadChanged { conversation, .. } => {
                keys.insert(EntityKey::read_state(conversation));
            }
        }
    }
    keys
}

/// The keys a snapshot rooted at `key` reads, from records already collected.
///
/// This must be exactly the set of keys the client store's assembly reads (`store::assemble`):
/// the client evicts records no snapshot reads, and the feed does not resend records it
/// believes the client holds.
fn closure(
    records: &HashMap<EntityKey, Record>,
    me: &UserId,
    key: &EntityKey,
    out: &mut HashSet<EntityKey>,
) {
    if !out.insert(key.clone()) {
        return;
    }
    match records.get(key) {
        Some(Record::Conversation(c)) => {
            out.insert(EntityKey::read_state(&c.id));
            out.insert(EntityKey::participant(&c.id, me));
            if let Some(m) = &c.last_message_id {
                closure(records, me, &EntityKey::message(m), out);
            }
        }
        Some(Record::Participant(p)) => {
            out.insert(EntityKey::user(&p.user_id));
        }
        Some(Record::Message(m)) => {
            if let Some(sender) = &m.sender_id {
                out.insert(EntityKey::user(sender));
            }
            if let Some(r) = &m.referenced_message_id {
                let key = EntityKey::message(r);
                if let Some(Record::Message(referenced)) = records.get(&key)
                    && let Some(sender) = &referenced.sender_id
                {
                    out.insert(EntityKey::user(sender));
                }
                out.insert(key);
            }
        }
        _ => {}
    }
}

/// How much of a long list a window needs: the items it holds, `extra` more, and one beyond
/// them, which tells whether anything is left ([`window`] counts on it).
struct Reach {
    /// Every item at or above this key, if the bound is one, and then `count` more.
    from: Option<SortKey>,
    /// Without `from`, at least this many items in all (`usize::MAX`: every item).
    count: usize,
}

impl Reach {
    fn of(bound: &Bound, extra: usize) -> Self {
        let (from, count) = match bound {
            Bound::First(n) => (None, *n),
            // A restore wants every item down to `oldest`, which is found by reading.
            Bound::Restore {
                oldest: Some(_), ..
            }
            | Bound::All => (None, usize::MAX),
            Bound::Restore { len, oldest: None } => (None, *len),
            Bound::From(key) => (Some(key.clone()), 0),
        };
        Reach {
            from,
            count: count.saturating_add(extra).saturating_add(1),
        }
    }

    /// Whether `items` (a prefix of the list, in window order) reach far enough.
    fn reached(&self, items: &[(SortKey, EntityKey)]) -> bool {
        let counted = match &self.from {
            Some(from) => items.len() - items.partition_point(|(k, _)| k >= from),
            None => items.len(),
        };
        counted >= self.count
    }
}

/// The items a target can show, in window order (greatest key first), or `None` if the root
/// is missing or hidden from `me`. Message lists are read only as far as `reach`; other lists
/// (a user's conversations, a conversation's participants) are read whole.
fn list(
    storage: &dyn Storage,
    me: &UserId,
    target: &Target,
    reach: &Reach,
) -> StorageResult<Option<Vec<(SortKey, EntityKey)>>> {
    let single = |key: EntityKey, visible: bool| {
        Some(if visible {
            vec![(SortKey(0, 0, String::new()), key)]
        } else {
            Vec::new()
        })
    };
    Ok(match target {
        Target::User { id } => {
            let exists = storage.user(id)?.is_some();
            if exists {
                single(EntityKey::user(id), true)
            } else {
                None
            }
        }
        Target::Conversation { id } => {
            if view::is_participant(storage, id, me)? {
                single(EntityKey::conversation(id), true)
            } else {
                None
            }
        }
        Target::Participant { conversation, user } => {
            if view::is_participant(storage, conversation, me)?
                && storage.participant(conversation, user)?.is_some()
            {
                single(EntityKey::participant(conversation, user), true)
            } else {
                None
            }
        }
        Target::Conversations { filter } => {
            let mut items = Vec::new();
            for id in storage.conversations_of(me)? {
                let (Some(conversation), Some(read)) = (
                    storage.conversation(&id)?,
                    view::read_state(storage, &id, me)?,
                ) else {
                    continue;
                };
                let Some(mine) = storage.participant(&id, me)? else {
                    continue;
                };
                let last_message_at = match &conversation.record.last_message_id {
                    Some(m) => storage.message(m)?.map(|(m, _)| m.created_at),
                    None => None,
                };
                let activity = last_message_at.unwrap_or(0).max(mine.record.joined_at);
                let facts = ConversationFacts {
                    access: mine.record.access,
                    custom: &conversation.record.custom,
                    is_unread: read.is_unread,
                    subject: conversation.record.subject.as_deref(),
                    last_activity_at: activity,
                    created_at: conversation.record.created_at,
                    has_messages: conversation.record.last_message_id.is_some(),
                    joined_at: mine.record.joined_at,
                };
                if filter.as_ref().is_none_or(|f| f.matches(&facts)) {
                    items.push((
                        SortKey(activity, 0, id.to_string()),
                        EntityKey::conversation(&id),
                    ));
                }
            }
            items.sort_by(|a, b| b.0.cmp(&a.0));
            Some(items)
        }
        Target::Participants { conversation } => {
            if !view::is_participant(storage, conversation, me)? {
                return Ok(None);
            }
            let mut items: Vec<_> = storage
                .participants(conversation)?
                .into_iter()
                .map(|p| {
                    let key = EntityKey::participant(conversation, &p.record.user_id);
                    (
                        SortKey(p.record.joined_at, 0, p.record.user_id.to_string()),
                        key,
                    )
                })
                .collect();
            items.sort_by(|a, b| b.0.cmp(&a.0));
            Some(items)
        }
        Target::Messages {
            conversation,
            filter,
        } => {
            if !view::is_participant(storage, conversation, me)? {
                return Ok(None);
            }
            let mut items = Vec::new();
            let mut before: Option<MessagePos> = None;
            loop {
                let page =
                    storage.messages_before(conversation, before, reach.count.clamp(32, 256))?;
                let Some((_, last)) = page.last() else { break };
                before = Some(*last);
                for (message, pos) in page {
                    let keep = match filter {
                        None => true,
                        Some(filter) => {
                            let sender = match &message.sender_id {
                                Some(s) => storage.user(s)?.map(|u| u.public),
                                None => None,
                            };
                            filter.matches(&MessageFacts {
                                message_type: message.message_type,
                                origin: message.origin,
                                custom: &message.custom,
                                created_at: message.created_at,
                                sender: sender.as_ref(),
                            })
                        }
                    };
                    if keep {
                        let key = SortKey(pos.created_at, pos.ordinal, String::new());
                        items.push((key, EntityKey::message(&message.id)));
                    }
                }
                if reach.reached(&items) {
                    break;
                }
            }
            Some(items)
        }
    })
}

/// Cuts a window out of `items` (in window order) and moves the bound by `extra` items.
/// Returns the window and whether it holds everything.
fn window(
    items: Vec<(SortKey, EntityKey)>,
    bound: &mut Bound,
    extra: usize,
) -> (Vec<EntityKey>, bool) {
    let inside = match bound {
        Bound::First(n) => *n,
        Bound::Restore { len, oldest } => {
            let through = oldest
                .as_ref()
                .and_then(|oldest| items.iter().position(|(_, key)| key == oldest))
                .map_or(0, |at| at + 1);
            through.max(*len)
        }
        Bound::All => items.len(),
        Bound::From(key) => items.partition_point(|(k, _)| k >= key),
    };
    let end = (inside + extra).min(items.len());
    if end == items.len() {
        *bound = Bound::All;
    } else if end > 0 {
        *bound = Bound::From(items[end - 1].0.clone());
    }
    // With nothing inside, the bound stays: newer items still join the window.
    let loaded_all = end == items.len();
    (
        items.into_iter().take(end).map(|(_, key)| key).collect(),
        loaded_all,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConversationId;

    fn items(n: i64) -> Vec<(SortKey, EntityKey)> {
        (0..n)
            .rev()
            .map(|i| {
                let id = ConversationId::new(format!("c{i}"));
                (SortKey(i, 0, id.to_string()), EntityKey::conversation(&id))
            })
            .collect()
    }

    /// A message window reads only as far down the list as it needs, and cuts out the same
    /// window as from the whole list, for every kind of bound and growth.
    #[test]
    fn message_windows_read_only_what_they_need() {
        let engine = crate::engine::Engine::new();
        let _chat = crate::engine::tests::chat(&engine, 100);
        engine.with_state(|state| {
            let me = UserId::new("u");
            let target = Target::Messages {
                conversation: ConversationId::new("c"),
                filter: None,
            };
            let everything = Reach {
                from: None,
                count: usize::MAX,
            };
            let all = list(state.storage(), &me, &target, &everything)
                .unwrap()
                .unwrap();
            assert_eq!(all.len(), 100);
            let mut bounds: Vec<Bound> = [1, 30, 99, 100, 200].map(Bound::First).to_vec();
            bounds.extend([0, 29, 50, 98, 99].map(|at| Bound::From(all[at].0.clone())));
            bounds.push(Bound::All);
            for bound in bounds {
                for extra in [0, 1, 30, 100] {
                    let reach = Reach::of(&bound, extra);
                    let some = list(state.storage(), &me, &target, &reach)
                        .unwrap()
                        .unwrap();
                    if bound == Bound::First(30) && extra == 0 {
                        assert!(some.len() < 100, "read {} items", some.len());
                    }
                    let (mut a, mut b) = (bound.clone(), bound.clone());
                    let expected = window(all.clone(), &mut a, extra);
                    assert_eq!(window(some, &mut b, extra), expected, "{bound:?} + {extra}");
                    assert_eq!(a, b);
                }
            }
        });
    }

    /// A window keeps its bound: new items above it join, load_more moves it, and it reports
    /// loaded_all exactly when nothing is left below.
    #[test]
    fn window_bounds() {
        let mut bound = Bound::First(3);
        let (w, all) = window(items(5), &mut bound, 0);
        assert_eq!((w.len(), all), (3, false));
        // Two newer items arrive: both join the window.
        let (w, all) = window(items(7), &mut bound, 0);
        assert_eq!((w.len(), all), (5, false));
        let (w, all) = window(items(7), &mut bound, 1);
        assert_eq!((w.len(), all), (6, false));
        let (w, all) = window(items(7), &mut bound, 5);
        assert_eq!((w.len(), all), (7, true));
        assert_eq!(bound, Bound::All);
        let mut empty = Bound::First(3);
        assert_eq!(window(Vec::new(), &mut empty, 0), (Vec::new(), true));
        // Every item of a window vanishes while older ones remain: the window is empty but
        // keeps its bound, so a newer item joins it.
        let mut bound = Bound::From(SortKey(10, 0, String::new()));
        assert_eq!(window(items(5), &mut bound, 0), (Vec::new(), false));
        let (w, _) = window(items(12), &mut bound, 0);
        assert_eq!(w.len(), 2);
    }
}
