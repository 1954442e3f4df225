//! Python-compatible text forms of template values: `str()`, `repr()` and `json.dumps()`.
//!
//! jinja2 prints `{{ x }}` as Python `str(x)`, so a list prints as `['a', 1, True, None]`
//! and a float as `repr(float)`; transformers' `tojson` is `json.dumps`. Both differ from
//! minijinja's native forms (JSON-ish reprs, Rust float formatting), hence these writers.

use std::fmt::{self, Write};

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};

/// Python `str(value)`: strings verbatim, everything else as `repr`.
pub fn write_py_str<W: Write>(out: &mut W, v: &Value) -> fmt::Result {
    match v.as_str() {
        Some(s) => out.write_str(s),
        None => write_py_repr(out, v),
    }
}

/// Python `repr(value)` for the types a template sees (JSON data, plus jinja helpers).
pub fn write_py_repr<W: Write>(out: &mut W, v: &Value) -> fmt::Result {
    match v.kind() {
        ValueKind::Undefined => Ok(()),
        ValueKind::None => out.write_str("None"),
        ValueKind::Bool => out.write_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if v.is_integer() {
                write!(out, "{v}")
            } else {
                match f64::try_from(v.clone()) {
                    Ok(f) => out.write_str(&py_float_repr(f)),
                    Err(_) => write!(out, "{v}"),
                }
            }
        }
        ValueKind::String => write_py_str_repr(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.write_char('[')?;
            if let Ok(iter) = v.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    write_py_repr(out, &item)?;
                }
            }
            out.write_char(']')
        }
        ValueKind::Map => {
            out.write_char('{')?;
            if let Some(pairs) = v.as_object().and_then(|o| o.try_iter_pairs()) {
                for (i, (k, val)) in pairs.enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    write_py_repr(out, &k)?;
                    out.write_str(": ")?;
                    write_py_repr(out, &val)?;
                }
            }
            out.write_char('}')
        }
        _ => write!(out, "{v}"),
    }
}

/// Python `repr(str)`: single quotes unless the text contains `'` but no `"`; backslash
/// escapes for the quote, `\\`, `\n`, `\r`, `\t`, and `\xNN`/`\uNNNN`/`\UNNNNNNNN` for
/// characters Python does not consider printable (`str.isprintable`).
fn write_py_str_repr<W: Write>(out: &mut W, s: &str) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.write_char(quote)?;
    for c in s.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c == quote => {
                out.write_char('\\')?;
                out.write_char(c)?;
            }
            c if !is_py_printable(c) => {
                let cp = c as u32;
                if cp <= 0xff {
                    write!(out, "\\x{cp:02x}")?
                } else if cp <= 0xffff {
                    write!(out, "\\u{cp:04x}")?
                } else {
                    write!(out, "\\U{cp:08x}")?
                }
            }
            c => out.write_char(c)?,
        }
    }
    out.write_char(quote)
}

/// Python's `str.isspace` for one character (what `str.strip()` removes): Unicode White_Space
/// plus the ASCII information separators U+001C..U+001F, which Python also counts.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Approximates Python's `str.isprintable` for one character: false for the Unicode
/// categories Cc, Cf, Zl, Zp, Zs (except the ASCII space), Co and Cs. Covers the control,
/// format and separator code points that occur in text; unassigned code points (Cn) are
/// treated as printable, which only affects the repr of invalid text.
fn is_py_printable(c: char) -> bool {
    let cp = c as u32;
    !matches!(cp,
        0x00..=0x1f | 0x7f..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f
        | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064
        | 0x2066..=0x206f | 0x3000 | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
        | 0x110bd | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f
        | 0xf0000..=0x10ffff)
}

/// Python `repr(float)` (`float_repr_style == 'short'`): the shortest digits that round-trip,
/// laid out in fixed notation when the decimal exponent is in [-4, 16), otherwise as
/// `d.ddde+XX` (exponent with sign and at least two digits).
pub fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` prints the shortest round-tripping digits, like Python's repr.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let decpt = exp + 1; // position of the decimal point relative to the digit string
    if !(-4 < decpt && decpt <= 16) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{sign}{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (a, b) = digits.split_at(decpt as usize);
        format!("{sign}{a}.{b}")
    }
}

/// The parameters of Python's `json.dumps` that transformers' `tojson` exposes.
pub struct JsonOptions {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonOptions {
    /// From `[ensure_ascii, indent, separators, sort_keys]` as given to the filter
    /// (absent or None means the default, as in Python).
    pub fn from_params(p: &[Option<Value>; 4]) -> Result<Self, Error> {
        let given = |v: &Option<Value>| v.as_ref().filter(|v| !v.is_none()).cloned();
        let ensure_ascii = given(&p[0]).is_some_and(|v| v.is_true());
        let indent = match given(&p[1]) {
            None => None,
            Some(v) if v.kind() == ValueKind::String => {
                Some(v.as_str().unwrap_or_default().to_string())
            }
            Some(v) if v.kind() == ValueKind::Bool => Some(if v.is_true() {
                " ".into()
            } else {
                String::new()
            }),
            Some(v) => {
                let n = i64::try_from(v.clone()).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "tojson: indent must be an integer or string, got {}",
                            v.kind()
                        ),
                    )
                })?;
                Some(" ".repeat(n.max(0) as usize))
            }
        };
        let (item_sep, key_sep) = match given(&p[2]) {
            None => {
                if indent.is_some() {
                    (",".to_string(), ": ".to_string())
                } else {
                    (", ".to_string(), ": ".to_string())
                }
            }
            Some(v) => {
                let parts: Vec<Value> = v.try_iter().map(|it| it.collect()).unwrap_or_default();
                match (parts.first().and_then(|x| x.as_str()), parts.get(1).and_then(|x| x.as_str()), parts.len()) {
                    (Some(a), Some(b), 2) => (a.to_string(), b.to_string()),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidOperation,
                            "tojson: separators must be a pair of strings (item_separator, key_separator)",
                        ))
                    }
                }
            }
        };
        let sort_keys = given(&p[3]).is_some_and(|v| v.is_true());
        Ok(JsonOptions {
            ensure_ascii,
            indent,
            item_sep,
            key_sep,
            sort_keys,
        })
    }
}

fn not_serializable(type_name: &str) -> Error {
    // Python's message, so errors read the same as under transformers.
    Error::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {type_name} is not JSON serializable"),
    )
}

/// Python `json.dumps(value, ...)` (the pure-Python encoder's output, which the C encoder matches).
pub fn write_json(out: &mut String, v: &Value, o: &JsonOptions, level: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined => return Err(not_serializable("Undefined")),
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                let _ = write!(out, "{v}");
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                if f.is_nan() {
                    out.push_str("NaN")
                } else if f.is_infinite() {
                    out.push_str(if f < 0.0 { "-Infinity" } else { "Infinity" })
                } else {
                    out.push_str(&py_float_repr(f))
                }
            }
        }
        ValueKind::String => write_json_str(out, v.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Seq => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline_indent(out, o, level + 1);
                write_json(out, item, o, level + 1)?;
            }
            newline_indent(out, o, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut pairs: Vec<(Value, Value)> =
                match v.as_object().and_then(|obj| obj.try_iter_pairs()) {
                    Some(it) => it.collect(),
                    None => return Err(not_serializable("object")),
                };
            if pairs.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            let key_text = |k: &Value| -> Result<String, Error> {
                // json.dumps converts str/int/float/bool/None keys to strings.
                match k.kind() {
                    ValueKind::String => Ok(k.as_str().unwrap_or_default().to_string()),
                    ValueKind::None => Ok("null".into()),
                    ValueKind::Bool => Ok(if k.is_true() { "true" } else { "false" }.into()),
                    ValueKind::Number => {
                        let mut s = String::new();
                        write_json(&mut s, k, o, 0)?;
                        Ok(s)
                    }
                    _ => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "keys must be str, int, float, bool or None, not {}",
                            k.kind()
                        ),
                    )),
                }
            };
            if o.sort_keys {
                let mut keyed: Vec<(String, (Value, Value))> = pairs
                    .into_iter()
                    .map(|p| Ok((key_text(&p.0)?, p)))
                    .collect::<Result<_, Error>>()?;
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                pairs = keyed.into_iter().map(|(_, p)| p).collect();
            }
            out.push('{');
            for (i, (k, val)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline_indent(out, o, level + 1);
                write_json_str(out, &key_text(k)?, o.ensure_ascii);
                out.push_str(&o.key_sep);
                write_json(out, val, o, level + 1)?;
            }
            newline_indent(out, o, level);
            out.push('}');
        }
        // jinja2's map/select/etc. return generators, which json.dumps rejects.
        ValueKind::Iterable => return Err(not_serializable("generator")),
        _ => return Err(not_serializable(&v.kind().to_string())),
    }
    Ok(())
}

fn newline_indent(out: &mut String, o: &JsonOptions, level: usize) {
    if let Some(ind) = &o.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(ind);
        }
    }
}

/// A JSON string as Python's encoder writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`,
/// other C0 controls as `\u00XX`; with `ensure_ascii` also everything outside `' '..='~'`
/// as `\uXXXX` (UTF-16 surrogate pairs above the BMP).
fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python_layout() {
        // Expected strings are Python 3.11's repr() of the same floats.
        for (f, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (18.5, "18.5"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1.5e300, "1.5e+300"),
            (0.1 + 0.2, "0.30000000000000004"),
            (100.0, "100.0"),
        ] {
            assert_eq!(py_float_repr(f), want, "{f}");
        }
    }
}
