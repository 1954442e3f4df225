//! Stop strings, applied to the generated *text* stream.
//!
//! Why in the server and not the backend: stop strings are a property of the
//! text (a stop string can span several tokens, or end inside one), and the
//! server already owns the text stream, SSE and usage counting. The backend
//! only stops on its own end-of-generation tokens and on `max_tokens`; when a
//! stop string matches, the server drops the receiver, which cancels the
//! generation.
//!
//! To never send a client text that later turns out to be the start of a
//! stop string, the matcher holds back the longest suffix of the unsent text
//! that is a proper prefix of some pattern, and releases it as soon as it can
//! no longer start a match. The same matcher also watches for the
//! `<tool_call>` opening tag (see [`crate::toolcall`]).

/// What feeding text to a [`Matcher`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No pattern found; `emit` is safe to send (may be empty).
    Continue { emit: String },
    /// Pattern `index` starts right after `emit`; `rest` is the unsent text
    /// from the start of the match on (pattern included). The caller stops
    /// feeding this matcher.
    Matched {
        emit: String,
        index: usize,
        rest: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<String>,
    pending: String,
}

impl Matcher {
    /// Empty patterns are ignored (they would match everywhere).
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Self {
        Matcher {
            patterns: patterns.into_iter().filter(|p| !p.is_empty()).collect(),
            pending: String::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Feed newly generated text.
    pub fn push(&mut self, text: &str) -> Step {
        if self.patterns.is_empty() {
            return Step::Continue {
                emit: text.to_string(),
            };
        }
        self.pending.push_str(text);
        // Earliest match wins; among matches at the same position the first
        // pattern listed (any choice is valid: they start at the same place).
        let mut best: Option<(usize, usize)> = None;
        for (i, p) in self.patterns.iter().enumerate() {
            if let Some(pos) = self.pending.find(p.as_str()) {
                if !matches!(best, Some((bp, _)) if bp <= pos) {
                    best = Some((pos, i));
                }
            }
        }
        if let Some((pos, index)) = best {
            let rest = self.pending.split_off(pos);
            let emit = std::mem::take(&mut self.pending);
            return Step::Matched { emit, index, rest };
        }
        let hold = self.holdback_len();
        let keep = self.pending.split_off(self.pending.len() - hold);
        let emit = std::mem::replace(&mut self.pending, keep);
        Step::Continue { emit }
    }

    /// The generation ended without a match: release what was held back.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length in bytes of the longest suffix of `pending` (starting on a char
    /// boundary) that is a proper prefix of some pattern.
    fn holdback_len(&self) -> usize {
        let max_pat = self.patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let s = self.pending.as_str();
        // Longest candidates first; a suffix longer than the longest pattern
        // cannot be a proper prefix of one.
        for (start, _) in s.char_indices() {
            let suffix = &s[start..];
            if suffix.len() >= max_pat {
                continue;
            }
            if self
                .patterns
                .iter()
                .any(|p| p.len() > suffix.len() && p.starts_with(suffix))
            {
                return suffix.len();
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(patterns: &[&str], chunks: &[&str]) -> (String, Option<(usize, String)>) {
        let mut m = Matcher::new(patterns.iter().map(|s| s.to_string()));
        let mut out = String::new();
        for c in chunks {
            match m.push(c) {
                Step::Continue { emit } => out.push_str(&emit),
                Step::Matched { emit, index, rest } => {
                    out.push_str(&emit);
                    return (out, Some((index, rest)));
                }
            }
        }
        out.push_str(&m.flush());
        (out, None)
    }

    #[test]
    fn stop_spanning_chunks_is_cut_and_never_leaked() {
        let mut m = Matcher::new(["STOP".to_string()]);
        assert_eq!(
            m.push("hello S"),
            Step::Continue {
                emit: "hello ".into()
            }
        );
        assert_eq!(m.push("T"), Step::Continue { emit: "".into() });
        assert_eq!(
            m.push("OP world"),
            Step::Matched {
                emit: "".into(),
                index: 0,
                rest: "STOP world".into()
            }
        );
    }

    #[test]
    fn false_prefix_is_released() {
        assert_eq!(
            run(&["STOP"], &["a S", "TO", "x b"]),
            ("a STOx b".into(), None)
        );
        // Held-back text is released by flush at the end.
        assert_eq!(run(&["STOP"], &["a ST"]), ("a ST".into(), None));
    }

    #[test]
    fn earliest_of_several_patterns_wins() {
        let (out, m) = run(&["world", "lo w"], &["hello world"]);
        assert_eq!(out, "hel");
        assert_eq!(m, Some((1, "lo world".into())));
    }

    #[test]
    fn multibyte_text_is_split_on_char_boundaries() {
        // "é" is 2 bytes; the pattern starts with it.
        let (out, m) = run(&["éx"], &["aé", "é", "éx!"]);
        assert_eq!(out, "aéé");
        assert_eq!(m, Some((0, "éx!".into())));
    }

    #[test]
    fn no_patterns_passes_through_and_empty_patterns_are_ignored() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), None));
        assert_eq!(run(&[""], &["a", "b"]), ("ab".into(), None));
    }

    #[test]
    fn pattern_at_very_start() {
        let (out, m) = run(&["\n\n"], &["\n", "\nrest"]);
        assert_eq!(out, "");
        assert_eq!(m, Some((0, "\n\nrest".into())));
    }

    proptest::proptest! {
        /// Whatever the chunking, the streamed output equals the whole text
        /// cut at the earliest occurrence of any stop string, as `str::find`
        /// over the full text finds it.
        #[test]
        fn chunking_never_changes_the_result(
            text in "[abé ]{0,40}",
            stops in proptest::collection::vec("[abé]{1,4}", 0..3),
            cuts in proptest::collection::vec(0usize..48, 0..10),
        ) {
            let expected = stops
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
                .map_or(text.as_str(), |pos| &text[..pos]);
            // Split at char boundaries only (tokens carry whole characters).
            let mut bounds: Vec<usize> = cuts
                .iter()
                .map(|&c| c.min(text.len()))
                .filter(|&c| text.is_char_boundary(c))
                .collect();
            bounds.sort();
            bounds.dedup();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for b in bounds.into_iter().chain([text.len()]) {
                chunks.push(&text[prev..b]);
                prev = b;
            }
            let stop_refs: Vec<&str> = stops.iter().map(String::as_str).collect();
            let (out, matched) = run(&stop_refs, &chunks);
            proptest::prop_assert_eq!(out.as_str(), expected);
            proptest::prop_assert_eq!(matched.is_some(), expected.len() < text.len());
        }
    }
}
