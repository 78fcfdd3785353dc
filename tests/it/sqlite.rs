//! The SQLite-backed engine keeps everything across restarts.

use talkstore::{
    ConversationParams, Durability, Engine, SessionOptions, TalkSession, UserParams,
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
