//! Message content: blocks and rich-text nodes, in the TalkJS wire shape.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, MapAccess, Visitor},
    ser::SerializeStruct,
};

use super::UserId;

/// The deepest nesting of text nodes that users may send.
const MAX_DEPTH: usize = 32;

/// One block of a message's content.
///
/// On the wire this is an object tagged by `"type"`: `"text"`, `"file"` or
/// `"location"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ContentBlock {
    /// Formatted text.
    Text {
        /// The text's nodes, in order.
        children: Vec<TextNode>,
    },
    /// An uploaded file.
    File(FileBlock),
    /// A point on the map.
    Location {
        /// Degrees north, from -90 to 90.
        latitude: f64,
        /// Degrees east, from -180 to 180.
        longitude: f64,
    },
}

/// A file attached to a message.
///
/// On the wire the fields are flat, next to `"type": "file"` and a
/// `"subtype"` (`"image"`, `"video"`, `"audio"` or `"voice"`; absent for a
/// generic file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "FileRepr", into = "FileRepr")]
pub struct FileBlock {
    /// The token that identifies the upload.
    pub file_token: FileToken,
    /// Where the file can be downloaded.
    pub url: String,
    /// The size in bytes.
    pub size: u64,
    /// The file's name, as uploaded.
    pub filename: String,
    /// What kind of file this is, with kind-specific metadata.
    pub kind: FileKind,
}

/// The kind of a [`FileBlock`], with its kind-specific metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum FileKind {
    /// A picture.
    Image {
        /// Width in pixels, if known.
        width: Option<u32>,
        /// Height in pixels, if known.
        height: Option<u32>,
    },
    /// A video.
    Video {
        /// Width in pixels, if known.
        width: Option<u32>,
        /// Height in pixels, if known.
        height: Option<u32>,
        /// Length in seconds, if known.
        duration: Option<f64>,
    },
    /// An audio file.
    Audio {
        /// Length in seconds, if known.
        duration: Option<f64>,
    },
    /// A voice recording.
    Voice {
        /// Length in seconds, if known.
        duration: Option<f64>,
    },
    /// Any other file. Also used for unknown subtypes.
    Generic,
}

/// The wire shape of a [`FileBlock`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subtype: Option<String>,
    file_token: FileToken,
    url: String,
    size: u64,
    filename: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
}

impl From<FileRepr> for FileBlock {
    fn from(repr: FileRepr) -> Self {
        let FileRepr {
            subtype,
            file_token,
            url,
            size,
            filename,
            width,
            height,
            duration,
        } = repr;
        let kind = match subtype.as_deref() {
            Some("image") => FileKind::Image { width, height },
            Some("video") => FileKind::Video {
                width,
                height,
                duration,
            },
            Some("audio") => FileKind::Audio { duration },
            Some("voice") => FileKind::Voice { duration },
            _ => FileKind::Generic,
        };
        FileBlock {
            file_token,
            url,
            size,
            filename,
            kind,
        }
    }
}

impl From<FileBlock> for FileRepr {
    fn from(block: FileBlock) -> Self {
        let FileBlock {
            file_token,
            url,
            size,
            filename,
            kind,
        } = block;
        let (subtype, width, height, duration) = match kind {
            FileKind::Image { width, height } => (Some("image"), width, height, None),
            FileKind::Video {
                width,
                height,
                duration,
            } => (Some("video"), width, height, duration),
            FileKind::Audio { duration } => (Some("audio"), None, None, duration),
            FileKind::Voice { duration } => (Some("voice"), None, None, duration),
            FileKind::Generic => (None, None, None, None),
        };
        FileRepr {
            subtype: subtype.map(str::to_owned),
            file_token,
            url,
            size,
            filename,
            width,
            height,
            duration,
        }
    }
}

/// An opaque token that identifies an uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileToken(String);

impl FileToken {
    /// The token as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for FileToken {
    fn from(token: String) -> Self {
        Self(token)
    }
}

/// A content block that a user may send.
///
/// Tagged by `"type"` like [`ContentBlock`]; a file is sent by token only:
/// `{"type": "file", "fileToken": "…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SendContentBlock {
    /// Formatted text.
    Text {
        /// The text's nodes, in order.
        children: Vec<TextNode>,
    },
    /// A previously uploaded file.
    File {
        /// The token returned by the upload.
        #[serde(rename = "fileToken")]
        file_token: FileToken,
    },
    /// A point on the map.
    Location {
        /// Degrees north, from -90 to 90.
        latitude: f64,
        /// Degrees east, from -180 to 180.
        longitude: f64,
    },
}

/// A node of formatted text.
///
/// On the wire plain text is a bare string and every other node is an object
/// tagged by `"type"` (`"bold"`, `"italic"`, `"strikethrough"`, `"bulletList"`,
/// `"bulletPoint"`, `"codeSpan"`, `"link"`, `"autoLink"`, `"actionLink"`,
/// `"actionButton"`, `"customEmoji"` or `"mention"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextNode {
    /// Plain text.
    Text(String),
    /// Bold text.
    Bold {
        /// The formatted nodes.
        children: Vec<TextNode>,
    },
    /// Italic text.
    Italic {
        /// The formatted nodes.
        children: Vec<TextNode>,
    },
    /// Struck-through text.
    Strikethrough {
        /// The formatted nodes.
        children: Vec<TextNode>,
    },
    /// A bulleted list; its children are normally [`TextNode::BulletPoint`]s.
    BulletList {
        /// The list's points.
        children: Vec<TextNode>,
    },
    /// One point of a [`TextNode::BulletList`].
    BulletPoint {
        /// The point's text.
        children: Vec<TextNode>,
    },
    /// Inline code, shown literally.
    CodeSpan {
        /// The code.
        text: String,
    },
    /// A link with arbitrary text. Users may not send these.
    Link {
        /// Where the link goes.
        url: String,
        /// The link's visible text.
        children: Vec<TextNode>,
    },
    /// A link whose visible text is the address itself (a URL, email address
    /// or phone number).
    AutoLink {
        /// Where the link goes, for example `https://example.com` or
        /// `mailto:someone@example.com`.
        url: String,
        /// The visible text, as the sender typed it.
        text: String,
    },
    /// A link that triggers an app action. Users may not send these.
    ActionLink {
        /// The action's name.
        action: String,
        /// The action's parameters.
        params: BTreeMap<String, String>,
        /// The link's visible text.
        children: Vec<TextNode>,
    },
    /// A button that triggers an app action. Users may not send these.
    ActionButton {
        /// The action's name.
        action: String,
        /// The action's parameters.
        params: BTreeMap<String, String>,
        /// The button's visible text.
        children: Vec<TextNode>,
    },
    /// A custom emoji, such as `:party-parrot:`.
    CustomEmoji {
        /// The emoji's text.
        text: String,
    },
    /// A mention of a user.
    Mention {
        /// The mentioned user.
        id: UserId,
        /// The visible text, usually the user's name.
        text: String,
    },
}

/// The wire names of every tagged [`TextNode`] variant.
const NODE_TYPES: &[&str] = &[
    "bold",
    "italic",
    "strikethrough",
    "bulletList",
    "bulletPoint",
    "codeSpan",
    "link",
    "autoLink",
    "actionLink",
    "actionButton",
    "customEmoji",
    "mention",
];

impl TextNode {
    /// The wire name of the node's type; `"text"` for plain text.
    fn type_name(&self) -> &'static str {
        match self {
            TextNode::Text(_) => "text",
            TextNode::Bold { .. } => "bold",
            TextNode::Italic { .. } => "italic",
            TextNode::Strikethrough { .. } => "strikethrough",
            TextNode::BulletList { .. } => "bulletList",
            TextNode::BulletPoint { .. } => "bulletPoint",
            TextNode::CodeSpan { .. } => "codeSpan",
            TextNode::Link { .. } => "link",
            TextNode::AutoLink { .. } => "autoLink",
            TextNode::ActionLink { .. } => "actionLink",
            TextNode::ActionButton { .. } => "actionButton",
            TextNode::CustomEmoji { .. } => "customEmoji",
            TextNode::Mention { .. } => "mention",
        }
    }

    /// The node's child nodes; empty for leaves.
    fn children(&self) -> &[TextNode] {
        match self {
            TextNode::Bold { children }
            | TextNode::Italic { children }
            | TextNode::Strikethrough { children }
            | TextNode::BulletList { children }
            | TextNode::BulletPoint { children }
            | TextNode::Link { children, .. }
            | TextNode::ActionLink { children, .. }
            | TextNode::ActionButton { children, .. } => children,
            TextNode::Text(_)
            | TextNode::CodeSpan { .. }
            | TextNode::AutoLink { .. }
            | TextNode::CustomEmoji { .. }
            | TextNode::Mention { .. } => &[],
        }
    }
}

impl Serialize for TextNode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = self.type_name();
        match self {
            TextNode::Text(text) => s.serialize_str(text),
            TextNode::Bold { children }
            | TextNode::Italic { children }
            | TextNode::Strikethrough { children }
            | TextNode::BulletList { children }
            | TextNode::BulletPoint { children } => {
                let mut st = s.serialize_struct("TextNode", 2)?;
                st.serialize_field("type", kind)?;
                st.serialize_field("children", children)?;
                st.end()
            }
            TextNode::CodeSpan { text } | TextNode::CustomEmoji { text } => {
                let mut st = s.serialize_struct("TextNode", 2)?;
                st.serialize_field("type", kind)?;
                st.serialize_field("text", text)?;
                st.end()
            }
            TextNode::Link { url, children } => {
                let mut st = s.serialize_struct("TextNode", 3)?;
                st.serialize_field("type", kind)?;
                st.serialize_field("url", url)?;
                st.serialize_field("children", children)?;
                st.end()
            }
            TextNode::AutoLink { url, text } => {
                let mut st = s.serialize_struct("TextNode", 3)?;
                st.serialize_field("type", kind)?;
                st.serialize_field("url", url)?;
                st.serialize_field("text", text)?;
                st.end()
            }
            TextNode::ActionLink {
                action,
                params,
                children,
            }
            | TextNode::ActionButton {
                action,
                params,
                children,
            } => {
                let mut st = s.serialize_struct("TextNode", 4)?;
                st.serialize_field("type", kind)?;
                st.serialize_field("action", action)?;
                st.serialize_field("params", params)?;
                st.serialize_field("children", children)?;
                st.end()
            }
            TextNode::Mention { id, text } => {
                let mut st = s.serialize_struct("TextNode", 3)?;
                st.serialize_field("type", kind)?;
                st.serialize_field("id", id)?;
                st.serialize_field("text", text)?;
                st.end()
            }
        }
    }
}

/// The keys a text node object may have; others are ignored.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum NodeField {
    Type,
    Children,
    Text,
    Url,
    Action,
    Params,
    Id,
    #[serde(other)]
    Other,
}

/// Deserializes a [`TextNode`] from a string or a tagged object.
struct TextNodeVisitor;

/// Stores `value` in `slot`, failing if the key was already seen.
fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

/// Unwraps a field that the node type requires.
fn required<T, E: de::Error>(slot: Option<T>, name: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(name))
}

impl<'de> Visitor<'de> for TextNodeVisitor {
    type Value = TextNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a text node object with a \"type\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TextNode, E> {
        Ok(TextNode::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<TextNode, E> {
        Ok(TextNode::Text(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextNode, A::Error> {
        let mut kind: Option<String> = None;
        let mut children: Option<Vec<TextNode>> = None;
        let mut text: Option<String> = None;
        let mut url: Option<String> = None;
        let mut action: Option<String> = None;
        let mut params: Option<BTreeMap<String, String>> = None;
        let mut id: Option<UserId> = None;
        while let Some(key) = map.next_key::<NodeField>()? {
            match key {
                NodeField::Type => set_once(&mut kind, map.next_value()?, "type")?,
                NodeField::Children => set_once(&mut children, map.next_value()?, "children")?,
                NodeField::Text => set_once(&mut text, map.next_value()?, "text")?,
                NodeField::Url => set_once(&mut url, map.next_value()?, "url")?,
                NodeField::Action => set_once(&mut action, map.next_value()?, "action")?,
                NodeField::Params => set_once(&mut params, map.next_value()?, "params")?,
                NodeField::Id => set_once(&mut id, map.next_value()?, "id")?,
                NodeField::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let kind = required::<_, A::Error>(kind, "type")?;
        let node = match kind.as_str() {
            "bold" => TextNode::Bold {
                children: required(children, "children")?,
            },
            "italic" => TextNode::Italic {
                children: required(children, "children")?,
            },
            "strikethrough" => TextNode::Strikethrough {
                children: required(children, "children")?,
            },
            "bulletList" => TextNode::BulletList {
                children: required(children, "children")?,
            },
            "bulletPoint" => TextNode::BulletPoint {
                children: required(children, "children")?,
            },
            "codeSpan" => TextNode::CodeSpan {
                text: required(text, "text")?,
            },
            "link" => TextNode::Link {
                url: required(url, "url")?,
                children: required(children, "children")?,
            },
            "autoLink" => TextNode::AutoLink {
                url: required(url, "url")?,
                text: required(text, "text")?,
            },
            "actionLink" => TextNode::ActionLink {
                action: required(action, "action")?,
                params: params.unwrap_or_default(),
                children: required(children, "children")?,
            },
            "actionButton" => TextNode::ActionButton {
                action: required(action, "action")?,
                params: params.unwrap_or_default(),
                children: required(children, "children")?,
            },
            "customEmoji" => TextNode::CustomEmoji {
                text: required(text, "text")?,
            },
            "mention" => TextNode::Mention {
                id: required(id, "id")?,
                text: required(text, "text")?,
            },
            other => {
                return Err(de::Error::custom(format_args!(
                    "unknown text node type `{other}`, expected one of: {}",
                    NODE_TYPES.join(", ")
                )));
            }
        };
        Ok(node)
    }
}

impl<'de> Deserialize<'de> for TextNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextNodeVisitor)
    }
}

/// Renders a message's content as plain text.
///
/// Formatting is dropped, links show their visible text, bullet points go on
/// their own lines prefixed `"- "`, files show an emoji and their name (a
/// voice recording shows its length as `m:ss`), locations show `"📍"`, and
/// blocks are separated by a blank line.
pub fn plaintext(content: &[ContentBlock]) -> String {
    let mut out = String::new();
    for (index, block) in content.iter().enumerate() {
        if index > 0 {
            out.push_str("\n\n");
        }
        match block {
            ContentBlock::Text { children } => render_nodes(children, &mut out),
            ContentBlock::File(file) => render_file(file, &mut out),
            ContentBlock::Location { .. } => out.push('📍'),
        }
    }
    out
}

/// Work for [`render_nodes`]: a node to render or a separator to write.
enum Piece<'a> {
    Node(&'a TextNode),
    Str(&'static str),
}

/// Appends the plain text of `nodes` to `out`, without recursion (so any
/// nesting depth is fine).
fn render_nodes(nodes: &[TextNode], out: &mut String) {
    let mut stack: Vec<Piece<'_>> = nodes.iter().rev().map(Piece::Node).collect();
    while let Some(piece) = stack.pop() {
        let node = match piece {
            Piece::Str(s) => {
                out.push_str(s);
                continue;
            }
            Piece::Node(node) => node,
        };
        match node {
            TextNode::Text(text)
            | TextNode::CodeSpan { text }
            | TextNode::AutoLink { text, .. }
            | TextNode::CustomEmoji { text }
            | TextNode::Mention { text, .. } => out.push_str(text),
            TextNode::BulletList { children } => {
                for (index, child) in children.iter().enumerate().rev() {
                    stack.push(Piece::Node(child));
                    if index > 0 {
                        stack.push(Piece::Str("\n"));
                    }
                }
            }
            TextNode::BulletPoint { children } => {
                stack.extend(children.iter().rev().map(Piece::Node));
                stack.push(Piece::Str("- "));
            }
            other => stack.extend(other.children().iter().rev().map(Piece::Node)),
        }
    }
}

/// Appends the one-line summary of a file to `out`.
fn render_file(file: &FileBlock, out: &mut String) {
    let emoji = match &file.kind {
        FileKind::Image { .. } => "📷",
        FileKind::Video { .. } => "🎥",
        FileKind::Audio { .. } => "🎧",
        FileKind::Generic => "📎",
        FileKind::Voice { duration } => {
            out.push_str("🎙\u{fe0f}");
            if let Some(d) = duration.filter(|d| d.is_finite() && *d >= 0.0) {
                // Saturating float-to-int conversion; durations are far below u64::MAX.
                let seconds = d.round() as u64;
                out.push_str(&format!(" ({}:{:02})", seconds / 60, seconds % 60));
            }
            return;
        }
    };
    out.push_str(emoji);
    out.push(' ');
    out.push_str(&file.filename);
}

/// Why a user may not send some content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// The text contains a node type that users may not send, such as a link
    /// with arbitrary text.
    #[error("users may not send {kind} nodes")]
    ForbiddenNode {
        /// The node's wire type, for example `"link"`.
        kind: &'static str,
    },
    /// An auto link's visible text does not match where it goes.
    #[error("auto link text {text:?} does not match its url {url:?}")]
    AutoLinkMismatch {
        /// The visible text.
        text: String,
        /// The link's target.
        url: String,
    },
    /// A location's latitude or longitude is out of range or not finite.
    #[error("location coordinates are out of range")]
    InvalidLocation,
    /// A text block has no visible content.
    #[error("text is empty")]
    EmptyText,
    /// Text nodes are nested more than 32 levels deep.
    #[error("text nodes are nested too deeply")]
    TooDeep,
}

/// Checks that a user may send `block`.
///
/// Links, action links and action buttons are allowed only when
/// `allow_links` is true; auto links must show their own address; locations
/// must be on the globe; text must not be blank; nesting is limited to 32
/// levels.
pub(crate) fn validate_send(
    block: &SendContentBlock,
    allow_links: bool,
) -> Result<(), ContentError> {
    match block {
        SendContentBlock::Text { children } => {
            validate_nodes(children, 1, allow_links)?;
            if !children.iter().any(has_content) {
                return Err(ContentError::EmptyText);
            }
            Ok(())
        }
        SendContentBlock::File { .. } => Ok(()),
        SendContentBlock::Location {
            latitude,
            longitude,
        } => {
            let valid = latitude.is_finite()
                && longitude.is_finite()
                && (-90.0..=90.0).contains(latitude)
                && (-180.0..=180.0).contains(longitude);
            if valid {
                Ok(())
            } else {
                Err(ContentError::InvalidLocation)
            }
        }
    }
}

/// Validates `nodes`, which sit at nesting level `depth` (top level is 1).
fn validate_nodes(nodes: &[TextNode], depth: usize, allow_links: bool) -> Result<(), ContentError> {
    if nodes.is_empty() {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(ContentError::TooDeep);
    }
    for node in nodes {
        match node {
            TextNode::Link { .. } | TextNode::ActionLink { .. } | TextNode::ActionButton { .. }
                if !allow_links =>
            {
                return Err(ContentError::ForbiddenNode {
                    kind: node.type_name(),
                });
            }
            TextNode::AutoLink { url, text } if !autolink_matches(text, url) => {
                return Err(ContentError::AutoLinkMismatch {
                    text: text.clone(),
                    url: url.clone(),
                });
            }
            _ => {}
        }
        validate_nodes(node.children(), depth + 1, allow_links)?;
    }
    Ok(())
}

/// Whether `node` shows anything besides whitespace. Only called on trees
/// whose depth was already checked.
fn has_content(node: &TextNode) -> bool {
    match node {
        TextNode::Text(text)
        | TextNode::CodeSpan { text }
        | TextNode::AutoLink { text, .. }
        | TextNode::CustomEmoji { text } => !text.trim().is_empty(),
        TextNode::Mention { .. } => true,
        other => other.children().iter().any(has_content),
    }
}

/// Whether `c` may appear in a host name.
pub(crate) fn is_host_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '.'
}

/// Whether `c` may appear in the local part of an email address.
pub(crate) fn is_email_local_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

/// Whether `host` is a dotted host name whose labels are all non-empty.
fn is_valid_host(host: &str) -> bool {
    !host.is_empty() && host.chars().all(is_host_char) && host.split('.').all(|l| !l.is_empty())
}

/// Whether `domain` can be the domain of an email address: a valid host with
/// at least two labels, ending in a top-level domain of 2+ letters.
pub(crate) fn is_email_domain(domain: &str) -> bool {
    is_valid_host(domain)
        && domain
            .rsplit_once('.')
            .is_some_and(|(_, tld)| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// Whether `text` is an email address (`local@domain.tld`).
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.chars().all(is_email_local_char)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && is_email_domain(domain)
}

/// Whether `text` is a phone number: digits, spaces, `+`, `-` and
/// parentheses, with at least five digits.
fn is_phone(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')'))
        && text.chars().filter(char::is_ascii_digit).count() >= 5
}

/// Strips `prefix` from `s`, ignoring ASCII case.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The parts of a web address; everything but the host may be absent.
struct UrlParts<'a> {
    scheme: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

/// Splits a web address (with or without `scheme://`) into its parts.
///
/// Rejects addresses with whitespace or user info (`user@host`), so a link
/// cannot hide its real host.
fn split_url(s: &str) -> Option<UrlParts<'_>> {
    if s.chars().any(char::is_whitespace) {
        return None;
    }
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (Some(scheme), rest)
        }
        _ => (None, s),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, remainder) = rest.split_at(authority_end);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (host, Some(port))
        }
        None => (authority, None),
    };
    if !is_valid_host(host) {
        return None;
    }
    let (before_fragment, fragment) = match remainder.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (remainder, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };
    Some(UrlParts {
        scheme,
        host,
        port,
        path,
        query,
        fragment,
    })
}

/// Whether an auto link showing `text` may point at `url` (the TalkJS rule).
///
/// - An email address must link to `mailto:` that address.
/// - A phone number must link to `tel:` its digits (and `+`).
/// - A website must link to the same host (ignoring case); any protocol,
///   port, path, query or fragment in the text must be the same in the url,
///   and text without a protocol must link to `http` or `https`.
pub(crate) fn autolink_matches(text: &str, url: &str) -> bool {
    if text.is_empty() || url.is_empty() {
        return false;
    }
    if let Some(address) = strip_prefix_ci(url, "mailto:") {
        let shown = strip_prefix_ci(text, "mailto:").unwrap_or(text);
        return is_email(shown) && shown.eq_ignore_ascii_case(address);
    }
    if let Some(number) = strip_prefix_ci(url, "tel:") {
        let shown = strip_prefix_ci(text, "tel:").unwrap_or(text);
        let digits: String = shown
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        return is_phone(shown) && digits == number;
    }
    if is_email(text) || is_phone(text) {
        return false;
    }
    let (Some(shown), Some(target)) = (split_url(text), split_url(url)) else {
        return false;
    };
    let Some(target_scheme) = target.scheme else {
        return false;
    };
    let scheme_ok = match shown.scheme {
        Some(scheme) => scheme.eq_ignore_ascii_case(target_scheme),
        None => {
            target_scheme.eq_ignore_ascii_case("http")
                || target_scheme.eq_ignore_ascii_case("https")
        }
    };
    let path_ok = matches!(shown.path, "" | "/") || shown.path == target.path;
    scheme_ok
        && path_ok
        && shown.host.eq_ignore_ascii_case(target.host)
        && shown.port.is_none_or(|port| target.port == Some(port))
        && shown.query.is_none_or(|query| target.query == Some(query))
        && shown
            .fragment
            .is_none_or(|fragment| target.fragment == Some(fragment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(s: &str) -> TextNode {
        TextNode::Text(s.to_owned())
    }

    fn send_text(children: Vec<TextNode>) -> SendContentBlock {
        SendContentBlock::Text { children }
    }

    fn file(kind: FileKind, name: &str) -> ContentBlock {
        ContentBlock::File(FileBlock {
            file_token: FileToken::from("tok".to_owned()),
            url: "https://files.example.com/x".to_owned(),
            size: 10,
            filename: name.to_owned(),
            kind,
        })
    }

    /// Text blocks serialize with bare strings and camelCase node types, and round-trip.
    #[test]
    fn text_block_wire_shape_round_trips() {
        let block = ContentBlock::Text {
            children: vec![
                text("hi "),
                TextNode::Bold {
                    children: vec![text("you")],
                },
                TextNode::BulletList {
                    children: vec![TextNode::BulletPoint {
                        children: vec![text("a")],
                    }],
                },
                TextNode::CodeSpan { text: "x".into() },
                TextNode::AutoLink {
                    url: "https://a.com".into(),
                    text: "a.com".into(),
                },
                TextNode::Mention {
                    id: UserId::new("u1"),
                    text: "Alice".into(),
                },
                TextNode::ActionButton {
                    action: "go".into(),
                    params: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
                    children: vec![text("Go")],
                },
            ],
        };
        let value = serde_json::to_value(&block).unwrap();
        assert_eq!(
            value,
            json!({"type": "text", "children": [
                "hi ",
                {"type": "bold", "children": ["you"]},
                {"type": "bulletList", "children": [{"type": "bulletPoint", "children": ["a"]}]},
                {"type": "codeSpan", "text": "x"},
                {"type": "autoLink", "url": "https://a.com", "text": "a.com"},
                {"type": "mention", "id": "u1", "text": "Alice"},
                {"type": "actionButton", "action": "go", "params": {"k": "v"}, "children": ["Go"]},
            ]})
        );
        let back: ContentBlock = serde_json::from_value(value).unwrap();
        assert_eq!(back, block);
    }

    /// Every tagged node type deserializes from its TalkJS JSON.
    #[test]
    fn all_node_types_deserialize() {
        let nodes: Vec<TextNode> = serde_json::from_value(json!([
            "t",
            {"type": "italic", "children": ["i"]},
            {"type": "strikethrough", "children": []},
            {"type": "link", "url": "https://x.io", "children": ["x"], "extra": 1},
            {"type": "actionLink", "action": "a", "params": {}, "children": []},
            {"type": "customEmoji", "text": ":p:"},
        ]))
        .unwrap();
        assert_eq!(nodes.len(), 6);
        assert_eq!(
            nodes[3],
            TextNode::Link {
                url: "https://x.io".into(),
                children: vec![text("x")]
            }
        );
        assert_eq!(nodes[5], TextNode::CustomEmoji { text: ":p:".into() });
        for node in &nodes {
            let again: TextNode =
                serde_json::from_value(serde_json::to_value(node).unwrap()).unwrap();
            assert_eq!(&again, node);
        }
    }

    /// Unknown node types, missing fields and empty mention ids are errors, not panics.
    #[test]
    fn bad_nodes_fail_with_clear_messages() {
        let err = serde_json::from_value::<TextNode>(json!({"type": "blink", "children": []}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown text node type `blink`"), "{err}");
        let err = serde_json::from_value::<TextNode>(json!({"type": "bold"})).unwrap_err();
        assert!(err.to_string().contains("missing field `children`"));
        let err = serde_json::from_value::<TextNode>(json!({"children": []})).unwrap_err();
        assert!(err.to_string().contains("missing field `type`"));
        assert!(
            serde_json::from_value::<TextNode>(json!({"type": "mention", "id": "", "text": "x"}))
                .is_err()
        );
        assert!(serde_json::from_value::<TextNode>(json!(5)).is_err());
        assert!(serde_json::from_value::<ContentBlock>(json!({"type": "poll"})).is_err());
    }

    /// File blocks use the flat TalkJS shape with a subtype.
    #[test]
    fn file_block_wire_shape() {
        let block = ContentBlock::File(FileBlock {
            file_token: FileToken::from("ft".to_owned()),
            url: "https://f/x.png".into(),
            size: 42,
            filename: "x.png".into(),
            kind: FileKind::Image {
                width: Some(3),
                height: Some(4),
            },
        });
        let value = serde_json::to_value(&block).unwrap();
        assert_eq!(
            value,
            json!({"type": "file", "subtype": "image", "fileToken": "ft", "url": "https://f/x.png",
                   "size": 42, "filename": "x.png", "width": 3, "height": 4})
        );
        assert_eq!(
            serde_json::from_value::<ContentBlock>(value).unwrap(),
            block
        );
        let voice = file(
            FileKind::Voice {
                duration: Some(3.5),
            },
            "v.ogg",
        );
        let value = serde_json::to_value(&voice).unwrap();
        assert_eq!(value["subtype"], "voice");
        assert_eq!(value["duration"], 3.5);
        assert_eq!(
            serde_json::from_value::<ContentBlock>(value).unwrap(),
            voice
        );
    }

    /// A missing or unknown subtype gives a generic file, and generic files omit the subtype.
    #[test]
    fn unknown_or_missing_subtype_is_generic() {
        let base =
            json!({"type": "file", "fileToken": "t", "url": "u", "size": 1, "filename": "f"});
        let block: ContentBlock = serde_json::from_value(base.clone()).unwrap();
        let ContentBlock::File(f) = &block else {
            panic!("not a file")
        };
        assert_eq!(f.kind, FileKind::Generic);
        assert_eq!(f.file_token.as_str(), "t");
        assert_eq!(serde_json::to_value(&block).unwrap(), base);
        let mut odd = base;
        odd["subtype"] = json!("hologram");
        odd["width"] = json!(5);
        let ContentBlock::File(f) = serde_json::from_value::<ContentBlock>(odd).unwrap() else {
            panic!("not a file")
        };
        assert_eq!(f.kind, FileKind::Generic);
    }

    /// Send blocks and locations use the same "type" tagging.
    #[test]
    fn send_block_wire_shape() {
        let file = SendContentBlock::File {
            file_token: FileToken::from("abc".to_owned()),
        };
        assert_eq!(
            serde_json::to_value(&file).unwrap(),
            json!({"type": "file", "fileToken": "abc"})
        );
        let loc: SendContentBlock =
            serde_json::from_value(json!({"type": "location", "latitude": 1.5, "longitude": -2}))
                .unwrap();
        assert_eq!(
            loc,
            SendContentBlock::Location {
                latitude: 1.5,
                longitude: -2.0
            }
        );
        let loc: ContentBlock =
            serde_json::from_value(json!({"type": "location", "latitude": 0, "longitude": 0}))
                .unwrap();
        assert_eq!(
            loc,
            ContentBlock::Location {
                latitude: 0.0,
                longitude: 0.0
            }
        );
    }

    /// Plain text flattens formatting, lists bullets, and joins blocks with blank lines.
    #[test]
    fn plaintext_renders_nodes_and_blocks() {
        let content = vec![
            ContentBlock::Text {
                children: vec![
                    text("Hi "),
                    TextNode::Bold {
                        children: vec![TextNode::Italic {
                            children: vec![text("there")],
                        }],
                    },
                    text(" "),
                    TextNode::Mention {
                        id: UserId::new("u"),
                        text: "Bob".into(),
                    },
                    text(" "),
                    TextNode::Link {
                        url: "https://x".into(),
                        children: vec![text("site")],
                    },
                    text(" "),
                    TextNode::AutoLink {
                        url: "https://a.com".into(),
                        text: "a.com".into(),
                    },
                    TextNode::CodeSpan { text: "`c`".into() },
                    TextNode::CustomEmoji { text: ":x:".into() },
                    TextNode::ActionLink {
                        action: "a".into(),
                        params: BTreeMap::new(),
                        children: vec![text("act")],
                    },
                    text("\n"),
                    TextNode::BulletList {
                        children: vec![
                            TextNode::BulletPoint {
                                children: vec![text("one")],
                            },
                            TextNode::BulletPoint {
                                children: vec![TextNode::Bold {
                                    children: vec![text("two")],
                                }],
                            },
                        ],
                    },
                ],
            },
            ContentBlock::Location {
                latitude: 1.0,
                longitude: 2.0,
            },
        ];
        assert_eq!(
            plaintext(&content),
            "Hi there Bob site a.com`c`:x:act\n- one\n- two\n\n📍"
        );
        assert_eq!(plaintext(&[]), "");
    }

    /// Each file kind renders with its emoji; voice shows rounded m:ss.
    #[test]
    fn plaintext_renders_files() {
        let cases = [
            (FileKind::Generic, "📎 a.pdf"),
            (
                FileKind::Image {
                    width: None,
                    height: None,
                },
                "📷 a.pdf",
            ),
            (
                FileKind::Video {
                    width: None,
                    height: None,
                    duration: Some(3.0),
                },
                "🎥 a.pdf",
            ),
            (FileKind::Audio { duration: None }, "🎧 a.pdf"),
            (
                FileKind::Voice {
                    duration: Some(65.4),
                },
                "🎙️ (1:05)",
            ),
            (
                FileKind::Voice {
                    duration: Some(59.6),
                },
                "🎙️ (1:00)",
            ),
            (
                FileKind::Voice {
                    duration: Some(0.2),
                },
                "🎙️ (0:00)",
            ),
            (FileKind::Voice { duration: None }, "🎙️"),
            (
                FileKind::Voice {
                    duration: Some(f64::NAN),
                },
                "🎙️",
            ),
        ];
        for (kind, expected) in cases {
            assert_eq!(plaintext(&[file(kind, "a.pdf")]), expected);
        }
    }

    /// Rendering a pathologically deep tree does not overflow the stack.
    #[test]
    fn plaintext_handles_deep_nesting() {
        let mut node = text("x");
        for _ in 0..10_000 {
            node = TextNode::Bold {
                children: vec![node],
            };
        }
        let content = [ContentBlock::Text {
            children: vec![node],
        }];
        assert_eq!(plaintext(&content), "x");
        // Drop iteratively to avoid recursive drop on a small test stack.
        let [ContentBlock::Text { mut children }] = content else {
            unreachable!()
        };
        while let Some(TextNode::Bold { children: inner }) = children.pop() {
            children = inner;
        }
    }

    /// Links, action links and action buttons are forbidden anywhere unless allowed.
    #[test]
    fn validate_forbids_links_unless_allowed() {
        let link = TextNode::Link {
            url: "https://x.com".into(),
            children: vec![text("x")],
        };
        let nested = send_text(vec![TextNode::Bold {
            children: vec![text("a "), link],
        }]);
        assert_eq!(
            validate_send(&nested, false),
            Err(ContentError::ForbiddenNode { kind: "link" })
        );
        assert_eq!(validate_send(&nested, true), Ok(()));
        let button = send_text(vec![TextNode::ActionButton {
            action: "a".into(),
            params: BTreeMap::new(),
            children: vec![text("b")],
        }]);
        let err = validate_send(&button, false).unwrap_err();
        assert_eq!(err.to_string(), "users may not send actionButton nodes");
        let action_link = send_text(vec![TextNode::ActionLink {
            action: "a".into(),
            params: BTreeMap::new(),
            children: vec![text("b")],
        }]);
        assert!(validate_send(&action_link, false).is_err());
        assert!(validate_send(&action_link, true).is_ok());
    }

    /// Auto links are checked, and blank text is rejected.
    #[test]
    fn validate_autolinks_and_empty_text() {
        let good = send_text(vec![TextNode::AutoLink {
            url: "https://a.com".into(),
            text: "a.com".into(),
        }]);
        assert_eq!(validate_send(&good, false), Ok(()));
        let bad = send_text(vec![TextNode::AutoLink {
            url: "https://evil.com".into(),
            text: "a.com".into(),
        }]);
        assert_eq!(
            validate_send(&bad, true),
            Err(ContentError::AutoLinkMismatch {
                text: "a.com".into(),
                url: "https://evil.com".into()
            })
        );
        assert_eq!(
            validate_send(&send_text(vec![]), false),
            Err(ContentError::EmptyText)
        );
        assert_eq!(
            validate_send(
                &send_text(vec![
                    text(""),
                    text(" \n\t"),
                    TextNode::Bold { children: vec![] }
                ]),
                false
            ),
            Err(ContentError::EmptyText)
        );
        let mention = send_text(vec![TextNode::Mention {
            id: UserId::new("u"),
            text: String::new(),
        }]);
        assert_eq!(validate_send(&mention, false), Ok(()));
        let file = SendContentBlock::File {
            file_token: FileToken::from(String::from("t")),
        };
        assert_eq!(validate_send(&file, false), Ok(()));
    }

    /// Locations must be finite and on the globe.
    #[test]
    fn validate_locations() {
        let loc = |latitude, longitude| SendContentBlock::Location {
            latitude,
            longitude,
        };
        assert_eq!(validate_send(&loc(90.0, -180.0), false), Ok(()));
        assert_eq!(validate_send(&loc(-90.0, 180.0), false), Ok(()));
        for (lat, lon) in [
            (90.1, 0.0),
            (0.0, -180.5),
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
        ] {
            assert_eq!(
                validate_send(&loc(lat, lon), false),
                Err(ContentError::InvalidLocation)
            );
        }
    }

    /// Nesting up to 32 levels is fine; deeper is an error rather than a crash.
    #[test]
    fn validate_limits_depth() {
        let nest = |levels: usize| {
            let mut node = text("x");
            for _ in 1..levels {
                node = TextNode::Italic {
                    children: vec![node],
                };
            }
            send_text(vec![node])
        };
        assert_eq!(validate_send(&nest(32), false), Ok(()));
        assert_eq!(validate_send(&nest(33), false), Err(ContentError::TooDeep));
        assert_eq!(
            validate_send(&nest(2000), false),
            Err(ContentError::TooDeep)
        );
    }

    /// Email and phone auto links must pair with mailto: and tel: urls.
    #[test]
    fn autolink_email_and_phone() {
        assert!(autolink_matches("me@example.com", "mailto:me@example.com"));
        assert!(autolink_matches("Me@Example.com", "MAILTO:me@example.com"));
        assert!(!autolink_matches(
            "me@example.com",
            "mailto:you@example.com"
        ));
        assert!(!autolink_matches("me@example.com", "https://example.com"));
        assert!(!autolink_matches("example.com", "mailto:me@example.com"));
        assert!(autolink_matches("+1 (555) 123-4567", "tel:+15551234567"));
        assert!(!autolink_matches("+1 (555) 123-4567", "tel:+15551234568"));
        assert!(!autolink_matches("1234", "tel:1234"));
        assert!(!autolink_matches("555-1234", "https://evil.com"));
        assert!(!autolink_matches("", "https://a.com"));
    }

    /// Website auto links need the same host, and any shown parts must match.
    #[test]
    fn autolink_websites() {
        let yes = [
            ("example.com", "https://example.com"),
            ("example.com", "http://example.com/"),
            ("Example.COM", "https://example.com/anything?q=1"),
            ("www.example.com", "https://www.example.com"),
            ("https://example.com/a?b=c#d", "https://EXAMPLE.com/a?b=c#d"),
            ("example.com/", "https://example.com"),
            ("example.com/path", "https://example.com/path"),
            ("localhost:3000/x", "http://localhost:3000/x"),
            ("ftp://files.example.com", "ftp://files.example.com/"),
        ];
        for (text, url) in yes {
            assert!(autolink_matches(text, url), "{text} -> {url} should match");
        }
        let no = [
            ("example.com", "https://evil.com"),
            ("example.com", "ftp://example.com"),
            ("example.com", "example.com"),
            ("http://example.com", "https://example.com"),
            ("example.com/a", "https://example.com/b"),
            ("example.com?q=1", "https://example.com?q=2"),
            ("example.com#top", "https://example.com"),
            ("example.com:8080", "https://example.com"),
            ("example.com", "https://example.com@evil.com"),
            ("example.com", "https://example.com.evil.com"),
            ("www.example.com", "https://example.com"),
            ("exa mple.com", "https://exa mple.com"),
            ("example.com", "javascript://example.com/%0aalert(1)"),
        ];
        for (text, url) in no {
            assert!(
                !autolink_matches(text, url),
                "{text} -> {url} should not match"
            );
        }
    }
}
