//! The Dioxus 0.7 adapter (feature `dioxus`): hooks that tie a subscription to a component.

use std::rc::Rc;

use dioxus::prelude::*;
use futures_signals::signal::SignalExt;
use futures_util::StreamExt;

use crate::{Subscription, SubscriptionState};

/// Subscribes once, when the component first renders, and returns a signal of the
/// subscription's state (its snapshot, and for windows `loaded_all`) that re-renders the
/// component, and whatever reads it, on every change, nested changes included; and the
/// subscription itself, for `load_more` on windows.
///
/// The component owns the subscription: it ends when the component unmounts, and the task
/// that moves states into the signal is the component's own (`spawn`), cancelled with it.
/// Everything stays on the UI thread: the signal is a plain (not `Sync`) Dioxus signal.
///
/// `subscribe` runs once; later renders do not call it again. To follow a changing input (a
/// conversation picked by the user), give the component a `key` from it, so that a new input
/// mounts a new component.
///
/// ```no_run
/// use dioxus::prelude::*;
/// use talkstore::{SubscriptionState, TalkSession, use_subscription};
///
/// // Somewhere above: `use_context_provider(|| session.clone())`.
/// #[component]
/// fn Name(user: String) -> Element {
///     let session = use_context::<TalkSession>();
///     let (state, _) = use_subscription(|| session.user(user).expect("a user id").subscribe());
///     match &*state.read() {
///         SubscriptionState::Active { snapshot: Some(u), .. } => rsx! { "{u.name}" },
///         _ => rsx! { "…" },
///     }
/// }
/// ```
pub fn use_subscription<S, T, X>(
    subscribe: impl FnOnce() -> S,
) -> (ReadSignal<SubscriptionState<T>>, Rc<S>)
where
    S: AsRef<Subscription<T, X>> + 'static,
    T: Clone + Send + Sync + 'static,
    X: Send + Sync + 'static,
{
    let subscription = use_hook(|| Rc::new(subscribe()));
    let mut state = use_signal(|| subscription.as_ref().as_ref().state());
    use_hook(|| {
        let mut updates = subscription.as_ref().as_ref().signal().to_stream();
        spawn(async move {
            while let Some(next) = updates.next().await {
                state.set(next);
            }
        })
    });
    (state.into(), subscription)
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, sync::Arc, time::Duration};

    use by_address::ByAddress;
    use dioxus::{core::NoOpMutations, prelude::*};

    use super::use_subscription;
    use crate::{
        ConversationListSubscription, ConversationParams, ConversationSnapshot,
        MessageListSubscription, MessageSnapshot, ParticipantParams, SessionOptions,
        SubscriptionState, TalkSession, UserParams, Vector, get_talk_session,
    };

    thread_local! {
        /// The names the component rendered, in order.
        static RENDERED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        /// The root's switch that mounts the component.
        static SHOW: RefCell<Option<Signal<bool>>> = const { RefCell::new(None) };
    }

    fn root(session: TalkSession) -> Element {
        use_context_provider(|| session.clone());
        let show = use_signal(|| true);
        SHOW.with(|s| *s.borrow_mut() = Some(show));
        rsx! {
            if show() {
                Name {}
            }
        }
    }

    #[component]
    fn Name() -> Element {
        let session = use_context::<TalkSession>();
        let (state, _) = use_subscription(|| session.current_user().subscribe());
        let name = match &*state.read() {
            SubscriptionState::Active {
                snapshot: Some(user),
                ..
            } => user.name.clone(),
            _ => "…".to_owned(),
        };
        RENDERED.with(|r| r.borrow_mut().push(name.clone()));
        rsx! { "{name}" }
    }

    /// Runs the dom's work until `done` holds (each wait bounded, so a broken bridge fails).
    async fn render_until(dom: &mut VirtualDom, done: impl Fn() -> bool) {
        while !done() {
            tokio::time::timeout(Duration::from_secs(10), dom.wait_for_work())
                .await
                .expect("the dom had work");
            dom.render_immediate(&mut NoOpMutations);
        }
    }

    fn last_rendered() -> Option<String> {
        RENDERED.with(|r| r.borrow().last().cloned())
    }

    /// A component that uses the hook re-renders on a rename, and unmounting it ends its
    /// subscription.
    #[tokio::test]
    async fn components_rerender_on_renames_and_unsubscribe_when_unmounted() {
        let session = get_talk_session(SessionOptions::new("dioxus-adapter-test", "u")).unwrap();
        let user = session.current_user();
        user.set(UserParams::new().name("Alice")).await.unwrap();
        let mut dom = VirtualDom::new_with_props(root, session.clone());
        dom.rebuild_in_place();
        render_until(&mut dom, || last_rendered().as_deref() == Some("Alice")).await;
        assert_eq!(session.stats().subscriptions, 1);

        user.set(UserParams::new().name("Bob")).await.unwrap();
        render_until(&mut dom, || last_rendered().as_deref() == Some("Bob")).await;
        let renders = RENDERED.with(|r| r.borrow().len());

        dom.in_runtime(|| SHOW.with(|s| s.borrow().expect("mounted").set(false)));
        dom.render_immediate(&mut NoOpMutations);
        let released = async {
            while session.stats().subscriptions > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), released)
            .await
            .expect("unmounting ended the subscription");
        user.set(UserParams::new().name("Carol")).await.unwrap();
        assert_eq!(
            RENDERED.with(|r| r.borrow().len()),
            renders,
            "no render after unmount"
        );
    }

    thread_local! {
        /// The window the list component takes.
        static WINDOW: RefCell<Option<MessageListSubscription>> = const { RefCell::new(None) };
        /// How many times a row component rendered.
        static ROW_RENDERS: RefCell<usize> = const { RefCell::new(0) };
    }

    fn rows() -> Element {
        let (window, _) =
            use_subscription(|| WINDOW.with(|w| w.borrow_mut().take()).expect("a window"));
        let state = window.read();
        let messages = state.snapshot().cloned().flatten().unwrap_or_default();
        rsx! {
            for message in messages {
                Row { key: "{message.id}", message: ByAddress(message.clone()) }
            }
        }
    }

    /// The recommended row: its props compare by allocation, so a row whose snapshot is the
    /// same `Arc` as before does not re-render.
    #[component]
    fn Row(message: ByAddress<Arc<MessageSnapshot>>) -> Element {
        ROW_RENDERS.with(|r| *r.borrow_mut() += 1);
        let sender = message.sender.as_ref().map_or("", |s| s.name.as_str());
        rsx! { "{sender}: {message.plaintext}" }
    }

    /// Renaming a user who sent R of a 1,000-row window's messages re-renders those R rows.
    #[tokio::test]
    async fn a_rename_rerenders_only_the_rows_that_show_it() {
        const SENDERS: usize = 10;
        const MESSAGES: usize = 1_000;
        let session =
            |user: &str| get_talk_session(SessionOptions::new("dioxus-rows-test", user)).unwrap();
        let viewer = session("viewer");
        viewer
            .current_user()
            .set(UserParams::new().name("V"))
            .await
            .unwrap();
        let chat = viewer.conversation("c").unwrap();
        chat.set(ConversationParams::new()).await.unwrap();
        let senders: Vec<TalkSession> = (0..SENDERS).map(|i| session(&format!("s{i}"))).collect();
        for (i, sender) in senders.iter().enumerate() {
            sender
                .current_user()
                .set(UserParams::new().name(format!("S{i}")))
                .await
                .unwrap();
            chat.participant(format!("s{i}"))
                .unwrap()
                .set(ParticipantParams::new())
                .await
                .unwrap();
        }
        for n in 0..MESSAGES {
            let from = &senders[n % SENDERS];
            from.conversation("c")
                .unwrap()
                .send(format!("m{n}"))
                .await
                .unwrap();
        }
        let window = chat.subscribe_messages(None);
        window.connected().await.unwrap();
        while !window.loaded_all() {
            window.load_more(Some(100)).await.unwrap();
        }
        WINDOW.with(|w| *w.borrow_mut() = Some(window));

        let mut dom = VirtualDom::new(rows);
        dom.rebuild_in_place();
        assert_eq!(ROW_RENDERS.with(|r| *r.borrow()), MESSAGES);

        ROW_RENDERS.with(|r| *r.borrow_mut() = 0);
        senders[3]
            .current_user()
            .set(UserParams::new().name("Renamed"))
            .await
            .unwrap();
        let sent_by_one = MESSAGES / SENDERS;
        render_until(&mut dom, || {
            ROW_RENDERS.with(|r| *r.borrow()) >= sent_by_one
        })
        .await;
        // Anything else the rename would re-render has arrived once a later read is answered.
        viewer.current_user().get().await.unwrap();
        tokio::task::yield_now().await;
        dom.render_immediate(&mut NoOpMutations);
        assert_eq!(ROW_RENDERS.with(|r| *r.borrow()), sent_by_one);
    }

    thread_local! {
        /// The list the unread total is derived from.
        static LIST: RefCell<Option<ConversationListSubscription>> = const { RefCell::new(None) };
        /// The totals the total component rendered.
        static TOTALS: RefCell<Vec<Option<u64>>> = const { RefCell::new(Vec::new()) };
        /// The last senders the senders component rendered.
        static SENDERS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    fn unread() -> Element {
        let (list, _) = use_subscription(|| LIST.with(|l| l.borrow_mut().take()).expect("a list"));
        let total = use_memo(move || {
            list.read()
                .snapshot()
                .map(|rows| rows.iter().map(|c| c.unread_message_count).sum::<u64>())
        });
        rsx! {
            Total { total }
            Senders { list }
        }
    }

    /// Shows the rows' last senders: what a rename does re-render.
    #[component]
    fn Senders(list: ReadSignal<SubscriptionState<Vector<Arc<ConversationSnapshot>>>>) -> Element {
        let names: Vec<String> = list
            .read()
            .snapshot()
            .into_iter()
            .flatten()
            .filter_map(|c| Some(c.last_message.as_ref()?.sender.as_ref()?.name.clone()))
            .collect();
        SENDERS.with(|s| *s.borrow_mut() = names.clone());
        rsx! { "{names:?}" }
    }

    #[component]
    fn Total(total: ReadSignal<Option<u64>>) -> Element {
        TOTALS.with(|t| t.borrow_mut().push(total()));
        rsx! { "{total:?}" }
    }

    /// A `use_memo` over a list (its unread total) re-renders what reads it when the total
    /// changes, not when a rename changes the rows.
    #[tokio::test]
    async fn memos_rerender_only_when_their_value_changes() {
        let (alice, bob) = super::super::alice_and_bob("dioxus-memo-test").await;
        let list = alice.subscribe_conversations(None);
        list.connected().await.unwrap();
        LIST.with(|l| *l.borrow_mut() = Some(list));
        let totals = || TOTALS.with(|t| t.borrow().clone());

        let mut dom = VirtualDom::new(unread);
        dom.rebuild_in_place();
        assert_eq!(totals(), [Some(1)]);

        bob.current_user()
            .set(UserParams::new().name("Robert"))
            .await
            .unwrap();
        alice.current_user().get().await.unwrap();
        // Once the senders show the rename, the memo has re-run on the new rows.
        render_until(&mut dom, || SENDERS.with(|s| *s.borrow() == ["Robert"])).await;
        assert_eq!(totals(), [Some(1)], "a rename re-rendered the total");

        alice
            .conversation("c")
            .unwrap()
            .mark_as_read()
            .await
            .unwrap();
        render_until(&mut dom, || totals().last() == Some(&Some(0))).await;
        assert_eq!(totals(), [Some(1), Some(0)]);
    }
}
