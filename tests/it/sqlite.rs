//! The SQLite-backed engine keeps everything across restarts.

use std::{path::Path, time::Duration};

use futures_util::StreamExt;
use talkstore::{
    ConversationParams, Durability, Engine, ErrorCode, SessionOptions, TalkSession, UserParams,
    get_talk_session,
};

use crate::support::{app, temp_db};

fn session(engine: &Engine, app: &str, user: &str) -> TalkSession {
    get_talk_session(SessionOptions::new(app, user).engine(engine.clone())).unwrap()
}

/// Users, conversations, messages, read state and idempotency survive closing and reopening.
#[tokio::test]
async fn data_survives_reopening() {
    let path = temp_db();
    let first_app = app();
    let sent = {
        let engine = Engine::open(&path).unwrap();
        let alice = session(&engine, &first_app, "alice");
        alice
            .current_user()
            .set(UserParams::new().name("Alice"))
            .await
            .unwrap();
        let chat = alice.conversation("chat").unwrap();
        chat.set(ConversationParams::new().subject("Kept"))
            .await
            .unwrap();
        let m = chat.send("persisted *text*").await.unwrap();
        chat.mark_as_unread().await.unwrap();
        m.id().clone()
    };
    let engine = Engine::open_with(&path, Durability::Full).unwrap();
    let alice = session(&engine, &app(), "alice");
    let chat = alice
        .conversation("chat")
        .unwrap()
        .get()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chat.subject.as_deref(), Some("Kept"));
    assert!(chat.is_unread);
    let last = chat.last_message.as_ref().unwrap();
    assert_eq!(last.id, sent);
    assert_eq!(last.plaintext, "persisted text");
    assert_eq!(last.sender.as_ref().unwrap().name, "Alice");
    // Message ids keep counting after a restart.
    let next = alice
        .conversation("chat")
        .unwrap()
        .send("after")
        .await
        .unwrap();
    assert_ne!(next.id(), &sent);
    let list = alice.subscribe_conversations(None);
    assert_eq!(list.connected().await.unwrap().len(), 1);
}

/// A database from a newer build is refused instead of being misread.
#[test]
fn newer_schema_is_refused() {
    let path = temp_db();
    drop(Engine::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = Engine::open(&path).unwrap_err();
    assert!(
        error.to_string().contains("newer than this build"),
        "{error}"
    );
}

/// Fails every commit that writes a conversation, until dropped. Conversations are written
/// back when a batch commits, so a send's whole batch fails, the way a full disk fails it.
pub(crate) struct FailingCommits(rusqlite::Connection);

impl FailingCommits {
    pub(crate) fn start(db: &Path) -> Self {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER fail_commits BEFORE UPDATE ON conversations
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        )
        .unwrap();
        FailingCommits(conn)
    }
}

impl Drop for FailingCommits {
    fn drop(&mut self) {
        self.0.execute_batch("DROP TRIGGER fail_commits").unwrap();
    }
}

/// A failed commit drops every connection of the engine; `alice` (a session on the engine
/// whose database is `db`) resumes on a new one: the lost send fails with `Internal`, and her
/// live window then shows every later send, and never the lost one.
pub(crate) async fn sessions_resume_after_a_failed_commit(db: &Path, alice: &TalkSession) {
    alice
        .current_user()
        .set(UserParams::new().name("Alice"))
        .await
        .unwrap();
    let chat = alice.conversation("c").unwrap();
    chat.set(ConversationParams::new()).await.unwrap();
    chat.send("before").await.unwrap();
    let window = chat.subscribe_messages(None);
    window.connected().await.unwrap();

    let failing = FailingCommits::start(db);
    let error = chat.send("lost").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Internal), "{error}");
    drop(failing);
    // Without a new connection this send would never be answered.
    tokio::time::timeout(Duration::from_secs(20), chat.send("after"))
        .await
        .expect("the session resumes")
        .unwrap();

    let mut snapshots = window.stream();
    let texts = async {
        loop {
            let snapshot = snapshots.next().await.unwrap().unwrap();
            let texts: Vec<String> = snapshot.iter().map(|m| m.plaintext.clone()).collect();
            if texts.len() > 1 {
                return texts;
            }
        }
    };
    let texts = tokio::time::timeout(Duration::from_secs(20), texts)
        .await
        .expect("the window resumes");
    assert_eq!(texts, ["after", "before"]);
    let stored = alice
        .conversation("c")
        .unwrap()
        .get()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.last_message.as_ref().unwrap().plaintext, "after");
}

#[tokio::test]
async fn embedded_sessions_resume_after_a_failed_commit() {
    let path = temp_db();
    let engine = Engine::open(&path).unwrap();
    sessions_resume_after_a_failed_commit(&path, &session(&engine, &app(), "alice")).await;
}
