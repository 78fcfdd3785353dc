//! The leptos_reactive 0.6 adapter (feature `leptos`).

use futures_signals::signal::SignalExt;
use leptos_reactive::{ReadSignal, SignalSet, create_signal, on_cleanup};

use crate::{Subscription, SubscriptionState};

impl<T, X> Subscription<T, X>
where
    T: Clone + Send + Sync + 'static,
    X: Send + Sync + 'static,
{
    /// A leptos_reactive [`ReadSignal`] of this subscription's state, updated as it changes
    /// (every snapshot, including nested changes) and torn down with the current reactive
    /// owner.
    ///
    /// Call it on the UI thread, inside a Tokio `LocalSet` (the bridge is a local task, because
    /// leptos_reactive signals can only be set from their own thread). The signal does not
    /// keep the subscription alive: keep the subscription as long as the view needs it.
    ///
    /// # Panics
    ///
    /// Outside a Tokio `LocalSet`, like [`tokio::task::spawn_local`].
    pub fn to_leptos_signal(&self) -> ReadSignal<SubscriptionState<T>> {
        let (read, write) = create_signal(self.state());
        let updates = self.signal().for_each(move |state| {
            write.set(state);
            std::future::ready(())
        });
        let bridge = tokio::task::spawn_local(updates);
        on_cleanup(move || bridge.abort());
        read
    }
}

#[cfg(test)]
mod tests {
    use leptos_reactive::{SignalGet, SignalGetUntracked, create_effect, create_runtime};

    use crate::{SessionOptions, SubscriptionState, UserParams, get_talk_session};

    /// A renamed user reaches an effect through the leptos signal.
    #[tokio::test]
    async fn renames_reach_leptos_effects() {
        let runtime = create_runtime();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let session =
                    get_talk_session(SessionOptions::new("leptos-adapter-test", "u")).unwrap();
                let user = session.current_user();
                user.set(UserParams::new().name("Alice")).await.unwrap();
                let sub = user.subscribe();
                sub.connected().await.unwrap();
                let state = sub.to_leptos_signal();
                let (tx, mut names) = tokio::sync::mpsc::unbounded_channel();
                create_effect(move |_| {
                    if let SubscriptionState::Active {
                        snapshot: Some(u), ..
                    } = state.get()
                    {
                        let _ = tx.send(u.name.clone());
                    }
                });
                assert_eq!(names.recv().await.unwrap(), "Alice");
                user.set(UserParams::new().name("Bob")).await.unwrap();
                // A broken bridge fails here instead of hanging the suite.
                let renamed = async { while names.recv().await.unwrap() != "Bob" {} };
                tokio::time::timeout(std::time::Duration::from_secs(10), renamed)
                    .await
                    .expect("the rename reached the effect");
                assert!(matches!(
                    state.get_untracked(),
                    SubscriptionState::Active { .. }
                ));
            })
            .await;
        runtime.dispose();
    }
}
