//! `hearth template`: print exactly the prompt the chat template renders (with the generation
//! prompt added), like llama-server's /apply-template.

use anyhow::Context;
use hearth_engine::template::{parse_messages, RenderOptions};
use hearth_engine::LoadedModel;
use std::io::Read;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    pub model: PathBuf,
    /// OpenAI-style JSON list of messages; `-` reads standard input.
    #[arg(long)]
    pub messages: String,
    /// OpenAI tool definitions (JSON list) made visible to the template as `tools`.
    #[arg(long)]
    pub tools: Option<PathBuf>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let json = if a.messages == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(&a.messages).with_context(|| format!("reading {}", a.messages))?
    };
    let messages = parse_messages(&json)?;
    let tools = match &a.tools {
        Some(p) => Some(
            serde_json::from_str(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{}: not JSON", p.display()))?,
        ),
        None => None,
    };
    let lm = LoadedModel::load(&a.model)?;
    let text = lm.template.render(
        &messages,
        &RenderOptions {
            add_generation_prompt: true,
            tools,
            ..Default::default()
        },
    )?;
    print!("{text}");
    Ok(())
}
