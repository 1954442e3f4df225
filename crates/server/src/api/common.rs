//! Parameter validation and plumbing shared by the generation endpoints.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Instant;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::backend::{BackendError, GenerateRequest, OutputConstraints, SamplingParams};
use crate::error::{ApiError, ApiResult};
use crate::generation::{Choice, ChoiceEvent};
use crate::json::JsonBody;
use crate::state::SharedState;

/// `stop`: a string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopParam {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The sampling fields both endpoints accept, borrowed from the request.
pub struct SamplingFields<'a> {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub logit_bias: Option<&'a HashMap<String, f32>>,
}

fn in_range(param: &str, v: Option<f32>, lo: f32, hi: f32, default: f32) -> ApiResult<f32> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(x),
        Some(x) => Err(ApiError::invalid_param(
            param,
            format!("`{param}` must be between {lo} and {hi}, got {x}."),
        )),
    }
}

/// Check ranges (OpenAI's documented ones; vLLM's for the extensions
/// `top_k`, `min_p`, `repetition_penalty`) and fill what the request leaves
/// out from `d` (`ServerConfig::default_sampling`).
pub fn sampling(f: &SamplingFields<'_>, d: &SamplingParams) -> ApiResult<SamplingParams> {
    let temperature = in_range("temperature", f.temperature, 0.0, 2.0, d.temperature)?;
    let top_p = in_range("top_p", f.top_p, 0.0, 1.0, d.top_p)?;
    if top_p <= 0.0 {
        return Err(ApiError::invalid_param(
            "top_p",
            "`top_p` must be in (0, 1], got 0.",
        ));
    }
    let top_k = match f.top_k {
        None => d.top_k,
        Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => k as usize,
        Some(k) => {
            return Err(ApiError::invalid_param(
                "top_k",
                format!("`top_k` must be -1 (disabled) or positive, got {k}."),
            ))
        }
    };
    let min_p = in_range("min_p", f.min_p, 0.0, 1.0, d.min_p)?;
    let presence_penalty = in_range(
        "presence_penalty",
        f.presence_penalty,
        -2.0,
        2.0,
        d.presence_penalty,
    )?;
    let frequency_penalty = in_range(
        "frequency_penalty",
        f.frequency_penalty,
        -2.0,
        2.0,
        d.frequency_penalty,
    )?;
    let repetition_penalty = in_range(
        "repetition_penalty",
        f.repetition_penalty,
        0.0,
        f32::MAX,
        d.repetition_penalty,
    )?;
    if repetition_penalty <= 0.0 {
        return Err(ApiError::invalid_param(
            "repetition_penalty",
            "`repetition_penalty` must be positive, got 0.",
        ));
    }
    let mut logit_bias = Vec::new();
    if let Some(map) = f.logit_bias {
        for (k, &v) in map {
            let id: u32 = k.parse().map_err(|_| {
                ApiError::invalid_param(
                    "logit_bias",
                    format!("`logit_bias` keys must be token ids, got {k:?}."),
                )
            })?;
            if !(-100.0..=100.0).contains(&v) {
                return Err(ApiError::invalid_param(
                    "logit_bias",
                    format!(
                        "`logit_bias` values must be between -100 and 100, got {v} for token {id}."
                    ),
                ));
            }
            logit_bias.push((id, v));
        }
        logit_bias.sort_by_key(|&(id, _)| id);
    }
    Ok(SamplingParams {
        temperature,
        top_p,
        top_k,
        min_p,
        // OpenAI seeds are signed 64-bit; keep all 64 bits.
        seed: f.seed.map(|s| s as u64).or(d.seed),
        presence_penalty,
        frequency_penalty,
        repetition_penalty,
        logit_bias,
    })
}

pub fn n_choices(n: Option<i64>, max_n: usize) -> ApiResult<usize> {
    match n {
        None => Ok(1),
        Some(n) if n >= 1 && (n as u64) <= max_n as u64 => Ok(n as usize),
        Some(n) => Err(ApiError::invalid_param(
            "n",
            format!("`n` must be between 1 and {max_n}, got {n}."),
        )),
    }
}

pub fn stop_strings(stop: Option<&StopParam>, max_stop: usize) -> ApiResult<Vec<String>> {
    let v = match stop {
        None => Vec::new(),
        Some(StopParam::One(s)) => vec![s.clone()],
        Some(StopParam::Many(v)) => v.clone(),
    };
    if v.len() > max_stop {
        return Err(ApiError::invalid_param(
            "stop",
            format!(
                "At most {max_stop} stop sequences are allowed, got {}.",
                v.len()
            ),
        ));
    }
    Ok(v.into_iter().filter(|s| !s.is_empty()).collect())
}

/// Resolve `max_tokens` against the context window. `None` means "as many as
/// fit". Errors name both numbers, like OpenAI's `context_length_exceeded`.
pub fn max_tokens(
    requested: Option<u64>,
    param: &str,
    prompt_len: usize,
    context: usize,
    prompt_param: &str,
) -> ApiResult<usize> {
    let overflow = |max_tokens: usize| {
        let mut e = ApiError::from(BackendError::ContextOverflow {
            prompt: prompt_len,
            max_tokens,
            context,
        });
        e.param = Some(prompt_param.to_string());
        e
    };
    match requested {
        Some(0) => Err(ApiError::invalid_param(
            param,
            format!("`{param}` must be at least 1."),
        )),
        Some(m) => {
            let m = usize::try_from(m).unwrap_or(usize::MAX);
            if prompt_len.saturating_add(m) > context {
                Err(overflow(m))
            } else {
                Ok(m)
            }
        }
        None if prompt_len >= context => Err(overflow(1)),
        None => Ok(context - prompt_len),
    }
}

/// Everything needed to start the generations of one request.
pub struct Launch {
    pub model: String,
    pub request_id: String,
    pub params: SamplingParams,
    pub max_tokens: usize,
    pub logprobs: Option<usize>,
    pub constraints: OutputConstraints,
    pub stop: Vec<String>,
    pub parse_tools: bool,
    /// Parse the output as harmony (gpt-oss) instead of plain text + Hermes tool calls.
    pub harmony: bool,
    /// GLM-4 output ([`crate::backend::ChatFormat::Glm4`]): the request's tool names when its
    /// tool calls are to be parsed (empty: none), replacing the Hermes watcher.
    pub glm4: Option<Vec<String>>,
    pub started: Instant,
}

/// Start `n` generations of each prompt. Choice `i` of prompt `p` gets index
/// `p * n + i` (OpenAI's order for batched completions). With a seed, choice
/// `i` uses `seed + i` so the `n` choices differ but stay reproducible.
/// If the backend refuses any, the ones already started are dropped (and so
/// cancelled) and the error is returned.
pub async fn launch(
    state: &SharedState,
    l: &Launch,
    prompts: &[Vec<u32>],
    n: usize,
) -> ApiResult<Vec<Choice>> {
    // Authorization on the model actually dispatched, and the limits with real token counts.
    let prompt_total: usize = prompts.iter().map(Vec::len).sum();
    let (meter, max_tokens) = crate::gateway::admit(
        &l.model,
        prompt_total as u64,
        (prompts.len() * n) as u64,
        l.max_tokens as u64,
    )
    .await?;
    let max_tokens = max_tokens as usize;
    let mut choices = Vec::with_capacity(prompts.len() * n);
    for prompt in prompts {
        for i in 0..n {
            let mut params = l.params.clone();
            params.seed = params.seed.map(|s| s.wrapping_add(i as u64));
            let req = GenerateRequest {
                model: l.model.clone(),
                prompt_tokens: prompt.clone(),
                params,
                max_tokens,
                logprobs: l.logprobs,
                constraints: l.constraints.clone(),
                request_id: format!("{}-{}", l.request_id, choices.len()),
            };
            let id = req.request_id.clone();
            let rx = state.backend.generate(req)?;
            let choice = Choice::new(
                rx,
                l.stop.clone(),
                l.parse_tools,
                max_tokens,
                state.metrics.clone(),
                l.model.clone(),
                l.started,
            )
            .with_id(id)
            .with_meter(meter.clone())
            .with_filter(state);
            choices.push(if l.harmony {
                choice.with_harmony()
            } else if let Some(names) = &l.glm4 {
                choice.with_glm4(names.clone())
            } else {
                choice
            });
        }
    }
    Ok(choices)
}

pub type SseSender = mpsc::Sender<Result<Event, Infallible>>;

/// Run a generation endpoint's handler and count the request in metrics
/// (labelled by model only for served models: clients must not be able to
/// grow the metrics without bound with made-up names).
pub async fn respond<T, F, Fut>(
    state: &SharedState,
    endpoint: &str,
    body: Result<JsonBody<T>, ApiError>,
    model_of: impl Fn(&T) -> String,
    handle: F,
) -> Response
where
    F: FnOnce(T) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Response>>,
{
    let (label, result) = match body {
        Ok(JsonBody(req)) => {
            let model = model_of(&req);
            let r = handle(req).await;
            let known = state.backend.models().iter().any(|m| m.id == model);
            (if known { model } else { String::new() }, r)
        }
        Err(e) => (String::new(), Err(e)),
    };
    let resp = result.unwrap_or_else(|e| e.into_response());
    state
        .metrics
        .request(endpoint, &label, resp.status().as_u16());
    resp
}

/// How an endpoint renders stream chunks; [`drive_stream`] does the rest.
pub trait StreamFormat: Send + 'static {
    /// Chunks sent before any generated text (chat: one role chunk per
    /// choice; completions: echoed prompts).
    fn prelude(&mut self, n_choices: usize) -> Vec<serde_json::Value>;
    /// The chunk for one event of choice `index` (`None`: send nothing).
    /// Never called with `ChoiceEvent::Error`.
    fn event(&mut self, index: usize, ev: ChoiceEvent) -> Option<serde_json::Value>;
    /// The final `choices: []` chunk carrying usage, when it was asked for.
    fn usage_chunk(&self, completion_tokens: usize) -> Option<serde_json::Value>;
}

/// Feed SSE chunks for all choices until they finish, the client leaves
/// (return: dropping the choices cancels their generations) or the drain
/// deadline passes. Errors after the 200 status line are reported in-band as
/// `data: {"error": ...}` (as vLLM does), without `[DONE]`.
pub async fn drive_stream(
    state: SharedState,
    choices: Vec<Choice>,
    tx: SseSender,
    mut fmt: impl StreamFormat,
) {
    for chunk in fmt.prelude(choices.len()) {
        if tx.send(json_event(&chunk)).await.is_err() {
            return;
        }
    }
    let mut merged = stream::select_all(choices.into_iter().enumerate().map(|(i, c)| {
        stream::unfold(c, move |mut c| async move {
            c.next().await.map(|ev| ((i, ev), c))
        })
        .boxed()
    }));
    let mut completion = 0;
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return,
            _ = state.aborted() => {
                let err = ApiError::unavailable("The server shut down before the generation finished.");
                let _ = tx.send(json_event(&err.body())).await;
                return;
            }
            next = merged.next() => next,
        };
        let Some((i, ev)) = next else { break };
        match &ev {
            ChoiceEvent::Error(e) => {
                let err = ApiError::internal(format!("generation failed: {e}"));
                let _ = tx.send(json_event(&err.body())).await;
                return;
            }
            ChoiceEvent::Finished {
                completion_tokens, ..
            } => completion += completion_tokens,
            _ => {}
        }
        if let Some(chunk) = fmt.event(i, ev) {
            if tx.send(json_event(&chunk)).await.is_err() {
                return;
            }
        }
    }
    if let Some(chunk) = fmt.usage_chunk(completion) {
        if tx.send(json_event(&chunk)).await.is_err() {
            return;
        }
    }
    let _ = tx.send(done_event()).await;
}

/// An SSE response fed by a channel. When the client goes away axum drops
/// the body, the channel closes and the producer task (which watches
/// `Sender::closed`) stops, dropping its backend receivers.
pub fn sse_response(state: &SharedState) -> (SseSender, Response) {
    let (tx, rx) = mpsc::channel(64);
    let sse = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(state.config.sse_keep_alive));
    (tx, sse.into_response())
}

pub fn json_event(v: &serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(v.to_string()))
}

pub fn done_event() -> Result<Event, Infallible> {
    Ok(Event::default().data("[DONE]"))
}

/// Bytes as OpenAI's logprob objects list them.
pub fn bytes_json(b: &[u8]) -> serde_json::Value {
    serde_json::Value::Array(b.iter().map(|&x| serde_json::Value::from(x)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_overflow_names_both_numbers() {
        let e = max_tokens(Some(100), "max_tokens", 30, 120, "messages").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("120"), "{}", e.message);
        assert!(e.message.contains("30 in the prompt"), "{}", e.message);
        assert!(
            e.message.contains("100 for the completion"),
            "{}",
            e.message
        );
        assert_eq!(e.code, Some("context_length_exceeded"));
        assert_eq!(
            max_tokens(None, "max_tokens", 30, 120, "messages").unwrap(),
            90
        );
        assert_eq!(
            max_tokens(Some(90), "max_tokens", 30, 120, "messages").unwrap(),
            90
        );
        assert!(max_tokens(None, "max_tokens", 120, 120, "messages").is_err());
    }

    #[test]
    fn sampling_ranges() {
        let base = || SamplingFields {
            temperature: None,
            top_p: None,
            top_k: None,
            min_p: None,
            seed: None,
            presence_penalty: None,
            frequency_penalty: None,
            repetition_penalty: None,
            logit_bias: None,
        };
        assert_eq!(
            sampling(&base(), &SamplingParams::default()).unwrap(),
            SamplingParams::default()
        );
        // Omitted fields come from the configured defaults; explicit
        // "disabled" values override them.
        let llama_like = SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            ..SamplingParams::default()
        };
        let p = sampling(&base(), &llama_like).unwrap();
        assert_eq!(p, llama_like);
        let p = sampling(
            &SamplingFields {
                top_k: Some(-1),
                temperature: Some(0.0),
                ..base()
            },
            &llama_like,
        )
        .unwrap();
        assert_eq!((p.top_k, p.temperature, p.top_p), (0, 0.0, 0.95));
        let e = sampling(
            &SamplingFields {
                temperature: Some(2.5),
                ..base()
            },
            &SamplingParams::default(),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = sampling(
            &SamplingFields {
                top_p: Some(0.0),
                ..base()
            },
            &SamplingParams::default(),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("top_p"));
        let bias: HashMap<String, f32> = [("abc".to_string(), 1.0)].into();
        let e = sampling(
            &SamplingFields {
                logit_bias: Some(&bias),
                ..base()
            },
            &SamplingParams::default(),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logit_bias"));
        let bias: HashMap<String, f32> = [("7".to_string(), -100.0)].into();
        let p = sampling(
            &SamplingFields {
                logit_bias: Some(&bias),
                seed: Some(-1),
                ..base()
            },
            &SamplingParams::default(),
        )
        .unwrap();
        assert_eq!(p.logit_bias, vec![(7, -100.0)]);
        assert_eq!(p.seed, Some(u64::MAX));
    }
}
