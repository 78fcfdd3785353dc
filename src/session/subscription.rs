//! Subscriptions: live views of the store, as states, signals, streams and callbacks.

use std::{
    hash::Hash,
    marker::PhantomData,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use futures_signals::{
    signal::{Signal, SignalExt},
    signal_vec::{MutableVec, SignalVec},
};
use futures_util::{Stream, StreamExt};
use imbl::Vector;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use super::{SessionInner, lock};
use crate::{
    Error,
    model::{
        ConversationId, ConversationSnapshot, MessageId, MessageSnapshot, ParticipantSnapshot,
        UserId, UserSnapshot,
    },
    protocol::{Paging, Request, SubId, WireError},
    store::{Callback, Node, Output},
};

/// A callback run with every new snapshot and the window's `loaded_all` flag.
pub type OnSnapshot<T> = Box<dyn Fn(&T, bool) + Send + Sync>;

/// The state of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionState<T> {
    /// Waiting for the first snapshot.
    Pending,
    /// Live, with the latest snapshot.
    Active {
        /// The latest snapshot.
        snapshot: T,
        /// Whether the window holds everything (always true for single entities).
        loaded_all: bool,
    },
    /// Ended by `unsubscribe` or drop.
    Unsubscribed,
    /// Ended by an unrecoverable error.
    Error(Error),
}

impl<T> SubscriptionState<T> {
    /// Whether the subscription has ended.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            SubscriptionState::Unsubscribed | SubscriptionState::Error(_)
        )
    }

    /// The latest snapshot, if active.
    pub fn snapshot(&self) -> Option<&T> {
        match self {
            SubscriptionState::Active { snapshot, .. } => Some(snapshot),
            _ => None,
        }
    }
}

/// An entity type that can be a row of a window.
pub(crate) trait RowType: Send + Sync + 'static {
    type Key: Eq + Hash + Clone;
    fn from_node(node: Node) -> Option<Arc<Self>>;
    fn key(&self) -> Self::Key;
}

macro_rules! row_type {
    ($ty:ty, $variant:ident, $key:ty, |$row:ident| $key_expr:expr) => {
        impl RowType for $ty {
            type Key = $key;
            fn from_node(node: Node) -> Option<Arc<Self>> {
                match node {
                    Node::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn key(&self) -> $key {
                let $row = self;
                $key_expr
            }
        }
    };
}

row_type!(UserSnapshot, User, UserId, |u| u.id.clone());
row_type!(ConversationSnapshot, Conversation, ConversationId, |c| c
    .id
    .clone());
row_type!(MessageSnapshot, Message, MessageId, |m| m.id.clone());
row_type!(ParticipantSnapshot, Participant, UserId, |p| p
    .user
    .id
    .clone());

/// A subscription's state, set by the store and read by the handles.
///
/// A `tokio::sync::watch` channel, not a futures-signals `Mutable`: the store sets states on
/// the transport's thread while apps poll them on theirs, and a `Mutable`'s signal polled on
/// one thread while it is set on another can miss that change's wake-up for good
/// (futures-signals 0.3.34 checks for a change before it registers the waker). The handles
/// still offer futures-signals signals, see [`signal`].
pub(crate) type State<T> = watch::Sender<SubscriptionState<T>>;

/// A [`State`] as a futures-signals signal: the current state at once, then the latest after
/// every change (lossy, as every plain signal). Ends when the state's last sender is dropped.
pub(crate) fn signal<T: Clone + Send + Sync + 'static>(
    state: &State<T>,
) -> impl Signal<Item = SubscriptionState<T>> + Send + 'static + use<T> {
    StateSignal(WatchStream::new(state.subscribe()))
}

struct StateSignal<T>(WatchStream<SubscriptionState<T>>);

impl<T: Clone + Send + Sync + 'static> Signal for StateSignal<T> {
    type Item = SubscriptionState<T>;

    fn poll_change(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.get_mut().0.poll_next_unpin(cx)
    }
}

/// Ends a state with `last`, unless it ended already.
fn end<T>(state: &State<T>, last: impl FnOnce() -> SubscriptionState<T>) {
    state.send_if_modified(|state| {
        let open = !state.is_terminal();
        if open {
            *state = last();
        }
        open
    });
}

/// The shared core of a subscription handle.
pub(crate) struct SubCore<T, X> {
    session: Arc<SessionInner>,
    id: SubId,
    paging: Paging,
    state: State<T>,
    /// List rows as last published, and keyed diffs once `signal_vec` was called.
    diffs: Arc<Diffs<X>>,
    ended: AtomicBool,
    loads: AtomicU64,
    load_lock: tokio::sync::Mutex<()>,
    /// Whether the first `on_snapshot` callback ran (true if there is none): `connected`
    /// waits for it.
    called: watch::Sender<bool>,
}

impl<T: Clone + Send + Sync + 'static, X> SubCore<T, X> {
    pub(crate) fn new(session: Arc<SessionInner>, id: SubId, paging: Paging) -> Self {
        Self {
            session,
            id,
            paging,
            state: watch::Sender::new(SubscriptionState::Pending),
            diffs: Arc::default(),
            ended: AtomicBool::new(false),
            loads: AtomicU64::new(0),
            load_lock: tokio::sync::Mutex::new(()),
            called: watch::Sender::new(true),
        }
    }

    fn unsubscribe(&self) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        end(&self.state, || SubscriptionState::Unsubscribed);
        self.session.unsubscribe(self.id);
    }
}

impl<T, X> Drop for SubCore<T, X> {
    fn drop(&mut self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.session.unsubscribe(self.id);
        }
    }
}

/// The rows a list subscription last published, and its keyed diffs once requested.
pub(crate) struct Diffs<X> {
    published: Mutex<Vector<Arc<X>>>,
    vec: Mutex<Option<MutableVec<Arc<X>>>>,
}

impl<X> Default for Diffs<X> {
    fn default() -> Self {
        Self {
            published: Mutex::default(),
            vec: Mutex::default(),
        }
    }
}

/// Feeds a subscription's state from the store.
pub(crate) struct TypedOutput<T, X> {
    rows: Option<Vector<Arc<X>>>,
    view: fn(Option<&Vector<Arc<X>>>) -> T,
    state: State<T>,
    /// Only lists track diffs.
    diffs: Option<Arc<Diffs<X>>>,
    /// The row changes since the last publish, for the keyed diffs; `None` after a reset
    /// (the diffs are then found by comparing the rows).
    edits: Option<Vec<Edit<X>>>,
    on_snapshot: Option<Arc<OnSnapshot<T>>>,
    /// Set once the first callback ran (see [`SubCore::called`]).
    called: watch::Sender<bool>,
    active: bool,
}

/// One change to a list's rows.
enum Edit<X> {
    Set(usize, Arc<X>),
    Insert(usize, Arc<X>),
    Remove(usize),
    Move(usize, usize),
}

impl<T: Clone + Send + Sync + 'static, X: RowType> TypedOutput<T, X> {
    pub(crate) fn new(
        core: &SubCore<T, X>,
        view: fn(Option<&Vector<Arc<X>>>) -> T,
        on_snapshot: Option<OnSnapshot<T>>,
        list: bool,
    ) -> Self {
        if on_snapshot.is_some() {
            core.called.send_replace(false);
        }
        Self {
            rows: None,
            view,
            state: core.state.clone(),
            diffs: list.then(|| core.diffs.clone()),
            edits: None,
            on_snapshot: on_snapshot.map(Arc::new),
            called: core.called.clone(),
            active: false,
        }
    }

    /// An output that only feeds `state`, for benchmarks of the store.
    #[cfg(feature = "bench-internals")]
    pub(crate) fn detached(view: fn(Option<&Vector<Arc<X>>>) -> T, state: State<T>) -> Self {
        Self {
            rows: None,
            view,
            state,
            diffs: None,
            edits: None,
            on_snapshot: None,
            called: watch::Sender::new(true),
            active: false,
        }
    }

    /// Notes an edit for the keyed diffs, if this output keeps them.
    fn edit(&mut self, edit: impl FnOnce() -> Edit<X>) {
        if let (Some(_), Some(edits)) = (&self.diffs, &mut self.edits) {
            edits.push(edit());
        }
    }
}

impl<T: Clone + Send + Sync + 'static, X: RowType> Output for TypedOutput<T, X> {
    fn reset(&mut self, rows: Option<Vec<Node>>) -> bool {
        let rows: Option<Vector<Arc<X>>> =
            rows.map(|rows| rows.into_iter().filter_map(X::from_node).collect());
        let same = match (&self.rows, &rows) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| Arc::ptr_eq(x, y))
            }
            _ => false,
        };
        self.rows = rows;
        if !same {
            self.edits = None;
        }
        !same || !self.active
    }

    fn set(&mut self, index: usize, row: Node) -> bool {
        let (Some(rows), Some(row)) = (&mut self.rows, X::from_node(row)) else {
            return false;
        };
        match rows.get(index) {
            Some(old) if !Arc::ptr_eq(old, &row) => {
                rows.set(index, row.clone());
                self.edit(|| Edit::Set(index, row));
                true
            }
            _ => false,
        }
    }

    fn insert(&mut self, index: usize, row: Node) -> bool {
        let (Some(rows), Some(row)) = (&mut self.rows, X::from_node(row)) else {
            return false;
        };
        if index > rows.len() {
            return false;
        }
        rows.insert(index, row.clone());
        self.edit(|| Edit::Insert(index, row));
        true
    }

    fn remove(&mut self, index: usize) {
        if let Some(rows) = &mut self.rows
            && index < rows.len()
        {
            rows.remove(index);
            self.edit(|| Edit::Remove(index));
        }
    }

    fn move_row(&mut self, from: usize, to: usize) {
        if let Some(rows) = &mut self.rows
            && from < rows.len()
            && to < rows.len()
        {
            let row = rows.remove(from);
            rows.insert(to, row);
            self.edit(|| Edit::Move(from, to));
        }
    }

    fn publish(&mut self, loaded_all: bool) -> Option<Callback> {
        self.active = true;
        let snapshot = (self.view)(self.rows.as_ref());
        let published = self.state.send_if_modified(|state| {
            if state.is_terminal() {
                return false;
            }
            // The rows first (the state's lock is held): whoever sees the new state and asks
            // for `signal_vec` then starts from these rows.
            let edits = self.edits.replace(Vec::new());
            if let Some(diffs) = &self.diffs {
                let rows = self.rows.clone().unwrap_or_default();
                if let Some(vec) = &*lock(&diffs.vec) {
                    match edits {
                        Some(edits) => replay(vec, edits),
                        None => apply_diff(vec, &rows),
                    }
                }
                *lock(&diffs.published) = rows;
            }
            *state = SubscriptionState::Active {
                snapshot: snapshot.clone(),
                loaded_all,
            };
            true
        });
        if !published {
            return None;
        }
        let callback = self.on_snapshot.clone()?;
        let called = self.called.clone();
        Some(Box::new(move || {
            callback(&snapshot, loaded_all);
            called.send_if_modified(|called| !std::mem::replace(called, true));
        }))
    }

    fn fail(&mut self, error: WireError) {
        end(&self.state, || {
            SubscriptionState::Error(Error::rejected("Subscribe".to_owned(), error))
        });
    }

    fn is_active(&self) -> bool {
        self.active
    }
}

/// Applies the row changes since the last publish to a `MutableVec` that holds the rows as
/// last published.
fn replay<X>(vec: &MutableVec<Arc<X>>, edits: Vec<Edit<X>>) {
    let mut lock = vec.lock_mut();
    for edit in edits {
        match edit {
            Edit::Set(index, row) => lock.set_cloned(index, row),
            Edit::Insert(index, row) => lock.insert_cloned(index, row),
            Edit::Remove(index) => drop(lock.remove(index)),
            Edit::Move(from, to) => lock.move_from_to(from, to),
        }
    }
}

/// Brings a `MutableVec` from its current rows to `rows` with keyed diffs: removals, moves,
/// inserts, and replacements of rows whose snapshot changed. Used after a whole window
/// arrived; row changes are replayed instead (see [`replay`]).
fn apply_diff<X: RowType>(vec: &MutableVec<Arc<X>>, rows: &Vector<Arc<X>>) {
    let mut lock = vec.lock_mut();
    let wanted: std::collections::HashSet<X::Key> = rows.iter().map(|r| r.key()).collect();
    for index in (0..lock.len()).rev() {
        if !wanted.contains(&lock[index].key()) {
            lock.remove(index);
        }
    }
    for (index, row) in rows.iter().enumerate() {
        let key = row.key();
        if index < lock.len() && lock[index].key() == key {
            if !Arc::ptr_eq(&lock[index], row) {
                lock.set_cloned(index, row.clone());
            }
            continue;
        }
        match (index + 1..lock.len()).find(|&j| lock[j].key() == key) {
            Some(from) => {
                lock.move_from_to(from, index);
                if !Arc::ptr_eq(&lock[index], row) {
                    lock.set_cloned(index, row.clone());
                }
            }
            None => lock.insert_cloned(index, row.clone()),
        }
    }
    let len = rows.len();
    while lock.len() > len {
        lock.pop();
    }
}

/// A live subscription to one snapshot value `T`.
///
/// It ends on [`Subscription::unsubscribe`] and when dropped.
#[must_use = "a subscription ends when dropped"]
pub struct Subscription<T, X = ()> {
    core: Arc<SubCore<T, X>>,
    _row: PhantomData<fn() -> X>,
}

impl<T, X> std::fmt::Debug for Subscription<T, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.core.id)
            .finish_non_exhaustive()
    }
}

impl<T, X> Subscription<T, X> {
    pub(crate) fn new(core: Arc<SubCore<T, X>>) -> Self {
        Self {
            core,
            _row: PhantomData,
        }
    }
}

impl<T: Clone + Send + Sync + 'static, X: Send + Sync + 'static> Subscription<T, X> {
    /// The current state.
    pub fn state(&self) -> SubscriptionState<T> {
        self.core.state.borrow().clone()
    }

    /// The latest snapshot, or `None` unless active.
    pub fn latest(&self) -> Option<T> {
        self.core.state.borrow().snapshot().cloned()
    }

    /// The state as a futures-signals signal. Like every plain signal it is lossy: a slow
    /// reader sees the latest state, not every one.
    pub fn signal(&self) -> impl Signal<Item = SubscriptionState<T>> + Send + 'static + use<T, X> {
        signal(&self.core.state)
    }

    /// Every new snapshot as a stream (lossy like [`Self::signal`]); ends when the
    /// subscription does.
    pub fn stream(&self) -> impl Stream<Item = T> + Send + 'static + use<T, X> {
        self.signal()
            .to_stream()
            .take_while(|state| std::future::ready(!state.is_terminal()))
            .filter_map(|state| std::future::ready(state.snapshot().cloned()))
    }

    /// Waits for the first snapshot; if the subscription has an `on_snapshot` callback, also
    /// until the callback has run with it (on any runtime, a multi-threaded one included).
    ///
    /// # Errors
    ///
    /// The subscription's error, or [`Error::Ended`] if it was unsubscribed first.
    pub async fn connected(&self) -> Result<T, Error> {
        let state = self
            .signal()
            .wait_for_first(|s| !matches!(s, SubscriptionState::Pending))
            .await;
        match state {
            Some(SubscriptionState::Active { snapshot, .. }) => {
                // The callback was handed over with the state it was published with, so it
                // runs: the sender lives as long as this handle.
                let _ = self
                    .core
                    .called
                    .subscribe()
                    .wait_for(|called| *called)
                    .await;
                Ok(snapshot)
            }
            Some(SubscriptionState::Error(error)) => Err(error),
            _ => Err(Error::ended("Subscribe")),
        }
    }

    /// Waits until the subscription ends; returns its final state (unsubscribed or error).
    pub async fn terminated(&self) -> SubscriptionState<T> {
        self.signal()
            .wait_for_first(SubscriptionState::is_terminal)
            .await
            .unwrap_or(SubscriptionState::Unsubscribed)
    }

    /// Ends the subscription. Does nothing if it already ended.
    pub fn unsubscribe(&self) {
        self.core.unsubscribe();
    }
}

/// Waits for the first signal value matching `predicate`.
trait WaitFor<T> {
    async fn wait_for_first(self, predicate: impl Fn(&T) -> bool) -> Option<T>;
}

impl<T, S: Signal<Item = T> + Unpin> WaitFor<T> for S {
    async fn wait_for_first(self, predicate: impl Fn(&T) -> bool) -> Option<T> {
        let mut stream = self.to_stream();
        while let Some(value) = stream.next().await {
            if predicate(&value) {
                return Some(value);
            }
        }
        None
    }
}

/// A live window of rows `X` (conversations, messages or participants) whose snapshot is `T`.
///
/// Derefs to [`Subscription`] for the state, signals and lifecycle.
#[must_use = "a subscription ends when dropped"]
pub struct ListSubscription<T, X> {
    inner: Subscription<T, X>,
}

impl<T, X> std::fmt::Debug for ListSubscription<T, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T, X> AsRef<Subscription<T, X>> for Subscription<T, X> {
    fn as_ref(&self) -> &Subscription<T, X> {
        self
    }
}

impl<T, X> AsRef<Subscription<T, X>> for ListSubscription<T, X> {
    fn as_ref(&self) -> &Subscription<T, X> {
        &self.inner
    }
}

impl<T, X> std::ops::Deref for ListSubscription<T, X> {
    type Target = Subscription<T, X>;
    fn deref(&self) -> &Subscription<T, X> {
        &self.inner
    }
}

impl<T, X> ListSubscription<T, X> {
    pub(crate) fn new(core: Arc<SubCore<T, X>>) -> Self {
        Self {
            inner: Subscription::new(core),
        }
    }
}

impl<T: Clone + Send + Sync + 'static, X: Send + Sync + 'static> ListSubscription<T, X> {
    /// Whether the window holds everything (false while pending).
    pub fn loaded_all(&self) -> bool {
        matches!(
            self.state(),
            SubscriptionState::Active {
                loaded_all: true,
                ..
            }
        )
    }

    /// Grows the window by `count` older items (`None`: the kind's default) and resolves once
    /// the bigger window is the latest snapshot.
    ///
    /// Bounds: conversations 1..=30 (default 20), messages 1..=100 (default 30), participants
    /// 1..=50 (default 10). Concurrent calls load one page: a call made while another one's
    /// load was not complete yet waits for it and returns without loading more. (Whether calls
    /// are concurrent is decided when they are made, not when their futures are first polled,
    /// so `join!(a.load_more(n), a.load_more(n))` always loads one page.)
    ///
    /// # Errors
    ///
    /// [`Error::OutOfRange`] for a count outside the bounds (nothing is sent),
    /// [`Error::Ended`] if the subscription ended.
    pub fn load_more(
        &self,
        count: Option<u32>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static + use<T, X> {
        let core = self.inner.core.clone();
        // Read at the call, so that a call made before another completes counts as concurrent.
        let seen = core.loads.load(Ordering::Acquire);
        async move {
            let paging = core.paging;
            let count = count.unwrap_or(paging.default as u32);
            let action = format!("Load more of subscription {}", core.id);
            if count == 0 || count as usize > paging.max {
                return Err(Error::OutOfRange {
                    action,
                    count,
                    max: paging.max as u32,
                });
            }
            if core.ended.load(Ordering::Acquire) {
                return Err(Error::ended(action));
            }
            let _guard = core.load_lock.lock().await;
            if core.loads.load(Ordering::Acquire) != seen {
                return Ok(());
            }
            let request = Request::LoadMore {
                sub: core.id,
                count,
            };
            core.session.request(request).await?;
            core.loads.fetch_add(1, Ordering::AcqRel);
            Ok(())
        }
    }

    /// The rows of the latest snapshot, flat: empty while pending, after the end, and while
    /// the window does not exist (a message or participant window of a conversation you are
    /// not in, whose snapshot is `None`). Use the snapshot itself to tell an empty window
    /// from a missing one.
    ///
    /// # Performance
    ///
    /// O(1): the rows are a persistent vector shared with the snapshot.
    pub fn rows(&self) -> Vector<Arc<X>> {
        let active = matches!(
            *self.inner.core.state.borrow(),
            SubscriptionState::Active { .. }
        );
        if !active {
            return Vector::new();
        }
        lock(&self.inner.core.diffs.published).clone()
    }

    /// The rows as keyed diffs (futures-signals `SignalVec`, lossless and ordered): a row whose
    /// snapshot changed is replaced in place, new rows are inserted where they belong.
    pub fn signal_vec(&self) -> impl SignalVec<Item = Arc<X>> + Send + 'static + use<T, X> {
        let diffs = &self.inner.core.diffs;
        let mut vec = lock(&diffs.vec);
        let vec = vec.get_or_insert_with(|| {
            MutableVec::new_with_values(lock(&diffs.published).iter().cloned().collect())
        });
        vec.signal_vec_cloned()
    }
}

/// A subscription to one user: `None` while the user does not exist.
pub type UserSubscription = Subscription<Option<Arc<UserSnapshot>>, UserSnapshot>;
/// A subscription to one conversation: `None` unless the current user participates.
pub type ConversationSubscription =
    Subscription<Option<Arc<ConversationSnapshot>>, ConversationSnapshot>;
/// A subscription to one participant: `None` unless both you and they participate.
pub type ParticipantSubscription =
    Subscription<Option<Arc<ParticipantSnapshot>>, ParticipantSnapshot>;
/// The current user's conversations, most recently active first.
pub type ConversationListSubscription =
    ListSubscription<Vector<Arc<ConversationSnapshot>>, ConversationSnapshot>;
/// A conversation's messages, newest first; `None` unless the current user participates.
pub type MessageListSubscription =
    ListSubscription<Option<Vector<Arc<MessageSnapshot>>>, MessageSnapshot>;
/// A conversation's participants, most recently joined first; `None` unless the current user
/// participates.
pub type ParticipantListSubscription =
    ListSubscription<Option<Vector<Arc<ParticipantSnapshot>>>, ParticipantSnapshot>;

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        sync::atomic::AtomicU32,
        task::{Context, Poll},
    };

    use super::*;

    struct Wakes(AtomicU32);

    impl futures_util::task::ArcWake for Wakes {
        fn wake_by_ref(wakes: &Arc<Self>) {
            wakes.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Rounds in which a signal answered `Pending` and the change that followed never woke
    /// it: `set(i)` runs on another thread a few hundred spins after round `i` starts, while
    /// this thread polls a fresh `signal()` until it shows `i`.
    fn lost_wakes<S: Signal<Item = u32> + Unpin>(
        rounds: u32,
        set: impl Fn(u32) + Send + 'static,
        signal: impl Fn() -> S,
    ) -> u32 {
        let go = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicU32::new(0));
        let setter = {
            let (go, done) = (go.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 1..=rounds {
                    while go.load(Ordering::Acquire) != i {
                        std::hint::spin_loop();
                    }
                    for _ in 0..i.wrapping_mul(2_654_435_761) % 200 {
                        std::hint::spin_loop();
                    }
                    set(i);
                    done.store(i, Ordering::Release);
                }
            })
        };
        let wakes = Arc::new(Wakes(AtomicU32::new(0)));
        let waker = futures_util::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut lost = 0;
        for i in 1..=rounds {
            let mut signal = signal();
            let _ = Pin::new(&mut signal).poll_change(&mut cx);
            go.store(i, Ordering::Release);
            loop {
                let before = wakes.0.load(Ordering::SeqCst);
                match Pin::new(&mut signal).poll_change(&mut cx) {
                    Poll::Ready(Some(value)) if value == i => break,
                    Poll::Ready(_) => continue,
                    Poll::Pending => {}
                }
                // Wait for a wake-up, or for the setter to be done without one.
                while wakes.0.load(Ordering::SeqCst) == before && done.load(Ordering::Acquire) != i
                {
                    std::hint::spin_loop();
                }
                if wakes.0.load(Ordering::SeqCst) == before {
                    lost += 1;
                    break;
                }
            }
        }
        setter.join().unwrap();
        lost
    }

    /// The store sets a state on the transport's thread while the app polls its signal on
    /// another: every change after a `Pending` poll wakes the poller (the hang a
    /// futures-signals `Mutable` has here, about once in 20,000 rounds).
    #[test]
    fn changes_from_another_thread_always_wake_the_signal() {
        let state: State<u32> = watch::Sender::new(SubscriptionState::Pending);
        let setter = state.clone();
        let set = move |i| {
            setter.send_replace(SubscriptionState::Active {
                snapshot: i,
                loaded_all: true,
            });
        };
        let lost = lost_wakes(200_000, set, || {
            signal(&state).map(|s| s.snapshot().copied().unwrap_or(0))
        });
        assert_eq!(lost, 0);
    }
}
