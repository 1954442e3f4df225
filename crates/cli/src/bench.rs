//! `hearth bench`: prefill (pp) and decode (tg) throughput measured the way llama-bench does:
//! pp = N prompt tokens in one pass from an empty cache; tg = N single-token steps from an empty
//! cache. Token ids are pseudo-random (fixed seed) so no tokenizer work is timed.

use hearth_engine::sample::Rng;
use hearth_engine::{Generator, LoadedModel};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    pub model: PathBuf,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed repetitions of each test (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn tokens(lm: &LoadedModel, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let v = lm.model.info().n_vocab as u64;
    let mut t: Vec<u32> = (0..n).map(|_| (rng.next_u64() % v) as u32).collect();
    if let (true, Some(b), Some(first)) =
        (lm.tokenizer.add_bos(), lm.tokenizer.bos(), t.first_mut())
    {
        *first = b;
    }
    t
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len().max(2) - 1) as f64;
    (m, v.sqrt())
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let lm = LoadedModel::load(&a.model)?;
    let threads = a.threads.unwrap_or_else(crate::sys::physical_cores);
    let mut gen = Generator::new(&lm, threads);
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for rep in 0..=a.reps {
        if a.prompt_tokens > 0 {
            let t = tokens(&lm, a.prompt_tokens, rep as u64);
            gen.reset();
            let t0 = Instant::now();
            gen.prefill(&t, false)?;
            let s = t0.elapsed().as_secs_f64();
            if rep > 0 {
                pp.push(a.prompt_tokens as f64 / s);
            }
        }
        if a.gen_tokens > 0 {
            let t = tokens(&lm, a.gen_tokens, 1000 + rep as u64);
            gen.reset();
            let t0 = Instant::now();
            for &tok in &t {
                gen.step(tok);
            }
            let s = t0.elapsed().as_secs_f64();
            if rep > 0 {
                tg.push(a.gen_tokens as f64 / s);
            }
        }
    }
    let (pm, psd) = if pp.is_empty() {
        (0.0, 0.0)
    } else {
        mean_sd(&pp)
    };
    let (tm, tsd) = if tg.is_empty() {
        (0.0, 0.0)
    } else {
        mean_sd(&tg)
    };
    let rss = crate::sys::peak_rss_mb().unwrap_or(0.0);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": lm.path.display().to_string(),
                "threads": threads,
                "prompt_tokens": a.prompt_tokens,
                "gen_tokens": a.gen_tokens,
                "prefill_tok_s": pm,
                "prefill_tok_s_sd": psd,
                "decode_tok_s": tm,
                "decode_tok_s_sd": tsd,
                "load_s": lm.load_s,
                "peak_rss_mb": rss,
                "isa": format!("{:?}", hearth_kernels_isa()),
            })
        );
    } else {
        println!(
            "model: {}  threads: {threads}  load: {:.2}s  peak RSS: {rss:.0} MiB",
            lm.path.display(),
            lm.load_s
        );
        if a.prompt_tokens > 0 {
            println!("pp{:<5} {pm:>9.1} ± {psd:.1} tok/s", a.prompt_tokens);
        }
        if a.gen_tokens > 0 {
            println!("tg{:<5} {tm:>9.1} ± {tsd:.1} tok/s", a.gen_tokens);
        }
    }
    Ok(())
}

fn hearth_kernels_isa() -> hearth_engine::kernels::Isa {
    hearth_engine::kernels::isa()
}
