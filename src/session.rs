//! `TalkSession`: the entry point of the Data API.

mod refs;
mod shared;
mod subscription;

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, Mutex, MutexGuard, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::oneshot;

pub use self::{
    refs::{ConversationRef, MessageRef, ParticipantRef, ReactionsRef, UserRef},
    subscription::{
        ConversationListSubscription, ConversationSubscription, ListSubscription,
        MessageListSubscription, OnSnapshot, ParticipantListSubscription, ParticipantSubscription,
        ReactionListSubscription, Subscription, SubscriptionState, UserSubscription,
    },
};
#[cfg(feature = "bench-internals")]
pub(crate) use self::{
    shared::Handle,
    subscription::{State, signal},
};
use self::{shared::Membership, subscription::SubCore};
pub(crate) use self::{shared::Shared, subscription::RowType};
use crate::{
    Error,
    engine::Engine,
    model::{ConversationFilter, ConversationId, ConversationSnapshot, UserId},
    protocol::{
        ClientFrame, ErrorCode, Position, Record, Request, Response, Restore, ServerFrame, SubId,
        Target, Update, WireError,
    },
    store::{self, Bundle, Node, Store, StoreStats},
    transport::{Embedded, jitter},
};

/// Options of [`get_talk_session`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionOptions {
    /// The app's id. Required, non-empty.
    pub app_id: String,
    /// The user the session acts as. Required, non-empty.
    pub user_id: String,
    /// The engine to use. The default is a process-wide in-memory engine per app id, shared
    /// by every session of that app that does not name another engine.
    pub engine: Option<Engine>,
    /// The base websocket URL of a `talkstore-server` (for example `ws://127.0.0.1:8080`),
    /// instead of an engine. Requires the `websocket` feature.
    pub url: Option<String>,
    /// A user token (deprecated in TalkJS in favour of [`TalkSession::set_token`]).
    pub token: Option<String>,
}

impl SessionOptions {
    /// Options for `user_id` in `app_id`, on the default embedded engine.
    pub fn new(app_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            user_id: user_id.into(),
            engine: None,
            url: None,
            token: None,
        }
    }

    /// Connects to a `talkstore-server` at this base websocket URL (for example
    /// `ws://127.0.0.1:8080`) instead of an engine in this process.
    #[cfg(feature = "websocket")]
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Uses this engine instead of the app's default one.
    #[must_use]
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Sets the initial token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

type Key = (String, UserId);

static SESSIONS: LazyLock<Mutex<HashMap<Key, Weak<SessionInner>>>> =
    LazyLock::new(Default::default);
static DEFAULT_ENGINES: LazyLock<Mutex<HashMap<String, Engine>>> = LazyLock::new(Default::default);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns the session for `(app_id, user_id)`, creating it if needed.
///
/// The same pair gives the same session (`==`) for as long as any handle to it lives; the
/// options of later calls are then ignored. A new session replaces an existing one only after
/// that one ended with an error. Nothing connects until the first request or subscription.
///
/// # Errors
///
/// [`Error::InvalidOptions`] for an empty app id, [`Error::InvalidId`] for an empty user id,
/// and [`Error::NoRuntime`] if the background runtime cannot start.
///
/// # Runtimes
///
/// A session does not depend on the runtime it was created or used on: its connection (the
/// websocket, or the embedded engine's frame pump) and its retry timers run on one small
/// background Tokio runtime that the process starts on first use (two threads named
/// `talkstore-io`) and keeps for its lifetime. So a session keeps working when the runtime it
/// was first used on ends, and the same session can be awaited from several runtimes at
/// once (two `#[tokio::test]`s sharing an app and user, say), or from any other executor.
/// `on_snapshot` callbacks run on those background threads: keep them short.
pub fn get_talk_session(options: SessionOptions) -> Result<TalkSession, Error> {
    if options.app_id.is_empty() {
        return Err(Error::InvalidOptions("app_id must not be empty".into()));
    }
    let user_id = UserId::try_new(&options.user_id)?;
    let runtime = background()?;
    let key = (options.app_id.clone(), user_id.clone());
    let mut sessions = lock(&SESSIONS);
    if let Some(existing) = sessions.get(&key).and_then(Weak::upgrade)
        && lock(&existing.ended).is_none()
    {
        return Ok(TalkSession { inner: existing });
    }
    let backend = match (options.engine, options.url) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidOptions(
                "give an engine or a url, not both".into(),
            ));
        }
        (Some(engine), None) => Backend::Embedded(engine),
        (None, Some(url)) => Backend::Remote(realtime_url(&url, &options.app_id, &user_id)?),
        (None, None) => Backend::Embedded(
            lock(&DEFAULT_ENGINES)
                .entry(options.app_id.clone())
                .or_default()
                .clone(),
        ),
    };
    let inner = Arc::new(SessionInner {
        app_id: options.app_id,
        store: Store::new(user_id.clone()),
        user_id,
        backend,
        runtime,
        link: OnceLock::new(),
        calls: Mutex::new(Calls::default()),
        shared: Mutex::default(),
        position: Mutex::new(None),
        parts: Mutex::default(),
        next_id: AtomicU64::new(1),
        token: Mutex::new(options.token),
        on_need_token: Mutex::new(None),
        ended: Mutex::new(None),
        error_handlers: Mutex::new(Vec::new()),
    });
    sessions.retain(|_, weak| weak.strong_count() > 0);
    sessions.insert(key, Arc::downgrade(&inner));
    Ok(TalkSession { inner })
}

/// The websocket URL of a user's realtime connection.
#[cfg(feature = "websocket")]
fn realtime_url(base: &str, app: &str, user: &UserId) -> Result<String, Error> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    if !(base.starts_with("ws://") || base.starts_with("wss://")) {
        return Err(Error::InvalidOptions(format!(
            "url {base:?} must start with ws:// or wss://"
        )));
    }
    let base = base.trim_end_matches('/');
    let app = utf8_percent_encode(app, NON_ALPHANUMERIC);
    let user = utf8_percent_encode(user.as_str(), NON_ALPHANUMERIC);
    Ok(format!("{base}/v1/{app}/realtime/{user}"))
}

#[cfg(not(feature = "websocket"))]
fn realtime_url(_: &str, _: &str, _: &UserId) -> Result<String, Error> {
    Err(Error::InvalidOptions(
        "connecting to a url needs the `websocket` feature".into(),
    ))
}

/// Where a session's engine is.
enum Backend {
    Embedded(Engine),
    /// A server's realtime URL for this user.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    Remote(String),
}

/// A session's connection.
enum Link {
    Embedded(Embedded),
    #[cfg(feature = "websocket")]
    Websocket(crate::transport::Websocket),
}

impl Link {
    /// Runs `frame` under the connection's lock and sends what it returns: a call registered
    /// in there is either sent on the live connection or replayed by the next one, never both.
    fn send(&self, frame: impl FnOnce() -> Option<ClientFrame>) {
        match self {
            Link::Embedded(link) => link.send(frame),
            #[cfg(feature = "websocket")]
            Link::Websocket(link) => link.send(frame),
        }
    }
}

/// The runtime that carries every session's connection and retry timers: two threads,
/// started on first use and kept for the life of the process (see [`get_talk_session`]).
fn background() -> Result<&'static tokio::runtime::Handle, Error> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("talkstore-io")
                .enable_all()
                .build()
                .inspect_err(|error| tracing::error!(%error, "cannot start the background runtime"))
                .ok()
        })
        .as_ref()
        .map(tokio::runtime::Runtime::handle)
        .ok_or(Error::NoRuntime)
}

/// A call answered `RATE_LIMITED` is sent again after `RETRY_FIRST`, then half as long again
/// each time (jittered ±50%, at most `RETRY_MAX` apart). Requests give up after `RETRIES`
/// attempts and fail with the rejection; subscribes and unsubscribes never give up (a
/// subscription stays pending until the server takes it). Other rejections are never retried.
const RETRIES: u32 = 10;
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// The delay before attempt `attempt + 1`.
fn retry_delay(attempt: u32) -> std::time::Duration {
    let base = RETRY_FIRST.mul_f64(1.5_f64.powi(attempt.saturating_sub(1).min(30) as i32));
    jitter(base.min(RETRY_MAX))
}

/// What waits for a response. (`Authenticate` serves the websocket transport only.)
#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
enum Waiter {
    /// A request; kept so that it can be sent again.
    Caller(oneshot::Sender<Result<Response, WireError>>, Box<Request>),
    /// A new token on the live connection: refusal ends the session.
    Authenticate,
    /// A subscribe: on error the subscription fails.
    Subscribe(SubId),
    /// An unsubscribe: once the server confirms, the store releases the subscription's records.
    Release(SubId),
}

/// A call sent and not answered yet.
struct Pending {
    waiter: Waiter,
    /// How many times it was answered `RATE_LIMITED`.
    attempt: u32,
    /// Waiting for its retry timer, not on the wire. A replay sends it at once.
    delayed: bool,
}

impl Pending {
    fn new(waiter: Waiter) -> Self {
        Self {
            waiter,
            attempt: 0,
            delayed: false,
        }
    }
}

/// The calls of a session, under one lock so that a subscription and its pending subscribe
/// always change together.
#[derive(Default)]
struct Calls {
    /// By frame id (a subscribe's frame id is its subscription id).
    pending: HashMap<u64, Pending>,
    /// Live subscriptions, to subscribe again on a new connection, with the window they
    /// started with (used until the first one arrives).
    subs: HashMap<SubId, (Target, Option<Restore>)>,
}

/// A live shared subscription in the session's registry.
struct SharedEntry {
    sub: SubId,
    /// A `shared::Shared<T, X>` of the target's types.
    shared: Arc<dyn std::any::Any + Send + Sync>,
}

type Callback = Arc<dyn Fn() + Send + Sync>;
type ErrorHandler = (u64, Box<dyn FnOnce(Error) + Send>);

pub(crate) struct SessionInner {
    app_id: String,
    user_id: UserId,
    backend: Backend,
    runtime: &'static tokio::runtime::Handle,
    /// Connected lazily on first use.
    link: OnceLock<Link>,
    store: Store,
    calls: Mutex<Calls>,
    /// Live subscriptions by their target (as JSON), for identical ones to share.
    shared: Mutex<HashMap<String, SharedEntry>>,
    /// The log position of the last push applied: a new connection resumes from it.
    position: Mutex<Option<Position>>,
    /// The parts of a push split across frames, until its last part arrives (dropped with
    /// the connection: the next one resumes from `position`).
    parts: Mutex<Vec<Update>>,
    next_id: AtomicU64,
    token: Mutex<Option<String>>,
    on_need_token: Mutex<Option<Callback>>,
    ended: Mutex<Option<Error>>,
    error_handlers: Mutex<Vec<ErrorHandler>>,
}

impl SessionInner {
    /// The frame that (re)sends a pending call, if it is still wanted: a subscribe restores
    /// what the store holds of it (a fresh first page if nothing).
    fn frame(&self, calls: &Calls, id: u64) -> Option<ClientFrame> {
        let request = match &calls.pending.get(&id)?.waiter {
            Waiter::Caller(_, request) => (**request).clone(),
            Waiter::Authenticate => return None,
            Waiter::Subscribe(sub) => {
                let (target, started) = calls.subs.get(sub)?;
                Request::Subscribe {
                    sub: *sub,
                    target: target.clone(),
                    restore: self
                        .store
                        .restore(*sub, *lock(&self.position))
                        .or_else(|| started.clone()),
                }
            }
            Waiter::Release(sub) => Request::Unsubscribe { sub: *sub },
        };
        Some(ClientFrame { id, request })
    }

    /// Frames a fresh connection needs before anything else: every live subscription,
    /// resuming from the last push applied, then every unanswered request with its id, in id
    /// order. Unanswered unsubscribes are dropped and their records released (a new connection
    /// never knew the subscription), and so are token changes (it connected with the latest).
    /// Calls waiting out a retry delay go out at once: a new connection has a new budget.
    fn replay(&self) -> Vec<ClientFrame> {
        let mut calls = lock(&self.calls);
        let mut released = Vec::new();
        calls.pending.retain(|_, p| match p.waiter {
            Waiter::Release(sub) => {
                released.push(sub);
                false
            }
            Waiter::Authenticate | Waiter::Subscribe(_) => false,
            Waiter::Caller(..) => true,
        });
        let mut subs: Vec<SubId> = calls.subs.keys().copied().collect();
        subs.sort_unstable();
        let mut requests: Vec<u64> = calls.pending.keys().copied().collect();
        requests.sort_unstable();
        for p in calls.pending.values_mut() {
            p.delayed = false;
        }
        for sub in &subs {
            calls
                .pending
                .insert(*sub, Pending::new(Waiter::Subscribe(*sub)));
        }
        let frames = subs
            .into_iter()
            .chain(requests)
            .filter_map(|id| self.frame(&calls, id))
            .collect();
        drop(calls);
        for sub in released {
            self.store.release(sub);
        }
        frames
    }

    fn link(self: &Arc<Self>) -> &Link {
        self.link.get_or_init(|| match &self.backend {
            Backend::Embedded(engine) => Link::Embedded(Embedded::start(
                self.runtime,
                engine.clone(),
                self.user_id.clone(),
                Arc::downgrade(self),
            )),
            #[cfg(feature = "websocket")]
            Backend::Remote(url) => Link::Websocket(crate::transport::Websocket::start(
                self.runtime,
                Arc::downgrade(self),
                url.clone(),
            )),
            #[cfg(not(feature = "websocket"))]
            Backend::Remote(_) => unreachable!("remote sessions need the websocket feature"),
        })
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers what waits for the response (and, for a subscribe, the live subscription),
    /// then sends, both under the connection's lock.
    fn send(self: &Arc<Self>, id: u64, request: Request, waiter: Waiter) {
        self.link().send(|| {
            let mut calls = lock(&self.calls);
            if let Request::Subscribe {
                sub,
                target,
                restore,
            } = &request
            {
                calls.subs.insert(*sub, (target.clone(), restore.clone()));
            }
            calls.pending.insert(id, Pending::new(waiter));
            Some(ClientFrame { id, request })
        });
    }

    /// Sends a call again after its retry delay, unless it was answered, replayed or
    /// retried since (`attempt` tells).
    fn resend(self: &Arc<Self>, id: u64, attempt: u32) {
        self.link().send(|| {
            let mut calls = lock(&self.calls);
            let pending = calls.pending.get_mut(&id)?;
            if pending.attempt != attempt || !pending.delayed {
                return None;
            }
            pending.delayed = false;
            let frame = self.frame(&calls, id);
            if frame.is_none() {
                // A subscribe whose subscription ended meanwhile.
                calls.pending.remove(&id);
            }
            frame
        });
    }

    /// Sends a request and waits for its response (see [`RETRIES`] for rate limits).
    pub(crate) async fn request(self: &Arc<Self>, request: Request) -> Result<Response, Error> {
        let action = request.action();
        if lock(&self.ended).is_some() {
            return Err(self.ended_error(action));
        }
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter::Caller(tx, Box::new(request.clone()));
        self.send(self.next_id(), request, waiter);
        match rx.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(Error::rejected(action, error)),
            Err(_) => Err(self.ended_error(action)),
        }
    }

    /// Why `action` cannot run on an ended session: the refusal that ended it (a refused
    /// token answers `UNAUTHORIZED`), or [`Error::Ended`].
    fn ended_error(&self, action: String) -> Error {
        match &*lock(&self.ended) {
            Some(Error::Rejected { code, reasons, .. }) => Error::Rejected {
                action,
                code: *code,
                reasons: reasons.clone(),
            },
            _ => Error::ended(action),
        }
    }

    /// Sends a read and assembles the snapshot it returns.
    pub(crate) async fn get(self: &Arc<Self>, request: Request) -> Result<Option<Node>, Error> {
        match self.request(request).await? {
            Response::Found {
                root: Some(root),
                records,
            } => {
                let records = records
                    .into_iter()
                    .map(|r: Record| (r.key(), r.into()))
                    .collect();
                let bundle = Bundle {
                    me: &self.user_id,
                    records,
                };
                Ok(store::node(&bundle, &root, &mut Vec::new()))
            }
            _ => Ok(None),
        }
    }

    /// Starts a subscription handle. An identical live subscription of the session (same
    /// target) is joined, and the handle starts with its first page at once (see the `shared`
    /// module for how a shared window grows); otherwise a new one starts, pending until its
    /// first window arrives.
    pub(crate) fn subscribe<X: RowType, T: Clone + Send + Sync + 'static>(
        self: &Arc<Self>,
        target: Target,
        view: fn(Option<&imbl::Vector<Arc<X>>>) -> T,
        on_snapshot: Option<OnSnapshot<T>>,
    ) -> Arc<SubCore<T, X>> {
        let paging = target.paging();
        // Serializing a target cannot fail; an empty key would only stop it from sharing.
        let key = serde_json::to_string(&target).unwrap_or_default();
        let mut registry = lock(&self.shared);
        let shared = registry
            .get(&key)
            .and_then(|entry| entry.shared.clone().downcast::<Shared<T, X>>().ok())
            .filter(|shared| *shared.target() == target);
        let mut on_snapshot = Some(on_snapshot);
        let joined = shared.and_then(|shared| {
            self.store.locked(|| {
                if !shared.joinable(paging.first) {
                    return None;
                }
                let id = self.next_id();
                let core = Arc::new(SubCore::new(self.clone(), shared.clone(), id, paging));
                let handle = core.handle(on_snapshot.take().flatten());
                Some((core, shared.join(handle)))
            })
        });
        if let Some((core, callback)) = joined {
            drop(registry);
            store::run(callback.into_iter().collect());
            return core;
        }
        let sub = self.next_id();
        let list = paging.max > 1;
        let shared = Arc::new(Shared::new(sub, key.clone(), target.clone(), view, list));
        let core = Arc::new(SubCore::new(
            self.clone(),
            shared.clone(),
            self.next_id(),
            paging,
        ));
        shared.join(core.handle(on_snapshot.flatten()));
        let output = shared.output();
        registry.insert(key, SharedEntry { sub, shared });
        drop(registry);
        self.start(sub, output, target, None);
        core
    }

    /// Starts a subscription on the engine: registers its output with the store, then sends
    /// the subscribe (or fails it at once if the session ended).
    pub(crate) fn start(
        self: &Arc<Self>,
        sub: SubId,
        output: Box<dyn store::Output>,
        target: Target,
        restore: Option<Restore>,
    ) {
        self.store.register(sub, output);
        if let Some(error) = lock(&self.ended).clone() {
            self.store.fail(sub, error_to_wire(&error));
        } else {
            let request = Request::Subscribe {
                sub,
                target,
                restore,
            };
            self.send(sub, request, Waiter::Subscribe(sub));
        }
    }

    /// Ends a handle; the last one of a shared subscription ends it.
    fn leave(self: &Arc<Self>, shared: &dyn Membership, handle: u64) {
        let mut registry = lock(&self.shared);
        if shared.leave(handle) > 0 {
            return;
        }
        if registry
            .get(shared.key())
            .is_some_and(|entry| entry.sub == shared.sub())
        {
            registry.remove(shared.key());
        }
        drop(registry);
        self.unsubscribe(shared.sub());
    }

    /// Ends a subscription on the engine; its records are released once the engine confirms.
    fn unsubscribe(self: &Arc<Self>, sub: SubId) {
        self.store.detach(sub);
        lock(&self.calls).subs.remove(&sub);
        if self.link.get().is_some() && lock(&self.ended).is_none() {
            let request = Request::Unsubscribe { sub };
            self.send(self.next_id(), request, Waiter::Release(sub));
        } else {
            self.store.release(sub);
        }
    }

    /// Applies one server frame. A panic while applying it (a bug: frames are checked before
    /// they are applied) ends the session with an error instead of leaving its connection
    /// task dead and every later call waiting.
    fn on_frame(self: &Arc<Self>, frame: ServerFrame) {
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply_frame(frame)));
        if applied.is_err() {
            tracing::error!(user = %self.user_id, "applying a server frame panicked; ending the session");
            let error = WireError {
                code: ErrorCode::Internal,
                reasons: vec![
                    "the session failed to apply a server frame (a bug in talkstore)".into(),
                ],
            };
            self.terminate(Error::rejected("Apply a server frame".to_owned(), error));
        }
    }

    fn apply_frame(self: &Arc<Self>, frame: ServerFrame) {
        match frame {
            ServerFrame::Push {
                updates,
                epoch,
                seq,
                more,
            } => {
                let mut parts = lock(&self.parts);
                parts.extend(updates);
                if more {
                    return;
                }
                let updates = std::mem::take(&mut *parts);
                drop(parts);
                store::run(self.store.apply(updates));
                *lock(&self.position) = Some(Position { epoch, seq });
            }
            // A connection starts: parts of a push the last one did not finish are void.
            ServerFrame::Hello { .. } => lock(&self.parts).clear(),
            ServerFrame::Error { .. } => {}
            ServerFrame::Response { id, result } => self.on_response(id, result),
        }
    }

    fn on_response(self: &Arc<Self>, id: u64, result: Result<Response, WireError>) {
        let mut calls = lock(&self.calls);
        let Some(pending) = calls.pending.get(&id) else {
            return;
        };
        let retry = match (&result, &pending.waiter) {
            (Err(error), waiter) if error.code == ErrorCode::RateLimited => match waiter {
                Waiter::Caller(..) => pending.attempt + 1 < RETRIES,
                Waiter::Subscribe(sub) => calls.subs.contains_key(sub),
                Waiter::Release(_) => true,
                Waiter::Authenticate => false,
            },
            _ => false,
        };
        if retry {
            let Some(pending) = calls.pending.get_mut(&id) else {
                return;
            };
            pending.attempt += 1;
            pending.delayed = true;
            let attempt = pending.attempt;
            drop(calls);
            let session = Arc::downgrade(self);
            self.runtime.spawn(async move {
                tokio::time::sleep(retry_delay(attempt)).await;
                if let Some(session) = session.upgrade() {
                    session.resend(id, attempt);
                }
            });
            return;
        }
        let Some(pending) = calls.pending.remove(&id) else {
            return;
        };
        drop(calls);
        match pending.waiter {
            Waiter::Caller(tx, _) => {
                let _ = tx.send(result);
            }
            Waiter::Authenticate => {
                if let Err(error) = result {
                    self.terminate(Error::rejected("Authenticate".into(), error));
                }
            }
            Waiter::Subscribe(sub) => {
                if let Err(error) = result {
                    lock(&self.calls).subs.remove(&sub);
                    self.store.fail(sub, error);
                }
            }
            Waiter::Release(sub) => {
                if let Err(error) = result {
                    // The server answers every unsubscribe with an ack; anything else is a bug.
                    tracing::warn!(sub, ?error, "an unsubscribe was refused; releasing anyway");
                }
                self.store.release(sub);
            }
        }
    }

    /// Ends the session for good: fails pending requests and subscriptions, tells `on_error`
    /// handlers once.
    pub(crate) fn terminate(&self, error: Error) {
        {
            let mut ended = lock(&self.ended);
            if ended.is_some() {
                return;
            }
            *ended = Some(error.clone());
        }
        let calls = std::mem::take(&mut *lock(&self.calls));
        let wire = error_to_wire(&error);
        for sub in calls.subs.into_keys() {
            self.store.fail(sub, wire.clone());
        }
        let handlers = std::mem::take(&mut *lock(&self.error_handlers));
        for (_, handler) in handlers {
            handler(error.clone());
        }
    }
}

fn error_to_wire(error: &Error) -> WireError {
    WireError {
        code: error.code().unwrap_or(crate::ErrorCode::Internal),
        reasons: vec![error.to_string()],
    }
}

/// A session of one user of one app: the entry point of the Data API.
///
/// Cheap to clone; clones are the same session. Get one with [`get_talk_session`].
#[derive(Clone)]
pub struct TalkSession {
    inner: Arc<SessionInner>,
}

impl PartialEq for TalkSession {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for TalkSession {}

impl std::fmt::Debug for TalkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalkSession")
            .field("app_id", &self.inner.app_id)
            .field("user_id", &self.inner.user_id)
            .finish_non_exhaustive()
    }
}

/// A handle returned by [`TalkSession::on_error`]; detach it to stop being told.
#[derive(Debug)]
#[must_use = "dropping the handle keeps the handler; call `detach` to remove it"]
pub struct ErrorHandlerHandle {
    session: Weak<SessionInner>,
    id: u64,
}

impl ErrorHandlerHandle {
    /// Removes the handler. Does nothing if it already ran.
    pub fn detach(self) {
        if let Some(session) = self.session.upgrade() {
            lock(&session.error_handlers).retain(|(id, _)| *id != self.id);
        }
    }
}

impl TalkSession {
    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// The user this session acts as.
    pub fn current_user(&self) -> UserRef {
        UserRef::new(self.inner.clone(), self.inner.user_id.clone())
    }

    /// A reference to a user. Does no IO; refs for the same id are equal.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] if `id` is empty.
    pub fn user(&self, id: impl AsRef<str>) -> Result<UserRef, Error> {
        Ok(UserRef::new(self.inner.clone(), UserId::try_new(id)?))
    }

    /// A reference to a conversation, as the current user sees it. Does no IO.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] if `id` is empty.
    pub fn conversation(&self, id: impl AsRef<str>) -> Result<ConversationRef, Error> {
        Ok(ConversationRef::new(
            self.inner.clone(),
            ConversationId::try_new(id)?,
        ))
    }

    /// Subscribes to the current user's conversations, most recent activity first.
    ///
    /// The window starts with the 20 most recently active conversations and always includes
    /// conversations with newer activity; [`ListSubscription::load_more`] takes 1..=30
    /// (default 20). The snapshot is an empty list, never `None`, if the user does not exist.
    /// With a filter, conversations enter and leave the list live as they start and stop
    /// matching.
    ///
    /// # Performance
    ///
    /// The engine reads the list from an index in activity order: a page costs about as many
    /// rows as it shows, plus one per conversation of more than 64 participants the user is
    /// in, whatever the number of conversations. A selective filter reads on until it has a
    /// page (at worst every conversation of the user).
    pub fn subscribe_conversations(
        &self,
        filter: Option<ConversationFilter>,
    ) -> ConversationListSubscription {
        self.subscribe_conversations_with(filter, None)
    }

    /// Like [`Self::subscribe_conversations`], calling `on_snapshot(snapshot, loaded_all)` on
    /// every change.
    pub fn subscribe_conversations_with(
        &self,
        filter: Option<ConversationFilter>,
        on_snapshot: Option<OnSnapshot<imbl::Vector<Arc<ConversationSnapshot>>>>,
    ) -> ConversationListSubscription {
        let target = Target::Conversations { filter };
        let core = self.inner.subscribe(
            target,
            |rows| rows.cloned().unwrap_or_default(),
            on_snapshot,
        );
        ListSubscription::new(core)
    }

    /// Sets the token for this session (and so for every user of the same app and user id).
    /// On a live server connection it re-authenticates at once, without dropping anything; a
    /// refused token ends the session (see [`Self::on_error`]). The embedded engine accepts any
    /// token.
    pub fn set_token(&self, token: impl Into<String>) {
        let token = token.into();
        *lock(&self.inner.token) = Some(token.clone());
        #[cfg(feature = "websocket")]
        if let Some(link @ Link::Websocket(_)) = self.inner.link.get() {
            let id = self.inner.next_id();
            link.send(|| {
                let waiter = Pending::new(Waiter::Authenticate);
                lock(&self.inner.calls).pending.insert(id, waiter);
                let request = Request::Authenticate { token };
                Some(ClientFrame { id, request })
            });
        }
    }

    /// The token last set, if any.
    pub fn token(&self) -> Option<String> {
        lock(&self.inner.token).clone()
    }

    /// Sets the callback run when a new token is needed; it should fetch one and call
    /// [`Self::set_token`]. Replaces any earlier callback.
    pub fn on_need_token(&self, callback: impl Fn() + Send + Sync + 'static) {
        *lock(&self.inner.on_need_token) = Some(Arc::new(callback));
    }

    /// Registers a handler for unrecoverable errors (an invalid app, authentication that cannot
    /// recover). It runs at most once, immediately if the session already ended.
    pub fn on_error(&self, handler: impl FnOnce(Error) + Send + 'static) -> ErrorHandlerHandle {
        let id = self.inner.next_id();
        let ended = lock(&self.inner.ended).clone();
        match ended {
            Some(error) => handler(error),
            None => lock(&self.inner.error_handlers).push((id, Box::new(handler))),
        }
        ErrorHandlerHandle {
            session: Arc::downgrade(&self.inner),
            id,
        }
    }

    /// Resolves once every change the engine made before it received this call is applied to
    /// this session's subscriptions and their `on_snapshot` callbacks have run: the writes of
    /// this session made before the call (awaited or not), and every other session's and the
    /// backend's writes committed by then. A barrier for tests and for code that must read
    /// its own and others' writes: it costs one round trip and sends no data.
    ///
    /// Without it, a write's own future already guarantees that its effects are in this
    /// session's snapshots when it resolves; another session's write has no such ordering.
    ///
    /// # Errors
    ///
    /// [`Error::Ended`] if the session ended; what a request can fail with otherwise
    /// (`RATE_LIMITED` is retried first).
    pub async fn sync(&self) -> Result<(), Error> {
        self.inner.request(Request::Sync).await.map(drop)
    }

    /// What the session's cache holds: entities per kind, subscriptions, approximate bytes.
    ///
    /// # Performance
    ///
    /// Walks the whole cache: O(cached entities).
    pub fn stats(&self) -> StoreStats {
        self.inner.store.stats()
    }
}

impl crate::transport::Peer for SessionInner {
    fn replay(&self) -> Vec<ClientFrame> {
        SessionInner::replay(self)
    }

    fn receive(self: &Arc<Self>, frame: ServerFrame) {
        self.on_frame(frame);
    }

    fn busy(&self) -> bool {
        let calls = lock(&self.calls);
        !calls.subs.is_empty()
            || calls
                .pending
                .values()
                .any(|p| !matches!(p.waiter, Waiter::Authenticate))
    }

    fn token(&self) -> Option<String> {
        lock(&self.token).clone()
    }

    fn need_token(&self) -> bool {
        let callback = lock(&self.on_need_token).clone();
        match callback {
            Some(callback) => {
                callback();
                true
            }
            None => false,
        }
    }

    fn fail(&self, error: WireError) {
        self.terminate(Error::rejected("Connect".into(), error));
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    /// `terminate` fails later requests, runs each error handler once, and runs handlers
    /// registered afterwards at once.
    #[tokio::test]
    async fn termination_reaches_error_handlers_once() {
        let session = get_talk_session(SessionOptions::new("terminate-test", "u")).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let tx2 = tx.clone();
        let _handle = session.on_error(move |e| tx.send(e).unwrap());
        let detached = session.on_error(move |e| tx2.send(e).unwrap());
        detached.detach();
        session.inner.terminate(Error::NoRuntime);
        session.inner.terminate(Error::NoRuntime);
        assert_eq!(rx.recv().await, Some(Error::NoRuntime));
        assert!(rx.try_recv().is_err());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _late = session.on_error(move |e| tx.send(e).unwrap());
        assert_eq!(rx.try_recv().ok(), Some(Error::NoRuntime));
        let err = session.current_user().get().await.unwrap_err();
        assert!(matches!(err, Error::Ended { .. }));
        // An ended session is replaced by the registry.
        let again = get_talk_session(SessionOptions::new("terminate-test", "u")).unwrap();
        assert_ne!(again, session);
    }
}
