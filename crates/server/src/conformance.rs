//! A contract check any [`Backend`] can be run through: the engine adapter's
//! tests call [`check`] on a real model and assert the report is clean, so
//! the assumptions the HTTP layer makes (see [`crate::backend`]) are tested
//! where the backend is written, not discovered in production.
//!
//! It checks behaviour only through the trait, with small generations
//! (a handful of tokens), so it runs in seconds on a tiny model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::backend::{
    Backend, BackendError, FinishReason, GenerateEvent, GenerateRequest, SamplingParams,
};

/// What [`check`] found. `failures` empty means the backend honours the
/// contract as far as these checks go; `notes` lists checks that could not
/// run (e.g. `stats` not implemented) and why.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }
}

/// How long any single generation in the check may take.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Run {
    ids: Vec<u32>,
    text: String,
    finish: Option<FinishReason>,
    logprobs_ok: Vec<String>,
}

/// Run every check against `model`. Needs a tokio runtime (multi-threaded
/// if the backend's `generate` relies on one).
pub async fn check(backend: Arc<dyn Backend>, model: &str) -> Report {
    let mut r = Report::default();
    let b = backend.as_ref();

    // Models.
    let Some(card) = b.models().into_iter().find(|m| m.id == model) else {
        r.fail(format!("models() does not list `{model}`"));
        return r;
    };
    if card.context_length == 0 {
        r.fail("context_length is 0");
    }

    // Tokenizer round trip (leading/trailing whitespace may legitimately
    // differ, e.g. SentencePiece's space prefix).
    let sample = "Hello world, this is a test.";
    match b.tokenize(model, sample, false) {
        Ok(ids) if ids.is_empty() => r.fail("tokenize returned no tokens for non-empty text"),
        Ok(ids) => match b.detokenize(model, &ids) {
            Ok(text) if text.trim() == sample => {}
            Ok(text) => r.fail(format!(
                "detokenize(tokenize(x)) = {text:?}, expected {sample:?}"
            )),
            Err(e) => r.fail(format!("detokenize failed: {e}")),
        },
        Err(e) => r.fail(format!("tokenize failed: {e}")),
    }
    if !matches!(
        b.tokenize("no-such-model-xyz", "x", false),
        Err(BackendError::UnknownModel(_))
    ) {
        r.fail("tokenize with an unknown model must return UnknownModel");
    }

    // Chat template.
    let messages =
        [serde_json::json!({"role": "user", "content": "What is the capital of France?"})];
    let prompt_text = match b.apply_chat_template(model, &messages, None, &Default::default()) {
        Ok(t) if t.contains("What is the capital of France?") => t,
        Ok(t) => {
            r.fail(format!(
                "the rendered chat template lacks the user message: {t:?}"
            ));
            t
        }
        Err(e) => {
            r.fail(format!("apply_chat_template failed: {e}"));
            sample.to_string()
        }
    };
    let prompt = match b.tokenize(model, &prompt_text, false) {
        Ok(p) if !p.is_empty() => p,
        _ => {
            r.fail("cannot tokenize the rendered prompt; generation checks skipped");
            return r;
        }
    };
    let room = card.context_length.saturating_sub(prompt.len());
    if room < 8 {
        r.fail("the context is too small for the generation checks");
        return r;
    }

    let req =
        |max_tokens: usize, params: SamplingParams, logprobs: Option<usize>| GenerateRequest {
            model: model.to_string(),
            prompt_tokens: prompt.clone(),
            params,
            max_tokens,
            logprobs,
            constraints: Default::default(),
            request_id: "conformance".into(),
        };
    let greedy = SamplingParams {
        temperature: 0.0,
        ..SamplingParams::default()
    };

    // Event order, max_tokens, incremental text, determinism.
    let a = run(b, req(4, greedy.clone(), None), &mut r, "greedy #1").await;
    let c = run(b, req(4, greedy.clone(), None), &mut r, "greedy #2").await;
    if let (Some(a), Some(c)) = (&a, &c) {
        if a.ids.len() > 4 {
            r.fail(format!(
                "max_tokens 4 but {} tokens were generated",
                a.ids.len()
            ));
        }
        if a.finish == Some(FinishReason::Length) && a.ids.len() != 4 {
            r.fail(format!(
                "finish Length after {} tokens with max_tokens 4",
                a.ids.len()
            ));
        }
        if a.ids != c.ids {
            r.fail(format!(
                "greedy decoding is not deterministic: {:?} vs {:?}",
                a.ids, c.ids
            ));
        }
        match b.detokenize(model, &a.ids) {
            // Streamed text may hold back an incomplete UTF-8 tail.
            Ok(full) => {
                let streamed = a.text.trim_start();
                let full = full.trim_start();
                if !full.starts_with(streamed)
                    || full.len() - streamed.len() > 3 + full.matches('\u{FFFD}').count() * 3
                {
                    r.fail(format!(
                        "streamed text {:?} disagrees with detokenize(ids) {full:?}",
                        a.text
                    ));
                }
            }
            Err(e) => r.fail(format!("detokenize of generated ids failed: {e}")),
        }
    }
    let seeded = SamplingParams {
        temperature: 1.0,
        seed: Some(1234),
        ..SamplingParams::default()
    };
    let s1 = run(b, req(6, seeded.clone(), None), &mut r, "seeded #1").await;
    let s2 = run(b, req(6, seeded, None), &mut r, "seeded #2").await;
    if let (Some(s1), Some(s2)) = (s1, s2) {
        if s1.ids != s2.ids {
            r.fail(format!(
                "the same seed gave different tokens: {:?} vs {:?}",
                s1.ids, s2.ids
            ));
        }
    }

    // Logprobs.
    if let Some(l) = run(b, req(3, greedy.clone(), Some(3)), &mut r, "logprobs").await {
        r.failures.extend(l.logprobs_ok);
    }

    // Unknown model.
    let mut bad = req(1, greedy.clone(), None);
    bad.model = "no-such-model-xyz".into();
    if !matches!(b.generate(bad), Err(BackendError::UnknownModel(_))) {
        r.fail("generate with an unknown model must return UnknownModel");
    }

    // generate() must not block, and must refuse rather than queue forever.
    let t = Instant::now();
    let mut held = Vec::new();
    let mut refused = false;
    for _ in 0..64 {
        match b.generate(req(room.min(64), greedy.clone(), None)) {
            Ok(rx) => held.push(rx),
            Err(BackendError::QueueFull { .. }) => {
                refused = true;
                break;
            }
            Err(e) => {
                r.fail(format!("generate failed under load: {e}"));
                break;
            }
        }
    }
    if t.elapsed() > Duration::from_secs(2) {
        r.fail(format!(
            "{} generate() calls took {:?}: it must enqueue and return",
            held.len(),
            t.elapsed()
        ));
    }
    if !refused {
        r.notes
            .push("64 concurrent generations were all accepted (no QueueFull seen)".into());
    }
    drop(held);

    // Cancellation: drop the receiver, the backend must free the sequence.
    // Dropped receivers free their slots asynchronously: wait for one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match b.generate(req(room.min(256), greedy.clone(), None)) {
            Err(BackendError::QueueFull { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(BackendError::QueueFull { .. }) => {
                r.fail("still QueueFull 10 s after every receiver was dropped: cancelled generations keep their slots");
                return r;
            }
            other => break other,
        }
    };
    // Let any other cancelled generations wind down before the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = b.stats().running.saturating_sub(1);
    match first {
        Ok(mut rx) => {
            let _ = tokio::time::timeout(TIMEOUT, rx.recv()).await;
            let during = b.stats().running;
            drop(rx);
            if during <= baseline {
                r.notes.push(
                    "stats().running does not report running sequences; cancellation not observed"
                        .into(),
                );
            } else {
                let deadline = Instant::now() + Duration::from_secs(10);
                while b.stats().running > baseline && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if b.stats().running > baseline {
                    r.fail("a generation whose receiver was dropped is still running after 10 s");
                }
            }
        }
        Err(e) => r.fail(format!("generate failed: {e}")),
    }
    r
}

/// Drain one generation, checking event order.
async fn run(b: &dyn Backend, req: GenerateRequest, r: &mut Report, label: &str) -> Option<Run> {
    let want_logprobs = req.logprobs;
    let mut rx: mpsc::UnboundedReceiver<GenerateEvent> = match b.generate(req) {
        Ok(rx) => rx,
        Err(e) => {
            r.fail(format!("{label}: generate failed: {e}"));
            return None;
        }
    };
    let mut out = Run {
        ids: Vec::new(),
        text: String::new(),
        finish: None,
        logprobs_ok: Vec::new(),
    };
    loop {
        let ev = match tokio::time::timeout(TIMEOUT, rx.recv()).await {
            Ok(ev) => ev,
            Err(_) => {
                r.fail(format!("{label}: no event for {TIMEOUT:?}"));
                return None;
            }
        };
        match ev {
            Some(GenerateEvent::Token { id, text, logprob }) => {
                out.ids.push(id);
                out.text.push_str(&text);
                match (want_logprobs, logprob) {
                    (None, _) => {}
                    (Some(_), None) => out
                        .logprobs_ok
                        .push(format!("{label}: logprobs asked but missing")),
                    (Some(k), Some(lp)) => {
                        if lp.logprob.is_nan() || lp.logprob > 0.0 {
                            out.logprobs_ok
                                .push(format!("{label}: logprob {} > 0", lp.logprob));
                        }
                        if lp.top.len() != k {
                            out.logprobs_ok
                                .push(format!("{label}: {} top logprobs, asked {k}", lp.top.len()));
                        }
                        if lp.top.windows(2).any(|w| w[0].logprob < w[1].logprob) {
                            out.logprobs_ok
                                .push(format!("{label}: top logprobs not sorted best first"));
                        }
                        if let Some(best) = lp.top.first() {
                            if lp.logprob > best.logprob + 1e-4 {
                                out.logprobs_ok
                                    .push(format!("{label}: chosen token beats the top-1"));
                            }
                        }
                    }
                }
            }
            Some(GenerateEvent::Done { finish_reason }) => {
                out.finish = Some(finish_reason);
                // Nothing may follow Done, and the sender must be dropped.
                match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                    Ok(None) => {}
                    Ok(Some(ev)) => r.fail(format!("{label}: an event after Done: {ev:?}")),
                    Err(_) => r.fail(format!("{label}: the channel stayed open after Done")),
                }
                break;
            }
            Some(GenerateEvent::Error(e)) => {
                r.fail(format!("{label}: generation error: {e}"));
                return None;
            }
            None => break,
        }
    }
    if out.finish.is_none() {
        r.fail(format!("{label}: the channel closed without a Done event"));
        return None;
    }
    Some(out)
}
