//! `hearth keys|users|teams|audit` through the real binary, checked against the store itself
//! (`hearth_gateway::store`, the same library `hearth serve` authenticates with): a key made by
//! the CLI authenticates, stops authenticating once `keys revoke` ran, and an expired one never
//! does; `audit verify` passes on an intact chain and names the record edited behind its back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hearth_gateway::store::{AuditRecord, Store};

/// Runs `hearth ARGS... --data-dir DATA`, with no `HEARTH_*` variable inherited from the
/// test's environment (`--data-dir` is a flag of each subcommand, so it goes last).
struct Hearth<'a> {
    data: &'a Path,
}

fn hearth(data: &Path) -> Hearth<'_> {
    Hearth { data }
}

impl Hearth<'_> {
    fn args<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HEARTH_") {
                c.env_remove(k);
            }
        }
        c.args(args).arg("--data-dir").arg(self.data);
        c
    }
}

fn data_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-admin-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn ok(c: &mut Command) -> String {
    let o = c.output().expect("run hearth");
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 stdout")
}

fn fails(c: &mut Command) -> Output {
    let o = c.output().expect("run hearth");
    assert!(!o.status.success(), "{c:?} should have failed");
    o
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The store the CLI wrote: `--data-dir DIR` means `sqlite://DIR/hearth.db`.
fn store(rt: &tokio::runtime::Runtime, data: &Path) -> Store {
    let db = data.join("hearth.db");
    assert!(
        db.exists(),
        "--data-dir puts the database at {}",
        db.display()
    );
    rt.block_on(Store::open(&format!("sqlite://{}", db.display())))
        .unwrap()
}

#[test]
fn keys_users_teams_lifecycle() {
    let data = data_dir("keys");
    let rt = rt();
    ok(&mut hearth(&data).args(["teams", "create", "research", "--rpm", "100"]));
    ok(&mut hearth(&data).args(["users", "create", "alice", "--team", "research"]));
    let teams: serde_json::Value =
        serde_json::from_str(&ok(&mut hearth(&data).args(["teams", "list", "--json"]))).unwrap();
    assert_eq!(teams[0]["name"], "research");
    assert_eq!(teams[0]["limits"]["rpm"], 100);

    let out = ok(&mut hearth(&data).args([
        "keys",
        "create",
        "--name",
        "ci",
        "--user",
        "alice",
        "--models",
        "a,b",
        "--rpm",
        "5",
        "--monthly-tokens",
        "1000",
        "--json",
    ]));
    let made: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let id = made["id"].as_str().expect("id").to_string();
    let secret = made["key"].as_str().expect("key").to_string();
    assert!(secret.starts_with(made["prefix"].as_str().unwrap()));
    assert_eq!(made["team"], "research", "the user's team carries over");
    assert_eq!(made["models"], serde_json::json!(["a", "b"]));
    assert_eq!(made["limits"]["rpm"], 5);

    // The list never shows a secret.
    let listed = ok(&mut hearth(&data).args(["keys", "list", "--json"]));
    assert!(!listed.contains(&secret));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(listed[0]["revoked"].is_null());
    let table = ok(&mut hearth(&data).args(["keys", "list"]));
    assert!(table.contains(&id) && table.contains("active"), "{table}");

    // Only the hash is on disk.
    let mut bytes = std::fs::read(data.join("hearth.db")).unwrap();
    bytes.extend(std::fs::read(data.join("hearth.db-wal")).unwrap_or_default());
    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));

    let s = store(&rt, &data);
    let p = rt
        .block_on(s.authenticate(&secret))
        .unwrap()
        .expect("the key authenticates");
    assert_eq!(p.key_id, id);
    assert_eq!(p.team_limits.rpm, Some(100));
    assert_eq!(p.key_limits.monthly_tokens, Some(1000));

    ok(&mut hearth(&data).args(["keys", "revoke", &id]));
    assert!(rt.block_on(s.authenticate(&secret)).unwrap().is_none());
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&mut hearth(&data).args(["keys", "list", "--json"]))).unwrap();
    assert!(listed[0]["revoked"].is_i64(), "{listed}");
    // Revoking twice, or an unknown id, is an error naming the id.
    let o = fails(&mut hearth(&data).args(["keys", "revoke", "nope123"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope123"));

    // --expires is the last valid day: yesterday's key is dead, next year's works.
    let past: serde_json::Value = serde_json::from_str(&ok(&mut hearth(&data).args([
        "keys",
        "create",
        "--name",
        "old",
        "--expires",
        "2001-02-03",
        "--json",
    ])))
    .unwrap();
    assert!(rt
        .block_on(s.authenticate(past["key"].as_str().unwrap()))
        .unwrap()
        .is_none());
    let future: serde_json::Value = serde_json::from_str(&ok(&mut hearth(&data).args([
        "keys",
        "create",
        "--name",
        "new",
        "--role",
        "auditor",
        "--expires",
        "2999-12-31",
        "--json",
    ])))
    .unwrap();
    let p = rt
        .block_on(s.authenticate(future["key"].as_str().unwrap()))
        .unwrap()
        .expect("not expired yet");
    assert_eq!(p.role.as_str(), "auditor");

    // Bad input: messages name the flag or the missing thing.
    let o = fails(&mut hearth(&data).args(["keys", "create", "--name", "x", "--role", "boss"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("admin, user or auditor"));
    let o = fails(&mut hearth(&data).args(["keys", "create", "--name", "x", "--expires", "soon"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--expires"));
    let o = fails(&mut hearth(&data).args(["keys", "create", "--name", "x", "--user", "bob"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bob"));

    ok(&mut hearth(&data).args(["users", "delete", "alice"]));
    ok(&mut hearth(&data).args(["teams", "delete", "research"]));
    assert_eq!(
        ok(&mut hearth(&data).args(["users", "list", "--json"])).trim(),
        "[]"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn audit_verify_and_export() {
    let data = data_dir("audit");
    let rt = rt();
    // An empty log verifies (and the command creates the database).
    let out = ok(&mut hearth(&data).args(["audit", "verify"]));
    assert!(out.contains("0 records"), "{out}");
    let s = store(&rt, &data);
    let recs: Vec<AuditRecord> = (0..5)
        .map(|i| AuditRecord {
            time: 1_795_478_400 + i, // 2026-11-24
            request_id: format!("req_{i}"),
            key_id: Some("k".into()),
            route: "POST /v1/chat/completions".into(),
            model: Some("m".into()),
            status: 200,
            prompt_tokens: 3,
            completion_tokens: i as u64,
            // A field CSV must quote.
            guardrails: Some(r#"[{"rule":"pii, email"}]"#.into()),
            ..Default::default()
        })
        .collect();
    rt.block_on(s.append_audit(&recs)).unwrap();
    let out = ok(&mut hearth(&data).args(["audit", "verify"]));
    assert!(out.contains("5 records"), "{out}");

    let jsonl = ok(&mut hearth(&data).args(["audit", "export", "--since", "2026-11-24"]));
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[3]["request_id"], "req_3");
    assert_eq!(rows[3]["completion_tokens"], 3);
    assert_eq!(rows[4]["prev_hash"], rows[3]["hash"]);
    let none = ok(&mut hearth(&data).args(["audit", "export", "--until", "2026-11-23"]));
    assert_eq!(none, "", "--until is inclusive of its day only");
    let csv = ok(&mut hearth(&data).args(["audit", "export", "--format", "csv"]));
    assert_eq!(csv.lines().count(), 6, "header and five rows: {csv}");
    assert!(csv.contains(r#""[{""rule"":""pii, email""}]""#), "{csv}");

    // An edit behind the store's back: verify fails and names record 3 and its request.
    rt.block_on(s.execute_raw("UPDATE audit_log SET completion_tokens = 99 WHERE seq = 3"))
        .unwrap();
    let o = fails(&mut hearth(&data).args(["audit", "verify"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("record 3") && err.contains("req_2"), "{err}");
    let _ = std::fs::remove_dir_all(&data);
}

/// Run with `input` on standard input.
fn with_stdin(c: &mut Command, input: &str) -> Output {
    use std::io::Write as _;
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run hearth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn passwords_from_stdin_are_stored_as_argon2id_hashes() {
    let data = data_dir("passwords");
    let o = with_stdin(
        &mut hearth(&data).args(["users", "create", "carol", "--password-stdin"]),
        "first password\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rt = rt();
    let s = store(&rt, &data);
    let hash = |s: &Store| {
        rt.block_on(s.user_password_hash("carol"))
            .unwrap()
            .unwrap()
            .1
            .unwrap()
    };
    let h = hash(&s);
    assert!(h.starts_with("$argon2id$"), "{h}");
    assert!(!h.contains("first password"));
    assert!(hearth_gateway::password::verify("first password", &h));

    let o = with_stdin(
        &mut hearth(&data).args(["users", "set-password", "carol", "--password-stdin"]),
        "second password\r\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let h = hash(&s);
    assert!(hearth_gateway::password::verify("second password", &h));
    assert!(!hearth_gateway::password::verify("first password", &h));

    // Too short: refused, and no user is created without the password asked for.
    let o = with_stdin(
        &mut hearth(&data).args(["users", "create", "dave", "--password-stdin"]),
        "short\n",
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 8"));
    assert!(rt.block_on(s.user_password_hash("dave")).unwrap().is_none());
    // Unknown user; and the password is never an argument.
    let o = with_stdin(
        &mut hearth(&data).args(["users", "set-password", "nobody", "--password-stdin"]),
        "long enough pw\n",
    );
    assert!(!o.status.success());
    fails(&mut hearth(&data).args(["users", "set-password", "carol"]));
    let _ = std::fs::remove_dir_all(&data);
}
