//! The streaming output filter agrees with the one-shot filter for every split, never sends a
//! blocked word, and delays harmless text only by the documented bound.

use hearth_guard::{Action, Emit, Guard};
use proptest::prelude::*;

fn guard(word_action: &str) -> Guard {
    let toml = format!(
        r#"
        [[rule]]
        id = "words"
        kind = "words"
        action = "{word_action}"
        words = ["bomb", "炸弹", "secret plan"]
        [[rule]]
        id = "id"
        kind = "pii:cn_id"
        action = "redact"
        [[rule]]
        id = "card"
        kind = "pii:bank_card"
        action = "redact"
        [[rule]]
        id = "mobile"
        kind = "pii:cn_mobile"
        action = "redact"
        [[rule]]
        id = "email"
        kind = "pii:email"
        action = "redact"
        [[rule]]
        id = "ip"
        kind = "pii:ip"
        action = "log"
        "#
    );
    Guard::from_toml(&toml, "test.toml", None).unwrap()
}

/// Streams `pieces`, returning the concatenated output and the blocking hit.
fn stream(g: &Guard, pieces: &[&str]) -> (String, Option<String>) {
    let mut f = g.output_filter();
    let mut out = String::new();
    let mut blocked = None;
    let mut take = |e: Emit| {
        out.push_str(&e.text_to_send);
        if let Some(b) = e.blocked {
            assert!(blocked.is_none(), "blocked twice");
            blocked = Some(b.rule_id);
        }
    };
    for p in pieces {
        take(f.push(p));
    }
    take(f.finish());
    (out, blocked)
}

fn one_shot(g: &Guard, text: &str) -> (String, Option<String>) {
    let e = g.filter_output(text);
    (e.text_to_send, e.blocked.map(|h| h.rule_id))
}

const TEXTS: &[&str] = &[
    "Here is how to build a bomb: step one.",
    "Here is how to build a b o m b: step one.",
    "不要制造炸\u{200B}弹，好吗？",
    "全角ＢＯＭＢ在这里",
    "the Secret  Plan is ready",
    "my card is 4111 1111 1111 1111 and my id 11010519491231002X.",
    "call +86 138-1234-5678 or mail jane.doe@example.com, host 192.168.0.1.",
    "v6 2001:db8::1 and bombastic bombs, bomber.",
    "身份证号：４４０５２４１８８００１０１００１４。",
    // Runs longer than the hold-back: partly released, then rejected as a whole.
    "digits 0000000000000000000000004111111111111111 end",
    "digits 4111 1111 1111 1111 1111 1111 1111 end",
    "mail aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com ok",
    "",
    "b",
    "bo",
    "bom",
];

#[test]
fn every_two_way_split_matches_one_shot() {
    for action in ["redact", "block"] {
        let g = guard(action);
        for text in TEXTS {
            let want = one_shot(&g, text);
            for i in 0..=text.len() {
                if !text.is_char_boundary(i) {
                    continue;
                }
                let got = stream(&g, &[&text[..i], &text[i..]]);
                assert_eq!(got, want, "{action}: {text:?} split at {i}");
            }
            // One character at a time.
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(stream(&g, &pieces), want, "{action}: {text:?} char by char");
        }
    }
}

#[test]
fn expected_one_shot_results() {
    let g = guard("redact");
    assert_eq!(
        one_shot(&g, TEXTS[0]).0,
        "Here is how to build a ***: step one."
    );
    assert_eq!(
        one_shot(&g, TEXTS[5]).0,
        "my card is [bank_card] and my id [cn_id]."
    );
    assert_eq!(
        one_shot(&g, TEXTS[6]).0,
        "call [cn_mobile] or mail [email], host 192.168.0.1."
    );
    assert_eq!(one_shot(&g, TEXTS[8]).0, "身份证号：[cn_id]。");
    let g = guard("block");
    assert_eq!(
        one_shot(&g, TEXTS[0]),
        (
            "Here is how to build a ".to_string(),
            Some("words".to_string())
        )
    );
    assert_eq!(
        one_shot(&g, TEXTS[2]),
        ("不要制造".to_string(), Some("words".to_string()))
    );
}

#[test]
fn harmless_text_flows_with_bounded_delay() {
    // Word list only: at most the longest word prefix plus two characters are held.
    let g = Guard::from_toml(
        "[[rule]]\nid = \"w\"\nkind = \"words\"\naction = \"block\"\nwords = [\"bomb\"]\n",
        "t.toml",
        None,
    )
    .unwrap();
    let text = "The quick brown fox jumps over the lazy dog, again and again. ";
    let mut f = g.output_filter();
    let mut out = String::new();
    for c in text.chars() {
        out += &f.push(&c.to_string()).text_to_send;
        assert!(f.held_back() <= 4, "held {} after {out:?}", f.held_back());
    }
    out += &f.finish().text_to_send;
    assert_eq!(out, text);

    // With e-mail detection on, the current alphanumeric run is also held (it could still
    // become an address), but nothing before it.
    let g = guard("block");
    let mut f = g.output_filter();
    let mut sent = 0;
    let mut received = 0;
    for c in text.chars() {
        received += c.len_utf8();
        sent += f.push(&c.to_string()).text_to_send.len();
        let run = text[..received]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || "._%+-@".contains(*c))
            .count();
        assert!(
            received - sent <= run + 3,
            "held {} with run {run}",
            received - sent
        );
    }
}

#[test]
fn redactions_and_logs_are_reported_with_global_spans() {
    let g = guard("redact");
    let text = "aaaa ".repeat(200) + "mail x@example.org now";
    let mut f = g.output_filter();
    let mut fired = Vec::new();
    for chunk in text.as_bytes().chunks(7) {
        fired.extend(f.push(std::str::from_utf8(chunk).unwrap()).fired);
    }
    fired.extend(f.finish().fired);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].action, Action::Redact);
    assert_eq!(&text[fired[0].span.clone()], "x@example.org");
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("bo".to_string()),
        Just("mb".to_string()),
        Just("b".to_string()),
        Just("m".to_string()),
        Just("o".to_string()),
        Just("炸".to_string()),
        Just("弹".to_string()),
        Just(" ".to_string()),
        Just("\u{200B}".to_string()),
        Just("ｂ".to_string()),
        Just("Ｍ".to_string()),
        Just("secret".to_string()),
        Just("plan".to_string()),
        Just("4111".to_string()),
        Just("1".to_string()),
        Just("-".to_string()),
        Just("@".to_string()),
        Just(".".to_string()),
        Just("x".to_string()),
        Just("com".to_string()),
        Just("138".to_string()),
        Just("，".to_string()),
        Just("11010519491231002".to_string()),
        Just("X".to_string()),
        Just("5555".to_string()),
        Just("4444".to_string()),
        Just("+86".to_string()),
        Just("example".to_string()),
        Just("192.168.".to_string()),
        Just("::".to_string()),
        Just("fe80".to_string()),
        Just("\u{3000}".to_string()),
        Just("１".to_string()),
        "[a-z0-9 .:@-]{0,4}",
    ]
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=N for a longer run.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn stream_equals_one_shot_and_never_leaks(
        parts in proptest::collection::vec(piece(), 0..24),
        cuts in proptest::collection::vec(0usize..64, 0..8),
        block in any::<bool>(),
    ) {
        let g = guard(if block { "block" } else { "redact" });
        let text: String = parts.concat();
        // Split at arbitrary char boundaries.
        let mut points: Vec<usize> = cuts.iter().map(|c| c * text.len() / 64).collect();
        points.sort();
        points.dedup();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            let mut p = p.max(last);
            while !text.is_char_boundary(p) { p += 1; }
            pieces.push(&text[last..p]);
            last = p;
        }
        pieces.push(&text[last..]);
        let streamed = stream(&g, &pieces);
        let whole = one_shot(&g, &text);
        prop_assert_eq!(&streamed, &whole);
        if block {
            // What was sent contains no listed word, in any spelling the normalizer folds.
            let check = g.check_input(&[("assistant", &streamed.0)]);
            prop_assert!(check.fired.iter().all(|h| h.rule_id != "words"),
                "sent {:?} for {:?}", streamed.0, text);
        }
    }
}
