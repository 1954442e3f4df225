//! AArch64 NEON kernels: the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4)
//! × Q8_0/Q8_1 activations and the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) × Q8_K activations.
//! Float weights (F32/F16/BF16) use the scalar reference on AArch64 for now.
//!
//! Unlike x86's `pmaddubsw`, NEON multiplies signed × signed bytes (`smull` / `smlal2`), so
//! weights are decoded straight to their signed integer values (Q4_0's −8 and Q5_0's −16
//! applied, MXFP4 through its signed E2M1 table); only Q4_1/Q5_1 keep unsigned codes and add
//! their min `m` through the activation block sum `s`. Per block the integer sum is exact
//! (|w·a| ≤ 128·127, and two products summed in i16 stay below 32,767 before widening).
//!
//! K-quants: each super-block is decoded to 256 signed int8 values plus one integer scale (and,
//! for Q2_K/Q4_K/Q5_K, one integer min) per 16 values ([`KCanon`]; Q3_K's −4 and Q6_K's −32 are
//! applied to the values); per (super-block, token) two exact integers, Σ sc·q·a and
//! Σ min·bsum (Q8_K `bsums`). The 16-value dot products use `sdot` where the CPU has the
//! `dotprod` extension (detected at run time, [`crate::has_dotprod`]), `smull`/`smlal2` +
//! `sadalp` otherwise; both give the same exact integers, so the same f32 results.
//!
//! Batch invariance (crate docs): every (row, token) pair gets the same operations whatever
//! the call shape: per block `acc = fma(d·d_act, Σ w·a, acc)` and `corr = fma(c, s, corr)` in
//! block order, then `acc + corr`; per K-quant super-block `acc = fma(d·d_act, Σ sc·q·a, acc)`
//! then (types with mins) `acc = fma(−dmin·d_act, Σ min·bsum, acc)`. Tokens are grouped (by 4
//! for the 32-value blocks, all of them per K-quant super-block) only to reuse a decoded weight
//! block; a pair's arithmetic does not depend on its group.

use crate::scalar::{e8m0_half, rd_f16, KVALUES_MXFP4};
use crate::{ActFormat, GgmlType};
use std::arch::aarch64::*;

/// Whether [`matmul`] handles weights of type `w`.
pub(crate) fn supports(w: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        w,
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | MXFP4 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
    )
}

/// A 32-value weight block format decoded to (values 0..16, values 16..32, d, c) with
/// value_j = d·q_j + c (c = 0 except for Q4_1/Q5_1).
trait Blk {
    const BYTES: usize;
    const HAS_C: bool = false;
    unsafe fn load(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32);
}

struct Q40;
struct Q41;
struct Q50;
struct Q51;
struct Q80;
struct Mx4;

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    rd_f16(std::slice::from_raw_parts(p, 2), 0)
}

/// Low and high nibbles of 16 bytes: values j and j + 16 of a ggml 4-bit block.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let qs = vld1q_u8(p);
    (vandq_u8(qs, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(qs))
}

/// Q5's fifth bits as 0 or 16 per value: bit j of `qh` for value j (lanes 0..16 from bits
/// 0..16, lanes 16..32 from bits 16..32).
#[inline(always)]
unsafe fn high_bits(qh: u32) -> (uint8x16_t, uint8x16_t) {
    const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bit = vld1q_u8(BIT.as_ptr());
    let b = qh.to_le_bytes();
    let spread = |lo: u8, hi: u8| {
        let v = vcombine_u8(vdup_n_u8(lo), vdup_n_u8(hi));
        vandq_u8(vtstq_u8(v, bit), vdupq_n_u8(16))
    };
    (spread(b[0], b[1]), spread(b[2], b[3]))
}

#[inline(always)]
unsafe fn s8(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

impl Blk for Q40 {
    const BYTES: usize = 18;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
        let (l, h) = nibbles(p.add(2));
        let o = vdupq_n_s8(8);
        (vsubq_s8(s8(l), o), vsubq_s8(s8(h), o), f16_at(p), 0.0)
    }
}

impl Blk for Q41 {
    const BYTES: usize = 20;
    const HAS_C: bool = true;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
        let (l, h) = nibbles(p.add(4));
        (s8(l), s8(h), f16_at(p), f16_at(p.add(2)))
    }
}

impl Blk for Q50 {
    const BYTES: usize = 22;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
        let (hl, hh) = high_bits((p.add(2) as *const u32).read_unaligned());
        let (l, h) = nibbles(p.add(6));
        let o = vdupq_n_s8(16);
        (
            vsubq_s8(s8(vorrq_u8(l, hl)), o),
            vsubq_s8(s8(vorrq_u8(h, hh)), o),
            f16_at(p),
            0.0,
        )
    }
}

impl Blk for Q51 {
    const BYTES: usize = 24;
    const HAS_C: bool = true;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
        let (hl, hh) = high_bits((p.add(4) as *const u32).read_unaligned());
        let (l, h) = nibbles(p.add(8));
        (
            s8(vorrq_u8(l, hl)),
            s8(vorrq_u8(h, hh)),
            f16_at(p),
            f16_at(p.add(2)),
        )
    }
}

impl Blk for Q80 {
    const BYTES: usize = 34;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
        let q = p.add(2) as *const i8;
        (vld1q_s8(q), vld1q_s8(q.add(16)), f16_at(p), 0.0)
    }
}

impl Blk for Mx4 {
    const BYTES: usize = 17;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
        let kv = vld1q_s8(KVALUES_MXFP4.as_ptr());
        let (l, h) = nibbles(p.add(1));
        (vqtbl1q_s8(kv, l), vqtbl1q_s8(kv, h), e8m0_half(*p), 0.0)
    }
}

/// Exact Σ w·a over one 32-value block.
#[inline(always)]
unsafe fn dot32(wl: int8x16_t, wh: int8x16_t, a: *const i8) -> i32 {
    let (al, ah) = (vld1q_s8(a), vld1q_s8(a.add(16)));
    let p0 = vmlal_high_s8(vmull_s8(vget_low_s8(wl), vget_low_s8(al)), wl, al);
    let p1 = vmlal_high_s8(vmull_s8(vget_low_s8(wh), vget_low_s8(ah)), wh, ah);
    vaddvq_s32(vpadalq_s16(vpaddlq_s16(p0), p1))
}

#[inline(always)]
unsafe fn f32_at(p: *const u8) -> f32 {
    (p as *const f32).read_unaligned()
}

/// Tokens sharing one decoded weight block.
const TG: usize = 4;

#[allow(clippy::too_many_arguments)]
unsafe fn mm<B: Blk>(
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
    let ab = crate::act_row_bytes(ActFormat::Q8_0, k);
    for r in 0..n_rows {
        let row = w.add(r * rb);
        let mut t = 0;
        while t < n_tok {
            let nt = (n_tok - t).min(TG);
            let mut acc = [0f32; TG];
            let mut corr = [0f32; TG];
            for b in 0..nb {
                let (wl, wh, d, c) = B::load(row.add(b * B::BYTES));
                for j in 0..nt {
                    let a = act.add((t + j) * ab);
                    let isum = dot32(wl, wh, a.add(32 * b) as *const i8);
                    let da = f32_at(a.add(k + 4 * b));
                    acc[j] = (d * da).mul_add(isum as f32, acc[j]);
                    if B::HAS_C {
                        corr[j] = c.mul_add(f32_at(a.add(k + 4 * nb + 4 * b)), corr[j]);
                    }
                }
            }
            for j in 0..nt {
                *out.add((t + j) * os + r) = acc[j] + corr[j];
            }
            t += nt;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants (256-value super-blocks) × Q8_K activations

/// Σ of 16 int8 products into 4 i32 lanes: `sdot` where the CPU has the `dotprod` extension
/// ([`Sdot`]), `smull`/`smlal2` + `sadalp` otherwise ([`Plain`]). The two group the products
/// into lanes differently, so callers only use the full horizontal sum of the lanes (an exact
/// integer either way): that keeps both paths bit-identical.
trait Dot {
    unsafe fn dot16(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t;
}

/// Plain NEON (every AArch64 CPU).
struct Plain;
/// The `sdot` instruction (FEAT_DotProd). Its intrinsic `vdotq_s32` is still unstable in Rust
/// (`stdarch_neon_dotprod`), hence the one-instruction `asm!`; it only ever runs inside
/// functions compiled with `#[target_feature(enable = "dotprod")]` ([`mmk_sdot`]), called after
/// run-time detection.
struct Sdot;

impl Dot for Plain {
    #[inline(always)]
    unsafe fn dot16(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
        // Each i16 lane sums two products, |w| ≤ 63 and |a| ≤ 127: below 16,002.
        vpadalq_s16(
            acc,
            vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(a)), w, a),
        )
    }
}

impl Dot for Sdot {
    #[inline(always)]
    unsafe fn dot16(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        std::arch::asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {a:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            options(pure, nomem, nostack, preserves_flags)
        );
        acc
    }
}

/// A super-block decoded to a common form: 256 signed int8 values `q` in value order (16
/// vectors of 16), one integer scale per 16 values and, for types with a min, one integer min
/// per 16 values, such that value_i = d · sc_{i/16} · q_i − dmin · min_{i/16}. Types whose
/// offset is a constant (Q3_K's −4, Q6_K's −32) apply it to `q` and have no min.
struct KCanon {
    q: [int8x16_t; 16],
    sc: [i32; 16],
    mins: [i16; 16],
    d: f32,
    dmin: f32,
}

trait BK {
    const BYTES: usize;
    /// Whether the format has per-sub-block mins (folded in through the Q8_K `bsums`).
    const HAS_MIN: bool;
    /// Whether the scales come in pairs (32-value sub-blocks: Q4_K, Q5_K), so two 16-value
    /// dot products can share one multiply by the scale.
    const SUB32: bool;
    unsafe fn unpack(p: *const u8) -> KCanon;
}

struct Q2K;
struct Q3K;
struct Q4K;
struct Q5K;
struct Q6K;

#[inline(always)]
unsafe fn u32_at(p: *const u8) -> u32 {
    (p as *const u32).read_unaligned()
}

#[inline(always)]
unsafe fn zeroed_canon() -> KCanon {
    KCanon {
        q: [vdupq_n_s8(0); 16],
        sc: [0; 16],
        mins: [0; 16],
        d: 0.0,
        dmin: 0.0,
    }
}

/// The 2-bit walk shared by Q2_K and Q3_K: in half n (of 128 values), 2-bit field j of
/// `qs[32n + 16h + l]` is value 128n + 32j + 16h + l, i.e. canonical vector 8n + 2j + h.
#[inline(always)]
unsafe fn two_bit_fields(qs: *const u8, o: &mut KCanon) {
    let three = vdupq_n_u8(3);
    for n in 0..2 {
        for h in 0..2 {
            let x = vld1q_u8(qs.add(32 * n + 16 * h));
            o.q[8 * n + h] = s8(vandq_u8(x, three));
            o.q[8 * n + 2 + h] = s8(vandq_u8(vshrq_n_u8::<2>(x), three));
            o.q[8 * n + 4 + h] = s8(vandq_u8(vshrq_n_u8::<4>(x), three));
            o.q[8 * n + 6 + h] = s8(vshrq_n_u8::<6>(x));
        }
    }
}

impl BK for Q2K {
    const BYTES: usize = 84;
    const HAS_MIN: bool = true;
    const SUB32: bool = false;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> KCanon {
        let mut o = zeroed_canon();
        o.d = f16_at(p.add(80));
        o.dmin = f16_at(p.add(82));
        // scales[i]: low nibble = scale of sub-block i, high nibble = its min.
        for i in 0..16 {
            let s = *p.add(i);
            o.sc[i] = (s & 0xF) as i32;
            o.mins[i] = (s >> 4) as i16;
        }
        two_bit_fields(p.add(16), &mut o);
        o
    }
}

impl BK for Q3K {
    const BYTES: usize = 110;
    const HAS_MIN: bool = false;
    const SUB32: bool = false;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> KCanon {
        let mut o = zeroed_canon();
        o.d = f16_at(p.add(108));
        // The 16 six-bit scales (layout in `scalar::q3k_scales`), four at a time in u32 words.
        let words = crate::scalar::q3k_scale_words([
            u32_at(p.add(96)),
            u32_at(p.add(100)),
            u32_at(p.add(104)),
        ]);
        for (w, word) in words.iter().enumerate() {
            for (i, b) in word.to_le_bytes().into_iter().enumerate() {
                o.sc[4 * w + i] = b as i32 - 32;
            }
        }
        // value = q2 + 4·hbit − 4, hbit = bit c of hmask[l] for the 32-value chunk c.
        two_bit_fields(p.add(32), &mut o);
        let four = vdupq_n_u8(4);
        let hm = [vld1q_u8(p), vld1q_u8(p.add(16))];
        for c in 0..8 {
            let bit = vdupq_n_u8(1 << c);
            for h in 0..2 {
                let hb = vandq_u8(vtstq_u8(hm[h], bit), four);
                let v = vorrq_u8(vreinterpretq_u8_s8(o.q[2 * c + h]), hb);
                o.q[2 * c + h] = vsubq_s8(s8(v), vdupq_n_s8(4));
            }
        }
        o
    }
}

/// Q4_K/Q5_K's 12 scale bytes → 8 six-bit scales and 8 six-bit mins (the bit layout of
/// `scalar::scale_min_k4`, four at a time in u32 words), each repeated for its two 16-value
/// halves.
#[inline(always)]
unsafe fn k4_scales(p: *const u8, o: &mut KCanon) {
    let [s_lo, s_hi, m_lo, m_hi] =
        crate::scalar::k4_scale_words([u32_at(p), u32_at(p.add(4)), u32_at(p.add(8))]);
    let (sc, mn) = ([s_lo, s_hi], [m_lo, m_hi]);
    for h in 0..2 {
        let (s, m) = (sc[h].to_le_bytes(), mn[h].to_le_bytes());
        for i in 0..4 {
            let j = 4 * h + i;
            o.sc[2 * j] = s[i] as i32;
            o.sc[2 * j + 1] = s[i] as i32;
            o.mins[2 * j] = m[i] as i16;
            o.mins[2 * j + 1] = m[i] as i16;
        }
    }
}

impl BK for Q4K {
    const BYTES: usize = 144;
    const HAS_MIN: bool = true;
    const SUB32: bool = true;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> KCanon {
        let mut o = zeroed_canon();
        o.d = f16_at(p);
        o.dmin = f16_at(p.add(2));
        k4_scales(p.add(4), &mut o);
        // Group g of 64 values: low nibbles of qs[32g..32g+32], then their high nibbles.
        for g in 0..4 {
            for h in 0..2 {
                let (lo, hi) = nibbles(p.add(16 + 32 * g + 16 * h));
                o.q[4 * g + h] = s8(lo);
                o.q[4 * g + 2 + h] = s8(hi);
            }
        }
        o
    }
}

impl BK for Q5K {
    const BYTES: usize = 176;
    const HAS_MIN: bool = true;
    const SUB32: bool = true;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> KCanon {
        let mut o = zeroed_canon();
        o.d = f16_at(p);
        o.dmin = f16_at(p.add(2));
        k4_scales(p.add(4), &mut o);
        // As Q4_K, plus the fifth bit of value 32c + l: bit c of qh[l].
        let x10 = vdupq_n_u8(0x10);
        let qh = [vld1q_u8(p.add(16)), vld1q_u8(p.add(32))];
        for g in 0..4 {
            let (b0, b1) = (vdupq_n_u8(1 << (2 * g)), vdupq_n_u8(2 << (2 * g)));
            for h in 0..2 {
                let (lo, hi) = nibbles(p.add(48 + 32 * g + 16 * h));
                let h0 = vandq_u8(vtstq_u8(qh[h], b0), x10);
                let h1 = vandq_u8(vtstq_u8(qh[h], b1), x10);
                o.q[4 * g + h] = s8(vorrq_u8(lo, h0));
                o.q[4 * g + 2 + h] = s8(vorrq_u8(hi, h1));
            }
        }
        o
    }
}

impl BK for Q6K {
    const BYTES: usize = 210;
    const HAS_MIN: bool = false;
    const SUB32: bool = false;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> KCanon {
        let mut o = zeroed_canon();
        o.d = f16_at(p.add(208));
        for i in 0..16 {
            o.sc[i] = *(p.add(192 + i) as *const i8) as i32;
        }
        // Half n of 128 values: value 32c + l takes the low (c = 0, 1) or high (c = 2, 3)
        // nibble of ql[64n + 32(c & 1) + l] and bits 2c..2c+2 of qh[32n + l]; minus 32.
        let mask = vdupq_n_u8(0x0F);
        let three = vdupq_n_u8(3);
        let o32 = vdupq_n_s8(32);
        for n in 0..2 {
            for h in 0..2 {
                let l0 = vld1q_u8(p.add(64 * n + 16 * h));
                let l1 = vld1q_u8(p.add(64 * n + 32 + 16 * h));
                let qh = vld1q_u8(p.add(128 + 32 * n + 16 * h));
                let v = [
                    vorrq_u8(vandq_u8(l0, mask), vshlq_n_u8::<4>(vandq_u8(qh, three))),
                    vorrq_u8(
                        vandq_u8(l1, mask),
                        vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(qh), three)),
                    ),
                    vorrq_u8(
                        vshrq_n_u8::<4>(l0),
                        vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(qh), three)),
                    ),
                    vorrq_u8(vshrq_n_u8::<4>(l1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(qh))),
                ];
                for (c, v) in v.into_iter().enumerate() {
                    o.q[8 * n + 2 * c + h] = vsubq_s8(s8(v), o32);
                }
            }
        }
        o
    }
}

/// Exact (Σ sc·q·a, Σ min·bsum) of one decoded super-block with the 256 activation quants at
/// `a` and their 16 `bsums` at `bs`. Bounded by 256·63·127·128 < 2^31.
#[inline(always)]
unsafe fn kdot<B: BK, D: Dot>(c: &KCanon, a: *const i8, bs: *const u8) -> (i32, i32) {
    let z = vdupq_n_s32(0);
    let mut isum = z;
    if B::SUB32 {
        for s in 0..8 {
            let t = D::dot16(z, c.q[2 * s], vld1q_s8(a.add(32 * s)));
            let t = D::dot16(t, c.q[2 * s + 1], vld1q_s8(a.add(32 * s + 16)));
            isum = vmlaq_n_s32(isum, t, c.sc[2 * s]);
        }
    } else {
        for s in 0..16 {
            let t = D::dot16(z, c.q[s], vld1q_s8(a.add(16 * s)));
            isum = vmlaq_n_s32(isum, t, c.sc[s]);
        }
    }
    let mut mn = 0;
    if B::HAS_MIN {
        let b0 = vreinterpretq_s16_u8(vld1q_u8(bs));
        let b1 = vreinterpretq_s16_u8(vld1q_u8(bs.add(16)));
        let m0 = vld1q_s16(c.mins.as_ptr());
        let m1 = vld1q_s16(c.mins.as_ptr().add(8));
        let p = vmlal_high_s16(vmull_s16(vget_low_s16(m0), vget_low_s16(b0)), m0, b0);
        let p = vmlal_high_s16(vmlal_s16(p, vget_low_s16(m1), vget_low_s16(b1)), m1, b1);
        mn = vaddvq_s32(p);
    }
    (vaddvq_s32(isum), mn)
}

/// K-quant matmul. Per (row, token) pair, in super-block order:
/// `acc = fma(d·d_act, Σ sc·q·a, acc)`, then for types with mins
/// `acc = fma(−dmin·d_act, Σ min·bsum, acc)`; the integer sums are exact, so the result is the
/// same for [`Plain`] and [`Sdot`] and for every call shape. Each super-block is decoded once
/// and used for every token; the running sums live in `out` (stores and loads of f32 are
/// exact, so this does not change the arithmetic).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn mmk<B: BK, D: Dot>(
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
    let bs0 = k + 4 * nb;
    for r in 0..n_rows {
        let row = w.add(r * rb);
        for b in 0..nb {
            let c = B::unpack(row.add(b * B::BYTES));
            for t in 0..n_tok {
                let a = act.add(t * ab);
                let (isum, mn) = kdot::<B, D>(&c, a.add(256 * b) as *const i8, a.add(bs0 + 32 * b));
                let da = f32_at(a.add(k + 4 * b));
                let o = out.add(t * os + r);
                let mut acc = if b == 0 { 0.0 } else { *o };
                acc = (c.d * da).mul_add(isum as f32, acc);
                if B::HAS_MIN {
                    acc = (-(c.dmin * da)).mul_add(mn as f32, acc);
                }
                *o = acc;
            }
        }
    }
}

/// [`mmk`] with `sdot`.
///
/// # Safety
/// The CPU must have the `dotprod` extension (checked by the caller at run time).
#[target_feature(enable = "dotprod")]
#[allow(clippy::too_many_arguments)]
unsafe fn mmk_sdot<B: BK>(
    k: usize,
    w: *const u8,
    n_rows: usize,
    act: *const u8,
    n_tok: usize,
    out: *mut f32,
    os: usize,
) {
    mmk::<B, Sdot>(k, w, n_rows, act, n_tok, out, os)
}

/// [`mmk`] with plain NEON.
#[allow(clippy::too_many_arguments)]
unsafe fn mmk_plain<B: BK>(
    k: usize,
    w: *const u8,
    n_rows: usize,
    act: *const u8,
    n_tok: usize,
    out: *mut f32,
    os: usize,
) {
    mmk::<B, Plain>(k, w, n_rows, act, n_tok, out, os)
}

/// `out[t·os + r] = dot(weight row r, activation row t)` for the types of [`supports`].
///
/// `sdot`: use the `dotprod` extension for the K-quants (same results, faster).
///
/// # Safety
/// Slice sizes were checked by the caller (`check_matmul`); NEON is part of every AArch64 CPU;
/// `sdot` only where the CPU has `dotprod` (run-time detection, [`crate::has_dotprod`]).
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
    sdot: bool,
) {
    use GgmlType::*;
    let (w, a, o) = (w.as_ptr(), act.as_ptr(), out.as_mut_ptr());
    match wtype {
        Q4_0 => mm::<Q40>(k, w, n_rows, a, n_tok, o, os),
        Q4_1 => mm::<Q41>(k, w, n_rows, a, n_tok, o, os),
        Q5_0 => mm::<Q50>(k, w, n_rows, a, n_tok, o, os),
        Q5_1 => mm::<Q51>(k, w, n_rows, a, n_tok, o, os),
        Q8_0 => mm::<Q80>(k, w, n_rows, a, n_tok, o, os),
        MXFP4 => mm::<Mx4>(k, w, n_rows, a, n_tok, o, os),
        Q2_K if sdot => mmk_sdot::<Q2K>(k, w, n_rows, a, n_tok, o, os),
        Q3_K if sdot => mmk_sdot::<Q3K>(k, w, n_rows, a, n_tok, o, os),
        Q4_K if sdot => mmk_sdot::<Q4K>(k, w, n_rows, a, n_tok, o, os),
        Q5_K if sdot => mmk_sdot::<Q5K>(k, w, n_rows, a, n_tok, o, os),
        Q6_K if sdot => mmk_sdot::<Q6K>(k, w, n_rows, a, n_tok, o, os),
        Q2_K => mmk_plain::<Q2K>(k, w, n_rows, a, n_tok, o, os),
        Q3_K => mmk_plain::<Q3K>(k, w, n_rows, a, n_tok, o, os),
        Q4_K => mmk_plain::<Q4K>(k, w, n_rows, a, n_tok, o, os),
        Q5_K => mmk_plain::<Q5K>(k, w, n_rows, a, n_tok, o, os),
        Q6_K => mmk_plain::<Q6K>(k, w, n_rows, a, n_tok, o, os),
        _ => unreachable!("checked by supports()"),
    }
}
