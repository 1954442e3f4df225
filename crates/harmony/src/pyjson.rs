//! JSON text as Python's `json.dumps(value, ensure_ascii=False)` writes it: `", "` and `": "`
//! separators, non-ASCII characters kept, keys in insertion order. This is what the gpt-oss chat
//! template's `tojson` prints under Hugging Face transformers (and llama.cpp's minja), so the
//! template flavour needs it to reproduce the template byte for byte.

use serde_json::Value;

pub(crate) fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&python_number(n)),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(k, out);
                out.push_str(": ");
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// Python's float repr writes exponents with a sign and at least two digits (`1e+20`,
/// `1e-07`); serde_json writes `1e20` / `1e-7`. Integers are the same in both.
fn python_number(n: &serde_json::Number) -> String {
    let s = n.to_string();
    if !n.is_f64() {
        return s;
    }
    match s.find(['e', 'E']) {
        None => s,
        Some(pos) => {
            let (mantissa, exp) = (&s[..pos], &s[pos + 1..]);
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp.strip_prefix('+').unwrap_or(exp)),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        // Expected strings printed by CPython 3 `json.dumps(v, ensure_ascii=False)`.
        assert_eq!(
            dumps(&json!({"b": 1, "a": [true, null, "x\"y\n\u{1}é"]})),
            "{\"b\": 1, \"a\": [true, null, \"x\\\"y\\n\\u0001é\"]}"
        );
        assert_eq!(dumps(&json!(1e20)), "1e+20");
        assert_eq!(dumps(&json!(1.5e-7)), "1.5e-07");
        assert_eq!(dumps(&json!(0.25)), "0.25");
    }
}
