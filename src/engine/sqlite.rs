//! SQLite storage (feature `sqlite`): the durable backend of the engine.
//!
//! One database file per engine, in WAL mode. Records are stored as JSON next to the columns
//! that queries need; the event log lives in the same transactions as the data, so an
//! acknowledged command is durable together with its events.
//!
//! Durability: `synchronous=NORMAL` by default, which loses nothing on a process crash (only a
//! power loss can roll back the last commits); [`Durability::Full`] survives power loss at
//! several times the commit cost.

use std::{cell::RefCell, collections::HashMap, hash::Hash, path::Path};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Serialize, de::DeserializeOwned};

use super::storage::{
    Event, MessagePos, Storage, StorageError, StorageResult, StoredConversation, StoredParticipant,
    StoredUser, new_epoch,
};
use crate::model::{ConversationId, MessageId, MessageRecord, MessageType, Timestamp, UserId};

/// How many events the log keeps. Older ones are deleted; clients that need them resynchronize.
pub(crate) const SQLITE_LOG_CAPACITY: u64 = 100_000;

/// The most records each of [`SqliteStorage`]'s caches holds; a full cache is emptied.
const CACHE_CAPACITY: usize = 10_000;

/// Records recently read or written, kept in step with the database (every write goes through
/// it), so that the reads every send makes (its conversation, the sender's participant) and
/// those its push makes per connection (the message, its sender) skip SQLite and JSON. `None`
/// caches an absent record. Emptied on rollback.
struct Cache<K, V>(RefCell<HashMap<K, Option<V>>>);

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Self(RefCell::new(HashMap::new()))
    }

    fn get_or_load(
        &self,
        key: K,
        load: impl FnOnce() -> StorageResult<Option<V>>,
    ) -> StorageResult<Option<V>> {
        if let Some(value) = self.0.borrow().get(&key) {
            return Ok(value.clone());
        }
        let value = load()?;
        self.put(key, value.clone());
        Ok(value)
    }

    fn put(&self, key: K, value: Option<V>) {
        let mut map = self.0.borrow_mut();
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, value);
    }

    /// Drops what is cached for `key`: the next read loads it.
    fn forget(&self, key: &K) {
        self.0.borrow_mut().remove(key);
    }

    fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

/// The write-ahead log's length, in pages, past which the background checkpointer restarts
/// it (about 64 MB): a `RESTART` checkpoint, which holds commits back while it copies what the
/// last `PASSIVE` one left and syncs both files (about 5 ms at 100,000 messages/s; see
/// [`PreSync`]).
const WAL_RESTART_PAGES: i64 = 16_384;

/// A backstop: the log's length, in pages, at which a commit checkpoints it itself (about
/// 400 MB), should the background checkpointer fall behind. Commits that checkpoint take
/// long: under load they set the tail latency.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 100_000;

/// Waits 100 µs and retries, for at most 5 s: the engine and its checkpointer lock each
/// other out for a millisecond or so, and SQLite's own busy timeout sleeps 1, 2, 5, 10 ms and
/// more between retries, which would set the engine's tail latency.
fn wait_briefly(attempt: i32) -> bool {
    std::thread::sleep(std::time::Duration::from_micros(100));
    attempt < 50_000
}

/// The shortest time between two background checkpoints.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Writes what the file system holding the database has in memory to disk, without holding any
/// SQLite lock: a `RESTART` checkpoint syncs the database file while it holds commits back, and
/// `PASSIVE` checkpoints leave the pages they copy unsynced, so without this the restart writes
/// megabytes with commits waiting (about 16 ms at 100,000 messages/s; after it, about 5 ms,
/// now and then up to 16).
///
/// Linux only (`syncfs` on the database's directory: a descriptor of the database file itself
/// would release SQLite's POSIX locks on the file when closed); elsewhere it does nothing.
struct PreSync(#[cfg(target_os = "linux")] Option<std::fs::File>);

impl PreSync {
    fn new(database: &Path) -> Self {
        #[cfg(target_os = "linux")]
        {
            let dir = match database.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            Self(
                std::fs::File::open(dir)
                    .inspect_err(|error| tracing::warn!(%error, "cannot open the data directory"))
                    .ok(),
            )
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = database;
            Self()
        }
    }

    fn run(&self) {
        #[cfg(target_os = "linux")]
        if let Some(dir) = &self.0
            && let Err(error) = rustix::fs::syncfs(dir)
        {
            tracing::warn!(%error, "syncfs before a checkpoint failed");
        }
    }
}

/// Starts a thread that keeps the write-ahead log short on a connection of its own, so that
/// commits do not checkpoint: whenever the returned sender is nudged (at most once every
/// [`CHECKPOINT_INTERVAL`]) it copies the log into the database (`PASSIVE`, beside commits),
/// and restarts the log once it is longer than [`WAL_RESTART_PAGES`], after a [`PreSync`]. It
/// ends when the sender is dropped.
fn spawn_checkpointer(path: &Path) -> StorageResult<std::sync::mpsc::SyncSender<()>> {
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_handler(Some(wait_briefly)).map_err(db)?;
    let checkpoint = move |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            row.get::<_, i64>(1)
        })
    };
    let pre_sync = PreSync::new(path);
    let (nudge, nudges) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("talkstore-checkpoint".into())
        .spawn(move || {
            while nudges.recv().is_ok() {
                let done = checkpoint("PASSIVE").and_then(|pages| {
                    if pages > WAL_RESTART_PAGES {
                        pre_sync.run();
                        checkpoint("RESTART")?;
                    }
                    Ok(())
                });
                if let Err(error) = done {
                    tracing::warn!(%error, "background checkpoint failed");
                }
                std::thread::sleep(CHECKPOINT_INTERVAL);
            }
        })
        .map_err(|e| StorageError(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(nudge)
}

/// How hard SQLite works to keep committed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: safe against process crashes. The default.
    #[default]
    Normal,
    /// `synchronous=FULL`: also safe against power loss; slower commits.
    Full,
}

/// The schema, one migration per step; `PRAGMA user_version` counts the steps applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
CREATE TABLE users (id TEXT PRIMARY KEY, data TEXT NOT NULL) STRICT;
CREATE TABLE conversations (id TEXT PRIMARY KEY, data TEXT NOT NULL) STRICT;
CREATE TABLE participants (
    conversation TEXT NOT NULL,
    user TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (conversation, user)
) STRICT;
CREATE INDEX participants_by_user ON participants (user);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    sender TEXT,
    user_message INTEGER NOT NULL,
    data TEXT NOT NULL
) STRICT;
CREATE INDEX messages_by_conversation ON messages (conversation, created_at, ordinal);
CREATE TABLE idempotency (
    sender TEXT NOT NULL,
    key TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (sender, key)
) STRICT;
CREATE TABLE events (seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, data TEXT NOT NULL) STRICT;
"#,
    r#"
-- Read state kept at write time (see `engine::unread`): each conversation counts its user
-- messages, each participant keeps the counts its unread count is the difference of, and an
-- index of read marks answers `everyone_read_until`. Existing rows are counted once here.
ALTER TABLE conversations ADD COLUMN user_messages INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET user_messages = (
    SELECT COUNT(*) FROM messages m WHERE m.conversation = conversations.id AND m.user_message = 1
);
ALTER TABLE participants ADD COLUMN read_until INTEGER NOT NULL DEFAULT 0;
UPDATE participants SET read_until = json_extract(data, '$.read_until');
UPDATE participants SET data = json_set(data,
    '$.read_base', (
        SELECT COUNT(*) FROM messages m
        WHERE m.conversation = participants.conversation AND m.user_message = 1
          AND m.created_at <= participants.read_until
    ),
    '$.sent_since_read', (
        SELECT COUNT(*) FROM messages m
        WHERE m.conversation = participants.conversation AND m.user_message = 1
          AND m.created_at > participants.read_until AND m.sender = participants.user
    )
);
CREATE INDEX participants_by_read_mark ON participants (conversation, read_until);
"#,
    r#"
-- The activity index (see `engine::activity`): a participation's activity is its
-- conversation's last message time or its join time, whichever is later, kept only for
-- conversations of at most 64 participants (`INDEXED_PARTICIPANTS`); NULL for the others.
ALTER TABLE participants ADD COLUMN activity INTEGER;
UPDATE participants SET activity = max(
    json_extract(data, '$.record.joinedAt'),
    coalesce((SELECT MAX(m.created_at) FROM messages m
              WHERE m.conversation = participants.conversation), 0)
)
WHERE conversation IN (
    SELECT conversation FROM participants GROUP BY conversation HAVING COUNT(*) <= 64
);
CREATE INDEX participants_by_activity ON participants (user, activity, conversation);
CREATE INDEX participants_indexed ON participants (conversation) WHERE activity IS NOT NULL;
"#,
    r#"
-- Reactions: one row per (message, user, emoji); each message's record keeps its counts per
-- emoji. Rows go with their message.
CREATE TABLE reactions (
    message TEXT NOT NULL,
    user TEXT NOT NULL,
    emoji TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message, user, emoji)
) STRICT;
CREATE INDEX reactions_in_order ON reactions (message, emoji, created_at, user);
"#,
];

fn conversation_id(id: &str) -> StorageResult<ConversationId> {
    ConversationId::try_new(id).map_err(|e| StorageError(format!("corrupt conversation id: {e}")))
}

fn db(error: rusqlite::Error) -> StorageError {
    StorageError(error.to_string())
}

fn to_json<T: Serialize>(value: &T) -> StorageResult<String> {
    serde_json::to_string(value).map_err(|e| StorageError(e.to_string()))
}

fn from_json<T: DeserializeOwned>(text: &str) -> StorageResult<T> {
    serde_json::from_str(text).map_err(|e| StorageError(format!("corrupt record: {e}")))
}

/// The counters every write reads, kept in memory: the last event's sequence number, the last
/// message ordinal and the latest time handed out. The database holds the same values (they
/// are written with the data).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    seq: u64,
    ordinal: u64,
    time: Timestamp,
}

pub(crate) struct SqliteStorage {
    conn: Connection,
    in_transaction: bool,
    epoch: u64,
    counters: Counters,
    /// The counters at the start of the open transaction and of the current command.
    at_begin: Counters,
    at_command: Counters,
    /// Rows written so far, when the open transaction began and when the current command
    /// began.
    writes: u64,
    writes_at_begin: u64,
    writes_at_command: u64,
    /// The time last written to the database.
    stored_time: Timestamp,
    conversations: Cache<ConversationId, StoredConversation>,
    participants: Cache<(ConversationId, UserId), StoredParticipant>,
    /// Users and messages, which a commit's push reads once per connection that shows them.
    users: Cache<UserId, StoredUser>,
    messages: Cache<MessageId, (MessageRecord, MessagePos)>,
    /// Conversations changed in the open transaction, written once at commit: every send
    /// changes its conversation's last message, and a batch holds many sends to few
    /// conversations.
    unwritten: HashMap<ConversationId, StoredConversation>,
    /// Participants changed in the open transaction, written before a statement reads the
    /// table and at commit: every send changes its sender's unread counters, and a batch holds
    /// many sends by few senders.
    unwritten_participants: RefCell<HashMap<(ConversationId, UserId), StoredParticipant>>,
    /// Conversations whose indexed participations were touched (a new message) in the open
    /// transaction, with the time, written like `unwritten_participants`: one `UPDATE` per
    /// conversation and commit instead of one per send.
    unwritten_touches: RefCell<HashMap<ConversationId, Timestamp>>,
    /// Nudges the background checkpointer after each commit.
    checkpoint: Option<std::sync::mpsc::SyncSender<()>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub(crate) fn open(path: &Path, durability: Durability) -> StorageResult<Self> {
        let conn = Connection::open(path).map_err(db)?;
        let synchronous = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON;
             PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES};"
        ))
        .map_err(db)?;
        conn.busy_handler(Some(wait_briefly)).map_err(db)?;
        let mut storage = SqliteStorage {
            conn,
            in_transaction: false,
            epoch: 0,
            counters: Counters::default(),
            at_begin: Counters::default(),
            at_command: Counters::default(),
            writes: 0,
            writes_at_begin: 0,
            writes_at_command: 0,
            stored_time: 0,
            conversations: Cache::new(),
            participants: Cache::new(),
            users: Cache::new(),
            messages: Cache::new(),
            unwritten: HashMap::new(),
            unwritten_participants: RefCell::default(),
            unwritten_touches: RefCell::default(),
            checkpoint: None,
        };
        storage.migrate()?;
        storage.counters = storage.stored_counters()?;
        storage.stored_time = storage.counters.time;
        storage.epoch = storage.meta("epoch")?.unwrap_or(0);
        if storage.epoch == 0 {
            // A new log: its epoch tells clients that sequence numbers restarted.
            let epoch = new_epoch();
            storage.set_meta("epoch", epoch)?;
            storage.commit()?;
            storage.epoch = epoch;
        }
        storage.checkpoint = Some(spawn_checkpointer(path)?);
        Ok(storage)
    }

    fn migrate(&mut self) -> StorageResult<()> {
        let version: usize = self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(db)?;
        if version > MIGRATIONS.len() {
            return Err(StorageError(format!(
                "the database has schema version {version}, newer than this build knows ({})",
                MIGRATIONS.len()
            )));
        }
        for (step, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tracing::info!(step = step + 1, "migrating the database schema");
            let tx = self.conn.transaction().map_err(db)?;
            tx.execute_batch(sql).map_err(db)?;
            tx.pragma_update(None, "user_version", step + 1)
                .map_err(db)?;
            tx.commit().map_err(db)?;
        }
        Ok(())
    }

    fn stored_counters(&self) -> StorageResult<Counters> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM events", [], |row| row.get(0))
            .map_err(db)?;
        let time = match self.meta("time")? {
            Some(time) => time as Timestamp,
            // A database from before the time was kept: its newest message is the latest.
            None => self
                .conn
                .query_row("SELECT MAX(created_at) FROM messages", [], |row| {
                    row.get::<_, Option<i64>>(0)
                })
                .map_err(db)?
                .unwrap_or(0),
        };
        Ok(Counters {
            seq: seq.unwrap_or(0) as u64,
            ordinal: self.meta("ordinal")?.unwrap_or(0),
            time,
        })
    }

    fn begin(&mut self) -> StorageResult<()> {
        if !self.in_transaction {
            self.run("BEGIN IMMEDIATE", [])?;
            self.in_transaction = true;
            self.at_begin = self.counters;
            self.writes_at_begin = self.writes;
        }
        Ok(())
    }

    /// Writes the participants and the activity touches buffered since the last time: before
    /// any statement reads the table, and at commit. (Within the open transaction, which
    /// `put_participant` or `touch_activity` opened.)
    fn write_participants(&self) -> StorageResult<()> {
        // Touches only change participations already indexed, and an upsert never changes
        // one's activity, so the two kinds may be written in either order.
        let touches = std::mem::take(&mut *self.unwritten_touches.borrow_mut());
        for (conversation, at) in touches {
            self.run(
                "UPDATE participants SET activity = ?2
                 WHERE conversation = ?1 AND activity IS NOT NULL",
                params![conversation.as_str(), at],
            )?;
        }
        let unwritten = std::mem::take(&mut *self.unwritten_participants.borrow_mut());
        for (_, participant) in unwritten {
            let record = &participant.record;
            self.run(
                "INSERT INTO participants (conversation, user, data, read_until)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (conversation, user)
                 DO UPDATE SET data = excluded.data, read_until = excluded.read_until",
                params![
                    record.conversation_id.as_str(),
                    record.user_id.as_str(),
                    to_json(&participant)?,
                    participant.read_until,
                ],
            )?;
        }
        Ok(())
    }

    /// Runs one statement, prepared once per connection.
    fn run(&self, sql: &str, params: impl rusqlite::Params) -> StorageResult<usize> {
        self.conn
            .prepare_cached(sql)
            .map_err(db)?
            .execute(params)
            .map_err(db)
    }

    fn write(&mut self, sql: &str, params: impl rusqlite::Params) -> StorageResult<()> {
        self.begin()?;
        self.writes += 1;
        self.run(sql, params)?;
        Ok(())
    }

    fn meta(&self, key: &str) -> StorageResult<Option<u64>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get::<_, i64>(0)
            })
            .optional()
            .map(|v| v.map(|v| v as u64))
            .map_err(db)
    }

    fn set_meta(&mut self, key: &str, value: u64) -> StorageResult<()> {
        self.write(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value as i64],
        )
    }

    fn one<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> StorageResult<Option<T>> {
        let text: Option<String> = self
            .conn
            .prepare_cached(sql)
            .map_err(db)?
            .query_row(params, |row| row.get(0))
            .optional()
            .map_err(db)?;
        text.as_deref().map(from_json).transpose()
    }

    fn all<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> StorageResult<Vec<T>> {
        let mut statement = self.conn.prepare_cached(sql).map_err(db)?;
        let rows = statement
            .query_map(params, |row| row.get::<_, String>(0))
            .map_err(db)?;
        let mut out = Vec::new();
        for text in rows {
            out.push(from_json(&text.map_err(db)?)?);
        }
        Ok(out)
    }

    fn message_rows(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> StorageResult<Vec<(MessageRecord, MessagePos)>> {
        let mut statement = self.conn.prepare_cached(sql).map_err(db)?;
        let rows = statement
            .query_map(params, |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (data, created_at, ordinal) = row.map_err(db)?;
            out.push((
                from_json(&data)?,
                MessagePos {
                    created_at,
                    ordinal: ordinal as u64,
                },
            ));
        }
        Ok(out)
    }
}

impl Storage for SqliteStorage {
    fn user(&self, id: &UserId) -> StorageResult<Option<StoredUser>> {
        self.users.get_or_load(id.clone(), || {
            self.one("SELECT data FROM users WHERE id = ?1", [id.as_str()])
        })
    }

    fn put_user(&mut self, user: StoredUser) -> StorageResult<()> {
        let data = to_json(&user)?;
        self.write(
            "INSERT INTO users (id, data) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            params![user.public.id.as_str(), data],
        )?;
        self.users.put(user.public.id.clone(), Some(user));
        Ok(())
    }

    fn conversation(&self, id: &ConversationId) -> StorageResult<Option<StoredConversation>> {
        if let Some(conversation) = self.unwritten.get(id) {
            return Ok(Some(conversation.clone()));
        }
        self.conversations.get_or_load(id.clone(), || {
            let row: Option<(String, i64)> = self
                .conn
                .prepare_cached("SELECT data, user_messages FROM conversations WHERE id = ?1")
                .map_err(db)?
                .query_row([id.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .map_err(db)?;
            row.map(|(data, user_messages)| {
                Ok(StoredConversation {
                    record: from_json(&data)?,
                    user_messages: user_messages as u64,
                })
            })
            .transpose()
        })
    }

    fn put_conversation(&mut self, conversation: StoredConversation) -> StorageResult<()> {
        self.begin()?;
        self.writes += 1;
        let id = conversation.record.id.clone();
        self.conversations
            .put(id.clone(), Some(conversation.clone()));
        self.unwritten.insert(id, conversation);
        Ok(())
    }

    #[cfg(feature = "server")]
    fn remove_conversation(&mut self, id: &ConversationId) -> StorageResult<()> {
        self.unwritten.remove(id);
        self.write("DELETE FROM conversations WHERE id = ?1", [id.as_str()])?;
        self.conversations.put(id.clone(), None);
        Ok(())
    }

    fn participant(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StorageResult<Option<StoredParticipant>> {
        let key = (conversation.clone(), user.clone());
        // The cache may have been emptied since: what is not written yet comes first.
        if let Some(participant) = self.unwritten_participants.borrow().get(&key) {
            return Ok(Some(participant.clone()));
        }
        self.participants.get_or_load(key, || {
            self.one(
                "SELECT data FROM participants WHERE conversation = ?1 AND user = ?2",
                [conversation.as_str(), user.as_str()],
            )
        })
    }

    fn put_participant(&mut self, participant: StoredParticipant) -> StorageResult<()> {
        self.begin()?;
        self.writes += 1;
        let record = &participant.record;
        let key = (record.conversation_id.clone(), record.user_id.clone());
        self.participants
            .put(key.clone(), Some(participant.clone()));
        self.unwritten_participants
            .borrow_mut()
            .insert(key, participant);
        Ok(())
    }

    fn remove_participant(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StorageResult<()> {
        let key = (conversation.clone(), user.clone());
        self.unwritten_participants.borrow_mut().remove(&key);
        self.write(
            "DELETE FROM participants WHERE conversation = ?1 AND user = ?2",
            [conversation.as_str(), user.as_str()],
        )?;
        self.participants
            .put((conversation.clone(), user.clone()), None);
        Ok(())
    }

    fn participants(&self, conversation: &ConversationId) -> StorageResult<Vec<StoredParticipant>> {
        self.write_participants()?;
        self.all(
            "SELECT data FROM participants WHERE conversation = ?1",
            [conversation.as_str()],
        )
    }

    fn everyone_read_until(
        &self,
        conversation: &ConversationId,
    ) -> StorageResult<Option<Timestamp>> {
        self.write_participants()?;
        self.conn
            .prepare_cached("SELECT MIN(read_until) FROM participants WHERE conversation = ?1")
            .map_err(db)?
            .query_row([conversation.as_str()], |row| row.get(0))
            .map_err(db)
    }

    fn participant_count(&self, conversation: &ConversationId) -> StorageResult<usize> {
        self.write_participants()?;
        self.conn
            .prepare_cached("SELECT COUNT(*) FROM participants WHERE conversation = ?1")
            .map_err(db)?
            .query_row([conversation.as_str()], |row| row.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(db)
    }

    fn set_activity(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
        at: Option<Timestamp>,
    ) -> StorageResult<()> {
        self.write_participants()?;
        self.write(
            "UPDATE participants SET activity = ?3 WHERE conversation = ?1 AND user = ?2",
            params![conversation.as_str(), user.as_str(), at],
        )
    }

    fn touch_activity(
        &mut self,
        conversation: &ConversationId,
        at: Timestamp,
    ) -> StorageResult<()> {
        self.begin()?;
        self.writes += 1;
        self.unwritten_touches
            .get_mut()
            .insert(conversation.clone(), at);
        Ok(())
    }

    fn activity_below(
        &self,
        user: &UserId,
        below: Option<(Timestamp, &ConversationId)>,
        limit: usize,
    ) -> StorageResult<Vec<(Timestamp, ConversationId)>> {
        self.write_participants()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement;
        let rows = match below {
            Some((at, id)) => {
                statement = self
                    .conn
                    .prepare_cached(
                        "SELECT activity, conversation FROM participants
                         WHERE user = ?1 AND activity IS NOT NULL
                           AND (activity, conversation) < (?2, ?3)
                         ORDER BY activity DESC, conversation DESC LIMIT ?4",
                    )
                    .map_err(db)?;
                statement.query(params![user.as_str(), at, id.as_str(), limit])
            }
            None => {
                statement = self
                    .conn
                    .prepare_cached(
                        "SELECT activity, conversation FROM participants
                         WHERE user = ?1 AND activity IS NOT NULL
                         ORDER BY activity DESC, conversation DESC LIMIT ?2",
                    )
                    .map_err(db)?;
                statement.query(params![user.as_str(), limit])
            }
        };
        let mut rows = rows.map_err(db)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let at: Timestamp = row.get(0).map_err(db)?;
            let id: String = row.get(1).map_err(db)?;
            out.push((at, conversation_id(&id)?));
        }
        Ok(out)
    }

    fn unindexed_of(&self, user: &UserId) -> StorageResult<Vec<ConversationId>> {
        self.write_participants()?;
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT conversation FROM participants WHERE user = ?1 AND activity IS NULL",
            )
            .map_err(db)?;
        let rows = statement
            .query_map([user.as_str()], |row| row.get::<_, String>(0))
            .map_err(db)?;
        let mut out = Vec::new();
        for id in rows {
            out.push(conversation_id(&id.map_err(db)?)?);
        }
        Ok(out)
    }

    fn message(&self, id: &MessageId) -> StorageResult<Option<(MessageRecord, MessagePos)>> {
        self.messages.get_or_load(id.clone(), || {
            Ok(self
                .message_rows(
                    "SELECT data, created_at, ordinal FROM messages WHERE id = ?1",
                    [id.as_str()],
                )?
                .pop())
        })
    }

    fn put_message(&mut self, message: MessageRecord, pos: MessagePos) -> StorageResult<()> {
        // An edit keeps the stored position: the next read loads the message as stored.
        self.messages.forget(&message.id);
        let data = to_json(&message)?;
        self.write(
            "INSERT INTO messages (id, conversation, created_at, ordinal, sender, user_message, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            params![
                message.id.as_str(),
                message.conversation_id.as_str(),
                pos.created_at,
                pos.ordinal as i64,
                message.sender_id.as_ref().map(UserId::as_str),
                message.message_type == MessageType::UserMessage,
                data,
            ],
        )
    }

    fn remove_message(&mut self, id: &MessageId) -> StorageResult<()> {
        self.write("DELETE FROM messages WHERE id = ?1", [id.as_str()])?;
        self.write("DELETE FROM reactions WHERE message = ?1", [id.as_str()])?;
        self.messages.put(id.clone(), None);
        Ok(())
    }

    fn put_reaction(
        &mut self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
        at: Timestamp,
    ) -> StorageResult<bool> {
        self.begin()?;
        let inserted = self.run(
            "INSERT INTO reactions (message, user, emoji, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![message.as_str(), user.as_str(), emoji, at],
        )?;
        self.writes += inserted as u64;
        Ok(inserted == 1)
    }

    fn remove_reaction(
        &mut self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
    ) -> StorageResult<bool> {
        self.begin()?;
        let removed = self.run(
            "DELETE FROM reactions WHERE message = ?1 AND user = ?2 AND emoji = ?3",
            params![message.as_str(), user.as_str(), emoji],
        )?;
        self.writes += removed as u64;
        Ok(removed == 1)
    }

    fn reaction(
        &self,
        message: &MessageId,
        emoji: &str,
        user: &UserId,
    ) -> StorageResult<Option<Timestamp>> {
        self.conn
            .prepare_cached(
                "SELECT created_at FROM reactions WHERE message = ?1 AND user = ?2 AND emoji = ?3",
            )
            .and_then(|mut statement| {
                statement
                    .query_row([message.as_str(), user.as_str(), emoji], |row| row.get(0))
                    .optional()
            })
            .map_err(db)
    }

    fn reactions_of(&self, message: &MessageId, user: &UserId) -> StorageResult<Vec<String>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT emoji FROM reactions WHERE message = ?1 AND user = ?2
                 ORDER BY created_at, emoji",
            )
            .map_err(db)?;
        let rows = statement
            .query_map([message.as_str(), user.as_str()], |row| row.get(0))
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn reactions(
        &self,
        message: &MessageId,
        emoji: &str,
        limit: usize,
    ) -> StorageResult<Vec<(UserId, Timestamp)>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT user, created_at FROM reactions WHERE message = ?1 AND emoji = ?2
                 ORDER BY created_at, user LIMIT ?3",
            )
            .map_err(db)?;
        let rows = statement
            .query_map(params![message.as_str(), emoji, limit as i64], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (user, at) = row.map_err(db)?;
            let user =
                UserId::try_new(user).map_err(|e| StorageError(format!("corrupt user id: {e}")))?;
            out.push((user, at));
        }
        Ok(out)
    }

    fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<MessagePos>,
        limit: usize,
    ) -> StorageResult<Vec<(MessageRecord, MessagePos)>> {
        let (created_at, ordinal) =
            before.map_or((i64::MAX, i64::MAX), |p| (p.created_at, p.ordinal as i64));
        self.message_rows(
            "SELECT data, created_at, ordinal FROM messages
             WHERE conversation = ?1 AND (created_at, ordinal) < (?2, ?3)
             ORDER BY created_at DESC, ordinal DESC LIMIT ?4",
            params![conversation.as_str(), created_at, ordinal, limit as i64],
        )
    }

    fn count_user_messages(
        &self,
        conversation: &ConversationId,
        after: Timestamp,
        sender: &UserId,
    ) -> StorageResult<(u64, u64)> {
        self.conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(sender = ?3), 0) FROM messages
                 WHERE conversation = ?1 AND created_at > ?2 AND user_message = 1",
            )
            .map_err(db)?
            .query_row(
                params![conversation.as_str(), after, sender.as_str()],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
            )
            .map_err(db)
    }

    fn idempotent_send(&self, sender: &UserId, key: &str) -> StorageResult<Option<MessageId>> {
        let id: Option<String> = self
            .conn
            .prepare_cached("SELECT message FROM idempotency WHERE sender = ?1 AND key = ?2")
            .map_err(db)?
            .query_row([sender.as_str(), key], |row| row.get(0))
            .optional()
            .map_err(db)?;
        id.map(|id| MessageId::try_new(id).map_err(|e| StorageError(e.to_string())))
            .transpose()
    }

    fn claim_idempotent_send(
        &mut self,
        sender: &UserId,
        key: &str,
        id: &MessageId,
    ) -> StorageResult<Option<MessageId>> {
        self.begin()?;
        let inserted = self.run(
            "INSERT INTO idempotency (sender, key, message) VALUES (?1, ?2, ?3)
             ON CONFLICT (sender, key) DO NOTHING",
            [sender.as_str(), key, id.as_str()],
        )?;
        if inserted == 1 {
            self.writes += 1;
            return Ok(None);
        }
        self.idempotent_send(sender, key)?
            .map(Some)
            .ok_or_else(|| StorageError(format!("idempotency key {key:?} conflicts but is gone")))
    }

    fn log_position(&self) -> StorageResult<(u64, u64)> {
        Ok((self.epoch, self.counters.seq))
    }

    fn events_after(&self, after: u64) -> StorageResult<Option<Vec<Event>>> {
        let events: Vec<Event> = self.all(
            "SELECT data FROM events WHERE seq > ?1 ORDER BY seq",
            [after as i64],
        )?;
        // Sequence numbers have no gaps: the log reaches back iff it returned all of them.
        let complete =
            after <= self.counters.seq && events.len() as u64 == self.counters.seq - after;
        Ok(complete.then_some(events))
    }

    fn append_events(&mut self, events: &[Event]) -> StorageResult<u64> {
        let first = self.counters.seq;
        let mut seq = first;
        for event in events {
            seq += 1;
            let data = to_json(event)?;
            self.write(
                "INSERT INTO events (seq, epoch, data) VALUES (?1, ?2, ?3)",
                params![seq as i64, self.epoch as i64, data],
            )?;
        }
        // Trim the log every thousand events.
        if seq / 1_000 != first / 1_000 && seq > SQLITE_LOG_CAPACITY {
            self.write(
                "DELETE FROM events WHERE seq <= ?1",
                [(seq - SQLITE_LOG_CAPACITY) as i64],
            )?;
        }
        self.counters.seq = seq;
        Ok(seq)
    }

    fn last_ordinal(&self) -> u64 {
        self.counters.ordinal
    }

    fn last_time(&self) -> Timestamp {
        self.counters.time
    }

    fn record_time(&mut self, at: Timestamp) {
        self.counters.time = self.counters.time.max(at);
    }

    /// The ordinal is kept in memory and written once per commit.
    fn next_ordinal(&mut self) -> StorageResult<u64> {
        self.begin()?;
        self.counters.ordinal += 1;
        Ok(self.counters.ordinal)
    }

    fn begin_command(&mut self) {
        self.at_command = self.counters;
        self.writes_at_command = self.writes;
    }

    fn undo_command(&mut self) -> bool {
        if self.writes == self.writes_at_command {
            self.counters = self.at_command;
            true
        } else if self.writes_at_command == self.writes_at_begin {
            // The transaction holds this command's writes only.
            self.rollback();
            true
        } else {
            false
        }
    }

    fn commit(&mut self) -> StorageResult<()> {
        if self.in_transaction {
            if self.counters.ordinal != self.at_begin.ordinal {
                self.set_meta("ordinal", self.counters.ordinal)?;
            }
            // Compared with the stored value, not the one at `begin`: a command may take the
            // time before its first write opens the transaction.
            if self.counters.time > self.stored_time {
                self.set_meta("time", self.counters.time as u64)?;
            }
            self.write_participants()?;
            for (id, conversation) in std::mem::take(&mut self.unwritten) {
                self.write(
                    "INSERT INTO conversations (id, data, user_messages) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id)
                     DO UPDATE SET data = excluded.data, user_messages = excluded.user_messages",
                    params![
                        id.as_str(),
                        to_json(&conversation.record)?,
                        conversation.user_messages as i64
                    ],
                )?;
            }
            self.run("COMMIT", [])?;
            self.in_transaction = false;
            self.stored_time = self.counters.time;
            if let Some(checkpoint) = &self.checkpoint {
                // Full means a nudge is pending already.
                let _ = checkpoint.try_send(());
            }
        }
        Ok(())
    }

    fn rollback(&mut self) {
        if self.in_transaction {
            self.counters = self.at_begin;
            self.conversations.clear();
            self.participants.clear();
            self.users.clear();
            self.messages.clear();
            self.unwritten.clear();
            self.unwritten_participants.get_mut().clear();
            self.unwritten_touches.get_mut().clear();
            if let Err(error) = self.run("ROLLBACK", []) {
                tracing::error!(%error, "rollback failed");
            }
            self.in_transaction = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// How many times the write-ahead log restarted: SQLite counts restarts in the log's header
    /// (bytes 12 to 16, big-endian).
    fn wal_restarts(path: &Path) -> u32 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let mut header = [0; 16];
        match std::fs::File::open(wal).and_then(|mut f| f.read_exact(&mut header)) {
            Ok(()) => u32::from_be_bytes([header[12], header[13], header[14], header[15]]),
            Err(_) => 0,
        }
    }

    /// Under steady commits the background checkpointer restarts the log soon after it passes
    /// `WAL_RESTART_PAGES` (each commit here adds one page), long before the commits' own
    /// backstop at `WAL_AUTOCHECKPOINT_PAGES` would.
    #[test]
    fn the_log_restarts_under_steady_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sqlite");
        let mut storage = SqliteStorage::open(&path, Durability::Normal).unwrap();
        let start = wal_restarts(&path);
        let limit = 8 * WAL_RESTART_PAGES as u64;
        let mut commits = 0;
        while wal_restarts(&path) == start {
            assert!(commits < limit, "no restart after {commits} commits");
            storage.set_meta("test", commits).unwrap();
            storage.commit().unwrap();
            commits += 1;
        }
        assert!(commits > WAL_RESTART_PAGES as u64 / 2, "{commits}");
    }

    /// A database of schema 1 (written before read state was kept) migrates: every
    /// participant's unread count equals a count from scratch, and `everyone_read_until` is the
    /// earliest read mark.
    #[test]
    fn read_state_migrates_from_schema_one() {
        use crate::model::{Access, ConversationRecord, Notify, Origin, ParticipantRecord};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        let c = ConversationId::new("c");
        let users = ["alice", "bob", "carol"];
        {
            let mut s = SqliteStorage::open(&path, Durability::Normal).unwrap();
            let record = ConversationRecord {
                id: c.clone(),
                subject: None,
                photo_url: None,
                welcome_messages: Vec::new(),
                custom: Default::default(),
                created_at: 1,
                last_message_id: None,
            };
            let user_messages = 0;
            s.put_conversation(StoredConversation {
                record,
                user_messages,
            })
            .unwrap();
            for i in 0..12_u64 {
                let at = 10 * (i as Timestamp + 1);
                let message = MessageRecord {
                    id: MessageId::new(format!("m{i}")),
                    conversation_id: c.clone(),
                    message_type: if i == 7 {
                        MessageType::SystemMessage
                    } else {
                        MessageType::UserMessage
                    },
                    sender_id: Some(UserId::new(users[i as usize % 3])),
                    custom: Default::default(),
                    created_at: at,
                    edited_at: None,
                    referenced_message_id: None,
                    origin: Origin::Rest,
                    plaintext: String::new(),
                    content: Vec::new().into(),
                    reactions: Vec::new(),
                };
                let pos = MessagePos {
                    created_at: at,
                    ordinal: i,
                };
                s.put_message(message, pos).unwrap();
            }
            for (user, read_until) in users.into_iter().zip([0, 35, 60]) {
                let record = ParticipantRecord {
                    conversation_id: c.clone(),
                    user_id: UserId::new(user),
                    access: Access::ReadWrite,
                    notify: Notify::default(),
                    joined_at: 1,
                };
                let participant = StoredParticipant {
                    record,
                    read_until,
                    marked_unread: false,
                    read_base: 0,
                    sent_since_read: 0,
                };
                s.put_participant(participant).unwrap();
            }
            s.commit().unwrap();
        }
        // Back to schema 1, as a database written before read state was kept.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "DROP TABLE reactions;
                 DROP INDEX participants_indexed;
                 DROP INDEX participants_by_activity;
                 ALTER TABLE participants DROP COLUMN activity;
                 DROP INDEX participants_by_read_mark;
                 ALTER TABLE participants DROP COLUMN read_until;
                 ALTER TABLE conversations DROP COLUMN user_messages;
                 UPDATE participants SET data = json_remove(data, '$.read_base', '$.sent_since_read');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        let s = SqliteStorage::open(&path, Durability::Normal).unwrap();
        let conversation = s.conversation(&c).unwrap().unwrap();
        assert_eq!(conversation.user_messages, 11);
        let mut unread = Vec::new();
        for user in users {
            let p = s.participant(&c, &UserId::new(user)).unwrap().unwrap();
            let (after, own) = s
                .count_user_messages(&c, p.read_until, &p.record.user_id)
                .unwrap();
            let state = super::super::unread::read_state(&s, &conversation, &p).unwrap();
            assert_eq!(state.unread_message_count, after - own, "{user}");
            assert_eq!(state.everyone_read_until, 0);
            unread.push(state.unread_message_count);
        }
        // alice: the 7 user messages of bob and carol; bob (read to 35): m3..m11 less his
        // own m4 and m10 and the system message m7; carol (read to 60): m6, m9 and m10.
        assert_eq!(unread, [7, 6, 3]);
        // The activity index (schema 3) starts at the last message, m11.
        for user in users {
            let user = UserId::new(user);
            assert_eq!(
                s.activity_below(&user, None, 10).unwrap(),
                [(120, c.clone())]
            );
            assert!(s.unindexed_of(&user).unwrap().is_empty());
        }
    }
}
