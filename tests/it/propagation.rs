//! A change to one entity reaches every snapshot that embeds it, once, with sharing.

use std::sync::Arc;

use talkstore::{
    ConversationSnapshot, MessageSnapshot, SendParams, UserParams, UserSnapshot, Vector,
};

use crate::support::{Counter, conversation, settle, users};

fn is_bob(user: &Option<Arc<UserSnapshot>>) -> bool {
    user.as_ref().is_some_and(|u| u.id.as_str() == "bob")
}

fn involves_bob(m: &MessageSnapshot) -> bool {
    is_bob(&m.sender)
        || m.referenced_message
            .as_ref()
            .is_some_and(|r| is_bob(&r.sender))
}

/// Checks one list after Bob's rename: rows showing Bob carry the new name, every other row is
/// the same allocation as before. Returns how many rows show Bob.
fn check_rows<T>(
    before: &Vector<Arc<T>>,
    after: &Vector<Arc<T>>,
    message: impl Fn(&T) -> Option<&MessageSnapshot>,
) -> usize {
    assert_eq!(before.len(), after.len());
    let mut shown = 0;
    for (old, new) in before.iter().zip(after) {
        match message(new) {
            Some(m) if involves_bob(m) => {
                shown += 1;
                assert!(!Arc::ptr_eq(old, new));
                for user in [
                    &m.sender,
                    &m.referenced_message.as_ref().and_then(|r| r.sender.clone()),
                ] {
                    if is_bob(user) {
                        assert_eq!(user.as_ref().unwrap().name, "Robert");
                    }
                }
            }
            _ => assert!(Arc::ptr_eq(old, new), "a row without Bob was rebuilt"),
        }
    }
    shown
}

/// Alice's conversation list (25 conversations, last messages replying to others) and two
/// message windows: Bob's rename emits exactly once where Bob shows, nowhere else, and shares
/// every untouched row.
#[tokio::test]
async fn rename_reaches_nested_senders_once() {
    let sessions = users(&["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &sessions[..] else {
        unreachable!()
    };
    for i in 0..25 {
        let id = format!("c{i:02}");
        conversation(alice, &id, &["bob", "carol"]).await;
        let by = |s: &talkstore::TalkSession| s.conversation(&id).unwrap();
        match i % 5 {
            0 => drop(by(bob).send("from bob").await.unwrap()),
            1 => {
                let bobs = by(bob).send("bob speaks").await.unwrap();
                let reply = SendParams::text("carol replies").referenced_message(bobs.id().clone());
                by(carol).send(reply).await.unwrap();
            }
            2 => drop(by(carol).send("carol alone").await.unwrap()),
            3 => {
                let carols = by(carol).send("carol speaks").await.unwrap();
                let reply =
                    SendParams::text("alice replies").referenced_message(carols.id().clone());
                by(alice).send(reply).await.unwrap();
            }
            _ => {}
        }
    }

    let list_counter = Counter::<Vector<Arc<ConversationSnapshot>>>::new();
    let list = alice.subscribe_conversations_with(None, list_counter.callback());
    list.connected().await.unwrap();
    list.load_more(Some(5)).await.unwrap();
    assert_eq!(list.latest().unwrap().len(), 25);
    assert!(list.loaded_all());

    let with_bob = Counter::<Option<Vector<Arc<MessageSnapshot>>>>::new();
    let window_a = alice
        .conversation("c01")
        .unwrap()
        .subscribe_messages_with(None, with_bob.callback());
    let without_bob = Counter::<Option<Vector<Arc<MessageSnapshot>>>>::new();
    let window_b = alice
        .conversation("c02")
        .unwrap()
        .subscribe_messages_with(None, without_bob.callback());
    window_a.connected().await.unwrap();
    window_b.connected().await.unwrap();
    settle(&sessions).await;
    let (list_before, a_before, b_before) = (
        list.latest().unwrap(),
        window_a.latest().unwrap().unwrap(),
        window_b.latest().unwrap(),
    );
    list_counter.take();
    with_bob.take();
    without_bob.take();

    bob.current_user()
        .set(UserParams::new().name("Robert"))
        .await
        .unwrap();
    settle(&sessions).await;

    assert_eq!(list_counter.take(), 1, "the list shows Bob: one emission");
    assert_eq!(with_bob.take(), 1, "window A shows Bob: one emission");
    assert_eq!(
        without_bob.take(),
        0,
        "window B does not show Bob: no emission"
    );
    assert_eq!(window_b.latest().unwrap(), b_before);

    let list_after = list.latest().unwrap();
    let shown = check_rows(&list_before, &list_after, |c| c.last_message.as_deref());
    assert_eq!(shown, 10, "5 last messages from Bob and 5 replies to Bob");
    let a_after = window_a.latest().unwrap().unwrap();
    assert_eq!(check_rows(&a_before, &a_after, |m| Some(m)), 2);
}
