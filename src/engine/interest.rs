//! Which connections a commit can concern, so that publishing it visits those feeds only
//! instead of every connection of the engine.
//!
//! After events, a feed pushes only if one of its subscriptions' windows may change (see
//! `Feed::affects`) or if it holds a record an event touched. [`Interest`] keeps, for every
//! connection, a superset of both: what its subscriptions' targets watch, and the users its
//! feed holds.
//!
//! Only user keys are indexed by holder: every other record belongs to a conversation, every
//! event that touches it names that conversation, and every feed that holds it watches that
//! conversation (its conversation, participant and message targets) or lists it (the viewer's
//! conversation list; a viewer removed from it is reached through the removal). So a new
//! message held by N connections costs no index work, where indexing it would cost N inserts.

use super::{ConnId, Event, Storage, view};
use crate::{
    HashMap, HashSet,
    model::{ConversationId, UserId},
    protocol::{EntityKey, Target},
};

/// Up to this many viewers with a conversation list open, each is asked whether they take part
/// in a changed conversation; beyond, the conversation's participants are listed instead.
pub(super) const FEW_VIEWERS: usize = 32;

/// What a subscription watches besides the records its feed holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Watch {
    /// Changes of one user.
    User(UserId),
    /// Events in one conversation.
    Conversation(ConversationId),
    /// Changes of any user: a filtered message window may depend on any sender.
    EveryUser,
}

/// The index of connections by what their feeds watch.
#[derive(Default)]
pub(crate) struct Interest {
    /// Connections by the users their feeds hold.
    holders: HashMap<UserId, HashSet<ConnId>>,
    /// Connections by what their subscriptions watch.
    watchers: HashMap<Watch, HashSet<ConnId>>,
    /// Connections with a conversation list open, by viewer: events in any conversation the
    /// viewer takes part in concern them.
    lists: HashMap<UserId, HashSet<ConnId>>,
    /// What each connection watches, to update the maps when its subscriptions change.
    watching: HashMap<ConnId, (HashSet<Watch>, Option<UserId>)>,
}

/// Adds `conn` to the set under `key`, or removes it (and an emptied set).
fn mark<K: Eq + std::hash::Hash>(
    map: &mut HashMap<K, HashSet<ConnId>>,
    key: K,
    conn: ConnId,
    present: bool,
) {
    if present {
        map.entry(key).or_default().insert(conn);
    } else if let Some(conns) = map.get_mut(&key) {
        conns.remove(&conn);
        if conns.is_empty() {
            map.remove(&key);
        }
    }
}

impl Interest {
    /// Records that `conn`'s feed now holds (`true`) or no longer holds (`false`) each user
    /// (only users: see the module docs).
    pub(crate) fn hold(&mut self, conn: ConnId, changes: impl Iterator<Item = (UserId, bool)>) {
        for (user, held) in changes {
            mark(&mut self.holders, user, conn, held);
        }
    }

    /// Sets what `conn`'s subscriptions, of `targets` for viewer `me`, watch.
    pub(crate) fn watch<'a>(
        &mut self,
        conn: ConnId,
        me: &UserId,
        targets: impl Iterator<Item = &'a Target>,
    ) {
        let mut watches = HashSet::default();
        let mut list = None;
        for target in targets {
            match target {
                Target::User { id } => {
                    watches.insert(Watch::User(id.clone()));
                }
                Target::Conversation { id: conversation }
                | Target::Participants { conversation }
                | Target::Participant { conversation, .. }
                | Target::Reactions { conversation, .. } => {
                    watches.insert(Watch::Conversation(conversation.clone()));
                }
                Target::Messages {
                    conversation,
                    filter,
                } => {
                    watches.insert(Watch::Conversation(conversation.clone()));
                    if filter.is_some() {
                        watches.insert(Watch::EveryUser);
                    }
                }
                Target::Conversations { .. } => list = Some(me.clone()),
            }
        }
        self.unwatch(conn);
        for watch in &watches {
            mark(&mut self.watchers, watch.clone(), conn, true);
        }
        if let Some(me) = &list {
            mark(&mut self.lists, me.clone(), conn, true);
        }
        if !watches.is_empty() || list.is_some() {
            self.watching.insert(conn, (watches, list));
        }
    }

    fn unwatch(&mut self, conn: ConnId) {
        if let Some((watches, list)) = self.watching.remove(&conn) {
            for watch in watches {
                mark(&mut self.watchers, watch, conn, false);
            }
            if let Some(me) = list {
                mark(&mut self.lists, me, conn, false);
            }
        }
    }

    /// Forgets a connection whose feed holds the users `held`.
    pub(crate) fn forget<'a>(&mut self, conn: ConnId, held: impl Iterator<Item = &'a UserId>) {
        self.unwatch(conn);
        self.hold(conn, held.map(|user| (user.clone(), false)));
    }

    /// The connections whose feeds may push something after `events`, which touched the keys
    /// `touched`.
    pub(crate) fn concerned(
        &self,
        storage: &dyn Storage,
        events: &[Event],
        touched: &HashSet<EntityKey>,
    ) -> HashSet<ConnId> {
        let mut conns = HashSet::default();
        for key in touched {
            if let EntityKey::User { id } = key {
                conns.extend(self.holders.get(id).into_iter().flatten());
            }
        }
        let mut watched =
            |watch: Watch| conns.extend(self.watchers.get(&watch).into_iter().flatten());
        for event in events {
            match (event, event.conversation()) {
                (Event::UserChanged { user }, _) => {
                    watched(Watch::User(user.clone()));
                    watched(Watch::EveryUser);
                }
                (_, Some(conversation)) => watched(Watch::Conversation(conversation.clone())),
                (_, None) => {}
            }
        }
        // A user who left no longer takes part, but their lists still change.
        for event in events {
            if let Event::ParticipantRemoved { user, .. } = event {
                conns.extend(self.lists.get(user).into_iter().flatten());
            }
        }
        for conversation in events.iter().filter_map(Event::conversation) {
            self.lists_showing(storage, conversation, &mut conns);
        }
        conns
    }

    /// Adds the conversation-list connections of the viewers who take part in `conversation`
    /// (all of them if storage cannot tell).
    fn lists_showing(
        &self,
        storage: &dyn Storage,
        conversation: &ConversationId,
        conns: &mut HashSet<ConnId>,
    ) {
        if self.lists.len() <= FEW_VIEWERS {
            for (viewer, lists) in &self.lists {
                if view::is_participant(storage, conversation, viewer).unwrap_or(true) {
                    conns.extend(lists);
                }
            }
            return;
        }
        match storage.participants(conversation) {
            Ok(participants) => {
                for participant in participants {
                    conns.extend(
                        self.lists
                            .get(&participant.record.user_id)
                            .into_iter()
                            .flatten(),
                    );
                }
            }
            Err(_) => conns.extend(self.lists.values().flatten()),
        }
    }
}
