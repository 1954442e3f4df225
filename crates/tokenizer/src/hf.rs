//! Hugging Face `tokenizer.json` support, wrapping the `tokenizers` crate behind the
//! same [`Tokenizer`] API as the GGUF tokenizers.
//!
//! Encoding and [`Tokenizer::decode`] are the `tokenizers` crate's; token pieces (for
//! [`Tokenizer::token_bytes`] and [`crate::StreamDecoder`]) are derived from the vocab
//! strings according to the decoder: byte-level (GPT-2 alphabet) or SentencePiece-style
//! (`▁` for spaces, `<0xXX>` byte fallback). BOS/EOS come from `tokenizer_config.json`
//! and the end-of-generation set also from `generation_config.json` when present.

use crate::*;
use serde_json::Value as Json;
use std::path::Path;

pub(crate) struct HfParts {
    /// Splits special added tokens out of the text (`parse_special = true`).
    parse: tokenizers::Tokenizer,
    /// Treats special added tokens as plain text (`parse_special = false`).
    plain: tokenizers::Tokenizer,
}

fn json_err(path: &Path, what: impl Into<String>) -> TokenizerError {
    TokenizerError::Json {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// A token named in tokenizer_config.json: either a string or `{"content": ...}`.
fn token_name(v: &Json) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
}

/// Does the decoder (possibly a Sequence) contain a decoder of type `ty`?
fn decoder_has(dec: &Json, ty: &str) -> bool {
    if dec.get("type").and_then(Json::as_str) == Some(ty) {
        return true;
    }
    dec.get("decoders")
        .and_then(Json::as_array)
        .is_some_and(|a| a.iter().any(|d| decoder_has(d, ty)))
}

impl Tokenizer {
    /// Load a Hugging Face tokenizer: `path` is a model directory (with `tokenizer.json`,
    /// optionally `tokenizer_config.json` / `generation_config.json`) or the
    /// `tokenizer.json` file itself (the config files are then looked up beside it).
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let (dir, file) = if path.is_dir() {
            (path.to_path_buf(), path.join("tokenizer.json"))
        } else {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                path.to_path_buf(),
            )
        };
        let raw = std::fs::read_to_string(&file).map_err(|e| json_err(&file, e.to_string()))?;
        let spec: Json = serde_json::from_str(&raw).map_err(|e| json_err(&file, e.to_string()))?;
        let parse = raw
            .parse::<tokenizers::Tokenizer>()
            .map_err(|e| json_err(&file, e.to_string()))?;
        let mut plain = parse.clone();
        plain.set_encode_special_tokens(true);

        let read_cfg = |name: &str| -> Result<Option<Json>, TokenizerError> {
            let p = dir.join(name);
            match std::fs::read_to_string(&p) {
                Ok(s) => serde_json::from_str(&s)
                    .map(Some)
                    .map_err(|e| json_err(&p, e.to_string())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(json_err(&p, e.to_string())),
            }
        };
        let cfg = read_cfg("tokenizer_config.json")?.unwrap_or(Json::Null);
        let gen = read_cfg("generation_config.json")?.unwrap_or(Json::Null);

        let model_type = spec
            .pointer("/model/type")
            .and_then(Json::as_str)
            .unwrap_or("unknown")
            .to_string();
        let dec = spec.get("decoder").cloned().unwrap_or(Json::Null);
        let byte_level = decoder_has(&dec, "ByteLevel");

        // Vocabulary, including added tokens.
        let n = parse.get_vocab_size(true);
        let added = parse.get_added_tokens_decoder();
        let mut tokens = Vec::with_capacity(n);
        let mut attrs = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let text = parse
                .id_to_token(id)
                .unwrap_or_else(|| format!("[EMPTY_{id}]"));
            let attr = match added.get(&id) {
                Some(t) if t.special => ATTR_CONTROL,
                Some(_) => ATTR_USER_DEFINED,
                None if !byte_level
                    && text.len() == 6
                    && text.starts_with("<0x")
                    && text.ends_with('>') =>
                {
                    ATTR_BYTE
                }
                None => ATTR_NORMAL,
            };
            tokens.push(text);
            attrs.push(attr);
        }
        // Duplicate texts: the later id wins, as in llama.cpp's map assignment.
        let tokens = vocab::Vocab::new(tokens);

        let id_of = |v: Option<&Json>| v.and_then(token_name).and_then(|s| tokens.id(s));
        let bos = id_of(cfg.get("bos_token"));
        let eos = id_of(cfg.get("eos_token"));
        let unk = id_of(cfg.get("unk_token"));
        let pad = id_of(cfg.get("pad_token"));
        // What the post-processor adds is what `add_special` does; observe it.
        let probe = parse
            .encode("", true)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default();
        let add_bos = bos.is_some() && probe.first() == bos.as_ref();
        let add_eos = eos.is_some() && probe.last() == eos.as_ref();

        let mut eog = BTreeSet::new();
        eog.extend(eos);
        match gen.get("eos_token_id") {
            Some(Json::Number(x)) => eog.extend(x.as_u64().map(|v| v as u32)),
            Some(Json::Array(a)) => eog.extend(a.iter().filter_map(Json::as_u64).map(|v| v as u32)),
            _ => {}
        }
        for t in EOG_TEXTS {
            if let Some(id) = tokens.id(*t) {
                if attrs[id as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
                    eog.insert(id);
                }
            }
        }
        eog.retain(|&i| (i as usize) < n);
        let eot = EOG_TEXTS
            .iter()
            .filter(|t| **t != "</s>")
            .find_map(|t| tokens.id(*t));

        let mut tk = Tokenizer {
            model: format!("hf-{}", model_type.to_lowercase()),
            pre: String::new(),
            kind: Kind::Hf,
            pretok: None,
            gemma4: false,
            scores: vec![0.0; n],
            tokens,
            attrs,
            merges: FxMap::default(),
            pieces: vocab::Arena::default(),
            special_cache: Vec::new(),
            special_ac: None,
            add_space_prefix: false,
            add_bos,
            add_eos,
            escape_whitespaces: !byte_level,
            clean_spaces: false,
            ignore_merges: false,
            bos,
            eos,
            eot,
            eom: None,
            unk,
            pad,
            eog,
            hf: Some(Box::new(HfParts { parse, plain })),
        };
        for i in 0..n as u32 {
            let p = tk.piece_uncached(i);
            tk.pieces.push(&p);
        }
        Ok(tk)
    }

    pub(crate) fn hf_encode(
        &self,
        hf: &HfParts,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Vec<u32> {
        let t = if parse_special { &hf.parse } else { &hf.plain };
        // The crate only fails on internal errors (e.g. a regex hitting its backtrack
        // limit); an empty result is the honest answer then.
        t.encode(text, add_special)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    pub(crate) fn hf_decode(&self, hf: &HfParts, ids: &[u32], skip_special: bool) -> Vec<u8> {
        let ids: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&i| (i as usize) < self.tokens.len())
            .collect();
        hf.parse
            .decode(&ids, skip_special)
            .map(String::into_bytes)
            .unwrap_or_default()
    }
}
