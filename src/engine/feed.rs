//! One connection's live subscriptions on the engine side.
//!
//! For each subscription the feed keeps its window item by item (where each item sorts and the
//! keys its snapshot reads) and its bound; for the connection it keeps the last record sent for
//! every needed key. After each commit it places again only the items the events concern (a
//! new message, the conversation it moved to the front), re-lists a window only where that
//! cannot be decided locally (see `Feed::plan`), sends the windows that changed and the records
//! the client lacks or holds stale versions of, and removes nothing else: the client store
//! collects its own garbage.

use std::{collections::VecDeque, sync::Arc};

use super::{
    EngineError, EngineResult, Event, MAX_SUBSCRIPTIONS_PER_CONNECTION, Storage, activity,
    storage::{MessagePos, StorageError, StorageResult, StoredParticipant},
    view::{self, Collector, Reads},
};
use crate::{
    HashMap, HashSet,
    model::{
        ConversationFacts, ConversationFilter, ConversationId, MessageFacts, MessageFilter,
        MessageRecord, Timestamp, UserId, normalize_emoji,
    },
    protocol::{
        EntityKey, ErrorCode, MAX_HELD_KEYS, Position, Record, Restore, RowChange, SharedRecord,
        SubId, Target, Update,
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

/// One subscription: its window, kept item by item so that a commit changes only the items
/// it concerns.
///
/// Invariants: `items` is sorted by sort key, greatest first, and holds exactly the keys of
/// `entries`; `needed` counts, for every key, the entries whose `reads` hold it.
struct FeedSub {
    target: Target,
    bound: Bound,
    /// The window in order; `None` while its root is missing or hidden from the user. A deque,
    /// so that the usual change (a new item at the front) moves nothing.
    items: Option<VecDeque<(SortKey, EntityKey)>>,
    loaded_all: bool,
    /// The changes that take the client's window to `items`, or `None` if the client must be
    /// sent the whole window (it has none yet, the root appeared or vanished, or the changes
    /// would be longer than the window).
    changes: Option<Vec<RowChange>>,
    /// The window's items by key: where each sorts and the keys its snapshot reads.
    entries: HashMap<EntityKey, (SortKey, Arc<[EntityKey]>)>,
    /// For the lists read whole (participants): the items below the window. `loaded_all` is
    /// whether there are none. `None` for message windows and conversation lists, which read
    /// only as far as they show.
    below: Option<HashMap<EntityKey, SortKey>>,
    /// How many items read each key: the keys this subscription's snapshot needs.
    needed: HashMap<EntityKey, usize>,
    /// For the windows read only as far as they show: an item last seen below the bound.
    /// While it is still there, an item leaving the part below cannot have emptied it (see
    /// [`Feed::still_beneath`]); checked on use, never trusted.
    beneath: Option<EntityKey>,
}

/// The items of a [`Plan::Items`], each once: found by a scan while they are few (one event
/// each, usually one), by a set beyond (a batch of many writes).
#[derive(Default)]
struct Planned {
    items: Vec<(EntityKey, bool)>,
    seen: HashSet<EntityKey>,
}

impl Planned {
    /// Up to this many items, a scan is cheaper than a set.
    const SCAN: usize = 8;

    /// Adds `key` (new or not) unless it is planned already.
    fn push(&mut self, key: EntityKey, new: bool) {
        if self.items.len() < Self::SCAN {
            if self.items.iter().any(|(k, _)| *k == key) {
                return;
            }
        } else {
            if self.seen.is_empty() {
                self.seen.extend(self.items.iter().map(|(k, _)| k.clone()));
            }
            if !self.seen.insert(key.clone()) {
                return;
            }
        }
        self.items.push((key, new));
    }
}

/// What a commit does to one window.
enum Plan {
    /// Compute it again from storage, bounded by its bound.
    Relist,
    /// Place these items again (each a key that may join, move or leave), the flag telling
    /// whether the item is new (it cannot have been in the list before).
    Items(Vec<(EntityKey, bool)>),
}

pub(crate) struct Feed {
    me: UserId,
    subs: HashMap<SubId, FeedSub>,
    /// The last record sent per needed key, with the number of subscriptions needing it.
    known: HashMap<EntityKey, (Option<SharedRecord>, usize)>,
    /// Users added to (`true`) or removed from `known` since [`Feed::take_user_changes`].
    user_changes: Vec<(UserId, bool)>,
    resume: Option<Touched>,
}

impl Feed {
    pub(crate) fn new(me: UserId) -> Self {
        Self {
            me,
            subs: HashMap::default(),
            known: HashMap::default(),
            user_changes: Vec::new(),
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

    /// The users whose records the client holds, as far as this feed knows.
    pub(crate) fn held_users(&self) -> impl Iterator<Item = &UserId> {
        self.known.keys().filter_map(|key| match key {
            EntityKey::User { id } => Some(id),
            _ => None,
        })
    }

    /// The users the feed started (`true`) or stopped (`false`) holding since the last call.
    pub(crate) fn take_user_changes(&mut self) -> std::vec::Drain<'_, (UserId, bool)> {
        self.user_changes.drain(..)
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
        if let Target::Reactions { emoji, .. } = &target
            && normalize_emoji(emoji).as_ref() != Ok(emoji)
        {
            return Err(EngineError::rejected(
                ErrorCode::InvalidRequest,
                format!("{emoji:?} is not an emoji in its stored form"),
            ));
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            return Err(EngineError::rejected(
                ErrorCode::LimitExceeded,
                format!("at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection"),
            ));
        }
        let (bound, unchanged) = match restore {
            None => (Bound::First(target.paging().first), HashSet::default()),
            Some(Restore {
                len,
                oldest,
                since,
                held,
                exact,
            }) => {
                // Never less than a first page (unless asked for exactly `len`): a window that
                // was empty or pending when the connection dropped must still show what
                // arrived meanwhile.
                let len = (len as usize).min(MAX_RESTORED_WINDOW);
                let len = if exact {
                    len
                } else {
                    len.max(target.paging().first)
                };
                let bound = Bound::Restore { len, oldest };
                (bound, self.unchanged(storage, since, held)?)
            }
        };
        self.subs.insert(
            sub,
            FeedSub {
                target,
                bound,
                items: None,
                loaded_all: false,
                changes: None,
                entries: HashMap::default(),
                below: None,
                needed: HashMap::default(),
                beneath: None,
            },
        );
        let mut updates = Vec::new();
        let mut reads = Reads::default();
        let mut collector = Collector::new(&mut reads);
        self.recompute(storage, sub, 0, &mut collector, &mut updates)?;
        // The client holds these current: count them as sent.
        for key in &unchanged {
            if let (Some((sent @ None, _)), Some(record)) =
                (self.known.get_mut(key), collector.records.get(key))
            {
                *sent = Some(record.clone());
            }
        }
        self.send_records(collector, &HashSet::default(), storage, &mut updates)?;
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
            return Ok(HashSet::default());
        };
        let mut touched = match self.resume.take() {
            Some(touched) if touched.since == since => touched,
            _ => Touched {
                since,
                upto: since.seq,
                keys: HashSet::default(),
            },
        };
        // Only the events after those already read for this position.
        let Some(events) = storage.events_after(touched.upto)? else {
            return Ok(HashSet::default());
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
        let mut reads = Reads::default();
        let mut collector = Collector::new(&mut reads);
        self.recompute(storage, sub, count, &mut collector, &mut updates)?;
        self.send_records(collector, &HashSet::default(), storage, &mut updates)?;
        Ok(updates)
    }

    pub(crate) fn unsubscribe(&mut self, sub: SubId) -> Vec<Update> {
        if let Some(old) = self.subs.remove(&sub) {
            for key in old.needed.keys() {
                self.release(key);
            }
        }
        Vec::new()
    }

    /// Computes the push for committed events, which touched the keys `touched` (see
    /// [`touched_keys`]), reading records through `reads`, which the commit's other feeds
    /// share.
    ///
    /// # Performance
    ///
    /// Each affected window changes item by item (see [`Feed::plan`]): a new message costs a
    /// window that shows it O(log window) and the reads of that one message, whatever the
    /// window's length or the history. Only changes that cannot be decided locally re-list a
    /// window, and then only as far as its bound.
    pub(crate) fn on_events(
        &mut self,
        storage: &dyn Storage,
        events: &[Event],
        touched: &HashSet<EntityKey>,
        reads: &mut Reads,
    ) -> StorageResult<Vec<Update>> {
        if self.subs.is_empty() {
            return Ok(Vec::new());
        }
        let affected: Vec<(SubId, Plan)> = self
            .subs
            .iter()
            .filter(|(_, s)| self.affects(storage, s, events, reads))
            .map(|(id, s)| (*id, self.plan(s, events)))
            .collect();
        let mut updates = Vec::new();
        let mut collector = Collector::new(reads);
        for (sub, plan) in affected {
            let placed = match plan {
                Plan::Relist => Ok(false),
                Plan::Items(items) => {
                    self.place(storage, sub, &items, &mut collector, &mut updates)
                }
            };
            let done = match placed {
                Ok(true) => Ok(()),
                Ok(false) => self.recompute(storage, sub, 0, &mut collector, &mut updates),
                Err(e) => Err(EngineError::Storage(e)),
            };
            match done {
                Ok(()) | Err(EngineError::Rejected { .. }) => {}
                Err(EngineError::Storage(e)) => return Err(e),
            }
        }
        self.send_records(collector, touched, storage, &mut updates)?;
        Ok(updates)
    }

    /// Whether `events` can change the window of a subscription.
    fn affects(
        &self,
        storage: &dyn Storage,
        sub: &FeedSub,
        events: &[Event],
        reads: &mut Reads,
    ) -> bool {
        let me = &self.me;
        events.iter().any(|event| match (&sub.target, event) {
            (Target::User { id }, Event::UserChanged { user }) => id == user,
            (Target::User { .. }, _) => false,
            (Target::Conversation { id }, event) => event.conversation() == Some(id),
            (Target::Conversations { .. }, event) => match event.conversation() {
                None => false,
                Some(c) => {
                    let key = EntityKey::conversation(c);
                    sub.entries.contains_key(&key)
                        || sub
                            .below
                            .as_ref()
                            .is_some_and(|below| below.contains_key(&key))
                        || reads.is_participant(storage, c, me).unwrap_or(true)
                        // Leaving one below the window may leave nothing below it.
                        || matches!(event, Event::ParticipantRemoved { user, .. } if user == me)
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
                // A message's first reaction (or its last one's removal) changes what its rows
                // read; other reactions change only records, sent as touched keys.
                Event::ReactionChanged {
                    conversation: c,
                    reshaped,
                    ..
                } => c == conversation && *reshaped,
                event => event.changes_participation(conversation, me),
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
            (
                Target::Reactions {
                    conversation,
                    message,
                    emoji,
                },
                event,
            ) => match event {
                Event::ReactionChanged {
                    message: m,
                    emoji: e,
                    ..
                } => m == message && e == emoji,
                Event::MessageDeleted { message: m, .. } => m == message,
                event => event.changes_participation(conversation, me),
            },
        })
    }

    /// How `events` change a window that [`Feed::affects`] chose. Events that concern one
    /// item place that item again: anything in one conversation for a conversation list, a
    /// new, a deleted or a newly (un)reacted-to message (each with the window's replies to it,
    /// whose reads change) or, filtered, an edited one for a message window, another user's
    /// participation for a participant list, a reaction for a reactions window. A reaction
    /// that changes only counts places nothing: its records travel as touched keys. The rest
    /// re-lists: a change of the user's own participation (what they may see), a user change
    /// under a message filter (it may match messages of theirs), a reactions window's message
    /// deleted, the single-record targets, and windows without a bound yet.
    fn plan(&self, sub: &FeedSub, events: &[Event]) -> Plan {
        if sub.items.is_none() || !matches!(sub.bound, Bound::All | Bound::From(_)) {
            return Plan::Relist;
        }
        let me = &self.me;
        let mut items = Planned::default();
        for event in events {
            let item = match (&sub.target, event) {
                // Only records change (sent as touched keys), not what the rows read.
                (
                    Target::Conversations { .. } | Target::Messages { .. },
                    Event::ReactionChanged {
                        reshaped: false, ..
                    },
                ) => continue,
                (Target::Conversations { .. }, event) => match event.conversation() {
                    Some(c) => (EntityKey::conversation(c), false),
                    None => continue,
                },
                (
                    Target::Messages {
                        conversation,
                        filter,
                    },
                    event,
                ) => match event {
                    Event::MessageCreated {
                        conversation: c,
                        message,
                    } if c == conversation => (EntityKey::message(message), true),
                    Event::MessageChanged {
                        conversation: c,
                        message,
                    } if c == conversation && filter.is_some() => {
                        (EntityKey::message(message), false)
                    }
                    // Replies in the window read the message: its first reaction, its last
                    // one's removal or its deletion change what they read, so they are placed
                    // again too.
                    Event::ReactionChanged {
                        conversation: c,
                        message,
                        ..
                    }
                    | Event::MessageDeleted {
                        conversation: c,
                        message,
                    } if c == conversation => {
                        let key = EntityKey::message(message);
                        let readers = sub.needed.get(&key).copied().unwrap_or(0);
                        if readers > usize::from(sub.entries.contains_key(&key)) {
                            for (item, (_, reads)) in &sub.entries {
                                if *item != key && reads.contains(&key) {
                                    items.push(item.clone(), false);
                                }
                            }
                        }
                        (key, false)
                    }
                    Event::MessageCreated { .. }
                    | Event::MessageChanged { .. }
                    | Event::MessageDeleted { .. }
                    | Event::ConversationChanged { .. }
                    | Event::ReadChanged { .. }
                    | Event::ReactionChanged { .. } => continue,
                    Event::UserChanged { .. } if filter.is_none() => continue,
                    Event::ParticipantChanged {
                        conversation: c,
                        user,
                    }
                    | Event::ParticipantRemoved {
                        conversation: c,
                        user,
                    } if c != conversation || user != me => continue,
                    Event::UserChanged { .. }
                    | Event::ParticipantChanged { .. }
                    | Event::ParticipantRemoved { .. } => return Plan::Relist,
                },
                (
                    Target::Participants { conversation },
                    Event::ParticipantChanged {
                        conversation: c,
                        user,
                    }
                    | Event::ParticipantRemoved {
                        conversation: c,
                        user,
                    },
                ) if c == conversation && user != me => {
                    (EntityKey::participant(conversation, user), false)
                }
                (Target::Participants { conversation }, event)
                    if event.conversation() != Some(conversation) =>
                {
                    continue;
                }
                (
                    Target::Reactions {
                        conversation,
                        message,
                        emoji,
                    },
                    event,
                ) => match event {
                    Event::ReactionChanged {
                        message: m,
                        emoji: e,
                        user,
                        ..
                    } if m == message && e == emoji => {
                        (EntityKey::reaction(message, emoji, user), false)
                    }
                    // The message went, or what the user may see changed.
                    Event::MessageDeleted { message: m, .. } if m == message => {
                        return Plan::Relist;
                    }
                    event if event.changes_participation(conversation, me) => {
                        return Plan::Relist;
                    }
                    _ => continue,
                },
                _ => return Plan::Relist,
            };
            items.push(item.0, item.1);
        }
        Plan::Items(items.items)
    }

    /// Places `items` of subscription `sub` again (see [`Plan::Items`]) and sends the window if
    /// it changed. Returns false if the window must be re-listed instead: an item that left may
    /// have been the last one below the bound, which decides `loaded_all`.
    fn place(
        &mut self,
        storage: &dyn Storage,
        sub: SubId,
        items: &[(EntityKey, bool)],
        collector: &mut Collector<'_>,
        updates: &mut Vec<Update>,
    ) -> StorageResult<bool> {
        let Some(mut feed_sub) = self.subs.remove(&sub) else {
            return Ok(true);
        };
        let mut changes = ReadChanges::default();
        let placed = self.place_in(storage, &mut feed_sub, items, collector, &mut changes);
        if let Ok(Some(changed)) = &placed
            && (*changed || feed_sub.changes.is_none())
        {
            push_window(sub, &mut feed_sub, updates);
        }
        self.subs.insert(sub, feed_sub);
        self.apply(changes, collector, updates);
        placed.map(|placed| placed.is_some())
    }

    /// [`Feed::place`] on a subscription taken out of `subs`: `Some(changed)`, or `None`
    /// (having changed nothing) if the window must be re-listed.
    fn place_in(
        &self,
        storage: &dyn Storage,
        sub: &mut FeedSub,
        items: &[(EntityKey, bool)],
        collector: &mut Collector<'_>,
        changes: &mut ReadChanges,
    ) -> StorageResult<Option<bool>> {
        // First decide where each item goes (nothing changes before a re-list is ruled out:
        // the only early return comes before `below` is touched, for message windows).
        let mut moves = Vec::new();
        let mut emptied_below = false;
        for (key, new) in items {
            let sort = self.sort_key(storage, &sub.target, key, collector.reads())?;
            let joins = sort.clone().filter(|sort| match &sub.bound {
                Bound::From(bound) => sort >= bound,
                _ => true,
            });
            let was_in = sub.entries.contains_key(key);
            if !was_in
                && !new
                && !sub.loaded_all
                && sub.below.is_none()
                && !self.still_beneath(storage, sub, key, collector.reads())?
            {
                // It may have been the last item below the bound, which decides `loaded_all`.
                match first_below(storage, &self.me, sub)? {
                    Some(found) => {
                        emptied_below |= found.is_none();
                        sub.beneath = found;
                    }
                    None => return Ok(None),
                }
            }
            if let Some(below) = &mut sub.below {
                below.remove(key);
                if let (Some(sort), None) = (&sort, &joins) {
                    below.insert(key.clone(), sort.clone());
                }
            }
            if was_in || joins.is_some() {
                moves.push((key, joins));
            }
        }
        let mut changed = false;
        if emptied_below {
            (sub.loaded_all, sub.bound, changed) = (true, Bound::All, true);
        }
        if let Some(below) = &sub.below {
            changed = sub.loaded_all != below.is_empty();
            sub.loaded_all = below.is_empty();
            if sub.loaded_all {
                sub.bound = Bound::All;
            }
        }
        // Then move them: new reads are counted before old ones are dropped, so that a key
        // read by both is never released and sent again.
        let mut dropped = Vec::new();
        for (key, joins) in &moves {
            let mut from = None;
            if let Some((sort, reads)) = sub.entries.remove(*key) {
                from = sub.unlist(key, &sort);
                dropped.push(reads);
            }
            let mut to = None;
            if let Some(sort) = joins {
                let reads = self.item_reads(storage, &sub.target, key, collector)?;
                sub.add_reads(&reads, changes);
                to = sub.list(key, sort);
                sub.entries.insert((*key).clone(), (sort.clone(), reads));
            }
            let change = match (from, to) {
                (Some(from), Some(to)) if from != to => Some(RowChange::Move { from, to }),
                (Some(index), None) => Some(RowChange::Remove { index }),
                (None, Some(index)) => Some(RowChange::Insert {
                    index,
                    key: (*key).clone(),
                }),
                _ => None,
            };
            if let Some(change) = change {
                changed = true;
                if let Some(changes) = &mut sub.changes {
                    changes.push(change);
                }
            }
        }
        for reads in dropped {
            sub.remove_reads(&reads, changes);
        }
        Ok(Some(changed))
    }

    /// Collects the records of an item of a window of `target` (which exists: the user may
    /// see it) and returns the keys it reads. A message window's items read the same for
    /// every viewer: walked once per commit for all of them.
    fn item_reads(
        &self,
        storage: &dyn Storage,
        target: &Target,
        key: &EntityKey,
        collector: &mut Collector<'_>,
    ) -> StorageResult<Arc<[EntityKey]>> {
        match target {
            Target::Messages { .. } => collector.collect_shared(storage, &self.me, key),
            _ => Ok(reads_of(storage, &self.me, key, collector)?.into()),
        }
    }

    /// Whether the item last seen below `sub`'s bound (other than `placed`) is still there:
    /// then something is below without asking storage. O(1) reads.
    fn still_beneath(
        &self,
        storage: &dyn Storage,
        sub: &FeedSub,
        placed: &EntityKey,
        reads: &mut Reads,
    ) -> StorageResult<bool> {
        let (Some(beneath), Bound::From(bound)) = (&sub.beneath, &sub.bound) else {
            return Ok(false);
        };
        if beneath == placed {
            return Ok(false);
        }
        let sort = self.sort_key(storage, &sub.target, beneath, reads)?;
        Ok(sort.is_some_and(|sort| sort < *bound))
    }

    /// Where `key` sorts in a window of `target`, or `None` if it is not in the list.
    fn sort_key(
        &self,
        storage: &dyn Storage,
        target: &Target,
        key: &EntityKey,
        reads: &mut Reads,
    ) -> StorageResult<Option<SortKey>> {
        Ok(match (target, key) {
            (Target::Conversations { filter }, EntityKey::Conversation { id }) => {
                conversation_entry(storage, &self.me, filter.as_ref(), id)?
            }
            (
                Target::Messages {
                    conversation,
                    filter,
                },
                EntityKey::Message { id },
            ) => match reads.message(storage, id)? {
                Some((record, pos))
                    if let Record::Message(message) = &*record
                        && message.conversation_id == *conversation
                        && message_matches(storage, filter.as_ref(), message)? =>
                {
                    Some(message_sort_key(pos))
                }
                _ => None,
            },
            (Target::Participants { .. }, EntityKey::Participant { conversation, user }) => storage
                .participant(conversation, user)?
                .map(|p| participant_sort_key(&p)),
            (
                Target::Reactions { message, emoji, .. },
                EntityKey::Reaction {
                    message: m,
                    emoji: e,
                    user,
                },
            ) if m == message && e == emoji => storage
                .reaction(message, emoji, user)?
                .map(|at| reaction_sort_key(at, user)),
            _ => None,
        })
    }

    /// Counts the keys a subscription started (`gained`) or stopped (`lost`) needing.
    fn apply(
        &mut self,
        changes: ReadChanges,
        collector: &Collector<'_>,
        updates: &mut Vec<Update>,
    ) {
        for key in changes.gained {
            let entry = self.known.entry(key.clone()).or_insert_with(|| {
                if let EntityKey::User { id } = &key {
                    self.user_changes.push((id.clone(), true));
                }
                (None, 0)
            });
            entry.1 += 1;
            // A needed record that does not exist (a deleted referenced message): say so, in
            // case the client still holds it from before a reconnect.
            if entry.1 == 1 && !collector.records.contains_key(&key) {
                updates.push(Update::Remove { key });
            }
        }
        for key in changes.lost {
            self.release(&key);
        }
    }

    /// The items of each window, as a client that applied every push would hold them.
    #[cfg(test)]
    fn windows(&self) -> HashMap<SubId, Option<Vec<EntityKey>>> {
        let keys =
            |items: &VecDeque<(SortKey, EntityKey)>| items.iter().map(|(_, k)| k.clone()).collect();
        self.subs
            .iter()
            .map(|(id, sub)| (*id, sub.items.as_ref().map(keys)))
            .collect()
    }

    /// Asserts that every window equals one listed from scratch with its bound, that each
    /// subscription needs exactly the keys its items read, and that the record last sent for
    /// every needed key is the current one.
    #[cfg(test)]
    fn check(&self, storage: &dyn Storage) {
        let mut wanted: HashMap<EntityKey, usize> = HashMap::default();
        for (id, sub) in &self.subs {
            let mut bound = sub.bound.clone();
            let reach = Reach::of(&bound, 0);
            let (items, loaded_all) = match list(storage, &self.me, &sub.target, &reach).unwrap() {
                None => (None, true),
                Some(all) => {
                    let (items, loaded_all) = window(all, &mut bound, 0);
                    (Some(items), loaded_all)
                }
            };
            let what = format!(
                "{} sub {id} {:?} bound {:?}",
                self.me, sub.target, sub.bound
            );
            assert_eq!(sub.items, items.clone().map(VecDeque::from), "{what}");
            assert_eq!(sub.loaded_all, loaded_all, "{what}");
            let mut fresh = Reads::default();
            let mut collector = Collector::new(&mut fresh);
            let mut reads = HashSet::default();
            for (_, key) in items.iter().flatten() {
                let read = reads_of(storage, &self.me, key, &mut collector).unwrap();
                let kept: HashSet<&EntityKey> = sub.entries[key].1.iter().collect();
                assert_eq!(kept, read.iter().collect(), "{what}: the reads of {key:?}");
                reads.extend(read);
            }
            let needed: HashSet<EntityKey> = sub.needed.keys().cloned().collect();
            assert_eq!(needed, reads, "{what}");
            for key in reads {
                *wanted.entry(key).or_default() += 1;
            }
        }
        let counted: HashMap<EntityKey, usize> = self
            .known
            .iter()
            .map(|(k, (_, n))| (k.clone(), *n))
            .collect();
        assert_eq!(counted, wanted, "{}", self.me);
        let mut reads = Reads::default();
        for (key, (sent, _)) in &self.known {
            let current = reads.fetch(storage, &self.me, key).unwrap();
            assert_eq!(sent, &current, "{} holds {key:?}", self.me);
        }
    }

    /// Recomputes one window from storage (growing it by `extra` items), sends it if it
    /// changed, and re-counts the keys its snapshot needs.
    fn recompute(
        &mut self,
        storage: &dyn Storage,
        sub: SubId,
        extra: usize,
        collector: &mut Collector<'_>,
        updates: &mut Vec<Update>,
    ) -> EngineResult<()> {
        let Some(mut feed_sub) = self.subs.remove(&sub) else {
            return Ok(());
        };
        let mut changes = ReadChanges::default();
        let done = self.recompute_in(storage, &mut feed_sub, extra, collector, &mut changes);
        if let Ok(changed) = done
            && (changed || feed_sub.changes.is_none())
        {
            push_window(sub, &mut feed_sub, updates);
        }
        self.subs.insert(sub, feed_sub);
        self.apply(changes, collector, updates);
        done.map(drop)
    }

    /// [`Feed::recompute`] on a subscription taken out of `subs`; returns whether the window
    /// changed.
    fn recompute_in(
        &self,
        storage: &dyn Storage,
        sub: &mut FeedSub,
        extra: usize,
        collector: &mut Collector<'_>,
        changes: &mut ReadChanges,
    ) -> EngineResult<bool> {
        let reach = Reach::of(&sub.bound, extra);
        let (items, loaded_all) = match list(storage, &self.me, &sub.target, &reach)? {
            None => {
                sub.below = None;
                (None, true)
            }
            Some(items) => {
                let (items, rest) = split_window(items, &mut sub.bound, extra);
                let loaded_all = rest.is_empty();
                let whole = matches!(
                    sub.target,
                    Target::Participants { .. } | Target::Reactions { .. }
                );
                sub.beneath = (!whole)
                    .then(|| rest.first().map(|(_, key)| key.clone()))
                    .flatten();
                sub.below = whole.then(|| rest.into_iter().map(|(k, key)| (key, k)).collect());
                (Some(items), loaded_all)
            }
        };
        let mut entries = HashMap::default();
        for (sort, key) in items.iter().flatten() {
            let reads = self.item_reads(storage, &sub.target, key, collector)?;
            sub.add_reads(&reads, changes);
            entries.insert(key.clone(), (sort.clone(), reads));
        }
        for (_, reads) in std::mem::replace(&mut sub.entries, entries).into_values() {
            sub.remove_reads(&reads, changes);
        }
        let items = items.map(VecDeque::from);
        let changed = sub.items != items || sub.loaded_all != loaded_all;
        match (&mut sub.changes, &sub.items, &items) {
            (Some(changes), Some(old), Some(new)) => {
                if !diff_rows(old, new, changes) {
                    sub.changes = None;
                }
            }
            (changes, _, _) => *changes = None,
        }
        sub.items = items;
        sub.loaded_all = loaded_all;
        Ok(changed)
    }

    /// One subscription fewer needs `key`.
    fn release(&mut self, key: &EntityKey) {
        if let Some(entry) = self.known.get_mut(key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.known.remove(key);
                if let EntityKey::User { id } = key {
                    self.user_changes.push((id.clone(), false));
                }
            }
        }
    }

    /// Sends every needed record that the client lacks or has in an older version: those just
    /// collected, and those touched by events.
    fn send_records(
        &mut self,
        mut collector: Collector<'_>,
        touched: &HashSet<EntityKey>,
        storage: &dyn Storage,
        updates: &mut Vec<Update>,
    ) -> StorageResult<()> {
        for key in touched {
            if !collector.records.contains_key(key) && self.known.contains_key(key) {
                let current = collector.fetch(storage, &self.me, key)?;
                self.offer(key.clone(), current, updates);
            }
        }
        for (key, record) in collector.records.drain() {
            self.offer(key, Some(record), updates);
        }
        Ok(())
    }

    /// Sends `current` for `key` if the client needs it and holds another version.
    fn offer(&mut self, key: EntityKey, current: Option<SharedRecord>, updates: &mut Vec<Update>) {
        let Some((sent, _)) = self.known.get_mut(&key) else {
            return;
        };
        let same = match (&*sent, &current) {
            (Some(a), Some(b)) => a == b,
            (a, b) => a.is_none() && b.is_none(),
        };
        if same {
            return;
        }
        updates.push(match &current {
            Some(record) => Update::Upsert {
                record: record.clone(),
            },
            None => Update::Remove { key },
        });
        *sent = current;
    }
}

/// The keys one subscription started and stopped needing in one change of its window.
#[derive(Default)]
struct ReadChanges {
    gained: Vec<EntityKey>,
    lost: Vec<EntityKey>,
}

impl FeedSub {
    fn add_reads(&mut self, reads: &[EntityKey], changes: &mut ReadChanges) {
        for key in reads {
            // Most keys are needed already (the sender of the last message, too): look them
            // up without cloning.
            match self.needed.get_mut(key) {
                Some(count) => *count += 1,
                None => {
                    self.needed.insert(key.clone(), 1);
                    changes.gained.push(key.clone());
                }
            }
        }
    }

    fn remove_reads(&mut self, reads: &[EntityKey], changes: &mut ReadChanges) {
        for key in reads {
            if let Some(count) = self.needed.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    self.needed.remove(key);
                    changes.lost.push(key.clone());
                }
            }
        }
    }

    /// Inserts `key` into `items` where `sort` goes, and returns its index: O(log window)
    /// plus the shorter move; O(1) for a new first item, the usual case, which reads only the
    /// current first one (a binary search would miss the cache about log₂ window times).
    fn list(&mut self, key: &EntityKey, sort: &SortKey) -> Option<usize> {
        let items = self.items.as_mut()?;
        let at = match items.front() {
            Some((first, _)) if sort < first => items.partition_point(|(k, _)| k > sort),
            _ => 0,
        };
        items.insert(at, (sort.clone(), key.clone()));
        Some(at)
    }

    /// Removes `key`, which sorts at `sort`, from `items`, and returns the index it had.
    fn unlist(&mut self, key: &EntityKey, sort: &SortKey) -> Option<usize> {
        let items = self.items.as_mut()?;
        let from = items.partition_point(|(k, _)| k > sort);
        let at = from + items.range(from..).position(|(_, k)| k == key)?;
        items.remove(at);
        Some(at)
    }
}

/// Sends the changes of a subscription's window since it was last sent, or the whole window.
fn push_window(sub: SubId, feed_sub: &mut FeedSub, updates: &mut Vec<Update>) {
    let loaded_all = feed_sub.loaded_all;
    match (feed_sub.changes.replace(Vec::new()), &feed_sub.items) {
        (Some(changes), Some(_)) => updates.push(Update::Rows {
            sub,
            changes,
            loaded_all,
        }),
        (_, items) => updates.push(Update::Window {
            sub,
            items: items
                .as_ref()
                .map(|items| items.iter().map(|(_, key)| key.clone()).collect()),
            loaded_all,
        }),
    }
}

/// Appends to `changes` the inserts and removals that take window `old` to `new` (both in
/// window order), in one walk over both. Returns false, having appended nothing, if they
/// would outnumber the rows of `new`: the whole window is then the smaller message.
fn diff_rows(
    old: &VecDeque<(SortKey, EntityKey)>,
    new: &VecDeque<(SortKey, EntityKey)>,
    changes: &mut Vec<RowChange>,
) -> bool {
    let mut diff = Vec::new();
    let (mut i, mut j) = (0, 0);
    while (i < old.len() || j < new.len()) && diff.len() <= new.len() {
        let left = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                (i, j) = (i + 1, j + 1);
                continue;
            }
            // `a` sorts before `b`, or is `b`'s key at another place.
            (Some(a), Some(b)) => a.0 >= b.0,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if left {
            diff.push(RowChange::Remove { index: j });
            i += 1;
        } else {
            diff.push(RowChange::Insert {
                index: j,
                key: new[j].1.clone(),
            });
            j += 1;
        }
    }
    let fits = diff.len() <= new.len();
    if fits {
        changes.append(&mut diff);
    }
    fits
}

/// Collects the records of the snapshot rooted at `key` and returns the keys it reads.
fn reads_of(
    storage: &dyn Storage,
    me: &UserId,
    key: &EntityKey,
    collector: &mut Collector<'_>,
) -> StorageResult<Vec<EntityKey>> {
    let mut reads = Vec::new();
    collector.collect(storage, me, key, &mut |key| {
        if !reads.contains(key) {
            reads.push(key.clone());
        }
    })?;
    Ok(reads)
}

/// The keys whose records the events may have changed.
pub(crate) fn touched_keys(events: &[Event]) -> HashSet<EntityKey> {
    let mut keys = HashSet::default();
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
            Event::ReactionChanged {
                message,
                emoji,
                user,
                ..
            } => {
                keys.insert(EntityKey::message(message));
                keys.insert(EntityKey::reacted(message));
                keys.insert(EntityKey::reaction(message, emoji, user));
            }
        }
    }
    keys
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
/// is missing or hidden from `me`. Message windows and conversation lists are read only as
/// far as `reach` (the latter from the activity index); a conversation's participants are
/// read whole.
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
            let page = reach.count.clamp(32, 256);
            walk_list(storage, me, filter.as_ref(), None, page, |key, id| {
                items.push((key, EntityKey::conversation(id)));
                !reach.reached(&items)
            })?;
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
                    (participant_sort_key(&p), key)
                })
                .collect();
            items.sort_by(|a, b| b.0.cmp(&a.0));
            Some(items)
        }
        Target::Reactions {
            conversation,
            message,
            emoji,
        } => {
            let visible = match storage.message(message)? {
                Some((m, _)) => &m.conversation_id == conversation,
                None => false,
            };
            if !visible || !view::is_participant(storage, conversation, me)? {
                return Ok(None);
            }
            // Oldest first, as storage lists them.
            let reactions = storage.reactions(message, emoji, usize::MAX)?;
            let items = reactions.into_iter().map(|(user, at)| {
                let key = EntityKey::reaction(message, emoji, &user);
                (reaction_sort_key(at, &user), key)
            });
            Some(items.collect())
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
                    if message_matches(storage, filter.as_ref(), &message)? {
                        items.push((message_sort_key(pos), EntityKey::message(&message.id)));
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

/// Where conversation `id` sorts in `me`'s conversation list, or `None` if it is not in it
/// (`me` is not a participant, or the filter does not match). O(1) storage reads.
fn conversation_entry(
    storage: &dyn Storage,
    me: &UserId,
    filter: Option<&ConversationFilter>,
    id: &ConversationId,
) -> StorageResult<Option<SortKey>> {
    let (Some(conversation), Some(read), Some(mine)) = (
        storage.conversation(id)?,
        view::read_state(storage, id, me)?,
        storage.participant(id, me)?,
    ) else {
        return Ok(None);
    };
    let activity = activity::of_records(storage, &conversation, &mine)?;
    let conversation = conversation.record;
    let facts = ConversationFacts {
        access: mine.record.access,
        custom: &conversation.custom,
        is_unread: read.is_unread,
        subject: conversation.subject.as_deref(),
        last_activity_at: activity,
        created_at: conversation.created_at,
        has_messages: conversation.last_message_id.is_some(),
        joined_at: mine.record.joined_at,
    };
    let matches = filter.is_none_or(|f| f.matches(&facts));
    Ok(matches.then(|| SortKey(activity, 0, id.to_string())))
}

/// Walks `me`'s conversation list from the activity index, strictly below `below`, reading
/// `page` conversations at a time, and hands `take` each one that passes `filter` (with where
/// it sorts) until `take` returns false or the list ends.
fn walk_list(
    storage: &dyn Storage,
    me: &UserId,
    filter: Option<&ConversationFilter>,
    mut below: Option<(Timestamp, ConversationId)>,
    page: usize,
    mut take: impl FnMut(SortKey, &ConversationId) -> bool,
) -> StorageResult<()> {
    loop {
        let from = below.as_ref().map(|(at, id)| (*at, id));
        let rows = activity::walk(storage, me, from, page)?;
        let rows_len = rows.len();
        for (_, id) in &rows {
            if let Some(key) = conversation_entry(storage, me, filter, id)?
                && !take(key, id)
            {
                return Ok(());
            }
        }
        // A short page is the end of the list.
        match rows.into_iter().last() {
            Some(last) if rows_len == page => below = Some(last),
            _ => return Ok(()),
        }
    }
}

/// Whether `message` passes a message window's filter.
fn message_matches(
    storage: &dyn Storage,
    filter: Option<&MessageFilter>,
    message: &MessageRecord,
) -> StorageResult<bool> {
    let Some(filter) = filter else {
        return Ok(true);
    };
    let sender = match &message.sender_id {
        Some(s) => storage.user(s)?.map(|u| u.public),
        None => None,
    };
    Ok(filter.matches(&MessageFacts {
        message_type: message.message_type,
        origin: message.origin,
        custom: &message.custom,
        created_at: message.created_at,
        sender: sender.as_ref(),
    }))
}

/// The first item below a window's bound (`Some(None)` if there is none), for the windows read
/// only as far as they show. One storage read for a message window without a filter and for a
/// conversation list (a page of the activity index). A filtered conversation list walks the
/// index until a conversation matches: in the worst case (nothing below matches) every
/// conversation of the user below the bound. `None` for filtered message windows, which
/// cannot tell without reading.
fn first_below(
    storage: &dyn Storage,
    me: &UserId,
    sub: &FeedSub,
) -> StorageResult<Option<Option<EntityKey>>> {
    if let (Target::Conversations { filter }, Bound::From(SortKey(at, _, id))) =
        (&sub.target, &sub.bound)
    {
        let id = ConversationId::try_new(id).map_err(|e| StorageError(e.to_string()))?;
        // Without a filter, the first conversation below tells.
        let page = if filter.is_some() { 32 } else { 1 };
        let mut found = None;
        walk_list(
            storage,
            me,
            filter.as_ref(),
            Some((*at, id)),
            page,
            |_, id| {
                found = Some(EntityKey::conversation(id));
                false
            },
        )?;
        return Ok(Some(found));
    }
    let (
        Target::Messages {
            conversation,
            filter: None,
        },
        Bound::From(SortKey(created_at, ordinal, _)),
    ) = (&sub.target, &sub.bound)
    else {
        return Ok(None);
    };
    let bound = MessagePos {
        created_at: *created_at,
        ordinal: *ordinal,
    };
    let below = storage.messages_before(conversation, Some(bound), 1)?;
    Ok(Some(below.first().map(|(m, _)| EntityKey::message(&m.id))))
}

fn message_sort_key(pos: MessagePos) -> SortKey {
    SortKey(pos.created_at, pos.ordinal, String::new())
}

/// Oldest first: the window puts greater keys first. Reaction times are unique (the engine's
/// clock never hands out one twice), so ties by user never matter.
fn reaction_sort_key(at: Timestamp, user: &UserId) -> SortKey {
    SortKey(at.saturating_neg(), 0, user.to_string())
}

fn participant_sort_key(p: &StoredParticipant) -> SortKey {
    SortKey(p.record.joined_at, 0, p.record.user_id.to_string())
}

/// [`split_window`] with whether the window holds everything instead of the rest.
#[cfg(test)]
fn window(items: Items, bound: &mut Bound, extra: usize) -> (Items, bool) {
    let (inside, rest) = split_window(items, bound, extra);
    (inside, rest.is_empty())
}

/// Items of a list with their sort keys, in window order.
type Items = Vec<(SortKey, EntityKey)>;

/// Cuts a window out of `items` (in window order) and moves the bound by `extra` items.
/// Returns the window and the items below it (as many as were read: all of them for the
/// lists read whole); the window holds everything when there are none.
fn split_window(mut items: Items, bound: &mut Bound, extra: usize) -> (Items, Items) {
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
    let rest = items.split_off(end);
    (items, rest)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        engine::{ConnId, Engine},
        model::{ConversationId, MessageId, SimpleConversationFilter},
        params::{EditParams, ParticipantParams, WireSend, plain_text},
        protocol::{ClientFrame, ParticipantWrite, Request},
    };

    proptest! {
        /// A plan holds each key once, in the order first planned, however many there are.
        #[test]
        fn plans_hold_each_item_once_in_order(keys in proptest::collection::vec(0..30u8, 0..60)) {
            let mut planned = Planned::default();
            let mut expected: Vec<EntityKey> = Vec::new();
            for key in keys {
                let key = EntityKey::message(&MessageId::new(format!("m{key}")));
                if !expected.contains(&key) {
                    expected.push(key.clone());
                }
                planned.push(key, false);
            }
            let got: Vec<EntityKey> = planned.items.into_iter().map(|(key, _)| key).collect();
            prop_assert_eq!(got, expected);
        }
    }

    const USERS: usize = 3;
    /// More than a conversation list's first page (20), so that lists get a bound.
    const CONVERSATIONS: usize = 24;
    /// Messages in `c0` at the start: more than a message window's first page (30).
    const BACKLOG: usize = 34;

    #[derive(Debug, Clone)]
    enum Op {
        Send(usize, usize),
        /// A message in `c0` replying to another.
        Reply(usize, u64),
        Edit(usize, u64),
        Delete(usize, u64),
        MarkRead(usize, usize),
        MarkUnread(usize, usize),
        Join(usize, usize),
        Leave(usize, usize),
        LoadMore(usize, SubId, u32),
        /// Adds (or removes) a reaction to one of `c0`'s newest messages.
        React(usize, u64, usize, bool),
    }

    /// The emoji of [`Op::React`]; the reactions windows show the first.
    const EMOJI: [&str; 2] = ["👍", "🎉"];

    fn op() -> impl Strategy<Value = Op> {
        let (u, c) = (0..USERS, 0..CONVERSATIONS);
        // Mostly `c0`, whose message window is open, and the first few conversations.
        let hot = prop_oneof![3 => Just(0_usize), 2 => 0..4_usize, 1 => c.clone()];
        // Mostly the newest messages of the backlog, so that replies to them get deleted.
        let message = prop_oneof![2 => 28..(BACKLOG as u64 + 1), 1 => 1..(BACKLOG as u64 + 60)];
        prop_oneof![
            6 => (u.clone(), hot.clone()).prop_map(|(u, c)| Op::Send(u, c)),
            2 => (u.clone(), message.clone()).prop_map(|(u, m)| Op::Reply(u, m)),
            1 => (u.clone(), message.clone()).prop_map(|(u, m)| Op::Edit(u, m)),
            2 => (u.clone(), message).prop_map(|(u, m)| Op::Delete(u, m)),
            2 => (u.clone(), hot.clone()).prop_map(|(u, c)| Op::MarkRead(u, c)),
            1 => (u.clone(), hot.clone()).prop_map(|(u, c)| Op::MarkUnread(u, c)),
            1 => (u.clone(), c.clone()).prop_map(|(u, c)| Op::Join(u, c)),
            1 => (u.clone(), hot).prop_map(|(u, c)| Op::Leave(u, c)),
            1 => (u.clone(), 1..6_u64, 1..4_u32).prop_map(|(u, s, n)| Op::LoadMore(u, s, n)),
            2 => (u, (BACKLOG as u64 - 1)..(BACKLOG as u64 + 1), 0..EMOJI.len(), any::<bool>())
                .prop_map(|(u, m, e, add)| Op::React(u, m, e, add)),
        ]
    }

    fn user(u: usize) -> UserId {
        UserId::new(format!("u{u}"))
    }

    fn conversation(c: usize) -> ConversationId {
        ConversationId::new(format!("c{c}"))
    }

    /// Users u0..u2, each with a conversation list, an unread-only list, the messages and the
    /// participants of `c0` open. u0 and u1 are in every conversation, u2 in none; `c0` holds
    /// a backlog.
    fn world() -> (
        Engine,
        Vec<ConnId>,
        Vec<tokio::sync::mpsc::Receiver<crate::protocol::ServerFrame>>,
    ) {
        let engine = Engine::new();
        let (mut conns, mut inboxes) = (Vec::new(), Vec::new());
        for u in 0..USERS {
            let (conn, inbox, _) = engine.connect(user(u), 1 << 20);
            let name = crate::params::UserParams::new().name(format!("U{u}"));
            let request = Request::SetUser {
                user: user(u),
                params: name,
                create_only: false,
            };
            engine.handle(conn, ClientFrame { id: 0, request });
            conns.push(conn);
            inboxes.push(inbox);
        }
        for c in 0..CONVERSATIONS {
            let request = Request::SetConversation {
                conversation: conversation(c),
                params: Default::default(),
                create_only: false,
            };
            engine.handle(conns[0], ClientFrame { id: 0, request });
            join(&engine, conns[0], 1, c);
        }
        for _ in 0..BACKLOG {
            send(&engine, conns[0], 0);
        }
        for (u, conn) in conns.iter().enumerate() {
            let unread = ConversationFilter::any([SimpleConversationFilter::new().is_unread(true)]);
            let targets = [
                Target::Conversations { filter: None },
                Target::Conversations {
                    filter: Some(unread),
                },
                Target::Messages {
                    conversation: conversation(0),
                    filter: None,
                },
                Target::Participants {
                    conversation: conversation(0),
                },
                Target::Reactions {
                    conversation: conversation(0),
                    message: MessageId::new(format!("msg_{BACKLOG}")),
                    emoji: EMOJI[0].into(),
                },
            ];
            for (sub, target) in (1..).zip(targets) {
                let request = Request::Subscribe {
                    sub,
                    target,
                    restore: None,
                };
                engine.handle(*conn, ClientFrame { id: sub, request });
            }
            let _ = u;
        }
        (engine, conns, inboxes)
    }

    fn join(engine: &Engine, conn: ConnId, u: usize, c: usize) {
        let request = Request::SetParticipant {
            conversation: conversation(c),
            user: user(u),
            params: ParticipantParams::default(),
            mode: ParticipantWrite::Upsert,
        };
        engine.handle(conn, ClientFrame { id: 0, request });
    }

    fn send(engine: &Engine, conn: ConnId, c: usize) {
        send_reply(engine, conn, c, None);
    }

    fn send_reply(engine: &Engine, conn: ConnId, c: usize, reply_to: Option<MessageId>) {
        static KEY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let key = KEY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let message = WireSend {
            content: plain_text("hi"),
            custom: Default::default(),
            referenced_message: reply_to,
            idempotency_key: format!("k{key}"),
        };
        let request = Request::Send {
            conversation: conversation(c),
            message,
        };
        engine.handle(conn, ClientFrame { id: 0, request });
    }

    fn apply(engine: &Engine, conns: &[ConnId], op: Op) {
        let message = |m: u64| MessageId::new(format!("msg_{m}"));
        let request = match op {
            Op::Send(u, c) => return send(engine, conns[u], c),
            Op::Reply(u, m) => return send_reply(engine, conns[u], 0, Some(message(m))),
            Op::Join(u, c) => return join(engine, conns[u], u, c),
            Op::Edit(_, m) | Op::Delete(_, m) => {
                let conversation = conversation(0);
                let message = message(m);
                if let Op::Edit(..) = op {
                    let params = EditParams::text("edited");
                    Request::EditMessage {
                        conversation,
                        message,
                        params,
                    }
                } else {
                    Request::DeleteMessage {
                        conversation,
                        message,
                    }
                }
            }
            Op::MarkRead(_, c) => Request::MarkRead {
                conversation: conversation(c),
            },
            Op::MarkUnread(_, c) => Request::MarkUnread {
                conversation: conversation(c),
            },
            Op::Leave(u, c) => Request::DeleteParticipant {
                conversation: conversation(c),
                user: user(u),
            },
            Op::LoadMore(_, sub, count) => Request::LoadMore { sub, count },
            Op::React(_, m, e, add) => Request::React {
                conversation: conversation(0),
                message: message(m),
                emoji: EMOJI[e].into(),
                add,
            },
        };
        let u = match op {
            Op::Edit(u, _) | Op::Delete(u, _) | Op::MarkRead(u, _) | Op::MarkUnread(u, _) => u,
            Op::Leave(u, _) | Op::LoadMore(u, _, _) | Op::Send(u, _) | Op::Join(u, _) => u,
            Op::Reply(u, _) | Op::React(u, ..) => u,
        };
        engine.handle(conns[u], ClientFrame { id: 0, request });
    }

    /// The incremental paths list nothing: a new message in a conversation at the top of the
    /// lists and in the open message windows, one in a conversation below a list's bound
    /// (which moves to the front), a read mark, an edit, and deleting a message in the windows
    /// and one below them each read no list from storage (or a few rows), where re-listing
    /// would read a page of conversations and a window's worth of messages.
    #[test]
    fn commits_read_what_they_change_not_the_windows() {
        let (engine, conns, _inboxes) = world();
        let listed = || engine.with_state(|state| state.storage().listed());
        let ops = [
            Op::Send(1, 0),
            Op::Send(0, 2),
            Op::MarkRead(0, 0),
            Op::Edit(0, 3),
            // The newest message of the backlog (in the windows), then the oldest (below them).
            Op::Delete(0, BACKLOG as u64),
            Op::Delete(0, 1),
        ];
        for op in ops {
            let before = listed();
            apply(&engine, &conns, op.clone());
            // A delete reads the conversation's 2 participants (it keeps their unread
            // counts), and one below a window reads one message per window (is anything
            // left below it?); a message to a conversation below a list's bound asks the same
            // of the conversation the list last saw below it, read from cache, not from the
            // index; a re-list reads a page of conversations or 30 messages.
            let bound = if let Op::Delete(..) = op { 4 } else { 0 };
            assert!(
                listed() - before <= bound,
                "{op:?} listed {}",
                listed() - before
            );
        }
        // The counter counts: a re-list (u2 joining changes what u2 may see) does list.
        let before = listed();
        apply(&engine, &conns, Op::Join(2, 0));
        assert!(listed() > before);
        engine.with_state(|state| {
            for connection in state.connections.values() {
                connection.feed.check(state.storage());
            }
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200),
            ..ProptestConfig::default()
        })]

        /// After every commit of random writes (with lists and windows past their first page,
        /// filtered lists that gain and lose rows, growth by `load_more`), every window placed
        /// item by item equals one listed from scratch, every record the client holds is
        /// current, and a client that applied the pushes (whole windows and row changes)
        /// holds every window as it is.
        #[test]
        fn incremental_windows_equal_windows_listed_from_scratch(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            let (engine, conns, mut inboxes) = world();
            let mut clients = vec![HashMap::default(); USERS];
            let mut check = |engine: &Engine| {
                for (u, inbox) in inboxes.iter_mut().enumerate() {
                    apply_pushes(inbox, &mut clients[u]);
                }
                engine.with_state(|state| {
                    for (u, conn) in conns.iter().enumerate() {
                        let feed = &state.connections[conn].feed;
                        feed.check(state.storage());
                        assert_eq!(clients[u], feed.windows(), "u{u}'s client");
                    }
                });
            };
            check(&engine);
            for op in ops {
                apply(&engine, &conns, op);
                check(&engine);
            }
        }
    }

    /// Applies the windows and row changes of the pushes in `inbox` to a client's windows.
    fn apply_pushes(
        inbox: &mut tokio::sync::mpsc::Receiver<crate::protocol::ServerFrame>,
        windows: &mut HashMap<SubId, Option<Vec<EntityKey>>>,
    ) {
        while let Ok(frame) = inbox.try_recv() {
            let crate::protocol::ServerFrame::Push { updates, .. } = frame else {
                continue;
            };
            for update in updates {
                match update {
                    Update::Window { sub, items, .. } => {
                        windows.insert(sub, items);
                    }
                    Update::Rows { sub, changes, .. } => {
                        let items = windows.get_mut(&sub).and_then(Option::as_mut);
                        let items = items.expect("row changes to a window the client has");
                        for change in changes {
                            match change {
                                RowChange::Insert { index, key } => items.insert(index, key),
                                RowChange::Remove { index } => drop(items.remove(index)),
                                RowChange::Move { from, to } => {
                                    let key = items.remove(from);
                                    items.insert(to, key);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Deleting a message re-reads the window's replies to it, which no longer read its
    /// sender.
    #[test]
    fn deleting_a_message_rereads_its_replies() {
        let (engine, conns, _inboxes) = world();
        for op in [Op::Reply(1, 30), Op::Delete(0, 30)] {
            apply(&engine, &conns, op);
            engine.with_state(|state| {
                for connection in state.connections.values() {
                    connection.feed.check(state.storage());
                }
            });
        }
    }

    proptest! {
        /// The row changes between two windows, applied to the first, give the second; when
        /// they would outnumber its rows, nothing is appended.
        #[test]
        fn row_diffs_take_one_window_to_another(
            old in proptest::collection::btree_set(0..40_i64, 0..30),
            new in proptest::collection::btree_set(0..40_i64, 0..30),
        ) {
            let window = |set: &std::collections::BTreeSet<i64>| -> VecDeque<_> {
                let all: VecDeque<_> = items(40).into();
                all.into_iter().filter(|(k, _)| set.contains(&k.0)).collect()
            };
            let (old, new) = (window(&old), window(&new));
            let mut changes = Vec::new();
            if diff_rows(&old, &new, &mut changes) {
                prop_assert!(changes.len() <= new.len());
                let mut rows: Vec<EntityKey> = old.iter().map(|(_, k)| k.clone()).collect();
                for change in changes {
                    match change {
                        RowChange::Insert { index, key } => rows.insert(index, key),
                        RowChange::Remove { index } => drop(rows.remove(index)),
                        RowChange::Move { .. } => prop_assert!(false, "a diff has no moves"),
                    }
                }
                let expected: Vec<EntityKey> = new.iter().map(|(_, k)| k.clone()).collect();
                prop_assert_eq!(rows, expected);
            } else {
                prop_assert!(changes.is_empty());
            }
        }
    }

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
