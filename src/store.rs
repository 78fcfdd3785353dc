//! The client-side normalized reactive cache.
//!
//! Records live once, in one entity table, keyed by [`EntityKey`]. Each live subscription is a
//! window of root keys; assembling a row reads a few records (a conversation reads its read
//! state, the user's participation, its last message, that message's sender, ...), and the
//! subscription remembers which keys each row read. A reverse index maps each key to the
//! subscriptions that read it. Applying one server frame:
//!
//! 1. writes the records, skipping those equal to what is cached, and collects changed keys;
//! 2. finds the affected subscriptions and rows through the reverse index;
//! 3. rebuilds each affected row once, reusing every cached node whose inputs did not change,
//!    so unchanged snapshots keep their `Arc` (nodes are shared between subscriptions);
//! 4. only then publishes: one emission per affected subscription, none for others;
//! 5. evicts records that no subscription reads any more.
//!
//! Nodes are validated by version: every record carries the frame number of its last change,
//! every node the frame it was built in, and a node is reused only if none of its inputs
//! changed (or disappeared) since.

mod assemble;

use std::{
    cell::RefCell,
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use smallvec::SmallVec;

use self::assemble::Lookup;
pub(crate) use self::assemble::{Bundle, Node, Rec, node};
use crate::{
    HashMap as Map, HashSet as Set,
    model::UserId,
    protocol::{EntityKey, MAX_HELD_KEYS, Position, Restore, RowChange, SubId, Update, WireError},
};

/// Where a subscription's snapshots go. Implemented by the session's typed subscriptions.
pub(crate) trait Output: Send {
    /// Replaces every row (`None`: the root is missing). Returns whether anything changed.
    fn reset(&mut self, rows: Option<Vec<Node>>) -> bool;
    /// Replaces one row. Returns whether it changed.
    fn set(&mut self, index: usize, row: Node) -> bool;
    /// Inserts a row at `index`. Returns false if the node is not of the output's row type
    /// (then nothing changed).
    fn insert(&mut self, index: usize, row: Node) -> bool;
    /// Removes the row at `index`.
    fn remove(&mut self, index: usize);
    /// Moves the row at `from` to `to` (its index once it is out of the way).
    fn move_row(&mut self, from: usize, to: usize);
    /// Publishes the current rows to the subscription's state and signals. Returns the app's
    /// callback, to run once the store is unlocked.
    fn publish(&mut self, loaded_all: bool) -> Option<Callback>;
    /// Publishes an error state.
    fn fail(&mut self, error: WireError);
    /// Whether a snapshot was published already.
    fn is_active(&self) -> bool;
}

/// An app callback with its snapshot, run after the store is unlocked: by then every
/// subscription of the frame holds its new state, so callbacks observe the whole frame.
pub(crate) type Callback = Box<dyn FnOnce() + Send>;

/// Runs a frame's callbacks.
pub(crate) fn run(callbacks: Vec<Callback>) {
    for callback in callbacks {
        callback();
    }
}

struct Entry {
    record: Option<Rec>,
    /// The frame that last changed `record`.
    version: u64,
    /// The subscriptions reading this key (the reverse index), each once. Inline for up to
    /// two: most keys are read by one or two windows.
    subs: SmallVec<[SubId; 2]>,
    /// The cached node rooted here, its inputs and the frame it was built in. Written while
    /// a frame reads the other entries (see [`Frame::node`]).
    node: RefCell<Option<Cached>>,
}

/// A cached node, the keys it read and the frame it was built in.
type Cached = (Node, Arc<[EntityKey]>, u64);

impl Entry {
    fn new(frame: u64) -> Self {
        Entry {
            record: None,
            version: frame,
            subs: SmallVec::new(),
            node: RefCell::new(None),
        }
    }
}

/// What `Store::stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Cached users.
    pub users: usize,
    /// Cached conversations.
    pub conversations: usize,
    /// Cached participations (including the current user's own).
    pub participants: usize,
    /// Cached read states.
    pub read_states: usize,
    /// Cached messages.
    pub messages: usize,
    /// Cached records of the current user's own reactions (one per message they reacted to).
    pub reacted: usize,
    /// Cached reactions of reactions windows (one per user, message and emoji).
    pub reactions: usize,
    /// Subscriptions that are live, or ended but not yet released by the server.
    pub subscriptions: usize,
    /// An estimate of the heap memory held by cached records and nodes, in bytes.
    pub approx_bytes: usize,
}

impl StoreStats {
    /// The total number of cached entities.
    pub fn entities(&self) -> usize {
        self.users
            + self.conversations
            + self.participants
            + self.read_states
            + self.messages
            + self.reacted
            + self.reactions
    }
}

struct Sub {
    output: Box<dyn Output>,
    /// Whether the output still publishes (false once the app unsubscribed).
    live: bool,
    loaded_all: bool,
    /// The window's rows in the server's order (`None`: the root is missing).
    rows: Option<VecDeque<EntityKey>>,
    /// Each row's distance from the end of `rows`: a new first row, the usual change, moves
    /// none of them, and a row that moves to the front moves only those above it.
    from_end: Map<EntityKey, usize>,
    /// Rows that have no record (a server bug), left out of the output.
    missing: Set<EntityKey>,
    /// The keys each row read.
    row_deps: Map<EntityKey, Arc<[EntityKey]>>,
    /// For each key read, the rows that read it (a row appears once per read).
    keys: Map<EntityKey, Vec<EntityKey>>,
}

#[derive(Default)]
struct Inner {
    frame: u64,
    subs: Map<SubId, Sub>,
    /// The entity table: every record a subscription reads, with its reverse index.
    entities: Map<EntityKey, Entry>,
}

/// Whether a map of `len` entries holds so much more `capacity` that it should give memory
/// back: after the last subscription of a long window ends, the cache returns to its baseline.
/// Shrinking costs O(len) and happens only after most of the entries went, so it is amortized
/// over their removals.
fn oversized(len: usize, capacity: usize) -> bool {
    capacity > 4 * len + 256
}

/// The normalized cache of one session.
pub(crate) struct Store {
    me: UserId,
    inner: Mutex<Inner>,
}

/// Reads records and caches nodes for one frame.
struct Frame<'a> {
    entities: &'a Map<EntityKey, Entry>,
    me: &'a UserId,
    frame: u64,
}

impl Lookup for Frame<'_> {
    fn record(&self, key: &EntityKey) -> Option<Rec> {
        self.entities.get(key).and_then(|e| e.record.clone())
    }

    fn node(
        &self,
        key: &EntityKey,
        deps: &mut Vec<EntityKey>,
        build: &dyn Fn(&Self, &mut Vec<EntityKey>) -> Option<Node>,
    ) -> Option<Node> {
        let entry = self.entities.get(key);
        if let Some(entry) = entry
            && let Some((node, inputs, built)) = &*entry.node.borrow()
        {
            let valid = inputs.iter().all(|input| {
                let version = if input == key {
                    Some(entry.version)
                } else {
                    self.entities.get(input).map(|e| e.version)
                };
                version.is_some_and(|version| version <= *built)
            });
            if valid {
                deps.extend(inputs.iter().cloned());
                return Some(node.clone());
            }
        }
        // No borrow is held while building: the build reads (and caches) other nodes.
        let mut inputs = Vec::new();
        let node = build(self, &mut inputs);
        let inputs: Arc<[EntityKey]> = inputs.into();
        deps.extend(inputs.iter().cloned());
        if let (Some(node), Some(entry)) = (&node, entry) {
            *entry.node.borrow_mut() = Some((node.clone(), inputs, self.frame));
        }
        node
    }

    fn me(&self) -> &UserId {
        self.me
    }
}

impl Store {
    pub(crate) fn new(me: UserId) -> Self {
        Self {
            me,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` between frames: no frame is applied while it runs.
    pub(crate) fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        let _inner = self.lock();
        f()
    }

    /// Registers a subscription before its first window arrives.
    pub(crate) fn register(&self, sub: SubId, output: Box<dyn Output>) {
        let sub_state = Sub {
            output,
            live: true,
            loaded_all: false,
            rows: None,
            from_end: Map::default(),
            missing: Set::default(),
            row_deps: Map::default(),
            keys: Map::default(),
        };
        self.lock().subs.insert(sub, sub_state);
    }

    /// Stops publishing to a subscription. Its records stay cached until [`Store::release`]
    /// (after the server confirmed the unsubscribe), so the cache never lacks a record the
    /// server believes this client holds.
    pub(crate) fn detach(&self, sub: SubId) {
        if let Some(s) = self.lock().subs.get_mut(&sub) {
            s.live = false;
        }
    }

    /// What a subscription holds, to restore it on a new connection: its window's length and
    /// oldest row, and the keys its snapshot reads, current as of the log position `since`
    /// (none if they are more than [`MAX_HELD_KEYS`]). `None` if no window arrived yet (or it
    /// was `null`): the subscription then starts afresh with the first page.
    pub(crate) fn restore(&self, sub: SubId, since: Option<Position>) -> Option<Restore> {
        let inner = self.lock();
        let s = inner.subs.get(&sub)?;
        let rows = s.rows.as_ref()?;
        let held = if s.keys.len() <= MAX_HELD_KEYS {
            s.keys.keys().cloned().collect()
        } else {
            Vec::new()
        };
        Some(Restore {
            len: rows.len() as u32,
            oldest: rows.back().cloned(),
            since,
            held,
            exact: false,
        })
    }

    /// Forgets a subscription and evicts the records only it read.
    pub(crate) fn release(&self, sub: SubId) {
        let mut inner = self.lock();
        let Some(s) = inner.subs.remove(&sub) else {
            return;
        };
        let mut evict = Vec::new();
        for key in s.keys.into_keys() {
            unref(&mut inner.entities, sub, key, &mut evict);
        }
        evict_unread(&mut inner.entities, evict);
    }

    /// Ends a subscription with an error.
    pub(crate) fn fail(&self, sub: SubId, error: WireError) {
        if let Some(s) = self.lock().subs.get_mut(&sub)
            && s.live
        {
            s.live = false;
            s.output.fail(error);
        }
    }

    /// Applies one server frame atomically: rebuilds every affected subscription, then
    /// publishes them all. Returns the app callbacks to [`run`] next.
    pub(crate) fn apply(&self, updates: Vec<Update>) -> Vec<Callback> {
        let mut inner = self.lock();
        inner.frame += 1;
        let frame = inner.frame;
        let Inner { subs, entities, .. } = &mut *inner;
        // Each subscription reading a changed key, with the key.
        let mut hits: Vec<(SubId, EntityKey)> = Vec::new();
        // Changed keys no subscription read: kept only if one reads them now.
        let mut unread: Vec<EntityKey> = Vec::new();
        let mut windows: Vec<Update> = Vec::new();
        let mut changed = |key: EntityKey, entry: &Entry| match entry.subs.as_slice() {
            [] => unread.push(key),
            subs => hits.extend(subs.iter().map(|sub| (*sub, key.clone()))),
        };
        for update in updates {
            match update {
                Update::Upsert { record } => {
                    let key = record.key();
                    let entry = entities
                        .entry(key.clone())
                        .or_insert_with(|| Entry::new(frame));
                    if entry.record.as_ref().is_some_and(|r| r.same(&record)) {
                        continue;
                    }
                    entry.record = Some(record.into_record().into());
                    entry.version = frame;
                    changed(key, entry);
                }
                Update::Remove { key } => {
                    if let Some(entry) = entities.get_mut(&key)
                        && entry.record.take().is_some()
                    {
                        entry.version = frame;
                        *entry.node.get_mut() = None;
                        changed(key, entry);
                    }
                }
                Update::Window { .. } | Update::Rows { .. } => windows.push(update),
                Update::Failed { sub, error } => {
                    if let Some(s) = subs.get_mut(&sub)
                        && s.live
                    {
                        s.live = false;
                        s.output.fail(error);
                    }
                }
            }
        }

        // What to rebuild, per subscription.
        let mut dirty: Map<SubId, Work> = Map::default();
        for (sub, key) in hits {
            let Some(s) = subs.get(&sub) else {
                continue;
            };
            let rows = &mut dirty.entry(sub).or_default().rows;
            rows.extend(s.keys.get(&key).into_iter().flatten().cloned());
        }
        for update in windows {
            let (sub, loaded_all) = match &update {
                Update::Window {
                    sub, loaded_all, ..
                }
                | Update::Rows {
                    sub, loaded_all, ..
                } => (*sub, *loaded_all),
                _ => continue,
            };
            let Some(s) = subs.get_mut(&sub) else {
                continue;
            };
            let work = dirty.entry(sub).or_default();
            work.publish |= s.loaded_all != loaded_all || !s.output.is_active();
            s.loaded_all = loaded_all;
            match update {
                Update::Window { items, .. } => {
                    let items = items.map(VecDeque::from);
                    if s.rows != items {
                        s.rows = items;
                        work.whole = true;
                        work.changes.clear();
                    }
                }
                // After a whole window in the same frame, only the rows change: the rebuild
                // reads them all.
                Update::Rows { changes, .. } if work.whole => {
                    for change in changes {
                        s.change_rows(change);
                    }
                }
                Update::Rows { changes, .. } => work.changes.extend(changes),
                _ => {}
            }
        }

        let mut sorted: Vec<_> = dirty.into_iter().collect();
        sorted.sort_unstable_by_key(|(sub, _)| *sub);
        let mut published = Vec::new();
        // Keys each subscription started or stopped reading: the entity table changes once
        // every subscription is rebuilt (the rebuilds read it).
        let mut gained: Vec<(EntityKey, SubId)> = Vec::new();
        let mut lost: Vec<(EntityKey, SubId)> = Vec::new();
        let (mut sub_gained, mut sub_lost) = (Vec::new(), Vec::new());
        let lookup = Frame {
            entities,
            me: &self.me,
            frame,
        };
        for (sub, mut work) in sorted {
            let Some(s) = subs.get_mut(&sub) else {
                continue;
            };
            let (g, l) = (&mut sub_gained, &mut sub_lost);
            let mut changed_output = work.publish;
            if work.whole {
                changed_output |= rebuild_window(&lookup, s, g, l);
            } else {
                for change in work.changes {
                    changed_output |= s.apply_change(&lookup, change, g, l);
                }
                work.rows.sort_unstable();
                work.rows.dedup();
                changed_output |= rebuild_rows(&lookup, s, &work.rows, g, l);
            }
            gained.extend(g.drain(..).map(|key| (key, sub)));
            lost.extend(l.drain(..).map(|key| (key, sub)));
            if changed_output && s.live {
                published.push(sub);
            }
        }
        let mut evict = Vec::new();
        for (key, sub) in gained {
            entities
                .entry(key)
                .or_insert_with(|| Entry::new(frame))
                .subs
                .push(sub);
        }
        for (key, sub) in lost {
            unref(entities, sub, key, &mut evict);
        }
        // Only now, with every subscription rebuilt, publish.
        let mut callbacks = Vec::new();
        for sub in published {
            if let Some(s) = subs.get_mut(&sub) {
                callbacks.extend(s.output.publish(s.loaded_all));
            }
        }
        // Records that arrived for no live subscription are not kept.
        evict.extend(unread);
        evict_unread(entities, evict);
        callbacks
    }

    /// Entity counts, live subscriptions and an estimate of memory use.
    pub(crate) fn stats(&self) -> StoreStats {
        let inner = self.lock();
        let mut stats = StoreStats {
            subscriptions: inner.subs.len(),
            ..StoreStats::default()
        };
        for (key, entry) in &inner.entities {
            let counter = match key {
                EntityKey::User { .. } => &mut stats.users,
                EntityKey::Conversation { .. } => &mut stats.conversations,
                EntityKey::Participant { .. } => &mut stats.participants,
                EntityKey::ReadState { .. } => &mut stats.read_states,
                EntityKey::Message { .. } => &mut stats.messages,
                EntityKey::Reacted { .. } => &mut stats.reacted,
                EntityKey::Reaction { .. } => &mut stats.reactions,
            };
            *counter += 1;
            stats.approx_bytes += std::mem::size_of::<(EntityKey, Entry)>()
                + entry.record.as_ref().map_or(0, approx_size)
                + entry.node.borrow().as_ref().map_or(0, |(_, deps, _)| {
                    deps.len() * std::mem::size_of::<EntityKey>() + 256
                });
        }
        stats
    }
}

/// A rough estimate of a record's heap size.
fn approx_size(record: &Rec) -> usize {
    let strings = |custom: &crate::model::Custom| -> usize {
        custom.iter().map(|(k, v)| k.len() + v.len() + 48).sum()
    };
    match record {
        Rec::User(u) => std::mem::size_of_val(&**u) + u.name.len() + strings(&u.custom),
        Rec::Conversation(c) => {
            std::mem::size_of_val(&**c)
                + c.subject.as_ref().map_or(0, String::len)
                + strings(&c.custom)
        }
        Rec::Participant(p) => std::mem::size_of_val(&**p),
        Rec::ReadState(r) => std::mem::size_of_val(&**r),
        Rec::Reacted(r) => {
            std::mem::size_of_val(&**r) + r.emoji.iter().map(|e| e.len() + 24).sum::<usize>()
        }
        Rec::Message(m) => {
            std::mem::size_of_val(&**m)
                + 2 * m.plaintext.len()
                + strings(&m.custom)
                + m.reactions
                    .iter()
                    .map(|r| r.emoji.len() + 40)
                    .sum::<usize>()
        }
        Rec::Reaction(r) => std::mem::size_of_val(&**r) + r.emoji.len(),
    }
}

/// Records that subscription `sub` no longer reads `key`; a key nobody reads goes to `evict`.
///
/// # Performance
///
/// O(subscriptions reading `key`), usually one or two.
fn unref(
    entities: &mut Map<EntityKey, Entry>,
    sub: SubId,
    key: EntityKey,
    evict: &mut Vec<EntityKey>,
) {
    if let Some(entry) = entities.get_mut(&key) {
        if let Some(at) = entry.subs.iter().position(|s| *s == sub) {
            entry.subs.swap_remove(at);
        }
        if entry.subs.is_empty() {
            evict.push(key);
        }
    }
}

/// Removes the entries of `keys` that no subscription reads (any more), and gives memory
/// back once the table holds far less than its capacity.
fn evict_unread(entities: &mut Map<EntityKey, Entry>, keys: Vec<EntityKey>) {
    if keys.is_empty() {
        return;
    }
    for key in keys {
        if entities.get(&key).is_some_and(|e| e.subs.is_empty()) {
            entities.remove(&key);
        }
    }
    if oversized(entities.len(), entities.capacity()) {
        entities.shrink_to_fit();
    }
}

/// What one frame asks of one subscription.
#[derive(Default)]
struct Work {
    /// Rebuild every row (a whole window arrived).
    whole: bool,
    /// Changes to the window's rows, in order.
    changes: Vec<RowChange>,
    /// Rows whose inputs changed (with repeats until the rebuild sorts them out).
    rows: Vec<EntityKey>,
    /// Publish even if no row changed (`loaded_all` changed, or nothing was published yet).
    publish: bool,
}

impl Sub {
    /// The index of `row` in `rows`.
    fn index_of(&self, row: &EntityKey) -> Option<usize> {
        let from_end = self.from_end.get(row)?;
        self.rows.as_ref()?.len().checked_sub(from_end + 1)
    }

    /// Where the row at `index` of `rows` is in the output, which leaves out missing rows.
    fn shown(&self, index: usize) -> usize {
        let before = self
            .missing
            .iter()
            .filter(|row| self.index_of(row).is_some_and(|at| at < index));
        index - before.count()
    }

    /// Applies `change` to `rows` and `from_end` only. Returns the row inserted or removed
    /// and the index it has or had, or `None` (logged) if the change does not fit the
    /// window (a server bug).
    ///
    /// # Performance
    ///
    /// O(index): only the rows above the change move away from the end.
    fn change_rows(&mut self, change: RowChange) -> Option<(EntityKey, usize, bool)> {
        let rows = self.rows.as_mut()?;
        let (key, index, inserted) = match change {
            RowChange::Insert { index, key }
                if index <= rows.len() && !self.from_end.contains_key(&key) =>
            {
                rows.insert(index, key.clone());
                self.from_end.insert(key.clone(), rows.len() - 1 - index);
                (key, index, true)
            }
            RowChange::Remove { index } if index < rows.len() => {
                let key = rows.remove(index)?;
                self.from_end.remove(&key);
                (key, index, false)
            }
            RowChange::Move { from, to } if from < rows.len() && to < rows.len() => {
                let key = rows.remove(from)?;
                rows.insert(to, key.clone());
                for (at, row) in rows.iter().enumerate().take(from.max(to) + 1) {
                    self.from_end.insert(row.clone(), rows.len() - 1 - at);
                }
                return Some((key, to, true));
            }
            change => {
                tracing::warn!(?change, "window change does not fit the window; skipped");
                return None;
            }
        };
        // Saturating: a server that sent a window with a key twice must not make this panic.
        let delta = |n: &mut usize| {
            *n = if inserted {
                *n + 1
            } else {
                n.saturating_sub(1)
            }
        };
        for row in rows.range(..index) {
            if let Some(n) = self.from_end.get_mut(row) {
                delta(n);
            }
        }
        Some((key, index, inserted))
    }

    /// Applies `change` to the rows and the output. Returns whether the output changed.
    fn apply_change(
        &mut self,
        lookup: &Frame<'_>,
        change: RowChange,
        gained: &mut Vec<EntityKey>,
        lost: &mut Vec<EntityKey>,
    ) -> bool {
        if let RowChange::Move { from, to } = change {
            let (shown_from, missing) = match self.rows.as_ref().and_then(|rows| rows.get(from)) {
                Some(row) => (self.shown(from), self.missing.contains(row)),
                None => return false,
            };
            if self.change_rows(change).is_none() || missing {
                return false;
            }
            self.output.move_row(shown_from, self.shown(to));
            return true;
        }
        // A removed row's place in the output is found before it leaves `rows`.
        let shown_before = match &change {
            RowChange::Remove { index } => Some(self.shown(*index)),
            _ => None,
        };
        let Some((row, index, inserted)) = self.change_rows(change) else {
            return false;
        };
        if !inserted {
            if let Some(deps) = self.row_deps.remove(&row) {
                count_down(&mut self.keys, &deps, &row, lost);
            }
            if self.missing.remove(&row) {
                return false;
            }
            self.output.remove(shown_before.unwrap_or(index));
            return true;
        }
        let mut deps = Vec::new();
        let built = node(lookup, &row, &mut deps);
        let deps: Arc<[EntityKey]> = deps.into();
        count_up(&mut self.keys, &deps, &row, gained);
        self.row_deps.insert(row.clone(), deps);
        let shown = self.shown(index);
        if built.is_some_and(|built| self.output.insert(shown, built)) {
            return true;
        }
        tracing::warn!(?row, "window row has no record; skipped");
        self.missing.insert(row);
        false
    }
}

/// Rebuilds every row of a window. Returns whether the output changed.
fn rebuild_window(
    lookup: &Frame<'_>,
    s: &mut Sub,
    gained: &mut Vec<EntityKey>,
    lost: &mut Vec<EntityKey>,
) -> bool {
    let mut row_deps = Map::default();
    let mut nodes = Vec::new();
    s.from_end.clear();
    s.missing.clear();
    if let Some(rows) = &s.rows {
        for (at, row) in rows.iter().enumerate() {
            let mut deps = Vec::new();
            let built = node(lookup, row, &mut deps);
            row_deps.insert(row.clone(), Arc::from(deps));
            s.from_end.insert(row.clone(), rows.len() - 1 - at);
            if let Some(built) = built {
                nodes.push(built);
            } else {
                tracing::warn!(?row, "window row has no record; skipped");
                s.missing.insert(row.clone());
            }
        }
    }
    let old = std::mem::replace(&mut s.row_deps, row_deps);
    for (row, deps) in &s.row_deps {
        count_up(&mut s.keys, deps, row, gained);
    }
    for (row, deps) in &old {
        count_down(&mut s.keys, deps, row, lost);
    }
    s.output.reset(s.rows.is_some().then_some(nodes))
}

/// Rebuilds some rows of a window in place (those still in it). Returns whether the output
/// changed.
fn rebuild_rows(
    lookup: &Frame<'_>,
    s: &mut Sub,
    rows: &[EntityKey],
    gained: &mut Vec<EntityKey>,
    lost: &mut Vec<EntityKey>,
) -> bool {
    let mut changed = false;
    let mut deps = Vec::new();
    for row in rows {
        let Some(index) = s.index_of(row) else {
            continue;
        };
        deps.clear();
        let built = node(lookup, row, &mut deps);
        if s.row_deps.get(row).is_none_or(|old| **old != *deps) {
            let deps: Arc<[EntityKey]> = deps.as_slice().into();
            count_up(&mut s.keys, &deps, row, gained);
            if let Some(old) = s.row_deps.insert(row.clone(), deps) {
                count_down(&mut s.keys, &old, row, lost);
            }
        }
        let shown = s.shown(index);
        match (built, s.missing.contains(row)) {
            (Some(built), false) => changed |= s.output.set(shown, built),
            (Some(built), true) => {
                if s.output.insert(shown, built) {
                    s.missing.remove(row);
                    changed = true;
                }
            }
            (None, false) => {
                tracing::warn!(?row, "window row has no record; skipped");
                s.output.remove(shown);
                s.missing.insert(row.clone());
                changed = true;
            }
            (None, true) => {}
        }
    }
    changed
}

/// Records that `row` reads `deps`; keys read for the first time go to `gained`.
fn count_up(
    keys: &mut Map<EntityKey, Vec<EntityKey>>,
    deps: &[EntityKey],
    row: &EntityKey,
    gained: &mut Vec<EntityKey>,
) {
    for key in deps {
        let rows = keys.entry(key.clone()).or_default();
        if rows.is_empty() {
            gained.push(key.clone());
        }
        rows.push(row.clone());
    }
}

/// Records that `row` no longer reads `deps`; keys no row reads go to `lost`.
fn count_down(
    keys: &mut Map<EntityKey, Vec<EntityKey>>,
    deps: &[EntityKey],
    row: &EntityKey,
    lost: &mut Vec<EntityKey>,
) {
    for key in deps {
        let Some(rows) = keys.get_mut(key) else {
            continue;
        };
        if let Some(at) = rows.iter().position(|r| r == row) {
            rows.swap_remove(at);
        }
        if rows.is_empty() {
            keys.remove(key);
            lost.push(key.clone());
        }
    }
}
