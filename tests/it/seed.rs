//! The examples of the TalkSession reference page, through the public API.

use std::sync::Arc;

use talkstore::{
    ConversationParams, Notify, SessionOptions, UserParams, UserSnapshot, get_talk_session,
};

use crate::support::{Counter, app, settle, users};

/// `session.user("test").createIfNotExists({ name: "Alice" })` creates once and keeps the
/// first name on later calls.
#[tokio::test]
async fn create_user_if_not_exists() {
    let session = get_talk_session(SessionOptions::new(app(), "me")).unwrap();
    let user = session.user("test").unwrap();
    assert_eq!(user.get().await.unwrap(), None);
    user.create_if_not_exists(UserParams::new().name("Alice"))
        .await
        .unwrap();
    user.create_if_not_exists(UserParams::new().name("Someone else"))
        .await
        .unwrap();
    let snapshot = user.get().await.unwrap().unwrap();
    assert_eq!(snapshot.name, "Alice");
    assert_eq!(snapshot.role, "default");
    assert_eq!(snapshot.locale, None);
}

/// Subscribing to a user and renaming them emits the new snapshot to the callback.
#[tokio::test]
async fn subscribe_then_rename() {
    let session = get_talk_session(SessionOptions::new(app(), "me")).unwrap();
    let user = session.user("test").unwrap();
    user.create_if_not_exists(UserParams::new().name("Alice"))
        .await
        .unwrap();
    let counter = Counter::<Option<Arc<UserSnapshot>>>::new();
    let sub = user.subscribe_with(counter.callback());
    assert_eq!(sub.connected().await.unwrap().unwrap().name, "Alice");
    assert_eq!(counter.take(), 1);
    user.set(UserParams::new().name("Bob")).await.unwrap();
    assert_eq!(counter.take(), 1);
    assert_eq!(sub.latest().unwrap().unwrap().name, "Bob");
    // Setting the same name again changes nothing and emits nothing.
    user.set(UserParams::new().name("Bob")).await.unwrap();
    settle(&[session]).await;
    assert_eq!(counter.take(), 0);
}

/// createIfNotExists, set subject, set notify false and send, as in the docs, each visible
/// through `get`.
#[tokio::test]
async fn conversation_examples() {
    let [me] = &users(&["me"]).await[..] else {
        unreachable!()
    };
    let test = me.conversation("test").unwrap();
    assert_eq!(test.get().await.unwrap(), None);
    test.create_if_not_exists(ConversationParams::new())
        .await
        .unwrap();
    let created = test.get().await.unwrap().unwrap();
    assert_eq!(created.subject, None);
    assert_eq!(created.notify, Notify::Always);

    test.set(ConversationParams::new().subject("Power tools"))
        .await
        .unwrap();
    assert_eq!(
        test.get().await.unwrap().unwrap().subject.as_deref(),
        Some("Power tools")
    );

    test.set(ConversationParams::new().notify(Notify::Never))
        .await
        .unwrap();
    let quiet = test.get().await.unwrap().unwrap();
    assert_eq!(quiet.notify, Notify::Never);
    assert_eq!(
        quiet.subject.as_deref(),
        Some("Power tools"),
        "patches leave other fields"
    );

    let message = test.send("Hello").await.unwrap();
    let sent = message.get().await.unwrap().unwrap();
    assert_eq!(sent.plaintext, "Hello");
    assert_eq!(sent.sender.as_ref().unwrap().id.as_str(), "me");
    let conversation = test.get().await.unwrap().unwrap();
    assert_eq!(conversation.last_message.as_ref().unwrap().id, sent.id);
}
