//! Exact rate limits and monthly token budgets, per key, per team and global.
//!
//! Why sliding-window logs rather than token buckets or fixed windows: the issue asks for
//! limits that are *exact* ("with `--rpm 10`, 10 requests pass in a minute and the 11th does
//! not"). A fixed one-minute window lets 2×rpm through across a window edge, and a token
//! bucket admits a burst and then a steady trickle; only a log of admission times tells, at any
//! instant, how many requests fall in the last 60 s. The logs are bounded by the limit itself
//! (at most `rpm` entries; at most one entry per admitted request for tokens), so memory is
//! small.
//!
//! Tokens per minute count `prompt_tokens + max_tokens` at admission (OpenAI reserves the
//! same way) and are reconciled with what was really generated when the request ends, so an
//! interrupted stream is billed what it produced and a cancelled request gives its reservation
//! back. Monthly budgets do the same against `used + in-flight reservations`, and clamp a
//! request's `max_tokens` to what is left, so a streamed reply can never overshoot a budget.
//!
//! Every admission checks every applicable scope under one lock and either charges all of them
//! or none, so two worker threads can never both take the last slot.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The length of the rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Limits that apply to one scope (`None` = unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    pub tpm: Option<u64>,
    /// Requests running at once.
    pub max_concurrent: Option<u64>,
    /// Tokens per calendar month (UTC).
    pub monthly_tokens: Option<u64>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

/// Who a limit belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Team(String),
    Key(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => write!(f, "global"),
            Scope::Team(t) => write!(f, "team '{t}'"),
            Scope::Key(k) => write!(f, "key '{k}'"),
        }
    }
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    RequestsPerMinute,
    TokensPerMinute,
    Concurrency,
    MonthlyTokens,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::RequestsPerMinute => "requests per minute",
            LimitKind::TokensPerMinute => "tokens per minute",
            LimitKind::Concurrency => "concurrent requests",
            LimitKind::MonthlyTokens => "monthly token budget",
        })
    }
}

/// A month as `year * 12 + (month - 1)`, so consecutive months are consecutive numbers.
pub type MonthIndex = i64;

/// What a request asks for.
#[derive(Clone, Debug)]
pub struct Ask {
    /// Every scope that applies, with its limits (scopes with no limits may be left out).
    pub scopes: Vec<(Scope, Limits)>,
    pub prompt_tokens: u64,
    /// The most tokens the request may generate (reserved until it ends).
    pub max_tokens: u64,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub scope: Scope,
    pub kind: LimitKind,
    pub limit: u64,
    /// When trying again can succeed (`None` for budgets: not before next month, or a raise).
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// The OpenAI error code: `insufficient_quota` for budgets, `rate_limit_exceeded` otherwise.
    pub fn code(&self) -> &'static str {
        match self.kind {
            LimitKind::MonthlyTokens => "insufficient_quota",
            _ => "rate_limit_exceeded",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            LimitKind::MonthlyTokens => write!(
                f,
                "The {} of {} for {} is used up; it renews at the start of next month (UTC).",
                self.kind, self.limit, self.scope
            ),
            LimitKind::TokensPerMinute => write!(
                f,
                "Rate limit reached for {}: {} {} (prompt tokens plus max_tokens are reserved). Try again in {}.",
                self.scope,
                self.limit,
                self.kind,
                format_reset(self.retry_after.unwrap_or_default())
            ),
            _ => write!(
                f,
                "Rate limit reached for {}: {} {}. Try again in {}.",
                self.scope,
                self.limit,
                self.kind,
                format_reset(self.retry_after.unwrap_or_default())
            ),
        }
    }
}

/// The `x-ratelimit-*` header values of the tightest scope that has each limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub reset_requests: Option<Duration>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub reset_tokens: Option<Duration>,
}

impl RateHeaders {
    /// Header name/value pairs as OpenAI sends them (only for limits that exist).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let (Some(l), Some(r), Some(t)) = (
            self.limit_requests,
            self.remaining_requests,
            self.reset_requests,
        ) {
            v.push(("x-ratelimit-limit-requests", l.to_string()));
            v.push(("x-ratelimit-remaining-requests", r.to_string()));
            v.push(("x-ratelimit-reset-requests", format_reset(t)));
        }
        if let (Some(l), Some(r), Some(t)) =
            (self.limit_tokens, self.remaining_tokens, self.reset_tokens)
        {
            v.push(("x-ratelimit-limit-tokens", l.to_string()));
            v.push(("x-ratelimit-remaining-tokens", r.to_string()));
            v.push(("x-ratelimit-reset-tokens", format_reset(t)));
        }
        v
    }
}

/// A duration the way OpenAI's `x-ratelimit-reset-*` headers write it: `6m0s`, `1s`,
/// `12ms`, `1h2m3s`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    // Round up so a client that waits this long is not refused again.
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[derive(Default)]
struct Bucket {
    /// Admission times in the last [`WINDOW`] (at most `rpm` of them).
    requests: VecDeque<Instant>,
    /// (admission time, permit id, tokens charged) in the last [`WINDOW`].
    tokens: VecDeque<(Instant, u64, u64)>,
    tokens_in_window: u64,
    running: u64,
    month: MonthIndex,
    /// Tokens billed this month (committed), and reserved by requests still running.
    month_used: u64,
    month_reserved: u64,
    /// Whether `month_used` was seeded from the store for `month`.
    seeded: bool,
}

impl Bucket {
    fn expire(&mut self, now: Instant) {
        while let Some(&t) = self.requests.front() {
            if now.saturating_duration_since(t) >= WINDOW {
                self.requests.pop_front();
            } else {
                break;
            }
        }
        while let Some(&(t, _, n)) = self.tokens.front() {
            if now.saturating_duration_since(t) >= WINDOW {
                self.tokens_in_window -= n;
                self.tokens.pop_front();
            } else {
                break;
            }
        }
    }

    fn roll_month(&mut self, month: MonthIndex) {
        if self.month != month {
            self.month = month;
            self.month_used = 0;
            self.seeded = false;
        }
    }

    /// How long until `need` more tokens fit under `limit`.
    fn tokens_free_in(&self, now: Instant, limit: u64, need: u64) -> Duration {
        let mut in_window = self.tokens_in_window;
        for &(t, _, n) in &self.tokens {
            if in_window + need <= limit {
                break;
            }
            in_window -= n;
            if in_window + need <= limit {
                return (t + WINDOW).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }
}

struct Charge {
    scope: Scope,
    /// Tokens charged to the tpm window (prompt + reserved completion).
    tpm_charged: bool,
    /// Tokens reserved against the monthly budget.
    month_reserved: u64,
}

#[derive(Default)]
struct Inner {
    buckets: HashMap<Scope, Bucket>,
    next_id: u64,
}

/// The in-process limiter: exact across threads (one lock per admission). Replicas that
/// must share limits need a shared store (Redis); that is not built yet.
#[derive(Clone, Default)]
pub struct Limiter {
    inner: Arc<Mutex<Inner>>,
}

/// Proof of admission. Tell it the usage as it grows ([`Permit::record`]); dropping it ends
/// the request: the concurrency slot is freed and the reservations are replaced by the usage
/// last recorded (so a cancelled or interrupted request pays for what it generated).
pub struct Permit {
    release: Release,
    id: u64,
    used_total: u64,
    /// `max_tokens` after budget clamping: the request must not generate more.
    pub max_tokens: u64,
    pub headers: RateHeaders,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("id", &self.id)
            .field("max_tokens", &self.max_tokens)
            .field("used", &self.used_total)
            .finish()
    }
}

/// How a permit gives back what it took.
enum Release {
    Local {
        limiter: Limiter,
        charges: Vec<Charge>,
    },
    /// A shared limiter (Redis): called once with the tokens to bill.
    Remote(Option<Box<dyn FnOnce(u64) + Send>>),
}

impl Permit {
    /// A permit of a limiter outside this process: `release` is called once, with the tokens
    /// to bill, when the permit is dropped.
    pub fn remote(
        id: u64,
        prompt_tokens: u64,
        max_tokens: u64,
        headers: RateHeaders,
        release: Box<dyn FnOnce(u64) + Send>,
    ) -> Self {
        Permit {
            release: Release::Remote(Some(release)),
            id,
            used_total: prompt_tokens,
            max_tokens,
            headers,
        }
    }

    /// The tokens used so far (prompt + completion): what the request is billed if it ends now.
    pub fn record(&mut self, prompt_tokens: u64, completion_tokens: u64) {
        self.used_total = prompt_tokens + completion_tokens;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (limiter, charges) = match &mut self.release {
            Release::Remote(f) => {
                if let Some(f) = f.take() {
                    f(self.used_total);
                }
                return;
            }
            Release::Local { limiter, charges } => (limiter.clone(), std::mem::take(charges)),
        };
        let mut inner = limiter.inner.lock().unwrap_or_else(|p| p.into_inner());
        for c in charges {
            let Some(b) = inner.buckets.get_mut(&c.scope) else {
                continue;
            };
            b.running = b.running.saturating_sub(1);
            if c.tpm_charged {
                // The entry may have aged out of the window already; then there is nothing to
                // correct (it no longer counts).
                if let Ok(i) = b.tokens.binary_search_by_key(&self.id, |e| e.1) {
                    let old = b.tokens[i].2;
                    b.tokens[i].2 = self.used_total;
                    b.tokens_in_window = b.tokens_in_window - old + self.used_total;
                }
            }
            // Billed to the month the request ends in, as the usage store records it.
            b.month_reserved = b.month_reserved.saturating_sub(c.month_reserved);
            b.month_used += self.used_total;
        }
    }
}

impl Limiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `scope`'s month usage must be loaded from the store before admitting (only for
    /// scopes with a monthly budget). Call [`Limiter::seed_month`] with the stored total.
    pub fn needs_seed(&self, scope: &Scope, month: MonthIndex) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.buckets.get(scope) {
            Some(b) => !(b.seeded && b.month == month),
            None => true,
        }
    }

    /// Set the tokens already billed to `scope` this month (from the usage store), once: later
    /// calls for the same month are ignored so in-process billing is not overwritten.
    pub fn seed_month(&self, scope: &Scope, month: MonthIndex, used: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let b = inner.buckets.entry(scope.clone()).or_default();
        b.roll_month(month);
        if !b.seeded {
            b.month_used += used;
            b.seeded = true;
        }
    }

    /// Admit a request or say which limit refuses it. `month` is the current UTC month.
    pub fn admit(&self, ask: &Ask, now: Instant, month: MonthIndex) -> Result<Permit, Refusal> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let want = ask.prompt_tokens + ask.max_tokens;
        let mut max_tokens = ask.max_tokens;
        // Pass 1: check everything, charge nothing.
        for (scope, lim) in &ask.scopes {
            let b = inner.buckets.entry(scope.clone()).or_default();
            b.expire(now);
            b.roll_month(month);
            let refuse = |kind, limit, retry_after| Refusal {
                scope: scope.clone(),
                kind,
                limit,
                retry_after,
            };
            if let Some(n) = lim.max_concurrent {
                if b.running >= n {
                    return Err(refuse(
                        LimitKind::Concurrency,
                        n,
                        Some(Duration::from_secs(1)),
                    ));
                }
            }
            if let Some(n) = lim.rpm {
                if b.requests.len() as u64 >= n {
                    let wait = match b.requests.front() {
                        Some(&t) if n > 0 => (t + WINDOW).saturating_duration_since(now),
                        _ => WINDOW,
                    };
                    return Err(refuse(LimitKind::RequestsPerMinute, n, Some(wait)));
                }
            }
            if let Some(n) = lim.tpm {
                // A request larger than the whole limit is charged the whole limit: it passes
                // only into an empty window instead of never.
                let need = want.min(n);
                if n == 0 || b.tokens_in_window + need > n {
                    let wait = if n == 0 {
                        WINDOW
                    } else {
                        b.tokens_free_in(now, n, need)
                    };
                    return Err(refuse(LimitKind::TokensPerMinute, n, Some(wait)));
                }
            }
            if let Some(n) = lim.monthly_tokens {
                let left = n.saturating_sub(b.month_used + b.month_reserved);
                // At least the prompt and one generated token must fit.
                if left < ask.prompt_tokens + 1 {
                    return Err(refuse(LimitKind::MonthlyTokens, n, None));
                }
                max_tokens = max_tokens.min(left - ask.prompt_tokens);
            }
        }
        // Pass 2: charge every scope.
        inner.next_id += 1;
        let id = inner.next_id;
        let reserved = ask.prompt_tokens + max_tokens;
        let mut charges = Vec::with_capacity(ask.scopes.len());
        let mut headers = RateHeaders::default();
        for (scope, lim) in &ask.scopes {
            let b = inner.buckets.get_mut(scope).expect("created in pass 1");
            b.running += 1;
            b.requests.push_back(now);
            let tpm_charged = lim.tpm.is_some();
            if let Some(n) = lim.tpm {
                let c = reserved.min(n);
                b.tokens.push_back((now, id, c));
                b.tokens_in_window += c;
            } else {
                // Keep the log bounded for scopes without a tpm limit.
                b.tokens.clear();
                b.tokens_in_window = 0;
            }
            if lim.rpm.is_none() {
                b.requests.clear();
            }
            let month_reserved = if lim.monthly_tokens.is_some() {
                reserved
            } else {
                0
            };
            b.month_reserved += month_reserved;
            if let Some(n) = lim.rpm {
                let remaining = n.saturating_sub(b.requests.len() as u64);
                if headers.remaining_requests.is_none_or(|r| remaining < r) {
                    headers.limit_requests = Some(n);
                    headers.remaining_requests = Some(remaining);
                    headers.reset_requests = Some(match b.requests.front() {
                        Some(&t) => (t + WINDOW).saturating_duration_since(now),
                        None => Duration::ZERO,
                    });
                }
            }
            if let Some(n) = lim.tpm {
                let remaining = n.saturating_sub(b.tokens_in_window);
                if headers.remaining_tokens.is_none_or(|r| remaining < r) {
                    headers.limit_tokens = Some(n);
                    headers.remaining_tokens = Some(remaining);
                    headers.reset_tokens = Some(match b.tokens.front() {
                        Some(&(t, _, _)) => (t + WINDOW).saturating_duration_since(now),
                        None => Duration::ZERO,
                    });
                }
            }
            charges.push(Charge {
                scope: scope.clone(),
                tpm_charged,
                month_reserved,
            });
        }
        drop(inner);
        Ok(Permit {
            release: Release::Local {
                limiter: self.clone(),
                charges,
            },
            id,
            used_total: ask.prompt_tokens,
            max_tokens,
            headers,
        })
    }

    /// What remains of each limit for these scopes now (for the explain endpoint).
    pub fn explain(
        &self,
        scopes: &[(Scope, Limits)],
        now: Instant,
        month: MonthIndex,
    ) -> Vec<Remaining> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (scope, lim) in scopes {
            let b = inner.buckets.entry(scope.clone()).or_default();
            b.expire(now);
            b.roll_month(month);
            let used = [
                b.requests.len() as u64,
                b.tokens_in_window,
                b.running,
                b.month_used + b.month_reserved,
            ];
            out.extend(Remaining::rows(scope, lim, used));
        }
        out
    }
}

impl Remaining {
    /// The explain rows of one scope: each limit it has (requests per minute, tokens per
    /// minute, concurrency, monthly tokens, in that order) with what `used` (in the same
    /// order) leaves of it. Shared by the in-process and the Redis limiter.
    pub fn rows(scope: &Scope, l: &Limits, used: [u64; 4]) -> impl Iterator<Item = Remaining> {
        let scope = scope.clone();
        [
            (LimitKind::RequestsPerMinute, l.rpm),
            (LimitKind::TokensPerMinute, l.tpm),
            (LimitKind::Concurrency, l.max_concurrent),
            (LimitKind::MonthlyTokens, l.monthly_tokens),
        ]
        .into_iter()
        .zip(used)
        .filter_map(move |((kind, limit), used)| {
            limit.map(|limit| Remaining {
                scope: scope.clone(),
                kind,
                limit,
                remaining: limit.saturating_sub(used),
            })
        })
    }
}

/// One line of [`Limiter::explain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remaining {
    pub scope: Scope,
    pub kind: LimitKind,
    pub limit: u64,
    pub remaining: u64,
}

/// The UTC month index of a UNIX time in seconds (proleptic Gregorian calendar).
pub fn month_of_unix(secs: i64) -> MonthIndex {
    let (y, m, _) = civil_from_days(secs.div_euclid(86_400));
    y * 12 + (m as i64 - 1)
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`
/// (http://howardhinnant.github.io/date_algorithms.html), exact for the whole i64 day range
/// we care about.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(l: Limits) -> Vec<(Scope, Limits)> {
        vec![(Scope::Key("k1".into()), l)]
    }

    fn ask(scopes: Vec<(Scope, Limits)>, prompt: u64, max: u64) -> Ask {
        Ask {
            scopes,
            prompt_tokens: prompt,
            max_tokens: max,
        }
    }

    #[test]
    fn rpm_is_exact_over_a_sliding_minute() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let lim = Limits {
            rpm: Some(10),
            ..Default::default()
        };
        let mut permits = Vec::new();
        for i in 0..10 {
            let now = t0 + Duration::from_secs(i * 5); // 0..45 s
            permits.push(l.admit(&ask(key(lim), 1, 1), now, 0).expect("within limit"));
        }
        let r = l
            .admit(&ask(key(lim), 1, 1), t0 + Duration::from_secs(59), 0)
            .unwrap_err();
        assert_eq!(r.kind, LimitKind::RequestsPerMinute);
        assert_eq!(r.code(), "rate_limit_exceeded");
        // The first admission (t0) leaves the window at t0 + 60 s: 1 s after the refusal.
        assert_eq!(r.retry_after, Some(Duration::from_secs(1)));
        assert!(r.to_string().contains("key 'k1'"), "{r}");
        // Exactly at t0 + 60 s one slot is free again, and only one.
        let t60 = t0 + Duration::from_secs(60);
        permits.push(l.admit(&ask(key(lim), 1, 1), t60, 0).unwrap());
        assert!(l.admit(&ask(key(lim), 1, 1), t60, 0).is_err());
    }

    #[test]
    fn rpm_exact_under_many_threads() {
        let l = Limiter::new();
        let now = Instant::now();
        let lim = Limits {
            rpm: Some(10),
            ..Default::default()
        };
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| l.admit(&ask(key(lim), 1, 1), now, 0).is_ok())
                        .count()
                })
            })
            .collect();
        let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn concurrency_slot_freed_on_drop() {
        let l = Limiter::new();
        let now = Instant::now();
        let lim = Limits {
            max_concurrent: Some(2),
            ..Default::default()
        };
        let a = l.admit(&ask(key(lim), 1, 1), now, 0).unwrap();
        let _b = l.admit(&ask(key(lim), 1, 1), now, 0).unwrap();
        let r = l.admit(&ask(key(lim), 1, 1), now, 0).unwrap_err();
        assert_eq!(r.kind, LimitKind::Concurrency);
        drop(a);
        assert!(l.admit(&ask(key(lim), 1, 1), now, 0).is_ok());
    }

    #[test]
    fn tpm_reserves_max_tokens_and_reconciles_with_actual_use() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let lim = Limits {
            tpm: Some(1000),
            ..Default::default()
        };
        let mut p = l.admit(&ask(key(lim), 100, 500), t0, 0).unwrap();
        assert_eq!(p.headers.remaining_tokens, Some(400));
        // 600 reserved: another 100 + 500 does not fit.
        let r = l.admit(&ask(key(lim), 100, 500), t0, 0).unwrap_err();
        assert_eq!(r.kind, LimitKind::TokensPerMinute);
        assert_eq!(r.retry_after, Some(WINDOW));
        // The stream is cut after 20 tokens: billed 120, not 600.
        p.record(100, 20);
        drop(p);
        let p2 = l.admit(&ask(key(lim), 100, 500), t0, 0).unwrap();
        assert_eq!(p2.headers.remaining_tokens, Some(1000 - 120 - 600));
        // A request larger than the limit passes into an empty window only.
        drop(p2);
        let t1 = t0 + WINDOW;
        let big = l.admit(&ask(key(lim), 10, 5000), t1, 0).unwrap();
        assert_eq!(big.headers.remaining_tokens, Some(0));
    }

    #[test]
    fn budget_clamps_max_tokens_and_bills_actual_generation() {
        let l = Limiter::new();
        let now = Instant::now();
        let lim = Limits {
            monthly_tokens: Some(1000),
            ..Default::default()
        };
        let s = Scope::Key("k1".into());
        assert!(l.needs_seed(&s, 5));
        l.seed_month(&s, 5, 900);
        assert!(!l.needs_seed(&s, 5));
        // 100 left: a 30-token prompt may generate at most 70.
        let mut p = l.admit(&ask(key(lim), 30, 500), now, 5).unwrap();
        assert_eq!(p.max_tokens, 70);
        // While it runs, its reservation counts: nothing else fits.
        let r = l.admit(&ask(key(lim), 1, 1), now, 5).unwrap_err();
        assert_eq!(r.code(), "insufficient_quota");
        assert_eq!(r.retry_after, None);
        p.record(30, 10);
        drop(p);
        // Billed 40: 60 left.
        let p = l.admit(&ask(key(lim), 10, 500), now, 5).unwrap();
        assert_eq!(p.max_tokens, 50);
        drop(p); // billed 10 (the prompt only)
                 // A new month starts from the store's total (none).
        let p = l.admit(&ask(key(lim), 10, 5000), now, 6).unwrap();
        assert_eq!(p.max_tokens, 990);
    }

    #[test]
    fn all_or_nothing_across_scopes() {
        let l = Limiter::new();
        let now = Instant::now();
        let team = (
            Scope::Team("t".into()),
            Limits {
                rpm: Some(1),
                ..Default::default()
            },
        );
        let k1 = (
            Scope::Key("a".into()),
            Limits {
                rpm: Some(5),
                ..Default::default()
            },
        );
        let k2 = (
            Scope::Key("b".into()),
            Limits {
                rpm: Some(5),
                ..Default::default()
            },
        );
        let _p = l
            .admit(&ask(vec![k1.clone(), team.clone()], 1, 1), now, 0)
            .unwrap();
        let r = l
            .admit(&ask(vec![k2.clone(), team.clone()], 1, 1), now, 0)
            .unwrap_err();
        assert_eq!(r.scope, Scope::Team("t".into()));
        // The refused request charged nothing to key b.
        let e = l.explain(&[k2], now, 0);
        assert_eq!(e[0].remaining, 5);
    }

    #[test]
    fn reset_durations_are_written_like_openai() {
        assert_eq!(format_reset(Duration::from_millis(12)), "12ms");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_reset(Duration::from_millis(59_001)), "1m0s");
        assert_eq!(format_reset(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn months_from_unix_time() {
        // Day and second numbers from Python's datetime: 2000-02-29 is day 11016,
        // 2026-11-23T23:59:59Z is 1795478399, 2026-12-01T00:00:00Z is 1796083200.
        assert_eq!(month_of_unix(0), 1970 * 12);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(month_of_unix(1_795_478_399), 2026 * 12 + 10);
        assert_eq!(month_of_unix(1_796_083_200), 2026 * 12 + 11);
        assert_eq!(month_of_unix(1_796_083_199), 2026 * 12 + 10);
    }
}
