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

use super::{
    SessionInner, lock,
    shared::{Diffs, Handle, Load, Membership},
};
use crate::{
    Error,
    model::{
        ConversationId, ConversationSnapshot, MessageId, MessageSnapshot, ParticipantSnapshot,
        SingleReactionSnapshot, UserId, UserSnapshot,
    },
    protocol::{Paging, Request},
    store::Node,
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
row_type!(SingleReactionSnapshot, Reaction, UserId, |r| r
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
    StateSignal {
        rx: state.subscribe(),
        first: true,
        wait: None,
        forward: None,
    }
}

/// A watch receiver as a signal. It waits (a boxed `changed()`, registered with the channel)
/// only from the first poll that finds nothing new, so a signal polled once per change never
/// allocates or registers; while it waits, a poll that finds nothing new costs two atomic
/// loads (the wait is polled again only once it woke the task).
struct StateSignal<T> {
    rx: watch::Receiver<SubscriptionState<T>>,
    /// Whether the current state is still to be yielded (the first poll yields it).
    first: bool,
    /// Resolves on the next change after what `rx` has seen (or when the channel closes).
    wait: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The waker `wait` was last polled with: while it has not fired, polling `wait` again
    /// would only find it pending.
    forward: Option<Arc<Forward>>,
}

/// Wakes a task and notes that it did.
struct Forward {
    fired: AtomicBool,
    waker: std::task::Waker,
}

impl futures_util::task::ArcWake for Forward {
    fn wake_by_ref(forward: &Arc<Self>) {
        forward.fired.store(true, Ordering::Release);
        forward.waker.wake_by_ref();
    }
}

impl<T: Clone + Send + Sync + 'static> Signal for StateSignal<T> {
    type Item = SubscriptionState<T>;

    fn poll_change(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            let changed = match this.rx.has_changed() {
                Ok(changed) => changed,
                // Closed: a last state not seen yet still comes first.
                Err(_) => {
                    let last = this.rx.borrow_and_update();
                    let unseen = std::mem::take(&mut this.first) || last.has_changed();
                    return Poll::Ready(unseen.then(|| last.clone()));
                }
            };
            if std::mem::take(&mut this.first) || changed {
                this.wait = None;
                this.forward = None;
                return Poll::Ready(Some(this.rx.borrow_and_update().clone()));
            }
            if let (Some(_), Some(forward)) = (&this.wait, &this.forward)
                && !forward.fired.load(Ordering::Acquire)
                && forward.waker.will_wake(cx.waker())
            {
                // Waiting with this task's waker, and not woken since: nothing to poll.
                return Poll::Pending;
            }
            let wait = this.wait.get_or_insert_with(|| {
                let mut rx = this.rx.clone();
                Box::pin(async move {
                    let _ = rx.changed().await;
                })
            });
            let forward = Arc::new(Forward {
                fired: AtomicBool::new(false),
                waker: cx.waker().clone(),
            });
            let waker = futures_util::task::waker(forward.clone());
            match wait
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
            {
                Poll::Ready(()) => {
                    this.wait = None;
                    this.forward = None;
                }
                Poll::Pending => {
                    this.forward = Some(forward);
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Ends a state with `last`, unless it ended already.
pub(super) fn end<T>(state: &State<T>, last: impl FnOnce() -> SubscriptionState<T>) {
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
    /// The subscription it shares with identical handles of the session (another one after
    /// a `load_more` took it to a subscription of its own).
    shared: Mutex<Arc<dyn Membership>>,
    /// This handle's id among them.
    id: u64,
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

impl<T: Clone + Send + Sync + 'static, X: RowType> SubCore<T, X> {
    pub(crate) fn new(
        session: Arc<SessionInner>,
        shared: Arc<dyn Membership>,
        id: u64,
        paging: Paging,
    ) -> Self {
        Self {
            session,
            shared: Mutex::new(shared),
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

    /// What the shared subscription feeds this handle with.
    pub(crate) fn handle(&self, on_snapshot: Option<OnSnapshot<T>>) -> Handle<T, X> {
        if on_snapshot.is_some() {
            self.called.send_replace(false);
        }
        let diffs = (self.paging.max > 1).then(|| self.diffs.clone());
        Handle::new(
            self.id,
            self.state.clone(),
            diffs,
            on_snapshot,
            self.called.clone(),
        )
    }
}

impl<T, X> SubCore<T, X> {
    fn shared(&self) -> Arc<dyn Membership> {
        lock(&self.shared).clone()
    }

    /// Ends the handle; returns the subscription it must leave, unless it ended already.
    /// Under the lock of `shared`, so that a `load_more` that moves it meanwhile sees it.
    fn end_handle(&self) -> Option<Arc<dyn Membership>> {
        let shared = lock(&self.shared);
        (!self.ended.swap(true, Ordering::AcqRel)).then(|| shared.clone())
    }

    fn unsubscribe(&self) {
        if let Some(shared) = self.end_handle() {
            end(&self.state, || SubscriptionState::Unsubscribed);
            self.session.leave(&*shared, self.id);
        }
    }
}

impl<T, X> Drop for SubCore<T, X> {
    fn drop(&mut self) {
        if let Some(shared) = self.end_handle() {
            self.session.leave(&*shared, self.id);
        }
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
            .field("id", &self.core.shared().sub())
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
    /// A handle that shares its window with identical subscriptions of the session moves to a
    /// window of its own: the shared rows and `count` more, in one round trip (the window it
    /// shows until then is the shared one). The other handles keep their window.
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
            let action = format!("Load more of subscription {}", core.shared().sub());
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
            let mut state = core.state.subscribe();
            match core.shared().load(core.id, count, &core.session) {
                Load::Grow(sub) => {
                    core.session
                        .request(Request::LoadMore { sub, count })
                        .await?;
                }
                Load::Split(own) => {
                    let ended = {
                        let mut shared = lock(&core.shared);
                        *shared = own.clone();
                        core.ended.load(Ordering::Acquire)
                    };
                    if ended {
                        // Unsubscribed meanwhile, from the subscription it was in.
                        core.session.leave(&*own, core.id);
                        return Err(Error::ended(action));
                    }
                    // Its own subscription's first window is its next state.
                    let _ = state.changed().await;
                    match &*state.borrow() {
                        SubscriptionState::Error(error) => return Err(error.clone()),
                        SubscriptionState::Unsubscribed => return Err(Error::ended(action)),
                        _ => {}
                    }
                }
            }
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
/// The users who reacted to a message with one emoji, oldest first; `None` unless the message
/// exists and the current user participates.
pub type ReactionListSubscription =
    ListSubscription<Option<Vector<Arc<SingleReactionSnapshot>>>, SingleReactionSnapshot>;

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
                // Executors poll without a wake-up too (the poll that answers from what it
                // registered before).
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
