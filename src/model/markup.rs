//! The markup parser behind `send(text)`: turns what a user typed into text
//! nodes.
//!
//! Supported: `*bold*`, `_italic_`, `~strikethrough~`, `` `code` ``, bullet
//! lines (`- ` or `* `), bare URLs and email addresses (auto links) and
//! `<@user_id>` mentions. Anything else stays plain text; the parser never
//! fails and never produces links with arbitrary text, action links or
//! action buttons.
//!
//! The parser runs in linear time: each delimiter is handled in amortized
//! constant time and link detection never rescans text.
//!
//! The output is bounded too: one message gets at most [`MAX_MARKUP_NODES`]
//! formatting, link, code, mention and bullet nodes; the text after the node
//! that reaches the cap stays plain text (its markup characters included), so
//! nothing the user typed is lost. The serialized JSON of the parsed content
//! is therefore at most twice the JSON of the input text (auto links and
//! mentions repeat their text) plus about 64 bytes per node.

use super::UserId;
use super::content::{TextNode, is_email_domain, is_email_local_char, is_host_char};

/// Top-level domains longer than two letters that bare domains (typed
/// without `http://` or `www.`) may use; every two-letter (country) domain
/// is accepted too. Kept short to avoid linking ordinary words.
const KNOWN_TLDS: &[&str] = &[
    "com", "org", "net", "edu", "gov", "mil", "int", "info", "biz", "dev", "app", "xyz", "online",
    "site", "tech",
];

/// Whether `tld` looks like a real top-level domain of a bare domain: two
/// lowercase letters, or a well-known longer one. Requiring lowercase keeps
/// sentences with a missing space (`end.It`) from becoming links.
fn is_known_tld(tld: &str) -> bool {
    (tld.len() == 2 && tld.bytes().all(|b| b.is_ascii_lowercase())) || KNOWN_TLDS.contains(&tld)
}

/// The most nodes other than plain text (bold, italic, strikethrough, code
/// spans, mentions, auto links, bullet lists and bullet points) that
/// [`parse_markup`] creates for one message. Past it the rest of the message
/// stays plain text, markup characters included.
pub(crate) const MAX_MARKUP_NODES: usize = 1_000;

/// Parses user-typed markup into text nodes. Never fails: anything that is
/// not valid markup stays plain text.
///
/// At most [`MAX_MARKUP_NODES`] nodes other than plain text are created; the
/// text after the last of them stays plain text. This bounds the stored size
/// of a message: its JSON is at most twice the JSON of `text` plus about 64
/// bytes per node (64 KB for the whole cap).
pub(crate) fn parse_markup(text: &str) -> Vec<TextNode> {
    parse_markup_with_budget(text, MAX_MARKUP_NODES)
}

/// [`parse_markup`] creating at most `budget` nodes other than plain text.
fn parse_markup_with_budget(text: &str, mut budget: usize) -> Vec<TextNode> {
    let mut out = Vec::new();
    let mut points: Option<Vec<TextNode>> = None;
    for (index, line) in text.split('\n').enumerate() {
        // A point costs one node, and a new list one more.
        let cost = if points.is_some() { 1 } else { 2 };
        let bullet = line
            .strip_prefix("- ")
            .or_else(|| line.strip_prefix("* "))
            .filter(|rest| budget >= cost && !rest.trim().is_empty());
        match bullet {
            Some(rest) => {
                budget -= cost;
                let point = TextNode::BulletPoint {
                    children: parse_line(rest, &mut budget),
                };
                match &mut points {
                    Some(points) => points.push(point),
                    None => {
                        if index > 0 {
                            push_text(&mut out, "\n");
                        }
                        points = Some(vec![point]);
                    }
                }
            }
            None => {
                if let Some(children) = points.take() {
                    out.push(TextNode::BulletList { children });
                    push_text(&mut out, "\n");
                } else if index > 0 {
                    push_text(&mut out, "\n");
                }
                extend_merged(&mut out, parse_line(line, &mut budget));
            }
        }
    }
    if let Some(children) = points {
        out.push(TextNode::BulletList { children });
    }
    out
}

/// Appends plain text, merging it into a preceding text node.
fn push_text(nodes: &mut Vec<TextNode>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(TextNode::Text(last)) = nodes.last_mut() {
        last.push_str(text);
    } else {
        nodes.push(TextNode::Text(text.to_owned()));
    }
}

/// Appends `more` to `nodes`, keeping adjacent text merged.
fn extend_merged(nodes: &mut Vec<TextNode>, more: Vec<TextNode>) {
    let mut more = more.into_iter();
    match more.next() {
        Some(TextNode::Text(text)) => push_text(nodes, &text),
        Some(node) => nodes.push(node),
        None => return,
    }
    nodes.extend(more);
}

/// Which formatting a delimiter character stands for.
fn delimiter_slot(c: char) -> usize {
    match c {
        '*' => 0,
        '_' => 1,
        _ => 2,
    }
}

/// Wraps parsed nodes in the formatting node for delimiter `c`.
fn wrap(c: char, children: Vec<TextNode>) -> TextNode {
    match c {
        '*' => TextNode::Bold { children },
        '_' => TextNode::Italic { children },
        _ => TextNode::Strikethrough { children },
    }
}

/// An open delimiter (or the line itself, at the bottom) and what has been
/// parsed since it.
struct Frame {
    /// The delimiter character; `None` for the line.
    delimiter: Option<char>,
    /// Whether the delimiter can still be closed. A delimiter dies when a
    /// later delimiter of the same kind is closed inside it, so the same
    /// formatting never nests (and nesting depth stays at most 3).
    live: bool,
    /// The nodes parsed since the delimiter, text merged.
    nodes: Vec<TextNode>,
}

/// Inline parsing state for one line.
struct LineParser<'a> {
    line: &'a str,
    /// Open delimiters; `frames[0]` is the line itself.
    frames: Vec<Frame>,
    /// For each delimiter kind, the indexes of its live frames, innermost last.
    open: [Vec<usize>; 3],
    /// Memo for email detection: the end of the email-local-part run that
    /// starts at or before the current position, and the end of a valid
    /// email starting in that run, if any.
    email_run: Option<(usize, Option<usize>)>,
    /// How many more nodes other than plain text may be created.
    budget: usize,
}

/// Parses one line (no `\n`) of inline markup, creating at most `budget`
/// nodes other than plain text and counting them off it.
fn parse_line(line: &str, budget: &mut usize) -> Vec<TextNode> {
    let mut parser = LineParser {
        line,
        frames: vec![Frame {
            delimiter: None,
            live: false,
            nodes: Vec::new(),
        }],
        open: [Vec::new(), Vec::new(), Vec::new()],
        email_run: None,
        budget: *budget,
    };
    parser.run();
    *budget = parser.budget;
    parser.finish()
}

/// Whether a link may be followed by `c`.
fn ends_link_before(c: Option<char>) -> bool {
    c.is_none_or(|c| c.is_whitespace() || ".,;:!?)]}'\"*_~<>`".contains(c))
}

/// Whether a link may not end with `c` (it is punctuation around the link).
fn is_trailing_punctuation(c: char) -> bool {
    ".,;:!?)]}'\"*_~".contains(c)
}

impl LineParser<'_> {
    /// The character just before byte `at`.
    fn char_before(&self, at: usize) -> Option<char> {
        self.line.get(..at).and_then(|s| s.chars().next_back())
    }

    /// The character starting at byte `at`.
    fn char_at(&self, at: usize) -> Option<char> {
        self.line.get(at..).and_then(|s| s.chars().next())
    }

    /// Whether a link may start at byte `pos`: at the start of the line, or
    /// after whitespace, an opening bracket or quote, or a formatting
    /// delimiter that is not inside a word.
    fn link_may_start(&self, pos: usize) -> bool {
        match self.char_before(pos) {
            None => true,
            Some(c) if c.is_whitespace() || "([{<>\"'".contains(c) => true,
            Some('*' | '_' | '~') => self
                .char_before(pos - 1)
                .is_none_or(|c| !c.is_alphanumeric()),
            Some(_) => false,
        }
    }

    /// The innermost frame's nodes.
    fn top(&mut self) -> &mut Vec<TextNode> {
        let last = self.frames.len() - 1;
        &mut self.frames[last].nodes
    }

    /// Scans the line, emitting nodes into frames, until the line or the
    /// node budget ends; the rest of the line is plain text.
    fn run(&mut self) {
        let line = self.line;
        let mut pos = 0;
        let mut text_start = 0;
        // Each step creates at most one node (an atom, or a closed delimiter).
        while self.budget > 0
            && let Some(c) = self.char_at(pos)
        {
            let atom: Option<(usize, Option<TextNode>)> = match c {
                '`' => self.code_span(pos).map(|(end, node)| (end, Some(node))),
                '<' => self.mention(pos).map(|(end, node)| (end, Some(node))),
                '*' | '_' | '~' => Some((pos + 1, None)),
                c if c.is_alphanumeric() && self.link_may_start(pos) => self
                    .email(pos)
                    .or_else(|| self.url(pos))
                    .map(|(end, node)| (end, Some(node))),
                _ => None,
            };
            match atom {
                Some((end, node)) => {
                    let pending = &line[text_start..pos];
                    push_text(self.top(), pending);
                    match node {
                        Some(node) => {
                            self.budget -= 1;
                            self.top().push(node);
                        }
                        None => self.delimiter(pos, c),
                    }
                    pos = end;
                    text_start = end;
                }
                None => pos += c.len_utf8(),
            }
        }
        let rest = &line[text_start..];
        push_text(self.top(), rest);
    }

    /// Matches a code span starting at the backtick at `pos`.
    fn code_span(&self, pos: usize) -> Option<(usize, TextNode)> {
        let content_start = pos + 1;
        let len = self.line[content_start..].find('`')?;
        if len == 0 {
            return None;
        }
        let end = content_start + len;
        let text = self.line[content_start..end].to_owned();
        Some((end + 1, TextNode::CodeSpan { text }))
    }

    /// Matches a `<@user_id>` mention starting at `pos`.
    fn mention(&self, pos: usize) -> Option<(usize, TextNode)> {
        let rest = self.line[pos..].strip_prefix("<@")?;
        let len = rest.find(|c: char| c == '>' || c == '<' || c.is_whitespace())?;
        if !rest[len..].starts_with('>') {
            return None;
        }
        let id = UserId::try_new(&rest[..len]).ok()?;
        let text = id.as_str().to_owned();
        Some((pos + 2 + len + 1, TextNode::Mention { id, text }))
    }

    /// Matches an email address starting at `pos` (the start of a word).
    fn email(&mut self, pos: usize) -> Option<(usize, TextNode)> {
        let (run_end, email_end) = match self.email_run {
            Some((run_end, email_end)) if pos < run_end => (run_end, email_end),
            _ => {
                let run_len = self.line[pos..]
                    .find(|c: char| !is_email_local_char(c))
                    .unwrap_or(self.line.len() - pos);
                let run_end = pos + run_len;
                let email_end = self.email_domain_end(run_end);
                self.email_run = Some((run_end, email_end));
                (run_end, email_end)
            }
        };
        let end = email_end?;
        let local = &self.line[pos..run_end];
        if local.starts_with('.') || local.ends_with('.') {
            return None;
        }
        let text = self.line[pos..end].to_owned();
        let url = format!("mailto:{text}");
        Some((end, TextNode::AutoLink { url, text }))
    }

    /// If an `@` and a valid email domain follow byte `at`, where the domain ends.
    fn email_domain_end(&self, at: usize) -> Option<usize> {
        let domain_start = at + self.line[at..].strip_prefix('@').map(|_| 1)?;
        let domain_end = self.host_end(domain_start);
        let domain = &self.line[domain_start..domain_end];
        (is_email_domain(domain) && ends_link_before(self.char_at(domain_end)))
            .then_some(domain_end)
    }

    /// The end of the host name starting at `start`, without trailing `.`/`-`.
    fn host_end(&self, start: usize) -> usize {
        let rest = &self.line[start..];
        let raw = rest.find(|c: char| !is_host_char(c)).unwrap_or(rest.len());
        start + rest[..raw].trim_end_matches(['.', '-']).len()
    }

    /// Matches a web address starting at `pos` (the start of a word).
    fn url(&self, pos: usize) -> Option<(usize, TextNode)> {
        let line = self.line;
        let rest = &line[pos..];
        let scheme = ["https://", "http://"].into_iter().find(|scheme| {
            rest.get(..scheme.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        });
        let host_start = pos + scheme.map_or(0, str::len);
        let host_end = self.host_end(host_start);
        let host = &line[host_start..host_end];
        if host.is_empty() || host.split('.').any(str::is_empty) {
            return None;
        }
        if scheme.is_none() {
            let bare = match host.get(..4) {
                Some(www) if www.eq_ignore_ascii_case("www.") => &host[4..],
                _ => host,
            };
            let tld = bare.rsplit_once('.').map(|(_, tld)| tld);
            let www_ok = bare.len() < host.len() && !bare.is_empty();
            if !www_ok && !tld.is_some_and(is_known_tld) {
                return None;
            }
        }
        let mut end = host_end;
        // An optional port.
        if let Some(port) = line[end..].strip_prefix(':') {
            let digits = port
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(port.len());
            if (1..=5).contains(&digits) {
                end += 1 + digits;
            }
        }
        // An optional path, query or fragment: up to whitespace or a
        // character that cannot be part of a typed URL.
        if line[end..].starts_with(['/', '?', '#']) {
            let tail = &line[end..];
            end += tail
                .find(|c: char| c.is_whitespace() || "<>\"`".contains(c))
                .unwrap_or(tail.len());
        }
        if !ends_link_before(self.char_at(end)) {
            return None;
        }
        // Drop trailing punctuation, keeping closing brackets that are balanced.
        let candidate = &line[pos..end];
        let mut balance: [isize; 3] = [0; 3];
        for c in candidate.chars() {
            match c {
                '(' => balance[0] += 1,
                ')' => balance[0] -= 1,
                '[' => balance[1] += 1,
                ']' => balance[1] -= 1,
                '{' => balance[2] += 1,
                '}' => balance[2] -= 1,
                _ => {}
            }
        }
        while let Some(c) = line[..end].chars().next_back() {
            if end <= host_end || !is_trailing_punctuation(c) {
                break;
            }
            let slot = match c {
                ')' => Some(0),
                ']' => Some(1),
                '}' => Some(2),
                _ => None,
            };
            if let Some(slot) = slot {
                if balance[slot] >= 0 {
                    break;
                }
                balance[slot] += 1;
            }
            end -= c.len_utf8();
        }
        let text = line[pos..end].to_owned();
        let url = match scheme {
            Some(scheme) => format!("{}{}", scheme.to_ascii_lowercase(), &line[host_start..end]),
            None => format!("https://{text}"),
        };
        Some((end, TextNode::AutoLink { url, text }))
    }

    /// Handles the delimiter `c` at byte `pos`: closes a matching open
    /// delimiter, opens a new one, or keeps it as text.
    fn delimiter(&mut self, pos: usize, c: char) {
        let before = self.char_before(pos);
        let after = self.char_at(pos + 1);
        let can_open = after.is_some_and(|a| !a.is_whitespace())
            && before.is_none_or(|b| !b.is_alphanumeric());
        let can_close = before.is_some_and(|b| !b.is_whitespace())
            && after.is_none_or(|a| !a.is_alphanumeric());
        let slot = delimiter_slot(c);
        // A closer needs an open delimiter of its kind with something between them.
        let closable = self.open[slot]
            .last()
            .copied()
            .filter(|&index| index + 1 < self.frames.len() || !self.frames[index].nodes.is_empty());
        if let (true, Some(index)) = (can_close, closable) {
            self.close(index, c);
            return;
        }
        if can_open {
            self.open[slot].push(self.frames.len());
            self.frames.push(Frame {
                delimiter: Some(c),
                live: true,
                nodes: Vec::new(),
            });
        } else {
            let mut buf = [0; 4];
            push_text(self.top(), c.encode_utf8(&mut buf));
        }
    }

    /// Moves every frame above `index` into frame `index`, their delimiters
    /// becoming literal text.
    fn collapse_above(&mut self, index: usize) {
        let above: Vec<Frame> = self.frames.drain(index + 1..).collect();
        for frame in above {
            let target = &mut self.frames[index].nodes;
            if let Some(delimiter) = frame.delimiter {
                if frame.live {
                    self.open[delimiter_slot(delimiter)].pop();
                }
                let mut buf = [0; 4];
                push_text(target, delimiter.encode_utf8(&mut buf));
            }
            extend_merged(target, frame.nodes);
        }
    }

    /// Closes the frame at `index` with delimiter `c`.
    fn close(&mut self, index: usize, c: char) {
        self.collapse_above(index);
        let slot = delimiter_slot(c);
        let Some(frame) = self.frames.pop() else {
            return;
        };
        // Outer delimiters of the same kind can no longer close: that would
        // nest the same formatting.
        for outer in self.open[slot].drain(..) {
            if let Some(frame) = self.frames.get_mut(outer) {
                frame.live = false;
            }
        }
        let node = wrap(c, frame.nodes);
        self.budget -= 1;
        self.top().push(node);
    }

    /// Turns unclosed delimiters into text and returns the line's nodes.
    fn finish(mut self) -> Vec<TextNode> {
        self.collapse_above(0);
        self.frames
            .pop()
            .map(|frame| frame.nodes)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::super::content::{
        ContentBlock, ContentError, SendContentBlock, autolink_matches, plaintext, validate_send,
    };
    use super::*;

    fn text(s: &str) -> TextNode {
        TextNode::Text(s.to_owned())
    }

    fn bold(children: Vec<TextNode>) -> TextNode {
        TextNode::Bold { children }
    }

    fn italic(children: Vec<TextNode>) -> TextNode {
        TextNode::Italic { children }
    }

    fn auto(text: &str, url: &str) -> TextNode {
        TextNode::AutoLink {
            url: url.to_owned(),
            text: text.to_owned(),
        }
    }

    fn render(nodes: Vec<TextNode>) -> String {
        plaintext(&[ContentBlock::Text { children: nodes }])
    }

    /// Walks a node tree, checking no adjacent or empty text nodes and no forbidden nodes.
    fn assert_well_formed(nodes: &[TextNode]) {
        let mut previous_text = false;
        for node in nodes {
            match node {
                TextNode::Text(s) => {
                    assert!(!s.is_empty(), "empty text node in {nodes:?}");
                    assert!(!previous_text, "adjacent text nodes in {nodes:?}");
                    previous_text = true;
                    continue;
                }
                TextNode::Link { .. }
                | TextNode::ActionLink { .. }
                | TextNode::ActionButton { .. } => {
                    panic!("forbidden node {node:?}")
                }
                TextNode::AutoLink { url, text } => {
                    assert!(autolink_matches(text, url), "{text} -> {url}")
                }
                TextNode::Bold { children }
                | TextNode::Italic { children }
                | TextNode::Strikethrough { children }
                | TextNode::BulletList { children }
                | TextNode::BulletPoint { children } => assert_well_formed(children),
                _ => {}
            }
            previous_text = false;
        }
    }

    /// Plain text without markup is a single text node.
    #[test]
    fn plain_text_is_one_node() {
        assert_eq!(parse_markup("hello world"), vec![text("hello world")]);
        assert_eq!(parse_markup(""), vec![]);
        assert_eq!(parse_markup("a\nb"), vec![text("a\nb")]);
    }

    /// The three delimiters produce bold, italic and strikethrough.
    #[test]
    fn basic_formatting() {
        assert_eq!(parse_markup("*bold*"), vec![bold(vec![text("bold")])]);
        assert_eq!(
            parse_markup("an _italic_ word"),
            vec![text("an "), italic(vec![text("italic")]), text(" word")]
        );
        assert_eq!(
            parse_markup("~gone~!"),
            vec![
                TextNode::Strikethrough {
                    children: vec![text("gone")]
                },
                text("!")
            ]
        );
    }

    /// Formatting nests: bold containing italic and the reverse.
    #[test]
    fn nesting() {
        assert_eq!(
            parse_markup("*bold _and italic_*"),
            vec![bold(vec![text("bold "), italic(vec![text("and italic")])])]
        );
        assert_eq!(
            parse_markup("_~*all*~_"),
            vec![italic(vec![TextNode::Strikethrough {
                children: vec![bold(vec![text("all")])]
            }])]
        );
    }

    /// Crossed delimiters keep the inner one literal.
    #[test]
    fn crossed_delimiters() {
        assert_eq!(
            parse_markup("*a _b* c_"),
            vec![bold(vec![text("a _b")]), text(" c_")]
        );
    }

    /// The same formatting never nests inside itself.
    #[test]
    fn same_kind_does_not_nest() {
        assert_eq!(
            parse_markup("*a *b* c*"),
            vec![text("*a "), bold(vec![text("b")]), text(" c*")]
        );
    }

    /// Unclosed or lone delimiters stay literal.
    #[test]
    fn unclosed_delimiters_are_literal() {
        for s in [
            "*bold",
            "bold*",
            "_x",
            "~",
            "**",
            "x * not bold*",
            "*not bold *",
            "a * b * c",
            "*",
            "_ _",
        ] {
            assert_eq!(parse_markup(s), vec![text(s)], "{s}");
        }
    }

    /// Delimiters must not be inside words; intraword underscores stay literal.
    #[test]
    fn intraword_delimiters_are_literal() {
        for s in ["snake_case_name", "2*3*4", "a~b~c", "file_name.txt"] {
            assert_eq!(parse_markup(s), vec![text(s)], "{s}");
        }
    }

    /// Delimiters do not span lines.
    #[test]
    fn delimiters_stay_on_one_line() {
        assert_eq!(parse_markup("*a\nb*"), vec![text("*a\nb*")]);
    }

    /// Code spans keep their content literal, even markup characters.
    #[test]
    fn code_spans() {
        assert_eq!(
            parse_markup("run `a*b*c _d_` now"),
            vec![
                text("run "),
                TextNode::CodeSpan {
                    text: "a*b*c _d_".into()
                },
                text(" now")
            ]
        );
        assert_eq!(
            parse_markup("*`x`*"),
            vec![bold(vec![TextNode::CodeSpan { text: "x".into() }])]
        );
        assert_eq!(parse_markup("`unclosed"), vec![text("`unclosed")]);
        assert_eq!(parse_markup("``"), vec![text("``")]);
        assert_eq!(
            parse_markup("`<@u1> example.com`"),
            vec![TextNode::CodeSpan {
                text: "<@u1> example.com".into()
            }]
        );
    }

    /// Consecutive bullet lines become one list; surrounding newlines stay as text.
    #[test]
    fn bullet_lists() {
        let point = |children| TextNode::BulletPoint { children };
        assert_eq!(
            parse_markup("Shopping:\n- eggs\n* *milk*\nthanks"),
            vec![
                text("Shopping:\n"),
                TextNode::BulletList {
                    children: vec![
                        point(vec![text("eggs")]),
                        point(vec![bold(vec![text("milk")])])
                    ]
                },
                text("\nthanks"),
            ]
        );
        assert_eq!(
            parse_markup("- a\n\n- b"),
            vec![
                TextNode::BulletList {
                    children: vec![point(vec![text("a")])]
                },
                text("\n\n"),
                TextNode::BulletList {
                    children: vec![point(vec![text("b")])]
                },
            ]
        );
        assert_eq!(render(parse_markup("x\n- a\n- b\ny")), "x\n- a\n- b\ny");
        assert_eq!(parse_markup("- "), vec![text("- ")]);
        assert_eq!(parse_markup("-no space"), vec![text("-no space")]);
    }

    /// Bare URLs become auto links with the typed text and a normalized url.
    #[test]
    fn urls_are_autolinked() {
        assert_eq!(
            parse_markup("see https://example.com/a?b=c#d ok"),
            vec![
                text("see "),
                auto("https://example.com/a?b=c#d", "https://example.com/a?b=c#d"),
                text(" ok")
            ]
        );
        assert_eq!(
            parse_markup("www.example.com"),
            vec![auto("www.example.com", "https://www.example.com")]
        );
        assert_eq!(
            parse_markup("go to example.com/path"),
            vec![
                text("go to "),
                auto("example.com/path", "https://example.com/path")
            ]
        );
        assert_eq!(
            parse_markup("HTTP://Example.com"),
            vec![auto("HTTP://Example.com", "http://Example.com")]
        );
        assert_eq!(
            parse_markup("http://localhost:8080/x"),
            vec![auto("http://localhost:8080/x", "http://localhost:8080/x")]
        );
    }

    /// Trailing punctuation is not part of a link, but balanced parentheses are.
    #[test]
    fn link_trailing_punctuation() {
        assert_eq!(
            parse_markup("example.com."),
            vec![auto("example.com", "https://example.com"), text(".")]
        );
        assert_eq!(
            parse_markup("(see example.com/x), ok?"),
            vec![
                text("(see "),
                auto("example.com/x", "https://example.com/x"),
                text("), ok?")
            ]
        );
        assert_eq!(
            parse_markup("https://en.wikipedia.org/wiki/Rust_(language)!"),
            vec![
                auto(
                    "https://en.wikipedia.org/wiki/Rust_(language)",
                    "https://en.wikipedia.org/wiki/Rust_(language)"
                ),
                text("!")
            ]
        );
        assert_eq!(
            parse_markup("*example.com*"),
            vec![bold(vec![auto("example.com", "https://example.com")])]
        );
    }

    /// Things that only look like domains stay text.
    #[test]
    fn non_links_stay_text() {
        for s in [
            "e.g. this",
            "i.e.",
            "3.14",
            "Mr.Smith",
            "a..com",
            "http://",
            "foo.example.com@",
            "user@host",
            "snake_case.io",
            "end.It",
            "main.Rs",
            "file_name.txt",
        ] {
            assert!(
                !parse_markup(s)
                    .iter()
                    .any(|n| matches!(n, TextNode::AutoLink { .. })),
                "{s} -> {:?}",
                parse_markup(s)
            );
        }
        assert_eq!(
            parse_markup("call +1 555 123 4567"),
            vec![text("call +1 555 123 4567")]
        );
    }

    /// Email addresses become mailto auto links.
    #[test]
    fn emails_are_autolinked() {
        assert_eq!(
            parse_markup("mail john_doe+x@example.co.uk, thanks"),
            vec![
                text("mail "),
                auto(
                    "john_doe+x@example.co.uk",
                    "mailto:john_doe+x@example.co.uk"
                ),
                text(", thanks")
            ]
        );
        assert_eq!(
            parse_markup("_a@b.io_"),
            vec![italic(vec![auto("a@b.io", "mailto:a@b.io")])]
        );
    }

    /// `<@id>` becomes a mention; a bare `@word` stays text.
    #[test]
    fn mentions() {
        assert_eq!(
            parse_markup("hi <@user_1>!"),
            vec![
                text("hi "),
                TextNode::Mention {
                    id: UserId::new("user_1"),
                    text: "user_1".into()
                },
                text("!")
            ]
        );
        assert_eq!(parse_markup("hi @bob"), vec![text("hi @bob")]);
        for s in ["<@>", "<@a b>", "<@abc", "<@ x>"] {
            assert_eq!(parse_markup(s), vec![text(s)], "{s}");
        }
        assert_eq!(
            parse_markup("<@<@x>"),
            vec![
                text("<@"),
                TextNode::Mention {
                    id: UserId::new("x"),
                    text: "x".into()
                }
            ]
        );
    }

    /// HTML links, markdown links and action buttons never become links.
    #[test]
    fn forbidden_constructs_stay_literal() {
        for s in [
            "<a href=\"https://evil.com\">click</a>",
            "[click](https://evil.com)",
            "<actionbutton:buy?item=1|Buy now>",
            "<actionlink:x|y>",
            "[text](javascript:alert(1))",
        ] {
            let nodes = parse_markup(s);
            assert_well_formed(&nodes);
            assert_eq!(render(nodes), s);
        }
        assert_eq!(
            parse_markup("<actionbutton:x|Go>"),
            vec![text("<actionbutton:x|Go>")]
        );
    }

    /// Every auto link the parser produces passes the TalkJS matching rule.
    #[test]
    fn produced_autolinks_match() {
        let inputs = [
            "https://example.com/a_b?c=d#e",
            "www.Example.org/x.",
            "example.io",
            "see foo.dev/bar)",
            "http://localhost:3000",
            "a@b.co",
            "x.y.z@sub.example.com",
            "https://münchen.de/straße",
            "(https://a.com/(b))",
            "HTTPS://A.COM?x",
            "example.com#frag",
        ];
        let mut links = 0;
        for s in inputs {
            let nodes = parse_markup(s);
            for node in &nodes {
                if let TextNode::AutoLink { url, text } = node {
                    links += 1;
                    assert!(autolink_matches(text, url), "{s}: {text} -> {url}");
                }
            }
            assert_well_formed(&nodes);
        }
        assert_eq!(links, inputs.len());
    }

    /// Text without markup characters renders back to exactly the input.
    #[test]
    fn plaintext_round_trip() {
        for s in [
            "hello",
            "a\n\nb\n",
            "\n",
            "tabs\tand  spaces",
            "émoji 🎉 ok",
            "visit example.com now.",
            "a@b.co",
            "x - y",
        ] {
            assert_eq!(render(parse_markup(s)), s);
        }
    }

    /// Tricky inputs never panic, keep text merged and non-empty, and pass send validation.
    #[test]
    fn tricky_inputs_are_well_formed() {
        let long_stars = "*".repeat(10_000);
        let long_mixed = "*_~`<@".repeat(2_000);
        let words = "a_b *c _d ~e ".repeat(1_000);
        let inputs = [
            "",
            "*",
            "_",
            "~",
            "`",
            "<",
            "<@",
            "*_~`",
            "🎉*🎉*🎉",
            "*é*",
            "_日本語_",
            "\u{200b}*x*\u{200b}",
            "* ",
            "- ",
            "-",
            "\n\n\n",
            "*a\n*b",
            "***bold***",
            "_*_*_*",
            "`*`*`*`",
            "<@a><@b>",
            "https://",
            "www.",
            "a@",
            "@b.com",
            ".com",
            "x.com.",
            "((((x.com))))",
            "http://x.com/)))))",
            "\r\n*a*\r\n",
            &long_stars,
            &long_mixed,
            &words,
        ];
        for s in inputs {
            let nodes = parse_markup(s);
            assert_well_formed(&nodes);
            let block = SendContentBlock::Text {
                children: nodes.clone(),
            };
            match validate_send(&block, false) {
                Ok(()) | Err(ContentError::EmptyText) => {}
                Err(error) => panic!("{s:?} parsed into unsendable content: {error}"),
            }
            if !s.contains(['*', '_', '~', '`', '<']) && !s.starts_with("- ") {
                assert_eq!(render(nodes), s);
            }
        }
    }

    /// Parsing 100 KB of delimiters (and other hostile input) takes linear time.
    #[test]
    fn parsing_is_fast() {
        let inputs = [
            "*_~".repeat(34_000),
            "*".repeat(100_000),
            "(a".repeat(50_000),
            "_a".repeat(50_000),
            "a.".repeat(50_000),
            "https://x.com/".to_owned() + &")".repeat(100_000),
            "`".repeat(100_000),
            "<@".repeat(50_000),
            "*a ".repeat(33_000),
        ];
        for input in &inputs {
            let start = Instant::now();
            let nodes = parse_markup(input);
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "too slow on {:?}",
                &input[..10]
            );
            assert_well_formed(&nodes);
        }
    }

    /// The stored size of parsed nodes: the JSON of their text block.
    fn stored_len(nodes: &[TextNode]) -> usize {
        let block = [ContentBlock::Text {
            children: nodes.to_vec(),
        }];
        serde_json::to_string(&block).unwrap().len()
    }

    /// The size of `text` as a JSON string, as a client sends it.
    fn json_len(text: &str) -> usize {
        serde_json::to_string(text).unwrap().len()
    }

    /// The nodes other than plain text in a tree.
    fn markup_nodes(nodes: &[TextNode]) -> usize {
        nodes
            .iter()
            .map(|node| match node {
                TextNode::Text(_) => 0,
                TextNode::Bold { children }
                | TextNode::Italic { children }
                | TextNode::Strikethrough { children }
                | TextNode::BulletList { children }
                | TextNode::BulletPoint { children } => 1 + markup_nodes(children),
                _ => 1,
            })
            .sum()
    }

    /// The bound the cap guarantees: twice the input's JSON (auto links and
    /// mentions repeat their text) plus 64 bytes per node and for the block.
    fn size_bound(text: &str, nodes: &[TextNode]) -> usize {
        2 * json_len(text) + 64 * markup_nodes(nodes) + 64
    }

    /// The markup that parses into `nodes`, bullets written `- `: what the user
    /// typed, as nothing is dropped.
    fn source(nodes: &[TextNode]) -> String {
        fn walk(nodes: &[TextNode], out: &mut String) {
            for node in nodes {
                match node {
                    TextNode::Text(text) | TextNode::AutoLink { text, .. } => out.push_str(text),
                    TextNode::CodeSpan { text } => {
                        out.push('`');
                        out.push_str(text);
                        out.push('`');
                    }
                    TextNode::Mention { id, .. } => {
                        out.push_str("<@");
                        out.push_str(id.as_str());
                        out.push('>');
                    }
                    TextNode::Bold { children }
                    | TextNode::Italic { children }
                    | TextNode::Strikethrough { children } => {
                        let delimiter = match node {
                            TextNode::Bold { .. } => '*',
                            TextNode::Italic { .. } => '_',
                            _ => '~',
                        };
                        out.push(delimiter);
                        walk(children, out);
                        out.push(delimiter);
                    }
                    TextNode::BulletList { children } => {
                        for (index, point) in children.iter().enumerate() {
                            if index > 0 {
                                out.push('\n');
                            }
                            walk(std::slice::from_ref(point), out);
                        }
                    }
                    TextNode::BulletPoint { children } => {
                        out.push_str("- ");
                        walk(children, out);
                    }
                    other => panic!("the parser made {other:?}"),
                }
            }
        }
        let mut out = String::new();
        walk(nodes, &mut out);
        out
    }

    /// `text` with every line that starts with `* ` starting with `- ` instead.
    fn dash_bullets(text: &str) -> String {
        text.split('\n')
            .map(|line| match line.strip_prefix("* ") {
                Some(rest) => format!("- {rest}"),
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Hostile markup of about 60 KB, each of which made a stored record 8 to
    /// 12 times its size before the node cap.
    fn hostile_inputs() -> Vec<String> {
        vec![
            "*_~".repeat(20_000),
            "a.co ".repeat(10_000),
            "_a_ ".repeat(15_000),
            "*_~".repeat(10_000) + "x" + &"~_*".repeat(10_000),
            "*a*_b_".repeat(10_000),
            "- a\n".repeat(15_000),
            "<@u> ".repeat(12_000),
            "`a` ".repeat(15_000),
            "x@y.io ".repeat(8_500),
        ]
    }

    /// Hostile markup of 60 KB is stored in 91 to 115 KB (it was 515 to 680 KB
    /// before the node cap), every character of it kept.
    #[test]
    fn hostile_markup_is_stored_in_bounded_size() {
        for input in hostile_inputs() {
            let nodes = parse_markup(&input);
            let stored = stored_len(&nodes);
            assert_eq!(markup_nodes(&nodes), MAX_MARKUP_NODES, "{:?}", &input[..8]);
            assert!(
                stored <= size_bound(&input, &nodes),
                "{:?}: {stored} bytes",
                &input[..8]
            );
            assert!(
                stored <= input.len() + 64 * MAX_MARKUP_NODES,
                "{:?}: {stored} bytes stored for {} typed",
                &input[..8],
                input.len()
            );
            assert_eq!(dash_bullets(&source(&nodes)), dash_bullets(&input));
            assert_well_formed(&nodes);
        }
    }

    /// Ordinary chat text is far under the cap and parses as before.
    #[test]
    fn ordinary_text_is_not_capped() {
        let chat = "Hey *Bob*, see https://example.com/docs and _this_ one, or mail a@b.io.\n\
                    - one `code`\n- two ~old~ <@bob>\n"
            .repeat(40);
        let nodes = parse_markup(&chat);
        assert!(markup_nodes(&nodes) < MAX_MARKUP_NODES);
        assert_eq!(nodes, parse_markup_with_budget(&chat, usize::MAX));
        assert_eq!(dash_bullets(&source(&nodes)), chat);
    }

    /// Past the cap the text stays plain, markup characters included.
    #[test]
    fn markup_past_the_cap_stays_text() {
        assert_eq!(
            parse_markup_with_budget("*a* _b_ example.com", 1),
            vec![bold(vec![text("a")]), text(" _b_ example.com")]
        );
        assert_eq!(
            parse_markup_with_budget("*a _b_ c*", 1),
            vec![text("*a "), italic(vec![text("b")]), text(" c*")]
        );
        assert_eq!(
            parse_markup_with_budget("- a\n- b\n- c", 3),
            vec![
                TextNode::BulletList {
                    children: vec![
                        TextNode::BulletPoint {
                            children: vec![text("a")]
                        },
                        TextNode::BulletPoint {
                            children: vec![text("b")]
                        }
                    ]
                },
                text("\n- c")
            ]
        );
        assert_eq!(parse_markup_with_budget("*a*", 0), vec![text("*a*")]);
    }

    /// Pieces of markup that random messages are made of.
    const PIECES: &[&str] = &[
        "*", "_", "~", "`", "<@", "<@u>", ">", "@", "- ", "* ", "\n", " ", " ", "a", "b", "ab",
        "é", "🎉", "a.co", "x.com/p", "https://", "www.", ".", ",", "(", ")", "a@b.io", "\"", "\\",
        "\u{1}", "\t",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// However it is capped, parsed markup is bounded in size, keeps every character the
        /// user typed, is well formed, and is what the uncapped parser makes when under the cap.
        #[test]
        fn parsed_markup_is_bounded_and_lossless(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..200),
            budget in prop_oneof![0..12_usize, Just(MAX_MARKUP_NODES)],
        ) {
            let input = pieces.concat();
            let nodes = parse_markup_with_budget(&input, budget);
            let count = markup_nodes(&nodes);
            prop_assert!(count <= budget, "{} nodes for a budget of {}", count, budget);
            prop_assert!(stored_len(&nodes) <= size_bound(&input, &nodes));
            prop_assert_eq!(dash_bullets(&source(&nodes)), dash_bullets(&input));
            assert_well_formed(&nodes);
            let uncapped = parse_markup_with_budget(&input, usize::MAX);
            if markup_nodes(&uncapped) <= budget {
                prop_assert_eq!(&nodes, &uncapped);
            }
            if !input.contains(['*', '_', '~', '`', '<']) && !input.contains("- ") {
                prop_assert_eq!(render(nodes), input);
            }
        }
    }
}
