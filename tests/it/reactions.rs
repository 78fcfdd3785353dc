//! Emoji reactions: the rules of adding and removing them, the cap, concurrency, who sees
//! what, and how a reaction reaches the snapshots that show its message.

use std::sync::Arc;

use futures_util::future::join_all;
use talkstore::{
    ConversationSnapshot, Error, ErrorCode, MAX_REACTIONS_PER_MESSAGE, MessageRef, MessageSnapshot,
    ReactionSnapshot, SendParams, TalkSession, Vector,
};

use crate::support::{Counter, conversation, settle, until, users};

/// `session`'s view of a message's reactions: (emoji, count, whether they reacted).
async fn seen(session: &TalkSession, message: &MessageRef) -> Vec<(String, u64, bool)> {
    let m = session
        .conversation(message.conversation_id().as_str())
        .unwrap()
        .message(message.id().as_str())
        .unwrap();
    let snapshot = m.get().await.unwrap().expect("the message exists");
    triples(&snapshot.reactions)
}

fn triples(reactions: &[ReactionSnapshot]) -> Vec<(String, u64, bool)> {
    reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.count, r.current_user_reacted))
        .collect()
}

fn reaction(emoji: &str, count: u64, mine: bool) -> (String, u64, bool) {
    (emoji.to_owned(), count, mine)
}

/// Adding twice counts once, removing twice is fine, each viewer sees whether they reacted,
/// and an emoji is stored in one form whichever way it was written.
#[tokio::test]
async fn add_and_remove_are_idempotent_per_user() {
    let sessions = users(&["alice", "bob"]).await;
    let [alice, bob] = &sessions[..] else {
        unreachable!()
    };
    conversation(alice, "c", &["bob"]).await;
    let sent = bob.conversation("c").unwrap().send("hi").await.unwrap();
    let on = |s: &TalkSession| {
        s.conversation("c")
            .unwrap()
            .message(sent.id().as_str())
            .unwrap()
    };

    // U+2764 without its variation selector is the same reaction as "❤️".
    on(alice).reactions("\u{2764}").add().await.unwrap();
    on(alice).reactions("❤️").add().await.unwrap();
    assert_eq!(seen(alice, &sent).await, [reaction("❤️", 1, true)]);
    assert_eq!(seen(bob, &sent).await, [reaction("❤️", 1, false)]);

    on(bob).reactions("❤️").add().await.unwrap();
    on(bob).reactions(":party_parrot:").add().await.unwrap();
    assert_eq!(
        seen(alice, &sent).await,
        [
            reaction("❤️", 2, true),
            reaction(":party_parrot:", 1, false)
        ]
    );

    on(alice).reactions("❤️").remove().await.unwrap();
    on(alice).reactions("❤️").remove().await.unwrap();
    assert_eq!(
        seen(alice, &sent).await,
        [
            reaction("❤️", 1, false),
            reaction(":party_parrot:", 1, false)
        ]
    );
    // The last reaction with an emoji takes the emoji away; added again, it goes last.
    on(bob).reactions("❤️").remove().await.unwrap();
    on(alice).reactions("❤️").add().await.unwrap();
    assert_eq!(
        seen(bob, &sent).await,
        [
            reaction(":party_parrot:", 1, true),
            reaction("❤️", 1, false)
        ]
    );

    let party = on(bob).reactions(":party_parrot:");
    let first = party.get_first_reactions().await.unwrap();
    let first = first.expect("a visible message");
    let reactors: Vec<_> = first.iter().map(|r| r.user.name.as_str()).collect();
    assert_eq!(reactors, ["Bob"]);
    let none = on(bob).reactions("👍").get_first_reactions().await.unwrap();
    assert_eq!(none.map(|l| l.len()), Some(0));
}

/// Bad emoji fail before anything is sent; a missing message refuses an add and accepts a
/// removal; a deleted message takes its reactions with it.
#[tokio::test]
async fn bad_input_and_missing_messages() {
    let sessions = users(&["alice"]).await;
    let alice = &sessions[0];
    conversation(alice, "c", &[]).await;
    let c = alice.conversation("c").unwrap();
    let sent = c.send("hi").await.unwrap();
    for bad in ["", "a", "👍👍", ":no spaces:", "🏽"] {
        let error = sent.reactions(bad).add().await.unwrap_err();
        assert!(matches!(error, Error::InvalidEmoji(_)), "{bad:?}: {error}");
        let error = sent.reactions(bad).get_first_reactions().await.unwrap_err();
        assert!(matches!(error, Error::InvalidEmoji(_)), "{bad:?}: {error}");
    }
    assert_eq!(seen(alice, &sent).await, []);

    let missing = c.message("msg_missing").unwrap();
    let error = missing.reactions("👍").add().await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotFound), "{error}");
    missing.reactions("👍").remove().await.unwrap();
    assert!(
        missing
            .reactions("👍")
            .get_first_reactions()
            .await
            .unwrap()
            .is_none()
    );

    sent.reactions("👍").add().await.unwrap();
    sent.delete().await.unwrap();
    assert!(
        sent.reactions("👍")
            .get_first_reactions()
            .await
            .unwrap()
            .is_none()
    );
    let error = sent.reactions("👍").add().await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotFound), "{error}");
}

/// A message carries at most 50 distinct emoji: the 51st is refused with `LIMIT_EXCEEDED`,
/// while more users may still react with the 50 it has; removing one makes room.
#[tokio::test]
async fn at_most_fifty_distinct_emoji() {
    let sessions = users(&["alice", "bob"]).await;
    let [alice, bob] = &sessions[..] else {
        unreachable!()
    };
    conversation(alice, "c", &["bob"]).await;
    let sent = alice.conversation("c").unwrap().send("hi").await.unwrap();
    let emoji = |i: usize| format!(":e{i}:");
    for i in 0..MAX_REACTIONS_PER_MESSAGE {
        sent.reactions(emoji(i)).add().await.unwrap();
    }
    let error = sent.reactions(":one_too_many:").add().await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::LimitExceeded), "{error}");
    let on_bobs = bob.conversation("c").unwrap().message(sent.id().as_str());
    let on_bobs = on_bobs.unwrap();
    let error = on_bobs.reactions(":one_too_many:").add().await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::LimitExceeded), "{error}");
    on_bobs.reactions(emoji(7)).add().await.unwrap();

    let reactions = seen(bob, &sent).await;
    assert_eq!(reactions.len(), MAX_REACTIONS_PER_MESSAGE);
    assert_eq!(reactions[7], reaction(&emoji(7), 2, true));

    sent.reactions(emoji(3)).remove().await.unwrap();
    sent.reactions(":one_too_many:").add().await.unwrap();
    let reactions = seen(alice, &sent).await;
    assert_eq!(reactions.len(), MAX_REACTIONS_PER_MESSAGE);
    assert_eq!(reactions[3], reaction(&emoji(4), 1, true));
    assert_eq!(reactions[49], reaction(":one_too_many:", 1, true));
}

/// Fifty concurrent adds by one user count once; one add by each of fifty users counts fifty.
#[tokio::test]
async fn concurrent_adds_count_each_user_once() {
    let names: Vec<String> = (0..50).map(|i| format!("u{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let sessions = users(&names).await;
    conversation(&sessions[0], "c", &names[1..]).await;
    let sent = sessions[0].conversation("c").unwrap().send("hi").await;
    let sent = sent.unwrap();
    let message = |s: &TalkSession| {
        s.conversation("c")
            .unwrap()
            .message(sent.id().as_str())
            .unwrap()
    };

    let same = message(&sessions[1]);
    let adds = (0..50).map(|_| {
        let reactions = same.reactions("👍");
        async move { reactions.add().await }
    });
    for result in join_all(adds).await {
        result.unwrap();
    }
    assert_eq!(seen(&sessions[0], &sent).await, [reaction("👍", 1, false)]);

    let adds = sessions.iter().map(|s| {
        let reactions = message(s).reactions("🎉");
        async move { reactions.add().await }
    });
    for result in join_all(adds).await {
        result.unwrap();
    }
    assert_eq!(
        seen(&sessions[0], &sent).await,
        [reaction("👍", 1, false), reaction("🎉", 50, true)]
    );
    let first = sent.reactions("🎉").get_first_reactions().await.unwrap();
    let first = first.expect("visible");
    assert_eq!(first.len(), 10, "the first 10 of 50");
    assert!(first.windows(2).all(|w| w[0].created_at <= w[1].created_at));
}

/// A reaction changes its message wherever it shows, once per subscription: the message
/// window that holds it (and a reply quoting it), the lists whose last message it is; every
/// other row keeps its allocation and other subscriptions see nothing.
#[tokio::test]
async fn a_reaction_reaches_every_snapshot_of_its_message_once() {
    let sessions = users(&["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &sessions[..] else {
        unreachable!()
    };
    for i in 0..5 {
        conversation(alice, &format!("c{i}"), &["bob", "carol"]).await;
        let c = bob.conversation(format!("c{i}")).unwrap();
        c.send(format!("hello {i}")).await.unwrap();
    }
    // c0, newest first: alice's "last", carol's reply quoting bob's "first", bob's "first".
    let c0 = |s: &TalkSession| s.conversation("c0").unwrap();
    let first = c0(bob).send("first").await.unwrap();
    let reply = SendParams::text("reply").referenced_message(first.id().clone());
    c0(carol).send(reply).await.unwrap();
    let last = c0(alice).send("last").await.unwrap();

    let list_counter = Counter::<Vector<Arc<ConversationSnapshot>>>::new();
    let list = alice.subscribe_conversations_with(None, list_counter.callback());
    let window_counter = Counter::<Option<Vector<Arc<MessageSnapshot>>>>::new();
    let window = c0(alice).subscribe_messages_with(None, window_counter.callback());
    let other_counter = Counter::<Option<Vector<Arc<MessageSnapshot>>>>::new();
    let other = alice
        .conversation("c1")
        .unwrap()
        .subscribe_messages_with(None, other_counter.callback());
    list.connected().await.unwrap();
    window.connected().await.unwrap();
    other.connected().await.unwrap();
    settle(&sessions).await;
    list_counter.take();
    window_counter.take();
    other_counter.take();

    // A reaction to "first": the window emits once (the message and the reply quoting it);
    // the list, whose c0 row shows "last", does not.
    let rows = window.latest().unwrap().unwrap();
    c0(bob)
        .message(first.id().as_str())
        .unwrap()
        .reactions("👍")
        .add()
        .await
        .unwrap();
    settle(&sessions).await;
    assert_eq!(window_counter.take(), 1);
    assert_eq!(list_counter.take(), 0, "no list row shows the message");
    let after = window.latest().unwrap().unwrap();
    assert!(Arc::ptr_eq(&rows[0], &after[0]), "\"last\" is unchanged");
    let quoted = after[1].referenced_message.as_ref().unwrap();
    assert_eq!(triples(&quoted.reactions), [reaction("👍", 1, false)]);
    assert_eq!(triples(&after[2].reactions), [reaction("👍", 1, false)]);

    // A reaction to "last": one emission each for the window and the list; the list's other
    // rows are the same allocations.
    let rows = list.latest().unwrap();
    last.reactions("🎉").add().await.unwrap();
    settle(&sessions).await;
    assert_eq!(window_counter.take(), 1);
    assert_eq!(list_counter.take(), 1);
    let after = list.latest().unwrap();
    assert_eq!(after.len(), rows.len());
    for (old, new) in rows.iter().zip(after.iter()) {
        if new.id.as_str() == "c0" {
            let shown = new.last_message.as_ref().unwrap();
            assert_eq!(triples(&shown.reactions), [reaction("🎉", 1, true)]);
        } else {
            assert!(Arc::ptr_eq(old, new), "{} was rebuilt", new.id);
        }
    }
    assert_eq!(other_counter.take(), 0, "c1's window saw nothing");
}

/// A reaction made while a session is cut off reaches it when it resumes.
#[tokio::test]
async fn reactions_survive_a_reconnect() {
    let world = crate::support::World::new().await;
    let alice = world.session("alice");
    let bob = world.session("bob");
    for (s, name) in [(&alice, "Alice"), (&bob, "Bob")] {
        let params = talkstore::UserParams::new().name(name);
        s.current_user().set(params).await.unwrap();
    }
    conversation(&alice, "c", &["bob"]).await;
    let sent = alice.conversation("c").unwrap().send("hi").await.unwrap();
    let window = alice.conversation("c").unwrap().subscribe_messages(None);
    window.connected().await.unwrap();
    world.cut();
    let on_bobs = bob.conversation("c").unwrap().message(sent.id().as_str());
    on_bobs.unwrap().reactions("👍").add().await.unwrap();
    let rows = until(&window, |rows| {
        rows.as_ref()
            .and_then(|r| r.front().cloned())
            .is_some_and(|m| !m.reactions.is_empty())
    })
    .await;
    let rows = rows.unwrap();
    assert_eq!(triples(&rows[0].reactions), [reaction("👍", 1, false)]);
}

/// The reactors' window: oldest first, a first page of 10, `load_more` within 1..=100
/// (default 30); a newer reaction joins once the window holds all, a removed one leaves, a
/// renamed reactor shows renamed; `None` for outsiders (until they join) and for a deleted
/// message; a bad emoji ends it with an error.
#[tokio::test]
async fn the_reactors_window_pages_oldest_first() {
    let names: Vec<String> = (0..27).map(|i| format!("u{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let sessions = users(&names).await;
    let owner = &sessions[0];
    conversation(owner, "c", &names[1..26]).await;
    let sent = owner.conversation("c").unwrap().send("hi").await.unwrap();
    let thumbs = |s: &TalkSession| {
        s.conversation("c")
            .unwrap()
            .message(sent.id().as_str())
            .unwrap()
            .reactions("👍")
    };
    for s in &sessions[1..26] {
        thumbs(s).add().await.unwrap();
    }
    let ids = |rows: &Vector<Arc<talkstore::SingleReactionSnapshot>>| -> Vec<String> {
        rows.iter().map(|r| r.user.id.to_string()).collect()
    };
    let expected = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("u{i:02}")).collect()
    };

    let counter = Counter::<Option<Vector<Arc<talkstore::SingleReactionSnapshot>>>>::new();
    let window = thumbs(owner).subscribe_with(counter.callback());
    let rows = window.connected().await.unwrap().expect("visible");
    assert_eq!(ids(&rows), expected(1..11));
    assert!(!window.loaded_all());
    for bad in [0, 101] {
        let error = window.load_more(Some(bad)).await.unwrap_err();
        assert!(
            matches!(error, Error::OutOfRange { max: 100, .. }),
            "{error}"
        );
    }

    // An outsider sees nothing, until they join.
    let theirs = thumbs(&sessions[26]).subscribe();
    assert_eq!(theirs.connected().await.unwrap(), None);
    conversation(owner, "c", &["u26"]).await;
    let rows = until(&theirs, Option::is_some).await.unwrap();
    assert_eq!(ids(&rows), expected(1..11));

    // A newer reaction stays out while the window does not hold everything.
    thumbs(&sessions[26]).add().await.unwrap();
    settle(&sessions).await;
    counter.take();
    window.load_more(None).await.unwrap();
    let rows = window.latest().unwrap().unwrap();
    assert_eq!(ids(&rows), expected(1..27), "30 more: all 26");
    assert!(window.loaded_all());

    // Now every change shows: a new reactor joins last, a removal leaves, a rename shows.
    settle(&sessions).await;
    counter.take();
    thumbs(owner).add().await.unwrap();
    thumbs(&sessions[5]).remove().await.unwrap();
    sessions[3]
        .current_user()
        .set(talkstore::UserParams::new().name("Renamed"))
        .await
        .unwrap();
    settle(&sessions).await;
    assert_eq!(counter.take(), 3, "one emission per change");
    let after = window.latest().unwrap().unwrap();
    let mut want = expected(1..27);
    want.retain(|id| id != "u05");
    want.push("u00".into());
    assert_eq!(ids(&after), want);
    assert_eq!(after[2].user.name, "Renamed");
    assert!(
        Arc::ptr_eq(&rows[0], &after[0]),
        "untouched rows are shared"
    );

    // A deleted message ends the window's rows; a bad emoji ends the subscription.
    sent.delete().await.unwrap();
    until(&window, Option::is_none).await;
    let bad = sent.reactions("not an emoji").subscribe();
    let error = bad.connected().await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidRequest), "{error}");
}
