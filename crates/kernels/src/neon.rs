//! AArch64 NEON kernels for the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4)
//! × Q8_0/Q8_1 activations. Other weight types use the scalar reference on AArch64 for now.
//!
//! Unlike x86's `pmaddubsw`, NEON multiplies signed × signed bytes (`smull` / `smlal2`), so
//! weights are decoded straight to their signed integer values (Q4_0's −8 and Q5_0's −16
//! applied, MXFP4 through its signed E2M1 table); only Q4_1/Q5_1 keep unsigned codes and add
//! their min `m` through the activation block sum `s`. Per block the integer sum is exact
//! (|w·a| ≤ 128·127, and two products summed in i16 stay below 32,767 before widening).
//!
//! Batch invariance (crate docs): every (row, token) pair gets the same operations whatever
//! the call shape: per block `acc = fma(d·d_act, Σ w·a, acc)` and `corr = fma(c, s, corr)` in
//! block order, then `acc + corr`. Tokens are grouped by 4 only to reuse a decoded weight
//! block; a pair's arithmetic does not depend on its group.

use crate::scalar::{e8m0_half, rd_f16, KVALUES_MXFP4};
use crate::{ActFormat, GgmlType};
use std::arch::aarch64::*;

/// Whether [`matmul`] handles weights of type `w`.
pub(crate) fn supports(w: GgmlType) -> bool {
    use GgmlType::*;
    matches!(w, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | MXFP4)
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

/// `out[t·os + r] = dot(weight row r, activation row t)` for the types of [`supports`].
///
/// # Safety
/// Slice sizes were checked by the caller (`check_matmul`); NEON is part of every AArch64 CPU.
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
        Q8_0 => mm::<Q80>(k, w, n_rows, a, n_tok, o, os),
        MXFP4 => mm::<Mx4>(k, w, n_rows, a, n_tok, o, os),
        _ => unreachable!("checked by supports()"),
    }
}
