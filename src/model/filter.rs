//! Conversation list filters and message filters, in the TalkJS filter syntax.
//!
//! The types here mirror TalkJS's `ConversationPredicate` and `MessagePredicate` JSON:
//!
//! ```text
//! ConversationFilter = SimpleConversationFilter | ["any", [SimpleConversationFilter, ...]]
//! MessageFilter      = SimpleMessageFilter      | ["any", [SimpleMessageFilter, ...]]
//! StringFilter<T>    = ["==", T] | ["!=", T] | ["oneOf", [T, ...]] | ["!oneOf", [T, ...]]
//! NumberFilter       = [">", n] | ["<", n] | [">=", n] | ["<=", n]
//!                    | ["between", [low, high]] | ["!between", [low, high]]
//! CustomFilter       = { key: StringFilter<string> | "exists" | "!exists", ... }
//! ```
//!
//! Every field given in a simple filter must hold; `["any", [...]]` holds when at least one of
//! its simple filters holds. Serialization produces exactly this syntax and deserialization
//! accepts only this syntax: unknown fields, unknown operators, operands of the wrong type or
//! arity, and reversed `"between"` bounds are rejected with a message naming the field.
//!
//! Deserialization goes through [`serde_json::Value`], so it needs a self-describing format
//! (JSON, or anything else that supports `deserialize_any`).

use std::{cmp::Ordering, collections::BTreeMap, str::FromStr};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{DeserializeOwned, Error as _},
    ser::{Error as _, SerializeTuple},
};
use serde_json::{Map, Value};

use super::{Access, Custom, MessageType, Origin, Timestamp, UserSnapshot};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a filter is invalid.
///
/// `field` is a path into the filter such as `createdAt`, `sender.custom.tier` or
/// `any[1].joinedAt`; it is empty when the problem is the filter as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Parsing filter JSON text failed; carries serde_json's message: the line and column for
    /// syntax errors, the field path and problem otherwise.
    #[error("invalid filter: {0}")]
    Json(String),
    /// An object has a field that the filter syntax does not define.
    #[error("{}: unknown field; expected one of {expected}", at(.field))]
    UnknownField {
        /// Path of the unknown field.
        field: String,
        /// The fields allowed at that place.
        expected: &'static str,
    },
    /// An operator string is not one the filter syntax defines at that place.
    #[error("{}: unknown operator {operator:?}; expected {expected}", at(.field))]
    UnknownOperator {
        /// Path of the filtered field.
        field: String,
        /// The operator that was given.
        operator: String,
        /// The operators allowed at that place.
        expected: &'static str,
    },
    /// A JSON value has the wrong type or arity.
    #[error("{}: expected {expected}, found {found}", at(.field))]
    InvalidShape {
        /// Path of the filtered field.
        field: String,
        /// What the syntax requires at that place.
        expected: &'static str,
        /// A description of what was given.
        found: String,
    },
    /// An operand could not be read as the field's value type (for example an unknown
    /// access level or message origin).
    #[error("{}: invalid value: {message}", at(.field))]
    InvalidValue {
        /// Path of the filtered field.
        field: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A `"between"` or `"!between"` range has its lower bound above its upper bound.
    #[error(
        "{}: lower bound {low} of the range is greater than its upper bound {high}",
        at(.field)
    )]
    InvalidRange {
        /// Path of the filtered field.
        field: String,
        /// The lower bound given.
        low: f64,
        /// The upper bound given.
        high: f64,
    },
    /// A number bound is NaN or infinite.
    #[error("{}: bound {value} is not a finite number", at(.field))]
    NotFinite {
        /// Path of the filtered field.
        field: String,
        /// The bound given.
        value: f64,
    },
}

/// The field path as shown in error messages.
fn at(field: &str) -> &str {
    if field.is_empty() { "filter" } else { field }
}

/// The path of `key` inside `parent`.
fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// A filter on a string-like field: `["==", v]`, `["!=", v]`, `["oneOf", [...]]` or
/// `["!oneOf", [...]]`.
#[derive(Debug, Clone, PartialEq)]
pub enum StringFilter<T> {
    /// `["==", v]`: the field equals `v`.
    Eq(T),
    /// `["!=", v]`: the field does not equal `v`.
    Ne(T),
    /// `["oneOf", [...]]`: the field equals one of the values.
    OneOf(Vec<T>),
    /// `["!oneOf", [...]]`: the field equals none of the values.
    NotOneOf(Vec<T>),
}

/// A filter on a numeric field (a timestamp in milliseconds).
///
/// `Between(low, high)` holds for `low <= x < high`; `NotBetween` is its negation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumberFilter {
    /// `[">", n]`: the field is greater than `n`.
    Gt(f64),
    /// `["<", n]`: the field is less than `n`.
    Lt(f64),
    /// `[">=", n]`: the field is greater than or equal to `n`.
    Ge(f64),
    /// `["<=", n]`: the field is less than or equal to `n`.
    Le(f64),
    /// `["between", [low, high]]`: `low <= field < high`.
    Between(f64, f64),
    /// `["!between", [low, high]]`: not `low <= field < high`.
    NotBetween(f64, f64),
}

/// A filter on one custom field.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomFieldFilter {
    /// A string filter on the value. On a missing key `==` and `oneOf` are false, `!=` and
    /// `!oneOf` are true.
    Is(StringFilter<String>),
    /// `"exists"`: the key is present.
    Exists,
    /// `"!exists"`: the key is absent.
    NotExists,
}

/// Filters on custom fields, by key. All of them must hold.
pub type CustomFilter = BTreeMap<String, CustomFieldFilter>;

/// A conversation list filter: one simple filter, or `["any", [...]]` of several.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationFilter {
    /// A single simple filter: every field given must hold.
    Simple(SimpleConversationFilter),
    /// `["any", [...]]`: at least one of the simple filters must hold. An empty list matches
    /// nothing.
    Any(Vec<SimpleConversationFilter>),
}

/// A conversation filter object. Every field given must hold; the empty filter matches every
/// conversation.
///
/// Build one with [`SimpleConversationFilter::new`] and the builder methods:
///
/// ```
/// use talkstore::{ConversationFilter, SimpleConversationFilter, StringFilter};
///
/// let filter: ConversationFilter = SimpleConversationFilter::new()
///     .custom("category", StringFilter::Eq("support".into()))
///     .is_unread(true)
///     .into();
/// let same: ConversationFilter =
///     r#"{"custom": {"category": ["==", "support"]}, "isUnread": true}"#.parse().unwrap();
/// assert_eq!(filter, same);
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SimpleConversationFilter {
    /// The viewing user's access to the conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<StringFilter<Access>>,
    /// The conversation's custom fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomFilter>,
    /// Whether the conversation is unread for the viewing user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_unread: Option<bool>,
    /// The conversation's subject; `None` matches a conversation without subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<StringFilter<Option<String>>>,
    /// Time of the last message, or of joining if later or if there are no messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<NumberFilter>,
    /// Time the conversation was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<NumberFilter>,
    /// Whether the conversation has at least one message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_messages: Option<bool>,
    /// Time the viewing user joined the conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_at: Option<NumberFilter>,
}

/// A message filter: one simple filter, or `["any", [...]]` of several.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "mirrors the TalkJS syntax; filters are few and long-lived, boxing buys nothing"
)]
pub enum MessageFilter {
    /// A single simple filter: every field given must hold.
    Simple(SimpleMessageFilter),
    /// `["any", [...]]`: at least one of the simple filters must hold. An empty list matches
    /// nothing.
    Any(Vec<SimpleMessageFilter>),
}

/// A message filter object. Every field given must hold; the empty filter matches every
/// message.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SimpleMessageFilter {
    /// The message's sender. A message without sender (a system message) never matches a
    /// sender filter, not even an empty one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<SenderFilter>,
    /// The message type (`type` in JSON).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub message_type: Option<StringFilter<MessageType>>,
    /// Where the message came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<StringFilter<Origin>>,
    /// The message's custom fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomFilter>,
    /// Time the message was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<NumberFilter>,
}

/// A filter on a message's sender. Every field given must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SenderFilter {
    /// The sender's user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<StringFilter<String>>,
    /// The sender's locale. A sender without locale fails `==`/`oneOf` and passes
    /// `!=`/`!oneOf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<StringFilter<String>>,
    /// The sender's role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<StringFilter<String>>,
    /// The sender's custom fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomFilter>,
}

// ---------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------

impl From<StringFilter<String>> for CustomFieldFilter {
    fn from(filter: StringFilter<String>) -> Self {
        CustomFieldFilter::Is(filter)
    }
}

/// Adds `filter` for `key` to `custom`, creating the map if needed.
fn add_custom(
    custom: &mut Option<CustomFilter>,
    key: impl Into<String>,
    filter: impl Into<CustomFieldFilter>,
) {
    custom
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), filter.into());
}

impl Default for ConversationFilter {
    /// The empty simple filter, which matches every conversation.
    fn default() -> Self {
        ConversationFilter::Simple(SimpleConversationFilter::default())
    }
}

impl From<SimpleConversationFilter> for ConversationFilter {
    fn from(filter: SimpleConversationFilter) -> Self {
        ConversationFilter::Simple(filter)
    }
}

impl ConversationFilter {
    /// `["any", filters]`: matches a conversation that matches at least one of `filters`.
    pub fn any(filters: impl IntoIterator<Item = SimpleConversationFilter>) -> Self {
        ConversationFilter::Any(filters.into_iter().collect())
    }

    /// Checks that every number bound is finite and every range has `low <= high`.
    pub fn validate(&self) -> Result<(), FilterError> {
        match self {
            ConversationFilter::Simple(filter) => filter.check(""),
            ConversationFilter::Any(filters) => filters
                .iter()
                .enumerate()
                .try_for_each(|(i, filter)| filter.check(&format!("any[{i}]"))),
        }
    }
}

impl SimpleConversationFilter {
    /// The empty filter, which matches every conversation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the filter on the viewing user's access.
    #[must_use]
    pub fn access(mut self, filter: StringFilter<Access>) -> Self {
        self.access = Some(filter);
        self
    }

    /// Adds (or replaces) the filter on custom field `key`; other custom keys are kept.
    #[must_use]
    pub fn custom(mut self, key: impl Into<String>, filter: impl Into<CustomFieldFilter>) -> Self {
        add_custom(&mut self.custom, key, filter);
        self
    }

    /// Sets whether the conversation must be unread (`true`) or read (`false`).
    #[must_use]
    pub fn is_unread(mut self, is_unread: bool) -> Self {
        self.is_unread = Some(is_unread);
        self
    }

    /// Sets the filter on the subject (`None` stands for "no subject").
    #[must_use]
    pub fn subject(mut self, filter: StringFilter<Option<String>>) -> Self {
        self.subject = Some(filter);
        self
    }

    /// Sets the filter on the last activity time.
    #[must_use]
    pub fn last_activity_at(mut self, filter: NumberFilter) -> Self {
        self.last_activity_at = Some(filter);
        self
    }

    /// Sets the filter on the creation time.
    #[must_use]
    pub fn created_at(mut self, filter: NumberFilter) -> Self {
        self.created_at = Some(filter);
        self
    }

    /// Sets whether the conversation must have messages (`true`) or none (`false`).
    #[must_use]
    pub fn has_messages(mut self, has_messages: bool) -> Self {
        self.has_messages = Some(has_messages);
        self
    }

    /// Sets the filter on the time the viewing user joined.
    #[must_use]
    pub fn joined_at(mut self, filter: NumberFilter) -> Self {
        self.joined_at = Some(filter);
        self
    }

    /// Checks that every number bound is finite and every range has `low <= high`.
    pub fn validate(&self) -> Result<(), FilterError> {
        self.check("")
    }

    /// [`Self::validate`], reporting paths under `prefix`.
    pub(crate) fn check(&self, prefix: &str) -> Result<(), FilterError> {
        let numbers = [
            ("lastActivityAt", &self.last_activity_at),
            ("createdAt", &self.created_at),
            ("joinedAt", &self.joined_at),
        ];
        numbers
            .into_iter()
            .filter_map(|(name, filter)| filter.as_ref().map(|f| (name, f)))
            .try_for_each(|(name, filter)| filter.check(&child(prefix, name)))
    }
}

impl Default for MessageFilter {
    /// The empty simple filter, which matches every message.
    fn default() -> Self {
        MessageFilter::Simple(SimpleMessageFilter::default())
    }
}

impl From<SimpleMessageFilter> for MessageFilter {
    fn from(filter: SimpleMessageFilter) -> Self {
        MessageFilter::Simple(filter)
    }
}

impl MessageFilter {
    /// `["any", filters]`: matches a message that matches at least one of `filters`.
    pub fn any(filters: impl IntoIterator<Item = SimpleMessageFilter>) -> Self {
        MessageFilter::Any(filters.into_iter().collect())
    }

    /// Checks that every number bound is finite and every range has `low <= high`.
    pub fn validate(&self) -> Result<(), FilterError> {
        match self {
            MessageFilter::Simple(filter) => filter.check(""),
            MessageFilter::Any(filters) => filters
                .iter()
                .enumerate()
                .try_for_each(|(i, filter)| filter.check(&format!("any[{i}]"))),
        }
    }
}

impl SimpleMessageFilter {
    /// The empty filter, which matches every message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the filter on the sender.
    #[must_use]
    pub fn sender(mut self, filter: SenderFilter) -> Self {
        self.sender = Some(filter);
        self
    }

    /// Sets the filter on the message type.
    #[must_use]
    pub fn message_type(mut self, filter: StringFilter<MessageType>) -> Self {
        self.message_type = Some(filter);
        self
    }

    /// Sets the filter on the origin.
    #[must_use]
    pub fn origin(mut self, filter: StringFilter<Origin>) -> Self {
        self.origin = Some(filter);
        self
    }

    /// Adds (or replaces) the filter on custom field `key`; other custom keys are kept.
    #[must_use]
    pub fn custom(mut self, key: impl Into<String>, filter: impl Into<CustomFieldFilter>) -> Self {
        add_custom(&mut self.custom, key, filter);
        self
    }

    /// Sets the filter on the time the message was sent.
    #[must_use]
    pub fn created_at(mut self, filter: NumberFilter) -> Self {
        self.created_at = Some(filter);
        self
    }

    /// Checks that every number bound is finite and every range has `low <= high`.
    pub fn validate(&self) -> Result<(), FilterError> {
        self.check("")
    }

    /// [`Self::validate`], reporting paths under `prefix`.
    pub(crate) fn check(&self, prefix: &str) -> Result<(), FilterError> {
        match &self.created_at {
            Some(filter) => filter.check(&child(prefix, "createdAt")),
            None => Ok(()),
        }
    }
}

impl SenderFilter {
    /// The empty sender filter, which matches any message that has a sender.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the filter on the sender's user id.
    #[must_use]
    pub fn id(mut self, filter: StringFilter<String>) -> Self {
        self.id = Some(filter);
        self
    }

    /// Sets the filter on the sender's locale.
    #[must_use]
    pub fn locale(mut self, filter: StringFilter<String>) -> Self {
        self.locale = Some(filter);
        self
    }

    /// Sets the filter on the sender's role.
    #[must_use]
    pub fn role(mut self, filter: StringFilter<String>) -> Self {
        self.role = Some(filter);
        self
    }

    /// Adds (or replaces) the filter on the sender's custom field `key`; other keys are kept.
    #[must_use]
    pub fn custom(mut self, key: impl Into<String>, filter: impl Into<CustomFieldFilter>) -> Self {
        add_custom(&mut self.custom, key, filter);
        self
    }
}

impl NumberFilter {
    /// Checks that the bounds are finite and, for ranges, that `low <= high`.
    pub fn validate(&self) -> Result<(), FilterError> {
        self.check("")
    }

    /// [`Self::validate`], reporting `field` as the path.
    pub(crate) fn check(&self, field: &str) -> Result<(), FilterError> {
        let finite = |value: f64| {
            if value.is_finite() {
                Ok(())
            } else {
                Err(FilterError::NotFinite {
                    field: field.to_owned(),
                    value,
                })
            }
        };
        match *self {
            NumberFilter::Gt(n)
            | NumberFilter::Lt(n)
            | NumberFilter::Ge(n)
            | NumberFilter::Le(n) => finite(n),
            NumberFilter::Between(low, high) | NumberFilter::NotBetween(low, high) => {
                finite(low)?;
                finite(high)?;
                if low > high {
                    return Err(FilterError::InvalidRange {
                        field: field.to_owned(),
                        low,
                        high,
                    });
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

impl<T> StringFilter<T> {
    /// Whether the field matches, given a test for "the field equals this operand".
    pub(crate) fn matches_by(&self, mut equals: impl FnMut(&T) -> bool) -> bool {
        match self {
            StringFilter::Eq(operand) => equals(operand),
            StringFilter::Ne(operand) => !equals(operand),
            StringFilter::OneOf(operands) => operands.iter().any(&mut equals),
            StringFilter::NotOneOf(operands) => !operands.iter().any(&mut equals),
        }
    }

    /// Whether a field with value `value` matches.
    pub fn matches(&self, value: &T) -> bool
    where
        T: PartialEq,
    {
        self.matches_by(|operand| operand == value)
    }
}

/// Compares `x` with `bound` exactly (no rounding of `x` to `f64`); `None` if `bound` is NaN.
fn compare(x: i64, bound: f64) -> Option<Ordering> {
    /// 2^63, the first `f64` above `i64::MAX`.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if bound.is_nan() {
        return None;
    }
    if bound >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if bound < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    let whole = bound.trunc();
    // Exact: `whole` is an integer in [-2^63, 2^63).
    let whole_int = whole as i64;
    Some(match x.cmp(&whole_int) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(bound - whole))?,
        unequal => unequal,
    })
}

impl NumberFilter {
    /// Whether a field with value `value` matches. Comparisons are exact; a NaN bound matches
    /// nothing (and so its `NotBetween` matches everything).
    pub fn matches(&self, value: i64) -> bool {
        let ge = |bound| compare(value, bound).is_some_and(Ordering::is_ge);
        let lt = |bound| compare(value, bound).is_some_and(Ordering::is_lt);
        match *self {
            NumberFilter::Gt(bound) => compare(value, bound).is_some_and(Ordering::is_gt),
            NumberFilter::Lt(bound) => lt(bound),
            NumberFilter::Ge(bound) => ge(bound),
            NumberFilter::Le(bound) => compare(value, bound).is_some_and(Ordering::is_le),
            NumberFilter::Between(low, high) => ge(low) && lt(high),
            NumberFilter::NotBetween(low, high) => !(ge(low) && lt(high)),
        }
    }
}

impl CustomFieldFilter {
    /// Whether a custom field matches, given its value or `None` if the key is missing.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match self {
            CustomFieldFilter::Is(filter) => {
                filter.matches_by(|operand| value == Some(operand.as_str()))
            }
            CustomFieldFilter::Exists => value.is_some(),
            CustomFieldFilter::NotExists => value.is_none(),
        }
    }
}

/// Whether every custom field filter in `filter` holds for `custom`.
pub(crate) fn custom_matches(filter: &CustomFilter, custom: &Custom) -> bool {
    filter
        .iter()
        .all(|(key, field)| field.matches(custom.get(key).map(String::as_str)))
}

/// What a conversation filter looks at, for one conversation as seen by one user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConversationFacts<'a> {
    /// The viewing user's access.
    pub(crate) access: Access,
    /// The conversation's custom fields.
    pub(crate) custom: &'a Custom,
    /// Whether the conversation is unread for the viewing user.
    pub(crate) is_unread: bool,
    /// The conversation's subject.
    pub(crate) subject: Option<&'a str>,
    /// Max of the last message's time and `joined_at`, computed by the caller.
    pub(crate) last_activity_at: Timestamp,
    /// When the conversation was created.
    pub(crate) created_at: Timestamp,
    /// Whether the conversation has any message.
    pub(crate) has_messages: bool,
    /// When the viewing user joined.
    pub(crate) joined_at: Timestamp,
}

/// What a message filter looks at, for one message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageFacts<'a> {
    /// The message type.
    pub(crate) message_type: MessageType,
    /// Where the message came from.
    pub(crate) origin: Origin,
    /// The message's custom fields.
    pub(crate) custom: &'a Custom,
    /// When the message was sent.
    pub(crate) created_at: Timestamp,
    /// The sender, or `None` for a system message.
    pub(crate) sender: Option<&'a UserSnapshot>,
}

/// `None` (no filter) holds; otherwise `test` decides.
fn holds<F>(filter: &Option<F>, test: impl FnOnce(&F) -> bool) -> bool {
    filter.as_ref().is_none_or(test)
}

impl ConversationFilter {
    /// Whether the conversation described by `facts` matches.
    pub(crate) fn matches(&self, facts: &ConversationFacts<'_>) -> bool {
        match self {
            ConversationFilter::Simple(filter) => filter.matches(facts),
            ConversationFilter::Any(filters) => filters.iter().any(|f| f.matches(facts)),
        }
    }
}

impl SimpleConversationFilter {
    /// Whether the conversation described by `facts` matches every field given.
    pub(crate) fn matches(&self, facts: &ConversationFacts<'_>) -> bool {
        holds(&self.access, |f| f.matches(&facts.access))
            && holds(&self.custom, |f| custom_matches(f, facts.custom))
            && self.is_unread.is_none_or(|b| b == facts.is_unread)
            && holds(&self.subject, |f| {
                f.matches_by(|operand| operand.as_deref() == facts.subject)
            })
            && holds(&self.last_activity_at, |f| {
                f.matches(facts.last_activity_at)
            })
            && holds(&self.created_at, |f| f.matches(facts.created_at))
            && self.has_messages.is_none_or(|b| b == facts.has_messages)
            && holds(&self.joined_at, |f| f.matches(facts.joined_at))
    }
}

impl MessageFilter {
    /// Whether the message described by `facts` matches.
    pub(crate) fn matches(&self, facts: &MessageFacts<'_>) -> bool {
        match self {
            MessageFilter::Simple(filter) => filter.matches(facts),
            MessageFilter::Any(filters) => filters.iter().any(|f| f.matches(facts)),
        }
    }
}

impl SimpleMessageFilter {
    /// Whether the message described by `facts` matches every field given.
    pub(crate) fn matches(&self, facts: &MessageFacts<'_>) -> bool {
        holds(&self.sender, |f| {
            facts.sender.is_some_and(|user| f.matches(user))
        }) && holds(&self.message_type, |f| f.matches(&facts.message_type))
            && holds(&self.origin, |f| f.matches(&facts.origin))
            && holds(&self.custom, |f| custom_matches(f, facts.custom))
            && holds(&self.created_at, |f| f.matches(facts.created_at))
    }
}

impl SenderFilter {
    /// Whether `user` matches every field given.
    pub(crate) fn matches(&self, user: &UserSnapshot) -> bool {
        holds(&self.id, |f| {
            f.matches_by(|operand| operand == user.id.as_str())
        }) && holds(&self.locale, |f| {
            f.matches_by(|operand| user.locale.as_deref() == Some(operand.as_str()))
        }) && holds(&self.role, |f| f.matches(&user.role))
            && holds(&self.custom, |f| custom_matches(f, &user.custom))
    }
}

// ---------------------------------------------------------------------------------------------
// Serialization
// ---------------------------------------------------------------------------------------------

/// Serializes `[tag, operand]`.
fn serialize_pair<S: Serializer>(
    s: S,
    tag: &str,
    operand: &(impl Serialize + ?Sized),
) -> Result<S::Ok, S::Error> {
    let mut tuple = s.serialize_tuple(2)?;
    tuple.serialize_element(tag)?;
    tuple.serialize_element(operand)?;
    tuple.end()
}

impl<T: Serialize> Serialize for StringFilter<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StringFilter::Eq(operand) => serialize_pair(s, "==", operand),
            StringFilter::Ne(operand) => serialize_pair(s, "!=", operand),
            StringFilter::OneOf(operands) => serialize_pair(s, "oneOf", operands),
            StringFilter::NotOneOf(operands) => serialize_pair(s, "!oneOf", operands),
        }
    }
}

/// A number bound on the wire: integral values are written as integers.
struct Bound(f64);

impl Serialize for Bound {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// 2^53: integers up to here are exact in `f64`.
        const MAX_SAFE: f64 = 9_007_199_254_740_992.0;
        let value = self.0;
        if !value.is_finite() {
            return Err(S::Error::custom(format_args!(
                "number filter bound {value} is not a finite number"
            )));
        }
        if value.fract() == 0.0 && value.abs() <= MAX_SAFE {
            // Exact: an integer of magnitude at most 2^53.
            s.serialize_i64(value as i64)
        } else {
            s.serialize_f64(value)
        }
    }
}

impl Serialize for NumberFilter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            NumberFilter::Gt(n) => serialize_pair(s, ">", &Bound(n)),
            NumberFilter::Lt(n) => serialize_pair(s, "<", &Bound(n)),
            NumberFilter::Ge(n) => serialize_pair(s, ">=", &Bound(n)),
            NumberFilter::Le(n) => serialize_pair(s, "<=", &Bound(n)),
            NumberFilter::Between(low, high) => {
                serialize_pair(s, "between", &(Bound(low), Bound(high)))
            }
            NumberFilter::NotBetween(low, high) => {
                serialize_pair(s, "!between", &(Bound(low), Bound(high)))
            }
        }
    }
}

impl Serialize for CustomFieldFilter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CustomFieldFilter::Is(filter) => filter.serialize(s),
            CustomFieldFilter::Exists => s.serialize_str("exists"),
            CustomFieldFilter::NotExists => s.serialize_str("!exists"),
        }
    }
}

impl Serialize for ConversationFilter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ConversationFilter::Simple(filter) => filter.serialize(s),
            ConversationFilter::Any(filters) => serialize_pair(s, "any", filters),
        }
    }
}

impl Serialize for MessageFilter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MessageFilter::Simple(filter) => filter.serialize(s),
            MessageFilter::Any(filters) => serialize_pair(s, "any", filters),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization
// ---------------------------------------------------------------------------------------------

const STRING_OPERATORS: &str = r#""==", "!=", "oneOf" or "!oneOf""#;
const NUMBER_OPERATORS: &str = r#"">", "<", ">=", "<=", "between" or "!between""#;
const CUSTOM_OPERATORS: &str = r#""exists", "!exists", "==", "!=", "oneOf" or "!oneOf""#;
const STRING_SHAPE: &str = r#"a string filter such as ["==", value] or ["oneOf", [values]]"#;
const NUMBER_SHAPE: &str = r#"a number filter such as [">", number] or ["between", [low, high]]"#;
const CUSTOM_SHAPE: &str = r#""exists", "!exists" or a string filter such as ["==", "value"]"#;
const ANY_SHAPE: &str = r#"a filter object or ["any", [filter objects]]"#;
const CONVERSATION_FIELDS: &str = "`access`, `custom`, `isUnread`, `subject`, `lastActivityAt`, \
     `createdAt`, `hasMessages` or `joinedAt`";
const MESSAGE_FIELDS: &str = "`sender`, `type`, `origin`, `custom` or `createdAt`";
const SENDER_FIELDS: &str = "`id`, `locale`, `role` or `custom`";

/// A short description of `value` for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(40).collect();
            format!("the string {head:?}...")
        }
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(items) if items.len() == 1 => "an array of 1 element".to_owned(),
        Value::Array(items) => format!("an array of {} elements", items.len()),
        Value::Object(_) => "an object".to_owned(),
    }
}

fn shape_error(field: &str, expected: &'static str, found: &Value) -> FilterError {
    FilterError::InvalidShape {
        field: field.to_owned(),
        expected,
        found: describe(found),
    }
}

fn unknown_operator(field: &str, operator: &str, expected: &'static str) -> FilterError {
    FilterError::UnknownOperator {
        field: field.to_owned(),
        operator: operator.to_owned(),
        expected,
    }
}

/// Splits `[operator, operand]`.
fn operator_pair<'v>(
    value: &'v Value,
    field: &str,
    expected: &'static str,
) -> Result<(&'v str, &'v Value), FilterError> {
    match value {
        Value::Array(items) => match items.as_slice() {
            [Value::String(operator), operand] => Ok((operator, operand)),
            _ => Err(shape_error(field, expected, value)),
        },
        _ => Err(shape_error(field, expected, value)),
    }
}

fn parse_operand<T: DeserializeOwned>(value: &Value, field: &str) -> Result<T, FilterError> {
    T::deserialize(value).map_err(|error| FilterError::InvalidValue {
        field: field.to_owned(),
        message: error.to_string(),
    })
}

fn parse_string_filter<T: DeserializeOwned>(
    value: &Value,
    field: &str,
) -> Result<StringFilter<T>, FilterError> {
    let (operator, operand) = operator_pair(value, field, STRING_SHAPE)?;
    let list = |operand: &Value| match operand {
        Value::Array(items) => items
            .iter()
            .map(|item| parse_operand(item, field))
            .collect(),
        other => Err(shape_error(
            field,
            "an array of values after \"oneOf\"/\"!oneOf\"",
            other,
        )),
    };
    match operator {
        "==" => Ok(StringFilter::Eq(parse_operand(operand, field)?)),
        "!=" => Ok(StringFilter::Ne(parse_operand(operand, field)?)),
        "oneOf" => Ok(StringFilter::OneOf(list(operand)?)),
        "!oneOf" => Ok(StringFilter::NotOneOf(list(operand)?)),
        other => Err(unknown_operator(field, other, STRING_OPERATORS)),
    }
}

fn parse_number(value: &Value, field: &str) -> Result<f64, FilterError> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| shape_error(field, "a number that fits in an f64", value)),
        other => Err(shape_error(field, "a number", other)),
    }
}

/// Parses a number filter without validating its bounds.
fn parse_number_filter(value: &Value, field: &str) -> Result<NumberFilter, FilterError> {
    let (operator, operand) = operator_pair(value, field, NUMBER_SHAPE)?;
    let range = |operand: &Value| match operand {
        Value::Array(items) => match items.as_slice() {
            [low, high] => Ok((parse_number(low, field)?, parse_number(high, field)?)),
            _ => Err(shape_error(field, "a range [low, high]", operand)),
        },
        other => Err(shape_error(field, "a range [low, high]", other)),
    };
    match operator {
        ">" => Ok(NumberFilter::Gt(parse_number(operand, field)?)),
        "<" => Ok(NumberFilter::Lt(parse_number(operand, field)?)),
        ">=" => Ok(NumberFilter::Ge(parse_number(operand, field)?)),
        "<=" => Ok(NumberFilter::Le(parse_number(operand, field)?)),
        "between" => range(operand).map(|(low, high)| NumberFilter::Between(low, high)),
        "!between" => range(operand).map(|(low, high)| NumberFilter::NotBetween(low, high)),
        other => Err(unknown_operator(field, other, NUMBER_OPERATORS)),
    }
}

fn parse_custom_field(value: &Value, field: &str) -> Result<CustomFieldFilter, FilterError> {
    match value {
        Value::String(s) if s == "exists" => Ok(CustomFieldFilter::Exists),
        Value::String(s) if s == "!exists" => Ok(CustomFieldFilter::NotExists),
        Value::String(s) => Err(unknown_operator(field, s, CUSTOM_OPERATORS)),
        Value::Array(_) => match parse_string_filter(value, field) {
            Err(FilterError::UnknownOperator { operator, .. }) => {
                Err(unknown_operator(field, &operator, CUSTOM_OPERATORS))
            }
            other => other.map(CustomFieldFilter::Is),
        },
        other => Err(shape_error(field, CUSTOM_SHAPE, other)),
    }
}

fn object<'v>(
    value: &'v Value,
    field: &str,
    expected: &'static str,
) -> Result<&'v Map<String, Value>, FilterError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(shape_error(field, expected, other)),
    }
}

fn parse_custom(value: &Value, field: &str) -> Result<CustomFilter, FilterError> {
    object(value, field, "an object of custom field filters")?
        .iter()
        .map(|(key, value)| Ok((key.clone(), parse_custom_field(value, &child(field, key))?)))
        .collect()
}

fn parse_bool(value: &Value, field: &str) -> Result<bool, FilterError> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => Err(shape_error(field, "true or false", other)),
    }
}

fn unknown_field(field: String, expected: &'static str) -> FilterError {
    FilterError::UnknownField { field, expected }
}

fn parse_simple_conversation(
    value: &Value,
    prefix: &str,
) -> Result<SimpleConversationFilter, FilterError> {
    let mut filter = SimpleConversationFilter::default();
    for (key, value) in object(value, prefix, "a conversation filter object")? {
        let field = child(prefix, key);
        let field = field.as_str();
        match key.as_str() {
            "access" => filter.access = Some(parse_string_filter(value, field)?),
            "custom" => filter.custom = Some(parse_custom(value, field)?),
            "isUnread" => filter.is_unread = Some(parse_bool(value, field)?),
            "subject" => filter.subject = Some(parse_string_filter(value, field)?),
            "lastActivityAt" => filter.last_activity_at = Some(parse_number_filter(value, field)?),
            "createdAt" => filter.created_at = Some(parse_number_filter(value, field)?),
            "hasMessages" => filter.has_messages = Some(parse_bool(value, field)?),
            "joinedAt" => filter.joined_at = Some(parse_number_filter(value, field)?),
            _ => return Err(unknown_field(field.to_owned(), CONVERSATION_FIELDS)),
        }
    }
    Ok(filter)
}

fn parse_sender(value: &Value, prefix: &str) -> Result<SenderFilter, FilterError> {
    let mut filter = SenderFilter::default();
    for (key, value) in object(value, prefix, "a sender filter object")? {
        let field = child(prefix, key);
        let field = field.as_str();
        match key.as_str() {
            "id" => filter.id = Some(parse_string_filter(value, field)?),
            "locale" => filter.locale = Some(parse_string_filter(value, field)?),
            "role" => filter.role = Some(parse_string_filter(value, field)?),
            "custom" => filter.custom = Some(parse_custom(value, field)?),
            _ => return Err(unknown_field(field.to_owned(), SENDER_FIELDS)),
        }
    }
    Ok(filter)
}

fn parse_simple_message(value: &Value, prefix: &str) -> Result<SimpleMessageFilter, FilterError> {
    let mut filter = SimpleMessageFilter::default();
    for (key, value) in object(value, prefix, "a message filter object")? {
        let field = child(prefix, key);
        let field = field.as_str();
        match key.as_str() {
            "sender" => filter.sender = Some(parse_sender(value, field)?),
            "type" => filter.message_type = Some(parse_string_filter(value, field)?),
            "origin" => filter.origin = Some(parse_string_filter(value, field)?),
            "custom" => filter.custom = Some(parse_custom(value, field)?),
            "createdAt" => filter.created_at = Some(parse_number_filter(value, field)?),
            _ => return Err(unknown_field(field.to_owned(), MESSAGE_FIELDS)),
        }
    }
    Ok(filter)
}

/// Parses `simple` or `["any", [simple...]]`, without validating number bounds.
fn parse_compound<F>(
    value: &Value,
    simple: impl Fn(&Value, &str) -> Result<F, FilterError>,
) -> Result<Result<F, Vec<F>>, FilterError> {
    match value {
        Value::Object(_) => simple(value, "").map(Ok),
        Value::Array(items) => match items.as_slice() {
            [Value::String(tag), Value::Array(filters)] if tag == "any" => filters
                .iter()
                .enumerate()
                .map(|(i, filter)| simple(filter, &format!("any[{i}]")))
                .collect::<Result<Vec<F>, _>>()
                .map(Err),
            [Value::String(tag), other] if tag == "any" => {
                Err(shape_error("any", "an array of filter objects", other))
            }
            [Value::String(tag), _] => Err(unknown_operator("", tag, "\"any\"")),
            _ => Err(shape_error("", ANY_SHAPE, value)),
        },
        other => Err(shape_error("", ANY_SHAPE, other)),
    }
}

/// Parses and validates a conversation filter.
fn parse_conversation_filter(value: &Value) -> Result<ConversationFilter, FilterError> {
    let filter = match parse_compound(value, parse_simple_conversation)? {
        Ok(simple) => ConversationFilter::Simple(simple),
        Err(any) => ConversationFilter::Any(any),
    };
    filter.validate()?;
    Ok(filter)
}

/// Parses and validates a message filter.
fn parse_message_filter(value: &Value) -> Result<MessageFilter, FilterError> {
    let filter = match parse_compound(value, parse_simple_message)? {
        Ok(simple) => MessageFilter::Simple(simple),
        Err(any) => MessageFilter::Any(any),
    };
    filter.validate()?;
    Ok(filter)
}

/// Deserializes a JSON value and converts it with `parse`, reporting errors through serde.
fn deserialize_with<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl FnOnce(&Value) -> Result<T, FilterError>,
) -> Result<T, D::Error> {
    let value = Value::deserialize(d)?;
    parse(&value).map_err(D::Error::custom)
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for StringFilter<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, |value| parse_string_filter(value, ""))
    }
}

impl<'de> Deserialize<'de> for NumberFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, |value| {
            let filter = parse_number_filter(value, "")?;
            filter.validate()?;
            Ok(filter)
        })
    }
}

impl<'de> Deserialize<'de> for CustomFieldFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, |value| parse_custom_field(value, ""))
    }
}

impl<'de> Deserialize<'de> for SimpleConversationFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, |value| {
            let filter = parse_simple_conversation(value, "")?;
            filter.validate()?;
            Ok(filter)
        })
    }
}

impl<'de> Deserialize<'de> for SenderFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, |value| parse_sender(value, ""))
    }
}

impl<'de> Deserialize<'de> for SimpleMessageFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, |value| {
            let filter = parse_simple_message(value, "")?;
            filter.validate()?;
            Ok(filter)
        })
    }
}

impl<'de> Deserialize<'de> for ConversationFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, parse_conversation_filter)
    }
}

impl<'de> Deserialize<'de> for MessageFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, parse_message_filter)
    }
}

impl FromStr for ConversationFilter {
    type Err = FilterError;

    /// Parses TalkJS conversation filter JSON; any failure is [`FilterError::Json`].
    fn from_str(s: &str) -> Result<Self, FilterError> {
        serde_json::from_str(s).map_err(|error| FilterError::Json(error.to_string()))
    }
}

impl FromStr for MessageFilter {
    type Err = FilterError;

    /// Parses TalkJS message filter JSON; any failure is [`FilterError::Json`].
    fn from_str(s: &str) -> Result<Self, FilterError> {
        serde_json::from_str(s).map_err(|error| FilterError::Json(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::UserId;
    use super::*;

    /// Parses `text` as a conversation filter, panicking with the error on failure.
    fn conversation(text: &str) -> ConversationFilter {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} should parse: {e}"))
    }

    /// Parses `text` as a message filter, panicking with the error on failure.
    fn message(text: &str) -> MessageFilter {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} should parse: {e}"))
    }

    /// The error message for conversation filter text that must be rejected.
    fn conversation_error(text: &str) -> String {
        match text.parse::<ConversationFilter>() {
            Ok(filter) => panic!("{text} should be rejected, got {filter:?}"),
            Err(FilterError::Json(message)) => message,
            Err(other) => panic!("expected FilterError::Json, got {other:?}"),
        }
    }

    /// The error message for message filter text that must be rejected.
    fn message_error(text: &str) -> String {
        match text.parse::<MessageFilter>() {
            Ok(filter) => panic!("{text} should be rejected, got {filter:?}"),
            Err(FilterError::Json(message)) => message,
            Err(other) => panic!("expected FilterError::Json, got {other:?}"),
        }
    }

    /// Asserts that `text` parses and serializes back to the same JSON.
    fn assert_round_trip<F: FromStr<Err = FilterError> + Serialize + std::fmt::Debug>(text: &str) {
        let filter: F = text
            .parse()
            .unwrap_or_else(|e| panic!("{text} should parse: {e}"));
        let expected: Value = serde_json::from_str(text).expect("test JSON is valid");
        let actual = serde_json::to_value(&filter).expect("filter serializes");
        assert_eq!(actual, expected, "round trip of {text} via {filter:?}");
    }

    /// Every conversation field and every operator survives parse then serialize unchanged.
    #[test]
    fn conversation_json_round_trips() {
        let cases = [
            r#"{}"#,
            r#"{"access": ["==", "Read"]}"#,
            r#"{"access": ["!=", "ReadWrite"]}"#,
            r#"{"access": ["oneOf", ["Read", "ReadWrite"]]}"#,
            r#"{"access": ["!oneOf", []]}"#,
            r#"{"custom": {"a": ["==", "x"], "b": ["!=", "y"], "c": ["oneOf", ["1", "2"]],
                "d": ["!oneOf", ["3"]], "e": "exists", "f": "!exists"}}"#,
            r#"{"isUnread": true}"#,
            r#"{"isUnread": false, "hasMessages": true}"#,
            r#"{"subject": ["==", null]}"#,
            r#"{"subject": ["!=", "Hi"]}"#,
            r#"{"subject": ["oneOf", ["Hi", null]]}"#,
            r#"{"subject": ["!oneOf", [null]]}"#,
            r#"{"lastActivityAt": [">", 1700000000000]}"#,
            r#"{"createdAt": ["<", -5]}"#,
            r#"{"joinedAt": [">=", 0]}"#,
            r#"{"createdAt": ["<=", 1.5]}"#,
            r#"{"createdAt": ["between", [1, 10]]}"#,
            r#"{"joinedAt": ["!between", [2.5, 2.5]]}"#,
            r#"{"hasMessages": false, "joinedAt": [">", 1e300]}"#,
            r#"["any", []]"#,
            r#"["any", [{}, {"isUnread": true}, {"custom": {"k": "exists"}}]]"#,
        ];
        for text in cases {
            assert_round_trip::<ConversationFilter>(text);
        }
    }

    /// Every message and sender field and operator survives parse then serialize unchanged.
    #[test]
    fn message_json_round_trips() {
        let cases = [
            r#"{}"#,
            r#"{"sender": {}}"#,
            r#"{"sender": {"id": ["==", "u1"], "locale": ["!=", "en-US"],
                "role": ["oneOf", ["admin", "default"]], "custom": {"tier": ["!oneOf", ["free"]]}}}"#,
            r#"{"type": ["==", "UserMessage"]}"#,
            r#"{"type": ["oneOf", ["SystemMessage"]]}"#,
            r#"{"origin": ["!=", "web"]}"#,
            r#"{"origin": ["!oneOf", ["rest", "import", "email"]]}"#,
            r#"{"custom": {"pinned": "exists", "hidden": "!exists"}}"#,
            r#"{"createdAt": ["between", [0, 100]]}"#,
            r#"["any", [{"type": ["==", "SystemMessage"]}, {"createdAt": ["<", 5]}]]"#,
            r#"["any", []]"#,
        ];
        for text in cases {
            assert_round_trip::<MessageFilter>(text);
        }
    }

    /// Parsed JSON equals the filter built with the builder methods.
    #[test]
    fn parsing_yields_builder_values() {
        let built = ConversationFilter::from(
            SimpleConversationFilter::new()
                .custom("category", StringFilter::Eq("support".into()))
                .custom("archived", CustomFieldFilter::NotExists)
                .is_unread(true)
                .access(StringFilter::Eq(Access::Read))
                .subject(StringFilter::OneOf(vec![None, Some("Hi".into())]))
                .last_activity_at(NumberFilter::Gt(1.0))
                .created_at(NumberFilter::Between(0.0, 10.0))
                .has_messages(false)
                .joined_at(NumberFilter::Le(7.0)),
        );
        let parsed = conversation(
            r#"{"custom": {"category": ["==", "support"], "archived": "!exists"},
                "isUnread": true, "access": ["==", "Read"], "subject": ["oneOf", [null, "Hi"]],
                "lastActivityAt": [">", 1], "createdAt": ["between", [0, 10]],
                "hasMessages": false, "joinedAt": ["<=", 7]}"#,
        );
        assert_eq!(parsed, built);

        let built = MessageFilter::any([
            SimpleMessageFilter::new()
                .sender(
                    SenderFilter::new()
                        .id(StringFilter::Eq("u1".into()))
                        .locale(StringFilter::Ne("fr".into()))
                        .role(StringFilter::NotOneOf(vec!["bot".into()]))
                        .custom("vip", CustomFieldFilter::Exists),
                )
                .message_type(StringFilter::Eq(MessageType::UserMessage))
                .origin(StringFilter::OneOf(vec![Origin::Web, Origin::Email]))
                .custom("x", StringFilter::Ne("y".into()))
                .created_at(NumberFilter::NotBetween(1.0, 2.0)),
            SimpleMessageFilter::new(),
        ]);
        let parsed = message(
            r#"["any", [{"sender": {"id": ["==", "u1"], "locale": ["!=", "fr"],
                "role": ["!oneOf", ["bot"]], "custom": {"vip": "exists"}},
                "type": ["==", "UserMessage"], "origin": ["oneOf", ["web", "email"]],
                "custom": {"x": ["!=", "y"]}, "createdAt": ["!between", [1, 2]]}, {}]]"#,
        );
        assert_eq!(parsed, built);
        assert_eq!(ConversationFilter::default(), conversation("{}"));
        assert_eq!(MessageFilter::default(), message("{}"));
    }

    /// Malformed conversation filters are rejected with a message naming field and problem.
    #[test]
    fn conversation_rejections_name_field_and_problem() {
        let cases = [
            (
                r#"{"color": ["==", "red"]}"#,
                &["color", "unknown field"][..],
            ),
            (
                r#"{"createdAt": ["~", 5]}"#,
                &["createdAt", "unknown operator \"~\""],
            ),
            (
                r#"{"createdAt": ["between", [5, 1]]}"#,
                &["createdAt", "lower bound 5"],
            ),
            (
                r#"{"createdAt": [">"]}"#,
                &["createdAt", "expected a number filter"],
            ),
            (
                r#"{"createdAt": [">", "x"]}"#,
                &["createdAt", "expected a number"],
            ),
            (
                r#"{"createdAt": [">", 1, 2]}"#,
                &["createdAt", "3 elements"],
            ),
            (
                r#"{"createdAt": ["between", [1]]}"#,
                &["createdAt", "a range [low, high]"],
            ),
            (
                r#"{"createdAt": ["between", 1]}"#,
                &["createdAt", "a range [low, high]"],
            ),
            (
                r#"{"isUnread": "yes"}"#,
                &["isUnread", "true or false", "\"yes\""],
            ),
            (r#"{"hasMessages": null}"#, &["hasMessages", "null"]),
            (
                r#"["any", {}]"#,
                &["any", "an array of filter objects", "an object"],
            ),
            (r#"["all", []]"#, &["unknown operator \"all\""]),
            (r#"["any"]"#, &["filter", "expected a filter object"]),
            (r#"5"#, &["filter", "the number 5"]),
            (
                r#"["any", [{}, {"joinedAt": ["between", [3, 2]]}]]"#,
                &["any[1].joinedAt"],
            ),
            (r#"["any", [5]]"#, &["any[0]", "conversation filter object"]),
            (
                r#"{"access": ["==", "Write"]}"#,
                &["access", "unknown variant `Write`"],
            ),
            (
                r#"{"access": ["in", ["Read"]]}"#,
                &["access", "unknown operator \"in\""],
            ),
            (
                r#"{"subject": ["oneOf", "Hi"]}"#,
                &["subject", "an array of values"],
            ),
            (r#"{"subject": ["==", 5]}"#, &["subject", "invalid type"]),
            (
                r#"{"custom": {"k": "present"}}"#,
                &["custom.k", "\"present\"", "exists"],
            ),
            (
                r#"{"custom": {"k": ["<", "a"]}}"#,
                &["custom.k", "unknown operator \"<\""],
            ),
            (
                r#"{"custom": {"k": ["==", 1]}}"#,
                &["custom.k", "invalid type"],
            ),
            (
                r#"{"custom": {"k": true}}"#,
                &["custom.k", "the boolean true"],
            ),
            (
                r#"{"custom": []}"#,
                &["custom", "an object of custom field filters"],
            ),
            (r#"{"createdAt": [">", 1e999]}"#, &["number out of range"]),
            (r#"{"isUnread": tru}"#, &["expected ident"]),
        ];
        for (text, needles) in cases {
            let message = conversation_error(text);
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{text}: {message:?} lacks {needle:?}"
                );
            }
        }
    }

    /// Malformed message filters are rejected with a message naming field and problem.
    #[test]
    fn message_rejections_name_field_and_problem() {
        let cases = [
            (
                r#"{"sender": {"name": ["==", "x"]}}"#,
                &["sender.name", "unknown field"][..],
            ),
            (r#"{"sender": "u1"}"#, &["sender", "sender filter object"]),
            (
                r#"{"type": ["==", "Bot"]}"#,
                &["type", "unknown variant `Bot`"],
            ),
            (
                r#"{"origin": ["==", "Web"]}"#,
                &["origin", "unknown variant `Web`"],
            ),
            (
                r#"{"messageType": ["==", "UserMessage"]}"#,
                &["messageType", "unknown field"],
            ),
            (
                r#"{"createdAt": ["!between", [2, 1]]}"#,
                &["createdAt", "greater than"],
            ),
            (
                r#"["any", [{"sender": {"id": ["==", 3]}}]]"#,
                &["any[0].sender.id"],
            ),
        ];
        for (text, needles) in cases {
            let message = message_error(text);
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{text}: {message:?} lacks {needle:?}"
                );
            }
        }
    }

    /// Standalone pieces deserialize with the same validation and serialize canonically.
    #[test]
    fn parts_deserialize_on_their_own() {
        let range: Result<NumberFilter, _> = serde_json::from_value(json!(["between", [5, 1]]));
        let message = range.expect_err("reversed range").to_string();
        assert!(message.contains("filter: lower bound 5"), "{message}");
        let filter: StringFilter<Origin> =
            serde_json::from_value(json!(["oneOf", ["web"]])).expect("valid");
        assert_eq!(filter, StringFilter::OneOf(vec![Origin::Web]));
        let custom: CustomFieldFilter = serde_json::from_value(json!("exists")).expect("valid");
        assert_eq!(custom, CustomFieldFilter::Exists);
        let simple: SimpleConversationFilter =
            serde_json::from_value(json!({"joinedAt": ["<", 3]})).expect("valid");
        assert_eq!(
            simple,
            SimpleConversationFilter::new().joined_at(NumberFilter::Lt(3.0))
        );
        assert!(serde_json::from_value::<SimpleMessageFilter>(json!({"x": 1})).is_err());
        assert!(serde_json::from_value::<SenderFilter>(json!({"id": ["==", "u"]})).is_ok());
        assert_eq!(
            serde_json::to_value(NumberFilter::Between(-1.0, 0.25)).expect("finite"),
            json!(["between", [-1, 0.25]])
        );
    }

    /// `validate` reports typed errors with paths; non-finite bounds do not serialize.
    #[test]
    fn validate_reports_typed_errors() {
        let reversed = ConversationFilter::any([
            SimpleConversationFilter::new(),
            SimpleConversationFilter::new().joined_at(NumberFilter::Between(5.0, 1.0)),
        ]);
        assert_eq!(
            reversed.validate(),
            Err(FilterError::InvalidRange {
                field: "any[1].joinedAt".into(),
                low: 5.0,
                high: 1.0
            })
        );
        let nan =
            MessageFilter::from(SimpleMessageFilter::new().created_at(NumberFilter::Gt(f64::NAN)));
        assert!(matches!(
            nan.validate(),
            Err(FilterError::NotFinite { ref field, value }) if field == "createdAt" && value.is_nan()
        ));
        let infinite = SimpleConversationFilter::new()
            .created_at(NumberFilter::NotBetween(0.0, f64::INFINITY));
        assert!(matches!(
            infinite.validate(),
            Err(FilterError::NotFinite { .. })
        ));
        assert!(serde_json::to_string(&infinite).is_err());
        assert_eq!(NumberFilter::Between(1.0, 1.0).validate(), Ok(()));
        assert_eq!(ConversationFilter::default().validate(), Ok(()));
        assert_eq!(
            FilterError::InvalidRange {
                field: String::new(),
                low: 2.0,
                high: 1.0
            }
            .to_string(),
            "filter: lower bound 2 of the range is greater than its upper bound 1"
        );
    }

    /// Each number operator, including the inclusive/exclusive `between` boundaries.
    #[test]
    fn number_operators_truth_table() {
        let cases = [
            (NumberFilter::Gt(5.0), [false, false, true]),
            (NumberFilter::Lt(5.0), [true, false, false]),
            (NumberFilter::Ge(5.0), [false, true, true]),
            (NumberFilter::Le(5.0), [true, true, false]),
        ];
        for (filter, expected) in cases {
            assert_eq!([4, 5, 6].map(|x| filter.matches(x)), expected, "{filter:?}");
        }
        let between = NumberFilter::Between(10.0, 20.0);
        let not_between = NumberFilter::NotBetween(10.0, 20.0);
        for (x, inside) in [
            (9, false),
            (10, true),
            (15, true),
            (19, true),
            (20, false),
            (21, false),
        ] {
            assert_eq!(between.matches(x), inside, "between {x}");
            assert_eq!(not_between.matches(x), !inside, "!between {x}");
        }
        assert!(!NumberFilter::Between(3.0, 3.0).matches(3));
        assert!(NumberFilter::Gt(2.5).matches(3) && !NumberFilter::Gt(2.5).matches(2));
        assert!(NumberFilter::Le(-2.5).matches(-3) && !NumberFilter::Le(-2.5).matches(-2));
        // 2^53 + 1 is not representable in f64; comparisons must still be exact.
        assert!(NumberFilter::Gt(9_007_199_254_740_992.0).matches(9_007_199_254_740_993));
        assert!(NumberFilter::Lt(1e300).matches(i64::MAX));
        assert!(NumberFilter::Gt(-1e300).matches(i64::MIN));
        assert!(NumberFilter::Ge(-9_223_372_036_854_775_808.0).matches(i64::MIN));
        assert!(!NumberFilter::Ge(9_223_372_036_854_775_808.0).matches(i64::MAX));
        assert!(!NumberFilter::Gt(f64::NAN).matches(0));
        assert!(NumberFilter::NotBetween(f64::NAN, 1.0).matches(0));
    }

    /// Each string operator on present values.
    #[test]
    fn string_operators_truth_table() {
        let a = || "a".to_owned();
        assert!(StringFilter::Eq(a()).matches(&a()));
        assert!(!StringFilter::Eq(a()).matches(&"b".into()));
        assert!(!StringFilter::Ne(a()).matches(&a()));
        assert!(StringFilter::Ne(a()).matches(&"b".into()));
        let set = vec![a(), "c".to_owned()];
        assert!(StringFilter::OneOf(set.clone()).matches(&"c".into()));
        assert!(!StringFilter::OneOf(set.clone()).matches(&"b".into()));
        assert!(!StringFilter::NotOneOf(set.clone()).matches(&"c".into()));
        assert!(StringFilter::NotOneOf(set).matches(&"b".into()));
        assert!(!StringFilter::<String>::OneOf(vec![]).matches(&a()));
        assert!(StringFilter::<String>::NotOneOf(vec![]).matches(&a()));
        assert!(StringFilter::Eq(Access::Read).matches(&Access::Read));
        assert!(!StringFilter::Eq(Access::Read).matches(&Access::ReadWrite));
    }

    /// Custom field filters on present and missing keys.
    #[test]
    fn custom_field_truth_table() {
        let cases = [
            (CustomFieldFilter::Exists, [true, true, false]),
            (CustomFieldFilter::NotExists, [false, false, true]),
            (StringFilter::Eq("x".into()).into(), [true, false, false]),
            (StringFilter::Ne("x".into()).into(), [false, true, true]),
            (
                StringFilter::OneOf(vec!["x".into()]).into(),
                [true, false, false],
            ),
            (
                StringFilter::NotOneOf(vec!["x".into()]).into(),
                [false, true, true],
            ),
        ];
        for (filter, expected) in cases {
            let actual = [Some("x"), Some("y"), None].map(|v| filter.matches(v));
            assert_eq!(actual, expected, "{filter:?}");
        }
        let custom: Custom = [("a".to_owned(), "1".to_owned())].into();
        let filter: CustomFilter = [
            ("a".to_owned(), StringFilter::Eq("1".to_owned()).into()),
            ("b".to_owned(), CustomFieldFilter::NotExists),
        ]
        .into();
        assert!(custom_matches(&filter, &custom));
        assert!(custom_matches(&CustomFilter::new(), &custom));
        let filter: CustomFilter =
            [("b".to_owned(), StringFilter::Ne("1".to_owned()).into())].into();
        assert!(custom_matches(&filter, &custom));
        let filter: CustomFilter =
            [("b".to_owned(), StringFilter::Eq("1".to_owned()).into())].into();
        assert!(!custom_matches(&filter, &custom));
    }

    /// Facts for a conversation used in evaluation tests.
    fn facts(custom: &Custom) -> ConversationFacts<'_> {
        ConversationFacts {
            access: Access::ReadWrite,
            custom,
            is_unread: true,
            subject: None,
            last_activity_at: 300,
            created_at: 100,
            has_messages: true,
            joined_at: 200,
        }
    }

    /// Each conversation field is compared with the matching fact, and all must hold.
    #[test]
    fn conversation_fields_evaluate() {
        let custom: Custom = [("category".to_owned(), "support".to_owned())].into();
        let facts = facts(&custom);
        let yes = |text: &str| assert!(conversation(text).matches(&facts), "{text} should match");
        let no = |text: &str| {
            assert!(
                !conversation(text).matches(&facts),
                "{text} should not match"
            )
        };
        yes(r#"{}"#);
        yes(r#"{"access": ["==", "ReadWrite"]}"#);
        no(r#"{"access": ["==", "Read"]}"#);
        yes(r#"{"custom": {"category": ["==", "support"]}}"#);
        no(r#"{"custom": {"category": ["==", "sales"]}}"#);
        yes(r#"{"isUnread": true}"#);
        no(r#"{"isUnread": false}"#);
        yes(r#"{"subject": ["==", null]}"#);
        no(r#"{"subject": ["!=", null]}"#);
        no(r#"{"subject": ["==", "Hi"]}"#);
        yes(r#"{"subject": ["!oneOf", ["Hi"]]}"#);
        yes(r#"{"lastActivityAt": ["between", [300, 301]]}"#);
        no(r#"{"lastActivityAt": ["<", 300]}"#);
        yes(r#"{"createdAt": ["<=", 100]}"#);
        no(r#"{"createdAt": [">", 100]}"#);
        yes(r#"{"hasMessages": true}"#);
        no(r#"{"hasMessages": false}"#);
        yes(r#"{"joinedAt": [">=", 200]}"#);
        no(r#"{"joinedAt": ["!between", [0, 1000]]}"#);
        yes(r#"{"isUnread": true, "hasMessages": true, "createdAt": [">", 0]}"#);
        no(r#"{"isUnread": true, "hasMessages": false, "createdAt": [">", 0]}"#);

        let titled = ConversationFacts {
            subject: Some("Hi"),
            ..facts
        };
        assert!(conversation(r#"{"subject": ["oneOf", ["Hi", null]]}"#).matches(&titled));
        assert!(!conversation(r#"{"subject": ["==", null]}"#).matches(&titled));
        assert!(conversation(r#"{"subject": ["!=", "Hello"]}"#).matches(&titled));
    }

    /// `any` holds when one branch holds; `["any", []]` matches nothing.
    #[test]
    fn any_is_or_and_empty_any_matches_nothing() {
        let custom = Custom::new();
        let facts = facts(&custom);
        assert!(!conversation(r#"["any", []]"#).matches(&facts));
        assert!(!conversation(r#"["any", [{"isUnread": false}]]"#).matches(&facts));
        assert!(
            conversation(r#"["any", [{"isUnread": false}, {"hasMessages": true}]]"#)
                .matches(&facts)
        );
        assert!(conversation(r#"["any", [{}]]"#).matches(&facts));
        assert!(ConversationFilter::default().matches(&facts));

        let message_facts = MessageFacts {
            message_type: MessageType::SystemMessage,
            origin: Origin::Rest,
            custom: &custom,
            created_at: 5,
            sender: None,
        };
        assert!(!message(r#"["any", []]"#).matches(&message_facts));
        assert!(
            message(r#"["any", [{"origin": ["==", "web"]}, {"createdAt": ["<", 6]}]]"#)
                .matches(&message_facts)
        );
        assert!(MessageFilter::default().matches(&message_facts));
    }

    /// Message fields evaluate; a sender filter never matches a message without sender.
    #[test]
    fn message_fields_evaluate() {
        let custom: Custom = [("pinned".to_owned(), "yes".to_owned())].into();
        let user = UserSnapshot {
            id: UserId::new("u1"),
            name: "Alice".into(),
            custom: [("tier".to_owned(), "gold".to_owned())].into(),
            locale: None,
            photo_url: None,
            role: "default".into(),
            welcome_message: None,
        };
        let user_message = MessageFacts {
            message_type: MessageType::UserMessage,
            origin: Origin::Web,
            custom: &custom,
            created_at: 1000,
            sender: Some(&user),
        };
        let system_message = MessageFacts {
            message_type: MessageType::SystemMessage,
            origin: Origin::Rest,
            sender: None,
            ..user_message
        };
        let check = |text: &str, on_user: bool, on_system: bool| {
            let filter = message(text);
            assert_eq!(
                filter.matches(&user_message),
                on_user,
                "{text} on user message"
            );
            assert_eq!(
                filter.matches(&system_message),
                on_system,
                "{text} on system message"
            );
        };
        check(r#"{}"#, true, true);
        check(r#"{"sender": {}}"#, true, false);
        check(r#"{"sender": {"id": ["==", "u1"]}}"#, true, false);
        check(r#"{"sender": {"id": ["!=", "u1"]}}"#, false, false);
        check(r#"{"sender": {"id": ["!=", "u2"]}}"#, true, false);
        check(
            r#"{"sender": {"role": ["oneOf", ["default"]]}}"#,
            true,
            false,
        );
        check(r#"{"sender": {"locale": ["==", "en"]}}"#, false, false);
        check(r#"{"sender": {"locale": ["!=", "en"]}}"#, true, false);
        check(
            r#"{"sender": {"custom": {"tier": ["==", "gold"]}}}"#,
            true,
            false,
        );
        check(
            r#"{"sender": {"custom": {"tier": "!exists"}}}"#,
            false,
            false,
        );
        check(r#"{"type": ["==", "UserMessage"]}"#, true, false);
        check(r#"{"type": ["!=", "UserMessage"]}"#, false, true);
        check(r#"{"origin": ["oneOf", ["rest", "email"]]}"#, false, true);
        check(r#"{"origin": ["!oneOf", ["rest"]]}"#, true, false);
        check(r#"{"custom": {"pinned": "exists"}}"#, true, true);
        check(r#"{"custom": {"pinned": ["!=", "yes"]}}"#, false, false);
        check(r#"{"createdAt": ["between", [1000, 1001]]}"#, true, true);
        check(r#"{"createdAt": ["<", 1000]}"#, false, false);
        check(
            r#"{"type": ["==", "UserMessage"], "origin": ["==", "rest"]}"#,
            false,
            false,
        );
    }

    /// A number bound drawn from small integers, halves, arbitrary `i64`s and arbitrary floats.
    fn bound() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-6_i64..6).prop_map(|v| v as f64),
            (-6_i64..6).prop_map(|v| v as f64 + 0.5),
            any::<i64>().prop_map(|v| v as f64),
            proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
        ]
    }

    /// `x >= bound` for integer `x`, computed through `i128` as an independent reference.
    fn reference_ge(x: i64, bound: f64) -> bool {
        i128::from(x) >= bound.ceil() as i128
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// `Between(a, b)` is `a <= x < b` and `NotBetween` is its negation.
        #[test]
        fn between_is_half_open(
            x in prop_oneof![-8_i64..8, any::<i64>()],
            first in bound(),
            second in bound(),
        ) {
            let (low, high) = if first <= second { (first, second) } else { (second, first) };
            let expected = reference_ge(x, low) && !reference_ge(x, high);
            prop_assert_eq!(NumberFilter::Between(low, high).matches(x), expected);
            prop_assert_eq!(NumberFilter::NotBetween(low, high).matches(x), !expected);
            prop_assert_eq!(NumberFilter::Ge(low).matches(x), reference_ge(x, low));
            prop_assert_eq!(NumberFilter::Lt(high).matches(x), !reference_ge(x, high));
        }

        /// `Ne` negates `Eq` and `NotOneOf` negates `OneOf`, over a small alphabet.
        #[test]
        fn negated_string_operators(
            value in "[abc]",
            operand in "[abc]",
            set in proptest::collection::vec("[abc]", 0..4),
        ) {
            let eq = StringFilter::Eq(operand.clone()).matches(&value);
            prop_assert_eq!(eq, value == operand);
            prop_assert_eq!(StringFilter::Ne(operand).matches(&value), !eq);
            let one_of = StringFilter::OneOf(set.clone()).matches(&value);
            prop_assert_eq!(one_of, set.contains(&value));
            prop_assert_eq!(StringFilter::NotOneOf(set).matches(&value), !one_of);
        }
    }
}
