//! Who may do what: principals × operations × both policies, each cell in a world of its own,
//! checked through the public API on the backend under test. A denial changes nothing (the
//! owner's view is the same before and after), and no principal who is not a participant ever
//! receives the conversation's data in any snapshot, before or after, unless the cell lets
//! them join.

use std::{
    fmt::Debug,
    sync::{Arc, Mutex},
};

use futures_util::future::join_all;
use talkstore::{
    Access, ConversationParams, ErrorCode, OnSnapshot, ParticipantParams, Patch, Policy,
    TalkSession, UserParams,
};

use crate::support::{World, settle};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Principal {
    ReadWrite,
    Read,
    Outsider,
    Removed,
    UnknownUser,
    /// A token signed by another app (server only: the embedded engine has no tokens).
    OtherApp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Get,
    Subscribe,
    ListMessages,
    Send,
    EditOwn,
    EditOthers,
    DeleteOwn,
    DeleteOthers,
    SetConversation,
    /// `create_if_not_exists` of the existing conversation: the path that joins.
    CreateConversation,
    JoinSelf,
    /// `create_if_not_exists` of yourself as a participant.
    CreateSelf,
    AddAnother,
    RemoveAnother,
    RaiseOwnAccess,
    /// Resetting your own access, to its default ReadWrite.
    ResetOwnAccess,
    RenameAnotherUser,
    MarkRead,
    /// A reaction to the owner's message.
    React,
    GetReactions,
}

const OPS: [Op; 20] = [
    Op::Get,
    Op::Subscribe,
    Op::ListMessages,
    Op::Send,
    Op::EditOwn,
    Op::EditOthers,
    Op::DeleteOwn,
    Op::DeleteOthers,
    Op::SetConversation,
    Op::CreateConversation,
    Op::JoinSelf,
    Op::CreateSelf,
    Op::AddAnother,
    Op::RemoveAnother,
    Op::RaiseOwnAccess,
    Op::ResetOwnAccess,
    Op::RenameAnotherUser,
    Op::MarkRead,
    Op::React,
    Op::GetReactions,
];

/// What a cell must give: data, nothing (`None`), success, or a rejection code.
#[derive(Debug, PartialEq)]
enum Outcome {
    Visible,
    Hidden,
    Ok,
    Denied(ErrorCode),
}

use Outcome::{Denied, Hidden, Ok, Visible};

/// The rules of PROTOCOL.md §3 ("What a user may change"), cell by cell.
fn expected(policy: Policy, principal: Principal, op: Op) -> Outcome {
    use ErrorCode::{Forbidden, NotAParticipant, NotFound, Unauthorized};
    use Principal as P;
    let restricted = policy == Policy::Restricted;
    let member = matches!(principal, P::ReadWrite | P::Read);
    // Writes that need a participant: what a non-participant gets.
    let outside = || Denied(NotAParticipant);
    // Writes that a restricted app keeps to ReadWrite participants.
    let managed = match principal {
        P::ReadWrite => Ok,
        P::Read if restricted => Denied(Forbidden),
        P::Read => Ok,
        _ => outside(),
    };
    match (principal, op) {
        (P::OtherApp, _) => Denied(Unauthorized),
        (_, Op::Get | Op::Subscribe | Op::ListMessages | Op::GetReactions) if member => Visible,
        (_, Op::Get | Op::Subscribe | Op::ListMessages | Op::GetReactions) => Hidden,
        (P::ReadWrite, Op::Send | Op::EditOwn | Op::DeleteOwn | Op::MarkRead) => Ok,
        // A reaction is not a message: Read participants react too.
        (_, Op::MarkRead | Op::React) if member => Ok,
        (_, Op::React) => outside(),
        (P::Read, Op::Send | Op::EditOwn | Op::DeleteOwn) => Denied(Forbidden),
        // Someone else's message: never, and a Read participant is told about their access.
        (_, Op::EditOthers | Op::DeleteOthers) if member => Denied(Forbidden),
        (_, Op::Send | Op::EditOwn | Op::DeleteOwn | Op::MarkRead) => outside(),
        (_, Op::EditOthers | Op::DeleteOthers) => outside(),
        (_, Op::AddAnother | Op::RemoveAnother) => managed,
        // Joining: anyone who exists, unless restricted.
        (P::UnknownUser, op) if is_join(op) && !restricted => Denied(NotFound),
        (_, op) if is_join(op) && !restricted => Ok,
        (_, Op::SetConversation) => managed,
        // Nothing to write for a participant.
        (_, op) if is_join(op) && member => Ok,
        (_, Op::CreateConversation | Op::JoinSelf | Op::CreateSelf) => outside(),
        // `edit` of a participation you do not have.
        (_, Op::RaiseOwnAccess | Op::ResetOwnAccess) if !member && !restricted => Denied(NotFound),
        (_, Op::RaiseOwnAccess | Op::ResetOwnAccess) => managed,
        (_, Op::RenameAnotherUser) if restricted => Denied(Forbidden),
        (_, Op::RenameAnotherUser) => Ok,
    }
}

/// The operations that only read.
fn is_read(op: Op) -> bool {
    matches!(
        op,
        Op::Get | Op::Subscribe | Op::ListMessages | Op::GetReactions
    )
}

/// The operations through which a non-participant may join.
fn is_join(op: Op) -> bool {
    matches!(
        op,
        Op::SetConversation | Op::CreateConversation | Op::JoinSelf | Op::CreateSelf
    )
}

const SECRET_SUBJECT: &str = "secret-subject-7f3a";
const SECRET_TEXT: &str = "secret-text-91c2";

/// One cell's world: `owner` made conversation `c` with a secret subject and message, with
/// `bystander` in it and `extra` outside; the principal `p` holds its role. `own` is a message
/// of `p`'s in `c` (a missing id for principals who never sent one), `others` the owner's.
struct Cell {
    _world: World,
    owner: TalkSession,
    p: TalkSession,
    own: String,
    others: String,
}

async fn set_up(policy: Policy, principal: Principal) -> Option<Cell> {
    let world = World::with_policy(policy).await;
    let p = if principal == Principal::OtherApp {
        world.foreign_session("p")?
    } else {
        world.session("p")
    };
    let owner = world.session("owner");
    let named = |s: &TalkSession, name: &str| {
        let user = s.current_user();
        let params = UserParams::new().name(name);
        async move { user.set(params).await.unwrap() }
    };
    named(&owner, "Owner").await;
    named(&world.session("extra"), "Extra").await;
    named(&world.session("bystander"), "Bystander").await;
    if !matches!(principal, Principal::UnknownUser | Principal::OtherApp) {
        named(&p, "P").await;
    }
    let c = owner.conversation("c").unwrap();
    c.set(ConversationParams::new().subject(SECRET_SUBJECT))
        .await
        .unwrap();
    let others = c.send(SECRET_TEXT).await.unwrap().id().to_string();
    let add = |user: &str| {
        let participant = c.participant(user).unwrap();
        async move { participant.set(ParticipantParams::new()).await.unwrap() }
    };
    add("bystander").await;
    let mut own = String::from("msg_missing");
    if matches!(
        principal,
        Principal::ReadWrite | Principal::Read | Principal::Removed
    ) {
        add("p").await;
        let mine = p.conversation("c").unwrap().send("mine").await.unwrap();
        own = mine.id().to_string();
    }
    let mine = c.participant("p").unwrap();
    match principal {
        Principal::Read => mine
            .edit(ParticipantParams::new().access(Access::Read))
            .await
            .unwrap(),
        Principal::Removed => mine.delete().await.unwrap(),
        _ => {}
    }
    settle(std::slice::from_ref(&owner)).await;
    Some(Cell {
        _world: world,
        owner,
        p,
        own,
        others,
    })
}

async fn run(cell: &Cell, op: Op) -> Result<Option<String>, talkstore::Error> {
    let c = cell.p.conversation("c").unwrap();
    let done = |result: Result<(), talkstore::Error>| result.map(|()| None);
    let shown = |s: Option<String>| -> Result<_, talkstore::Error> { Result::Ok(s) };
    match op {
        Op::Get => c.get().await.map(|s| s.map(|c| format!("{c:?}"))),
        Op::Subscribe => shown(c.subscribe().connected().await?.map(|c| format!("{c:?}"))),
        Op::ListMessages => {
            let sub = c.subscribe_messages(None);
            shown(sub.connected().await?.map(|m| format!("{m:?}")))
        }
        Op::Send => c.send("hello").await.map(|_| None),
        Op::EditOwn => done(c.message(&cell.own).unwrap().edit("edited").await),
        Op::EditOthers => done(c.message(&cell.others).unwrap().edit("edited").await),
        Op::DeleteOwn => done(c.message(&cell.own).unwrap().delete().await),
        Op::DeleteOthers => done(c.message(&cell.others).unwrap().delete().await),
        Op::SetConversation => done(
            c.set(ConversationParams::new().custom_field("k", Some("v")))
                .await,
        ),
        Op::CreateConversation => done(c.create_if_not_exists(None).await),
        Op::JoinSelf => done(
            c.participant("p")
                .unwrap()
                .set(ParticipantParams::new())
                .await,
        ),
        Op::CreateSelf => done(c.participant("p").unwrap().create_if_not_exists(None).await),
        Op::AddAnother => done(
            c.participant("extra")
                .unwrap()
                .set(ParticipantParams::new())
                .await,
        ),
        Op::RemoveAnother => done(c.participant("bystander").unwrap().delete().await),
        Op::RaiseOwnAccess => done(
            c.participant("p")
                .unwrap()
                .edit(ParticipantParams::new().access(Access::ReadWrite))
                .await,
        ),
        Op::ResetOwnAccess => done(
            c.participant("p")
                .unwrap()
                .edit(ParticipantParams::new().access(Patch::Reset))
                .await,
        ),
        Op::RenameAnotherUser => done(
            cell.p
                .user("extra")
                .unwrap()
                .set(UserParams::new().name("Hacked"))
                .await,
        ),
        Op::MarkRead => done(c.mark_as_read().await),
        Op::React => done(c.message(&cell.others).unwrap().reactions("👍").add().await),
        Op::GetReactions => {
            let reactions = c.message(&cell.others).unwrap().reactions("👍");
            let first = reactions.get_first_reactions().await?;
            shown(first.map(|list| format!("{list:?}")))
        }
    }
}

/// An `on_snapshot` callback that records every snapshot it sees.
fn recorder<T: Debug + 'static>(log: &Arc<Mutex<Vec<String>>>) -> Option<OnSnapshot<T>> {
    let log = log.clone();
    Some(Box::new(move |snapshot: &T, _| {
        log.lock().unwrap().push(format!("{snapshot:?}"));
    }))
}

/// What the owner sees of everything a principal could touch.
async fn owner_view(cell: &Cell) -> String {
    let c = cell.owner.conversation("c").unwrap();
    let participants = c.subscribe_participants();
    let messages = c.subscribe_messages(None);
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        c.get().await.unwrap(),
        participants.connected().await.unwrap(),
        messages.connected().await.unwrap(),
        cell.owner.user("extra").unwrap().get().await.unwrap(),
    )
}

/// Runs one cell; returns a description of what was wrong, if anything.
async fn check(policy: Policy, principal: Principal, op: Op) -> Option<String> {
    let cell = set_up(policy, principal).await?;
    let cell_name = format!("{policy:?} × {principal:?} × {op:?}");
    // The principal watches everything that could show the conversation, from the start.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = cell.p.conversation("c").unwrap();
    let _watchers = (
        cell.p.subscribe_conversations_with(None, recorder(&seen)),
        c.subscribe_with(recorder(&seen)),
        c.subscribe_messages_with(None, recorder(&seen)),
        c.subscribe_participants_with(recorder(&seen)),
    );
    let before = owner_view(&cell).await;
    let result = run(&cell, op).await;
    let outcome = match &result {
        Result::Ok(Some(_)) => Visible,
        Result::Ok(None) if is_read(op) => Hidden,
        Result::Ok(None) => Ok,
        Err(error) => match error.code() {
            Some(code) => Denied(code),
            None => return Some(format!("{cell_name}: an error without a code: {error}")),
        },
    };
    let _ = cell.p.sync().await;
    let expected = expected(policy, principal, op);
    if outcome != expected {
        return Some(format!(
            "{cell_name}: got {outcome:?}, expected {expected:?}"
        ));
    }
    if let Err(error) = &result {
        let text = error.to_string();
        if text.contains(SECRET_SUBJECT) || text.contains(SECRET_TEXT) {
            return Some(format!("{cell_name}: the denial leaks data: {text}"));
        }
    }
    if matches!(outcome, Denied(_) | Hidden) && owner_view(&cell).await != before {
        return Some(format!("{cell_name}: a refused operation changed the data"));
    }
    let joined = outcome == Ok && is_join(op);
    let member = matches!(principal, Principal::ReadWrite | Principal::Read);
    if !member && !joined {
        let seen = seen.lock().unwrap();
        if let Some(leak) = seen
            .iter()
            .find(|s| s.contains(SECRET_SUBJECT) || s.contains(SECRET_TEXT))
        {
            return Some(format!("{cell_name}: a snapshot leaked data: {leak}"));
        }
    }
    None
}

/// Every cell of policies × principals × operations gives what the rules say; cells run
/// concurrently, each in its own world.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_by_operations_under_both_policies() {
    let principals = [
        Principal::ReadWrite,
        Principal::Read,
        Principal::Outsider,
        Principal::Removed,
        Principal::UnknownUser,
        Principal::OtherApp,
    ];
    let mut failures = Vec::new();
    for policy in [Policy::Permissive, Policy::Restricted] {
        for principal in principals {
            let cells = OPS.map(|op| check(policy, principal, op));
            failures.extend(join_all(cells).await.into_iter().flatten());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A Read participant of a restricted app keeps their own settings: notify changes, and
/// lowering (or keeping) their access, pass; so does leaving.
#[tokio::test]
async fn restricted_participants_keep_their_own_settings() {
    let cell = set_up(Policy::Restricted, Principal::Read).await.unwrap();
    let c = cell.p.conversation("c").unwrap();
    let mine = c.participant("p").unwrap();
    mine.edit(ParticipantParams::new().notify(false))
        .await
        .unwrap();
    mine.edit(ParticipantParams::new().access(Access::Read))
        .await
        .unwrap();
    c.set(ConversationParams::new().notify(true)).await.unwrap();
    let raise = c
        .set(ConversationParams::new().access(Access::ReadWrite))
        .await;
    assert_eq!(raise.unwrap_err().code(), Some(ErrorCode::Forbidden));
    mine.delete().await.unwrap();
    assert_eq!(c.get().await.unwrap(), None);
}

/// A restricted app's users create conversations (becoming ReadWrite participants), invite,
/// and may run `create_if_not_exists` on users that exist; they cannot create other users.
#[tokio::test]
async fn restricted_users_create_conversations_and_invite() {
    let world = World::with_policy(Policy::Restricted).await;
    let (alice, bob) = (world.session("alice"), world.session("bob"));
    for (s, name) in [(&alice, "Alice"), (&bob, "Bob")] {
        s.current_user()
            .set(UserParams::new().name(name))
            .await
            .unwrap();
    }
    let existing = alice.user("bob").unwrap();
    existing
        .create_if_not_exists(UserParams::new().name("Not Bob"))
        .await
        .unwrap();
    let new = alice.user("carol").unwrap();
    let created = new
        .create_if_not_exists(UserParams::new().name("Carol"))
        .await;
    assert_eq!(created.unwrap_err().code(), Some(ErrorCode::Forbidden));
    let c = alice.conversation("new").unwrap();
    c.create_if_not_exists(None).await.unwrap();
    c.participant("bob")
        .unwrap()
        .set(ParticipantParams::new().access(Access::Read))
        .await
        .unwrap();
    let mine = c
        .participant("alice")
        .unwrap()
        .get()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine.access, Access::ReadWrite);
    // Bob, invited with Read access, sees it but cannot raise himself.
    let bobs = bob.conversation("new").unwrap();
    assert!(bobs.get().await.unwrap().is_some());
    let raise = bobs
        .participant("bob")
        .unwrap()
        .edit(ParticipantParams::new().access(Access::ReadWrite))
        .await;
    assert_eq!(raise.unwrap_err().code(), Some(ErrorCode::Forbidden));
    assert_eq!(
        bob.user("bob").unwrap().get().await.unwrap().unwrap().name,
        "Bob"
    );
}
