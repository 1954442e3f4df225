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
