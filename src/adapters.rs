//! Bridges from subscriptions to UI frameworks' signals. Each adapter only moves values from a
//! subscription's futures-signals signal into the framework's own signal type.

#[cfg(feature = "dioxus")]
mod dioxus;
#[cfg(feature = "leptos")]
mod leptos;
#[cfg(feature = "reactive-graph")]
mod reactive_graph;

#[cfg(feature = "dioxus")]
pub use self::dioxus::use_subscription;

/// Alice and Bob in app `app`, with a conversation `c` that Bob made, Alice is in and Bob wrote
/// one message to: the set-up of the adapters' derived-view tests.
#[cfg(all(test, any(feature = "dioxus", feature = "reactive-graph")))]
async fn alice_and_bob(app: &str) -> (crate::TalkSession, crate::TalkSession) {
    use crate::{ConversationParams, ParticipantParams, SessionOptions, UserParams};
    let session = |user: &str| crate::get_talk_session(SessionOptions::new(app, user)).unwrap();
    let (alice, bob) = (session("alice"), session("bob"));
    for (s, name) in [(&alice, "Alice"), (&bob, "Bob")] {
        s.current_user()
            .set(UserParams::new().name(name))
            .await
            .unwrap();
    }
    let chat = bob.conversation("c").unwrap();
    chat.set(ConversationParams::new()).await.unwrap();
    chat.participant("alice")
        .unwrap()
        .set(ParticipantParams::new())
        .await
        .unwrap();
    chat.send("hello").await.unwrap();
    (alice, bob)
}
