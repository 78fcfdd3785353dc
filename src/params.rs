//! Parameters of writes, with TalkJS patch semantics.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{Access, Custom, MessageId, Notify, SendContentBlock, TextNode, parse_markup};

/// One field of a patch: leave it unchanged, reset it to its default, or set it.
///
/// On the wire an unchanged field is absent, a reset is `null` and a set is the value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    /// Leave the field as it is. The default.
    #[default]
    Unchanged,
    /// Reset the field to its default.
    Reset,
    /// Set the field.
    Set(T),
}

impl<T> Patch<T> {
    /// Whether this is [`Patch::Unchanged`].
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Patch::Unchanged)
    }

    /// Applies the patch to an optional field whose default is `None`.
    pub(crate) fn apply_to(self, field: &mut Option<T>) {
        match self {
            Patch::Unchanged => {}
            Patch::Reset => *field = None,
            Patch::Set(value) => *field = Some(value),
        }
    }

    /// Applies the patch to a field with the given default.
    pub(crate) fn apply_or(self, field: &mut T, default: impl FnOnce() -> T) {
        match self {
            Patch::Unchanged => {}
            Patch::Reset => *field = default(),
            Patch::Set(value) => *field = value,
        }
    }

    /// The value to use when creating: a set value, or `None` for unchanged and reset.
    pub(crate) fn into_option(self) -> Option<T> {
        match self {
            Patch::Set(value) => Some(value),
            Patch::Unchanged | Patch::Reset => None,
        }
    }
}

impl<T> From<Option<T>> for Patch<T> {
    /// `Some(v)` sets, `None` resets.
    fn from(value: Option<T>) -> Self {
        value.map_or(Patch::Reset, Patch::Set)
    }
}

macro_rules! patch_from {
    ($($ty:ty => $target:ty),* $(,)?) => {
        $(
            impl From<$ty> for Patch<$target> {
                /// Sets the field.
                fn from(value: $ty) -> Self {
                    Patch::Set(value.into())
                }
            }
        )*
    };
}

patch_from! {
    String => String,
    &str => String,
    Vec<String> => Vec<String>,
    Access => Access,
    Notify => Notify,
    bool => Notify,
    CustomPatch => CustomPatch,
}

impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Patch::Unchanged | Patch::Reset => s.serialize_none(),
            Patch::Set(value) => s.serialize_some(value),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(d)?.into())
    }
}

/// A patch of custom fields: `Some` sets a key, `None` deletes it.
pub type CustomPatch = BTreeMap<String, Option<String>>;

/// Applies a custom-field patch; `Reset` clears every key.
pub(crate) fn apply_custom(patch: Patch<CustomPatch>, custom: &mut Custom) {
    match patch {
        Patch::Unchanged => {}
        Patch::Reset => custom.clear(),
        Patch::Set(patch) => {
            for (key, value) in patch {
                match value {
                    Some(value) => custom.insert(key, value),
                    None => custom.remove(&key),
                };
            }
        }
    }
}

/// Keeps only the set keys of a custom patch (for creation).
pub(crate) fn custom_from_patch(patch: Patch<CustomPatch>) -> Custom {
    let mut custom = Custom::new();
    apply_custom(patch, &mut custom);
    custom
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $field(mut self, value: impl Into<Patch<$ty>>) -> Self {
                self.$field = value.into();
                self
            }
        )*
    };
}

/// Fields of a user for `UserRef::set` and `UserRef::create_if_not_exists`.
///
/// Every field defaults to [`Patch::Unchanged`]. `name` is required when the user is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UserParams {
    /// Display name. Cannot be reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Custom fields, patched key by key.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub custom: Patch<CustomPatch>,
    /// Locale; reset means the app's default.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub locale: Patch<String>,
    /// Photo URL.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub photo_url: Patch<String>,
    /// Role; reset means `"default"`.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub role: Patch<String>,
    /// Welcome message.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub welcome_message: Patch<String>,
    /// Email addresses: stored, never readable through the Data API.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub email: Patch<Vec<String>>,
    /// Phone numbers: stored, never readable through the Data API.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub phone: Patch<Vec<String>>,
}

impl UserParams {
    /// Empty params (nothing changes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the display name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets one custom field (`Some`) or deletes it (`None`).
    #[must_use]
    pub fn custom_field(mut self, key: impl Into<String>, value: Option<&str>) -> Self {
        if !matches!(self.custom, Patch::Set(_)) {
            self.custom = Patch::Set(CustomPatch::new());
        }
        if let Patch::Set(patch) = &mut self.custom {
            patch.insert(key.into(), value.map(str::to_owned));
        }
        self
    }

    setters! {
        /// Sets or resets the locale.
        locale: String,
        /// Sets or resets the photo URL.
        photo_url: String,
        /// Sets or resets the role.
        role: String,
        /// Sets or resets the welcome message.
        welcome_message: String,
        /// Sets or resets the email addresses.
        email: Vec<String>,
        /// Sets or resets the phone numbers.
        phone: Vec<String>,
    }
}

/// Fields of a conversation and of your own participation, for `ConversationRef::set` and
/// `ConversationRef::create_if_not_exists`.
///
/// Every field defaults to [`Patch::Unchanged`]. On creation, unset fields take their defaults:
/// no subject, no photo, no welcome messages, no custom fields, access `ReadWrite`, notify on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct ConversationParams {
    /// Subject.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub subject: Patch<String>,
    /// Photo URL.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub photo_url: Patch<String>,
    /// Welcome messages.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub welcome_messages: Patch<Vec<String>>,
    /// Custom fields, patched key by key.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub custom: Patch<CustomPatch>,
    /// Your own access.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub access: Patch<Access>,
    /// Your own notification setting.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub notify: Patch<Notify>,
}

impl ConversationParams {
    /// Empty params (nothing changes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one custom field (`Some`) or deletes it (`None`).
    #[must_use]
    pub fn custom_field(mut self, key: impl Into<String>, value: Option<&str>) -> Self {
        if !matches!(self.custom, Patch::Set(_)) {
            self.custom = Patch::Set(CustomPatch::new());
        }
        if let Patch::Set(patch) = &mut self.custom {
            patch.insert(key.into(), value.map(str::to_owned));
        }
        self
    }

    setters! {
        /// Sets or resets the subject.
        subject: String,
        /// Sets or resets the photo URL.
        photo_url: String,
        /// Sets or resets the welcome messages.
        welcome_messages: Vec<String>,
        /// Sets or resets your access (default `ReadWrite`).
        access: Access,
        /// Sets or resets your notification setting (default on): a [`Notify`], or a bool
        /// (`true` is [`Notify::Always`], `false` [`Notify::Never`]).
        notify: Notify,
    }
}

/// A participant's settings, for `ParticipantRef::set`, `edit` and `create_if_not_exists`.
///
/// Defaults on creation: access `ReadWrite`, notify on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct ParticipantParams {
    /// Access.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub access: Patch<Access>,
    /// Notification setting.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub notify: Patch<Notify>,
}

impl ParticipantParams {
    /// Empty params (nothing changes).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets or resets the access.
        access: Access,
        /// Sets or resets the notification setting: a [`Notify`], or a bool (`true` is
        /// [`Notify::Always`], `false` [`Notify::Never`]).
        notify: Notify,
    }
}

/// The body of a message to send or an edit: markup text, or content blocks.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Text with markup, parsed like a chat UI does (bold, italic, lists, auto links, ...).
    Text(String),
    /// Content blocks, sent as they are (one block per message today).
    Content(Vec<SendContentBlock>),
}

impl Body {
    pub(crate) fn into_content(self) -> Vec<SendContentBlock> {
        match self {
            Body::Text(text) => vec![SendContentBlock::Text {
                children: parse_markup(&text),
            }],
            Body::Content(content) => content,
        }
    }
}

/// A message to send with `ConversationRef::send`.
///
/// `From<&str>` and `From<String>` give a markup text message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SendParams {
    /// The body.
    pub body: Body,
    /// Custom fields of the message.
    pub custom: Custom,
    /// The message this one replies to.
    pub referenced_message: Option<MessageId>,
}

impl SendParams {
    /// A markup text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            body: Body::Text(text.into()),
            custom: Custom::new(),
            referenced_message: None,
        }
    }

    /// A message with one content block.
    pub fn content(block: SendContentBlock) -> Self {
        Self {
            body: Body::Content(vec![block]),
            custom: Custom::new(),
            referenced_message: None,
        }
    }

    /// Replies to a message of the same conversation.
    #[must_use]
    pub fn referenced_message(mut self, id: impl Into<MessageId>) -> Self {
        self.referenced_message = Some(id.into());
        self
    }

    /// Sets a custom field.
    #[must_use]
    pub fn custom_field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom.insert(key.into(), value.into());
        self
    }
}

impl From<&str> for SendParams {
    fn from(text: &str) -> Self {
        SendParams::text(text)
    }
}

impl From<String> for SendParams {
    fn from(text: String) -> Self {
        SendParams::text(text)
    }
}

/// A send as it travels on the wire: markup already parsed into content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireSend {
    pub(crate) content: Vec<SendContentBlock>,
    #[serde(default)]
    pub(crate) custom: Custom,
    #[serde(default)]
    pub(crate) referenced_message: Option<MessageId>,
    /// Makes retries safe: a second send with the same key returns the first message.
    pub(crate) idempotency_key: String,
}

/// An edit of a message with `MessageRef::edit`. `From<&str>` replaces the text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct EditParams {
    /// New content replacing the body; `None` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<SendContentBlock>>,
    /// Custom fields, patched key by key.
    #[serde(default, skip_serializing_if = "Patch::is_unchanged")]
    pub custom: Patch<CustomPatch>,
}

impl EditParams {
    /// Replaces the body with markup text.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: Some(Body::Text(text.into()).into_content()),
            custom: Patch::Unchanged,
        }
    }

    /// Replaces the body with one content block.
    pub fn content(block: SendContentBlock) -> Self {
        Self {
            content: Some(vec![block]),
            custom: Patch::Unchanged,
        }
    }

    /// Only patches custom fields.
    pub fn custom(patch: CustomPatch) -> Self {
        Self {
            content: None,
            custom: Patch::Set(patch),
        }
    }
}

impl From<&str> for EditParams {
    fn from(text: &str) -> Self {
        EditParams::text(text)
    }
}

/// Text nodes of a plain string, for system messages.
pub(crate) fn plain_text(text: &str) -> Vec<SendContentBlock> {
    vec![SendContentBlock::Text {
        children: vec![TextNode::Text(text.to_owned())],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Absent means unchanged, null means reset, a value means set; custom null deletes a key.
    #[test]
    fn patch_semantics_on_the_wire() {
        let p: UserParams =
            serde_json::from_str(r#"{"name":"Bob","photoUrl":null,"custom":{"a":"1","b":null}}"#)
                .unwrap();
        assert_eq!(p.name.as_deref(), Some("Bob"));
        assert_eq!(p.photo_url, Patch::Reset);
        assert_eq!(p.locale, Patch::Unchanged);
        let mut custom = Custom::from([("b".to_owned(), "x".to_owned())]);
        apply_custom(p.custom, &mut custom);
        assert_eq!(custom, Custom::from([("a".to_owned(), "1".to_owned())]));
        assert!(serde_json::from_str::<UserParams>(r#"{"nmae":"x"}"#).is_err());
    }
}
