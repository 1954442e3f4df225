//! The harmony response format of OpenAI's gpt-oss models
//! (<https://cookbook.openai.com/articles/openai-harmony>).
//!
//! Two halves:
//!
//! * [`render_chat`] turns an OpenAI chat-completions conversation (messages as
//!   `serde_json::Value`, function tools, reasoning effort) into the harmony prompt text, with
//!   the harmony special tokens (`<|start|>`, `<|channel|>`, `<|message|>`, `<|end|>`, ...)
//!   written as their literal strings: the engine's tokenizer maps them to their special ids
//!   (`parse_special = true`).
//! * [`HarmonyParser`] reads the generated text token by token and splits it into messages:
//!   channel (`analysis` / `commentary` / `final`), recipient (`to=functions.NAME`), content type
//!   (`<|constrain|>json`), emitting [`HarmonyEvent`]s (reasoning delta, content delta, tool call
//!   start, tool call arguments delta, message end) as soon as each token arrives.
//!
//! Nothing here needs the model or its tokenizer.

mod date;
mod parser;
mod pyjson;
mod render;
mod schema;

pub use parser::{
    parse_completion, EndReason, HarmonyEvent, HarmonyParser, MessageHeader, ParsedCompletion,
    ParsedToolCall,
};
pub use render::{
    render_chat, CurrentDate, Flavor, ReasoningEffort, RecipientPlacement, RenderOptions,
    DEFAULT_KNOWLEDGE_CUTOFF, DEFAULT_MODEL_IDENTITY,
};

/// The harmony special tokens, as the text the tokenizer maps to one special id each.
pub mod tokens {
    pub const START: &str = "<|start|>";
    pub const CHANNEL: &str = "<|channel|>";
    pub const MESSAGE: &str = "<|message|>";
    pub const END: &str = "<|end|>";
    /// End of the whole assistant answer: generation stops here.
    pub const RETURN: &str = "<|return|>";
    /// End of an assistant message addressed to a tool: generation stops here.
    pub const CALL: &str = "<|call|>";
    pub const CONSTRAIN: &str = "<|constrain|>";

    /// Every special token the parser recognises, longest first is not needed: none is a
    /// prefix of another.
    pub const ALL: [&str; 7] = [START, CHANNEL, MESSAGE, END, RETURN, CALL, CONSTRAIN];

    /// The tokens that end generation for an assistant turn (the reference's
    /// `stop_tokens_for_assistant_actions`): `<|return|>` after a final answer and `<|call|>`
    /// after a tool call. `<|end|>` is not one of them: after an analysis message the model
    /// goes on with `<|start|>assistant...`.
    pub const STOP: [&str; 2] = [RETURN, CALL];
}

/// Rendering errors. Messages name the offending message index and field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HarmonyError {
    #[error("messages[{index}]: {reason}")]
    Message { index: usize, reason: String },
    #[error("tools[{index}]: {reason}")]
    Tool { index: usize, reason: String },
    #[error("invalid render option {option}: {reason}")]
    Option {
        option: &'static str,
        reason: String,
    },
}
