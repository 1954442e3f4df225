//! Load-time errors name the file and what is wrong.

mod common;

use hearth_formats::GgufFile;
use hearth_tokenizer::{Tokenizer, TokenizerError};

/// A GGUF v3 file with only string / string-array metadata.
fn write_gguf(path: &std::path::Path, kv: &[(&str, Result<&str, &[&str]>)]) {
    let mut b = Vec::new();
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend_from_slice(&(x.len() as u64).to_le_bytes());
        b.extend_from_slice(x.as_bytes());
    };
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        s(&mut b, k);
        match v {
            Ok(x) => {
                b.extend_from_slice(&8u32.to_le_bytes());
                s(&mut b, x);
            }
            Err(items) => {
                b.extend_from_slice(&9u32.to_le_bytes());
                b.extend_from_slice(&8u32.to_le_bytes());
                b.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for x in *items {
                    s(&mut b, x);
                }
            }
        }
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn unknown_model_lists_supported_ones() {
    // llama.cpp's BERT (WordPiece) vocabulary is not one we support.
    let p = common::llama_src().join("models/ggml-vocab-bert-bge.gguf");
    let e = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap_err();
    assert!(matches!(e, TokenizerError::UnsupportedModel { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("ggml-vocab-bert-bge.gguf") && msg.contains("'bert'"),
        "{msg}"
    );
    assert!(
        msg.contains("'llama'") && msg.contains("'gpt2'") && msg.contains("'gemma4'"),
        "{msg}"
    );
}

#[test]
fn unknown_pre_tokenizer_is_reported() {
    let p = std::env::temp_dir().join(format!("hearth-tok-pre-{}.gguf", std::process::id()));
    write_gguf(
        &p,
        &[
            ("tokenizer.ggml.model", Ok("gpt2")),
            ("tokenizer.ggml.pre", Ok("kimi-k2")),
            ("tokenizer.ggml.tokens", Err(&["a", "b", "ab"])),
            ("tokenizer.ggml.merges", Err(&["a b"])),
        ],
    );
    let e = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap_err();
    let _ = std::fs::remove_file(&p);
    assert!(matches!(e, TokenizerError::UnsupportedPre { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("kimi-k2") && msg.contains("qwen2") && msg.contains("smollm"),
        "{msg}"
    );
}

#[test]
fn missing_metadata_is_reported() {
    let p = std::env::temp_dir().join(format!("hearth-tok-missing-{}.gguf", std::process::id()));
    write_gguf(
        &p,
        &[
            ("tokenizer.ggml.model", Ok("gpt2")),
            ("tokenizer.ggml.tokens", Err(&["a"])),
        ],
    );
    let e = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap_err();
    let _ = std::fs::remove_file(&p);
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");
}

/// A toy byte-level BPE built from scratch: merges apply by rank, and a vocabulary
/// without GPT-2 byte tokens silently drops unknown bytes (llama.cpp does the same).
#[test]
fn tiny_bpe_vocab() {
    let p = std::env::temp_dir().join(format!("hearth-tok-tiny-{}.gguf", std::process::id()));
    write_gguf(
        &p,
        &[
            ("tokenizer.ggml.model", Ok("gpt2")),
            ("tokenizer.ggml.pre", Ok("gpt-2")),
            (
                "tokenizer.ggml.tokens",
                Err(&["a", "b", "ab", "Ġ", "Ġab", "abab"]),
            ),
            ("tokenizer.ggml.merges", Err(&["a b", "Ġ ab", "ab ab"])),
        ],
    );
    let t = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap();
    let _ = std::fs::remove_file(&p);
    assert_eq!(t.encode("abab ab", false, false), vec![5, 4]);
    assert_eq!(t.encode("ba", false, false), vec![1, 0]);
    assert_eq!(t.encode("abc", false, false), vec![2]); // 'c' has no token
    assert_eq!(t.decode(&[5, 4], false), "abab ab");
}
