//! The page's components. Each subscription belongs to the component that shows it
//! (`use_subscription`), so it ends when the component unmounts; rows are keyed by id, and a
//! row re-renders only when its snapshot's `Arc` changes.

use std::sync::Arc;

use dioxus::prelude::*;
use talkstore::{
    ContentBlock, ConversationParams, ConversationSnapshot, ErrorCode, MessageSnapshot,
    ParticipantParams, SubscriptionState, TalkSession, TextNode, UserParams, use_subscription,
};

#[derive(Props, Clone, PartialEq)]
pub(crate) struct ChatProps {
    pub(crate) session: TalkSession,
}

/// The whole page of one signed-in user.
#[allow(non_snake_case)]
pub(crate) fn Chat(props: ChatProps) -> Element {
    use_context_provider(|| props.session.clone());
    let open = use_signal(|| None::<String>);
    rsx! {
        div { class: "app",
            Sidebar { open }
            match open() {
                Some(id) => rsx! { Conversation { key: "{id}", id } },
                None => rsx! { section { class: "empty", "Pick a conversation, or start one." } },
            }
        }
    }
}

/// Who you are, renaming, starting a conversation, and the conversation list.
#[component]
fn Sidebar(open: Signal<Option<String>>) -> Element {
    let session = use_context::<TalkSession>();
    let (me, _) = use_subscription(|| session.current_user().subscribe());
    let (list, _) = use_subscription(|| session.subscribe_conversations(None));
    let mut name = use_signal(String::new);
    let mut other = use_signal(String::new);
    let problem = use_signal(String::new);
    let my_name = match &*me.read() {
        SubscriptionState::Active {
            snapshot: Some(u), ..
        } => u.name.clone(),
        _ => String::new(),
    };
    let rows = match &*list.read() {
        SubscriptionState::Active { snapshot, .. } => snapshot.clone(),
        _ => Default::default(),
    };
    let rename = {
        let session = session.clone();
        move |_| {
            let new = name().trim().to_owned();
            if new.is_empty() {
                return;
            }
            let me = session.current_user();
            attempt(
                problem,
                async move { me.set(UserParams::new().name(new)).await },
                move |()| name.set(String::new()),
            );
        }
    };
    let start = move |_| {
        let them = other().trim().to_owned();
        if them.is_empty() {
            return;
        }
        let session = session.clone();
        attempt(
            problem,
            async move { start_conversation(&session, &them).await },
            move |id| {
                other.set(String::new());
                open.set(Some(id));
            },
        );
    };
    rsx! {
        aside {
            h2 { id: "me", "{my_name}" }
            div { class: "row",
                input { id: "rename", placeholder: "New name", value: "{name}",
                    oninput: move |e| name.set(e.value()) }
                button { id: "rename-button", onclick: rename, "Rename" }
            }
            div { class: "row",
                input { id: "other", placeholder: "Chat with (user id)", value: "{other}",
                    oninput: move |e| other.set(e.value()) }
                button { id: "start", onclick: start, "Start" }
            }
            if !problem().is_empty() {
                p { class: "problem", "{problem}" }
            }
            ul { id: "conversations",
                for conversation in rows.iter() {
                    Row { key: "{conversation.id}", conversation: conversation.clone(), open }
                }
            }
        }
    }
}

/// Runs `work` in the component's scope: on success clears `problem` and hands the value to
/// `done`, on failure shows the error in `problem`.
fn attempt<T: 'static, E: std::fmt::Display + 'static>(
    mut problem: Signal<String>,
    work: impl Future<Output = Result<T, E>> + 'static,
    done: impl FnOnce(T) + 'static,
) {
    spawn(async move {
        match work.await {
            Ok(value) => {
                problem.set(String::new());
                done(value);
            }
            Err(e) => problem.set(e.to_string()),
        }
    });
}

/// Opens (creating if needed) the conversation of you and `them`, who is created if new.
async fn start_conversation(session: &TalkSession, them: &str) -> Result<String, String> {
    let me = session.current_user();
    let mine = me.id().to_string();
    if them == mine {
        return Err("Pick someone else.".into());
    }
    let other = session.user(them).map_err(|e| e.to_string())?;
    // Under a restricted server's policy only the backend creates other users.
    match other
        .create_if_not_exists(UserParams::new().name(them))
        .await
    {
        Err(e) if e.code() == Some(ErrorCode::Forbidden) => {
            return Err(format!("There is no user {them} yet."));
        }
        other => other.map_err(|e| e.to_string())?,
    }
    let (a, b) = if mine.as_str() < them {
        (mine.as_str(), them)
    } else {
        (them, mine.as_str())
    };
    let id = format!("dm_{a}_{b}");
    let conversation = session.conversation(&id).map_err(|e| e.to_string())?;
    conversation
        .create_if_not_exists(ConversationParams::new().subject(format!("{a} & {b}")))
        .await
        .map_err(|e| e.to_string())?;
    conversation
        .participant(them)
        .map_err(|e| e.to_string())?
        .set(ParticipantParams::new())
        .await
        .map_err(|e| e.to_string())?;
    Ok(id)
}

/// One row of the conversation list: title, unread badge, last message.
#[component]
fn Row(conversation: Arc<ConversationSnapshot>, open: Signal<Option<String>>) -> Element {
    let id = conversation.id.to_string();
    let title = conversation.subject.clone().unwrap_or_else(|| id.clone());
    let last = conversation.last_message.as_ref().map(|m| {
        let sender = m.sender.as_ref().map_or("", |s| s.name.as_str()).to_owned();
        (sender, m.plaintext.clone())
    });
    let unread = conversation.unread_message_count;
    let selected = open().as_deref() == Some(id.as_str());
    rsx! {
        li { class: if selected { "conversation selected" } else { "conversation" },
            "data-id": "{id}",
            onclick: move |_| open.set(Some(id.clone())),
            div { class: "title",
                span { "{title}" }
                if unread > 0 { span { class: "badge", "{unread}" } }
            }
            if let Some((sender, text)) = last {
                div { class: "last", b { "{sender}: " } "{text}" }
            }
        }
    }
}

/// An open conversation: its messages (oldest at the top), older ones on demand, the composer.
/// It marks the conversation read whenever it shows new messages.
#[component]
fn Conversation(id: String) -> Element {
    let session = use_context::<TalkSession>();
    let Ok(conversation) = session.conversation(&id) else {
        return rsx! { section { class: "empty", "No such conversation." } };
    };
    let (window, messages) = use_subscription(|| conversation.subscribe_messages(None));
    let (header, _) = use_subscription(|| conversation.subscribe());
    let mut draft = use_signal(String::new);
    let problem = use_signal(String::new);
    {
        let conversation = conversation.clone();
        use_effect(move || {
            // Re-run whenever the window changes.
            let _ = window.read();
            let conversation = conversation.clone();
            spawn(async move {
                let _ = conversation.mark_as_read().await;
            });
        });
    }
    let title = match &*header.read() {
        SubscriptionState::Active {
            snapshot: Some(c), ..
        } => c.subject.clone().unwrap_or_else(|| id.clone()),
        _ => id.clone(),
    };
    let (rows, loaded_all) = match &*window.read() {
        SubscriptionState::Active {
            snapshot: Some(rows),
            loaded_all,
        } => (rows.clone(), *loaded_all),
        _ => (Default::default(), true),
    };
    let older = move |_| {
        attempt(problem, messages.load_more(Some(30)), |()| {});
    };
    let send = move |_| {
        let text = draft().trim().to_owned();
        if text.is_empty() {
            return;
        }
        let conversation = conversation.clone();
        attempt(
            problem,
            async move { conversation.send(text.as_str()).await },
            move |_| draft.set(String::new()),
        );
    };
    rsx! {
        section { class: "conversation-view",
            h2 { id: "title", "{title}" }
            div { id: "messages",
                if !loaded_all {
                    button { id: "older", onclick: older, "Load older messages" }
                }
                for message in rows.iter().rev() {
                    Message { key: "{message.id}", message: message.clone(), problem }
                }
            }
            if !problem().is_empty() {
                p { class: "problem", "{problem}" }
            }
            div { class: "composer",
                textarea { id: "draft", placeholder: "Write a message (*bold*, _italic_, `code`, - lists)",
                    value: "{draft}", oninput: move |e| draft.set(e.value()) }
                button { id: "send", onclick: send, "Send" }
            }
        }
    }
}

/// The emoji a message offers to react with besides those it has.
const QUICK_REACTIONS: [&str; 3] = ["👍", "❤️", "😂"];

/// One message: sender, formatted text and reactions (click one to add or take back yours).
#[component]
fn Message(message: Arc<MessageSnapshot>, problem: Signal<String>) -> Element {
    let session = use_context::<TalkSession>();
    let sender = message
        .sender
        .as_ref()
        .map_or_else(|| "System".to_owned(), |s| s.name.clone());
    let toggle = |emoji: String, mine: bool| {
        let reactions = session
            .conversation(message.conversation_id.as_str())
            .and_then(|c| c.message(message.id.as_str()))
            .map(|m| m.reactions(emoji));
        move |_| {
            let reactions = reactions.clone();
            attempt(
                problem,
                async move {
                    match reactions {
                        Ok(r) if mine => r.remove().await,
                        Ok(r) => r.add().await,
                        Err(e) => Err(e),
                    }
                },
                |()| {},
            );
        }
    };
    let offered: Vec<&str> = QUICK_REACTIONS
        .into_iter()
        .filter(|quick| message.reactions.iter().all(|r| r.emoji != *quick))
        .collect();
    rsx! {
        div { class: "message", "data-id": "{message.id}",
            span { class: "sender", "{sender}" }
            div { class: "text",
                for block in message.content.iter() {
                    if let ContentBlock::Text { children } = block {
                        {nodes(children)}
                    }
                }
            }
            div { class: "reactions",
                for r in message.reactions.iter() {
                    button {
                        class: if r.current_user_reacted { "reaction mine" } else { "reaction" },
                        "data-emoji": "{r.emoji}",
                        onclick: toggle(r.emoji.clone(), r.current_user_reacted),
                        "{r.emoji} {r.count}"
                    }
                }
                for quick in offered {
                    button { class: "react", "data-emoji": "{quick}",
                        onclick: toggle(quick.to_owned(), false), "+{quick}" }
                }
            }
        }
    }
}

fn nodes(children: &[TextNode]) -> Element {
    rsx! {
        for child in children {
            {node(child)}
        }
    }
}

/// One formatted node. Links go only to web, mail and phone addresses.
fn node(node: &TextNode) -> Element {
    match node {
        TextNode::Text(text) => rsx! { "{text}" },
        TextNode::Bold { children } => rsx! { strong { {nodes(children)} } },
        TextNode::Italic { children } => rsx! { em { {nodes(children)} } },
        TextNode::Strikethrough { children } => rsx! { s { {nodes(children)} } },
        TextNode::BulletList { children } => rsx! { ul { {nodes(children)} } },
        TextNode::BulletPoint { children } => rsx! { li { {nodes(children)} } },
        TextNode::CodeSpan { text } => rsx! { code { "{text}" } },
        TextNode::AutoLink { url, text } if safe(url) => rsx! {
            a { href: "{url}", target: "_blank", rel: "noopener noreferrer", "{text}" }
        },
        TextNode::Link { url, children } if safe(url) => rsx! {
            a { href: "{url}", target: "_blank", rel: "noopener noreferrer", {nodes(children)} }
        },
        TextNode::AutoLink { text, .. } | TextNode::CustomEmoji { text } => rsx! { "{text}" },
        TextNode::Mention { text, .. } => rsx! { span { class: "mention", "@{text}" } },
        TextNode::Link { children, .. }
        | TextNode::ActionLink { children, .. }
        | TextNode::ActionButton { children, .. } => nodes(children),
    }
}

fn safe(url: &str) -> bool {
    ["https://", "http://", "mailto:", "tel:"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

/// The page's style sheet (the login page uses it too).
pub(crate) const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
body.login main { max-width: 28rem; margin: 4rem auto; }
#offline { display: none; background: #b00; color: white; padding: .4rem 1rem; }
body[data-live="no"] #offline { display: block; }
.app { display: flex; height: 100vh; }
aside { width: 20rem; border-right: 1px solid #ddd; overflow-y: auto; padding: .5rem; }
.row { display: flex; gap: .3rem; margin: .3rem 0; }
.row input { flex: 1; }
ul#conversations { list-style: none; padding: 0; }
.conversation { padding: .5rem; border-radius: .4rem; cursor: pointer; }
.conversation.selected { background: #e8f0fe; }
.conversation .title { display: flex; justify-content: space-between; font-weight: 600; }
.badge { background: #d33; color: white; border-radius: 1rem; padding: 0 .5rem; font-size: .8rem; }
.last { color: #555; font-size: .9rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
section { flex: 1; display: flex; flex-direction: column; padding: .5rem 1rem; }
section.empty { align-items: center; justify-content: center; color: #777; }
#messages { flex: 1; overflow-y: auto; }
.message { margin: .4rem 0; }
.message .sender { font-weight: 600; margin-right: .5rem; }
.message .text { white-space: pre-wrap; }
.composer { display: flex; gap: .3rem; }
.composer textarea { flex: 1; min-height: 3rem; }
.problem { color: #b00; }
.mention { color: #1a5fb4; }
.reactions { display: flex; gap: .25rem; margin-top: .15rem; }
.reactions button { border: 1px solid #ccc; background: white; border-radius: 1rem; padding: 0 .45rem; font-size: .85rem; cursor: pointer; }
.reactions button.mine { background: #e8f0fe; border-color: #1a5fb4; }
.reactions button.react { opacity: 0; }
.message:hover .reactions button.react { opacity: .6; }
"#;
