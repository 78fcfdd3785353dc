//! The domain model: ids, records, snapshots, content, markup and filters. No IO.

mod content;
mod filter;
mod id;
mod markup;
mod reaction;
mod records;
mod snapshot;

pub(crate) use self::{
    content::validate_send,
    filter::{ConversationFacts, MessageFacts},
    markup::parse_markup,
    reaction::{ReactedRecord, ReactionCount, ReactionRecord, normalize_emoji},
    records::{ConversationRecord, MessageRecord, ParticipantRecord, ReadStateRecord},
};
pub use self::{
    content::{
        ContentBlock, ContentError, FileBlock, FileKind, FileToken, SendContentBlock, TextNode,
        plaintext,
    },
    filter::{
        ConversationFilter, CustomFieldFilter, CustomFilter, FilterError, MessageFilter,
        NumberFilter, SenderFilter, SimpleConversationFilter, SimpleMessageFilter, StringFilter,
    },
    id::{ConversationId, InvalidId, MessageId, UserId},
    reaction::{
        InvalidEmoji, MAX_CUSTOM_EMOJI_NAME, MAX_REACTIONS_PER_MESSAGE, ReactionSnapshot,
        SingleReactionSnapshot,
    },
    records::{Access, Custom, MessageType, Notify, Origin, Timestamp, UserSnapshot},
    snapshot::{
        ConversationSnapshot, MessageSnapshot, ParticipantSnapshot, ReferencedMessageSnapshot,
    },
};

/// The stored form of blocks a user sent. File blocks are resolved by the engine before this
/// is called; any left are dropped.
pub(crate) fn content_to_blocks(content: &[SendContentBlock]) -> std::sync::Arc<[ContentBlock]> {
    content
        .iter()
        .filter_map(|block| match block {
            SendContentBlock::Text { children } => Some(ContentBlock::Text {
                children: children.clone(),
            }),
            SendContentBlock::Location {
                latitude,
                longitude,
            } => Some(ContentBlock::Location {
                latitude: *latitude,
                longitude: *longitude,
            }),
            SendContentBlock::File { .. } => None,
        })
        .collect()
}
