//! Locating the oracle files (llama.cpp source tree, models) for the tests.
#![allow(dead_code)]

use std::path::PathBuf;

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

/// llama.cpp source tree (vocab GGUFs and their .inp/.out test vectors live in models/).
pub fn llama_src() -> PathBuf {
    let p = std::env::var("HEARTH_LLAMA_CPP_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            home().join(".cache/hearth/oracle/llama-cpp-python-0.3.36/vendor/llama.cpp")
        });
    assert!(
        p.join("models").is_dir(),
        "llama.cpp source not found at {} (set HEARTH_LLAMA_CPP_SRC or run scripts/fetch-llama-cpp.sh)",
        p.display()
    );
    p
}

/// Directory with the real test models.
pub fn models_dir() -> PathBuf {
    let p = std::env::var("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cache/hearth/models"));
    assert!(
        p.is_dir(),
        "models not found at {} (set HEARTH_MODELS or run scripts/fetch-models.sh)",
        p.display()
    );
    p
}

pub fn model(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(
        p.is_file(),
        "model {} missing (run scripts/fetch-models.sh)",
        p.display()
    );
    p
}
