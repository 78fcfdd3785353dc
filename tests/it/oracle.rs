//! Property test: after every step of random operations by several users, every live
//! subscription's latest snapshot equals one computed from scratch by a naive model of the
//! rules, written here independently of the store and the engine: windows grown by
//! `load_more` past their first page, long backlogs, users with more conversations than a
//! list's first page (lists that page, rows crossing their bound), a filtered list, reactions,
//! reconnects.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use talkstore::{
    Access, ConversationFilter, ConversationParams, ConversationSnapshot, Error, MessageSnapshot,
    ParticipantSnapshot, ReactionSnapshot, SendParams, SimpleConversationFilter, TalkSession,
    UserParams,
};

const USERS: usize = 3;
const CONVERSATIONS: usize = 3;
/// More than two first pages of a message window (30), so that windows page.
const MAX_MESSAGES: usize = 70;
/// A message window's first page.
const FIRST_PAGE: usize = 30;
/// Messages a backlog sends at once.
const BACKLOG: usize = 12;
/// A conversation list's first page.
const LIST_PAGE: usize = 20;
/// Conversations a crowd creates at once, for one user alone: more than a list's first page.
const CROWD: usize = 22;
/// At most this many crowd conversations in all.
const MAX_CROWDED: usize = 3 * CROWD;

#[derive(Debug, Clone)]
enum Op {
    Rename(usize, usize),
    Send {
        user: usize,
        conversation: usize,
        reply_to: Option<usize>,
    },
    Edit {
        user: usize,
        conversation: usize,
        message: usize,
    },
    Delete {
        user: usize,
        conversation: usize,
        message: usize,
    },
    /// Adds (or removes) the user's reaction with `EMOJI[emoji]` to a message (see
    /// `apply`).
    React {
        user: usize,
        conversation: usize,
        message: usize,
        emoji: usize,
        add: bool,
    },
    Join(usize, usize),
    Leave(usize, usize),
    MarkRead(usize, usize),
    MarkUnread(usize, usize),
    SetAccess {
        user: usize,
        conversation: usize,
        read: bool,
    },
    Resubscribe(usize),
    /// [`BACKLOG`] messages at once into `c0`.
    Backlog(usize),
    /// Grows one of a user's two message windows of `c0` (two handles of one subscription
    /// until one of them loads more).
    LoadMore(usize, usize, u32),
    /// [`CROWD`] new conversations of one user alone.
    Crowd(usize),
    /// The user sends into their `k`-th crowd conversation (it moves to the front).
    Poke(usize, usize),
    /// The user leaves their `k`-th crowd conversation.
    Abandon(usize, usize),
    /// The user deletes the last message of their `k`-th crowd conversation (it moves back).
    Unpoke(usize, usize),
    /// The user marks their `k`-th crowd conversation unread (or read).
    Flag(usize, usize, bool),
    /// Grows one of a user's lists: 0 the conversation list, 1 the unread list, 2 a second
    /// handle of the conversation list (it shares the first's window until one of them
    /// loads more).
    LoadMoreList(usize, usize, u32),
    /// Cuts every connection (on a server; nothing on the embedded engine).
    Cut,
}

/// A crowd conversation of a user, by age: mostly one of the oldest.
fn crowded() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..4usize, 1 => 0..CROWD]
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let c = 0..CONVERSATIONS;
    prop_oneof![
        1 => (u.clone(), 0..4usize).prop_map(|(u, n)| Op::Rename(u, n)),
        4 => (u.clone(), c.clone(), proptest::option::of(0..30usize))
            .prop_map(|(user, conversation, reply_to)| Op::Send { user, conversation, reply_to }),
        1 => (u.clone(), c.clone(), 0..30usize)
            .prop_map(|(user, conversation, message)| Op::Edit { user, conversation, message }),
        1 => (u.clone(), c.clone(), 0..30usize)
            .prop_map(|(user, conversation, message)| Op::Delete { user, conversation, message }),
        4 => (u.clone(), c.clone(), 0..3usize, 0..EMOJI.len(), prop::bool::weighted(0.7))
            .prop_map(|(user, conversation, message, emoji, add)| {
                Op::React { user, conversation, message, emoji, add }
            }),
        2 => (u.clone(), c.clone()).prop_map(|(u, c)| Op::Join(u, c)),
        1 => (u.clone(), c.clone()).prop_map(|(u, c)| Op::Leave(u, c)),
        1 => (u.clone(), c.clone()).prop_map(|(u, c)| Op::MarkRead(u, c)),
        1 => (u.clone(), c.clone()).prop_map(|(u, c)| Op::MarkUnread(u, c)),
        1 => (u.clone(), c.clone(), any::<bool>())
            .prop_map(|(user, conversation, read)| Op::SetAccess { user, conversation, read }),
        1 => u.clone().prop_map(Op::Resubscribe),
        1 => u.clone().prop_map(Op::Backlog),
        2 => (u.clone(), 0..WINDOWS, 1..15_u32).prop_map(|(u, w, n)| Op::LoadMore(u, w, n)),
        1 => u.clone().prop_map(Op::Crowd),
        // Mostly the oldest crowd conversations: the rows around a list's bound.
        3 => (u.clone(), crowded()).prop_map(|(u, k)| Op::Poke(u, k)),
        1 => (u.clone(), crowded()).prop_map(|(u, k)| Op::Abandon(u, k)),
        2 => (u.clone(), crowded()).prop_map(|(u, k)| Op::Unpoke(u, k)),
        2 => (u.clone(), crowded(), any::<bool>()).prop_map(|(u, k, f)| Op::Flag(u, k, f)),
        1 => (u, 0..LISTS, 1..15_u32).prop_map(|(u, w, n)| Op::LoadMoreList(u, w, n)),
        1 => Just(Op::Cut),
    ]
}

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    sender: usize,
    text: String,
    reply_to: Option<String>,
    at: u64,
    /// Per emoji (in order of first appearance), the users who reacted.
    reactions: Vec<(&'static str, BTreeSet<usize>)>,
}

#[derive(Debug, Clone)]
struct Member {
    joined: u64,
    read_until: u64,
    marked_unread: bool,
    read_only: bool,
}

/// Where a user's message window of `c0` ends (PROTOCOL.md §6).
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Not computed yet (the user was not a participant): the first page once they are.
    First,
    All,
    /// Messages sent at or after this time.
    From(u64),
}

/// Where a user's conversation list ends: rows whose (activity, id) is at least the bound's.
#[derive(Debug, Clone, PartialEq)]
enum ListBound {
    All,
    From(u64, String),
}

/// A list row: its activity, its conversation's id and index.
type ListKey = (u64, String, usize);

/// The conversation lists each user keeps open: all, unread, and all again.
const LISTS: usize = 3;

/// The message windows of `c0` each user keeps open (identical subscriptions).
const WINDOWS: usize = 2;

/// Whether list `w` shows only unread conversations.
fn unread_only(w: usize) -> bool {
    w == 1
}

/// The naive model: plain maps, recomputed from scratch for every expectation.
#[derive(Default)]
struct Model {
    /// Each user's conversation list, unread list and second conversation list.
    list_bounds: Vec<[ListBound; LISTS]>,
    /// Each user's crowd conversations, oldest first.
    crowds: Vec<Vec<usize>>,
    clock: u64,
    names: Vec<String>,
    exists: BTreeSet<usize>,
    members: BTreeMap<usize, BTreeMap<usize, Member>>,
    messages: BTreeMap<usize, Vec<Msg>>,
    /// Each user's message windows of `c0`.
    bounds: Vec<[Bound; WINDOWS]>,
}

/// What the tests compare: everything but timestamps, which the model does not know.
#[derive(Debug, PartialEq)]
enum View {
    List(Vec<(String, u64, bool, Option<MsgView>)>),
    Messages(Option<Vec<MsgView>>),
    Participants(Option<Vec<(String, String, bool)>>),
    User(Option<String>),
}

#[derive(Debug, PartialEq)]
struct MsgView {
    id: String,
    sender: Option<String>,
    text: String,
    reply: Option<(String, Option<String>, String, Reactions)>,
    reactions: Reactions,
}

/// Per emoji: its count and whether the viewer reacted.
type Reactions = Vec<(String, u64, bool)>;

/// The emoji the operations react with.
const EMOJI: [&str; 3] = ["👍", "❤️", ":party:"];

impl Model {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// `u` joins `c` (a conversation the model may not know yet) now.
    fn join(&mut self, u: usize, c: usize, read_only: bool) {
        let me = Member {
            joined: self.tick(),
            read_until: 0,
            marked_unread: false,
            read_only,
        };
        self.members.entry(c).or_default().insert(u, me);
        self.resolve(u);
    }

    /// Message `m` of conversation `c` as user `u` sees it.
    fn msg_view(&self, u: usize, c: usize, m: &Msg) -> MsgView {
        let reactions = |m: &Msg| -> Reactions {
            m.reactions
                .iter()
                .map(|(e, users)| (e.to_string(), users.len() as u64, users.contains(&u)))
                .collect()
        };
        let reply = m.reply_to.as_ref().and_then(|r| {
            let referenced = self.messages[&c].iter().find(|x| &x.id == r)?;
            Some((
                referenced.id.clone(),
                Some(self.names[referenced.sender].clone()),
                referenced.text.clone(),
                reactions(referenced),
            ))
        });
        MsgView {
            id: m.id.clone(),
            sender: Some(self.names[m.sender].clone()),
            text: m.text.clone(),
            reply,
            reactions: reactions(m),
        }
    }

    /// Every row of `u`'s conversation list (or only the unread ones), in list order.
    fn rows(&self, u: usize, unread_only: bool) -> Vec<ListKey> {
        let mut rows: Vec<ListKey> = Vec::new();
        for (c, members) in &self.members {
            if let Some(me) = members.get(&u) {
                let last = self.messages[c].last().map_or(0, |m| m.at);
                if !unread_only || self.row(u, *c).2 {
                    rows.push((last.max(me.joined), format!("c{c}"), *c));
                }
            }
        }
        rows.sort_by(|a, b| b.cmp(a));
        rows
    }

    fn row(&self, u: usize, c: usize) -> (String, u64, bool, Option<MsgView>) {
        let me = &self.members[&c][&u];
        let unread = self.messages[&c]
            .iter()
            .filter(|m| m.at > me.read_until && m.sender != u)
            .count() as u64;
        let last = self.messages[&c].last().map(|m| self.msg_view(u, c, m));
        (
            format!("c{c}"),
            unread,
            me.marked_unread || unread > 0,
            last,
        )
    }

    /// `u`'s conversation list (or unread list): the rows at or above its bound.
    fn list_window(&self, u: usize, w: usize) -> View {
        let bound = &self.list_bounds[u][w];
        View::List(
            self.rows(u, unread_only(w))
                .into_iter()
                .filter(|(at, id, _)| match bound {
                    ListBound::All => true,
                    ListBound::From(b_at, b_id) => (at, id) >= (b_at, b_id),
                })
                .map(|(_, _, c)| self.row(u, c))
                .collect(),
        )
    }

    /// A list bound that holds the first `n` of `rows`.
    fn list_bound(rows: &[ListKey], n: usize) -> ListBound {
        match n.min(rows.len()) {
            end if end == rows.len() || end == 0 => ListBound::All,
            end => ListBound::From(rows[end - 1].0, rows[end - 1].1.clone()),
        }
    }

    /// `u`'s lists (re)opened: their first pages.
    fn lists_subscribed(&mut self, u: usize) {
        let bounds: [ListBound; LISTS] =
            std::array::from_fn(|w| Self::list_bound(&self.rows(u, unread_only(w)), LIST_PAGE));
        if self.list_bounds.len() <= u {
            self.list_bounds
                .resize(u + 1, std::array::from_fn(|_| ListBound::All));
        }
        self.list_bounds[u] = bounds;
    }

    /// `load_more(n)` on a list: `n` more rows join.
    fn list_load_more(&mut self, u: usize, w: usize, n: usize) {
        let rows = self.rows(u, unread_only(w));
        let bound = &mut self.list_bounds[u][w];
        if let ListBound::From(at, id) = bound.clone() {
            let inside = rows.iter().filter(|(a, i, _)| (a, i) >= (&at, &id)).count();
            *bound = Self::list_bound(&rows, inside + n);
        }
    }

    /// A list whose bound has nothing below it any more holds everything for good.
    fn lists_settle(&mut self) {
        for u in 0..self.list_bounds.len() {
            for w in 0..LISTS {
                let rows = self.rows(u, unread_only(w));
                let bound = &mut self.list_bounds[u][w];
                if let ListBound::From(at, id) = bound
                    && !rows.iter().any(|(a, i, _)| (a, i) < (&*at, &*id))
                {
                    *bound = ListBound::All;
                }
            }
        }
    }

    /// After a reconnect a list restores its length (at least a first page) and everything
    /// down to its last row.
    fn lists_restored(&mut self, u: usize) {
        for w in 0..LISTS {
            let View::List(window) = self.list_window(u, w) else {
                unreachable!()
            };
            let rows = self.rows(u, unread_only(w));
            let through = window
                .last()
                .and_then(|(id, ..)| rows.iter().position(|(_, i, _)| i == id))
                .map_or(0, |at| at + 1);
            let len = window.len().max(LIST_PAGE);
            self.list_bounds[u][w] = Self::list_bound(&rows, through.max(len));
        }
    }

    /// User `u`'s window `w` of `c0`: the messages at or above its bound, newest first.
    fn messages(&self, u: usize, w: usize) -> View {
        View::Messages(self.members[&0].contains_key(&u).then(|| {
            self.messages[&0]
                .iter()
                .rev()
                .filter(|m| match self.bounds[u][w] {
                    Bound::All => true,
                    Bound::From(at) => m.at >= at,
                    Bound::First => false,
                })
                .map(|m| self.msg_view(u, 0, m))
                .collect()
        }))
    }

    /// The bound of a window that holds the `n` newest messages of `c0`.
    fn newest(&self, n: usize) -> Bound {
        let all = &self.messages[&0];
        match all.len().checked_sub(n) {
            Some(at) if at > 0 => Bound::From(all[at].at),
            _ => Bound::All,
        }
    }

    /// A window (re)computed from scratch: the first page, once `u` may see it.
    fn subscribed(&mut self, u: usize) {
        self.bounds[u] = [Bound::First; WINDOWS];
        self.resolve(u);
    }

    fn resolve(&mut self, u: usize) {
        for w in 0..WINDOWS {
            if matches!(self.bounds[u][w], Bound::First) && self.members[&0].contains_key(&u) {
                self.bounds[u][w] = self.newest(FIRST_PAGE);
            }
        }
    }

    /// `load_more(n)` on window `w`: `n` older messages join.
    fn load_more(&mut self, u: usize, w: usize, n: usize) {
        if let Bound::From(at) = self.bounds[u][w] {
            let inside = self.messages[&0].iter().filter(|m| m.at >= at).count();
            self.bounds[u][w] = self.newest(inside + n);
        }
    }

    /// After a reconnect a window restores its length, and at least a first page; one the
    /// user could not see starts afresh.
    fn restored(&mut self, u: usize) {
        for w in 0..WINDOWS {
            match (self.bounds[u][w], self.messages(u, w)) {
                (_, View::Messages(None)) => self.bounds[u][w] = Bound::First,
                (Bound::From(_), View::Messages(Some(rows))) => {
                    self.bounds[u][w] = self.newest(rows.len().max(FIRST_PAGE));
                }
                _ => {}
            }
        }
    }

    fn participants(&self, u: usize, c: usize) -> View {
        View::Participants(self.members[&c].contains_key(&u).then(|| {
            let mut rows: Vec<_> = self.members[&c].iter().collect();
            rows.sort_by_key(|(_, m)| std::cmp::Reverse(m.joined));
            rows.into_iter()
                .map(|(p, m)| (format!("u{p}"), self.names[*p].clone(), m.read_only))
                .collect()
        }))
    }
}

fn msg_view(m: &MessageSnapshot) -> MsgView {
    let reactions = |list: &[ReactionSnapshot]| -> Reactions {
        list.iter()
            .map(|r| (r.emoji.clone(), r.count, r.current_user_reacted))
            .collect()
    };
    MsgView {
        id: m.id.to_string(),
        sender: m.sender.as_ref().map(|s| s.name.clone()),
        text: m.plaintext.clone(),
        reply: m.referenced_message.as_ref().map(|r| {
            (
                r.id.to_string(),
                r.sender.as_ref().map(|s| s.name.clone()),
                r.plaintext.clone(),
                reactions(&r.reactions),
            )
        }),
        reactions: reactions(&m.reactions),
    }
}

/// The live subscriptions of one user: its lists (see [`LISTS`]), messages of c0,
/// participants of c1, and user u0.
struct Subs {
    lists: [talkstore::ConversationListSubscription; LISTS],
    messages: [talkstore::MessageListSubscription; WINDOWS],
    participants: talkstore::ParticipantListSubscription,
    user: talkstore::UserSubscription,
}

fn list_view(list: &talkstore::ConversationListSubscription) -> View {
    let rows = list.latest().expect("list active");
    View::List(
        rows.iter()
            .map(|c: &std::sync::Arc<ConversationSnapshot>| {
                (
                    c.id.to_string(),
                    c.unread_message_count,
                    c.is_unread,
                    c.last_message.as_deref().map(msg_view),
                )
            })
            .collect(),
    )
}

impl Subs {
    /// Opens the subscriptions of user `u`, telling the model.
    fn new(s: &TalkSession, model: &mut Model, u: usize) -> Self {
        let unread = ConversationFilter::any([SimpleConversationFilter::new().is_unread(true)]);
        let subs = Subs {
            lists: [
                s.subscribe_conversations(None),
                s.subscribe_conversations(Some(unread)),
                s.subscribe_conversations(None),
            ],
            messages: std::array::from_fn(|_| {
                s.conversation("c0").unwrap().subscribe_messages(None)
            }),
            participants: s.conversation("c1").unwrap().subscribe_participants(),
            user: s.user("u0").unwrap().subscribe(),
        };
        model.subscribed(u);
        model.lists_subscribed(u);
        subs
    }

    fn views(&self) -> [View; LISTS + WINDOWS + 2] {
        let messages = |w: usize| {
            let rows = self.messages[w].latest().expect("messages active");
            View::Messages(rows.map(|v| v.iter().map(|m| msg_view(m)).collect()))
        };
        let participants = self
            .participants
            .latest()
            .expect("participants active")
            .map(|v| {
                v.iter()
                    .map(|p: &std::sync::Arc<ParticipantSnapshot>| {
                        (
                            p.user.id.to_string(),
                            p.user.name.clone(),
                            p.access == Access::Read,
                        )
                    })
                    .collect()
            });
        let user = self
            .user
            .latest()
            .expect("user active")
            .map(|u| u.name.clone());
        [
            list_view(&self.lists[0]),
            list_view(&self.lists[1]),
            list_view(&self.lists[2]),
            messages(0),
            messages(1),
            View::Participants(participants),
            View::User(user),
        ]
    }
}

/// Runs `ops`; users whose `subscribe_first` is set open their subscriptions before their
/// session's first request, and users whose `crowd_first` is set (and not `subscribe_first`)
/// have a crowd of conversations before, so that their lists start with a bound.
async fn run(
    ops: Vec<Op>,
    subscribe_first: [bool; USERS],
    crowd_first: [bool; USERS],
) -> Result<(), TestCaseError> {
    let world = crate::support::World::new().await;
    let mut model = Model {
        bounds: vec![[Bound::First; WINDOWS]; USERS],
        list_bounds: vec![std::array::from_fn(|_| ListBound::All); USERS],
        crowds: vec![Vec::new(); USERS],
        ..Model::default()
    };
    for c in 0..CONVERSATIONS {
        model.members.insert(c, BTreeMap::new());
        model.messages.insert(c, Vec::new());
    }
    let mut sessions = Vec::new();
    let mut early = Vec::new();
    for (u, first) in subscribe_first.into_iter().enumerate() {
        let s = world.session(&format!("u{u}"));
        early.push(first.then(|| Subs::new(&s, &mut model, u)));
        s.current_user()
            .set(UserParams::new().name(format!("name{u}")))
            .await
            .unwrap();
        model.names.push(format!("name{u}"));
        model.exists.insert(u);
        sessions.push(s);
    }
    for u in 0..USERS {
        if crowd_first[u] && !subscribe_first[u] {
            crowd(&mut model, &sessions, u).await;
        }
    }
    let mut subs: Vec<Subs> = Vec::new();
    for (u, (subs_of_u, s)) in early.into_iter().zip(&sessions).enumerate() {
        subs.push(subs_of_u.unwrap_or_else(|| Subs::new(s, &mut model, u)));
    }
    for (step, op) in ops.into_iter().enumerate() {
        if matches!(op, Op::Cut) && world.cut() {
            for u in 0..USERS {
                model.restored(u);
                model.lists_restored(u);
            }
        }
        let step_done = apply(&mut model, &sessions, &mut subs, op.clone());
        tokio::time::timeout(std::time::Duration::from_secs(20), step_done)
            .await
            .map_err(|_| TestCaseError::fail(format!("step {step} ({op:?}) hung for 20 s")))??;
        model.lists_settle();
        let settled = async {
            for s in &sessions {
                s.current_user().get().await.unwrap();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), settled)
            .await
            .map_err(|_| TestCaseError::fail(format!("no answers after step {step} ({op:?})")))?;
        for (u, sub) in subs.iter().enumerate() {
            let expected = [
                model.list_window(u, 0),
                model.list_window(u, 1),
                model.list_window(u, 2),
                model.messages(u, 0),
                model.messages(u, 1),
                model.participants(u, 1),
                View::User(Some(model.names[0].clone())),
            ];
            let actual = sub.views();
            for (e, a) in expected.iter().zip(actual.iter()) {
                prop_assert_eq!(e, a, "user u{} after step {} ({:?})", u, step, op);
            }
        }
    }
    Ok(())
}

/// Runs one operation through the API and the model; both must agree on whether it is allowed.
async fn apply(
    m: &mut Model,
    s: &[TalkSession],
    subs: &mut [Subs],
    op: Op,
) -> Result<(), TestCaseError> {
    let conv = |u: usize, c: usize| s[u].conversation(format!("c{c}")).unwrap();
    let member = |m: &Model, u: usize, c: usize| m.members[&c].get(&u).cloned();
    // Crowd conversations by the user's own numbering.
    let op = match op {
        Op::Poke(user, k) | Op::Abandon(user, k) | Op::Unpoke(user, k) | Op::Flag(user, k, _) => {
            let Some(&conversation) = m.crowds[user].get(k) else {
                return Ok(());
            };
            match op {
                Op::Poke(..) => Op::Send {
                    user,
                    conversation,
                    reply_to: None,
                },
                Op::Unpoke(..) => match m.messages[&conversation].len().checked_sub(1) {
                    Some(message) => Op::Delete {
                        user,
                        conversation,
                        message,
                    },
                    None => return Ok(()),
                },
                Op::Flag(_, _, true) => Op::MarkUnread(user, conversation),
                Op::Flag(..) => Op::MarkRead(user, conversation),
                _ => Op::Leave(user, conversation),
            }
        }
        other => other,
    };
    match op {
        Op::Rename(u, n) => {
            s[u].current_user()
                .set(UserParams::new().name(format!("name{u}-{n}")))
                .await
                .unwrap();
            m.names[u] = format!("name{u}-{n}");
        }
        Op::Send {
            user,
            conversation,
            reply_to,
        } => send(m, s, user, conversation, reply_to).await?,
        Op::Backlog(user) => {
            for _ in 0..BACKLOG {
                send(m, s, user, 0, None).await?;
            }
        }
        Op::LoadMore(u, w, n) => {
            if m.members[&0].contains_key(&u) {
                subs[u].messages[w]
                    .load_more(Some(n))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.load_more(u, w, n as usize);
            }
        }
        Op::Edit {
            user,
            conversation,
            message,
        }
        | Op::Delete {
            user,
            conversation,
            message,
        } => {
            let Some(target) = m.messages[&conversation].get(message).cloned() else {
                return Ok(());
            };
            let r = conv(user, conversation).message(&target.id).unwrap();
            let allowed = member(m, user, conversation).is_some_and(|me| !me.read_only)
                && target.sender == user;
            let result = if matches!(op, Op::Edit { .. }) {
                r.edit("edited").await
            } else {
                r.delete().await
            };
            prop_assert_eq!(result.is_ok(), allowed, "{:?}", result);
            if allowed {
                let list = m.messages.get_mut(&conversation).unwrap();
                if matches!(op, Op::Edit { .. }) {
                    list[message].text = "edited".into();
                } else {
                    list.remove(message);
                }
            }
        }
        Op::React {
            user,
            conversation,
            message,
            emoji,
            add,
        } => {
            // Always a message: of the `conversation`-th conversation that has any, counted
            // from the newest (so that windows show it).
            let with_messages: Vec<usize> = (m.messages.iter())
                .filter(|(_, list)| !list.is_empty())
                .map(|(c, _)| *c)
                .collect();
            let Some(&conversation) = with_messages.get(conversation % with_messages.len().max(1))
            else {
                return Ok(());
            };
            let len = m.messages[&conversation].len();
            let message = len - 1 - message.min(len - 1);
            let target = &m.messages[&conversation][message];
            let r = conv(user, conversation)
                .message(&target.id)
                .unwrap()
                .reactions(EMOJI[emoji]);
            let result = if add { r.add().await } else { r.remove().await };
            let allowed = member(m, user, conversation).is_some();
            prop_assert_eq!(result.is_ok(), allowed, "{:?}", result);
            let reactions = &mut m.messages.get_mut(&conversation).unwrap()[message].reactions;
            let at = reactions.iter().position(|(e, _)| *e == EMOJI[emoji]);
            match (allowed, add, at) {
                (true, true, Some(at)) => drop(reactions[at].1.insert(user)),
                (true, true, None) => reactions.push((EMOJI[emoji], BTreeSet::from([user]))),
                (true, false, Some(at)) => {
                    reactions[at].1.remove(&user);
                    if reactions[at].1.is_empty() {
                        reactions.remove(at);
                    }
                }
                _ => {}
            }
        }
        Op::Join(u, c) => {
            conv(u, c).set(ConversationParams::new()).await.unwrap();
            if member(m, u, c).is_none() {
                m.join(u, c, false);
            }
        }
        Op::Leave(u, c) => {
            conv(u, c)
                .participant(format!("u{u}"))
                .unwrap()
                .delete()
                .await
                .unwrap();
            m.members.get_mut(&c).unwrap().remove(&u);
        }
        Op::MarkRead(u, c) | Op::MarkUnread(u, c) => {
            let read = matches!(op, Op::MarkRead(..));
            let result = if read {
                conv(u, c).mark_as_read().await
            } else {
                conv(u, c).mark_as_unread().await
            };
            prop_assert_eq!(result.is_ok(), member(m, u, c).is_some());
            if result.is_ok() {
                let at = if read { Some(m.tick()) } else { None };
                let me = m.members.get_mut(&c).unwrap().get_mut(&u).unwrap();
                me.marked_unread = !read;
                if let Some(at) = at {
                    me.read_until = at;
                }
            }
        }
        Op::SetAccess {
            user,
            conversation,
            read,
        } => {
            let access = if read {
                Access::Read
            } else {
                Access::ReadWrite
            };
            conv(user, conversation)
                .set(ConversationParams::new().access(access))
                .await
                .unwrap();
            if member(m, user, conversation).is_none() {
                m.join(user, conversation, read);
            }
            m.members
                .get_mut(&conversation)
                .unwrap()
                .get_mut(&user)
                .unwrap()
                .read_only = read;
        }
        Op::Resubscribe(u) => {
            subs[u] = Subs::new(&s[u], m, u);
            subs[u].lists[0]
                .connected()
                .await
                .map_err(|e: Error| TestCaseError::fail(e.to_string()))?;
        }
        Op::Crowd(u) => crowd(m, s, u).await,
        Op::LoadMoreList(u, w, n) => {
            subs[u].lists[w]
                .load_more(Some(n))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            m.list_load_more(u, w, n as usize);
        }
        Op::Poke(..) | Op::Abandon(..) | Op::Unpoke(..) | Op::Flag(..) => {
            unreachable!("mapped to other operations above")
        }
        // The world cuts (it owns the connections); the model has nothing to change.
        Op::Cut => {}
    }
    Ok(())
}

/// Creates [`CROWD`] conversations of `user` alone through the API and the model.
async fn crowd(m: &mut Model, s: &[TalkSession], user: usize) {
    for _ in 0..CROWD {
        let c = m.members.len();
        if c >= CONVERSATIONS + MAX_CROWDED {
            break;
        }
        let conversation = s[user].conversation(format!("c{c}")).unwrap();
        conversation.set(ConversationParams::new()).await.unwrap();
        m.messages.insert(c, Vec::new());
        m.join(user, c, false);
        m.crowds[user].push(c);
    }
}

/// Sends one message through the API and the model.
async fn send(
    m: &mut Model,
    s: &[TalkSession],
    user: usize,
    conversation: usize,
    reply_to: Option<usize>,
) -> Result<(), TestCaseError> {
    if m.messages[&conversation].len() >= MAX_MESSAGES {
        return Ok(());
    }
    let reply = reply_to.and_then(|i| m.messages[&conversation].get(i).map(|x| x.id.clone()));
    let text = format!("text {}", m.clock);
    let mut params = SendParams::text(text.clone());
    if let Some(r) = &reply {
        params = params.referenced_message(talkstore::MessageId::new(r));
    }
    let result = s[user]
        .conversation(format!("c{conversation}"))
        .unwrap()
        .send(params)
        .await;
    match m.members[&conversation].get(&user) {
        Some(me) if !me.read_only => {
            let id = result.unwrap().id().to_string();
            let at = m.tick();
            m.messages.get_mut(&conversation).unwrap().push(Msg {
                id,
                sender: user,
                text,
                reply_to: reply,
                at,
                reactions: Vec::new(),
            });
        }
        _ => prop_assert!(result.is_err()),
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Random operation sequences keep every live subscription equal to the model.
    #[test]
    fn subscriptions_match_a_naive_model(
        ops in proptest::collection::vec(op(), 1..40),
        subscribe_first in proptest::array::uniform3(any::<bool>()),
        crowd_first in proptest::array::uniform3(any::<bool>()),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops, subscribe_first, crowd_first))?;
    }
}
