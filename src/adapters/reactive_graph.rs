//! The reactive_graph 0.2 adapter (feature `reactive-graph`): the signals of Leptos 0.8.

use any_spawner::Executor;
use futures_signals::signal::SignalExt;
use futures_util::future::{AbortHandle, abortable};
use reactive_graph::{
    owner::{FromLocal, LocalStorage, on_cleanup},
    signal::{ArcReadSignal, ArcRwSignal, ReadSignal},
    traits::Set,
};

use crate::{Subscription, SubscriptionState};

/// Where the bridge task runs.
#[derive(Clone, Copy)]
enum Spawn {
    /// On any thread of the app's executor.
    Anywhere,
    /// On the current thread (`Executor::spawn_local`).
    Here,
}

impl<T, X> Subscription<T, X>
where
    T: Clone + Send + Sync + 'static,
    X: Send + Sync + 'static,
{
    /// A reference-counted reactive_graph signal of this subscription's state (its snapshot,
    /// and for windows `loaded_all`), updated as it changes, nested changes included.
    ///
    /// A task on the app's [`Executor`] (`any_spawner`, which Leptos initializes; call
    /// `Executor::init_tokio()` or another `init_*` first outside Leptos) moves each new state
    /// into the signal. The task ends with the current reactive [`Owner`] (a component): it
    /// is aborted on the owner's cleanup. Outside any owner it runs until the subscription
    /// ends. The signal does not keep the subscription alive: keep the subscription as long as
    /// the view needs it.
    ///
    /// Unlike `ArcReadSignal::from_stream`, whose task no owner holds (a futures-signals
    /// stream ends only when its source is dropped), nothing outlives the component.
    ///
    /// [`Owner`]: reactive_graph::owner::Owner
    pub fn to_arc_read_signal(&self) -> ArcReadSignal<SubscriptionState<T>> {
        self.bridge(Spawn::Anywhere)
    }

    /// Like [`Subscription::to_arc_read_signal`], as an arena-allocated `Copy` signal, disposed
    /// with the current owner.
    pub fn to_read_signal(&self) -> ReadSignal<SubscriptionState<T>> {
        self.to_arc_read_signal().into()
    }

    /// Like [`Subscription::to_arc_read_signal`], with the task on the current thread
    /// (`Executor::spawn_local`): for single-threaded executors (a browser, a `LocalSet`).
    pub fn to_arc_read_signal_local(&self) -> ArcReadSignal<SubscriptionState<T>> {
        self.bridge(Spawn::Here)
    }

    /// Like [`Subscription::to_read_signal`], in local storage, with the task on the current
    /// thread: Leptos's `_local` flavor for values that stay on one thread.
    pub fn to_read_signal_local(&self) -> ReadSignal<SubscriptionState<T>, LocalStorage> {
        ReadSignal::from_local(self.bridge(Spawn::Here))
    }

    fn bridge(&self, spawn: Spawn) -> ArcReadSignal<SubscriptionState<T>> {
        let signal = ArcRwSignal::new(self.state());
        let writer = signal.clone();
        let updates = self.signal().for_each(move |state| {
            writer.set(state);
            std::future::ready(())
        });
        let (updates, abort) = abortable(updates);
        let task = async move {
            let _ = updates.await;
        };
        match spawn {
            Spawn::Anywhere => Executor::spawn(task),
            Spawn::Here => Executor::spawn_local(task),
        }
        on_cleanup(move || AbortHandle::abort(&abort));
        signal.read_only()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use reactive_graph::{
        computed::Memo,
        effect::Effect,
        owner::Owner,
        traits::{Get, GetUntracked, With, WithUntracked},
    };

    use crate::{SessionOptions, SubscriptionState, UserParams, UserSnapshot, get_talk_session};

    /// A renamed user reaches an effect through the signal, and the bridge ends with its owner.
    #[tokio::test]
    async fn renames_reach_reactive_graph_effects_until_the_owner_is_cleaned_up() {
        // Effects run as local tasks (`Executor::spawn_local`).
        tokio::task::LocalSet::new()
            .run_until(async {
                let _ = any_spawner::Executor::init_tokio();
                let session =
                    get_talk_session(SessionOptions::new("reactive-graph-test", "u")).unwrap();
                let user = session.current_user();
                user.set(UserParams::new().name("Alice")).await.unwrap();
                let sub = user.subscribe();
                sub.connected().await.unwrap();
                let owner = Owner::new();
                let (tx, mut names) = tokio::sync::mpsc::unbounded_channel();
                let state = owner.with(|| {
                    let state = sub.to_arc_read_signal();
                    let watched = state.clone();
                    Effect::new(move |_| {
                        if let SubscriptionState::Active {
                            snapshot: Some(u), ..
                        } = watched.get()
                        {
                            let _ = tx.send(u.name.clone());
                        }
                    });
                    state
                });
                let next = async |names: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
                    tokio::time::timeout(Duration::from_secs(10), names.recv())
                        .await
                        .expect("the effect ran")
                        .expect("the effect lives")
                };
                assert_eq!(next(&mut names).await, "Alice");
                user.set(UserParams::new().name("Bob")).await.unwrap();
                while next(&mut names).await != "Bob" {}

                // A control bridge without an owner: once it shows the next rename, the owned one
                // would have too, had its task outlived the cleanup.
                let control = sub.to_arc_read_signal();
                owner.cleanup();
                user.set(UserParams::new().name("Carol")).await.unwrap();
                let name =
                    |state: &SubscriptionState<Option<Arc<UserSnapshot>>>| -> Option<String> {
                        match state {
                            SubscriptionState::Active {
                                snapshot: Some(u), ..
                            } => Some(u.name.clone()),
                            _ => None,
                        }
                    };
                let renamed = async {
                    while name(&control.get_untracked()).as_deref() != Some("Carol") {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                };
                tokio::time::timeout(Duration::from_secs(10), renamed)
                    .await
                    .expect("the control bridge moved the rename");
                tokio::task::yield_now().await;
                assert_eq!(name(&state.get_untracked()), Some("Bob".into()));
            })
            .await;
    }

    /// A `Memo` over a conversation list's signal (the total unread count) re-runs its effect
    /// when the total changes, not when a rename changes the rows.
    #[tokio::test]
    async fn memos_over_windows_change_only_with_their_value() {
        let _ = any_spawner::Executor::init_tokio();
        tokio::task::LocalSet::new()
            .run_until(async {
                let (alice, bob) = super::super::alice_and_bob("reactive-graph-memo-test").await;
                let list = alice.subscribe_conversations(None);
                list.connected().await.unwrap();

                let owner = Owner::new();
                let (tx, mut totals) = tokio::sync::mpsc::unbounded_channel();
                let rows = owner.with(|| {
                    let rows = list.to_arc_read_signal();
                    let input = rows.clone();
                    let total = Memo::new(move |_| {
                        input.with(|state| {
                            state.snapshot().map(|list| {
                                list.iter().map(|c| c.unread_message_count).sum::<u64>()
                            })
                        })
                    });
                    Effect::new(move |_| {
                        let _ = tx.send(total.get());
                    });
                    rows
                });
                let next =
                    async |totals: &mut tokio::sync::mpsc::UnboundedReceiver<Option<u64>>| {
                        tokio::time::timeout(Duration::from_secs(10), totals.recv())
                            .await
                            .expect("the effect ran")
                            .expect("the effect lives")
                    };
                while next(&mut totals).await != Some(1) {}

                bob.current_user()
                    .set(UserParams::new().name("Robert"))
                    .await
                    .unwrap();
                let renamed = async {
                    loop {
                        let shown = rows.with_untracked(|state| {
                            state.snapshot().is_some_and(|list| {
                                list.iter().all(|c| {
                                    c.last_message
                                        .as_ref()
                                        .and_then(|m| m.sender.as_ref())
                                        .is_some_and(|s| s.name == "Robert")
                                })
                            })
                        });
                        if shown {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                };
                tokio::time::timeout(Duration::from_secs(10), renamed)
                    .await
                    .expect("the rename reached the rows");
                // Effects run as local tasks: let any the rename scheduled run.
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                assert!(totals.try_recv().is_err(), "a rename re-ran the effect");

                alice
                    .conversation("c")
                    .unwrap()
                    .mark_as_read()
                    .await
                    .unwrap();
                assert_eq!(next(&mut totals).await, Some(0));
                owner.cleanup();
            })
            .await;
    }
}
