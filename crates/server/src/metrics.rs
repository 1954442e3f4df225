//! Prometheus metrics, rendered in the text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! A small hand-rolled registry: a handful of fixed families, updated under
//! one mutex (a few updates per token is far below contention levels at
//! LLM token rates), so no metrics crate is pulled in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::backend::BackendStats;

/// Bucket upper bounds in seconds, chosen like vLLM's for the same metrics.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.4, 0.5, 0.75, 1.0, 2.5,
];
const E2E_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative per-bucket counts; `counts[bounds.len()]` is +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    /// (endpoint, model, status) → count.
    requests: BTreeMap<(String, String, u16), u64>,
    prompt_tokens: BTreeMap<String, u64>,
    generation_tokens: BTreeMap<String, u64>,
    ttft: BTreeMap<String, Histogram>,
    itl: BTreeMap<String, Histogram>,
    e2e: BTreeMap<String, Histogram>,
    /// (rule, action, direction) → hits. Rule ids come from the policy file only.
    guardrail_hits: BTreeMap<(String, &'static str, &'static str), u64>,
    /// (key, team, model, outcome) → (requests, prompt tokens, completion tokens).
    gateway: BTreeMap<(String, String, String, &'static str), [u64; 3]>,
}

/// Distinct (key, team, model, outcome) series kept at most; later keys count as key="other",
/// so no caller can grow the metrics without bound.
const MAX_GATEWAY_SERIES: usize = 2000;

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A panic elsewhere while holding the lock must not take metrics down.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn request(&self, endpoint: &str, model: &str, status: u16) {
        self.with(|m| {
            *m.requests
                .entry((endpoint.into(), model.into(), status))
                .or_default() += 1
        });
    }

    pub fn prompt_tokens(&self, model: &str, n: usize) {
        self.with(|m| *m.prompt_tokens.entry(model.into()).or_default() += n as u64);
    }

    pub fn generation_tokens(&self, model: &str, n: usize) {
        self.with(|m| *m.generation_tokens.entry(model.into()).or_default() += n as u64);
    }

    /// Tokens generated since start, all models.
    pub fn generated_tokens_total(&self) -> u64 {
        self.with(|m| m.generation_tokens.values().sum())
    }

    pub fn ttft(&self, model: &str, d: Duration) {
        self.with(|m| {
            m.ttft
                .entry(model.into())
                .or_insert_with(|| Histogram::new(TTFT_BUCKETS))
                .observe(d.as_secs_f64())
        });
    }

    pub fn inter_token(&self, model: &str, d: Duration) {
        self.with(|m| {
            m.itl
                .entry(model.into())
                .or_insert_with(|| Histogram::new(ITL_BUCKETS))
                .observe(d.as_secs_f64())
        });
    }

    pub fn e2e(&self, model: &str, d: Duration) {
        self.with(|m| {
            m.e2e
                .entry(model.into())
                .or_insert_with(|| Histogram::new(E2E_BUCKETS))
                .observe(d.as_secs_f64())
        });
    }

    /// One guardrail hit.
    pub fn guardrail(&self, rule: &str, action: &'static str, direction: &'static str) {
        self.with(|m| {
            *m.guardrail_hits
                .entry((rule.to_string(), action, direction))
                .or_default() += 1
        });
    }

    /// One request through the gateway. `outcome` is one of a fixed set (ok, unauthorized,
    /// forbidden, rate_limited, insufficient_quota, client_error, server_error).
    pub fn gateway(
        &self,
        key: &str,
        team: &str,
        model: &str,
        outcome: &'static str,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) {
        self.with(|m| {
            let mut k = (
                key.to_string(),
                team.to_string(),
                model.to_string(),
                outcome,
            );
            if !m.gateway.contains_key(&k) && m.gateway.len() >= MAX_GATEWAY_SERIES {
                k = ("other".into(), "other".into(), k.2, outcome);
            }
            let e = m.gateway.entry(k).or_default();
            e[0] += 1;
            e[1] += prompt_tokens;
            e[2] += completion_tokens;
        });
    }

    /// The `/metrics` body.
    pub fn render(&self, stats: BackendStats) -> String {
        let mut out = String::new();
        self.with(|m| {
            family(
                &mut out,
                "hearth_requests_total",
                "counter",
                "HTTP requests by endpoint, model and status code.",
            );
            for ((endpoint, model, status), n) in &m.requests {
                let _ = writeln!(
                    out,
                    "hearth_requests_total{{endpoint=\"{}\",model=\"{}\",status=\"{}\"}} {n}",
                    esc(endpoint),
                    esc(model),
                    status
                );
            }
            for (i, (name, help)) in [
                (
                    "hearth_gateway_requests_total",
                    "Requests by key, team, model and outcome (refusals by reason).",
                ),
                (
                    "hearth_gateway_prompt_tokens_total",
                    "Prompt tokens billed by key, team, model and outcome.",
                ),
                (
                    "hearth_gateway_completion_tokens_total",
                    "Completion tokens billed by key, team, model and outcome.",
                ),
            ]
            .into_iter()
            .enumerate()
            {
                family(&mut out, name, "counter", help);
                for ((key, team, model, outcome), v) in &m.gateway {
                    let _ = writeln!(
                        out,
                        "{name}{{key=\"{}\",team=\"{}\",model=\"{}\",outcome=\"{outcome}\"}} {}",
                        esc(key),
                        esc(team),
                        esc(model),
                        v[i]
                    );
                }
            }
            family(
                &mut out,
                "hearth_guardrail_hits_total",
                "counter",
                "Guardrail rules that fired, by rule, action and direction (input/output).",
            );
            for ((rule, action, direction), n) in &m.guardrail_hits {
                let _ = writeln!(
                    out,
                    "hearth_guardrail_hits_total{{rule=\"{}\",action=\"{action}\",direction=\"{direction}\"}} {n}",
                    esc(rule)
                );
            }
            counter(
                &mut out,
                "hearth_prompt_tokens_total",
                "Prompt tokens processed.",
                &m.prompt_tokens,
            );
            counter(
                &mut out,
                "hearth_generation_tokens_total",
                "Tokens generated.",
                &m.generation_tokens,
            );
            histogram(
                &mut out,
                "hearth_time_to_first_token_seconds",
                "Time from request arrival to first generated token.",
                &m.ttft,
            );
            histogram(
                &mut out,
                "hearth_inter_token_latency_seconds",
                "Time between consecutive generated tokens.",
                &m.itl,
            );
            histogram(
                &mut out,
                "hearth_e2e_request_latency_seconds",
                "Time from request arrival to the end of a generation.",
                &m.e2e,
            );
        });
        family(
            &mut out,
            "hearth_requests_running",
            "gauge",
            "Sequences being decoded (reported by the backend).",
        );
        let _ = writeln!(out, "hearth_requests_running {}", stats.running);
        family(
            &mut out,
            "hearth_requests_waiting",
            "gauge",
            "Sequences waiting for a slot (reported by the backend).",
        );
        let _ = writeln!(out, "hearth_requests_waiting {}", stats.waiting);
        if let Some(u) = stats.kv_cache_usage {
            family(
                &mut out,
                "hearth_kv_cache_usage_ratio",
                "gauge",
                "Fraction of the KV cache in use.",
            );
            let _ = writeln!(out, "hearth_kv_cache_usage_ratio {}", fmt_f64(u));
        }
        if let Some(kv) = stats.kv {
            let gauges: [(&str, &str, f64); 4] = [
                (
                    "hearth_kv_cache_blocks_total",
                    "KV cache blocks (of 16 tokens) in the budget.",
                    kv.blocks_total as f64,
                ),
                (
                    "hearth_kv_cache_blocks_used",
                    "KV cache blocks referenced by running sequences.",
                    kv.blocks_used as f64,
                ),
                (
                    "hearth_kv_cache_blocks_cached",
                    "Unreferenced KV blocks kept for prefix reuse (evictable).",
                    kv.blocks_cached as f64,
                ),
                (
                    "hearth_prefix_cache_hit_ratio",
                    "Prompt tokens found in the prefix cache / prompt tokens looked up.",
                    if kv.prefix_query_tokens == 0 {
                        0.0
                    } else {
                        kv.prefix_hit_tokens as f64 / kv.prefix_query_tokens as f64
                    },
                ),
            ];
            for (name, help, v) in gauges {
                family(&mut out, name, "gauge", help);
                let _ = writeln!(out, "{name} {}", fmt_f64(v));
            }
            let counters: [(&str, &str, u64); 3] = [
                (
                    "hearth_prefix_cache_queries_tokens_total",
                    "Prompt tokens looked up in the prefix cache.",
                    kv.prefix_query_tokens,
                ),
                (
                    "hearth_prefix_cache_hits_tokens_total",
                    "Prompt tokens whose KV came from the prefix cache.",
                    kv.prefix_hit_tokens,
                ),
                (
                    "hearth_preemptions_total",
                    "Sequences preempted because KV blocks ran out (recomputed later).",
                    kv.preemptions,
                ),
            ];
            for (name, help, v) in counters {
                family(&mut out, name, "counter", help);
                let _ = writeln!(out, "{name} {v}");
            }
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, values: &BTreeMap<String, u64>) {
    family(out, name, "counter", help);
    for (model, n) in values {
        let _ = writeln!(out, "{name}{{model=\"{}\"}} {n}", esc(model));
    }
}

fn histogram(out: &mut String, name: &str, help: &str, values: &BTreeMap<String, Histogram>) {
    family(out, name, "histogram", help);
    for (model, h) in values {
        let model = esc(model);
        let mut cumulative = 0;
        for (i, b) in h.bounds.iter().enumerate() {
            cumulative += h.counts[i];
            let _ = writeln!(
                out,
                "{name}_bucket{{model=\"{model}\",le=\"{}\"}} {cumulative}",
                fmt_f64(*b)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", fmt_f64(h.sum));
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", h.count);
    }
}

fn fmt_f64(v: f64) -> String {
    // Rust prints 1.0 as "1"; both are valid Prometheus floats, but keep a
    // decimal point so values read as floats.
    let s = format!("{v}");
    if s.contains(['.', 'e', 'N', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// Label value escaping per the exposition format: backslash, quote, newline.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.ttft("a\"b", Duration::from_millis(3));
        m.ttft("a\"b", Duration::from_millis(30));
        m.ttft("a\"b", Duration::from_secs(100));
        let text = m.render(BackendStats::default());
        assert!(text.contains(
            "hearth_time_to_first_token_seconds_bucket{model=\"a\\\"b\",le=\"0.001\"} 0\n"
        ));
        assert!(text.contains(
            "hearth_time_to_first_token_seconds_bucket{model=\"a\\\"b\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "hearth_time_to_first_token_seconds_bucket{model=\"a\\\"b\",le=\"0.04\"} 2\n"
        ));
        assert!(text.contains(
            "hearth_time_to_first_token_seconds_bucket{model=\"a\\\"b\",le=\"80.0\"} 2\n"
        ));
        assert!(text.contains(
            "hearth_time_to_first_token_seconds_bucket{model=\"a\\\"b\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("hearth_time_to_first_token_seconds_count{model=\"a\\\"b\"} 3\n"));
    }
}
