//! OpenAI chat-completions conversation -> harmony prompt text.

use crate::schema::{self, FunctionTool};
use crate::tokens::{CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START};
use crate::{date, pyjson, HarmonyError};
use serde_json::Value;

/// The model identity line both the reference and the gpt-oss chat template use by default.
pub const DEFAULT_MODEL_IDENTITY: &str =
    "You are ChatGPT, a large language model trained by OpenAI.";
/// gpt-oss's training cutoff, as the reference and the chat template print it.
pub const DEFAULT_KNOWLEDGE_CUTOFF: &str = "2024-06";

/// `Reasoning: low|medium|high` in the system message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningEffort {
    Low,
    #[default]
    Medium,
    High,
}

impl ReasoningEffort {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
        }
    }

    /// Parses the OpenAI `reasoning_effort` request field.
    pub fn parse(s: &str) -> Result<Self, HarmonyError> {
        match s {
            "low" => Ok(ReasoningEffort::Low),
            "medium" => Ok(ReasoningEffort::Medium),
            "high" => Ok(ReasoningEffort::High),
            other => Err(HarmonyError::Option {
                option: "reasoning_effort",
                reason: format!("{other:?} is not one of \"low\", \"medium\", \"high\""),
            }),
        }
    }
}

/// The `Current date:` line of the system message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CurrentDate {
    /// Today's UTC date, as the chat template's `strftime_now("%Y-%m-%d")` does.
    #[default]
    Today,
    /// This text verbatim (normally `YYYY-MM-DD`).
    Fixed(String),
    /// No date line (the reference renderer's behaviour when no date is configured).
    Omit,
}

/// Which renderer's conventions to follow where the two published ones differ (the list is in
/// crates/harmony/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// OpenAI's harmony format as the `openai-harmony` reference renders it (and the cookbook
    /// documents): raw tool results, `<|constrain|>json` on tool calls, nested tool schemas
    /// rendered in full. The default.
    #[default]
    Harmony,
    /// Byte for byte what the chat template shipped with the gpt-oss weights prints (as vendored
    /// in llama.cpp `models/templates/openai-gpt-oss-120b.jinja`), quirks included: tool results
    /// JSON-quoted, tool-call content type `json` without `<|constrain|>`, one tool call per
    /// assistant message, a trailing blank line after developer instructions.
    GptOssTemplate,
}

/// Where an assistant tool call's recipient goes in the message header (harmony flavour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecipientPlacement {
    /// `<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>`:
    /// the placement the cookbook shows and the model itself generates, so a re-rendered
    /// history matches the tokens the model produced (and the prefix cache).
    #[default]
    Channel,
    /// `<|start|>assistant to=functions.NAME<|channel|>commentary <|constrain|>json<|message|>`:
    /// the placement of the `openai-harmony` reference renderer.
    Header,
}

/// Everything besides the messages that shapes the prompt.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// OpenAI `tools` (`[{"type": "function", "function": {name, description, parameters}}]`;
    /// the bare `{name, description, parameters}` form is accepted too).
    pub tools: Vec<Value>,
    pub reasoning_effort: ReasoningEffort,
    /// `None` leaves the identity line out.
    pub model_identity: Option<String>,
    /// `None` leaves the `Knowledge cutoff:` line out.
    pub knowledge_cutoff: Option<String>,
    pub current_date: CurrentDate,
    /// The `# Valid channels:` list.
    pub valid_channels: Vec<String>,
    /// End with `<|start|>assistant` so the model writes the next assistant message. When
    /// false and the last message is an assistant answer, it ends with `<|return|>` (training
    /// form).
    pub add_generation_prompt: bool,
    /// Keep the reasoning of every earlier assistant turn (the reference's
    /// `auto_drop_analysis: false`). By default earlier reasoning is dropped, except for the
    /// tool calls of the turn still in progress.
    pub keep_past_reasoning: bool,
    pub flavor: Flavor,
    pub recipient_placement: RecipientPlacement,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            tools: Vec::new(),
            reasoning_effort: ReasoningEffort::Medium,
            model_identity: Some(DEFAULT_MODEL_IDENTITY.into()),
            knowledge_cutoff: Some(DEFAULT_KNOWLEDGE_CUTOFF.into()),
            current_date: CurrentDate::Today,
            valid_channels: ["analysis", "commentary", "final"]
                .map(String::from)
                .to_vec(),
            add_generation_prompt: true,
            keep_past_reasoning: false,
            flavor: Flavor::Harmony,
            recipient_placement: RecipientPlacement::Channel,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

struct ToolCall {
    id: Option<String>,
    name: String,
    arguments: Value,
    content_type: Option<String>,
}

/// One input message after normalisation of the OpenAI shapes.
struct Msg {
    role: Role,
    content: String,
    reasoning: Option<String>,
    tool_calls: Vec<ToolCall>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

fn msg_err(index: usize, reason: impl Into<String>) -> HarmonyError {
    HarmonyError::Message {
        index,
        reason: reason.into(),
    }
}

/// `content` as text: a string, null, or an array of text parts (concatenated).
fn content_text(index: usize, v: Option<&Value>) -> Result<String, HarmonyError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for (i, part) in parts.iter().enumerate() {
                let ty = part.get("type").and_then(Value::as_str).unwrap_or("text");
                match (ty, part.get("text").and_then(Value::as_str)) {
                    ("text" | "input_text" | "output_text", Some(t)) => out.push_str(t),
                    _ => {
                        return Err(msg_err(
                            index,
                            format!(
                                "content[{i}] has type {ty:?}: only text parts can be rendered \
                                 for gpt-oss"
                            ),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(other) => Err(msg_err(
            index,
            format!("content must be a string, null or an array of parts, not {other}"),
        )),
    }
}

fn parse_message(index: usize, m: &Value) -> Result<Msg, HarmonyError> {
    let obj = m
        .as_object()
        .ok_or_else(|| msg_err(index, "a message must be a JSON object"))?;
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") | Some("function") => Role::Tool,
        Some(other) => return Err(msg_err(index, format!("unknown role {other:?}"))),
        None => return Err(msg_err(index, "missing string field \"role\"")),
    };
    let content = content_text(index, obj.get("content"))?;
    // Providers spell the chain of thought differently; take the first one present.
    let reasoning = ["reasoning_content", "reasoning", "thinking"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .map(String::from);
    let mut tool_calls = Vec::new();
    if let Some(calls) = obj.get("tool_calls").filter(|v| !v.is_null()) {
        let calls = calls
            .as_array()
            .ok_or_else(|| msg_err(index, "tool_calls must be an array"))?;
        for (i, call) in calls.iter().enumerate() {
            let f = call.get("function").unwrap_or(call);
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    msg_err(index, format!("tool_calls[{i}].function.name is missing"))
                })?;
            tool_calls.push(ToolCall {
                id: call.get("id").and_then(Value::as_str).map(String::from),
                name: name.to_string(),
                arguments: f.get("arguments").cloned().unwrap_or(Value::Null),
                content_type: f
                    .get("content_type")
                    .and_then(Value::as_str)
                    .map(String::from),
            });
        }
    }
    Ok(Msg {
        role,
        content,
        reasoning,
        tool_calls,
        tool_call_id: obj
            .get("tool_call_id")
            .and_then(Value::as_str)
            .map(String::from),
        name: obj.get("name").and_then(Value::as_str).map(String::from),
    })
}

fn parse_tools(tools: &[Value]) -> Result<Vec<FunctionTool>, HarmonyError> {
    tools
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let f = t.get("function").unwrap_or(t);
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| HarmonyError::Tool {
                    index,
                    reason: "missing function.name".into(),
                })?;
            if let Some(ty) = t.get("type").and_then(Value::as_str) {
                if ty != "function" {
                    return Err(HarmonyError::Tool {
                        index,
                        reason: format!("type {ty:?} is not supported (only \"function\")"),
                    });
                }
            }
            Ok(FunctionTool {
                name: name.to_string(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                parameters: f.get("parameters").filter(|p| !p.is_null()).cloned(),
            })
        })
        .collect()
}

fn system_message(opts: &RenderOptions, has_tools: bool) -> String {
    let mut top = Vec::new();
    if let Some(id) = &opts.model_identity {
        top.push(id.clone());
    }
    if let Some(cutoff) = &opts.knowledge_cutoff {
        top.push(format!("Knowledge cutoff: {cutoff}"));
    }
    match &opts.current_date {
        CurrentDate::Today => top.push(format!("Current date: {}", date::today_utc())),
        CurrentDate::Fixed(d) => top.push(format!("Current date: {d}")),
        CurrentDate::Omit => {}
    }
    let mut sections = Vec::new();
    if !top.is_empty() {
        sections.push(top.join("\n"));
    }
    sections.push(format!("Reasoning: {}", opts.reasoning_effort.as_str()));
    if !opts.valid_channels.is_empty() {
        let mut channels = format!(
            "# Valid channels: {}. Channel must be included for every message.",
            opts.valid_channels.join(", ")
        );
        if has_tools {
            channels
                .push_str("\nCalls to these tools must go to the commentary channel: 'functions'.");
        }
        sections.push(channels);
    }
    format!("{START}system{MESSAGE}{}{END}", sections.join("\n\n"))
}

fn developer_message(
    instructions: Option<&str>,
    tools: &[FunctionTool],
    flavor: Flavor,
) -> Option<String> {
    let instructions = instructions.filter(|s| !s.is_empty());
    if instructions.is_none() && tools.is_empty() {
        return None;
    }
    let body = match flavor {
        Flavor::Harmony => {
            let mut sections = Vec::new();
            if let Some(i) = instructions {
                sections.push(format!("# Instructions\n\n{i}"));
            }
            if !tools.is_empty() {
                sections.push(schema::reference_namespace(tools));
            }
            sections.join("\n\n")
        }
        Flavor::GptOssTemplate => {
            let mut body = String::new();
            if let Some(i) = instructions {
                body.push_str(&format!("# Instructions\n\n{i}\n\n"));
            }
            if !tools.is_empty() {
                body.push_str(&schema::template_namespace(tools));
            }
            body
        }
    };
    Some(format!("{START}developer{MESSAGE}{body}{END}"))
}

fn analysis(text: &str) -> String {
    format!("{START}assistant{CHANNEL}analysis{MESSAGE}{text}{END}")
}

/// Arguments as the harmony flavour writes them: a string verbatim (OpenAI sends the JSON
/// text the model produced), anything else as compact JSON.
fn harmony_arguments(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "{}".into(),
        other => other.to_string(),
    }
}

/// Arguments as the template's `tool_call.arguments|tojson` prints them once the caller has
/// turned the OpenAI argument string into an object, as llama.cpp and transformers do before
/// applying the template.
fn template_arguments(v: &Value) -> String {
    match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(parsed) => pyjson::dumps(&parsed),
            Err(_) => pyjson::dumps(v),
        },
        other => pyjson::dumps(other),
    }
}

/// Renders an OpenAI chat-completions conversation as harmony prompt text.
///
/// A leading `system` or `developer` message becomes the developer message's `# Instructions`
/// (the harmony system message is reserved for identity, dates, reasoning effort and
/// channels); function tools go to the developer message too. Earlier assistant reasoning is
/// dropped unless it belongs to tool calls after the last final answer (the turn in progress)
/// or `keep_past_reasoning` is set.
pub fn render_chat(messages: &[Value], opts: &RenderOptions) -> Result<String, HarmonyError> {
    let msgs: Vec<Msg> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| parse_message(i, m))
        .collect::<Result<_, _>>()?;
    let tools = parse_tools(&opts.tools)?;
    let template = opts.flavor == Flavor::GptOssTemplate;

    let mut out = system_message(opts, !tools.is_empty());
    let (instructions, first) = match msgs.first() {
        Some(m) if matches!(m.role, Role::System | Role::Developer) => {
            (Some(m.content.as_str()), 1)
        }
        _ => (None, 0),
    };
    if let Some(dev) = developer_message(instructions, &tools, opts.flavor) {
        out.push_str(&dev);
    }

    // Tool results name the function they answer: by tool_call_id, else by the message's
    // `name`, else the most recent call (the template's only rule).
    let mut call_names: Vec<(String, String)> = Vec::new();
    let mut last_call: Option<String> = None;
    let n = msgs.len();
    for (i, m) in msgs.iter().enumerate().skip(first) {
        match m.role {
            Role::System | Role::Developer => {
                // The template has no place for later system messages and drops them; harmony
                // allows further developer messages, so keep the instruction where it was given.
                if !template && !m.content.is_empty() {
                    out.push_str(&format!(
                        "{START}developer{MESSAGE}# Instructions\n\n{}{END}",
                        m.content
                    ));
                }
            }
            Role::User => out.push_str(&format!("{START}user{MESSAGE}{}{END}", m.content)),
            Role::Assistant if !m.tool_calls.is_empty() => {
                let later_final = msgs[i + 1..]
                    .iter()
                    .any(|f| f.role == Role::Assistant && f.tool_calls.is_empty());
                let keep = opts.keep_past_reasoning || !later_final;
                let reasoning = m.reasoning.as_deref().filter(|r| !r.is_empty());
                let calls: &[ToolCall] = if template {
                    // The template renders the content of a tool-call message as its analysis
                    // and only the first call.
                    if !m.content.is_empty() && reasoning.is_some() {
                        return Err(msg_err(
                            i,
                            "the gpt-oss template cannot render both content and reasoning \
                             on a message with tool_calls",
                        ));
                    }
                    let thought = reasoning.or(Some(m.content.as_str()).filter(|c| !c.is_empty()));
                    if let (Some(t), true) = (thought, keep) {
                        out.push_str(&analysis(t));
                    }
                    &m.tool_calls[..1]
                } else {
                    if let (Some(r), true) = (reasoning, keep) {
                        out.push_str(&analysis(r));
                    }
                    // Text next to tool calls is a user-visible preamble: the commentary
                    // channel, which is never dropped.
                    if !m.content.is_empty() {
                        out.push_str(&format!(
                            "{START}assistant{CHANNEL}commentary{MESSAGE}{}{END}",
                            m.content
                        ));
                    }
                    &m.tool_calls
                };
                for call in calls {
                    let recipient = format!("functions.{}", call.name);
                    if template {
                        let ct = call.content_type.as_deref().unwrap_or("json");
                        out.push_str(&format!(
                            "{START}assistant to={recipient}{CHANNEL}commentary {ct}{MESSAGE}{}{CALL}",
                            template_arguments(&call.arguments)
                        ));
                    } else {
                        let ct = call
                            .content_type
                            .clone()
                            .unwrap_or_else(|| format!("{CONSTRAIN}json"));
                        let header = match opts.recipient_placement {
                            RecipientPlacement::Channel => {
                                format!("assistant{CHANNEL}commentary to={recipient} {ct}")
                            }
                            RecipientPlacement::Header => {
                                format!("assistant to={recipient}{CHANNEL}commentary {ct}")
                            }
                        };
                        out.push_str(&format!(
                            "{START}{header}{MESSAGE}{}{CALL}",
                            harmony_arguments(&call.arguments)
                        ));
                    }
                    if let Some(id) = &call.id {
                        call_names.push((id.clone(), call.name.clone()));
                    }
                    last_call = Some(call.name.clone());
                }
            }
            Role::Assistant => {
                let reasoning = m.reasoning.as_deref().filter(|r| !r.is_empty());
                let training_tail = i + 1 == n && !opts.add_generation_prompt;
                if let (Some(r), true) = (reasoning, training_tail || opts.keep_past_reasoning) {
                    out.push_str(&analysis(r));
                }
                // <|return|> only ever ends the answer being trained on; in a prompt every
                // earlier answer ends with <|end|>.
                let end = if training_tail { RETURN } else { END };
                out.push_str(&format!(
                    "{START}assistant{CHANNEL}final{MESSAGE}{}{end}",
                    m.content
                ));
                if template {
                    last_call = None;
                }
            }
            Role::Tool => {
                let by_id = m.tool_call_id.as_ref().and_then(|id| {
                    call_names
                        .iter()
                        .rev()
                        .find(|(cid, _)| cid == id)
                        .map(|(_, name)| name.clone())
                });
                let name = if template {
                    last_call.clone()
                } else {
                    by_id
                        .or_else(|| m.name.clone())
                        .or_else(|| last_call.clone())
                };
                let name = name.ok_or_else(|| {
                    msg_err(
                        i,
                        "tool message without a preceding assistant tool call to name it",
                    )
                })?;
                let body = if template {
                    pyjson::dumps(&Value::String(m.content.clone()))
                } else {
                    m.content.clone()
                };
                out.push_str(&format!(
                    "{START}functions.{name} to=assistant{CHANNEL}commentary{MESSAGE}{body}{END}"
                ));
            }
        }
    }
    if opts.add_generation_prompt {
        out.push_str(&format!("{START}assistant"));
    }
    Ok(out)
}
