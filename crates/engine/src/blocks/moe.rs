//! Mixture-of-experts feed-forward (Shazeer et al. 2017; top-k routing as in Mixtral, Qwen3-MoE,
//! gpt-oss): a router picks `n_used` of `n_expert` GLU experts per token and the block output is
//! the routing-weighted sum of the chosen experts' outputs.
//!
//! Experts live in 3-D GGUF tensors `blk.N.ffn_{gate,up,down}_exps.weight` (one expert per
//! slice, viewed without copying by `WeightLoader::experts`). A step groups its tokens by expert,
//! so each chosen expert's weights are read once per step however many tokens chose it, and
//! computes every active expert in one pool job per projection: gate+up (with the activation
//! fused per thread, as in `ffn.rs`), then down. Per layer that is a handful of
//! synchronizations, not one per expert.
//!
//! The options cover the variants in use so that other architectures reuse the block:
//! router bias and expert biases (gpt-oss), softmax over all experts with or without
//! renormalizing the chosen ones (Qwen3-MoE / Mixtral vs Qwen2-MoE) or softmax over the chosen
//! logits only (gpt-oss), a scale on the routing weights, and the expert activation (SwiGLU,
//! GeGLU, or gpt-oss's clamped SwiGLU).

use crate::error::EngineError;
use crate::linear::{matmul, QActs};
use crate::ops::GluAct;
use crate::pool::{Pool, SyncPtr};
use crate::weights::{Weight, WeightLoader};
use hearth_kernels::{act_format, act_row_bytes, quantize_act, ActFormat};
use std::cell::RefCell;

/// How router logits become routing weights (llama.cpp's `expert_gating_func` and
/// `expert_weights_norm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Softmax over all experts, the `n_used` most probable chosen; with `norm_topk` their
    /// probabilities are divided by their sum (Qwen3-MoE, Mixtral), else used as is (Qwen2-MoE).
    SoftmaxAll { norm_topk: bool },
    /// The `n_used` largest logits chosen, softmax over those alone (gpt-oss; llama.cpp's
    /// `SOFTMAX_WEIGHT` gating).
    SoftmaxChosen,
}

/// The gated activation inside each expert: out = act(gate, up).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpertAct {
    /// act(gate) · up, as the dense FFN.
    Glu(GluAct),
    /// gpt-oss's clamped SwiGLU (ggml `swiglu_oai`): g = min(gate, limit),
    /// u = clamp(up, −limit, limit), out = g·sigmoid(alpha·g)·(u + 1).
    SwigluOai { alpha: f32, limit: f32 },
}

impl ExpertAct {
    #[inline]
    fn apply(self, gate: &mut [f32], up: &[f32]) {
        match self {
            ExpertAct::Glu(a) => a.apply(gate, up),
            ExpertAct::SwigluOai { alpha, limit } => {
                for (g, &u) in gate.iter_mut().zip(up) {
                    let x = g.min(limit);
                    let y = u.clamp(-limit, limit);
                    *g = x / (1.0 + (-alpha * x).exp()) * (y + 1.0);
                }
            }
        }
    }
}

/// Hyper-parameters of one MoE block, read by the architecture from its metadata.
#[derive(Clone, Copy, Debug)]
pub struct MoeOptions {
    pub n_expert: usize,
    pub n_used: usize,
    /// Hidden size of one expert (`expert_feed_forward_length`).
    pub n_ff_exp: usize,
    pub gating: Gating,
    pub act: ExpertAct,
    /// Multiplies the routing weights (llama.cpp's `expert_weights_scale`; 1 = none).
    pub weight_scale: f32,
}

pub struct MoeWeights {
    /// Router: `n_expert` rows of `n_embd` (`ffn_gate_inp.weight`).
    pub router: Weight,
    pub router_bias: Option<Vec<f32>>,
    pub gate: Vec<Weight>,
    pub up: Vec<Weight>,
    pub down: Vec<Weight>,
    /// Per-expert biases, `n_expert` rows each (gpt-oss).
    pub gate_bias: Option<Vec<f32>>,
    pub up_bias: Option<Vec<f32>>,
    pub down_bias: Option<Vec<f32>>,
    pub opts: MoeOptions,
}

/// Buffers reused across layers and steps; grown, never shrunk.
#[derive(Default)]
pub struct MoeScratch {
    acts: QActs,
    logits: Vec<f32>,
    /// Per (token, slot): chosen expert and its routing weight, slots in descending order.
    chosen: Vec<(u32, f32)>,
    /// Per (token, slot): the row of that pair in the expert-grouped buffers.
    row_of: Vec<u32>,
    /// Expert-grouped rows: which token each row belongs to.
    tok_of_row: Vec<u32>,
    /// Per active expert: (expert, first row, row count).
    active: Vec<(u32, u32, u32)>,
    counts: Vec<u32>,
    xq: Vec<u8>,
    xg: Vec<u8>,
    h: Vec<f32>,
    hq: Vec<u8>,
    out: Vec<f32>,
    order: Vec<u32>,
}

thread_local! {
    static TILES: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn grow<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// Quantize `n` rows of `k` values into `out` (rows of `rb` bytes), over the pool when large.
fn quantize_rows(pool: &Pool, fmt: ActFormat, x: &[f32], k: usize, n: usize, out: &mut [u8]) {
    let rb = act_row_bytes(fmt, k);
    if n < 8 {
        for t in 0..n {
            quantize_act(fmt, &x[t * k..(t + 1) * k], &mut out[t * rb..(t + 1) * rb]);
        }
        return;
    }
    let ptr = SyncPtr(out.as_mut_ptr());
    pool.run(|ith, nth| {
        let p = ptr;
        for t in Pool::chunk(n, 1, ith, nth) {
            // SAFETY: each thread writes its own disjoint rows.
            let o = unsafe { std::slice::from_raw_parts_mut(p.0.add(t * rb), rb) };
            quantize_act(fmt, &x[t * k..(t + 1) * k], o);
        }
    });
}

impl MoeWeights {
    /// Load layer `i`'s router `blk.{i}.ffn_gate_inp.weight` (and `.bias` if present) and experts
    /// `blk.{i}.ffn_{gate,up,down}_exps.weight` (and `.bias` if present).
    pub fn load(
        l: &WeightLoader,
        i: usize,
        d: usize,
        opts: MoeOptions,
    ) -> Result<Self, EngineError> {
        let t = |n: &str| format!("blk.{i}.{n}");
        let (ne, ff) = (opts.n_expert, opts.n_ff_exp);
        let path = || l.file.path.display().to_string();
        if ne == 0 || opts.n_used == 0 || opts.n_used > ne {
            return Err(EngineError::Invalid {
                path: path(),
                message: format!(
                    "expert_used_count {} must be between 1 and expert_count {ne}",
                    opts.n_used
                ),
            });
        }
        let w = MoeWeights {
            router: l.matrix(&t("ffn_gate_inp.weight"), d, ne)?,
            router_bias: l.vector_opt(&t("ffn_gate_inp.bias"), ne)?,
            gate: l.experts(&t("ffn_gate_exps.weight"), d, ff, ne)?,
            up: l.experts(&t("ffn_up_exps.weight"), d, ff, ne)?,
            down: l.experts(&t("ffn_down_exps.weight"), ff, d, ne)?,
            gate_bias: l.rows_f32_opt(&t("ffn_gate_exps.bias"), ff, ne)?,
            up_bias: l.rows_f32_opt(&t("ffn_up_exps.bias"), ff, ne)?,
            down_bias: l.rows_f32_opt(&t("ffn_down_exps.bias"), d, ne)?,
            opts,
        };
        // The grouped matmuls quantize an input once for every expert of a projection.
        for ws in [&w.gate, &w.up, &w.down] {
            if let Err(e) = hearth_kernels::check_weight(ws[0].dtype, ws[0].cols) {
                return Err(EngineError::Invalid {
                    path: path(),
                    message: format!("{}: {e}", ws[0].name),
                });
            }
        }
        if act_format(w.gate[0].dtype) != act_format(w.up[0].dtype) {
            return Err(EngineError::Invalid {
                path: path(),
                message: format!(
                    "layer {i}: expert gate ({}) and up ({}) weights need different activation formats",
                    w.gate[0].dtype, w.up[0].dtype
                ),
            });
        }
        Ok(w)
    }

    /// Route each token and write its chosen (expert, weight) pairs, best first, into `chosen`.
    fn route(&self, logits: &[f32], chosen: &mut [(u32, f32)], order: &mut Vec<u32>) {
        let (ne, k) = (self.opts.n_expert, self.opts.n_used);
        for (row, out) in logits.chunks_exact(ne).zip(chosen.chunks_exact_mut(k)) {
            // Top-k by logit; softmax is monotonic, so this is also top-k by probability.
            // Ties go to the lower expert index.
            order.clear();
            order.extend(0..ne as u32);
            let cmp = |a: &u32, b: &u32| {
                row[*b as usize]
                    .partial_cmp(&row[*a as usize])
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.cmp(b))
            };
            order.select_nth_unstable_by(k - 1, cmp);
            order[..k].sort_unstable_by(cmp);
            let max = row[order[0] as usize];
            match self.opts.gating {
                Gating::SoftmaxAll { norm_topk } => {
                    let total: f32 = row.iter().map(|&v| (v - max).exp()).sum();
                    let mut sum = 0.0;
                    for (o, &e) in out.iter_mut().zip(&order[..k]) {
                        let p = (row[e as usize] - max).exp() / total;
                        *o = (e, p);
                        sum += p;
                    }
                    if norm_topk {
                        // llama.cpp clamps the sum to the smallest normal f16 before dividing.
                        let inv = 1.0 / sum.max(6.103_515_6e-5);
                        out.iter_mut().for_each(|o| o.1 *= inv);
                    }
                }
                Gating::SoftmaxChosen => {
                    let mut sum = 0.0;
                    for (o, &e) in out.iter_mut().zip(&order[..k]) {
                        let p = (row[e as usize] - max).exp();
                        *o = (e, p);
                        sum += p;
                    }
                    out.iter_mut().for_each(|o| o.1 /= sum);
                }
            }
            if self.opts.weight_scale != 1.0 {
                out.iter_mut().for_each(|o| o.1 *= self.opts.weight_scale);
            }
        }
    }

    /// `x`: `n_tok` normalized rows of `n_embd`; writes `n_tok` rows of the block output to `y`.
    pub fn forward(&self, pool: &Pool, s: &mut MoeScratch, x: &[f32], n_tok: usize, y: &mut [f32]) {
        let o = self.opts;
        let (ne, k, ff) = (o.n_expert, o.n_used, o.n_ff_exp);
        let d = self.router.cols;
        let n_rows = n_tok * k;

        // 1. Router logits and top-k.
        grow(&mut s.logits, n_tok * ne);
        s.acts.quantize(pool, &self.router, &x[..n_tok * d], n_tok);
        matmul(pool, &s.acts, &self.router, &mut s.logits[..n_tok * ne]);
        if let Some(b) = &self.router_bias {
            for row in s.logits[..n_tok * ne].chunks_exact_mut(ne) {
                row.iter_mut().zip(b).for_each(|(v, bi)| *v += bi);
            }
        }
        grow(&mut s.chosen, n_rows);
        self.route(
            &s.logits[..n_tok * ne],
            &mut s.chosen[..n_rows],
            &mut s.order,
        );

        // 2. Group the (token, slot) pairs by expert (counting sort, tokens in order).
        s.counts.clear();
        s.counts.resize(ne, 0);
        for &(e, _) in &s.chosen[..n_rows] {
            s.counts[e as usize] += 1;
        }
        s.active.clear();
        let mut start = 0u32;
        for (e, c) in s.counts.iter_mut().enumerate() {
            if *c > 0 {
                s.active.push((e as u32, start, *c));
            }
            let n = *c;
            *c = start; // now the next free row of expert e
            start += n;
        }
        grow(&mut s.row_of, n_rows);
        grow(&mut s.tok_of_row, n_rows);
        for (pair, &(e, _)) in s.chosen[..n_rows].iter().enumerate() {
            let r = s.counts[e as usize];
            s.counts[e as usize] += 1;
            s.row_of[pair] = r;
            s.tok_of_row[r as usize] = (pair / k) as u32;
        }

        // 3. Quantize x once for the experts' input format, then gather rows in expert order.
        let fmt_in = act_format(self.gate[0].dtype);
        let rb_in = act_row_bytes(fmt_in, d);
        grow(&mut s.xq, n_tok * rb_in);
        quantize_rows(pool, fmt_in, x, d, n_tok, &mut s.xq);
        grow(&mut s.xg, n_rows * rb_in);
        for r in 0..n_rows {
            let t = s.tok_of_row[r] as usize;
            s.xg[r * rb_in..(r + 1) * rb_in].copy_from_slice(&s.xq[t * rb_in..(t + 1) * rb_in]);
        }

        // 4. gate and up of every active expert in one job, activation fused per thread.
        grow(&mut s.h, n_rows * ff);
        let h_ptr = SyncPtr(s.h.as_mut_ptr());
        let (xg, active) = (&s.xg[..n_rows * rb_in], &s.active[..]);
        pool.run(|ith, nth| {
            let hp = h_ptr;
            let rows = Pool::chunk(ff, 8, ith, nth);
            if rows.is_empty() {
                return;
            }
            let nr = rows.len();
            TILES.with(|tl| {
                let (gt, ut) = &mut *tl.borrow_mut();
                for &(e, first, cnt) in active {
                    let (e, first, cnt) = (e as usize, first as usize, cnt as usize);
                    grow(gt, nr * cnt);
                    grow(ut, nr * cnt);
                    let acts = &xg[first * rb_in..(first + cnt) * rb_in];
                    for (w, tile) in [(&self.gate[e], &mut *gt), (&self.up[e], &mut *ut)] {
                        let rbw = w.row_bytes();
                        let wb = &w.data()[rows.start * rbw..rows.end * rbw];
                        hearth_kernels::matmul(
                            w.dtype,
                            d,
                            wb,
                            nr,
                            acts,
                            cnt,
                            &mut tile[..nr * cnt],
                            nr,
                        );
                    }
                    for (bias, tile) in [(&self.gate_bias, &mut *gt), (&self.up_bias, &mut *ut)] {
                        if let Some(b) = bias {
                            let b = &b[e * ff + rows.start..e * ff + rows.end];
                            for row in tile[..nr * cnt].chunks_exact_mut(nr) {
                                row.iter_mut().zip(b).for_each(|(v, bi)| *v += bi);
                            }
                        }
                    }
                    o.act.apply(&mut gt[..nr * cnt], &ut[..nr * cnt]);
                    for i in 0..cnt {
                        // SAFETY: each thread writes only columns `rows` of these h rows.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                gt.as_ptr().add(i * nr),
                                hp.0.add((first + i) * ff + rows.start),
                                nr,
                            );
                        }
                    }
                }
            });
        });

        // 5. down of every active expert in one job.
        let fmt_h = act_format(self.down[0].dtype);
        let rb_h = act_row_bytes(fmt_h, ff);
        grow(&mut s.hq, n_rows * rb_h);
        quantize_rows(pool, fmt_h, &s.h[..n_rows * ff], ff, n_rows, &mut s.hq);
        grow(&mut s.out, n_rows * d);
        let out_ptr = SyncPtr(s.out.as_mut_ptr());
        let hq = &s.hq[..n_rows * rb_h];
        pool.run(|ith, nth| {
            let op = out_ptr;
            let rows = Pool::chunk(d, 8, ith, nth);
            if rows.is_empty() {
                return;
            }
            let nr = rows.len();
            TILES.with(|tl| {
                let (tile, _) = &mut *tl.borrow_mut();
                for &(e, first, cnt) in active {
                    let (e, first, cnt) = (e as usize, first as usize, cnt as usize);
                    grow(tile, nr * cnt);
                    let w = &self.down[e];
                    let rbw = w.row_bytes();
                    let wb = &w.data()[rows.start * rbw..rows.end * rbw];
                    let acts = &hq[first * rb_h..(first + cnt) * rb_h];
                    hearth_kernels::matmul(
                        w.dtype,
                        ff,
                        wb,
                        nr,
                        acts,
                        cnt,
                        &mut tile[..nr * cnt],
                        nr,
                    );
                    if let Some(b) = &self.down_bias {
                        let b = &b[e * d + rows.start..e * d + rows.end];
                        for row in tile[..nr * cnt].chunks_exact_mut(nr) {
                            row.iter_mut().zip(b).for_each(|(v, bi)| *v += bi);
                        }
                    }
                    for i in 0..cnt {
                        // SAFETY: each thread writes only columns `rows` of these out rows.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                tile.as_ptr().add(i * nr),
                                op.0.add((first + i) * d + rows.start),
                                nr,
                            );
                        }
                    }
                }
            });
        });

        // 6. Weighted sum per token, in slot order (best expert first).
        for t in 0..n_tok {
            let yt = &mut y[t * d..(t + 1) * d];
            yt.fill(0.0);
            for j in 0..k {
                let (_, wgt) = s.chosen[t * k + j];
                let r = s.row_of[t * k + j] as usize;
                let src = &s.out[r * d..(r + 1) * d];
                yt.iter_mut().zip(src).for_each(|(a, b)| *a += wgt * b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_oai_matches_its_definition() {
        let act = ExpertAct::SwigluOai {
            alpha: 1.702,
            limit: 7.0,
        };
        let mut g = vec![-2.0, 0.5, 9.0];
        let u = vec![1.0, -8.0, 3.0];
        act.apply(&mut g, &u);
        let f = |x: f32, y: f32| x / (1.0 + (-1.702 * x).exp()) * (y + 1.0);
        assert!((g[0] - f(-2.0, 1.0)).abs() < 1e-6);
        assert!((g[1] - f(0.5, -7.0)).abs() < 1e-6);
        assert!((g[2] - f(7.0, 3.0)).abs() < 1e-6);
    }
}
