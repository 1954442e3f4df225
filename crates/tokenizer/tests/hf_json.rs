//! `Tokenizer::from_tokenizer_json`: a tokenizer.json equivalent to SmolLM2's GGUF
//! tokenizer (byte-level BPE, digits split individually, GPT-2 regex) is written from the
//! GGUF metadata, and its encodings are checked against llama.cpp's golden ids.
#![cfg(feature = "hf")]

mod common;

use hearth_formats::{GgufFile, Value};
use hearth_tokenizer::{StreamDecoder, Tokenizer};
use serde_json::json;

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn write_tokenizer_json(dir: &std::path::Path) {
    let g = GgufFile::open(common::model(SMOL)).unwrap();
    let arr = |k: &str| g.get(k).and_then(Value::as_array).unwrap().to_vec();
    let tokens: Vec<String> = arr("tokenizer.ggml.tokens")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let types: Vec<i64> = arr("tokenizer.ggml.token_type")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let merges: Vec<String> = arr("tokenizer.ggml.merges")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<_> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types[*i] == 3)
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string(&spec).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>"}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("generation_config.json"),
        json!({"eos_token_id": [2, 0]}).to_string(),
    )
    .unwrap();
}

#[test]
fn tokenizer_json_matches_llama_cpp_on_smollm2() {
    let dir = std::env::temp_dir().join(format!("hearth-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_tokenizer_json(&dir);
    let tok = Tokenizer::from_tokenizer_json(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tok.model_kind(), "hf-bpe");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.eos(), Some(2));
    assert!(!tok.add_bos());
    assert!(tok.is_eog(2) && tok.is_eog(0));

    let gold: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/golden/SmolLM2-135M-Instruct.Q4_1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut failures = Vec::new();
    let cases = gold["cases"].as_array().unwrap();
    for c in cases {
        let prompt = c["prompt"].as_str().unwrap();
        let (add, parse) = (
            c["add_special"].as_bool().unwrap(),
            c["parse_special"].as_bool().unwrap(),
        );
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(prompt, add, parse);
        if got != want {
            failures.push(format!(
                "{prompt:?} add={add} parse={parse}\n  want {want:?}\n  got  {got:?}"
            ));
            continue;
        }
        if !add {
            // Token bytes reassemble the text; decode agrees.
            let bytes: Vec<u8> = got.iter().flat_map(|&i| tok.token_bytes(i)).collect();
            assert_eq!(bytes, prompt.as_bytes());
            assert_eq!(tok.decode(&got, false), prompt);
        }
    }
    eprintln!(
        "tokenizer.json: {}/{} llama.cpp cases match",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let ids = tok.encode("emoji 🦙 中文", false, false);
    let mut d = StreamDecoder::new(true);
    let mut s: String = ids.iter().map(|&i| d.push(&tok, i)).collect();
    s.push_str(&d.flush());
    assert_eq!(s, "emoji 🦙 中文");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_tokenizer_json_is_a_clear_error() {
    let e = Tokenizer::from_tokenizer_json("/nonexistent/dir/tokenizer.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/dir/tokenizer.json"), "{e}");
}
