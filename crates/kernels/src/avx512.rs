//! x86-64 AVX-512 VNNI prefill kernel for the unsigned 32-value block formats (Q4_0, Q4_1,
//! Q5_0, Q5_1, MXFP4) × Q8_0/Q8_1 activations, used for calls with at least [`MIN_TOK`] tokens.
//!
//! Weight rows are converted on the fly, 16 rows at a time, into a row-interleaved int8 layout
//! (ik_llama.cpp's idea, PRs #515/#525: convert a weight tile once, reuse it for every token):
//! for each block, 8 "quads" of 4 consecutive values, each stored as 16 rows × 4 bytes = one
//! 64-byte vector. One `vpdpbusd` of a quad vector with a broadcast 4-byte slice of an activation
//! row then adds 4 products into each of 16 row lanes, so a block costs 8 `vpdpbusd` per token
//! for 16 rows (64 MACs per instruction, against 16 for AVX2's `pmaddubsw` + `pmaddwd`).
//!
//! Batch invariance (crate docs): the kernel reduces every (row, token) pair to the same two
//! exact integers per block as the AVX2 kernels (the sums over the first and the last 16
//! values; quads 0..4 and 4..8 here), then applies the same float operations in the same order:
//! `lo = fma(d·d_act, lo_int, lo)`, `hi = fma(d·d_act, hi_int, hi)` per block, `corr = fma(c, s,
//! corr)` per block, and `(lo + hi) + corr` at the end. So a pair's result is bit-identical to
//! the AVX2 decode kernel's, and a sequence gets the same logits alone or inside a batch.
//! Q8_0 weights are signed and `vpdpbusd` needs one unsigned side, so they stay on AVX2 here.
//!
//! # Decode ([`matvec`], one token)
//! A single token reads each weight once, so converting a tile would not pay; instead 4 rows
//! × 2 blocks are done per step in 512-bit registers: each row's two blocks of codes fill one
//! vector, one `vpdpbusd` against the token's 64 activation bytes gives 16 lanes of 4-product
//! sums, and a 4×4 transpose-add over the 4 rows (6 shuffles) leaves per 128-bit lane the
//! 4 rows' sums over one half-block. That is exactly the AVX2 decode kernel's integer pair per
//! (row, block), which needs 6 shuffles per *block* (3 `phadd`), and the float steps that follow
//! are the AVX2 kernel's, block by block in the same order, so results stay bit-identical.
//! Q8_0 is included: its signed codes are offset by 128 for `vpdpbusd` and 128·Σa is
//! subtracted again, exactly.

use crate::avx2::{finish4, ld_f32, store_rows, Mx4, B32, Q40, Q41, Q50, Q51, Q80};
use crate::GgmlType;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Calls with fewer tokens go to the AVX2 kernels: converting a 16-row tile costs about as much
/// as 4–8 tokens' worth of dot products, so small decode batches do not gain.
pub(crate) const MIN_TOK: usize = 8;

/// Tokens per inner tile: 2 float accumulators per token (16 rows each) plus 8 weight vectors
/// and the scales stay within the 32 vector registers.
const TN: usize = 8;

/// Whether [`matmul`] handles weights of type `w`.
pub(crate) fn supports(w: GgmlType) -> bool {
    use GgmlType::*;
    matches!(w, Q4_0 | Q4_1 | Q5_0 | Q5_1 | MXFP4)
}

thread_local! {
    /// The converted 16-row tile (quads, then d, then c). Grows to the largest row length seen
    /// and is then reused: no allocation per call once warm.
    static TILE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Convert rows `0..nr` (nr ≤ 16) of `w` into the interleaved tile; rows nr..16 are zero (their
/// lanes are computed but never stored).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn convert<B: B32>(w: *const u8, rb: usize, nr: usize, nb: usize, tile: *mut u8) {
    let dp = tile.add(nb * 512) as *mut f32;
    let cp = dp.add(nb * 16);
    for b in 0..nb {
        let qb = tile.add(b * 512);
        for r in 0..16 {
            let (codes, d, c) = if r < nr {
                B::load(w.add(r * rb + b * B::BYTES))
            } else {
                (_mm256_setzero_si256(), 0.0, 0.0)
            };
            let mut q = [0u32; 8];
            _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, codes);
            for (j, v) in q.iter().enumerate() {
                (qb.add(j * 64 + r * 4) as *mut u32).write_unaligned(*v);
            }
            *dp.add(b * 16 + r) = d;
            *cp.add(b * 16 + r) = c;
        }
    }
}

/// 16 converted rows × `NT` tokens: out\[t·os + r\] for r < nr (lane mask `mask`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile16<const NT: usize>(
    k: usize,
    tile: *const u8,
    act: *const u8,
    ab: usize,
    out: *mut f32,
    os: usize,
    mask: u16,
) {
    let nb = k / 32;
    let dp = tile.add(nb * 512) as *const f32;
    let cp = dp.add(nb * 16);
    let mut lo = [_mm512_setzero_ps(); NT];
    let mut hi = [_mm512_setzero_ps(); NT];
    for b in 0..nb {
        let qb = tile.add(b * 512);
        let wv: [__m512i; 8] =
            std::array::from_fn(|j| _mm512_loadu_si512(qb.add(j * 64) as *const _));
        let dv = _mm512_loadu_ps(dp.add(b * 16));
        for t in 0..NT {
            let ap = act.add(t * ab + 32 * b);
            let a = |o: usize| _mm512_set1_epi32((ap.add(o) as *const i32).read_unaligned());
            let z = _mm512_setzero_si512();
            let il = _mm512_dpbusd_epi32(z, wv[0], a(0));
            let il = _mm512_dpbusd_epi32(il, wv[1], a(4));
            let il = _mm512_dpbusd_epi32(il, wv[2], a(8));
            let il = _mm512_dpbusd_epi32(il, wv[3], a(12));
            let ih = _mm512_dpbusd_epi32(z, wv[4], a(16));
            let ih = _mm512_dpbusd_epi32(ih, wv[5], a(20));
            let ih = _mm512_dpbusd_epi32(ih, wv[6], a(24));
            let ih = _mm512_dpbusd_epi32(ih, wv[7], a(28));
            let dd = _mm512_mul_ps(dv, _mm512_set1_ps(ld_f32(act.add(t * ab + k + 4 * b))));
            lo[t] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(il), lo[t]);
            hi[t] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(ih), hi[t]);
        }
    }
    // Every format here has an offset term (c = -8d, m, -16d, m, -12d).
    let mut corr = [_mm512_setzero_ps(); NT];
    for b in 0..nb {
        let cv = _mm512_loadu_ps(cp.add(b * 16));
        for t in 0..NT {
            let s = _mm512_set1_ps(ld_f32(act.add(t * ab + k + 4 * nb + 4 * b)));
            corr[t] = _mm512_fmadd_ps(cv, s, corr[t]);
        }
    }
    for t in 0..NT {
        let v = _mm512_add_ps(_mm512_add_ps(lo[t], hi[t]), corr[t]);
        _mm512_mask_storeu_ps(out.add(t * os), mask, v);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn mm<B: B32>(
    k: usize,
    w: *const u8,
    n_rows: usize,
    act: *const u8,
    n_tok: usize,
    out: *mut f32,
    os: usize,
) {
    let nb = k / 32;
    let rb = nb * B::BYTES;
    let ab = crate::act_row_bytes(crate::ActFormat::Q8_0, k);
    TILE.with(|t| {
        let mut buf = t.borrow_mut();
        let need = nb * (512 + 128);
        if buf.len() < need {
            buf.resize(need, 0);
        }
        let tile = buf.as_mut_ptr();
        let mut r = 0;
        while r < n_rows {
            let nr = (n_rows - r).min(16);
            convert::<B>(w.add(r * rb), rb, nr, nb, tile);
            let mask = if nr == 16 { u16::MAX } else { (1u16 << nr) - 1 };
            let mut t = 0;
            while t < n_tok {
                let (a, o) = (act.add(t * ab), out.add(t * os + r));
                let nt = (n_tok - t).min(TN);
                macro_rules! go {
                    ($($n:literal)*) => {
                        match nt {
                            $($n => tile16::<$n>(k, tile, a, ab, o, os, mask),)*
                            _ => unreachable!(),
                        }
                    };
                }
                go!(1 2 3 4 5 6 7 8);
                t += nt;
            }
            r += nr;
        }
    });
}

/// Prefetch distance (bytes) of the decode kernel. Measured on the synthetic gpt-oss-20b
/// (bench/gpt_oss.sh's file, tg32, 2 threads, AMD EPYC Zen 5): 4 KiB 14.2 tok/s, 8 KiB 14.7,
/// 16 KiB 16.9-17.2, 32 KiB 15.6-17.5 (noisier). This kernel consumes a block pair per step,
/// twice the AVX2 kernel's pace, so it wants more bytes in flight.
const PF_DECODE: usize = 16384;

/// Whether [`matvec`] handles weights of type `w`.
pub(crate) fn supports_decode(w: GgmlType) -> bool {
    supports(w) || w == GgmlType::Q8_0
}

/// The 4 rows' integer sums over each half of blocks `b` (lanes 0..8 of the result, laid out
/// [rows 0..4 over the first 16 values | rows 0..4 over the last 16]) and `b + 1` (lanes 8..16,
/// zero when `two` is false), for one token.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn isum_2blocks<B: B32>(p: [*const u8; 4], act: *const u8, two: bool) -> __m512i {
    let a = if two {
        _mm512_loadu_si512(act as *const __m512i)
    } else {
        _mm512_castsi256_si512(_mm256_loadu_si256(act as *const __m256i))
    };
    let a = if two {
        a
    } else {
        // The upper half of a cast is undefined: zero it.
        _mm512_inserti64x4(a, _mm256_setzero_si256(), 1)
    };
    let codes = |q: *const u8| {
        let lo = B::load(q).0;
        let hi = if two {
            B::load(q.add(B::BYTES)).0
        } else {
            _mm256_setzero_si256()
        };
        _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
    };
    let zero = _mm512_setzero_si512();
    let dot = |q: __m512i| {
        if B::SIGNED {
            // (q + 128) · a − 128 · a, all exact in i32.
            let u = _mm512_xor_si512(q, _mm512_set1_epi8(-128));
            _mm512_dpbusd_epi32(zero, u, a)
        } else {
            _mm512_dpbusd_epi32(zero, q, a)
        }
    };
    let (mut r0, mut r1, mut r2, mut r3) = (
        dot(codes(p[0])),
        dot(codes(p[1])),
        dot(codes(p[2])),
        dot(codes(p[3])),
    );
    if B::SIGNED {
        let off = _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(-128), a);
        r0 = _mm512_sub_epi32(r0, off);
        r1 = _mm512_sub_epi32(r1, off);
        r2 = _mm512_sub_epi32(r2, off);
        r3 = _mm512_sub_epi32(r3, off);
    }
    // Per 128-bit lane (one half-block): rows' 4 partial sums → [r0 r1 r2 r3].
    let s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(r0, r1), _mm512_unpackhi_epi32(r0, r1));
    let s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(r2, r3), _mm512_unpackhi_epi32(r2, r3));
    _mm512_add_epi32(
        _mm512_unpacklo_epi64(s01, s23),
        _mm512_unpackhi_epi64(s01, s23),
    )
}

/// One token × 4 rows (`nr` of them stored): the AVX2 `tile32_r4`'s arithmetic, two blocks a
/// step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn rows4<B: B32>(k: usize, rows: [*const u8; 4], act: *const u8, out: *mut f32, nr: usize) {
    let nb = k / 32;
    let mut acc = _mm256_setzero_ps();
    let mut corr = _mm_setzero_ps();
    let mut b = 0;
    while b < nb {
        let two = b + 1 < nb;
        let o = b * B::BYTES;
        let p = [
            rows[0].add(o),
            rows[1].add(o),
            rows[2].add(o),
            rows[3].add(o),
        ];
        // The 4 rows are adjacent: one linear stream of 4·BYTES bytes per block, prefetched
        // PF_DECODE ahead, one hint per cache line (see avx2::tile32_r4).
        let ahead = rows[0].wrapping_add(PF_DECODE + b * 4 * B::BYTES);
        let mut off = 0;
        while off < 8 * B::BYTES {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(off) as *const i8);
            off += 64;
        }
        let isum = _mm512_cvtepi32_ps(isum_2blocks::<B>(p, act.add(32 * b), two));
        let steps = if two { 2 } else { 1 };
        for j in 0..steps {
            let bj = b + j;
            let pj = if j == 0 {
                p
            } else {
                [
                    p[0].add(B::BYTES),
                    p[1].add(B::BYTES),
                    p[2].add(B::BYTES),
                    p[3].add(B::BYTES),
                ]
            };
            let s = if j == 0 {
                _mm512_castps512_ps256(isum)
            } else {
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(isum), 1))
            };
            let da = _mm256_set1_ps(ld_f32(act.add(k + 4 * bj)));
            let (d4, c4) = B::dc4(pj);
            acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set_m128(d4, d4), da), s, acc);
            if B::HAS_C {
                corr = _mm_fmadd_ps(c4, _mm_set1_ps(ld_f32(act.add(k + 4 * nb + 4 * bj))), corr);
            }
        }
        b += steps;
    }
    // The AVX2 kernel's own end, so the float steps stay the same.
    store_rows(finish4(acc, corr), out, nr);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn mv<B: B32>(k: usize, w: *const u8, n_rows: usize, act: *const u8, out: *mut f32) {
    let rb = k / 32 * B::BYTES;
    let mut r = 0;
    while r < n_rows {
        let nr = (n_rows - r).min(4);
        // A short last group repeats its last row (computed, not stored).
        let row = |i: usize| w.add((r + i.min(nr - 1)) * rb);
        rows4::<B>(k, [row(0), row(1), row(2), row(3)], act, out.add(r), nr);
        r += nr;
    }
}

/// One token (`n_tok` = 1) for the types of [`supports_decode`]; same contract as
/// `avx2::matmul` otherwise.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI, AVX2, FMA and F16C; slice sizes were checked by the caller.
pub(crate) unsafe fn matvec(
    wtype: GgmlType,
    k: usize,
    w: &[u8],
    n_rows: usize,
    act: &[u8],
    out: &mut [f32],
) {
    use GgmlType::*;
    let (w, a, o) = (w.as_ptr(), act.as_ptr(), out.as_mut_ptr());
    match wtype {
        Q4_0 => mv::<Q40>(k, w, n_rows, a, o),
        Q4_1 => mv::<Q41>(k, w, n_rows, a, o),
        Q5_0 => mv::<Q50>(k, w, n_rows, a, o),
        Q5_1 => mv::<Q51>(k, w, n_rows, a, o),
        Q8_0 => mv::<Q80>(k, w, n_rows, a, o),
        MXFP4 => mv::<Mx4>(k, w, n_rows, a, o),
        _ => unreachable!("checked by supports_decode()"),
    }
}

/// Same contract as `avx2::matmul` for the types of [`supports`].
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI, AVX2, FMA and F16C; slice sizes were checked by the caller.
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
        Q4_0 => mm::<Q40>(k, w, n_rows, a, n_tok, o, os),
        Q4_1 => mm::<Q41>(k, w, n_rows, a, n_tok, o, os),
        Q5_0 => mm::<Q50>(k, w, n_rows, a, n_tok, o, os),
        Q5_1 => mm::<Q51>(k, w, n_rows, a, n_tok, o, os),
        MXFP4 => mm::<Mx4>(k, w, n_rows, a, n_tok, o, os),
        _ => unreachable!("checked by supports()"),
    }
}
