//! Chat templates: a model's own Jinja chat template, rendered the way Hugging Face
//! `tokenizer.apply_chat_template(messages, tokenize=False, ...)` renders it.
//!
//! Hugging Face renders chat templates with Python jinja2 in the environment built by
//! `transformers/utils/chat_template_utils.py` (`_cached_compile_jinja_template`):
//! an `ImmutableSandboxedEnvironment` with `trim_blocks=True`, `lstrip_blocks=True`
//! (and jinja2's default `keep_trailing_newline=False`), the `loopcontrols` extension,
//! a `{% generation %}` block tag, and these additions:
//!
//! * `tojson` overridden by `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
//!   sort_keys=False)`, i.e. no HTML escaping, Python's `", "`/`": "` separators;
//! * globals `raise_exception(msg)`, `strftime_now(fmt)`, `dict`, `namespace`.
//!
//! The template sees `messages`, `tools` (None when absent), `documents` (None),
//! `add_generation_prompt`, the special tokens (`bos_token`, `eos_token`) and any extra
//! keyword arguments (e.g. `enable_thinking`, `reasoning_effort`). Before rendering,
//! `apply_chat_template` drops message keys whose value is `None`, and
//! `render_jinja_template` aliases reasoning fields (`reasoning_content`, `thinking`,
//! `reasoning`) onto each other; this crate does both (see [`prepare_message`]).
//!
//! This crate reproduces that with `minijinja` plus Python-compatibility callbacks: the
//! `minijinja-contrib` pycompat string/dict methods, Python `str()`/`repr()` printing of
//! values, a `json.dumps`-compatible `tojson`, and jinja2's definitions of the `sequence`,
//! `iterable` and `number` tests. `tests/golden.rs` checks byte-identical output against
//! transformers itself for every template in llama.cpp's `models/templates`.
//!
//! ```
//! use hearth_template::{parse_messages, ChatTemplate, RenderOptions};
//!
//! let template = ChatTemplate::fallback("<s>", "</s>"); // or ChatTemplate::new(src, bos, eos)?
//! let messages = parse_messages(r#"[{"role": "user", "content": "Hi"}]"#)?;
//! let opts = RenderOptions { add_generation_prompt: true, ..Default::default() };
//! let prompt = template.render(&messages, &opts)?;
//! assert_eq!(prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
//! # Ok::<(), hearth_template::TemplateError>(())
//! ```

use std::fmt::Write as _;

use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectExt, ObjectRepr, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value};
use serde_json::{Map, Value as Json};

mod pyfmt;
mod time;

pub use time::CivilTime;

/// Errors from compiling or rendering a chat template, or from parsing messages.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template source does not compile (syntax error, unknown tag, ...).
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    /// The template called `raise_exception(message)`; the payload is that message, verbatim.
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    /// Rendering failed (undefined attribute, type error, unknown filter, ...).
    #[error("chat template failed to render: {0}")]
    Render(String),
    /// GGUF chat-template metadata has the wrong type; the message names the key.
    #[error("GGUF chat template metadata: {0}")]
    Metadata(String),
    /// The messages JSON is malformed; the message names the offending index/field.
    #[error("invalid chat messages: {0}")]
    Messages(String),
}

/// One OpenAI-style chat message.
///
/// Stored as the JSON object itself (a transparent newtype over `serde_json::Map`) rather
/// than as a struct with fixed fields, because templates see exactly the dict they are given:
/// key order (templates `tojson` and iterate messages), absent vs `null` fields, and
/// extension fields (`tool_calls`, `tool_call_id`, `name`, `reasoning_content`, `thinking`,
/// multimodal parts, ...) must all survive unchanged. `content` may be a string, a list of
/// content parts (`{"type": "text", "text": ...}`), or absent/null.
/// Use [`parse_messages`] to validate untrusted JSON.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(transparent)]
pub struct Message(pub Map<String, Json>);

impl Message {
    /// A message with a role and plain-text content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        let mut m = Map::new();
        m.insert("role".into(), Json::String(role.into()));
        m.insert("content".into(), Json::String(content.into()));
        Message(m)
    }

    /// Sets a field (e.g. `tool_calls`, `reasoning_content`), keeping the position of an
    /// existing key, and returns the message.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// The `role` field, if it is a string.
    pub fn role(&self) -> Option<&str> {
        self.0.get("role").and_then(Json::as_str)
    }

    /// The `content` field as text: the string itself, or the concatenated `text` of the
    /// `{"type": "text"}` parts of a parts list.
    pub fn content_text(&self) -> Option<String> {
        match self.0.get("content")? {
            Json::String(s) => Some(s.clone()),
            Json::Array(parts) => Some(
                parts
                    .iter()
                    .filter(|p| p.get("type").and_then(Json::as_str) == Some("text"))
                    .filter_map(|p| p.get("text").and_then(Json::as_str))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Options for one render, mirroring `apply_chat_template`'s keyword arguments.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Append the header that starts an assistant turn.
    pub add_generation_prompt: bool,
    /// OpenAI-style tool definitions (a JSON list), visible to the template as `tools`;
    /// `None` makes `tools` None, as in transformers.
    pub tools: Option<Json>,
    /// Extra template variables, e.g. `enable_thinking`, `reasoning_effort`. They override
    /// `bos_token`/`eos_token` if they name them, as kwargs do in transformers.
    pub extra: Map<String, Json>,
}

/// A compiled chat template: compile once with [`ChatTemplate::new`], render many times.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Whether a `tool_use` variant was added (see [`ChatTemplate::with_tool_use_template`]).
    has_tool_use: bool,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

const TEMPLATE_NAME: &str = "chat_template";
const TOOL_USE_TEMPLATE_NAME: &str = "tool_use";

/// The GGUF metadata key of a model's tool-use template variant (llama.cpp's
/// `LLM_KV_TOKENIZER_CHAT_TEMPLATE` with the name `tool_use`), used when tools are given.
pub const GGUF_TOOL_USE_TEMPLATE_KEY: &str = "tokenizer.chat_template.tool_use";

/// The fallback template (ChatML, as llama.cpp's `LLM_CHAT_TEMPLATE_CHATML` formats it:
/// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`).
/// Content given as a parts list contributes the text of its text parts.
const CHATML_FALLBACK: &str = include_str!("chatml.jinja");

/// A built-in template for GGUFs that carry none, chosen by architecture: ChatML for most,
/// ChatGLM3's `[gMASK]sop<|user|>\n ...` for `chatglm`, GLM-4's `[gMASK]<sop><|user|>\n...` for
/// `glm4`, Gemma's `<start_of_turn>user\n...<end_of_turn>` for `gemma`/`gemma2`/`gemma3` (see
/// the .jinja files beside this one for exactly what each renders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    ChatMl,
    ChatGlm3,
    Glm4,
    Gemma,
}

impl Fallback {
    pub const ALL: [Fallback; 4] = [
        Fallback::ChatMl,
        Fallback::ChatGlm3,
        Fallback::Glm4,
        Fallback::Gemma,
    ];

    /// The fallback for a GGUF `general.architecture`. ChatGLM3 files use `chatglm`; so does
    /// the first GLM-4-9B-Chat, which has its template in the file.
    pub fn for_arch(arch: &str) -> Fallback {
        match arch {
            "chatglm" => Fallback::ChatGlm3,
            "glm4" => Fallback::Glm4,
            // Gemma files without a template are mostly base models (such as the 270M one
            // the tests use); Gemma's own turn markers are still closer to what they saw
            // in training than ChatML, whose markers are not even single tokens for them.
            "gemma" | "gemma2" | "gemma3" => Fallback::Gemma,
            _ => Fallback::ChatMl,
        }
    }

    /// The file name under crates/template/src (the key of its golden).
    pub fn file_name(self) -> &'static str {
        match self {
            Fallback::ChatMl => "chatml.jinja",
            Fallback::ChatGlm3 => "chatglm3.jinja",
            Fallback::Glm4 => "glm4.jinja",
            Fallback::Gemma => "gemma.jinja",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Fallback::ChatMl => CHATML_FALLBACK,
            Fallback::ChatGlm3 => include_str!("chatglm3.jinja"),
            Fallback::Glm4 => include_str!("glm4.jinja"),
            Fallback::Gemma => include_str!("gemma.jinja"),
        }
    }

    /// A short name for messages ("ChatML", "ChatGLM3", "GLM-4").
    pub fn name(self) -> &'static str {
        match self {
            Fallback::ChatMl => "ChatML",
            Fallback::ChatGlm3 => "ChatGLM3",
            Fallback::Glm4 => "GLM-4",
            Fallback::Gemma => "Gemma",
        }
    }
}

/// Where a template loaded by [`ChatTemplate::from_gguf`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    /// The GGUF's own `tokenizer.chat_template`.
    Gguf,
    /// The GGUF has no template: [`ChatTemplate::fallback`] (ChatML); the caller should warn.
    Fallback,
}

/// The GGUF metadata key holding the model's default chat template.
pub const GGUF_CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// The error `raise_exception` attaches as the source of its minijinja error, so that
/// [`ChatTemplate::render`] can report the template's own message as [`TemplateError::Raised`].
#[derive(Debug)]
struct RaisedByTemplate(String);

impl std::fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

impl ChatTemplate {
    /// Compiles `source` (a Jinja chat template, e.g. GGUF `tokenizer.chat_template`).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        configure(&mut env);
        env.add_template_owned(TEMPLATE_NAME, rewrite_source(source))
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            has_tool_use: false,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Adds a `tool_use` variant (Hugging Face tokenizers may carry a dict of named templates,
    /// GGUF stores it as `tokenizer.chat_template.tool_use`). As in transformers'
    /// `get_chat_template`, it is used whenever `RenderOptions::tools` is `Some` (even an
    /// empty list); otherwise the default template is used.
    pub fn with_tool_use_template(mut self, source: &str) -> Result<Self, TemplateError> {
        self.env
            .add_template_owned(TOOL_USE_TEMPLATE_NAME, rewrite_source(source))
            .map_err(|e| TemplateError::Syntax(format!("tool_use template: {}", describe(&e))))?;
        self.has_tool_use = true;
        Ok(self)
    }

    /// The documented fallback for models whose GGUF has no `tokenizer.chat_template`:
    /// ChatML, the format llama.cpp falls back to. The caller should log a warning.
    pub fn fallback(bos_token: &str, eos_token: &str) -> Self {
        // The fallback source is ours and covered by tests; failing to compile it is a bug.
        Self::new(CHATML_FALLBACK, bos_token, eos_token).expect("built-in ChatML template compiles")
    }

    /// The built-in template `which` (for a model without one; see [`Fallback::for_arch`]).
    pub fn builtin(which: Fallback, bos_token: &str, eos_token: &str) -> Self {
        // Our own sources, covered by the golden tests: failing to compile one is a bug.
        Self::new(which.source(), bos_token, eos_token).expect("built-in template compiles")
    }

    /// The model's chat template from GGUF metadata (`tokenizer.chat_template`, plus
    /// `tokenizer.chat_template.tool_use` when present), with the BOS
    /// and EOS token texts (`tokenizer.ggml.tokens[tokenizer.ggml.{bos,eos}_token_id]`; empty
    /// when the file does not name them). Falls back to ChatML when the GGUF has no template,
    /// as llama.cpp does; the returned [`TemplateSource`] says which, so the caller can warn.
    pub fn from_gguf(
        gguf: &hearth_formats::GgufFile,
    ) -> Result<(Self, TemplateSource), TemplateError> {
        let token_text = |key: &str| -> String {
            let tokens = gguf.get("tokenizer.ggml.tokens").and_then(|v| v.as_array());
            match (tokens, gguf.get_u64(key)) {
                (Some(tokens), Some(id)) => usize::try_from(id)
                    .ok()
                    .and_then(|id| tokens.get(id))
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            }
        };
        let bos = token_text("tokenizer.ggml.bos_token_id");
        let eos = token_text("tokenizer.ggml.eos_token_id");
        let text = |key: &str| -> Result<Option<&str>, TemplateError> {
            match gguf.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(Some)
                    .ok_or_else(|| TemplateError::Metadata(format!("{key} is not a string"))),
            }
        };
        let tool_use = text(GGUF_TOOL_USE_TEMPLATE_KEY)?;
        // llama.cpp (common_chat_templates_init) uses the tool_use variant as the default
        // when only that one exists.
        match text(GGUF_CHAT_TEMPLATE_KEY)?.or(tool_use) {
            Some(source) => {
                let mut t = Self::new(source, &bos, &eos)?;
                if let Some(tool_use) = tool_use {
                    t = t.with_tool_use_template(tool_use)?;
                }
                Ok((t, TemplateSource::Gguf))
            }
            None => {
                let arch = gguf.get_str("general.architecture").unwrap_or_default();
                Ok((
                    Self::builtin(Fallback::for_arch(arch), &bos, &eos),
                    TemplateSource::Fallback,
                ))
            }
        }
    }

    /// The source of the fallback template (for `hearth template` to show, and for tests).
    pub fn fallback_source() -> &'static str {
        CHATML_FALLBACK
    }

    /// Pins the time `strftime_now` sees (tests, reproducible prompts). By default it is
    /// the current UTC time (transformers uses the host's local time; a server has no
    /// meaningful local zone, so UTC is the documented choice).
    pub fn with_fixed_now(mut self, now: CivilTime) -> Self {
        self.env
            .add_function("strftime_now", move |fmt: &str| -> Result<Value, Error> {
                Ok(Value::from(now.strftime(fmt)))
            });
        self
    }

    /// Renders the conversation.
    pub fn render(
        &self,
        messages: &[Message],
        opts: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let name = if self.has_tool_use && opts.tools.is_some() {
            TOOL_USE_TEMPLATE_NAME
        } else {
            TEMPLATE_NAME
        };
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        let messages: Vec<Json> = messages
            .iter()
            .map(|m| Json::Object(prepare_message(&m.0)))
            .collect();
        let mut ctx = Map::new();
        ctx.insert("bos_token".into(), Json::String(self.bos_token.clone()));
        ctx.insert("eos_token".into(), Json::String(self.eos_token.clone()));
        for (k, v) in &opts.extra {
            ctx.insert(k.clone(), v.clone());
        }
        ctx.insert("messages".into(), Json::Array(messages));
        ctx.insert("tools".into(), opts.tools.clone().unwrap_or(Json::Null));
        ctx.insert("documents".into(), Json::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(opts.add_generation_prompt),
        );
        let ctx: Value = ctx
            .iter()
            .map(|(k, v)| (Value::from(k.as_str()), py_value(v)))
            .collect();
        tmpl.render(ctx).map_err(|e| {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = src {
                if let Some(raised) = err.downcast_ref::<RaisedByTemplate>() {
                    return TemplateError::Raised(raised.0.clone());
                }
                src = err.source();
            }
            TemplateError::Render(describe(&e))
        })
    }
}

/// The message as transformers hands it to the template:
/// 1. `apply_chat_template` drops keys whose value is None ("Some APIs return content=None
///    ... many chat templates crash ... while they handle a missing key");
/// 2. `render_jinja_template` (`_alias_reasoning_fields`) takes the first non-null of
///    `reasoning_content`, `thinking`, `reasoning` and, if there is one, rebuilds the dict as
///    `{"thinking": r, **message, "reasoning_content": r}` (gpt-oss templates read `thinking`).
///    Python dict semantics: `thinking` comes first unless the message already had it (then it
///    keeps the message's value), `reasoning_content` keeps its position or is appended.
pub fn prepare_message(message: &Map<String, Json>) -> Map<String, Json> {
    let base: Map<String, Json> = message
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reasoning = ["reasoning_content", "thinking", "reasoning"]
        .iter()
        .find_map(|k| base.get(*k))
        .cloned();
    let Some(reasoning) = reasoning else {
        return base;
    };
    let mut out = Map::new();
    out.insert("thinking".into(), reasoning.clone());
    for (k, v) in base {
        out.insert(k, v);
    }
    out.insert("reasoning_content".into(), reasoning);
    out
}

/// Parses an OpenAI-style messages list: either a JSON array of message objects or an
/// object with a `messages` array (a chat-completions request body). Each message must be an
/// object with a string `role`; `content` must be a string, a list of content-part objects,
/// or null; `tool_calls` a list or null; `name`, `tool_call_id`, `reasoning_content` strings
/// or null. Errors name the offending message index and field.
pub fn parse_messages(json: &str) -> Result<Vec<Message>, TemplateError> {
    let root: Json = serde_json::from_str(json)
        .map_err(|e| TemplateError::Messages(format!("not valid JSON: {e}")))?;
    let list = match root {
        Json::Array(list) => list,
        Json::Object(mut obj) => match obj.remove("messages") {
            Some(Json::Array(list)) => list,
            Some(other) => {
                return Err(TemplateError::Messages(format!(
                    "\"messages\" must be an array, got {}",
                    json_kind(&other)
                )))
            }
            None => {
                return Err(TemplateError::Messages(
                    "expected an array of messages or an object with a \"messages\" array".into(),
                ))
            }
        },
        other => {
            return Err(TemplateError::Messages(format!(
                "expected an array of messages, got {}",
                json_kind(&other)
            )))
        }
    };
    list.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let Json::Object(obj) = m else {
                return Err(TemplateError::Messages(format!(
                    "messages[{i}]: expected an object, got {}",
                    json_kind(&m)
                )));
            };
            match obj.get("role") {
                Some(Json::String(_)) => {}
                Some(other) => {
                    return Err(TemplateError::Messages(format!(
                        "messages[{i}].role: expected a string, got {}",
                        json_kind(other)
                    )))
                }
                None => return Err(TemplateError::Messages(format!("messages[{i}]: missing \"role\""))),
            }
            match obj.get("content") {
                None | Some(Json::Null) | Some(Json::String(_)) => {}
                Some(Json::Array(parts)) => {
                    for (j, p) in parts.iter().enumerate() {
                        if !p.is_object() {
                            return Err(TemplateError::Messages(format!(
                                "messages[{i}].content[{j}]: expected a content-part object, got {}",
                                json_kind(p)
                            )));
                        }
                    }
                }
                Some(other) => {
                    return Err(TemplateError::Messages(format!(
                        "messages[{i}].content: expected a string, a list of content parts, or null, got {}",
                        json_kind(other)
                    )))
                }
            }
            if let Some(tc) = obj.get("tool_calls") {
                if !(tc.is_array() || tc.is_null()) {
                    return Err(TemplateError::Messages(format!(
                        "messages[{i}].tool_calls: expected a list or null, got {}",
                        json_kind(tc)
                    )));
                }
            }
            for key in ["name", "tool_call_id", "reasoning_content"] {
                if let Some(v) = obj.get(key) {
                    if !(v.is_string() || v.is_null()) {
                        return Err(TemplateError::Messages(format!(
                            "messages[{i}].{key}: expected a string or null, got {}",
                            json_kind(v)
                        )));
                    }
                }
            }
            Ok(Message(obj))
        })
        .collect()
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A one-line description of a minijinja error with its location in the template.
fn describe(e: &Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        let _ = write!(s, " (template line {line})");
    }
    s
}

/// Rewrites the template source before compiling, for two jinja2 behaviours minijinja's
/// syntax cannot express directly:
///
/// * transformers registers a `{% generation %}...{% endgeneration %}` block tag (its
///   AssistantTracker extension) that renders its body unchanged; minijinja has no such tag,
///   so it becomes the equivalent `{% if true %}...{% endif %}`.
/// * jinja2 raises `TypeError: 'NoneType' object is not iterable` for `{% for x in none %}`
///   (e.g. a tool-use template looping over `tools` when no tools were given), while
///   minijinja iterates None as empty. `for T in EXPR` becomes `for T in (EXPR)|__py_iter`,
///   a filter that raises on None and passes everything else through unchanged.
///
/// Whitespace-control markers (`{%-`, `-%}`) are kept, so trimming is identical. Comments,
/// `{{ ... }}` expressions and `{% raw %}` blocks are copied verbatim.
fn rewrite_source(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    while let Some(pos) = rest.find('{') {
        let after = &rest[pos..];
        let close = if after.starts_with("{#") {
            "#}"
        } else if after.starts_with("{{") {
            "}}"
        } else if after.starts_with("{%") {
            "%}"
        } else {
            out.push_str(&rest[..pos + 1]);
            rest = &rest[pos + 1..];
            continue;
        };
        out.push_str(&rest[..pos]);
        let Some(end) = after[2..].find(close).map(|e| e + 2) else {
            out.push_str(after);
            return out;
        };
        let tag = &after[..end + 2];
        rest = &after[end + 2..];
        if close != "%}" {
            out.push_str(tag);
            continue;
        }
        let inner = &tag[2..end];
        let (lead, body) = match inner.strip_prefix(['-', '+']) {
            Some(b) => (&inner[..1], b),
            None => ("", inner),
        };
        let (body, trail) = match body.strip_suffix(['-', '+']) {
            Some(b) => (b, &body[body.len() - 1..]),
            None => (body, ""),
        };
        let words: Vec<&str> = body.split_whitespace().collect();
        match words.first().copied() {
            Some("generation") if words.len() == 1 => {
                let _ = write!(out, "{{%{lead} if true {trail}%}}");
            }
            Some("endgeneration") if words.len() == 1 => {
                let _ = write!(out, "{{%{lead} endif {trail}%}}");
            }
            Some("for") => match rewrite_for(body) {
                Some(new_body) => {
                    let _ = write!(out, "{{%{lead}{new_body}{trail}%}}");
                }
                None => out.push_str(tag),
            },
            Some("raw") => {
                out.push_str(tag);
                // Copy verbatim through the matching endraw tag.
                let mut search = 0;
                loop {
                    let Some(open) = rest[search..].find("{%").map(|o| o + search) else {
                        out.push_str(rest);
                        return out;
                    };
                    let Some(close) = rest[open..].find("%}").map(|c| c + open) else {
                        out.push_str(rest);
                        return out;
                    };
                    let inner = rest[open + 2..close]
                        .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
                    if inner == "endraw" {
                        out.push_str(&rest[..close + 2]);
                        rest = &rest[close + 2..];
                        break;
                    }
                    search = close + 2;
                }
            }
            _ => out.push_str(tag),
        }
    }
    out.push_str(rest);
    out
}

/// `for TARGETS in EXPR [if COND] [recursive]` -> `for TARGETS in (EXPR)|__py_iter ...`.
/// EXPR ends at the first top-level `if`/`recursive` keyword outside string literals and
/// brackets (jinja2 parses the iterable without conditional expressions). Returns None when
/// the statement does not have that shape, leaving it unchanged.
fn rewrite_for(body: &str) -> Option<String> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let bytes: Vec<(usize, char)> = body.char_indices().collect();
    // Find the `in` keyword (word-bounded) outside strings.
    let keyword_at = |i: usize, kw: &str| -> bool {
        body[bytes[i].0..].starts_with(kw)
            && (i == 0 || !is_word(bytes[i - 1].1))
            && !matches!(body[bytes[i].0 + kw.len()..].chars().next(), Some(c) if is_word(c))
    };
    let mut in_pos = None;
    for (i, &(_, c)) in bytes.iter().enumerate() {
        if keyword_at(i, "in") {
            in_pos = Some(i);
            break;
        }
        if matches!(c, '\'' | '"') {
            return None; // targets never contain strings
        }
    }
    let in_pos = in_pos?;
    let expr_start = bytes[in_pos].0 + 2;
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut expr_end = body.len();
    let mut i = in_pos + 1;
    while i < bytes.len() {
        let c = bytes[i].1;
        if let Some(q) = quote {
            if c == '\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ if depth == 0
                    && bytes[i].0 > expr_start
                    && (keyword_at(i, "if") || keyword_at(i, "recursive")) =>
                {
                    expr_end = bytes[i].0;
                    break;
                }
                _ => {}
            }
        }
        i += 1;
    }
    let expr = body[expr_start..expr_end].trim();
    if expr.is_empty() {
        return None;
    }
    Some(format!(
        "{} in ({expr})|__py_iter {}",
        &body[..bytes[in_pos].0].trim_end(),
        body[expr_end..].trim()
    ))
}

/// Builds the transformers-compatible environment (see the crate docs).
fn configure(env: &mut Environment<'static>) {
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    // Chat templates are plain text: no HTML autoescaping (jinja2's from_string default).
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_unknown_method_callback(py_methods);
    env.add_filter("__py_iter", |v: Value| -> Result<Value, Error> {
        match v.kind() {
            ValueKind::None => Err(Error::new(
                ErrorKind::InvalidOperation,
                "'NoneType' object is not iterable",
            )),
            _ => Ok(v),
        }
    });
    env.add_filter("trim", |v: Value, chars: Option<&str>| -> Value {
        // jinja2: `soft_str(value).strip(chars)`, so non-strings are trimmed as their str().
        let mut s = String::new();
        if !v.is_undefined() {
            let _ = pyfmt::write_py_str(&mut s, &v);
        }
        Value::from(match chars {
            Some(set) => s.trim_matches(|c| set.contains(c)).to_string(),
            None => s.trim_matches(pyfmt::is_py_space).to_string(),
        })
    });
    env.add_filter("length", |v: Value| -> Result<Value, Error> {
        // jinja2's Undefined has len() 0.
        if v.is_undefined() {
            return Ok(Value::from(0));
        }
        if v.downcast_object_ref::<Generator>().is_some() {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "object of type 'generator' has no len()",
            ));
        }
        minijinja::filters::length(&v).map(Value::from)
    });
    // jinja2's map/select/reject/selectattr/rejectattr return generators: iterable and truthy,
    // but without len() and not JSON-serializable. Returning a lazy iterable (not a list)
    // keeps `|length` and `|tojson` raising as they do in jinja2; `|list` makes a list.
    env.add_filter("map", |state: &State, v: Value, args: Rest<Value>| {
        minijinja::filters::map(state, v, args).map(generator)
    });
    env.add_filter(
        "select",
        |state: &State, v: Value, test: Option<String>, args: Rest<Value>| {
            minijinja::filters::select(state, v, test.map(Into::into), args).map(generator)
        },
    );
    env.add_filter(
        "reject",
        |state: &State, v: Value, test: Option<String>, args: Rest<Value>| {
            minijinja::filters::reject(state, v, test.map(Into::into), args).map(generator)
        },
    );
    env.add_filter(
        "selectattr",
        |state: &State, v: Value, attr: String, test: Option<String>, args: Rest<Value>| {
            minijinja::filters::selectattr(state, v, attr.into(), test.map(Into::into), args)
                .map(generator)
        },
    );
    env.add_filter(
        "rejectattr",
        |state: &State, v: Value, attr: String, test: Option<String>, args: Rest<Value>| {
            minijinja::filters::rejectattr(state, v, attr.into(), test.map(Into::into), args)
                .map(generator)
        },
    );
    // `{{ x }}` prints `str(x)`: Python repr for containers, `True`, `None`, float repr.
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() {
            return Ok(());
        }
        pyfmt::write_py_str(out, value)
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "formatting failed"))
    });
    env.add_filter("tojson", tojson_filter);
    env.add_filter("string", |v: Value| -> Value {
        if v.is_safe() || v.kind() == ValueKind::String {
            return v;
        }
        let mut s = String::new();
        let _ = pyfmt::write_py_str(&mut s, &v);
        Value::from(s)
    });
    env.add_filter("join", join_filter);
    env.add_test("sequence", |v: &Value| {
        // jinja2: `len(value)` and `value.__getitem__` both exist (str, list, dict, Undefined).
        matches!(
            v.kind(),
            ValueKind::String | ValueKind::Seq | ValueKind::Map | ValueKind::Undefined
        )
    });
    env.add_test("iterable", |v: &Value| {
        // jinja2: `iter(value)` succeeds (str, list, dict, Undefined).
        matches!(
            v.kind(),
            ValueKind::String
                | ValueKind::Seq
                | ValueKind::Map
                | ValueKind::Iterable
                | ValueKind::Undefined
        )
    });
    env.add_test("number", |v: &Value| {
        // jinja2: isinstance(value, numbers.Number), which includes bool.
        v.is_number() || v.kind() == ValueKind::Bool
    });
    env.add_function("raise_exception", |msg: Value| -> Result<Value, Error> {
        let mut text = String::new();
        let _ = pyfmt::write_py_str(&mut text, &msg);
        Err(Error::new(ErrorKind::InvalidOperation, text.clone())
            .with_source(RaisedByTemplate(text)))
    });
    env.add_function("strftime_now", |fmt: &str| -> Result<Value, Error> {
        Ok(Value::from(CivilTime::now_utc().strftime(fmt)))
    });
}

/// Converts JSON input into template values whose lists and dicts print (`~`, string
/// filters, error messages) as Python's `str()` would, since minijinja's `~` operator uses the
/// value's own Display. Scalars are plain values.
fn py_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from_object(PyList(items.iter().map(py_value).collect())),
        Json::Object(map) => Value::from_object(PyDict(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), py_value(v)))
                .collect(),
        )),
    }
}

/// A JSON array as a template sequence that renders like a Python list.
#[derive(Debug)]
struct PyList(Vec<Value>);

impl Object for PyList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(usize::try_from(key.clone()).ok()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.len())
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        pyfmt::write_py_repr(f, &Value::from_dyn_object(self.clone()))
    }
}

/// A JSON object as a template map (insertion-ordered, like a Python dict) that renders
/// like a Python dict. The inner value is a native minijinja map.
#[derive(Debug)]
struct PyDict(Value);

impl Object for PyDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.as_object()?.get_value(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| match this.0.try_iter() {
            Ok(keys) => Box::new(keys),
            Err(_) => Box::new(std::iter::empty()),
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        self.0.len()
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        pyfmt::write_py_repr(f, &Value::from_dyn_object(self.clone()))
    }
}

/// Stands in for the Python generator that jinja2's map/select/reject/selectattr/rejectattr
/// return (see `configure`): iterable (re-iterable, more lenient than a one-shot generator),
/// always truthy, no `len()`, not JSON-serializable, not subscriptable.
#[derive(Debug)]
struct Generator(Vec<Value>);

impl Object for Generator {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| Box::new(this.0.iter().cloned()))
    }
}

fn generator(items: Vec<Value>) -> Value {
    Value::from_object(Generator(items))
}

/// Python string/dict/list methods: the minijinja-contrib pycompat set, with Python's
/// definition of whitespace for argument-less `strip`/`lstrip`/`rstrip`.
fn py_methods(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let (Some(s), true) = (value.as_str(), args.is_empty()) {
        match method {
            "strip" => return Ok(Value::from(s.trim_matches(pyfmt::is_py_space))),
            "lstrip" => return Ok(Value::from(s.trim_start_matches(pyfmt::is_py_space))),
            "rstrip" => return Ok(Value::from(s.trim_end_matches(pyfmt::is_py_space))),
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, with those parameters accepted positionally or by keyword.
fn tojson_filter(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > NAMES.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("tojson() takes at most {} arguments", NAMES.len() + 1),
        ));
    }
    let mut params: [Option<Value>; 4] = Default::default();
    for (i, a) in args.iter().enumerate() {
        params[i] = Some(a.clone());
    }
    for (i, name) in NAMES.iter().enumerate() {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            if params[i].is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson() got multiple values for argument '{name}'"),
                ));
            }
            params[i] = Some(v);
        }
    }
    kwargs.assert_all_used()?;
    let opts = pyfmt::JsonOptions::from_params(&params)?;
    let mut out = String::new();
    pyfmt::write_json(&mut out, value, &opts, 0)?;
    Ok(Value::from(out))
}

/// jinja2's `join(value, d='', attribute=None)`: `d.join(str(x) for x in value)`, where
/// `str()` is Python's (so `True`, `None`, Python reprs of containers).
fn join_filter(value: &Value, d: Option<&str>, kwargs: Kwargs) -> Result<Value, Error> {
    let attribute: Option<Value> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    let d = d.unwrap_or("");
    let mut out = String::new();
    match value.kind() {
        // jinja2's Undefined iterates as empty; None is not iterable.
        ValueKind::Undefined => return Ok(Value::from("")),
        ValueKind::None => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "'NoneType' object is not iterable",
            ))
        }
        _ => {}
    }
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(d);
        }
        let item = match &attribute {
            Some(attr) => match attr.as_str() {
                Some(path) => {
                    let mut v = item;
                    for part in path.split('.') {
                        v = match part.parse::<usize>() {
                            Ok(idx) => v.get_item(&Value::from(idx))?,
                            Err(_) => v.get_attr(part)?,
                        };
                    }
                    v
                }
                None => item.get_item(attr)?,
            },
            None => item,
        };
        pyfmt::write_py_str(&mut out, &item)
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "formatting failed"))?;
    }
    Ok(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_template_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ChatTemplate>();
    }

    #[test]
    fn parse_messages_accepts_list_and_request_body() {
        let list = r#"[{"role":"user","content":"hi","name":null},{"role":"assistant","content":[{"type":"text","text":"yo"}]}]"#;
        let m = parse_messages(list).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].role(), Some("user"));
        assert_eq!(m[1].content_text().as_deref(), Some("yo"));
        // Key order is kept (templates can see it).
        assert_eq!(
            m[0].0.keys().collect::<Vec<_>>(),
            ["role", "content", "name"]
        );
        let body = r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(parse_messages(body).unwrap().len(), 1);
    }

    #[test]
    fn parse_messages_errors_name_the_field() {
        let err = |json: &str| parse_messages(json).unwrap_err().to_string();
        assert!(err("nope").contains("not valid JSON"));
        assert!(err("42").contains("expected an array of messages"));
        assert!(err(r#"{"messages": 1}"#).contains("\"messages\" must be an array"));
        assert!(err(r#"[1]"#).contains("messages[0]: expected an object"));
        assert!(err(r#"[{"content":"x"}]"#).contains("messages[0]: missing \"role\""));
        assert!(err(r#"[{"role":"user","content":"a"},{"role":3}]"#).contains("messages[1].role"));
        assert!(err(r#"[{"role":"user","content":5}]"#).contains("messages[0].content"));
        assert!(err(r#"[{"role":"user","content":["x"]}]"#).contains("messages[0].content[0]"));
        assert!(err(r#"[{"role":"assistant","tool_calls":{}}]"#).contains("messages[0].tool_calls"));
        assert!(err(r#"[{"role":"tool","tool_call_id":1}]"#).contains("messages[0].tool_call_id"));
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            ChatTemplate::new("{% if %}", "", ""),
            Err(TemplateError::Syntax(_))
        ));
        let t =
            ChatTemplate::new("{{ raise_exception('no ' + messages[0].role) }}", "", "").unwrap();
        match t.render(&[Message::new("user", "x")], &RenderOptions::default()) {
            Err(TemplateError::Raised(m)) => assert_eq!(m, "no user"),
            other => panic!("{other:?}"),
        }
        // raise_exception inside a macro still reports the template's message.
        let t = ChatTemplate::new(
            "{% macro f() %}{{ raise_exception('deep') }}{% endmacro %}{{ f() }}",
            "",
            "",
        )
        .unwrap();
        assert!(
            matches!(t.render(&[], &RenderOptions::default()), Err(TemplateError::Raised(m)) if m == "deep")
        );
        let t = ChatTemplate::new("{{ messages[0].a.b }}", "", "").unwrap();
        assert!(matches!(
            t.render(&[Message::new("user", "x")], &RenderOptions::default()),
            Err(TemplateError::Render(_))
        ));
    }

    #[test]
    fn tool_use_variant_is_chosen_when_tools_are_given() {
        let t = ChatTemplate::new("default", "", "")
            .unwrap()
            .with_tool_use_template("tools:{{ tools | length }}")
            .unwrap();
        let msgs = [Message::new("user", "x")];
        assert_eq!(
            t.render(&msgs, &RenderOptions::default()).unwrap(),
            "default"
        );
        let opts = RenderOptions {
            tools: Some(Json::Array(vec![])),
            ..Default::default()
        };
        assert_eq!(t.render(&msgs, &opts).unwrap(), "tools:0");
        // Without a variant, tools go to the default template.
        let plain = ChatTemplate::new("default", "", "").unwrap();
        assert_eq!(plain.render(&msgs, &opts).unwrap(), "default");
    }

    #[test]
    fn prepare_message_drops_nulls_and_aliases_reasoning() {
        let m = Message::new("assistant", "a")
            .with("reasoning", "r")
            .with("tool_calls", Json::Null);
        let p = prepare_message(&m.0);
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            [
                "thinking",
                "role",
                "content",
                "reasoning",
                "reasoning_content"
            ]
        );
        assert_eq!(p["thinking"], "r");
        assert_eq!(p["reasoning_content"], "r");
        let plain = Message::new("user", "u");
        assert_eq!(prepare_message(&plain.0), plain.0);
    }

    #[test]
    fn rewrite_for_wraps_only_the_iterable() {
        assert_eq!(
            rewrite_for(" for m in messages ").unwrap(),
            " for m in (messages)|__py_iter "
        );
        assert_eq!(
            rewrite_for(" for k, v in d.items() if k != 'if' recursive").unwrap(),
            " for k, v in (d.items())|__py_iter if k != 'if' recursive"
        );
        assert_eq!(
            rewrite_for(" for x in f(a if b else c) if x").unwrap(),
            " for x in (f(a if b else c))|__py_iter if x"
        );
        assert_eq!(
            rewrite_for(" for index in indexes ").unwrap(),
            " for index in (indexes)|__py_iter "
        );
        assert!(rewrite_for(" for x ").is_none());
    }

    #[test]
    fn rewrite_source_keeps_raw_comments_and_whitespace_markers() {
        let src = "{#- {% for a in b %} -#}{%- for m in xs -%}{{ '{% for' }}{%+ endfor %}{% raw %}{% for q in r %}{% endraw %}{%- generation -%}";
        assert_eq!(
            rewrite_source(src),
            "{#- {% for a in b %} -#}{%- for m in (xs)|__py_iter -%}{{ '{% for' }}{%+ endfor %}{% raw %}{% for q in r %}{% endraw %}{%- if true -%}"
        );
    }
}
