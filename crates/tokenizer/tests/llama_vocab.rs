//! llama.cpp's tokenizer test vectors (models/ggml-vocab-*.gguf + .inp/.out), run the way
//! tests/test-tokenizer-0.cpp runs them: `add_special = false`, `parse_special = false`,
//! inputs separated by "\n__ggml_vocab_test__\n", expected ids space-separated per line.

mod common;

use hearth_formats::GgufFile;
use hearth_tokenizer::Tokenizer;

struct Outcome {
    passed: usize,
    total: usize,
    failures: Vec<String>,
}

fn run(name: &str) -> Outcome {
    let dir = common::llama_src().join("models");
    let vocab = dir.join(format!("ggml-vocab-{name}.gguf"));
    let g = GgufFile::open(&vocab).unwrap_or_else(|e| panic!("{e}"));
    let tok = Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{e}"));
    let inp = std::fs::read(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let inp = String::from_utf8(inp).expect("test inputs are UTF-8");

    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(i) => {
                inputs.push(&inp[pos..pos + i]);
                pos += i + sep.len();
            }
            None => {
                inputs.push(&inp[pos..]);
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: input/output count mismatch"
    );

    let mut o = Outcome {
        passed: 0,
        total: inputs.len(),
        failures: Vec::new(),
    };
    for (s, want) in inputs.iter().zip(&outputs) {
        let got = tok.encode(s, false, false);
        if &got == want {
            o.passed += 1;
        } else {
            o.failures
                .push(format!("{s:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    eprintln!("vocab {name}: {}/{} passed", o.passed, o.total);
    o
}

fn check(name: &str) {
    let o = run(name);
    assert!(
        o.failures.is_empty(),
        "vocab {name}: {}/{} passed; failures:\n{}",
        o.passed,
        o.total,
        o.failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn vocab_llama_spm() {
    check("llama-spm");
}
#[test]
fn vocab_llama_bpe() {
    check("llama-bpe");
}
#[test]
fn vocab_phi_3() {
    check("phi-3");
}
#[test]
fn vocab_qwen2() {
    check("qwen2");
}
#[test]
fn vocab_qwen35() {
    check("qwen35");
}
#[test]
fn vocab_gpt_2() {
    check("gpt-2");
}
#[test]
fn vocab_deepseek_llm() {
    check("deepseek-llm");
}
#[test]
fn vocab_deepseek_coder() {
    check("deepseek-coder");
}
#[test]
fn vocab_starcoder() {
    check("starcoder");
}
#[test]
fn vocab_falcon() {
    check("falcon");
}
#[test]
fn vocab_command_r() {
    check("command-r");
}
#[test]
fn vocab_mpt() {
    check("mpt");
}
#[test]
fn vocab_refact() {
    check("refact");
}
#[test]
fn vocab_gemma_4() {
    check("gemma-4");
}
