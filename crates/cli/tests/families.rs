//! `hearth info` and `hearth run` through the real binary on a GGUF of every model family:
//! the tiny random-weight files of scripts/oracle/gen_tiny.py and gen_tiny_glm.py (written by
//! scripts/test.sh before `cargo test`). Their logits and greedy tokens are checked against
//! llama.cpp and transformers in crates/engine/tests/tiny_models.rs; this test checks that the
//! CLI loads each family, describes it, and generates with its chat template and stop tokens.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny(name: &str) -> PathBuf {
    let p = std::env::var_os("HEARTH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth"))
        .join("tiny")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: scripts/test.sh writes it (scripts/oracle/gen_tiny.py and \
         gen_tiny_glm.py `models`)",
        p.display()
    );
    p
}

fn hearth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HEARTH_") && k != "HEARTH_CACHE" {
            c.env_remove(k);
        }
    }
    c
}

fn run(args: &[&str], model: &PathBuf) -> (String, String) {
    let out = hearth().args(args).arg(model).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "hearth {args:?} {}:\n{e}",
        model.display()
    );
    (o, e)
}

#[test]
fn info_and_run_work_on_every_family() {
    for arch in [
        "qwen", "qwen2", "qwen3", "qwen3moe", "chatglm", "glm4", "gpt-oss",
    ] {
        let model = tiny(&format!("tiny-{arch}-f32.gguf"));
        let (info, _) = run(&["info"], &model);
        assert!(
            info.contains(&format!("architecture:   {arch}")),
            "{arch}: {info}"
        );
        let g: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join(format!("tests/golden/tiny/{arch}-f32.json")))
                .unwrap(),
        )
        .unwrap();
        let prompt = g["prompts"][0]["text"].as_str().unwrap();
        let (text, _) = run(
            &[
                "run",
                "--raw",
                "--temperature",
                "0",
                "--threads",
                "2",
                "--max-tokens",
                "8",
                "--prompt",
                prompt,
            ],
            &model,
        );
        assert!(!text.trim().is_empty(), "{arch}: no text generated");
        // Greedy is deterministic: the same command gives the same text.
        let (again, _) = run(
            &[
                "run",
                "--raw",
                "--temperature",
                "0",
                "--threads",
                "1",
                "--max-tokens",
                "8",
                "--prompt",
                prompt,
            ],
            &model,
        );
        assert_eq!(text, again, "{arch}: 1 thread vs 2");
        // Through the chat template (the file's, or the built-in one for the family).
        run(
            &[
                "run",
                "--temperature",
                "0",
                "--max-tokens",
                "4",
                "--system",
                "Be brief.",
                "--prompt",
                "Hello",
            ],
            &model,
        );
    }
}

/// `hearth info` names the file type that llama.cpp's quantize wrote (`general.file_type`),
/// which no tensor type says for a mixed file: the two real models of scripts/fetch-models.sh.
#[test]
fn info_names_the_file_type() {
    let models = std::env::var_os("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/models")
        });
    for (file, want) in [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("gemma-3-270m-Q4_K_M.gguf", "Q4_K_M"),
    ] {
        let model = models.join(file);
        assert!(
            model.exists(),
            "{} is missing: run scripts/fetch-models.sh",
            model.display()
        );
        let (info, _) = run(&["info"], &model);
        assert!(
            info.contains(&format!("file type:      {want}\n")),
            "{file}: {info}"
        );
    }
}
