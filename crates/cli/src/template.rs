//! `hearth template`: print exactly the prompt the server renders for a chat request (with the
//! generation prompt added), like llama-server's /apply-template. For harmony models (gpt-oss)
//! that is the harmony renderer with the server's options (`hearth_server::api::chat::
//! harmony_options`); for the others the model's chat template.

use anyhow::Context;
use hearth_engine::template::{parse_messages, RenderOptions};
use hearth_engine::LoadedModel;
use hearth_harmony::{CurrentDate, ReasoningEffort};
use hearth_server::backend::ChatFormat;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Effort {
    Low,
    Medium,
    High,
}

impl From<Effort> for ReasoningEffort {
    fn from(e: Effort) -> Self {
        match e {
            Effort::Low => ReasoningEffort::Low,
            Effort::Medium => ReasoningEffort::Medium,
            Effort::High => ReasoningEffort::High,
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    pub model: PathBuf,
    /// OpenAI-style JSON list of messages; `-` reads standard input.
    #[arg(long)]
    pub messages: String,
    /// OpenAI tool definitions (JSON list): harmony models render them as the developer
    /// message's `functions` namespace; other models see them as the template's `tools`.
    #[arg(long)]
    pub tools: Option<PathBuf>,
    /// The request's `reasoning_effort`: the `Reasoning:` line of a harmony system message
    /// (default medium); other templates get it as the variable `reasoning_effort`.
    #[arg(long, value_enum)]
    pub reasoning_effort: Option<Effort>,
    /// Harmony models: the system message's `Current date:` (default: today, UTC, as the
    /// server renders it), for reproducible output.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub current_date: Option<String>,
}

fn read_json(what: &str, path: &str) -> anyhow::Result<Value> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {what} {path}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{what} {path}: not JSON"))
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let messages = read_json("--messages", &a.messages)?;
    let tools = match &a.tools {
        Some(p) => Some(read_json("--tools", &p.to_string_lossy())?),
        None => None,
    };
    if tools.as_ref().is_some_and(|t| !t.is_array()) {
        anyhow::bail!("--tools: expected a JSON list of tool definitions");
    }
    let lm = LoadedModel::load(&a.model)?;
    let text = if hearth_server::local::chat_format_of(&lm) == ChatFormat::Harmony {
        let list = messages
            .as_array()
            .context("--messages: expected a JSON list of messages")?;
        let effort = a.reasoning_effort.map(Into::into).unwrap_or_default();
        let mut opts = hearth_server::api::chat::harmony_options(tools.as_ref(), effort);
        if let Some(d) = a.current_date {
            opts.current_date = CurrentDate::Fixed(d);
        }
        hearth_harmony::render_chat(list, &opts).context("harmony")?
    } else {
        if a.current_date.is_some() {
            anyhow::bail!("--current-date applies to harmony models (gpt-oss) only");
        }
        let messages = parse_messages(&messages.to_string())?;
        let mut extra = serde_json::Map::new();
        if let Some(e) = a.reasoning_effort {
            let e: ReasoningEffort = e.into();
            extra.insert("reasoning_effort".into(), e.as_str().into());
        }
        lm.template.render(
            &messages,
            &RenderOptions {
                add_generation_prompt: true,
                tools,
                extra,
            },
        )?
    };
    print!("{text}");
    Ok(())
}
