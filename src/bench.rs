//! Fixtures for the store benchmarks (feature `bench-internals`). Not a stable API.
//!
//! [`Harness`] drives the real store with real subscription outputs; [`BareHarness`] is the
//! baseline the benches compare against: a `HashMap<Id, Mutable<Arc<T>>>` with the same
//! number of polled signals, or (with no signals) a plain `HashMap` floor.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_signals::signal::{Mutable, Signal};
use futures_util::task::noop_waker_ref;

use crate::{
    model::{
        Access, ContentBlock, ConversationId, ConversationRecord, ConversationSnapshot, MessageId,
        MessageRecord, MessageSnapshot, MessageType, Notify, Origin, ParticipantRecord,
        ReadStateRecord, TextNode, UserId, UserSnapshot,
    },
    protocol::{EntityKey, Record, Target, Update},
    session::{Handle, Shared, State, SubscriptionState, signal},
    store::{self, Store},
};

/// One recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// User `n` renamed.
    UserEdited(usize),
    /// Message `n` edited.
    MessageEdited(usize),
    /// The read state of conversation `n` changed.
    ReadState(usize),
    /// A new message in conversation `n`.
    MessageCreated(usize),
}

/// A deterministic stream of `n` events: 40% edits, 20% renames, 20% read states, 20% new
/// messages, spread over the given entity counts.
pub fn recorded_events(
    n: usize,
    users: usize,
    conversations: usize,
    messages: usize,
) -> Vec<Event> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pick = (x >> 8) as usize;
            match x % 5 {
                0 | 1 => Event::MessageEdited(pick % messages),
                2 => Event::UserEdited(pick % users),
                3 => Event::ReadState(pick % conversations),
                _ => Event::MessageCreated(pick % conversations),
            }
        })
        .collect()
}

fn user(n: usize, version: u64) -> UserSnapshot {
    UserSnapshot {
        id: UserId::new(format!("u{n}")),
        name: format!("User {n} v{version}"),
        custom: Default::default(),
        locale: None,
        photo_url: None,
        role: "default".into(),
        welcome_message: None,
    }
}

fn message(n: usize, conversation: usize, sender: Option<usize>, version: u64) -> MessageRecord {
    let text = format!("message {n} v{version}");
    MessageRecord {
        id: MessageId::new(format!("m{n}")),
        conversation_id: ConversationId::new(format!("c{conversation}")),
        message_type: if sender.is_some() {
            MessageType::UserMessage
        } else {
            MessageType::SystemMessage
        },
        sender_id: sender.map(|s| UserId::new(format!("u{s}"))),
        custom: Default::default(),
        created_at: n as i64,
        edited_at: None,
        referenced_message_id: None,
        origin: Origin::Rest,
        plaintext: text.clone(),
        content: vec![ContentBlock::Text {
            children: vec![TextNode::Text(text)],
        }]
        .into(),
        reactions: Vec::new(),
    }
}

fn conversation(n: usize, last: Option<usize>) -> ConversationRecord {
    ConversationRecord {
        id: ConversationId::new(format!("c{n}")),
        subject: Some(format!("Conversation {n}")),
        photo_url: None,
        welcome_messages: Vec::new(),
        custom: Default::default(),
        created_at: 0,
        last_message_id: last.map(|m| MessageId::new(format!("m{m}"))),
    }
}

fn read_state(n: usize, version: u64) -> ReadStateRecord {
    ReadStateRecord {
        conversation_id: ConversationId::new(format!("c{n}")),
        read_until: version as i64,
        everyone_read_until: 0,
        unread_message_count: version,
        is_unread: version > 0,
    }
}

fn me_in(n: usize) -> ParticipantRecord {
    ParticipantRecord {
        conversation_id: ConversationId::new(format!("c{n}")),
        user_id: UserId::new("me"),
        access: Access::ReadWrite,
        notify: Notify::Always,
        joined_at: 0,
    }
}

type BoxSignal = Pin<Box<dyn Signal<Item = ()> + Send>>;

/// The target of the fixtures' subscriptions: they are never sent to an engine.
const TARGET: Target = Target::Conversations { filter: None };

/// A handle that only feeds `state`.
fn detached<T: Clone + Send + Sync + 'static, X: crate::session::RowType>(
    id: u64,
    state: &State<T>,
) -> Handle<T, X> {
    Handle::new(
        id,
        state.clone(),
        None,
        None,
        tokio::sync::watch::Sender::new(true),
    )
}

/// Polls signals once with a no-op waker; returns how many had a new value.
fn poll(signals: &mut [BoxSignal]) -> usize {
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut changed = 0;
    for signal in signals {
        if let Poll::Ready(Some(())) = signal.as_mut().poll_change(&mut cx) {
            changed += 1;
        }
    }
    changed
}

/// The real store, with `k` identical single-row subscriptions per entity: as a session
/// makes them, one store subscription feeding `k` handles.
pub struct Harness {
    store: Store,
    signals: HashMap<String, Vec<BoxSignal>>,
    version: u64,
    /// The version each user and message was last given.
    latest: HashMap<String, u64>,
    next_message: usize,
    /// Which conversation each message is in.
    message_conversation: Vec<usize>,
}

/// One frame of updates, built outside the timed code.
#[derive(Clone)]
pub struct Frame {
    updates: Vec<Update>,
    touched: String,
}

impl Harness {
    /// A store holding `users`, `conversations` and `messages` (system messages, so each
    /// subscription reads exactly one changing entity), with `k` subscriptions per user,
    /// message and conversation, each polled once so that later polls see only changes.
    pub fn new(users: usize, conversations: usize, messages: usize, k: usize) -> Self {
        let mut harness = Harness {
            store: Store::new(UserId::new("me")),
            signals: HashMap::new(),
            version: 0,
            latest: HashMap::new(),
            next_message: messages,
            message_conversation: (0..messages).map(|m| m % conversations).collect(),
        };
        let mut updates: Vec<Update> = Vec::new();
        let record = |record: Record| Update::Upsert {
            record: record.into(),
        };
        updates.extend((0..users).map(|u| record(Record::User(user(u, 0)))));
        updates.extend(
            (0..messages).map(|m| record(Record::Message(message(m, m % conversations, None, 0)))),
        );
        for c in 0..conversations {
            let last = (0..messages).rev().find(|m| m % conversations == c);
            updates.push(record(Record::Conversation(conversation(c, last))));
            updates.push(record(Record::ReadState(read_state(c, 0))));
            updates.push(record(Record::Participant(me_in(c))));
        }
        let mut sub = 0;
        let mut keys: Vec<(String, EntityKey)> = Vec::new();
        keys.extend((0..users).map(|u| {
            (
                format!("u{u}"),
                EntityKey::user(&UserId::new(format!("u{u}"))),
            )
        }));
        keys.extend((0..messages).map(|m| {
            (
                format!("m{m}"),
                EntityKey::message(&MessageId::new(format!("m{m}"))),
            )
        }));
        keys.extend((0..conversations).map(|c| {
            (
                format!("c{c}"),
                EntityKey::conversation(&ConversationId::new(format!("c{c}"))),
            )
        }));
        for (name, key) in keys.into_iter().filter(|_| k > 0) {
            sub += 1;
            let signals = harness.register(sub, &key, k);
            harness.signals.insert(name, signals);
            updates.push(Update::Window {
                sub,
                items: Some(vec![key]),
                loaded_all: true,
            });
        }
        store::run(harness.store.apply(updates));
        for signals in harness.signals.values_mut() {
            poll(signals);
        }
        harness
    }

    /// Registers `k` identical subscriptions of `key`, as a session shares them: one store
    /// subscription feeding `k` handles.
    fn register(&self, sub: u64, key: &EntityKey, k: usize) -> Vec<BoxSignal> {
        fn single<X: Clone>(rows: Option<&imbl::Vector<Arc<X>>>) -> Option<Arc<X>> {
            rows.and_then(|r| r.front().cloned())
        }
        macro_rules! output {
            ($ty:ty) => {{
                let shared = Arc::new(Shared::<_, $ty>::new(
                    sub,
                    String::new(),
                    TARGET,
                    single,
                    false,
                ));
                let signals = (0..k)
                    .map(|id| {
                        let state = State::new(SubscriptionState::<Option<Arc<$ty>>>::Pending);
                        shared.join(detached(id as u64, &state));
                        Box::pin(futures_signals::signal::SignalExt::map(
                            signal(&state),
                            drop,
                        )) as BoxSignal
                    })
                    .collect();
                self.store.register(sub, shared.output());
                signals
            }};
        }
        match key {
            EntityKey::User { .. } => output!(UserSnapshot),
            EntityKey::Message { .. } => output!(MessageSnapshot),
            _ => output!(ConversationSnapshot),
        }
    }

    /// Builds the frames of `events`, each a new version of what it touches.
    pub fn frames(&mut self, events: &[Event]) -> Vec<Frame> {
        self.build(events, true)
    }

    /// Frames that re-send the latest version of each edited user and message: applying them
    /// after [`Self::frames`] changes nothing. Other events are skipped.
    pub fn noop_frames(&mut self, events: &[Event]) -> Vec<Frame> {
        let edits: Vec<Event> = events
            .iter()
            .copied()
            .filter(|e| matches!(e, Event::UserEdited(_) | Event::MessageEdited(_)))
            .collect();
        self.build(&edits, false)
    }

    fn build(&mut self, events: &[Event], new_versions: bool) -> Vec<Frame> {
        events
            .iter()
            .map(|event| {
                let name = match *event {
                    Event::UserEdited(u) => format!("u{u}"),
                    Event::MessageEdited(m) => format!("m{m}"),
                    Event::ReadState(c) | Event::MessageCreated(c) => format!("c{c}"),
                };
                let v = if new_versions {
                    self.version += 1;
                    self.latest.insert(name, self.version);
                    self.version
                } else {
                    self.latest.get(&name).copied().unwrap_or(0)
                };
                let upsert = |record: Record| Update::Upsert {
                    record: record.into(),
                };
                match *event {
                    Event::UserEdited(u) => Frame {
                        updates: vec![upsert(Record::User(user(u, v)))],
                        touched: format!("u{u}"),
                    },
                    Event::MessageEdited(m) => Frame {
                        updates: vec![upsert(Record::Message(message(
                            m,
                            self.message_conversation[m],
                            None,
                            v,
                        )))],
                        touched: format!("m{m}"),
                    },
                    Event::ReadState(c) => Frame {
                        updates: vec![upsert(Record::ReadState(read_state(c, v)))],
                        touched: format!("c{c}"),
                    },
                    Event::MessageCreated(c) => {
                        let m = self.next_message;
                        self.next_message += 1;
                        Frame {
                            updates: vec![
                                upsert(Record::Message(message(m, c, None, v))),
                                upsert(Record::Conversation(conversation(c, Some(m)))),
                            ],
                            touched: format!("c{c}"),
                        }
                    }
                }
            })
            .collect()
    }

    /// Applies one frame, publishes, and polls the signals of the touched entity. Returns how
    /// many of them changed.
    pub fn apply(&mut self, frame: Frame) -> usize {
        store::run(self.store.apply(frame.updates));
        self.signals.get_mut(&frame.touched).map_or(0, |s| poll(s))
    }
}

/// The baseline: one `Mutable<Arc<T>>` per entity with `k` signals each (`k = 0`: a plain
/// `HashMap` of `Arc`s, the floor).
pub struct BareHarness {
    users: HashMap<String, Mutable<Arc<UserSnapshot>>>,
    messages: HashMap<String, Mutable<Arc<MessageRecord>>>,
    reads: HashMap<String, Mutable<Arc<ReadStateRecord>>>,
    floor: HashMap<String, Arc<dyn std::any::Any + Send + Sync>>,
    signals: HashMap<String, Vec<BoxSignal>>,
    k: usize,
    /// Compare before setting, so that equal values do not notify.
    pub compare: bool,
}

impl BareHarness {
    /// The same entities as [`Harness::new`].
    pub fn new(users: usize, conversations: usize, messages: usize, k: usize) -> Self {
        let mut bare = BareHarness {
            users: HashMap::new(),
            messages: HashMap::new(),
            reads: HashMap::new(),
            floor: HashMap::new(),
            signals: HashMap::new(),
            k,
            compare: false,
        };
        fn add<T: Clone + Send + Sync + 'static>(
            map: &mut HashMap<String, Mutable<Arc<T>>>,
            signals: &mut HashMap<String, Vec<BoxSignal>>,
            key: String,
            value: T,
            k: usize,
        ) {
            let mutable = Mutable::new(Arc::new(value));
            let list = signals.entry(key.clone()).or_default();
            for _ in 0..k {
                let signal = futures_signals::signal::SignalExt::map(mutable.signal_cloned(), drop);
                list.push(Box::pin(signal));
            }
            map.insert(key, mutable);
        }
        for u in 0..users {
            add(
                &mut bare.users,
                &mut bare.signals,
                format!("u{u}"),
                user(u, 0),
                k,
            );
        }
        for m in 0..messages {
            add(
                &mut bare.messages,
                &mut bare.signals,
                format!("m{m}"),
                message(m, m % conversations, None, 0),
                k,
            );
        }
        for c in 0..conversations {
            add(
                &mut bare.reads,
                &mut bare.signals,
                format!("c{c}"),
                read_state(c, 0),
                k,
            );
        }
        for signals in bare.signals.values_mut() {
            poll(signals);
        }
        bare
    }

    /// Applies the same frame as [`Harness::apply`]: sets the touched entity's `Mutable` (or,
    /// as the floor, inserts into a plain map) and polls its signals.
    pub fn apply(&mut self, frame: Frame) -> usize {
        for update in frame.updates {
            let Update::Upsert { record } = update else {
                continue;
            };
            let record = record.into_record();
            let key = frame.touched.clone();
            if self.k == 0 {
                let value: Arc<dyn std::any::Any + Send + Sync> = match record {
                    Record::User(u) => Arc::new(u),
                    Record::Message(m) => Arc::new(m),
                    Record::ReadState(r) => Arc::new(r),
                    Record::Conversation(c) => Arc::new(c),
                    Record::Participant(p) => Arc::new(p),
                    Record::Reacted(r) => Arc::new(r),
                    Record::Reaction(r) => Arc::new(r),
                };
                self.floor.insert(key, value);
                continue;
            }
            let compare = self.compare;
            match record {
                Record::User(u) => set(self.users.entry(key), u, compare),
                Record::Message(m) => set(self.messages.entry(m.id.to_string()), m, compare),
                Record::ReadState(r) => set(self.reads.entry(key), r, compare),
                // A new last message: the conversation's signal fires.
                Record::Conversation(_) => {
                    if let Some(read) = self.reads.get(&key) {
                        let value = read.get_cloned();
                        read.set(value);
                    }
                }
                Record::Participant(_) | Record::Reacted(_) | Record::Reaction(_) => {}
            }
        }
        self.signals.get_mut(&frame.touched).map_or(0, |s| poll(s))
    }
}

/// Sets a `Mutable`, creating it if missing; with `compare`, skips equal values.
fn set<T: PartialEq + Send + Sync + 'static>(
    entry: std::collections::hash_map::Entry<'_, String, Mutable<Arc<T>>>,
    value: T,
    compare: bool,
) {
    match entry {
        std::collections::hash_map::Entry::Occupied(mutable) => {
            let mutable = mutable.get();
            if !(compare && **mutable.lock_ref() == value) {
                mutable.set(Arc::new(value));
            }
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(Mutable::new(Arc::new(value)));
        }
    }
}

/// A conversation list of `rows` conversations, in `r` of which user `u0` sent the last
/// message; [`ListHarness::rename_frame`] renames `u0`.
pub struct ListHarness {
    store: Store,
    signal: BoxSignal,
    version: u64,
}

impl ListHarness {
    /// Builds the list and polls it once.
    pub fn new(rows: usize, r: usize) -> Self {
        let store = Store::new(UserId::new("me"));
        let state = State::new(SubscriptionState::Pending);
        fn list(
            rows: Option<&imbl::Vector<Arc<ConversationSnapshot>>>,
        ) -> imbl::Vector<Arc<ConversationSnapshot>> {
            rows.cloned().unwrap_or_default()
        }
        let shared = Arc::new(Shared::<_, ConversationSnapshot>::new(
            1,
            String::new(),
            TARGET,
            list,
            true,
        ));
        shared.join(detached(0, &state));
        store.register(1, shared.output());
        let mut updates = vec![
            Update::Upsert {
                record: Record::User(user(0, 0)).into(),
            },
            Update::Upsert {
                record: Record::User(user(1, 0)).into(),
            },
        ];
        let mut items = Vec::new();
        for c in 0..rows {
            let sender = if c % (rows / r.max(1)).max(1) == 0 && c / (rows / r.max(1)).max(1) < r {
                0
            } else {
                1
            };
            updates.push(Update::Upsert {
                record: Record::Message(message(c, c, Some(sender), 0)).into(),
            });
            updates.push(Update::Upsert {
                record: Record::Conversation(conversation(c, Some(c))).into(),
            });
            updates.push(Update::Upsert {
                record: Record::ReadState(read_state(c, 0)).into(),
            });
            updates.push(Update::Upsert {
                record: Record::Participant(me_in(c)).into(),
            });
            items.push(EntityKey::conversation(&ConversationId::new(format!(
                "c{c}"
            ))));
        }
        updates.push(Update::Window {
            sub: 1,
            items: Some(items),
            loaded_all: true,
        });
        store::run(store.apply(updates));
        let mut signal: BoxSignal = Box::pin(futures_signals::signal::SignalExt::map(
            signal(&state),
            drop,
        ));
        poll(std::slice::from_mut(&mut signal));
        ListHarness {
            store,
            signal,
            version: 0,
        }
    }

    /// A frame renaming `u0`.
    pub fn rename_frame(&mut self) -> Frame {
        self.version += 1;
        Frame {
            updates: vec![Update::Upsert {
                record: Record::User(user(0, self.version)).into(),
            }],
            touched: String::new(),
        }
    }

    /// Applies a frame and polls the list; returns whether it emitted.
    pub fn apply(&mut self, frame: Frame) -> bool {
        store::run(self.store.apply(frame.updates));
        poll(std::slice::from_mut(&mut self.signal)) == 1
    }
}

/// The baseline of the durable-ingest bench: `messages` sends written with plain rusqlite,
/// `batch` per transaction, with the engine's schema and pragmas, writing the rows the engine
/// writes for the same load: `senders` users `u{n}`, each sending to its own conversation `c{n}`
/// with idempotency keys `k0`, `k1`, … in turn. Per message: the message (its JSON built once,
/// outside the loop), its idempotency key and one event; per transaction: the conversations it
/// touched (their last message), the message ordinal and the latest time. Returns the time the
/// writes took.
///
/// # Panics
///
/// On any SQLite error (a benchmark fixture).
#[cfg(feature = "sqlite")]
pub fn raw_ingest(
    path: &std::path::Path,
    messages: usize,
    batch: usize,
    senders: usize,
) -> std::time::Duration {
    use rusqlite::params;
    let mut conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        .expect("pragmas");
    conn.execute_batch(crate::engine::sqlite::MIGRATIONS[0])
        .expect("schema");
    let data = serde_json::to_string(&message(0, 0, Some(0), 0)).expect("json");
    let conversation = serde_json::to_string(&self::conversation(0, Some(0))).expect("json");
    let event = r#"{"event":"messageCreated","conversation":"c0","message":"m0"}"#;
    let senders: Vec<(String, String)> = (0..senders.max(1))
        .map(|n| (format!("u{n}"), format!("c{n}")))
        .collect();
    let start = std::time::Instant::now();
    for chunk in 0..messages.div_ceil(batch) {
        let tx = conn.transaction().expect("begin");
        let sends = chunk * batch..((chunk + 1) * batch).min(messages);
        let last = sends.end as i64;
        for i in sends.clone() {
            let (user, chat) = &senders[i % senders.len()];
            let id = format!("m{i}");
            tx.prepare_cached("INSERT INTO messages (id, conversation, created_at, ordinal, sender, user_message, data) VALUES (?1, ?2, ?3, ?3, ?4, 1, ?5)")
                .and_then(|mut s| s.execute(params![id, chat, i as i64, user, data]))
                .expect("message");
            tx.prepare_cached("INSERT INTO idempotency (sender, key, message) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute([user, &format!("k{}", i / senders.len()), &id]))
                .expect("idempotency");
            tx.prepare_cached("INSERT INTO events (seq, epoch, data) VALUES (?1, 1, ?2)")
                .and_then(|mut s| s.execute(params![i as i64, event]))
                .expect("event");
        }
        // The conversations of this transaction's senders (consecutive, so distinct).
        let touched = sends.start..sends.start + sends.len().min(senders.len());
        for (_, chat) in touched.map(|i| &senders[i % senders.len()]) {
            tx.prepare_cached("INSERT INTO conversations (id, data) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET data = excluded.data")
                .and_then(|mut s| s.execute([chat, &conversation]))
                .expect("conversation");
        }
        tx.prepare_cached("INSERT INTO meta (key, value) VALUES ('ordinal', ?1), ('time', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .and_then(|mut s| s.execute([last]))
            .expect("meta");
        tx.commit().expect("commit");
    }
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each event reaches exactly the k subscriptions of what it touches, once; replaying a
    /// frame is a no-op with no emission.
    #[test]
    fn harness_emits_once_per_subscriber() {
        let mut h = Harness::new(10, 5, 20, 3);
        let events = recorded_events(200, 10, 5, 20);
        for frame in h.frames(&events) {
            assert_eq!(h.apply(frame), 3);
        }
        let mut again = Harness::new(10, 5, 20, 3);
        let mut frames = again.frames(&[Event::UserEdited(1)]);
        let frame = frames.pop().unwrap();
        let copy = Frame {
            updates: frame.updates.clone(),
            touched: frame.touched.clone(),
        };
        assert_eq!(again.apply(frame), 3);
        assert_eq!(again.apply(copy), 0);
        let mut bare = BareHarness::new(10, 5, 20, 3);
        for frame in Harness::new(10, 5, 20, 3).frames(&events) {
            assert_eq!(bare.apply(frame), 3);
        }
    }

    /// A rename in a list emits once.
    #[test]
    fn list_rename_emits() {
        let mut list = ListHarness::new(100, 10);
        let frame = list.rename_frame();
        assert!(list.apply(frame));
    }
}
