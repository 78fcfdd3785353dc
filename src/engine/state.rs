//! The engine's state and its write transaction: the open batch, its commit, and the pushes
//! that follow it.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use super::{
    ConnId, EngineError, EngineResult, Event, Storage, StorageError,
    feed::{self, Feed},
    interest::Interest,
    policy::Policy,
    view,
};
use crate::{
    HashMap,
    model::Timestamp,
    protocol::{ServerFrame, Update},
};

/// Where an engine gets the current time, in milliseconds since the Unix epoch.
pub(super) type Clock = Box<dyn Fn() -> Timestamp + Send>;

pub(super) struct Connection {
    pub(super) feed: Feed,
    /// Bounded: a connection that does not keep up is dropped (see [`State::flush`]).
    pub(super) outbox: mpsc::Sender<ServerFrame>,
    pub(super) dropped: DropReason,
}

/// Why the engine dropped a connection (its receiver ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Its queue was full: a reader too slow for its queue.
    SlowReader,
    /// A batch of writes failed in storage: the connection's feed counted the lost writes as
    /// sent, so its client must resume from its last push.
    StorageFailure,
}

/// Set by the engine, once, when it drops a connection.
pub(crate) type DropReason = Arc<OnceLock<Dropped>>;

impl Connection {
    fn drop_for(self, reason: Dropped) {
        let _ = self.dropped.set(reason);
    }
}

pub(crate) struct State {
    pub(super) storage: Box<dyn Storage>,
    pub(super) clock: Clock,
    /// What users' own requests may change.
    pub(super) policy: Policy,
    pub(super) last_now: Timestamp,
    pub(super) connections: HashMap<ConnId, Connection>,
    /// What each connection's feed watches: a commit visits the feeds it can concern only.
    pub(super) interest: Interest,
    pub(super) next_conn: ConnId,
    /// Frames of the open batch, sent once its commit succeeds: an answer is never sent
    /// before the writes it reports are durable.
    pub(super) outgoing: Vec<(ConnId, ServerFrame)>,
    /// The events of the writes run since the last push, and their answers: consecutive
    /// writes of a batch are pushed together, one push per connection however many writes
    /// it sees (see [`State::publish_pending`]).
    pub(super) pending: Vec<Event>,
    pub(super) held: Vec<(ConnId, ServerFrame)>,
    /// Commands in the open batch.
    pub(super) batched: usize,
    /// Why the open batch cannot commit, if it cannot.
    pub(super) failed: Option<StorageError>,
}

impl State {
    pub(super) fn new(storage: Box<dyn Storage>, clock: Clock) -> Self {
        State {
            last_now: storage.last_time(),
            storage,
            clock,
            policy: Policy::default(),
            connections: HashMap::default(),
            interest: Interest::default(),
            next_conn: 1,
            outgoing: Vec::new(),
            pending: Vec::new(),
            held: Vec::new(),
            batched: 0,
            failed: None,
        }
    }

    /// The engine's time: the wall clock, but strictly increasing, so that every event has its
    /// own timestamp (under more than 1,000 writes a second it runs ahead of the wall clock).
    pub(crate) fn now(&mut self) -> Timestamp {
        let now = (self.clock)().max(self.last_now + 1);
        self.last_now = now;
        self.storage.record_time(now);
        now
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    pub(crate) fn storage_mut(&mut self) -> &mut dyn Storage {
        &mut *self.storage
    }

    /// Runs a write inside the open batch: its writes and events are kept together, or, if it
    /// fails, none of them. They become durable with the batch's commit ([`State::flush`]).
    ///
    /// Commands of a batch validate before they write, so one fails after writing only if
    /// storage failed; if the storage cannot undo that command alone, the whole batch fails.
    /// (An app backend's write runs alone in its batch, so it may fail anywhere.)
    pub(super) fn write<T>(
        &mut self,
        command: impl FnOnce(&mut State) -> EngineResult<(T, Vec<Event>)>,
    ) -> EngineResult<(T, Vec<Event>)> {
        self.storage.begin_command();
        let result = command(self).and_then(|(response, events)| {
            if !events.is_empty() {
                self.storage.append_events(&events)?;
            }
            Ok((response, events))
        });
        if let Err(error) = &result
            && !self.storage.undo_command()
        {
            debug_assert!(
                matches!(error, EngineError::Storage(_)),
                "a command was refused after it wrote: {error}"
            );
            if self.failed.is_none() {
                self.failed = Some(match error {
                    EngineError::Storage(error) => error.clone(),
                    EngineError::Rejected { reason, .. } => StorageError(reason.clone()),
                });
            }
        }
        result
    }

    /// Commits the open batch (group commit: one commit for every command that queued behind
    /// the lock meanwhile), then sends its frames. If the commit fails, or a command of the
    /// batch failed in a way that could not be undone alone, the batch's writes are gone: its
    /// requests are answered with `INTERNAL` and every connection is dropped
    /// ([`Dropped::StorageFailure`]): each feed counted the lost writes as sent, so its client
    /// must resume from its last push.
    pub(super) fn flush(&mut self) {
        self.publish_pending();
        self.batched = 0;
        // Drained, not taken: a busy engine reuses the queue's memory instead of growing a
        // new one (with a thousand subscribers, a page fault per few frames) on every batch.
        let frames = self.outgoing.drain(..);
        let committed = match self.failed.take() {
            Some(error) => Err(error),
            None => self.storage.commit(),
        };
        if let Err(error) = committed {
            tracing::error!(%error, "a batch of writes failed; closing every connection");
            self.storage.rollback();
            for (conn, frame) in frames {
                if let (ServerFrame::Response { id, .. }, Some(c)) =
                    (&frame, self.connections.get(&conn))
                {
                    let result = Err(EngineError::Storage(error.clone()).into_wire());
                    let _ = c.outbox.try_send(ServerFrame::Response { id: *id, result });
                }
            }
            self.interest = Interest::default();
            for (_, connection) in self.connections.drain() {
                connection.drop_for(Dropped::StorageFailure);
            }
            return;
        }
        let mut overflowed = Vec::new();
        for (conn, frame) in frames {
            if let Some(connection) = self.connections.get(&conn) {
                // A closed outbox means the connection is going away; disconnect cleans up.
                if let Err(mpsc::error::TrySendError::Full(_)) = connection.outbox.try_send(frame) {
                    overflowed.push(conn);
                }
            }
        }
        // A reader too slow for its queue is dropped: its receiver ends, and it catches up
        // when it reconnects. Nothing it missed is lost, and nobody else waits for it.
        for conn in overflowed {
            if let Some(connection) = self.remove_connection(conn) {
                tracing::info!(conn, "dropped a connection whose outbound queue was full");
                connection.drop_for(Dropped::SlowReader);
            }
        }
    }

    /// Pushes the pending writes' events, then queues their answers: each answer comes after
    /// the push that shows its effects. Runs before anything that reads the feeds or storage
    /// for a connection (a subscribe, a read, a disconnect) and before a commit, so feeds
    /// never see an event twice.
    ///
    /// # Performance
    ///
    /// Under load a batch holds many writes: each connection's feed then handles them in one
    /// pass and gets one frame, so the cost per delivery falls as the load grows.
    pub(super) fn publish_pending(&mut self) {
        if !self.pending.is_empty() {
            let events = std::mem::take(&mut self.pending);
            self.publish(&events);
        }
        self.outgoing.append(&mut self.held);
    }

    /// Turns committed events into one push per connection that sees them.
    fn publish(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let storage = &*self.storage;
        let Ok(position) = storage.log_position() else {
            return;
        };
        let touched = feed::touched_keys(events);
        let mut reads = view::Reads::default();
        for id in self.interest.concerned(storage, events, &touched) {
            let Some(connection) = self.connections.get_mut(&id) else {
                continue;
            };
            match connection
                .feed
                .on_events(storage, events, &touched, &mut reads)
            {
                Ok(updates) => self.outgoing.extend(push(id, position, updates)),
                Err(error) => tracing::error!(%error, "feed failed to compute a push"),
            }
            self.interest.hold(id, connection.feed.take_user_changes());
        }
    }

    pub(super) fn remove_connection(&mut self, conn: ConnId) -> Option<Connection> {
        let connection = self.connections.remove(&conn)?;
        self.interest.forget(conn, connection.feed.held_users());
        Some(connection)
    }
}

/// A push of `updates` to a connection, stamped with the log `position` (epoch, sequence
/// number) it brings the client to; `None` if there is nothing to push.
pub(super) fn push(
    id: ConnId,
    (epoch, seq): (u64, u64),
    updates: Vec<Update>,
) -> Option<(ConnId, ServerFrame)> {
    (!updates.is_empty()).then_some((
        id,
        ServerFrame::Push {
            seq,
            epoch,
            updates,
            more: false,
        },
    ))
}
