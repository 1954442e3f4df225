//! Limits shared by two "replicas" (two independent connections) through a real Redis
//! (started by scripts/redis.sh, which scripts/test.sh runs; the URL comes in
//! HEARTH_TEST_REDIS_URL).

use std::time::Duration;

use hearth_gateway::limits::{Ask, LimitKind, Limits, Scope};
use hearth_gateway::limits_redis::RedisLimiter;

fn url() -> Option<String> {
    let u = std::env::var("HEARTH_TEST_REDIS_URL")
        .ok()
        .filter(|s| !s.is_empty());
    if u.is_none() {
        eprintln!(
            "SKIPPED: HEARTH_TEST_REDIS_URL is not set (run `eval \"$(bash scripts/redis.sh)\"`)"
        );
    }
    u
}

/// Two replicas with a fresh key prefix each test, so reruns against one server start clean.
async fn replicas() -> Option<(RedisLimiter, RedisLimiter)> {
    let url = url()?;
    let prefix = format!("test-{}", uuid_like());
    let a = RedisLimiter::connect(&url, &prefix)
        .await
        .expect("connect a");
    let b = RedisLimiter::connect(&url, &prefix)
        .await
        .expect("connect b");
    Some((a, b))
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{t:x}-{}", std::process::id())
}

fn ask(l: Limits, prompt: u64, max: u64) -> Ask {
    Ask {
        scopes: vec![(Scope::Key("k".into()), l)],
        prompt_tokens: prompt,
        max_tokens: max,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpm_is_exact_across_two_replicas() {
    let Some((a, b)) = replicas().await else {
        return;
    };
    let l = Limits {
        rpm: Some(10),
        ..Default::default()
    };
    // 40 concurrent attempts, half through each replica: exactly 10 pass.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            match r.admit(&ask(l, 1, 1), 0).await.unwrap() {
                Ok(p) => {
                    drop(p);
                    true
                }
                Err(e) => {
                    assert_eq!(e.kind, LimitKind::RequestsPerMinute);
                    assert!(e.retry_after.unwrap() <= Duration::from_secs(60));
                    false
                }
            }
        }));
    }
    let mut passed = 0;
    for t in tasks {
        passed += t.await.unwrap() as usize;
    }
    assert_eq!(passed, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_and_tokens_are_released_and_reconciled() {
    let Some((a, b)) = replicas().await else {
        return;
    };
    let l = Limits {
        max_concurrent: Some(1),
        tpm: Some(1000),
        ..Default::default()
    };
    let mut p = a.admit(&ask(l, 100, 500), 0).await.unwrap().unwrap();
    assert_eq!(p.headers.remaining_tokens, Some(400));
    let e = b.admit(&ask(l, 1, 1), 0).await.unwrap().unwrap_err();
    assert_eq!(e.kind, LimitKind::Concurrency);
    // Cut after 20 generated tokens: billed 120 instead of the 600 reserved.
    p.record(100, 20);
    drop(p);
    // The release runs on a spawned task: wait for it.
    let mut ok = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(p) = b.admit(&ask(l, 100, 500), 0).await.unwrap() {
            ok = Some(p);
            break;
        }
    }
    let p2 = ok.expect("slot released");
    assert_eq!(p2.headers.remaining_tokens, Some(1000 - 120 - 600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_is_shared_and_clamps_max_tokens() {
    let Some((a, b)) = replicas().await else {
        return;
    };
    let l = Limits {
        monthly_tokens: Some(1000),
        ..Default::default()
    };
    let s = Scope::Key("k".into());
    assert!(a.needs_seed(&s, 7).await.unwrap());
    a.seed_month(&s, 7, 900).await.unwrap();
    // The second replica's seed does not overwrite the first.
    b.seed_month(&s, 7, 0).await.unwrap();
    assert!(!b.needs_seed(&s, 7).await.unwrap());
    let mut p = a.admit(&ask(l, 30, 500), 7).await.unwrap().unwrap();
    assert_eq!(p.max_tokens, 70);
    let e = b.admit(&ask(l, 1, 1), 7).await.unwrap().unwrap_err();
    assert_eq!(e.code(), "insufficient_quota");
    p.record(30, 10);
    drop(p);
    let mut got = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(p) = b.admit(&ask(l, 10, 500), 7).await.unwrap() {
            got = Some(p);
            break;
        }
    }
    // 900 + 40 billed: 60 left, so a 10-token prompt may generate 50.
    assert_eq!(got.expect("budget left").max_tokens, 50);
}

/// `explain` (GET /v1/limits) reads the shared counters back: after the same admissions and
/// releases, the Redis limiter (asked through the *other* replica) reports exactly what the
/// in-process `Limiter` reports — an independent implementation of the same rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_shared_counters_like_the_local_limiter() {
    use hearth_gateway::limits::Limiter;
    use std::time::Instant;
    let Some((a, b)) = replicas().await else {
        return;
    };
    let key = Limits {
        rpm: Some(5),
        tpm: Some(10_000),
        max_concurrent: Some(3),
        monthly_tokens: Some(50_000),
    };
    let team = Limits {
        rpm: Some(100),
        ..Default::default()
    };
    let scopes = vec![
        (Scope::Team("t".into()), team),
        (Scope::Key("k".into()), key),
    ];
    let ask = |prompt, max| Ask {
        scopes: scopes.clone(),
        prompt_tokens: prompt,
        max_tokens: max,
    };
    let local = Limiter::new();
    let month = 3;
    let (mut remote_permits, mut local_permits) = (Vec::new(), Vec::new());
    for (prompt, max) in [(100, 400), (30, 70), (7, 3)] {
        remote_permits.push(a.admit(&ask(prompt, max), month).await.unwrap().unwrap());
        local_permits.push(
            local
                .admit(&ask(prompt, max), Instant::now(), month)
                .unwrap(),
        );
    }
    let view = |rows: Vec<hearth_gateway::limits::Remaining>| {
        rows.into_iter()
            .map(|r| (r.scope.to_string(), r.kind, r.limit, r.remaining))
            .collect::<Vec<_>>()
    };
    let want = view(local.explain(&scopes, Instant::now(), month));
    assert_eq!(view(b.explain(&scopes, month).await.unwrap()), want);
    // Spot check of the numbers themselves: 3 of 5 requests, 610 tokens reserved, 3 running.
    assert!(
        want.contains(&("key 'k'".into(), LimitKind::RequestsPerMinute, 5, 2)),
        "{want:?}"
    );
    assert!(
        want.contains(&("key 'k'".into(), LimitKind::Concurrency, 3, 0)),
        "{want:?}"
    );
    assert!(
        want.contains(&("key 'k'".into(), LimitKind::MonthlyTokens, 50_000, 49_390)),
        "{want:?}"
    );
    // The first request ends after 20 tokens: its slot and unused reservation come back.
    for permits in [&mut remote_permits, &mut local_permits] {
        let mut p = permits.remove(0);
        p.record(100, 20);
        drop(p);
    }
    let want = view(local.explain(&scopes, Instant::now(), month));
    let mut got = Vec::new();
    for _ in 0..50 {
        // The remote release runs on a spawned task.
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = view(b.explain(&scopes, month).await.unwrap());
        if got == want {
            break;
        }
    }
    assert_eq!(got, want);
    assert!(
        want.contains(&("key 'k'".into(), LimitKind::Concurrency, 3, 1)),
        "{want:?}"
    );
}
