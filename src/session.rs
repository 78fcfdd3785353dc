//! `TalkSession`: the entry point of the Data API.

mod refs;
mod subscription;

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, Mutex, MutexGuard, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{mpsc, oneshot};

pub(crate) use self::subscription::TypedOutput;
use self::subscription::{RowType, SubCore};
pub use self::{
    refs::{ConversationRef, MessageRef, ParticipantRef, UserRef},
    subscription::{
        ConversationListSubscription, ConversationSubscription, ListSubscription,
        MessageListSubscription, OnSnapshot, ParticipantListSubscription, ParticipantSubscription,
        Subscription, SubscriptionState, UserSubscription,
    },
};
use crate::{
    Error,
    engine::Engine,
    model::{ConversationFilter, ConversationId, ConversationSnapshot, UserId},
    protocol::{
        ClientFrame, ErrorCode, Position, Record, Request, Response, ServerFrame, SubId, Target,
        WireError,
    },
    store::{self, Bundle, Node, Store, StoreStats},
    transport::{Embedded, wire_round_trip},
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
/// and [`Error::NoRuntime`] outside a Tokio runtime.
pub fn get_talk_session(options: SessionOptions) -> Result<TalkSession, Error> {
    if options.app_id.is_empty() {
        return Err(Error::InvalidOptions("app_id must not be empty".into()));
    }
    let user_id = UserId::try_new(&options.user_id)?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
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
        pending: Mutex::new(HashMap::new()),
        subs: Mutex::new(HashMap::new()),
        position: Mutex::new(None),
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

/// Rate-limited requests are sent again up to this many times, waiting `RETRY_FIRST` and then
/// half as long again each time; other rejections are never retried.
const RETRIES: u32 = 10;
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(200);

/// What waits for a response. (`Authenticate` serves the websocket transport only.)
#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
enum Pending {
    /// A request; kept so that it can be sent again on a new connection.
    Caller(oneshot::Sender<Result<Response, WireError>>, Box<Request>),
    /// A new token on the live connection: refusal ends the session.
    Authenticate,
    /// A subscribe: on error the subscription fails.
    Subscribe(SubId),
    /// An unsubscribe: on any answer the store releases the subscription's records.
    Release(SubId),
}

type Callback = Arc<dyn Fn() + Send + Sync>;
type ErrorHandler = (u64, Box<dyn FnOnce(Error) + Send>);

pub(crate) struct SessionInner {
    app_id: String,
    user_id: UserId,
    backend: Backend,
    runtime: tokio::runtime::Handle,
    /// Connected lazily on first use.
    link: OnceLock<Link>,
    store: Store,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Live subscriptions, to subscribe again on a new connection.
    subs: Mutex<HashMap<SubId, Target>>,
    /// The log position of the last push applied: a new connection resumes from it.
    position: Mutex<Option<Position>>,
    next_id: AtomicU64,
    token: Mutex<Option<String>>,
    on_need_token: Mutex<Option<Callback>>,
    ended: Mutex<Option<Error>>,
    error_handlers: Mutex<Vec<ErrorHandler>>,
}

impl SessionInner {
    /// Frames a fresh connection needs before anything else: unanswered unsubscribes are
    /// dropped (their records released), then every live subscription, resuming from the last
    /// push applied, then every unanswered request with its id, in id order.
    fn replay(&self) -> Vec<ClientFrame> {
        let mut pending = lock(&self.pending);
        // Unsubscribes need no answer from a new connection: it never knew the subscription.
        let released: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::Release(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in released {
            if let Some(Pending::Release(sub)) = pending.remove(&id) {
                self.store.release(sub);
            }
        }
        let mut frames = Vec::new();
        let since = *lock(&self.position);
        for (sub, target) in lock(&self.subs).iter() {
            pending.insert(*sub, Pending::Subscribe(*sub));
            let request = Request::Subscribe {
                sub: *sub,
                target: target.clone(),
                restore: Some(self.store.restore(*sub, since)),
            };
            frames.push(ClientFrame { id: *sub, request });
        }
        let mut requests: Vec<ClientFrame> = pending
            .iter()
            .filter_map(|(id, p)| match p {
                Pending::Caller(_, request) => Some(ClientFrame {
                    id: *id,
                    request: (**request).clone(),
                }),
                _ => None,
            })
            .collect();
        requests.sort_by_key(|frame| frame.id);
        frames.extend(requests);
        frames
    }

    fn link(self: &Arc<Self>) -> &Link {
        self.link.get_or_init(|| match &self.backend {
            Backend::Embedded(engine) => {
                let (link, inbox) = Embedded::connect(engine.clone(), self.user_id.clone());
                self.runtime.spawn(pump(Arc::downgrade(self), inbox));
                Link::Embedded(link)
            }
            #[cfg(feature = "websocket")]
            Backend::Remote(url) => Link::Websocket(crate::transport::Websocket::start(
                &self.runtime,
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
    /// then sends. On the websocket both happen under the connection's lock, so a request is
    /// either replayed by a new connection or sent on the live one, never both.
    fn send(self: &Arc<Self>, id: u64, request: Request, pending: Pending) {
        let frame = ClientFrame { id, request };
        let register = || {
            if let Request::Subscribe { sub, target, .. } = &frame.request {
                lock(&self.subs).insert(*sub, target.clone());
            }
            lock(&self.pending).insert(id, pending);
        };
        match self.link() {
            Link::Embedded(link) => link.send(&frame, register),
            #[cfg(feature = "websocket")]
            Link::Websocket(link) => link.send(&frame, register),
        }
    }

    /// Sends a request and waits for its response.
    pub(crate) async fn request(self: &Arc<Self>, request: Request) -> Result<Response, Error> {
        let action = request.action();
        if lock(&self.ended).is_some() {
            return Err(Error::ended(action));
        }
        let mut delay = RETRY_FIRST;
        for attempt in 1.. {
            let (tx, rx) = oneshot::channel();
            self.send(
                self.next_id(),
                request.clone(),
                Pending::Caller(tx, Box::new(request.clone())),
            );
            match rx.await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(error)) if error.code == ErrorCode::RateLimited && attempt < RETRIES => {
                    tokio::time::sleep(delay).await;
                    delay = delay.mul_f64(1.5);
                }
                Ok(Err(error)) => return Err(Error::rejected(action, error)),
                Err(_) => return Err(Error::ended(action)),
            }
        }
        Err(Error::ended(action))
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

    /// Starts a subscription; its state is pending until the first window arrives.
    pub(crate) fn subscribe<X: RowType, T: Clone + Send + Sync + 'static>(
        self: &Arc<Self>,
        target: Target,
        view: fn(Option<&imbl::Vector<Arc<X>>>) -> T,
        on_snapshot: Option<OnSnapshot<T>>,
    ) -> Arc<SubCore<T, X>> {
        let sub = self.next_id();
        let paging = target.paging();
        let core = Arc::new(SubCore::new(self.clone(), sub, paging));
        let output = TypedOutput::new(&core, view, on_snapshot, paging.max > 1);
        self.store.register(sub, Box::new(output));
        if let Some(error) = lock(&self.ended).clone() {
            self.store.fail(sub, error_to_wire(&error));
        } else {
            self.send(
                sub,
                Request::Subscribe {
                    sub,
                    target,
                    restore: None,
                },
                Pending::Subscribe(sub),
            );
        }
        core
    }

    /// Ends a subscription on the engine; its records are released once confirmed.
    pub(crate) fn unsubscribe(self: &Arc<Self>, sub: SubId) {
        self.store.detach(sub);
        lock(&self.subs).remove(&sub);
        if self.link.get().is_some() && lock(&self.ended).is_none() {
            self.send(
                self.next_id(),
                Request::Unsubscribe { sub },
                Pending::Release(sub),
            );
        } else {
            self.store.release(sub);
        }
    }

    fn on_frame(&self, frame: ServerFrame) {
        match frame {
            ServerFrame::Push {
                updates,
                epoch,
                seq,
            } => {
                store::run(self.store.apply(updates));
                *lock(&self.position) = Some(Position { epoch, seq });
            }
            ServerFrame::Hello { .. } | ServerFrame::Error { .. } => {}
            ServerFrame::Response { id, result } => {
                let Some(pending) = lock(&self.pending).remove(&id) else {
                    return;
                };
                match pending {
                    Pending::Caller(tx, _) => {
                        let _ = tx.send(result);
                    }
                    Pending::Authenticate => {
                        if let Err(error) = result {
                            self.terminate(Error::rejected("Authenticate".into(), error));
                        }
                    }
                    Pending::Subscribe(sub) => {
                        if let Err(error) = result {
                            self.store.fail(sub, error);
                        }
                    }
                    Pending::Release(sub) => self.store.release(sub),
                }
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
        lock(&self.pending).clear();
        let subs = std::mem::take(&mut *lock(&self.subs));
        let wire = error_to_wire(&error);
        for sub in subs.into_keys() {
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

/// Applies server frames in order, each as one batch.
async fn pump(session: Weak<SessionInner>, mut inbox: mpsc::Receiver<ServerFrame>) {
    loop {
        while let Some(frame) = inbox.recv().await {
            let Some(session) = session.upgrade() else {
                return;
            };
            // Frames from a websocket were JSON already; in process, check they could have been.
            session.on_frame(wire_round_trip(frame));
        }
        // The engine dropped the connection (a failed batch of writes, or a whole queue
        // behind): resume on a new one, as the websocket transport does after a disconnect.
        // A session being dropped has dropped its link, so this ends.
        let Some(session) = session.upgrade() else {
            return;
        };
        let Some(Link::Embedded(link)) = session.link.get() else {
            return;
        };
        tracing::warn!(user = %session.user_id, "the engine dropped the session's connection; resuming");
        inbox = link.reconnect(|| session.replay());
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
        if let Some(Link::Websocket(link)) = self.inner.link.get() {
            let id = self.inner.next_id();
            let frame = ClientFrame {
                id,
                request: Request::Authenticate { token },
            };
            link.send(&frame, || {
                lock(&self.inner.pending).insert(id, Pending::Authenticate);
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

    /// What the session's cache holds: entities per kind, subscriptions, approximate bytes.
    ///
    /// # Performance
    ///
    /// Walks the whole cache: O(cached entities).
    pub fn stats(&self) -> StoreStats {
        self.inner.store.stats()
    }
}

#[cfg(feature = "websocket")]
impl crate::transport::Peer for SessionInner {
    fn replay(&self) -> Vec<ClientFrame> {
        SessionInner::replay(self)
    }

    fn receive(&self, frame: ServerFrame) {
        self.on_frame(frame);
    }

    fn busy(&self) -> bool {
        !lock(&self.subs).is_empty()
            || lock(&self.pending)
                .values()
                .any(|p| !matches!(p, Pending::Authenticate))
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
