//! Reference implementations: plain Rust, written to be obviously correct, and the fallback on
//! CPUs without a SIMD path. Block layouts follow ggml `ggml-common.h` and the value formulas
//! follow `dequantize_row_*` in ggml `ggml-quants.c`.
//!
//! `matmul` here is defined literally as the f32 dot product of the dequantized weight row with
//! the dequantized activation row (`d * q` per activation value). The SIMD kernels compute the
//! same sum with integer arithmetic; the two differ only by float rounding.

use crate::{act_format, act_row_bytes, ActFormat, GgmlType};
use half::{bf16, f16};

#[inline]
pub(crate) fn rd_f16(b: &[u8], o: usize) -> f32 {
    f16::from_le_bytes([b[o], b[o + 1]]).to_f32()
}

#[inline]
pub(crate) fn rd_f32(b: &[u8], o: usize) -> f32 {
    f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

#[inline]
fn rd_i16(b: &[u8], o: usize) -> i16 {
    i16::from_le_bytes([b[o], b[o + 1]])
}

/// E8M0 scale halved, 2^(e-128): MXFP4's E2M1 values are stored doubled (`KVALUES_MXFP4`), so
/// ggml multiplies by half the E8M0 scale (ggml-impl.h `ggml_e8m0_to_fp32_half`). For e < 2 the
/// result is an f32 denormal.
#[inline]
pub(crate) fn e8m0_half(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits(((e as u32) - 1) << 23)
    }
}

/// E2M1 values ×2 (ggml-common.h `kvalues_mxfp4`): {0, .5, 1, 1.5, 2, 3, 4, 6} with a sign bit.
pub(crate) const KVALUES_MXFP4: [i8; 16] =
    [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// The 6-bit (scale, min) pair `j` (0..8) of Q4_K/Q5_K's 12 scale bytes
/// (ggml-quants.c `get_scale_min_k4`): pairs 0..3 are the low 6 bits of bytes j and j+4;
/// pairs 4..7 take their low 4 bits from byte j+4's nibbles and their top 2 bits from the
/// spare top bits of bytes j-4 (scale) and j (min).
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K/Q5_K's 12 scale bytes, read as three little-endian u32 words, rearranged into four
/// words of four 6-bit values each: scales 0..3, scales 4..7, mins 0..3, mins 4..7 (the layout
/// of [`scale_min_k4`], four at a time as ggml's SIMD code computes it). Shared by the SIMD
/// kernels, which widen the bytes into their own registers.
#[inline(always)]
pub(crate) fn k4_scale_words([u0, u1, u2]: [u32; 3]) -> [u32; 4] {
    const KM1: u32 = 0x3f3f_3f3f;
    const KM2: u32 = 0x0f0f_0f0f;
    const KM3: u32 = 0x0303_0303;
    [
        u0 & KM1,
        (u2 & KM2) | (((u0 >> 6) & KM3) << 4),
        u1 & KM1,
        ((u2 >> 4) & KM2) | (((u1 >> 6) & KM3) << 4),
    ]
}

/// Q3_K's 12 scale bytes, read as three little-endian u32 words, rearranged into four words
/// holding the 16 unsigned 6-bit scales in order (the layout of [`q3k_scales`], before its −32).
#[inline(always)]
pub(crate) fn q3k_scale_words([a0, a1, t]: [u32; 3]) -> [u32; 4] {
    const KM1: u32 = 0x0303_0303;
    const KM2: u32 = 0x0f0f_0f0f;
    [
        (a0 & KM2) | ((t & KM1) << 4),
        (a1 & KM2) | (((t >> 2) & KM1) << 4),
        ((a0 >> 4) & KM2) | (((t >> 4) & KM1) << 4),
        ((a1 >> 4) & KM2) | (((t >> 6) & KM1) << 4),
    ]
}

/// Q3_K's 16 signed 6-bit scales from its 12 packed bytes (ggml-quants.c `dequantize_row_q3_K`):
/// the low 4 bits of scale i are nibble (i % 8) of bytes 0..8 (low nibbles for i < 8, high for
/// i ≥ 8), the top 2 bits are the 2-bit field (i / 4 … ) of bytes 8..12: scale i takes bits
/// 2*(i/4)..2*(i/4)+2 of byte 8 + (i % 4). Result is the stored value minus 32.
pub(crate) fn q3k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = if i < 8 { s[i] & 0xF } else { s[i - 8] >> 4 };
        let high = (s[8 + (i % 4)] >> (2 * (i / 4))) & 3;
        *o = ((low | (high << 4)) as i8) - 32;
    }
    out
}

/// Dequantize one block of a block-quantized type (`out.len() == wtype.block_len()`).
pub(crate) fn dequantize_block(wtype: GgmlType, b: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    match wtype {
        Q4_0 => {
            let d = rd_f16(b, 0);
            for j in 0..16 {
                out[j] = d * ((b[2 + j] & 0xF) as i32 - 8) as f32;
                out[j + 16] = d * ((b[2 + j] >> 4) as i32 - 8) as f32;
            }
        }
        Q4_1 => {
            let (d, m) = (rd_f16(b, 0), rd_f16(b, 2));
            for j in 0..16 {
                out[j] = d * (b[4 + j] & 0xF) as f32 + m;
                out[j + 16] = d * (b[4 + j] >> 4) as f32 + m;
            }
        }
        Q5_0 => {
            let d = rd_f16(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for j in 0..16 {
                let h0 = ((qh >> j) & 1) << 4;
                let h1 = ((qh >> (j + 16)) & 1) << 4;
                out[j] = d * (((b[6 + j] & 0xF) as u32 | h0) as i32 - 16) as f32;
                out[j + 16] = d * (((b[6 + j] >> 4) as u32 | h1) as i32 - 16) as f32;
            }
        }
        Q5_1 => {
            let (d, m) = (rd_f16(b, 0), rd_f16(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for j in 0..16 {
                let h0 = ((qh >> j) & 1) << 4;
                let h1 = ((qh >> (j + 16)) & 1) << 4;
                out[j] = d * ((b[8 + j] & 0xF) as u32 | h0) as f32 + m;
                out[j + 16] = d * ((b[8 + j] >> 4) as u32 | h1) as f32 + m;
            }
        }
        Q8_0 => {
            let d = rd_f16(b, 0);
            for j in 0..32 {
                out[j] = d * (b[2 + j] as i8) as f32;
            }
        }
        MXFP4 => {
            let d = e8m0_half(b[0]);
            for j in 0..16 {
                out[j] = d * KVALUES_MXFP4[(b[1 + j] & 0xF) as usize] as f32;
                out[j + 16] = d * KVALUES_MXFP4[(b[1 + j] >> 4) as usize] as f32;
            }
        }
        Q2_K => {
            // scales[16] @0, qs[64] @16, d @80, dmin @82. Values come in two halves of 128;
            // within a half, 2-bit field `shift` of qs[l] (l < 32) is value 32*shift/2 + l, and
            // each run of 16 values has its own 4-bit scale (low nibble) and min (high nibble).
            let (d, dmin) = (rd_f16(b, 80), rd_f16(b, 82));
            let mut is = 0;
            let mut y = 0;
            for n in 0..2 {
                let q = &b[16 + 32 * n..16 + 32 * n + 32];
                for shift in (0..8).step_by(2) {
                    for half in 0..2 {
                        let sc = b[is];
                        is += 1;
                        let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                        for l in 0..16 {
                            out[y] = dl * ((q[16 * half + l] >> shift) & 3) as f32 - ml;
                            y += 1;
                        }
                    }
                }
            }
        }
        Q3_K => {
            // hmask[32] @0, qs[64] @32, scales[12] @96, d @108. Same 2-bit walk as Q2_K; the
            // third bit comes from hmask bit (value / 32) of hmask[value % 32]; a *clear* bit
            // means "subtract 4".
            let d = rd_f16(b, 108);
            let scales = q3k_scales(&b[96..108]);
            let mut is = 0;
            let mut y = 0;
            let mut m = 1u8;
            for n in 0..2 {
                let q = &b[32 + 32 * n..32 + 32 * n + 32];
                for shift in (0..8).step_by(2) {
                    for half in 0..2 {
                        let dl = d * scales[is] as f32;
                        is += 1;
                        for l in 0..16 {
                            let idx = 16 * half + l;
                            let hb = if b[idx] & m != 0 { 0 } else { 4 };
                            out[y] = dl * (((q[idx] >> shift) & 3) as i32 - hb) as f32;
                            y += 1;
                        }
                    }
                    m <<= 1;
                }
            }
        }
        Q4_K => {
            // d @0, dmin @2, scales[12] @4, qs[128] @16. Four groups of 64: the low nibbles of
            // qs[32g..32g+32] are values 64g.., the high nibbles values 64g+32..
            let (d, dmin) = (rd_f16(b, 0), rd_f16(b, 2));
            let sc = &b[4..16];
            for g in 0..4 {
                let q = &b[16 + 32 * g..16 + 32 * g + 32];
                let (s1, m1) = scale_min_k4(2 * g, sc);
                let (s2, m2) = scale_min_k4(2 * g + 1, sc);
                for l in 0..32 {
                    out[64 * g + l] = d * s1 as f32 * (q[l] & 0xF) as f32 - dmin * m1 as f32;
                    out[64 * g + 32 + l] = d * s2 as f32 * (q[l] >> 4) as f32 - dmin * m2 as f32;
                }
            }
        }
        Q5_K => {
            // d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48. As Q4_K, plus the 5th bit
            // of value 32*c + l is bit c of qh[l].
            let (d, dmin) = (rd_f16(b, 0), rd_f16(b, 2));
            let sc = &b[4..16];
            let qh = &b[16..48];
            for g in 0..4 {
                let q = &b[48 + 32 * g..48 + 32 * g + 32];
                let (s1, m1) = scale_min_k4(2 * g, sc);
                let (s2, m2) = scale_min_k4(2 * g + 1, sc);
                for l in 0..32 {
                    let h1 = ((qh[l] >> (2 * g)) & 1) << 4;
                    let h2 = ((qh[l] >> (2 * g + 1)) & 1) << 4;
                    out[64 * g + l] = d * s1 as f32 * ((q[l] & 0xF) | h1) as f32 - dmin * m1 as f32;
                    out[64 * g + 32 + l] =
                        d * s2 as f32 * ((q[l] >> 4) | h2) as f32 - dmin * m2 as f32;
                }
            }
        }
        Q6_K => {
            // ql[128] @0, qh[64] @128, scales[16] (i8) @192, d @208. Two halves of 128; in half
            // n, value 32*c + l (c = 0..4, l < 32) takes low nibble (c = 0, 1) or high nibble
            // (c = 2, 3) of ql[64n + l + 32*(c&1)] and bits 2c..2c+2 of qh[32n + l].
            let d = rd_f16(b, 208);
            for n in 0..2 {
                let ql = &b[64 * n..64 * n + 64];
                let qh = &b[128 + 32 * n..128 + 32 * n + 32];
                for c in 0..4 {
                    for l in 0..32 {
                        let lo = if c < 2 {
                            ql[l + 32 * (c & 1)] & 0xF
                        } else {
                            ql[l + 32 * (c & 1)] >> 4
                        };
                        let hi = (qh[l] >> (2 * c)) & 3;
                        let q = (lo | (hi << 4)) as i32 - 32;
                        let v = 128 * n + 32 * c + l;
                        let sc = b[192 + v / 16] as i8;
                        out[v] = d * sc as f32 * q as f32;
                    }
                }
            }
        }
        _ => panic!("dequantize: {wtype} is not a supported block type"),
    }
}

/// Dequantize one row of `dst.len()` values. Panics if the type is unsupported, the length is
/// not a multiple of the block length, or `src` is too short.
pub fn dequantize_row(wtype: GgmlType, src: &[u8], dst: &mut [f32]) {
    let n = dst.len();
    if matches!(wtype, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        let need = n * wtype.block_bytes();
        assert!(
            src.len() >= need,
            "dequantize_row: {} bytes given, {wtype} row of {n} needs {need}",
            src.len()
        );
    }
    match wtype {
        GgmlType::F32 => {
            for (i, v) in dst.iter_mut().enumerate() {
                *v = rd_f32(src, 4 * i);
            }
        }
        GgmlType::F16 => {
            for (i, v) in dst.iter_mut().enumerate() {
                *v = rd_f16(src, 2 * i);
            }
        }
        GgmlType::BF16 => {
            for (i, v) in dst.iter_mut().enumerate() {
                *v = bf16::from_le_bytes([src[2 * i], src[2 * i + 1]]).to_f32();
            }
        }
        _ => {
            assert!(
                crate::is_supported(wtype),
                "dequantize_row: {wtype} is not supported"
            );
            let (bl, bb) = (wtype.block_len(), wtype.block_bytes());
            assert!(
                n % bl == 0,
                "dequantize_row: {n} values is not a multiple of the {wtype} block length {bl}"
            );
            assert!(
                src.len() >= n / bl * bb,
                "dequantize_row: {} bytes given, {wtype} row of {n} needs {}",
                src.len(),
                n / bl * bb
            );
            for (i, o) in dst.chunks_exact_mut(bl).enumerate() {
                dequantize_block(wtype, &src[i * bb..(i + 1) * bb], o);
            }
        }
    }
}

/// Quantize `x` to int8 with one symmetric scale: returns d = amax/127 and writes
/// q = round_ties_even(x * (127/amax)).
#[inline]
fn quant_block(x: &[f32], q: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (o, &v) in q.iter_mut().zip(x) {
        // `as i8` saturates (and maps NaN to 0); with id = 127/amax, |v*id| <= 127 anyway.
        let qi = (v * id).round_ties_even() as i8;
        sum += qi as i32;
        *o = qi as u8;
    }
    (d, sum)
}

/// The scale `d` and the sum term `s` of a 32-block activation with integer sum `sum`, as
/// ggml's blocks hold them (ggml-common.h): `block_q8_0` and `block_q8_1` store d as f16, so d
/// is rounded through f16 and the integer dot products see llama.cpp's exact activation scales
/// (in f32 it differs by up to 2^-11 per block, which measurably moves every matmul). `s`:
/// `block_q8_1` stores `s = f16(d·Σq)` from the unrounded d (quantize_row_q8_1), and Q4_1/Q5_1
/// use it for their min term, so Q8_1 takes that value; `block_q8_0` has no s, and our kernels
/// use s only to fold the Q4_0/Q5_0/MXFP4 offsets out of the integer dot, so for Q8_0 it is
/// `f16(d)·Σq` in f32, which is exact (an 11-bit mantissa times |Σq| ≤ 4064 fits in 24 bits):
/// the fold then equals ggml's per-value offset.
#[inline]
pub(crate) fn act_scales(fmt: ActFormat, d: f32, sum: f32) -> (f32, f32) {
    let h = |v: f32| half::f16::from_f32(v).to_f32();
    match fmt {
        ActFormat::Q8_1 => (h(d), h(d * sum)),
        _ => (h(d), h(d) * sum),
    }
}

/// Quantize one activation row (layouts: crate docs). Panics on a size mismatch.
pub fn quantize_act(fmt: ActFormat, x: &[f32], out: &mut [u8]) {
    crate::check_act(fmt, x, out);
    let k = x.len();
    match fmt {
        ActFormat::F32 => {
            for (i, v) in x.iter().enumerate() {
                out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        ActFormat::Q8_0 | ActFormat::Q8_1 => {
            let nb = k / 32;
            let (qs, rest) = out.split_at_mut(k);
            for b in 0..nb {
                let (d, sum) = quant_block(&x[32 * b..32 * b + 32], &mut qs[32 * b..32 * b + 32]);
                let (d, s) = act_scales(fmt, d, sum as f32);
                rest[4 * b..4 * b + 4].copy_from_slice(&d.to_le_bytes());
                rest[4 * nb + 4 * b..4 * nb + 4 * b + 4].copy_from_slice(&s.to_le_bytes());
            }
        }
        ActFormat::Q8_K => {
            let nb = k / 256;
            let (qs, rest) = out.split_at_mut(k);
            for b in 0..nb {
                let q = &mut qs[256 * b..256 * b + 256];
                let (d, _) = quant_block(&x[256 * b..256 * b + 256], q);
                rest[4 * b..4 * b + 4].copy_from_slice(&d.to_le_bytes());
                for g in 0..16 {
                    let s: i32 = q[16 * g..16 * g + 16].iter().map(|&v| v as i8 as i32).sum();
                    let o = 4 * nb + 2 * (16 * b + g);
                    rest[o..o + 2].copy_from_slice(&(s as i16).to_le_bytes());
                }
            }
        }
    }
}

/// Dequantize activation block `b` of a quantized activation row (`out.len()` = block length).
fn dequantize_act_block(fmt: ActFormat, row: &[u8], k: usize, b: usize, out: &mut [f32]) {
    let bl = out.len();
    let d = rd_f32(row, k + 4 * b);
    let _ = fmt;
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * (row[bl * b + j] as i8) as f32;
    }
}

/// Reference matmul: `out[t*out_stride + r] = Σ dequant(w_r) · dequant(act_t)`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    wtype: GgmlType,
    k: usize,
    w: &[u8],
    n_rows: usize,
    act: &[u8],
    n_tok: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    crate::check_matmul(wtype, k, w, n_rows, act, n_tok, out, out_stride);
    let fmt = act_format(wtype);
    let rb = wtype.row_bytes(k).unwrap();
    let ab = act_row_bytes(fmt, k);
    if fmt == ActFormat::F32 {
        let mut wf = [0f32; 64];
        for r in 0..n_rows {
            for t in 0..n_tok {
                out[t * out_stride + r] = 0.0;
            }
            let row = &w[r * rb..(r + 1) * rb];
            for c in (0..k).step_by(64) {
                let n = (k - c).min(64);
                let es = rb / k; // bytes per element
                dequantize_row(wtype, &row[c * es..(c + n) * es], &mut wf[..n]);
                for t in 0..n_tok {
                    let a = &act[t * ab + 4 * c..];
                    let mut s = 0f32;
                    for j in 0..n {
                        s += wf[j] * rd_f32(a, 4 * j);
                    }
                    out[t * out_stride + r] += s;
                }
            }
        }
        return;
    }
    let (bl, bb) = (wtype.block_len(), wtype.block_bytes());
    let abl = crate::act_block_len(fmt);
    debug_assert_eq!(bl % abl, 0);
    let mut wf = [0f32; 256];
    let mut af = [0f32; 256];
    // Q4_1/Q5_1 take their min term from the activation block's s, as ggml's
    // ggml_vec_dot_q4_1_q8_1 does (`d_x·d_y·Σq_x·q_y + m_x·s_y`, s = f16(d·Σq) in block_q8_1):
    // the block is dequantized with m = 0 and m·s is added.
    let with_min = matches!(wtype, GgmlType::Q4_1 | GgmlType::Q5_1);
    let mut blk = [0u8; 32];
    for r in 0..n_rows {
        for t in 0..n_tok {
            out[t * out_stride + r] = 0.0;
        }
        for b in 0..k / bl {
            let wb = &w[r * rb + b * bb..r * rb + (b + 1) * bb];
            let m = if with_min {
                blk[..bb].copy_from_slice(wb);
                blk[2..4].fill(0);
                dequantize_block(wtype, &blk[..bb], &mut wf[..bl]);
                rd_f16(wb, 2)
            } else {
                dequantize_block(wtype, wb, &mut wf[..bl]);
                0.0
            };
            for t in 0..n_tok {
                let arow = &act[t * ab..(t + 1) * ab];
                // A weight block spans bl/abl activation blocks (1 except for 32-blocks).
                for sub in 0..bl / abl {
                    dequantize_act_block(
                        fmt,
                        arow,
                        k,
                        b * (bl / abl) + sub,
                        &mut af[sub * abl..(sub + 1) * abl],
                    );
                }
                let mut s: f32 = wf[..bl].iter().zip(&af[..bl]).map(|(x, y)| x * y).sum();
                if with_min {
                    s += m * rd_f32(arow, k + 4 * (k / 32) + 4 * b);
                }
                out[t * out_stride + r] += s;
            }
        }
    }
}

/// Σ a\[i\]·b\[i\].
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Σ a\[i\]·b\[i\] with `a` in f16.
pub fn dot_f16(a: &[f16], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f16: length mismatch");
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y).sum()
}

/// y\[i\] += a·x\[i\].
pub fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
    assert_eq!(y.len(), x.len(), "axpy_f16: length mismatch");
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi.to_f32();
    }
}

/// y\[i\] += a·x\[i\].
pub fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len(), "axpy_f32: length mismatch");
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = a.mul_add(*xi, *yi);
    }
}

/// Widen f16 to f32 (exact).
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32: length mismatch");
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

/// Round to nearest f16, ties to even.
pub fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16: length mismatch");
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(*s);
    }
}

/// Read helper used by tests / benches: bsums of a Q8_K row (group `g` of 16 values).
#[doc(hidden)]
pub fn q8k_bsum(row: &[u8], k: usize, g: usize) -> i16 {
    rd_i16(row, k + 4 * (k / 256) + 2 * g)
}
