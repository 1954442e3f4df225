//! Multi-head attention with grouped KV heads (GQA), shared by every architecture.
//! Options cover the variants in use: Q/K/V/O biases (Qwen2, gpt-oss), per-head QK RMSNorm
//! (Gemma 3, Qwen3), fused QKV with bias (Qwen1, ChatGLM), sliding windows (Gemma 3, gpt-oss), RoPE style/base per layer and learned
//! attention sinks (gpt-oss: one logit per head that joins each softmax denominator).

use crate::batch::Batch;
use crate::kv::KvBatch;
use crate::linear::{matmul, matmul_many, MatJob, QActs};
use crate::ops::{rms_norm_chunks, round_f16, softmax, softmax_with_sink, Rope};
use crate::pool::{Pool, SyncPtr};
use crate::weights::Weight;
use std::cell::RefCell;

pub struct AttentionWeights {
    pub wq: Weight,
    pub wk: Weight,
    pub wv: Weight,
    pub wo: Weight,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub bo: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Per query head, a logit added to the softmax denominator (`attn_sinks.weight`, gpt-oss).
    pub sinks: Option<Vec<f32>>,
}

#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope: Rope,
    /// Multiplies q·k (1/sqrt(head_dim) for most models; Gemma 3 uses query_pre_attn_scalar).
    pub scale: f32,
    /// Apply `scale` to Q before the scores instead of to the scores (Gemma 3, whose llama.cpp
    /// graph scales Qcur and then attends with scale 1; the result differs only in rounding,
    /// since Q is rounded to f16 after scaling, see [`AttentionWeights::forward`]).
    pub scale_q: bool,
    pub norm_eps: f32,
}

/// Buffers reused across layers and steps; grown, never shrunk.
#[derive(Default)]
pub struct AttnScratch {
    pub acts: QActs,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub out: Vec<f32>,
    cs: Vec<f32>,
    /// (first batch index, length) of each run of consecutive tokens of one sequence.
    runs: Vec<(usize, usize)>,
}

thread_local! {
    /// Per worker thread: attention scores of one work item, and one widened K or V row.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

fn add_bias(x: &mut [f32], b: &Option<Vec<f32>>) {
    if let Some(b) = b {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, bi)| *v += bi);
        }
    }
}

impl AttentionWeights {
    /// Load layer `i`'s `blk.{i}.attn_{q,k,v,output}` weights (ggml tensor names; or a fused
    /// `blk.{i}.attn_qkv`), their biases
    /// where the file has them, attention sinks `blk.{i}.attn_sinks.weight` where present, and,
    /// when `qk_norm`, the required per-head Q/K norm weights.
    pub fn load(
        l: &crate::weights::WeightLoader,
        i: usize,
        d: usize,
        n_head: usize,
        n_kv_head: usize,
        head_dim: usize,
        qk_norm: bool,
    ) -> Result<Self, crate::error::EngineError> {
        let t = |n: &str| format!("blk.{i}.{n}");
        let (dq, dkv) = (n_head * head_dim, n_kv_head * head_dim);
        let norm = |n: &str| {
            if qk_norm {
                l.vector(&t(n), head_dim).map(Some)
            } else {
                Ok(None)
            }
        };
        // Fused Q/K/V (`attn_qkv`: Qwen1, ChatGLM, some GLM-4 files), as llama.cpp's
        // create_tensor_qkv: rows [Q | K | V], read as three row views of the same bytes (so
        // the matmuls, one pool job as for separate weights, compute the fused product's rows
        // exactly); its bias, when present, splits the same way.
        let (wq, wk, wv, bq, bk, bv);
        if l.has(&t("attn_qkv.weight")) {
            let w = l.matrix(&t("attn_qkv.weight"), d, dq + 2 * dkv)?;
            wq = w.rows_view(0, dq, &t("attn_qkv.weight[q]"));
            wk = w.rows_view(dq, dkv, &t("attn_qkv.weight[k]"));
            wv = w.rows_view(dq + dkv, dkv, &t("attn_qkv.weight[v]"));
            match l.vector_opt(&t("attn_qkv.bias"), dq + 2 * dkv)? {
                Some(b) => {
                    bq = Some(b[..dq].to_vec());
                    bk = Some(b[dq..dq + dkv].to_vec());
                    bv = Some(b[dq + dkv..].to_vec());
                }
                None => {
                    bq = l.vector_opt(&t("attn_q.bias"), dq)?;
                    bk = l.vector_opt(&t("attn_k.bias"), dkv)?;
                    bv = l.vector_opt(&t("attn_v.bias"), dkv)?;
                }
            }
        } else {
            wq = l.matrix(&t("attn_q.weight"), d, dq)?;
            wk = l.matrix(&t("attn_k.weight"), d, dkv)?;
            wv = l.matrix(&t("attn_v.weight"), d, dkv)?;
            bq = l.vector_opt(&t("attn_q.bias"), dq)?;
            bk = l.vector_opt(&t("attn_k.bias"), dkv)?;
            bv = l.vector_opt(&t("attn_v.bias"), dkv)?;
        }
        Ok(AttentionWeights {
            wq,
            wk,
            wv,
            wo: l.matrix(&t("attn_output.weight"), dq, d)?,
            bq,
            bk,
            bv,
            bo: l.vector_opt(&t("attn_output.bias"), d)?,
            q_norm: norm("attn_q_norm.weight")?,
            k_norm: norm("attn_k_norm.weight")?,
            sinks: l.vector_opt(&t("attn_sinks.weight"), n_head)?,
        })
    }

    /// `x`: T normalized input rows of `d` values. Writes T rows of `d` into `y`
    /// (the output projection, before the residual add).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        p: &AttentionParams,
        pool: &Pool,
        s: &mut AttnScratch,
        x: &[f32],
        batch: &Batch,
        kv: &mut KvBatch,
        layer: usize,
        y: &mut [f32],
    ) {
        let t_n = batch.len();
        let (hd, nh, nkv) = (p.head_dim, p.n_head, p.n_kv_head);
        let (dq, dkv) = (nh * hd, nkv * hd);
        grow(&mut s.q, t_n * dq);
        grow(&mut s.k, t_n * dkv);
        grow(&mut s.v, t_n * dkv);
        grow(&mut s.out, t_n * dq);
        grow(&mut s.cs, p.rope.n_rot);

        // Q, K, V: one quantization of x, one pool job (when the three weights share an activation format).
        s.acts.quantize(pool, &self.wq, x, t_n);
        let (q, k, v) = (
            &mut s.q[..t_n * dq],
            &mut s.k[..t_n * dkv],
            &mut s.v[..t_n * dkv],
        );
        if s.acts.matches(&self.wk) && s.acts.matches(&self.wv) {
            matmul_many(
                pool,
                &s.acts,
                &mut [
                    MatJob {
                        w: &self.wq,
                        out: q,
                    },
                    MatJob {
                        w: &self.wk,
                        out: k,
                    },
                    MatJob {
                        w: &self.wv,
                        out: v,
                    },
                ],
                None,
            );
        } else {
            matmul(pool, &s.acts, &self.wq, q);
            s.acts.quantize(pool, &self.wk, x, t_n);
            matmul(pool, &s.acts, &self.wk, k);
            s.acts.quantize(pool, &self.wv, x, t_n);
            matmul(pool, &s.acts, &self.wv, v);
        }
        add_bias(q, &self.bq);
        add_bias(k, &self.bk);
        add_bias(v, &self.bv);
        crate::trace::row("Qcur", Some(layer), q);
        crate::trace::row("Kcur", Some(layer), k);
        crate::trace::row("Vcur", Some(layer), v);
        if let Some(w) = &self.q_norm {
            rms_norm_chunks(q, w, p.norm_eps);
        }
        if let Some(w) = &self.k_norm {
            rms_norm_chunks(k, w, p.norm_eps);
        }
        for t in 0..t_n {
            let pos = batch.pos[t];
            p.rope.table(pos, &mut s.cs);
            p.rope.apply(&mut q[t * dq..(t + 1) * dq], hd, &s.cs);
            p.rope.apply(&mut k[t * dkv..(t + 1) * dkv], hd, &s.cs);
            kv.store.write(
                layer,
                kv.tables[batch.seq[t]],
                pos,
                &k[t * dkv..(t + 1) * dkv],
                &v[t * dkv..(t + 1) * dkv],
            );
        }
        // Q meets the f16 K cache rounded to f16, as in llama.cpp's attention without flash
        // attention (ggml_mul_mat(k, q) converts q to k's f16 vec_dot type), and the softmax
        // weights meet V rounded to f16 the same way (below): the same roundings as the
        // oracle, so scores differ from it only by summation order.
        let score_scale = if p.scale_q {
            q.iter_mut().for_each(|x| *x *= p.scale);
            1.0
        } else {
            p.scale
        };
        round_f16(q);

        // Work items: a run of up to QB consecutive tokens of one sequence (part of a prompt
        // chunk; a decode token is a run of one) × one KV head × some of the query heads that
        // share it (GQA). Each K and V row is widened to f32 once per item and used by every
        // query of the item, so a prompt reads the cache once per QB tokens and query group
        // instead of once per query. When there are too few items to keep every thread busy
        // (decoding one sequence), the query heads of a group are split across items.
        const QB: usize = 8;
        let runs = &mut s.runs;
        runs.clear();
        let mut t = 0;
        while t < t_n {
            let mut e = t + 1;
            while e < t_n
                && e - t < QB
                && batch.seq[e] == batch.seq[t]
                && batch.pos[e] == batch.pos[e - 1] + 1
            {
                e += 1;
            }
            runs.push((t, e - t));
            t = e;
        }
        let group = nh / nkv;
        let split = if runs.len() * nkv >= 2 * pool.n_threads() {
            1
        } else {
            group
        };
        let hper = group / split;
        let n_items = runs.len() * nkv * split;
        let out_ptr = SyncPtr(s.out.as_mut_ptr());
        let q: &[f32] = q;
        let runs: &[(usize, usize)] = runs;
        let (store, tables) = (&*kv.store, kv.tables);
        let spec = store.spec(layer);
        pool.run(|ith, nth| {
            let op = out_ptr;
            SCRATCH.with(|sc| {
                let (scores, kbuf) = &mut *sc.borrow_mut();
                grow(kbuf, hd);
                let kbuf = &mut kbuf[..hd];
                // Strided assignment: later runs see more keys, so contiguous ranges would load
                // one thread with all the expensive items.
                for item in (ith..n_items).step_by(nth) {
                    let (ri, rest) = (item / (nkv * split), item % (nkv * split));
                    let (g, piece) = (rest / split, rest % split);
                    let h0 = g * group + piece * hper;
                    let (t0, nt) = runs[ri];
                    let table = tables[batch.seq[t0]];
                    let pos0 = batch.pos[t0];
                    let lo = spec.first_visible(pos0);
                    let n_keys = pos0 + nt - lo;
                    grow(scores, nt * hper * n_keys);
                    // Visible keys of query token ti: [first_visible(pos) - lo, pos - lo].
                    let vis = |ti: usize| {
                        let pos = pos0 + ti;
                        spec.first_visible(pos) - lo..pos + 1 - lo
                    };
                    for j in 0..n_keys {
                        store.k_f32(layer, table, lo + j, g, kbuf);
                        for ti in 0..nt {
                            if !vis(ti).contains(&j) {
                                continue;
                            }
                            let qt = (t0 + ti) * dq;
                            for hi in 0..hper {
                                let h = h0 + hi;
                                let qh = &q[qt + h * hd..qt + (h + 1) * hd];
                                scores[(ti * hper + hi) * n_keys + j] =
                                    hearth_kernels::dot_f32(kbuf, qh) * score_scale;
                            }
                        }
                    }
                    for ti in 0..nt {
                        for hi in 0..hper {
                            let row = &mut scores[(ti * hper + hi) * n_keys..][..n_keys];
                            let h = h0 + hi;
                            match &self.sinks {
                                Some(sk) => softmax_with_sink(&mut row[vis(ti)], sk[h]),
                                None => softmax(&mut row[vis(ti)]),
                            }
                            round_f16(&mut row[vis(ti)]);
                            // SAFETY: each (token, head) output slice belongs to exactly one item.
                            unsafe {
                                std::slice::from_raw_parts_mut(
                                    op.0.add((t0 + ti) * dq + h * hd),
                                    hd,
                                )
                            }
                            .fill(0.0);
                        }
                    }
                    for j in 0..n_keys {
                        store.v_f32(layer, table, lo + j, g, kbuf);
                        for ti in 0..nt {
                            if !vis(ti).contains(&j) {
                                continue;
                            }
                            for hi in 0..hper {
                                let h = h0 + hi;
                                let w = scores[(ti * hper + hi) * n_keys + j];
                                // SAFETY: as above.
                                let o = unsafe {
                                    std::slice::from_raw_parts_mut(
                                        op.0.add((t0 + ti) * dq + h * hd),
                                        hd,
                                    )
                                };
                                hearth_kernels::axpy_f32(o, w, kbuf);
                            }
                        }
                    }
                }
            });
        });

        crate::trace::row("kqv_out", Some(layer), &s.out[..t_n * dq]);
        s.acts.quantize(pool, &self.wo, &s.out[..t_n * dq], t_n);
        matmul(pool, &s.acts, &self.wo, &mut y[..t_n * self.wo.rows]);
        add_bias(&mut y[..t_n * self.wo.rows], &self.bo);
    }
}
