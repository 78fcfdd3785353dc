//! The client's connection lifecycle: subscriptions made before or between connections, rate
//! limits on subscribes and unsubscribes, sessions that outlive their runtime, and sockets
//! that close when their session goes away.

use std::time::Duration;

use talkstore::{Engine, SessionOptions, TalkSession, UserParams, get_talk_session};

use crate::support::until;

/// The session of `user` in `app`, on `engine`.
fn embedded(app: &str, user: &str, engine: &Engine) -> TalkSession {
    get_talk_session(SessionOptions::new(app, user).engine(engine.clone())).unwrap()
}

/// Runs `body` on a runtime of its own, which ends (with all its tasks) when it returns; a
/// body that hangs fails after 30 s.
fn on_short_lived_runtime<T>(body: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), body).await })
        .expect("the body finished in time")
}

/// A session keeps working on a new runtime after the one it was created and used on ended:
/// requests complete and subscriptions stay live. Also for a session only created there.
#[test]
fn embedded_sessions_outlive_their_runtime() {
    let app = crate::support::app();
    let engine = Engine::new();
    let alice = on_short_lived_runtime(async {
        let alice = embedded(&app, "alice", &engine);
        let me = alice.current_user();
        me.set(UserParams::new().name("Alice")).await.unwrap();
        alice
    });
    let bob = on_short_lived_runtime(async { embedded(&app, "bob", &engine) });
    on_short_lived_runtime(async {
        let watched = bob.user("alice").unwrap().subscribe();
        let me = alice.current_user();
        me.set(UserParams::new().name("Alicia")).await.unwrap();
        until(&watched, |u| u.as_ref().is_some_and(|u| u.name == "Alicia")).await;
    });
}

/// Tests that run in parallel on the default engine share one session per app and user; the
/// one whose runtime ends first must not take the session down with it. (The harness runs
/// these two at the same time when it has two threads; either way each must pass.)
mod shared_between_tests {
    use talkstore::{SessionOptions, UserParams, get_talk_session};

    const APP: &str = "it-lifecycle-shared-between-tests";

    async fn body(name: &str) {
        let session = get_talk_session(SessionOptions::new(APP, "shared")).unwrap();
        let me = session.current_user();
        let sub = me.subscribe();
        for round in 0..50 {
            let name = format!("{name}-{round}");
            me.set(UserParams::new().name(&name)).await.unwrap();
            crate::support::until(&sub, |u| u.as_ref().is_some()).await;
            tokio::task::yield_now().await;
        }
    }

    /// One of two tests sharing a session (see the module).
    #[tokio::test]
    async fn first() {
        tokio::time::timeout(TIMEOUT, body("first")).await.unwrap();
    }

    /// The other one.
    #[tokio::test]
    async fn second() {
        tokio::time::timeout(TIMEOUT, body("second")).await.unwrap();
    }

    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
}

#[cfg(feature = "server")]
mod over_websocket {
    use talkstore::{
        ConversationListSubscription, ConversationParams, MessageListSubscription,
        ParticipantParams, Policy, UserSubscription, server::Limits,
    };

    use super::*;
    use crate::support::{app, proxy::Proxy, server::Running};

    /// A server (default limits unless `configure` changes them) with users alice, bob, carol
    /// and dave, conversation `c` of all four holding `messages` messages from alice, and
    /// conversation `empty` of alice and dave. Alice connects directly; other sessions go
    /// through a proxy that can cut them.
    struct Setup {
        running: Running,
        proxy: Proxy,
        alice: TalkSession,
    }

    impl Setup {
        async fn new(messages: usize, configure: impl FnOnce(&mut Limits)) -> Self {
            let running = Running::start_with(&app(), |config| {
                // Alice creates the other users from her own session.
                config.apps[0].policy = Policy::Permissive;
                configure(&mut config.limits);
            })
            .await;
            let proxy = Proxy::start(running.addr).await;
            let options = SessionOptions::new(&running.credentials.id, "alice");
            let alice = get_talk_session(running.options(options, "alice")).unwrap();
            for user in ["alice", "bob", "carol", "dave"] {
                let name = crate::support::capitalize(user);
                let params = UserParams::new().name(name);
                alice.user(user).unwrap().set(params).await.unwrap();
            }
            for (id, members) in [("c", &["bob", "carol", "dave"][..]), ("empty", &["dave"])] {
                let c = alice.conversation(id).unwrap();
                c.set(ConversationParams::new()).await.unwrap();
                for user in members {
                    let p = c.participant(user).unwrap();
                    p.set(ParticipantParams::new()).await.unwrap();
                }
            }
            let c = alice.conversation("c").unwrap();
            for i in 0..messages {
                c.send(format!("m{i}").as_str()).await.unwrap();
            }
            Setup {
                running,
                proxy,
                alice,
            }
        }

        /// A new session of `user` through the proxy.
        fn session(&self, user: &str) -> TalkSession {
            let options = SessionOptions::new(&self.running.credentials.id, user);
            let options = self.running.options(options, user);
            get_talk_session(options.url(format!("ws://{}", self.proxy.addr))).unwrap()
        }

        async fn send(&self, conversation: &str, text: &str) {
            let c = self.alice.conversation(conversation).unwrap();
            c.send(text).await.unwrap();
        }

        async fn rename_alice(&self, name: &str) {
            let me = self.alice.current_user();
            me.set(UserParams::new().name(name)).await.unwrap();
        }
    }

    /// The last message's text, and the number of messages, of a message window.
    fn newest(messages: &MessageListSubscription) -> Option<(String, usize)> {
        let rows = messages.latest()??;
        Some((rows.front()?.plaintext.clone(), rows.len()))
    }

    /// The last message text shown for conversation `c` in a conversation list.
    fn last_in_list(list: &ConversationListSubscription) -> Option<String> {
        let rows = list.latest()?;
        let c = rows.iter().find(|c| c.id.as_str() == "c")?;
        Some(c.last_message.as_ref()?.plaintext.clone())
    }

    async fn name_is(sub: &UserSubscription, name: &str) {
        until(sub, |u| u.as_ref().is_some_and(|u| u.name == name)).await;
    }

    /// A session whose first call is a subscription shows the server's data, of every kind,
    /// and stays live: a user, a conversation list, a message window.
    #[tokio::test]
    async fn first_calls_that_subscribe_show_the_data_and_stay_live() {
        let setup = Setup::new(35, |_| {}).await;
        let user = setup.session("bob").user("alice").unwrap().subscribe();
        let list = setup.session("carol").subscribe_conversations(None);
        let dave = setup.session("dave");
        let messages = dave.conversation("c").unwrap().subscribe_messages(None);
        assert_eq!(user.connected().await.unwrap().unwrap().name, "Alice");
        until(&list, |_| last_in_list(&list).as_deref() == Some("m34")).await;
        until(&messages, |_| newest(&messages) == Some(("m34".into(), 30))).await;

        setup.rename_alice("Alicia").await;
        setup.send("c", "later").await;
        name_is(&user, "Alicia").await;
        until(&list, |_| last_in_list(&list).as_deref() == Some("later")).await;
        until(&messages, |_| {
            newest(&messages) == Some(("later".into(), 31))
        })
        .await;
        let sender = &messages.latest().unwrap().unwrap()[0].sender;
        assert_eq!(sender.as_ref().unwrap().name, "Alicia");
    }

    /// After the idle disconnect (no subscription, nothing in flight), a new subscription
    /// connects again and shows the data, and stays live.
    #[tokio::test]
    async fn subscriptions_after_an_idle_disconnect_show_the_data() {
        let setup = Setup::new(3, |_| {}).await;
        let bob = setup.session("bob");
        bob.current_user().get().await.unwrap();
        // Nothing to do: the session disconnects after its idle time.
        setup.proxy.open_at_most(0).await;
        let messages = bob.conversation("c").unwrap().subscribe_messages(None);
        until(&messages, |_| newest(&messages) == Some(("m2".into(), 3))).await;
        setup.send("c", "after").await;
        until(&messages, |_| {
            newest(&messages) == Some(("after".into(), 4))
        })
        .await;
    }

    /// A window that was empty when the connection dropped shows the messages sent while it
    /// was cut and after.
    #[tokio::test]
    async fn empty_windows_survive_a_cut() {
        let setup = Setup::new(0, |_| {}).await;
        let dave = setup.session("dave");
        let messages = dave.conversation("empty").unwrap().subscribe_messages(None);
        assert_eq!(messages.connected().await.unwrap().unwrap().len(), 0);
        setup.proxy.cut();
        setup.send("empty", "while cut").await;
        until(&messages, |_| {
            newest(&messages) == Some(("while cut".into(), 1))
        })
        .await;
        setup.send("empty", "after").await;
        until(&messages, |_| {
            newest(&messages) == Some(("after".into(), 2))
        })
        .await;
    }

    /// 500 subscriptions opened at once, with the default rate limit (100 a second): every one
    /// is retried until it connects, and all stay live.
    #[tokio::test]
    async fn five_hundred_subscriptions_at_once_all_connect() {
        let setup = Setup::new(0, |_| {}).await;
        let bob = setup.session("bob");
        let alice = bob.user("alice").unwrap();
        let subs: Vec<_> = (0..500).map(|_| alice.subscribe()).collect();
        for sub in &subs {
            assert_eq!(sub.connected().await.unwrap().unwrap().name, "Alice");
        }
        setup.rename_alice("Alicia").await;
        for sub in &subs {
            name_is(sub, "Alicia").await;
        }
    }

    /// 150 live subscriptions across a reconnect (more than the rate limit's burst): the
    /// replay restores every one, and all show what changed while cut.
    #[tokio::test]
    async fn live_subscriptions_survive_a_reconnect() {
        let setup = Setup::new(0, |_| {}).await;
        let bob = setup.session("bob");
        let alice = bob.user("alice").unwrap();
        let mut subs = Vec::new();
        for _ in 0..150 {
            let sub = alice.subscribe();
            sub.connected().await.unwrap();
            subs.push(sub);
        }
        setup.proxy.cut();
        setup.rename_alice("Alicia").await;
        for sub in &subs {
            name_is(sub, "Alicia").await;
        }
        // Live after the replay too.
        setup.rename_alice("Ally").await;
        for sub in &subs {
            name_is(sub, "Ally").await;
        }
    }

    /// Subscribe and unsubscribe churn beyond the rate limit, then fresh subscriptions on the
    /// same connection: each shows every row with its records (no unsubscribe released
    /// records the server still counted as held), and stays live.
    #[tokio::test]
    async fn churn_then_fresh_subscriptions_show_everything() {
        let setup = Setup::new(30, |_| {}).await;
        let bob = setup.session("bob");
        let c = bob.conversation("c").unwrap();
        for _ in 0..300 {
            drop(c.subscribe_messages(None));
        }
        let fresh: Vec<_> = (0..30).map(|_| c.subscribe_messages(None)).collect();
        for messages in &fresh {
            let rows = messages.connected().await.unwrap().unwrap();
            assert_eq!(rows.len(), 30);
            assert!(rows.iter().all(|m| m.sender.is_some()), "{rows:?}");
        }
        setup.send("c", "after").await;
        for messages in &fresh {
            until(messages, |_| newest(messages) == Some(("after".into(), 31))).await;
        }
    }

    /// A websocket session created and used on one runtime keeps working on another after
    /// the first ended.
    #[test]
    fn websocket_sessions_outlive_their_runtime() {
        let server_runtime = tokio::runtime::Runtime::new().unwrap();
        let setup = server_runtime.block_on(Setup::new(1, |_| {}));
        let bob = on_short_lived_runtime(async {
            let bob = setup.session("bob");
            bob.current_user().get().await.unwrap();
            bob
        });
        on_short_lived_runtime(async {
            let messages = bob.conversation("c").unwrap().subscribe_messages(None);
            until(&messages, |_| newest(&messages) == Some(("m0".into(), 1))).await;
            let c = bob.conversation("c").unwrap();
            c.send("from bob").await.unwrap();
            until(&messages, |_| {
                newest(&messages) == Some(("from bob".into(), 2))
            })
            .await;
        });
    }

    /// A session whose handles are all dropped closes its socket at once: 40 create-and-drop
    /// cycles for one user never hold more than a few connections open (the server allows
    /// 16 per user), and none is left open after.
    #[tokio::test]
    async fn dropped_sessions_close_their_socket_at_once() {
        let setup = Setup::new(0, |_| {}).await;
        for _ in 0..40 {
            // A request, then nothing more arrives that could wake the connection.
            let bob = setup.session("bob");
            bob.current_user().get().await.unwrap();
        }
        setup.proxy.open_at_most(0).await;
        let peak = setup.proxy.peak();
        assert!(peak <= 4, "{peak} connections were open at once");
    }
}
