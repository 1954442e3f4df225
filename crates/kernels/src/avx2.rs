//! x86-64 AVX2 + FMA + F16C kernels. Every function here is `unsafe` and compiled with those
//! target features; the caller (lib.rs) guarantees the CPU has them (runtime detection) and
//! that all slice sizes were validated.
//!
//! Integer dot products use `pmaddubsw` (unsigned weight byte × signed activation byte, pairs
//! summed into i16) then `pmaddwd` (i16 pairs summed into i32). Weight formats with an offset
//! (Q4_0's -8, Q5_0's -16, MXFP4 shifted by +12 to be unsigned, K-quants' mins) keep their
//! unsigned codes and fold the offset in through the activation block sums (`s` for Q8_0/Q8_1,
//! `bsums` for Q8_K), as ggml does for Q4_1 and the K-quants.

use crate::scalar::e8m0_half;
use crate::{ActFormat, GgmlType};
use half::f16;
use std::arch::x86_64::*;

// ---------------------------------------------------------------------------------------------
// small helpers

#[inline(always)]
pub(crate) unsafe fn ld_f32(p: *const u8) -> f32 {
    (p as *const f32).read_unaligned()
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld_f16(p: *const u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
        (p as *const u16).read_unaligned() as i32,
    )))
}

/// Two consecutive f16 (d, m) → (f32, f32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld_f16x2(p: *const u8) -> (f32, f32) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const u32).read_unaligned() as i32));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// 16 bytes of nibbles → 32 bytes: low nibbles (values 0..16) then high nibbles (16..32),
/// the Q4_0/Q4_1/Q5_x/MXFP4 order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    // Same 16 bytes in both halves (a load-port broadcast, no shuffle), the upper half shifted
    // right by 4 in 64-bit lanes: after the mask each byte holds its own high nibble (the bits
    // shifted in from the neighbouring byte land in the masked-off top nibble).
    let x = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let v = _mm256_srlv_epi64(x, _mm256_setr_epi64x(0, 0, 4, 4));
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// 32 bits → 32 bytes, byte j = 0x10 if bit j is set else 0 (the 5th bit of Q5_0/Q5_1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits32_to_0x10(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    // Byte j takes source byte j/8.
    let shuf = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let v = _mm256_shuffle_epi8(v, shuf);
    // Select bit j%8 of each byte.
    let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let m = _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
    _mm256_and_si256(m, _mm256_set1_epi8(0x10))
}

// ---------------------------------------------------------------------------------------------
// activation quantization

/// Quantize 32 floats (bit-identical to `scalar::quant_block`): returns (d, Σq).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant32(x: *const f32, q: *mut u8, v: &mut [__m256i; 4]) -> (f32, f32) {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    let x0 = _mm256_loadu_ps(x);
    let x1 = _mm256_loadu_ps(x.add(8));
    let x2 = _mm256_loadu_ps(x.add(16));
    let x3 = _mm256_loadu_ps(x.add(24));
    let m = _mm256_max_ps(
        _mm256_max_ps(_mm256_and_ps(x0, abs_mask), _mm256_and_ps(x1, abs_mask)),
        _mm256_max_ps(_mm256_and_ps(x2, abs_mask), _mm256_and_ps(x3, abs_mask)),
    );
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    let d = amax / 127.0;
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let idv = _mm256_set1_ps(id);
    const R: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let i0 = _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(x0, idv)));
    let i1 = _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(x1, idv)));
    let i2 = _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(x2, idv)));
    let i3 = _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(x3, idv)));
    *v = [i0, i1, i2, i3];
    let sum = hsum_epi32(_mm256_add_epi32(
        _mm256_add_epi32(i0, i1),
        _mm256_add_epi32(i2, i3),
    ));
    // Pack i32 → i16 → i8; the packs interleave 128-bit lanes, the permute restores order.
    let p01 = _mm256_packs_epi32(i0, i1);
    let p23 = _mm256_packs_epi32(i2, i3);
    let p = _mm256_packs_epi16(p01, p23);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(q as *mut __m256i, p);
    (d, sum as f32)
}

pub(crate) unsafe fn quantize_act(fmt: ActFormat, x: &[f32], out: &mut [u8]) {
    quantize_act_impl(fmt, x, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_act_impl(fmt: ActFormat, x: &[f32], out: &mut [u8]) {
    let k = x.len();
    let xp = x.as_ptr();
    let op = out.as_mut_ptr();
    let mut v = [_mm256_setzero_si256(); 4];
    match fmt {
        ActFormat::F32 => {
            std::ptr::copy_nonoverlapping(xp as *const u8, op, 4 * k);
        }
        ActFormat::Q8_0 | ActFormat::Q8_1 => {
            let nb = k / 32;
            for b in 0..nb {
                let (d, sum) = quant32(xp.add(32 * b), op.add(32 * b), &mut v);
                let (d, s) = crate::scalar::act_scales(fmt, d, sum);
                (op.add(k + 4 * b) as *mut f32).write_unaligned(d);
                (op.add(k + 4 * nb + 4 * b) as *mut f32).write_unaligned(s);
            }
        }
        ActFormat::Q8_K => {
            let nb = k / 256;
            for b in 0..nb {
                let xb = xp.add(256 * b);
                // amax over the whole 256-block first: one scale per block.
                let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
                let mut m = _mm256_setzero_ps();
                for i in 0..32 {
                    m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xb.add(8 * i)), abs_mask));
                }
                let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
                let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
                let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
                let d = amax / 127.0;
                let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
                let idv = _mm256_set1_ps(id);
                const R: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
                for c in 0..8 {
                    let xc = xb.add(32 * c);
                    let i0 = _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(
                        _mm256_loadu_ps(xc),
                        idv,
                    )));
                    let i1 = _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(
                        _mm256_loadu_ps(xc.add(8)),
                        idv,
                    )));
                    let i2 = _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(
                        _mm256_loadu_ps(xc.add(16)),
                        idv,
                    )));
                    let i3 = _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(
                        _mm256_loadu_ps(xc.add(24)),
                        idv,
                    )));
                    let s0 = hsum_epi32(_mm256_add_epi32(i0, i1)) as i16;
                    let s1 = hsum_epi32(_mm256_add_epi32(i2, i3)) as i16;
                    let bs = op.add(k + 4 * nb + 2 * (16 * b + 2 * c)) as *mut i16;
                    bs.write_unaligned(s0);
                    bs.add(1).write_unaligned(s1);
                    let p =
                        _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
                    let p =
                        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                    _mm256_storeu_si256(op.add(256 * b + 32 * c) as *mut __m256i, p);
                }
                (op.add(k + 4 * b) as *mut f32).write_unaligned(d);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 32-value block formats × Q8_0/Q8_1 activations

/// A weight format with 32-value blocks, decoded to 32 unsigned (or, for Q8_0, signed) bytes
/// in value order, a scale `d`, and a coefficient `c` for the activation block sum `s`:
/// dot(block, act) = d · d_act · Σ q·a + c · s.
pub(crate) trait B32 {
    const BYTES: usize;
    /// Whether `load` returns signed bytes (dot via the sign trick).
    const SIGNED: bool = false;
    /// Whether the `c · s` term exists.
    const HAS_C: bool = true;
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32);
    /// Scales d and coefficients c of the same block in four rows, as [row0..row3] vectors.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dc4(p: [*const u8; 4]) -> (__m128, __m128) {
        let (_, d0, c0) = Self::load(p[0]);
        let (_, d1, c1) = Self::load(p[1]);
        let (_, d2, c2) = Self::load(p[2]);
        let (_, d3, c3) = Self::load(p[3]);
        (_mm_setr_ps(d0, d1, d2, d3), _mm_setr_ps(c0, c1, c2, c3))
    }
}

/// Four f16 scales → [d0..d3] with one conversion.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn d4_f16(p: [*const u8; 4]) -> __m128 {
    let u = |q: *const u8| (q as *const i16).read_unaligned();
    _mm_cvtph_ps(_mm_setr_epi16(
        u(p[0]),
        u(p[1]),
        u(p[2]),
        u(p[3]),
        0,
        0,
        0,
        0,
    ))
}

/// Four (f16 d, f16 m) pairs → ([d0..d3], [m0..m3]) with one conversion.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dm4(p: [*const u8; 4]) -> (__m128, __m128) {
    let u = |q: *const u8| (q as *const i32).read_unaligned();
    let v = _mm256_cvtph_ps(_mm_setr_epi32(u(p[0]), u(p[1]), u(p[2]), u(p[3])));
    let v = _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    (_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1))
}

pub(crate) struct Q40;
pub(crate) struct Q41;
pub(crate) struct Q50;
pub(crate) struct Q51;
pub(crate) struct Q80;
pub(crate) struct Mx4;

impl B32 for Q40 {
    const BYTES: usize = 18;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        let d = ld_f16(p);
        (nibbles32(p.add(2)), d, -8.0 * d)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dc4(p: [*const u8; 4]) -> (__m128, __m128) {
        let d = d4_f16(p);
        (d, _mm_mul_ps(d, _mm_set1_ps(-8.0)))
    }
}

impl B32 for Q41 {
    const BYTES: usize = 20;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        let (d, m) = ld_f16x2(p);
        (nibbles32(p.add(4)), d, m)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dc4(p: [*const u8; 4]) -> (__m128, __m128) {
        dm4(p)
    }
}

impl B32 for Q50 {
    const BYTES: usize = 22;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        let d = ld_f16(p);
        let qh = (p.add(2) as *const u32).read_unaligned();
        (
            _mm256_or_si256(nibbles32(p.add(6)), bits32_to_0x10(qh)),
            d,
            -16.0 * d,
        )
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dc4(p: [*const u8; 4]) -> (__m128, __m128) {
        let d = d4_f16(p);
        (d, _mm_mul_ps(d, _mm_set1_ps(-16.0)))
    }
}

impl B32 for Q51 {
    const BYTES: usize = 24;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        let (d, m) = ld_f16x2(p);
        let qh = (p.add(4) as *const u32).read_unaligned();
        (
            _mm256_or_si256(nibbles32(p.add(8)), bits32_to_0x10(qh)),
            d,
            m,
        )
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dc4(p: [*const u8; 4]) -> (__m128, __m128) {
        dm4(p)
    }
}

impl B32 for Q80 {
    const BYTES: usize = 34;
    const SIGNED: bool = true;
    const HAS_C: bool = false;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        (
            _mm256_loadu_si256(p.add(2) as *const __m256i),
            ld_f16(p),
            0.0,
        )
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dc4(p: [*const u8; 4]) -> (__m128, __m128) {
        let d = d4_f16(p);
        (d, _mm_setzero_ps())
    }
}

impl B32 for Mx4 {
    const BYTES: usize = 17;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        // kvalues_mxfp4 + 12, so every code is a non-negative byte (0..=24); the +12 is
        // removed through the activation sum (ik_llama.cpp's trick).
        let lut = _mm256_setr_epi8(
            12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0, 12, 13, 14, 15, 16, 18, 20,
            24, 12, 11, 10, 9, 8, 6, 4, 0,
        );
        let d = e8m0_half(*p);
        (_mm256_shuffle_epi8(lut, nibbles32(p.add(1))), d, -12.0 * d)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dc4(p: [*const u8; 4]) -> (__m128, __m128) {
        // `e8m0_half` for four rows: 2^(e-128) is the f32 with exponent field e-1 for e >= 2,
        // and the denormals 0x00200000 << e for e < 2.
        let e = _mm_setr_epi32(*p[0] as i32, *p[1] as i32, *p[2] as i32, *p[3] as i32);
        let norm = _mm_slli_epi32(_mm_sub_epi32(e, _mm_set1_epi32(1)), 23);
        let den = _mm_sllv_epi32(_mm_set1_epi32(0x0020_0000), e);
        let small = _mm_cmpgt_epi32(_mm_set1_epi32(2), e);
        let d = _mm_castsi128_ps(_mm_blendv_epi8(norm, den, small));
        (d, _mm_mul_ps(d, _mm_set1_ps(-12.0)))
    }
}

/// The integer block sums of one weight block `q` with four activation blocks, packed as
/// [t0 t1 t2 t3 | t0 t1 t2 t3]: lane i of the low half is Σ over the block's first 16 values,
/// of the high half over the last 16. Every 32-block kernel reduces a (row, token) pair to
/// exactly these two exact integers per block, so all of them can then apply the same float
/// operations (see "Batch invariance" in the crate docs). Unsigned formats add in i16 (4
/// `pmaddubsw` lanes of ≤ 2·31·127 fit); Q8_0 (signed, up to 2·128·127 per lane) widens to i32
/// first.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn isum4<B: B32>(q: __m256i, a0: __m256i, a1: __m256i, a2: __m256i, a3: __m256i) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    if B::SIGNED {
        let qa = _mm256_sign_epi8(q, q);
        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a0, q)), ones);
        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a1, q)), ones);
        let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a2, q)), ones);
        let p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a3, q)), ones);
        _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3))
    } else {
        let p0 = _mm256_maddubs_epi16(q, a0);
        let p1 = _mm256_maddubs_epi16(q, a1);
        let p2 = _mm256_maddubs_epi16(q, a2);
        let p3 = _mm256_maddubs_epi16(q, a3);
        _mm256_madd_epi16(
            _mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3)),
            ones,
        )
    }
}

/// Final value of a (row, token) pair from its packed lanes: (Σ first halves + Σ second
/// halves) + offset term. Every 32-block kernel ends with exactly this, lane-wise.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn finish4(acc: __m256, corr: __m128) -> __m128 {
    _mm_add_ps(
        _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)),
        corr,
    )
}

/// RM weight rows × exactly 4 tokens, for prefill. Instead of one float accumulator per
/// (row, token) — 16 for a 4×4 tile, more than AVX2's 16 registers, and a convert + scale + FMA
/// per block each — the 4 tokens' integer block sums of one row are packed into one vector with
/// horizontal adds ([t0 t1 t2 t3 | t0 t1 t2 t3], low/high 16 values of the block), so each
/// (row, block) costs a single convert and FMA with the scale vector d·[da_t0..da_t3].
/// Unsigned formats add in i16 (4 `pmaddubsw` lanes of ≤ 2·31·127 fit); Q8_0 (signed, up to
/// 2·128·127 per lane) widens to i32 first.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile32_t4<B: B32, const RM: usize, const G: usize>(
    k: usize,
    w: *const u8,
    rb: usize,
    act: *const u8,
    ab: usize,
    out: *mut f32,
    os: usize,
) {
    let nb = k / 32;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); G]; RM];
    let mut corr = [[_mm_setzero_ps(); G]; RM];
    for b in 0..nb {
        let mut da8 = [_mm256_setzero_ps(); G];
        let mut sv = [_mm_setzero_ps(); G];
        for g in 0..G {
            let ap = act.add(4 * g * ab);
            let od = k + 4 * b;
            let da = _mm_setr_ps(
                ld_f32(ap.add(od)),
                ld_f32(ap.add(ab + od)),
                ld_f32(ap.add(2 * ab + od)),
                ld_f32(ap.add(3 * ab + od)),
            );
            da8[g] = _mm256_set_m128(da, da);
            if B::HAS_C {
                let o = k + 4 * nb + 4 * b;
                sv[g] = _mm_setr_ps(
                    ld_f32(ap.add(o)),
                    ld_f32(ap.add(ab + o)),
                    ld_f32(ap.add(2 * ab + o)),
                    ld_f32(ap.add(3 * ab + o)),
                );
            }
        }
        for r in 0..RM {
            let (q, d, c) = B::load(w.add(r * rb + b * B::BYTES));
            let dv = _mm256_set1_ps(d);
            for g in 0..G {
                let ap = act.add(4 * g * ab + 32 * b);
                let a0 = _mm256_loadu_si256(ap as *const __m256i);
                let a1 = _mm256_loadu_si256(ap.add(ab) as *const __m256i);
                let a2 = _mm256_loadu_si256(ap.add(2 * ab) as *const __m256i);
                let a3 = _mm256_loadu_si256(ap.add(3 * ab) as *const __m256i);
                let isum = if B::SIGNED {
                    let qa = _mm256_sign_epi8(q, q);
                    let p0 =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a0, q)), ones);
                    let p1 =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a1, q)), ones);
                    let p2 =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a2, q)), ones);
                    let p3 =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a3, q)), ones);
                    _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3))
                } else {
                    let p0 = _mm256_maddubs_epi16(q, a0);
                    let p1 = _mm256_maddubs_epi16(q, a1);
                    let p2 = _mm256_maddubs_epi16(q, a2);
                    let p3 = _mm256_maddubs_epi16(q, a3);
                    _mm256_madd_epi16(
                        _mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3)),
                        ones,
                    )
                };
                acc[r][g] = _mm256_fmadd_ps(
                    _mm256_mul_ps(dv, da8[g]),
                    _mm256_cvtepi32_ps(isum),
                    acc[r][g],
                );
                if B::HAS_C {
                    corr[r][g] = _mm_fmadd_ps(_mm_set1_ps(c), sv[g], corr[r][g]);
                }
            }
        }
    }
    for r in 0..RM {
        for g in 0..G {
            let v = _mm_add_ps(
                _mm_add_ps(
                    _mm256_castps256_ps128(acc[r][g]),
                    _mm256_extractf128_ps(acc[r][g], 1),
                ),
                corr[r][g],
            );
            let mut t4 = [0f32; 4];
            _mm_storeu_ps(t4.as_mut_ptr(), v);
            for (t, v) in t4.iter().enumerate() {
                *out.add((4 * g + t) * os + r) = *v;
            }
        }
    }
}

/// RM weight rows × up to 4 tokens given by pointer (`toks` may repeat a token to pad; only the
/// first `nt` are stored): the 2–3 token remainder of a prefill or a small decode batch. The
/// same per-(row, token) operations as `tile32_t4` (one packed vector per row, lane-wise FMA,
/// `finish4`), so a pair's result does not depend on which of the two handled it.
// Not inlined: a once-per-call remainder that would only bloat `rows32` around the hot tiles.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile32_tp<B: B32, const RM: usize>(
    k: usize,
    w: *const u8,
    rb: usize,
    toks: [*const u8; 4],
    nt: usize,
    out: *mut f32,
    os: usize,
) {
    let nb = k / 32;
    let mut acc = [_mm256_setzero_ps(); RM];
    let mut corr = [_mm_setzero_ps(); RM];
    for b in 0..nb {
        let od = k + 4 * b;
        let da = _mm_setr_ps(
            ld_f32(toks[0].add(od)),
            ld_f32(toks[1].add(od)),
            ld_f32(toks[2].add(od)),
            ld_f32(toks[3].add(od)),
        );
        let da8 = _mm256_set_m128(da, da);
        let mut sv = _mm_setzero_ps();
        if B::HAS_C {
            let o = k + 4 * nb + 4 * b;
            sv = _mm_setr_ps(
                ld_f32(toks[0].add(o)),
                ld_f32(toks[1].add(o)),
                ld_f32(toks[2].add(o)),
                ld_f32(toks[3].add(o)),
            );
        }
        let a0 = _mm256_loadu_si256(toks[0].add(32 * b) as *const __m256i);
        let a1 = _mm256_loadu_si256(toks[1].add(32 * b) as *const __m256i);
        let a2 = _mm256_loadu_si256(toks[2].add(32 * b) as *const __m256i);
        let a3 = _mm256_loadu_si256(toks[3].add(32 * b) as *const __m256i);
        for r in 0..RM {
            let (q, d, c) = B::load(w.add(r * rb + b * B::BYTES));
            let isum = isum4::<B>(q, a0, a1, a2, a3);
            acc[r] = _mm256_fmadd_ps(
                _mm256_mul_ps(_mm256_set1_ps(d), da8),
                _mm256_cvtepi32_ps(isum),
                acc[r],
            );
            if B::HAS_C {
                corr[r] = _mm_fmadd_ps(_mm_set1_ps(c), sv, corr[r]);
            }
        }
    }
    for r in 0..RM {
        let mut t4 = [0f32; 4];
        _mm_storeu_ps(t4.as_mut_ptr(), finish4(acc[r], corr[r]));
        for t in 0..nt {
            *out.add(t * os + r) = t4[t];
        }
    }
}

/// Four weight rows × one token (decode). As in `tile32_t4` but packing the four *rows'*
/// block sums into one vector ([r0 r1 r2 r3 | r0 r1 r2 r3]), with the rows' scales converted
/// together. `rows` may repeat a row to pad a group; only the first `nr` results are stored, and
/// each row's result is independent of its group (so of how the caller split rows).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile32_r4<B: B32>(
    k: usize,
    rows: [*const u8; 4],
    act: *const u8,
    out: *mut f32,
    nr: usize,
) {
    let nb = k / 32;
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut corr = _mm_setzero_ps();
    for b in 0..nb {
        let a = _mm256_loadu_si256(act.add(32 * b) as *const __m256i);
        let da = _mm256_set1_ps(ld_f32(act.add(k + 4 * b)));
        let o = b * B::BYTES;
        let p = [
            rows[0].add(o),
            rows[1].add(o),
            rows[2].add(o),
            rows[3].add(o),
        ];
        if PF > 0 {
            // Decode streams weights from DRAM. The four rows are adjacent in memory (callers
            // pass consecutive rows; a padded group repeats one, which only wastes a hint), so
            // the group is one linear stream of 4·BYTES bytes per block: prefetch that stream
            // PF bytes ahead, one hint per cache line. Hinting each row's own stream instead
            // (4 hints per block, PF ahead in every row) streamed Q8_0 at 7-16 GB/s against
            // 22-40 GB/s this way (kbench --bw, AMD EPYC, 1-2 threads).
            // wrapping_add: the hint may point past the matrix (harmless for a prefetch).
            let ahead = rows[0].wrapping_add(PF + b * 4 * B::BYTES);
            let mut off = 0;
            while off < 4 * B::BYTES {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(off) as *const i8);
                off += 64;
            }
        }
        let q0 = B::load(p[0]).0;
        let q1 = B::load(p[1]).0;
        let q2 = B::load(p[2]).0;
        let q3 = B::load(p[3]).0;
        let isum = if B::SIGNED {
            let d = |q: __m256i| {
                _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(a, q)),
                    ones,
                )
            };
            _mm256_hadd_epi32(
                _mm256_hadd_epi32(d(q0), d(q1)),
                _mm256_hadd_epi32(d(q2), d(q3)),
            )
        } else {
            let h01 = _mm256_hadd_epi16(_mm256_maddubs_epi16(q0, a), _mm256_maddubs_epi16(q1, a));
            let h23 = _mm256_hadd_epi16(_mm256_maddubs_epi16(q2, a), _mm256_maddubs_epi16(q3, a));
            _mm256_madd_epi16(_mm256_hadd_epi16(h01, h23), ones)
        };
        let (d4, c4) = B::dc4(p);
        acc = _mm256_fmadd_ps(
            _mm256_mul_ps(_mm256_set_m128(d4, d4), da),
            _mm256_cvtepi32_ps(isum),
            acc,
        );
        if B::HAS_C {
            corr = _mm_fmadd_ps(c4, _mm_set1_ps(ld_f32(act.add(k + 4 * nb + 4 * b))), corr);
        }
    }
    store_rows(finish4(acc, corr), out, nr);
}

/// The first `nr` lanes of a 4-row decode result to `out[0..nr]` (the 4-row decode kernels
/// compute padded rows but never store them).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn store_rows(v: __m128, out: *mut f32, nr: usize) {
    let mut r4 = [0f32; 4];
    _mm_storeu_ps(r4.as_mut_ptr(), v);
    for (r, v) in r4.iter().enumerate().take(nr) {
        *out.add(r) = *v;
    }
}

/// Software prefetch distance (bytes) in the 4-row decode kernel; 0 disables. The hardware
/// prefetcher copes badly with four interleaved row streams: on Zen 3 (kbench, cold weights,
/// the earlier per-row hints)
/// 0 → 512 → 4096 bytes raised Q4_1 from ~10 to ~11 to ~15.5 GB/s and Q8_0 from 7 to ~11.5.
const PF: usize = 4096;

/// Token-tile variant for 32-blocks, for tuning experiments (kbench `--sweep`):
/// 0 = 4 rows × 8 tokens with packed token sums (default), 1 = 4 rows × 4 tokens packed,
/// 2 = 2 rows × 8 tokens packed. (A former variant 3 kept one accumulator per (row, token)
/// with a different reduction; it was removed because results must be batch-invariant.)
pub(crate) static TILE_CFG: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows32<B: B32, const RM: usize, const G: usize>(
    k: usize,
    w: *const u8,
    rb: usize,
    act: *const u8,
    ab: usize,
    n_tok: usize,
    out: *mut f32,
    os: usize,
) {
    let mut t = 0;
    while t + 4 * G <= n_tok {
        tile32_t4::<B, RM, G>(k, w, rb, act.add(t * ab), ab, out.add(t * os), os);
        t += 4 * G;
    }
    // A last group of 4 when G = 2 leaves 4..7 tokens.
    while t + 4 <= n_tok {
        tile32_t4::<B, RM, 1>(k, w, rb, act.add(t * ab), ab, out.add(t * os), os);
        t += 4;
    }
    let (a, o) = (act.add(t * ab), out.add(t * os));
    match n_tok - t {
        0 => {}
        1 => {
            let rows = [
                w,
                w.add(rb * 1.min(RM - 1)),
                w.add(rb * 2.min(RM - 1)),
                w.add(rb * 3.min(RM - 1)),
            ];
            tile32_r4::<B>(k, rows, a, o, RM.min(4));
        }
        nt @ 2..=3 => {
            // Pad the token group by repeating the last token (its lanes are computed, not
            // stored).
            let toks = [
                a,
                a.add(ab),
                a.add(ab * 2.min(nt - 1)),
                a.add(ab * (nt - 1)),
            ];
            tile32_tp::<B, RM>(k, w, rb, toks, nt, o, os);
        }
        _ => unreachable!(),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn mm32_cfg<B: B32, const RM: usize, const G: usize>(
    k: usize,
    w: *const u8,
    n_rows: usize,
    act: *const u8,
    n_tok: usize,
    out: *mut f32,
    os: usize,
) {
    let rb = k / 32 * B::BYTES;
    let ab = crate::act_row_bytes(ActFormat::Q8_0, k);
    let mut r = 0;
    while r + RM <= n_rows {
        rows32::<B, RM, G>(k, w.add(r * rb), rb, act, ab, n_tok, out.add(r), os);
        r += RM;
    }
    while r < n_rows {
        rows32::<B, 1, G>(k, w.add(r * rb), rb, act, ab, n_tok, out.add(r), os);
        r += 1;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mm32<B: B32>(
    k: usize,
    w: *const u8,
    n_rows: usize,
    act: *const u8,
    n_tok: usize,
    out: *mut f32,
    os: usize,
) {
    match TILE_CFG.load(std::sync::atomic::Ordering::Relaxed) {
        1 => mm32_cfg::<B, 4, 1>(k, w, n_rows, act, n_tok, out, os),
        2 => mm32_cfg::<B, 2, 2>(k, w, n_rows, act, n_tok, out, os),
        _ => mm32_cfg::<B, 4, 2>(k, w, n_rows, act, n_tok, out, os),
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants (256-value super-blocks) × Q8_K activations

/// A super-block decoded to a common form: 256 unsigned codes `q` (value order, 8 × 32),
/// per-16-value integer scales `sc` (expanded per 32-chunk: lanes 0..8 scale the first 16 codes,
/// lanes 8..16 the next 16) and per-16 integer mins, such that
/// value_i = d · sc_{i/16} · q_i − dmin · min_{i/16}.
#[repr(C, align(32))]
struct KCanon {
    q: [__m256i; 8],
    sc: [__m256i; 8],
    mins: __m256i,
    d: f32,
    dmin: f32,
}

trait BK {
    const BYTES: usize;
    unsafe fn unpack(p: *const u8, o: &mut KCanon);
}

struct Q2K;
struct Q3K;
struct Q4K;
struct Q5K;
struct Q6K;

/// Expand 16 per-16-value i16 scales (one vector) into the 8 per-chunk scale vectors:
/// chunk j needs s[2j] in its low 128 bits and s[2j+1] in its high 128 bits. Both live in
/// 32-bit element j, so broadcast that element (`vpermd`) and pick its halves (`vpshufb`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sc_from_i16(o: &mut KCanon, s16: __m256i) {
    let pick = _mm256_setr_epi8(
        0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
        2, 3,
    );
    for j in 0..8 {
        o.sc[j] = _mm256_shuffle_epi8(
            _mm256_permutevar8x32_epi32(s16, _mm256_set1_epi32(j as i32)),
            pick,
        );
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sc_pairs(o: &mut KCanon, s: &[i16; 16]) {
    sc_from_i16(o, _mm256_loadu_si256(s.as_ptr() as *const __m256i));
}

/// Byte-wise: 0xFF where `x & bit` is set (bit is a one-bit byte pattern), else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bit_set(x: __m256i, bit: i8) -> __m256i {
    let b = _mm256_set1_epi8(bit);
    _mm256_cmpeq_epi8(_mm256_and_si256(x, b), b)
}

impl BK for Q2K {
    const BYTES: usize = 84;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(p: *const u8, o: &mut KCanon) {
        let (d, dmin) = ld_f16x2(p.add(80));
        o.d = d;
        o.dmin = dmin;
        // scales[i]: low nibble = scale of sub-block i, high nibble = its min.
        let sb = _mm_loadu_si128(p as *const __m128i);
        let lo = _mm_set1_epi8(0x0F);
        sc_from_i16(o, _mm256_cvtepu8_epi16(_mm_and_si128(sb, lo)));
        o.mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), lo));
        let three = _mm256_set1_epi8(3);
        for n in 0..2 {
            let x = _mm256_loadu_si256(p.add(16 + 32 * n) as *const __m256i);
            o.q[4 * n] = _mm256_and_si256(x, three);
            o.q[4 * n + 1] = _mm256_and_si256(_mm256_srli_epi16(x, 2), three);
            o.q[4 * n + 2] = _mm256_and_si256(_mm256_srli_epi16(x, 4), three);
            o.q[4 * n + 3] = _mm256_and_si256(_mm256_srli_epi16(x, 6), three);
        }
    }
}

impl BK for Q3K {
    const BYTES: usize = 110;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(p: *const u8, o: &mut KCanon) {
        let d = ld_f16(p.add(108));
        o.d = d;
        o.dmin = d;
        // The 16 six-bit scales (layout in `scalar::q3k_scales`), four at a time in u32 words.
        let q = |i: usize| (p.add(96 + 4 * i) as *const u32).read_unaligned();
        let [s0, s1, s2, s3] = crate::scalar::q3k_scale_words([q(0), q(1), q(2)]);
        let s16 = _mm256_sub_epi16(
            _mm256_cvtepu8_epi16(_mm_setr_epi32(s0 as i32, s1 as i32, s2 as i32, s3 as i32)),
            _mm256_set1_epi16(32),
        );
        sc_from_i16(o, s16);
        // value = sc * (q3 - 4) with q3 = q2 + 4*hbit: min term 4*sc.
        o.mins = _mm256_slli_epi16(s16, 2);
        let three = _mm256_set1_epi8(3);
        let four = _mm256_set1_epi8(4);
        let hm = _mm256_loadu_si256(p as *const __m256i);
        for n in 0..2 {
            let x = _mm256_loadu_si256(p.add(32 + 32 * n) as *const __m256i);
            let q2 = [
                _mm256_and_si256(x, three),
                _mm256_and_si256(_mm256_srli_epi16(x, 2), three),
                _mm256_and_si256(_mm256_srli_epi16(x, 4), three),
                _mm256_and_si256(_mm256_srli_epi16(x, 6), three),
            ];
            for (jj, q2) in q2.into_iter().enumerate() {
                let c = 4 * n + jj;
                let hb = _mm256_and_si256(bit_set(hm, (1u8 << c) as i8), four);
                o.q[c] = _mm256_or_si256(q2, hb);
            }
        }
    }
}

/// Q4_K/Q5_K's 12 scale bytes → 8 six-bit scales and 8 six-bit mins (the bit layout of
/// `scalar::scale_min_k4`, computed four at a time in u32 words as ggml's AVX2 code does).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scales(p: *const u8, o: &mut KCanon) {
    let q = |i: usize| (p.add(4 * i) as *const u32).read_unaligned();
    let [scales_lo, scales_hi, mins_lo, mins_hi] =
        crate::scalar::k4_scale_words([q(0), q(1), q(2)]);
    let v = _mm_setr_epi32(
        scales_lo as i32,
        scales_hi as i32,
        mins_lo as i32,
        mins_hi as i32,
    );
    let ms = _mm256_cvtepu8_epi16(v); // lanes 0..8 scales, 8..16 mins
                                      // Per-16 values: duplicate each per-32 scale/min.
    let s8 = _mm256_castsi256_si128(ms);
    let m8 = _mm256_extracti128_si256(ms, 1);
    let s16 = _mm256_set_m128i(_mm_unpackhi_epi16(s8, s8), _mm_unpacklo_epi16(s8, s8));
    o.mins = _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
    sc_from_i16(o, s16);
}

impl BK for Q4K {
    const BYTES: usize = 144;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(p: *const u8, o: &mut KCanon) {
        let (d, dmin) = ld_f16x2(p);
        o.d = d;
        o.dmin = dmin;
        k4_scales(p.add(4), o);
        let mask = _mm256_set1_epi8(0x0F);
        for g in 0..4 {
            let x = _mm256_loadu_si256(p.add(16 + 32 * g) as *const __m256i);
            o.q[2 * g] = _mm256_and_si256(x, mask);
            o.q[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
        }
    }
}

impl BK for Q5K {
    const BYTES: usize = 176;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(p: *const u8, o: &mut KCanon) {
        let (d, dmin) = ld_f16x2(p);
        o.d = d;
        o.dmin = dmin;
        k4_scales(p.add(4), o);
        let mask = _mm256_set1_epi8(0x0F);
        let x10 = _mm256_set1_epi8(0x10);
        let qh = _mm256_loadu_si256(p.add(16) as *const __m256i);
        for g in 0..4 {
            let x = _mm256_loadu_si256(p.add(48 + 32 * g) as *const __m256i);
            let h0 = _mm256_and_si256(bit_set(qh, (1u8 << (2 * g)) as i8), x10);
            let h1 = _mm256_and_si256(bit_set(qh, (1u8 << (2 * g + 1)) as i8), x10);
            o.q[2 * g] = _mm256_or_si256(_mm256_and_si256(x, mask), h0);
            o.q[2 * g + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(x, 4), mask), h1);
        }
    }
}

impl BK for Q6K {
    const BYTES: usize = 210;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(p: *const u8, o: &mut KCanon) {
        let d = ld_f16(p.add(208));
        o.d = d;
        o.dmin = d;
        let s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
        let mut s = [0i16; 16];
        _mm256_storeu_si256(s.as_mut_ptr() as *mut __m256i, s16);
        sc_pairs(o, &s);
        // value = sc * (q - 32): min term 32*sc.
        o.mins = _mm256_slli_epi16(s16, 5);
        let mask = _mm256_set1_epi8(0x0F);
        let three = _mm256_set1_epi8(3);
        for n in 0..2 {
            let l0 = _mm256_loadu_si256(p.add(64 * n) as *const __m256i);
            let l1 = _mm256_loadu_si256(p.add(64 * n + 32) as *const __m256i);
            let h = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
            let h0 = _mm256_slli_epi16(_mm256_and_si256(h, three), 4);
            let h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), three), 4);
            let h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), three), 4);
            let h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), three), 4);
            o.q[4 * n] = _mm256_or_si256(_mm256_and_si256(l0, mask), h0);
            o.q[4 * n + 1] = _mm256_or_si256(_mm256_and_si256(l1, mask), h1);
            o.q[4 * n + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), mask), h2);
            o.q[4 * n + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), mask), h3);
        }
    }
}

/// Super-blocks decoded per chunk and reused by every token.
const KCHUNK: usize = 8;
const TNK: usize = 4;

/// Accumulate TN tokens × the `nbc` decoded super-blocks starting at block `b0`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn tilek<const TN: usize>(
    kc: &[KCanon],
    b0: usize,
    k: usize,
    act: *const u8,
    ab: usize,
    out: *mut f32,
    os: usize,
    first: bool,
) {
    let nb = k / 256;
    let mut acc = [_mm256_setzero_ps(); TN];
    for (i, c) in kc.iter().enumerate() {
        let b = b0 + i;
        for t in 0..TN {
            let ar = act.add(t * ab);
            let aq = ar.add(256 * b);
            let mut isum = _mm256_setzero_si256();
            for j in 0..8 {
                let a = _mm256_loadu_si256(aq.add(32 * j) as *const __m256i);
                isum = _mm256_add_epi32(
                    isum,
                    _mm256_madd_epi16(_mm256_maddubs_epi16(c.q[j], a), c.sc[j]),
                );
            }
            let bs = _mm256_loadu_si256(ar.add(k + 4 * nb + 32 * b) as *const __m256i);
            let mn = _mm256_madd_epi16(c.mins, bs);
            let da = ld_f32(ar.add(k + 4 * b));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(c.d * da), _mm256_cvtepi32_ps(isum), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(c.dmin * da), _mm256_cvtepi32_ps(mn), acc[t]);
        }
    }
    for t in 0..TN {
        let s = hsum_ps(acc[t]);
        let o = out.add(t * os);
        if first {
            *o = s;
        } else {
            *o += s;
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn mmk<B: BK>(
    k: usize,
    w: *const u8,
    n_rows: usize,
    act: *const u8,
    n_tok: usize,
    out: *mut f32,
    os: usize,
) {
    let nb = k / 256;
    let rb = nb * B::BYTES;
    let ab = crate::act_row_bytes(ActFormat::Q8_K, k);
    if n_tok == 1 {
        // Decode: decode each super-block and use it at once (no chunk buffer round trip).
        // The float operations are exactly those of `tilek` for one token, including its
        // reduction per chunk of KCHUNK super-blocks (hsum of the chunk's accumulator, added to
        // the running total), so the result does not depend on the number of tokens.
        let bs0 = k + 4 * nb;
        for r in 0..n_rows {
            let mut total = 0f32;
            let mut b0 = 0;
            while b0 < nb {
                let mut acc = _mm256_setzero_ps();
                for b in b0..(b0 + KCHUNK).min(nb) {
                    let mut c: KCanon = std::mem::zeroed();
                    B::unpack(w.add(r * rb + b * B::BYTES), &mut c);
                    let aq = act.add(256 * b);
                    let mut isum = _mm256_setzero_si256();
                    for j in 0..8 {
                        let a = _mm256_loadu_si256(aq.add(32 * j) as *const __m256i);
                        isum = _mm256_add_epi32(
                            isum,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(c.q[j], a), c.sc[j]),
                        );
                    }
                    let mn = _mm256_madd_epi16(
                        c.mins,
                        _mm256_loadu_si256(act.add(bs0 + 32 * b) as *const __m256i),
                    );
                    let da = ld_f32(act.add(k + 4 * b));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(c.d * da), _mm256_cvtepi32_ps(isum), acc);
                    acc =
                        _mm256_fnmadd_ps(_mm256_set1_ps(c.dmin * da), _mm256_cvtepi32_ps(mn), acc);
                }
                let s = hsum_ps(acc);
                total = if b0 == 0 { s } else { total + s };
                b0 += KCHUNK;
            }
            *out.add(r) = total;
        }
        return;
    }
    let mut kc: [KCanon; KCHUNK] = std::mem::zeroed();
    for r in 0..n_rows {
        let mut b0 = 0;
        while b0 < nb {
            let nbc = (nb - b0).min(KCHUNK);
            for i in 0..nbc {
                B::unpack(w.add(r * rb + (b0 + i) * B::BYTES), &mut kc[i]);
            }
            let kcs = &kc[..nbc];
            let first = b0 == 0;
            let mut t = 0;
            while t + TNK <= n_tok {
                tilek::<TNK>(
                    kcs,
                    b0,
                    k,
                    act.add(t * ab),
                    ab,
                    out.add(t * os + r),
                    os,
                    first,
                );
                t += TNK;
            }
            let (a, o) = (act.add(t * ab), out.add(t * os + r));
            match n_tok - t {
                0 => {}
                1 => tilek::<1>(kcs, b0, k, a, ab, o, os, first),
                2 => tilek::<2>(kcs, b0, k, a, ab, o, os, first),
                3 => tilek::<3>(kcs, b0, k, a, ab, o, os, first),
                _ => unreachable!(),
            }
            b0 += nbc;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// float weights × f32 activations

trait FW {
    const ES: usize;
    unsafe fn load8(p: *const u8) -> __m256;
    fn scalar(p: &[u8]) -> f32;
}
struct WF32;
struct WF16;
struct WBF16;
impl FW for WF32 {
    const ES: usize = 4;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> __m256 {
        _mm256_loadu_ps(p as *const f32)
    }
    fn scalar(p: &[u8]) -> f32 {
        f32::from_le_bytes([p[0], p[1], p[2], p[3]])
    }
}
impl FW for WF16 {
    const ES: usize = 2;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    fn scalar(p: &[u8]) -> f32 {
        f16::from_le_bytes([p[0], p[1]]).to_f32()
    }
}
impl FW for WBF16 {
    const ES: usize = 2;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> __m256 {
        // bf16 is the top half of an f32.
        let v = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32(v, 16))
    }
    fn scalar(p: &[u8]) -> f32 {
        half::bf16::from_le_bytes([p[0], p[1]]).to_f32()
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tilef<W: FW, const TN: usize>(
    k: usize,
    w: *const u8,
    act: *const u8,
    ab: usize,
    out: *mut f32,
    os: usize,
) {
    // Two accumulator sets (16 values per step) so that, with FMA latency 4, enough
    // independent FMAs are in flight for small token counts.
    let mut acc = [_mm256_setzero_ps(); TN];
    let mut acc2 = [_mm256_setzero_ps(); TN];
    let k8 = k & !7;
    let mut i = 0;
    while i + 16 <= k8 {
        let wv = W::load8(w.add(i * W::ES));
        let wv2 = W::load8(w.add((i + 8) * W::ES));
        for t in 0..TN {
            let ap = act.add(t * ab + 4 * i) as *const f32;
            acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(ap), acc[t]);
            acc2[t] = _mm256_fmadd_ps(wv2, _mm256_loadu_ps(ap.add(8)), acc2[t]);
        }
        i += 16;
    }
    while i < k8 {
        let wv = W::load8(w.add(i * W::ES));
        for t in 0..TN {
            acc[t] = _mm256_fmadd_ps(
                wv,
                _mm256_loadu_ps(act.add(t * ab + 4 * i) as *const f32),
                acc[t],
            );
        }
        i += 8;
    }
    for t in 0..TN {
        acc[t] = _mm256_add_ps(acc[t], acc2[t]);
    }
    for t in 0..TN {
        let mut s = hsum_ps(acc[t]);
        for j in k8..k {
            let wj = W::scalar(std::slice::from_raw_parts(w.add(j * W::ES), W::ES));
            s += wj * ld_f32(act.add(t * ab + 4 * j));
        }
        *out.add(t * os) = s;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mmf<W: FW>(
    k: usize,
    w: *const u8,
    n_rows: usize,
    act: *const u8,
    n_tok: usize,
    out: *mut f32,
    os: usize,
) {
    let rb = k * W::ES;
    let ab = 4 * k;
    for r in 0..n_rows {
        let wr = w.add(r * rb);
        let mut t = 0;
        while t + 4 <= n_tok {
            tilef::<W, 4>(k, wr, act.add(t * ab), ab, out.add(t * os + r), os);
            t += 4;
        }
        let (a, o) = (act.add(t * ab), out.add(t * os + r));
        match n_tok - t {
            0 => {}
            1 => tilef::<W, 1>(k, wr, a, ab, o, os),
            2 => tilef::<W, 2>(k, wr, a, ab, o, os),
            3 => tilef::<W, 3>(k, wr, a, ab, o, os),
            _ => unreachable!(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    wtype: GgmlType,
    k: usize,
    w: &[u8],
    n_rows: usize,
    act: &[u8],
    n_tok: usize,
    out: &mut [f32],
    os: usize,
) {
    use GgmlType::*;
    let (w, a, o) = (w.as_ptr(), act.as_ptr(), out.as_mut_ptr());
    match wtype {
        Q4_0 => mm32::<Q40>(k, w, n_rows, a, n_tok, o, os),
        Q4_1 => mm32::<Q41>(k, w, n_rows, a, n_tok, o, os),
        Q5_0 => mm32::<Q50>(k, w, n_rows, a, n_tok, o, os),
        Q5_1 => mm32::<Q51>(k, w, n_rows, a, n_tok, o, os),
        Q8_0 => mm32::<Q80>(k, w, n_rows, a, n_tok, o, os),
        MXFP4 => mm32::<Mx4>(k, w, n_rows, a, n_tok, o, os),
        Q2_K => mmk::<Q2K>(k, w, n_rows, a, n_tok, o, os),
        Q3_K => mmk::<Q3K>(k, w, n_rows, a, n_tok, o, os),
        Q4_K => mmk::<Q4K>(k, w, n_rows, a, n_tok, o, os),
        Q5_K => mmk::<Q5K>(k, w, n_rows, a, n_tok, o, os),
        Q6_K => mmk::<Q6K>(k, w, n_rows, a, n_tok, o, os),
        F32 => mmf::<WF32>(k, w, n_rows, a, n_tok, o, os),
        F16 => mmf::<WF16>(k, w, n_rows, a, n_tok, o, os),
        BF16 => mmf::<WBF16>(k, w, n_rows, a, n_tok, o, os),
        _ => unreachable!("checked by check_matmul"),
    }
}

// ---------------------------------------------------------------------------------------------
// float vector helpers

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (u, ac) in acc.iter_mut().enumerate() {
            *ac = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8 * u)),
                _mm256_loadu_ps(pb.add(i + 8 * u)),
                *ac,
            );
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i)),
            _mm256_loadu_ps(pb.add(i)),
            acc[0],
        );
        i += 8;
    }
    let mut s = hsum_ps(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ));
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16(a: &[f16], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr() as *const u8, b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (u, ac) in acc.iter_mut().enumerate() {
            let av = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(2 * (i + 8 * u)) as *const __m128i));
            *ac = _mm256_fmadd_ps(av, _mm256_loadu_ps(pb.add(i + 8 * u)), *ac);
        }
        i += 32;
    }
    while i + 8 <= n {
        let av = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(2 * i) as *const __m128i));
        acc[0] = _mm256_fmadd_ps(av, _mm256_loadu_ps(pb.add(i)), acc[0]);
        i += 8;
    }
    let mut s = hsum_ps(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ));
    while i < n {
        s += a[i].to_f32() * b[i];
        i += 1;
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
    let n = y.len();
    let (py, px) = (y.as_mut_ptr(), x.as_ptr() as *const u8);
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        let xv = _mm256_cvtph_ps(_mm_loadu_si128(px.add(2 * i) as *const __m128i));
        _mm256_storeu_ps(
            py.add(i),
            _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(py.add(i))),
        );
        i += 8;
    }
    while i < n {
        y[i] = a.mul_add(x[i].to_f32(), y[i]);
        i += 1;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
    let n = y.len();
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(
            py.add(i),
            _mm256_fmadd_ps(av, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i))),
        );
        i += 8;
    }
    while i < n {
        y[i] = a.mul_add(x[i], y[i]);
        i += 1;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let n = src.len();
    let (ps, pd) = (src.as_ptr() as *const u8, dst.as_mut_ptr());
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(
            pd.add(i),
            _mm256_cvtph_ps(_mm_loadu_si128(ps.add(2 * i) as *const __m128i)),
        );
        i += 8;
    }
    while i < n {
        dst[i] = src[i].to_f32();
        i += 1;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    let n = src.len();
    let (ps, pd) = (src.as_ptr(), dst.as_mut_ptr() as *mut u8);
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(ps.add(i)));
        _mm_storeu_si128(pd.add(2 * i) as *mut __m128i, h);
        i += 8;
    }
    while i < n {
        dst[i] = f16::from_f32(src[i]);
        i += 1;
    }
}
