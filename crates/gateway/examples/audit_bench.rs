//! Audit and usage queries past ten million records (issue 7): fills a fresh store with N audit
//! records through `Store::append_audit` (the server's own batched, hash-chained write path,
//! which also maintains the daily usage rollups), then times the queries the admin API, the UI
//! and admission run, each the median of several runs.
//!
//!   cargo run --release -p hearth-gateway --example audit_bench -- \
//!       [--records 10000000] [--db sqlite:///tmp/audit-bench.db | postgres://...] [--reuse]
//!
//! Records are spread over the 90 days before now: 200 keys in 5 teams, 4 models, 1 in 50
//! refused with 429; tokens vary. `--reuse` keeps an existing database of that size (filling
//! takes minutes) and only runs the queries.

use hearth_gateway::limits::Scope;
use hearth_gateway::store::{AuditFilter, AuditRecord, GroupBy, Store, UsageFilter};
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MODELS: [&str; 4] = ["gpt-oss-20b", "qwen3-8b", "glm4-9b", "smollm2"];

fn record(rng: &mut Rng, i: u64, n: u64, t0: i64, span: i64) -> AuditRecord {
    let key = rng.below(200);
    let status = if rng.below(50) == 0 { 429 } else { 200 };
    AuditRecord {
        // Increasing in i, as a live server appends them.
        time: t0 + (i as i64 * span) / n as i64,
        request_id: format!("chatcmpl-{i:016x}"),
        key_id: Some(format!("k{key:03}")),
        user: Some(format!("user{:02}", key % 40)),
        team: Some(format!("team{}", key % 5)),
        role: Some("user".into()),
        client_addr: Some(format!("10.0.{}.{}", key / 200, key % 250)),
        route: "/v1/chat/completions".into(),
        model: Some(MODELS[rng.below(4) as usize].into()),
        status,
        latency_ms: 50 + rng.below(5000),
        prompt_tokens: if status == 200 {
            20 + rng.below(2000)
        } else {
            0
        },
        completion_tokens: if status == 200 { rng.below(800) } else { 0 },
        guardrails: None,
        // `--audit-bodies sha256`, the default: a 64-hex digest per body.
        request_body: Some(format!(
            "{:016x}{:016x}{:016x}{:016x}",
            rng.next(),
            rng.next(),
            rng.next(),
            rng.next()
        )),
        response_body: Some(format!(
            "{:016x}{:016x}{:016x}{:016x}",
            rng.next(),
            rng.next(),
            rng.next(),
            rng.next()
        )),
    }
}

async fn time<T, F: std::future::Future<Output = T>>(
    name: &str,
    runs: usize,
    mut f: impl FnMut() -> F,
) -> T {
    let mut ms = Vec::new();
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        out = Some(f().await);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "| {name} | {:.2} | {:.2} |",
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
    out.expect("runs > 0")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let n: u64 = arg("--records").map_or(10_000_000, |s| s.parse().expect("--records N"));
    let db = arg("--db").unwrap_or_else(|| {
        let p = std::env::temp_dir().join("hearth-audit-bench.db");
        format!("sqlite://{}", p.display())
    });
    let reuse = args.iter().any(|a| a == "--reuse");
    if !reuse {
        if let Some(p) = db.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{p}{suffix}"));
            }
        }
    }
    let store = Store::open(&db).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let span = 90 * 86_400;
    let t0 = now - span;
    if !reuse {
        let mut rng = Rng(0x5eed);
        let batch = 10_000u64;
        let start = Instant::now();
        let mut i = 0;
        while i < n {
            let recs: Vec<AuditRecord> = (i..(i + batch).min(n))
                .map(|j| record(&mut rng, j, n, t0, span))
                .collect();
            store.append_audit(&recs).await?;
            i += recs.len() as u64;
            if i % 1_000_000 == 0 {
                eprintln!("{i} records, {:.0} s", start.elapsed().as_secs_f64());
            }
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "filled {n} records in {s:.0} s ({:.0} records/s)",
            n as f64 / s
        );
    }
    if let Some(p) = db.strip_prefix("sqlite://") {
        let size: u64 = ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{p}{s}")).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "database: {db}, {:.2} GiB",
            size as f64 / (1u64 << 30) as f64
        );
    }
    let day = now.div_euclid(86_400);
    println!("\n| query ({n} records) | median ms | max ms |\n|---|---|---|");
    let usage = |group_by, since: i64, key: Option<&str>| UsageFilter {
        group_by: Some(group_by),
        since_day: Some(day - since),
        until_day: Some(day + 1),
        key: key.map(str::to_string),
        ..Default::default()
    };
    let f = usage(GroupBy::Day, 30, None);
    let rows = time("usage by day, last 30 days (Usage page)", 5, || {
        store.usage_filtered(&f)
    })
    .await?;
    assert!(rows.len() >= 30, "{} days", rows.len());
    let f = usage(GroupBy::Key, 90, None);
    time("usage by key, last 90 days", 5, || store.usage_filtered(&f)).await?;
    let f = usage(GroupBy::Model, 30, Some("k042"));
    time(
        "usage by model for one key, last 30 days (a user's own)",
        5,
        || store.usage_filtered(&f),
    )
    .await?;
    let month = {
        let (y, m, _) = hearth_gateway::limits::civil_from_days(day);
        y * 12 + (m as i64 - 1)
    };
    let (k, t) = (Scope::Key("k042".into()), Scope::Team("team3".into()));
    time(
        "monthly tokens of a key (admission's budget seed)",
        9,
        || store.monthly_tokens_used(&k, month),
    )
    .await?;
    time("monthly tokens of a team", 9, || {
        store.monthly_tokens_used(&t, month)
    })
    .await?;
    let last_day = AuditFilter {
        since: Some(now - 86_400),
        until: Some(now + 1),
        ..Default::default()
    };
    let recs = time("audit: first 100 of the last day (Audit page)", 5, || {
        store.query_audit(&last_day, 0, 100)
    })
    .await?;
    assert_eq!(recs.len(), 100);
    let by_key = AuditFilter {
        key: Some("k042".into()),
        since: Some(now - 7 * 86_400),
        until: Some(now + 1),
        ..Default::default()
    };
    time("audit: one key, last 7 days, 100 records", 5, || {
        store.query_audit(&by_key, 0, 100)
    })
    .await?;
    let by_req = AuditFilter {
        request_id: Some(format!("chatcmpl-{:016x}", n / 2)),
        ..Default::default()
    };
    let one = time("audit: one request id", 9, || {
        store.query_audit(&by_req, 0, 10)
    })
    .await?;
    assert_eq!(one.len(), 1);
    let refused = AuditFilter {
        model: Some("glm4-9b".into()),
        status: Some(429),
        since: Some(now - 86_400),
        until: Some(now + 1),
        ..Default::default()
    };
    time("audit: model + status 429, last day, 100", 5, || {
        store.query_audit(&refused, 0, 100)
    })
    .await?;
    time("audit: export page of 10,000 (last day)", 3, || {
        store.query_audit(&last_day, 0, 10_000)
    })
    .await?;
    let v = time("verify the whole chain (hearth audit verify)", 1, || {
        store.verify_audit()
    })
    .await?;
    println!("\nverify: {v:?}");
    Ok(())
}
