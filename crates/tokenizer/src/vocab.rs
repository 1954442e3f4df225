//! Compact vocabulary storage.
//!
//! A 262,144-token vocabulary (Gemma 3) kept as `Vec<String>` plus a `HashMap<String, u32>`
//! of the same texts plus one `Vec<u8>` piece per token is about 1M small heap allocations and
//! 57 MiB, resident next to the mapped weights for as long as the model is loaded. Here every
//! text lives in one arena, the reverse index stores only ids (hashing the arena's text), and
//! the pieces share a second arena: about 12 MiB for the same vocabulary.

use crate::FxHasher;
use hashbrown::HashTable;
use std::hash::{Hash, Hasher};

/// Byte strings in one buffer; item i is `bytes[ends[i-1]..ends[i]]`.
#[derive(Default, Clone, Debug)]
pub(crate) struct Arena {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Arena {
    pub(crate) fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        let end = u32::try_from(self.bytes.len()).expect("vocabulary arena over 4 GiB");
        self.ends.push(end);
    }
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }
    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.bytes[start..end])
    }
    fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

fn hash(s: &str) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

/// Token texts by id, and ids by text.
#[derive(Default, Clone, Debug)]
pub(crate) struct Vocab {
    texts: Arena,
    index: HashTable<u32>,
}

impl Vocab {
    pub(crate) fn new<S: AsRef<str>>(tokens: impl IntoIterator<Item = S>) -> Self {
        let mut v = Vocab::default();
        for t in tokens {
            v.texts.push(t.as_ref().as_bytes());
        }
        v.texts.shrink();
        let Vocab { texts, index } = &mut v;
        let texts: &Arena = texts;
        let text_of = |j: u32| str_of(texts.get(j as usize).unwrap_or_default());
        index.reserve(texts.len(), |_| 0);
        for i in 0..texts.len() as u32 {
            let t = text_of(i);
            let h = hash(t);
            // Duplicate texts: the later id wins, as in llama.cpp's map assignment.
            match index.find_mut(h, |&j| text_of(j) == t) {
                Some(slot) => *slot = i,
                None => {
                    index.insert_unique(h, i, |&j| hash(text_of(j)));
                }
            }
        }
        v
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        self.texts.get(i).map(str_of)
    }

    /// Id of a text, exactly as stored.
    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.index
            .find(hash(text), |&j| {
                self.texts.get(j as usize) == Some(text.as_bytes())
            })
            .copied()
    }

    pub(crate) fn contains(&self, text: &str) -> bool {
        self.id(text).is_some()
    }
}

/// Arena items were pushed from `&str`s.
fn str_of(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

impl std::ops::Index<usize> for Vocab {
    type Output = str;
    fn index(&self, i: usize) -> &str {
        self.get(i).expect("token id within the vocabulary")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_both_ways_and_later_duplicate_wins() {
        let v = Vocab::new(["a", "bc", "", "a", "é"]);
        assert_eq!(v.len(), 5);
        assert_eq!(&v[1], "bc");
        assert_eq!(&v[2], "");
        assert_eq!(v.get(5), None);
        assert_eq!(v.id("a"), Some(3));
        assert_eq!(v.id("bc"), Some(1));
        assert_eq!(v.id("é"), Some(4));
        assert_eq!(v.id(""), Some(2));
        assert_eq!(v.id("b"), None);
        let mut p = Arena::default();
        p.push(b"xy");
        p.push(b"");
        assert_eq!(p.get(0), Some(&b"xy"[..]));
        assert_eq!(p.get(1), Some(&b""[..]));
        assert_eq!(p.get(2), None);
    }
}
