//! Detokenization (llama.cpp `llama_detokenize` / `token_to_piece`).

use super::*;

impl Tokenizer {
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
}

/// Byte-level BPE text → bytes (llama.cpp `llama_decode_text`): every code point of the
/// GPT-2 alphabet maps back to its byte; anything else is reported inline as llama.cpp does.
pub(crate) fn decode_byte_level(text: &str) -> Vec<u8> {
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
pub(crate) fn clean_up_spaces(t: &mut Vec<u8>) {
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
