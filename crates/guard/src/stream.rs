//! The streaming output filter.
//!
//! Generated text arrives in pieces that split words anywhere (`"bo"`, `"mb"`). The filter keeps
//! the text it has not sent yet and releases a prefix only when no match found later could
//! overlap it. The part held back is, for each output rule:
//! - word lists: the longest tail whose normalized form (trailing whitespace ignored) is a
//!   prefix of a listed word — at most the longest word, in normalized characters, plus the
//!   whitespace/zero-width characters inside it;
//! - PII: the trailing run of characters a match of that kind can contain (digits, separators;
//!   for e-mail, any `[A-Za-z0-9._%+-@]`; for IP, hex digits, `.` and `:`), at most
//!   [`PiiKind::max_len`] + 1 characters (23 for cards, 18 for IDs, 318 for e-mail, 45 for IP);
//! - and always the last two non-whitespace characters: whether a space between two letters
//!   is dropped (`b o m b`) depends on the character after the next one.
//!
//! So harmless text is delayed by at most two characters plus the current alphanumeric run
//! when e-mail detection is on (a word might still become `word@example.com`). Matches that
//! lie entirely in the released part are final; a redaction replaces them, a block ends the
//! stream with the text before the match. The result is the same as filtering the whole text
//! at once ([`Guard::filter_output`]) for any split, which the tests check at every byte.

use crate::normalize::{normalize, Mode};
use crate::{groups, Action, Guard, Hit, Matcher};

/// Already-sent text kept as left context for the next scan, in characters: twice the longest
/// match of any output rule (so a scan sees where a digit or address run that was partly
/// released begins, and rejects it as the one-shot scan does), and at least 16 for word
/// boundaries and spaced-letter normalization: 640 with e-mail detection on, 50 for IDs
/// and cards only.
fn context_chars(guard: &Guard) -> usize {
    guard
        .rules
        .iter()
        .filter(|c| c.rule.applies_to.output())
        .map(|c| match &c.matcher {
            Matcher::Words(w) => 2 * w.max_chars + 4,
            Matcher::Pii(p) => 2 * p.max_len() + 4,
            Matcher::Injection { .. } => 0,
        })
        .max()
        .unwrap_or(0)
        .max(16)
}

/// What to send after a [`OutputFilter::push`] or [`OutputFilter::finish`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Emit {
    /// Text to send to the client now (possibly empty), redactions applied.
    pub text_to_send: String,
    /// Set once: the completion must end with `finish_reason: "content_filter"`. Nothing from
    /// the matched text or after it is ever sent.
    pub blocked: Option<Hit>,
    /// Redact and log hits settled by this call (for the audit log).
    pub fired: Vec<Hit>,
}

/// A streaming filter over one generated text; see the module docs for the hold-back bound.
pub struct OutputFilter {
    guard: Guard,
    /// Original text from `base` on: already-sent context, then pending text.
    buf: String,
    /// Bytes of `buf` already sent (or consumed by a redaction).
    sent: usize,
    /// Offset of `buf` in the whole generated text.
    base: usize,
    blocked: bool,
    context_chars: usize,
}

impl OutputFilter {
    pub(crate) fn new(guard: Guard) -> Self {
        OutputFilter {
            context_chars: context_chars(&guard),
            guard,
            buf: String::new(),
            sent: 0,
            base: 0,
            blocked: false,
        }
    }

    /// Bytes received but not yet sent.
    pub fn held_back(&self) -> usize {
        if self.blocked {
            0
        } else {
            self.buf.len() - self.sent
        }
    }

    /// Feeds the next piece of generated text.
    pub fn push(&mut self, text: &str) -> Emit {
        if self.blocked {
            return Emit::default();
        }
        self.buf.push_str(text);
        self.release(false)
    }

    /// Ends the text: releases everything held back (filtered).
    pub fn finish(&mut self) -> Emit {
        if self.blocked {
            return Emit::default();
        }
        self.release(true)
    }

    fn release(&mut self, last: bool) -> Emit {
        let guard = self.guard.clone();
        let select = |r: &crate::Rule| r.applies_to.output() && r.applies_to_role("assistant");
        let hits: Vec<Hit> = guard
            .scan(&self.buf, select)
            .into_iter()
            .filter(|h| h.span.end > self.sent)
            .collect();
        let mut cut = if last {
            self.buf.len()
        } else {
            self.hold_start(&select)
        };
        let gs = groups(&hits);
        // Never split a match: stop before any group that reaches past the cut.
        for g in &gs {
            if g.span.start < cut && g.span.end > cut {
                cut = g.span.start;
            }
        }
        cut = cut.max(self.sent);
        let mut emit = Emit::default();
        let mut pos = self.sent;
        for g in gs.iter().filter(|g| g.span.end <= cut) {
            let start = g.span.start.max(pos);
            emit.text_to_send.push_str(&self.buf[pos..start]);
            if let Some(b) = &g.block {
                let mut b = b.clone();
                b.span = b.span.start + self.base..b.span.end + self.base;
                emit.blocked = Some(b);
                self.blocked = true;
                self.buf.clear();
                return emit;
            }
            emit.text_to_send
                .push_str(guard.replacement(&g.first.rule_id));
            pos = g.span.end.max(pos);
        }
        emit.text_to_send.push_str(&self.buf[pos..cut]);
        emit.fired = hits
            .into_iter()
            .filter(|h| h.span.end <= cut && h.action < Action::Block)
            .map(|mut h| {
                h.span = h.span.start + self.base..h.span.end + self.base;
                h
            })
            .collect();
        self.sent = cut;
        // Drop old context, keeping `context_chars` characters before the cut.
        let keep_from = self.buf[..cut]
            .char_indices()
            .rev()
            .nth(self.context_chars - 1)
            .map_or(0, |(i, _)| i);
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.sent -= keep_from;
            self.base += keep_from;
        }
        emit
    }

    /// The earliest byte of `buf` (at or after `sent`) that a match found later might cover.
    fn hold_start(&self, select: &impl Fn(&crate::Rule) -> bool) -> usize {
        let s = &self.buf;
        let mut hold = s.len();
        // The last two non-whitespace, non-zero-width characters.
        let mut seen = 0;
        for (i, c) in s.char_indices().rev() {
            if c.is_whitespace() || crate::normalize::is_zero_width(c) {
                continue;
            }
            hold = i;
            seen += 1;
            if seen == 2 {
                break;
            }
        }
        let mut words_n = None;
        let mut pii_n = None;
        for c in self.guard.rules.iter().filter(|c| select(&c.rule)) {
            match &c.matcher {
                Matcher::Words(w) => {
                    let n = words_n.get_or_insert_with(|| normalize(s, Mode::Words));
                    let t = n.text.trim_end_matches(' ');
                    // Longest suffix of `t` (at most max_chars characters) that is a prefix
                    // of a listed word.
                    let starts: Vec<usize> = t
                        .char_indices()
                        .rev()
                        .take(w.max_chars)
                        .map(|(i, _)| i)
                        .collect();
                    if let Some(&i) = starts.iter().rev().find(|&&i| w.prefixes.contains(&t[i..])) {
                        hold = hold.min(n.original_start(i, s.len()));
                    }
                }
                Matcher::Pii(p) => {
                    let n = pii_n.get_or_insert_with(|| normalize(s, Mode::Pii));
                    let mut start = n.text.len();
                    for (k, (i, c)) in n.text.char_indices().rev().enumerate() {
                        if k > p.max_len() || !p.in_run(c) {
                            break;
                        }
                        start = i;
                    }
                    if start < n.text.len() {
                        hold = hold.min(n.original_start(start, s.len()));
                    }
                }
                Matcher::Injection { .. } => {}
            }
        }
        hold
    }
}
