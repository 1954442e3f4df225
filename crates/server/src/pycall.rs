//! ChatGLM3's tool-call body: a Python call `tool_call(city="Paris", days=3)` in a
//! "```python" code block. ChatGLM3's own OpenAI demo (`openai_api_demo/utils.py`,
//! `process_response`) drops the fence lines and `eval`s the call with
//! `def tool_call(**kwargs): return kwargs`; we parse the same keyword arguments as Python
//! literals (strings with their escapes, ints, floats, True/False/None, lists, tuples, dicts)
//! and write them as a JSON object in the order given, without evaluating anything.

use serde_json::{Map, Number, Value};

/// The JSON arguments text of a ChatGLM3 tool-call body, and the text after it; `None` when
/// `s` (after leading whitespace) does not start with a complete call.
///
/// Accepted bodies: "```python\ntool_call(...)\n```", or a bare `tool_call(...)`.
pub fn parse_tool_call(s: &str) -> Option<(String, &str)> {
    let mut p = Parser { s, i: 0 };
    p.ws();
    let fenced = p.eat("```");
    if fenced {
        // The fence's language tag ("python"), then the end of the line.
        while p.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            p.i += 1;
        }
    }
    p.ws();
    if !p.eat("tool_call") {
        return None;
    }
    p.ws();
    if !p.eat("(") {
        return None;
    }
    let mut out = String::from("{");
    let mut first = true;
    loop {
        p.ws();
        if p.eat(")") {
            break;
        }
        if !first {
            if !p.eat(",") {
                return None;
            }
            p.ws();
            // A trailing comma before the closing parenthesis.
            if p.eat(")") {
                break;
            }
        }
        let key = p.ident()?;
        p.ws();
        if !p.eat("=") {
            return None;
        }
        let value = p.value(0)?;
        if !first {
            out.push_str(", ");
        }
        out.push_str(&serde_json::to_string(key).ok()?);
        out.push_str(": ");
        out.push_str(&serde_json::to_string(&value).ok()?);
        first = false;
    }
    out.push('}');
    if fenced {
        p.ws();
        if !p.eat("```") {
            // A call cut before its closing fence (max_tokens, a stop string) is still whole.
            if p.i < p.s.len() {
                return None;
            }
        }
    }
    Some((out, &s[p.i..]))
}

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.i += r.len() - r.trim_start().len();
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(k, c)| !(c == '_' || c.is_alphanumeric()) || (k == 0 && c.is_ascii_digit()))
            .map_or(r.len(), |(k, _)| k);
        if n == 0 {
            return None;
        }
        self.i += n;
        Some(&r[..n])
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let c = self.peek()?;
        match c {
            '"' | '\'' => self.string().map(Value::String),
            '[' => self.seq(']', depth).map(Value::Array),
            '(' => self.seq(')', depth).map(Value::Array),
            '{' => self.dict(depth),
            _ if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number(),
            _ => {
                let word = self.ident()?;
                match word {
                    "True" | "true" => Some(Value::Bool(true)),
                    "False" | "false" => Some(Value::Bool(false)),
                    "None" | "null" => Some(Value::Null),
                    _ => None,
                }
            }
        }
    }

    fn seq(&mut self, close: char, depth: usize) -> Option<Vec<Value>> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.eat(close.encode_utf8(&mut [0; 4])) {
                return Some(items);
            }
            if !items.is_empty() {
                if !self.eat(",") {
                    return None;
                }
                self.ws();
                if self.eat(close.encode_utf8(&mut [0; 4])) {
                    return Some(items);
                }
            }
            items.push(self.value(depth + 1)?);
        }
    }

    fn dict(&mut self, depth: usize) -> Option<Value> {
        self.i += 1;
        let mut map = Map::new();
        loop {
            self.ws();
            if self.eat("}") {
                return Some(Value::Object(map));
            }
            if !map.is_empty() {
                if !self.eat(",") {
                    return None;
                }
                self.ws();
                if self.eat("}") {
                    return Some(Value::Object(map));
                }
            }
            // JSON objects have string keys; Python's int/bool keys are written as text.
            let key = match self.value(depth + 1)? {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => (if b { "True" } else { "False" }).to_string(),
                _ => return None,
            };
            self.ws();
            if !self.eat(":") {
                return None;
            }
            let v = self.value(depth + 1)?;
            map.insert(key, v);
        }
    }

    fn number(&mut self) -> Option<Value> {
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_digit() || "+-.eE_".contains(c)))
            .map_or(r.len(), |(k, _)| k);
        let text: String = r[..n].chars().filter(|&c| c != '_').collect();
        self.i += n;
        if let Ok(v) = text.parse::<i64>() {
            return Some(Value::Number(v.into()));
        }
        let f: f64 = text.parse().ok()?;
        Number::from_f64(f).map(Value::Number)
    }

    /// A Python string literal in single or double quotes (no prefixes, no triple quotes
    /// beyond the simple form), with the escapes Python defines.
    fn string(&mut self) -> Option<String> {
        let r = self.rest();
        let q = r.chars().next()?;
        let triple: String = std::iter::repeat_n(q, 3).collect();
        let (body_start, close) = if r.starts_with(&triple) {
            (3, triple.as_str())
        } else {
            (1, &r[..1])
        };
        let body = &r[body_start..];
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((k, c)) = chars.next() {
            if body[k..].starts_with(close) {
                self.i += body_start + k + close.len();
                return Some(out);
            }
            match c {
                '\\' => {
                    let (_, e) = chars.next()?;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        '\\' | '\'' | '"' => out.push(e),
                        '\n' => {}
                        'x' | 'u' | 'U' => {
                            let len = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let mut hex = String::new();
                            for _ in 0..len {
                                hex.push(chars.next()?.1);
                            }
                            out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        }
                        other => {
                            // Python keeps an unknown escape as written.
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                '\n' if close.len() == 1 => return None,
                _ => out.push(c),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(s: &str) -> Value {
        let (text, rest) = parse_tool_call(s).unwrap();
        assert!(rest.trim().is_empty(), "left over: {rest:?}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn fenced_call_with_python_literals() {
        let v = args("```python\ntool_call(city='Paris', days=3, metric=True, note=None)\n```");
        assert_eq!(
            v,
            json!({"city": "Paris", "days": 3, "metric": true, "note": null})
        );
        // Keys keep the order the model wrote them in.
        let (text, _) = parse_tool_call("tool_call(b=1, a=2)").unwrap();
        assert_eq!(text, r#"{"b": 1, "a": 2}"#);
    }

    #[test]
    fn nested_values_escapes_and_numbers() {
        let v = args(
            "```python\ntool_call(q=\"北京 \\\"天气\\\"\\n\", ids=[1, -2, 3.5e2], opts={'a': (1, 2), 'b': {}}, x=1_000,)\n```",
        );
        assert_eq!(
            v,
            json!({"q": "北京 \"天气\"\n", "ids": [1, -2, 350.0], "opts": {"a": [1, 2], "b": {}}, "x": 1000})
        );
        assert_eq!(args("tool_call()"), json!({}));
        assert_eq!(args("tool_call(s='\\u00e9\\x41')"), json!({"s": "éA"}));
    }

    #[test]
    fn text_after_the_call_is_returned() {
        let (text, rest) =
            parse_tool_call("```python\ntool_call(a=1)\n```\n<|assistant|>f").unwrap();
        assert_eq!(text, r#"{"a": 1}"#);
        assert_eq!(rest, "\n<|assistant|>f");
        // Cut before the closing fence: still a whole call.
        assert!(parse_tool_call("```python\ntool_call(a=1)\n").is_some());
    }

    #[test]
    fn malformed_calls_are_refused() {
        for bad in [
            "tool_call(a=1",
            "tool_call(a=)",
            "tool_call(1)",
            "tool_call(a=foo)",
            "tool_call(a=os.system('x'))",
            "tool_call(a='unterminated)",
            "tool_call(a=1 b=2)",
            "call(a=1)",
            "```python\ntool_call(a=1)\n``` trailing",
            "It is sunny.",
        ] {
            // "``` trailing" is a complete call followed by text: the caller decides.
            if bad.ends_with("trailing") {
                assert_eq!(parse_tool_call(bad).unwrap().1, " trailing");
                continue;
            }
            assert_eq!(parse_tool_call(bad), None, "{bad}");
        }
        let deep = format!("tool_call(a={}{})", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_tool_call(&deep), None);
    }
}
