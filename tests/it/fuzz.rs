//! Fuzzing with byte-level proptest strategies: the frame decoder (through a server's
//! websocket), the REST body parsers (through a server's HTTP API), filter parsing (through
//! subscriptions on the backend under test) and the markup parser (through sends). Inputs are
//! random bytes or seeds from `fuzz/corpus/<target>/` under random mutations; every target
//! must answer every input cleanly (an answer or a typed error, never a panic, a hang or a
//! dropped connection) and keep working afterwards.
//!
//! `TALKSTORE_FUZZ_CASES` sets the inputs per target (default 256; CI sets more). An input
//! that ever failed belongs in the corpus, so that every later run tries it first.

use std::{cell::Cell, sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use proptest::{
    prelude::*,
    sample::Index,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::Value;
use talkstore::{
    ConversationFilter, ConversationParams, Error, ErrorCode, MessageFilter, SendParams,
    TalkSession, server::mint_user_token,
};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::support::{World, app, capitalize, conversation, server::Running};

/// The seeds of `target`, each its file's bytes, in name order.
fn corpus(target: &str) -> Arc<Vec<Vec<u8>>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<_> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "{} has no seeds", dir.display());
    Arc::new(seeds)
}

/// Pieces that parsers care about, spliced in by [`Mutation::Token`].
const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "-0.0",
    "18446744073709551616",
    "-9223372036854775809",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"x\"",
    "{}",
    "[]",
    "\"op\"",
    "\"id\"",
    "\"kind\"",
    "\"any\"",
    "\"between\"",
    "\"custom\"",
    "*",
    "_",
    "~",
    "`",
    "```",
    "<@",
    ">",
    "- ",
    "\n",
    "https://a.co",
    "a@b.io",
    "\u{202e}",
    "\u{0301}",
    "🙂",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, u8),
    Duplicate(Index, u8),
    Token(Index, Index),
    /// Inserts a piece of another seed.
    Splice(Index, Index, Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>(), any::<u8>())
            .prop_map(|(i, s, f, n)| Mutation::Splice(i, s, f, n)),
    ]
}

fn apply(input: &mut Vec<u8>, mutation: &Mutation, seeds: &[Vec<u8>]) {
    let at = |i: &Index, len: usize| i.index(len + 1);
    let len = input.len();
    match mutation {
        Mutation::Flip(i, b) if len > 0 => input[i.index(len)] ^= b | 1,
        Mutation::Flip(..) => {}
        Mutation::Insert(i, bytes) => {
            let at = at(i, len);
            input.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let start = at(i, len);
            let end = (start + usize::from(*n % 16) + 1).min(len);
            input.drain(start..end);
        }
        Mutation::Duplicate(i, n) => {
            let start = at(i, len);
            let end = (start + usize::from(*n)).min(len);
            let piece = input[start..end].to_vec();
            input.splice(start..start, piece);
        }
        Mutation::Token(i, t) => {
            let at = at(i, len);
            let token = TOKENS[t.index(TOKENS.len())].as_bytes();
            input.splice(at..at, token.iter().copied());
        }
        Mutation::Splice(i, s, from, n) => {
            let seed = &seeds[s.index(seeds.len())];
            let start = from.index(seed.len() + 1);
            let end = (start + usize::from(*n)).min(seed.len());
            let at = at(i, len);
            input.splice(at..at, seed[start..end].iter().copied());
        }
    }
}

/// JSON values that parsers care about, put in place of a value by [`replace_value`].
const VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e308",
    "4294967296",
    "18446744073709551615",
    "-9223372036854775808",
    r#""""#,
    r#"" ""#,
    r#""x""#,
    r#""msg_1""#,
    r#""c1""#,
    r#""alice""#,
    r#""\u0000""#,
    r#""🙂""#,
    "[]",
    "{}",
    "[[[[[[[[[[]]]]]]]]]]",
    r#"{"a":{"b":{}}}"#,
    r#"["any",[]]"#,
    r#"["==",null]"#,
    r#"["between",[5,1]]"#,
    r#""exists""#,
];

/// Replaces the `target`-th value of `value` (in preorder, modulo their number) with
/// `replacement`; an object or array loses a child instead when `remove` is set.
fn replace_value(value: &mut Value, target: usize, replacement: Value, remove: bool) {
    fn count(value: &Value) -> usize {
        1 + match value {
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(fields) => fields.values().map(count).sum(),
            _ => 0,
        }
    }
    /// Counts `n` down over the values in preorder; returns true once it replaced one.
    fn walk(
        value: &mut Value,
        n: &mut usize,
        replacement: &mut Option<Value>,
        remove: bool,
    ) -> bool {
        if *n == 0 {
            match value {
                Value::Array(items) if remove && !items.is_empty() => drop(items.pop()),
                Value::Object(fields) if remove && !fields.is_empty() => {
                    let key = fields.keys().next().cloned().unwrap_or_default();
                    fields.remove(&key);
                }
                _ => *value = replacement.take().unwrap_or(Value::Null),
            }
            return true;
        }
        *n -= 1;
        match value {
            Value::Array(items) => items.iter_mut().any(|v| walk(v, n, replacement, remove)),
            Value::Object(fields) => fields.values_mut().any(|v| walk(v, n, replacement, remove)),
            _ => false,
        }
    }
    let mut n = target % count(value);
    walk(value, &mut n, &mut Some(replacement), remove);
}

/// Random bytes (one input in seven), a seed under up to 8 byte mutations, or a JSON seed
/// with up to 3 of its values replaced (well-formed input with strange contents).
fn inputs(seeds: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    let bytes = seeds.clone();
    let mutated = (any::<Index>(), proptest::collection::vec(mutation(), 0..8)).prop_map(
        move |(seed, mutations)| {
            let mut input = bytes[seed.index(bytes.len())].clone();
            for m in &mutations {
                apply(&mut input, m, &bytes);
            }
            input
        },
    );
    let edits = proptest::collection::vec((any::<usize>(), any::<Index>(), any::<bool>()), 1..4);
    let structured = (any::<Index>(), edits).prop_map(move |(seed, edits)| {
        let seed = &seeds[seed.index(seeds.len())];
        let Ok(mut value) = serde_json::from_slice::<Value>(seed) else {
            return seed.clone();
        };
        for (target, replacement, remove) in edits {
            let replacement = VALUES[replacement.index(VALUES.len())];
            let replacement = serde_json::from_str(replacement).unwrap_or(Value::Null);
            replace_value(&mut value, target, replacement, remove);
        }
        value.to_string().into_bytes()
    });
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        3 => mutated,
        3 => structured,
    ]
}

fn runner() -> TestRunner {
    let cases = std::env::var("TALKSTORE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // A target that broke (a server that panicked) stays broken while shrinking.
        max_shrink_time: 30_000,
        ..Config::default()
    })
}

/// Fails the case unless `future` finishes within 10 s (a hang is a failure too).
async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, TestCaseError> {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .map_err(|_| TestCaseError::fail(format!("{what}: no answer in 10 s")))
}

/// Whether `error` is a clean refusal: typed, not an internal failure or a session that ended.
fn clean(error: &Error) -> bool {
    !matches!(error, Error::Ended { .. }) && error.code() != Some(ErrorCode::Internal)
}

/// Runs every input of `target` through `case` on `runtime`; panics with the smallest
/// failing input.
fn fuzz(runtime: &Runtime, target: &str, case: impl Fn(Vec<u8>) -> Result<(), TestCaseError>) {
    let _guard = runtime.enter();
    let result = runner().run(&inputs(corpus(target)), case);
    if let Err(error) = result {
        panic!("fuzz target {target}: {error}");
    }
}

/// Users `fuzzer` and `alice`, conversation `c1` of both with custom fields and a message of
/// each: something for every operation to find.
async fn seed(fuzzer: &TalkSession, alice: &TalkSession) {
    for s in [fuzzer, alice] {
        let me = s.current_user();
        let name = capitalize(me.id().as_str());
        me.set(talkstore::UserParams::new().name(name).role("r"))
            .await
            .unwrap();
    }
    conversation(fuzzer, "c1", &["alice"]).await;
    let c = fuzzer.conversation("c1").unwrap();
    c.set(
        ConversationParams::new()
            .subject("S")
            .custom_field("a", Some("b")),
    )
    .await
    .unwrap();
    c.send("*hello* https://a.co").await.unwrap();
    let alices = alice.conversation("c1").unwrap();
    alices
        .send(SendParams::text("hi").custom_field("x", "y"))
        .await
        .unwrap();
}

/// A server with the data of [`seed`].
fn seeded_server(runtime: &Runtime) -> Running {
    runtime.block_on(async {
        let running = Running::start(&app()).await;
        let session = |user: &str| {
            let options = talkstore::SessionOptions::new(&running.credentials.id, user);
            talkstore::get_talk_session(running.options(options, user)).unwrap()
        };
        seed(&session("fuzzer"), &session("alice")).await;
        running
    })
}

/// A world of the backend under test with the data of [`seed`], and fuzzer's session.
fn seeded_world(runtime: &Runtime) -> (World, TalkSession) {
    runtime.block_on(async {
        let world = World::new().await;
        let (fuzzer, alice) = (world.session("fuzzer"), world.session("alice"));
        seed(&fuzzer, &alice).await;
        (world, fuzzer)
    })
}

/// Any text frame, then a `sync`: the server answers the sync on the same connection (so it
/// read and answered the input without dropping anything), and keeps serving.
#[test]
fn frames() {
    let runtime = Runtime::new().unwrap();
    let running = seeded_server(&runtime);
    let token = mint_user_token(&running.credentials, "fuzzer", 3600).unwrap();
    let url = format!(
        "ws://{}/v1/{}/realtime/fuzzer",
        running.addr, running.credentials.id
    );
    let connect = || async {
        let mut request = url.as_str().into_client_request().unwrap();
        let bearer = format!("Bearer {token}").parse().unwrap();
        request.headers_mut().insert("authorization", bearer);
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        socket
    };
    // Taken for each case and put back only while it works: after a failure each case gets a
    // fresh connection, so that shrinking works.
    let socket = Cell::new(None);
    let next_id = Cell::new(1_000_000_000_u64);
    fuzz(&runtime, "frames", |input| {
        runtime.block_on(async {
            let mut ws = match socket.take() {
                Some(ws) => ws,
                None => connect().await,
            };
            let text = String::from_utf8_lossy(&input).into_owned();
            let id = next_id.get();
            next_id.set(id + 1);
            let sync = format!(r#"{{"id":{id},"op":"sync"}}"#);
            let sent = async {
                ws.send(Message::Text(text.into())).await?;
                ws.send(Message::Text(sync.into())).await
            };
            if sent.await.is_err() {
                return Err(TestCaseError::fail("the server dropped the connection"));
            }
            let marker = format!(r#""id":{id}"#);
            let answered = within("sync after the input", async {
                while let Some(message) = ws.next().await {
                    match message {
                        Ok(Message::Text(text)) if text.contains(&marker) => return true,
                        Ok(Message::Close(_)) | Err(_) => return false,
                        Ok(_) => {}
                    }
                }
                false
            })
            .await?;
            if !answered {
                return Err(TestCaseError::fail("the server closed the connection"));
            }
            socket.set(Some(ws));
            Ok(())
        })
    });
}

/// Any body to any write route of the REST API: 200, or a client error with a `WireError`
/// body; never a server error or no answer.
#[test]
fn rest_bodies() {
    const ROUTES: &[(&str, &str)] = &[
        ("PUT", "/users/u1"),
        ("PUT", "/users"),
        ("PUT", "/conversations/c1"),
        ("PUT", "/conversations/c1/participants/u1"),
        ("PATCH", "/conversations/c1/participants/alice"),
        ("POST", "/conversations/c1/messages"),
        ("PUT", "/conversations/c1/messages/msg_1"),
    ];
    let runtime = Runtime::new().unwrap();
    let running = seeded_server(&runtime);
    fuzz(&runtime, "rest", |body| {
        // The route follows from the input, so that a shrunk input is tried on its route.
        let hash = body
            .iter()
            .fold(body.len(), |h, b| h.wrapping_mul(31) ^ usize::from(*b));
        let (method, path) = ROUTES[hash % ROUTES.len()];
        runtime.block_on(async {
            let secret = Some(running.credentials.secret.as_str());
            let answer = within(path, running.http(method, path, secret, &body)).await?;
            let Some((status, text)) = answer else {
                return Err(TestCaseError::fail(format!("{method} {path}: no answer")));
            };
            let wire_error = serde_json::from_str::<serde_json::Value>(&text)
                .is_ok_and(|v| v["code"].is_string() && v["reasons"].is_array());
            if status != 200 && !((400..500).contains(&status) && wire_error) {
                return Err(TestCaseError::fail(format!(
                    "{method} {path}: {status} {text}"
                )));
            }
            Ok(())
        })
    });
    // Still serving.
    let secret = Some(running.credentials.secret.as_str());
    let health = runtime.block_on(running.http("GET", "/users/alice", secret, b""));
    assert_eq!(health.map(|(status, _)| status), Some(200));
}

/// Any text as a conversation filter and as a message filter: it is refused with a typed
/// error, or a subscription with it connects (with an answer or a typed error).
#[test]
fn filters() {
    let runtime = Runtime::new().unwrap();
    let (world, fuzzer) = seeded_world(&runtime);
    let subscribe = |input: &[u8], messages: bool| {
        let text = String::from_utf8_lossy(input);
        let connected = if messages {
            let Ok(filter) = text.parse::<MessageFilter>() else {
                return Ok(());
            };
            let c = fuzzer.conversation("c1").unwrap();
            let sub = c.subscribe_messages(Some(filter));
            runtime.block_on(within("message filter", async {
                sub.connected().await.map(drop)
            }))
        } else {
            let Ok(filter) = text.parse::<ConversationFilter>() else {
                return Ok(());
            };
            let sub = fuzzer.subscribe_conversations(Some(filter));
            runtime.block_on(within("conversation filter", async {
                sub.connected().await.map(drop)
            }))
        };
        match connected? {
            Err(error) if !clean(&error) => Err(TestCaseError::fail(error.to_string())),
            _ => Ok(()),
        }
    };
    fuzz(&runtime, "conversation-filters", |input| {
        subscribe(&input, false)
    });
    fuzz(&runtime, "message-filters", |input| subscribe(&input, true));
    drop(world);
}

/// Any text as a message: it is sent (and its snapshot reads back) or refused with a typed
/// error.
#[test]
fn markup() {
    let runtime = Runtime::new().unwrap();
    let (world, fuzzer) = seeded_world(&runtime);
    let c = fuzzer.conversation("c1").unwrap();
    fuzz(&runtime, "markup", |input| {
        let text = String::from_utf8_lossy(&input).into_owned();
        runtime.block_on(async {
            match within("send", c.send(text.as_str())).await? {
                Ok(sent) => {
                    let read = within("read back", sent.get()).await?;
                    match read {
                        Ok(Some(_)) => Ok(()),
                        other => Err(TestCaseError::fail(format!("read back {other:?}"))),
                    }
                }
                Err(error) if clean(&error) => Ok(()),
                Err(error) => Err(TestCaseError::fail(error.to_string())),
            }
        })
    });
    drop(world);
}
