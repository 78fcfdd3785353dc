//! Fixtures shared by the integration tests.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use talkstore::{
    ConversationParams, Engine, OnSnapshot, ParticipantParams, Policy, SessionOptions, TalkSession,
    UserParams, get_talk_session,
};

/// A fresh app id, so that tests never share sessions or engines.
pub(crate) fn app() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "it-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh engine on the storage `TALKSTORE_TEST_STORAGE` names: `memory` (the default) or
/// `sqlite` (a new database file under the test target's temporary directory).
pub(crate) fn engine() -> Engine {
    match std::env::var("TALKSTORE_TEST_STORAGE").as_deref() {
        Ok("sqlite") => sqlite_engine(),
        Ok("memory") | Err(_) => Engine::new(),
        Ok(other) => panic!("unknown TALKSTORE_TEST_STORAGE {other:?}: use memory or sqlite"),
    }
}

#[cfg(feature = "sqlite")]
fn sqlite_engine() -> Engine {
    Engine::open(temp_db()).unwrap()
}

#[cfg(not(feature = "sqlite"))]
fn sqlite_engine() -> Engine {
    panic!("TALKSTORE_TEST_STORAGE=sqlite needs the `sqlite` feature")
}

/// A path for a new database file.
#[cfg(feature = "sqlite")]
pub(crate) fn temp_db() -> std::path::PathBuf {
    let path = temp_dir("it-db").join(format!("{}.sqlite", app()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A directory under the test target's temporary directory.
#[cfg(feature = "sqlite")]
pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One app on the backend the tests run against: the embedded engine (the default), or with
/// `TALKSTORE_TEST_BACKEND=server` a real `talkstore-server` on `127.0.0.1:0`, reached over
/// websocket with minted user tokens.
pub(crate) struct World {
    app: String,
    backend: Backend,
}

enum Backend {
    Embedded(Engine),
    /// Sessions connect through the proxy, so that tests can cut them.
    #[cfg(feature = "server")]
    Server(server::Running, proxy::Proxy),
}

impl World {
    /// A world under the permissive policy (as TalkJS with client-side syncing, the default of
    /// an embedded engine): the suite tests the Data API, not who may use it, and its fixtures
    /// write as any user. `authorization.rs` tests both policies.
    pub(crate) async fn new() -> Self {
        Self::with_policy(Policy::Permissive).await
    }

    pub(crate) async fn with_policy(policy: Policy) -> Self {
        let app = app();
        let backend = match std::env::var("TALKSTORE_TEST_BACKEND").as_deref() {
            Ok("embedded") | Err(_) => Backend::Embedded(engine().with_policy(policy)),
            #[cfg(feature = "server")]
            Ok("server") => {
                let running =
                    server::Running::start_with(&app, |config| config.apps[0].policy = policy)
                        .await;
                let proxy = proxy::Proxy::start(running.addr).await;
                Backend::Server(running, proxy)
            }
            Ok(other) => panic!("unknown TALKSTORE_TEST_BACKEND {other:?}: use embedded or server"),
        };
        World { app, backend }
    }

    /// A session of `user` in this world's app.
    pub(crate) fn session(&self, user: &str) -> TalkSession {
        let options = SessionOptions::new(&self.app, user);
        let options = match &self.backend {
            Backend::Embedded(engine) => options.engine(engine.clone()),
            #[cfg(feature = "server")]
            Backend::Server(running, proxy) => running
                .options(options, user)
                .url(format!("ws://{}", proxy.addr)),
        };
        get_talk_session(options).unwrap()
    }

    /// On a server, a session of `user` in this world's app whose token another app signed
    /// (its `iss` and secret are the other app's); `None` on the embedded engine, which has no
    /// tokens.
    pub(crate) fn foreign_session(&self, user: &str) -> Option<TalkSession> {
        #[cfg(feature = "server")]
        if let Backend::Server(_, proxy) = &self.backend {
            let other = talkstore::server::AppCredentials::new(
                format!("{}-other", self.app),
                "another-apps-secret-0123456789",
            );
            let token = talkstore::server::mint_user_token(&other, user, 3600).unwrap();
            let options = SessionOptions::new(&self.app, user)
                .url(format!("ws://{}", proxy.addr))
                .token(token);
            return Some(get_talk_session(options).unwrap());
        }
        let _ = user;
        None
    }

    /// Cuts every session's connection (they reconnect and resume), and returns whether it
    /// did. Only a server has connections to cut: on the embedded engine this does nothing.
    pub(crate) fn cut(&self) -> bool {
        #[cfg(feature = "server")]
        if let Backend::Server(_, proxy) = &self.backend {
            proxy.cut();
            return true;
        }
        false
    }
}

#[cfg(feature = "server")]
pub(crate) mod server {
    use std::net::SocketAddr;

    use talkstore::{
        SessionOptions,
        server::{AppCredentials, Server, ServerConfig, mint_user_token},
    };

    /// A server running on the test's runtime until the test ends.
    pub(crate) struct Running {
        pub(crate) addr: SocketAddr,
        pub(crate) credentials: AppCredentials,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    impl Running {
        /// A server with the default configuration (the restricted policy), except for rate
        /// limits: the shared suite is not about them (`server.rs` tests those).
        pub(crate) async fn start(app: &str) -> Self {
            Self::start_with(app, |_| {}).await
        }

        /// A server whose configuration `configure` adjusts (its one app is `config.apps[0]`).
        pub(crate) async fn start_with(
            app: &str,
            configure: impl FnOnce(&mut ServerConfig),
        ) -> Self {
            let credentials = AppCredentials::new(app, format!("secret-of-{app}-0123456789"));
            let data = super::temp_dir("it-server").join(app);
            let _ = std::fs::remove_dir_all(&data);
            let mut config = ServerConfig::new(
                "127.0.0.1:0".parse().unwrap(),
                data,
                vec![credentials.clone()],
            );
            config.limits.requests_per_second = 100_000;
            configure(&mut config);
            let server = Server::bind(config).await.unwrap();
            let addr = server.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(server.serve(async move {
                let _ = stopped.await;
            }));
            Running {
                addr,
                credentials,
                _stop: stop,
            }
        }

        /// The app's database file.
        pub(crate) fn database(&self) -> std::path::PathBuf {
            let app = &self.credentials.id;
            super::temp_dir("it-server")
                .join(app)
                .join(format!("{app}.sqlite"))
        }

        /// One HTTP/1.1 request to the app's REST API (`path` under `/v1/{app}`), with `auth`
        /// as its bearer: the status and body, or `None` if the server answered nothing.
        pub(crate) async fn http(
            &self,
            method: &str,
            path: &str,
            auth: Option<&str>,
            body: &[u8],
        ) -> Option<(u16, String)> {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
            let auth = auth
                .map(|a| format!("Authorization: Bearer {a}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "{method} /v1/{}{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.credentials.id,
                body.len()
            );
            stream.write_all(head.as_bytes()).await.ok()?;
            stream.write_all(body).await.ok()?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.ok()?;
            let response = String::from_utf8_lossy(&response);
            let status = response.get(9..12)?.parse().ok()?;
            let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            Some((status, body.to_owned()))
        }

        pub(crate) fn options(&self, options: SessionOptions, user: &str) -> SessionOptions {
            let token = mint_user_token(&self.credentials, user, 3600).unwrap();
            options.url(format!("ws://{}", self.addr)).token(token)
        }
    }
}

/// Sessions for `names` in a fresh world; each user exists with their id capitalized as name.
pub(crate) async fn users(names: &[&str]) -> Vec<TalkSession> {
    let world = World::new().await;
    let mut sessions = Vec::new();
    for name in names {
        let session = world.session(name);
        session
            .current_user()
            .set(UserParams::new().name(capitalize(name)))
            .await
            .unwrap();
        sessions.push(session);
    }
    // The world (and its server) lives as long as the test: keep it with the sessions.
    std::mem::forget(world);
    sessions
}

pub(crate) fn capitalize(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Creates conversation `id` as `owner` and adds `others`.
pub(crate) async fn conversation(owner: &TalkSession, id: &str, others: &[&str]) {
    let c = owner.conversation(id).unwrap();
    c.set(ConversationParams::new()).await.unwrap();
    for other in others {
        c.participant(other)
            .unwrap()
            .set(ParticipantParams::new())
            .await
            .unwrap();
    }
}

/// Waits until every session has applied every push of the writes made so far.
pub(crate) async fn settle(sessions: &[TalkSession]) {
    for session in sessions {
        session.sync().await.unwrap();
    }
}

/// Waits (at most 20 s) until a subscription's snapshot satisfies `predicate`, and returns it.
pub(crate) async fn until<T, X>(
    sub: &talkstore::Subscription<T, X>,
    predicate: impl Fn(&T) -> bool,
) -> T
where
    T: Clone + Send + Sync + std::fmt::Debug + 'static,
    X: Send + Sync + 'static,
{
    use futures_util::StreamExt;
    let mut snapshots = sub.stream();
    let found = async {
        while let Some(snapshot) = snapshots.next().await {
            if predicate(&snapshot) {
                return snapshot;
            }
        }
        panic!("the subscription ended at {:?}", sub.state());
    };
    match tokio::time::timeout(std::time::Duration::from_secs(20), found).await {
        Ok(snapshot) => snapshot,
        Err(_) => panic!(
            "no matching snapshot in 20 s; the last was {:?}",
            sub.latest()
        ),
    }
}

/// Counts emissions of an `on_snapshot` callback and keeps the last snapshot.
pub(crate) struct Counter<T> {
    count: Arc<AtomicUsize>,
    last: Arc<std::sync::Mutex<Option<T>>>,
}

impl<T: Clone + Send + Sync + 'static> Counter<T> {
    pub(crate) fn new() -> Self {
        Self {
            count: Arc::default(),
            last: Arc::default(),
        }
    }

    pub(crate) fn callback(&self) -> Option<OnSnapshot<T>> {
        let count = self.count.clone();
        let last = self.last.clone();
        Some(Box::new(move |snapshot: &T, _| {
            count.fetch_add(1, Ordering::SeqCst);
            *last.lock().unwrap() = Some(snapshot.clone());
        }))
    }

    /// The number of emissions since the last call.
    pub(crate) fn take(&self) -> usize {
        self.count.swap(0, Ordering::SeqCst)
    }
}

#[cfg(feature = "server")]
pub(crate) mod process;

/// A TCP proxy that can cut every connection through it, and be pointed at a new target.
#[cfg(feature = "server")]
pub(crate) mod proxy {
    use std::{
        net::SocketAddr,
        sync::{
            Arc, Mutex,
            atomic::{AtomicU64, Ordering},
        },
    };

    use tokio::{
        io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
        net::TcpListener,
        sync::watch,
        task::AbortHandle,
    };

    #[derive(Clone)]
    pub(crate) struct Proxy {
        pub(crate) addr: SocketAddr,
        target: Arc<Mutex<SocketAddr>>,
        connections: Arc<Mutex<Vec<AbortHandle>>>,
        /// Bytes passed from the server to clients.
        downstream: Arc<AtomicU64>,
        /// Connections open now, and the most open at once.
        open: Arc<watch::Sender<(usize, usize)>>,
    }

    /// Counts a connection as open while it lives (also when its task is aborted).
    struct Open(Arc<watch::Sender<(usize, usize)>>);

    impl Open {
        fn new(open: Arc<watch::Sender<(usize, usize)>>) -> Self {
            open.send_modify(|(now, peak)| {
                *now += 1;
                *peak = (*peak).max(*now);
            });
            Open(open)
        }
    }

    impl Drop for Open {
        fn drop(&mut self) {
            self.0.send_modify(|(now, _)| *now -= 1);
        }
    }

    /// Copies `from` to `to` until either ends, counting the bytes if asked.
    async fn copy(
        mut from: impl AsyncRead + Unpin,
        mut to: impl AsyncWrite + Unpin,
        count: Option<&AtomicU64>,
    ) {
        let mut buffer = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer).await {
            if to.write_all(&buffer[..n]).await.is_err() {
                return;
            }
            if let Some(count) = count {
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }

    impl Proxy {
        pub(crate) async fn start(target: SocketAddr) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let proxy = Proxy {
                addr: listener.local_addr().unwrap(),
                target: Arc::new(Mutex::new(target)),
                connections: Arc::default(),
                downstream: Arc::default(),
                open: Arc::new(watch::channel((0, 0)).0),
            };
            let accepting = proxy.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    inbound.set_nodelay(true).unwrap();
                    let target = *accepting.target.lock().unwrap();
                    let downstream = accepting.downstream.clone();
                    let open = Open::new(accepting.open.clone());
                    let task = tokio::spawn(async move {
                        let _open = open;
                        if let Ok(outbound) = tokio::net::TcpStream::connect(target).await {
                            outbound.set_nodelay(true).unwrap();
                            let (client_read, client_write) = inbound.split();
                            let (server_read, server_write) = outbound.into_split();
                            tokio::select! {
                                () = copy(client_read, server_write, None) => {}
                                () = copy(server_read, client_write, Some(&downstream)) => {}
                            }
                        }
                    });
                    accepting
                        .connections
                        .lock()
                        .unwrap()
                        .push(task.abort_handle());
                }
            });
            proxy
        }

        /// Cuts every open connection (both sides see the TCP connection drop).
        pub(crate) fn cut(&self) {
            for connection in self.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }

        /// Bytes passed from the server to clients so far.
        pub(crate) fn downstream(&self) -> u64 {
            self.downstream.load(Ordering::Relaxed)
        }

        /// The most connections that were open at once.
        pub(crate) fn peak(&self) -> usize {
            self.open.borrow().1
        }

        /// Waits until at most `n` connections are open (at most 20 s).
        pub(crate) async fn open_at_most(&self, n: usize) {
            let mut open = self.open.subscribe();
            let closed = open.wait_for(|(now, _)| *now <= n);
            tokio::time::timeout(std::time::Duration::from_secs(20), closed)
                .await
                .expect("connections closed in time")
                .unwrap();
        }

        pub(crate) fn retarget(&self, target: SocketAddr) {
            *self.target.lock().unwrap() = target;
        }
    }
}
