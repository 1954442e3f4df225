//! Weight conversions done once at load time: MXFP4 from the OCP Microscaling layout that
//! Hugging Face checkpoints use into ggml's `block_mxfp4`, and ggml's reference quantizers
//! (Q8_0, Q4_K, MXFP4) for quantizing F32/F16/BF16 weights.

/// Values per MXFP4 block (OCP Microscaling Formats v1.0 §5: a shared E8M0 scale per 32
/// elements; ggml-common.h `QK_MXFP4`).
pub const MXFP4_BLOCK: usize = 32;
/// Bytes of one ggml `block_mxfp4`: the E8M0 scale byte, then 16 bytes of E2M1 nibbles.
pub const MXFP4_BLOCK_BYTES: usize = 17;

/// Repack one row of MXFP4 from the OCP / Hugging Face layout (gpt-oss `*_blocks` and
/// `*_scales`: `blocks` holds 16 bytes per 32 values, byte i carrying element 2i in its low
/// nibble and 2i+1 in its high one; `scales` one E8M0 byte per 32 values) into ggml's
/// `block_mxfp4` (per block: the scale byte, then 16 bytes where byte j carries element j in its
/// low nibble and j+16 in its high one). Lossless, only bits move: both sides index the same
/// E2M1 code table (transformers' `FP4_VALUES`, ggml's `kvalues_mxfp4` doubled with the scale
/// halved), and E8M0 is 2^(e-127) on both. This is the permutation of llama.cpp's
/// `repack_mxfp4_blocks` (conversion/base.py) and gpt-oss `transform_nibble_layout`.
///
/// `blocks.len()` must be `16 * scales.len()` and `out.len()` `17 * scales.len()`.
pub fn mxfp4_from_ocp(blocks: &[u8], scales: &[u8], out: &mut [u8]) {
    assert_eq!(blocks.len(), 16 * scales.len(), "MXFP4 blocks vs scales");
    assert_eq!(out.len(), MXFP4_BLOCK_BYTES * scales.len(), "MXFP4 output");
    for ((src, &e), dst) in blocks
        .chunks_exact(16)
        .zip(scales)
        .zip(out.chunks_exact_mut(MXFP4_BLOCK_BYTES))
    {
        // Element k of the block, 0..32.
        let code = |k: usize| (src[k / 2] >> (4 * (k % 2))) & 0xF;
        dst[0] = e;
        for j in 0..16 {
            dst[1 + j] = code(j) | (code(j + 16) << 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocp_repack_orders_elements_like_ggml() {
        // Element k gets code k % 16: OCP packs (0,1), (2,3), ...; ggml packs (0,16), (1,17), ...
        let blocks: Vec<u8> = (0..16u8)
            .map(|i| ((2 * i) % 16) | (((2 * i + 1) % 16) << 4))
            .collect();
        let mut out = [0u8; 17];
        mxfp4_from_ocp(&blocks, &[130], &mut out);
        assert_eq!(out[0], 130);
        let mut vals = [0f32; 32];
        crate::scalar::dequantize_row(crate::GgmlType::MXFP4, &out, &mut vals);
        let kv = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        for (k, v) in vals.iter().enumerate() {
            let c = k % 16;
            let e2m1 = if c < 8 { kv[c] } else { -kv[c - 8] };
            // E8M0 130 is 2^3.
            assert_eq!(*v, e2m1 * 8.0, "element {k}");
        }
    }
}

/// Weight types [`quantize_row`] writes.
pub const QUANTIZE_TYPES: [crate::GgmlType; 3] = [
    crate::GgmlType::Q8_0,
    crate::GgmlType::Q4_K,
    crate::GgmlType::MXFP4,
];

/// Errors of [`quantize_row`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantizeError {
    #[error("cannot quantize to {0} (supported: Q8_0, Q4_K, MXFP4)")]
    UnsupportedType(crate::GgmlType),
    #[error("row of {k} values is not a multiple of the {wtype} block length {block}")]
    BadRowLength {
        wtype: crate::GgmlType,
        k: usize,
        block: usize,
    },
}

/// ggml-quants.c `nearest_int`: round to nearest, ties to even (the 1.5·2^23 trick).
#[inline]
fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// Quantize one row of f32 values into `out` (`wtype.row_bytes(x.len())` bytes) as ggml's
/// reference quantizers do (ggml-quants.c `quantize_row_q8_0_ref`, `quantize_row_q4_K_ref`
/// with `make_qkx2_quants`, `quantize_row_mxfp4_ref`), so a model quantized at load holds the
/// bytes `llama-quantize --pure` would write for the same type (without an importance matrix).
pub fn quantize_row(
    wtype: crate::GgmlType,
    x: &[f32],
    out: &mut [u8],
) -> Result<(), QuantizeError> {
    use crate::GgmlType::*;
    let block = match wtype {
        Q8_0 | MXFP4 => 32,
        Q4_K => 256,
        other => return Err(QuantizeError::UnsupportedType(other)),
    };
    if x.len() % block != 0 {
        return Err(QuantizeError::BadRowLength {
            wtype,
            k: x.len(),
            block,
        });
    }
    let bytes = wtype.row_bytes(block).expect("block type");
    assert_eq!(out.len(), x.len() / block * bytes, "{wtype} output row");
    for (xb, ob) in x.chunks_exact(block).zip(out.chunks_exact_mut(bytes)) {
        match wtype {
            Q8_0 => q8_0_block(xb, ob),
            MXFP4 => mxfp4_block(xb, ob),
            _ => q4_k_block(xb, ob),
        }
    }
    Ok(())
}

/// `quantize_row_q8_0_ref`: d = amax / 127 (stored f16), q = roundf(x / d) (half away from 0).
fn q8_0_block(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
    for (q, v) in out[2..].iter_mut().zip(x) {
        *q = ((v * id).round() as i8) as u8;
    }
}

/// `quantize_row_mxfp4_ref`: E8M0 exponent e = floor(log2(amax)) - 2 + 127 (E2M1's largest
/// magnitude is 6 = 1.5·2^2, so amax · 2^-(e-127) lands in [4, 8)), each value the nearest E2M1
/// code (the first of equals, as `best_index_mxfp4`), nibbles in ggml's order (element j low,
/// j + 16 high).
fn mxfp4_block(x: &[f32], out: &mut [u8]) {
    use crate::scalar::{e8m0_half, KVALUES_MXFP4};
    let amax = x
        .iter()
        .fold(0f32, |m, v| if m < v.abs() { v.abs() } else { m });
    let e = if amax > 0.0 {
        (amax.log2().floor() - 2.0 + 127.0) as u8
    } else {
        0
    };
    let d = e8m0_half(e);
    let best = |v: f32| {
        let mut best = (0usize, (KVALUES_MXFP4[0] as f32 * d - v).abs());
        for (i, &k) in KVALUES_MXFP4.iter().enumerate().skip(1) {
            let err = (k as f32 * d - v).abs();
            if err < best.1 {
                best = (i, err);
            }
        }
        best.0 as u8
    };
    out[0] = e;
    for j in 0..16 {
        out[1 + j] = best(x[j]) | (best(x[j + 16]) << 4);
    }
}

/// ggml-quants.c `make_qkx2_quants`: codes 0..=nmax with a scale and a (non-positive) offset
/// minimising the weighted squared error, searched over nstep + 1 candidate scales. Returns
/// (scale, -min) and fills `l`.
fn make_qkx2_quants(x: &[f32], w: &[f32], nmax: i32, l: &mut [u8]) -> (f32, f32) {
    let (rmin, rdelta, nstep) = (-1.0f32, 0.1f32, 20);
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.iter_mut().for_each(|v| *v = 0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += w[i] * diff * diff;
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let q = q as f32;
            sum_l += w[i] * q;
            sum_l2 += w[i] * q * q;
            sum_xl += w[i] * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += w[i] * diff * diff;
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `quantize_row_q4_K_ref`: per 32 values a (scale, min) pair from `make_qkx2_quants` with
/// weights av_x + |x|, both quantized to 6 bits against the super-block's f16 `d` / `dmin`,
/// then the codes recomputed against the rounded scales. Layout: see the crate documentation.
fn q4_k_block(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; 256];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().map(|v| v * v).sum();
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: Vec<f32> = xs.iter().map(|v| av_x + v.abs()).collect();
        let (s, m) = make_qkx2_quants(xs, &w, 15, &mut l[32 * j..32 * j + 32]);
        scales[j] = s;
        mins[j] = m;
        max_scale = if s > max_scale { s } else { max_scale };
        max_min = if m > max_min { m } else { max_min };
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let sc = &mut out[4..16];
    sc.iter_mut().for_each(|b| *b = 0);
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d16 = half::f16::from_f32(max_scale / 63.0);
    let dmin16 = half::f16::from_f32(max_min / 63.0);
    out[..2].copy_from_slice(&d16.to_le_bytes());
    out[2..4].copy_from_slice(&dmin16.to_le_bytes());
    for j in 0..8 {
        let (s, m) = crate::scalar::scale_min_k4(j, &out[4..16]);
        let d = d16.to_f32() * s as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin16.to_f32() * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, 15) as u8;
        }
    }
    let qs = &mut out[16..144];
    for (c, j) in (0..256).step_by(64).enumerate() {
        for i in 0..32 {
            qs[32 * c + i] = l[j + i] | (l[j + i + 32] << 4);
        }
    }
}
