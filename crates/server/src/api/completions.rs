//! `POST /v1/completions` (OpenAI legacy Completions API).
//!
//! `prompt` may be a string, a list of strings, a list of token ids or a list
//! of token-id lists; each prompt gets `n` choices, indexed
//! `prompt * n + choice` as OpenAI does. With `echo`, each choice's text
//! starts with its prompt; with `echo` and `logprobs`, the prompt tokens are
//! listed with `null` logprobs (the backend does not score prompts yet).

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common::{self, Launch, SamplingFields, StopParam, StreamOptions};
use crate::backend::{OutputConstraints, TokenLogprob};
use crate::error::{ApiError, ApiResult};
use crate::generation::{Choice, ChoiceEvent};
use crate::ids;
use crate::json::JsonBody;
use crate::state::SharedState;

const ENDPOINT: &str = "completions";
/// OpenAI's default and maximum for this endpoint.
const DEFAULT_MAX_TOKENS: u64 = 16;
const MAX_LOGPROBS: i64 = 5;

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Value,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub n: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub logprobs: Option<i64>,
    pub echo: Option<bool>,
    pub stop: Option<StopParam>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub best_of: Option<i64>,
    pub logit_bias: Option<HashMap<String, f32>>,
    pub seed: Option<i64>,
    pub suffix: Option<String>,
    /// Accepted for compatibility; unused.
    pub user: Option<String>,
    // Extensions (vLLM names).
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

pub async fn handler(
    State(state): State<SharedState>,
    body: Result<JsonBody<CompletionRequest>, ApiError>,
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

fn parse_prompt(v: &Value) -> ApiResult<Vec<Prompt>> {
    let bad = || {
        ApiError::invalid_param(
            "prompt",
            "`prompt` must be a string, a list of strings, a list of token ids, or a list of token-id lists.",
        )
    };
    let token = |t: &Value| {
        t.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(bad)
    };
    let prompts = match v {
        Value::String(s) => vec![Prompt::Text(s.clone())],
        Value::Array(items) if items.is_empty() => return Err(bad()),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|s| Prompt::Text(s.as_str().unwrap_or_default().to_string()))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![Prompt::Tokens(
                items.iter().map(token).collect::<ApiResult<_>>()?,
            )]
        }
        Value::Array(items) if items.iter().all(Value::is_array) => items
            .iter()
            .map(|p| {
                let ids: Vec<u32> = p
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(token)
                    .collect::<ApiResult<_>>()?;
                if ids.is_empty() {
                    Err(bad())
                } else {
                    Ok(Prompt::Tokens(ids))
                }
            })
            .collect::<ApiResult<_>>()?,
        _ => return Err(bad()),
    };
    Ok(prompts)
}

async fn handle(state: &SharedState, req: CompletionRequest) -> ApiResult<Response> {
    let started = Instant::now();
    state.check_not_draining()?;
    let card = state.model(&req.model)?;
    let mut prompts = parse_prompt(&req.prompt)?;
    // Guardrails on text prompts (token-id prompts are what the caller already tokenized).
    let texts: Vec<(usize, String)> = prompts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Prompt::Text(t) => Some((i, t.clone())),
            Prompt::Tokens(_) => None,
        })
        .collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|(_, t)| ("user", t.as_str())).collect();
    if let Some(red) = crate::guard::check_input(state, &pairs)? {
        for ((i, _), t) in texts.iter().zip(red) {
            prompts[*i] = Prompt::Text(t);
        }
    }
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
    if let Some(b) = req.best_of {
        if b != n as i64 {
            return Err(ApiError::invalid_param(
                "best_of",
                "`best_of` other than `n` is not supported.",
            ));
        }
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param(
            "suffix",
            "`suffix` (fill-in-the-middle) is not supported.",
        ));
    }
    let stop = common::stop_strings(req.stop.as_ref(), state.config.max_stop)?;
    let logprobs = match req.logprobs {
        None => None,
        Some(k) if (0..=MAX_LOGPROBS).contains(&k) => Some(k as usize),
        Some(k) => {
            return Err(ApiError::invalid_param(
                "logprobs",
                format!("`logprobs` must be between 0 and {MAX_LOGPROBS}, got {k}."),
            ))
        }
    };
    let stream = req.stream.unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(ApiError::invalid_param(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true.",
        ));
    }
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let echo = req.echo.unwrap_or(false);

    // Tokenize (and, for echo, render token prompts back to text) off the
    // async workers.
    let model = card.id.clone();
    let tokenized: Vec<(Vec<u32>, String, Vec<String>)> = state
        .blocking(move |b| {
            prompts
                .into_iter()
                .map(|p| {
                    let (ids, text) = match p {
                        // Completions prompts get BOS etc. (vLLM and llama-server do the same).
                        Prompt::Text(s) => (b.tokenize(&model, &s, true)?, s),
                        Prompt::Tokens(ids) => {
                            let text = if echo {
                                b.detokenize(&model, &ids)?
                            } else {
                                String::new()
                            };
                            (ids, text)
                        }
                    };
                    let pieces = if echo && logprobs.is_some() {
                        ids.iter()
                            .map(|&id| b.detokenize(&model, &[id]))
                            .collect::<Result<_, _>>()?
                    } else {
                        Vec::new()
                    };
                    Ok((ids, text, pieces))
                })
                .collect()
        })
        .await?;
    let requested = Some(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
    let mut max_tokens = 0;
    for (ids, _, _) in &tokenized {
        max_tokens = common::max_tokens(
            requested,
            "max_tokens",
            ids.len(),
            card.context_length,
            "prompt",
        )?;
    }

    let launch = Launch {
        model: card.id.clone(),
        request_id: ids::new_id("cmpl"),
        params,
        max_tokens,
        logprobs,
        constraints: OutputConstraints::default(),
        stop,
        parse_tools: false,
        harmony: false,
        glm4: None,
        started,
    };
    let prompt_ids: Vec<Vec<u32>> = tokenized.iter().map(|(ids, _, _)| ids.clone()).collect();
    let choices = common::launch(state, &launch, &prompt_ids, n).await?;
    let prompt_tokens: usize = prompt_ids.iter().map(Vec::len).sum();
    state.metrics.prompt_tokens(&card.id, prompt_tokens);

    // Per choice: the echoed prompt (text and logprob entries), if any.
    let mut echoes = Vec::with_capacity(choices.len());
    for (_, text, pieces) in &tokenized {
        for _ in 0..n {
            echoes.push(if echo {
                Echo {
                    text: text.clone(),
                    pieces: pieces.clone(),
                }
            } else {
                Echo::default()
            });
        }
    }
    let ctx = Ctx {
        id: launch.request_id.clone(),
        created: ids::unix_now(),
        model: card.id,
        include_usage,
        logprobs: logprobs.is_some(),
        prompt_tokens,
    };
    if stream {
        let (tx, resp) = common::sse_response(state);
        let fmt = Streaming {
            ctx,
            echoes,
            builders: Vec::new(),
        };
        tokio::spawn(common::drive_stream(state.clone(), choices, tx, fmt));
        Ok(resp)
    } else {
        let collected = tokio::select! {
            c = futures::future::join_all(choices.into_iter().map(Choice::collect)) => c,
            _ = state.aborted() => return Err(ApiError::unavailable("The server shut down before the generation finished.")),
        };
        let mut out = Vec::with_capacity(collected.len());
        let mut completion = 0;
        for (index, (c, echo)) in collected.into_iter().zip(echoes).enumerate() {
            if let Some(e) = c.error {
                return Err(ApiError::internal(format!("generation failed: {e}")));
            }
            completion += c.completion_tokens;
            let mut lp = LogprobsBuilder::default();
            lp.echo(&echo);
            lp.push(&c.logprobs);
            out.push(json!({
                "index": index,
                "text": format!("{}{}", echo.text, c.text),
                "logprobs": if ctx.logprobs { lp.finish() } else { Value::Null },
                "finish_reason": c.finish.map(|f| f.as_str()),
            }));
        }
        Ok(Json(json!({
            "id": ctx.id,
            "object": "text_completion",
            "created": ctx.created,
            "model": ctx.model,
            "choices": out,
            "usage": ctx.usage(completion),
            "system_fingerprint": null,
        }))
        .into_response())
    }
}

#[derive(Debug, Clone, Default)]
struct Echo {
    text: String,
    /// Prompt token pieces, only when logprobs were asked for.
    pieces: Vec<String>,
}

/// The legacy logprobs object:
/// `{tokens, token_logprobs, top_logprobs: [{piece: logprob}], text_offset}`,
/// `text_offset` counting characters from the start of the choice's text.
#[derive(Default)]
struct LogprobsBuilder {
    tokens: Vec<Value>,
    token_logprobs: Vec<Value>,
    top: Vec<Value>,
    offsets: Vec<Value>,
    offset: usize,
}

impl LogprobsBuilder {
    fn echo(&mut self, e: &Echo) {
        for p in &e.pieces {
            self.tokens.push(p.clone().into());
            self.token_logprobs.push(Value::Null);
            self.top.push(Value::Null);
            self.offsets.push(self.offset.into());
            self.offset += p.chars().count();
        }
    }

    fn push(&mut self, lps: &[TokenLogprob]) {
        for lp in lps {
            let piece = String::from_utf8_lossy(&lp.bytes).into_owned();
            let mut top = Map::new();
            for t in &lp.top {
                top.insert(
                    String::from_utf8_lossy(&t.bytes).into_owned(),
                    t.logprob.into(),
                );
            }
            self.tokens.push(piece.clone().into());
            self.token_logprobs.push(lp.logprob.into());
            self.top.push(Value::Object(top));
            self.offsets.push(self.offset.into());
            self.offset += piece.chars().count();
        }
    }

    /// The object for what was pushed since the last call (streaming sends
    /// one per chunk; offsets keep counting from the choice's start).
    fn finish(&mut self) -> Value {
        json!({
            "tokens": std::mem::take(&mut self.tokens),
            "token_logprobs": std::mem::take(&mut self.token_logprobs),
            "top_logprobs": std::mem::take(&mut self.top),
            "text_offset": std::mem::take(&mut self.offsets),
        })
    }
}

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

    fn chunk(&self, index: usize, text: &str, logprobs: Value, finish: Option<&str>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }
}

/// Streaming state: the response-wide fields plus, per choice, its echo and
/// its logprobs builder (whose text offsets run across chunks).
struct Streaming {
    ctx: Ctx,
    echoes: Vec<Echo>,
    builders: Vec<LogprobsBuilder>,
}

impl common::StreamFormat for Streaming {
    fn prelude(&mut self, n_choices: usize) -> Vec<Value> {
        self.builders = (0..n_choices).map(|_| LogprobsBuilder::default()).collect();
        let mut out = Vec::new();
        for (i, e) in self.echoes.iter().enumerate() {
            if e.text.is_empty() && e.pieces.is_empty() {
                continue;
            }
            self.builders[i].echo(e);
            let lp = if self.ctx.logprobs {
                self.builders[i].finish()
            } else {
                Value::Null
            };
            out.push(self.ctx.chunk(i, &e.text, lp, None));
        }
        out
    }

    fn event(&mut self, i: usize, ev: ChoiceEvent) -> Option<Value> {
        match ev {
            ChoiceEvent::Delta { text, logprobs } => {
                self.builders[i].push(&logprobs);
                let lp = if self.ctx.logprobs {
                    self.builders[i].finish()
                } else {
                    Value::Null
                };
                Some(self.ctx.chunk(i, &text, lp, None))
            }
            ChoiceEvent::Finished { reason, .. } => {
                Some(self.ctx.chunk(i, "", Value::Null, Some(reason.as_str())))
            }
            // Tool calls are a chat-only feature; errors are handled by the driver.
            ChoiceEvent::ToolCalls(_)
            | ChoiceEvent::Reasoning(_)
            | ChoiceEvent::ToolCallStart { .. }
            | ChoiceEvent::ToolCallArgs { .. }
            | ChoiceEvent::Error(_) => None,
        }
    }

    fn usage_chunk(&self, completion_tokens: usize) -> Option<Value> {
        self.ctx.include_usage.then(|| {
            json!({
                "id": self.ctx.id,
                "object": "text_completion",
                "created": self.ctx.created,
                "model": self.ctx.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": self.ctx.usage(completion_tokens),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_forms() {
        assert!(matches!(
            parse_prompt(&json!("hi")).unwrap()[..],
            [Prompt::Text(_)]
        ));
        assert_eq!(parse_prompt(&json!(["a", "b"])).unwrap().len(), 2);
        assert!(
            matches!(&parse_prompt(&json!([1, 2, 3])).unwrap()[..], [Prompt::Tokens(t)] if t == &[1, 2, 3])
        );
        assert_eq!(parse_prompt(&json!([[1], [2, 3]])).unwrap().len(), 2);
        for bad in [
            json!([]),
            json!(5),
            json!([1, "a"]),
            json!([-1]),
            json!([[]]),
            json!({"a": 1}),
        ] {
            let e = parse_prompt(&bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.param.as_deref(), Some("prompt"));
        }
    }
}
