//! The TalkSession examples of the TalkJS docs, in Rust, on the embedded engine.
//!
//! Alice and Bob chat; Bob renames himself, and Alice's live conversation list shows the new
//! name inside `last_message.sender` and `last_message.referenced_message.sender`, in one
//! emission.
//!
//! Run with `cargo run --example quickstart`.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;

use talkstore::{
    ConversationParams, ConversationSnapshot, Notify, ParticipantParams, SendParams,
    SessionOptions, UserParams, Vector, get_talk_session,
};

fn print_list(label: &str, list: &Vector<Arc<ConversationSnapshot>>) {
    println!("── {label}: {} conversation(s)", list.len());
    for c in list {
        let subject = c.subject.as_deref().unwrap_or("(no subject)");
        println!(
            "   {} {subject:?} unread={} notify={:?}",
            c.id, c.unread_message_count, c.notify
        );
        if let Some(m) = &c.last_message {
            let sender = m.sender.as_ref().map_or("system", |u| u.name.as_str());
            println!("     last: {sender}: {:?}", m.plaintext);
            if let Some(r) = &m.referenced_message {
                let sender = r.sender.as_ref().map_or("?", |u| u.name.as_str());
                println!("     replying to {sender}: {:?}", r.plaintext);
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let alice = get_talk_session(SessionOptions::new("quickstart", "alice"))?;
    let bob = get_talk_session(SessionOptions::new("quickstart", "bob"))?;

    // Create users (session.user("test").createIfNotExists({ name: "Alice" })).
    alice
        .current_user()
        .create_if_not_exists(UserParams::new().name("Alice"))
        .await?;
    bob.current_user()
        .create_if_not_exists(UserParams::new().name("Bob"))
        .await?;

    // Subscribe to a user, then rename: the subscription emits.
    let bob_sub = alice.user("bob")?.subscribe();
    let first = bob_sub.connected().await?;
    println!(
        "── bob as seen by alice: {:?}",
        first.map(|u| u.name.clone())
    );

    // Create a conversation, set its subject, stop notifications, add Bob.
    let chat = alice.conversation("test")?;
    chat.create_if_not_exists(ConversationParams::new()).await?;
    chat.set(ConversationParams::new().subject("Power tools"))
        .await?;
    chat.set(ConversationParams::new().notify(Notify::Never))
        .await?;
    chat.participant("bob")?
        .create_if_not_exists(ParticipantParams::new())
        .await?;

    // Alice's live conversation list, printed on every snapshot.
    let list = alice.subscribe_conversations_with(
        None,
        Some(Box::new(|list, _loaded_all| {
            print_list("alice's conversations", list)
        })),
    );
    list.connected().await?;

    // Send, and reply.
    let hello = chat.send("Hello").await?;
    let bobs_chat = bob.conversation("test")?;
    let reply = bobs_chat.send("Hi *Alice*").await?;
    chat.send(SendParams::text("Do you have a drill?").referenced_message(reply.id().clone()))
        .await?;
    println!(
        "── sent {} and {}; replied to {}",
        hello.id(),
        reply.id(),
        reply.id()
    );

    // Bob renames himself: one emission of the list, with the new name nested twice. The rename
    // is Bob's write; Alice's session sees it when its own update arrives, so wait for it.
    let mut snapshots = list.stream();
    bob.current_user()
        .set(UserParams::new().name("Robert"))
        .await?;
    let renamed = |s: &Vector<Arc<ConversationSnapshot>>| {
        let reply = s
            .front()?
            .last_message
            .as_ref()?
            .referenced_message
            .as_ref()?;
        Some(reply.sender.as_ref()?.name == "Robert")
    };
    let snapshot = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(snapshot) = snapshots.next().await {
            if renamed(&snapshot) == Some(true) {
                return Some(snapshot);
            }
        }
        None
    })
    .await?
    .ok_or("the list ended before the rename arrived")?;
    print_list("alice's conversations after the rename", &snapshot);
    println!(
        "── bob as seen by alice: {:?}",
        bob_sub.latest().flatten().map(|u| u.name.clone())
    );

    // Let the callback of the last frame run before exiting.
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!("── done: cache holds {} entities", alice.stats().entities());
    Ok(())
}
