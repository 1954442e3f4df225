//! Per-sequence KV cache, stored in f16.
//!
//! Each layer keeps K and V rows of `n_kv_head * head_dim` values per position. Full-attention
//! layers keep every position up to the context length; sliding-window layers keep only the
//! last positions in a ring of `window + MAX_UBATCH` slots (position p lives in slot p % ring), so
//! a Gemma 3 layer with a 512-token window never holds more than 1,024 rows however long the
//! conversation. The slack of MAX_UBATCH slots lets a whole micro-batch be written before its
//! queries attend: writing positions a..a+C overwrites positions up to a+C-ring, all older than
//! the oldest key (a+1-window) the first query of the batch still needs, when C <= MAX_UBATCH.

use half::f16;

/// The largest number of tokens one forward pass processes at once (longer prompts are split).
pub const MAX_UBATCH: usize = 512;

/// How K and V rows are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// IEEE half precision, as llama.cpp's default cache type.
    #[default]
    F16,
    /// ggml Q8_0 blocks (32 values, one f16 scale): about half the memory of F16.
    Q8_0,
}

impl std::str::FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            _ => Err(format!(
                "unknown KV cache type '{s}' (expected f16 or q8_0)"
            )),
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerKvSpec {
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Sliding window: a query at position p sees keys at positions > p - window.
    pub window: Option<usize>,
}

impl LayerKvSpec {
    pub fn row(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

pub struct LayerKv {
    pub spec: LayerKvSpec,
    k: Vec<f16>,
    v: Vec<f16>,
    /// Rows allocated.
    cap: usize,
}

impl LayerKv {
    fn ring(&self) -> Option<usize> {
        self.spec.window.map(|w| w + MAX_UBATCH)
    }
    fn slot(&self, pos: usize) -> usize {
        match self.ring() {
            Some(r) => pos % r,
            None => pos,
        }
    }
    fn ensure(&mut self, n_pos: usize, max_ctx: usize) {
        let need = match self.ring() {
            Some(r) => n_pos.min(r),
            None => n_pos,
        };
        if need > self.cap {
            // Grow geometrically (bounded by what the layer can ever need) so a long generation
            // reallocates O(log n) times, not per token.
            let limit = self.ring().map_or(max_ctx, |r| r.min(max_ctx)).max(need);
            let cap = (need.max(self.cap * 2)).min(limit).max(need);
            let row = self.spec.row();
            self.k.resize(cap * row, f16::ZERO);
            self.v.resize(cap * row, f16::ZERO);
            self.cap = cap;
        }
    }
    pub fn k(&self, pos: usize) -> &[f16] {
        let r = self.spec.row();
        let s = self.slot(pos);
        &self.k[s * r..(s + 1) * r]
    }
    pub fn v(&self, pos: usize) -> &[f16] {
        let r = self.spec.row();
        let s = self.slot(pos);
        &self.v[s * r..(s + 1) * r]
    }
    pub fn write(&mut self, pos: usize, k: &[f32], v: &[f32]) {
        let r = self.spec.row();
        let s = self.slot(pos);
        hearth_kernels::f32_to_f16(k, &mut self.k[s * r..(s + 1) * r]);
        hearth_kernels::f32_to_f16(v, &mut self.v[s * r..(s + 1) * r]);
    }
    /// First position a query at `pos` may attend to.
    pub fn first_visible(&self, pos: usize) -> usize {
        match self.spec.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        }
    }
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 2
    }
}

/// The cache of one sequence. `len` positions (0..len) have been written.
pub struct SeqKv {
    pub layers: Vec<LayerKv>,
    pub len: usize,
    pub max_ctx: usize,
}

impl SeqKv {
    pub fn new(specs: &[LayerKvSpec], max_ctx: usize) -> Self {
        SeqKv {
            layers: specs
                .iter()
                .map(|s| LayerKv {
                    spec: s.clone(),
                    k: Vec::new(),
                    v: Vec::new(),
                    cap: 0,
                })
                .collect(),
            len: 0,
            max_ctx,
        }
    }
    /// Make room for positions up to `n_pos` (exclusive) in every layer.
    pub fn reserve(&mut self, n_pos: usize) {
        for l in &mut self.layers {
            l.ensure(n_pos, self.max_ctx);
        }
    }
    /// Forget everything from `pos` on (for prefix reuse when a new prompt shares a prefix).
    /// Sliding-window layers can only keep a prefix whose last `window` rows are still in the ring.
    pub fn truncate(&mut self, pos: usize) {
        self.len = self.len.min(pos);
    }
    /// Whether the cache can resume writing at `pos` (keeping 0..pos) without recomputation.
    /// A position q written after `pos` overwrote ring slot q % ring, which held q - ring; a
    /// query at `pos` needs keys from pos + 1 - window on, so q < pos + 1 + MAX_UBATCH is harmless.
    pub fn can_resume_at(&self, pos: usize) -> bool {
        pos <= self.len
            && (self.len <= pos + 1 + MAX_UBATCH
                || self.layers.iter().all(|l| l.spec.window.is_none()))
    }
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerKv::bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_only_the_window() {
        let spec = LayerKvSpec {
            n_kv_head: 1,
            head_dim: 2,
            window: Some(4),
        };
        let mut kv = SeqKv::new(&[spec], 10_000);
        let n = 3 * (4 + MAX_UBATCH);
        kv.reserve(n);
        assert_eq!(kv.layers[0].cap, 4 + MAX_UBATCH);
        for p in 0..n {
            kv.layers[0].write(p, &[p as f32, 0.0], &[0.0, p as f32]);
        }
        assert_eq!(
            kv.layers[0].k(n - 1)[0].to_f32(),
            half::f16::from_f32((n - 1) as f32).to_f32()
        );
        assert_eq!(
            kv.layers[0].k(n - 4)[0].to_f32(),
            half::f16::from_f32((n - 4) as f32).to_f32()
        );
        assert_eq!(kv.layers[0].first_visible(9), 6);
        assert_eq!(kv.layers[0].first_visible(2), 0);
    }
}
