//! Pre-tokenizers: split text into "words" before BPE merges, reproducing llama.cpp's
//! `unicode_regex_split` (src/unicode.cpp) result for result.
//!
//! llama.cpp applies a *list* of regexes in sequence: each one re-splits every chunk
//! produced by the previous ones, and text between matches becomes a chunk of its own.
//! A few common regexes (GPT-2, LLaMA-3, Qwen2, Qwen3.5, newline runs) are implemented
//! by hand there; everything else runs through `std::regex` on a "collapsed" copy of the
//! text in which every non-ASCII code point is replaced by one placeholder per Unicode
//! category (and `\p{L}` etc. in the regex by the matching placeholder + ASCII ranges).
//! We do the same: the hand-written splitters are ported, and the generic path runs the
//! same collapsed text/regex through `fancy-regex`.

use crate::unicode::{self, flags, is_letter, is_mark, is_number, is_whitespace};
use fancy_regex::Regex;

// The regex strings llama.cpp recognises and replaces by hand-written splitters.
const RE_GPT2: &str =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const RE_LLAMA3_ORIG: &str =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const RE_LLAMA3: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const RE_QWEN2: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const RE_QWEN35: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const RE_NEWLINES: &str = "[^\\n]+|[\\n]+";

/// One step of the split pipeline.
enum Step {
    Gpt2,
    /// LLaMA-3 family: `max_digits` is 3 for llama3, 1 for qwen2; `marks` adds \p{M}
    /// to letter runs (qwen3.5).
    Llama3 {
        max_digits: usize,
        marks: bool,
    },
    Newlines,
    Regex {
        re: Regex,
        collapsed: bool,
    },
}

pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
    need_collapse: bool,
    need_wide: bool,
    /// Map each byte of the UTF-8 words to the GPT-2 byte alphabet.
    pub(crate) byte_encode: bool,
    byte_chars: [char; 256],
}

// Unicode categories llama.cpp's collapse understands, with their placeholder code
// point and the ASCII members of the category (written as \x{..} escapes).
const UCATS: &[(&str, u16)] = &[
    ("\\p{N}", unicode::NUMBER),
    ("\\p{L}", unicode::LETTER),
    ("\\p{P}", unicode::PUNCTUATION),
    ("\\p{M}", unicode::MARK),
    ("\\p{S}", unicode::SYMBOL),
    ("\\p{Lu}", unicode::LETTER),
    ("\\p{Ll}", unicode::LETTER),
    ("\\p{Lt}", unicode::LETTER),
    ("\\p{Lm}", unicode::LETTER),
    ("\\p{Lo}", unicode::LETTER),
];

fn placeholder(cat: u16) -> Option<char> {
    Some(match cat {
        unicode::NUMBER => '\u{D1}',
        unicode::LETTER => '\u{D2}',
        unicode::PUNCTUATION => '\u{D3}',
        unicode::MARK => '\u{D4}',
        unicode::SYMBOL => '\u{D5}',
        _ => return None,
    })
}

/// ASCII members of a category, as a character-class body (no brackets).
fn ascii_members(cat: u16) -> &'static str {
    match cat {
        unicode::NUMBER => "0-9",
        unicode::LETTER => "A-Za-z",
        // !-#%-*,-/:-;?-@[-]_{}
        unicode::PUNCTUATION => {
            "\\x{21}-\\x{23}\\x{25}-\\x{2A}\\x{2C}-\\x{2F}\\x{3A}-\\x{3B}\\x{3F}-\\x{40}\\x{5B}-\\x{5D}\\x{5F}\\x{7B}\\x{7D}"
        }
        unicode::MARK => "",
        // $+<=>^`|~
        unicode::SYMBOL => "\\x{24}\\x{2B}\\x{3C}-\\x{3E}\\x{5E}\\x{60}\\x{7C}\\x{7E}",
        _ => "",
    }
}

/// Placeholder for one code point in the collapsed text (llama.cpp: `text_collapsed`).
fn collapse_char(cp: u32) -> char {
    if cp < 0x80 {
        return char::from_u32(cp).unwrap();
    }
    let f = flags(cp);
    if is_whitespace(f) {
        // llama.cpp uses <vertical tab> so that std::regex's ASCII `\s` still matches.
        return '\u{0B}';
    }
    placeholder(f & 0xFF).unwrap_or('\u{D0}')
}

fn uses_ucat(expr: &str) -> bool {
    UCATS.iter().any(|(p, _)| expr.contains(p))
}

/// Rewrite an ECMAScript-flavoured llama.cpp regex into fancy-regex syntax with the same
/// meaning on our haystacks: `\p{..}` → placeholder classes (collapsed mode), the
/// ASCII-only `\d`/`\w` of a C-locale std::regex, literal `[`/`&`/`~` inside classes
/// (which Rust would read as nesting / set operators).
fn translate(expr: &str, collapsed: bool) -> Result<String, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            if n == 'p' && collapsed {
                let rest: String = chars[i..].iter().take(12).collect();
                let Some((pat, cat)) = UCATS
                    .iter()
                    .filter(|(p, _)| rest.starts_with(p))
                    .max_by_key(|(p, _)| p.len())
                else {
                    return Err(format!(
                        "unsupported unicode class in pre-tokenizer regex '{expr}'"
                    ));
                };
                if !inside {
                    out.push('[');
                }
                out.push_str(&format!("\\x{{{:X}}}", placeholder(*cat).unwrap() as u32));
                out.push_str(ascii_members(*cat));
                if !inside {
                    out.push(']');
                }
                i += pat.chars().count();
                continue;
            }
            match n {
                'd' => out.push_str(if inside { "0-9" } else { "[0-9]" }),
                'D' if !inside => out.push_str("[^0-9]"),
                'w' => out.push_str(if inside { "0-9A-Za-z_" } else { "[0-9A-Za-z_]" }),
                'W' if !inside => out.push_str("[^0-9A-Za-z_]"),
                _ => {
                    out.push('\\');
                    out.push(n);
                }
            }
            i += 2;
            continue;
        }
        if !inside && c == '[' {
            inside = true;
            out.push('[');
            // A leading `^` or `]` belongs to the class syntax; copy `^` verbatim.
            if i + 1 < chars.len() && chars[i + 1] == '^' {
                out.push('^');
                i += 1;
            }
        } else if inside && c == ']' {
            inside = false;
            out.push(']');
        } else if inside && matches!(c, '[' | '&' | '~') {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
        i += 1;
    }
    Ok(out)
}

impl PreTokenizer {
    pub(crate) fn new(exprs: &[&str], byte_encode: bool) -> Result<Self, String> {
        let mut steps = Vec::with_capacity(exprs.len());
        let mut need_collapse = false;
        let mut need_wide = false;
        for &e in exprs {
            let step = match e {
                RE_GPT2 => Step::Gpt2,
                RE_LLAMA3 | RE_LLAMA3_ORIG => Step::Llama3 {
                    max_digits: 3,
                    marks: false,
                },
                RE_QWEN2 => Step::Llama3 {
                    max_digits: 1,
                    marks: false,
                },
                RE_QWEN35 => Step::Llama3 {
                    max_digits: 1,
                    marks: true,
                },
                RE_NEWLINES => Step::Newlines,
                _ => {
                    let collapsed = uses_ucat(e);
                    if collapsed && !e.is_ascii() {
                        return Err(format!(
                            "regex '{e}' mixes unicode categories and non-ASCII characters (llama.cpp rejects it too)"
                        ));
                    }
                    need_collapse |= collapsed;
                    need_wide |= !collapsed;
                    let t = translate(e, collapsed)?;
                    let re = fancy_regex::RegexBuilder::new(&t)
                        .backtrack_limit(10_000_000)
                        .build()
                        .map_err(|err| {
                            format!("pre-tokenizer regex '{e}' (as '{t}') does not compile: {err}")
                        })?;
                    Step::Regex { re, collapsed }
                }
            };
            steps.push(step);
        }
        Ok(PreTokenizer {
            steps,
            need_collapse,
            need_wide,
            byte_encode,
            byte_chars: unicode::byte_to_char_table(),
        })
    }

    /// Split `text` into words (byte-encoded to the GPT-2 alphabet when `byte_encode`).
    pub(crate) fn split(&self, text: &str) -> Vec<String> {
        let cpts: Vec<u32> = text.chars().map(|c| c as u32).collect();
        if cpts.is_empty() {
            return Vec::new();
        }
        let collapsed = self
            .need_collapse
            .then(|| Haystack::new(&cpts, collapse_char));
        let wide = self.need_wide.then(|| {
            Haystack::new(&cpts, |cp| {
                if cp > 0x7F && is_whitespace(flags(cp)) {
                    '\u{0B}'
                } else {
                    char::from_u32(cp).unwrap()
                }
            })
        });
        let mut offsets = vec![cpts.len()];
        for step in &self.steps {
            offsets = match step {
                Step::Gpt2 => split_gpt2(&cpts, &offsets),
                Step::Llama3 { max_digits, marks } => {
                    split_llama3(&cpts, &offsets, *max_digits, *marks)
                }
                Step::Newlines => split_newlines(&cpts, &offsets),
                Step::Regex { re, collapsed: c } => {
                    let h = if *c {
                        collapsed.as_ref()
                    } else {
                        wide.as_ref()
                    };
                    split_regex(
                        re,
                        h.expect("haystack prepared for every regex kind"),
                        &offsets,
                    )
                }
            };
        }
        // Re-assemble words from code-point counts.
        let mut words = Vec::with_capacity(offsets.len());
        let mut byte_pos = 0usize;
        let mut cp_done = 0usize;
        // Byte offset after each code point.
        let ends: Vec<usize> = text.char_indices().map(|(i, c)| i + c.len_utf8()).collect();
        for &n in &offsets {
            let end = if n == 0 {
                byte_pos
            } else {
                ends[cp_done + n - 1]
            };
            let w = &text[byte_pos..end];
            cp_done += n;
            byte_pos = end;
            if self.byte_encode {
                words.push(w.bytes().map(|b| self.byte_chars[b as usize]).collect());
            } else {
                words.push(w.to_string());
            }
        }
        words
    }
}

/// The text as the regex sees it, with the byte position of every code point.
struct Haystack {
    s: String,
    /// `pos[i]` = byte offset of code point i in `s`; `pos[n]` = `s.len()`.
    pos: Vec<usize>,
}

impl Haystack {
    fn new(cpts: &[u32], map: impl Fn(u32) -> char) -> Self {
        let mut s = String::with_capacity(cpts.len() * 2);
        let mut pos = Vec::with_capacity(cpts.len() + 1);
        for &cp in cpts {
            pos.push(s.len());
            s.push(map(cp));
        }
        pos.push(s.len());
        Haystack { s, pos }
    }
    fn cp_index(&self, byte: usize) -> usize {
        self.pos.binary_search(&byte).unwrap_or_else(|i| i)
    }
}

/// llama.cpp `unicode_regex_split_stl`: matches and the gaps between them become chunks.
fn split_regex(re: &Regex, h: &Haystack, offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0usize;
    for &off in offsets {
        let b0 = h.pos[start];
        let b1 = h.pos[start + off];
        let hay = &h.s[b0..b1];
        let mut last = start; // code-point index where the previous match ended
        for m in re.find_iter(hay) {
            let Ok(m) = m else { break }; // backtrack limit: leave the rest as one chunk
            let ms = h.cp_index(b0 + m.start());
            let me = h.cp_index(b0 + m.end());
            if ms > last {
                out.push(ms - last);
            }
            out.push(me - ms);
            last = me;
        }
        if last < start + off {
            out.push(start + off - last);
        }
        start += off;
    }
    out
}

const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

/// Shared state of the hand-written splitters (llama.cpp's `_get_cpt`, `_get_flags`,
/// `_add_token` lambdas) for one chunk.
struct Cursor<'a> {
    cpts: &'a [u32],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Cursor<'_> {
    #[inline]
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    #[inline]
    fn flags(&self, pos: usize) -> u16 {
        if self.ini <= pos && pos < self.end {
            flags(self.cpts[pos])
        } else {
            0
        }
    }
    #[inline]
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

fn chunks(offsets: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    offsets.iter().map(move |&o| {
        let r = (start, start + o);
        start += o;
        r
    })
}

/// Lower-case for the contraction check. Only ASCII letters can lower-case to the
/// ASCII letters tested (s t m d r e v l) in Unicode's simple case mapping.
#[inline]
fn lower(cp: u32) -> u32 {
    if (b'A' as u32..=b'Z' as u32).contains(&cp) {
        cp + 32
    } else {
        cp
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (+ fallback
/// of one code point, as llama.cpp's `unicode_regex_split_custom_gpt2`).
fn split_gpt2(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    for (ini, end) in chunks(offsets) {
        let mut c = Cursor {
            cpts,
            ini,
            end,
            prev_end: ini,
            out: &mut out,
        };
        let mut pos = ini;
        while pos < end {
            let cpt = c.cpt(pos);
            let f = c.flags(pos);
            if cpt == '\'' as u32 && pos + 1 < end {
                let n = c.cpt(pos + 1);
                if [b's', b't', b'm', b'd'].iter().any(|&x| n == x as u32) {
                    pos += c.add(pos + 2);
                    continue;
                }
                if pos + 2 < end {
                    let nn = c.cpt(pos + 2);
                    if (n == 'r' as u32 && nn == 'e' as u32)
                        || (n == 'v' as u32 && nn == 'e' as u32)
                        || (n == 'l' as u32 && nn == 'l' as u32)
                    {
                        pos += c.add(pos + 3);
                        continue;
                    }
                }
            }
            let sp = cpt == ' ' as u32;
            let mut f2 = if sp { c.flags(pos + 1) } else { f };
            if is_letter(f2) {
                pos += sp as usize;
                while is_letter(f2) {
                    pos += 1;
                    f2 = c.flags(pos);
                }
                c.add(pos);
                continue;
            }
            if is_number(f2) {
                pos += sp as usize;
                while is_number(f2) {
                    pos += 1;
                    f2 = c.flags(pos);
                }
                c.add(pos);
                continue;
            }
            let other = |f: u16| !(is_whitespace(f) || is_letter(f) || is_number(f)) && f != 0;
            if other(f2) {
                pos += sp as usize;
                while other(f2) {
                    pos += 1;
                    f2 = c.flags(pos);
                }
                c.add(pos);
                continue;
            }
            let mut nws = 0;
            while is_whitespace(c.flags(pos + nws)) {
                nws += 1;
            }
            if nws > 1 && c.cpt(pos + nws) != OUT_OF_RANGE {
                pos += nws - 1;
                c.add(pos);
                continue;
            }
            if nws > 0 {
                pos += nws;
                c.add(pos);
                continue;
            }
            pos += 1;
            c.add(pos);
        }
    }
    out
}

/// LLaMA-3 / Qwen2 / Qwen3.5 regex family, as llama.cpp's `unicode_regex_split_custom_llama3`
/// (and its qwen2/qwen35 variants):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn split_llama3(cpts: &[u32], offsets: &[usize], max_digits: usize, marks: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let word = |f: u16| is_letter(f) || (marks && is_mark(f));
    for (ini, end) in chunks(offsets) {
        let mut c = Cursor {
            cpts,
            ini,
            end,
            prev_end: ini,
            out: &mut out,
        };
        let mut pos = ini;
        while pos < end {
            let cpt = c.cpt(pos);
            let f = c.flags(pos);
            if cpt == '\'' as u32 && pos + 1 < end {
                let n = lower(c.cpt(pos + 1));
                if [b's', b't', b'm', b'd'].iter().any(|&x| n == x as u32) {
                    pos += c.add(pos + 2);
                    continue;
                }
                if pos + 2 < end {
                    let nn = lower(c.cpt(pos + 2));
                    if (n == 'r' as u32 && nn == 'e' as u32)
                        || (n == 'v' as u32 && nn == 'e' as u32)
                        || (n == 'l' as u32 && nn == 'l' as u32)
                    {
                        pos += c.add(pos + 3);
                        continue;
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(cpt == '\r' as u32 || cpt == '\n' as u32 || is_number(f))
                && (word(f) || word(c.flags(pos + 1)))
            {
                pos += 1;
                while word(c.flags(pos)) {
                    pos += 1;
                }
                c.add(pos);
                continue;
            }
            // \p{N}{1,max_digits}
            if is_number(f) {
                if max_digits == 1 {
                    pos += 1;
                } else {
                    let mut ini_n = pos;
                    while is_number(c.flags(pos)) {
                        pos += 1;
                        if pos - ini_n >= max_digits {
                            c.add(pos);
                            ini_n = pos;
                        }
                    }
                }
                c.add(pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (note: llama.cpp tests `flags` of the first
            // code point, not `flags2`, for non-zero-ness; both are in range here)
            let sp = cpt == ' ' as u32;
            let mut f2 = if sp { c.flags(pos + 1) } else { f };
            let other = |f: u16| !(is_whitespace(f) || word(f) || is_number(f));
            if other(f2) && f != 0 {
                pos += sp as usize;
                while other(f2) && f2 != 0 {
                    pos += 1;
                    f2 = c.flags(pos);
                }
                let mut c2 = c.cpt(pos);
                while c2 == '\r' as u32 || c2 == '\n' as u32 {
                    pos += 1;
                    c2 = c.cpt(pos);
                }
                c.add(pos);
                continue;
            }
            let mut nws = 0;
            let mut last_rn = 0;
            while is_whitespace(c.flags(pos + nws)) {
                let c2 = c.cpt(pos + nws);
                if c2 == '\r' as u32 || c2 == '\n' as u32 {
                    last_rn = pos + nws + 1;
                }
                nws += 1;
            }
            if last_rn > 0 {
                pos = last_rn;
                c.add(pos);
                continue;
            }
            if nws > 1 && c.cpt(pos + nws) != OUT_OF_RANGE {
                pos += nws - 1;
                c.add(pos);
                continue;
            }
            if nws > 0 {
                pos += nws;
                c.add(pos);
                continue;
            }
            pos += 1;
            c.add(pos);
        }
    }
    out
}

/// `[^\n]+|[\n]+`
fn split_newlines(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    for (ini, end) in chunks(offsets) {
        let mut pos = ini;
        while pos < end {
            let nl = cpts[pos] == '\n' as u32;
            let s = pos;
            while pos < end && (cpts[pos] == '\n' as u32) == nl {
                pos += 1;
            }
            out.push(pos - s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(exprs: &[&str], text: &str) -> Vec<String> {
        PreTokenizer::new(exprs, false).unwrap().split(text)
    }

    #[test]
    fn gpt2_split() {
        assert_eq!(
            words(&[RE_GPT2], "Hello world's  end 123!!"),
            ["Hello", " world", "'s", " ", " end", " 123", "!!"]
        );
    }

    #[test]
    fn llama3_digits_and_newlines() {
        assert_eq!(
            words(&[RE_LLAMA3], "a 12345\n\n b"),
            ["a", " ", "123", "45", "\n\n", " b"]
        );
    }

    #[test]
    fn translate_collapses_categories() {
        let t = translate("[^\\s\\p{L}]+|\\p{N}", true).unwrap();
        assert_eq!(t, "[^\\s\\x{D2}A-Za-z]+|[\\x{D1}0-9]");
    }
}
