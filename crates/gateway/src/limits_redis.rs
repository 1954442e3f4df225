//! The same limits as [`crate::limits::Limiter`], kept in Redis so that several replicas share
//! them exactly (`--redis-url`).
//!
//! Exactness across replicas comes from doing a whole admission — check every scope, then
//! charge every scope or none — in one Lua script: Redis runs a script atomically, so two
//! replicas can never both take the last slot. The script reads Redis's own clock (`TIME`), so
//! replicas with skewed clocks still agree on the window. The data per scope (`PREFIX:SCOPE:…`):
//! - `req`: sorted set of admitted request ids scored by admission time (ms) — the rpm log;
//! - `tok`, `tokn`, `toksum`: the tpm log (ids by time), each id's charged tokens, their sum;
//! - `run`: running request ids scored by lease expiry: a replica that dies mid-request frees
//!   its concurrency slots when the lease (one hour) runs out instead of never;
//! - `res`, `m:MONTH:used`: tokens reserved by running requests, and billed per month.
//!
//! Release (when the request ends) is a second script, sent from a spawned task so dropping a
//! permit never blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::limits::{
    Ask, LimitKind, Limits, MonthIndex, Permit, RateHeaders, Refusal, Remaining, Scope,
};

/// How long a running request holds a concurrency slot if its replica never releases it.
const LEASE_MS: u64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    #[error("redis at {url}: {err}")]
    Connect { url: String, err: redis::RedisError },
    #[error("redis rate-limit script failed: {0}")]
    Script(#[from] redis::RedisError),
}

/// Rate limits and budgets shared through Redis.
#[derive(Clone)]
pub struct RedisLimiter {
    con: ConnectionManager,
    prefix: String,
    admit: Script,
    release: Script,
    explain: Script,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1]); local lease = tonumber(ARGV[2]); local id = ARGV[3]
local prompt = tonumber(ARGV[4]); local maxt = tonumber(ARGV[5]); local month = ARGV[6]
local n = tonumber(ARGV[7])
local want = prompt + maxt
local function lim(i)
  local b = 8 + i * 5
  return ARGV[b], tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3]), tonumber(ARGV[b+4])
end
for i = 0, n - 1 do
  local p, rpm, tpm, maxc, budget = lim(i)
  redis.call('ZREMRANGEBYSCORE', p..':req', '-inf', now - win)
  local old = redis.call('ZRANGEBYSCORE', p..':tok', '-inf', now - win)
  for _, m in ipairs(old) do
    local c = tonumber(redis.call('HGET', p..':tokn', m) or '0')
    redis.call('HDEL', p..':tokn', m)
    redis.call('DECRBY', p..':toksum', c)
  end
  redis.call('ZREMRANGEBYSCORE', p..':tok', '-inf', now - win)
  redis.call('ZREMRANGEBYSCORE', p..':run', '-inf', now)
  if maxc >= 0 and redis.call('ZCARD', p..':run') >= maxc then
    return {0, i, 3, maxc, 1000}
  end
  if rpm >= 0 and redis.call('ZCARD', p..':req') >= rpm then
    local first = redis.call('ZRANGE', p..':req', 0, 0, 'WITHSCORES')
    local wait = win
    if first[2] then wait = tonumber(first[2]) + win - now end
    return {0, i, 1, rpm, wait}
  end
  if tpm >= 0 then
    local need = math.min(want, tpm)
    local sum = tonumber(redis.call('GET', p..':toksum') or '0')
    if tpm == 0 or sum + need > tpm then
      local wait = win
      if tpm > 0 then
        local ents = redis.call('ZRANGE', p..':tok', 0, -1, 'WITHSCORES')
        local s = sum
        for j = 1, #ents, 2 do
          s = s - tonumber(redis.call('HGET', p..':tokn', ents[j]) or '0')
          if s + need <= tpm then wait = tonumber(ents[j+1]) + win - now; break end
        end
      end
      return {0, i, 2, tpm, wait}
    end
  end
  if budget >= 0 then
    local used = tonumber(redis.call('GET', p..':m:'..month..':used') or '0')
    local res = tonumber(redis.call('GET', p..':res') or '0')
    local left = budget - used - res
    if left < prompt + 1 then return {0, i, 4, budget, -1} end
    if left - prompt < maxt then maxt = left - prompt end
  end
end
local reserved = prompt + maxt
local out = {1, maxt}
for i = 0, n - 1 do
  local p, rpm, tpm, maxc, budget = lim(i)
  local rr, rreset, tr, treset = -1, 0, -1, 0
  if rpm >= 0 then
    redis.call('ZADD', p..':req', now, id)
    redis.call('PEXPIRE', p..':req', win)
    rr = rpm - redis.call('ZCARD', p..':req')
    local first = redis.call('ZRANGE', p..':req', 0, 0, 'WITHSCORES')
    rreset = tonumber(first[2]) + win - now
  end
  if tpm >= 0 then
    local c = math.min(reserved, tpm)
    redis.call('ZADD', p..':tok', now, id)
    redis.call('HSET', p..':tokn', id, c)
    local sum = redis.call('INCRBY', p..':toksum', c)
    for _, k in ipairs({':tok', ':tokn', ':toksum'}) do redis.call('PEXPIRE', p..k, win + lease) end
    tr = tpm - sum
    if tr < 0 then tr = 0 end
    local first = redis.call('ZRANGE', p..':tok', 0, 0, 'WITHSCORES')
    treset = tonumber(first[2]) + win - now
  end
  if maxc >= 0 then
    redis.call('ZADD', p..':run', now + lease, id)
    redis.call('PEXPIRE', p..':run', lease)
  end
  if budget >= 0 then redis.call('INCRBY', p..':res', reserved) end
  table.insert(out, rr); table.insert(out, rreset); table.insert(out, tr); table.insert(out, treset)
end
return out
"#;

const RELEASE: &str = r#"
local id = ARGV[1]; local used = tonumber(ARGV[2]); local reserved = tonumber(ARGV[3])
local month = ARGV[4]; local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  local b = 6 + i * 4
  local p, tpm, maxc, budget = ARGV[b], tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3])
  if maxc >= 0 then redis.call('ZREM', p..':run', id) end
  if tpm >= 0 then
    local old = redis.call('HGET', p..':tokn', id)
    if old then
      redis.call('HSET', p..':tokn', id, used)
      redis.call('INCRBY', p..':toksum', used - tonumber(old))
    end
  end
  if budget >= 0 then
    redis.call('DECRBY', p..':res', reserved)
    redis.call('INCRBY', p..':m:'..month..':used', used)
  end
end
return 1
"#;

/// What is used of each limit now, per scope, without changing anything: the same windows as
/// `ADMIT` (an entry expires when its score reaches now - window; a running lease when it
/// reaches now), read instead of pruned. Returns 4 numbers per scope: requests in the window,
/// tokens charged in the window, running requests, and billed + reserved tokens this month.
const EXPLAIN: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1]); local month = ARGV[2]; local n = tonumber(ARGV[3])
local out = {}
for i = 0, n - 1 do
  local p = ARGV[4 + i]
  local after = '(' .. tostring(now - win)
  local req = redis.call('ZCOUNT', p..':req', after, '+inf')
  local tok = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', p..':tok', after, '+inf')) do
    tok = tok + tonumber(redis.call('HGET', p..':tokn', m) or '0')
  end
  local run = redis.call('ZCOUNT', p..':run', '(' .. tostring(now), '+inf')
  local used = tonumber(redis.call('GET', p..':m:'..month..':used') or '0')
  local res = tonumber(redis.call('GET', p..':res') or '0')
  table.insert(out, req); table.insert(out, tok); table.insert(out, run)
  table.insert(out, used + res)
end
return out
"#;

fn opt(v: Option<u64>) -> i64 {
    v.map_or(-1, |n| n.min(i64::MAX as u64) as i64)
}

impl RedisLimiter {
    /// Connect (and reconnect on failure) to `url` (`redis://host:port[/db]`); keys are
    /// written under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RedisLimitError> {
        let err = |err| RedisLimitError::Connect {
            url: url.to_string(),
            err,
        };
        let client = redis::Client::open(url).map_err(err)?;
        let con = ConnectionManager::new(client).await.map_err(err)?;
        Ok(RedisLimiter {
            con,
            prefix: prefix.to_string(),
            admit: Script::new(ADMIT),
            release: Script::new(RELEASE),
            explain: Script::new(EXPLAIN),
        })
    }

    /// What remains of each limit for these scopes now, read from the shared counters (the
    /// same rows, in the same order, as [`crate::limits::Limiter::explain`]).
    pub async fn explain(
        &self,
        scopes: &[(Scope, Limits)],
        month: MonthIndex,
    ) -> Result<Vec<Remaining>, RedisLimitError> {
        let mut inv = self.explain.prepare_invoke();
        inv.arg(crate::limits::WINDOW.as_millis() as u64)
            .arg(month)
            .arg(scopes.len());
        for (scope, _) in scopes {
            inv.arg(self.key(scope));
        }
        let mut con = self.con.clone();
        let r: Vec<i64> = inv.invoke_async(&mut con).await?;
        let mut out = Vec::new();
        for (i, (scope, l)) in scopes.iter().enumerate() {
            let used = |j: usize| r.get(i * 4 + j).copied().unwrap_or(0).max(0) as u64;
            out.extend(Remaining::rows(
                scope,
                l,
                [used(0), used(1), used(2), used(3)],
            ));
        }
        Ok(out)
    }

    fn key(&self, scope: &Scope) -> String {
        match scope {
            Scope::Global => format!("{}:g", self.prefix),
            Scope::Team(t) => format!("{}:t:{t}", self.prefix),
            Scope::Key(k) => format!("{}:k:{k}", self.prefix),
        }
    }

    /// Set the tokens billed to `scope` in `month` from the usage store, unless a replica
    /// already did (SET NX): Redis's running total then wins.
    pub async fn seed_month(
        &self,
        scope: &Scope,
        month: MonthIndex,
        used: u64,
    ) -> Result<(), RedisLimitError> {
        let mut con = self.con.clone();
        let key = format!("{}:m:{month}:used", self.key(scope));
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(used)
            .arg("NX")
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// Whether `scope` has a month total in Redis yet.
    pub async fn needs_seed(
        &self,
        scope: &Scope,
        month: MonthIndex,
    ) -> Result<bool, RedisLimitError> {
        let mut con = self.con.clone();
        let key = format!("{}:m:{month}:used", self.key(scope));
        let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut con).await?;
        Ok(!exists)
    }

    /// Admit a request (or name the limit that refuses it), atomically over all its scopes.
    pub async fn admit(
        &self,
        ask: &Ask,
        month: MonthIndex,
    ) -> Result<Result<Permit, Refusal>, RedisLimitError> {
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let mut inv = self.admit.prepare_invoke();
        inv.arg(crate::limits::WINDOW.as_millis() as u64)
            .arg(LEASE_MS)
            .arg(&id)
            .arg(ask.prompt_tokens)
            .arg(ask.max_tokens)
            .arg(month)
            .arg(ask.scopes.len());
        for (scope, l) in &ask.scopes {
            inv.arg(self.key(scope))
                .arg(opt(l.rpm))
                .arg(opt(l.tpm))
                .arg(opt(l.max_concurrent))
                .arg(opt(l.monthly_tokens));
        }
        let mut con = self.con.clone();
        let r: Vec<i64> = inv.invoke_async(&mut con).await?;
        if r.first() != Some(&1) {
            let (i, kind, limit, wait) = (r[1] as usize, r[2], r[3] as u64, r[4]);
            let kind = match kind {
                1 => LimitKind::RequestsPerMinute,
                2 => LimitKind::TokensPerMinute,
                3 => LimitKind::Concurrency,
                _ => LimitKind::MonthlyTokens,
            };
            return Ok(Err(Refusal {
                scope: ask.scopes[i].0.clone(),
                kind,
                limit,
                retry_after: (wait >= 0).then(|| Duration::from_millis(wait as u64)),
            }));
        }
        let max_tokens = r[1] as u64;
        let mut headers = RateHeaders::default();
        for (j, (_, l)) in ask.scopes.iter().enumerate() {
            let b = 2 + j * 4;
            let (rr, rreset, tr, treset) = (r[b], r[b + 1], r[b + 2], r[b + 3]);
            if let Some(n) = l.rpm {
                let rem = rr.max(0) as u64;
                if headers.remaining_requests.is_none_or(|x| rem < x) {
                    headers.limit_requests = Some(n);
                    headers.remaining_requests = Some(rem);
                    headers.reset_requests = Some(Duration::from_millis(rreset.max(0) as u64));
                }
            }
            if let Some(n) = l.tpm {
                let rem = tr.max(0) as u64;
                if headers.remaining_tokens.is_none_or(|x| rem < x) {
                    headers.limit_tokens = Some(n);
                    headers.remaining_tokens = Some(rem);
                    headers.reset_tokens = Some(Duration::from_millis(treset.max(0) as u64));
                }
            }
        }
        let reserved = ask.prompt_tokens + max_tokens;
        let scopes: Vec<(String, Limits)> =
            ask.scopes.iter().map(|(s, l)| (self.key(s), *l)).collect();
        let this = self.clone();
        let release = Box::new(move |used: u64| {
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                tracing::warn!("rate-limit release lost: no async runtime");
                return;
            };
            rt.spawn(async move {
                let mut inv = this.release.prepare_invoke();
                inv.arg(&id)
                    .arg(used)
                    .arg(reserved)
                    .arg(month)
                    .arg(scopes.len());
                for (k, l) in &scopes {
                    inv.arg(k)
                        .arg(opt(l.tpm))
                        .arg(opt(l.max_concurrent))
                        .arg(opt(l.monthly_tokens));
                }
                let mut con = this.con.clone();
                if let Err(e) = inv.invoke_async::<i64>(&mut con).await {
                    tracing::warn!("rate-limit release failed: {e}");
                }
            });
        });
        Ok(Ok(Permit::remote(
            0,
            ask.prompt_tokens,
            max_tokens,
            headers,
            release,
        )))
    }
}
