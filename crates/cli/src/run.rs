//! `hearth run`: stream a completion (or an interactive chat) to stdout; logs go to stderr.

use anyhow::Context;
use hearth_engine::template::{Message, RenderOptions};
use hearth_engine::weights::Quantize;
use hearth_engine::{FinishReason, Generator, LoadedModel, SamplingParams};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file (or a directory holding one).
    pub model: PathBuf,
    /// The prompt; without it on a terminal, start an interactive chat.
    #[arg(long)]
    pub prompt: Option<String>,
    /// A system message for the chat template.
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 means greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when the output contains this text (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Worker threads (default: physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Feed the prompt as plain text (no chat template), adding BOS only where the model's
    /// metadata asks for it, as llama.cpp's /completion does.
    #[arg(long)]
    pub raw: bool,
    /// Quantize F32/F16/BF16 weight matrices once at load: q8_0, q4_k (rows that are not a
    /// multiple of 256 values fall back to q8_0), or mxfp4 (MoE experts MXFP4, other matrices
    /// q8_0, as llama.cpp's MXFP4_MOE). Tensors that are already quantized are kept as they are.
    #[arg(long, value_name = "TYPE")]
    pub quantize: Option<Quantize>,
}

fn params(a: &Args) -> SamplingParams {
    SamplingParams {
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        min_p: a.min_p,
        repetition_penalty: a.repeat_penalty,
        seed: a.seed,
        ..Default::default()
    }
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let lm = LoadedModel::load_quantized(&a.model, a.quantize)
        .with_context(|| format!("loading {}", a.model.display()))?;
    let threads = a.threads.unwrap_or_else(crate::sys::physical_cores);
    tracing::info!(
        "{}: {} ({} layers) loaded in {:.2}s, {} threads",
        lm.path.display(),
        lm.model.info().arch,
        lm.model.info().n_layer,
        lm.load_s,
        threads
    );
    let mut gen = Generator::new(&lm, threads);
    let p = params(&a);
    let stdout = std::io::stdout();
    let mut emit = |s: &str| {
        let mut o = stdout.lock();
        o.write_all(s.as_bytes()).is_ok() && o.flush().is_ok()
    };
    match &a.prompt {
        Some(prompt) => {
            let tokens = if a.raw {
                lm.tokenizer.encode(prompt, true, true)
            } else {
                let mut msgs = Vec::new();
                if let Some(s) = &a.system {
                    msgs.push(Message::new("system", s.clone()));
                }
                msgs.push(Message::new("user", prompt.clone()));
                let text = lm.template.render(
                    &msgs,
                    &RenderOptions {
                        add_generation_prompt: true,
                        ..Default::default()
                    },
                )?;
                lm.tokenizer.encode(&text, false, true)
            };
            let g = gen.generate(&tokens, &p, a.max_tokens, &a.stop, &mut emit)?;
            emit("\n");
            report(&g);
        }
        None if std::io::stdin().is_terminal() => chat(&lm, &mut gen, &a, &p)?,
        None => {
            // Prompt from a pipe.
            let mut prompt = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut prompt)?;
            return main(Args {
                prompt: Some(prompt),
                ..a
            });
        }
    }
    Ok(())
}

fn report(g: &hearth_engine::Generation) {
    let n = g.tokens.len();
    tracing::info!(
        "prompt {} tokens ({} computed) in {:.2}s ({:.1} tok/s); generated {} tokens in {:.2}s ({:.1} tok/s); finish: {:?}",
        g.n_prompt,
        g.n_prompt_computed,
        g.prefill_s,
        g.n_prompt_computed as f64 / g.prefill_s.max(1e-9),
        n,
        g.decode_s,
        n.saturating_sub(1) as f64 / g.decode_s.max(1e-9),
        g.finish
    );
}

/// Multi-turn chat on a terminal. The whole conversation is re-rendered each turn and the
/// KV cache reuses the shared prefix, so earlier turns are not recomputed.
fn chat(lm: &LoadedModel, gen: &mut Generator, a: &Args, p: &SamplingParams) -> anyhow::Result<()> {
    let mut msgs = Vec::new();
    if let Some(s) = &a.system {
        msgs.push(Message::new("system", s.clone()));
    }
    eprintln!(
        "Chatting with {} — empty line or Ctrl-D to quit.",
        lm.path.display()
    );
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        msgs.push(Message::new("user", line.trim_end().to_string()));
        let text = lm.template.render(
            &msgs,
            &RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )?;
        let tokens = lm.tokenizer.encode(&text, false, true);
        let stdout = std::io::stdout();
        let g = gen.generate(&tokens, p, a.max_tokens, &a.stop, |s| {
            let mut o = stdout.lock();
            o.write_all(s.as_bytes()).is_ok() && o.flush().is_ok()
        })?;
        println!();
        if g.finish == FinishReason::Cancelled {
            break;
        }
        msgs.push(Message::new("assistant", g.text.clone()));
    }
    Ok(())
}
