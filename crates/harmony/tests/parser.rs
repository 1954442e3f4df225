//! Streaming parser tests on harmony text taken from the format's documentation and reference
//! implementation (each cited), malformed variants of it, and property tests over generated
//! outputs: random splits never change the parse, corruptions never panic.

use hearth_harmony::{
    parse_completion, EndReason, HarmonyEvent, HarmonyParser, MessageHeader, ParsedToolCall,
};
use proptest::prelude::*;

use HarmonyEvent::*;

/// Adjacent deltas of the same kind merged: how events read once the stream is over.
fn coalesce(events: Vec<HarmonyEvent>) -> Vec<HarmonyEvent> {
    let mut out: Vec<HarmonyEvent> = Vec::new();
    for ev in events {
        match (out.last_mut(), ev) {
            (Some(ReasoningDelta(a)), ReasoningDelta(b)) => a.push_str(&b),
            (Some(ContentDelta(a)), ContentDelta(b)) => a.push_str(&b),
            (Some(ToolCallArgsDelta(a)), ToolCallArgsDelta(b)) => a.push_str(&b),
            (_, ev) => out.push(ev),
        }
    }
    out
}

fn parse_text(role: Option<&str>, pieces: &[&str]) -> Vec<HarmonyEvent> {
    let mut p = match role {
        Some(r) => HarmonyParser::with_role(r),
        None => HarmonyParser::new(),
    };
    let mut ev = Vec::new();
    for piece in pieces {
        ev.extend(p.push_text(piece));
    }
    ev.extend(p.finish());
    coalesce(ev)
}

fn header(channel: &str, recipient: Option<&str>, ct: Option<&str>) -> MessageHeader {
    MessageHeader {
        author: "assistant".into(),
        channel: Some(channel.into()),
        recipient: recipient.map(String::from),
        content_type: ct.map(String::from),
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

/// The cookbook's function-calling example ("Receiving tool calls",
/// https://cookbook.openai.com/articles/openai-harmony): reasoning, then a call with the
/// recipient in the channel part of the header, ending with `<|call|>`.
#[test]
fn cookbook_tool_call() {
    let text = "<|channel|>analysis<|message|>Need to use function get_weather.<|end|>\
                <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json\
                <|message|>{\"location\":\"San Francisco\"}<|call|>";
    assert_eq!(
        parse_text(Some("assistant"), &[text]),
        vec![
            MessageStart(header("analysis", None, None)),
            ReasoningDelta(s("Need to use function get_weather.")),
            MessageEnd(EndReason::End),
            MessageStart(header(
                "commentary",
                Some("functions.get_weather"),
                Some("<|constrain|>json")
            )),
            ToolCallStart {
                name: s("get_weather"),
                recipient: s("functions.get_weather"),
                content_type: Some(s("<|constrain|>json")),
            },
            ToolCallArgsDelta(s("{\"location\":\"San Francisco\"}")),
            MessageEnd(EndReason::Call),
        ]
    );
}

/// The cookbook's chain-of-thought example ("Reasoning"): analysis then final, `<|return|>`.
#[test]
fn cookbook_final_answer() {
    let text = "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.<|end|>\
                <|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>";
    let parsed = parse_completion(text, Some("assistant"));
    assert_eq!(
        parsed.reasoning,
        "User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer."
    );
    assert_eq!(parsed.content, "2 + 2 = 4.");
    assert!(parsed.tool_calls.is_empty());
    assert_eq!(parsed.end, Some(EndReason::Return));
}

/// openai-harmony src/tests.rs `test_tool_call_with_constrain_marker_adjacent`: recipient in
/// the role part, `<|constrain|>` glued to the channel name.
#[test]
fn reference_recipient_in_role_constrain_adjacent() {
    let text = "<|start|>assistant to=functions.get_weather<|channel|>commentary<|constrain|>json<|message|>{\"location\": \"Tokyo\"}<|end|>";
    let ev = parse_text(None, &[text]);
    assert_eq!(
        ev[0],
        MessageStart(header(
            "commentary",
            Some("functions.get_weather"),
            Some("<|constrain|>json")
        ))
    );
    assert_eq!(ev[2], ToolCallArgsDelta(s("{\"location\": \"Tokyo\"}")));
    assert_eq!(ev[3], MessageEnd(EndReason::End));
}

/// openai-harmony src/tests.rs `test_tool_call_with_channel_before_recipient_and_constrain_adjacent`.
#[test]
fn reference_recipient_after_channel_constrain_adjacent() {
    let text = "<|start|>assistant<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>{\"latitude\":48.8566,\"longitude\":2.3522}<|call|>";
    let parsed = parse_completion(text, None);
    assert_eq!(
        parsed.tool_calls,
        vec![ParsedToolCall {
            name: s("get_weather"),
            recipient: s("functions.get_weather"),
            content_type: Some(s("<|constrain|>json")),
            arguments: s("{\"latitude\":48.8566,\"longitude\":2.3522}"),
        }]
    );
    assert_eq!(parsed.end, Some(EndReason::Call));
}

/// openai-harmony src/tests.rs `test_simple_tool_call` (its token ids decode to this text): a
/// call from the analysis channel to a bare recipient with content type `code`.
#[test]
fn reference_call_from_analysis_channel() {
    let text = "<|channel|>analysis<|message|>User asks: \"What is the weather in Tokyo?\" We need to use lookup_weather tool.<|end|>\
                <|start|>assistant<|channel|>analysis to=lookup_weather code<|message|>{\"location\": \"Tokyo\"}<|call|>";
    let ev = parse_text(Some("assistant"), &[text]);
    assert_eq!(
        ev[3],
        MessageStart(header("analysis", Some("lookup_weather"), Some("code")))
    );
    let parsed = parse_completion(text, Some("assistant"));
    assert_eq!(parsed.tool_calls[0].name, "lookup_weather");
    assert_eq!(parsed.tool_calls[0].arguments, "{\"location\": \"Tokyo\"}");
}

/// openai-harmony src/tests.rs `test_missing_message_token_requires_non_strict_mode`: the
/// reference's non-strict mode keeps the channel and makes the rest the message text.
#[test]
fn missing_message_token_keeps_text() {
    let ev = parse_text(Some("assistant"), &["<|channel|>commentary Hello<|end|>"]);
    assert_eq!(
        ev,
        vec![
            MessageStart(header("commentary", None, None)),
            ContentDelta(s("Hello")),
            MessageEnd(EndReason::End),
        ]
    );
}

/// The model sometimes repeats the role after the generation prompt, or writes the recipient
/// into the header right after `<|start|>assistant`: neither may leak into a tool name.
#[test]
fn tool_names_are_never_header_fragments() {
    for text in [
        "assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{}<|call|>",
        " to=functions.get_weather<|channel|>commentary json<|message|>{}<|call|>",
        "<|channel|>commentary to=functions.get_weather<|message|>{}<|call|>",
        "assistant to=functions.get_weather<|channel|>commentary<|message|>{}<|call|>",
    ] {
        let parsed = parse_completion(text, Some("assistant"));
        assert_eq!(parsed.tool_calls.len(), 1, "{text}");
        assert_eq!(parsed.tool_calls[0].name, "get_weather", "{text}");
        assert_eq!(parsed.tool_calls[0].arguments, "{}", "{text}");
        assert!(parsed.content.is_empty(), "{text}: {parsed:?}");
    }
    // A recipient that is no identifier is not a tool call.
    let parsed = parse_completion(
        "<|channel|>commentary to=<b>x</b><|message|>hi<|end|>",
        Some("assistant"),
    );
    assert!(parsed.tool_calls.is_empty());
    assert!(parsed.content.contains("hi"));
}

#[test]
fn malformed_outputs_surface_as_content() {
    // No channel at all.
    let p = parse_completion("<|start|>assistant<|message|>Hi there<|end|>", None);
    assert_eq!(p.content, "Hi there");
    // Unknown channel: shown to the user rather than lost.
    let p = parse_completion(
        "<|channel|>thoughts<|message|>hmm<|end|>",
        Some("assistant"),
    );
    assert_eq!(p.content, "hmm");
    // Text outside any message (a model that forgot the format).
    let p = parse_completion("Hello world<|end|>", None);
    assert_eq!(p.content, "Hello world");
    // `<|` that starts no harmony token is text.
    let p = parse_completion(
        "<|channel|>final<|message|>a <|b c|> d<|return|>",
        Some("assistant"),
    );
    assert_eq!(p.content, "a <|b c|> d");
    // A misplaced format token inside a body stays text.
    let p = parse_completion(
        "<|channel|>final<|message|>x<|constrain|>y<|return|>",
        Some("assistant"),
    );
    assert_eq!(p.content, "x<|constrain|>y");
    // New message before the previous one was closed.
    let ev = parse_text(
        Some("assistant"),
        &["<|channel|>analysis<|message|>think<|start|>assistant<|channel|>final<|message|>ok<|return|>"],
    );
    assert_eq!(
        ev,
        vec![
            MessageStart(header("analysis", None, None)),
            ReasoningDelta(s("think")),
            MessageEnd(EndReason::Interrupted),
            MessageStart(header("final", None, None)),
            ContentDelta(s("ok")),
            MessageEnd(EndReason::Return),
        ]
    );
    // `<|channel|>` straight after a body (the model skipped `<|end|><|start|>assistant`).
    let p = parse_completion(
        "<|channel|>analysis<|message|>think<|channel|>final<|message|>ok<|return|>",
        Some("assistant"),
    );
    assert_eq!((p.reasoning.as_str(), p.content.as_str()), ("think", "ok"));
}

#[test]
fn truncated_streams_flush() {
    // Inside a body: what arrived is kept, the message ends as truncated.
    let ev = parse_text(
        Some("assistant"),
        &["<|channel|>final<|message|>The answer is"],
    );
    assert_eq!(
        ev,
        vec![
            MessageStart(header("final", None, None)),
            ContentDelta(s("The answer is")),
            MessageEnd(EndReason::Truncated),
        ]
    );
    // Inside a header: nothing to show.
    assert_eq!(parse_text(Some("assistant"), &["<|channel|>fin"]), vec![]);
    // Inside a special token: held back, then flushed as text at the end.
    let ev = parse_text(Some("assistant"), &["<|channel|>final<|message|>ok<|ret"]);
    assert_eq!(ev[1], ContentDelta(s("ok<|ret")));
    // Inside a tool call's arguments.
    let p = parse_completion(
        "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": 1",
        Some("assistant"),
    );
    assert_eq!(p.tool_calls[0].arguments, "{\"a\": 1");
    assert_eq!(p.end, Some(EndReason::Truncated));
}

#[test]
fn token_mode_uses_the_special_bit() {
    let mut p = HarmonyParser::with_role("assistant");
    let mut ev = Vec::new();
    for (text, special) in [
        ("<|channel|>", true),
        ("final", false),
        ("<|message|>", true),
        ("literal <|end|> text", false),
        ("<|endoftext|>", true),
        ("!", false),
        ("<|return|>", true),
    ] {
        ev.extend(p.push_token(text, special));
    }
    ev.extend(p.finish());
    assert_eq!(
        coalesce(ev),
        vec![
            MessageStart(header("final", None, None)),
            ContentDelta(s("literal <|end|> text!")),
            MessageEnd(EndReason::Return),
        ]
    );
}

#[test]
fn events_arrive_token_by_token() {
    let mut p = HarmonyParser::with_role("assistant");
    assert!(p.push_text("<|channel|>").is_empty());
    assert!(p.push_text("final").is_empty());
    assert_eq!(
        p.push_text("<|message|>"),
        vec![MessageStart(header("final", None, None))]
    );
    assert_eq!(p.push_text("Hel"), vec![ContentDelta(s("Hel"))]);
    // A possible partial special token is held back, and released when it turns out not to be.
    assert_eq!(p.push_text("lo <"), vec![ContentDelta(s("lo "))]);
    assert_eq!(p.push_text("3"), vec![ContentDelta(s("<3"))]);
    assert_eq!(p.push_text("<|ret"), vec![]);
    assert_eq!(p.push_text("urn|>"), vec![MessageEnd(EndReason::Return)]);
    assert!(p.finish().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum GenMsg {
    Analysis(String),
    Commentary(String),
    Final(String),
    Call {
        name: String,
        args: String,
        in_role: bool,
        constrain: bool,
    },
}

/// Body text: anything but `|` (so no harmony token can appear by accident), `<` included.
fn body() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.!?:<>{}\\[\\]\"\n\té你😀]{0,24}"
}

fn gen_msg() -> impl Strategy<Value = GenMsg> {
    prop_oneof![
        body().prop_map(GenMsg::Analysis),
        body().prop_map(GenMsg::Commentary),
        body().prop_map(GenMsg::Final),
        (
            "[a-z_][a-z0-9_]{0,10}",
            body(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(name, args, in_role, constrain)| GenMsg::Call {
                name,
                args,
                in_role,
                constrain
            }),
    ]
}

/// A model output in harmony (after the generation prompt `<|start|>assistant`) and the events
/// it must parse to, built from the message list, independently of the parser.
fn render_output(msgs: &[GenMsg]) -> (String, Vec<HarmonyEvent>) {
    let mut text = String::new();
    let mut ev = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let last = i + 1 == msgs.len();
        let start = if i == 0 { "" } else { "<|start|>assistant" };
        let (channel, body, end) = match m {
            GenMsg::Analysis(b) => ("analysis", b, "<|end|>"),
            GenMsg::Commentary(b) => ("commentary", b, "<|end|>"),
            GenMsg::Final(b) => ("final", b, if last { "<|return|>" } else { "<|end|>" }),
            GenMsg::Call {
                name,
                args,
                in_role,
                constrain,
            } => {
                let ct = if *constrain {
                    "<|constrain|>json"
                } else {
                    "json"
                };
                let recipient = format!("functions.{name}");
                if *in_role {
                    text.push_str(&format!(
                        "{start} to={recipient}<|channel|>commentary {ct}<|message|>{args}<|call|>"
                    ));
                } else {
                    text.push_str(&format!(
                        "{start}<|channel|>commentary to={recipient} {ct}<|message|>{args}<|call|>"
                    ));
                }
                ev.push(MessageStart(header(
                    "commentary",
                    Some(&recipient),
                    Some(ct),
                )));
                ev.push(ToolCallStart {
                    name: name.clone(),
                    recipient,
                    content_type: Some(ct.to_string()),
                });
                if !args.is_empty() {
                    ev.push(ToolCallArgsDelta(args.clone()));
                }
                ev.push(MessageEnd(EndReason::Call));
                continue;
            }
        };
        text.push_str(&format!(
            "{start}<|channel|>{channel}<|message|>{body}{end}"
        ));
        ev.push(MessageStart(header(channel, None, None)));
        if !body.is_empty() {
            ev.push(if channel == "analysis" {
                ReasoningDelta(body.clone())
            } else {
                ContentDelta(body.clone())
            });
        }
        ev.push(MessageEnd(if end == "<|return|>" {
            EndReason::Return
        } else {
            EndReason::End
        }));
    }
    (text, ev)
}

/// Splits `text` at the given fractions (snapped to char boundaries).
fn split_at_fractions<'a>(text: &'a str, cuts: &[f64]) -> Vec<&'a str> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|f| {
            let mut i = ((text.len() as f64) * f) as usize;
            while i < text.len() && !text.is_char_boundary(i) {
                i += 1;
            }
            i.min(text.len())
        })
        .collect();
    points.sort();
    let mut pieces = Vec::new();
    let mut prev = 0;
    for p in points {
        pieces.push(&text[prev..p]);
        prev = p;
    }
    pieces.push(&text[prev..]);
    pieces
}

/// Splits text into "tokens": each harmony special token alone (special), the text between cut
/// into chunks at the given fractions (not special).
fn tokenize_like(text: &str, cuts: &[f64]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let next = hearth_harmony::tokens::ALL
            .iter()
            .filter_map(|t| rest.find(t).map(|i| (i, *t)))
            .min_by_key(|(i, _)| *i);
        let (plain, special) = match next {
            Some((i, t)) => (&rest[..i], Some(t)),
            None => (rest, None),
        };
        for piece in split_at_fractions(plain, cuts) {
            if !piece.is_empty() {
                out.push((piece.to_string(), false));
            }
        }
        match special {
            Some(t) => {
                out.push((t.to_string(), true));
                rest = &rest[plain.len() + t.len()..];
            }
            None => rest = "",
        }
    }
    out
}

/// Structural invariants every event stream satisfies, whatever the input.
fn check_well_formed(events: &[HarmonyEvent]) -> Result<(), TestCaseError> {
    let mut open = false;
    let mut tool = false;
    for ev in events {
        match ev {
            MessageStart(h) => {
                prop_assert!(!open, "MessageStart inside a message: {events:?}");
                prop_assert!(!h.author.contains("<|"));
                open = true;
                tool = false;
            }
            ToolCallStart {
                name, recipient, ..
            } => {
                prop_assert!(open && !tool);
                prop_assert!(!name.is_empty());
                prop_assert!(
                    !name.contains("<|") && !name.contains(char::is_whitespace),
                    "bad tool name {name:?}"
                );
                prop_assert!(!recipient.contains("<|"));
                tool = true;
            }
            ToolCallArgsDelta(_) => prop_assert!(open && tool),
            ReasoningDelta(_) | ContentDelta(_) => prop_assert!(open),
            MessageEnd(_) => {
                prop_assert!(open, "MessageEnd outside a message: {events:?}");
                open = false;
            }
        }
    }
    prop_assert!(!open, "stream left a message open after finish()");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Valid outputs parse to exactly the messages they were built from, however the text is
    /// cut into pieces, and the same when fed as (text, is_special) tokens.
    #[test]
    fn valid_output_parse_is_split_independent(
        msgs in prop::collection::vec(gen_msg(), 1..6),
        cuts in prop::collection::vec(0.0f64..1.0, 0..12),
    ) {
        let (text, expected) = render_output(&msgs);
        let whole = parse_text(Some("assistant"), &[&text]);
        prop_assert_eq!(&whole, &expected, "text: {:?}", text);

        let pieces = split_at_fractions(&text, &cuts);
        prop_assert_eq!(&parse_text(Some("assistant"), &pieces), &expected);

        // One char at a time: the most adversarial split.
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        prop_assert_eq!(&parse_text(Some("assistant"), &refs), &expected);

        let mut p = HarmonyParser::with_role("assistant");
        let mut ev = Vec::new();
        for (t, special) in tokenize_like(&text, &cuts) {
            ev.extend(p.push_token(&t, special));
        }
        ev.extend(p.finish());
        prop_assert_eq!(coalesce(ev), expected);
    }

    /// Truncated, cut, spliced and garbage-injected outputs never panic and always give a
    /// well-formed event stream; a truncated valid output's events are split-independent too.
    #[test]
    fn corrupted_output_never_panics(
        msgs in prop::collection::vec(gen_msg(), 1..6),
        cut in 0.0f64..1.0,
        del in (0.0f64..1.0, 0.0f64..0.3),
        inject in prop::collection::vec(
            (0.0f64..1.0, prop_oneof![
                Just("<|start|>".to_string()),
                Just("<|channel|>".to_string()),
                Just("<|message|>".to_string()),
                Just("<|end|>".to_string()),
                Just("<|return|>".to_string()),
                Just("<|call|>".to_string()),
                Just("<|constrain|>".to_string()),
                Just("<|".to_string()),
                Just("|>".to_string()),
                Just(" to=".to_string()),
                Just("assistant".to_string()),
                "[ -~]{0,8}",
            ]),
            0..4,
        ),
        cuts in prop::collection::vec(0.0f64..1.0, 0..8),
        start_in_header in any::<bool>(),
    ) {
        let (text, _) = render_output(&msgs);
        let role = if start_in_header { Some("assistant") } else { None };

        // Truncation.
        let t = split_at_fractions(&text, &[cut])[0];
        let a = parse_text(role, &[t]);
        check_well_formed(&a)?;
        let pieces = split_at_fractions(t, &cuts);
        prop_assert_eq!(parse_text(role, &pieces), a);

        // Deletion of a range, then injections.
        let parts = split_at_fractions(&text, &[del.0, (del.0 + del.1).min(1.0)]);
        let mut corrupted = format!("{}{}", parts[0], parts[2]);
        for (pos, junk) in &inject {
            let at = split_at_fractions(&corrupted, &[*pos])[0].len();
            corrupted.insert_str(at, junk);
        }
        let events = parse_text(role, &split_at_fractions(&corrupted, &cuts));
        check_well_formed(&events)?;
        let mut p = match role {
            Some(r) => HarmonyParser::with_role(r),
            None => HarmonyParser::new(),
        };
        let mut tok_events = Vec::new();
        for (t, special) in tokenize_like(&corrupted, &cuts) {
            tok_events.extend(p.push_token(&t, special));
        }
        tok_events.extend(p.finish());
        check_well_formed(&tok_events)?;
    }
}

/// The `openai-harmony` StreamableParser's messages (tests/golden/harmony/reference_render.json,
/// "parse_cases", made by tests/refgen) for the cookbook/reference examples and pseudo-random
/// valid outputs: ours must find the same messages, fed whole and one char at a time.
#[test]
fn parse_matches_the_reference_parser() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/harmony/reference_render.json"
    );
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect(path)).unwrap();
    let cases = golden["parse_cases"].as_array().unwrap();
    assert!(cases.len() >= 60);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let role = case["after_prompt"]
            .as_bool()
            .unwrap()
            .then_some("assistant");
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        for events in [parse_text(role, &[text]), parse_text(role, &refs)] {
            let mut got: Vec<serde_json::Value> = Vec::new();
            for ev in events {
                match ev {
                    MessageStart(h) => got.push(serde_json::json!({
                        "author": h.author, "channel": h.channel, "recipient": h.recipient,
                        "content_type": h.content_type, "content": "",
                    })),
                    ReasoningDelta(t) | ContentDelta(t) | ToolCallArgsDelta(t) => {
                        let m = got.last_mut().expect("delta before a message");
                        let c = format!("{}{t}", m["content"].as_str().unwrap());
                        m["content"] = c.into();
                    }
                    ToolCallStart { .. } | MessageEnd(_) => {}
                }
            }
            assert_eq!(
                &serde_json::Value::from(got),
                &case["messages"],
                "text: {text:?}"
            );
        }
    }
}
