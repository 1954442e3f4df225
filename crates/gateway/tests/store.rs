//! The store against SQLite (a temporary file) and, when HEARTH_TEST_POSTGRES_URL is set (by
//! scripts/test.sh via scripts/postgres.sh), the same checks against a real PostgreSQL.

use hearth_gateway::limits::{Limits, Scope};
use hearth_gateway::store::{
    AuditFilter, AuditRecord, AuditSink, CompareRun, Conversation, ConversationPatch, GroupBy,
    Message, NewKey, Role, Store, Team, UiSession, UsageFilter, User, Verdict,
};

fn temp_sqlite() -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "hearth-store-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let path = dir.join("hearth.db");
    (format!("sqlite://{}", path.display()), path)
}

/// The tests share one PostgreSQL database: they take turns.
static PG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn stores() -> (Vec<(String, Store)>, tokio::sync::MutexGuard<'static, ()>) {
    let guard = PG.lock().await;
    let (url, _) = temp_sqlite();
    let mut v = vec![(
        "sqlite".to_string(),
        Store::open(&url).await.expect("open sqlite"),
    )];
    match std::env::var("HEARTH_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty()) {
        Some(pg) => {
            let s = Store::open(&pg).await.expect("open postgres");
            // Each test run starts from empty tables.
            for t in [
                "audit_log", "audit_checkpoint", "usage_daily", "api_keys", "users", "teams",
                "ui_sessions", "conversations", "messages", "compare_runs",
            ] {
                s.execute_raw(&format!("DELETE FROM {t}")).await.unwrap();
            }
            v.push(("postgres".to_string(), s));
        }
        None => eprintln!(
            "SKIPPED (postgres): HEARTH_TEST_POSTGRES_URL is not set; run `eval \"$(bash scripts/postgres.sh)\"`"
        ),
    }
    (v, guard)
}

fn rec(i: u64, key: &str) -> AuditRecord {
    AuditRecord {
        time: 1_795_478_400 + i as i64, // 2026-11-24T00:00:00Z + i s
        request_id: format!("req_{i}"),
        key_id: Some(key.into()),
        user: Some("alice".into()),
        team: Some("ops".into()),
        role: Some("user".into()),
        route: "POST /v1/chat/completions".into(),
        model: Some("smollm2".into()),
        status: 200,
        latency_ms: 10 + i,
        prompt_tokens: 10,
        completion_tokens: i,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_users_teams() {
    let (stores, _turn) = stores().await;
    for (kind, s) in stores {
        s.create_team(&Team {
            name: "ops".into(),
            limits: Limits {
                rpm: Some(100),
                ..Default::default()
            },
            models: None,
            created: 0,
        })
        .await
        .unwrap();
        s.create_user(&User {
            name: "alice".into(),
            role: Role::User,
            team: Some("ops".into()),
            created: 0,
        })
        .await
        .unwrap();
        assert!(s
            .create_user(&User {
                name: "alice".into(),
                role: Role::User,
                team: None,
                created: 0
            })
            .await
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        let (info, secret) = s
            .create_key(&NewKey {
                name: "ci".into(),
                user: Some("alice".into()),
                models: Some(vec!["smollm2".into()]),
                limits: Limits {
                    rpm: Some(5),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(secret.starts_with(&info.prefix), "{kind}");
        // The user's team and role carry over to the key.
        assert_eq!((info.team.as_deref(), info.role), (Some("ops"), Role::User));
        let owner = s.authenticate(&secret).await.unwrap().expect("valid key");
        assert_eq!(owner.key_id, info.id);
        assert_eq!(owner.models.as_deref(), Some(&["smollm2".to_string()][..]));
        assert_eq!(owner.key_limits.rpm, Some(5));
        assert_eq!(
            owner.team_limits.rpm,
            Some(100),
            "{kind}: team limits joined"
        );
        assert!(s.authenticate("hk-nope").await.unwrap().is_none());
        assert!(s
            .authenticate(&format!("{secret}x"))
            .await
            .unwrap()
            .is_none());
        // Revocation takes effect on the next lookup.
        s.revoke_key(&info.id).await.unwrap();
        assert!(s.authenticate(&secret).await.unwrap().is_none());
        assert!(s.revoke_key(&info.id).await.is_err(), "already revoked");
        // An expired key is refused.
        let (_, old) = s
            .create_key(&NewKey {
                name: "old".into(),
                role: Some(Role::Auditor),
                expires: Some(1),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(s.authenticate(&old).await.unwrap().is_none());
        let listed = s.list_keys().await.unwrap();
        assert_eq!(listed.len(), 2);
        let revoked = listed.iter().find(|k| k.id == info.id).unwrap();
        assert!(revoked.revoked.is_some());
        assert!(s
            .create_key(&NewKey {
                name: "x".into(),
                user: Some("bob".into()),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .to_string()
            .contains("no user named 'bob'"));
    }
}

#[tokio::test]
async fn secret_is_never_stored() {
    let (url, path) = temp_sqlite();
    let s = Store::open(&url).await.unwrap();
    let (_, secret) = s
        .create_key(&NewKey {
            name: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    drop(s);
    let mut bytes = std::fs::read(&path).unwrap();
    for ext in ["-wal", "-shm"] {
        bytes.extend(std::fs::read(format!("{}{ext}", path.display())).unwrap_or_default());
    }
    let random_part = secret.rsplit('-').next().unwrap();
    assert!(
        !bytes
            .windows(random_part.len())
            .any(|w| w == random_part.as_bytes()),
        "the secret must not be in the database files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_chain_detects_edits_and_deletions() {
    let (stores, _turn) = stores().await;
    for (kind, s) in stores {
        let sink = AuditSink::spawn(s.clone());
        // 100 records from 4 concurrent tasks through the batching sink.
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let sink = sink.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    sink.send(rec(t * 25 + i, if t % 2 == 0 { "k1" } else { "k2" }));
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        sink.flush().await;
        assert_eq!(
            s.verify_audit().await.unwrap(),
            Verdict::Ok { records: 100 },
            "{kind}"
        );
        // Usage rollups equal the sum of the records.
        let by_key = s.usage(GroupBy::Key, 0, i64::MAX / 2).await.unwrap();
        let total: u64 = by_key.iter().map(|r| r.requests).sum();
        assert_eq!(total, 100);
        let completion: u64 = by_key.iter().map(|r| r.completion_tokens).sum();
        assert_eq!(completion, (0..100).sum::<u64>());
        let month = hearth_gateway::limits::month_of_unix(1_795_478_400);
        let k1 = s
            .monthly_tokens_used(&Scope::Key("k1".into()), month)
            .await
            .unwrap();
        let expect_k1: u64 = (0..25).chain(50..75).map(|i| 10 + i).sum();
        assert_eq!(k1, expect_k1, "{kind}");
        assert_eq!(
            s.monthly_tokens_used(&Scope::Global, month).await.unwrap(),
            (0..100).map(|i| 10 + i).sum::<u64>()
        );

        // Edit one record's tokens behind the store's back: verify names it.
        s.execute_raw("UPDATE audit_log SET completion_tokens = 0 WHERE seq = 42")
            .await
            .unwrap();
        match s.verify_audit().await.unwrap() {
            Verdict::Broken { seq, reason, .. } => {
                assert_eq!(seq, 42, "{kind}");
                assert!(reason.contains("edited"), "{reason}");
            }
            v => panic!("{kind}: edit not detected: {v:?}"),
        }
        s.execute_raw("DELETE FROM audit_log WHERE seq = 42")
            .await
            .unwrap();
        match s.verify_audit().await.unwrap() {
            Verdict::Broken { seq, reason, .. } => {
                assert_eq!(seq, 42, "{kind}");
                assert!(reason.contains("deleted"), "{reason}");
            }
            v => panic!("{kind}: deletion not detected: {v:?}"),
        }
        // Retention removes a prefix and the chain still verifies from its checkpoint.
        s.execute_raw("DELETE FROM audit_log").await.unwrap();
        s.execute_raw("DELETE FROM audit_checkpoint").await.unwrap();
        let mut old = rec(0, "k1");
        old.time = 1_000;
        s.append_audit(&[old.clone(), old.clone(), rec(1, "k1"), rec(2, "k1")])
            .await
            .unwrap();
        assert_eq!(s.apply_retention(30).await.unwrap(), 2);
        assert_eq!(
            s.verify_audit().await.unwrap(),
            Verdict::Ok { records: 2 },
            "{kind}"
        );
        s.append_audit(&[rec(3, "k1")]).await.unwrap();
        assert_eq!(s.verify_audit().await.unwrap(), Verdict::Ok { records: 3 });
    }
}

/// Appends straight to the store (no sink) from concurrent tasks, as several request handlers
/// or a second writer in the same process would: the chain must stay one line with no gaps
/// and no record may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_direct_appends_keep_one_chain() {
    let (stores, _turn) = stores().await;
    for (kind, s) in stores {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    s.append_audit(&[rec(t * 25 + i, "k")]).await?;
                }
                Ok::<_, hearth_gateway::store::StoreError>(())
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
        assert_eq!(
            s.verify_audit().await.unwrap(),
            Verdict::Ok { records: 200 },
            "{kind}"
        );
        let ids: std::collections::BTreeSet<String> = s
            .audit_page(0, 1000, None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.record.request_id)
            .collect();
        assert_eq!(ids.len(), 200, "{kind}: every record is there once");
    }
}

/// get/update/delete for teams, users and keys, and usage filtered by key, user, team and model
/// equal to sums computed here from the records appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_filtered_usage() {
    let (stores, _turn) = stores().await;
    for (kind, s) in stores {
        s.create_team(&Team {
            name: "ops".into(),
            limits: Limits::default(),
            models: None,
            created: 0,
        })
        .await
        .unwrap();
        let lim = Limits {
            tpm: Some(7),
            monthly_tokens: Some(9),
            ..Default::default()
        };
        let ops = Team {
            name: "ops".into(),
            limits: lim,
            models: Some(vec!["m1".into(), "m2".into()]),
            created: 0,
        };
        let got = s.update_team(&ops).await.unwrap();
        assert_eq!((got.limits, got.models.clone()), (lim, ops.models.clone()));
        assert_eq!(
            s.get_team("ops").await.unwrap().models,
            ops.models,
            "{kind}"
        );
        assert_eq!(s.get_team("ops").await.unwrap().limits, lim, "{kind}");
        let nope = Team {
            name: "nope".into(),
            ..ops.clone()
        };
        assert!(s.update_team(&nope).await.is_err());
        let comma = Team {
            models: Some(vec!["a,b".into()]),
            ..ops.clone()
        };
        assert!(matches!(
            s.update_team(&comma).await,
            Err(hearth_gateway::store::StoreError::Invalid(_))
        ));
        s.create_user(&User {
            name: "bob".into(),
            role: Role::User,
            team: None,
            created: 0,
        })
        .await
        .unwrap();
        let u = s
            .update_user(&User {
                name: "bob".into(),
                role: Role::Auditor,
                team: Some("ops".into()),
                created: 0,
            })
            .await
            .unwrap();
        assert_eq!((u.role, u.team.as_deref()), (Role::Auditor, Some("ops")));
        assert_eq!(s.get_user("bob").await.unwrap(), u);
        assert!(s
            .update_user(&User {
                name: "bob".into(),
                role: Role::User,
                team: Some("ghost".into()),
                created: 0,
            })
            .await
            .unwrap_err()
            .to_string()
            .contains("ghost"));
        let (k, secret) = s
            .create_key(&NewKey {
                name: "k".into(),
                user: Some("bob".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(s.get_key(&k.id).await.unwrap(), k, "{kind}");
        // Team limits changed after the key was made reach the next lookup.
        let p = s.authenticate(&secret).await.unwrap().unwrap();
        assert_eq!(p.team_limits, lim);
        s.delete_key(&k.id).await.unwrap();
        assert!(s.get_key(&k.id).await.is_err());
        assert!(s.authenticate(&secret).await.unwrap().is_none());
        assert!(s.delete_key(&k.id).await.is_err());
        s.delete_user("bob").await.unwrap();
        assert!(s.get_user("bob").await.is_err());

        // Usage filters against sums over the records themselves.
        let mut recs = Vec::new();
        for i in 0..60u64 {
            let mut r = rec(i, ["k1", "k2", "k3"][i as usize % 3]);
            r.user = (i % 2 == 0).then(|| "alice".to_string());
            r.model = Some(["m1", "m2"][i as usize % 4 / 2].into());
            r.time += (i as i64 % 5) * 86_400; // five days
            recs.push(r);
        }
        s.append_audit(&recs).await.unwrap();
        let day0 = 1_795_478_400 / 86_400;
        let sum = |pred: &dyn Fn(&AuditRecord) -> bool| {
            let m: Vec<_> = recs.iter().filter(|r| pred(r)).collect();
            (
                m.len() as u64,
                m.iter().map(|r| r.prompt_tokens).sum::<u64>(),
                m.iter().map(|r| r.completion_tokens).sum::<u64>(),
            )
        };
        let rows = s
            .usage_filtered(&UsageFilter {
                group_by: Some(GroupBy::Model),
                user: Some("alice".into()),
                key: Some("k2".into()),
                since_day: Some(day0 + 1),
                until_day: Some(day0 + 4),
                ..Default::default()
            })
            .await
            .unwrap();
        for m in ["m1", "m2"] {
            let want = sum(&|r| {
                let d = r.time / 86_400;
                r.user.as_deref() == Some("alice")
                    && r.key_id.as_deref() == Some("k2")
                    && r.model.as_deref() == Some(m)
                    && (day0 + 1..day0 + 4).contains(&d)
            });
            let got = rows
                .iter()
                .find(|r| r.group == m)
                .map(|r| (r.requests, r.prompt_tokens, r.completion_tokens))
                .unwrap_or_default();
            assert_eq!(got, want, "{kind}: model {m}");
        }
        // No filter, by day: one row per day, totals equal all records.
        let by_day = s
            .usage_filtered(&UsageFilter {
                group_by: Some(GroupBy::Day),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_day.len(), 5, "{kind}");
        let tot: u64 = by_day.iter().map(|r| r.completion_tokens).sum();
        assert_eq!(tot, sum(&|_| true).2);
        // "" matches records without a user.
        let anon = s
            .usage_filtered(&UsageFilter {
                group_by: Some(GroupBy::User),
                user: Some(String::new()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(anon.len(), 1);
        assert_eq!(anon[0].requests, sum(&|r| r.user.is_none()).0);
    }
}

/// `query_audit` filters and pages, checked against filtering the appended records here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_filters_and_pages() {
    let (stores, _turn) = stores().await;
    for (kind, s) in stores {
        let mut recs = Vec::new();
        for i in 0..50u64 {
            let mut r = rec(i, ["k1", "k2"][i as usize % 2]);
            r.status = if i % 5 == 0 { 429 } else { 200 };
            r.model = (i % 3 != 0).then(|| "m".to_string());
            recs.push(r);
        }
        s.append_audit(&recs).await.unwrap();
        let f = AuditFilter {
            key: Some("k2".into()),
            status: Some(200),
            model: Some("m".into()),
            since: Some(recs[10].time),
            until: Some(recs[45].time),
            ..Default::default()
        };
        let want: Vec<String> = recs
            .iter()
            .filter(|r| {
                r.key_id.as_deref() == Some("k2")
                    && r.status == 200
                    && r.model.as_deref() == Some("m")
                    && r.time >= recs[10].time
                    && r.time < recs[45].time
            })
            .map(|r| r.request_id.clone())
            .collect();
        // Pages of 3 until empty.
        let mut got = Vec::new();
        let mut after = 0;
        loop {
            let page = s.query_audit(&f, after, 3).await.unwrap();
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            after = last.seq;
            got.extend(page.into_iter().map(|c| c.record.request_id));
        }
        assert!(!want.is_empty());
        assert_eq!(got, want, "{kind}");
        let one = s
            .query_audit(
                &AuditFilter {
                    request_id: Some("req_7".into()),
                    ..Default::default()
                },
                0,
                100,
            )
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].record, recs[7], "{kind}: the record round-trips");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_sessions() {
    let (stores, _turn) = stores().await;
    for (kind, s) in stores {
        s.create_team(&Team {
            name: "ops".into(),
            limits: Limits {
                tpm: Some(500),
                ..Default::default()
            },
            models: None,
            created: 0,
        })
        .await
        .unwrap();
        s.create_user(&User {
            name: "alice".into(),
            role: Role::User,
            team: Some("ops".into()),
            created: 0,
        })
        .await
        .unwrap();
        let (u, h) = s.user_password_hash("alice").await.unwrap().unwrap();
        assert_eq!((u.name.as_str(), h), ("alice", None), "{kind}");
        assert!(
            s.user_password_hash("bob").await.unwrap().is_none(),
            "{kind}"
        );
        let hash = hearth_gateway::password::hash("long enough").unwrap();
        s.set_password_hash("alice", &hash).await.unwrap();
        assert!(s.set_password_hash("bob", &hash).await.is_err(), "{kind}");
        let (_, h) = s.user_password_hash("alice").await.unwrap().unwrap();
        assert!(
            hearth_gateway::password::verify("long enough", &h.unwrap()),
            "{kind}"
        );

        let p = s.user_principal("alice").await.unwrap().unwrap();
        assert_eq!(p.user.as_deref(), Some("alice"), "{kind}");
        assert_eq!(p.role, Role::User, "{kind}");
        assert_eq!(p.team_limits.tpm, Some(500), "{kind}");
        assert!(s.user_principal("bob").await.unwrap().is_none(), "{kind}");

        let (info, _secret) = s
            .create_key(&NewKey {
                name: "k".into(),
                user: Some("alice".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let kp = s.key_principal(&info.id).await.unwrap().unwrap();
        assert_eq!(kp.key_id, info.id, "{kind}");
        assert_eq!(kp.team_limits.tpm, Some(500), "{kind}");
        s.revoke_key(&info.id).await.unwrap();
        assert!(s.key_principal(&info.id).await.unwrap().is_none(), "{kind}");

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let live = UiSession {
            token_hash: "a".repeat(64),
            user: "alice".into(),
            key_id: None,
            role: Role::User,
            csrf_token: "csrf".into(),
            created: now,
            expires: now + 3600,
        };
        s.create_session(&live).await.unwrap();
        let old = UiSession {
            token_hash: "b".repeat(64),
            expires: now - 1,
            ..live.clone()
        };
        s.create_session(&old).await.unwrap();
        assert_eq!(
            s.session(&live.token_hash).await.unwrap(),
            Some(live.clone()),
            "{kind}"
        );
        assert_eq!(
            s.session(&old.token_hash).await.unwrap(),
            None,
            "{kind}: expired"
        );
        assert_eq!(s.purge_sessions().await.unwrap(), 1, "{kind}");
        s.delete_session(&live.token_hash).await.unwrap();
        assert_eq!(s.session(&live.token_hash).await.unwrap(), None, "{kind}");
    }
}

fn msg(id: &str, conv: &str, parent: Option<&str>, role: &str, content: &str) -> Message {
    Message {
        id: id.into(),
        conversation_id: conv.into(),
        parent_id: parent.map(String::from),
        role: role.into(),
        content: content.into(),
        reasoning: None,
        model: None,
        status: "complete".into(),
        error: None,
        stats: None,
        created: 1_795_478_400,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_messages_and_runs() {
    let (stores, _turn) = stores().await;
    for (kind, s) in stores {
        for (i, (id, user, title)) in [
            ("c_1", "alice", "Rust lifetimes"),
            ("c_2", "alice", "Cooking 100% rice_"),
            ("c_3", "bob", "Rust for bob"),
        ]
        .into_iter()
        .enumerate()
        {
            s.create_conversation(&Conversation {
                id: id.into(),
                user: user.into(),
                title: title.into(),
                model: Some("m".into()),
                settings: serde_json::json!({"system": "be brief", "temperature": 0.5}),
                created: 100 + i as i64,
                updated: 100 + i as i64,
            })
            .await
            .unwrap();
        }
        // Isolation: bob's id is not alice's.
        assert!(
            s.conversation("alice", "c_3").await.unwrap().is_none(),
            "{kind}"
        );
        let c1 = s.conversation("alice", "c_1").await.unwrap().unwrap();
        assert_eq!(c1.settings["system"], "be brief", "{kind}");

        s.insert_message(&msg("m_1", "c_1", None, "user", "What is a LIFETIME?"))
            .await
            .unwrap();
        s.insert_message(&msg("m_2", "c_1", Some("m_1"), "assistant", "A scope."))
            .await
            .unwrap();
        // A branch: a second answer to m_1.
        let mut m3 = msg("m_3", "c_1", Some("m_1"), "assistant", "");
        m3.status = "generating".into();
        s.insert_message(&m3).await.unwrap();
        m3.content = "Part".into();
        m3.reasoning = Some("thinking".into());
        m3.status = "stopped".into();
        m3.stats = Some(serde_json::json!({"ttft_ms": 5}));
        assert!(s.update_message(&m3).await.unwrap(), "{kind}");
        let ms = s.messages("c_1").await.unwrap();
        assert_eq!(
            ms.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m_1", "m_2", "m_3"],
            "{kind}"
        );
        assert_eq!(ms[2], m3, "{kind}");

        // Updated first; search over titles and message text, wildcards literal.
        let (list, total) = s.list_conversations("alice", None, 50, 0).await.unwrap();
        assert_eq!(total, 2, "{kind}");
        assert_eq!(list[0].id, "c_1", "{kind}: touched by its messages");
        let (list, total) = s
            .list_conversations("alice", Some("lifetime"), 50, 0)
            .await
            .unwrap();
        assert_eq!((list.len(), total), (1, 1), "{kind}");
        let (list, _) = s
            .list_conversations("alice", Some("a scope"), 50, 0)
            .await
            .unwrap();
        assert_eq!(list[0].id, "c_1", "{kind}: message text");
        let (list, _) = s
            .list_conversations("alice", Some("0% rice_"), 50, 0)
            .await
            .unwrap();
        assert_eq!(list.len(), 1, "{kind}");
        let (list, _) = s
            .list_conversations("alice", Some("%"), 50, 0)
            .await
            .unwrap();
        assert_eq!(list.len(), 1, "{kind}: % is literal");
        let (list, total) = s.list_conversations("alice", None, 1, 1).await.unwrap();
        assert_eq!(
            (list.len(), total, list[0].id.as_str()),
            (1, 2, "c_2"),
            "{kind}"
        );
        let (_, total) = s
            .list_conversations("bob", Some("rust"), 50, 0)
            .await
            .unwrap();
        assert_eq!(total, 1, "{kind}");

        let c = s
            .update_conversation(
                "alice",
                "c_2",
                &ConversationPatch {
                    title: Some("Rice".into()),
                    model: Some(None),
                    settings: None,
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.title.as_str(), c.model.clone()),
            ("Rice", None),
            "{kind}"
        );
        assert!(s
            .update_conversation("bob", "c_2", &ConversationPatch::default())
            .await
            .unwrap()
            .is_none());

        let mut gen = msg("m_9", "c_2", None, "assistant", "");
        gen.status = "generating".into();
        s.insert_message(&gen).await.unwrap();
        assert_eq!(s.mark_interrupted_messages().await.unwrap(), 1, "{kind}");
        assert_eq!(
            s.messages("c_2").await.unwrap()[0].status,
            "stopped",
            "{kind}"
        );

        assert!(
            !s.delete_conversation("bob", "c_1").await.unwrap(),
            "{kind}"
        );
        assert!(
            s.delete_conversation("alice", "c_1").await.unwrap(),
            "{kind}"
        );
        assert!(s.messages("c_1").await.unwrap().is_empty(), "{kind}");

        // Comparison runs.
        let run = CompareRun {
            id: "r_1".into(),
            user: "alice".into(),
            title: "t".into(),
            document: serde_json::json!({"columns": [{"model": "a"}, {"model": "b"}]}),
            created: 5,
            updated: 5,
        };
        s.create_compare_run(&run).await.unwrap();
        s.create_compare_run(&CompareRun {
            id: "r_2".into(),
            user: "bob".into(),
            ..run.clone()
        })
        .await
        .unwrap();
        assert_eq!(
            s.compare_run("alice", "r_1").await.unwrap(),
            Some(run.clone()),
            "{kind}"
        );
        assert_eq!(s.compare_run("bob", "r_1").await.unwrap(), None, "{kind}");
        assert_eq!(
            s.list_compare_runs("alice").await.unwrap().len(),
            1,
            "{kind}"
        );
        let mut changed = run.clone();
        changed.title = "t2".into();
        changed.document["questions"] = serde_json::json!([{"vote": 0}]);
        changed.updated = 6;
        assert!(s.update_compare_run(&changed).await.unwrap(), "{kind}");
        assert!(!s
            .update_compare_run(&CompareRun {
                user: "bob".into(),
                ..changed.clone()
            })
            .await
            .unwrap());
        assert_eq!(
            s.compare_run("alice", "r_1").await.unwrap(),
            Some(changed),
            "{kind}"
        );
        assert_eq!(s.all_compare_documents().await.unwrap().len(), 2, "{kind}");
        assert!(!s.delete_compare_run("bob", "r_1").await.unwrap(), "{kind}");
        assert!(
            s.delete_compare_run("alice", "r_1").await.unwrap(),
            "{kind}"
        );
        assert!(
            s.list_compare_runs("alice").await.unwrap().is_empty(),
            "{kind}"
        );
    }
}
