//! The guardrails file (`--guardrails FILE`, TOML).
//!
//! ```toml
//! # Optional: replaces the default rule set entirely when any [[rule]] is given.
//! [[rule]]
//! id = "no-injection"
//! kind = "injection"          # injection | words | pii:cn_id | pii:cn_mobile | pii:bank_card | pii:email | pii:ip
//! action = "block"            # block | redact | log
//! applies_to = "input"        # input | output | both (default both; injection: input only)
//! roles = ["user"]            # optional: only messages with these roles (output is "assistant")
//! threshold = 0.5             # injection only: combined score that fires the rule
//!
//! [[rule]]
//! id = "banned-words"
//! kind = "words"
//! action = "redact"
//! words = ["炸弹", "bomb"]
//! words_file = "words.txt"    # one word per line, '#' comments; relative to the TOML file
//! replacement = "***"         # redact only; default "***" for words, "[<pii kind>]" for PII
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::pii::PiiKind;

/// What a rule does when it fires. Ordered by severity: a verdict takes the most severe.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing fired.
    Allow,
    /// Record the hit in the audit log, change nothing.
    Log,
    /// Replace the matched span.
    Redact,
    /// Refuse the request (HTTP 400) or end the completion (`finish_reason: "content_filter"`).
    Block,
}

/// Where a rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliesTo {
    Input,
    Output,
    #[default]
    Both,
}

impl AppliesTo {
    pub fn input(self) -> bool {
        matches!(self, AppliesTo::Input | AppliesTo::Both)
    }
    pub fn output(self) -> bool {
        matches!(self, AppliesTo::Output | AppliesTo::Both)
    }
}

/// What a rule detects.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleKind {
    Injection { threshold: f32 },
    Words { words: Vec<String> },
    Pii(PiiKind),
}

/// A validated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKind,
    pub action: Action,
    pub applies_to: AppliesTo,
    /// `None`: every role.
    pub roles: Option<Vec<String>>,
    pub replacement: String,
}

impl Rule {
    pub fn applies_to_role(&self, role: &str) -> bool {
        self.roles
            .as_ref()
            .map_or(true, |r| r.iter().any(|x| x == role))
    }
}

/// Errors loading a guardrails file; each names the file, the rule and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("guardrails file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("guardrails file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("guardrails file {path}: rule {rule:?}: `{key}`: {message}")]
    Rule {
        path: String,
        rule: String,
        key: &'static str,
        message: String,
    },
    #[error("guardrails file {path}: rule {rule:?}: words_file {file}: {source}")]
    WordsFile {
        path: String,
        rule: String,
        file: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    kind: String,
    action: Action,
    #[serde(default)]
    applies_to: Option<AppliesTo>,
    roles: Option<Vec<String>>,
    threshold: Option<f32>,
    words: Option<Vec<String>>,
    words_file: Option<PathBuf>,
    replacement: Option<String>,
}

/// The default injection threshold.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Parses a guardrails TOML document. `name` is used in error messages; relative
/// `words_file`s are resolved against `base_dir`.
pub fn parse(text: &str, name: &str, base_dir: Option<&Path>) -> Result<Vec<Rule>, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: name.to_string(),
        message: e.to_string(),
    })?;
    let mut seen = std::collections::HashSet::new();
    let mut rules = Vec::with_capacity(raw.rule.len());
    for r in raw.rule {
        let err = |key: &'static str, message: String| ConfigError::Rule {
            path: name.to_string(),
            rule: r.id.clone(),
            key,
            message,
        };
        if r.id.is_empty() {
            return Err(err("id", "must not be empty".into()));
        }
        if !seen.insert(r.id.clone()) {
            return Err(err("id", "duplicate rule id".into()));
        }
        let only = |key: &'static str, present: bool, kinds: &str| {
            if present {
                Err(err(key, format!("only valid for kind {kinds}")))
            } else {
                Ok(())
            }
        };
        let kind = match r.kind.as_str() {
            "injection" => {
                only("words", r.words.is_some(), "words")?;
                only("words_file", r.words_file.is_some(), "words")?;
                let threshold = r.threshold.unwrap_or(DEFAULT_THRESHOLD);
                if !(threshold > 0.0 && threshold <= 1.0) {
                    return Err(err("threshold", format!("{threshold} is not in (0, 1]")));
                }
                RuleKind::Injection { threshold }
            }
            "words" => {
                only("threshold", r.threshold.is_some(), "injection")?;
                let mut words = r.words.clone().unwrap_or_default();
                if let Some(f) = &r.words_file {
                    let p = match base_dir {
                        Some(d) if f.is_relative() => d.join(f),
                        _ => f.clone(),
                    };
                    let text = std::fs::read_to_string(&p).map_err(|source| {
                        ConfigError::WordsFile {
                            path: name.to_string(),
                            rule: r.id.clone(),
                            file: p.clone(),
                            source,
                        }
                    })?;
                    words.extend(
                        text.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .map(String::from),
                    );
                }
                words.retain(|w| !w.trim().is_empty());
                if words.is_empty() {
                    return Err(err("words", "a words rule needs `words` or `words_file` with at least one word".into()));
                }
                RuleKind::Words { words }
            }
            k => match k.strip_prefix("pii:").and_then(PiiKind::from_name) {
                Some(p) => {
                    only("threshold", r.threshold.is_some(), "injection")?;
                    only("words", r.words.is_some(), "words")?;
                    only("words_file", r.words_file.is_some(), "words")?;
                    RuleKind::Pii(p)
                }
                None => {
                    return Err(err(
                        "kind",
                        format!("unknown kind {k:?} (expected injection, words, pii:cn_id, pii:cn_mobile, pii:bank_card, pii:email or pii:ip)"),
                    ))
                }
            },
        };
        let applies_to = match (&kind, r.applies_to) {
            (RuleKind::Injection { .. }, None) => AppliesTo::Input,
            (RuleKind::Injection { .. }, Some(AppliesTo::Input)) => AppliesTo::Input,
            (RuleKind::Injection { .. }, Some(_)) => {
                return Err(err(
                    "applies_to",
                    "injection rules apply to input only".into(),
                ))
            }
            (_, a) => a.unwrap_or_default(),
        };
        if r.action == Action::Allow {
            return Err(err("action", "expected block, redact or log".into()));
        }
        let replacement = r.replacement.clone().unwrap_or_else(|| match &kind {
            RuleKind::Pii(p) => format!("[{}]", p.name()),
            _ => "***".to_string(),
        });
        rules.push(Rule {
            id: r.id,
            kind,
            action: r.action,
            applies_to,
            roles: r.roles,
            replacement,
        });
    }
    Ok(rules)
}

/// The rules used when no file is given (or the file has no `[[rule]]`): injection blocked on
/// user input; ID, card and mobile numbers redacted both ways; e-mail and IP addresses logged.
/// No word list: what to ban is the deployment's choice.
pub fn default_rules() -> Vec<Rule> {
    let pii = |id: &str, p: PiiKind, action: Action| Rule {
        id: id.into(),
        kind: RuleKind::Pii(p),
        action,
        applies_to: AppliesTo::Both,
        roles: None,
        replacement: format!("[{}]", p.name()),
    };
    vec![
        Rule {
            id: "injection".into(),
            kind: RuleKind::Injection {
                threshold: DEFAULT_THRESHOLD,
            },
            action: Action::Block,
            applies_to: AppliesTo::Input,
            roles: Some(vec!["user".into()]),
            replacement: "***".into(),
        },
        pii("pii-cn-id", PiiKind::CnId, Action::Redact),
        pii("pii-bank-card", PiiKind::BankCard, Action::Redact),
        pii("pii-cn-mobile", PiiKind::CnMobile, Action::Redact),
        pii("pii-email", PiiKind::Email, Action::Log),
        pii("pii-ip", PiiKind::Ip, Action::Log),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let rules = parse(
            r##"
            [[rule]]
            id = "inj"
            kind = "injection"
            action = "block"
            roles = ["user"]
            threshold = 0.7
            [[rule]]
            id = "w"
            kind = "words"
            action = "redact"
            applies_to = "output"
            words = ["炸弹", "bomb"]
            replacement = "#"
            [[rule]]
            id = "id"
            kind = "pii:cn_id"
            action = "log"
            "##,
            "g.toml",
            None,
        )
        .unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].kind, RuleKind::Injection { threshold: 0.7 });
        assert_eq!(rules[0].applies_to, AppliesTo::Input);
        assert_eq!(rules[1].applies_to, AppliesTo::Output);
        assert_eq!(rules[1].replacement, "#");
        assert_eq!(rules[2].kind, RuleKind::Pii(PiiKind::CnId));
        assert_eq!(rules[2].replacement, "[cn_id]");
    }

    #[test]
    fn errors_name_file_rule_and_key() {
        let e = |t: &str| parse(t, "g.toml", None).unwrap_err().to_string();
        let m = e("[[rule]]\nid = \"x\"\nkind = \"pii:passport\"\naction = \"block\"");
        assert!(
            m.contains("g.toml") && m.contains("\"x\"") && m.contains("`kind`"),
            "{m}"
        );
        let m =
            e("[[rule]]\nid = \"x\"\nkind = \"injection\"\naction = \"block\"\nthreshold = 2.0");
        assert!(m.contains("`threshold`"), "{m}");
        let m = e("[[rule]]\nid = \"x\"\nkind = \"words\"\naction = \"block\"");
        assert!(m.contains("`words`"), "{m}");
        let m = e("[[rule]]\nid = \"x\"\nkind = \"words\"\naction = \"nuke\"\nwords=[\"a\"]");
        assert!(m.contains("g.toml") && m.contains("action"), "{m}");
        let m = e(
            "[[rule]]\nid = \"x\"\nkind = \"words\"\naction = \"block\"\nwords=[\"a\"]\ncolour = 1",
        );
        assert!(m.contains("colour"), "{m}");
        let m = e("[[rule]]\nid = \"x\"\nkind = \"injection\"\naction = \"block\"\napplies_to = \"output\"");
        assert!(m.contains("`applies_to`"), "{m}");
        let m = e("[[rule]]\nid = \"x\"\nkind = \"words\"\naction = \"block\"\nwords_file = \"/nonexistent/w.txt\"");
        assert!(
            m.contains("/nonexistent/w.txt") && m.contains("\"x\""),
            "{m}"
        );
    }
}
