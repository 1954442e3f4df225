//! `hearth serve` configuration through the real binary: precedence of flags over the TOML
//! file over `HEARTH_*` variables over defaults, error messages, `--help`, and (with SmolLM2)
//! that the knobs reach the running server.
//!
//! Most tests use `--print-config`, which resolves everything and exits without loading a
//! model, so they run in milliseconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary with no `HEARTH_*` variable inherited from the test's environment.
fn hearth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HEARTH_") {
            c.env_remove(k);
        }
    }
    c
}

fn tmp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-serve-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run hearth")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--print-config` output, which must itself be valid TOML.
fn print_config(c: &mut Command) -> (toml::Table, String) {
    let o = run(c.arg("--print-config"));
    assert!(o.status.success(), "--print-config failed: {}", stderr(&o));
    let text = stdout(&o);
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("--print-config is not TOML: {e}\n{text}"));
    (table, text)
}

/// The source comment printed after `key = ...`.
fn source_of<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .and_then(|l| l.split_once("  # "))
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no `{key} = ...  # source` line in\n{text}"))
}

fn int(t: &toml::Table, k: &str) -> i64 {
    t[k].as_integer()
        .unwrap_or_else(|| panic!("{k} is not an integer: {:?}", t[k]))
}

fn string<'a>(t: &'a toml::Table, k: &str) -> &'a str {
    t[k].as_str()
        .unwrap_or_else(|| panic!("{k} is not a string: {:?}", t[k]))
}

#[test]
fn flag_beats_file_beats_env_beats_default() {
    let file = tmp_file(
        "precedence.toml",
        "port = 9001\nmax_running = 3\nkv_cache_mb = 512\nkv_cache_type = \"q8_0\"\n\
         no_prefix_caching = false\ndrain_seconds = 5\n",
    );
    let (t, text) = print_config(
        hearth()
            .args(["serve", "--config"])
            .arg(&file)
            .args(["--port", "9000", "--kv-cache-mb", "256"])
            .env("HEARTH_PORT", "9002")
            .env("HEARTH_MAX_RUNNING", "5")
            .env("HEARTH_KV_CACHE_MB", "128")
            .env("HEARTH_KV_CACHE_TYPE", "f16")
            .env("HEARTH_NO_PREFIX_CACHING", "true")
            .env("HEARTH_STEP_TOKENS", "77")
            .env("HEARTH_HOST", "0.0.0.0")
            .env("HEARTH_API_KEY", "from-env"),
    );
    // Flag over file and env.
    assert_eq!(int(&t, "port"), 9000);
    assert_eq!(source_of(&text, "port"), "command line --port");
    assert_eq!(int(&t, "kv_cache_mb"), 256);
    // File over env.
    assert_eq!(int(&t, "max_running"), 3);
    assert!(source_of(&text, "max_running").starts_with("config file"));
    assert_eq!(string(&t, "kv_cache_type"), "q8_0");
    assert_eq!(t["no_prefix_caching"].as_bool(), Some(false));
    assert_eq!(int(&t, "drain_seconds"), 5);
    // Env over default.
    assert_eq!(int(&t, "step_tokens"), 77);
    assert_eq!(
        source_of(&text, "step_tokens"),
        "environment HEARTH_STEP_TOKENS"
    );
    assert_eq!(string(&t, "host"), "0.0.0.0");
    assert!(
        text.contains("# api_key: set (not shown)  # environment HEARTH_API_KEY"),
        "{text}"
    );
    assert!(
        !text.contains("from-env"),
        "the API key must not be printed:\n{text}"
    );
    // Defaults (the issue's documented values).
    assert_eq!(int(&t, "max_waiting"), 64);
    assert_eq!(source_of(&text, "max_waiting"), "default");
}

#[test]
fn defaults_without_any_configuration() {
    let (t, text) = print_config(hearth().arg("serve"));
    assert_eq!(string(&t, "host"), "127.0.0.1");
    assert_eq!(int(&t, "port"), 8080);
    assert_eq!(int(&t, "max_running"), 16);
    assert_eq!(int(&t, "max_waiting"), 64);
    assert_eq!(int(&t, "step_tokens"), 256);
    assert_eq!(int(&t, "kv_cache_mb"), 1024);
    assert_eq!(string(&t, "kv_cache_type"), "f16");
    assert_eq!(t["no_prefix_caching"].as_bool(), Some(false));
    assert_eq!(int(&t, "drain_seconds"), 30);
    assert!(int(&t, "threads") >= 1);
    assert!(text.contains("# api_key: not set"), "{text}");
    assert!(t.get("models").is_none());
}

#[test]
fn boolean_and_key_overrides() {
    // A bare flag turns caching off over the file...
    let file = tmp_file(
        "bool.toml",
        "no-prefix-caching = false\napi-key = \"from-file\"\n",
    );
    let (t, _) = print_config(
        hearth()
            .args(["serve", "--no-prefix-caching", "--config"])
            .arg(&file),
    );
    assert_eq!(t["no_prefix_caching"].as_bool(), Some(true));
    // ...and `=false` turns it back on over the environment.
    let (t, text) = print_config(
        hearth()
            .args(["serve", "--no-prefix-caching=false"])
            .env("HEARTH_NO_PREFIX_CACHING", "1"),
    );
    assert_eq!(t["no_prefix_caching"].as_bool(), Some(false));
    assert_eq!(
        source_of(&text, "no_prefix_caching"),
        "command line --no-prefix-caching"
    );
    // Environment spellings of true.
    for v in ["1", "true", "yes", "on", "TRUE"] {
        let (t, _) = print_config(hearth().arg("serve").env("HEARTH_NO_PREFIX_CACHING", v));
        assert_eq!(
            t["no_prefix_caching"].as_bool(),
            Some(true),
            "HEARTH_NO_PREFIX_CACHING={v}"
        );
    }
    // The file's API key beats the environment's.
    let (_, text) = print_config(
        hearth()
            .args(["serve", "--config"])
            .arg(&file)
            .env("HEARTH_API_KEY", "from-env"),
    );
    assert!(
        text.contains("# api_key: set (not shown)  # config file"),
        "{text}"
    );
}

#[test]
fn config_file_from_env_and_flag() {
    let a = tmp_file("a.toml", "port = 7001\n");
    let b = tmp_file("b.toml", "port = 7002\n");
    let (t, _) = print_config(hearth().arg("serve").env("HEARTH_CONFIG", &a));
    assert_eq!(int(&t, "port"), 7001);
    let (t, _) = print_config(
        hearth()
            .args(["serve", "--config"])
            .arg(&b)
            .env("HEARTH_CONFIG", &a),
    );
    assert_eq!(int(&t, "port"), 7002);
    // An empty variable is unset.
    let (t, _) = print_config(hearth().arg("serve").env("HEARTH_CONFIG", ""));
    assert_eq!(int(&t, "port"), 8080);
}

#[test]
fn kebab_and_snake_case_keys_and_models_tables() {
    let file = tmp_file(
        "models.toml",
        "max-waiting = 9\nstep_tokens = 64\nkv-cache-type = \"Q8_0\"\n\
         [[models]]\npath = \"weights/first.gguf\"\n\
         [[models]]\npath = \"/srv/second.gguf\"\nalias = \"two\"\n",
    );
    let (t, _) = print_config(hearth().args(["serve", "--config"]).arg(&file));
    assert_eq!(int(&t, "max_waiting"), 9);
    assert_eq!(int(&t, "step_tokens"), 64);
    assert_eq!(string(&t, "kv_cache_type"), "q8_0");
    let models = t["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    // Relative paths are relative to the config file; the id defaults to the file stem.
    let dir = file.parent().unwrap();
    assert_eq!(
        Path::new(models[0]["path"].as_str().unwrap()),
        dir.join("weights/first.gguf")
    );
    assert_eq!(models[0]["alias"].as_str(), Some("first"));
    assert_eq!(models[1]["alias"].as_str(), Some("two"));

    // --alias renames in order; positional MODELs replace the file's list.
    let (t, _) = print_config(
        hearth()
            .args(["serve", "--alias", "one", "--config"])
            .arg(&file),
    );
    let models = t["models"].as_array().unwrap();
    assert_eq!(models[0]["alias"].as_str(), Some("one"));
    assert_eq!(models[1]["alias"].as_str(), Some("two"));
    let (t, _) = print_config(
        hearth()
            .args([
                "serve", "x/a.gguf", "y/b.gguf", "--alias", "m1,m2", "--config",
            ])
            .arg(&file),
    );
    let models = t["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["path"].as_str(), Some("x/a.gguf"));
    assert_eq!(models[1]["alias"].as_str(), Some("m2"));
}

#[test]
fn unknown_key_names_key_and_file() {
    let file = tmp_file("unknown.toml", "port = 8081\nmax_runing = 4\n");
    let o = run(hearth()
        .args(["serve", "--print-config", "--config"])
        .arg(&file));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("max_runing"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");
    assert!(e.contains("line 2"), "{e}");
    // Inside a [[models]] table too.
    let file = tmp_file(
        "unknown-model.toml",
        "[[models]]\npath = \"m.gguf\"\nid = \"x\"\n",
    );
    let e = stderr(&run(hearth()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)));
    assert!(e.contains("models[0].id") && e.contains("line 3"), "{e}");
}

#[test]
fn type_error_names_key_and_line() {
    let file = tmp_file("type.toml", "host = \"::1\"\n\nport = \"eighty\"\n");
    let o = run(hearth()
        .args(["serve", "--print-config", "--config"])
        .arg(&file));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("key `port`") && e.contains("line 3"), "{e}");
    // Out of range for a port.
    let file = tmp_file("range.toml", "port = 70000\n");
    let e = stderr(&run(hearth()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)));
    assert!(e.contains("key `port`") && e.contains("line 1"), "{e}");
}

#[test]
fn bad_kv_cache_type_is_clear_from_every_source() {
    let o = run(hearth().args(["serve", "--print-config", "--kv-cache-type", "q4_0"]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--kv-cache-type") && e.contains("q4_0") && e.contains("f16 or q8_0"),
        "{e}"
    );

    let o = run(hearth()
        .args(["serve", "--print-config"])
        .env("HEARTH_KV_CACHE_TYPE", "fp8"));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("HEARTH_KV_CACHE_TYPE") && e.contains("fp8") && e.contains("f16 or q8_0"),
        "{e}"
    );

    let file = tmp_file("kvtype.toml", "kv_cache_type = \"bf16\"\n");
    let o = run(hearth()
        .args(["serve", "--print-config", "--config"])
        .arg(&file));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("kv_cache_type") && e.contains("line 1") && e.contains("f16 or q8_0"),
        "{e}"
    );
}

#[test]
fn invalid_values_name_their_source() {
    let o = run(hearth()
        .args(["serve", "--print-config"])
        .env("HEARTH_PORT", "http"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("HEARTH_PORT"), "{}", stderr(&o));
    // A malformed variable that a flag overrides is never read.
    let o = run(hearth()
        .args(["serve", "--print-config", "--port", "1"])
        .env("HEARTH_PORT", "http"));
    assert!(o.status.success(), "{}", stderr(&o));

    let file = tmp_file("zero.toml", "max_running = 0\n");
    let o = run(hearth()
        .args(["serve", "--print-config", "--config"])
        .arg(&file));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("max_running") && e.contains("zero.toml") && e.contains("at least 1"),
        "{e}"
    );

    let o = run(hearth()
        .args(["serve", "--print-config"])
        .env("HEARTH_NO_PREFIX_CACHING", "maybe"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("HEARTH_NO_PREFIX_CACHING"),
        "{}",
        stderr(&o)
    );

    let o = run(hearth().args([
        "serve",
        "--print-config",
        "--config",
        "/nonexistent/hearth.toml",
    ]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/hearth.toml"),
        "{}",
        stderr(&o)
    );

    let o = run(hearth().args(["serve", "--print-config", "a/m.gguf", "b/m.gguf"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("'m'"), "{}", stderr(&o));
}

#[test]
fn model_admin_knobs_from_every_source() {
    // Defaults: management on, no directory to load from.
    let (t, text) = print_config(hearth().arg("serve"));
    assert_eq!(t["no_model_admin"].as_bool(), Some(false));
    assert_eq!(source_of(&text, "no_model_admin"), "default");
    assert!(t.get("models_dir").is_none(), "{text}");
    assert!(text.contains("# models_dir: not set"), "{text}");

    // The environment over the default.
    let (t, text) = print_config(
        hearth()
            .arg("serve")
            .env("HEARTH_MODELS_DIR", "/srv/models")
            .env("HEARTH_NO_MODEL_ADMIN", "yes"),
    );
    assert_eq!(string(&t, "models_dir"), "/srv/models");
    assert_eq!(
        source_of(&text, "models_dir"),
        "environment HEARTH_MODELS_DIR"
    );
    assert_eq!(t["no_model_admin"].as_bool(), Some(true));
    assert_eq!(
        source_of(&text, "no_model_admin"),
        "environment HEARTH_NO_MODEL_ADMIN"
    );

    // The file over the environment; its relative directory is relative to the file.
    let file = tmp_file(
        "model-admin.toml",
        "models-dir = \"weights\"\nno_model_admin = false\n",
    );
    let (t, text) = print_config(
        hearth()
            .args(["serve", "--config"])
            .arg(&file)
            .env("HEARTH_MODELS_DIR", "/srv/models")
            .env("HEARTH_NO_MODEL_ADMIN", "1"),
    );
    assert_eq!(
        Path::new(string(&t, "models_dir")),
        file.parent().unwrap().join("weights")
    );
    assert!(source_of(&text, "models_dir").starts_with("config file"));
    assert_eq!(t["no_model_admin"].as_bool(), Some(false));

    // Flags over the file: a bare --no-model-admin is true.
    let (t, text) = print_config(
        hearth()
            .args([
                "serve",
                "--models-dir",
                "/opt/llm",
                "--no-model-admin",
                "--config",
            ])
            .arg(&file),
    );
    assert_eq!(string(&t, "models_dir"), "/opt/llm");
    assert_eq!(source_of(&text, "models_dir"), "command line --models-dir");
    assert_eq!(t["no_model_admin"].as_bool(), Some(true));
    assert_eq!(
        source_of(&text, "no_model_admin"),
        "command line --no-model-admin"
    );

    // A malformed boolean names its variable.
    let o = run(hearth()
        .args(["serve", "--print-config"])
        .env("HEARTH_NO_MODEL_ADMIN", "perhaps"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("HEARTH_NO_MODEL_ADMIN"),
        "{}",
        stderr(&o)
    );
    // So does a mistyped file value.
    let file = tmp_file("model-admin-bad.toml", "no_model_admin = \"no\"\n");
    let e = stderr(&run(hearth()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)));
    assert!(e.contains("no_model_admin") && e.contains("line 1"), "{e}");
}

#[test]
fn serving_without_models_says_how_to_name_them() {
    let o = run(hearth().arg("serve"));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no models") && e.contains("[[models]]"), "{e}");
}

#[test]
fn help_documents_every_knob() {
    let o = run(hearth().args(["serve", "--help"]));
    assert!(o.status.success());
    let h = stdout(&o);
    for (flag, var, key) in [
        ("--host", "HEARTH_HOST", "host"),
        ("--port", "HEARTH_PORT", "port"),
        ("--threads", "HEARTH_THREADS", "threads"),
        ("--max-running", "HEARTH_MAX_RUNNING", "max_running"),
        ("--max-waiting", "HEARTH_MAX_WAITING", "max_waiting"),
        ("--step-tokens", "HEARTH_STEP_TOKENS", "step_tokens"),
        ("--kv-cache-mb", "HEARTH_KV_CACHE_MB", "kv_cache_mb"),
        ("--kv-cache-type", "HEARTH_KV_CACHE_TYPE", "kv_cache_type"),
        (
            "--no-prefix-caching",
            "HEARTH_NO_PREFIX_CACHING",
            "no_prefix_caching",
        ),
        ("--api-key", "HEARTH_API_KEY", "api_key"),
        ("--drain-seconds", "HEARTH_DRAIN_SECONDS", "drain_seconds"),
        ("--models-dir", "HEARTH_MODELS_DIR", "models_dir"),
        (
            "--no-model-admin",
            "HEARTH_NO_MODEL_ADMIN",
            "no_model_admin",
        ),
        ("--config", "HEARTH_CONFIG", "[[models]]"),
    ] {
        assert!(h.contains(flag), "--help lacks {flag}");
        assert!(h.contains(&format!("[env: {var}]")), "--help lacks {var}");
        assert!(h.contains(key), "--help lacks the file key {key}");
    }
    for s in [
        "--alias",
        "--print-config",
        "MODEL",
        "precedence",
        "f16",
        "q8_0",
    ] {
        assert!(
            h.to_lowercase().contains(&s.to_lowercase()),
            "--help lacks {s}"
        );
    }
}

// ---- With a model: the knobs reach the running server. ----

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn smollm2() -> PathBuf {
    let p = PathBuf::from(std::env::var_os("HOME").expect("HOME"))
        .join(".cache/hearth/models")
        .join(SMOLLM2);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request; returns (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A `hearth serve` child, killed on drop.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(cmd: &mut Command, port: u16) -> Server {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hearth serve");
    let mut server = Server { child, port };
    let t0 = Instant::now();
    loop {
        if let Ok((200, _)) = http(port, "GET", "/health", None, None) {
            return server;
        }
        if let Some(st) = server.child.try_wait().unwrap() {
            let mut e = String::new();
            server
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut e)
                .unwrap();
            panic!("hearth serve exited ({st}): {e}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "hearth serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Sends the same prompt (several full 16-token blocks long) twice and returns the
/// prefix-cache hit ratio. The engine publishes its counters just after it sends a request's
/// last token, so /metrics is polled (until a hit shows, or for half a second when none is
/// expected) rather than read once.
fn repeat_prompt_hit_ratio(s: &Server, key: &str, expect_hits: bool) -> f64 {
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    let body = format!(
        r#"{{"model":"smollm2","prompt":{},"max_tokens":1,"temperature":0}}"#,
        serde_json::Value::from(prompt)
    );
    for _ in 0..2 {
        let (st, b) = http(s.port, "POST", "/v1/completions", Some(key), Some(&body)).unwrap();
        assert_eq!(st, 200, "{b}");
    }
    let deadline = Instant::now() + Duration::from_millis(if expect_hits { 5000 } else { 500 });
    loop {
        let (_, m) = http(s.port, "GET", "/metrics", Some(key), None).unwrap();
        let r = metric(&m, "hearth_prefix_cache_hit_ratio");
        if (expect_hits && r > 0.0) || Instant::now() >= deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn smollm2_served_from_a_config_file() {
    let model = smollm2();
    let port = free_port();
    let file = tmp_file(
        "live.toml",
        &format!(
            "kv_cache_mb = 8\nkv_cache_type = \"q8_0\"\napi_key = \"k-file\"\nthreads = 1\n\
             [[models]]\npath = {}\nalias = \"smollm2\"\n",
            toml::Value::from(model.to_string_lossy().into_owned())
        ),
    );
    // File beats env for the KV type and key; the flag beats the file for the budget; the
    // environment supplies the port and turns prefix caching off.
    let s = start(
        hearth()
            .args(["serve", "--kv-cache-mb", "16", "--config"])
            .arg(&file)
            .env("HEARTH_PORT", port.to_string())
            .env("HEARTH_KV_CACHE_TYPE", "f16")
            .env("HEARTH_KV_CACHE_MB", "4")
            .env("HEARTH_API_KEY", "k-env")
            .env("HEARTH_NO_PREFIX_CACHING", "1"),
        port,
    );
    let (st, _) = http(port, "GET", "/v1/models", None, None).unwrap();
    assert_eq!(st, 401, "the file's api_key must be required");
    let (st, _) = http(port, "GET", "/v1/models", Some("k-env"), None).unwrap();
    assert_eq!(st, 401, "the environment's key must lose to the file's");
    let (st, body) = http(port, "GET", "/v1/models", Some("k-file"), None).unwrap();
    assert_eq!(st, 200);
    assert!(body.contains("\"smollm2\""), "{body}");

    // SmolLM2-135M (its config.json): 30 layers, 3 KV heads of 64 dims, so a K or V row is
    // 192 values. ggml's Q8_0 stores 32 values in 34 bytes: 6 * 34 = 204 bytes a row, and a
    // 16-token block of K and V over 30 layers is 30 * 2 * 16 * 204 = 195840 bytes. 16 MiB
    // holds floor(16777216 / 195840) = 85 blocks. (f16 would give 45; 8 MiB of q8_0, 42.)
    let (_, m) = http(port, "GET", "/metrics", Some("k-file"), None).unwrap();
    assert_eq!(metric(&m, "hearth_kv_cache_blocks_total"), 85.0);
    assert_eq!(
        repeat_prompt_hit_ratio(&s, "k-file", false),
        0.0,
        "prefix caching must be off"
    );
    drop(s);

    // Same environment, but the flag turns prefix caching back on: the repeat hits.
    let port = free_port();
    let s = start(
        hearth()
            .args([
                "serve",
                "--no-prefix-caching=false",
                "--port",
                &port.to_string(),
                "--config",
            ])
            .arg(&file)
            .env("HEARTH_NO_PREFIX_CACHING", "1"),
        port,
    );
    let (_, m) = http(port, "GET", "/metrics", Some("k-file"), None).unwrap();
    // 8 MiB from the file: floor(8388608 / 195840) = 42.
    assert_eq!(metric(&m, "hearth_kv_cache_blocks_total"), 42.0);
    assert!(
        repeat_prompt_hit_ratio(&s, "k-file", true) > 0.0,
        "prefix caching must be on"
    );
}

/// `GET path` as a browser asks for a page: (status, headers and body).
fn browser_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAccept: text/html\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp)
}

#[test]
fn web_ui_address_is_printed_and_no_ui_turns_it_off() {
    let model = smollm2();
    let port = free_port();
    let mut s = start(
        hearth()
            .args(["serve", "--threads", "1", "--kv-cache-mb", "8", "--port"])
            .arg(port.to_string())
            .arg(&model),
        port,
    );
    let (st, resp) = browser_get(port, "/");
    assert_eq!(st, 200, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-security-policy"),
        "{resp}"
    );
    assert!(resp.contains("<html") || resp.contains("<!doctype") || resp.contains("<!DOCTYPE"));
    // The API's 404s stay JSON.
    let (st, resp) = browser_get(port, "/v1/nope");
    assert_eq!(st, 404);
    assert!(resp.contains("\"error\""), "{resp}");
    let _ = s.child.kill();
    let _ = s.child.wait();
    let mut err = String::new();
    s.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains(&format!("Web UI: http://127.0.0.1:{port}/")),
        "{err}"
    );

    let port = free_port();
    let mut s = start(
        hearth()
            .args(["serve", "--threads", "1", "--kv-cache-mb", "8", "--port"])
            .arg(port.to_string())
            .arg(&model)
            .env("HEARTH_NO_UI", "1"),
        port,
    );
    let (st, resp) = browser_get(port, "/");
    assert_eq!(st, 404, "{resp}");
    assert!(resp.contains("\"error\""), "{resp}");
    let _ = s.child.kill();
    let _ = s.child.wait();
    let mut err = String::new();
    s.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("Web UI:"), "{err}");
}

#[test]
fn models_dir_and_no_model_admin_reach_the_admin_api() {
    let model = smollm2();
    let dir = model.parent().unwrap().to_path_buf();

    // A directory that does not exist fails before any model is loaded, naming its source.
    let o = run(hearth()
        .args(["serve", "--models-dir", "/nonexistent/hearth-models"])
        .arg(&model));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("/nonexistent/hearth-models") && e.contains("--models-dir"),
        "{e}"
    );

    // From the environment: the admin API lists the directory and loads the file from it by
    // its name; the new id then answers a chat.
    let port = free_port();
    let s = start(
        hearth()
            .args(["serve", "--threads", "1", "--kv-cache-mb", "8", "--port"])
            .arg(port.to_string())
            .arg(&model)
            .args(["--alias", "smollm2"])
            .env("HEARTH_MODELS_DIR", &dir),
        port,
    );
    let (st, body) = http(port, "GET", "/admin/v1/models", None, None).unwrap();
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["management"]["enabled"], true, "{body}");
    assert_eq!(
        v["management"]["models_dir"].as_str().map(Path::new),
        Some(dir.as_path()),
        "{body}"
    );
    assert_eq!(v["default"], "smollm2", "{body}");
    let load = format!(r#"{{"id":"again","path":"{SMOLLM2}"}}"#);
    let (st, body) = http(port, "POST", "/admin/v1/models", None, Some(&load)).unwrap();
    assert_eq!(st, 201, "{body}");
    let chat = r#"{"model":"again","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#;
    let (st, body) = http(port, "POST", "/v1/chat/completions", None, Some(chat)).unwrap();
    assert_eq!(st, 200, "{body}");
    drop(s);

    // --no-model-admin: the list stays readable, changes are refused.
    let port = free_port();
    let _s = start(
        hearth()
            .args([
                "serve",
                "--threads",
                "1",
                "--kv-cache-mb",
                "8",
                "--no-model-admin",
            ])
            .args(["--port", &port.to_string(), "--models-dir"])
            .arg(&dir)
            .arg(&model),
        port,
    );
    let (st, body) = http(port, "GET", "/admin/v1/models", None, None).unwrap();
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["management"]["enabled"], false, "{body}");
    let (st, body) = http(port, "POST", "/admin/v1/models", None, Some(&load)).unwrap();
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("model_admin_disabled"), "{body}");
}
