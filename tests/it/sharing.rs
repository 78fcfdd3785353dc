//! Identical subscriptions of one session share one subscription; `load_more` on one handle
//! never changes another's window.

use std::sync::Arc;

use futures_signals::{signal::SignalExt, signal_vec::SignalVecExt};
use futures_util::StreamExt;
use talkstore::{MessageSnapshot, SubscriptionState};

use crate::support::{Counter, conversation, settle, until, users};

/// Alice alone in conversation `c` with `n` messages: her session (kept with the others of
/// the world) and the conversation.
async fn alice_with(n: usize) -> (Vec<talkstore::TalkSession>, talkstore::ConversationRef) {
    let sessions = users(&["alice"]).await;
    conversation(&sessions[0], "c", &[]).await;
    let c = sessions[0].conversation("c").unwrap();
    for i in 0..n {
        c.send(format!("m{i}")).await.unwrap();
    }
    (sessions, c)
}

fn ids(rows: &talkstore::Vector<Arc<MessageSnapshot>>) -> Vec<String> {
    rows.iter().map(|m| m.id.to_string()).collect()
}

/// A second identical subscription joins the first: it is active at once with the same
/// snapshots, both emit once per change, and the subscription lives until the last handle
/// ends.
#[tokio::test]
async fn identical_subscriptions_share_one() {
    let (sessions, c) = alice_with(40).await;
    let alice = &sessions[0];
    let (count_a, count_b) = (Counter::new(), Counter::new());
    let a = c.subscribe_messages_with(None, count_a.callback());
    let first = a.connected().await.unwrap().unwrap();
    assert_eq!(first.len(), 30);

    let b = c.subscribe_messages_with(None, count_b.callback());
    let joined = b
        .latest()
        .expect("a joining handle is active at once")
        .unwrap();
    assert!(
        Arc::ptr_eq(&first[0], &joined[0]),
        "one cache, one snapshot"
    );
    b.connected().await.unwrap();
    assert_eq!(
        (count_a.take(), count_b.take()),
        (1, 1),
        "joining emits to the joiner only"
    );
    assert_eq!(alice.stats().subscriptions, 1);

    c.send("new").await.unwrap();
    let rows = until(&a, |m| m.as_ref().is_some_and(|m| m.len() == 31)).await;
    settle(&sessions).await;
    assert_eq!(b.latest().unwrap(), rows, "both see the same window");
    assert_eq!((count_a.take(), count_b.take()), (1, 1));

    b.unsubscribe();
    assert_eq!(b.state(), SubscriptionState::Unsubscribed);
    c.send("after").await.unwrap();
    until(&a, |m| m.as_ref().is_some_and(|m| m.len() == 32)).await;
    settle(&sessions).await;
    assert_eq!(alice.stats().subscriptions, 1, "the other handle keeps it");
    drop(a);
    settle(&sessions).await;
    assert_eq!(alice.stats().subscriptions, 0, "the last handle ends it");
}

/// `load_more` on a shared handle takes it to a window of its own; the other keeps its rows,
/// both stay live, and a handle alone grows in place.
#[tokio::test]
async fn load_more_takes_a_handle_to_its_own_window() {
    let (sessions, c) = alice_with(100).await;
    let alice = &sessions[0];
    let a = c.subscribe_messages(None);
    let b = c.subscribe_messages(None);
    let first = a.connected().await.unwrap().unwrap();
    b.connected().await.unwrap();
    let mut diffs = a.signal_vec().to_signal_cloned().to_stream();
    assert_eq!(diffs.next().await.unwrap().len(), 30);

    a.load_more(Some(10)).await.unwrap();
    let grown = a.latest().unwrap().unwrap();
    assert_eq!(
        ids(&grown)[..30],
        ids(&first)[..],
        "the shared rows, then ten older"
    );
    assert_eq!(grown.len(), 40);
    assert!(!a.loaded_all());
    assert_eq!(
        b.latest().unwrap().unwrap(),
        first,
        "the other handle is unchanged"
    );
    assert_eq!(alice.stats().subscriptions, 2);
    let mut seen = diffs.next().await.unwrap();
    while seen.len() != 40 {
        seen = diffs.next().await.unwrap();
    }
    assert_eq!(
        talkstore::Vector::from(seen),
        grown,
        "keyed diffs follow the move"
    );
    let third = c.subscribe_messages(None);
    assert_eq!(
        third
            .latest()
            .expect("joins the window left behind")
            .unwrap(),
        first
    );
    assert_eq!(alice.stats().subscriptions, 2);
    drop(third);

    c.send("new").await.unwrap();
    until(&a, |m| m.as_ref().is_some_and(|m| m.len() == 41)).await;
    until(&b, |m| m.as_ref().is_some_and(|m| m.len() == 31)).await;

    // Alone now, `a` grows its own window in place, to everything.
    a.load_more(Some(100)).await.unwrap();
    assert_eq!(a.latest().unwrap().unwrap().len(), 101);
    assert!(a.loaded_all());
    assert_eq!(alice.stats().subscriptions, 2);
    assert_eq!(b.latest().unwrap().unwrap().len(), 31);
}

/// A window that no longer equals a first page (a new row arrived) is not joined: a new handle
/// gets a first page of its own.
#[tokio::test]
async fn a_window_that_changed_is_not_joined() {
    let (sessions, c) = alice_with(30).await;
    let alice = &sessions[0];
    let a = c.subscribe_messages(None);
    a.connected().await.unwrap();
    c.send("new").await.unwrap();
    until(&a, |m| m.as_ref().is_some_and(|m| m.len() == 31)).await;

    let b = c.subscribe_messages(None);
    assert_eq!(alice.stats().subscriptions, 2, "b subscribes on its own");
    let rows = b.connected().await.unwrap().unwrap();
    assert_eq!(rows.len(), 30);
}

/// More identical handles than a connection may hold subscriptions all work: they are one
/// subscription on the engine.
#[tokio::test]
async fn identical_handles_beyond_the_subscription_limit() {
    let sessions = users(&["alice", "bob"]).await;
    let alice = &sessions[0];
    let bob = alice.user("bob").unwrap();
    let handles: Vec<_> = (0..talkstore::MAX_SUBSCRIPTIONS_PER_CONNECTION + 1)
        .map(|_| bob.subscribe())
        .collect();
    for handle in &handles {
        assert_eq!(handle.connected().await.unwrap().unwrap().name, "Bob");
    }
    assert_eq!(alice.stats().subscriptions, 1);
    sessions[1]
        .current_user()
        .set(talkstore::UserParams::new().name("Robert"))
        .await
        .unwrap();
    for handle in &handles {
        until(handle, |u| u.as_ref().is_some_and(|u| u.name == "Robert")).await;
    }
}
