//! `POST /v1/responses` (OpenAI Responses API), over the same generation pipeline as chat
//! completions: `input` items and `instructions` become chat messages, rendered by the
//! model's chat format (harmony for gpt-oss, where `reasoning.effort` applies), and the
//! output becomes `reasoning` / `message` / `function_call` items. `previous_response_id`
//! continues a conversation kept in memory (bounded, see [`ResponseStore`]).
//!
//! Shapes follow the official `openai` Python SDK's `types/responses` models, which parse
//! what this module returns (crates/server/tests/python/test_harmony_sdk.py).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{self, Launch, SamplingFields};
use crate::backend::{ChatFormat, OutputConstraints};
use crate::error::{ApiError, ApiResult};
use crate::generation::{Choice, ChoiceEvent, Finish};
use crate::ids;
use crate::json::JsonBody;
use crate::state::SharedState;

const ENDPOINT: &str = "responses";

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Option<Value>,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub reasoning: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_output_tokens: Option<u64>,
    pub stream: Option<bool>,
    /// `false`: do not keep this response for `previous_response_id`.
    pub store: Option<bool>,
    pub metadata: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub user: Option<String>,
}

/// Finished conversations (chat messages, without `instructions`, which OpenAI does not
/// carry over), by response id. Bounded: the least recently used entry goes first, so a
/// client that never reuses ids cannot grow the server's memory without limit.
pub struct ResponseStore {
    cap: usize,
    map: HashMap<String, Vec<Value>>,
    order: VecDeque<String>,
}

impl ResponseStore {
    pub fn new(cap: usize) -> Self {
        ResponseStore {
            cap: cap.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&mut self, id: &str) -> Option<Vec<Value>> {
        let v = self.map.get(id)?.clone();
        self.touch(id);
        Some(v)
    }

    pub fn put(&mut self, id: String, messages: Vec<Value>) {
        if self.map.insert(id.clone(), messages).is_some() {
            self.touch(&id);
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn touch(&mut self, id: &str) {
        if let Some(pos) = self.order.iter().position(|x| x == id) {
            if let Some(x) = self.order.remove(pos) {
                self.order.push_back(x);
            }
        }
    }
}

/// How many responses [`ResponseStore`] keeps.
pub const STORE_CAPACITY: usize = 1000;

pub fn new_store() -> Mutex<ResponseStore> {
    Mutex::new(ResponseStore::new(STORE_CAPACITY))
}

pub async fn handler(
    State(state): State<SharedState>,
    body: Result<JsonBody<ResponsesRequest>, ApiError>,
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

/// Text of a `content` that is a string or a list of `input_text` / `output_text` parts.
fn content_text(v: &Value, param: &str) -> ApiResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("input_text" | "output_text" | "text"), Some(t)) => out.push(t),
                    (kind, _) => {
                        return Err(ApiError::invalid_param(
                            format!("{param}[{j}]"),
                            format!(
                                "Content part type {:?} is not supported; only input_text and output_text are.",
                                kind.unwrap_or("")
                            ),
                        ))
                    }
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(ApiError::invalid_param(
            param,
            "`content` must be a string or a list of text parts.",
        )),
    }
}

/// `input` (a string or a list of items) → chat messages. Consecutive `function_call` items
/// form one assistant message; a `reasoning` item attaches to the assistant message after it.
fn input_messages(input: &Value) -> ApiResult<Vec<Value>> {
    let items = match input {
        Value::String(s) => return Ok(vec![json!({"role": "user", "content": s})]),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid_param(
                "input",
                "`input` must be a string or a list of items.",
            ))
        }
    };
    let mut out: Vec<Value> = Vec::new();
    let mut reasoning: Option<String> = None;
    // Index in `out` of the assistant message the current run of function calls joins.
    let mut calls_into: Option<usize> = None;
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("");
                if !matches!(role, "user" | "system" | "developer" | "assistant") {
                    return Err(ApiError::invalid_param(
                        format!("input[{i}].role"),
                        format!(
                            "Invalid role {role:?}: expected user, system, developer or assistant."
                        ),
                    ));
                }
                let content = content_text(
                    item.get("content").unwrap_or(&Value::Null),
                    &format!("input[{i}].content"),
                )?;
                let mut m = json!({"role": role, "content": content});
                if role == "assistant" {
                    if let Some(r) = reasoning.take() {
                        m["reasoning_content"] = r.into();
                    }
                }
                out.push(m);
                calls_into = None;
            }
            "reasoning" => {
                let text: Vec<&str> = item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect();
                reasoning = Some(text.join("\n"));
            }
            "function_call" => {
                let (Some(call_id), Some(name)) = (
                    item.get("call_id").and_then(Value::as_str),
                    item.get("name").and_then(Value::as_str),
                ) else {
                    return Err(ApiError::invalid_param(
                        format!("input[{i}]"),
                        "A function_call item needs `call_id` and `name`.",
                    ));
                };
                let args = item
                    .get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("{}");
                let call = json!({"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": args}});
                match calls_into {
                    Some(k) => {
                        if let Some(Value::Array(a)) = out[k].get_mut("tool_calls") {
                            a.push(call);
                        }
                    }
                    None => {
                        let mut m =
                            json!({"role": "assistant", "content": null, "tool_calls": [call]});
                        if let Some(r) = reasoning.take() {
                            m["reasoning_content"] = r.into();
                        }
                        out.push(m);
                        calls_into = Some(out.len() - 1);
                    }
                }
            }
            "function_call_output" => {
                let Some(call_id) = item.get("call_id").and_then(Value::as_str) else {
                    return Err(ApiError::invalid_param(
                        format!("input[{i}].call_id"),
                        "A function_call_output item needs `call_id`.",
                    ));
                };
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ Value::Array(_)) => content_text(v, &format!("input[{i}].output"))?,
                    _ => {
                        return Err(ApiError::invalid_param(
                            format!("input[{i}].output"),
                            "`output` must be a string.",
                        ))
                    }
                };
                out.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
                calls_into = None;
            }
            other => {
                return Err(ApiError::invalid_param(
                    format!("input[{i}].type"),
                    format!("Input item type {other:?} is not supported."),
                ))
            }
        }
    }
    Ok(out)
}

/// Responses function tools are flat (`{type, name, description, parameters}`); chat
/// templates and the harmony renderer take the chat form (`{type, function: {...}}`).
fn chat_tools(tools: Option<&[Value]>) -> ApiResult<Option<Value>> {
    let Some(tools) = tools.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid_param(
                format!("tools[{i}].type"),
                "Only tools of type \"function\" are supported.",
            ));
        }
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            return Err(ApiError::invalid_param(
                format!("tools[{i}].name"),
                "Each function tool needs `name`.",
            ));
        };
        let mut f = json!({"name": name});
        for k in ["description", "parameters", "strict"] {
            if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                f[k] = v.clone();
            }
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Some(Value::Array(out)))
}

async fn handle(state: &SharedState, req: ResponsesRequest) -> ApiResult<Response> {
    let started = Instant::now();
    state.check_not_draining()?;
    let card = state.model(&req.model)?;
    let harmony = state.backend.chat_format(&card.id) == ChatFormat::Harmony;

    let effort_str = req
        .reasoning
        .as_ref()
        .and_then(|r| r.get("effort"))
        .and_then(Value::as_str);
    let effort = match effort_str {
        Some(e) => hearth_harmony::ReasoningEffort::parse(e).map_err(|_| {
            ApiError::invalid_param(
                "reasoning.effort",
                format!("`reasoning.effort` must be one of low, medium, high, got {e:?}."),
            )
        })?,
        None => hearth_harmony::ReasoningEffort::default(),
    };

    // Conversation: the stored one, then this request's input.
    let mut history = match &req.previous_response_id {
        Some(id) => {
            let found = state
                .responses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(id);
            found.ok_or_else(|| {
                ApiError::invalid_param(
                    "previous_response_id",
                    format!("Previous response with id {id:?} not found (kept: the last {STORE_CAPACITY} responses)."),
                )
            })?
        }
        None => Vec::new(),
    };
    match &req.input {
        Some(input) => {
            let items = input_messages(input)?;
            if history.len() + items.len() > state.config.max_messages {
                return Err(ApiError::invalid_param(
                    "input",
                    format!(
                        "A request may hold at most {} messages (with the earlier response's); \
                         this one has {}.",
                        state.config.max_messages,
                        history.len() + items.len()
                    ),
                ));
            }
            history.extend(items)
        }
        None if history.is_empty() => {
            return Err(ApiError::invalid_param("input", "`input` is required."))
        }
        None => {}
    }
    let mut messages = Vec::with_capacity(history.len() + 1);
    if let Some(ins) = &req.instructions {
        messages.push(json!({"role": "system", "content": ins}));
    }
    messages.extend(history.iter().cloned());
    if messages.is_empty() {
        return Err(ApiError::invalid_param("input", "`input` has no items."));
    }
    crate::guard::check_messages(state, &mut messages)?;

    let params = common::sampling(
        &SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: None,
            min_p: None,
            seed: None,
            presence_penalty: None,
            frequency_penalty: None,
            repetition_penalty: None,
            logit_bias: None,
        },
        &state.config.default_sampling,
    )?;
    let tools = chat_tools(req.tools.as_deref())?;
    let parse_tools =
        tools.is_some() && req.tool_choice.as_ref().and_then(Value::as_str) != Some("none");

    let model = card.id.clone();
    let tools_for_template = tools.clone();
    let rendered = messages.clone();
    let prompt_tokens = state
        .blocking(move |b| {
            let render = |msgs: &[Value]| -> Result<String, crate::backend::BackendError> {
                if harmony {
                    super::chat::render_harmony(msgs, tools_for_template.as_ref(), effort)
                } else {
                    b.apply_chat_template(
                        &model,
                        msgs,
                        tools_for_template.as_ref(),
                        &Default::default(),
                    )
                }
            };
            // As in chat completions: message contents are tokenized as plain text, so role
            // markers a client types into `input` cannot forge turns.
            let (text, literal) =
                super::chat::render_with_content_spans(&render, &rendered, |c| {
                    b.has_special_text(&model, c)
                })?;
            b.tokenize_chat(&model, &text, &literal)
        })
        .await?;
    let max_tokens = common::max_tokens(
        req.max_output_tokens,
        "max_output_tokens",
        prompt_tokens.len(),
        card.context_length,
        "input",
    )?;
    let launch = Launch {
        model: card.id.clone(),
        request_id: ids::new_id("resp"),
        params,
        max_tokens,
        logprobs: None,
        constraints: OutputConstraints {
            response_format: None,
            tools: tools.clone(),
            tool_choice: req.tool_choice.clone(),
        },
        stop: Vec::new(),
        parse_tools: parse_tools && !harmony,
        harmony,
        glm4: None,
        started,
    };
    let mut choices =
        common::launch(state, &launch, std::slice::from_ref(&prompt_tokens), 1).await?;
    state.metrics.prompt_tokens(&card.id, prompt_tokens.len());
    let choice = choices
        .pop()
        .ok_or_else(|| ApiError::internal("no generation started"))?;

    let base = json!({
        "id": launch.request_id,
        "object": "response",
        "created_at": ids::unix_now(),
        "model": card.id,
        "status": "in_progress",
        "error": null,
        "incomplete_details": null,
        "instructions": req.instructions,
        "metadata": req.metadata.clone().unwrap_or_else(|| json!({})),
        "output": [],
        "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": effort_str, "summary": null},
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_output_tokens": req.max_output_tokens,
        "tool_choice": req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        "tools": req.tools.clone().unwrap_or_default(),
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "store": req.store.unwrap_or(true),
        "usage": null,
        "user": req.user,
    });
    let run = Run {
        state: state.clone(),
        base,
        prompt_tokens: prompt_tokens.len(),
        history,
        store: req.store.unwrap_or(true),
    };
    if req.stream.unwrap_or(false) {
        let (tx, resp) = common::sse_response(state);
        tokio::spawn(run.stream(choice, tx));
        Ok(resp)
    } else {
        let mut b = Builder::default();
        let mut choice = choice;
        loop {
            let ev = tokio::select! {
                ev = choice.next() => ev,
                _ = state.aborted() => return Err(ApiError::unavailable("The server shut down before the generation finished.")),
            };
            let Some(ev) = ev else { break };
            if let ChoiceEvent::Error(e) = ev {
                return Err(ApiError::internal(format!("generation failed: {e}")));
            }
            b.push(ev);
        }
        Ok(Json(run.complete(b)).into_response())
    }
}

/// One open output item while events arrive.
enum Open {
    Reasoning {
        text: String,
    },
    Message {
        text: String,
    },
    Call {
        call_id: String,
        name: String,
        args: String,
    },
}

/// Turns choice events into output items and the Responses stream events.
#[derive(Default)]
struct Builder {
    items: Vec<Value>,
    open: Option<(String, Open)>,
    /// Stream events not yet sent: (type, payload without `sequence_number`).
    events: Vec<Value>,
    finish: Option<Finish>,
    completion_tokens: usize,
    reasoning: String,
    text: String,
    calls: Vec<Value>,
}

impl Builder {
    fn index(&self) -> usize {
        self.items.len()
    }

    fn open(&mut self, kind: Open) {
        self.close();
        let idx = self.index();
        let (id, item, part) = match &kind {
            Open::Reasoning { .. } => {
                let id = ids::new_id("rs");
                let item = json!({"id": id, "type": "reasoning", "summary": [], "content": [], "status": "in_progress"});
                (
                    id,
                    item,
                    Some(json!({"type": "reasoning_text", "text": ""})),
                )
            }
            Open::Message { .. } => {
                let id = ids::new_id("msg");
                let item = json!({"id": id, "type": "message", "role": "assistant", "status": "in_progress", "content": []});
                (
                    id,
                    item,
                    Some(
                        json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []}),
                    ),
                )
            }
            Open::Call { call_id, name, .. } => {
                let id = ids::new_id("fc");
                let item = json!({"id": id, "type": "function_call", "call_id": call_id, "name": name, "arguments": "", "status": "in_progress"});
                (id, item, None)
            }
        };
        self.events
            .push(json!({"type": "response.output_item.added", "output_index": idx, "item": item}));
        if let Some(part) = part {
            self.events.push(json!({"type": "response.content_part.added", "item_id": id, "output_index": idx, "content_index": 0, "part": part}));
        }
        self.open = Some((id, kind));
    }

    fn close(&mut self) {
        let Some((id, kind)) = self.open.take() else {
            return;
        };
        let idx = self.index();
        let item = match kind {
            Open::Reasoning { text } => {
                let part = json!({"type": "reasoning_text", "text": text});
                self.events.push(json!({"type": "response.reasoning_text.done", "item_id": id, "output_index": idx, "content_index": 0, "text": text}));
                self.events.push(json!({"type": "response.content_part.done", "item_id": id, "output_index": idx, "content_index": 0, "part": part}));
                json!({"id": id, "type": "reasoning", "summary": [], "content": [part], "status": "completed"})
            }
            Open::Message { text } => {
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.events.push(json!({"type": "response.output_text.done", "item_id": id, "output_index": idx, "content_index": 0, "text": text, "logprobs": []}));
                self.events.push(json!({"type": "response.content_part.done", "item_id": id, "output_index": idx, "content_index": 0, "part": part}));
                json!({"id": id, "type": "message", "role": "assistant", "status": "completed", "content": [part]})
            }
            Open::Call {
                call_id,
                name,
                args,
            } => {
                self.events.push(json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": idx, "arguments": args, "name": name}));
                self.calls.push(json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}));
                json!({"id": id, "type": "function_call", "call_id": call_id, "name": name, "arguments": args, "status": "completed"})
            }
        };
        self.events
            .push(json!({"type": "response.output_item.done", "output_index": idx, "item": item}));
        self.items.push(item);
    }

    fn push(&mut self, ev: ChoiceEvent) {
        let idx = self.index();
        match ev {
            ChoiceEvent::Reasoning(r) => {
                if !matches!(self.open, Some((_, Open::Reasoning { .. }))) {
                    self.open(Open::Reasoning {
                        text: String::new(),
                    });
                }
                self.reasoning.push_str(&r);
                if let Some((id, Open::Reasoning { text })) = &mut self.open {
                    text.push_str(&r);
                    let id = id.clone();
                    self.events.push(json!({"type": "response.reasoning_text.delta", "item_id": id, "output_index": idx, "content_index": 0, "delta": r}));
                }
            }
            ChoiceEvent::Delta { text: t, .. } => {
                if !matches!(self.open, Some((_, Open::Message { .. }))) {
                    self.open(Open::Message {
                        text: String::new(),
                    });
                }
                self.text.push_str(&t);
                let idx = self.index();
                if let Some((id, Open::Message { text })) = &mut self.open {
                    text.push_str(&t);
                    let id = id.clone();
                    self.events.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": idx, "content_index": 0, "delta": t, "logprobs": []}));
                }
            }
            ChoiceEvent::ToolCallStart { id, name, .. } => {
                self.open(Open::Call {
                    call_id: id,
                    name,
                    args: String::new(),
                });
            }
            ChoiceEvent::ToolCallArgs { arguments, .. } => {
                let idx = self.index();
                if let Some((id, Open::Call { args, .. })) = &mut self.open {
                    args.push_str(&arguments);
                    let id = id.clone();
                    self.events.push(json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": idx, "delta": arguments}));
                }
            }
            ChoiceEvent::ToolCalls(calls) => {
                // Hermes calls (non-harmony models) arrive whole, once.
                for c in calls {
                    self.open(Open::Call {
                        call_id: c.id,
                        name: c.name,
                        args: String::new(),
                    });
                    let idx = self.index();
                    if let Some((id, Open::Call { args, .. })) = &mut self.open {
                        args.push_str(&c.arguments);
                        let id = id.clone();
                        self.events.push(json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": idx, "delta": c.arguments}));
                    }
                }
            }
            ChoiceEvent::Finished {
                reason,
                completion_tokens,
            } => {
                self.close();
                self.finish = Some(reason);
                self.completion_tokens = completion_tokens;
            }
            ChoiceEvent::Error(_) => {}
        }
    }
}

struct Run {
    state: SharedState,
    base: Value,
    prompt_tokens: usize,
    history: Vec<Value>,
    store: bool,
}

impl Run {
    /// The final response object; stores the conversation for `previous_response_id`.
    fn complete(&self, mut b: Builder) -> Value {
        b.close();
        let mut r = self.base.clone();
        let cut = b.finish == Some(Finish::Length);
        r["status"] = if cut { "incomplete" } else { "completed" }.into();
        if cut {
            r["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        r["output"] = Value::Array(b.items.clone());
        r["usage"] = json!({
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": b.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.prompt_tokens + b.completion_tokens,
        });
        if self.store {
            let mut msgs = self.history.clone();
            let mut m = json!({"role": "assistant", "content": if b.text.is_empty() && !b.calls.is_empty() { Value::Null } else { b.text.clone().into() }});
            if !b.reasoning.is_empty() {
                m["reasoning_content"] = b.reasoning.clone().into();
            }
            if !b.calls.is_empty() {
                m["tool_calls"] = Value::Array(b.calls.clone());
            }
            msgs.push(m);
            if let Some(id) = r["id"].as_str() {
                self.state
                    .responses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(id.to_string(), msgs);
            }
        }
        r
    }

    async fn stream(self, mut choice: Choice, tx: common::SseSender) {
        let mut seq = 0u64;
        let send = |mut v: Value, seq: &mut u64| {
            v["sequence_number"] = (*seq).into();
            *seq += 1;
            let kind = v["type"].as_str().unwrap_or("").to_string();
            Ok(Event::default().event(kind).data(v.to_string()))
        };
        let created = json!({"type": "response.created", "response": self.base});
        if tx.send(send(created, &mut seq)).await.is_err() {
            return;
        }
        let in_progress = json!({"type": "response.in_progress", "response": self.base});
        if tx.send(send(in_progress, &mut seq)).await.is_err() {
            return;
        }
        let mut b = Builder::default();
        loop {
            let ev = tokio::select! {
                _ = tx.closed() => return,
                _ = self.state.aborted() => {
                    let err = ApiError::unavailable("The server shut down before the generation finished.");
                    let _ = tx.send(common::json_event(&err.body())).await;
                    return;
                }
                ev = choice.next() => ev,
            };
            let Some(ev) = ev else { break };
            if let ChoiceEvent::Error(e) = &ev {
                let mut r = self.base.clone();
                r["status"] = "failed".into();
                r["error"] =
                    json!({"code": "server_error", "message": format!("generation failed: {e}")});
                let _ = tx
                    .send(send(
                        json!({"type": "response.failed", "response": r}),
                        &mut seq,
                    ))
                    .await;
                return;
            }
            b.push(ev);
            for e in std::mem::take(&mut b.events) {
                if tx.send(send(e, &mut seq)).await.is_err() {
                    return;
                }
            }
        }
        let r = self.complete(b);
        let kind = if r["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let _ = tx
            .send(send(json!({"type": kind, "response": r}), &mut seq))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_bounded_lru() {
        let mut s = ResponseStore::new(2);
        s.put("a".into(), vec![json!(1)]);
        s.put("b".into(), vec![json!(2)]);
        assert!(s.get("a").is_some()); // a is now the most recent
        s.put("c".into(), vec![json!(3)]);
        assert_eq!(s.len(), 2);
        assert!(s.get("b").is_none());
        assert!(s.get("a").is_some() && s.get("c").is_some());
    }

    #[test]
    fn input_items_become_chat_messages() {
        let m = input_messages(&json!([
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Need it."}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"a\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ]))
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], json!({"role": "user", "content": "Weather?"}));
        assert_eq!(m[1]["reasoning_content"], "Need it.");
        assert_eq!(m[1]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            m[2],
            json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
        );
        let e = input_messages(&json!([{"type": "image", "url": "x"}])).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].type"));
    }
}
