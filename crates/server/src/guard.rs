//! Guardrails in the server (issue 7, item 5): the `hearth-guard` policy applied to request
//! messages before the template, and to generated text while it streams.
//!
//! - Input: `block` → HTTP 400 in Azure OpenAI's content-filter shape (`code:
//!   "content_filter"`, `param: "prompt"`, `innererror.content_filter_result`, naming the rule,
//!   never the matched text); `redact` → the model sees the redacted text; `log` → recorded only.
//! - Output: one `OutputFilter` per choice (see `generation.rs`), fed after stop-string
//!   handling; it holds back a tail that could still become a word or an ID number, so nothing
//!   matching reaches the client; `block` ends the choice with `finish_reason:
//!   "content_filter"` and cancels its generation.
//!
//! Every hit goes to the metrics (`hearth_guardrail_hits_total`) and into the request's audit
//! record (rule ids, actions, scores; never the text).
//!
//! The policy file (`--guardrails FILE`) is re-read when its modification time changes (checked
//! at most every two seconds, on requests) and on SIGHUP: a broken new file keeps the old
//! policy and logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use hearth_guard::{Action, Guard, GuardError, Hit, OutputFilter};
use serde_json::Value;

use crate::error::ApiError;
use crate::state::SharedState;

const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The loaded policy, reloaded when its file changes.
pub struct Guardrails {
    path: Option<PathBuf>,
    current: RwLock<Arc<Guard>>,
    /// (last check, file modification time then).
    stamp: Mutex<(Instant, Option<SystemTime>)>,
}

impl std::fmt::Debug for Guardrails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guardrails({:?})", self.path)
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Guardrails {
    /// The default policy (issue 7): the built-in PII and injection rules in `log` mode, so
    /// hits are counted and audited but nothing is changed until an operator opts in with a
    /// policy file.
    pub fn default_policy() -> Self {
        let rules = Guard::default_rules()
            .into_iter()
            .map(|mut r| {
                r.action = Action::Log;
                r
            })
            .collect();
        let guard = Guard::new(rules).expect("the built-in rules compile");
        Guardrails {
            path: None,
            current: RwLock::new(Arc::new(guard)),
            stamp: Mutex::new((Instant::now(), None)),
        }
    }

    /// A policy file (TOML, see `hearth_guard::config`).
    pub fn from_file(path: &Path) -> Result<Self, GuardError> {
        let guard = Guard::from_file(path)?;
        Ok(Guardrails {
            path: Some(path.to_path_buf()),
            current: RwLock::new(Arc::new(guard)),
            stamp: Mutex::new((Instant::now(), mtime(path))),
        })
    }

    /// The policy now (re-reading the file if it changed).
    pub fn current(&self) -> Arc<Guard> {
        if let Some(path) = &self.path {
            let mut st = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if st.0.elapsed() >= RELOAD_CHECK {
                st.0 = Instant::now();
                let m = mtime(path);
                if m != st.1 {
                    st.1 = m;
                    self.load(path, "changed");
                }
            }
        }
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-read the policy file now (SIGHUP). A file that does not load keeps the old policy.
    pub fn reload(&self) {
        if let Some(path) = &self.path {
            let mut st = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            *st = (Instant::now(), mtime(path));
            self.load(path, "re-read on SIGHUP");
        }
    }

    fn load(&self, path: &Path, why: &str) {
        match Guard::from_file(path) {
            Ok(g) => {
                // The swap is one pointer store under the lock: a request holds the `Arc` it
                // took, so it finishes under the policy it started with.
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(g);
                tracing::info!("guardrails reloaded from {} ({why})", path.display());
            }
            Err(e) => tracing::error!(
                "guardrails file {} {why} but does not load (keeping the previous policy): {e}",
                path.display()
            ),
        }
    }

    /// Reload on SIGHUP, for as long as the runtime runs. Only with a policy file, and only
    /// inside a tokio runtime (else nothing: the mtime check still applies). Installing the
    /// handler replaces SIGHUP's default action (terminate), which is what an operator sending
    /// it to a server with a policy file wants.
    pub fn watch_sighup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            if self.path.is_none() {
                return;
            }
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let me = Arc::downgrade(self);
            let _guard = rt.enter();
            let mut hup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("guardrails: no SIGHUP handler ({e}); the file is still re-read when it changes");
                    return;
                }
            };
            rt.spawn(async move {
                while hup.recv().await.is_some() {
                    match me.upgrade() {
                        Some(g) => g.reload(),
                        None => break,
                    }
                }
            });
        }
    }
}

fn action_str(a: Action) -> &'static str {
    match a {
        Action::Block => "block",
        Action::Redact => "redact",
        Action::Log => "log",
        Action::Allow => "allow",
    }
}

/// Count hits in metrics, log them, and keep them for the audit record.
pub fn record(state: &SharedState, direction: &'static str, hits: &[Hit]) {
    if hits.is_empty() {
        return;
    }
    for h in hits {
        state
            .metrics
            .guardrail(&h.rule_id, action_str(h.action), direction);
        tracing::info!(
            rule = %h.rule_id,
            kind = %h.kind.name(),
            action = action_str(h.action),
            score = h.score,
            direction,
            "guardrail hit"
        );
    }
    if let Some(m) = crate::gateway::current() {
        m.add_guardrails(direction, hits);
    }
}

/// Check `(role, text)` pairs. `Ok(Some(texts))`: use these (redacted) texts instead.
pub fn check_input(
    state: &SharedState,
    messages: &[(&str, &str)],
) -> Result<Option<Vec<String>>, ApiError> {
    let guard = state.guard.current();
    let v = guard.check_input(messages);
    record(state, "input", &v.fired);
    if let Some(body) = v.error_body() {
        return Err(ApiError::content_filter(body));
    }
    Ok(match v.action {
        Action::Redact => v.redacted,
        _ => None,
    })
}

/// [`check_input`] on chat messages whose `content` is a string (after normalization), writing
/// redactions back.
pub fn check_messages(state: &SharedState, messages: &mut [Value]) -> Result<(), ApiError> {
    let idx: Vec<usize> = (0..messages.len())
        .filter(|&i| messages[i].get("content").is_some_and(Value::is_string))
        .collect();
    let pairs: Vec<(&str, &str)> = idx
        .iter()
        .map(|&i| {
            let m = &messages[i];
            (
                m.get("role").and_then(Value::as_str).unwrap_or(""),
                m.get("content").and_then(Value::as_str).unwrap_or(""),
            )
        })
        .collect();
    if let Some(red) = check_input(state, &pairs)? {
        for (&i, text) in idx.iter().zip(red) {
            messages[i]["content"] = Value::String(text);
        }
    }
    Ok(())
}

/// A filter for one choice's output, and whether it enforces: with only `log` rules on output
/// the filter runs in shadow (it sees the text and reports hits, but the client gets the text
/// as generated, with no hold-back delay).
pub fn output_filter(state: &SharedState) -> (OutputFilter, bool) {
    let guard = state.guard.current();
    let enforcing = guard
        .rules()
        .any(|r| r.applies_to.output() && matches!(r.action, Action::Redact | Action::Block));
    (guard.output_filter(), enforcing)
}
