//! Debug aid: per-position differences between the engine's log-probabilities and the llama.cpp
//! golden file. Usage: oracle_diff GOLDEN.json MODEL.gguf [PROMPT_INDEX]
use hearth_engine::sample::logprobs;
use hearth_engine::{Generator, LoadedModel};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a[1]).unwrap()).unwrap();
    let lm = LoadedModel::load(&a[2]).unwrap();
    let only: Option<usize> = a.get(3).map(|s| s.parse().unwrap());
    let nv = lm.model.info().n_vocab;
    let mut gen = Generator::new(&lm, 2);
    for (pi, p) in g["prompts"].as_array().unwrap().iter().enumerate() {
        if only.is_some_and(|o| o != pi) {
            continue;
        }
        let toks: Vec<u32> = p["prompt_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        gen.reset();
        let logits = gen.prefill(&toks, true).unwrap().to_vec();
        let mut line = String::new();
        let mut maxd = 0f32;
        for (i, t) in p["prompt_top"].as_array().unwrap().iter().enumerate() {
            let row = &logits[i * nv..(i + 1) * nv];
            let want = t["ids"][0].as_u64().unwrap() as u32;
            let (lp, top) = logprobs(row, want, 1);
            let d = lp - t["logprobs"][0].as_f64().unwrap() as f32;
            maxd = maxd.max(d.abs());
            if only.is_some() {
                line.push_str(&format!(
                    "{i}:{d:+.3}{} ",
                    if top[0].0 != want { "*" } else { "" }
                ));
            }
        }
        println!(
            "prompt {pi} ({} tokens): max |dlogprob| {maxd:.4}",
            toks.len()
        );
        if !line.is_empty() {
            println!("{line}");
        }
    }
}
