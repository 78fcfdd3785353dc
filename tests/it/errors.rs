//! Bad input: each is a typed error with a clear message; nothing panics or changes.

use talkstore::{
    ConversationFilter, ConversationParams, Error, ErrorCode, MessageFilter, ParticipantParams,
    SendContentBlock, SendParams, SessionOptions, TextNode, UserParams, get_talk_session,
};

use crate::support::{app, conversation, settle, users};

fn code(result: Result<impl std::fmt::Debug, Error>) -> ErrorCode {
    match result {
        Err(Error::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Empty ids fail at once, before any IO, with the kind of id in the message.
#[tokio::test]
async fn empty_ids() {
    let session = get_talk_session(SessionOptions::new(app(), "me")).unwrap();
    let error = session.user("").unwrap_err();
    assert_eq!(
        error.to_string(),
        "creating UserId failed because the id is an empty string"
    );
    assert!(session.conversation("").is_err());
    let c = session.conversation("c").unwrap();
    assert!(c.participant("").is_err());
    assert!(c.message("").is_err());
    assert!(matches!(
        get_talk_session(SessionOptions::new(app(), "")),
        Err(Error::InvalidId(_))
    ));
    assert!(matches!(
        get_talk_session(SessionOptions::new("", "me")),
        Err(Error::InvalidOptions(_))
    ));
}

/// Writes that break a rule are refused with the right code, and leave no trace.
#[tokio::test]
async fn rejected_writes_change_nothing() {
    let sessions = users(&["alice", "bob", "eve"]).await;
    let [alice, bob, eve] = &sessions[..] else {
        unreachable!()
    };
    conversation(alice, "c", &["bob"]).await;
    let list = alice.subscribe_conversations(None);
    let before = list.connected().await.unwrap();
    let hello = alice
        .conversation("c")
        .unwrap()
        .send("hello")
        .await
        .unwrap();
    let before_messages = alice.conversation("c").unwrap().get().await.unwrap();

    // Not a participant.
    let error = eve.conversation("c").unwrap().send("hi").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotAParticipant));
    assert!(
        error
            .to_string()
            .starts_with("Send message to conversation c failed"),
        "{error}"
    );
    assert_eq!(
        code(eve.conversation("c").unwrap().mark_as_read().await),
        ErrorCode::NotAParticipant
    );
    assert_eq!(eve.conversation("c").unwrap().get().await.unwrap(), None);
    assert_eq!(
        code(
            eve.conversation("c")
                .unwrap()
                .participant("bob")
                .unwrap()
                .get()
                .await
        ),
        ErrorCode::NotAParticipant
    );
    assert_eq!(
        eve.conversation("c")
            .unwrap()
            .message(hello.id())
            .unwrap()
            .get()
            .await
            .unwrap(),
        None
    );

    // Read access cannot send.
    alice
        .conversation("c")
        .unwrap()
        .participant("bob")
        .unwrap()
        .edit(ParticipantParams::new().access(talkstore::Access::Read))
        .await
        .unwrap();
    assert_eq!(
        code(bob.conversation("c").unwrap().send("hi").await),
        ErrorCode::Forbidden
    );

    // Someone else's message.
    let bobs_view = bob.conversation("c").unwrap().message(hello.id()).unwrap();
    assert_eq!(code(bobs_view.edit("changed").await), ErrorCode::Forbidden);
    assert_eq!(code(bobs_view.delete().await), ErrorCode::Forbidden);

    // A reply to a message of another conversation; a user that does not exist.
    conversation(alice, "other", &[]).await;
    let elsewhere = SendParams::text("x").referenced_message(hello.id().clone());
    assert_eq!(
        code(alice.conversation("other").unwrap().send(elsewhere).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            alice
                .conversation("c")
                .unwrap()
                .participant("nobody")
                .unwrap()
                .set(ParticipantParams::new())
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            alice
                .conversation("c")
                .unwrap()
                .participant("eve")
                .unwrap()
                .edit(ParticipantParams::new())
                .await
        ),
        ErrorCode::NotFound
    );
    // Creating a user needs a name.
    assert_eq!(
        code(
            alice
                .user("new")
                .unwrap()
                .set(UserParams::new().role("x"))
                .await
        ),
        ErrorCode::InvalidRequest
    );
    assert_eq!(alice.user("new").unwrap().get().await.unwrap(), None);

    settle(&sessions).await;
    let after = alice.conversation("c").unwrap().get().await.unwrap();
    assert_eq!(
        after, before_messages,
        "no rejected write changed the conversation"
    );
    assert_eq!(list.latest().unwrap().len(), before.len() + 1);
    assert_eq!(hello.get().await.unwrap().unwrap().plaintext, "hello");
}

/// Content users may not send is refused before sending; the message text limit holds.
#[tokio::test]
async fn forbidden_content() {
    let sessions = users(&["alice"]).await;
    conversation(&sessions[0], "c", &[]).await;
    let c = sessions[0].conversation("c").unwrap();
    let link = SendContentBlock::Text {
        children: vec![TextNode::Link {
            url: "https://x.com".into(),
            children: vec![TextNode::Text("x".into())],
        }],
    };
    assert!(matches!(
        c.send(SendParams::content(link)).await,
        Err(Error::InvalidContent(_))
    ));
    assert!(matches!(c.send("   ").await, Err(Error::InvalidContent(_))));
    let bad_location = SendContentBlock::Location {
        latitude: 91.0,
        longitude: 0.0,
    };
    assert!(matches!(
        c.send(SendParams::content(bad_location)).await,
        Err(Error::InvalidContent(_))
    ));
    let file = SendContentBlock::File {
        file_token: String::from("forged").into(),
    };
    assert_eq!(
        code(c.send(SendParams::content(file)).await),
        ErrorCode::InvalidRequest
    );
    let huge = "x".repeat(talkstore::MAX_MESSAGE_TEXT_BYTES + 1);
    assert_eq!(code(c.send(huge).await), ErrorCode::LimitExceeded);
    // Markup that looks like a link stays text.
    let m = c.send("[click](https://evil.example)").await.unwrap();
    assert_eq!(
        m.get().await.unwrap().unwrap().plaintext,
        "[click](https://evil.example)"
    );
    assert_eq!(
        c.get()
            .await
            .unwrap()
            .unwrap()
            .last_message
            .as_ref()
            .unwrap()
            .id,
        *m.id()
    );
}

/// Malformed filters are typed errors naming the problem.
#[test]
fn malformed_filters() {
    for (text, needle) in [
        (r#"{"isUnread": "yes"}"#, "isUnread"),
        (r#"{"createdAt": ["between", [5, 1]]}"#, "createdAt"),
        (r#"{"subjcet": ["==", "x"]}"#, "subjcet"),
        (r#"{"access": ["~=", "Read"]}"#, "~="),
        (r#"["any", {}]"#, "any"),
    ] {
        let error = text.parse::<ConversationFilter>().unwrap_err();
        assert!(error.to_string().contains(needle), "{text}: {error}");
    }
    assert!(r#"{"sender": {"id": ["oneOf", "x"]}}"#.parse::<MessageFilter>().is_err());
    let ok: ConversationFilter = r#"{"custom": {"a": "exists"}, "hasMessages": true}"#
        .parse()
        .unwrap();
    assert_eq!(
        ok,
        serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap()
    );
    let _ = ConversationParams::new();
}
