//! One running choice: backend events in, client-ready pieces out.
//!
//! Shared by `/v1/chat/completions` and `/v1/completions`, streaming or not.
//! Applies stop strings (hold-back, see [`crate::stop`]), enforces
//! `max_tokens`, watches for Hermes `<tool_call>` output when the request
//! has tools, counts completion tokens and records latency metrics. Dropping
//! a [`Choice`] drops the backend receiver, which cancels the generation.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use hearth_harmony::{EndReason, HarmonyEvent, HarmonyParser};

use crate::backend::{FinishReason, GenerateEvent, TokenLogprob};
use crate::metrics::Metrics;
use crate::stop::{Matcher, Step};
use crate::toolcall::{self, ToolCall};

/// Finish reasons as OpenAI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
    /// An output guardrail blocked the rest of the answer.
    ContentFilter,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
            Finish::ContentFilter => "content_filter",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceEvent {
    /// Text safe to send, with the logprobs of the tokens it completes.
    Delta {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// Parsed Hermes tool calls (sent once, just before `Finished`).
    ToolCalls(Vec<ToolCall>),
    /// Harmony: chain-of-thought text (`analysis` channel), never mixed into content.
    Reasoning(String),
    /// Harmony: tool call number `index` of this choice begins (a `commentary` message
    /// addressed `to=functions.NAME`).
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// Harmony: more argument text for tool call `index`.
    ToolCallArgs { index: usize, arguments: String },
    Finished {
        reason: Finish,
        completion_tokens: usize,
    },
    /// The backend failed mid-generation; nothing follows.
    Error(String),
}

pub struct Choice {
    rx: Option<mpsc::UnboundedReceiver<GenerateEvent>>,
    stop: Matcher,
    /// Watches for `<tool_call>` when the request has tools.
    tool_trigger: Option<Matcher>,
    /// Everything from `<tool_call>` on, kept until the end to be parsed.
    tool_buffer: Option<String>,
    /// Harmony output is parsed instead of watched for Hermes blocks.
    harmony: Option<HarmonyState>,
    /// GLM-4 output (`with_glm4`).
    glm4: Option<Glm4State>,
    /// Logprobs of tokens whose text is still held back.
    pending_logprobs: Vec<TokenLogprob>,
    max_tokens: usize,
    completion_tokens: usize,
    queue: VecDeque<ChoiceEvent>,
    done: bool,
    // Metrics.
    metrics: Arc<Metrics>,
    model: String,
    started: Instant,
    id: String,
    last_token: Option<Instant>,
    /// The gateway's per-request meter: billed for every token generated, even when the
    /// client leaves mid-stream (see `crate::gateway`).
    meter: Option<Arc<crate::gateway::Meter>>,
    /// Output guardrails: text passes through here after stop strings, before the client.
    /// The bool: whether it enforces (else it only reports hits; the text goes out unchanged).
    filter: Option<(hearth_guard::OutputFilter, crate::state::SharedState, bool)>,
}

impl Choice {
    pub fn new(
        rx: mpsc::UnboundedReceiver<GenerateEvent>,
        stop: Vec<String>,
        parse_tools: bool,
        max_tokens: usize,
        metrics: Arc<Metrics>,
        model: String,
        started: Instant,
    ) -> Self {
        Choice {
            rx: Some(rx),
            stop: Matcher::new(stop),
            tool_trigger: parse_tools.then(|| Matcher::new([toolcall::OPEN.to_string()])),
            tool_buffer: None,
            harmony: None,
            glm4: None,
            pending_logprobs: Vec::new(),
            max_tokens,
            completion_tokens: 0,
            queue: VecDeque::new(),
            done: false,
            metrics,
            model,
            started,
            id: String::new(),
            last_token: None,
            meter: None,
            filter: None,
        }
    }

    /// Run the generated text through the output guardrails.
    pub fn with_filter(mut self, state: &crate::state::SharedState) -> Self {
        let (f, enforcing) = crate::guard::output_filter(state);
        self.filter = Some((f, state.clone(), enforcing));
        self
    }

    /// Count this choice's generated tokens into a request's gateway meter.
    pub fn with_meter(mut self, meter: Option<Arc<crate::gateway::Meter>>) -> Self {
        self.meter = meter;
        self
    }

    /// Read the output as harmony (gpt-oss): `analysis` → [`ChoiceEvent::Reasoning`],
    /// `final` → `Delta`, `to=functions.NAME` messages → `ToolCallStart`/`ToolCallArgs`; the
    /// generation ends at `<|return|>` / `<|call|>` (the latter: `tool_calls`). Replaces the
    /// Hermes watcher.
    pub fn with_harmony(mut self) -> Self {
        self.tool_trigger = None;
        self.harmony = Some(HarmonyState {
            parser: HarmonyParser::with_role("assistant"),
            calls: 0,
            open_call: false,
            ended_with_call: false,
        });
        self
    }

    /// Read the output as GLM-4 writes it after a bare `<|assistant|>`: "\n" + an answer (the
    /// "\n" is dropped), or, when `tool_names` has the first line, a tool call (that name,
    /// then JSON arguments; more calls may follow), held back and parsed at the end with
    /// [`toolcall::parse_glm4`]. Replaces the Hermes watcher.
    pub fn with_glm4(mut self, tool_names: Vec<String>) -> Self {
        self.tool_trigger = None;
        self.glm4 = Some(Glm4State {
            names: tool_names,
            head: Some(String::new()),
        });
        self
    }

    /// Next piece for the client; `None` after `Finished` or `Error`.
    pub async fn next(&mut self) -> Option<ChoiceEvent> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            if self.done {
                return None;
            }
            let ev = match self.rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => None,
            };
            match ev {
                Some(GenerateEvent::Token { text, logprob, .. }) => self.on_token(&text, logprob),
                Some(GenerateEvent::Done { finish_reason }) => self.finish(match finish_reason {
                    FinishReason::Stop => Finish::Stop,
                    FinishReason::Length => Finish::Length,
                }),
                Some(GenerateEvent::Error(e)) => self.fail(e),
                None => self.fail("the backend ended the generation without a final event".into()),
            }
        }
    }

    /// Drain the whole choice (non-streaming use).
    pub async fn collect(mut self) -> Collected {
        let mut c = Collected::default();
        while let Some(ev) = self.next().await {
            match ev {
                ChoiceEvent::Delta { text, logprobs } => {
                    c.text.push_str(&text);
                    c.logprobs.extend(logprobs);
                }
                ChoiceEvent::ToolCalls(calls) => c.tool_calls = calls,
                ChoiceEvent::Reasoning(r) => c.reasoning.push_str(&r),
                ChoiceEvent::ToolCallStart { id, name, .. } => c.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: String::new(),
                }),
                ChoiceEvent::ToolCallArgs { index, arguments } => {
                    if let Some(call) = c.tool_calls.get_mut(index) {
                        call.arguments.push_str(&arguments);
                    }
                }
                ChoiceEvent::Finished {
                    reason,
                    completion_tokens,
                } => {
                    c.finish = Some(reason);
                    c.completion_tokens = completion_tokens;
                }
                ChoiceEvent::Error(e) => c.error = Some(e),
            }
        }
        c
    }

    fn on_token(&mut self, text: &str, logprob: Option<TokenLogprob>) {
        let now = Instant::now();
        match self.last_token {
            None => self.metrics.ttft(&self.model, now - self.started),
            Some(t) => self.metrics.inter_token(&self.model, now - t),
        }
        self.last_token = Some(now);
        if let Some(m) = &self.meter {
            m.add_completion(1);
        }
        self.completion_tokens += 1;
        self.pending_logprobs.extend(logprob);

        match self.stop.push(text) {
            Step::Continue { emit } => self.route(emit),
            Step::Matched { emit, .. } => {
                self.route(emit);
                // The stop string and what follows are never sent.
                return self.finish_inner(Finish::Stop, false);
            }
        }
        if self.done {
            // Harmony `<|return|>` / `<|call|>` ended it inside `route`.
            return;
        }
        // The backend should stop at max_tokens itself; don't rely on it.
        if self.completion_tokens >= self.max_tokens {
            self.finish(Finish::Length);
        }
    }

    /// Send stop-checked text to the client, or into the tool-call buffer.
    fn route(&mut self, text: String) {
        if let Some(h) = self.harmony.as_mut() {
            let events = h.parser.push_text(&text);
            if self.on_harmony(events).is_some() {
                // Whatever the backend sends after the end token is not part of the answer.
                // `finish_inner` turns this into `tool_calls` when `<|call|>` closed a call
                // (a stray `<|call|>` after a final answer stays `stop`).
                self.finish_inner(Finish::Stop, false);
            }
            return;
        }
        if let Some(buf) = self.tool_buffer.as_mut() {
            buf.push_str(&text);
            return;
        }
        let text = match self.glm4.as_mut().map(|g| g.push(&text)) {
            None | Some(Glm4Step::Text(None)) => text,
            Some(Glm4Step::Hold) => return,
            Some(Glm4Step::Text(Some(t))) => t,
            Some(Glm4Step::Call(head)) => {
                self.tool_buffer = Some(head);
                return;
            }
        };
        let text = match self.tool_trigger.as_mut().map(|m| m.push(&text)) {
            None => text,
            Some(Step::Continue { emit }) => emit,
            Some(Step::Matched { emit, rest, .. }) => {
                self.tool_buffer = Some(rest);
                emit
            }
        };
        self.emit(text);
    }

    /// Queue the client events for parsed harmony output; returns the end token
    /// (`<|return|>` / `<|call|>`) when one arrived.
    fn on_harmony(&mut self, events: Vec<HarmonyEvent>) -> Option<EndReason> {
        let mut end = None;
        for ev in events {
            let Some(h) = self.harmony.as_mut() else {
                break;
            };
            match ev {
                HarmonyEvent::MessageStart(_) => {}
                HarmonyEvent::ReasoningDelta(r) => {
                    // Logprobs are reported for content only (as OpenAI's reasoning models
                    // do): the reasoning tokens' must not ride on the next content delta.
                    self.pending_logprobs.clear();
                    if !r.is_empty() {
                        self.queue.push_back(ChoiceEvent::Reasoning(r));
                    }
                }
                HarmonyEvent::ContentDelta(t) => self.emit(t),
                HarmonyEvent::ToolCallStart { name, .. } => {
                    let index = h.calls;
                    h.calls += 1;
                    h.open_call = true;
                    self.queue.push_back(ChoiceEvent::ToolCallStart {
                        index,
                        id: crate::ids::tool_call_id(),
                        name,
                    });
                }
                HarmonyEvent::ToolCallArgsDelta(a) => {
                    self.pending_logprobs.clear();
                    if !a.is_empty() && h.calls > 0 {
                        self.queue.push_back(ChoiceEvent::ToolCallArgs {
                            index: h.calls - 1,
                            arguments: a,
                        });
                    }
                }
                HarmonyEvent::MessageEnd(r) => {
                    if r == EndReason::Call && h.open_call {
                        h.ended_with_call = true;
                    }
                    h.open_call = false;
                    if matches!(r, EndReason::Return | EndReason::Call) && end.is_none() {
                        end = Some(r);
                    }
                }
            }
        }
        end
    }

    fn emit(&mut self, text: String) {
        if self.done {
            return;
        }
        let Some((f, state, enforcing)) = self.filter.as_mut() else {
            return self.send(text);
        };
        let e = f.push(&text);
        if !*enforcing {
            crate::guard::record(state, "output", &e.fired);
            return self.send(text);
        }
        if let Some(hit) = e.blocked {
            crate::guard::record(state, "output", &e.fired);
            crate::guard::record(state, "output", std::slice::from_ref(&hit));
            self.send(e.text_to_send);
            self.content_filtered();
            return;
        }
        crate::guard::record(state, "output", &e.fired);
        self.send(e.text_to_send);
    }

    /// An output rule blocked: end the choice now (the backend is told to stop).
    fn content_filtered(&mut self) {
        self.queue.push_back(ChoiceEvent::Finished {
            reason: Finish::ContentFilter,
            completion_tokens: self.completion_tokens,
        });
        self.close("content_filter");
    }

    fn send(&mut self, text: String) {
        // Logprobs travel with the first non-empty text after their token:
        // a token whose text is held back (stop prefix, incomplete UTF-8) is
        // reported together with the text it eventually completes.
        if text.is_empty() {
            return;
        }
        let logprobs = std::mem::take(&mut self.pending_logprobs);
        self.queue.push_back(ChoiceEvent::Delta { text, logprobs });
    }

    fn finish(&mut self, reason: Finish) {
        self.finish_inner(reason, true)
    }

    fn finish_inner(&mut self, mut reason: Finish, flush_stop: bool) {
        if self.done {
            return;
        }
        if flush_stop {
            let held = self.stop.flush();
            self.route(held);
            if self.done {
                return;
            }
        }
        if let Some(mut h) = self.harmony.take() {
            let open_before = h.open_call;
            let events = h.parser.finish();
            self.harmony = Some(h);
            self.on_harmony(events);
            let h = self.harmony.as_ref().expect("just put back");
            // `<|call|>`, or a backend that ended (EOG) a tool-call message without showing
            // its end token: the client must run the tool. Cut by max_tokens: `length`.
            if h.ended_with_call || (open_before && reason == Finish::Stop) {
                reason = Finish::ToolCalls;
            }
        }
        if let Some(trigger) = self.tool_trigger.as_mut() {
            let held = trigger.flush();
            if self.tool_buffer.is_none() {
                self.emit(held);
            }
        }
        // GLM-4 output that ended before its first line did: it was no call.
        if let Some(head) = self.glm4.as_mut().and_then(|g| g.head.take()) {
            self.emit(head.strip_prefix('\n').unwrap_or(&head).to_string());
        }
        if let Some(buf) = self.tool_buffer.take() {
            let parsed = match &self.glm4 {
                Some(g) => {
                    let names: Vec<&str> = g.names.iter().map(String::as_str).collect();
                    toolcall::parse_glm4(&buf, &names)
                }
                None => toolcall::parse_hermes(&buf),
            };
            match parsed {
                Some(parsed) => {
                    if let Some(content) = parsed.content {
                        self.emit(content);
                    }
                    self.queue.push_back(ChoiceEvent::ToolCalls(parsed.calls));
                    reason = Finish::ToolCalls;
                }
                None => self.emit(buf),
            }
        }
        if self.done {
            // An output guardrail ended the choice while the held text was flushed.
            return;
        }
        // The filter's held-back tail, now that nothing more can complete a match.
        if let Some((f, state, enforcing)) = self.filter.as_mut() {
            let e = f.finish();
            crate::guard::record(state, "output", &e.fired);
            if !*enforcing {
                return self.finish_now(reason);
            }
            if let Some(hit) = e.blocked {
                crate::guard::record(state, "output", std::slice::from_ref(&hit));
                self.send(e.text_to_send);
                return self.content_filtered();
            }
            self.send(e.text_to_send);
        }
        self.finish_now(reason);
    }

    fn finish_now(&mut self, reason: Finish) {
        self.queue.push_back(ChoiceEvent::Finished {
            reason,
            completion_tokens: self.completion_tokens,
        });
        self.close(reason.as_str());
    }

    fn fail(&mut self, message: String) {
        tracing::warn!(id = %self.id, error = %message, "generation failed");
        self.queue.push_back(ChoiceEvent::Error(message));
        self.close("error");
    }

    fn close(&mut self, outcome: &str) {
        self.done = true;
        // Dropping the receiver tells the backend to stop (stop string,
        // max_tokens) or frees the channel (normal end).
        self.rx = None;
        let elapsed = self.started.elapsed();
        self.metrics
            .generation_tokens(&self.model, self.completion_tokens);
        self.metrics.e2e(&self.model, elapsed);
        tracing::info!(
            id = %self.id,
            model = %self.model,
            completion_tokens = self.completion_tokens,
            outcome,
            elapsed_ms = elapsed.as_millis() as u64,
            "generation finished"
        );
    }

    /// Name this choice in logs (the backend request id).
    pub fn with_id(mut self, id: String) -> Self {
        self.id = id;
        self
    }
}

impl Drop for Choice {
    /// A choice dropped before its end (client gone, sibling failed,
    /// shutdown): its tokens were still generated, so count them.
    fn drop(&mut self) {
        if !self.done {
            self.close("cancelled");
        }
    }
}

/// Harmony parsing state of one choice.
struct HarmonyState {
    parser: HarmonyParser,
    /// Tool calls started so far (the next one's index).
    calls: usize,
    /// A tool-call message is open (started, not yet ended).
    open_call: bool,
    /// The generation ended with `<|call|>` closing a tool call.
    ended_with_call: bool,
}

/// How GLM-4 output begins (see [`Choice::with_glm4`]).
struct Glm4State {
    names: Vec<String>,
    /// The text so far while it is not yet known to be an answer or a call.
    head: Option<String>,
}

enum Glm4Step {
    /// Not decided yet: hold the text.
    Hold,
    /// An answer: send this (the held text without its leading "\n"; `None`: the text as is).
    Text(Option<String>),
    /// A tool call: everything so far goes to the tool-call buffer.
    Call(String),
}

impl Glm4State {
    fn push(&mut self, text: &str) -> Glm4Step {
        let Some(head) = self.head.as_mut() else {
            return Glm4Step::Text(None);
        };
        head.push_str(text);
        if let Some(answer) = head.strip_prefix('\n') {
            let t = answer.to_string();
            self.head = None;
            return Glm4Step::Text(Some(t));
        }
        let first = head.split('\n').next().unwrap_or_default();
        let complete = head.contains('\n');
        if complete && self.names.iter().any(|n| n == first.trim()) {
            return Glm4Step::Call(self.head.take().unwrap_or_default());
        }
        if !complete && !head.is_empty() && self.names.iter().any(|n| n.starts_with(first)) {
            return Glm4Step::Hold;
        }
        if head.is_empty() {
            return Glm4Step::Hold;
        }
        Glm4Step::Text(self.head.take())
    }
}

/// A finished choice, for non-streaming responses.
#[derive(Debug, Default)]
pub struct Collected {
    pub text: String,
    /// Harmony reasoning (`analysis` channel); empty for other formats.
    pub reasoning: String,
    pub logprobs: Vec<TokenLogprob>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Option<Finish>,
    pub completion_tokens: usize,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str) -> GenerateEvent {
        GenerateEvent::Token {
            id: 0,
            text: text.into(),
            logprob: None,
        }
    }

    async fn run(
        events: Vec<GenerateEvent>,
        stop: &[&str],
        tools: bool,
        max_tokens: usize,
    ) -> (Collected, bool) {
        let (tx, rx) = mpsc::unbounded_channel();
        for e in events {
            tx.send(e).unwrap();
        }
        let c = Choice::new(
            rx,
            stop.iter().map(|s| s.to_string()).collect(),
            tools,
            max_tokens,
            Arc::new(Metrics::default()),
            "m".into(),
            Instant::now(),
        );
        let out = c.collect().await;
        (out, tx.is_closed())
    }

    #[tokio::test]
    async fn stop_string_cuts_and_cancels() {
        let (c, closed) = run(
            vec![tok("Hello"), tok(" wor"), tok("ld"), tok("!")],
            &["world"],
            false,
            100,
        )
        .await;
        assert_eq!(c.text, "Hello ");
        assert_eq!(c.finish, Some(Finish::Stop));
        assert_eq!(c.completion_tokens, 3);
        assert!(closed, "the receiver must be dropped so the backend stops");
    }

    #[tokio::test]
    async fn max_tokens_is_enforced_and_held_text_flushed() {
        let (c, _) = run(vec![tok("a"), tok("b"), tok("c")], &["bz"], false, 2).await;
        assert_eq!(c.text, "ab");
        assert_eq!(c.finish, Some(Finish::Length));
    }

    #[tokio::test]
    async fn tool_calls_are_parsed_when_tools_given() {
        let evs = vec![
            tok("Sure.<tool"),
            tok("_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>"),
            GenerateEvent::Done {
                finish_reason: FinishReason::Stop,
            },
        ];
        let (c, _) = run(evs.clone(), &[], true, 100).await;
        assert_eq!(c.text, "Sure.");
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].arguments, "{\"a\":1}");
        // Without tools in the request the text is left alone.
        let (c, _) = run(evs, &[], false, 100).await;
        assert!(c.text.contains("<tool_call>"));
        assert_eq!(c.finish, Some(Finish::Stop));
    }

    #[tokio::test]
    async fn malformed_tool_call_stays_content() {
        let evs = vec![
            tok("<tool_call>{oops</tool_call>"),
            GenerateEvent::Done {
                finish_reason: FinishReason::Stop,
            },
        ];
        let (c, _) = run(evs, &[], true, 100).await;
        assert_eq!(c.text, "<tool_call>{oops</tool_call>");
        assert_eq!(c.finish, Some(Finish::Stop));
    }

    async fn run_glm4(events: Vec<GenerateEvent>, names: &[&str]) -> Collected {
        let (tx, rx) = mpsc::unbounded_channel();
        for e in events {
            tx.send(e).unwrap();
        }
        tx.send(GenerateEvent::Done {
            finish_reason: FinishReason::Stop,
        })
        .unwrap();
        Choice::new(
            rx,
            vec![],
            false,
            100,
            Arc::new(Metrics::default()),
            "m".into(),
            Instant::now(),
        )
        .with_glm4(names.iter().map(|s| s.to_string()).collect())
        .collect()
        .await
    }

    #[tokio::test]
    async fn glm4_tool_calls_and_answers() {
        let names = ["get_weather", "get_time"];
        // A call: name on the first line, JSON arguments; a second call right after it (the
        // `<|assistant|>` between them is a special token, not in the text).
        let c = run_glm4(
            vec![
                tok("get_"),
                tok("weather\n{\"city\": "),
                tok("\"Paris\"}get_time\n{\"tz\": \"UTC\"}"),
            ],
            &names,
        )
        .await;
        assert_eq!(c.text, "");
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        let calls: Vec<_> = c
            .tool_calls
            .iter()
            .map(|t| (t.name.as_str(), t.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("get_weather", "{\"city\": \"Paris\"}"),
                ("get_time", "{\"tz\": \"UTC\"}")
            ]
        );
        // An answer: its leading "\n" is dropped, the rest streams as text.
        let c = run_glm4(vec![tok("\nIt is "), tok("sunny.")], &names).await;
        assert_eq!(c.text, "It is sunny.");
        assert_eq!(c.finish, Some(Finish::Stop));
        // A first line that is no tool name, a call whose JSON is broken: content.
        let c = run_glm4(vec![tok("get_w"), tok("ind\n{}")], &names).await;
        assert_eq!(c.text, "get_wind\n{}");
        let c = run_glm4(vec![tok("get_weather\n{\"city\": ")], &names).await;
        assert_eq!(c.text, "get_weather\n{\"city\": ");
        assert_eq!(c.finish, Some(Finish::Stop));
        // No tools in the request: only the "\n" handling.
        let c = run_glm4(vec![tok("\nHi")], &[]).await;
        assert_eq!(c.text, "Hi");
        // ChatGLM3: the arguments as a Python call in a code block.
        let c = run_glm4(
            vec![
                tok("get_weather"),
                tok("\n ```python\ntool_call(city="),
                tok("'Paris', days=2)\n```"),
            ],
            &names,
        )
        .await;
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        assert_eq!(c.tool_calls[0].arguments, r#"{"city": "Paris", "days": 2}"#);
        assert_eq!(c.text, "");
    }

    async fn run_harmony(events: Vec<GenerateEvent>, max_tokens: usize) -> Collected {
        let (tx, rx) = mpsc::unbounded_channel();
        for e in events {
            tx.send(e).unwrap();
        }
        Choice::new(
            rx,
            vec![],
            false,
            max_tokens,
            Arc::new(Metrics::default()),
            "m".into(),
            Instant::now(),
        )
        .with_harmony()
        .collect()
        .await
    }

    #[tokio::test]
    async fn harmony_finish_reasons() {
        let done = || GenerateEvent::Done {
            finish_reason: FinishReason::Stop,
        };
        // A call closed by <|call|>: tool_calls.
        let c = run_harmony(
            vec![
                tok("<|channel|>commentary to=functions.f <|constrain|>json<|message|>"),
                tok("{\"a\":1}"),
                tok("<|call|>"),
                done(),
            ],
            100,
        )
        .await;
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        assert_eq!(c.tool_calls[0].name, "f");
        assert_eq!(c.tool_calls[0].arguments, "{\"a\":1}");
        // A backend that hides the EOG token's text: the open call still counts.
        let c = run_harmony(
            vec![
                tok("<|channel|>commentary to=functions.f<|message|>{}"),
                done(),
            ],
            100,
        )
        .await;
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        // A stray <|call|> after a final answer is not a tool call.
        let c = run_harmony(
            vec![
                tok("<|channel|>final<|message|>hi<|end|>"),
                tok("<|call|>"),
                done(),
            ],
            100,
        )
        .await;
        assert_eq!((c.text.as_str(), c.finish), ("hi", Some(Finish::Stop)));
        assert!(c.tool_calls.is_empty());
        // Cut by max_tokens inside a call: length, not tool_calls.
        let c = run_harmony(
            vec![
                tok("<|channel|>commentary to=functions.f<|message|>"),
                tok("{\"a\""),
                tok(":1}"),
            ],
            2,
        )
        .await;
        assert_eq!(c.finish, Some(Finish::Length));
    }

    #[tokio::test]
    async fn channel_closed_without_done_is_an_error() {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(tok("a")).unwrap();
        drop(tx);
        let choice = Choice::new(
            rx,
            vec![],
            false,
            100,
            Arc::new(Metrics::default()),
            "m".into(),
            Instant::now(),
        );
        let c = choice.collect().await;
        assert!(c.error.is_some());
        assert_eq!(c.text, "a");
    }
}
