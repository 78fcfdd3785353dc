//! `talkstore` gives UI apps a live, reactive view of chat data: users, conversations,
//! participants and messages, through the TalkJS Data API (`getTalkSession` /
//! `TalkSession`) in idiomatic Rust, with its own backend.
//!
//! # The model
//!
//! A [`TalkSession`] acts as one user of one app. Refs ([`UserRef`], [`ConversationRef`],
//! [`ParticipantRef`], [`MessageRef`]) hold ids and do no IO until you call them. Reads return
//! immutable snapshots behind `Arc`; subscriptions keep them live. Every subscription reads
//! one **normalized cache** per session: a record (a user, a message) is stored once, and a
//! change to it reaches every snapshot that shows it (the sender of the last message of the
//! third conversation in a list) in **one emission per subscription**, while every unchanged
//! part of the snapshot stays the same allocation, so a UI can skip work with
//! [`Arc::ptr_eq`](std::sync::Arc::ptr_eq).
//!
//! The session talks to an [`Engine`], which holds the data and enforces the rules
//! (permissions, read state, idempotent sends). What users may change is the engine's
//! [`Policy`]: permissive as TalkJS with client-side syncing (the embedded default), or
//! restricted (the server's default: no joining uninvited, no raising your own access, no
//! editing other users). By default each app id gets a process-wide in-memory engine: no
//! set-up at all. [`Engine::open`] keeps the data in SQLite, and
//! `talkstore-server` serves the same engine to many users over a websocket:
//! [`SessionOptions::url`] connects to it, and the same app code works against both.
//!
//! # Quick start
//!
//! ```
//! use talkstore::{ConversationParams, SessionOptions, UserParams, get_talk_session};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), talkstore::Error> {
//! let alice = get_talk_session(SessionOptions::new("docs-app", "alice"))?;
//! alice.current_user().set(UserParams::new().name("Alice")).await?;
//!
//! let chat = alice.conversation("chat")?;
//! chat.set(ConversationParams::new().subject("Power tools")).await?;
//!
//! // A live window of Alice's conversations.
//! let list = alice.subscribe_conversations(None);
//! list.connected().await?;
//!
//! chat.send("Hello *world*").await?;
//! let snapshot = list.latest().expect("active");
//! let last = snapshot[0].last_message.as_ref().expect("a message");
//! assert_eq!(last.plaintext, "Hello world");
//! assert_eq!(last.sender.as_ref().expect("sender").name, "Alice");
//! # Ok(()) }
//! ```
//!
//! Each subscription offers its state ([`Subscription::state`], [`Subscription::latest`]),
//! a futures-signals [`Subscription::signal`], a [`Subscription::stream`],
//! [`Subscription::connected`] / [`Subscription::terminated`], an optional `on_snapshot`
//! callback (the `*_with` methods), and for windows [`ListSubscription::rows`],
//! [`ListSubscription::load_more`], [`ListSubscription::loaded_all`] and keyed list diffs
//! with [`ListSubscription::signal_vec`].
//!
//! Identical subscriptions of a session (same target and filter) share one subscription while
//! their window is still the one a new subscription would start with: a component mounted
//! twice costs one subscription on the engine and one snapshot per change. A second handle
//! joins at once, already active. `load_more` on a shared handle moves it to a window of its
//! own (one round trip); the other handles keep theirs.
//!
//! Messages carry emoji reactions: [`MessageRef::reactions`] gives a [`ReactionsRef`] to add
//! or remove yours and list who reacted, and [`MessageSnapshot::reactions`] shows per emoji
//! its count and whether you reacted. A reaction is one more change to its message: every
//! window and list row that shows the message emits once, nothing else.
//!
//! `connected()` resolves after the first `on_snapshot` callback ran; a write resolves after
//! its effects are in the session's snapshots; [`TalkSession::sync`] waits for everyone
//! else's writes made before it.
//!
//! # Design
//!
//! - **Normalized end to end**: the engine sends records and window memberships, never
//!   denormalized snapshots; a rename travels once.
//! - **Glitch-free**: a frame of changes is applied completely before anything is published;
//!   callbacks run after every subscription's state is updated.
//! - **Garbage collected**: records no live subscription reads are evicted
//!   ([`TalkSession::stats`] shows what is cached).
//!
//! # Features
//!
//! | Name | Description | Default? |
//! |---|---|---|
//! | `embedded` | The in-process engine ([`Engine`]); sessions without a URL use it. Required for now. | yes |
//! | `websocket` | The websocket client transport: [`SessionOptions::url`]. | yes |
//! | `leptos` | leptos_reactive 0.6 signals: `Subscription::to_leptos_signal`. | no |
//! | `reactive-graph` | reactive_graph 0.2 (Leptos 0.8) signals: `Subscription::to_read_signal`, `to_arc_read_signal` and their `_local` variants. | no |
//! | `dioxus` | Dioxus 0.7 hooks: `use_subscription`. | no |
//! | `sqlite` | Persistent storage in a bundled SQLite: [`Engine::open`]. | no |
//! | `server` | [`server`]: the `talkstore-server` binary and library (axum, JWT, SQLite, REST). | no |
//! | `bench-internals` | Exposes store fixtures to the benchmarks. Not a stable API. | no |

#[cfg(not(feature = "embedded"))]
compile_error!("talkstore needs the `embedded` feature: sessions fall back to the engine");

mod adapters;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench;
mod engine;
mod error;
mod model;
mod params;
mod protocol;
#[cfg(feature = "server")]
pub mod server;
mod session;
mod store;
mod transport;

/// The hash maps and sets of the engine's and the store's per-key bookkeeping: foldhash,
/// randomly seeded per map, several times faster than SipHash on short ids.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// See [`HashMap`].
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

#[cfg(feature = "dioxus")]
#[doc(inline)]
pub use self::adapters::use_subscription;
#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use self::engine::Durability;
#[doc(inline)]
pub use self::{
    engine::{
        Engine, EngineError, MAX_MESSAGE_TEXT_BYTES, MAX_SUBSCRIPTIONS_PER_CONNECTION, Policy,
        StorageError,
    },
    error::Error,
    model::{
        Access, ContentBlock, ContentError, ConversationFilter, ConversationId,
        ConversationSnapshot, Custom, CustomFieldFilter, CustomFilter, FileBlock, FileKind,
        FileToken, FilterError, InvalidEmoji, InvalidId, MAX_CUSTOM_EMOJI_NAME,
        MAX_REACTIONS_PER_MESSAGE, MessageFilter, MessageId, MessageSnapshot, MessageType, Notify,
        NumberFilter, Origin, ParticipantSnapshot, ReactionSnapshot, ReferencedMessageSnapshot,
        SendContentBlock, SenderFilter, SimpleConversationFilter, SimpleMessageFilter,
        SingleReactionSnapshot, StringFilter, TextNode, Timestamp, UserId, UserSnapshot, plaintext,
    },
    params::{
        Body, ConversationParams, CustomPatch, EditParams, ParticipantParams, Patch, SendParams,
        UserParams,
    },
    protocol::ErrorCode,
    session::{
        ConversationListSubscription, ConversationRef, ConversationSubscription,
        ErrorHandlerHandle, ListSubscription, MessageListSubscription, MessageRef, OnSnapshot,
        ParticipantListSubscription, ParticipantRef, ParticipantSubscription,
        ReactionListSubscription, ReactionsRef, SessionOptions, Subscription, SubscriptionState,
        TalkSession, UserRef, UserSubscription, get_talk_session,
    },
    store::StoreStats,
};
#[doc(no_inline)]
pub use imbl::Vector;
