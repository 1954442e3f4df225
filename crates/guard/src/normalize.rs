//! Text normalization for matching, with a map back to the original bytes.
//!
//! Detectors never run on the raw text: a listed word must still be found when it is written
//! in full-width forms (`ｂｏｍｂ`), with zero-width characters inside (`b\u{200B}omb`) or spaced
//! out (`b o m b`, `炸 弹`). Every normalized byte remembers the original byte range of the
//! character it came from, so a redaction replaces exactly the original span.
//!
//! The folding is NFKC's width folding, not full NFKC: full-width ASCII (U+FF01..U+FF5E) becomes
//! ASCII and the ideographic space (U+3000) a space; other compatibility forms (ligatures,
//! mathematical alphanumerics, circled digits) are left alone. That keeps the crate free of a
//! Unicode-table dependency and covers the forms Chinese input methods produce.

use std::ops::Range;

/// How whitespace is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Word lists: zero-width characters dropped, and whitespace dropped between two CJK
    /// characters or between two isolated letters (`b o m b` → `bomb`); other whitespace runs
    /// become one space.
    Words,
    /// PII: zero-width characters dropped; whitespace kept as is (bank-card digit groups rely on
    /// it); no case folding.
    Pii,
    /// Injection phrases: zero-width characters dropped, whitespace runs collapsed to one space,
    /// whitespace between CJK characters dropped.
    Phrases,
}

/// Normalized text plus, for every normalized byte, the original byte range it came from.
#[derive(Clone, Debug, Default)]
pub struct Normalized {
    pub text: String,
    /// `src[i]` is the original byte range of the character that produced normalized byte `i`.
    src: Vec<Range<usize>>,
    /// Normalized byte offsets where whitespace was dropped (sorted): "a b o m b" becomes
    /// "abomb", but a word starting at the "b" still has a word boundary before it.
    gaps: Vec<usize>,
}

impl Normalized {
    /// Whether whitespace was dropped right before normalized byte `i`.
    pub fn gap_at(&self, i: usize) -> bool {
        self.gaps.binary_search(&i).is_ok()
    }

    /// Maps a normalized byte range (as returned by a matcher) to the original byte range that
    /// covers every character that produced it.
    pub fn original_range(&self, r: Range<usize>) -> Range<usize> {
        if r.start >= r.end || r.end > self.src.len() {
            return 0..0;
        }
        self.src[r.start].start..self.src[r.end - 1].end
    }

    /// The original start byte of the normalized character that begins at byte `i` (or the
    /// original length when `i` is the end).
    pub fn original_start(&self, i: usize, original_len: usize) -> usize {
        self.src.get(i).map(|r| r.start).unwrap_or(original_len)
    }
}

/// Zero-width characters an attacker can insert without changing how text looks.
pub fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}'
    )
}

/// Han ideographs, kana and Hangul: scripts written without spaces between words.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF | 0x20000..=0x2A6DF | 0x2A700..=0x2EBEF)
}

/// Width folding (see the module docs).
pub fn fold_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

struct Unit {
    c: char, // width-folded, not yet lower-cased
    range: Range<usize>,
}

/// Normalizes `s` for matching in the given mode.
pub fn normalize(s: &str, mode: Mode) -> Normalized {
    let units: Vec<Unit> = s
        .char_indices()
        .filter(|(_, c)| !is_zero_width(*c))
        .map(|(i, c)| Unit {
            c: fold_width(c),
            range: i..i + c.len_utf8(),
        })
        .collect();
    let mut out = Normalized {
        text: String::with_capacity(s.len()),
        src: Vec::with_capacity(s.len()),
        gaps: Vec::new(),
    };
    let push = |out: &mut Normalized, c: char, r: &Range<usize>| {
        let before = out.text.len();
        out.text.push(c);
        for _ in before..out.text.len() {
            out.src.push(r.clone());
        }
    };
    // An isolated letter: alphanumeric with no alphanumeric neighbour (ignoring zero-width
    // characters, which are already gone from `units`). The end of the text counts as a
    // boundary, which is what the streaming filter needs: it assumes the most matching reading
    // of a tail that is still growing.
    let isolated = |k: usize| -> bool {
        let c = units[k].c;
        c.is_alphabetic()
            && !is_cjk(c)
            && (k == 0 || !units[k - 1].c.is_alphanumeric())
            && units.get(k + 1).map_or(true, |u| !u.c.is_alphanumeric())
    };
    let mut k = 0;
    while k < units.len() {
        let u = &units[k];
        if mode != Mode::Pii && u.c.is_whitespace() {
            let start = k;
            while k < units.len() && units[k].c.is_whitespace() {
                k += 1;
            }
            let prev = start.checked_sub(1);
            let next = (k < units.len()).then_some(k);
            let drop = match (prev, next) {
                (Some(p), Some(n)) => {
                    (is_cjk(units[p].c) && is_cjk(units[n].c))
                        || (mode == Mode::Words && isolated(p) && isolated(n))
                }
                _ => false,
            };
            if drop {
                out.gaps.push(out.text.len());
            } else {
                push(
                    &mut out,
                    ' ',
                    &(units[start].range.start..units[k - 1].range.end),
                );
            }
            continue;
        }
        if mode == Mode::Pii {
            push(&mut out, u.c, &u.range);
        } else {
            for lc in u.c.to_lowercase() {
                push(&mut out, lc, &u.range);
            }
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s, Mode::Words).text
    }

    #[test]
    fn folds_full_width_and_case() {
        assert_eq!(n("ＢＯＭＢ"), "bomb");
        assert_eq!(n("ｈｅｌｌｏ　ｗｏｒｌｄ"), "hello world");
    }

    #[test]
    fn drops_zero_width_and_gap_spaces() {
        assert_eq!(n("b\u{200B}o\u{200D}m\u{FEFF}b"), "bomb");
        assert_eq!(n("b o m b"), "bomb");
        assert_eq!(n("炸 弹"), "炸弹");
        assert_eq!(n("炸\u{3000}\u{200B}弹"), "炸弹");
        // Ordinary prose keeps its spaces: "a bomb" is not "abomb".
        assert_eq!(n("a bomb here"), "a bomb here");
        assert_eq!(n("x  \t y z"), "xyz");
        assert_eq!(n("hello   world"), "hello world");
    }

    #[test]
    fn maps_back_to_original_bytes() {
        let s = "say ｂ\u{200B}ｏｍｂ now";
        let nz = normalize(s, Mode::Words);
        let i = nz.text.find("bomb").unwrap();
        let r = nz.original_range(i..i + 4);
        assert_eq!(&s[r], "ｂ\u{200B}ｏｍｂ");
        let nz = normalize("前 炸 弹 后", Mode::Words);
        let i = nz.text.find("炸弹").unwrap();
        assert_eq!(
            &"前 炸 弹 后"[nz.original_range(i..i + "炸弹".len())],
            "炸 弹"
        );
    }

    #[test]
    fn pii_mode_keeps_spaces_and_case() {
        let nz = normalize("４１１１ 1111\u{200B}1", Mode::Pii);
        assert_eq!(nz.text, "4111 11111");
    }
}
