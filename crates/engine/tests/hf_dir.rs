//! Hugging Face model directories (config.json + safetensors + tokenizer.json) against
//! transformers, on tiny random-weight models.
//!
//! Models: written by scripts/oracle/gen_tiny_hf.py (numpy-seeded weights, save_pretrained)
//! into $HEARTH_CACHE/tiny_hf (default ~/.cache/hearth/tiny_hf); this test runs the script when
//! they are missing, and the script checks their sha256 against the goldens
//! (tests/golden/tiny_hf/{model}.json: transformers' token ids, top-5 log-probs at every
//! position of prompt + greedy continuation, and its greedy continuation, all in float32).
//!
//! Covered: llama (untied output, BOS from the post-processor, Q/K in Hugging Face row order so
//! RoPE must rotate halves), llama with BF16 weights, qwen2 (biases, tied output, 3 shards +
//! index.json), qwen3 (QK-norm, head_dim ≠ hidden/heads), gemma3 (5 sliding + 1 global layers,
//! window 8 with 68-token prompts, (1 + w) norms), qwen3moe (8 experts top-2, one tensor per
//! expert matrix as hub checkpoints store them), gpt-oss as openai/gpt-oss-20b ships (MXFP4
//! experts as `*_blocks` / `*_scales`, BF16 elsewhere, YaRN with `truncate: false`).

use hearth_engine::sample::{argmax, logprobs};
use hearth_engine::weights::Quantize;
use hearth_engine::{Generator, LoadedModel, SamplingParams};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    static DONE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(&py)
            .arg(repo().join("scripts/oracle/gen_tiny_hf.py"))
            .arg("models")
            .output()
            .map_err(|e| format!("cannot run {py}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/oracle/gen_tiny_hf.py models failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let cache = std::env::var_os("HEARTH_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth"));
        Ok(cache.join("tiny_hf"))
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn golden(name: &str) -> Value {
    let p = repo().join(format!("tests/golden/tiny_hf/{name}.json"));
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Top-1 must agree wherever transformers' top-2 margin exceeds this (log-prob units).
const CLEAR: f32 = 0.05;

/// MoE goldens carry, per layer and position, transformers' k-th minus (k+1)-th largest router
/// logit. Top-k routing is discontinuous: where that gap is below this, float rounding alone
/// (our F16 K/V moves these router logits by up to ~5e-4 on tiny-qwen3moe) may pick another
/// expert, so the position is reported but not held to the bound.
const ROUTE_TIE: f64 = 1e-3;

/// Per position of a prompt's teacher-forced sequence: could a routing near-tie have changed
/// its logits? A tie in the last MoE layer affects only its own position; one in an earlier
/// layer also every later position (they attend to the changed state).
fn routing_fragile(p: &Value, n: usize) -> Vec<bool> {
    let mut fragile = vec![false; n];
    let Some(layers) = p["router_margins"].as_array() else {
        return fragile;
    };
    for (l, m) in layers.iter().enumerate() {
        let last = l + 1 == layers.len();
        for (i, v) in m.as_array().unwrap().iter().enumerate().take(n) {
            if v.as_f64().unwrap() < ROUTE_TIE {
                let end = if last { i + 1 } else { n };
                fragile[i..end].iter_mut().for_each(|f| *f = true);
            }
        }
    }
    fragile
}

struct Report {
    max_dlp: f32,
    positions: usize,
    top1_agree: usize,
    greedy_identical: usize,
    n_prompts: usize,
    /// Positions left out of the bound by `routing_fragile`, and the largest deviation there.
    fragile: usize,
    fragile_max_dlp: f32,
    /// Per position clear of routing near-ties: max |Δlogprob| over transformers' top-5.
    row_errs: Vec<f32>,
}

impl Report {
    fn quantile(&self, q: f64) -> f32 {
        let mut v = self.row_errs.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * q).round() as usize]
    }
}

fn check(name: &str, bound: f32) -> Report {
    check_with(name, bound, CLEAR, None)
}

/// `check` with top-1 (and greedy) agreement required only where transformers' top-1/top-2
/// margin exceeds `clear`.
fn check_with(name: &str, bound: f32, clear: f32, quantize: Option<Quantize>) -> Report {
    let dir = models_dir().join(name);
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let g = golden(name);
    let lm = LoadedModel::load_quantized(&dir, quantize)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(lm.model.info().arch, g["arch"].as_str().unwrap(), "{name}");
    let n_vocab = lm.model.info().n_vocab;
    let eos = ids(&g["eos_ids"]);
    for e in &eos {
        assert!(lm.tokenizer.is_eog(*e), "{name}: {e} should end generation");
    }
    let mut gen = Generator::new(&lm, 2);
    let mut rep = Report {
        max_dlp: 0.0,
        positions: 0,
        top1_agree: 0,
        greedy_identical: 0,
        n_prompts: 0,
        fragile: 0,
        fragile_max_dlp: 0.0,
        row_errs: Vec::new(),
    };
    let mut failures = Vec::new();
    for p in g["prompts"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        let toks = ids(&p["prompt_tokens"]);
        assert_eq!(
            lm.tokenizer.encode(p["text"].as_str().unwrap(), true, true),
            toks,
            "{name}/{id}: tokenization differs from transformers"
        );
        let greedy = ids(&p["greedy"]);
        let tops: Vec<&Value> = p["top"].as_array().unwrap().iter().collect();
        // Teacher-forced over prompt + transformers' greedy tokens (all but the last, whose
        // logits predict past the continuation).
        let mut seq = toks.clone();
        seq.extend(&greedy[..greedy.len() - 1]);
        assert_eq!(tops.len(), seq.len() + 1, "{name}/{id}: golden rows");
        let fragile = routing_fragile(p, tops.len());
        gen.reset();
        let logits = gen.prefill(&seq, true).unwrap().to_vec();
        for (i, t) in tops[..seq.len()].iter().enumerate() {
            let row = &logits[i * n_vocab..(i + 1) * n_vocab];
            let want = ids(&t["ids"]);
            let lps: Vec<f32> = t["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let mut dlp = 0.0f32;
            for (&tok, &lp) in want.iter().zip(&lps) {
                let (got, _) = logprobs(row, tok, 0);
                dlp = dlp.max((got - lp).abs());
            }
            if fragile[i] {
                rep.fragile += 1;
                rep.fragile_max_dlp = rep.fragile_max_dlp.max(dlp);
            } else {
                rep.max_dlp = rep.max_dlp.max(dlp);
                rep.row_errs.push(dlp);
            }
            rep.positions += 1;
            if argmax(row) == want[0] {
                rep.top1_agree += 1;
            } else if lps[0] - lps[1] > clear && !fragile[i] {
                failures.push(format!(
                    "{id}@{i}: top-1 ours {} vs transformers {} (margin {:.3})",
                    argmax(row),
                    want[0],
                    lps[0] - lps[1]
                ));
            }
        }
        // Free-running greedy decoding, as transformers ran it.
        gen.reset();
        let out = gen
            .generate(&toks, &SamplingParams::greedy(), greedy.len(), &[], |_| {
                true
            })
            .unwrap();
        let margin = |t: &Value| {
            (t["logprobs"][0].as_f64().unwrap() - t["logprobs"][1].as_f64().unwrap()) as f32
        };
        // Step j is decided by row toks.len() - 1 + j; past a near-tie the two may diverge.
        let robust = tops[toks.len() - 1..]
            .iter()
            .zip(&fragile[toks.len() - 1..])
            .position(|(t, &f)| margin(t) < clear || f)
            .unwrap_or(greedy.len())
            .min(greedy.len());
        let same = out
            .tokens
            .iter()
            .zip(&greedy)
            .take_while(|(a, b)| a == b)
            .count();
        if out.tokens == greedy {
            rep.greedy_identical += 1;
        } else if same < robust {
            failures.push(format!(
                "{id}: greedy ours {:?} vs transformers {greedy:?}",
                out.tokens
            ));
        }
        rep.n_prompts += 1;
    }
    eprintln!(
        "{name}: max |dlogprob| vs transformers {:.5} (median {:.5}, p90 {:.5}) over top-5 of {} positions, top-1 {}/{}, greedy identical {}/{}",
        rep.max_dlp, rep.quantile(0.5), rep.quantile(0.9), rep.positions, rep.top1_agree, rep.positions, rep.greedy_identical, rep.n_prompts
    );
    if rep.fragile > 0 {
        eprintln!(
            "{name}: {} positions after a routing near-tie (router logit gap < {ROUTE_TIE}) left out of the bound; max |dlogprob| there {:.5}",
            rep.fragile, rep.fragile_max_dlp
        );
    }
    // The exemption must stay the exception, or the test would check little.
    if rep.fragile * 4 > rep.positions {
        failures.push(format!(
            "{} of {} positions follow a routing near-tie: pick other prompts or weights",
            rep.fragile, rep.positions
        ));
    }
    if rep.max_dlp > bound {
        failures.push(format!("max |dlogprob| {} > {bound}", rep.max_dlp));
    }
    assert!(failures.is_empty(), "{name}: {failures:#?}");
    rep
}

// Bounds: we keep K/V in F16 and quantize activations to Q8 for F32/F16/BF16 weights where the
// kernels do; transformers computes in float32 throughout.
#[test]
fn llama_f32_matches_transformers() {
    check("tiny-llama-f32", 2e-2);
}

#[test]
fn llama_bf16_matches_transformers() {
    check("tiny-llama-bf16", 2e-2);
}

#[test]
fn qwen2_sharded_matches_transformers() {
    check("tiny-qwen2-f32", 2e-2);
}

#[test]
fn qwen3_matches_transformers() {
    check("tiny-qwen3-f32", 2e-2);
}

#[test]
fn gemma3_matches_transformers() {
    check("tiny-gemma3-f32", 2e-2);
}

/// The per-expert tensors load right and the MoE block matches transformers where routing is
/// decided: max |dlogprob| 0.008 on the 172 of 207 positions clear of routing near-ties. The
/// 1.82 once seen here (long@12) was such a tie, not an engine bug: in the last layer
/// transformers' 2nd and 3rd router logits differ by 1.3e-4 (experts 3 and 6), and F16
/// rounding of K/V moves them by ~2.6e-4, so expert 6 is picked. transformers itself with K/V
/// rounded to F16 picks 6 and gives the same 1.8239, as does llama.cpp with flash attention
/// (F16 or F32 cache); llama.cpp without it happens to round the other way. Such positions are
/// reported, not bounded (`ROUTE_TIE`).
#[test]
fn qwen3moe_per_expert_tensors_match_transformers() {
    check("tiny-qwen3moe-f32", 2e-2);
}

#[test]
fn glm4_matches_transformers() {
    check("tiny-glm4-f32", 2e-2);
}

/// gpt-oss in the released checkpoints' layout. transformers dequantizes the MXFP4 experts
/// (convert_moe_packed_tensors) and runs in float32; we repack them into ggml MXFP4 blocks at
/// open and run the MXFP4 kernels, whose activations are quantized to Q8_0. The weights are
/// exactly transformers' (`gpt_oss_mxfp4_experts_decode_to_transformers_values`), and the same
/// model with BF16 experts is within 0.033 nats; the Q8_0 activations on this random model's
/// heavy-tailed SwiGLU outputs move the log-probs as much as they do for the MXFP4 GGUF in
/// tests/tiny_gpt_oss.rs (there vs transformers: median 0.24, p90 0.45). Measured here: median
/// 0.215, p90 0.473, max 1.69, top-1 188/203. So the bounds are statistical, as there: median
/// < 0.35, p90 < 0.8, top-1 >= 85%, top-1 kept where the margin exceeds 1.5 nats.
#[test]
fn gpt_oss_mxfp4_directory_matches_transformers() {
    let dir = models_dir().join("tiny-gpt-oss-mxfp4");
    {
        let src = hearth_engine::ModelSource::open_hf_dir(&dir).unwrap();
        for (name, dims) in [
            ("blk.0.ffn_gate_exps.weight", [128, 128, 16]),
            ("blk.3.ffn_up_exps.weight", [128, 128, 16]),
            ("blk.2.ffn_down_exps.weight", [128, 128, 16]),
        ] {
            let t = src.tensor_info(name).unwrap_or_else(|| panic!("no {name}"));
            assert_eq!(t.dtype, hearth_engine::formats::GgmlType::MXFP4, "{name}");
            assert_eq!(t.dims, dims, "{name}");
        }
        let q = src.tensor_info("blk.0.attn_q.weight").unwrap();
        assert_eq!(q.dtype, hearth_engine::formats::GgmlType::BF16);
        assert_eq!(src.get_bool("hearth.rope.yarn_truncate"), Some(false));
    }
    let rep = check_with("tiny-gpt-oss-mxfp4", f32::INFINITY, 1.5, None);
    let (median, p90) = (rep.quantile(0.5), rep.quantile(0.9));
    assert!(
        median < 0.35 && p90 < 0.8 && rep.top1_agree * 100 >= rep.positions * 85,
        "tiny-gpt-oss-mxfp4: median {median}, p90 {p90}, top-1 {}/{}",
        rep.top1_agree,
        rep.positions
    );
}

/// The repacked MXFP4 experts decode to exactly the values transformers dequantizes them to:
/// tiny-gpt-oss-bf16 holds those values (what `convert_moe_packed_tensors` computes, exact in
/// BF16) in transformers' unquantized layout, which the loader transposes and splits. Every
/// row of every expert tensor must be identical, so the MXFP4 directory's remaining gap to
/// transformers is the kernels' Q8_0 activations, not the weights.
#[test]
fn gpt_oss_mxfp4_experts_decode_to_transformers_values() {
    let dir = models_dir();
    let q = hearth_engine::ModelSource::open_hf_dir(dir.join("tiny-gpt-oss-mxfp4")).unwrap();
    let b = hearth_engine::ModelSource::open_hf_dir(dir.join("tiny-gpt-oss-bf16")).unwrap();
    let mut n = 0;
    for t in q
        .tensors()
        .iter()
        .filter(|t| t.name.contains("_exps.weight"))
    {
        let u = b.tensor_info(&t.name).unwrap();
        assert_eq!(
            t.dtype,
            hearth_engine::formats::GgmlType::MXFP4,
            "{}",
            t.name
        );
        assert_eq!(
            u.dtype,
            hearth_engine::formats::GgmlType::BF16,
            "{}",
            t.name
        );
        assert_eq!(t.dims, u.dims, "{}", t.name);
        let cols = t.dims[0];
        let (x, y) = (q.tensor_data(t), b.tensor_data(u));
        let (rq, rb) = (t.n_bytes / (t.n_elements() / cols), 2 * cols);
        let (mut vq, mut vb) = (vec![0f32; cols], vec![0f32; cols]);
        for r in 0..t.n_elements() / cols {
            hearth_engine::kernels::dequantize_row(t.dtype, &x[r * rq..(r + 1) * rq], &mut vq);
            hearth_engine::kernels::dequantize_row(u.dtype, &y[r * rb..(r + 1) * rb], &mut vb);
            assert_eq!(vq, vb, "{} row {r}", t.name);
        }
        n += 1;
    }
    assert_eq!(n, 12, "4 layers x gate/up/down");
}

/// The same model with unquantized BF16 experts in transformers' own layout (gate_up_proj
/// [E, d, 2·ff] interleaved, down_proj [E, ff, d]), transposed and split at open: its goldens
/// equal tiny-gpt-oss-mxfp4's (the BF16 values are what the MXFP4 blocks decode to).
#[test]
fn gpt_oss_bf16_experts_directory_matches_transformers() {
    check("tiny-gpt-oss-bf16", 5e-2);
}

/// A copy of `src`'s safetensors file without tensor `drop` (the data section is unchanged, so
/// every other tensor's offsets stay valid).
fn safetensors_without(src: &std::path::Path, drop: &str) -> Vec<u8> {
    let st = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&st[8..8 + n]).unwrap();
    assert!(
        header.as_object_mut().unwrap().remove(drop).is_some(),
        "{drop}"
    );
    let mut h = header.to_string().into_bytes();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&st[8 + n..]);
    out
}

#[test]
fn gpt_oss_mxfp4_errors_name_the_tensor() {
    let src = models_dir().join("tiny-gpt-oss-mxfp4");
    let tmp = std::env::temp_dir().join(format!("hearth-hf-mxfp4-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), tmp.join(f)).unwrap();
    }
    let st = src.join("model.safetensors");
    let load_err = |bytes: Vec<u8>| {
        std::fs::write(tmp.join("model.safetensors"), bytes).unwrap();
        match hearth_engine::ModelSource::open_hf_dir(&tmp) {
            Ok(_) => panic!("opened a broken directory"),
            Err(e) => e.to_string(),
        }
    };
    let e = load_err(safetensors_without(
        &st,
        "model.layers.2.mlp.experts.down_proj_scales",
    ));
    assert!(
        e.contains("model.safetensors")
            && e.contains("model.layers.2.mlp.experts.down_proj_blocks")
            && e.contains("down_proj_scales"),
        "{e}"
    );
    let e = load_err(safetensors_without(
        &st,
        "model.layers.1.mlp.experts.gate_up_proj_blocks",
    ));
    assert!(
        e.contains("'model.layers.1.mlp.experts.gate_up_proj_scales'")
            && e.contains("gate_up_proj_blocks"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `--quantize` at load (ggml's reference quantizers, `hearth_kernels::quant`) on float
/// directories, against transformers on the unquantized weights: the statistical bounds of
/// quantized models (median / p90 of the per-position error, top-1 where the margin is clear).
#[test]
fn quantize_at_load_matches_transformers() {
    // Measured: llama Q8_0 median 0.081, p90 0.130 (tiny random models are this sensitive:
    // tests/tiny_models.rs's Q8_0 GGUFs are 0.15-0.32 from llama.cpp); gpt-oss MXFP4_MOE
    // (experts MXFP4, attention/embeddings/output Q8_0, against the unquantized BF16 weights)
    // median 0.54, p90 1.14. Q4_K is not exercised here: these models' rows (64, 128 values)
    // are shorter than its 256-value blocks, so it falls back to Q8_0.
    for (name, q, median_max, p90_max) in [
        ("tiny-llama-f32", Quantize::Q8_0, 0.12, 0.2),
        ("tiny-gpt-oss-bf16", Quantize::Mxfp4, 0.8, 1.7),
    ] {
        let rep = check_with(name, f32::INFINITY, 1.5, Some(q));
        let (median, p90) = (rep.quantile(0.5), rep.quantile(0.9));
        eprintln!("{name} --quantize {q:?}: median {median:.5}, p90 {p90:.5}");
        assert!(
            median <= median_max && p90 <= p90_max,
            "{name} {q:?}: median {median} (bound {median_max}), p90 {p90} (bound {p90_max})"
        );
    }
}

#[test]
fn directory_metadata_and_template() {
    let dir = models_dir().join("tiny-qwen2-f32");
    let lm = LoadedModel::load(&dir).unwrap();
    assert_eq!(lm.path, dir);
    let f = &lm.file;
    assert!(f.hf().is_some());
    assert_eq!(f.hf().unwrap().n_files(), 3);
    assert_eq!(f.get_u64("qwen2.block_count"), Some(2));
    assert_eq!(f.get_u64("qwen2.attention.head_count_kv"), Some(2));
    assert_eq!(f.get_f64("qwen2.rope.freq_base"), Some(1_000_000.0));
    assert!(f.tensor_info("blk.1.attn_q.bias").is_some());
    // Tied: no lm_head in the checkpoint, the output reads token_embd.
    assert!(f.tensor_info("output.weight").is_none());
    let src = lm.template_source.as_deref().unwrap();
    assert!(src.contains("<|im_start|>"), "{src}");
}

#[test]
fn errors_name_the_file_and_key() {
    let tmp = std::env::temp_dir().join(format!("hearth-hf-err-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let src = models_dir().join("tiny-llama-f32");
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), tmp.join(f)).unwrap();
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let write = |c: &Value| std::fs::write(tmp.join("config.json"), c.to_string()).unwrap();
    let err = |c: &Value| {
        write(c);
        match LoadedModel::load(&tmp) {
            Ok(_) => panic!("loaded {c}"),
            Err(e) => e.to_string(),
        }
    };

    let mut c = cfg.clone();
    c["architectures"] = serde_json::json!(["FalconForCausalLM"]);
    let e = err(&c);
    assert!(
        e.contains("config.json") && e.contains("FalconForCausalLM"),
        "{e}"
    );

    let mut c = cfg.clone();
    c.as_object_mut().unwrap().remove("num_hidden_layers");
    let e = err(&c);
    assert!(
        e.contains("config.json") && e.contains("num_hidden_layers"),
        "{e}"
    );

    let mut c = cfg.clone();
    c["rope_parameters"] =
        serde_json::json!({"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4});
    let e = err(&c);
    assert!(e.contains("rope_type") && e.contains("yarn"), "{e}");

    // A layer more than the checkpoint holds: the missing tensor is named.
    let mut c = cfg.clone();
    c["num_hidden_layers"] = serde_json::json!(3);
    let e = err(&c);
    assert!(
        e.contains("blk.2.") && e.contains(&tmp.display().to_string()),
        "{e}"
    );

    // Truncated weights.
    write(&cfg);
    let st = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(tmp.join("model.safetensors"), &st[..st.len() / 2]).unwrap();
    let e = match LoadedModel::load(&tmp) {
        Ok(_) => panic!("loaded a truncated file"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The directory against llama.cpp's own converter: `convert_hf_to_gguf.py` on the same
/// directory (run by `scripts/oracle/gen_tiny_hf.py convert`, which needs torch, so this test is
/// ignored by default). Checks that every tensor and every `{arch}.*` key the converter writes
/// is what our translation gives (same names, dims, values), that the converter's tokenizer
/// encodes the prompts to the same ids, and that the logits agree at every position: for
/// llama this compares Q/K rows permuted by the converter and rotated in interleaved pairs with
/// the original rows rotated in halves.
#[test]
#[ignore = "needs scripts/oracle/gen_tiny_hf.py convert (torch + llama.cpp's converter)"]
fn converted_gguf_matches_directory() {
    let dir = models_dir();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for name in [
        "tiny-llama-f32",
        "tiny-qwen2-f32",
        "tiny-qwen3-f32",
        "tiny-qwen3moe-f32",
    ] {
        let gguf = dir.join(format!("{name}.gguf"));
        assert!(
            gguf.is_file(),
            "{}: run gen_tiny_hf.py convert",
            gguf.display()
        );
        let a = LoadedModel::load(dir.join(name)).unwrap();
        let b = LoadedModel::load(&gguf).unwrap();
        let arch = a.model.info().arch.clone();
        assert_eq!(b.model.info().arch, arch);
        let mut n_ours = 0;
        for t in b.file.tensors() {
            // The converter stacks the experts into one 3-D tensor; the directory keeps one
            // matrix per expert (`name#E`).
            let (lookup, dims, n) = if t.dims.len() == 3 {
                (format!("{}#0", t.name), t.dims[..2].to_vec(), t.dims[2])
            } else {
                (t.name.clone(), t.dims.clone(), 1)
            };
            let ours = a
                .file
                .tensor_info(&lookup)
                .unwrap_or_else(|| panic!("{name}: no {lookup}"));
            assert_eq!(ours.dims, dims, "{name}: {}", t.name);
            n_ours += n;
        }
        assert_eq!(a.file.tensors().len(), n_ours, "{name}");
        let mut n_keys = 0;
        for (k, v) in a.file.metadata() {
            if !k.starts_with(&format!("{arch}.")) {
                continue;
            }
            let w = b
                .file
                .get(k)
                .unwrap_or_else(|| panic!("{name}: {k} not in the GGUF"));
            let (x, y) = (v.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6 * y.abs(), "{name}: {k} {x} vs {y}");
            n_keys += 1;
        }
        let g = golden(name);
        let n_vocab = a.model.info().n_vocab;
        let (mut ga, mut gb) = (Generator::new(&a, 2), Generator::new(&b, 2));
        let mut max_d = 0f32;
        for p in g["prompts"].as_array().unwrap() {
            let toks = ids(&p["prompt_tokens"]);
            assert_eq!(
                b.tokenizer.encode(p["text"].as_str().unwrap(), true, true),
                toks,
                "{name}: the converted GGUF's tokenizer"
            );
            let la = ga.prefill(&toks, true).unwrap().to_vec();
            let lb = gb.prefill(&toks, true).unwrap().to_vec();
            ga.reset();
            gb.reset();
            for i in 0..toks.len() {
                let (ra, rb) = (
                    &la[i * n_vocab..(i + 1) * n_vocab],
                    &lb[i * n_vocab..(i + 1) * n_vocab],
                );
                for tok in 0..n_vocab as u32 {
                    let d = (logprobs(ra, tok, 0).0 - logprobs(rb, tok, 0).0).abs();
                    max_d = max_d.max(d);
                }
            }
        }
        eprintln!(
            "{name}: directory vs llama.cpp-converted GGUF: {} tensors, {n_keys} {arch}.* keys equal, max |dlogprob| over the whole vocabulary {max_d:.6}",
            b.file.tensors().len()
        );
        assert!(max_d < 1e-3, "{name}: {max_d}");
    }
}
