//! Who may do what: a table of principals × operations, each cell checked through the public
//! API on the backend under test, with denials that leak nothing.

use talkstore::{Access, ConversationParams, ErrorCode, ParticipantParams, TalkSession};

use crate::support::{World, capitalize, settle};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Principal {
    ReadWrite,
    Read,
    Outsider,
    Removed,
    UnknownUser,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Get,
    Subscribe,
    Send,
    EditOwn,
    EditOthers,
    DeleteOthers,
    SetConversation,
    AddParticipant,
    MarkRead,
    ListMessages,
}

/// What a cell must give: data, nothing (`None`), success, or a rejection code.
#[derive(Debug, PartialEq)]
enum Outcome {
    Visible,
    Hidden,
    Ok,
    Denied(ErrorCode),
}

use Outcome::{Denied, Hidden, Ok, Visible};

fn expected(principal: Principal, op: Op) -> Outcome {
    use ErrorCode::{Forbidden, NotAParticipant, NotFound};
    let member = matches!(principal, Principal::ReadWrite | Principal::Read);
    match op {
        Op::Get | Op::Subscribe | Op::ListMessages => {
            if member {
                Visible
            } else {
                Hidden
            }
        }
        Op::Send | Op::EditOwn => match principal {
            Principal::ReadWrite => Ok,
            Principal::Read => Denied(Forbidden),
            _ => Denied(NotAParticipant),
        },
        Op::EditOthers | Op::DeleteOthers => {
            if member {
                Denied(Forbidden)
            } else {
                Denied(NotAParticipant)
            }
        }
        // As in TalkJS with client-side syncing: `set` adds you; the user must exist.
        Op::SetConversation => {
            if principal == Principal::UnknownUser {
                Denied(NotFound)
            } else {
                Ok
            }
        }
        Op::AddParticipant | Op::MarkRead => {
            if member {
                Ok
            } else {
                Denied(NotAParticipant)
            }
        }
    }
}

const SECRET_SUBJECT: &str = "secret-subject-7f3a";
const SECRET_TEXT: &str = "secret-text-91c2";

/// A world where `owner` made conversation `c` with a secret subject and message, and the
/// principal `p` holds its role; returns the principal's session and a message id of theirs.
async fn setup(principal: Principal) -> (World, TalkSession, TalkSession, String, String) {
    let world = World::new().await;
    let owner = world.session("owner");
    let p = world.session("p");
    owner
        .current_user()
        .set(talkstore::UserParams::new().name("Owner"))
        .await
        .unwrap();
    if principal != Principal::UnknownUser {
        p.current_user()
            .set(talkstore::UserParams::new().name(capitalize("p")))
            .await
            .unwrap();
    }
    world
        .session("extra")
        .current_user()
        .set(talkstore::UserParams::new().name("Extra"))
        .await
        .unwrap();
    let c = owner.conversation("c").unwrap();
    c.set(ConversationParams::new().subject(SECRET_SUBJECT))
        .await
        .unwrap();
    let others = owner
        .conversation("c")
        .unwrap()
        .send(SECRET_TEXT)
        .await
        .unwrap()
        .id()
        .to_string();
    let mut own = String::from("missing");
    if matches!(
        principal,
        Principal::ReadWrite | Principal::Read | Principal::Removed
    ) {
        c.participant("p")
            .unwrap()
            .set(ParticipantParams::new())
            .await
            .unwrap();
        own = p
            .conversation("c")
            .unwrap()
            .send("mine")
            .await
            .unwrap()
            .id()
            .to_string();
    }
    match principal {
        Principal::Read => {
            let read = ParticipantParams::new().access(Access::Read);
            c.participant("p").unwrap().edit(read).await.unwrap();
        }
        Principal::Removed => c.participant("p").unwrap().delete().await.unwrap(),
        _ => {}
    }
    settle(&[owner.clone(), p.clone()]).await;
    (world, owner, p, own, others)
}

async fn run(
    p: &TalkSession,
    op: Op,
    own: &str,
    others: &str,
) -> Result<Option<String>, talkstore::Error> {
    let c = p.conversation("c").unwrap();
    let shown = |s: Option<String>| s;
    match op {
        Op::Get => c.get().await.map(|s| s.map(|c| format!("{:?}", c))),
        Op::Subscribe => {
            let sub = c.subscribe();
            Result::Ok(shown(sub.connected().await?.map(|c| format!("{c:?}"))))
        }
        Op::ListMessages => {
            let sub = c.subscribe_messages(None);
            Result::Ok(sub.connected().await?.map(|m| format!("{m:?}")))
        }
        Op::Send => c.send("hello").await.map(|_| None),
        Op::EditOwn => c.message(own).unwrap().edit("edited").await.map(|()| None),
        Op::EditOthers => c
            .message(others)
            .unwrap()
            .edit("edited")
            .await
            .map(|()| None),
        Op::DeleteOthers => c.message(others).unwrap().delete().await.map(|()| None),
        Op::SetConversation => c
            .set(ConversationParams::new().custom_field("k", Some("v")))
            .await
            .map(|()| None),
        Op::AddParticipant => c
            .participant("extra")
            .unwrap()
            .set(ParticipantParams::new())
            .await
            .map(|()| None),
        Op::MarkRead => c.mark_as_read().await.map(|()| None),
    }
}

/// Every cell of principals × operations gives what the rules say, and no denial or hidden
/// result carries the conversation's data.
#[tokio::test]
async fn principals_by_operations() {
    let principals = [
        Principal::ReadWrite,
        Principal::Read,
        Principal::Outsider,
        Principal::Removed,
        Principal::UnknownUser,
    ];
    let ops = [
        Op::Get,
        Op::Subscribe,
        Op::ListMessages,
        Op::Send,
        Op::EditOwn,
        Op::EditOthers,
        Op::DeleteOthers,
        Op::AddParticipant,
        Op::MarkRead,
        // Last: for outsiders it joins the conversation.
        Op::SetConversation,
    ];
    for principal in principals {
        let (_world, owner, p, own, others) = setup(principal).await;
        for op in ops {
            let result = run(&p, op, &own, &others).await;
            let outcome = match &result {
                Result::Ok(Some(_)) => Visible,
                Result::Ok(None) if matches!(op, Op::Get | Op::Subscribe | Op::ListMessages) => {
                    Hidden
                }
                Result::Ok(None) => Ok,
                Err(error) => {
                    let text = error.to_string();
                    assert!(
                        !text.contains(SECRET_SUBJECT) && !text.contains(SECRET_TEXT),
                        "{principal:?} {op:?}: the denial leaks data: {text}"
                    );
                    Denied(
                        error
                            .code()
                            .unwrap_or_else(|| panic!("{principal:?} {op:?}: {error}")),
                    )
                }
            };
            assert_eq!(outcome, expected(principal, op), "{principal:?} × {op:?}");
        }
        // The owner's view is intact: nobody else's write got through.
        let text = owner
            .conversation("c")
            .unwrap()
            .message(&others)
            .unwrap()
            .get()
            .await
            .unwrap();
        assert_eq!(text.unwrap().plaintext, SECRET_TEXT, "{principal:?}");
    }
}
