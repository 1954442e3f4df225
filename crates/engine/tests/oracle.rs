//! The engine against llama.cpp on the two real models.
//!
//! Golden files: tests/golden/{smollm2,gemma3}.json, produced by scripts/oracle/gen_golden.py
//! (llama.cpp from the llama-cpp-python 0.3.36 sdist, through our driver scripts/oracle/logits.cpp).
//! Models: $HEARTH_MODELS (default ~/.cache/hearth/models), fetched by scripts/fetch-models.sh.
//!
//! Targets (issue: engine): per-position top-1 agrees on >= 99% of prompt positions; 64-token
//! greedy continuations identical for >= 9 of 10 prompts.

use hearth_engine::sample::{argmax, logprobs};
use hearth_engine::{Generator, LoadedModel};
use serde_json::Value;
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    std::env::var_os("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/models")
        })
}

fn golden(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(format!("{name}.json"));
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

fn load(file: &str) -> LoadedModel {
    let p = models_dir().join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    LoadedModel::load(&p).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The two models run one after the other: each uses both cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_model(name: &str) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let g = golden(name);
    let lm = load(g["model"]["file"].as_str().unwrap());
    let n_vocab = lm.model.info().n_vocab;
    let mut gen = Generator::new(&lm, 2);
    let (mut agree, mut total, mut max_lp_err) = (0usize, 0usize, 0f32);
    let mut tokenizer_agree = 0;
    let mut greedy_same = 0;
    let prompts = g["prompts"].as_array().unwrap();
    for p in prompts {
        let id = p["id"].as_str().unwrap();
        let toks = ids(&p["prompt_tokens"]);
        if lm.tokenizer.encode(p["text"].as_str().unwrap(), true, true) == toks {
            tokenizer_agree += 1;
        }
        // Per-position top-1 over the prompt, all logits from one pass.
        gen.cached.clear();
        gen.kv.truncate(0);
        let logits = gen.prefill(&toks, true).unwrap().to_vec();
        let top = p["prompt_top"].as_array().unwrap();
        assert_eq!(logits.len(), toks.len() * n_vocab);
        let mut mism = Vec::new();
        for (i, t) in top.iter().enumerate() {
            let row = &logits[i * n_vocab..(i + 1) * n_vocab];
            let want = t["ids"][0].as_u64().unwrap() as u32;
            let got = argmax(row);
            total += 1;
            if got == want {
                agree += 1;
                let (lp, _) = logprobs(row, want, 0);
                max_lp_err = max_lp_err.max((lp - t["logprobs"][0].as_f64().unwrap() as f32).abs());
            } else {
                mism.push((i, want, got));
            }
        }
        if !mism.is_empty() {
            eprintln!("{name}/{id}: top-1 differs at {mism:?}");
        }
        // Greedy continuation from an empty cache, as the oracle ran it.
        gen.cached.clear();
        gen.kv.truncate(0);
        let want = ids(&p["greedy"]["ids"]);
        let out = gen
            .generate(
                &toks,
                &hearth_engine::SamplingParams::greedy(),
                want.len(),
                &[],
                |_| true,
            )
            .unwrap();
        // Our generator includes the EOG token it stopped at; the oracle records it separately (eog_id).
        let mut got = out.tokens.clone();
        if let Some(e) = p["greedy"]["eog_id"].as_u64() {
            if got.last() == Some(&(e as u32)) {
                got.pop();
            }
        }
        if got == want {
            greedy_same += 1;
        } else {
            let first = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            eprintln!(
                "{name}/{id}: greedy continuation diverges at token {first} of {}",
                want.len()
            );
        }
    }
    let rate = agree as f64 / total as f64;
    eprintln!(
        "{name}: top-1 agreement {agree}/{total} ({:.2}%), max |logprob(top-1) - llama.cpp| {max_lp_err:.4}, greedy identical {greedy_same}/{}, tokenizer agrees on {tokenizer_agree}/{}",
        rate * 100.0,
        prompts.len(),
        prompts.len()
    );
    assert!(
        rate >= 0.99,
        "{name}: top-1 agreement {:.2}% < 99%",
        rate * 100.0
    );
    assert!(
        greedy_same * 10 >= prompts.len() * 9,
        "{name}: only {greedy_same}/{} greedy continuations identical",
        prompts.len()
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model("smollm2");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model("gemma3");
}
