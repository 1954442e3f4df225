//! Code-point classification and the GPT-2 byte↔unicode mapping, as llama.cpp's
//! `src/unicode.cpp` defines them (its pre-tokenizers depend on these exact tables).

use crate::unicode_table::RANGES;

pub(crate) const UNDEFINED: u16 = 0x01;
pub(crate) const NUMBER: u16 = 0x02;
pub(crate) const LETTER: u16 = 0x04;
#[allow(dead_code)]
pub(crate) const SEPARATOR: u16 = 0x08;
pub(crate) const MARK: u16 = 0x10;
pub(crate) const PUNCTUATION: u16 = 0x20;
pub(crate) const SYMBOL: u16 = 0x40;
#[allow(dead_code)]
pub(crate) const CONTROL: u16 = 0x80;
pub(crate) const WHITESPACE: u16 = 0x100;

/// Flags of one code point. Every valid code point has exactly one category bit
/// (unassigned ones are `UNDEFINED`), so a zero result only ever means "outside the
/// text" in the splitters below — the same role `unicode_cpt_flags{}` plays in llama.cpp.
#[inline]
pub(crate) fn flags(cp: u32) -> u16 {
    if cp < 0x80 {
        return ASCII[cp as usize];
    }
    if cp >= 0x110000 {
        return UNDEFINED;
    }
    // Last range whose start is <= cp.
    let i = RANGES.partition_point(|&(start, _)| start <= cp);
    RANGES[i - 1].1
}

static ASCII: [u16; 128] = {
    let mut t = [0u16; 128];
    let mut i = 0;
    while i < 128 {
        // Binary search is not const; ASCII ranges are few, scan them linearly.
        let mut j = 0;
        let mut f = 0;
        while j < RANGES.len() && RANGES[j].0 <= i as u32 {
            f = RANGES[j].1;
            j += 1;
        }
        t[i] = f;
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn is_letter(f: u16) -> bool {
    f & LETTER != 0
}
#[inline]
pub(crate) fn is_number(f: u16) -> bool {
    f & NUMBER != 0
}
#[inline]
pub(crate) fn is_whitespace(f: u16) -> bool {
    f & WHITESPACE != 0
}
#[inline]
pub(crate) fn is_mark(f: u16) -> bool {
    f & MARK != 0
}

/// The GPT-2 byte-level alphabet: printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100.. in byte order (openai/gpt-2 `bytes_to_unicode`).
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut t = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        t[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            let c = char::from_u32(256 + n).unwrap();
            n += 1;
            c
        };
    }
    t
}

/// Inverse of [`byte_to_char_table`]: code point → byte, for code points < 0x144.
pub(crate) fn char_to_byte_table() -> Vec<Option<u8>> {
    let fwd = byte_to_char_table();
    let mut inv = vec![None; 0x144];
    for (b, c) in fwd.iter().enumerate() {
        inv[*c as usize] = Some(b as u8);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_classes() {
        assert!(is_letter(flags('a' as u32)) && is_letter(flags('Z' as u32)));
        assert!(is_number(flags('7' as u32)));
        assert!(is_whitespace(flags(' ' as u32)) && is_whitespace(flags('\n' as u32)));
        assert!(is_whitespace(flags(0x0B)));
        assert_eq!(flags('$' as u32), SYMBOL);
        assert_eq!(flags('!' as u32), PUNCTUATION);
        assert!(is_letter(flags('中' as u32)));
        assert!(is_whitespace(flags(0x3000)));
        assert!(is_mark(flags(0x0301)));
        assert_eq!(flags(0x1C89), UNDEFINED); // unassigned in Unicode 15.1
    }

    #[test]
    fn byte_table_roundtrip() {
        let f = byte_to_char_table();
        assert_eq!(f[b' ' as usize], 'Ġ');
        assert_eq!(f[b'\n' as usize], 'Ċ');
        assert_eq!(f[b'a' as usize], 'a');
        let inv = char_to_byte_table();
        for b in 0..=255u8 {
            assert_eq!(inv[f[b as usize] as usize], Some(b));
        }
    }
}
