//! `hearth bench`: prefill (pp) and decode (tg) throughput measured the way llama-bench does:
//! pp = N prompt tokens in one pass from an empty cache; tg = N single-token steps from an empty
//! cache. Token ids are pseudo-random (fixed seed) so no tokenizer work is timed.

use hearth_engine::sample::Rng;
use hearth_engine::weights::Quantize;
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
    /// Also measure N sequences decoding together through the serving scheduler (continuous
    /// batching): each gets a 16-token prompt and decodes --gen-tokens tokens (end-of-generation
    /// tokens banned); reports the aggregate generated tokens/s (0 = skip).
    #[arg(long, default_value_t = 0)]
    pub parallel: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Quantize F32/F16/BF16 weight matrices once at load: q8_0, q4_k (rows that are not a
    /// multiple of 256 values fall back to q8_0), or mxfp4 (MoE experts MXFP4, other matrices
    /// q8_0, as llama.cpp's MXFP4_MOE). Tensors that are already quantized are kept as they are.
    #[arg(long, value_name = "TYPE")]
    pub quantize: Option<Quantize>,
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
    let lm = LoadedModel::load_quantized(&a.model, a.quantize)?;
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
    let par = if a.parallel > 0 && a.gen_tokens > 0 {
        drop(gen);
        Some(parallel(
            &lm,
            a.quantize,
            threads,
            a.parallel,
            a.gen_tokens,
            a.reps,
        )?)
    } else {
        None
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
                "parallel": a.parallel,
                "parallel_decode_tok_s": par.map(|p| p.0).unwrap_or(0.0),
                "parallel_decode_tok_s_sd": par.map(|p| p.1).unwrap_or(0.0),
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
        if let Some((m, sd)) = par {
            println!(
                "tg{:<5} {m:>9.1} ± {sd:.1} tok/s  ({} sequences together)",
                a.gen_tokens, a.parallel
            );
        }
    }
    Ok(())
}

fn hearth_kernels_isa() -> hearth_engine::kernels::Isa {
    hearth_engine::kernels::isa()
}

/// Aggregate tokens/s of `n` sequences decoding `gen` tokens each through the scheduler.
fn parallel(
    lm: &LoadedModel,
    quantize: Option<Quantize>,
    threads: usize,
    n: usize,
    gen: usize,
    reps: usize,
) -> anyhow::Result<(f64, f64)> {
    use hearth_engine::scheduler::{Event, EventSink, Request, Scheduler, SchedulerConfig};
    use hearth_engine::SamplingParams;
    use std::sync::{mpsc, Arc};
    struct Sink(mpsc::Sender<Event>);
    impl EventSink for Sink {
        fn send(&mut self, e: Event) -> bool {
            self.0.send(e).is_ok()
        }
        fn is_closed(&self) -> bool {
            false
        }
    }
    // The scheduler needs an owned model: load a second handle (weights stay mmapped, shared
    // through the page cache; quantized ones are quantized again).
    let lm2 = Arc::new(LoadedModel::load_quantized(&lm.path, quantize)?);
    let sched = Scheduler::start(
        lm2.clone(),
        SchedulerConfig {
            threads,
            max_running: n,
            max_waiting: n,
            ..Default::default()
        },
    );
    let n_vocab = lm2.model.info().n_vocab as u32;
    let mut params = SamplingParams::greedy();
    params.logit_bias = (0..n_vocab)
        .filter(|&t| lm2.tokenizer.is_eog(t))
        .map(|t| (t, -1e9))
        .collect();
    let mut rates = Vec::new();
    for rep in 0..=reps {
        let (tx, rx) = mpsc::channel();
        let t0 = Instant::now();
        for i in 0..n {
            sched.submit(Request {
                prompt: tokens(&lm2, 16, 10_000 + (rep * n + i) as u64),
                params: params.clone(),
                max_tokens: gen,
                logprobs: None,
                constraint: None,
                sink: Box::new(Sink(tx.clone())),
            })?;
        }
        drop(tx);
        let (mut done, mut toks) = (0, 0usize);
        while done < n {
            match rx.recv()? {
                Event::Token { .. } => toks += 1,
                Event::Done { .. } => done += 1,
                Event::Error(e) => anyhow::bail!("parallel decode: {e}"),
            }
        }
        if rep > 0 {
            rates.push(toks as f64 / t0.elapsed().as_secs_f64());
        }
    }
    Ok(mean_sd(&rates))
}
