//! Byte-level BPE tokenization (llama.cpp `llm_tokenizer_bpe`).

use super::*;

impl Tokenizer {
    /// BPE (llama.cpp `llm_tokenizer_bpe_session::tokenize`): pre-split into words, then
    /// within each word repeatedly apply the lowest-ranked merge (leftmost on ties).
    pub(crate) fn bpe_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        #[derive(Clone, Copy)]
        struct Sym {
            start: usize,
            n: usize,
            prev: isize,
            next: isize,
        }
        #[derive(PartialEq, Eq)]
        struct Bigram {
            rank: u32,
            left: usize,
            right: usize,
            size: usize,
        }
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Bigram {
            // Max-heap: lower rank first, then lower left index.
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                o.rank.cmp(&self.rank).then_with(|| o.left.cmp(&self.left))
            }
        }
        let Some(pretok) = &self.pretok else { return };
        let words = pretok.split(text);
        let mut key = String::new();
        let mut syms: Vec<Sym> = Vec::new();
        let mut heap = BinaryHeap::new();
        for word in &words {
            syms.clear();
            heap.clear();
            let whole = (self.ignore_merges || (self.gemma4 && word.bytes().all(|b| b == b'\n')))
                && self.tokens.contains(word.as_str());
            if whole {
                syms.push(Sym {
                    start: 0,
                    n: word.len(),
                    prev: -1,
                    next: -1,
                });
            } else {
                for (i, (start, c)) in word.char_indices().enumerate() {
                    let n = c.len_utf8();
                    syms.push(Sym {
                        start,
                        n,
                        prev: i as isize - 1,
                        next: if start + n == word.len() {
                            -1
                        } else {
                            i as isize + 1
                        },
                    });
                }
            }
            let mut add = |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, l: isize, r: isize| {
                if l < 0 || r < 0 {
                    return;
                }
                let (ls, rs) = (syms[l as usize], syms[r as usize]);
                key.clear();
                key.push_str(&word[ls.start..ls.start + ls.n]);
                key.push(' ');
                key.push_str(&word[rs.start..rs.start + rs.n]);
                if let Some(&rank) = self.merges.get(&key) {
                    heap.push(Bigram {
                        rank,
                        left: l as usize,
                        right: r as usize,
                        size: ls.n + rs.n,
                    });
                }
            };
            for i in 1..syms.len() {
                add(&syms, &mut heap, i as isize - 1, i as isize);
            }
            while let Some(b) = heap.pop() {
                let (l, r) = (syms[b.left], syms[b.right]);
                // Stale entry: one side was merged away or grew (the texts are contiguous
                // from fixed starts, so comparing lengths equals comparing strings).
                if l.n == 0 || r.n == 0 || l.n + r.n != b.size {
                    continue;
                }
                syms[b.left].n += r.n;
                syms[b.right].n = 0;
                syms[b.left].next = r.next;
                if r.next >= 0 {
                    syms[r.next as usize].prev = b.left as isize;
                }
                let (p, nx) = (syms[b.left].prev, syms[b.left].next);
                add(&syms, &mut heap, p, b.left as isize);
                add(&syms, &mut heap, b.left as isize, nx);
            }
            for s in syms.iter().filter(|s| s.n > 0) {
                let piece = &word[s.start..s.start + s.n];
                if let Some(id) = self.tokens.id(piece) {
                    out.push(id);
                    continue;
                }
                for &b in piece.as_bytes() {
                    let id = if pretok.byte_encode {
                        // llama.cpp looks up the single *byte* of the encoded text, which
                        // only exists as a token for ASCII.
                        if b < 0x80 {
                            self.tokens.id((b as char).encode_utf8(&mut [0; 4]))
                        } else {
                            None
                        }
                    } else {
                        self.tokens.id(&format!("<0x{b:02X}>"))
                    };
                    out.extend(id);
                }
            }
        }
    }
}
