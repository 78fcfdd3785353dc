//! Window rules: first pages, ordering, load_more bounds, loaded_all, live filters.

use talkstore::{
    ConversationFilter, ConversationParams, CustomFieldFilter, Error, MessageFilter,
    ParticipantParams, SimpleConversationFilter, StringFilter, UserParams,
};

use crate::support::{conversation, settle, users};

/// First pages are 20 conversations, 30 messages and 10 participants; `load_more` grows them
/// with the default page size and `loaded_all` turns true exactly at the end.
#[tokio::test]
async fn first_pages_and_load_more() {
    let names: Vec<String> = (0..25).map(|i| format!("u{i}")).collect();
    let mut all = vec!["alice"];
    all.extend(names.iter().map(String::as_str));
    let sessions = users(&all).await;
    let alice = &sessions[0];
    for i in 0..45 {
        conversation(alice, &format!("c{i}"), &[]).await;
    }
    conversation(alice, "big", &all[1..]).await;
    let big = alice.conversation("big").unwrap();
    for i in 0..65 {
        big.send(format!("message {i}")).await.unwrap();
    }

    let list = alice.subscribe_conversations(None);
    assert_eq!(list.connected().await.unwrap().len(), 20);
    assert!(!list.loaded_all());
    list.load_more(None).await.unwrap();
    assert_eq!(list.latest().unwrap().len(), 40);
    list.load_more(Some(30)).await.unwrap();
    assert_eq!(list.latest().unwrap().len(), 46);
    assert!(list.loaded_all());

    let messages = big.subscribe_messages(None);
    let first = messages.connected().await.unwrap().unwrap();
    assert_eq!(first.len(), 30);
    assert_eq!(first[0].plaintext, "message 64", "newest first");
    messages.load_more(None).await.unwrap();
    assert_eq!(messages.latest().unwrap().unwrap().len(), 60);
    assert!(!messages.loaded_all());
    messages.load_more(Some(100)).await.unwrap();
    let all_messages = messages.latest().unwrap().unwrap();
    assert_eq!(all_messages.len(), 65);
    assert_eq!(all_messages[64].plaintext, "message 0");
    assert!(messages.loaded_all());

    let participants = big.subscribe_participants();
    let first = participants.connected().await.unwrap().unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(
        first[0].user.id.as_str(),
        "u24",
        "most recently joined first"
    );
    participants.load_more(Some(50)).await.unwrap();
    assert_eq!(participants.latest().unwrap().unwrap().len(), 26);
    assert!(participants.loaded_all());
}

/// `load_more` outside its bounds fails at once with a clear error and changes nothing.
#[tokio::test]
async fn load_more_bounds() {
    let sessions = users(&["alice"]).await;
    conversation(&sessions[0], "c", &[]).await;
    let list = sessions[0].subscribe_conversations(None);
    list.connected().await.unwrap();
    for (count, max) in [(0, 30), (31, 30)] {
        let error = list.load_more(Some(count)).await.unwrap_err();
        assert!(
            matches!(error, Error::OutOfRange { count: c, max: m, .. } if c == count && m == max)
        );
        assert!(error.to_string().contains("outside 1..=30"), "{error}");
    }
    let messages = sessions[0]
        .conversation("c")
        .unwrap()
        .subscribe_messages(None);
    messages.connected().await.unwrap();
    assert!(matches!(
        messages.load_more(Some(101)).await,
        Err(Error::OutOfRange { max: 100, .. })
    ));
    let participants = sessions[0]
        .conversation("c")
        .unwrap()
        .subscribe_participants();
    assert!(matches!(
        participants.load_more(Some(51)).await,
        Err(Error::OutOfRange { max: 50, .. })
    ));
    assert!(participants.load_more(Some(50)).await.is_ok());
    assert_eq!(list.latest().unwrap().len(), 1);
}

/// A new message moves its conversation to the front; joining one puts it at the front.
#[tokio::test]
async fn activity_orders_the_list() {
    let sessions = users(&["alice", "bob"]).await;
    let [alice, bob] = &sessions[..] else {
        unreachable!()
    };
    for id in ["a", "b", "c"] {
        conversation(alice, id, &["bob"]).await;
    }
    let list = alice.subscribe_conversations(None);
    let ids = |list: &talkstore::ConversationListSubscription| -> Vec<String> {
        list.latest()
            .unwrap()
            .iter()
            .map(|c| c.id.to_string())
            .collect()
    };
    list.connected().await.unwrap();
    assert_eq!(ids(&list), ["c", "b", "a"]);
    bob.conversation("a").unwrap().send("bump").await.unwrap();
    settle(&sessions).await;
    assert_eq!(ids(&list), ["a", "c", "b"]);
    conversation(bob, "d", &["alice"]).await;
    settle(&sessions).await;
    assert_eq!(ids(&list), ["d", "a", "c", "b"]);
    // Leaving removes it.
    alice
        .conversation("c")
        .unwrap()
        .participant("alice")
        .unwrap()
        .delete()
        .await
        .unwrap();
    assert_eq!(ids(&list), ["d", "a", "b"]);
}

/// A filtered list gains and loses conversations live as they start and stop matching.
#[tokio::test]
async fn filtered_list_is_live() {
    let sessions = users(&["alice", "bob"]).await;
    let [alice, bob] = &sessions[..] else {
        unreachable!()
    };
    conversation(alice, "support-1", &["bob"]).await;
    conversation(alice, "sales-1", &["bob"]).await;
    let support = |id: &str| {
        let c = alice.conversation(id).unwrap();
        async move {
            c.set(ConversationParams::new().custom_field("category", Some("support")))
                .await
        }
    };
    support("support-1").await.unwrap();
    let filter: ConversationFilter =
        r#"{"custom": {"category": ["==", "support"]}}"#.parse().unwrap();
    let list = alice.subscribe_conversations(Some(filter));
    let ids = |list: &talkstore::ConversationListSubscription| -> Vec<String> {
        list.latest()
            .unwrap()
            .iter()
            .map(|c| c.id.to_string())
            .collect()
    };
    list.connected().await.unwrap();
    assert_eq!(ids(&list), ["support-1"]);

    support("sales-1").await.unwrap();
    assert_eq!(ids(&list), ["sales-1", "support-1"]);
    alice
        .conversation("support-1")
        .unwrap()
        .set(ConversationParams::new().custom_field("category", None))
        .await
        .unwrap();
    assert_eq!(ids(&list), ["sales-1"]);

    // Unread filter: Bob's message makes a conversation unread, reading it removes it.
    let unread =
        alice.subscribe_conversations(Some(SimpleConversationFilter::new().is_unread(true).into()));
    assert!(unread.connected().await.unwrap().is_empty());
    bob.conversation("support-1")
        .unwrap()
        .send("help?")
        .await
        .unwrap();
    settle(&sessions).await;
    assert_eq!(ids(&unread), ["support-1"]);
    assert_eq!(unread.latest().unwrap()[0].unread_message_count, 1);
    alice
        .conversation("support-1")
        .unwrap()
        .mark_as_read()
        .await
        .unwrap();
    assert!(ids(&unread).is_empty());
    alice
        .conversation("sales-1")
        .unwrap()
        .mark_as_unread()
        .await
        .unwrap();
    let marked = unread.latest().unwrap();
    assert_eq!(ids(&unread), ["sales-1"]);
    assert!(marked[0].is_unread && marked[0].unread_message_count == 0);

    // A builder-made filter with `any`.
    let any = ConversationFilter::any([
        SimpleConversationFilter::new().custom("category", CustomFieldFilter::Exists),
        SimpleConversationFilter::new().subject(StringFilter::Eq(Some("x".to_owned()))),
    ]);
    let either = alice.subscribe_conversations(Some(any));
    assert_eq!(either.connected().await.unwrap().len(), 1);
    alice
        .conversation("support-1")
        .unwrap()
        .participant("bob")
        .unwrap()
        .edit(ParticipantParams::new())
        .await
        .unwrap();
}

/// A message window filtered on senders gains a sender's messages once the sender starts
/// matching, and a subscription to a user who does not exist yet sees the user created.
#[tokio::test]
async fn sender_filters_and_missing_users_are_live() {
    let sessions = users(&["alice", "bob"]).await;
    let [alice, bob] = &sessions[..] else {
        unreachable!()
    };
    conversation(alice, "chat", &["bob"]).await;
    bob.conversation("chat")
        .unwrap()
        .send("from bob")
        .await
        .unwrap();
    let filter: MessageFilter = r#"{"sender": {"custom": {"team": ["==", "support"]}}}"#
        .parse()
        .unwrap();
    let window = alice
        .conversation("chat")
        .unwrap()
        .subscribe_messages(Some(filter));
    assert!(window.connected().await.unwrap().unwrap().is_empty());
    let carol = alice.user("carol").unwrap().subscribe();
    assert!(carol.connected().await.unwrap().is_none());

    bob.current_user()
        .set(UserParams::new().custom_field("team", Some("support")))
        .await
        .unwrap();
    settle(&sessions).await;
    let texts: Vec<String> = window
        .latest()
        .unwrap()
        .unwrap()
        .iter()
        .map(|m| m.plaintext.clone())
        .collect();
    assert_eq!(texts, ["from bob"]);

    // Without the filtered window, which any user change concerns.
    drop(window);
    settle(&sessions).await;
    alice
        .user("carol")
        .unwrap()
        .create_if_not_exists(UserParams::new().name("Carol"))
        .await
        .unwrap();
    settle(&sessions).await;
    assert_eq!(carol.latest().unwrap().unwrap().name, "Carol");
}

/// A list's keyed diffs are the changes themselves, never the whole list again: a message to
/// the last conversation moves its row to the front and then replaces that row's snapshot, a
/// new conversation is one insert, a left one one removal, and older messages loaded are
/// inserted at the end. Replaying the diffs gives every snapshot.
#[tokio::test]
async fn keyed_diffs_are_the_changes() {
    use std::sync::Arc;

    use futures_signals::signal_vec::{SignalVecExt, VecDiff};
    use futures_util::StreamExt;

    let sessions = users(&["alice"]).await;
    let alice = &sessions[0];
    for c in ["a", "b", "c"] {
        conversation(alice, c, &[]).await;
        alice.conversation(c).unwrap().send(c).await.unwrap();
    }
    let list = alice.subscribe_conversations(None);
    list.connected().await.unwrap();
    let mut diffs = list.signal_vec().to_stream();
    let mut replay = match diffs.next().await {
        Some(VecDiff::Replace { values }) => values,
        other => panic!("expected the rows first, got {other:?}"),
    };
    // Applies diffs until the replay equals the latest snapshot; returns their kinds.
    async fn kinds<X: std::fmt::Debug>(
        diffs: &mut (impl futures_util::Stream<Item = VecDiff<Arc<X>>> + Unpin),
        replay: &mut Vec<Arc<X>>,
        latest: &talkstore::Vector<Arc<X>>,
    ) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        while replay.len() != latest.len()
            || replay.iter().zip(latest).any(|(a, b)| !Arc::ptr_eq(a, b))
        {
            let diff = diffs.next().await.expect("a diff");
            kinds.push(match diff {
                VecDiff::InsertAt { index, value } => {
                    replay.insert(index, value);
                    "insert"
                }
                VecDiff::UpdateAt { index, value } => {
                    replay[index] = value;
                    "update"
                }
                VecDiff::RemoveAt { index } => {
                    replay.remove(index);
                    "remove"
                }
                VecDiff::Move {
                    old_index,
                    new_index,
                } => {
                    let row = replay.remove(old_index);
                    replay.insert(new_index, row);
                    "move"
                }
                VecDiff::Push { value } => {
                    replay.push(value);
                    "insert"
                }
                VecDiff::Pop {} => {
                    replay.pop();
                    "remove"
                }
                other => panic!("a whole-list diff: {other:?}"),
            });
        }
        kinds
    }
    let ids = |l: &talkstore::Vector<Arc<talkstore::ConversationSnapshot>>| -> Vec<String> {
        l.iter().map(|c| c.id.to_string()).collect()
    };

    alice
        .conversation("a")
        .unwrap()
        .send("again")
        .await
        .unwrap();
    let latest = list.latest().unwrap();
    assert_eq!(ids(&latest), ["a", "c", "b"]);
    assert_eq!(
        kinds(&mut diffs, &mut replay, &latest).await,
        ["move", "update"]
    );

    conversation(alice, "d", &[]).await;
    let latest = list.latest().unwrap();
    assert_eq!(ids(&latest), ["d", "a", "c", "b"]);
    assert_eq!(kinds(&mut diffs, &mut replay, &latest).await, ["insert"]);

    alice
        .conversation("c")
        .unwrap()
        .participant("alice")
        .unwrap()
        .delete()
        .await
        .unwrap();
    let latest = list.latest().unwrap();
    assert_eq!(ids(&latest), ["d", "a", "b"]);
    assert_eq!(kinds(&mut diffs, &mut replay, &latest).await, ["remove"]);

    let chat = alice.conversation("a").unwrap();
    for i in 0..40 {
        chat.send(format!("m{i}")).await.unwrap();
    }
    let messages = chat.subscribe_messages(None);
    messages.connected().await.unwrap();
    let mut diffs = messages.signal_vec().to_stream();
    let mut replay = match diffs.next().await {
        Some(VecDiff::Replace { values }) => values,
        other => panic!("expected the rows first, got {other:?}"),
    };
    messages.load_more(Some(5)).await.unwrap();
    let latest = messages.latest().unwrap().unwrap();
    assert_eq!(latest.len(), 35);
    assert_eq!(kinds(&mut diffs, &mut replay, &latest).await, ["insert"; 5]);
}
