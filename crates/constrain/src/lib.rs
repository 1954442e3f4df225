//! Structured output for Hearth: constraints that restrict, token by token, what a model may
//! generate, so the text is guaranteed to be JSON (`response_format: json_object`), to match a
//! JSON schema (`json_schema`), or to be a Hermes-style tool call (`tool_choice` required or
//! named).
//!
//! The grammar work is done by [llguidance] (the library vLLM and llama.cpp use): a JSON
//! schema is compiled to a context-free grammar, and for each step an Earley parser walks the
//! tokenizer's byte trie to find every token that keeps the output a valid prefix. This crate
//! only adapts it to Hearth:
//! - [`ConstraintFactory::new`] turns a [`Tokenizer`] into llguidance's token environment (the
//!   bytes of every token in a trie). That costs tens of milliseconds for a 50k vocabulary, so
//!   build one factory per model and share it.
//! - each `json_*`/`tool_call` method compiles one grammar and returns a fresh
//!   [`TokenConstraint`] for one sequence, which the scheduler calls every step.
//!
//! Control tokens (`<|im_start|>`, `<|im_end|>`, ...) are given to llguidance with its special
//! marker byte, so no grammar literal or JSON string can ever match them; the model's
//! end-of-generation tokens are the grammar's end: they are allowed exactly when the output is
//! complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_engine::sample::TokenConstraint;
use hearth_engine::tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstrainError {
    /// Constrained output must be able to end; without an end-of-generation token it can't.
    #[error("the tokenizer has no end-of-generation token, which constrained decoding needs to end the output")]
    NoEndOfGeneration,
    #[error("cannot build the constrained-decoding token environment: {0}")]
    Tokenizer(String),
    /// The schema is not valid JSON Schema, or uses a feature llguidance does not support.
    #[error("invalid JSON schema: {0}")]
    InvalidSchema(String),
    /// `tools[index]` can't be turned into a tool-call grammar.
    #[error("tools[{index}]: {reason}")]
    InvalidTool { index: usize, reason: String },
    /// `tool_choice` names a function that is not among `tools`.
    #[error("tool_choice names the function `{0}`, which is not in `tools`")]
    UnknownTool(String),
    /// A grammar Hearth built itself failed to compile (a bug, not the client's fault).
    #[error("internal grammar error: {0}")]
    Grammar(String),
}

/// Which tool call the output must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Any one of the tools (`tool_choice: "required"`).
    Required,
    /// This function (`tool_choice: {"type": "function", "function": {"name": ...}}`).
    Named(String),
}

/// Builds constraints for one model's tokenizer. Cheap to share (`Arc` inside); building it is
/// the expensive part, so do it once per model.
#[derive(Clone)]
pub struct ConstraintFactory {
    parsers: Arc<ParserFactory>,
    vocab_size: usize,
    /// Texts of the special tokens a grammar can name as tokens (`<|channel|>` in lark).
    specials: std::collections::HashSet<String>,
}

impl std::fmt::Debug for ConstraintFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintFactory")
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

/// JSON layout Hearth asks of constrained output: compact, Python-`json.dumps`-style
/// separators and no free whitespace. llguidance's default (any whitespace between tokens)
/// lets small models loop on newlines and spaces until `max_tokens`, producing invalid JSON;
/// a fixed layout also keeps the tokenization close to what models saw in training.
fn layout() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

impl ConstraintFactory {
    /// Build llguidance's token trie from every token's bytes. Control/unknown tokens and the
    /// end-of-generation tokens are marked special (prefixed with `TokTrie::SPECIAL_TOKEN_MARKER`)
    /// so they can only appear where a grammar names them, which ours never do.
    pub fn new(tok: &Tokenizer) -> Result<Self, ConstrainError> {
        let n = tok.vocab_size();
        let n32 = u32::try_from(n)
            .map_err(|_| ConstrainError::Tokenizer(format!("vocabulary of {n} tokens")))?;
        // EOS first: llguidance treats the first as *the* EOS, the rest as equivalent.
        let mut eog: Vec<u32> = tok.eos().into_iter().filter(|&e| e < n32).collect();
        eog.extend(
            tok.eog_ids()
                .into_iter()
                .filter(|&e| e < n32 && Some(e) != tok.eos()),
        );
        if eog.is_empty() {
            return Err(ConstrainError::NoEndOfGeneration);
        }
        let specials = (0..n32)
            .filter(|&id| tok.is_special(id) || tok.is_eog(id))
            .map(|id| tok.token_text(id).to_string())
            .collect();
        let words: Vec<Vec<u8>> = (0..n32)
            .map(|id| {
                let bytes = tok.token_bytes(id);
                if tok.is_special(id) || tok.is_eog(id) {
                    let mut w = Vec::with_capacity(bytes.len() + 1);
                    w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    w.extend_from_slice(tok.token_text(id).as_bytes());
                    w
                } else {
                    bytes
                }
            })
            .collect();
        let info = TokRxInfo {
            tok_bos: tok.bos(),
            tok_pad: tok.pad(),
            tok_unk: tok.unk(),
            tok_end_of_turn: tok.eot(),
            ..TokRxInfo::new(n32, eog[0])
        };
        // TokTrie::from asserts on inconsistent input rather than returning an error; the
        // input above is consistent by construction, but a panic must not take the server down.
        let trie = std::panic::catch_unwind(|| TokTrie::from(&info, &words).with_eos_tokens(&eog))
            .map_err(|_| ConstrainError::Tokenizer("llguidance rejected the token list".into()))?;
        // Greedy trie tokenization is only used by llguidance for fast-forward tokens, which
        // Hearth does not request; it is not canonical, which tells llguidance so.
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut parsers = ParserFactory::new_simple(&env)
            .map_err(|e| ConstrainError::Tokenizer(e.to_string()))?;
        // Grammar warnings would go to stderr; errors still come back as values.
        parsers.quiet();
        Ok(ConstraintFactory {
            parsers: Arc::new(parsers),
            vocab_size: n,
            specials,
        })
    }

    /// Vocabulary size the constraints were built for.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn json_object(&self) -> Result<Box<dyn TokenConstraint>, ConstrainError> {
        self.json_schema(&json!({"type": "object"}))
            .map_err(|e| ConstrainError::Grammar(e.to_string()))
    }

    /// JSON that validates against `schema` (`response_format: {"type": "json_schema", ...}`).
    /// A schema that is invalid or uses unsupported features gives
    /// [`ConstrainError::InvalidSchema`].
    pub fn json_schema(&self, schema: &Value) -> Result<Box<dyn TokenConstraint>, ConstrainError> {
        let schema = with_layout(schema)?;
        let grammar = TopLevelGrammar::from_json_schema(schema);
        self.build(grammar).map_err(ConstrainError::InvalidSchema)
    }

    /// One Hermes-style tool call,
    /// `<tool_call>\n{"name": "...", "arguments": {...}}\n</tool_call>`, whose arguments match
    /// the function's `parameters` schema. `tools` is the OpenAI `tools` array. This is how
    /// vLLM enforces `tool_choice` required/named; the text is what `toolcall::parse_hermes`
    /// in the server reads back.
    pub fn tool_call(
        &self,
        tools: &[Value],
        choice: &ToolChoice,
    ) -> Result<Box<dyn TokenConstraint>, ConstrainError> {
        let mut alternatives: Vec<Value> = self
            .tool_alternatives(tools, choice)?
            .into_iter()
            .map(|(name, params)| {
                json!({
                    "type": "object",
                    "properties": {"name": {"const": name}, "arguments": params},
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                })
            })
            .collect();
        let call = match alternatives.len() {
            1 => alternatives.pop().unwrap_or_default(),
            _ => json!({"anyOf": alternatives}),
        };
        let call = with_layout(&call)?;
        let lark = format!(
            "start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall: %json {}\n",
            serde_json::to_string(&call).map_err(|e| ConstrainError::Grammar(e.to_string()))?
        );
        self.build(TopLevelGrammar::from_lark(lark))
            .map_err(ConstrainError::Grammar)
    }

    /// The same forced call in harmony's form (gpt-oss, after the generation prompt
    /// `<|start|>assistant`): `<|channel|>commentary to=functions.NAME <|constrain|>json
    /// <|message|>{arguments}<|call|>`, the special tokens named as tokens, so the server's
    /// harmony parser reads it back as a tool call. The model's tokenizer must have them.
    pub fn tool_call_harmony(
        &self,
        tools: &[Value],
        choice: &ToolChoice,
    ) -> Result<Box<dyn TokenConstraint>, ConstrainError> {
        let alts = self.tool_alternatives(tools, choice)?;
        let enc = |v: &Value| {
            serde_json::to_string(v).map_err(|e| ConstrainError::Grammar(e.to_string()))
        };
        let mut rules = String::new();
        let mut names = Vec::new();
        for (i, (name, params)) in alts.iter().enumerate() {
            rules.push_str(&format!(
                "c{i}: {} \" \" {} \"json\" {} %json {} {}\n",
                enc(&json!(name))?,
                self.marker("<|constrain|>"),
                self.marker("<|message|>"),
                enc(&with_layout(params)?)?,
                self.marker("<|call|>"),
            ));
            names.push(format!("c{i}"));
        }
        let lark = format!(
            "start: {} \"commentary to=functions.\" ({})\n{rules}",
            self.marker("<|channel|>"),
            names.join(" | ")
        );
        self.build(TopLevelGrammar::from_lark(lark))
            .map_err(ConstrainError::Grammar)
    }

    /// JSON matching `schema` as a harmony final message (`<|channel|>final<|message|>` JSON
    /// `<|return|>`), for `response_format` on gpt-oss.
    pub fn json_schema_harmony(
        &self,
        schema: &Value,
    ) -> Result<Box<dyn TokenConstraint>, ConstrainError> {
        let schema = with_layout(schema)?;
        // The schema alone first, so a bad one is reported as a schema error.
        self.build(TopLevelGrammar::from_json_schema(schema.clone()))
            .map_err(ConstrainError::InvalidSchema)?;
        let lark = format!(
            "start: {} \"final\" {} %json {} {}\n",
            self.marker("<|channel|>"),
            self.marker("<|message|>"),
            serde_json::to_string(&schema).map_err(|e| ConstrainError::Grammar(e.to_string()))?,
            self.marker("<|return|>"),
        );
        self.build(TopLevelGrammar::from_lark(lark))
            .map_err(ConstrainError::Grammar)
    }

    /// A harmony marker in lark: the special token when the vocabulary has it (as gpt-oss's
    /// o200k_harmony does), else its text as a literal (a model whose tokenizer spells the
    /// markers in ordinary tokens; the harmony parser reads text either way).
    fn marker(&self, text: &str) -> String {
        if self.specials.contains(text) {
            text.to_string()
        } else {
            serde_json::to_string(text).unwrap_or_default()
        }
    }

    /// The (name, parameters schema) of each tool `choice` allows, each schema checked alone
    /// so that an error names the tool.
    fn tool_alternatives(
        &self,
        tools: &[Value],
        choice: &ToolChoice,
    ) -> Result<Vec<(String, Value)>, ConstrainError> {
        let mut alternatives = Vec::new();
        for (index, t) in tools.iter().enumerate() {
            let bad = |reason: &str| ConstrainError::InvalidTool {
                index,
                reason: reason.to_string(),
            };
            let f = t.get("function").ok_or_else(|| bad("missing `function`"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("missing `function.name`"))?;
            if let ToolChoice::Named(want) = choice {
                if want != name {
                    continue;
                }
            }
            let params = match f.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object"}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => return Err(bad("`function.parameters` must be a JSON schema object")),
            };
            self.build(TopLevelGrammar::from_json_schema(with_layout(&params)?))
                .map_err(|e| bad(&format!("invalid `function.parameters` schema: {e}")))?;
            alternatives.push((name.to_string(), params));
        }
        match (alternatives.len(), choice) {
            (0, ToolChoice::Named(n)) => Err(ConstrainError::UnknownTool(n.clone())),
            (0, ToolChoice::Required) => Err(ConstrainError::InvalidTool {
                index: 0,
                reason: "`tool_choice` is required but `tools` is empty".into(),
            }),
            _ => Ok(alternatives),
        }
    }

    fn build(&self, grammar: TopLevelGrammar) -> Result<Box<dyn TokenConstraint>, String> {
        // Compiling runs on client input; llguidance reports problems as errors and bounds the
        // work (`ParserLimits`), but a panic in it must still not reach the server's worker.
        let parser = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.parsers.create_parser(grammar)
        }))
        .map_err(|_| "the grammar compiler failed on this schema".to_string())?
        .map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(e);
        }
        Ok(Box::new(LlgConstraint {
            matcher,
            allowed: Vec::new(),
            mask_time: Duration::ZERO,
            steps: 0,
        }))
    }
}

/// Add Hearth's JSON layout options (llguidance's `x-guidance` key) to a schema, leaving any
/// the client set. A boolean schema (`true`) becomes the equivalent empty object schema.
fn with_layout(schema: &Value) -> Result<Value, ConstrainError> {
    let mut s = match schema {
        Value::Object(o) => o.clone(),
        Value::Bool(true) => serde_json::Map::new(),
        Value::Bool(false) => {
            return Err(ConstrainError::InvalidSchema(
                "the schema `false` accepts no value".into(),
            ))
        }
        _ => {
            return Err(ConstrainError::InvalidSchema(
                "a JSON schema must be an object".into(),
            ))
        }
    };
    let mut opts = layout();
    if let (Some(Value::Object(theirs)), Some(ours)) = (s.get("x-guidance"), opts.as_object_mut()) {
        for (k, v) in theirs {
            ours.insert(k.clone(), v.clone());
        }
    }
    s.insert("x-guidance".into(), opts);
    Ok(Value::Object(s))
}

/// One sequence's constraint: an llguidance matcher plus a reusable mask buffer.
struct LlgConstraint {
    matcher: Matcher,
    /// Bitset of allowed tokens, 32 per word (llguidance's `SimpleVob` layout).
    allowed: Vec<u32>,
    mask_time: Duration,
    steps: u32,
}

impl TokenConstraint for LlgConstraint {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let t0 = Instant::now();
        let vob = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())?;
        self.allowed.clear();
        self.allowed.extend_from_slice(vob.as_slice());
        apply_mask(&self.allowed, logits);
        self.mask_time += t0.elapsed();
        self.steps += 1;
        Ok(())
    }

    fn commit(&mut self, token: u32) -> Result<(), String> {
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }

    fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

impl Drop for LlgConstraint {
    fn drop(&mut self) {
        if self.steps > 0 {
            tracing::debug!(
                steps = self.steps,
                mean_mask_us = self.mask_time.as_secs_f64() * 1e6 / self.steps as f64,
                "structured output: mask time"
            );
        }
    }
}

/// Set every logit whose bit is clear in `allowed` to −∞. Whole words are handled at once:
/// a JSON state usually allows either almost nothing (after `{"`: a few key tokens) or a wide
/// class (string contents), so most words are all-zero or all-one. Logits past the bitset
/// (a model head padded beyond the tokenizer's vocabulary) are forbidden.
pub fn apply_mask(allowed: &[u32], logits: &mut [f32]) {
    for (i, chunk) in logits.chunks_mut(32).enumerate() {
        match allowed.get(i).copied().unwrap_or(0) {
            u32::MAX if chunk.len() == 32 => {}
            0 => chunk.fill(f32::NEG_INFINITY),
            w => {
                for (b, l) in chunk.iter_mut().enumerate() {
                    if (w >> b) & 1 == 0 {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_words_map_to_logits() {
        let mut logits = vec![1.0f32; 70];
        // word 0: tokens 0 and 31; word 1: all; word 2 (tokens 64..70): token 65 only.
        let allowed = [1u32 | 1 << 31, u32::MAX, 0b10];
        apply_mask(&allowed, &mut logits);
        let kept: Vec<usize> = (0..70).filter(|&i| logits[i].is_finite()).collect();
        let mut want = vec![0, 31];
        want.extend(32..64);
        want.push(65);
        assert_eq!(kept, want);
        // Beyond the bitset: forbidden.
        let mut logits = vec![0.0f32; 40];
        apply_mask(&[u32::MAX], &mut logits);
        assert!(logits[..32].iter().all(|l| l.is_finite()));
        assert!(logits[32..].iter().all(|l| *l == f32::NEG_INFINITY));
    }

    #[test]
    fn layout_keeps_client_options_and_rejects_non_schemas() {
        let s = with_layout(&json!({"type": "object", "x-guidance": {"lenient": true}})).unwrap();
        assert_eq!(s["x-guidance"]["lenient"], true);
        assert_eq!(s["x-guidance"]["whitespace_flexible"], false);
        assert!(with_layout(&json!([1])).is_err());
        assert!(with_layout(&json!(false)).is_err());
        assert!(with_layout(&json!(true)).is_ok());
    }
}
