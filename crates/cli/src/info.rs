//! `hearth info`: what a model file (or Hugging Face directory) is.

use hearth_engine::LoadedModel;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    pub model: PathBuf,
    /// Also list every metadata key.
    #[arg(long)]
    pub metadata: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let lm = LoadedModel::load(&a.model)?;
    let i = lm.model.info();
    let f = &lm.file;
    println!(
        "file:           {} ({:.1} MiB, {})",
        lm.path.display(),
        f.file_len() as f64 / (1 << 20) as f64,
        f.format_name()
    );
    println!(
        "name:           {}",
        f.get_str("general.name").unwrap_or("-")
    );
    println!("architecture:   {}", i.arch);
    println!(
        "parameters:     {} ({:.1}M)",
        i.n_params,
        i.n_params as f64 / 1e6
    );
    println!("layers:         {}", i.n_layer);
    println!("embedding:      {}", i.n_embd);
    println!("context length: {}", i.n_ctx_train);
    let mut types: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for t in f.tensors() {
        let e = types.entry(t.dtype.to_string()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    let q: Vec<String> = types
        .iter()
        .map(|(k, (n, b))| format!("{k} ×{n} ({:.1} MiB)", *b as f64 / (1 << 20) as f64))
        .collect();
    if let Some(name) = f
        .get_u64(hearth_engine::formats::ftype::KEY)
        .and_then(hearth_engine::formats::ftype::name)
    {
        println!("file type:      {name}");
    }
    println!("tensor types:   {}", q.join(", "));
    let tk = &lm.tokenizer;
    println!(
        "tokenizer:      {} (pre: {}), {} tokens, bos {:?}, eos {:?}, add_bos {}",
        tk.model_kind(),
        tk.pre(),
        tk.vocab_size(),
        tk.bos(),
        tk.eos(),
        tk.add_bos()
    );
    match &lm.template_source {
        Some(src) => {
            println!("chat template:  {} bytes", src.len());
            for line in src.lines().take(12) {
                println!("    {line}");
            }
            if src.lines().count() > 12 {
                println!("    …");
            }
        }
        None => println!(
            "chat template:  none in file (built-in {} fallback)",
            hearth_engine::template::Fallback::for_arch(&lm.model.info().arch).name()
        ),
    }
    if a.metadata {
        // GGUF keys; for a Hugging Face directory, those translated from config.json.
        for (k, v) in f.metadata() {
            println!("  {k} = {}", v.summary());
        }
    }
    Ok(())
}
