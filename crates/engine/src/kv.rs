//! The paged KV cache.
//!
//! Memory is carved into fixed-size blocks of [`BLOCK_SIZE`] positions, each holding those
//! positions' K and V rows for every layer (the vLLM design, "PagedAttention", SOSP 2023).
//! A sequence owns a block table: position p lives in block `table[p / BLOCK_SIZE]`, slot
//! `p % BLOCK_SIZE`. [`KvStore`] holds the data; [`BlockManager`] does the bookkeeping:
//! - allocation from a fixed budget, so memory is bounded however many sequences run;
//! - **prefix caching**: a full block is keyed by a hash of every token up to its end (a chain:
//!   the hash of block b covers block b-1's hash and block b's tokens), shared by reference
//!   count, and kept after its sequences end until the space is needed, least recently used
//!   first. A new prompt whose leading blocks hash the same reuses them instead of recomputing.
//!
//! Rows are stored as f16 (the default, as llama.cpp) or as ggml Q8_0 blocks (32 values with
//! one f16 scale, 34 bytes: about 53% of f16), see [`KvType`].
//!
//! Sliding-window layers page like the others (every position is kept); their queries only
//! read the last `window` positions. This trades the ring buffer's memory saving for one cache
//! layout that prefix caching and preemption can share.

use half::f16;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// The largest number of tokens one forward pass processes at once (longer prompts are split).
pub const MAX_UBATCH: usize = 512;

/// Positions per block (vLLM's default block size).
pub const BLOCK_SIZE: usize = 16;

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

impl KvType {
    /// Bytes of a row of `n` values (`n` a multiple of 32 for Q8_0).
    pub fn row_bytes(self, n: usize) -> usize {
        match self {
            KvType::F16 => 2 * n,
            KvType::Q8_0 => n / 32 * 34,
        }
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
    /// First position a query at `pos` may attend to.
    pub fn first_visible(&self, pos: usize) -> usize {
        match self.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        }
    }
}

/// One layer's K and V storage for all blocks. Kept as plain integers so the allocation is
/// zeroed by the allocator (calloc / fresh mmap pages): memory is only touched, and counted in
/// RSS, when a block is first written.
struct LayerStore {
    spec: LayerKvSpec,
    /// Bytes per position (one row of all KV heads).
    row_bytes: usize,
    k: Vec<u16>,
    v: Vec<u16>,
}

/// K/V data of every block, for every layer.
pub struct KvStore {
    pub kv_type: KvType,
    pub n_blocks: usize,
    layers: Vec<LayerStore>,
}

fn as_bytes(v: &[u16]) -> &[u8] {
    // SAFETY: u16 has no padding and every byte pattern is a valid u8; alignment 1 ≤ 2.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 2) }
}

fn as_bytes_mut(v: &mut [u16]) -> &mut [u8] {
    // SAFETY: as above; the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 2) }
}

fn as_f16(b: &[u8]) -> &[f16] {
    debug_assert!(b.as_ptr() as usize % 2 == 0 && b.len() % 2 == 0);
    // SAFETY: f16 is repr(transparent) over u16; the bytes come from a Vec<u16> at even offsets.
    unsafe { std::slice::from_raw_parts(b.as_ptr() as *const f16, b.len() / 2) }
}

fn as_f16_mut(b: &mut [u8]) -> &mut [f16] {
    debug_assert!(b.as_ptr() as usize % 2 == 0 && b.len() % 2 == 0);
    // SAFETY: as above; the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut f16, b.len() / 2) }
}

/// Quantize `x` to ggml Q8_0 blocks (ggml-common.h `block_q8_0`: f16 d, then 32 × i8) with
/// d = amax / 127, as ggml's reference quantizer does.
fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(34)) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        ob[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        for (o, &v) in ob[2..].iter_mut().zip(xb) {
            *o = (v * id).round() as i8 as u8;
        }
    }
}

impl KvStore {
    /// Bytes one block takes across all layers.
    pub fn block_bytes(specs: &[LayerKvSpec], kv_type: KvType) -> usize {
        specs
            .iter()
            .map(|s| 2 * BLOCK_SIZE * kv_type.row_bytes(s.row()))
            .sum()
    }

    pub fn new(specs: &[LayerKvSpec], kv_type: KvType, n_blocks: usize) -> Self {
        let layers = specs
            .iter()
            .map(|s| {
                assert!(
                    kv_type != KvType::Q8_0 || s.head_dim % 32 == 0,
                    "Q8_0 KV cache needs a head dimension that is a multiple of 32, not {}",
                    s.head_dim
                );
                let row_bytes = kv_type.row_bytes(s.row());
                // Rows of 34-byte Q8_0 blocks: keep every row at an even offset.
                let row_bytes = row_bytes + row_bytes % 2;
                let words = n_blocks * BLOCK_SIZE * row_bytes / 2;
                LayerStore {
                    spec: s.clone(),
                    row_bytes,
                    k: vec![0u16; words],
                    v: vec![0u16; words],
                }
            })
            .collect();
        KvStore {
            kv_type,
            n_blocks,
            layers,
        }
    }

    pub fn spec(&self, layer: usize) -> &LayerKvSpec {
        &self.layers[layer].spec
    }

    fn offset(&self, layer: usize, table: &[u32], pos: usize) -> usize {
        let slot = table[pos / BLOCK_SIZE] as usize * BLOCK_SIZE + pos % BLOCK_SIZE;
        slot * self.layers[layer].row_bytes
    }

    /// Store position `pos`'s K and V rows (all KV heads) of `layer`.
    pub fn write(&mut self, layer: usize, table: &[u32], pos: usize, k: &[f32], v: &[f32]) {
        let off = self.offset(layer, table, pos);
        let t = self.kv_type;
        let l = &mut self.layers[layer];
        let n = t.row_bytes(l.spec.row());
        let (kb, vb) = (as_bytes_mut(&mut l.k), as_bytes_mut(&mut l.v));
        match t {
            KvType::F16 => {
                hearth_kernels::f32_to_f16(k, as_f16_mut(&mut kb[off..off + n]));
                hearth_kernels::f32_to_f16(v, as_f16_mut(&mut vb[off..off + n]));
            }
            KvType::Q8_0 => {
                quantize_q8_0(k, &mut kb[off..off + n]);
                quantize_q8_0(v, &mut vb[off..off + n]);
            }
        }
    }

    fn head<'s>(
        &'s self,
        data: &'s [u16],
        layer: usize,
        table: &[u32],
        pos: usize,
        g: usize,
    ) -> &'s [u8] {
        let hd = self.layers[layer].spec.head_dim;
        let hb = self.kv_type.row_bytes(hd);
        let off = self.offset(layer, table, pos) + g * hb;
        &as_bytes(data)[off..off + hb]
    }

    /// K(pos, kv head g) widened to f32 into `out` (head_dim values).
    #[inline]
    pub fn k_f32(&self, layer: usize, table: &[u32], pos: usize, g: usize, out: &mut [f32]) {
        let row = self.head(&self.layers[layer].k, layer, table, pos, g);
        self.widen(row, out);
    }

    /// V(pos, kv head g) widened to f32 into `out` (head_dim values).
    #[inline]
    pub fn v_f32(&self, layer: usize, table: &[u32], pos: usize, g: usize, out: &mut [f32]) {
        let row = self.head(&self.layers[layer].v, layer, table, pos, g);
        self.widen(row, out);
    }

    fn widen(&self, row: &[u8], out: &mut [f32]) {
        match self.kv_type {
            KvType::F16 => hearth_kernels::f16_to_f32(as_f16(row), out),
            KvType::Q8_0 => {
                hearth_kernels::dequantize_row(hearth_formats::GgmlType::Q8_0, row, out)
            }
        }
    }
}

/// The KV cache as one forward pass sees it: the store, and the block table of each sequence
/// that `Batch::seq` indexes.
pub struct KvBatch<'a> {
    pub store: &'a mut KvStore,
    pub tables: &'a [&'a [u32]],
}

/// Hash of a full block given the previous block's hash (0 for the first): the key of the
/// prefix cache. 64-bit SipHash with fixed keys; a collision needs ~2^32 cached blocks.
pub fn block_hash(prev: u64, tokens: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    prev.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// Hashes of the full blocks of `tokens` (a chain, see [`block_hash`]).
pub fn block_hashes(tokens: &[u32], n_blocks: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n_blocks);
    let mut prev = 0;
    for b in tokens.chunks_exact(BLOCK_SIZE).take(n_blocks) {
        prev = block_hash(prev, b);
        out.push(prev);
    }
    out
}

/// Block allocation, reference counts and the prefix cache.
pub struct BlockManager {
    n_blocks: usize,
    refcount: Vec<u32>,
    /// The prefix-cache key a block is registered under.
    hash_of: Vec<Option<u64>>,
    /// Blocks holding nothing worth keeping.
    free: Vec<u32>,
    /// Prefix cache: key → block.
    cached: HashMap<u64, u32>,
    /// Unreferenced cached blocks, by the time they were released (oldest evicted first).
    evictable: BTreeMap<u64, u32>,
    released_at: Vec<u64>,
    clock: u64,
    /// Prompt tokens looked up in the prefix cache, and how many were found.
    pub query_tokens: u64,
    pub hit_tokens: u64,
}

impl BlockManager {
    pub fn new(n_blocks: usize) -> Self {
        BlockManager {
            n_blocks,
            refcount: vec![0; n_blocks],
            hash_of: vec![None; n_blocks],
            // Pop from the end: hand out low block ids first.
            free: (0..n_blocks as u32).rev().collect(),
            cached: HashMap::new(),
            evictable: BTreeMap::new(),
            released_at: vec![0; n_blocks],
            clock: 0,
            query_tokens: 0,
            hit_tokens: 0,
        }
    }

    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Blocks that can be handed out now (free or evictable).
    pub fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Blocks referenced by at least one sequence.
    pub fn used(&self) -> usize {
        self.n_blocks - self.available()
    }

    /// Blocks kept only for the prefix cache.
    pub fn cached_idle(&self) -> usize {
        self.evictable.len()
    }

    /// A block for one new reference: a free one, else the least recently used cached one.
    pub fn allocate(&mut self) -> Option<u32> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let (&t, &b) = self.evictable.iter().next()?;
                self.evictable.remove(&t);
                if let Some(h) = self.hash_of[b as usize].take() {
                    self.cached.remove(&h);
                }
                b
            }
        };
        debug_assert_eq!(self.refcount[b as usize], 0);
        self.refcount[b as usize] = 1;
        Some(b)
    }

    /// Drop one reference to each block of `table`. Blocks nobody references go back to the
    /// free list, or, when they are in the prefix cache, become evictable. The table is walked
    /// from its end so a sequence's tail blocks are evicted before its head: a later prompt can
    /// only reuse a block if it also reuses every block before it.
    pub fn release(&mut self, table: &[u32]) {
        for &b in table.iter().rev() {
            let i = b as usize;
            debug_assert!(self.refcount[i] > 0, "block {b} released twice");
            self.refcount[i] -= 1;
            if self.refcount[i] == 0 {
                if self.hash_of[i].is_some() {
                    self.clock += 1;
                    self.released_at[i] = self.clock;
                    self.evictable.insert(self.clock, b);
                } else {
                    self.free.push(b);
                }
            }
        }
    }

    /// Take a reference to the cached blocks that start `hashes`, in order, stopping at the first
    /// miss. Returns them; their positions need no recomputation.
    pub fn lookup(&mut self, hashes: &[u64]) -> Vec<u32> {
        let mut out = Vec::new();
        for h in hashes {
            let Some(&b) = self.cached.get(h) else { break };
            let i = b as usize;
            if self.refcount[i] == 0 {
                self.evictable.remove(&self.released_at[i]);
            }
            self.refcount[i] += 1;
            out.push(b);
        }
        out
    }

    /// Record the outcome of a prefix lookup for the hit-ratio metric.
    pub fn count_lookup(&mut self, query_tokens: usize, hit_tokens: usize) {
        self.query_tokens += query_tokens as u64;
        self.hit_tokens += hit_tokens as u64;
    }

    /// Make full block `b` findable under `hash`. If another block already holds the same
    /// content (two sequences computed the same prefix at once), the first one stays the cached
    /// copy and `b` stays private.
    pub fn register(&mut self, b: u32, hash: u64) {
        if self.hash_of[b as usize].is_some() || self.cached.contains_key(&hash) {
            return;
        }
        self.cached.insert(hash, b);
        self.hash_of[b as usize] = Some(hash);
    }

    /// Forget the whole prefix cache (blocks in use stay allocated).
    pub fn clear_cache(&mut self) {
        for (_, b) in std::mem::take(&mut self.evictable) {
            self.free.push(b);
        }
        for h in self.hash_of.iter_mut() {
            *h = None;
        }
        self.cached.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Vec<LayerKvSpec> {
        vec![LayerKvSpec {
            n_kv_head: 2,
            head_dim: 32,
            window: None,
        }]
    }

    #[test]
    fn rows_land_in_their_blocks() {
        for t in [KvType::F16, KvType::Q8_0] {
            let mut s = KvStore::new(&spec(), t, 4);
            let table = [3u32, 1];
            for pos in 0..2 * BLOCK_SIZE {
                let k: Vec<f32> = (0..64).map(|i| (pos * 64 + i) as f32 / 100.0).collect();
                let v: Vec<f32> = k.iter().map(|x| -x).collect();
                s.write(0, &table, pos, &k, &v);
            }
            for pos in 0..2 * BLOCK_SIZE {
                for g in 0..2 {
                    let want: Vec<f32> = (0..32)
                        .map(|i| (pos * 64 + g * 32 + i) as f32 / 100.0)
                        .collect();
                    let mut row = vec![0f32; 32];
                    s.k_f32(0, &table, pos, g, &mut row);
                    let tol = |w: f32| w.abs() * if t == KvType::F16 { 1e-3 } else { 1e-2 } + 1e-3;
                    for (got, w) in row.iter().zip(&want) {
                        assert!((got - w).abs() <= tol(*w), "{t}: {got} vs {w}");
                    }
                    s.v_f32(0, &table, pos, g, &mut row);
                    for (got, w) in row.iter().zip(&want) {
                        assert!((got + w).abs() <= tol(*w) + 1e-2, "{t}: V {got} vs {}", -w);
                    }
                }
            }
        }
    }

    #[test]
    fn q8_0_matches_ggml_layout() {
        // 34-byte blocks, f16 scale first: the gguf Python package's Q8_0 dequantizer reads
        // the same layout, checked here through the kernels crate's Q8_0 dequantizer.
        let x: Vec<f32> = (0..64).map(|i| ((i * 37) % 19) as f32 - 9.0).collect();
        let mut b = vec![0u8; 68];
        quantize_q8_0(&x, &mut b);
        let mut y = vec![0f32; 64];
        hearth_kernels::dequantize_row(hearth_formats::GgmlType::Q8_0, &b, &mut y);
        for (a, c) in x.iter().zip(&y) {
            assert!((a - c).abs() <= 9.0 / 127.0, "{a} vs {c}");
        }
    }

    #[test]
    fn prefix_cache_reuses_and_evicts_lru() {
        let mut m = BlockManager::new(4);
        let toks: Vec<u32> = (0..40).collect();
        let hs = block_hashes(&toks, 2);
        let a: Vec<u32> = (0..3).map(|_| m.allocate().unwrap()).collect();
        m.register(a[0], hs[0]);
        m.register(a[1], hs[1]);
        assert_eq!(m.available(), 1);
        m.release(&a);
        // The unhashed tail block is free, the two hashed ones are evictable.
        assert_eq!(m.available(), 4);
        assert_eq!(m.cached_idle(), 2);
        // Same prefix: both blocks come back.
        let hit = m.lookup(&hs);
        assert_eq!(hit, vec![a[0], a[1]]);
        assert_eq!(m.cached_idle(), 0);
        m.release(&hit);
        // A different first block misses at once, even if the second matched by accident.
        let other = block_hashes(&(100..140).collect::<Vec<u32>>(), 2);
        assert!(m.lookup(&[other[0], hs[1]]).is_empty());
        // Allocating everything evicts the cached blocks, tail (block 1) before head.
        let x = m.allocate().unwrap();
        let y = m.allocate().unwrap();
        assert_eq!(m.cached_idle(), 2);
        let z = m.allocate().unwrap();
        assert_eq!(z, a[1], "the tail block is evicted first");
        assert_eq!(m.lookup(&hs), vec![a[0]]);
        let w = m.allocate();
        assert!(w.is_none(), "all four blocks are referenced");
        let _ = (x, y);
    }

    #[test]
    fn duplicate_content_keeps_the_first_copy() {
        let mut m = BlockManager::new(2);
        let h = block_hashes(&(0..16).collect::<Vec<u32>>(), 1)[0];
        let a = m.allocate().unwrap();
        let b = m.allocate().unwrap();
        m.register(a, h);
        m.register(b, h);
        m.release(&[a, b]);
        assert_eq!(m.cached_idle(), 1);
        assert_eq!(m.lookup(&[h]), vec![a]);
    }
}
