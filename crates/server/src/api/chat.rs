//! `POST /v1/chat/completions` (OpenAI Chat Completions API).

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common::{self, Launch, SamplingFields, StopParam, StreamOptions};
use crate::backend::{Backend, BackendError, ChatFormat, OutputConstraints, TokenLogprob};
use crate::error::{ApiError, ApiResult};
use crate::generation::{Choice, ChoiceEvent, Collected};
use crate::ids;
use crate::json::JsonBody;
use crate::state::SharedState;
use crate::toolcall::ToolCall;

const ENDPOINT: &str = "chat_completions";
/// OpenAI's upper bound for `top_logprobs`.
const MAX_TOP_LOGPROBS: i64 = 20;

#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<Value>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub n: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub stop: Option<StopParam>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<HashMap<String, f32>>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    /// Accepted for compatibility (end-user id for abuse tracking); unused.
    pub user: Option<String>,
    pub response_format: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    // Extensions (vLLM names).
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// Harmony (gpt-oss) models: `low` | `medium` (default) | `high`, written into the
    /// system message. Ignored for other models, as OpenAI ignores it for non-reasoning ones.
    pub reasoning_effort: Option<String>,
}

pub async fn handler(
    State(state): State<SharedState>,
    body: Result<JsonBody<ChatCompletionRequest>, ApiError>,
) -> Response {
    common::respond(
        &state,
        ENDPOINT,
        body,
        |r| r.model.clone(),
        |req| handle(&state, req),
    )
    .await
}

/// A chat request validated, rendered, tokenized, admitted and handed to the backend: what
/// `/v1/chat/completions` streams or collects, and what the web UI's server-owned generations
/// (`crate::generations`) consume on their own task.
pub(crate) struct Prepared {
    pub choices: Vec<Choice>,
    pub request_id: String,
    pub model: String,
    pub context_length: usize,
    pub prompt_tokens: usize,
    pub logprobs: bool,
    pub include_usage: bool,
    pub stream: bool,
    /// The rendered prompt ends inside a `<think>` block (templates that open it for the
    /// model, as Qwen3's thinking variants and GLM do): the output starts as reasoning.
    pub opens_think: bool,
    /// Messages of the request left out to fit the context ([`prepare_fitted`]; 0 otherwise).
    pub messages_dropped: usize,
}

async fn handle(state: &SharedState, req: ChatCompletionRequest) -> ApiResult<Response> {
    let p = prepare(state, req).await?;
    let ctx = Ctx {
        id: p.request_id,
        created: ids::unix_now(),
        model: p.model,
        include_usage: p.include_usage,
        logprobs: p.logprobs,
        prompt_tokens: p.prompt_tokens,
    };
    let choices = p.choices;
    if p.stream {
        let (tx, resp) = common::sse_response(state);
        tokio::spawn(common::drive_stream(state.clone(), choices, tx, ctx));
        Ok(resp)
    } else {
        let collected = tokio::select! {
            c = futures::future::join_all(choices.into_iter().map(Choice::collect)) => c,
            _ = state.aborted() => return Err(ApiError::unavailable("The server shut down before the generation finished.")),
        };
        Ok(Json(ctx.response(collected)?).into_response())
    }
}

/// Everything of a chat completion up to the running choices (see [`Prepared`]): the request
/// as it is, refused when it does not fit (`/v1/chat/completions`).
pub(crate) async fn prepare(
    state: &SharedState,
    req: ChatCompletionRequest,
) -> ApiResult<Prepared> {
    prepare_inner(state, req, None).await
}

/// How a web UI conversation is fitted to the model ([`prepare_fitted`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fit {
    /// Leading messages always sent (the conversation's system prompt).
    pub head: usize,
    /// The conversation's `max_context_tokens`: the most tokens of the context it uses
    /// (prompt and reply), below the model's context length.
    pub max_context_tokens: Option<usize>,
}

/// [`prepare`] for the web UI's conversations: when the messages do not fit the model's
/// context (with room for the reply) or `max_messages`, the oldest are left out, keeping the
/// first `fit.head` messages (the conversation's system prompt) and at least the newest one
/// (see [`fit_prompt`]). How many were left out is in [`Prepared::messages_dropped`].
pub(crate) async fn prepare_fitted(
    state: &SharedState,
    req: ChatCompletionRequest,
    fit: Fit,
) -> ApiResult<Prepared> {
    prepare_inner(state, req, Some(fit)).await
}

/// The room kept for the reply when a conversation is fitted and its `max_tokens` is unset:
/// min(1024, context / 4) tokens.
pub(crate) fn default_reply_reserve(context_length: usize) -> usize {
    (context_length / 4).min(1024)
}

async fn prepare_inner(
    state: &SharedState,
    req: ChatCompletionRequest,
    fit: Option<Fit>,
) -> ApiResult<Prepared> {
    let started = Instant::now();
    state.check_not_draining()?;
    let card = state.model(&req.model)?;

    if fit.is_none() && req.messages.len() > state.config.max_messages {
        return Err(ApiError::invalid_param(
            "messages",
            format!(
                "A request may hold at most {} messages; this one has {}.",
                state.config.max_messages,
                req.messages.len()
            ),
        ));
    }
    let mut messages = normalize_messages(&req.messages)?;
    crate::guard::check_messages(state, &mut messages)?;
    let params = common::sampling(
        &SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            min_p: req.min_p,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            repetition_penalty: req.repetition_penalty,
            logit_bias: req.logit_bias.as_ref(),
        },
        &state.config.default_sampling,
    )?;
    let n = common::n_choices(req.n, state.config.max_n)?;
    let stop = common::stop_strings(req.stop.as_ref(), state.config.max_stop)?;
    let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "`top_logprobs` requires `logprobs` to be true.",
            ))
        }
        (true, None) => Some(0),
        (true, Some(k)) if (0..=MAX_TOP_LOGPROBS).contains(&k) => Some(k as usize),
        (true, Some(k)) => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                format!("`top_logprobs` must be between 0 and {MAX_TOP_LOGPROBS}, got {k}."),
            ))
        }
    };
    validate_response_format(req.response_format.as_ref())?;
    let tools = validate_tools(req.tools.as_deref())?;
    let parse_tools =
        tools.is_some() && req.tool_choice.as_ref().and_then(Value::as_str) != Some("none");
    let stream = req.stream.unwrap_or(false);
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(ApiError::invalid_param(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true.",
        ));
    }
    let (max_param, requested_max) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", Some(m)),
        (None, m) => ("max_tokens", m),
    };

    let harmony = state.backend.chat_format(&card.id) == ChatFormat::Harmony;
    let effort = match (harmony, req.reasoning_effort.as_deref()) {
        (true, Some(e)) => hearth_harmony::ReasoningEffort::parse(e).map_err(|_| {
            ApiError::invalid_param(
                "reasoning_effort",
                format!("`reasoning_effort` must be one of low, medium, high, got {e:?}."),
            )
        })?,
        _ => hearth_harmony::ReasoningEffort::default(),
    };

    // Template + tokenize on the blocking pool (for a fitted conversation, the search for the
    // newest messages that fit, in the same call).
    let spec = PromptSpec {
        model: card.id.clone(),
        harmony,
        effort,
        tools: tools.clone(),
        extra: req.chat_template_kwargs.clone().unwrap_or_default(),
    };
    // The context this request may use: the model's, or less where the conversation says so.
    let context = fit
        .and_then(|f| f.max_context_tokens)
        .map_or(card.context_length, |c| c.min(card.context_length));
    let budget = context.saturating_sub(
        requested_max
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX))
            .unwrap_or_else(|| default_reply_reserve(context)),
    );
    let max_messages = state.config.max_messages;
    let (rendered, messages_dropped) = state
        .blocking(move |b| match fit {
            None => Ok((render_prompt(b, &spec, &messages)?, 0)),
            Some(f) => fit_prompt(b, &spec, &messages, f.head, max_messages, budget),
        })
        .await?;
    if fit.is_some() && req.messages.len() - messages_dropped > max_messages {
        return Err(ApiError::invalid_param(
            "messages",
            format!(
                "A request may hold at most {max_messages} messages; even the newest of this \
                 conversation with its system prompt are {}.",
                req.messages.len() - messages_dropped
            ),
        ));
    }
    let Rendered {
        tokens: prompt_tokens,
        opens_think,
    } = rendered;
    let max_tokens = common::max_tokens(
        requested_max,
        max_param,
        prompt_tokens.len(),
        context,
        "messages",
    )?;

    // A forced tool_choice is generated in the Hermes format under a grammar (local.rs), so
    // such a request reads its output the Hermes way even on a GLM-4 model.
    let forced_tool = req
        .tool_choice
        .as_ref()
        .is_some_and(|c| c.is_object() || c.as_str() == Some("required"));
    let glm4 = state.backend.chat_format(&card.id) == ChatFormat::Glm4 && !forced_tool;
    let tool_names: Vec<String> = tools
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.get("function")
                .unwrap_or(t)
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let launch = Launch {
        model: card.id.clone(),
        request_id: ids::new_id("chatcmpl"),
        params,
        max_tokens,
        logprobs,
        constraints: OutputConstraints {
            response_format: req.response_format.clone(),
            tools,
            tool_choice: req.tool_choice.clone(),
        },
        stop,
        // Harmony output names its tool calls itself (`to=functions.NAME`).
        parse_tools: parse_tools && !harmony && !glm4,
        harmony,
        glm4: glm4.then(|| {
            if !parse_tools {
                return Vec::new();
            }
            tool_names
        }),
        started,
    };
    let choices = common::launch(state, &launch, std::slice::from_ref(&prompt_tokens), n).await?;
    state.metrics.prompt_tokens(&card.id, prompt_tokens.len());
    Ok(Prepared {
        choices,
        request_id: launch.request_id,
        model: card.id,
        context_length: card.context_length,
        prompt_tokens: prompt_tokens.len(),
        logprobs: logprobs.is_some(),
        include_usage,
        stream,
        opens_think,
        messages_dropped,
    })
}

/// What a chat prompt is rendered with besides its messages.
pub(crate) struct PromptSpec {
    pub model: String,
    /// Render harmony (gpt-oss) rather than the model's chat template.
    pub harmony: bool,
    pub effort: hearth_harmony::ReasoningEffort,
    pub tools: Option<Value>,
    /// `chat_template_kwargs`.
    pub extra: Map<String, Value>,
}

/// A chat prompt rendered and tokenized.
pub(crate) struct Rendered {
    pub tokens: Vec<u32>,
    /// See [`Prepared::opens_think`].
    pub opens_think: bool,
}

/// Render `messages` (normalized) with the model's chat template, or harmony, and tokenize
/// the result with the contents as plain text. Admits nothing, checks no limit: blocking
/// work for the backend pool ([`crate::state::AppState::blocking`]).
pub(crate) fn render_prompt(
    b: &dyn Backend,
    spec: &PromptSpec,
    messages: &[Value],
) -> Result<Rendered, BackendError> {
    let render = |msgs: &[Value]| -> Result<String, BackendError> {
        Ok(if spec.harmony {
            render_harmony(msgs, spec.tools.as_ref(), spec.effort)?
        } else {
            b.apply_chat_template(&spec.model, msgs, spec.tools.as_ref(), &spec.extra)?
        })
    };
    let (text, literal) =
        render_with_content_spans(&render, messages, |c| b.has_special_text(&spec.model, c))?;
    let opens_think = text.trim_end().ends_with("<think>");
    // The rendered template already holds BOS etc. where the model wants them (Hugging Face
    // tokenizes chat prompts with add_special_tokens=False for this reason). Message contents
    // are tokenized as plain text: no special-token injection.
    Ok(Rendered {
        tokens: b.tokenize_chat(&spec.model, &text, &literal)?,
        opens_think,
    })
}

/// The longest tail of `messages` that fits: the first `head` messages always, then the
/// newest messages whose rendered prompt has at most `budget` tokens and which, with the head,
/// are at most `max_messages`. The kept part starts at a `user` message (templates such as
/// Gemma's require user/assistant alternation from the first turn) unless it is the whole
/// history; the newest message is always kept. The cut is found by a binary search over the
/// possible starts, rendering each candidate with the real template and tokenizer. Returns
/// the rendering and how many messages were left out. When even the newest message alone is
/// over the budget, that rendering is returned: the caller's context check then refuses it
/// (or, with no `max_tokens` set, sends it with what room is left for the reply).
pub(crate) fn fit_prompt(
    b: &dyn Backend,
    spec: &PromptSpec,
    messages: &[Value],
    head: usize,
    max_messages: usize,
    budget: usize,
) -> Result<(Rendered, usize), BackendError> {
    let head = head.min(messages.len());
    let n = messages.len() - head;
    if n == 0 {
        return Ok((render_prompt(b, spec, messages)?, 0));
    }
    // Where the kept tail may start (offsets into the body after the head), oldest first.
    let mut starts: Vec<usize> = (0..n)
        .filter(|&i| {
            i == 0
                || i == n - 1
                || messages[head + i].get("role").and_then(Value::as_str) == Some("user")
        })
        .filter(|&i| head + (n - i) <= max_messages)
        .collect();
    if starts.is_empty() {
        starts.push(n - 1);
    }
    let render_from = |k: usize| -> Result<Rendered, BackendError> {
        let i = head + starts[k];
        let kept: Vec<Value> = messages[..head]
            .iter()
            .chain(&messages[i..])
            .cloned()
            .collect();
        render_prompt(b, spec, &kept)
    };
    let dropped = |k: usize| starts[k];
    // Most conversations fit whole: one rendering.
    let first = render_from(0)?;
    if first.tokens.len() <= budget || starts.len() == 1 {
        return Ok((first, dropped(0)));
    }
    let last = starts.len() - 1;
    let shortest = render_from(last)?;
    if shortest.tokens.len() > budget {
        return Ok((shortest, dropped(last)));
    }
    // starts[lo] does not fit, starts[hi] does; the token count shrinks as the start moves on.
    let (mut lo, mut hi, mut best) = (0, last, shortest);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let r = render_from(mid)?;
        if r.tokens.len() <= budget {
            hi = mid;
            best = r;
        } else {
            lo = mid;
        }
    }
    Ok((best, dropped(hi)))
}

/// How the server renders a harmony prompt for a gpt-oss model (the crate's `Flavor::Harmony`:
/// what the reference renderer writes, today's date), ending in `<|start|>assistant`; also
/// what `hearth template` prints.
pub fn harmony_options(
    tools: Option<&Value>,
    reasoning_effort: hearth_harmony::ReasoningEffort,
) -> hearth_harmony::RenderOptions {
    hearth_harmony::RenderOptions {
        tools: tools.and_then(Value::as_array).cloned().unwrap_or_default(),
        reasoning_effort,
        ..Default::default()
    }
}

/// The harmony prompt (see [`harmony_options`]). Its errors name the message or tool.
pub(crate) fn render_harmony(
    messages: &[Value],
    tools: Option<&Value>,
    reasoning_effort: hearth_harmony::ReasoningEffort,
) -> Result<String, crate::backend::BackendError> {
    let opts = harmony_options(tools, reasoning_effort);
    hearth_harmony::render_chat(messages, &opts)
        .map_err(|e| crate::backend::BackendError::BadRequest(format!("harmony: {e}")))
}

/// Flatten content parts to text and check roles, so templates only ever see
/// `content` as a string (or null for assistant tool-call turns).
fn normalize_messages(messages: &[Value]) -> ApiResult<Vec<Value>> {
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let Some(obj) = m.as_object() else {
            return Err(ApiError::invalid_param(
                format!("messages[{i}]"),
                "Each message must be an object.",
            ));
        };
        let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(ApiError::invalid_param(
                format!("messages[{i}].role"),
                format!("Invalid role {role:?}: expected one of system, developer, user, assistant, tool."),
            ));
        }
        let mut obj = obj.clone();
        let content = match obj.get("content") {
            None | Some(Value::Null) if role == "assistant" => Value::Null,
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Array(parts)) => Value::String(flatten_parts(i, parts)?),
            _ => {
                return Err(ApiError::invalid_param(
                    format!("messages[{i}].content"),
                    "`content` must be a string or an array of content parts.",
                ))
            }
        };
        obj.insert("content".into(), content);
        // Clients send tool-call arguments as a JSON string (OpenAI's
        // format); templates such as Qwen's `tojson` them, so hand them an
        // object, as vLLM does.
        if let Some(Value::Array(calls)) = obj.get_mut("tool_calls") {
            for call in calls {
                if let Some(args) = call.pointer_mut("/function/arguments") {
                    if let Some(parsed) = args
                        .as_str()
                        .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    {
                        *args = parsed;
                    }
                }
            }
        }
        out.push(Value::Object(obj));
    }
    Ok(out)
}

/// Text parts are joined with newlines (as vLLM does); other kinds (images,
/// audio) are refused: no multimodal backend exists yet.
fn flatten_parts(i: usize, parts: &[Value]) -> ApiResult<String> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        match (kind, p.get("text").and_then(Value::as_str)) {
            ("text", Some(t)) => texts.push(t),
            ("text", None) => {
                return Err(ApiError::invalid_param(
                    format!("messages[{i}].content[{j}].text"),
                    "A text content part needs a string `text`.",
                ))
            }
            _ => {
                return Err(ApiError::invalid_param(
                    format!("messages[{i}].content[{j}].type"),
                    format!("Content part type {kind:?} is not supported; only \"text\" is."),
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}

fn validate_response_format(rf: Option<&Value>) -> ApiResult<()> {
    let Some(rf) = rf else { return Ok(()) };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") | Some("json_object") => Ok(()),
        Some("json_schema") => match rf.get("json_schema") {
            Some(Value::Object(_)) => Ok(()),
            _ => Err(ApiError::invalid_param(
                "response_format.json_schema",
                "`response_format` of type json_schema needs a `json_schema` object.",
            )),
        },
        _ => Err(ApiError::invalid_param(
            "response_format.type",
            "`response_format.type` must be one of text, json_object, json_schema.",
        )),
    }
}

fn validate_tools(tools: Option<&[Value]>) -> ApiResult<Option<Value>> {
    let Some(tools) = tools else { return Ok(None) };
    if tools.is_empty() {
        return Ok(None);
    }
    for (i, t) in tools.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid_param(
                format!("tools[{i}].type"),
                "Only tools of type \"function\" are supported.",
            ));
        }
        if t.pointer("/function/name")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(ApiError::invalid_param(
                format!("tools[{i}].function.name"),
                "Each tool needs `function.name`.",
            ));
        }
    }
    Ok(Some(Value::Array(tools.to_vec())))
}

/// Response-wide fields.
struct Ctx {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
    prompt_tokens: usize,
}

impl Ctx {
    fn usage(&self, completion: usize) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    fn response(&self, collected: Vec<Collected>) -> ApiResult<Value> {
        let mut choices = Vec::with_capacity(collected.len());
        let mut completion = 0;
        for (index, c) in collected.into_iter().enumerate() {
            if let Some(e) = c.error {
                return Err(ApiError::internal(format!("generation failed: {e}")));
            }
            completion += c.completion_tokens;
            let mut message = json!({"role": "assistant", "content": c.text, "refusal": null});
            if !c.tool_calls.is_empty() {
                let content = c.text.trim();
                message["content"] = if content.is_empty() {
                    Value::Null
                } else {
                    content.into()
                };
                message["tool_calls"] = tool_calls_json(&c.tool_calls, false);
            }
            if !c.reasoning.is_empty() {
                // vLLM's / DeepSeek's field for reasoning models (not in OpenAI's schema:
                // the SDK keeps it in `model_extra`).
                message["reasoning_content"] = c.reasoning.into();
            }
            choices.push(json!({
                "index": index,
                "message": message,
                "logprobs": if self.logprobs { logprobs_json(&c.logprobs) } else { Value::Null },
                "finish_reason": c.finish.map(|f| f.as_str()),
            }));
        }
        Ok(json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(completion),
            "system_fingerprint": null,
        }))
    }

    fn chunk(&self, index: usize, delta: Value, logprobs: Value, finish: Option<&str>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        });
        if self.include_usage {
            // OpenAI sends `usage: null` on every chunk but the last.
            v["usage"] = Value::Null;
        }
        v
    }
}

fn tool_calls_json(calls: &[ToolCall], with_index: bool) -> Value {
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                });
                if with_index {
                    v["index"] = i.into();
                }
                v
            })
            .collect(),
    )
}

/// OpenAI chat logprobs: `{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}`.
fn logprobs_json(lps: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|lp| {
            json!({
                "token": String::from_utf8_lossy(&lp.bytes),
                "logprob": lp.logprob,
                "bytes": common::bytes_json(&lp.bytes),
                "top_logprobs": lp.top.iter().map(|t| json!({
                    "token": String::from_utf8_lossy(&t.bytes),
                    "logprob": t.logprob,
                    "bytes": common::bytes_json(&t.bytes),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"content": content, "refusal": null})
}

impl common::StreamFormat for Ctx {
    fn prelude(&mut self, n_choices: usize) -> Vec<Value> {
        // First chunk per choice carries the role, as OpenAI's does.
        (0..n_choices)
            .map(|i| {
                self.chunk(
                    i,
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                    None,
                )
            })
            .collect()
    }

    fn event(&mut self, i: usize, ev: ChoiceEvent) -> Option<Value> {
        Some(match ev {
            ChoiceEvent::Delta { text, logprobs } => {
                let lp = if self.logprobs {
                    logprobs_json(&logprobs)
                } else {
                    Value::Null
                };
                self.chunk(i, json!({"content": text}), lp, None)
            }
            ChoiceEvent::ToolCalls(calls) => self.chunk(
                i,
                json!({"tool_calls": tool_calls_json(&calls, true)}),
                Value::Null,
                None,
            ),
            ChoiceEvent::Reasoning(r) => {
                self.chunk(i, json!({"reasoning_content": r}), Value::Null, None)
            }
            ChoiceEvent::ToolCallStart { index, id, name } => self.chunk(
                i,
                json!({"tool_calls": [{
                    "index": index,
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]}),
                Value::Null,
                None,
            ),
            ChoiceEvent::ToolCallArgs { index, arguments } => self.chunk(
                i,
                json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
                Value::Null,
                None,
            ),
            ChoiceEvent::Finished { reason, .. } => {
                self.chunk(i, json!({}), Value::Null, Some(reason.as_str()))
            }
            ChoiceEvent::Error(_) => return None,
        })
    }

    fn usage_chunk(&self, completion_tokens: usize) -> Option<Value> {
        self.include_usage.then(|| {
            json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": self.usage(completion_tokens),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_flattened_and_checked() {
        let msgs = vec![
            json!({"role": "system", "content": "be brief"}),
            json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]}),
        ];
        let out = normalize_messages(&msgs).unwrap();
        assert_eq!(out[1]["content"], "a\nb");
        assert_eq!(out[2]["content"], Value::Null);
        assert_eq!(
            out[2]["tool_calls"][0]["function"]["arguments"],
            json!({"x": 1})
        );

        let e = normalize_messages(&[json!({"role": "wizard", "content": "x"})]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = normalize_messages(&[json!({"role": "user", "content": [{"type": "image_url"}]})])
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
        let e = normalize_messages(&[json!({"role": "user"})]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        assert!(normalize_messages(&[]).is_err());
    }
}

/// Render `messages` and find where each message's string content sits in the result, so it
/// can be tokenized without special-token parsing. The template is rendered once with each
/// content replaced by a unique private-use sentinel; substituting the contents back must give
/// exactly the normal rendering (a template that inspects or rewrites contents, e.g. splitting
/// `<think>` blocks, fails this check). Then the contents' byte ranges are known exactly.
/// Otherwise no ranges are returned, which is safe only if no content holds special-token
/// text: such a request is refused (400) rather than tokenized with forged markers.
pub(crate) fn render_with_content_spans(
    render: &dyn Fn(&[Value]) -> Result<String, BackendError>,
    messages: &[Value],
    has_special: impl Fn(&str) -> Result<bool, BackendError>,
) -> Result<(String, Vec<std::ops::Range<usize>>), BackendError> {
    let text = render(messages)?;
    let contents: Vec<(usize, &str)> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.get("content").and_then(Value::as_str).map(|c| (i, c)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if contents.is_empty() {
        return Ok((text, Vec::new()));
    }
    let sentinel = |i: usize| format!("\u{F8F0}hearth-content-{i}\u{F8F1}");
    let mut marked = messages.to_vec();
    for &(i, _) in &contents {
        marked[i]["content"] = Value::String(sentinel(i));
    }
    if let Ok(with_marks) = render(&marked) {
        let mut out = String::with_capacity(text.len());
        let mut spans = Vec::with_capacity(contents.len());
        let mut rest = with_marks.as_str();
        let mut ok = true;
        for &(i, c) in &contents {
            let s = sentinel(i);
            match rest.find(&s) {
                Some(p) => {
                    out.push_str(&rest[..p]);
                    spans.push(out.len()..out.len() + c.len());
                    out.push_str(c);
                    rest = &rest[p + s.len()..];
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        out.push_str(rest);
        if ok && out == text {
            return Ok((text, spans));
        }
    }
    for &(i, c) in &contents {
        if has_special(c)? {
            return Err(BackendError::BadRequest(format!(
                "messages[{i}].content contains special-token text, and this model's chat \
                 template rewrites message contents, so it cannot be sent safely as plain text"
            )));
        }
    }
    Ok((text, Vec::new()))
}
