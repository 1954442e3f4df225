//! Building a tokenizer from GGUF metadata (llama.cpp `llama_vocab::impl::load`).

use super::*;

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
        // Duplicate texts: the later id wins, as in llama.cpp's map assignment.
        let tokens = vocab::Vocab::new(tokens);

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
                if let Some(id) = names.iter().filter_map(|t| tokens.id(*t)).min() {
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
            if let Some(id) = tokens.id(*t) {
                eog.insert(id);
                attrs[id as usize] |= ATTR_CONTROL;
            }
        }
        // gpt-oss: these are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = tokens.id(t) {
                attrs[id as usize] = ATTR_USER_DEFINED;
            }
        }
        eog.extend(eos);
        eog.extend(eot);
        eog.extend(eom);
        {
            // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
            let has = |eog: &BTreeSet<u32>, t: &str| eog.iter().any(|&i| &tokens[i as usize] == t);
            let end_id = eog
                .iter()
                .copied()
                .find(|&i| &tokens[i as usize] == "<|end|>");
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
                if let Some(s_id) = eog.iter().copied().find(|&i| &tokens[i as usize] == "</s>") {
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
            merges,
            pieces: vocab::Arena::default(),
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
        for i in 0..n as u32 {
            let p = tk.piece_uncached(i);
            tk.pieces.push(&p);
        }

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
            if let Some(id) = tk.tokens.id("<mask>") {
                tk.attrs[id as usize] |= ATTR_LSTRIP;
            }
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in &tk.special_cache {
                tk.attrs[id as usize] |= ATTR_RSTRIP;
            }
            if let Some(id) = tk.tokens.id("</s>") {
                tk.attrs[id as usize] |= ATTR_RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = tk.tokens.id(t) {
                    tk.attrs[id as usize] &= !ATTR_RSTRIP;
                }
            }
        } else if name.contains("modern-bert") {
            if let Some(id) = tk.tokens.id("[MASK]") {
                tk.attrs[id as usize] |= ATTR_LSTRIP;
            }
        }

        if !tk.special_cache.is_empty() {
            let pats: Vec<&str> = tk
                .special_cache
                .iter()
                .map(|&i| &tk.tokens[i as usize])
                .collect();
            tk.special_ac = AhoCorasick::new(&pats).ok();
        }
        Ok(tk)
    }

    /// llama.cpp `token_to_piece(token, special = true)` without the cache.
    pub(crate) fn piece_uncached(&self, id: u32) -> Vec<u8> {
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
}
