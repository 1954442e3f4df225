//! Gated feed-forward (GLU family): down(act(gate(x)) * up(x)).
//! Gate and up share one quantized input and one pool job, and each thread applies the
//! activation to the rows it just computed, so the GLU costs no extra synchronization.

use crate::linear::{matmul, matmul_many, MatJob, QActs};
use crate::ops::GluAct;
use crate::pool::{Pool, SyncPtr};
use crate::weights::Weight;

pub struct FfnWeights {
    pub gate: Weight,
    pub up: Weight,
    pub down: Weight,
    pub act: GluAct,
}

#[derive(Default)]
pub struct FfnScratch {
    pub acts: QActs,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
}

impl FfnWeights {
    /// Load layer `i`'s `blk.{i}.ffn_{gate,up,down}` weights (ggml tensor names).
    pub fn load(
        l: &crate::weights::WeightLoader,
        i: usize,
        d: usize,
        n_ff: usize,
        act: GluAct,
    ) -> Result<Self, crate::error::EngineError> {
        let t = |n: &str| format!("blk.{i}.{n}");
        Ok(FfnWeights {
            gate: l.matrix(&t("ffn_gate.weight"), d, n_ff)?,
            up: l.matrix(&t("ffn_up.weight"), d, n_ff)?,
            down: l.matrix(&t("ffn_down.weight"), n_ff, d)?,
            act,
        })
    }

    /// Layer `i`'s FFN stored as one `blk.{i}.ffn_up` of 2·n_ff rows, gate rows first then up
    /// rows (ChatGLM, GLM-4: llama.cpp's LLM_FFN_SWIGLU without a gate tensor, ggml_swiglu =
    /// silu(first half) · second half), read as two row views; `ffn_down` as usual.
    pub fn load_fused_up(
        l: &crate::weights::WeightLoader,
        i: usize,
        d: usize,
        n_ff: usize,
    ) -> Result<Self, crate::error::EngineError> {
        let t = |n: &str| format!("blk.{i}.{n}");
        let w = l.matrix(&t("ffn_up.weight"), d, 2 * n_ff)?;
        Ok(FfnWeights {
            gate: w.rows_view(0, n_ff, &t("ffn_up.weight[gate]")),
            up: w.rows_view(n_ff, n_ff, &t("ffn_up.weight[up]")),
            down: l.matrix(&t("ffn_down.weight"), n_ff, d)?,
            act: GluAct::Silu,
        })
    }

    /// `x`: T normalized rows; writes T rows of the block output into `y`.
    pub fn forward(&self, pool: &Pool, s: &mut FfnScratch, x: &[f32], n_tok: usize, y: &mut [f32]) {
        let ff = self.gate.rows;
        if s.gate.len() < n_tok * ff {
            s.gate.resize(n_tok * ff, 0.0);
            s.up.resize(n_tok * ff, 0.0);
        }
        s.acts.quantize(pool, &self.gate, x, n_tok);
        let gp = SyncPtr(s.gate.as_mut_ptr());
        let up = SyncPtr(s.up.as_mut_ptr());
        let act = self.act;
        let glu = move |ranges: &[std::ops::Range<usize>]| {
            let (g, u) = (gp, up);
            let r = ranges[0].clone();
            debug_assert_eq!(r, ranges[1]);
            for t in 0..n_tok {
                // SAFETY: this thread computed exactly these rows of gate and up, nobody else touches them.
                let (gs, us) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(g.0.add(t * ff + r.start), r.len()),
                        std::slice::from_raw_parts(u.0.add(t * ff + r.start), r.len()),
                    )
                };
                act.apply(gs, us);
            }
        };
        if s.acts.matches(&self.up) {
            let (g, u) = (&mut s.gate[..n_tok * ff], &mut s.up[..n_tok * ff]);
            matmul_many(
                pool,
                &s.acts,
                &mut [
                    MatJob {
                        w: &self.gate,
                        out: g,
                    },
                    MatJob {
                        w: &self.up,
                        out: u,
                    },
                ],
                Some(&glu),
            );
        } else {
            matmul(pool, &s.acts, &self.gate, &mut s.gate[..n_tok * ff]);
            s.acts.quantize(pool, &self.up, x, n_tok);
            matmul(pool, &s.acts, &self.up, &mut s.up[..n_tok * ff]);
            let (g, u) = (&mut s.gate[..n_tok * ff], &s.up[..n_tok * ff]);
            act.apply(g, u);
        }
        crate::trace::row("ffn_up", None, &s.up[..n_tok * ff]);
        crate::trace::row("ffn_swiglu", None, &s.gate[..n_tok * ff]);
        s.acts
            .quantize(pool, &self.down, &s.gate[..n_tok * ff], n_tok);
        matmul(pool, &s.acts, &self.down, &mut y[..n_tok * self.down.rows]);
    }
}
