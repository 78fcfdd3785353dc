//! The backend REST API of `talkstore-server`: app authentication, patch semantics, batches that
//! are all or nothing, messages with idempotency keys, and live sessions seeing REST writes.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use talkstore::{SessionOptions, get_talk_session, server::mint_user_token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{app, server::Running, settle};

/// One HTTP/1.1 request; returns the status and the JSON body.
async fn http(
    running: &Running,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, body) = running
        .http(method, path, auth, body.as_bytes())
        .await
        .expect("an answer");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Like [`http`], asserting that the request succeeded (200); returns the body.
async fn succeeds(
    running: &Running,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Value {
    let (status, body) = http(running, method, path, auth, body).await;
    assert_eq!(status, 200, "{method} {path}: {body}");
    body
}

fn app_token(running: &Running, exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims =
        json!({"tokenType": "app", "iss": running.credentials.id, "exp": now + exp_offset});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(running.credentials.secret.as_bytes()),
    )
    .unwrap()
}

/// The secret and app tokens authenticate; anything else is 401 with a reason.
#[tokio::test]
async fn rest_requires_the_app_secret_or_an_app_token() {
    let running = Running::start(&app()).await;
    let secret = running.credentials.secret.clone();
    let user = json!({"name": "Alice"});
    succeeds(
        &running,
        "PUT",
        "/users/alice",
        Some(&secret),
        Some(user.clone()),
    )
    .await;
    succeeds(
        &running,
        "PUT",
        "/users/alice",
        Some(&app_token(&running, 30)),
        Some(user.clone()),
    )
    .await;
    let user_token = mint_user_token(&running.credentials, "alice", 600).unwrap();
    for bad in [
        None,
        Some("nope"),
        Some(user_token.as_str()),
        Some(&app_token(&running, -120)),
    ] {
        let (status, body) = http(&running, "PUT", "/users/alice", bad, Some(user.clone())).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{bad:?}: {body}"
        );
    }
}

/// Users: patch semantics, private fields only through REST, batches all or nothing, 404s.
#[tokio::test]
async fn users() {
    let running = Running::start(&app()).await;
    let s = Some(running.credentials.secret.clone());
    let s = s.as_deref();
    let (status, body) = http(&running, "PUT", "/users/bob", s, Some(json!({"role": "x"}))).await;
    assert_eq!(status, 400, "a new user needs a name: {body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("name is required")
    );
    succeeds(
        &running,
        "PUT",
        "/users/bob",
        s,
        Some(json!({"name": "Bob", "email": ["b@x.io"], "custom": {"a": "1"}})),
    )
    .await;
    succeeds(
        &running,
        "PUT",
        "/users/bob",
        s,
        Some(json!({"custom": {"a": null, "b": "2"}})),
    )
    .await;
    let bob = succeeds(&running, "GET", "/users/bob", s, None).await;
    assert_eq!(
        (bob["name"].as_str(), &bob["custom"], &bob["email"]),
        (Some("Bob"), &json!({"b": "2"}), &json!(["b@x.io"]))
    );
    assert_eq!(http(&running, "GET", "/users/nobody", s, None).await.0, 404);
    // All or nothing: the second user lacks a name, so neither is created.
    let batch = json!({"carol": {"name": "Carol"}, "dave": {"role": "x"}});
    assert_eq!(http(&running, "PUT", "/users", s, Some(batch)).await.0, 400);
    assert_eq!(http(&running, "GET", "/users/carol", s, None).await.0, 404);
    let too_many: serde_json::Map<String, Value> = (0..101)
        .map(|i| (format!("u{i}"), json!({"name": "x"})))
        .collect();
    assert_eq!(
        http(&running, "PUT", "/users", s, Some(Value::Object(too_many)))
            .await
            .0,
        400
    );
    assert_eq!(
        http(&running, "PUT", "/users/bob", s, Some(json!({"nmae": "x"})))
            .await
            .0,
        400
    );
}

/// Conversations, participants and messages through REST reach a live session at once;
/// idempotency keys make retried posts safe; system messages have no sender.
#[tokio::test]
async fn conversations_participants_and_messages() {
    let running = Running::start(&app()).await;
    let s = Some(running.credentials.secret.clone());
    let s = s.as_deref();
    for user in ["alice", "bob"] {
        succeeds(
            &running,
            "PUT",
            &format!("/users/{user}"),
            s,
            Some(json!({"name": user})),
        )
        .await;
    }
    let (status, body) = http(
        &running,
        "PUT",
        "/conversations/c",
        s,
        Some(json!({"participants": ["alice", "ghost"]})),
    )
    .await;
    assert_eq!(status, 404, "participants must exist: {body}");
    succeeds(
        &running,
        "PUT",
        "/conversations/c",
        s,
        Some(json!({"participants": ["alice"], "subject": "Hi"})),
    )
    .await;

    let token = mint_user_token(&running.credentials, "alice", 600).unwrap();
    let alice = get_talk_session(
        SessionOptions::new(&running.credentials.id, "alice")
            .url(format!("ws://{}", running.addr))
            .token(token),
    )
    .unwrap();
    let window = alice.conversation("c").unwrap().subscribe_messages(None);
    window.connected().await.unwrap();

    succeeds(
        &running,
        "PUT",
        "/conversations/c/participants/bob",
        s,
        Some(json!({"access": "Read"})),
    )
    .await;
    succeeds(
        &running,
        "PATCH",
        "/conversations/c/participants/bob",
        s,
        Some(json!({"notify": false})),
    )
    .await;
    let conversation = succeeds(&running, "GET", "/conversations/c", s, None).await;
    assert_eq!(conversation["subject"], "Hi");
    assert_eq!(conversation["participants"]["bob"]["access"], "Read");
    assert_eq!(conversation["participants"]["bob"]["notify"], false);

    let post = json!([
        {"type": "UserMessage", "sender": "alice", "text": "from *REST*", "idempotencyKey": "k1"},
        {"type": "SystemMessage", "text": "Bob joined"}
    ]);
    let (status, ids) = http(
        &running,
        "POST",
        "/conversations/c/messages",
        s,
        Some(post.clone()),
    )
    .await;
    assert_eq!(status, 200, "{ids}");
    // A retry with the same key does not duplicate the first message.
    let again = succeeds(
        &running,
        "POST",
        "/conversations/c/messages",
        s,
        Some(json!([post[0]])),
    )
    .await;
    assert_eq!(again[0]["id"], ids[0]["id"]);
    settle(std::slice::from_ref(&alice)).await;
    let seen = window.latest().unwrap().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].plaintext.as_str(), seen[0].sender.is_none()),
        ("Bob joined", true)
    );
    assert_eq!(seen[1].plaintext, "from REST");

    // Bad posts: a sender who is not a participant, a system message with a sender, 11 messages.
    for (body, status) in [
        (
            json!([{"type": "UserMessage", "sender": "nobody", "text": "x"}]),
            403,
        ),
        (
            json!([{"type": "SystemMessage", "sender": "alice", "text": "x"}]),
            400,
        ),
        (
            json!(
                (0..11)
                    .map(|_| json!({"type": "SystemMessage", "text": "x"}))
                    .collect::<Vec<_>>()
            ),
            400,
        ),
        (
            json!([{"type": "UserMessage", "sender": "alice", "text": ""}]),
            400,
        ),
    ] {
        assert_eq!(
            http(
                &running,
                "POST",
                "/conversations/c/messages",
                s,
                Some(body.clone())
            )
            .await
            .0,
            status,
            "{body}"
        );
    }
    let (status, listed) = http(
        &running,
        "GET",
        "/conversations/c/messages?limit=1",
        s,
        None,
    )
    .await;
    assert_eq!((status, listed.as_array().unwrap().len()), (200, 1));
    let first = listed[0]["id"].as_str().unwrap().to_owned();
    let older = succeeds(
        &running,
        "GET",
        &format!("/conversations/c/messages?startingAfter={first}"),
        s,
        None,
    )
    .await;
    assert_eq!(older[0]["id"], ids[0]["id"]);
    assert_eq!(
        http(
            &running,
            "GET",
            "/conversations/c/messages?limit=101",
            s,
            None
        )
        .await
        .0,
        400
    );

    succeeds(
        &running,
        "DELETE",
        "/conversations/c/participants/alice",
        s,
        None,
    )
    .await;
    settle(std::slice::from_ref(&alice)).await;
    assert_eq!(
        window.latest().unwrap(),
        None,
        "a removed participant's window closes at once"
    );
    succeeds(
        &running,
        "DELETE",
        "/conversations/c/participants/alice",
        s,
        None,
    )
    .await;
}

/// The backend may edit and delete any message and delete whole conversations; live sessions
/// follow at once; without credentials every route is refused.
#[tokio::test]
async fn backend_edits_deletes_and_authorization() {
    let running = Running::start(&app()).await;
    let secret = running.credentials.secret.clone();
    let s = Some(secret.as_str());
    succeeds(
        &running,
        "PUT",
        "/users/alice",
        s,
        Some(json!({"name": "Alice"})),
    )
    .await;
    succeeds(
        &running,
        "PUT",
        "/conversations/c",
        s,
        Some(json!({"participants": ["alice"]})),
    )
    .await;
    let token = mint_user_token(&running.credentials, "alice", 600).unwrap();
    let alice = get_talk_session(
        SessionOptions::new(&running.credentials.id, "alice")
            .url(format!("ws://{}", running.addr))
            .token(token),
    )
    .unwrap();
    let mine = alice
        .conversation("c")
        .unwrap()
        .send("mine")
        .await
        .unwrap()
        .id()
        .to_string();
    let window = alice.conversation("c").unwrap().subscribe_messages(None);
    window.connected().await.unwrap();
    let list = alice.subscribe_conversations(None);
    assert_eq!(list.connected().await.unwrap().len(), 1);

    // Without credentials, every route is refused and nothing changes.
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/users/alice".into(), None),
        (
            "PUT",
            "/users/alice".into(),
            Some(json!({"name": "Mallory"})),
        ),
        ("GET", "/conversations/c".into(), None),
        (
            "PUT",
            "/conversations/c".into(),
            Some(json!({"subject": "pwned"})),
        ),
        ("PUT", "/conversations/c/participants/alice".into(), None),
        (
            "POST",
            "/conversations/c/messages".into(),
            Some(json!([{"type": "SystemMessage", "text": "x"}])),
        ),
        ("GET", "/conversations/c/messages".into(), None),
        (
            "PUT",
            format!("/conversations/c/messages/{mine}"),
            Some(json!({"text": "pwned"})),
        ),
        ("DELETE", format!("/conversations/c/messages/{mine}"), None),
        ("DELETE", "/conversations/c".into(), None),
    ];
    for (method, path, body) in &routes {
        let (status, reply) = http(&running, method, path, None, body.clone()).await;
        assert_eq!(status, 401, "{method} {path}");
        assert!(
            !reply.to_string().contains("mine"),
            "a refusal leaks data: {reply}"
        );
    }
    settle(std::slice::from_ref(&alice)).await;
    assert_eq!(window.latest().unwrap().unwrap()[0].plaintext, "mine");

    // With the secret: edit (links allowed for backends), delete, delete the conversation.
    let edit = json!({"text": "edited by the backend", "custom": {"k": "v"}});
    succeeds(
        &running,
        "PUT",
        &format!("/conversations/c/messages/{mine}"),
        s,
        Some(edit),
    )
    .await;
    settle(std::slice::from_ref(&alice)).await;
    let edited = window.latest().unwrap().unwrap()[0].clone();
    assert_eq!(
        (edited.plaintext.as_str(), edited.edited_at.is_some()),
        ("edited by the backend", true)
    );
    assert_eq!(
        http(
            &running,
            "PUT",
            "/conversations/c/messages/nope",
            s,
            Some(json!({"text": "x"}))
        )
        .await
        .0,
        404
    );
    succeeds(
        &running,
        "DELETE",
        &format!("/conversations/c/messages/{mine}"),
        s,
        None,
    )
    .await;
    succeeds(
        &running,
        "DELETE",
        &format!("/conversations/c/messages/{mine}"),
        s,
        None,
    )
    .await;
    settle(std::slice::from_ref(&alice)).await;
    assert!(window.latest().unwrap().unwrap().is_empty());

    succeeds(&running, "DELETE", "/conversations/c", s, None).await;
    settle(std::slice::from_ref(&alice)).await;
    assert_eq!(window.latest().unwrap(), None);
    assert!(list.latest().unwrap().is_empty());
    assert_eq!(
        http(&running, "GET", "/conversations/c", s, None).await.0,
        404
    );
    succeeds(&running, "DELETE", "/conversations/c", s, None).await;
}

/// One answer read off a raw connection.
struct Answer {
    status: u16,
    /// The headers, names lowercase.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a refusal: the status, a JSON body with `code`, and a reason; returns the reason.
    fn refused(&self, status: u16, code: &str) -> &str {
        assert_eq!(
            (
                self.status,
                self.header("content-type"),
                self.body["code"].as_str()
            ),
            (status, Some("application/json"), Some(code)),
            "{}",
            self.body
        );
        self.body["reasons"][0].as_str().expect("a reason")
    }
}

/// The response in `bytes`, once its head and all of its `Content-Length` body have arrived.
fn complete_answer(bytes: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.get(9..12)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    (body.len() >= length).then(|| Answer {
        status,
        headers,
        body: serde_json::from_str(&body[..length]).unwrap_or(Value::Null),
    })
}

/// Sends `head` (a request line and headers, each ending in CRLF, without the blank line) and
/// then `body` parts as the server takes them, reading the answer meanwhile; the answer must
/// come within 5 s, whether or not the server read the whole body.
async fn raw(running: &Running, head: &str, body: Vec<Vec<u8>>) -> Answer {
    let stream = TcpStream::connect(running.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!("{head}Host: x\r\n\r\n");
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for part in body {
            writer.write_all(&part).await?;
        }
        // Keep the connection open: the answer must not wait for the client to finish.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(writer)
    });
    let read = async {
        let mut bytes = Vec::new();
        let mut buf = [0; 8192];
        loop {
            if let Some(answer) = complete_answer(&bytes) {
                return answer;
            }
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => panic!(
                    "closed without a whole answer: {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("no answer within 5 s");
    sending.abort();
    answer
}

/// A request head for `path` under the app, with the secret.
fn head(running: &Running, method: &str, path: &str, more: &str) -> String {
    format!(
        "{method} /v1/{}{path} HTTP/1.1\r\nAuthorization: Bearer {}\r\n{more}",
        running.credentials.id, running.credentials.secret
    )
}

/// A declared `Content-Length` over the limit is refused with 413 JSON at once, without waiting
/// for (or reading) the body.
#[tokio::test]
async fn oversized_declared_body_is_refused_at_once() {
    let running = Running::start(&app()).await;
    let started = std::time::Instant::now();
    let head = head(
        &running,
        "PUT",
        "/users/alice",
        "Content-Type: application/json\r\nContent-Length: 104857600\r\n",
    );
    let answer = raw(&running, &head, vec![b"{\"name\"".to_vec()]).await;
    let reason = answer.refused(413, "LIMIT_EXCEEDED");
    assert!(reason.contains("104857600"), "{reason}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// A chunked body that grows past the limit is refused with 413 JSON.
#[tokio::test]
async fn oversized_chunked_body_is_refused() {
    let running = Running::start(&app()).await;
    let head = head(
        &running,
        "PUT",
        "/users/alice",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
    );
    let chunk = 64 * 1024;
    let mut body: Vec<Vec<u8>> = (0..48)
        .map(|_| {
            let mut part = format!("{chunk:x}\r\n").into_bytes();
            part.extend(std::iter::repeat_n(b' ', chunk));
            part.extend_from_slice(b"\r\n");
            part
        })
        .collect();
    body.push(b"0\r\n\r\n".to_vec());
    let answer = raw(&running, &head, body).await;
    let reason = answer.refused(413, "LIMIT_EXCEEDED");
    assert!(reason.contains("length limit"), "{reason}");
}

/// A query string that does not parse is 400 JSON saying what is wrong.
#[tokio::test]
async fn bad_query_is_refused() {
    let running = Running::start(&app()).await;
    for query in ["limit=-1", "limit=abc"] {
        let path = format!("/conversations/c/messages?{query}");
        let answer = raw(&running, &head(&running, "GET", &path, ""), vec![]).await;
        let reason = answer.refused(400, "INVALID_REQUEST");
        assert!(reason.contains("limit"), "{query}: {reason}");
    }
}

/// A path segment that is not UTF-8 once decoded is 400 JSON.
#[tokio::test]
async fn bad_utf8_path_is_refused() {
    let running = Running::start(&app()).await;
    let head = head(&running, "GET", "/users/%FF", "");
    let reason = raw(&running, &head, vec![])
        .await
        .refused(400, "INVALID_REQUEST")
        .to_owned();
    assert!(reason.contains("UTF-8"), "{reason}");
}

/// Unknown routes, an empty segment included, are 404 JSON.
#[tokio::test]
async fn unknown_routes_are_not_found() {
    let running = Running::start(&app()).await;
    for (method, path) in [("PUT", "/users/"), ("GET", "/nothing/here"), ("GET", "")] {
        let answer = raw(&running, &head(&running, method, path, ""), vec![]).await;
        let reason = answer.refused(404, "NOT_FOUND");
        assert!(reason.contains("no route"), "{method} {path}: {reason}");
    }
    let answer = raw(&running, "GET /elsewhere HTTP/1.1\r\n", vec![]).await;
    answer.refused(404, "NOT_FOUND");
}

/// A method the route does not have is 405 JSON, with `Allow`.
#[tokio::test]
async fn wrong_method_is_refused() {
    let running = Running::start(&app()).await;
    let answer = raw(
        &running,
        &head(&running, "POST", "/users/alice", ""),
        vec![],
    )
    .await;
    answer.refused(405, "INVALID_REQUEST");
    let allow = answer.header("allow").expect("an Allow header");
    assert!(allow.contains("PUT") && allow.contains("GET"), "{allow}");
}

/// A request target or headers over the limits are 414 and 431 JSON.
#[tokio::test]
async fn long_urls_and_headers_are_refused() {
    let running = Running::start(&app()).await;
    let path = format!("/users/{}", "a".repeat(9_000));
    raw(&running, &head(&running, "GET", &path, ""), vec![])
        .await
        .refused(414, "LIMIT_EXCEEDED");
    let padding = format!("X-Padding: {}\r\n", "p".repeat(20_000));
    raw(
        &running,
        &head(&running, "GET", "/users/a", &padding),
        vec![],
    )
    .await
    .refused(431, "LIMIT_EXCEEDED");
}

/// The backend adds, lists and removes reactions as any existing user; sessions see them.
#[tokio::test]
async fn backend_reactions() {
    let running = Running::start(&app()).await;
    let secret = running.credentials.secret.clone();
    let s = Some(secret.as_str());
    for user in ["alice", "bob"] {
        let body = json!({"name": user});
        succeeds(&running, "PUT", &format!("/users/{user}"), s, Some(body)).await;
    }
    let members = json!({"participants": ["alice"]});
    succeeds(&running, "PUT", "/conversations/c", s, Some(members)).await;
    let posted = json!([{"type": "SystemMessage", "text": "hello"}]);
    let ids = succeeds(
        &running,
        "POST",
        "/conversations/c/messages",
        s,
        Some(posted),
    )
    .await;
    let message = ids[0]["id"].as_str().unwrap().to_owned();
    // 👍, percent-encoded as a path segment must be.
    let thumbs = format!("/conversations/c/messages/{message}/reactions/%F0%9F%91%8D");

    let token = mint_user_token(&running.credentials, "alice", 600).unwrap();
    let alice = get_talk_session(
        SessionOptions::new(&running.credentials.id, "alice")
            .url(format!("ws://{}", running.addr))
            .token(token),
    )
    .unwrap();
    let window = alice.conversation("c").unwrap().subscribe_messages(None);
    window.connected().await.unwrap();

    // Bob is no participant: the backend may still react as him, twice counting once.
    for _ in 0..2 {
        succeeds(&running, "PUT", &format!("{thumbs}/bob"), s, None).await;
    }
    succeeds(&running, "PUT", &format!("{thumbs}/alice"), s, None).await;
    let listed = succeeds(&running, "GET", &format!("{thumbs}?limit=5"), s, None).await;
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "alice"], "oldest first: {listed}");
    let one = succeeds(&running, "GET", &format!("{thumbs}?limit=1"), s, None).await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    alice.sync().await.unwrap();
    let rows = window.latest().unwrap().unwrap();
    let r = &rows[0].reactions;
    assert_eq!(
        (r[0].emoji.as_str(), r[0].count, r[0].current_user_reacted),
        ("👍", 2, true)
    );

    succeeds(&running, "DELETE", &format!("{thumbs}/alice"), s, None).await;
    succeeds(&running, "DELETE", &format!("{thumbs}/alice"), s, None).await;
    alice.sync().await.unwrap();
    let rows = window.latest().unwrap().unwrap();
    let r = &rows[0].reactions;
    assert_eq!((r[0].count, r[0].current_user_reacted), (1, false));

    // Bad input: each refused with its code, nothing changed.
    let cases = [
        ("PUT", format!("{thumbs}/nobody"), 404, "NOT_FOUND"),
        (
            "PUT",
            format!("/conversations/c/messages/{message}/reactions/thumbs/bob"),
            400,
            "INVALID_REQUEST",
        ),
        (
            "PUT",
            "/conversations/c/messages/msg_missing/reactions/%F0%9F%91%8D/bob".into(),
            404,
            "NOT_FOUND",
        ),
        ("GET", format!("{thumbs}?limit=0"), 400, "INVALID_REQUEST"),
        ("GET", format!("{thumbs}?limit=101"), 400, "INVALID_REQUEST"),
        (
            "GET",
            "/conversations/c/messages/msg_missing/reactions/%F0%9F%91%8D".into(),
            404,
            "NOT_FOUND",
        ),
    ];
    for (method, path, status, code) in cases {
        let (got, body) = http(&running, method, &path, s, None).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {body}"
        );
    }
    let listed = succeeds(&running, "GET", &thumbs, s, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Without credentials: refused.
    let (status, _) = http(&running, "PUT", &format!("{thumbs}/bob"), None, None).await;
    assert_eq!(status, 401);
}
