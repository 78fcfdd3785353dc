//! Sessions, refs and the subscription state machine.

use std::sync::Arc;

use futures_signals::signal_vec::{SignalVecExt, VecDiff};
use futures_util::StreamExt;
use talkstore::{
    Engine, Error, ErrorCode, SessionOptions, SubscriptionState, TalkSession, UserParams,
    get_talk_session,
};

use crate::support::{app, conversation, settle, users};

/// The same (app, user) gives the same session, whose later options are ignored; refs for the
/// same id are equal.
#[tokio::test]
async fn registry_and_refs() {
    let app = app();
    let a = get_talk_session(SessionOptions::new(&app, "u")).unwrap();
    let b = get_talk_session(SessionOptions::new(&app, "u").engine(Engine::new())).unwrap();
    assert_eq!(a, b);
    let other = get_talk_session(SessionOptions::new(&app, "v")).unwrap();
    assert_ne!(a, other);
    assert_eq!(a.user("x").unwrap(), b.user("x").unwrap());
    assert_ne!(a.user("x").unwrap(), other.user("x").unwrap());
    assert_eq!(a.current_user().id().as_str(), "u");
    assert_eq!(a.app_id(), app);
    a.set_token("t1");
    assert_eq!(b.token().as_deref(), Some("t1"));
    // Both sessions share the app's default engine.
    a.current_user()
        .set(UserParams::new().name("U"))
        .await
        .unwrap();
    assert_eq!(
        other.user("u").unwrap().get().await.unwrap().unwrap().name,
        "U"
    );
}

/// pending → active → unsubscribed; `connected` fails if the subscription ends first;
/// `unsubscribe` twice is a no-op; `terminated` resolves.
#[tokio::test]
async fn state_machine() {
    let sessions = users(&["alice"]).await;
    let alice = &sessions[0];
    // Pending until the first window arrives (here never: nothing listens on port 1).
    #[cfg(feature = "websocket")]
    {
        let nowhere = SessionOptions::new(app(), "alice").url("ws://127.0.0.1:1");
        let pending = get_talk_session(nowhere)
            .unwrap()
            .current_user()
            .subscribe();
        assert_eq!(pending.state(), SubscriptionState::Pending);
        assert_eq!(pending.latest(), None);
    }
    let sub = alice.current_user().subscribe();
    let snapshot = sub.connected().await.unwrap();
    assert!(matches!(
        sub.state(),
        SubscriptionState::Active {
            loaded_all: true,
            ..
        }
    ));
    assert_eq!(sub.latest(), Some(snapshot));
    sub.unsubscribe();
    sub.unsubscribe();
    assert_eq!(sub.state(), SubscriptionState::Unsubscribed);
    assert_eq!(sub.terminated().await, SubscriptionState::Unsubscribed);
    assert!(matches!(sub.connected().await, Err(Error::Ended { .. })));

    let early = alice.user("nobody").unwrap().subscribe();
    early.unsubscribe();
    assert!(early.connected().await.is_err());
    // A user that does not exist yet is `None`, then appears.
    let later = alice.user("later").unwrap().subscribe();
    assert_eq!(later.connected().await.unwrap(), None);
    alice
        .user("later")
        .unwrap()
        .set(UserParams::new().name("L"))
        .await
        .unwrap();
    assert_eq!(later.latest().unwrap().unwrap().name, "L");
}

/// Signals, streams and keyed list diffs follow the snapshots.
#[tokio::test]
async fn signals_streams_and_diffs() {
    let sessions = users(&["alice", "bob"]).await;
    let [alice, bob] = &sessions[..] else {
        unreachable!()
    };
    conversation(alice, "c", &["bob"]).await;
    let messages = alice.conversation("c").unwrap().subscribe_messages(None);
    messages.connected().await.unwrap();
    let mut stream = messages.stream();
    assert_eq!(stream.next().await.unwrap().unwrap().len(), 0);
    let mut diffs = messages.signal_vec().to_stream();
    let first = alice.conversation("c").unwrap().send("one").await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap()[0].plaintext, "one");
    match diffs.next().await.unwrap() {
        // Inserting at the end of an empty vec is reported as a push.
        VecDiff::InsertAt { index: 0, value } | VecDiff::Push { value } => {
            assert_eq!(value.id, *first.id())
        }
        VecDiff::Replace { values } => assert!(values.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
    bob.current_user()
        .set(UserParams::new().name("Robert"))
        .await
        .unwrap();
    bob.conversation("c").unwrap().send("two").await.unwrap();
    first.edit("uno").await.unwrap();
    settle(&sessions).await;
    // Replaying the diffs reproduces the snapshot.
    let mut replay: Vec<Arc<talkstore::MessageSnapshot>> = Vec::new();
    let expected = messages.latest().unwrap().unwrap();
    let mut diffs = messages.signal_vec().to_stream();
    while replay.len() != expected.len()
        || replay
            .iter()
            .zip(&expected)
            .any(|(a, b)| !Arc::ptr_eq(a, b))
    {
        match diffs.next().await.unwrap() {
            VecDiff::Replace { values } => replay = values,
            VecDiff::InsertAt { index, value } => replay.insert(index, value),
            VecDiff::UpdateAt { index, value } => replay[index] = value,
            VecDiff::RemoveAt { index } => drop(replay.remove(index)),
            VecDiff::Push { value } => replay.push(value),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(replay[0].plaintext, "two");
    assert_eq!(replay[1].plaintext, "uno");
    messages.unsubscribe();
    assert!(
        stream.next().await.is_none(),
        "the stream ends with the subscription"
    );
}

/// Concurrent `load_more` calls load one page; another subscription is unaffected.
#[tokio::test]
async fn concurrent_load_more_loads_one_page() {
    let sessions = users(&["alice"]).await;
    let alice = &sessions[0];
    conversation(alice, "c", &[]).await;
    let c = alice.conversation("c").unwrap();
    for i in 0..100 {
        c.send(format!("m{i}")).await.unwrap();
    }
    let a = c.subscribe_messages(None);
    let b = c.subscribe_messages(None);
    a.connected().await.unwrap();
    b.connected().await.unwrap();
    let (x, y) = tokio::join!(a.load_more(Some(10)), a.load_more(Some(10)));
    x.unwrap();
    y.unwrap();
    assert_eq!(a.latest().unwrap().unwrap().len(), 40);
    assert_eq!(b.latest().unwrap().unwrap().len(), 30);
}

/// A removed participant's live views of the conversation stop at once.
#[tokio::test]
async fn removed_participant_loses_access() {
    let sessions = users(&["alice", "bob"]).await;
    let [alice, bob] = &sessions[..] else {
        unreachable!()
    };
    conversation(alice, "c", &["bob"]).await;
    alice
        .conversation("c")
        .unwrap()
        .send("before")
        .await
        .unwrap();
    let bobs = bob.conversation("c").unwrap();
    let messages = bobs.subscribe_messages(None);
    let conversation_sub = bobs.subscribe();
    let list = bob.subscribe_conversations(None);
    assert_eq!(messages.connected().await.unwrap().unwrap().len(), 1);
    assert!(conversation_sub.connected().await.unwrap().is_some());
    assert_eq!(list.connected().await.unwrap().len(), 1);

    alice
        .conversation("c")
        .unwrap()
        .participant("bob")
        .unwrap()
        .delete()
        .await
        .unwrap();
    alice
        .conversation("c")
        .unwrap()
        .send("after")
        .await
        .unwrap();
    settle(&sessions).await;
    assert_eq!(messages.latest().unwrap(), None);
    assert_eq!(conversation_sub.latest().unwrap(), None);
    assert!(list.latest().unwrap().is_empty());
    assert_eq!(bobs.get().await.unwrap(), None);
    assert!(bob.stats().messages == 0, "{:?}", bob.stats());
}

/// Sessions of one user on two engines are separate apps; `TalkSession` is Send + Sync.
#[tokio::test]
async fn handles_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TalkSession>();
    assert_send_sync::<talkstore::ConversationListSubscription>();
    assert_send_sync::<talkstore::MessageRef>();
    let sessions = users(&["alice"]).await;
    let alice = sessions[0].clone();
    let handle = tokio::spawn(async move { alice.current_user().get().await.unwrap() });
    assert_eq!(handle.await.unwrap().unwrap().name, "Alice");
}

/// `Engine::post_system_message` posts a senderless system message that live windows show at
/// once; an empty text or a missing conversation is refused.
#[tokio::test]
async fn system_messages_from_the_engine() {
    let engine = Engine::new();
    let alice =
        get_talk_session(SessionOptions::new(app(), "alice").engine(engine.clone())).unwrap();
    alice
        .current_user()
        .set(UserParams::new().name("Alice"))
        .await
        .unwrap();
    conversation(&alice, "c", &[]).await;
    let window = alice.conversation("c").unwrap().subscribe_messages(None);
    window.connected().await.unwrap();
    let c = talkstore::ConversationId::new("c");
    let id = engine.post_system_message(&c, "Alice joined").unwrap();
    settle(std::slice::from_ref(&alice)).await;
    let shown = window.latest().unwrap().unwrap();
    assert_eq!(shown[0].id, id);
    assert_eq!(shown[0].message_type, talkstore::MessageType::SystemMessage);
    assert!(shown[0].sender.is_none());
    assert_eq!(shown[0].plaintext, "Alice joined");
    assert!(engine.post_system_message(&c, "").is_err());
    let missing = engine.post_system_message(&talkstore::ConversationId::new("nope"), "x");
    assert!(matches!(
        missing,
        Err(talkstore::EngineError::Rejected {
            code: ErrorCode::NotFound,
            ..
        })
    ));
}

/// On a multi-threaded runtime, `connected` resolves only after the first `on_snapshot`
/// callback ran, however slow the callback (it runs on the session's thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_waits_for_the_first_callback() {
    let [me] = &users(&["me"]).await[..] else {
        unreachable!()
    };
    for _ in 0..5 {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let sub = me.current_user().subscribe_with(Some(Box::new(move |_, _| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })));
        sub.connected().await.unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

/// `sync` is a barrier for other sessions' writes: once it resolves, a rename that another
/// session's write made before it shows in the snapshot and has reached the callback.
#[tokio::test]
async fn sync_waits_for_other_sessions_writes() {
    let [alice, bob] = &users(&["alice", "bob"]).await[..] else {
        unreachable!()
    };
    let counter = crate::support::Counter::new();
    let sub = alice
        .user("bob")
        .unwrap()
        .subscribe_with(counter.callback());
    sub.connected().await.unwrap();
    counter.take();
    for round in 0..20 {
        let name = format!("Bob {round}");
        bob.current_user()
            .set(UserParams::new().name(name.as_str()))
            .await
            .unwrap();
        alice.sync().await.unwrap();
        assert_eq!(sub.latest().unwrap().unwrap().name, name);
        assert_eq!(counter.take(), 1, "round {round}");
    }
}

/// A window's rows, flat: empty while the window does not exist (not a participant) and
/// while pending, the messages once it does.
#[tokio::test]
async fn rows_are_flat() {
    let [alice, bob] = &users(&["alice", "bob"]).await[..] else {
        unreachable!()
    };
    conversation(alice, "c", &[]).await;
    alice
        .conversation("c")
        .unwrap()
        .send("hello")
        .await
        .unwrap();
    let messages = bob.conversation("c").unwrap().subscribe_messages(None);
    assert!(messages.rows().is_empty());
    assert_eq!(messages.connected().await.unwrap(), None);
    assert!(messages.rows().is_empty());
    bob.conversation("c")
        .unwrap()
        .create_if_not_exists(None)
        .await
        .unwrap();
    let rows = crate::support::until(&messages, |rows| rows.is_some()).await;
    assert_eq!(messages.rows(), rows.unwrap());
    assert_eq!(messages.rows().len(), 1);
    messages.unsubscribe();
    assert!(messages.rows().is_empty());
}

/// `notify` takes a bool as on the wire; `create_if_not_exists` takes `None` for defaults.
#[tokio::test]
async fn notify_takes_a_bool_and_params_are_optional() {
    let [alice, _bob] = &users(&["alice", "bob"]).await[..] else {
        unreachable!()
    };
    let c = alice.conversation("c").unwrap();
    c.create_if_not_exists(None).await.unwrap();
    c.set(talkstore::ConversationParams::new().notify(false))
        .await
        .unwrap();
    assert_eq!(
        c.get().await.unwrap().unwrap().notify,
        talkstore::Notify::Never
    );
    let bob = c.participant("bob").unwrap();
    bob.create_if_not_exists(None).await.unwrap();
    let joined = bob.get().await.unwrap().unwrap();
    assert_eq!(
        (joined.access, joined.notify),
        (talkstore::Access::ReadWrite, talkstore::Notify::Always)
    );
    bob.edit(talkstore::ParticipantParams::new().notify(false))
        .await
        .unwrap();
    assert_eq!(
        bob.get().await.unwrap().unwrap().notify,
        talkstore::Notify::Never
    );
}
