//! SentencePiece tokenization with byte fallback (llama.cpp `llm_tokenizer_spm`).

use super::*;

impl Tokenizer {
    pub(crate) fn byte_token_spm(&self, b: u8) -> Option<u32> {
        let hex = format!("<0x{b:02X}>");
        if let Some(id) = self.tokens.id(&hex) {
            return Some(id);
        }
        if b < 0x80 {
            if let Some(id) = self.tokens.id((b as char).encode_utf8(&mut [0; 4])) {
                return Some(id);
            }
        }
        // llama.cpp aborts here (map::at); we degrade to the unknown token.
        self.unk
    }

    /// SentencePiece merge (llama.cpp `llm_tokenizer_spm_session::tokenize`): start from
    /// single code points and repeatedly merge the adjacent pair whose concatenation is
    /// the highest-scoring vocabulary entry (leftmost on ties); pieces that are not in
    /// the vocabulary fall back to `<0xXX>` byte tokens.
    pub(crate) fn spm_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        #[derive(Clone, Copy)]
        struct Sym {
            start: usize,
            n: usize,
            prev: isize,
            next: isize,
        }
        struct Bigram {
            left: usize,
            right: usize,
            score: f32,
            size: usize,
        }
        impl PartialEq for Bigram {
            fn eq(&self, o: &Self) -> bool {
                self.cmp(o) == std::cmp::Ordering::Equal
            }
        }
        impl Eq for Bigram {}
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Bigram {
            // Max-heap: higher score first, then lower left index.
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.score
                    .total_cmp(&o.score)
                    .then_with(|| o.left.cmp(&self.left))
            }
        }
        if text.is_empty() {
            return;
        }
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            let n = c.len_utf8();
            syms.push(Sym {
                start,
                n,
                prev: i as isize - 1,
                next: if start + n == text.len() {
                    -1
                } else {
                    i as isize + 1
                },
            });
        }
        let mut heap = BinaryHeap::with_capacity(syms.len());
        let try_add = |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, l: isize, r: isize| {
            if l < 0 || r < 0 {
                return;
            }
            let (l, r) = (l as usize, r as usize);
            let s = syms[l].start;
            let size = syms[l].n + syms[r].n;
            if let Some(id) = self.tokens.id(&text[s..s + size]) {
                heap.push(Bigram {
                    left: l,
                    right: r,
                    score: self.scores[id as usize],
                    size,
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&syms, &mut heap, i as isize - 1, i as isize);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
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
            try_add(&syms, &mut heap, p, b.left as isize);
            try_add(&syms, &mut heap, b.left as isize, nx);
        }
        let mut i = 0isize;
        while i != -1 {
            let s = syms[i as usize];
            let piece = &text[s.start..s.start + s.n];
            if let Some(id) = self.tokens.id(piece) {
                out.push(id);
            } else {
                for &b in piece.as_bytes() {
                    out.extend(self.byte_token_spm(b));
                }
            }
            i = s.next;
        }
    }
}
