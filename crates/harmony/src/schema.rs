//! Function tools (OpenAI JSON-schema definitions) rendered as harmony's TypeScript-like
//! `namespace functions { ... }` block.
//!
//! Two renderings exist in the wild and they disagree on anything beyond flat parameters:
//!
//! * [`reference_namespace`]: the format of OpenAI's reference implementation (the
//!   `openai-harmony` crate, what vLLM renders for gpt-oss): nested objects are multi-line
//!   and indented, `title` / `examples` / object `description` / `oneOf` variants become
//!   comments, arrays of anything become `T[]`.
//! * [`template_namespace`]: what the Jinja chat template shipped with the gpt-oss weights
//!   (and vendored in llama.cpp as `models/templates/openai-gpt-oss-120b.jinja`) prints, whitespace
//!   quirks included.
//!
//! Both are written from the behaviour of those renderers (their test vectors and outputs), not
//! copied.

use crate::pyjson;
use serde_json::{Map, Value};

/// One function tool: name, description and JSON-schema parameters (`None` when absent).
#[derive(Debug, Clone)]
pub(crate) struct FunctionTool {
    pub name: String,
    pub description: String,
    pub parameters: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Reference (openai-harmony) rendering
// ---------------------------------------------------------------------------------------------

/// `# Tools\n\n## functions\n\nnamespace functions {\n\n...} // namespace functions`
pub(crate) fn reference_namespace(tools: &[FunctionTool]) -> String {
    // The reference builds the namespace section as lines joined with "\n", where the header
    // and each `type` line carry their own trailing "\n" (hence the blank lines).
    let mut lines: Vec<String> = vec!["## functions\n".into(), "namespace functions {\n".into()];
    for tool in tools {
        for line in tool.description.lines() {
            lines.push(format!("// {line}"));
        }
        match &tool.parameters {
            Some(params) => lines.push(format!(
                "type {} = (_: {}) => any;\n",
                tool.name,
                ts_reference(params, "")
            )),
            None => lines.push(format!("type {} = () => any;\n", tool.name)),
        }
    }
    lines.push("} // namespace functions".into());
    format!("# Tools\n\n{}", lines.join("\n"))
}

fn is_enum(schema: &Value) -> bool {
    schema
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// A `default` as the reference prints it in a comment: strings quoted unless the schema is an
/// enum (whose members are already shown quoted), everything else as compact JSON.
fn reference_default(schema: &Value, default: &Value) -> String {
    match default.as_str() {
        Some(s) if !is_enum(schema) => format!("\"{s}\""),
        Some(s) => s.to_string(),
        None => default.to_string(),
    }
}

fn nullable(schema: &Value) -> bool {
    schema
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn with_null(schema: &Value, ty: String) -> String {
    if nullable(schema) && !ty.contains("null") {
        format!("{ty} | null")
    } else {
        ty
    }
}

/// One union member line of a `oneOf`: ` | TYPE // comments`.
fn reference_variant(variant: &Value, indent: &str, comments: &mut Vec<String>) -> String {
    let ty = with_null(variant, ts_reference(variant, &format!("{indent}   ")));
    if let Some(default) = variant.get("default") {
        comments.push(format!("default: {}", reference_default(variant, default)));
    }
    let mut out = format!("{indent} | {ty}");
    if !comments.is_empty() {
        out.push_str(" // ");
        out.push_str(&comments.join(" "));
    }
    out
}

fn ts_reference(schema: &Value, indent: &str) -> String {
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        let mut out = String::new();
        for variant in variants {
            let mut comments: Vec<String> = variant
                .get("description")
                .and_then(Value::as_str)
                .map(|d| vec![d.to_string()])
                .unwrap_or_default();
            out.push('\n');
            out.push_str(&reference_variant(variant, indent, &mut comments));
        }
        return out;
    }
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        let names: Vec<&str> = types
            .iter()
            .filter_map(Value::as_str)
            .map(|t| if t == "integer" { "number" } else { t })
            .collect();
        if !names.is_empty() {
            return names.join(" | ");
        }
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => reference_object(schema, indent),
        Some("string") => {
            let members: Vec<String> = schema
                .get("enum")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|s| format!("\"{s}\""))
                        .collect()
                })
                .unwrap_or_default();
            if members.is_empty() {
                "string".into()
            } else {
                members.join(" | ")
            }
        }
        Some("number") | Some("integer") => "number".into(),
        Some("boolean") => "boolean".into(),
        Some("array") => match schema.get("items") {
            Some(items) => format!("{}[]", ts_reference(items, indent)),
            None => "Array<any>".into(),
        },
        _ => "any".into(),
    }
}

fn reference_object(schema: &Value, indent: &str) -> String {
    let mut out = String::new();
    if let Some(desc) = schema.get("description").and_then(Value::as_str) {
        out.push_str(&format!("{indent}// {desc}\n"));
    }
    out.push_str("{\n");
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (key, prop) in props {
        let optional = if required.contains(&key.as_str()) {
            ""
        } else {
            "?"
        };
        if let Some(title) = prop.get("title").and_then(Value::as_str) {
            out.push_str(&format!("{indent}// {title}\n{indent}//\n"));
        }
        let one_of = prop.get("oneOf").and_then(Value::as_array);
        let desc = prop.get("description").and_then(Value::as_str);
        if one_of.is_none() {
            if let Some(d) = desc {
                out.push_str(&format!("{indent}// {d}\n"));
            }
        }
        if let Some(examples) = prop.get("examples").and_then(Value::as_array) {
            if !examples.is_empty() {
                out.push_str(&format!("{indent}// Examples:\n"));
                for ex in examples.iter().filter_map(Value::as_str) {
                    out.push_str(&format!("{indent}// - \"{ex}\"\n"));
                }
            }
        }
        if let Some(variants) = one_of {
            // A property-level description equal to the first variant's is printed once.
            let first_desc = variants
                .first()
                .and_then(|v| v.get("description"))
                .and_then(Value::as_str);
            let desc_above = desc.filter(|d| Some(*d) != first_desc);
            if let Some(d) = desc_above {
                out.push_str(&format!("{indent}// {d}\n"));
            }
            if let Some(default) = prop.get("default") {
                out.push_str(&format!(
                    "{indent}// default: {}\n",
                    reference_default(prop, default)
                ));
            }
            out.push_str(&format!("{indent}{key}{optional}:\n"));
            for (i, variant) in variants.iter().enumerate() {
                let mut comments = Vec::new();
                if !(i == 0 && desc_above.is_some()) {
                    if let Some(vd) = variant.get("description").and_then(Value::as_str) {
                        if Some(vd) != desc {
                            comments.push(vd.to_string());
                        }
                    }
                }
                out.push_str(&reference_variant(variant, indent, &mut comments));
                out.push('\n');
            }
            out.push_str(&format!("{indent},\n"));
            continue;
        }
        let ty = with_null(prop, ts_reference(prop, &format!("{indent}    ")));
        out.push_str(&format!("{indent}{key}{optional}: {ty},"));
        if let Some(default) = prop.get("default") {
            out.push_str(&format!(
                " // default: {}",
                reference_default(prop, default)
            ));
        }
        out.push('\n');
    }
    out.push_str(&format!("{indent}}}"));
    out
}

// ---------------------------------------------------------------------------------------------
// Chat-template rendering
// ---------------------------------------------------------------------------------------------

/// Jinja truthiness of an optional JSON value (absent, null, false, 0, "", [] and {} are false).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// A value concatenated into a string by Jinja (`"..." + value`): strings as-is, others as
/// Python's `str()` would print them. (Python raises on `str + int`; we print instead of
/// failing, which only matters for schemas the template cannot render at all.)
fn jinja_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => pyjson::dumps(other),
    }
}

/// `# Tools\n\n## functions\n\nnamespace functions {\n\n...} // namespace functions`, as the
/// template's `render_tool_namespace("functions", tools)` prints it.
pub(crate) fn template_namespace(tools: &[FunctionTool]) -> String {
    let mut out = String::from("# Tools\n\n## functions\n\nnamespace functions {\n\n");
    for tool in tools {
        out.push_str(&format!("// {}\n", tool.description));
        out.push_str(&format!("type {} = ", tool.name));
        let props = tool
            .parameters
            .as_ref()
            .and_then(|p| p.get("properties"))
            .filter(|p| truthy(Some(p)));
        let (Some(params), Some(props)) = (tool.parameters.as_ref(), props) else {
            out.push_str("() => any;\n\n");
            continue;
        };
        out.push_str("(_: {\n");
        let required = required_list(params);
        if let Some(props) = props.as_object() {
            for (name, spec) in props {
                if let Some(d) = spec.get("description").filter(|d| truthy(Some(d))) {
                    out.push_str(&format!("// {}\n", jinja_str(d)));
                }
                out.push_str(name);
                if !required.contains(name) {
                    out.push('?');
                }
                out.push_str(": ");
                out.push_str(&ts_template(spec));
                if let Some(default) = spec.get("default") {
                    if truthy(spec.get("enum")) {
                        out.push_str(&format!(", // default: {}", jinja_str(default)));
                    } else if truthy(spec.get("oneOf")) {
                        out.push_str(&format!("// default: {}", jinja_str(default)));
                    } else {
                        out.push_str(&format!(", // default: {}", pyjson::dumps(default)));
                    }
                }
                out.push_str(",\n");
            }
        }
        out.push_str("}) => any;\n\n");
    }
    out.push_str("} // namespace functions");
    out
}

fn required_list(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The template's `render_typescript_type` macro.
fn ts_template(spec: &Value) -> String {
    let ty = spec.get("type");
    let null_suffix = if truthy(spec.get("nullable")) {
        " | null"
    } else {
        ""
    };
    match ty {
        Some(Value::String(t)) if t == "array" => {
            let items = spec.get("items").filter(|i| truthy(Some(i)));
            let body = match items {
                Some(items) => match items.get("type").and_then(Value::as_str) {
                    Some("string") => "string[]".to_string(),
                    Some("number") | Some("integer") => "number[]".to_string(),
                    Some("boolean") => "boolean[]".to_string(),
                    _ => {
                        let inner = ts_template(items);
                        // The template gives up on long or doubly-object element types.
                        if inner == "object | object" || inner.chars().count() > 50 {
                            "any[]".to_string()
                        } else {
                            format!("{inner}[]")
                        }
                    }
                },
                None => "any[]".to_string(),
            };
            format!("{body}{null_suffix}")
        }
        Some(Value::Array(types)) if !types.is_empty() => {
            let names: Vec<String> = types.iter().map(jinja_str).collect();
            names.join(" | ")
        }
        _ if truthy(spec.get("oneOf")) => {
            // The template tries to detect object variants, but its `set` inside the loop does
            // not leave the loop (Jinja scoping), so every oneOf is printed variant by variant.
            let variants = spec["oneOf"].as_array().cloned().unwrap_or_default();
            let mut out = String::new();
            let n = variants.len();
            for (i, variant) in variants.iter().enumerate() {
                out.push_str(&ts_template(variant));
                if let Some(d) = variant.get("description").filter(|d| truthy(Some(d))) {
                    out.push_str(&format!("// {}", jinja_str(d)));
                }
                if let Some(default) = variant.get("default") {
                    out.push_str(&format!(
                        "                    // default: {}",
                        pyjson::dumps(default)
                    ));
                }
                if i + 1 < n {
                    out.push_str(" | \n");
                }
            }
            out
        }
        Some(Value::String(t)) if t == "string" => match spec.get("enum") {
            Some(Value::Array(members)) if !members.is_empty() => {
                let members: Vec<String> = members.iter().map(jinja_str).collect();
                format!("\"{}\"", members.join("\" | \""))
            }
            _ => format!("string{null_suffix}"),
        },
        Some(Value::String(t)) if t == "number" || t == "integer" => "number".into(),
        Some(Value::String(t)) if t == "boolean" => "boolean".into(),
        Some(Value::String(t)) if t == "object" => {
            let props = spec
                .get("properties")
                .filter(|p| truthy(Some(p)))
                .and_then(Value::as_object);
            let Some(props) = props else {
                return "object".into();
            };
            let required = required_list(spec);
            let mut out = String::from("{\n");
            let n = props.len();
            for (i, (name, prop)) in props.iter().enumerate() {
                out.push_str(name);
                if !required.contains(name) {
                    out.push('?');
                }
                // The macro's `{{- ": " }}` is followed by a newline and indentation before the
                // nested `{{ ... }}` call, which Jinja prints verbatim.
                out.push_str(": \n                ");
                out.push_str(&ts_template(prop));
                if i + 1 < n {
                    out.push_str(", ");
                }
            }
            out.push('}');
            out
        }
        _ => "any".into(),
    }
}
