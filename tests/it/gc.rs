//! Garbage collection: the cache holds only what live subscriptions read.

use talkstore::SendParams;

use crate::support::{conversation, settle, users};

/// 10,000 messages in 100 conversations, all subscribed: dropping every subscription empties
/// the cache.
#[tokio::test]
async fn dropping_all_subscriptions_empties_the_cache() {
    let sessions = users(&["alice", "bob"]).await;
    let [alice, bob] = &sessions[..] else {
        unreachable!()
    };
    for c in 0..100 {
        let id = format!("c{c}");
        conversation(alice, &id, &["bob"]).await;
        let mut last = None;
        for m in 0..100 {
            let sender = if m % 2 == 0 { alice } else { bob };
            let mut params = SendParams::text(format!("m{m}"));
            if let Some(previous) = last.take() {
                params = params.referenced_message(previous);
            }
            last = Some(
                sender
                    .conversation(&id)
                    .unwrap()
                    .send(params)
                    .await
                    .unwrap()
                    .id()
                    .clone(),
            );
        }
    }
    assert_eq!(
        alice.stats().entities(),
        0,
        "nothing is cached without subscriptions"
    );

    let list = alice.subscribe_conversations(None);
    list.connected().await.unwrap();
    while !list.loaded_all() {
        list.load_more(Some(30)).await.unwrap();
    }
    let mut windows = Vec::new();
    let mut participants = Vec::new();
    for c in 0..100 {
        let conversation = alice.conversation(format!("c{c}")).unwrap();
        let window = conversation.subscribe_messages(None);
        window.connected().await.unwrap();
        window.load_more(Some(100)).await.unwrap();
        assert_eq!(window.latest().unwrap().unwrap().len(), 100);
        windows.push(window);
        participants.push(conversation.subscribe_participants());
    }
    let user = alice.user("bob").unwrap().subscribe();
    user.connected().await.unwrap();
    settle(&sessions).await;
    let full = alice.stats();
    assert_eq!(full.messages, 10_000);
    assert_eq!(full.users, 2);
    assert_eq!(full.conversations, 100);
    assert!(full.approx_bytes > 1_000_000, "{full:?}");

    drop(windows);
    drop(participants);
    drop(list);
    drop(user);
    settle(&sessions).await;
    let empty = alice.stats();
    assert_eq!(empty.entities(), 0, "{empty:?}");
    assert_eq!(empty.subscriptions, 0);
}
