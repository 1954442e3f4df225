//! Tokenizers built from GGUF metadata, reproducing llama.cpp's tokenizer
//! (`src/llama-vocab.cpp`, `src/unicode.cpp`) token for token.
//!
//! Supported `tokenizer.ggml.model` values:
//! - `llama`: SentencePiece (BPE-style merges driven by piece scores, byte fallback
//!   through `<0xXX>` tokens, spaces escaped as `▁`, optional space prefix),
//! - `gpt2`: byte-level BPE with merge ranks and a per-`tokenizer.ggml.pre` regex
//!   pre-tokenizer,
//! - `gemma4`: BPE over `▁`-escaped raw UTF-8 with `<0xXX>` byte fallback.
//!
//! Everything the encoder needs is precomputed at load: token→id map, merge ranks,
//! the detokenized bytes of every token, and the special-token search automaton.

#[cfg(feature = "hf")]
mod hf;
mod pre_regex;
mod pretok;
mod stream;
mod unicode;
#[rustfmt::skip]
mod unicode_table;

use aho_corasick::AhoCorasick;
use hearth_formats::{GgufFile, Value};
use pretok::PreTokenizer;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::path::PathBuf;

pub use stream::StreamDecoder;

#[cfg(feature = "hf")]
use hf::HfParts;
/// Stand-in when the `hf` feature is off: no value of it ever exists.
#[cfg(not(feature = "hf"))]
enum HfParts {}

/// Fast non-cryptographic hash (the rustc "Fx" multiply-rotate scheme) for the vocabulary
/// and merge maps: their keys come from the model file, not from users, and SipHash made
/// building the 262k-entry Gemma map several times slower.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let r = chunks.remainder();
        if !r.is_empty() {
            let mut buf = [0u8; 8];
            buf[..r.len()].copy_from_slice(r);
            self.add(u64::from_le_bytes(buf) ^ ((r.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weak; hashbrown indexes buckets with them.
        self.0.rotate_left(26)
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// Errors while building a tokenizer. Messages name the file and the metadata key.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: missing tokenizer metadata '{key}'")]
    Missing { path: PathBuf, key: &'static str },
    #[error("{path}: tokenizer metadata '{key}' is malformed: {what}")]
    Malformed {
        path: PathBuf,
        key: &'static str,
        what: String,
    },
    #[error(
        "{path}: unsupported tokenizer.ggml.model '{model}' (supported: 'llama' = SentencePiece, \
         'gpt2' = byte-level BPE, 'gemma4' = SentencePiece-style BPE)"
    )]
    UnsupportedModel { path: PathBuf, model: String },
    #[error("{path}: unsupported tokenizer.ggml.pre '{pre}' (supported: {supported})")]
    UnsupportedPre {
        path: PathBuf,
        pre: String,
        supported: String,
    },
    #[error("{path}: pre-tokenizer '{pre}': {what}")]
    Regex {
        path: PathBuf,
        pre: String,
        what: String,
    },
    #[error("{path}: {what}")]
    Json { path: PathBuf, what: String },
}

// Token attributes, as llama.cpp's `llama_token_attr` bit flags.
const ATTR_UNKNOWN: u32 = 1 << 0;
const ATTR_UNUSED: u32 = 1 << 1;
const ATTR_NORMAL: u32 = 1 << 2;
const ATTR_CONTROL: u32 = 1 << 3;
const ATTR_USER_DEFINED: u32 = 1 << 4;
const ATTR_BYTE: u32 = 1 << 5;
const ATTR_LSTRIP: u32 = 1 << 7;
const ATTR_RSTRIP: u32 = 1 << 8;

/// `tokenizer.ggml.token_type` value → attribute (llama.cpp `llama_token_type`).
fn type_to_attr(t: i64) -> u32 {
    match t {
        1 => ATTR_NORMAL,
        2 => ATTR_UNKNOWN,
        3 => ATTR_CONTROL,
        4 => ATTR_USER_DEFINED,
        5 => ATTR_UNUSED,
        6 => ATTR_BYTE,
        _ => 0, // UNDEFINED
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// SentencePiece (`llama`).
    Spm,
    /// BPE (`gpt2`, `gemma4`).
    Bpe,
    /// Hugging Face `tokenizers` (tokenizer.json).
    #[cfg_attr(not(feature = "hf"), allow(dead_code))]
    Hf,
}

/// Pre-tokenizer settings derived from `tokenizer.ggml.pre` (llama.cpp `impl::load`).
struct PreCfg {
    /// llama.cpp `LLAMA_VOCAB_PRE_TYPE_*` group name (key into `pre_regex`).
    group: &'static str,
    ignore_merges: bool,
    add_bos: bool,
    clean_spaces: bool,
    escape_whitespaces: bool,
    no_bos: bool,
}

fn pre_config(pre: &str) -> Option<PreCfg> {
    let mut c = PreCfg {
        group: "DEFAULT",
        ignore_merges: false,
        add_bos: false,
        clean_spaces: true,
        escape_whitespaces: false,
        no_bos: false,
    };
    let g = match pre {
        "" | "default" => "DEFAULT",
        "minicpm5" => {
            c.ignore_merges = true;
            "MINICPM5"
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => {
            c.ignore_merges = true;
            c.add_bos = true;
            "LLAMA3"
        }
        "deepseek-llm" => {
            c.clean_spaces = false;
            "DEEPSEEK_LLM"
        }
        "deepseek-coder" => {
            c.clean_spaces = false;
            "DEEPSEEK_CODER"
        }
        "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => {
            c.clean_spaces = false;
            "DEEPSEEK3_LLM"
        }
        "spark2_5" => {
            c.clean_spaces = false;
            "SPARK2_5"
        }
        "youtu" => {
            c.clean_spaces = false;
            c.ignore_merges = true;
            "YOUTU"
        }
        "falcon" => "FALCON",
        "mpt" => "MPT",
        "starcoder" => "STARCODER",
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
        | "exaone4" => "GPT2",
        "jais-2" => "JAIS2",
        "gemma4" | "granite-embed-multi-311m" => {
            c.escape_whitespaces = true;
            "GEMMA4"
        }
        "sarvam-moe" => {
            c.escape_whitespaces = true;
            c.clean_spaces = false;
            "SARVAM_MOE"
        }
        "refact" => "REFACT",
        "command-r" => {
            c.clean_spaces = false;
            "COMMAND_R"
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => {
            c.clean_spaces = false;
            "QWEN2"
        }
        "qwen35" => {
            c.clean_spaces = false;
            "QWEN35"
        }
        "stablelm2" => "STABLELM2",
        "olmo" => "OLMO",
        "dbrx" => "DBRX",
        "smaug-bpe" => "SMAUG",
        "poro-chat" => {
            c.clean_spaces = false;
            "PORO"
        }
        "chatglm-bpe" => {
            c.no_bos = true;
            "CHATGLM4"
        }
        "glm4" | "glm5" => {
            c.no_bos = true;
            c.ignore_merges = true;
            "CHATGLM4"
        }
        "viking" => {
            c.clean_spaces = false;
            "VIKING"
        }
        "jais" => "JAIS",
        "tekken" => {
            c.clean_spaces = false;
            c.ignore_merges = true;
            c.add_bos = true;
            "TEKKEN"
        }
        "smollm" => {
            c.clean_spaces = false;
            "SMOLLM"
        }
        "codeshell" => "CODESHELL",
        "bloom" => "BLOOM",
        "gpt3-finnish" => "GPT3_FINNISH",
        "exaone" => "EXAONE",
        "exaone-moe" => "EXAONE_MOE",
        "chameleon" => {
            c.add_bos = true;
            c.clean_spaces = false;
            "CHAMELEON"
        }
        "minerva-7b" => "MINERVA",
        "megrez" => "QWEN2",
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => {
            c.clean_spaces = false;
            "GPT4O"
        }
        "granite-embed-multi-97m" => {
            c.clean_spaces = false;
            c.ignore_merges = true;
            "GRANITE_EMB_MULTI"
        }
        "trillion" => {
            c.clean_spaces = false;
            "TRILLION"
        }
        "granite-docling" => {
            c.clean_spaces = false;
            "GRANITE_DOCLING"
        }
        "bailingmoe" | "bailingmoe2" | "llada-moe" => {
            c.clean_spaces = false;
            "BAILINGMOE"
        }
        "seed-coder" => {
            c.clean_spaces = false;
            "SEED_CODER"
        }
        "hunyuan" => {
            c.clean_spaces = false;
            "HUNYUAN"
        }
        "ufakzeka" => {
            c.clean_spaces = false;
            "UFAKZEKA"
        }
        "grok-2" => {
            c.clean_spaces = false;
            "GROK_2"
        }
        "laguna" => {
            c.clean_spaces = false;
            "LAGUNA"
        }
        "minimax-m2" => {
            c.clean_spaces = false;
            "MINIMAX_M2"
        }
        "solar-open" => {
            c.clean_spaces = false;
            "SOLAR_OPEN"
        }
        "mellum2" => "MELLUM2",
        // kimi-k2, afmoe, tiny_aya/cohere2moe, superbpe and whitespace rely on bespoke
        // llama.cpp splitters we have not ported.
        _ => return None,
    };
    c.group = g;
    Some(c)
}

/// Token texts llama.cpp treats as end-of-generation (`special_eog_ids`).
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// The `tokenizer.ggml.pre` values [`Tokenizer::from_gguf`] accepts.
pub const SUPPORTED_PRE: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
    "minicpm5",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "hunyuan-dense",
    "hy_v4",
    "joyai-llm",
    "spark2_5",
    "youtu",
    "falcon",
    "mpt",
    "starcoder",
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
    "modern-bert",
    "jina-v1-en",
    "jina-v2-code",
    "roberta-bpe",
    "exaone4",
    "jais-2",
    "gemma4",
    "granite-embed-multi-311m",
    "sarvam-moe",
    "refact",
    "command-r",
    "qwen2",
    "deepseek-r1-qwen",
    "kormo",
    "f2llmv2",
    "qwen35",
    "stablelm2",
    "olmo",
    "dbrx",
    "smaug-bpe",
    "poro-chat",
    "chatglm-bpe",
    "glm4",
    "glm5",
    "viking",
    "jais",
    "tekken",
    "smollm",
    "codeshell",
    "bloom",
    "gpt3-finnish",
    "exaone",
    "exaone-moe",
    "chameleon",
    "minerva-7b",
    "megrez",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "granite-embed-multi-97m",
    "trillion",
    "granite-docling",
    "bailingmoe",
    "bailingmoe2",
    "llada-moe",
    "seed-coder",
    "hunyuan",
    "ufakzeka",
    "grok-2",
    "laguna",
    "minimax-m2",
    "solar-open",
    "mellum2",
];

/// A tokenizer reproducing llama.cpp's `llama_tokenize` / `llama_detokenize`.
pub struct Tokenizer {
    model: String,
    pre: String,
    kind: Kind,
    pretok: Option<PreTokenizer>,
    /// gemma4 pre-tokenizer: runs of newlines are looked up whole before merging.
    gemma4: bool,
    tokens: Vec<String>,
    scores: Vec<f32>,
    attrs: Vec<u32>,
    token_to_id: FxMap<String, u32>,
    /// BPE merge ranks keyed by "left right" (the merge line split at its first space
    /// after position 0; the left part never contains a space when we look it up).
    merges: FxMap<String, u32>,
    /// Bytes of every token's piece as llama.cpp's `token_to_piece(special = true)`.
    pieces: Vec<Vec<u8>>,
    /// CONTROL / USER_DEFINED / UNKNOWN tokens, longest text first (partition order).
    special_cache: Vec<u32>,
    /// Automaton over `special_cache` texts, pattern i = `special_cache[i]`.
    special_ac: Option<AhoCorasick>,
    add_space_prefix: bool,
    add_bos: bool,
    add_eos: bool,
    escape_whitespaces: bool,
    clean_spaces: bool,
    ignore_merges: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    eog: BTreeSet<u32>,
    /// Set for tokenizers loaded from tokenizer.json.
    #[cfg_attr(not(feature = "hf"), allow(dead_code))]
    hf: Option<Box<HfParts>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model)
            .field("pre", &self.pre)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eog", &self.eog)
            .finish()
    }
}

/// A piece of the input during special-token partitioning.
#[derive(Clone, Copy, Debug)]
enum Frag {
    /// Byte range of the input still to be tokenized as text.
    Raw(usize, usize),
    Token(u32),
}

fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl Tokenizer {
    /// Build the tokenizer described by a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf(g: &GgufFile) -> Result<Self, TokenizerError> {
        let path = g.path.clone();
        let malformed = |key: &'static str, what: String| TokenizerError::Malformed {
            path: path.clone(),
            key,
            what,
        };

        let model = g
            .get_str("tokenizer.ggml.model")
            .ok_or(TokenizerError::Missing {
                path: path.clone(),
                key: "tokenizer.ggml.model",
            })?
            .to_string();
        let mut pre = g.get_str("tokenizer.ggml.pre").unwrap_or("").to_string();

        let kind;
        let mut bos = None;
        let mut eos = None;
        let mut unk = None;
        let pad = None;
        let mut add_space_prefix;
        let mut add_bos;
        let mut add_eos = false;
        let mut escape_whitespaces = true;
        let mut clean_spaces = false;
        let mut ignore_merges = false;
        let mut gemma4 = false;
        let mut pretok = None;
        let mut merges = FxMap::default();

        match model.as_str() {
            "llama" => {
                kind = Kind::Spm;
                (bos, eos, unk) = (Some(1), Some(2), Some(0));
                add_space_prefix = true;
                add_bos = true;
            }
            "gpt2" | "gemma4" => {
                kind = Kind::Bpe;
                if model == "gemma4" {
                    pre = "gemma4".to_string();
                } else {
                    (bos, eos) = (Some(11), Some(11));
                }
                let list = g
                    .get("tokenizer.ggml.merges")
                    .ok_or(TokenizerError::Missing {
                        path: path.clone(),
                        key: "tokenizer.ggml.merges",
                    })?
                    .as_array()
                    .ok_or_else(|| malformed("tokenizer.ggml.merges", "not an array".into()))?;
                merges.reserve(list.len());
                for (i, v) in list.iter().enumerate() {
                    let s = v.as_str().ok_or_else(|| {
                        malformed("tokenizer.ggml.merges", format!("item {i} is not a string"))
                    })?;
                    // llama.cpp splits at the first space after position 0; a line without
                    // one becomes the pair ("", "") which can never be looked up.
                    // Our key is "first second", which is the line itself.
                    let key = if s.as_bytes().iter().skip(1).any(|&b| b == b' ') {
                        s.to_string()
                    } else {
                        " ".to_string()
                    };
                    merges.entry(key).or_insert(i as u32);
                }
                let cfg = pre_config(&pre).ok_or_else(|| TokenizerError::UnsupportedPre {
                    path: path.clone(),
                    pre: pre.clone(),
                    supported: SUPPORTED_PRE.join(", "),
                })?;
                add_space_prefix = false;
                escape_whitespaces = cfg.escape_whitespaces;
                clean_spaces = cfg.clean_spaces;
                ignore_merges = cfg.ignore_merges;
                add_bos = cfg.add_bos;
                if cfg.no_bos {
                    bos = None;
                }
                gemma4 = cfg.group == "GEMMA4";
                let (exprs, byte_encode) =
                    pre_regex::regexes(cfg.group).expect("every supported group has regexes");
                pretok = Some(PreTokenizer::new(exprs, byte_encode).map_err(|what| {
                    TokenizerError::Regex {
                        path: path.clone(),
                        pre: pre.clone(),
                        what,
                    }
                })?);
            }
            _ => return Err(TokenizerError::UnsupportedModel { path, model }),
        }
        if let Some(v) = g
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(Value::as_bool)
        {
            add_space_prefix = v;
        }

        // Vocabulary.
        let list = g
            .get("tokenizer.ggml.tokens")
            .ok_or(TokenizerError::Missing {
                path: path.clone(),
                key: "tokenizer.ggml.tokens",
            })?
            .as_array()
            .ok_or_else(|| malformed("tokenizer.ggml.tokens", "not an array".into()))?;
        let n = list.len();
        if n == 0 || n > u32::MAX as usize / 2 {
            return Err(malformed(
                "tokenizer.ggml.tokens",
                format!("implausible vocabulary size {n}"),
            ));
        }
        let mut tokens = Vec::with_capacity(n);
        for (i, v) in list.iter().enumerate() {
            let s = v.as_str().ok_or_else(|| {
                malformed("tokenizer.ggml.tokens", format!("item {i} is not a string"))
            })?;
            // llama.cpp renames empty tokens so that every id has a distinct text.
            tokens.push(if s.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                s.to_string()
            });
        }
        let scores: Vec<f32> = match g.get("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(v) => {
                let a = v
                    .as_array()
                    .ok_or_else(|| malformed("tokenizer.ggml.scores", "not an array".into()))?;
                if a.len() < n {
                    return Err(malformed(
                        "tokenizer.ggml.scores",
                        format!("{} scores for {n} tokens", a.len()),
                    ));
                }
                a[..n]
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                    .collect()
            }
        };
        let mut attrs: Vec<u32> = match g.get("tokenizer.ggml.token_type") {
            None => vec![ATTR_NORMAL; n],
            Some(v) => {
                let a = v
                    .as_array()
                    .ok_or_else(|| malformed("tokenizer.ggml.token_type", "not an array".into()))?;
                if a.len() < n {
                    return Err(malformed(
                        "tokenizer.ggml.token_type",
                        format!("{} types for {n} tokens", a.len()),
                    ));
                }
                a[..n]
                    .iter()
                    .map(|x| type_to_attr(x.as_i64().unwrap_or(0)))
                    .collect()
            }
        };
        let mut token_to_id = FxMap::with_capacity_and_hasher(n, Default::default());
        for (i, t) in tokens.iter().enumerate() {
            // Duplicate texts: the later id wins, as in llama.cpp's map assignment.
            token_to_id.insert(t.clone(), i as u32);
        }

        // Special token ids: defaults above, overridden by metadata when in range.
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let (mut bos, mut eos, mut unk, mut pad) =
            (in_range(bos), in_range(eos), in_range(unk), in_range(pad));
        let (mut eot, mut eom) = (None, None);
        let (mut fim_pre, mut fim_suf, mut fim_mid, mut fim_pad, mut fim_rep, mut fim_sep) =
            (None, None, None, None, None, None);
        {
            let set = |key: &str, slot: &mut Option<u32>| {
                if let Some(v) = g.get_u64(key) {
                    if (v as usize) < n {
                        *slot = Some(v as u32);
                    }
                }
            };
            set("tokenizer.ggml.bos_token_id", &mut bos);
            set("tokenizer.ggml.eos_token_id", &mut eos);
            set("tokenizer.ggml.eot_token_id", &mut eot);
            set("tokenizer.ggml.eom_token_id", &mut eom);
            set("tokenizer.ggml.unknown_token_id", &mut unk);
            set("tokenizer.ggml.padding_token_id", &mut pad);
            set("tokenizer.ggml.fim_pre_token_id", &mut fim_pre);
            set("tokenizer.ggml.fim_suf_token_id", &mut fim_suf);
            set("tokenizer.ggml.fim_mid_token_id", &mut fim_mid);
            set("tokenizer.ggml.fim_pad_token_id", &mut fim_pad);
            set("tokenizer.ggml.fim_rep_token_id", &mut fim_rep);
            set("tokenizer.ggml.fim_sep_token_id", &mut fim_sep);
            set("tokenizer.ggml.prefix_token_id", &mut fim_pre);
            set("tokenizer.ggml.suffix_token_id", &mut fim_suf);
            set("tokenizer.ggml.middle_token_id", &mut fim_mid);
        }
        if let Some(v) = g
            .get("tokenizer.ggml.add_bos_token")
            .and_then(Value::as_bool)
        {
            add_bos = v;
        }
        if let Some(v) = g
            .get("tokenizer.ggml.add_eos_token")
            .and_then(Value::as_bool)
        {
            add_eos = v;
        }
        if gemma4 {
            add_bos = true; // llama.cpp workaround for Gemma 4 (ggml-org/llama.cpp#21500)
        }

        // Auto-detect special tokens by text, as llama.cpp does for older conversions.
        // (llama.cpp walks a hash map, so when several candidates exist the one it picks
        // is unspecified; we take the lowest id. The EOG set below does not depend on it.)
        {
            let mut detect = |slot: &mut Option<u32>, names: &[&str]| {
                if slot.is_some() {
                    return;
                }
                if let Some(id) = names
                    .iter()
                    .filter_map(|t| token_to_id.get(*t).copied())
                    .min()
                {
                    *slot = Some(id);
                    attrs[id as usize] |= ATTR_CONTROL;
                }
            };
            detect(
                &mut eot,
                &[
                    "<|eot_id|>",
                    "<|im_end|>",
                    "<|end|>",
                    "<end_of_turn>",
                    "<|endoftext|>",
                    "<|end_of_text|>",
                    "<EOT>",
                    "_<EOT>",
                    "[EOT]",
                    "<｜end▁of▁sentence｜>",
                    "<end_of_utterance>",
                ],
            );
            detect(&mut eom, &["<|eom_id|>"]);
            detect(
                &mut fim_pre,
                &[
                    "<|fim_prefix|>",
                    "<fim-prefix>",
                    "<fim_prefix>",
                    "<｜fim▁begin｜>",
                    "<PRE>",
                    "▁<PRE>",
                    "<|code_prefix|>",
                    "<|prefix|>",
                ],
            );
            detect(
                &mut fim_suf,
                &[
                    "<|fim_suffix|>",
                    "<fim-suffix>",
                    "<fim_suffix>",
                    "<｜fim▁hole｜>",
                    "<SUF>",
                    "▁<SUF>",
                    "<|code_suffix|>",
                    "<|suffix|>",
                ],
            );
            detect(
                &mut fim_mid,
                &[
                    "<|fim_middle|>",
                    "<fim-middle>",
                    "<fim_middle>",
                    "<｜fim▁end｜>",
                    "<MID>",
                    "▁<MID>",
                    "<|code_middle|>",
                    "<|middle|>",
                ],
            );
            detect(
                &mut fim_pad,
                &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
            );
            detect(
                &mut fim_rep,
                &[
                    "<|fim_repo|>",
                    "<|repo_name|>",
                    "<fim-repo>",
                    "<REPO>",
                    "<reponame>",
                ],
            );
            detect(&mut fim_sep, &["<|file_sep|>"]);
        }
        let _ = (fim_pre, fim_suf, fim_mid);
        // Control tokens whose text says "unused" are unused.
        for i in 0..n {
            if attrs[i] & ATTR_CONTROL != 0 && tokens[i].contains("unused") {
                attrs[i] |= ATTR_UNUSED;
            }
        }

        // End-of-generation set (llama.cpp `special_eog_ids`).
        let mut eog = BTreeSet::new();
        eog.extend(fim_pad);
        eog.extend(fim_rep);
        eog.extend(fim_sep);
        for t in EOG_TEXTS {
            if let Some(&id) = token_to_id.get(*t) {
                eog.insert(id);
                attrs[id as usize] |= ATTR_CONTROL;
            }
        }
        // gpt-oss: these are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(t) {
                attrs[id as usize] = ATTR_USER_DEFINED;
            }
        }
        eog.extend(eos);
        eog.extend(eot);
        eog.extend(eom);
        {
            // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
            let has = |eog: &BTreeSet<u32>, t: &str| eog.iter().any(|&i| tokens[i as usize] == t);
            let end_id = eog
                .iter()
                .copied()
                .find(|&i| tokens[i as usize] == "<|end|>");
            if let Some(end_id) = end_id {
                let has_return = has(&eog, "<|return|>");
                let has_call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
                let has_flush = has(&eog, "<|flush|>");
                if (has_return && has_call) || (has_call && has_flush) {
                    eog.remove(&end_id);
                    attrs[end_id as usize] = ATTR_USER_DEFINED;
                }
            }
            // gemma4 / plamo: "</s>" is a normal token there.
            let normal_s = has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>");
            if normal_s {
                if let Some(s_id) = eog.iter().copied().find(|&i| tokens[i as usize] == "</s>") {
                    eog.remove(&s_id);
                    attrs[s_id as usize] = ATTR_NORMAL;
                }
            }
        }

        // Special-token cache, longest first. (llama.cpp uses an unstable sort; ties
        // between equal-length texts cannot overlap at one position, so order among
        // them only matters for overlapping occurrences — we keep id order.)
        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&i| attrs[i as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0)
            .collect();
        special_cache.sort_by(|&a, &b| tokens[b as usize].len().cmp(&tokens[a as usize].len()));

        let mut tk = Tokenizer {
            model,
            pre,
            kind,
            pretok,
            gemma4,
            tokens,
            scores,
            attrs,
            token_to_id,
            merges,
            pieces: Vec::new(),
            special_cache,
            special_ac: None,
            add_space_prefix,
            add_bos,
            add_eos,
            escape_whitespaces,
            clean_spaces,
            ignore_merges,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            eog,
            hf: None,
        };
        tk.pieces = (0..n as u32).map(|i| tk.piece_uncached(i)).collect();

        // Per-token strip attributes llama.cpp sets by model name (after the caches).
        let name = g.get_str("general.name").unwrap_or("").to_lowercase();
        let arch = g.get_str("general.architecture").unwrap_or("");
        let pre_meta = g.get_str("tokenizer.ggml.pre").unwrap_or("");
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| pre_meta.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|a| arch.contains(a))
        {
            if let Some(&id) = tk.token_to_id.get("<mask>") {
                tk.attrs[id as usize] |= ATTR_LSTRIP;
            }
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in &tk.special_cache {
                tk.attrs[id as usize] |= ATTR_RSTRIP;
            }
            if let Some(&id) = tk.token_to_id.get("</s>") {
                tk.attrs[id as usize] |= ATTR_RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = tk.token_to_id.get(t) {
                    tk.attrs[id as usize] &= !ATTR_RSTRIP;
                }
            }
        } else if name.contains("modern-bert") {
            if let Some(&id) = tk.token_to_id.get("[MASK]") {
                tk.attrs[id as usize] |= ATTR_LSTRIP;
            }
        }

        if !tk.special_cache.is_empty() {
            let pats: Vec<&str> = tk
                .special_cache
                .iter()
                .map(|&i| tk.tokens[i as usize].as_str())
                .collect();
            tk.special_ac = AhoCorasick::new(&pats).ok();
        }
        Ok(tk)
    }

    /// llama.cpp `token_to_piece(token, special = true)` without the cache.
    fn piece_uncached(&self, id: u32) -> Vec<u8> {
        let a = self.attrs[id as usize];
        let text = &self.tokens[id as usize];
        if a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & ATTR_NORMAL != 0 {
            if self.kind == Kind::Spm || self.escape_whitespaces {
                // SentencePiece pieces (also SentencePiece-style BPE and tokenizer.json
                // without a byte-level decoder) mark spaces with U+2581.
                return text.replace('▁', " ").into_bytes();
            }
            return decode_byte_level(text);
        }
        if a & ATTR_BYTE != 0 {
            // "<0xXX>"
            if let Some(b) = text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                return vec![b];
            }
        }
        Vec::new()
    }

    /// Tokenize `text`.
    ///
    /// `add_special`: prepend BOS / append EOS as the metadata says (`add_bos_token`,
    /// `add_eos_token`). `parse_special`: recognise the text of control tokens (e.g.
    /// `<|im_start|>`) as those tokens; when false only user-defined tokens are matched,
    /// as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        #[cfg(feature = "hf")]
        if let Some(hf) = &self.hf {
            return self.hf_encode(hf, text, add_special, parse_special);
        }
        let frags = self.partition(text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        match self.kind {
            Kind::Spm => {
                let mut prev_special = true; // a space prefix goes before the first text
                if add_special && self.add_bos {
                    out.extend(self.bos);
                }
                for f in frags {
                    match f {
                        Frag::Raw(o, l) => {
                            let mut s = String::with_capacity(l + 4);
                            if self.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(&text[o..o + l]);
                            let s = s.replace(' ', "▁");
                            self.spm_tokenize(&s, &mut out);
                            prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
                if add_special && self.add_eos {
                    out.extend(self.eos);
                }
            }
            Kind::Bpe => {
                if add_special && self.add_bos {
                    out.extend(self.bos);
                }
                for f in frags {
                    match f {
                        Frag::Raw(o, l) => {
                            let s = &text[o..o + l];
                            if self.escape_whitespaces {
                                self.bpe_tokenize(&s.replace(' ', "▁"), &mut out);
                            } else {
                                self.bpe_tokenize(s, &mut out);
                            }
                        }
                        Frag::Token(id) => out.push(id),
                    }
                }
                if add_special && self.add_eos {
                    out.extend(self.eos);
                }
            }
            Kind::Hf => {}
        }
        out
    }

    /// Split the input around special-token texts (llama.cpp `tokenizer_st_partition`):
    /// for each special token, longest first, every remaining text fragment is cut at
    /// each occurrence, honouring the token's LSTRIP/RSTRIP attributes.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Frag::Raw(0, text.len()));
        let Some(ac) = &self.special_ac else {
            return frags;
        };
        // Which special tokens occur at all? Fragments are substrings of `text`, so a
        // token absent from `text` can be skipped without changing the result.
        let mut present = vec![false; self.special_cache.len()];
        let mut any = false;
        for m in ac.find_overlapping_iter(text) {
            present[m.pattern().as_usize()] = true;
            any = true;
        }
        if !any {
            return frags;
        }
        let bytes = text.as_bytes();
        for (k, &id) in self.special_cache.iter().enumerate() {
            if !present[k] {
                continue;
            }
            let attr = self.attrs[id as usize];
            if !parse_special && attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                continue;
            }
            let needle = self.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Frag::Raw(mut off, mut len) = f else {
                    next.push(f);
                    continue;
                };
                loop {
                    let Some(rel) = text[off..off + len].find(needle) else {
                        if len > 0 {
                            next.push(Frag::Raw(off, len));
                        }
                        break;
                    };
                    let m = off + rel;
                    if m > off {
                        let mut ll = m - off;
                        if attr & ATTR_LSTRIP != 0 {
                            while ll > 0 && c_isspace(bytes[off + ll - 1]) {
                                ll -= 1;
                            }
                        }
                        if ll > 0 {
                            next.push(Frag::Raw(off, ll));
                        }
                    }
                    next.push(Frag::Token(id));
                    let end = off + len;
                    let mut r = m + needle.len();
                    if r >= end {
                        break;
                    }
                    if attr & ATTR_RSTRIP != 0 {
                        while r < end && c_isspace(bytes[r]) {
                            r += 1;
                        }
                    }
                    off = r;
                    len = end - r;
                    if len == 0 {
                        break;
                    }
                }
            }
            frags = next;
        }
        frags
    }

    fn byte_token_spm(&self, b: u8) -> Option<u32> {
        let hex = format!("<0x{b:02X}>");
        if let Some(&id) = self.token_to_id.get(&hex) {
            return Some(id);
        }
        if b < 0x80 {
            if let Some(&id) = self
                .token_to_id
                .get((b as char).encode_utf8(&mut [0; 4]) as &str)
            {
                return Some(id);
            }
        }
        // llama.cpp aborts here (map::at); we degrade to the unknown token.
        self.unk
    }

    /// SentencePiece merge (llama.cpp `llm_tokenizer_spm_session::tokenize`): start from
    /// single code points and repeatedly merge the adjacent pair whose concatenation is
    /// the highest-scoring vocabulary entry (leftmost on ties); pieces that are not in
    /// the vocabulary fall back to `<0xXX>` byte tokens.
    fn spm_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        #[derive(Clone, Copy)]
        struct Sym {
            start: usize,
            n: usize,
            prev: isize,
            next: isize,
        }
        struct Bigram {
            left: usize,
            right: usize,
            score: f32,
            size: usize,
        }
        impl PartialEq for Bigram {
            fn eq(&self, o: &Self) -> bool {
                self.cmp(o) == std::cmp::Ordering::Equal
            }
        }
        impl Eq for Bigram {}
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Bigram {
            // Max-heap: higher score first, then lower left index.
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.score
                    .total_cmp(&o.score)
                    .then_with(|| o.left.cmp(&self.left))
            }
        }
        if text.is_empty() {
            return;
        }
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            let n = c.len_utf8();
            syms.push(Sym {
                start,
                n,
                prev: i as isize - 1,
                next: if start + n == text.len() {
                    -1
                } else {
                    i as isize + 1
                },
            });
        }
        let mut heap = BinaryHeap::with_capacity(syms.len());
        let try_add = |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, l: isize, r: isize| {
            if l < 0 || r < 0 {
                return;
            }
            let (l, r) = (l as usize, r as usize);
            let s = syms[l].start;
            let size = syms[l].n + syms[r].n;
            if let Some(&id) = self.token_to_id.get(&text[s..s + size]) {
                heap.push(Bigram {
                    left: l,
                    right: r,
                    score: self.scores[id as usize],
                    size,
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&syms, &mut heap, i as isize - 1, i as isize);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
            if l.n == 0 || r.n == 0 || l.n + r.n != b.size {
                continue;
            }
            syms[b.left].n += r.n;
            syms[b.right].n = 0;
            syms[b.left].next = r.next;
            if r.next >= 0 {
                syms[r.next as usize].prev = b.left as isize;
            }
            let (p, nx) = (syms[b.left].prev, syms[b.left].next);
            try_add(&syms, &mut heap, p, b.left as isize);
            try_add(&syms, &mut heap, b.left as isize, nx);
        }
        let mut i = 0isize;
        while i != -1 {
            let s = syms[i as usize];
            let piece = &text[s.start..s.start + s.n];
            if let Some(&id) = self.token_to_id.get(piece) {
                out.push(id);
            } else {
                for &b in piece.as_bytes() {
                    out.extend(self.byte_token_spm(b));
                }
            }
            i = s.next;
        }
    }

    /// BPE (llama.cpp `llm_tokenizer_bpe_session::tokenize`): pre-split into words, then
    /// within each word repeatedly apply the lowest-ranked merge (leftmost on ties).
    fn bpe_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        #[derive(Clone, Copy)]
        struct Sym {
            start: usize,
            n: usize,
            prev: isize,
            next: isize,
        }
        #[derive(PartialEq, Eq)]
        struct Bigram {
            rank: u32,
            left: usize,
            right: usize,
            size: usize,
        }
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Bigram {
            // Max-heap: lower rank first, then lower left index.
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                o.rank.cmp(&self.rank).then_with(|| o.left.cmp(&self.left))
            }
        }
        let Some(pretok) = &self.pretok else { return };
        let words = pretok.split(text);
        let mut key = String::new();
        let mut syms: Vec<Sym> = Vec::new();
        let mut heap = BinaryHeap::new();
        for word in &words {
            syms.clear();
            heap.clear();
            let whole = (self.ignore_merges || (self.gemma4 && word.bytes().all(|b| b == b'\n')))
                && self.token_to_id.contains_key(word.as_str());
            if whole {
                syms.push(Sym {
                    start: 0,
                    n: word.len(),
                    prev: -1,
                    next: -1,
                });
            } else {
                for (i, (start, c)) in word.char_indices().enumerate() {
                    let n = c.len_utf8();
                    syms.push(Sym {
                        start,
                        n,
                        prev: i as isize - 1,
                        next: if start + n == word.len() {
                            -1
                        } else {
                            i as isize + 1
                        },
                    });
                }
            }
            let mut add = |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, l: isize, r: isize| {
                if l < 0 || r < 0 {
                    return;
                }
                let (ls, rs) = (syms[l as usize], syms[r as usize]);
                key.clear();
                key.push_str(&word[ls.start..ls.start + ls.n]);
                key.push(' ');
                key.push_str(&word[rs.start..rs.start + rs.n]);
                if let Some(&rank) = self.merges.get(&key) {
                    heap.push(Bigram {
                        rank,
                        left: l as usize,
                        right: r as usize,
                        size: ls.n + rs.n,
                    });
                }
            };
            for i in 1..syms.len() {
                add(&syms, &mut heap, i as isize - 1, i as isize);
            }
            while let Some(b) = heap.pop() {
                let (l, r) = (syms[b.left], syms[b.right]);
                // Stale entry: one side was merged away or grew (the texts are contiguous
                // from fixed starts, so comparing lengths equals comparing strings).
                if l.n == 0 || r.n == 0 || l.n + r.n != b.size {
                    continue;
                }
                syms[b.left].n += r.n;
                syms[b.right].n = 0;
                syms[b.left].next = r.next;
                if r.next >= 0 {
                    syms[r.next as usize].prev = b.left as isize;
                }
                let (p, nx) = (syms[b.left].prev, syms[b.left].next);
                add(&syms, &mut heap, p, b.left as isize);
                add(&syms, &mut heap, b.left as isize, nx);
            }
            for s in syms.iter().filter(|s| s.n > 0) {
                let piece = &word[s.start..s.start + s.n];
                if let Some(&id) = self.token_to_id.get(piece) {
                    out.push(id);
                    continue;
                }
                for &b in piece.as_bytes() {
                    let id = if pretok.byte_encode {
                        // llama.cpp looks up the single *byte* of the encoded text, which
                        // only exists as a token for ASCII.
                        if b < 0x80 {
                            self.token_to_id
                                .get((b as char).encode_utf8(&mut [0; 4]) as &str)
                                .copied()
                        } else {
                            None
                        }
                    } else {
                        self.token_to_id.get(&format!("<0x{b:02X}>")).copied()
                    };
                    out.extend(id);
                }
            }
        }
    }

    /// Detokenize, as llama.cpp `llama_detokenize(remove_special = skip_special,
    /// unparse_special = !skip_special)`: with `skip_special`, control/unknown tokens
    /// render as nothing and a leading BOS / trailing EOS the model adds are dropped;
    /// otherwise special tokens render as their text. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, skip_special)).into_owned()
    }

    /// [`Tokenizer::decode`] before the lossy UTF-8 conversion.
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Vec<u8> {
        #[cfg(feature = "hf")]
        if let Some(hf) = &self.hf {
            return self.hf_decode(hf, ids, skip_special);
        }
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if skip_special && self.add_bos && !ids.is_empty() && Some(ids[0]) == self.bos {
            remove_space = false;
            ids = &ids[1..];
        }
        if skip_special && self.add_eos && !ids.is_empty() && Some(ids[ids.len() - 1]) == self.eos {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.append_piece(&mut text, id, remove_space, !skip_special);
            remove_space = false;
        }
        if self.clean_spaces {
            clean_up_spaces(&mut text);
        }
        text
    }

    /// llama.cpp `token_to_piece(id, lstrip, special)` appended to `out`.
    pub(crate) fn append_piece(&self, out: &mut Vec<u8>, id: u32, lstrip: bool, special: bool) {
        let Some(p) = self.pieces.get(id as usize) else {
            return;
        };
        if !special && self.attrs[id as usize] & (ATTR_UNKNOWN | ATTR_CONTROL) != 0 {
            return;
        }
        let p = if lstrip && p.first() == Some(&b' ') {
            &p[1..]
        } else {
            &p[..]
        };
        out.extend_from_slice(p);
    }

    /// Raw bytes of one token's piece: byte-level BPE mapped back to bytes, `▁` → space,
    /// `<0xXX>` → that byte; control and user-defined tokens give their text. Empty for
    /// ids outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.pieces.get(id as usize).cloned().unwrap_or_default()
    }

    /// Whether `id` is a control or unknown token (rendered only when not skipping specials).
    pub fn is_special(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & (ATTR_UNKNOWN | ATTR_CONTROL) != 0)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }
    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos && self.eos.is_some()
    }
    /// End of generation: EOS, EOT, EOM and the tokens llama.cpp treats as such by text
    /// (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, `<|endoftext|>`, FIM pad/repo/sep...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.eog.iter().copied().collect()
    }
    /// The vocabulary string as stored ("" for ids outside the vocabulary).
    pub fn token_text(&self, id: u32) -> &str {
        self.tokens
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("")
    }
    /// Id of a vocabulary string, exactly as stored.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
    /// `tokenizer.ggml.model`: "llama", "gpt2" or "gemma4".
    pub fn model_kind(&self) -> &str {
        &self.model
    }
    /// `tokenizer.ggml.pre` ("" when absent; "gemma4" for gemma4 models).
    pub fn pre(&self) -> &str {
        &self.pre
    }
    /// `tokenizer.ggml.scores` entry of a token (0 outside the vocabulary).
    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }
}

/// Byte-level BPE text → bytes (llama.cpp `llama_decode_text`): every code point of the
/// GPT-2 alphabet maps back to its byte; anything else is reported inline as llama.cpp does.
fn decode_byte_level(text: &str) -> Vec<u8> {
    use std::sync::OnceLock;
    static INV: OnceLock<Vec<Option<u8>>> = OnceLock::new();
    let inv = INV.get_or_init(unicode::char_to_byte_table);
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match inv.get(c as usize).copied().flatten() {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// llama.cpp's `clean_spaces` post-processing (`clean_up_tokenization_spaces`):
/// " ?"/" !"/" ."/" ," lose the space, " ' " loses both spaces, " 's"/" 'm"/" 're"/" 've"
/// lose the space. Ported pass for pass, byte-wise.
fn clean_up_spaces(t: &mut Vec<u8>) {
    // pass 1
    let n = t.len();
    if n > 0 {
        let mut total = 1;
        for i in 1..n {
            let x = t[i];
            if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
                total -= 1;
            }
            t[total] = x;
            total += 1;
        }
        t.truncate(total);
    }
    // pass 2
    let n = t.len();
    if n > 0 {
        let mut total = 1;
        let mut i = 1;
        while i < n {
            let x = t[i];
            if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
                total -= 1;
                t[i + 1] = 0;
                i += 1; // the C++ `text[++i] = '\0'` skips the next space
                t[total] = x;
                total += 1;
                i += 1;
                continue;
            }
            t[total] = x;
            total += 1;
            i += 1;
        }
        t.truncate(total);
    }
    // pass 3
    let n = t.len();
    if n > 0 {
        let mut total = 1;
        for i in 1..n {
            let x = t[i];
            if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
                let x1 = t[i + 1];
                if x1 == b's' || x1 == b'm' {
                    total -= 1;
                } else if i + 2 < n && x1 != b't' && x1 != b'd' {
                    let x2 = t[i + 2];
                    if (x1 == b'r' && x2 == b'e') || (x1 == b'v' && x2 == b'e') {
                        total -= 1;
                    }
                }
            }
            t[total] = x;
            total += 1;
        }
        t.truncate(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `tokenizer.ggml.pre` we accept maps to regexes that compile and split text.
    #[test]
    fn all_supported_pre_tokenizers_compile() {
        for pre in SUPPORTED_PRE {
            let cfg = pre_config(pre).unwrap_or_else(|| panic!("{pre} listed but not configured"));
            let (exprs, be) =
                pre_regex::regexes(cfg.group).unwrap_or_else(|| panic!("{pre}: no regexes"));
            let p = PreTokenizer::new(exprs, be).unwrap_or_else(|e| panic!("{pre}: {e}"));
            let words = p.split("Hello, world! 12345 你好 \n\n  x's");
            assert!(!words.is_empty(), "{pre}");
        }
    }

    #[test]
    fn clean_spaces_passes() {
        let mut t = b"Hello , world ! It ' s I 'm you 're ok 't".to_vec();
        clean_up_spaces(&mut t);
        // " ," and " !" lose the space; " ' " loses both; " 'm"/" 're" lose the space,
        // " 't" keeps it (llama.cpp's detokenize clean-up).
        assert_eq!(
            String::from_utf8(t).unwrap(),
            "Hello, world! It's I'm you're ok 't"
        );
    }
}
