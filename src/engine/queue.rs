//! The engine's queue (flat combining: whoever holds the engine runs every queued command
//! before letting go) and the routing of each request to the feed, a read or a write.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard, TryLockError},
};

use super::{
    ConnId, EngineError, EngineResult, Storage,
    commands::{self, Route},
    feed::Feed,
    policy,
    state::{State, push},
};
use crate::protocol::{ClientFrame, Response, ServerFrame, Update};

/// The most commands one commit covers.
pub(super) const MAX_BATCH: usize = 256;

/// Work queued for the engine, run in order by whichever thread holds it.
pub(super) enum Command {
    Frame(ConnId, Box<ClientFrame>),
    Disconnect(ConnId),
}

/// What every handle of an engine shares: its state, and the commands queued for it.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Commands not run yet. Whoever releases `state` runs them first (see [`Shared::drain`]).
    pub(super) queue: Mutex<VecDeque<Command>>,
}

impl Shared {
    pub(super) fn queue(&self) -> MutexGuard<'_, VecDeque<Command>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs queued commands, up to [`MAX_BATCH`] per commit, until the queue is empty or
    /// another thread holds the engine.
    ///
    /// No command is stranded: a thread that queues takes the queue lock after the holder
    /// took it to find the queue empty, so it then finds the engine free (or held by a thread
    /// that drains again when it lets go).
    pub(super) fn drain(&self) {
        loop {
            if self.queue().is_empty() {
                return;
            }
            let mut state = match self.state.try_lock() {
                Ok(state) => state,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            loop {
                let batch: Vec<Command> = {
                    let mut queue = self.queue();
                    let n = queue.len().min(MAX_BATCH - state.batched);
                    queue.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                for command in batch {
                    match command {
                        Command::Frame(conn, frame) => {
                            self.run(&mut state, conn, *frame);
                            state.batched += 1;
                        }
                        Command::Disconnect(conn) => {
                            state.publish_pending();
                            state.remove_connection(conn);
                        }
                    }
                }
                if state.batched >= MAX_BATCH {
                    state.flush();
                }
            }
            state.flush();
        }
    }

    fn run(&self, state: &mut State, conn: ConnId, frame: ClientFrame) {
        let Some(me) = state.connections.get(&conn).map(|c| c.feed.me().clone()) else {
            return;
        };
        let id = frame.id;
        let is_write = frame.request.is_write();
        let authorized = policy::authorize(state.policy, &*state.storage, &me, &frame.request);
        let route = commands::route(frame.request);
        debug_assert_eq!(is_write, matches!(route, Route::Write(_)));
        if !is_write {
            state.publish_pending();
        }
        let result = match (authorized, route) {
            (Err(refused), _) => Err(refused),
            (
                Ok(()),
                Route::Subscribe {
                    sub,
                    target,
                    restore,
                },
            ) => feed_op(state, conn, |feed, storage| {
                feed.subscribe(storage, sub, target, restore)
            }),
            (Ok(()), Route::Ack) => Ok(Response::Ack),
            (Ok(()), Route::LoadMore { sub, count }) => feed_op(state, conn, |feed, storage| {
                feed.load_more(storage, sub, count)
            }),
            (Ok(()), Route::Unsubscribe { sub }) => {
                feed_op(state, conn, |feed, _| Ok(feed.unsubscribe(sub)))
            }
            (Ok(()), Route::Read(read)) => commands::read(state, &me, read),
            (Ok(()), Route::Write(write)) => match state.write(|s| write(s, &me)) {
                Ok((response, events)) => {
                    state.pending.extend(events);
                    let result = Ok(response);
                    state
                        .held
                        .push((conn, ServerFrame::Response { id, result }));
                    return;
                }
                Err(error) => Err(error),
            },
        };
        let result = result.map_err(EngineError::into_wire);
        // After the answers held for the pending writes of the batch (a failed write's
        // answer too: answers keep their order).
        let queue = if state.held.is_empty() {
            &mut state.outgoing
        } else {
            &mut state.held
        };
        queue.push((conn, ServerFrame::Response { id, result }));
    }
}

/// Runs a subscription operation on one connection's feed and pushes its updates.
fn feed_op(
    state: &mut State,
    conn: ConnId,
    op: impl FnOnce(&mut Feed, &dyn Storage) -> EngineResult<Vec<Update>>,
) -> EngineResult<Response> {
    let storage = &*state.storage;
    let position = storage.log_position()?;
    let Some(connection) = state.connections.get_mut(&conn) else {
        return Ok(Response::Ack);
    };
    let result = op(&mut connection.feed, storage);
    let feed = &mut connection.feed;
    state.interest.watch(conn, feed.me(), feed.targets());
    state.interest.hold(conn, feed.take_user_changes());
    state.outgoing.extend(push(conn, position, result?));
    Ok(Response::Ack)
}
