//! Fixtures shared by the integration tests.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use talkstore::{
    ConversationParams, Engine, OnSnapshot, ParticipantParams, SessionOptions, TalkSession,
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
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("it-db");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.sqlite", app()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Sessions for `names` on a fresh engine; each user exists with their id capitalized as name.
pub(crate) async fn users(names: &[&str]) -> Vec<TalkSession> {
    let engine = engine();
    let app = app();
    let mut sessions = Vec::new();
    for name in names {
        let session =
            get_talk_session(SessionOptions::new(&app, *name).engine(engine.clone())).unwrap();
        session
            .current_user()
            .set(UserParams::new().name(capitalize(name)))
            .await
            .unwrap();
        sessions.push(session);
    }
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

/// Waits until every session has applied every push sent so far: a round trip on each
/// connection comes back after the pushes queued before it.
pub(crate) async fn settle(sessions: &[TalkSession]) {
    for session in sessions {
        session.current_user().get().await.unwrap();
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
