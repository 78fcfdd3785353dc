//! The activity index: each user's conversations in the order of their conversation list.
//!
//! A participation's activity is the time of the conversation's last message, or the time the
//! user joined if that is later (a conversation one was just added to comes first). Lists are
//! read from an index of it, so that a first page of 20 reads about 20 rows whatever the
//! number of conversations.
//!
//! A new message changes the activity of every participant. Keeping each of them in the index
//! would cost a room of N participants N index updates per message, which a room of
//! thousands cannot pay (fan-out costs O(N) in total). So only conversations with at most
//! [`INDEXED_PARTICIPANTS`] participants are indexed; a user's participations in larger rooms
//! are stored unindexed, and a walk merges them in by reading each one's activity. A walk
//! therefore reads about `limit` indexed rows plus one row per large room of the user.
//!
//! The storage keeps the index with the participations (a new one is unindexed, a removed
//! one leaves the index); the rules below keep its values right: every write that changes
//! an activity or a room's size calls one of them.

use super::storage::{Storage, StorageResult, StoredConversation, StoredParticipant};
use crate::model::{ConversationId, Timestamp, UserId};

/// Conversations with at most this many participants are in the activity index; larger ones
/// are merged in at read time (see the module docs). A SQLite migration indexed existing
/// rooms with this bound: changing it needs a migration that re-indexes.
pub(crate) const INDEXED_PARTICIPANTS: usize = 64;

/// The activity of `user` in `conversation`, or `None` if they do not participate.
pub(crate) fn of(
    storage: &dyn Storage,
    conversation: &ConversationId,
    user: &UserId,
) -> StorageResult<Option<Timestamp>> {
    match (
        storage.conversation(conversation)?,
        storage.participant(conversation, user)?,
    ) {
        (Some(stored), Some(participant)) => Ok(Some(of_records(storage, &stored, &participant)?)),
        _ => Ok(None),
    }
}

/// The activity of `participant` in `conversation`, read from those records (and the last
/// message's time).
pub(crate) fn of_records(
    storage: &dyn Storage,
    conversation: &StoredConversation,
    participant: &StoredParticipant,
) -> StorageResult<Timestamp> {
    let last_message_at = match &conversation.record.last_message_id {
        Some(id) => storage.message(id)?.map(|(m, _)| m.created_at),
        None => None,
    };
    Ok(last_message_at
        .unwrap_or(0)
        .max(participant.record.joined_at))
}

/// A message was created at `at` in `conversation`: it is everyone's latest activity there.
pub(crate) fn message_created(
    storage: &mut dyn Storage,
    conversation: &ConversationId,
    at: Timestamp,
) -> StorageResult<()> {
    storage.touch_activity(conversation, at)
}

/// The last message of `conversation` changed otherwise (it was deleted): every indexed
/// participation is computed again. O(participants), at most [`INDEXED_PARTICIPANTS`].
pub(crate) fn last_message_changed(
    storage: &mut dyn Storage,
    conversation: &ConversationId,
) -> StorageResult<()> {
    if storage.participant_count(conversation)? <= INDEXED_PARTICIPANTS {
        index_all(storage, conversation)?;
    }
    Ok(())
}

/// `user` joined `conversation` (their participation is stored, unindexed): indexes it, or,
/// if the room just outgrew the index, takes every participation of it out.
pub(crate) fn joined(
    storage: &mut dyn Storage,
    conversation: &ConversationId,
    user: &UserId,
) -> StorageResult<()> {
    let count = storage.participant_count(conversation)?;
    if count <= INDEXED_PARTICIPANTS {
        if let Some(at) = of(storage, conversation, user)? {
            storage.set_activity(conversation, user, Some(at))?;
        }
    } else if count == INDEXED_PARTICIPANTS + 1 {
        for participant in storage.participants(conversation)? {
            storage.set_activity(conversation, &participant.record.user_id, None)?;
        }
    }
    Ok(())
}

/// A participation of `conversation` was removed: if the room now fits the index, indexes
/// every participation of it.
pub(crate) fn left(storage: &mut dyn Storage, conversation: &ConversationId) -> StorageResult<()> {
    if storage.participant_count(conversation)? == INDEXED_PARTICIPANTS {
        index_all(storage, conversation)?;
    }
    Ok(())
}

fn index_all(storage: &mut dyn Storage, conversation: &ConversationId) -> StorageResult<()> {
    for participant in storage.participants(conversation)? {
        let user = &participant.record.user_id;
        if let Some(at) = of(storage, conversation, user)? {
            storage.set_activity(conversation, user, Some(at))?;
        }
    }
    Ok(())
}

/// Where a walk starts: strictly below this activity and conversation.
pub(crate) type Below<'a> = Option<(Timestamp, &'a ConversationId)>;

/// Up to `limit` of `user`'s conversations strictly below `below`, in list order: latest
/// activity first, ties by greater id first.
///
/// # Performance
///
/// About `limit` rows of the index, plus one activity read per participation of the user in
/// a room too large for the index.
pub(crate) fn walk(
    storage: &dyn Storage,
    user: &UserId,
    below: Below<'_>,
    limit: usize,
) -> StorageResult<Vec<(Timestamp, ConversationId)>> {
    let mut rows = storage.activity_below(user, below, limit)?;
    for conversation in storage.unindexed_of(user)? {
        if let Some(at) = of(storage, &conversation, user)?
            && below.is_none_or(|(below_at, below_id)| (at, &conversation) < (below_at, below_id))
        {
            rows.push((at, conversation));
        }
    }
    rows.sort_unstable_by(|a, b| b.cmp(a));
    rows.truncate(limit);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        engine::{ConnId, Engine},
        params::{ParticipantParams, UserParams, WireSend, plain_text},
        protocol::{ClientFrame, ParticipantWrite, Request},
    };

    /// Enough users for a room to outgrow the index.
    const USERS: usize = INDEXED_PARTICIPANTS + 3;
    const CONVERSATIONS: usize = 4;

    #[derive(Debug, Clone)]
    enum Op {
        /// User `u` joins conversation `c` (added by u0, who is in every conversation).
        Join(usize, usize),
        /// Every user joins `c`, which outgrows the index.
        Crowd(usize),
        Leave(usize, usize),
        Send(usize),
        /// Deletes `c`'s last message.
        DeleteLast(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let (u, c) = (1..USERS, 0..CONVERSATIONS);
        prop_oneof![
            3 => (u.clone(), c.clone()).prop_map(|(u, c)| Op::Join(u, c)),
            1 => c.clone().prop_map(Op::Crowd),
            3 => (u, c.clone()).prop_map(|(u, c)| Op::Leave(u, c)),
            3 => c.clone().prop_map(Op::Send),
            1 => c.prop_map(Op::DeleteLast),
        ]
    }

    fn user(u: usize) -> UserId {
        UserId::new(format!("u{u}"))
    }

    fn conversation(c: usize) -> ConversationId {
        ConversationId::new(format!("c{c}"))
    }

    fn run(engine: &Engine, conn: ConnId, request: Request) {
        engine.handle(conn, ClientFrame { id: 0, request });
    }

    fn participate(engine: &Engine, conn: ConnId, u: usize, c: usize, join: bool) {
        let (conversation, user) = (conversation(c), user(u));
        let request = if join {
            Request::SetParticipant {
                conversation,
                user,
                params: ParticipantParams::default(),
                mode: ParticipantWrite::Upsert,
            }
        } else {
            Request::DeleteParticipant { conversation, user }
        };
        run(engine, conn, request);
    }

    /// The walks of u0 (in every conversation), u1, u2 and the last user (in crowds only),
    /// whole and in pages of 3, equal their conversations sorted by [`of`]; exactly the
    /// rooms that fit are indexed.
    fn check(storage: &dyn Storage) {
        for u in [0, 1, 2, USERS - 1] {
            let me = user(u);
            let mut expected = Vec::new();
            for c in 0..CONVERSATIONS {
                if let Some(at) = of(storage, &conversation(c), &me).unwrap() {
                    expected.push((at, conversation(c)));
                    let fits = storage.participant_count(&conversation(c)).unwrap()
                        <= INDEXED_PARTICIPANTS;
                    let unindexed = storage.unindexed_of(&me).unwrap();
                    assert_eq!(!fits, unindexed.contains(&conversation(c)), "{me} in c{c}");
                }
            }
            expected.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(
                walk(storage, &me, None, usize::MAX).unwrap(),
                expected,
                "{me}"
            );
            let mut paged = Vec::new();
            loop {
                let below = paged
                    .last()
                    .map(|(at, id): &(Timestamp, ConversationId)| (*at, id));
                let page = walk(storage, &me, below, 3).unwrap();
                if page.is_empty() {
                    break;
                }
                paged.extend(page);
            }
            assert_eq!(paged, expected, "{me} in pages");
        }
    }

    proptest! {
        // Fixed (not `PROPTEST_CASES`): every case runs on SQLite too.
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The index answers like a sort of every participation by activity, through joins,
        /// leaves, messages and deletions, with rooms growing past the bound and back.
        #[test]
        fn walks_equal_participations_sorted_by_activity(
            ops in proptest::collection::vec(op(), 1..40)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let on_disk = Engine::open(dir.path().join("activity.sqlite")).unwrap();
            for engine in [Engine::new(), on_disk] {
                replay(&engine, &ops);
            }
        }
    }

    fn replay(engine: &Engine, ops: &[Op]) {
        let engine = engine.clone();
        let (conn, _inbox, _) = engine.connect(user(0), 1 << 20);
        for u in 0..USERS {
            let params = UserParams::new().name(format!("U{u}"));
            run(
                &engine,
                conn,
                Request::SetUser {
                    user: user(u),
                    params,
                    create_only: false,
                },
            );
        }
        for c in 0..CONVERSATIONS {
            let conversation = conversation(c);
            run(
                &engine,
                conn,
                Request::SetConversation {
                    conversation,
                    params: Default::default(),
                    create_only: false,
                },
            );
        }
        for (key, op) in ops.iter().cloned().enumerate() {
            match op {
                Op::Join(u, c) => participate(&engine, conn, u, c, true),
                Op::Leave(u, c) => participate(&engine, conn, u, c, false),
                Op::Crowd(c) => {
                    for u in 1..USERS {
                        participate(&engine, conn, u, c, true);
                    }
                }
                Op::Send(c) => run(
                    &engine,
                    conn,
                    Request::Send {
                        conversation: conversation(c),
                        message: WireSend {
                            content: plain_text("hi"),
                            custom: Default::default(),
                            referenced_message: None,
                            idempotency_key: format!("k{key}"),
                        },
                    },
                ),
                Op::DeleteLast(c) => {
                    let last = engine.with_state(|state| {
                        state
                            .storage()
                            .conversation(&conversation(c))
                            .unwrap()
                            .and_then(|stored| stored.record.last_message_id)
                    });
                    if let Some(message) = last {
                        run(
                            &engine,
                            conn,
                            Request::DeleteMessage {
                                conversation: conversation(c),
                                message,
                            },
                        );
                    }
                }
            }
            engine.with_state(|state| check(state.storage()));
        }
    }
}
