//! `hearth info` and `hearth run --raw` on Hugging Face directories, through the real binary.
//! Models: the tiny directories of scripts/oracle/gen_tiny_hf.py; expected text: transformers'
//! greedy continuation decoded by its tokenizer (tests/golden/tiny_hf/*.json, `greedy_text`).

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&py)
            .arg(repo().join("scripts/oracle/gen_tiny_hf.py"))
            .arg("models")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {py}: {e}"));
        assert!(
            out.status.success(),
            "gen_tiny_hf.py models failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::env::var_os("HEARTH_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth"))
            .join("tiny_hf")
    })
    .clone()
}

fn hearth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HEARTH_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn info_describes_a_directory() {
    let dir = models_dir().join("tiny-qwen2-f32");
    let out = hearth().arg("info").arg(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Hugging Face directory (Qwen2ForCausalLM, 3 safetensors files)"),
        "{text}"
    );
    assert!(text.contains("architecture:   qwen2"), "{text}");
    assert!(text.contains("layers:         2"), "{text}");
    assert!(text.contains("chat template:"), "{text}");
}

#[test]
fn run_raw_matches_transformers_greedy_text() {
    for name in ["tiny-llama-f32", "tiny-qwen3-f32"] {
        let dir = models_dir().join(name);
        let g: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join(format!("tests/golden/tiny_hf/{name}.json")))
                .unwrap(),
        )
        .unwrap();
        for p in g["prompts"].as_array().unwrap() {
            let want = p["greedy_text"].as_str().unwrap();
            let n = p["greedy"].as_array().unwrap().len();
            let out = hearth()
                .args(["run", "--raw", "--temperature", "0", "--threads", "2"])
                .args(["--max-tokens", &n.to_string()])
                .arg("--prompt")
                .arg(p["text"].as_str().unwrap())
                .arg(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                got.strip_suffix('\n').unwrap_or(&got),
                want,
                "{name}/{}",
                p["id"]
            );
        }
    }
}

#[test]
fn a_directory_without_weights_is_an_error_naming_it() {
    let tmp = std::env::temp_dir().join(format!("hearth-cli-hf-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(
        models_dir().join("tiny-llama-f32/config.json"),
        tmp.join("config.json"),
    )
    .unwrap();
    let out = hearth().arg("info").arg(&tmp).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&tmp.display().to_string()), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}

fn read_golden(rel: &str) -> Value {
    let p = repo().join(rel);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// `hearth template` on a gpt-oss model prints the harmony prompt the server renders, with
/// `--reasoning-effort` and `--tools`: compared with the `openai-harmony` reference renderer's
/// output (tests/golden/harmony/reference_render.json, from crates/harmony/tests/refgen) for
/// its tool-schema cases and for every conversation without an assistant tool call (the server
/// puts a call's recipient after the channel, as the model writes it; the reference puts it in
/// the header, see `hearth_harmony::RecipientPlacement`). The conversations' messages, tools and
/// efforts are the chat-template golden's (tests/golden/harmony/gpt_oss_template.json).
#[test]
fn template_renders_harmony_with_effort_and_tools() {
    let model = models_dir().join("tiny-gpt-oss-mxfp4");
    let reference = read_golden("tests/golden/harmony/reference_render.json");
    let cases = read_golden("tests/golden/harmony/gpt_oss_template.json");
    let date = reference["current_date"].as_str().unwrap();
    let tmp = std::env::temp_dir().join(format!("hearth-template-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let render = |name: &str, messages: &Value, tools: Option<&Value>, effort: &str| {
        let m = tmp.join(format!("{name}.messages.json"));
        std::fs::write(&m, messages.to_string()).unwrap();
        let mut cmd = hearth();
        cmd.arg("template").arg(&model).arg("--messages").arg(&m);
        cmd.args(["--reasoning-effort", effort, "--current-date", date]);
        if let Some(t) = tools {
            let p = tmp.join(format!("{name}.tools.json"));
            std::fs::write(&p, t.to_string()).unwrap();
            cmd.arg("--tools").arg(p);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut efforts = std::collections::BTreeSet::new();
    let mut with_tools = 0;
    for conv in reference["conversations"].as_array().unwrap() {
        let name = conv["name"].as_str().unwrap();
        let case = cases["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        let messages = &case["messages"];
        if messages
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.get("tool_calls").is_some())
        {
            continue;
        }
        let effort = case["reasoning_effort"].as_str().unwrap();
        let tools = case.get("tools").filter(|t| !t.is_null());
        let got = render(name, messages, tools, effort);
        assert_eq!(got, conv["expected"].as_str().unwrap(), "{name}");
        efforts.insert(effort.to_string());
        with_tools += tools.is_some() as usize;
    }
    for case in reference["tool_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let hi = serde_json::json!([{"role": "user", "content": "Hi"}]);
        let got = render(name, &hi, Some(&case["tools"]), "medium");
        assert_eq!(got, case["expected"].as_str().unwrap(), "{name}");
        with_tools += 1;
    }
    assert_eq!(
        efforts.len(),
        3,
        "low, medium and high all compared: {efforts:?}"
    );
    assert!(with_tools >= 5, "only {with_tools} cases with tools");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `--quantize` reaches the loader from `hearth run` (its accuracy against transformers is
/// crates/engine/tests/hf_dir.rs's `quantize_at_load_matches_transformers`), and a type it
/// does not know is refused with the list of those it does.
#[test]
fn run_quantize_flag_quantizes_at_load() {
    let dir = models_dir().join("tiny-llama-f32");
    let out = hearth()
        .args(["run", "--raw", "--temperature", "0", "--threads", "2"])
        .args([
            "--max-tokens",
            "4",
            "--prompt",
            "Hello",
            "--quantize",
            "q8_0",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("float weight matrices quantized to q8_0 at load"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    let out = hearth()
        .args(["run", "--prompt", "x", "--quantize", "q3_k"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("q3_k") && err.contains("supported: q8_0, q4_k, mxfp4"),
        "{err}"
    );
}
