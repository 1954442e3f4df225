//! A ragged batch: tokens from one or more sequences, each at its own position.

#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub tokens: Vec<u32>,
    /// Position of each token in its sequence.
    pub pos: Vec<usize>,
    /// Index of each token's sequence in the KV-cache slice passed to `forward`.
    pub seq: Vec<usize>,
    /// Whether logits are wanted for each token.
    pub logits: Vec<bool>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pos.clear();
        self.seq.clear();
        self.logits.clear();
    }
    pub fn push(&mut self, token: u32, pos: usize, seq: usize, logits: bool) {
        self.tokens.push(token);
        self.pos.push(pos);
        self.seq.push(seq);
        self.logits.push(logits);
    }
    /// One sequence's tokens starting at `pos0`, logits for the last token only (or all).
    pub fn single(tokens: &[u32], pos0: usize, all_logits: bool) -> Self {
        let mut b = Batch::default();
        for (i, &t) in tokens.iter().enumerate() {
            b.push(t, pos0 + i, 0, all_logits || i + 1 == tokens.len());
        }
        b
    }
    pub fn n_logits(&self) -> usize {
        self.logits.iter().filter(|&&l| l).count()
    }
}
