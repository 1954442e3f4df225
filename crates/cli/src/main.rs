//! `hearth`: run, benchmark, inspect and serve local language models.

mod admin;
mod bench;
mod config;
mod info;
mod run;
mod serve;
mod sys;
mod template;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "A private LLM server: run open-weight models on your own CPU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt (or chat interactively), streaming to stdout.
    Run(run::Args),
    /// Measure prefill and decode speed like llama-bench's pp and tg tests.
    Bench(bench::Args),
    /// Describe a model file: architecture, parameters, quantization, tokenizer, template.
    Info(info::Args),
    /// Print the prompt the model's chat template renders for a list of messages.
    Template(template::Args),
    /// Serve models over an OpenAI-compatible HTTP API with continuous batching.
    Serve(serve::Args),
    /// Create, list and revoke API keys (the gateway's database).
    Keys(admin::KeysArgs),
    /// Create, list and delete users.
    Users(admin::UsersArgs),
    /// Create, list and delete teams (with shared limits).
    Teams(admin::TeamsArgs),
    /// Verify, export and trim the tamper-evident audit log.
    Audit(admin::AuditArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Bench(a) => bench::main(a),
        Cmd::Info(a) => info::main(a),
        Cmd::Template(a) => template::main(a),
        Cmd::Serve(a) => serve::main(a),
        Cmd::Keys(a) => admin::keys(a),
        Cmd::Users(a) => admin::users(a),
        Cmd::Teams(a) => admin::teams(a),
        Cmd::Audit(a) => admin::audit(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
