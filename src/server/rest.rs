//! The backend REST API: for an app's own server, authenticated with the app secret or an app
//! token (`Authorization: Bearer …`). Success is 200 with a JSON body; errors carry the
//! protocol's `{code, reasons}` body. Routes live under `/v1/{app_id}`.
//!
//! Every refusal is that JSON body, the framework's included:
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `INVALID_REQUEST` | a query string that does not parse (`?limit=abc`), a path segment that is not UTF-8 once decoded (`%FF`), a body that is not the route's JSON |
//! | 404 | `NOT_FOUND` | no such route, also an empty path segment (`/users/`) |
//! | 405 | `INVALID_REQUEST` | a method the route does not have (with `Allow`) |
//! | 413 | `LIMIT_EXCEEDED` | a body over [`MAX_BODY_BYTES`]: a larger `Content-Length` is refused before the body is read, a chunked body once it grows past the limit |
//! | 414 | `LIMIT_EXCEEDED` | a path and query over [`MAX_URI_BYTES`] |
//! | 431 | `LIMIT_EXCEEDED` | headers over [`MAX_HEADER_BYTES`] |
//!
//! Past hyper's own limits (a request target of 65,534 bytes, 100 headers, or a request head
//! of about 408 KiB) hyper answers 414 or 431 itself, before any route runs, with no body.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{HeaderMap, Method, StatusCode, Uri, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;

use super::{AppEntry, ServerState, auth};
use crate::{
    EngineError,
    engine::backend::{self, Post},
    model::{
        Access, ConversationId, ConversationRecord, Custom, MessageId, MessageRecord, MessageType,
        Notify, UserId, UserSnapshot,
    },
    params::{ConversationParams, CustomPatch, EditParams, ParticipantParams, Patch, UserParams},
    protocol::{ErrorCode, ParticipantWrite, WireError},
};

/// The most messages one REST listing returns (`limit`); the default limit is 10.
pub const MAX_LIST: usize = 100;
/// The most users one batch may upsert.
pub const MAX_USER_BATCH: usize = 100;
/// The most messages one REST post may carry.
pub const MAX_MESSAGE_BATCH: usize = 10;
/// The largest request body, in bytes: 2 MiB, axum's default (a full batch of ten 64 KiB
/// messages fits three times over). Larger bodies are refused with 413 `LIMIT_EXCEEDED`: at
/// once if `Content-Length` declares more, else when the body grows past it.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// The longest request target (path and query string), in bytes: 8 KiB. Longer ones are refused
/// with 414 `LIMIT_EXCEEDED`; so ids in paths are at most a few KB (percent-encoded).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most bytes of request headers (names, values and 4 bytes per header): 16 KiB. More is
/// refused with 431 `LIMIT_EXCEEDED`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A user as the REST API shows it: the public fields and the private ones.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestUser {
    #[serde(flatten)]
    public: UserSnapshot,
    email: Vec<String>,
    phone: Vec<String>,
}

/// One participant as the REST API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestParticipant {
    access: Access,
    notify: Notify,
    joined_at: i64,
}

/// A conversation as the REST API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestConversation {
    #[serde(flatten)]
    record: ConversationRecord,
    participants: BTreeMap<UserId, RestParticipant>,
    last_message: Option<MessageRecord>,
}

/// A message in the body of `POST /conversations/{id}/messages`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RestMessage {
    text: String,
    #[serde(default)]
    sender: Option<UserId>,
    #[serde(rename = "type")]
    message_type: MessageType,
    #[serde(default)]
    referenced_message_id: Option<MessageId>,
    #[serde(default)]
    custom: Custom,
    #[serde(default)]
    idempotency_key: Option<String>,
}

impl From<RestMessage> for Post {
    fn from(m: RestMessage) -> Self {
        Post {
            text: m.text,
            sender: m.sender,
            message_type: m.message_type,
            referenced_message_id: m.referenced_message_id,
            custom: m.custom,
            idempotency_key: m.idempotency_key,
        }
    }
}

/// Refuses a batch of more than `max` items (or none, unless `may_be_empty`).
fn batch(len: usize, max: usize, may_be_empty: bool, what: &str) -> Result<(), Refusal> {
    if len <= max && (may_be_empty || len > 0) {
        return Ok(());
    }
    let least = if may_be_empty { 0 } else { 1 };
    Err(reject(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
        format!("send {least} to {max} {what} per batch, got {len}"),
    ))
}

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/v1/{app_id}/users", put(put_users))
        .route("/v1/{app_id}/users/{user}", put(put_user).get(get_user))
        .route(
            "/v1/{app_id}/conversations/{conversation}",
            put(put_conversation)
                .get(get_conversation)
                .delete(delete_conversation),
        )
        .route(
            "/v1/{app_id}/conversations/{conversation}/messages/{message}",
            put(edit_message).delete(delete_message),
        )
        .route(
            "/v1/{app_id}/conversations/{conversation}/participants/{user}",
            put(put_participant)
                .patch(patch_participant)
                .delete(delete_participant),
        )
        .route(
            "/v1/{app_id}/conversations/{conversation}/messages",
            get(list_messages).post(post_messages),
        )
        .route(
            "/v1/{app_id}/conversations/{conversation}/messages/{message}/reactions/{emoji}",
            get(list_reactions),
        )
        .route(
            "/v1/{app_id}/conversations/{conversation}/messages/{message}/reactions/{emoji}/{user}",
            put(put_reaction).delete(delete_reaction),
        )
        .fallback(no_route)
        .layer(middleware::from_fn(limits))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Refuses a request whose target, headers or declared body are over the limits, before any
/// route reads it.
async fn limits(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |t| t.as_str().len());
    if target > MAX_URI_BYTES {
        let reason = format!("the path and query are {target} bytes, the limit is {MAX_URI_BYTES}");
        return reject(StatusCode::URI_TOO_LONG, ErrorCode::LimitExceeded, reason).into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        let reason = format!("the headers are {headers} bytes, the limit is {MAX_HEADER_BYTES}");
        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return reject(status, ErrorCode::LimitExceeded, reason).into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > MAX_BODY_BYTES as u64) {
        let reason = format!("the body is {declared} bytes, the limit is {MAX_BODY_BYTES}");
        return reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::LimitExceeded,
            reason,
        )
        .into_response();
    }
    next.run(request).await
}

/// The answer for a path no route has (also one with an empty segment). Merged into the
/// server's router, this is its fallback for every path, not only REST ones.
async fn no_route(method: Method, uri: Uri) -> Refusal {
    reject(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("there is no route {method} {}", uri.path()),
    )
}

/// The answer for a method a route does not have, on every route of the server (see
/// `Server::bind`); axum adds the `Allow` header.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Refusal {
    reject(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A framework rejection (of a path, query or body) as a refusal with its status and text.
fn framework(status: StatusCode, text: String) -> Refusal {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::LimitExceeded,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    reject(status, code, text)
}

/// The path parameters, refused as [`framework`] says.
struct RestPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for RestPath<T> {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(RestPath(value)),
            Err(rejection) => Err(framework(rejection.status(), rejection.body_text())),
        }
    }
}

/// The query string, refused as [`framework`] says.
struct RestQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for RestQuery<T> {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(RestQuery(value)),
            Err(rejection) => Err(framework(rejection.status(), rejection.body_text())),
        }
    }
}

/// The whole body, at most [`MAX_BODY_BYTES`], refused as [`framework`] says.
struct RestBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for RestBody {
    type Rejection = Refusal;

    async fn from_request(request: Request, state: &S) -> Result<Self, Refusal> {
        match Bytes::from_request(request, state).await {
            Ok(body) => Ok(RestBody(body)),
            Err(rejection) => Err(framework(rejection.status(), rejection.body_text())),
        }
    }
}

type Reply = Result<Response, Refusal>;

/// A refused request: its status and the protocol's error body.
pub(crate) struct Refusal {
    status: StatusCode,
    error: WireError,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(self.error)).into_response()
    }
}

fn reject(status: StatusCode, code: ErrorCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error: WireError {
            code,
            reasons: vec![reason.into()],
        },
    }
}

/// The app, if the request carries its secret or a valid app token.
fn authorize(
    state: &ServerState,
    app_id: &str,
    headers: &HeaderMap,
) -> Result<Arc<AppEntry>, Refusal> {
    let Some(app) = state.apps.get(app_id).cloned() else {
        return Err(reject(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("the app ID {app_id} does not exist"),
        ));
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(bearer) = bearer else {
        return Err(reject(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            auth::AuthError::Missing.to_string(),
        ));
    };
    if auth::secret_matches(&app.credentials, bearer) {
        return Ok(app);
    }
    match auth::verify_app_token(&app.credentials, bearer) {
        Ok(()) => Ok(app),
        Err(error) => Err(reject(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            error.to_string(),
        )),
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|error| {
        reject(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            format!("invalid body: {error}"),
        )
    })
}

fn id<T>(parsed: Result<T, crate::InvalidId>) -> Result<T, Refusal> {
    parsed.map_err(|error| {
        reject(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            error.to_string(),
        )
    })
}

fn failed(error: EngineError) -> Refusal {
    let wire = error.into_wire();
    let status = match wire.code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotAParticipant | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Refusal {
        status,
        error: wire,
    }
}

fn ok(body: serde_json::Value) -> Reply {
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// The answer to a write: `{}`, or the engine's refusal.
fn done<T>(result: Result<T, EngineError>) -> Reply {
    result.map_err(failed)?;
    ok(json!({}))
}

fn found<T: serde::Serialize>(value: Option<T>, what: String) -> Reply {
    match value {
        Some(value) => Ok((StatusCode::OK, Json(value)).into_response()),
        None => Err(reject(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} does not exist"),
        )),
    }
}

async fn put_user(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, user)): RestPath<(String, String)>,
    headers: HeaderMap,
    RestBody(body): RestBody,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let user = id(UserId::try_new(user))?;
    let params: UserParams = parse(&body)?;
    done(
        app.engine
            .backend_write(|s| backend::put_users(s, vec![(user, params)])),
    )
}

/// Upserts up to 100 users (`{"id": {fields…}, …}`), all or nothing.
async fn put_users(
    State(state): State<Arc<ServerState>>,
    RestPath(app_id): RestPath<String>,
    headers: HeaderMap,
    RestBody(body): RestBody,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let users: BTreeMap<String, UserParams> = parse(&body)?;
    let users = users
        .into_iter()
        .map(|(user, params)| Ok((id(UserId::try_new(user))?, params)))
        .collect::<Result<Vec<_>, Refusal>>()?;
    batch(users.len(), MAX_USER_BATCH, true, "users")?;
    done(app.engine.backend_write(|s| backend::put_users(s, users)))
}

async fn get_user(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, user)): RestPath<(String, String)>,
    headers: HeaderMap,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let user = id(UserId::try_new(user))?;
    let found_user = app
        .engine
        .backend_read(|s| backend::get_user(s, &user))
        .map_err(failed)?
        .map(|u| RestUser {
            public: u.public,
            email: u.email,
            phone: u.phone,
        });
    found(found_user, format!("user {user}"))
}

/// The body of `PUT /conversations/{id}`: its fields with patch semantics, and participants to
/// add (never removes any).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConversationBody {
    #[serde(default)]
    participants: Vec<UserId>,
    #[serde(default)]
    subject: Patch<String>,
    #[serde(default)]
    photo_url: Patch<String>,
    #[serde(default)]
    welcome_messages: Patch<Vec<String>>,
    #[serde(default)]
    custom: Patch<CustomPatch>,
}

async fn put_conversation(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, conversation)): RestPath<(String, String)>,
    headers: HeaderMap,
    RestBody(body): RestBody,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let body: ConversationBody = parse(&body)?;
    let mut params = ConversationParams::new();
    params.subject = body.subject;
    params.photo_url = body.photo_url;
    params.welcome_messages = body.welcome_messages;
    params.custom = body.custom;
    done(
        app.engine.backend_write(|s| {
            backend::put_conversation(s, &conversation, params, body.participants)
        }),
    )
}

async fn get_conversation(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, conversation)): RestPath<(String, String)>,
    headers: HeaderMap,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let value = app
        .engine
        .backend_read(|s| backend::get_conversation(s, &conversation))
        .map_err(failed)?
        .map(|c| RestConversation {
            record: c.record,
            participants: c
                .participants
                .into_iter()
                .map(|p| {
                    let participant = RestParticipant {
                        access: p.access,
                        notify: p.notify,
                        joined_at: p.joined_at,
                    };
                    (p.user_id, participant)
                })
                .collect(),
            last_message: c.last_message,
        });
    found(value, format!("conversation {conversation}"))
}

async fn participant_write(
    state: Arc<ServerState>,
    (app_id, conversation, user): (String, String, String),
    headers: HeaderMap,
    body: Bytes,
    mode: Option<ParticipantWrite>,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let user = id(UserId::try_new(user))?;
    let result = match mode {
        Some(mode) => {
            let params: ParticipantParams = if body.is_empty() {
                ParticipantParams::new()
            } else {
                parse(&body)?
            };
            app.engine
                .backend_write(|s| backend::put_participant(s, &conversation, &user, params, mode))
        }
        None => app
            .engine
            .backend_write(|s| backend::delete_participant(s, &conversation, &user)),
    };
    done(result)
}

/// Joins (or overwrites) a participant; defaults ReadWrite and notify on.
async fn put_participant(
    State(state): State<Arc<ServerState>>,
    RestPath(path): RestPath<(String, String, String)>,
    headers: HeaderMap,
    RestBody(body): RestBody,
) -> Reply {
    participant_write(state, path, headers, body, Some(ParticipantWrite::Upsert)).await
}

/// Edits an existing participant's given fields.
async fn patch_participant(
    State(state): State<Arc<ServerState>>,
    RestPath(path): RestPath<(String, String, String)>,
    headers: HeaderMap,
    RestBody(body): RestBody,
) -> Reply {
    participant_write(state, path, headers, body, Some(ParticipantWrite::Edit)).await
}

async fn delete_participant(
    State(state): State<Arc<ServerState>>,
    RestPath(path): RestPath<(String, String, String)>,
    headers: HeaderMap,
) -> Reply {
    participant_write(state, path, headers, Bytes::new(), None).await
}

/// Posts up to 10 user or system messages, all or nothing; answers `[{"id": …}, …]`.
async fn post_messages(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, conversation)): RestPath<(String, String)>,
    headers: HeaderMap,
    RestBody(body): RestBody,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let messages: Vec<RestMessage> = parse(&body)?;
    batch(messages.len(), MAX_MESSAGE_BATCH, false, "messages")?;
    let messages = messages.into_iter().map(Post::from).collect();
    let ids = app
        .engine
        .backend_write(|s| backend::post_messages(s, &conversation, messages))
        .map_err(failed)?;
    let ids: Vec<_> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    ok(json!(ids))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    limit: Option<usize>,
    starting_after: Option<String>,
}

/// Lists messages newest first: `limit` (1..=100, default 10), `startingAfter` a message id.
async fn list_messages(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, conversation)): RestPath<(String, String)>,
    RestQuery(query): RestQuery<ListQuery>,
    headers: HeaderMap,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let limit = query.limit.unwrap_or(10);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            format!("limit must be 1 to {MAX_LIST}"),
        ));
    }
    let after = query
        .starting_after
        .as_deref()
        .map(|m| id(MessageId::try_new(m)))
        .transpose()?;
    let messages = app
        .engine
        .backend_read(|s| backend::list_messages(s, &conversation, limit, after.as_ref()))
        .map_err(failed)?;
    let messages = found(messages, format!("conversation {conversation}"))?;
    Ok(messages)
}

/// Deletes a conversation with its participants and messages.
async fn delete_conversation(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, conversation)): RestPath<(String, String)>,
    headers: HeaderMap,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    done(
        app.engine
            .backend_write(|s| backend::delete_conversation(s, &conversation)),
    )
}

/// The body of a message edit: new markup text and/or a custom-field patch.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EditBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    custom: Patch<CustomPatch>,
}

/// Edits any message.
async fn edit_message(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, conversation, message)): RestPath<(String, String, String)>,
    headers: HeaderMap,
    RestBody(body): RestBody,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let message = id(MessageId::try_new(message))?;
    let body: EditBody = parse(&body)?;
    let mut params = match body.text {
        Some(text) => EditParams::text(text),
        None => EditParams::default(),
    };
    params.custom = body.custom;
    done(
        app.engine
            .backend_write(|s| backend::edit_message(s, &conversation, &message, params)),
    )
}

/// Adds a user's reaction (the user must exist, participant or not); idempotent.
async fn put_reaction(
    State(state): State<Arc<ServerState>>,
    RestPath(path): RestPath<(String, String, String, String, String)>,
    headers: HeaderMap,
) -> Reply {
    set_reaction(state, path, headers, true).await
}

/// Removes a user's reaction; succeeds if there is none.
async fn delete_reaction(
    State(state): State<Arc<ServerState>>,
    RestPath(path): RestPath<(String, String, String, String, String)>,
    headers: HeaderMap,
) -> Reply {
    set_reaction(state, path, headers, false).await
}

async fn set_reaction(
    state: Arc<ServerState>,
    (app_id, conversation, message, emoji, user): (String, String, String, String, String),
    headers: HeaderMap,
    add: bool,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let message = id(MessageId::try_new(message))?;
    let user = id(UserId::try_new(user))?;
    done(
        app.engine.backend_write(|s| {
            backend::set_reaction(s, &conversation, &message, &emoji, &user, add)
        }),
    )
}

/// Lists the users who reacted with an emoji, oldest first: `limit` (1..=100, default 10);
/// answers `[{"user": …, "createdAt": …}, …]`.
async fn list_reactions(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, conversation, message, emoji)): RestPath<(String, String, String, String)>,
    RestQuery(query): RestQuery<ReactionsQuery>,
    headers: HeaderMap,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let message = id(MessageId::try_new(message))?;
    let limit = query.limit.unwrap_or(10);
    let reactions = app
        .engine
        .backend_read(|s| backend::list_reactions(s, &conversation, &message, &emoji, limit))
        .map_err(failed)?;
    found(reactions, format!("message {message} in {conversation}"))
}

#[derive(Deserialize)]
struct ReactionsQuery {
    limit: Option<u32>,
}

/// Deletes any message; succeeds if it is already gone.
async fn delete_message(
    State(state): State<Arc<ServerState>>,
    RestPath((app_id, conversation, message)): RestPath<(String, String, String)>,
    headers: HeaderMap,
) -> Reply {
    let app = authorize(&state, &app_id, &headers)?;
    let conversation = id(ConversationId::try_new(conversation))?;
    let message = id(MessageId::try_new(message))?;
    done(
        app.engine
            .backend_write(|s| backend::delete_message(s, &conversation, &message)),
    )
}
