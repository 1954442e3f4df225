//! Streaming parser for generated harmony text.
//!
//! The model writes messages of the form
//! `<|start|>AUTHOR[ to=RECIPIENT]<|channel|>CHANNEL[ to=RECIPIENT][ CONTENT_TYPE]<|message|>BODY<|end|>`
//! (`<|return|>` after the final answer, `<|call|>` after a tool call). When the prompt ended
//! with the generation prompt `<|start|>assistant`, the first message starts right at its header
//! (`<|channel|>analysis<|message|>...`).
//!
//! The parser is fed one piece at a time: either the decoded text of one token together with
//! the tokenizer's "is this a special token" bit ([`HarmonyParser::push_token`]), or arbitrary
//! text pieces in which the special tokens appear as their literal strings
//! ([`HarmonyParser::push_text`], which holds back a possible partial `<|...|>` at the end of a
//! piece). Each call returns the events that piece completed; [`HarmonyParser::finish`] flushes
//! a truncated stream. Pieces must be whole UTF-8 (`&str`): a detokenizer that splits a
//! character across tokens must buffer it first.
//!
//! Malformed output never panics and never loses text: a missing `<|message|>`, a message
//! interrupted by a new `<|start|>`, text outside any message, an unknown channel, all come out
//! as content (with a `tracing::warn!`), so the user sees what the model wrote.

use crate::tokens::{CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START};

/// Why a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `<|end|>`: the message is complete and the model goes on with another one.
    End,
    /// `<|return|>`: the final answer is complete; generation is over.
    Return,
    /// `<|call|>`: a tool call is complete; the caller runs the tool.
    Call,
    /// A new message started (`<|start|>` or `<|channel|>`) before this one was closed.
    Interrupted,
    /// The stream ended ([`HarmonyParser::finish`]) inside the message.
    Truncated,
}

/// A parsed message header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageHeader {
    /// `assistant`, or a tool's name for tool output (`functions.get_weather`).
    pub author: String,
    pub channel: Option<String>,
    /// `to=...` target, e.g. `functions.get_weather`.
    pub recipient: Option<String>,
    /// `<|constrain|>json`, or a bare type such as `json` / `code`.
    pub content_type: Option<String>,
}

/// What the parser found, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HarmonyEvent {
    /// A message header is complete (also emitted, with defaults, for stray text that
    /// had no header).
    MessageStart(MessageHeader),
    /// Text of an `analysis` message: chain of thought, not for the user.
    ReasoningDelta(String),
    /// Text for the user: `final` (and `commentary` preambles, and unparseable text).
    ContentDelta(String),
    /// A message addressed to a tool begins. `name` is the recipient without its `functions.`
    /// namespace (`get_weather`); other namespaces keep the full recipient (`browser.search`).
    ToolCallStart {
        name: String,
        recipient: String,
        content_type: Option<String>,
    },
    /// Text of the tool call's arguments (normally JSON).
    ToolCallArgsDelta(String),
    MessageEnd(EndReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Reasoning,
    Content,
    ToolArgs,
}

#[derive(Debug)]
enum State {
    /// Between messages. Whitespace is held (and dropped if a message follows); anything else
    /// is stray text.
    ExpectStart {
        held: String,
    },
    /// Inside a header, before `<|message|>`. `buf` keeps `<|channel|>` / `<|constrain|>` as
    /// their literal strings.
    Header {
        role: Option<String>,
        buf: String,
    },
    Body {
        kind: BodyKind,
    },
}

/// Headers are short (`assistant<|channel|>commentary to=functions.NAME <|constrain|>json`);
/// past this many bytes without `<|message|>` the model is writing text, not a header.
const MAX_HEADER_BYTES: usize = 1024;

const KNOWN_ROLES: [&str; 5] = ["assistant", "user", "system", "developer", "tool"];

/// Incremental harmony parser. See the module docs.
#[derive(Debug)]
pub struct HarmonyParser {
    state: State,
    /// `push_text` input not yet consumed: a possible partial special token.
    pending: String,
}

impl Default for HarmonyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl HarmonyParser {
    /// A parser that expects the stream to start with `<|start|>`.
    pub fn new() -> Self {
        HarmonyParser {
            state: State::ExpectStart {
                held: String::new(),
            },
            pending: String::new(),
        }
    }

    /// A parser for output generated after a prompt that ended with `<|start|>ROLE` (the
    /// generation prompt is `<|start|>assistant`): the stream starts inside that header.
    pub fn with_role(role: &str) -> Self {
        HarmonyParser {
            state: State::Header {
                role: Some(role.to_string()),
                buf: String::new(),
            },
            pending: String::new(),
        }
    }

    /// Feeds one token: its decoded text and whether the tokenizer marks it special. Special
    /// tokens other than the harmony ones (`<|endoftext|>`, reserved ids) are ignored with a
    /// warning; non-special text is never read as a special token, whatever it contains.
    pub fn push_token(&mut self, text: &str, is_special: bool) -> Vec<HarmonyEvent> {
        let mut out = Vec::new();
        self.flush_pending(&mut out);
        if is_special {
            match crate::tokens::ALL.iter().find(|s| **s == text) {
                Some(sp) => self.on_special(sp, &mut out),
                None => tracing::warn!(token = text, "harmony: ignoring unexpected special token"),
            }
        } else {
            self.on_text(text, &mut out);
        }
        out
    }

    /// Feeds a piece of text in which special tokens appear as their literal strings. Pieces
    /// may split anywhere (on char boundaries), including inside a special token.
    pub fn push_text(&mut self, piece: &str) -> Vec<HarmonyEvent> {
        let mut out = Vec::new();
        self.pending.push_str(piece);
        let pending = std::mem::take(&mut self.pending);
        let mut rest = pending.as_str();
        loop {
            let Some(idx) = rest.find("<|") else {
                // A trailing '<' may begin a special token in the next piece.
                let keep = usize::from(rest.ends_with('<'));
                let (text, tail) = rest.split_at(rest.len() - keep);
                self.on_text(text, &mut out);
                self.pending = tail.to_string();
                break;
            };
            let (text, tail) = rest.split_at(idx);
            self.on_text(text, &mut out);
            if let Some(sp) = crate::tokens::ALL.iter().find(|s| tail.starts_with(**s)) {
                self.on_special(sp, &mut out);
                rest = &tail[sp.len()..];
            } else if crate::tokens::ALL.iter().any(|s| s.starts_with(tail)) {
                // Possibly a special token cut by the piece boundary: wait for more.
                self.pending = tail.to_string();
                break;
            } else {
                // `<|` that starts no harmony token: ordinary text.
                self.on_text("<|", &mut out);
                rest = &tail[2..];
            }
        }
        out
    }

    /// Ends the stream: flushes held text and closes an open message with
    /// [`EndReason::Truncated`]. The parser is then ready for a new stream starting with
    /// `<|start|>`.
    pub fn finish(&mut self) -> Vec<HarmonyEvent> {
        let mut out = Vec::new();
        self.flush_pending(&mut out);
        let state = std::mem::replace(
            &mut self.state,
            State::ExpectStart {
                held: String::new(),
            },
        );
        match state {
            State::ExpectStart { .. } => {}
            State::Header { role, buf } => {
                if !buf.trim().is_empty() {
                    let (header, leftover) = parse_header(role.as_deref(), &buf, false);
                    if leftover.trim().is_empty() {
                        tracing::warn!(header = %buf, "harmony: stream ended inside a message header");
                    } else {
                        tracing::warn!(header = %buf, "harmony: stream ended before <|message|>; header text kept as content");
                        let kind = self.start_message(header, &mut out);
                        emit(kind, leftover, &mut out);
                        out.push(HarmonyEvent::MessageEnd(EndReason::Truncated));
                    }
                }
            }
            State::Body { .. } => out.push(HarmonyEvent::MessageEnd(EndReason::Truncated)),
        }
        out
    }

    fn flush_pending(&mut self, out: &mut Vec<HarmonyEvent>) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            self.on_text(&text, out);
        }
    }

    fn on_text(&mut self, text: &str, out: &mut Vec<HarmonyEvent>) {
        if text.is_empty() {
            return;
        }
        match &mut self.state {
            State::ExpectStart { held } => {
                held.push_str(text);
                if !held.trim().is_empty() {
                    let stray = std::mem::take(held);
                    tracing::warn!(text = %stray, "harmony: text outside any message; kept as content");
                    let kind = self.start_message(
                        MessageHeader {
                            author: "assistant".into(),
                            ..Default::default()
                        },
                        out,
                    );
                    emit(kind, stray, out);
                }
            }
            State::Header { role, buf } => {
                buf.push_str(text);
                if buf.len() > MAX_HEADER_BYTES {
                    let (role, buf) = (role.take(), std::mem::take(buf));
                    tracing::warn!(
                        "harmony: no <|message|> after {MAX_HEADER_BYTES} bytes of header; kept as content"
                    );
                    let (header, leftover) = parse_header(role.as_deref(), &buf, false);
                    let kind = self.start_message(header, out);
                    emit(kind, leftover, out);
                }
            }
            State::Body { kind } => emit(*kind, text.to_string(), out),
        }
    }

    fn on_special(&mut self, sp: &str, out: &mut Vec<HarmonyEvent>) {
        let state = std::mem::replace(
            &mut self.state,
            State::ExpectStart {
                held: String::new(),
            },
        );
        match state {
            State::ExpectStart { .. } => match sp {
                START => self.enter_header(None, String::new()),
                CHANNEL => {
                    // `<|start|>assistant` left out: harmless, the model means a new message.
                    tracing::warn!("harmony: <|channel|> without <|start|>; assuming assistant");
                    self.enter_header(Some("assistant".into()), CHANNEL.into());
                }
                MESSAGE => {
                    tracing::warn!("harmony: <|message|> without a header");
                    self.start_message(
                        MessageHeader {
                            author: "assistant".into(),
                            ..Default::default()
                        },
                        out,
                    );
                }
                _ => tracing::warn!(token = sp, "harmony: unexpected token between messages"),
            },
            State::Header { role, mut buf } => match sp {
                MESSAGE => {
                    let (header, leftover) = parse_header(role.as_deref(), &buf, true);
                    self.start_message(header, out);
                    if !leftover.is_empty() {
                        tracing::warn!(text = %leftover, "harmony: unparseable words in a message header; kept as content");
                        out.push(HarmonyEvent::ContentDelta(leftover));
                    }
                }
                CHANNEL | CONSTRAIN => {
                    buf.push_str(sp);
                    self.state = State::Header { role, buf };
                }
                START => {
                    tracing::warn!(header = %buf, "harmony: message header interrupted by <|start|>");
                    self.header_as_content(role, &buf, EndReason::Interrupted, out);
                    self.enter_header(None, String::new());
                }
                _ => {
                    // END / RETURN / CALL with no <|message|>: keep the channel, and whatever
                    // is not header metadata becomes the message text (as the reference's
                    // non-strict mode does).
                    tracing::warn!(header = %buf, "harmony: message ended before <|message|>");
                    self.header_as_content(role, &buf, end_reason(sp), out);
                }
            },
            State::Body { kind } => match sp {
                END | RETURN | CALL => out.push(HarmonyEvent::MessageEnd(end_reason(sp))),
                START => {
                    tracing::warn!("harmony: <|start|> inside a message; closing it");
                    out.push(HarmonyEvent::MessageEnd(EndReason::Interrupted));
                    self.enter_header(None, String::new());
                }
                CHANNEL => {
                    tracing::warn!("harmony: <|channel|> inside a message; starting a new one");
                    out.push(HarmonyEvent::MessageEnd(EndReason::Interrupted));
                    self.enter_header(Some("assistant".into()), CHANNEL.into());
                }
                _ => {
                    tracing::warn!(
                        token = sp,
                        "harmony: format token inside a message body; kept as text"
                    );
                    emit(kind, sp.to_string(), out);
                    self.state = State::Body { kind };
                }
            },
        }
    }

    fn enter_header(&mut self, role: Option<String>, buf: String) {
        self.state = State::Header { role, buf };
    }

    /// A header that never reached `<|message|>`: emit it as a whole message if it holds
    /// anything besides header metadata, then end it.
    fn header_as_content(
        &mut self,
        role: Option<String>,
        buf: &str,
        reason: EndReason,
        out: &mut Vec<HarmonyEvent>,
    ) {
        let (header, leftover) = parse_header(role.as_deref(), buf, false);
        if leftover.trim().is_empty() && header.channel.is_none() && header.recipient.is_none() {
            return;
        }
        let kind = self.start_message(header, out);
        emit(kind, leftover, out);
        out.push(HarmonyEvent::MessageEnd(reason));
        self.state = State::ExpectStart {
            held: String::new(),
        };
    }

    /// Emits the start events for a message and enters its body.
    fn start_message(&mut self, header: MessageHeader, out: &mut Vec<HarmonyEvent>) -> BodyKind {
        let tool_recipient = header
            .recipient
            .clone()
            .filter(|r| !matches!(r.as_str(), "assistant" | "user" | "all"))
            .filter(|r| {
                // `to=functions.` names no function: not a call we could dispatch.
                let ok = !tool_name(r).is_empty();
                if !ok {
                    tracing::warn!(recipient = %r, "harmony: recipient names no tool; text kept as content");
                }
                ok
            });
        let kind = if tool_recipient.is_some() {
            BodyKind::ToolArgs
        } else {
            match header.channel.as_deref() {
                Some("analysis") => BodyKind::Reasoning,
                Some("final") | Some("commentary") => BodyKind::Content,
                Some(other) => {
                    tracing::warn!(
                        channel = other,
                        "harmony: unknown channel; text kept as content"
                    );
                    BodyKind::Content
                }
                None => BodyKind::Content,
            }
        };
        let content_type = header.content_type.clone();
        out.push(HarmonyEvent::MessageStart(header));
        if let Some(recipient) = tool_recipient {
            let name = tool_name(&recipient).to_string();
            out.push(HarmonyEvent::ToolCallStart {
                name,
                recipient,
                content_type,
            });
        }
        self.state = State::Body { kind };
        kind
    }
}

/// The function name a recipient addresses: `functions.NAME` -> `NAME`; other namespaces
/// (`browser.search`) keep the whole recipient.
fn tool_name(recipient: &str) -> &str {
    recipient.strip_prefix("functions.").unwrap_or(recipient)
}

fn end_reason(sp: &str) -> EndReason {
    match sp {
        RETURN => EndReason::Return,
        CALL => EndReason::Call,
        _ => EndReason::End,
    }
}

fn emit(kind: BodyKind, text: String, out: &mut Vec<HarmonyEvent>) {
    if text.is_empty() {
        return;
    }
    out.push(match kind {
        BodyKind::Reasoning => HarmonyEvent::ReasoningDelta(text),
        BodyKind::Content => HarmonyEvent::ContentDelta(text),
        BodyKind::ToolArgs => HarmonyEvent::ToolCallArgsDelta(text),
    });
}

/// A recipient we are willing to name a tool after: a dotted identifier path.
fn valid_recipient(r: &str) -> bool {
    !r.is_empty()
        && r.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

/// A bare content type word such as `json` or `code`.
fn plausible_content_type(w: &str) -> bool {
    w.len() <= 32
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+'))
}

#[derive(Debug)]
enum HeaderTok<'a> {
    Channel,
    Constrain,
    Word(&'a str),
}

fn header_tokens(buf: &str) -> Vec<HeaderTok<'_>> {
    let mut toks = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let next_marker = [(CHANNEL, 0u8), (CONSTRAIN, 1u8)]
            .iter()
            .filter_map(|(m, k)| rest.find(m).map(|i| (i, *m, *k)))
            .min_by_key(|(i, _, _)| *i);
        let (words, after) = match next_marker {
            Some((i, m, k)) => {
                let words = &rest[..i];
                toks.extend(words.split_whitespace().map(HeaderTok::Word));
                toks.push(if k == 0 {
                    HeaderTok::Channel
                } else {
                    HeaderTok::Constrain
                });
                (None, &rest[i + m.len()..])
            }
            None => (Some(rest), ""),
        };
        if let Some(w) = words {
            toks.extend(w.split_whitespace().map(HeaderTok::Word));
        }
        rest = after;
    }
    toks
}

/// Splits a header into its fields. Recipients are accepted both before the channel
/// (`assistant to=functions.f<|channel|>commentary`, the reference's rendering) and after it
/// (`<|channel|>commentary to=functions.f`, what the model usually writes). Returns the words
/// that are no header field, joined by spaces; with `strict_words == false` (a header that
/// never reached `<|message|>`), that is the raw text after the last header field, kept as is.
fn parse_header(role: Option<&str>, buf: &str, strict_words: bool) -> (MessageHeader, String) {
    let toks = header_tokens(buf);
    let mut header = MessageHeader {
        author: role.unwrap_or("assistant").to_string(),
        ..Default::default()
    };
    let mut leftover: Vec<&str> = Vec::new();
    let mut author_seen = role.is_some();
    let mut i = 0;
    // Index into `toks` of the last token consumed as header metadata (non-strict mode keeps
    // the raw text after it).
    let mut last_meta: Option<usize> = None;
    while i < toks.len() {
        match toks[i] {
            HeaderTok::Channel | HeaderTok::Constrain => {
                let is_channel = matches!(toks[i], HeaderTok::Channel);
                let value = match toks.get(i + 1) {
                    Some(HeaderTok::Word(w)) => Some(*w),
                    _ => None,
                };
                last_meta = Some(i);
                if let Some(w) = value {
                    last_meta = Some(i + 1);
                    if is_channel {
                        if header.channel.is_none() {
                            header.channel = Some(w.to_string());
                        } else {
                            leftover.push(w);
                        }
                    } else {
                        header.content_type = Some(format!("{CONSTRAIN}{w}"));
                    }
                    i += 2;
                } else {
                    if is_channel {
                        tracing::warn!("harmony: <|channel|> with no channel name");
                    }
                    i += 1;
                }
            }
            HeaderTok::Word(w) => {
                if let Some(r) = w.strip_prefix("to=") {
                    if header.recipient.is_none() && valid_recipient(r) {
                        header.recipient = Some(r.to_string());
                        last_meta = Some(i);
                    } else {
                        tracing::warn!(word = w, "harmony: invalid or repeated recipient");
                        leftover.push(w);
                    }
                } else if !author_seen && i == 0 {
                    author_seen = true;
                    if KNOWN_ROLES.contains(&w) || valid_recipient(w) {
                        header.author = w.to_string();
                        last_meta = Some(i);
                    } else {
                        tracing::warn!(author = w, "harmony: unparseable message author");
                        leftover.push(w);
                    }
                } else if role.is_some_and(|r| r == w) && i == 0 {
                    // `<|start|>assistant` already given by the prompt and repeated.
                    last_meta = Some(i);
                } else if header.content_type.is_none()
                    && (header.channel.is_some() || header.recipient.is_some())
                    && plausible_content_type(w)
                    && strict_words
                {
                    header.content_type = Some(w.to_string());
                    last_meta = Some(i);
                } else {
                    leftover.push(w);
                }
                i += 1;
            }
        }
    }
    let leftover = if strict_words {
        leftover.join(" ")
    } else {
        raw_after(buf, &toks, last_meta)
    };
    (header, leftover)
}

/// The raw text of `buf` after header token `last_meta` (all of it when `None`), with the
/// whitespace that separated it from the header removed.
fn raw_after(buf: &str, toks: &[HeaderTok<'_>], last_meta: Option<usize>) -> String {
    let Some(last) = last_meta else {
        return buf.trim_start().to_string();
    };
    // Walk the buffer again to find the byte offset where token `last` ends.
    let mut pos = 0usize;
    for (i, tok) in toks.iter().enumerate() {
        let needle = match tok {
            HeaderTok::Channel => CHANNEL,
            HeaderTok::Constrain => CONSTRAIN,
            HeaderTok::Word(w) => w,
        };
        match buf[pos..].find(needle) {
            Some(off) => pos += off + needle.len(),
            None => return String::new(),
        }
        if i == last {
            break;
        }
    }
    buf[pos..].trim_start().to_string()
}

/// A whole completion, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedCompletion {
    /// All `analysis` text, messages concatenated.
    pub reasoning: String,
    /// All user-visible text (`final`, `commentary` preambles, unparseable text).
    pub content: String,
    pub tool_calls: Vec<ParsedToolCall>,
    /// How the last message ended (`None` if there was none).
    pub end: Option<EndReason>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToolCall {
    pub name: String,
    pub recipient: String,
    pub content_type: Option<String>,
    pub arguments: String,
}

/// Parses a complete generation (special tokens as literal text). `role` is the role of the
/// generation prompt the text continues (`Some("assistant")` after `<|start|>assistant`), or
/// `None` when the text starts with `<|start|>`.
pub fn parse_completion(text: &str, role: Option<&str>) -> ParsedCompletion {
    let mut parser = match role {
        Some(r) => HarmonyParser::with_role(r),
        None => HarmonyParser::new(),
    };
    let mut events = parser.push_text(text);
    events.extend(parser.finish());
    let mut out = ParsedCompletion::default();
    for ev in events {
        match ev {
            HarmonyEvent::MessageStart(_) => {}
            HarmonyEvent::ReasoningDelta(t) => out.reasoning.push_str(&t),
            HarmonyEvent::ContentDelta(t) => out.content.push_str(&t),
            HarmonyEvent::ToolCallStart {
                name,
                recipient,
                content_type,
            } => out.tool_calls.push(ParsedToolCall {
                name,
                recipient,
                content_type,
                arguments: String::new(),
            }),
            HarmonyEvent::ToolCallArgsDelta(t) => {
                if let Some(call) = out.tool_calls.last_mut() {
                    call.arguments.push_str(&t);
                }
            }
            HarmonyEvent::MessageEnd(r) => out.end = Some(r),
        }
    }
    out
}
