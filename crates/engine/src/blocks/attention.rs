//! Multi-head attention with grouped KV heads (GQA), shared by every architecture.
//! Options cover the variants in use: Q/K/V/O biases (Qwen2, gpt-oss), per-head QK RMSNorm
//! (Gemma 3, Qwen3), sliding windows (Gemma 3, gpt-oss) and RoPE style/base per layer.

use crate::batch::Batch;
use crate::kv::KvBatch;
use crate::linear::{matmul, matmul_many, MatJob, QActs};
use crate::ops::{rms_norm_chunks, softmax, Rope};
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
}

#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope: Rope,
    /// Multiplies q·k (1/sqrt(head_dim) for most models; Gemma 3 uses query_pre_attn_scalar).
    pub scale: f32,
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
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
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
    /// Load layer `i`'s `blk.{i}.attn_{q,k,v,output}` weights (ggml tensor names), their biases
    /// where the file has them, and, when `qk_norm`, the required per-head Q/K norm weights.
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
        Ok(AttentionWeights {
            wq: l.matrix(&t("attn_q.weight"), d, dq)?,
            wk: l.matrix(&t("attn_k.weight"), d, dkv)?,
            wv: l.matrix(&t("attn_v.weight"), d, dkv)?,
            wo: l.matrix(&t("attn_output.weight"), dq, d)?,
            bq: l.vector_opt(&t("attn_q.bias"), dq)?,
            bk: l.vector_opt(&t("attn_k.bias"), dkv)?,
            bv: l.vector_opt(&t("attn_v.bias"), dkv)?,
            bo: l.vector_opt(&t("attn_output.bias"), d)?,
            q_norm: norm("attn_q_norm.weight")?,
            k_norm: norm("attn_k_norm.weight")?,
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

        // Attention over (token, head) pairs, split across threads.
        let out_ptr = SyncPtr(s.out.as_mut_ptr());
        let q: &[f32] = q;
        let (store, tables) = (&*kv.store, kv.tables);
        let spec = store.spec(layer);
        let group = nh / nkv;
        pool.run(|ith, nth| {
            let op = out_ptr;
            SCORES.with(|sc| {
                let mut scores = sc.borrow_mut();
                for item in Pool::chunk(t_n * nh, 1, ith, nth) {
                    let (t, h) = (item / nh, item % nh);
                    let g = h / group;
                    let pos = batch.pos[t];
                    let table = tables[batch.seq[t]];
                    let lo = spec.first_visible(pos);
                    let n = pos + 1 - lo;
                    if scores.len() < n {
                        scores.resize(n, 0.0);
                    }
                    let qh = &q[t * dq + h * hd..t * dq + (h + 1) * hd];
                    for (j, sj) in scores[..n].iter_mut().enumerate() {
                        *sj = store.k_dot(layer, table, lo + j, g, qh) * p.scale;
                    }
                    softmax(&mut scores[..n]);
                    // SAFETY: each (t, h) output slice is written by exactly one thread.
                    let o =
                        unsafe { std::slice::from_raw_parts_mut(op.0.add(t * dq + h * hd), hd) };
                    o.fill(0.0);
                    for (j, &w) in scores[..n].iter().enumerate() {
                        store.v_axpy(layer, table, lo + j, g, w, o);
                    }
                }
            });
        });

        s.acts.quantize(pool, &self.wo, &s.out[..t_n * dq], t_n);
        matmul(pool, &s.acts, &self.wo, &mut y[..t_n * self.wo.rows]);
        add_bias(&mut y[..t_n * self.wo.rows], &self.bo);
    }
}
