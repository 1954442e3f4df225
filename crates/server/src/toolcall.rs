//! Tool calls in generated text → OpenAI `tool_calls`: Hermes `<tool_call>` blocks, and
//! GLM-4's "NAME\nJSON" turns and ChatGLM3's "NAME\n```python\ntool_call(...)\n```" turns
//! ([`parse_glm4`]).
//!
//! Hermes 2 Pro, Qwen 2.5/3 and SmolLM3 chat templates ask the model to
//! answer a tool call as
//! `<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>`
//! (several blocks for parallel calls). OpenAI clients expect
//! `message.tool_calls[] = {id, type: "function", function: {name, arguments}}`
//! where `arguments` is a JSON *string*, and `finish_reason: "tool_calls"`.
//!
//! If any block is not valid JSON with a string `name`, nothing is parsed and
//! the whole text stays content: a half-parsed answer would hide what the model
//! said.

use serde_json::Value;

pub const OPEN: &str = "<tool_call>";
pub const CLOSE: &str = "</tool_call>";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// `call_` + random id, unique per call.
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text (OpenAI sends a string, not an object).
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Text outside the tool-call blocks, trimmed; `None` when nothing is left.
    pub content: Option<String>,
    pub calls: Vec<ToolCall>,
}

/// Parse every `<tool_call>…</tool_call>` block of `text`. Returns `None` when
/// there is no block or any block is malformed. A last block whose closing tag
/// is missing (generation cut by `max_tokens` or a stop string) is accepted if
/// its JSON is complete.
pub fn parse_hermes(text: &str) -> Option<Parsed> {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        content.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let (body, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => (after, ""),
        };
        calls.push(parse_block(body)?);
        rest = next;
    }
    if calls.is_empty() {
        return None;
    }
    content.push_str(rest);
    let content = content.trim();
    Some(Parsed {
        content: (!content.is_empty()).then(|| content.to_string()),
        calls,
    })
}

fn parse_block(body: &str) -> Option<ToolCall> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let obj = v.as_object()?;
    let name = obj.get("name")?.as_str()?.to_string();
    let arguments = match obj.get("arguments").or_else(|| obj.get("parameters")) {
        None | Some(Value::Null) => "{}".to_string(),
        // Some models already emit the arguments as a JSON string.
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Some(ToolCall {
        id: crate::ids::tool_call_id(),
        name,
        arguments,
    })
}

/// GLM-4's separator between an assistant's turns (and so between parallel calls).
pub const GLM4_ASSISTANT: &str = "<|assistant|>";

/// GLM-4 tool calls (GLM-4-9B-Chat / GLM-4-0414, and Hearth's built-in GLM-4 template): after
/// the generation prompt `<|assistant|>` the model writes either "\n" + an answer, or a
/// function name alone on the first line followed by its arguments as a JSON object; a
/// further call starts with another `<|assistant|>`, and the turn ends with `<|observation|>`.
/// ChatGLM3 writes the same turns with its arguments as a Python call in a code block
/// ([`crate::pycall`]); both forms are read.
/// `names` are the request's tool names: a first line that is not one of them is content
/// (so an answer that happens to start with a word and a JSON line is not taken for a call).
/// Returns `None` when there is no call, or when text after a call is not a call either.
pub fn parse_glm4(text: &str, names: &[&str]) -> Option<Parsed> {
    let mut content = String::new();
    let mut calls = Vec::new();
    for seg in text.split(GLM4_ASSISTANT) {
        // Calls may also follow each other with no separator in the text (the engine's text
        // stream leaves out special tokens such as `<|assistant|>`).
        let mut rest = seg;
        while let Some((call, after)) = glm4_call(rest, names) {
            calls.push(call);
            rest = after;
        }
        if rest.trim().is_empty() {
            continue;
        }
        if !calls.is_empty() {
            // Text after a call that is no call: leave everything as content.
            return None;
        }
        content.push_str(rest);
    }
    if calls.is_empty() {
        return None;
    }
    let content = content.trim();
    Some(Parsed {
        content: (!content.is_empty()).then(|| content.to_string()),
        calls,
    })
}

/// One "NAME\n{...}" (GLM-4) or "NAME\n```python\ntool_call(...)\n```" (ChatGLM3) call at
/// the start of `s` (after whitespace), and the text after it.
fn glm4_call<'a>(s: &'a str, names: &[&str]) -> Option<(ToolCall, &'a str)> {
    let (name, rest) = s.trim_start().split_once('\n')?;
    let name = name.trim();
    if name.is_empty() || !names.contains(&name) {
        return None;
    }
    let rest = rest.trim_start();
    let (arguments, after) = if rest.starts_with('{') {
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) if v.is_object() => {}
            _ => return None,
        }
        let end = values.byte_offset();
        (rest[..end].to_string(), &rest[end..])
    } else {
        crate::pycall::parse_tool_call(rest)?
    };
    Some((
        ToolCall {
            id: crate::ids::tool_call_id(),
            name: name.to_string(),
            arguments,
        },
        after,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glm4_single_and_parallel_calls() {
        let names = ["get_weather", "get_time"];
        let p = parse_glm4("get_weather\n{\"city\": \"Paris\"}", &names).unwrap();
        assert_eq!(p.content, None);
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].name, "get_weather");
        assert_eq!(p.calls[0].arguments, "{\"city\": \"Paris\"}");
        let p = parse_glm4(
            "\nChecking both.<|assistant|>get_time\n{\"tz\": \"Asia/Tokyo\"}<|assistant|>get_time\n{\"tz\": \"America/Lima\"}\n",
            &names,
        )
        .unwrap();
        assert_eq!(p.content.as_deref(), Some("Checking both."));
        let tz: Vec<_> = p.calls.iter().map(|c| c.arguments.as_str()).collect();
        assert_eq!(
            tz,
            ["{\"tz\": \"Asia/Tokyo\"}", "{\"tz\": \"America/Lima\"}"]
        );
        assert_ne!(p.calls[0].id, p.calls[1].id);
    }

    #[test]
    fn glm4_answers_and_malformed_calls_are_content() {
        let names = ["get_weather"];
        assert_eq!(parse_glm4("\nIt is sunny in Paris.", &names), None);
        // Not a tool of this request.
        assert_eq!(parse_glm4("search\n{\"q\": \"x\"}", &names), None);
        // Arguments cut short, or not an object.
        assert_eq!(parse_glm4("get_weather\n{\"city\": \"Pa", &names), None);
        assert_eq!(parse_glm4("get_weather\n[1]", &names), None);
        // Text after a call that is not a call.
        assert_eq!(
            parse_glm4("get_weather\n{}<|assistant|>\nDone.", &names),
            None
        );
    }

    #[test]
    fn chatglm3_python_calls() {
        // ChatGLM3's tool demo output: the name on the assistant's first line, then the call.
        let names = ["get_weather", "get_time"];
        let p = parse_glm4(
            "get_weather\n ```python\ntool_call(city='北京', days=2)\n```",
            &names,
        )
        .unwrap();
        assert_eq!(p.content, None);
        assert_eq!(p.calls[0].name, "get_weather");
        assert_eq!(p.calls[0].arguments, r#"{"city": "北京", "days": 2}"#);
        let p = parse_glm4(
            "get_time\n```python\ntool_call(tz=\"Asia/Tokyo\")\n```<|assistant|>get_weather\n```python\ntool_call(city=\"Lima\", metric=False)\n```",
            &names,
        )
        .unwrap();
        let args: Vec<_> = p.calls.iter().map(|c| c.arguments.as_str()).collect();
        assert_eq!(
            args,
            [
                r#"{"tz": "Asia/Tokyo"}"#,
                r#"{"city": "Lima", "metric": false}"#
            ]
        );
        // A code block that is not a tool_call(...) is no call.
        assert_eq!(
            parse_glm4("get_weather\n```python\nprint(1)\n```", &names),
            None
        );
    }

    #[test]
    fn single_call_with_object_arguments() {
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>";
        let p = parse_hermes(text).unwrap();
        assert_eq!(p.content, None);
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].name, "get_weather");
        let args: Value = serde_json::from_str(&p.calls[0].arguments).unwrap();
        assert_eq!(args, serde_json::json!({"city": "Paris", "days": 3}));
        assert!(p.calls[0].id.starts_with("call_"));
    }

    #[test]
    fn parallel_calls_and_surrounding_content() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": \"{\\\"x\\\": 1}\"}\n</tool_call>\n";
        let p = parse_hermes(text).unwrap();
        assert_eq!(p.content.as_deref(), Some("Let me check."));
        let names: Vec<_> = p.calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(p.calls[0].arguments, "{}");
        assert_eq!(p.calls[1].arguments, "{\"x\": 1}");
        assert_ne!(p.calls[0].id, p.calls[1].id);
    }

    #[test]
    fn unclosed_last_block_with_complete_json_is_accepted() {
        let p =
            parse_hermes("<tool_call>{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}").unwrap();
        assert_eq!(p.calls[0].name, "f");
    }

    #[test]
    fn malformed_or_absent_blocks_give_none() {
        assert_eq!(parse_hermes("just text"), None);
        assert_eq!(
            parse_hermes("<tool_call>{\"name\": \"f\", \"argu</tool_call>"),
            None
        );
        assert_eq!(
            parse_hermes("<tool_call>{\"arguments\": {}}</tool_call>"),
            None
        );
        assert_eq!(parse_hermes("<tool_call>[1, 2]</tool_call>"), None);
    }
}
