//! Perplexity on tests/data/ppl.txt within 1% of llama-perplexity's, both models.
//! Golden: tests/golden/perplexity.json (llama-perplexity -c 256, methodology recorded there and
//! replicated here: whole text tokenized once, chunks of 256 tokens from an empty cache, BOS
//! replacing each chunk's first token when the vocab adds BOS, positions 128..254 scored).

use hearth_engine::sample::logprobs;
use hearth_engine::{Generator, LoadedModel};
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(name: &str) {
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/golden/perplexity.json")).unwrap(),
    )
    .unwrap();
    let m = &g["models"][name];
    let dir = std::env::var_os("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/models")
        });
    let path = dir.join(m["model"]["file"].as_str().unwrap());
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    let lm = LoadedModel::load(&path).unwrap();
    let mut text = std::fs::read_to_string(root().join("tests/data/ppl.txt")).unwrap();
    if text.ends_with('\n') {
        text.pop();
    }
    let toks = lm.tokenizer.encode(&text, true, false);
    assert_eq!(
        toks.len() as u64,
        m["n_tokens"].as_u64().unwrap(),
        "{name}: token count differs from llama.cpp's"
    );
    let n_ctx = g["methodology"]["n_ctx"].as_u64().unwrap() as usize;
    let first = n_ctx / 2;
    let nv = lm.model.info().n_vocab;
    let mut gen = Generator::new(&lm, 2);
    let (mut nll, mut count) = (0f64, 0usize);
    for c in 0..toks.len() / n_ctx {
        let mut chunk = toks[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if lm.tokenizer.add_bos() {
            chunk[0] = lm.tokenizer.bos().unwrap();
        }
        gen.reset();
        let logits = gen.prefill(&chunk, true).unwrap();
        for i in first..n_ctx - 1 {
            let (lp, _) = logprobs(&logits[i * nv..(i + 1) * nv], chunk[i + 1], 0);
            nll -= lp as f64;
            count += 1;
        }
    }
    let ppl = (nll / count as f64).exp();
    let want = m["final_ppl"].as_f64().unwrap();
    let rel = (ppl / want - 1.0).abs();
    eprintln!(
        "{name}: perplexity {ppl:.4} vs llama-perplexity {want:.4} ({:+.3}%)",
        (ppl / want - 1.0) * 100.0
    );
    assert!(
        rel < 0.01,
        "{name}: perplexity {ppl:.4} not within 1% of llama.cpp's {want:.4}"
    );
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    check("smollm2");
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    check("gemma3");
}
