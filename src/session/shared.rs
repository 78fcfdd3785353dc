//! One store subscription shared by the identical subscription handles of a session.
//!
//! As TalkJS keeps one store per subscribed path, a session keeps one subscription per window:
//! a new handle of the same target (kind, ids and filter) joins a live subscription whose
//! window is the one a subscription of its own would start with, so the engine sends its
//! records once, the store tracks them once, and one snapshot is built per change however many
//! handles show it.
//!
//! **How a shared window grows.** Handles of one shared subscription always show the same
//! window. `load_more` on a handle that shares its window takes that handle to a subscription
//! of its own, which starts with the shared window and the rows it asked for (one round trip,
//! as a subscribe); the other handles keep their window. Alone, a handle grows its window in
//! place. A window that grew, or that no longer equals a first page (rows left it, new rows
//! arrived), is not joined: a new handle then starts a subscription of its own.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use futures_signals::signal_vec::MutableVec;
use imbl::Vector;
use tokio::sync::watch;

use super::{
    SessionInner, lock,
    subscription::{OnSnapshot, RowType, State, SubscriptionState, end},
};
use crate::{
    Error,
    protocol::{Restore, SubId, Target, WireError},
    store::{Callback, Node, Output},
};

/// The rows a list handle last published, and its keyed diffs once requested.
pub(crate) struct Diffs<X> {
    pub(super) published: Mutex<Vector<Arc<X>>>,
    pub(super) vec: Mutex<Option<MutableVec<Arc<X>>>>,
}

impl<X> Default for Diffs<X> {
    fn default() -> Self {
        Self {
            published: Mutex::default(),
            vec: Mutex::default(),
        }
    }
}

/// What one subscription handle is fed with.
pub(crate) struct Handle<T, X> {
    id: u64,
    state: State<T>,
    /// Only lists track diffs.
    diffs: Option<Arc<Diffs<X>>>,
    on_snapshot: Option<Arc<OnSnapshot<T>>>,
    /// Set once the first callback ran (see `SubCore::called`).
    called: watch::Sender<bool>,
    /// The number of the newest snapshot its callback ran with: callbacks run after the
    /// store is unlocked, a joining handle's on the app's thread, and an older snapshot must
    /// not reach the callback after a newer one.
    ran: Arc<AtomicU64>,
}

impl<T: Clone + Send + Sync + 'static, X: RowType> Handle<T, X> {
    pub(crate) fn new(
        id: u64,
        state: State<T>,
        diffs: Option<Arc<Diffs<X>>>,
        on_snapshot: Option<OnSnapshot<T>>,
        called: watch::Sender<bool>,
    ) -> Self {
        Self {
            id,
            state,
            diffs,
            on_snapshot: on_snapshot.map(Arc::new),
            called,
            ran: Arc::default(),
        }
    }

    /// Publishes `snapshot`, made of `rows`; `edits` take the rows as last published to it
    /// there (`None`: compare). Returns the app's callback, to run once the store is unlocked.
    fn publish(
        &self,
        snapshot: &T,
        rows: &Option<Vector<Arc<X>>>,
        loaded_all: bool,
        edits: Option<&[Edit<X>]>,
        seq: u64,
    ) -> Option<Callback> {
        let published = self.state.send_if_modified(|state| {
            if state.is_terminal() {
                return false;
            }
            // The rows first (the state's lock is held): whoever sees the new state and asks
            // for `signal_vec` then starts from these rows.
            if let Some(diffs) = &self.diffs {
                let rows = rows.clone().unwrap_or_default();
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
        let (called, ran, snapshot) = (self.called.clone(), self.ran.clone(), snapshot.clone());
        Some(Box::new(move || {
            if ran.fetch_max(seq, Ordering::AcqRel) < seq {
                callback(&snapshot, loaded_all);
            }
            called.send_if_modified(|called| !std::mem::replace(called, true));
        }))
    }
}

/// One change to a list's rows.
enum Edit<X> {
    Set(usize, Arc<X>),
    Insert(usize, Arc<X>),
    Remove(usize),
    Move(usize, usize),
}

struct Window<T, X> {
    /// The rows (`None`: the root is missing).
    rows: Option<Vector<Arc<X>>>,
    view: fn(Option<&Vector<Arc<X>>>) -> T,
    /// Whether it is a window of many rows (then its handles keep diffs).
    list: bool,
    loaded_all: bool,
    active: bool,
    failed: bool,
    /// Whether it ends where the engine's bound is: its oldest row never left or moved.
    tight: bool,
    /// Whether it was asked to grow (it is then more than a first page).
    grown: bool,
    /// The row changes since the last publish; `None` after a reset (then compare).
    edits: Option<Vec<Edit<X>>>,
    /// Numbers the snapshots, for [`Handle::ran`].
    seq: u64,
    handles: Vec<Handle<T, X>>,
}

impl<T, X> Window<T, X> {
    fn len(&self) -> usize {
        self.rows.as_ref().map_or(0, Vector::len)
    }

    fn edit(&mut self, edit: impl FnOnce() -> Edit<X>) {
        if let (true, Some(edits)) = (self.list, &mut self.edits) {
            edits.push(edit());
        }
    }
}

/// One shared subscription: the store's output for it, and the handles it feeds.
pub(crate) struct Shared<T, X> {
    sub: SubId,
    /// The session's registry key of the target.
    key: String,
    target: Target,
    window: Mutex<Window<T, X>>,
}

impl<T: Clone + Send + Sync + 'static, X: RowType> Shared<T, X> {
    /// A shared subscription without handles; `list`: whether it is a window of many rows.
    pub(crate) fn new(
        sub: SubId,
        key: String,
        target: Target,
        view: fn(Option<&Vector<Arc<X>>>) -> T,
        list: bool,
    ) -> Self {
        Self {
            sub,
            key,
            target,
            window: Mutex::new(Window {
                rows: None,
                view,
                list,
                loaded_all: false,
                active: false,
                failed: false,
                tight: false,
                grown: false,
                edits: Some(Vec::new()),
                seq: 0,
                handles: Vec::new(),
            }),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The store's output: it feeds every handle.
    pub(crate) fn output(self: &Arc<Self>) -> Box<dyn Output> {
        Box::new(SharedOutput(self.clone()))
    }

    /// Whether a new handle that starts with a first page of `first` rows can join: the
    /// subscription is live and its window is still the one a new subscription would start
    /// with (pending; everything, in at most a first page; or exactly a first page that ends
    /// at the engine's bound). Call with the store locked.
    pub(crate) fn joinable(&self, first: usize) -> bool {
        let w = lock(&self.window);
        let total = w.len();
        !w.failed
            && !w.grown
            && (!w.active || (w.loaded_all && total <= first) || (w.tight && total == first))
    }

    /// Adds a handle. It starts pending if the window has not arrived yet, and otherwise with
    /// the current snapshot at once: returns its callback, to run once the store is unlocked.
    /// Call with the store locked, so that it joins between frames.
    pub(crate) fn join(&self, handle: Handle<T, X>) -> Option<Callback> {
        let mut w = lock(&self.window);
        let callback = w.active.then(|| {
            w.seq += 1;
            let snapshot = (w.view)(w.rows.as_ref());
            handle.publish(&snapshot, &w.rows, w.loaded_all, None, w.seq)
        });
        w.handles.push(handle);
        callback.flatten()
    }
}

/// What a handle's `load_more` does, from [`Membership::load`].
pub(crate) enum Load {
    /// The handle is alone: grow this subscription's window in place.
    Grow(SubId),
    /// The handle moved to a subscription of its own (subscribing now): wait for its window.
    Split(Arc<dyn Membership>),
}

/// What a handle asks of its shared subscription (a trait object, so that handles need not
/// know the row type).
pub(crate) trait Membership: Send + Sync {
    /// The store's and the engine's subscription id.
    fn sub(&self) -> SubId;
    /// The session's registry key of the target.
    fn key(&self) -> &str;
    /// Removes a handle; returns how many are left.
    fn leave(&self, handle: u64) -> usize;
    /// Starts a handle's `load_more` of `count` rows (see the module docs).
    fn load(&self, handle: u64, count: u32, session: &Arc<SessionInner>) -> Load;
}

impl<T: Clone + Send + Sync + 'static, X: RowType> Membership for Shared<T, X> {
    fn sub(&self) -> SubId {
        self.sub
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn leave(&self, handle: u64) -> usize {
        let mut w = lock(&self.window);
        w.handles.retain(|h| h.id != handle);
        w.handles.len()
    }

    fn load(&self, handle: u64, count: u32, session: &Arc<SessionInner>) -> Load {
        let mut w = lock(&self.window);
        let at = w.handles.iter().position(|h| h.id == handle);
        let (Some(at), true) = (at, w.handles.len() > 1) else {
            w.grown = true;
            return Load::Grow(self.sub);
        };
        let moved = w.handles.swap_remove(at);
        // The window holds the first rows of the list (every row above its bound; a first
        // page while it is pending), so these are the rows a `load_more` of its own would give.
        let held = if w.active {
            w.len()
        } else {
            self.target.paging().first
        };
        let len = u32::try_from(held)
            .unwrap_or(u32::MAX)
            .saturating_add(count);
        let (view, list) = (w.view, w.list);
        drop(w);
        let sub = session.next_id();
        let own = Arc::new(Self::new(
            sub,
            self.key.clone(),
            self.target.clone(),
            view,
            list,
        ));
        {
            let mut own_window = lock(&own.window);
            own_window.grown = true;
            own_window.handles.push(moved);
        }
        let restore = Restore {
            len,
            exact: true,
            ..Restore::default()
        };
        session.start(sub, own.output(), self.target.clone(), Some(restore));
        Load::Split(own)
    }
}

/// The store's output of a [`Shared`] subscription.
struct SharedOutput<T, X>(Arc<Shared<T, X>>);

impl<T, X> SharedOutput<T, X> {
    fn with<R>(&self, f: impl FnOnce(&mut Window<T, X>) -> R) -> R {
        f(&mut lock(&self.0.window))
    }
}

impl<T: Clone + Send + Sync + 'static, X: RowType> Output for SharedOutput<T, X> {
    fn reset(&mut self, rows: Option<Vec<Node>>) -> bool {
        self.with(|w| {
            let rows: Option<Vector<Arc<X>>> =
                rows.map(|rows| rows.into_iter().filter_map(X::from_node).collect());
            let same = match (&w.rows, &rows) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| Arc::ptr_eq(x, y))
                }
                _ => false,
            };
            // Only a first window is known to end at the bound (a first page).
            w.tight = !w.active;
            w.rows = rows;
            if !same {
                w.edits = None;
            }
            !same || !w.active
        })
    }

    fn set(&mut self, index: usize, row: Node) -> bool {
        self.with(|w| {
            let (Some(rows), Some(row)) = (&mut w.rows, X::from_node(row)) else {
                return false;
            };
            match rows.get(index) {
                Some(old) if !Arc::ptr_eq(old, &row) => {
                    rows.set(index, row.clone());
                    w.edit(|| Edit::Set(index, row));
                    true
                }
                _ => false,
            }
        })
    }

    fn insert(&mut self, index: usize, row: Node) -> bool {
        self.with(|w| {
            let (Some(rows), Some(row)) = (&mut w.rows, X::from_node(row)) else {
                return false;
            };
            if index > rows.len() {
                return false;
            }
            rows.insert(index, row.clone());
            w.edit(|| Edit::Insert(index, row));
            true
        })
    }

    fn remove(&mut self, index: usize) {
        self.with(|w| {
            if let Some(rows) = &mut w.rows
                && index < rows.len()
            {
                w.tight &= index + 1 < rows.len();
                rows.remove(index);
                w.edit(|| Edit::Remove(index));
            }
        });
    }

    fn move_row(&mut self, from: usize, to: usize) {
        self.with(|w| {
            if let Some(rows) = &mut w.rows
                && from < rows.len()
                && to < rows.len()
            {
                w.tight &= from + 1 < rows.len();
                let row = rows.remove(from);
                rows.insert(to, row);
                w.edit(|| Edit::Move(from, to));
            }
        });
    }

    fn publish(&mut self, loaded_all: bool) -> Option<Callback> {
        self.with(|w| {
            w.active = true;
            w.loaded_all = loaded_all;
            w.seq += 1;
            let snapshot = (w.view)(w.rows.as_ref());
            let edits = w.edits.replace(Vec::new());
            let mut callbacks: Vec<Callback> = w
                .handles
                .iter()
                .filter_map(|h| h.publish(&snapshot, &w.rows, loaded_all, edits.as_deref(), w.seq))
                .collect();
            match callbacks.len() {
                0 | 1 => callbacks.pop(),
                _ => Some(Box::new(move || crate::store::run(callbacks)) as Callback),
            }
        })
    }

    fn fail(&mut self, error: WireError) {
        self.with(|w| {
            w.failed = true;
            for handle in &w.handles {
                end(&handle.state, || {
                    SubscriptionState::Error(Error::rejected("Subscribe".to_owned(), error.clone()))
                });
            }
        });
    }

    fn is_active(&self) -> bool {
        self.with(|w| w.active)
    }
}

/// Applies the row changes since the last publish to a `MutableVec` that holds the rows as
/// last published.
fn replay<X>(vec: &MutableVec<Arc<X>>, edits: &[Edit<X>]) {
    let mut lock = vec.lock_mut();
    for edit in edits {
        match edit {
            Edit::Set(index, row) => lock.set_cloned(*index, row.clone()),
            Edit::Insert(index, row) => lock.insert_cloned(*index, row.clone()),
            Edit::Remove(index) => drop(lock.remove(*index)),
            Edit::Move(from, to) => lock.move_from_to(*from, *to),
        }
    }
}

/// Brings a `MutableVec` from its current rows to `rows` with keyed diffs: removals, moves,
/// inserts, and replacements of rows whose snapshot changed. Used after a whole window
/// arrived; row changes are replayed otherwise (see [`replay`]).
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
