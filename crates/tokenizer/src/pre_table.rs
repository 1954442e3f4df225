//! Pre-tokenizer settings per `tokenizer.ggml.pre` value, as llama.cpp's `llama_vocab::impl::load`
//! assigns them.

/// Pre-tokenizer settings derived from `tokenizer.ggml.pre` (llama.cpp `impl::load`).
pub(crate) struct PreCfg {
    /// llama.cpp `LLAMA_VOCAB_PRE_TYPE_*` group name (key into `pre_regex`).
    pub(crate) group: &'static str,
    pub(crate) ignore_merges: bool,
    pub(crate) add_bos: bool,
    pub(crate) clean_spaces: bool,
    pub(crate) escape_whitespaces: bool,
    pub(crate) no_bos: bool,
}

pub(crate) fn pre_config(pre: &str) -> Option<PreCfg> {
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
