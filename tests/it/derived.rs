//! Derived values over subscriptions (README, "Derived views"): a value derived with
//! futures-signals' `map` + `dedupe` emits when it changes, not when its input does.

use futures_signals::signal::SignalExt;
use futures_util::StreamExt;
use talkstore::{SubscriptionState, UserParams};

use crate::support::{conversation, settle, users};

/// The total unread count over Alice's conversation list emits when a message arrives, and
/// not when a rename changes the list without changing the count.
#[tokio::test]
async fn a_derived_unread_total_emits_only_when_it_changes() {
    let sessions = users(&["alice", "bob"]).await;
    let (alice, bob) = (&sessions[0], &sessions[1]);
    conversation(bob, "c1", &["alice"]).await;
    conversation(bob, "c2", &["alice"]).await;
    let list = alice.subscribe_conversations(None);
    list.connected().await.unwrap();

    let total = list
        .signal()
        .map(|state| match state {
            SubscriptionState::Active { snapshot, .. } => {
                Some(snapshot.iter().map(|c| c.unread_message_count).sum::<u64>())
            }
            _ => None,
        })
        .dedupe();
    let (tx, mut totals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(total.to_stream().for_each(move |total| {
        let _ = tx.send(total);
        std::future::ready(())
    }));
    let next = async |totals: &mut tokio::sync::mpsc::UnboundedReceiver<Option<u64>>| {
        tokio::time::timeout(std::time::Duration::from_secs(20), totals.recv())
            .await
            .expect("a total")
            .expect("the signal lives")
    };
    assert_eq!(next(&mut totals).await, Some(0));

    bob.conversation("c1").unwrap().send("one").await.unwrap();
    bob.conversation("c2").unwrap().send("two").await.unwrap();
    while next(&mut totals).await != Some(2) {}

    // The rename changes both rows (their last message's sender), not the total.
    let before = list.latest().unwrap();
    bob.current_user()
        .set(UserParams::new().name("Robert"))
        .await
        .unwrap();
    crate::support::until(&list, |rows| {
        rows.iter().all(|c| {
            c.last_message
                .as_ref()
                .and_then(|m| m.sender.as_ref())
                .is_some_and(|s| s.name == "Robert")
        })
    })
    .await;
    assert_ne!(list.latest().unwrap(), before);
    settle(&sessions).await;
    tokio::task::yield_now().await;
    assert!(totals.try_recv().is_err(), "a rename moved the total");

    alice
        .conversation("c1")
        .unwrap()
        .mark_as_read()
        .await
        .unwrap();
    assert_eq!(next(&mut totals).await, Some(1));
}
