//! Constraints over the real SmolLM2 tokenizer (49,152 tokens): random logits sampled under a
//! constraint always give text that `serde_json` parses and that the independent `jsonschema`
//! validator accepts; control tokens never appear inside the output; bad schemas are errors.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hearth_constrain::{ConstrainError, ConstraintFactory, ToolChoice};
use hearth_engine::sample::TokenConstraint;
use hearth_engine::tokenizer::Tokenizer;
use serde_json::{json, Value};

struct Model {
    tok: Tokenizer,
    f: ConstraintFactory,
}

fn load(file: &str) -> Model {
    let dir = std::env::var_os("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/models")
        });
    let p = dir.join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    let g = hearth_formats::GgufFile::open(&p).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let t0 = Instant::now();
    let f = ConstraintFactory::new(&tok).unwrap();
    eprintln!(
        "ConstraintFactory::new ({file}, {} tokens): {:?}",
        tok.vocab_size(),
        t0.elapsed()
    );
    Model { tok, f }
}

fn smol() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| load("SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn tokenizer() -> &'static Tokenizer {
    &smol().tok
}

fn factory() -> &'static ConstraintFactory {
    &smol().f
}

/// xorshift64*: the tests' own RNG, so runs are reproducible from the seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

struct Run {
    text: String,
    tokens: Vec<u32>,
    mask_times: Vec<Duration>,
    ended_by_eog: bool,
}

/// Sample under `c` from random logits until the constraint finishes or an end-of-generation
/// token is drawn. Logits are uniform noise times `spread`, plus `close_bias` on tokens holding
/// a closing character (`"`, `}`, `]`, `,`): pure noise over ~40k allowed string tokens would
/// almost never pick the closing quote, and the point is to check complete outputs.
fn run(c: Box<dyn TokenConstraint>, seed: u64, close_bias: f32, max_steps: usize) -> Run {
    run_on(&smol().tok, c, seed, close_bias, max_steps)
}

fn run_on(
    tok: &Tokenizer,
    mut c: Box<dyn TokenConstraint>,
    seed: u64,
    close_bias: f32,
    max_steps: usize,
) -> Run {
    let n = tok.vocab_size();
    let closing: Vec<bool> = (0..n as u32)
        .map(|id| !tok.is_special(id) && tok.token_bytes(id).iter().any(|b| b"\"}],".contains(b)))
        .collect();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut logits = vec![0f32; n];
    let mut out = Run {
        text: String::new(),
        tokens: Vec::new(),
        mask_times: Vec::new(),
        ended_by_eog: false,
    };
    for _ in 0..max_steps {
        for (i, l) in logits.iter_mut().enumerate() {
            *l = rng.unit() * 10.0 + if closing[i] { close_bias } else { 0.0 };
        }
        let t0 = Instant::now();
        c.mask(&mut logits).unwrap();
        out.mask_times.push(t0.elapsed());
        let (best, &v) = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        assert!(v.is_finite(), "the mask forbade every token");
        let t = best as u32;
        c.commit(t).unwrap();
        out.tokens.push(t);
        if tok.is_eog(t) {
            out.ended_by_eog = true;
            break;
        }
        if c.is_finished() {
            break;
        }
    }
    let body: Vec<u32> = out
        .tokens
        .iter()
        .copied()
        .filter(|&t| !tok.is_eog(t))
        .collect();
    out.text = String::from_utf8(tok.decode_bytes(&body, false)).expect("output is UTF-8");
    out
}

fn check_no_control_tokens(r: &Run) {
    check_no_control_tokens_on(&smol().tok, r)
}

fn check_no_control_tokens_on(tok: &Tokenizer, r: &Run) {
    let n = r.tokens.len();
    for (i, &t) in r.tokens.iter().enumerate() {
        let last_eog = i + 1 == n && tok.is_eog(t);
        assert!(
            last_eog || !(tok.is_special(t) || tok.is_eog(t)),
            "control token {t} ({:?}) at position {i} of {n} in {:?}",
            tok.token_text(t),
            r.text
        );
    }
}

fn assert_valid(schema: &Value, seeds: std::ops::Range<u64>, close_bias: f32) -> Vec<Duration> {
    let validator = jsonschema::validator_for(schema).expect("test schema is valid");
    let mut times = Vec::new();
    let t0 = Instant::now();
    drop(factory().json_schema(schema).unwrap());
    eprintln!("compiling the schema: {:?}", t0.elapsed());
    for seed in seeds {
        let c = factory().json_schema(schema).unwrap();
        let r = run(c, seed, close_bias, 4000);
        assert!(
            r.ended_by_eog || r.tokens.len() < 4000,
            "seed {seed}: not finished after 4000 tokens: {:?}",
            r.text
        );
        check_no_control_tokens(&r);
        let v: Value = serde_json::from_str(&r.text)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {:?}", r.text));
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "seed {seed}: {:?} violates the schema: {errors:?}",
            r.text
        );
        if seed % 5 == 0 {
            eprintln!("seed {seed}: {}", r.text);
        }
        times.extend(r.mask_times);
    }
    times
}

fn report(name: &str, mut t: Vec<Duration>) {
    t.sort();
    let mean = t.iter().sum::<Duration>() / t.len().max(1) as u32;
    eprintln!(
        "{name}: {} masks, mean {:?}, median {:?}, p99 {:?}, max {:?}",
        t.len(),
        mean,
        t[t.len() / 2],
        t[t.len() * 99 / 100],
        t[t.len() - 1]
    );
}

#[test]
fn object_with_required_string_integer_enum_array() {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "color": {"enum": ["red", "green", "blue"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 4},
            "ok": {"type": "boolean"}
        },
        "required": ["name", "age", "color", "tags", "ok"],
        "additionalProperties": false
    });
    report("flat object", assert_valid(&schema, 0..12, 12.0));
}

#[test]
fn nested_objects_and_arrays_of_objects() {
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 20},
                    "population": {"type": "integer"},
                    "location": {
                        "type": "object",
                        "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                        "required": ["lat", "lon"],
                        "additionalProperties": false
                    }
                },
                "required": ["name", "population", "location"],
                "additionalProperties": false
            },
            "landmarks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "year": {"type": ["integer", "null"]}},
                    "required": ["name", "year"],
                    "additionalProperties": false
                },
                "maxItems": 3
            }
        },
        "required": ["city", "landmarks"],
        "additionalProperties": false
    });
    report("nested", assert_valid(&schema, 100..110, 12.0));
}

/// Without any bias towards closing characters: bounded strings and numbers still end.
#[test]
fn pure_noise_under_length_bounds() {
    let schema = json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "minLength": 3, "maxLength": 8},
            "n": {"type": "integer", "minimum": -5, "maximum": 5},
            "kind": {"const": "point"}
        },
        "required": ["id", "n", "kind"],
        "additionalProperties": false
    });
    report("noise", assert_valid(&schema, 200..210, 0.0));
}

#[test]
fn json_object_is_any_object() {
    let mut times = Vec::new();
    for seed in 300..310 {
        let r = run(factory().json_object().unwrap(), seed, 12.0, 4000);
        check_no_control_tokens(&r);
        let v: Value = serde_json::from_str(&r.text)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {:?}", r.text));
        assert!(v.is_object(), "seed {seed}: {:?} is not an object", r.text);
        times.extend(r.mask_times);
    }
    report("json_object", times);
}

#[test]
fn tool_call_matches_hermes_format_and_parameters() {
    let params = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["celsius", "fahrenheit"]}
        },
        "required": ["city", "unit"],
        "additionalProperties": false
    });
    let tools = vec![
        json!({"type": "function", "function": {"name": "get_weather", "parameters": params}}),
        json!({"type": "function", "function": {"name": "get_time", "parameters": {
            "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}),
    ];
    let validator = jsonschema::validator_for(&params).unwrap();
    for (seed, choice) in [
        (1, ToolChoice::Named("get_weather".into())),
        (2, ToolChoice::Named("get_weather".into())),
        (3, ToolChoice::Required),
        (4, ToolChoice::Required),
        (5, ToolChoice::Required),
    ] {
        let c = factory().tool_call(&tools, &choice).unwrap();
        let r = run(c, seed, 12.0, 4000);
        check_no_control_tokens(&r);
        let body = r
            .text
            .strip_prefix("<tool_call>\n")
            .and_then(|s| s.strip_suffix("\n</tool_call>"))
            .unwrap_or_else(|| panic!("not a Hermes tool call: {:?}", r.text));
        let call: Value = serde_json::from_str(body).unwrap();
        let name = call["name"].as_str().unwrap();
        match (&choice, name) {
            (_, "get_weather") => {
                assert!(
                    validator.is_valid(&call["arguments"]),
                    "{:?}",
                    call["arguments"]
                );
            }
            (ToolChoice::Required, "get_time") => {
                assert!(call["arguments"]["tz"].is_string(), "{call}")
            }
            _ => panic!("unexpected call {call} for {choice:?}"),
        }
    }
    assert!(matches!(
        factory().tool_call(&tools, &ToolChoice::Named("nope".into())),
        Err(ConstrainError::UnknownTool(n)) if n == "nope"
    ));
}

#[test]
fn invalid_schemas_are_errors() {
    for bad in [
        json!({"type": "foo"}),
        json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}),
        json!([1, 2]),
        json!("string"),
        json!({"type": "integer", "minimum": 5, "maximum": 1}),
    ] {
        match factory().json_schema(&bad) {
            Err(ConstrainError::InvalidSchema(msg)) => eprintln!("{bad} -> {msg}"),
            Err(e) => panic!("{bad}: wrong error kind {e:?}"),
            Ok(_) => panic!("{bad}: accepted"),
        }
    }
    let tools = vec![
        json!({"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}),
    ];
    assert!(matches!(
        factory().tool_call(&tools, &ToolChoice::Required),
        Err(ConstrainError::InvalidTool { index: 0, .. })
    ));
}

/// The mask is only as good as the token bytes: the text of a constrained run re-tokenizes
/// to bytes the grammar accepted, and the allowed set at the start of a JSON object is small.
#[test]
fn first_mask_allows_only_object_openers() {
    let tok = tokenizer();
    let mut c = factory().json_object().unwrap();
    let mut logits = vec![0f32; tok.vocab_size()];
    c.mask(&mut logits).unwrap();
    let allowed: Vec<u32> = (0..logits.len() as u32)
        .filter(|&i| logits[i as usize].is_finite())
        .collect();
    assert!(!allowed.is_empty());
    for &t in &allowed {
        let b = tok.token_bytes(t);
        assert!(
            b.starts_with(b"{"),
            "token {t} {:?} allowed first",
            tok.token_text(t)
        );
    }
    // EOG not allowed before the object is complete.
    assert!(tok
        .eog_ids()
        .iter()
        .all(|&e| logits[e as usize] == f32::NEG_INFINITY));
}

/// A second tokenizer family: Gemma 3's SentencePiece vocabulary (262k tokens, byte-fallback
/// pieces, many control tokens).
#[test]
fn gemma3_tokenizer_constraints_hold() {
    let m = load("gemma-3-270m-Q4_K_M.gguf");
    let schema = json!({
        "type": "object",
        "properties": {
            "word": {"type": "string", "maxLength": 12},
            "count": {"type": "integer"},
            "flags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}
        },
        "required": ["word", "count", "flags"],
        "additionalProperties": false
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut times = Vec::new();
    for seed in 0..4 {
        let r = run_on(&m.tok, m.f.json_schema(&schema).unwrap(), seed, 12.0, 4000);
        check_no_control_tokens_on(&m.tok, &r);
        let v: Value = serde_json::from_str(&r.text)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {:?}", r.text));
        assert!(validator.is_valid(&v), "seed {seed}: {:?}", r.text);
        times.extend(r.mask_times);
    }
    report("gemma3", times);
}
