//! PII detectors. Each runs on [`Mode::Pii`](crate::normalize::Mode::Pii)-normalized text
//! (full-width digits folded, zero-width characters removed) and validates its candidates, so a
//! random digit string is not reported as an ID number or a card number.

use std::net::Ipv6Addr;
use std::ops::Range;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The PII kinds the guard knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// 18-character PRC resident identity number (GB 11643-1999).
    CnId,
    /// Mainland China mobile number (11 digits starting 13–19), optionally +86.
    CnMobile,
    /// Payment card number: 13–19 digits passing the Luhn check.
    BankCard,
    Email,
    /// IPv4 (dotted quad, no leading zeros) or IPv6.
    Ip,
}

impl PiiKind {
    pub const ALL: [PiiKind; 5] = [
        PiiKind::CnId,
        PiiKind::CnMobile,
        PiiKind::BankCard,
        PiiKind::Email,
        PiiKind::Ip,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PiiKind::CnId => "cn_id",
            PiiKind::CnMobile => "cn_mobile",
            PiiKind::BankCard => "bank_card",
            PiiKind::Email => "email",
            PiiKind::Ip => "ip",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The longest text (in normalized characters) a match of this kind can span. The
    /// streaming filter never needs to hold back more than this (plus one boundary character).
    pub fn max_len(self) -> usize {
        match self {
            PiiKind::CnId => 18,
            PiiKind::CnMobile => 3 + 1 + 13, // "+86" + separator + "138 1234 5678"
            PiiKind::BankCard => 19 + 4,     // 19 digits in groups of 4 with separators
            PiiKind::Email => EMAIL_MAX_LOCAL + 1 + EMAIL_MAX_DOMAIN,
            PiiKind::Ip => 45, // longest IPv6 text form (IPv4-mapped)
        }
    }

    /// Characters a match of this kind (or the boundary context deciding it) can contain: the
    /// streaming filter holds back a trailing run of them.
    pub(crate) fn in_run(self, c: char) -> bool {
        match self {
            PiiKind::CnId => c.is_ascii_digit() || c == 'x' || c == 'X',
            PiiKind::CnMobile | PiiKind::BankCard => {
                c.is_ascii_digit() || c == ' ' || c == '-' || c == '+'
            }
            PiiKind::Email => c.is_ascii_alphanumeric() || "._%+-@".contains(c),
            PiiKind::Ip => c.is_ascii_hexdigit() || c == '.' || c == ':',
        }
    }
}

const EMAIL_MAX_LOCAL: usize = 64;
const EMAIL_MAX_DOMAIN: usize = 253;

/// ISO 7064 MOD 11-2 weights for the first 17 digits (GB 11643-1999 §8.2: W_i = 2^(i-1) mod 11
/// for positions 18..2, written left to right).
const CN_ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// The check character of the first 17 digits of a resident ID (GB 11643-1999): the value
/// `(12 - sum(a_i * W_i) mod 11) mod 11`, written as 'X' when it is 10.
pub fn cn_id_check_char(first17: &[u8; 17]) -> Option<char> {
    let mut sum = 0u32;
    for (d, w) in first17.iter().zip(CN_ID_WEIGHTS) {
        if !d.is_ascii_digit() {
            return None;
        }
        sum += u32::from(d - b'0') * w;
    }
    let v = (12 - sum % 11) % 11;
    Some(if v == 10 {
        'X'
    } else {
        char::from(b'0' + v as u8)
    })
}

/// Province-level codes of GB/T 2260 (the first two digits of the address code).
const CN_PROVINCES: [u8; 34] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];

fn is_leap(y: u32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn plausible_date(y: u32, m: u32, d: u32) -> bool {
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => return false,
    };
    (1800..=2100).contains(&y) && (1..=days).contains(&d)
}

/// Whether `s` is a valid 18-character resident ID: known province code, a real birth date
/// (1800–2100) and the MOD 11-2 check character ('x' accepted for 'X').
pub fn is_valid_cn_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let num =
        |r: Range<usize>| -> u32 { b[r].iter().fold(0, |a, &d| a * 10 + u32::from(d - b'0')) };
    if !CN_PROVINCES.contains(&(num(0..2) as u8)) {
        return false;
    }
    if !plausible_date(num(6..10), num(10..12), num(12..14)) {
        return false;
    }
    let first17: [u8; 17] = b[..17].try_into().expect("length checked");
    cn_id_check_char(&first17) == Some(char::from(b[17]).to_ascii_uppercase())
}

/// The Luhn (mod 10) check of ISO/IEC 7812 over a digit string.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let v = u32::from(d - b'0');
            if i % 2 == 1 {
                let v2 = v * 2;
                if v2 > 9 {
                    v2 - 9
                } else {
                    v2
                }
            } else {
                v
            }
        })
        .sum();
    sum % 10 == 0
}

fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).expect("built-in PII regex compiles"))
}

fn char_before(s: &str, i: usize) -> Option<char> {
    s[..i].chars().next_back()
}

fn char_after(s: &str, i: usize) -> Option<char> {
    s[i..].chars().next()
}

fn not_digit(c: Option<char>) -> bool {
    c.map_or(true, |c| !c.is_ascii_digit())
}

fn not_alnum(c: Option<char>) -> bool {
    c.map_or(true, |c| !c.is_ascii_alphanumeric())
}

/// Finds every match of `kind` in Pii-normalized text, as normalized byte ranges.
pub fn find(kind: PiiKind, s: &str) -> Vec<Range<usize>> {
    match kind {
        PiiKind::CnId => find_cn_id(s),
        PiiKind::CnMobile => find_cn_mobile(s),
        PiiKind::BankCard => find_bank_card(s),
        PiiKind::Email => find_email(s),
        PiiKind::Ip => {
            let mut v = find_ipv4(s);
            v.extend(find_ipv6(s));
            v.sort_by_key(|r| r.start);
            v
        }
    }
}

fn find_cn_id(s: &str) -> Vec<Range<usize>> {
    static R: OnceLock<Regex> = OnceLock::new();
    // Maximal digit runs (with an optional trailing X): an ID inside a longer number is not one.
    re(&R, r"[0-9]+[xX]?")
        .find_iter(s)
        .filter(|m| {
            m.len() == 18
                && not_alnum(char_before(s, m.start()))
                && not_alnum(char_after(s, m.end()))
                && is_valid_cn_id(m.as_str())
        })
        .map(|m| m.range())
        .collect()
}

fn find_cn_mobile(s: &str) -> Vec<Range<usize>> {
    static R: OnceLock<Regex> = OnceLock::new();
    // 3-4-4 grouping with one space or dash is how numbers are usually written.
    re(
        &R,
        r"(?:\+86[ -]?|\b86[ -]?)?1[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4})",
    )
    .find_iter(s)
    .filter(|m| not_digit(char_before(s, m.start())) && not_digit(char_after(s, m.end())))
    .map(|m| m.range())
    .collect()
}

fn find_bank_card(s: &str) -> Vec<Range<usize>> {
    static R: OnceLock<Regex> = OnceLock::new();
    // Maximal runs of digit groups joined by single spaces or dashes.
    re(&R, r"[0-9]+(?:[ -][0-9]+)*")
        .find_iter(s)
        .filter_map(|m| {
            if !not_alnum(char_before(s, m.start())) || !not_alnum(char_after(s, m.end())) {
                return None;
            }
            let groups: Vec<&str> = m.as_str().split([' ', '-']).collect();
            // With separators, every group but the last has 4 digits (4-4-4-4, 4-4-4-4-3);
            // 15-digit cards (4-6-5) are also accepted.
            if groups.len() > 1 {
                let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
                let fours = lens[..lens.len() - 1].iter().all(|&l| l == 4)
                    && (1..=4).contains(&lens[lens.len() - 1]);
                if !(fours || lens == [4, 6, 5]) {
                    return None;
                }
            }
            let digits: Vec<u8> = groups.concat().into_bytes();
            // An unseparated 18-digit run that is a valid resident ID (province, birth date and
            // MOD 11-2 check) is an ID number, not a card: about one ID in ten passes Luhn by
            // chance, and the corpus test counted those as card false positives.
            if groups.len() == 1 && is_valid_cn_id(m.as_str()) {
                return None;
            }
            ((13..=19).contains(&digits.len()) && luhn_valid(&digits)).then(|| m.range())
        })
        .collect()
}

fn find_email(s: &str) -> Vec<Range<usize>> {
    static R: OnceLock<Regex> = OnceLock::new();
    let r = re(
        &R,
        r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+",
    );
    r.find_iter(s)
        .filter(|m| {
            let t = m.as_str();
            let domain = &t[t.find('@').map_or(0, |i| i + 1)..];
            let tld = domain.rsplit('.').next().unwrap_or("");
            domain.len() <= EMAIL_MAX_DOMAIN
                && tld.len() >= 2
                && tld.chars().all(|c| c.is_ascii_alphabetic())
                && !t.starts_with('.')
        })
        .map(|m| m.range())
        .collect()
}

fn find_ipv4(s: &str) -> Vec<Range<usize>> {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
        .find_iter(s)
        .filter(|m| {
            let before_ok = char_before(s, m.start())
                .map_or(true, |c| !c.is_ascii_alphanumeric() && c != '.' && c != ':');
            let rest = &s[m.end()..];
            let after_ok = match rest.chars().next() {
                None => true,
                Some(c) if c.is_ascii_alphanumeric() => false,
                // "1.2.3.4." ends a sentence; "1.2.3.4.5" is not an address.
                Some('.') => !rest[1..].starts_with(|c: char| c.is_ascii_digit()),
                Some(_) => true,
            };
            before_ok
                && after_ok
                && m.as_str().split('.').all(|o| {
                    o.parse::<u16>().is_ok_and(|v| v <= 255) && (o == "0" || !o.starts_with('0'))
                })
        })
        .map(|m| m.range())
        .collect()
}

fn find_ipv6(s: &str) -> Vec<Range<usize>> {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
        .find_iter(s)
        .filter_map(|m| {
            // Trim a sentence-final dot or colon ("at fe80::1." / "address: ").
            let t = m.as_str().trim_end_matches(['.', ':']);
            let t2 = t.trim_start_matches(':');
            // Keep a leading "::" (it is part of the address); strip a single stray colon.
            let (start, t) = if t.starts_with("::") || t2.len() == t.len() {
                (m.start(), t)
            } else {
                (m.start() + (t.len() - t2.len()), t2)
            };
            let end = start + t.len();
            let colons = t.matches(':').count();
            let hex = t.chars().filter(|c| c.is_ascii_hexdigit()).count();
            (colons >= 2
                && hex >= 4
                && not_alnum(char_before(s, start))
                && not_alnum(char_after(s, end))
                && t.parse::<Ipv6Addr>().is_ok())
            .then_some(start..end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(kind: PiiKind, s: &str) -> Vec<&str> {
        find(kind, s).into_iter().map(|r| &s[r]).collect::<Vec<_>>()
    }

    #[test]
    fn cn_id_examples_from_the_standard() {
        // The worked examples printed in GB 11643-1999 (Beijing Chaoyang 1949-12-31 with check
        // character X; Guangdong Chao'an 1880-01-01 with check digit 4).
        assert!(is_valid_cn_id("11010519491231002X"));
        assert!(is_valid_cn_id("11010519491231002x"));
        assert!(is_valid_cn_id("440524188001010014"));
        assert!(!is_valid_cn_id("110105194912310021"));
        assert!(!is_valid_cn_id("440524188001010015"));
        // Validated by python-stdnum's stdnum.cn.ric (an independent implementation) when these
        // tests were written; the second has a leap-day birth date.
        assert!(is_valid_cn_id("320106199003071234"));
        assert!(is_valid_cn_id("510108200002294560"));
        assert!(!is_valid_cn_id("510108200002294561"));
        // Check digit right (Python oracle of the MOD 11-2 formula gave '0'), birth date
        // impossible (Feb 30); province 99 does not exist.
        assert_eq!(cn_id_check_char(b"11010519490230002"), Some('0'));
        assert!(!is_valid_cn_id("110105194902300020"));
        assert!(!is_valid_cn_id("990105194912310023"));
        assert_eq!(
            found(PiiKind::CnId, "id: 11010519491231002X."),
            ["11010519491231002X"]
        );
        assert!(found(PiiKind::CnId, "1101051949123100211").is_empty());
    }

    #[test]
    fn luhn_known_test_cards() {
        // Test numbers published by payment providers (Stripe, PayPal/Braintree docs).
        for c in [
            "4111111111111111",
            "4242424242424242",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "6200000000000005",
        ] {
            assert!(luhn_valid(c.as_bytes()), "{c}");
        }
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b"1234567812345678"));
        assert_eq!(
            found(
                PiiKind::BankCard,
                "card 4111 1111 1111 1111, or 5555-5555-5555-4444"
            ),
            ["4111 1111 1111 1111", "5555-5555-5555-4444"]
        );
        assert_eq!(
            found(PiiKind::BankCard, "amex 3782 822463 10005"),
            ["3782 822463 10005"]
        );
        assert!(found(PiiKind::BankCard, "4111 1111 1111 1112").is_empty());
        assert!(found(PiiKind::BankCard, "41 1111 1111 1111 11").is_empty());
        assert!(found(PiiKind::BankCard, "x4111111111111111").is_empty());
    }

    #[test]
    fn mobile_numbers() {
        assert_eq!(
            found(PiiKind::CnMobile, "call 13812345678 now"),
            ["13812345678"]
        );
        assert_eq!(
            found(PiiKind::CnMobile, "电话+86 138-1234-5678。"),
            ["+86 138-1234-5678"]
        );
        assert_eq!(
            found(PiiKind::CnMobile, "手机：8613912345678"),
            ["8613912345678"]
        );
        assert!(found(PiiKind::CnMobile, "12812345678").is_empty());
        assert!(found(PiiKind::CnMobile, "138123456789").is_empty());
        assert!(found(PiiKind::CnMobile, "1381234567").is_empty());
    }

    #[test]
    fn emails() {
        assert_eq!(
            found(PiiKind::Email, "write to Jane.Doe+x@mail.example.com."),
            ["Jane.Doe+x@mail.example.com"]
        );
        assert!(found(PiiKind::Email, "a@b").is_empty());
        assert!(found(PiiKind::Email, "user@host.c0m").is_empty());
        assert!(found(PiiKind::Email, "@ mention").is_empty());
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(found(PiiKind::Ip, "from 192.168.1.20."), ["192.168.1.20"]);
        assert_eq!(
            found(PiiKind::Ip, "0.0.0.0 and 255.255.255.255"),
            ["0.0.0.0", "255.255.255.255"]
        );
        assert!(found(PiiKind::Ip, "256.1.1.1").is_empty());
        assert!(found(PiiKind::Ip, "1.2.3.4.5").is_empty());
        assert!(found(PiiKind::Ip, "01.2.3.4").is_empty());
        assert!(found(PiiKind::Ip, "version 1.2.3").is_empty());
        assert_eq!(
            found(PiiKind::Ip, "host 2001:db8::8a2e:370:7334 up"),
            ["2001:db8::8a2e:370:7334"]
        );
        assert_eq!(
            found(PiiKind::Ip, "at fe80::1ff:fe23:4567:890a."),
            ["fe80::1ff:fe23:4567:890a"]
        );
        assert_eq!(
            found(PiiKind::Ip, "(::ffff:192.0.2.128)"),
            ["::ffff:192.0.2.128"]
        );
        assert!(found(PiiKind::Ip, "std::net::Ipv6Addr").is_empty());
        assert!(found(PiiKind::Ip, "time 12:30:45").is_empty());
    }
}
