//! Small element-wise operations shared by every architecture: norms, RoPE, activations, softmax.
//! They run on the calling thread over one row at a time; the heavy lifting is in `linear`.

/// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x²) + eps) * w. Gemma's "1 + w" is already
/// folded into the stored weight by the GGUF converter.
pub fn rms_norm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let n = x.len();
    let ss = hearth_kernels::dot_f32(x, x) as f64;
    let scale = 1.0 / ((ss / n as f64) as f32 + eps).sqrt();
    for i in 0..n {
        out[i] = x[i] * scale * w[i];
    }
}

/// RMSNorm of `n` consecutive rows of `w.len()` values from `x` into `out`.
pub fn rms_norm_rows(out: &mut [f32], x: &[f32], w: &[f32], eps: f32, n: usize) {
    let d = w.len();
    for t in 0..n {
        rms_norm(&mut out[t * d..(t + 1) * d], &x[t * d..(t + 1) * d], w, eps);
    }
}

/// `x += y` over the first `n` values (residual connection).
pub fn add_into(x: &mut [f32], y: &[f32], n: usize) {
    x[..n].iter_mut().zip(&y[..n]).for_each(|(a, b)| *a += b);
}

/// In-place RMSNorm of each `w.len()`-sized chunk of `x` (per-head QK-norm).
pub fn rms_norm_chunks(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for c in x.chunks_exact_mut(n) {
        let ss = hearth_kernels::dot_f32(c, c) as f64;
        let scale = 1.0 / ((ss / n as f64) as f32 + eps).sqrt();
        for (v, wi) in c.iter_mut().zip(w) {
            *v *= scale * wi;
        }
    }
}

/// Rotary position embedding (Su et al. 2021, RoFormer) as ggml's `ggml_rope_ext` computes it:
/// theta_i = pos * freq_scale * base^(-2i/n_rot), optionally with YaRN.
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub n_rot: usize,
    pub base: f32,
    pub freq_scale: f32,
    /// NEOX style rotates (x[i], x[i + n_rot/2]); the "normal" style rotates (x[2i], x[2i+1])
    /// (llama GGUFs have Q/K rows permuted by the converter for this).
    pub neox: bool,
    /// YaRN context extension (gpt-oss); `None` is plain (or linearly scaled) RoPE.
    pub yarn: Option<Yarn>,
}

/// YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language Models",
/// arXiv:2309.00071) the way ggml applies it in `ggml_rope_ext` (ggml-cpu `rope_yarn`) with
/// `ext_factor` 1: each frequency is blended between interpolated (theta · freq_scale) and
/// extrapolated (theta) by a ramp over the rotary dimension index: dimensions that rotate more
/// than `beta_fast` times over the original context keep their frequency, those rotating fewer
/// than `beta_slow` times are interpolated, linear in between (paper §3.2, "NTK-by-parts"). cos
/// and sin are multiplied by `mscale`, which scales every q·k by mscale² (the paper's
/// temperature, §3.4: 0.1·ln(s) + 1 for scale s).
#[derive(Clone, Copy, Debug)]
pub struct Yarn {
    /// Start and end of the ramp in rotary-pair index units (ggml_rope_yarn_corr_dims: floor of
    /// the beta_fast dimension, ceil of the beta_slow one, clamped to [0, n_rot - 1]; without
    /// the rounding when not `truncate`, as transformers' `find_correction_range`).
    pub corr_dims: [f32; 2],
    /// Multiplies cos and sin.
    pub mscale: f32,
}

impl Yarn {
    /// llama.cpp's derivation for a model trained at `n_ctx_orig` positions whose RoPE is scaled
    /// by `freq_scale` = 1/factor: `yarn_attn_factor` = get_mscale(factor) / (1 + 0.1·ln(factor))
    /// (llama-context.cpp) times ggml's own (1 + 0.1·ln(1/freq_scale)) is get_mscale(factor)
    /// = 0.1·ln(factor) + 1, times the file's `rope.scaling.attn_factor` (`attn_factor`).
    pub fn new(
        n_rot: usize,
        n_ctx_orig: usize,
        base: f32,
        freq_scale: f32,
        beta_fast: f32,
        beta_slow: f32,
        attn_factor: f32,
        truncate: bool,
    ) -> Yarn {
        // Dimension at which a frequency completes `n_rot_turns` rotations over n_ctx_orig.
        let corr_dim = |turns: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (turns * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let (lo, hi) = (corr_dim(beta_fast), corr_dim(beta_slow));
        let (lo, hi) = if truncate {
            (lo.floor(), hi.ceil())
        } else {
            (lo, hi)
        };
        let start = lo.max(0.0);
        let end = hi.min(n_rot as f32 - 1.0);
        let factor = 1.0 / freq_scale;
        let m = if factor <= 1.0 {
            1.0
        } else {
            0.1 * factor.ln() + 1.0
        };
        // As llama.cpp: its cancelling factor and ggml's re-application, both in f32.
        let attn = m / (1.0 + 0.1 * factor.ln()) * attn_factor;
        Yarn {
            corr_dims: [start, end],
            mscale: attn * (1.0 + 0.1 * (1.0 / freq_scale).ln()),
        }
    }
}

impl Rope {
    /// Fill `cs` (len n_rot) with interleaved (cos, sin) for position `pos`.
    pub fn table(&self, pos: usize, cs: &mut [f32]) {
        let half = self.n_rot / 2;
        // Same recurrence as ggml (theta *= theta_scale) so rounding matches the oracle closely.
        let theta_scale = self.base.powf(-2.0 / self.n_rot as f32);
        match self.yarn {
            None => {
                let mut theta = pos as f32 * self.freq_scale;
                for i in 0..half {
                    cs[2 * i] = theta.cos();
                    cs[2 * i + 1] = theta.sin();
                    theta *= theta_scale;
                }
            }
            Some(y) => {
                let mut theta_extrap = pos as f32;
                let [lo, hi] = y.corr_dims;
                for i in 0..half {
                    let theta_interp = self.freq_scale * theta_extrap;
                    let ramp = 1.0 - ((i as f32 - lo) / (hi - lo).max(0.001)).clamp(0.0, 1.0);
                    let theta = theta_interp * (1.0 - ramp) + theta_extrap * ramp;
                    cs[2 * i] = theta.cos() * y.mscale;
                    cs[2 * i + 1] = theta.sin() * y.mscale;
                    theta_extrap *= theta_scale;
                }
            }
        }
    }

    /// Rotate every head (chunks of `head_dim`) of `x` using a table from `table`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, cs: &[f32]) {
        let half = self.n_rot / 2;
        for h in x.chunks_exact_mut(head_dim) {
            if self.neox {
                for i in 0..half {
                    let (c, s) = (cs[2 * i], cs[2 * i + 1]);
                    let (a, b) = (h[i], h[i + half]);
                    h[i] = a * c - b * s;
                    h[i + half] = a * s + b * c;
                }
            } else {
                for i in 0..half {
                    let (c, s) = (cs[2 * i], cs[2 * i + 1]);
                    let (a, b) = (h[2 * i], h[2 * i + 1]);
                    h[2 * i] = a * c - b * s;
                    h[2 * i + 1] = a * s + b * c;
                }
            }
        }
    }
}

/// e^x for activations and softmax, written without branches or libm calls so that loops over
/// slices vectorize: x = n·ln2 + r with |r| ≤ ln2/2 (Cody–Waite split of ln2), e^r by its
/// degree-6 Taylor polynomial (truncation error r⁷/7! < 1.3e-7 relative, about one f32 ulp),
/// 2^n by building the exponent bits. Inputs above 88 give e^88 (finite); inputs below −87,
/// where e^x is subnormal, give 0, so masked (−∞) scores vanish exactly.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer in f32 arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let tiny = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let v = p * f32::from_bits(((n as i32 + 127) << 23) as u32);
    if tiny {
        0.0
    } else {
        v
    }
}

#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + fast_exp(-x))
}

/// GELU, tanh approximation (Hendrycks & Gimpel 2016), as ggml's gelu and Gemma's
/// gelu_pytorch_tanh: 0.5·x·(1 + tanh(y)) with y = √(2/π)·(x + 0.044715·x³), computed as the
/// identical x·σ(2y) = x / (1 + e^(−2y)), which needs one exp and no tanh.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    const TWO_SQRT_2_OVER_PI: f32 = 2.0 * 0.797_884_6;
    x / (1.0 + fast_exp(-TWO_SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)))
}

/// The gated activation of a GLU feed-forward: out = act(gate) * up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GluAct {
    /// SwiGLU (Shazeer 2020): Llama, Qwen, Mistral.
    Silu,
    /// GeGLU with tanh GELU: Gemma.
    Gelu,
}

impl GluAct {
    #[inline]
    pub fn apply(self, gate: &mut [f32], up: &[f32]) {
        match self {
            GluAct::Silu => gate.iter_mut().zip(up).for_each(|(g, u)| *g = silu(*g) * u),
            GluAct::Gelu => geglu_f16_table(gate, up),
        }
    }
}

/// GeGLU evaluated as ggml's CPU backend does (ggml-cpu/vec.h `ggml_vec_geglu_f32` under
/// `GGML_GELU_FP16`, its default): for −10 < x < 10 the gate goes through f16 and GELU is read
/// from a table of f16 results, i.e. `f16(gelu(f16(x)))`; x ≤ −10 gives 0 and x ≥ 10 gives x.
/// This rounding (up to 2^-11 relative) is what llama.cpp computes for every Gemma GGUF, and
/// matching it keeps our activations on llama.cpp's to float-order noise instead of drifting
/// by ~4e-4 per layer. Done in chunks with the SIMD f16 conversions, so it costs about what the
/// plain f32 GELU does.
fn geglu_f16_table(gate: &mut [f32], up: &[f32]) {
    const C: usize = 256;
    let mut r = [0f32; C];
    for (gc, uc) in gate.chunks_mut(C).zip(up.chunks(C)) {
        let n = gc.len();
        r[..n].copy_from_slice(gc);
        round_f16(&mut r[..n]);
        r[..n].iter_mut().for_each(|v| *v = gelu(*v));
        round_f16(&mut r[..n]);
        for ((g, &u), &t) in gc.iter_mut().zip(uc).zip(&r[..n]) {
            *g = if *g <= -10.0 {
                0.0
            } else if *g >= 10.0 {
                *g * u
            } else {
                t * u
            };
        }
    }
}

/// Round every value to the nearest f16 (kept as f32), with the SIMD conversions: what ggml
/// does to an f32 operand that meets an f16 one (it converts src1 to the f16 vec_dot type).
pub fn round_f16(x: &mut [f32]) {
    const C: usize = 256;
    let mut h = [half::f16::ZERO; C];
    for c in x.chunks_mut(C) {
        let n = c.len();
        hearth_kernels::f32_to_f16(c, &mut h[..n]);
        hearth_kernels::f16_to_f32(&h[..n], c);
    }
}

/// In-place softmax; returns nothing, the row sums to 1.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    x.iter_mut().for_each(|v| *v = fast_exp(*v - max));
    let sum: f32 = x.iter().sum();
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// In-place softmax with an extra logit `sink` in the denominator only (gpt-oss's learned
/// attention sinks; ggml `soft_max_ext` with sinks): x_i = e^(x_i) / (e^sink + Σ_j e^(x_j)).
/// The weights sum to less than 1: the sink absorbs the rest.
pub fn softmax_with_sink(x: &mut [f32], sink: f32) {
    let max = x.iter().copied().fold(sink, f32::max);
    x.iter_mut().for_each(|v| *v = fast_exp(*v - max));
    let sum: f32 = x.iter().sum::<f32>() + fast_exp(sink - max);
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (fast_exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.001_7;
        }
        assert!(worst < 4e-7, "max relative error {worst}");
        assert_eq!(fast_exp(-1000.0), 0.0);
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
        assert!(fast_exp(1000.0).is_finite());
    }

    #[test]
    fn geglu_rounds_through_f16_like_ggml() {
        let h = |v: f32| half::f16::from_f32(v).to_f32();
        // 70 values: more than one chunk, across both clamps and zero.
        let gate: Vec<f32> = (0..70).map(|i| (i as f32 - 35.0) * 0.37 + 0.0123).collect();
        let up: Vec<f32> = (0..70).map(|i| 1.0 + i as f32 * 0.01).collect();
        let mut out = gate.clone();
        GluAct::Gelu.apply(&mut out, &up);
        for ((&x, &u), &y) in gate.iter().zip(&up).zip(&out) {
            let want = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x * u
            } else {
                h(gelu(h(x))) * u
            };
            assert_eq!(y, want, "x = {x}");
        }
        // Rounded: the table value differs from the f32 GELU for some inputs, as ggml's does.
        assert!(gate
            .iter()
            .any(|&x| x.abs() < 10.0 && h(gelu(h(x))) != gelu(x)));
    }

    #[test]
    fn round_f16_rounds_every_value() {
        let mut x: Vec<f32> = (0..131).map(|i| (i as f32).sin() * 3.0 + 1e-4).collect();
        let want: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        round_f16(&mut x);
        assert_eq!(x, want);
    }

    #[test]
    fn activations_match_their_definitions() {
        const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
        let mut x = -30.0f64;
        while x < 30.0 {
            let g = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh());
            let s = x / (1.0 + (-x).exp());
            let tol = |v: f64| 2e-6 * v.abs().max(1e-3);
            assert!(
                (gelu(x as f32) as f64 - g).abs() <= tol(g) + 1e-7,
                "gelu({x})"
            );
            assert!(
                (silu(x as f32) as f64 - s).abs() <= tol(s) + 1e-7,
                "silu({x})"
            );
            x += 0.013;
        }
    }

    #[test]
    fn rope_preserves_norm_and_rotates_pairs() {
        let r = Rope {
            n_rot: 8,
            base: 10000.0,
            freq_scale: 1.0,
            neox: false,
            yarn: None,
        };
        let mut cs = vec![0.0; 8];
        r.table(3, &mut cs);
        let mut x: Vec<f32> = (0..8).map(|i| i as f32 * 0.3 - 1.0).collect();
        let n0: f32 = x.iter().map(|v| v * v).sum();
        let x0 = x.clone();
        r.apply(&mut x, 8, &cs);
        let n1: f32 = x.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-4);
        // first pair rotated by exactly pos radians (theta_0 = pos)
        let (c, s) = (3f32.cos(), 3f32.sin());
        assert!((x[0] - (x0[0] * c - x0[1] * s)).abs() < 1e-6);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1e9];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
    }
}
