//! CPU compute kernels over ggml-quantized weights.
//!
//! Every public function has a plain-Rust reference in [`scalar`]; the functions at the crate
//! root dispatch at run time (CPU feature detection, cached once) to a SIMD implementation
//! when one exists for this CPU, otherwise to the scalar reference. The build never assumes
//! `target-cpu=native`.
//!
//! # Weight layouts (native GGUF blocks, see ggml `ggml-common.h`)
//! All multi-byte fields are little-endian; `f16` is IEEE half.
//!
//! | type  | values/block | bytes | layout (in order) | value |
//! |-------|----|-----|--------|-------|
//! | Q4_0  | 32 | 18  | f16 d; u8 qs\[16\] | `d*((qs[j]&15)-8)` for j<16, `d*((qs[j]>>4)-8)` for j+16 |
//! | Q4_1  | 32 | 20  | f16 d; f16 m; u8 qs\[16\] | `d*q + m`, nibbles as Q4_0 |
//! | Q5_0  | 32 | 22  | f16 d; u32 qh; u8 qs\[16\] | `d*((q4 | h<<4) - 16)`, bit j of qh is value j's 5th bit |
//! | Q5_1  | 32 | 24  | f16 d; f16 m; u32 qh; u8 qs\[16\] | `d*(q4 | h<<4) + m` |
//! | Q8_0  | 32 | 34  | f16 d; i8 qs\[32\] | `d*q` |
//! | MXFP4 | 32 | 17  | u8 e (E8M0); u8 qs\[16\] | `2^(e-128) * kv[nibble]`, kv = {0,1,2,3,4,6,8,12,-0,-1,..,-12} (E2M1 doubled), nibbles as Q4_0 |
//! | Q2_K  | 256 | 84 | u8 scales\[16\]; u8 qs\[64\]; f16 d; f16 dmin | `d*(sc&15)*q2 - dmin*(sc>>4)`, 16 sub-blocks of 16 |
//! | Q3_K  | 256 | 110 | u8 hmask\[32\]; u8 qs\[64\]; u8 scales\[12\] (16 × 6 bit); f16 d | `d*(sc-32)*(q2 + 4*hbit - 4)` |
//! | Q4_K  | 256 | 144 | f16 d; f16 dmin; u8 scales\[12\] (8 × (6-bit scale, 6-bit min)); u8 qs\[128\] | `d*sc*q4 - dmin*m`, 8 sub-blocks of 32 |
//! | Q5_K  | 256 | 176 | f16 d; f16 dmin; u8 scales\[12\]; u8 qh\[32\]; u8 qs\[128\] | `d*sc*(q4 | h<<4) - dmin*m` |
//! | Q6_K  | 256 | 210 | u8 ql\[128\]; u8 qh\[64\]; i8 scales\[16\]; f16 d | `d*sc*((ql4 | qh2<<4) - 32)`, 16 sub-blocks of 16 |
//!
//! The exact bit positions (which nibble / which 2-bit field belongs to which value, the 6-bit
//! scale packing of Q3_K/Q4_K/Q5_K) follow `dequantize_row_*` in ggml `ggml-quants.c`; see the
//! comments in [`scalar`], which is written to be read as the specification.
//!
//! # Activation layouts (this crate's own; not ggml's)
//! Activations are quantized per row by [`quantize_act`] into a byte buffer of
//! [`act_row_bytes`] bytes. The layout keeps the int8 quants contiguous at the start of the row
//! (so SIMD loads of 32 quants never straddle a scale) and the per-block scales after them
//! (like ik_llama.cpp's "x4" layouts, all scales of a row in one place):
//!
//! * `F32`: `k` × f32 (raw little-endian floats).
//! * `Q8_0` and `Q8_1` (blocks of 32): `i8 qs[k]`, then `f32 d[k/32]`, then `f32 s[k/32]` with
//!   `s = d * Σ qs` over the block. ggml's Q8_0 has no `s`; we keep it for both so weight
//!   formats with an offset (Q4_0's `-8`, Q5_0's `-16`) can use unsigned×signed int8 products and
//!   fold the offset into one multiply by `s`. The scales are f32 (ggml: f16), which only makes
//!   the result more accurate.
//! * `Q8_K` (blocks of 256): `i8 qs[k]`, then `f32 d[k/256]`, then `i16 bsums[k/16]` (sum of each
//!   group of 16 quants, as ggml's `block_q8_K.bsums`).
//!
//! Quants are `round_ties_even(x * 127 / amax)` with `d = amax / 127` per block, so |q| ≤ 127
//! (the int8 products with unsigned weights up to 63 can then never saturate `pmaddubsw`).
//! Because the `Q8_0` and `Q8_1` layouts are identical here, one quantized row serves weights of
//! both formats (e.g. Q4_1 projections and a Q8_0 output matrix reading the same input).
//! [`quantize_act`] is bit-identical between the SIMD and scalar paths.
//!
//! # Kernels (x86-64 AVX2 + FMA + F16C; AArch64 NEON below; elsewhere [`scalar`])
//! * 32-value blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4): weights are decoded to unsigned bytes
//!   (offsets such as Q4_0's −8, Q5_0's −16 and MXFP4's +12 table shift are folded in through the
//!   activation block sum `s`), multiplied with `pmaddubsw`. Decode (1 token): 4 rows at a time,
//!   their block sums packed into one vector by horizontal adds, the 4 rows' f16 scales
//!   converted together, software prefetch. Prefill: tiles of 4 rows × 8 tokens where each
//!   row's 4-token block sums are packed into one vector, so a (row, block) pair costs one
//!   convert + one FMA for 4 tokens. Token remainders of 2–3 use one accumulator per pair.
//! * K-quants (Q2_K..Q6_K): each 256-value super-block is decoded to a common form (256 unsigned
//!   codes, per-16 integer scales and mins, `d`, `dmin`); the dot with a Q8_K row is then
//!   `pmaddubsw` + `pmaddwd` by the scales, with the mins folded in through `bsums`. Decode fuses
//!   decoding and dot; prefill decodes 8 super-blocks of a row once and reuses them for all tokens.
//! * F32/F16/BF16: FMA over converted weights, 1 row × 4 tokens.
//!
//! # AArch64 NEON (`neon.rs`)
//! The 32-value block formats decode to signed int8 values and use `smull`/`smlal2` + pairwise
//! adds for an exact integer sum per block, one FMA per (row, token, block); tokens are taken 4
//! at a time per decoded weight block. The K-quants (Q2_K..Q6_K) decode each super-block to 256
//! signed int8 values with integer scales (and mins) per 16 values, and reduce each
//! (super-block, token) to two exact integers, Σ sc·q·a and Σ min·bsum (Q8_K `bsums`), using
//! `sdot` on CPUs with the `dotprod` extension ([`has_dotprod`], detected at run time;
//! `HEARTH_KERNELS=neon` turns it off) and `smull`/`smlal2` + `sadalp` otherwise: the same
//! integers, so bit-identical results. Float weights use the scalar reference on AArch64 for
//! now. Tested on x86 hosts under qemu-aarch64 (`scripts/test-aarch64.sh`), on an emulated CPU
//! with and one without `dotprod`.
//!
//! # AVX-512 VNNI prefill (`avx512.rs`)
//! On CPUs with AVX-512 F/BW/VNNI, calls of 8 or more tokens on Q4_0, Q4_1, Q5_0, Q5_1 and
//! MXFP4 weights convert 16 weight rows at a time into a row-interleaved int8 tile (kept in a
//! per-thread buffer that grows once) and multiply it with `vpdpbusd`, 16 rows × 8 tokens per
//! inner tile. It reduces each pair to the same exact integers and float operations as the AVX2
//! kernels, so it changes speed only; `HEARTH_KERNELS=avx2` turns it off for comparisons.
//! Single-token calls (decode) on those types and on Q8_0 go to its 4-row × 2-block
//! `vpdpbusd` matvec, again bit-identical to the AVX2 decode kernel, with half its shuffles.
//!
//! # Batch invariance
//! The f32 result for a (row, token) pair is bit-identical whatever the call shape: the number
//! of rows and tokens in the call, the row's position in a 4-row group, and which tile handled
//! it (tested bit-for-bit in `matmul_batch_invariant_*`). The engine relies on this so that a
//! sequence decoded inside a continuous batch gets exactly the logits it would get alone. Each
//! kernel family therefore applies one fixed sequence of float operations per pair:
//! * 32-value blocks: per block, two exact integer sums (first / last 16 values), each FMA'd
//!   with `d·d_act` into its own lane; at the end (lane_lo + lane_hi) + Σ c·s, the offset term
//!   accumulated by one FMA per block. The decode (4 rows × 1 token), prefill (4 rows × 4/8
//!   tokens) and remainder (2–3 tokens) tiles differ only in which pairs share a vector.
//! * K-quants: one 8-lane accumulator per pair, reduced with one fixed horizontal sum per chunk
//!   of 8 super-blocks, the chunk sums added in order — in decode as in prefill. On NEON one
//!   scalar accumulator per pair: per super-block one FMA of the exact Σ sc·q·a by `d·d_act`,
//!   then (Q2_K, Q4_K, Q5_K) one of the exact Σ min·bsum by `−dmin·d_act`.
//! * Floats: the same two 8-lane accumulators per pair for every token count.
//!
//! The scalar reference computes the same values up to float rounding, not bit-for-bit. `cargo run --release -p hearth-kernels --example kbench` measures them; on one
//! core of a busy 2-core AMD EPYC (Zen 3) it gave, for a 1536×576 matrix, decode from cache /
//! streaming from DRAM: Q4_1 17 / 15 GB/s, Q8_0 31 / 11.5, Q5_0 14 / 14, Q4_K 14 / 12, and
//! about 40 GMAC/s for 64-token tiles of Q4_1, Q8_0, Q4_K and Q6_K (35 for Q5_0).

// Tile code indexes accumulator arrays by (row, token) on purpose; `is_multiple_of` is avoided
// for older toolchains (the workspace MSRV is 1.89, for the stable AVX-512 intrinsics).
#![allow(clippy::needless_range_loop, clippy::manual_is_multiple_of)]

pub use hearth_formats::GgmlType;

pub mod quant;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

use std::sync::OnceLock;

/// Activation format paired with a weight type for integer dot products
/// (as ggml: Q8_0 for Q4_0/Q5_0/Q8_0/MXFP4, Q8_1 for Q4_1/Q5_1 (carries s = d*sum(q)), Q8_K for
/// Q2_K..Q6_K, F32 for F32/F16/BF16). Layouts: see the crate documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ActFormat {
    F32,
    Q8_0,
    Q8_1,
    Q8_K,
}

/// Errors for callers that validate a weight tensor before calling [`matmul`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("weight type {0} is not supported by the matmul kernels (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4)")]
    UnsupportedType(GgmlType),
    #[error("row length {k} is not a multiple of the {wtype} block length {block}")]
    BadRowLength {
        wtype: GgmlType,
        k: usize,
        block: usize,
    },
}

/// Whether `matmul` / `dequantize_row` accept weights of type `w`.
pub fn is_supported(w: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        w,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | MXFP4
    )
}

/// Check that a weight tensor of type `wtype` with rows of `k` values can go through [`matmul`].
/// The engine should call this once per tensor at load time; `matmul` itself panics on
/// violations (it has no error channel and must stay allocation-free).
pub fn check_weight(wtype: GgmlType, k: usize) -> Result<(), KernelError> {
    if !is_supported(wtype) {
        return Err(KernelError::UnsupportedType(wtype));
    }
    let block = wtype.block_len();
    if k == 0 || k % block != 0 {
        return Err(KernelError::BadRowLength { wtype, k, block });
    }
    Ok(())
}

/// The activation format that `matmul` expects for weights of type `w`.
/// Unsupported types map to `F32` (and `matmul` will reject them).
pub fn act_format(w: GgmlType) -> ActFormat {
    use GgmlType::*;
    match w {
        Q4_0 | Q5_0 | Q8_0 | MXFP4 => ActFormat::Q8_0,
        Q4_1 | Q5_1 => ActFormat::Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => ActFormat::Q8_K,
        _ => ActFormat::F32,
    }
}

/// Values per activation block of `fmt`.
pub fn act_block_len(fmt: ActFormat) -> usize {
    match fmt {
        ActFormat::F32 => 1,
        ActFormat::Q8_0 | ActFormat::Q8_1 => 32,
        ActFormat::Q8_K => 256,
    }
}

/// Bytes of one quantized activation row of `k` values in format `fmt` (k is a multiple of the
/// weight block length). Layouts: see the crate documentation.
pub fn act_row_bytes(fmt: ActFormat, k: usize) -> usize {
    match fmt {
        ActFormat::F32 => 4 * k,
        // qs, d, s
        ActFormat::Q8_0 | ActFormat::Q8_1 => k + 8 * (k / 32),
        // qs, d, bsums
        ActFormat::Q8_K => k + 4 * (k / 256) + 2 * (k / 16),
    }
}

/// Tuning hook for benchmarks: selects the rows × tokens tile of the 32-block AVX2 kernels
/// (0 = 4 rows × 8 tokens, the default; 1 = 4 × 4; 2 = 2 × 8; anything else = default).
/// Results are bit-identical for every setting (see "Batch invariance" in the crate docs).
#[doc(hidden)]
pub fn set_tile_config(cfg: usize) {
    #[cfg(target_arch = "x86_64")]
    avx2::TILE_CFG.store(cfg, std::sync::atomic::Ordering::Relaxed);
    let _ = cfg;
}

/// Which implementation the dispatching functions use on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// AArch64 NEON (32-value block formats and K-quants, with `sdot` where
    /// [`has_dotprod`]; float weights use the scalar reference).
    Neon,
}

/// The implementation selected for this process (detected once). Setting the environment
/// variable `HEARTH_KERNELS=scalar` before the first kernel call forces the scalar reference.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var("HEARTH_KERNELS")
            .map(|v| v.eq_ignore_ascii_case("scalar"))
            .unwrap_or(false)
        {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                return Isa::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            // NEON (Advanced SIMD) is mandatory in AArch64; detected anyway for clarity.
            if std::arch::is_aarch64_feature_detected!("neon") {
                return Isa::Neon;
            }
        }
        Isa::Scalar
    })
}

/// Whether calls of at least 8 tokens on unsigned 32-block weights use the AVX-512 VNNI prefill
/// kernel (CPU has AVX-512 F/BW/VNNI on top of [`Isa::Avx2`]). Its results are bit-identical to
/// the AVX2 kernels', so this changes speed only. `HEARTH_KERNELS=avx2` turns it off.
pub fn has_vnni() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| {
        if isa() != Isa::Avx2
            || std::env::var("HEARTH_KERNELS")
                .map(|v| v.eq_ignore_ascii_case("avx2"))
                .unwrap_or(false)
        {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Whether the NEON K-quant kernels use the `sdot` instruction (AArch64 CPU with the
/// `dotprod` extension, detected at run time, on top of [`Isa::Neon`]). The results are
/// bit-identical to the plain NEON kernels (`smull`/`smlal2`), so this changes speed only.
/// `HEARTH_KERNELS=neon` turns it off.
pub fn has_dotprod() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| {
        if isa() != Isa::Neon
            || std::env::var("HEARTH_KERNELS")
                .map(|v| v.eq_ignore_ascii_case("neon"))
                .unwrap_or(false)
        {
            return false;
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("dotprod")
        }
        #[cfg(not(target_arch = "aarch64"))]
        false
    })
}

/// Test hook: [`matmul`] on the plain NEON kernels (no `sdot`) whatever the CPU has, so tests
/// on a `dotprod` CPU can compare both K-quant paths bit for bit in one process. Falls back to
/// the scalar reference for types without a NEON kernel.
#[doc(hidden)]
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn matmul_neon_plain(
    wtype: GgmlType,
    k: usize,
    w: &[u8],
    n_rows: usize,
    act: &[u8],
    n_tok: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    check_matmul(wtype, k, w, n_rows, act, n_tok, out, out_stride);
    if n_rows == 0 || n_tok == 0 {
        return;
    }
    if neon::supports(wtype) {
        // SAFETY: NEON is part of every AArch64 CPU; sizes checked above; no `sdot`.
        unsafe { neon::matmul(wtype, k, w, n_rows, act, n_tok, out, out_stride, false) }
    } else {
        scalar::matmul(wtype, k, w, n_rows, act, n_tok, out, out_stride)
    }
}

fn check_act(fmt: ActFormat, x: &[f32], out: &[u8]) {
    let k = x.len();
    let bl = act_block_len(fmt);
    assert!(
        k % bl == 0,
        "quantize_act: row length {k} is not a multiple of the {fmt:?} block length {bl}"
    );
    assert!(
        out.len() == act_row_bytes(fmt, k),
        "quantize_act: output buffer is {} bytes, {fmt:?} row of {k} values needs {}",
        out.len(),
        act_row_bytes(fmt, k)
    );
}

/// Quantize one activation row `x` (len k) into `out` (len `act_row_bytes(fmt, k)`).
/// SIMD-dispatched; bit-identical to [`scalar::quantize_act`].
///
/// Panics if `k` is not a multiple of the format's block length or `out` has the wrong size.
pub fn quantize_act(fmt: ActFormat, x: &[f32], out: &mut [u8]) {
    check_act(fmt, x, out);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: isa() verified avx2+fma+f16c; sizes checked above.
        Isa::Avx2 => unsafe { avx2::quantize_act(fmt, x, out) },
        _ => scalar::quantize_act(fmt, x, out),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn check_matmul(
    wtype: GgmlType,
    k: usize,
    w: &[u8],
    n_rows: usize,
    act: &[u8],
    n_tok: usize,
    out: &[f32],
    out_stride: usize,
) {
    if let Err(e) = check_weight(wtype, k) {
        panic!("matmul: {e}");
    }
    let rb = wtype.row_bytes(k).unwrap();
    let ab = act_row_bytes(act_format(wtype), k);
    assert!(
        w.len() >= rb * n_rows,
        "matmul: weight slice has {} bytes, {n_rows} {wtype} rows of {k} need {}",
        w.len(),
        rb * n_rows
    );
    assert!(
        act.len() >= ab * n_tok,
        "matmul: activation slice has {} bytes, {n_tok} rows need {}",
        act.len(),
        ab * n_tok
    );
    if n_rows > 0 && n_tok > 0 {
        assert!(
            out_stride >= n_rows,
            "matmul: out_stride {out_stride} < n_rows {n_rows}"
        );
        let need = (n_tok - 1) * out_stride + n_rows;
        assert!(
            out.len() >= need,
            "matmul: output slice has {} floats, needs {need}",
            out.len()
        );
    }
}

/// The GEMM/GEMV tile: for r in 0..n_rows, t in 0..n_tok:
///   `out[t * out_stride + r] = dot(weight row r, activation row t)`.
///
/// `w` holds n_rows consecutive weight rows of `wtype.row_bytes(k)` bytes each (native GGUF
/// block layout, see the crate docs); `act` holds n_tok consecutive rows of
/// `act_row_bytes(act_format(wtype), k)` bytes each, produced by [`quantize_act`].
/// Handles every n_rows ≥ 1 and n_tok ≥ 1; never allocates or locks, so threads may call it on
/// disjoint row ranges concurrently.
///
/// Panics (a caller bug, not bad input data) if the type is unsupported, `k` is not a multiple
/// of the block length, or a slice is too short; use [`check_weight`] at load time.
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
    check_matmul(wtype, k, w, n_rows, act, n_tok, out, out_stride);
    if n_rows == 0 || n_tok == 0 {
        return;
    }
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: has_vnni() verified AVX-512 F/BW/VNNI on top of AVX2; sizes checked above.
        Isa::Avx2 if n_tok >= avx512::MIN_TOK && avx512::supports(wtype) && has_vnni() => unsafe {
            avx512::matmul(wtype, k, w, n_rows, act, n_tok, out, out_stride)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 if n_tok == 1 && avx512::supports_decode(wtype) && has_vnni() => unsafe {
            avx512::matvec(wtype, k, w, n_rows, act, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: isa() verified the CPU features; all slice sizes were checked above.
        Isa::Avx2 => unsafe { avx2::matmul(wtype, k, w, n_rows, act, n_tok, out, out_stride) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is present (isa()); all slice sizes were checked above.
        Isa::Neon if neon::supports(wtype) => unsafe {
            neon::matmul(
                wtype,
                k,
                w,
                n_rows,
                act,
                n_tok,
                out,
                out_stride,
                has_dotprod(),
            )
        },
        _ => scalar::matmul(wtype, k, w, n_rows, act, n_tok, out, out_stride),
    }
}

/// Dequantize one row (len `dst.len()`) of any supported type to f32 (embedding lookups, tests).
/// `src` must hold at least `wtype.row_bytes(dst.len())` bytes.
pub fn dequantize_row(wtype: GgmlType, src: &[u8], dst: &mut [f32]) {
    scalar::dequantize_row(wtype, src, dst)
}

/// Σ a\[i\]·b\[i\]. Panics if the lengths differ.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features verified by isa(); lengths equal.
        Isa::Avx2 => unsafe { avx2::dot_f32(a, b) },
        _ => scalar::dot_f32(a, b),
    }
}

/// Σ a\[i\]·b\[i\] with `a` in f16 (the KV cache). Panics if the lengths differ.
pub fn dot_f16(a: &[half::f16], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f16: length mismatch");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features verified by isa(); lengths equal.
        Isa::Avx2 => unsafe { avx2::dot_f16(a, b) },
        _ => scalar::dot_f16(a, b),
    }
}

/// y\[i\] += a·x\[i\]. Panics if the lengths differ.
pub fn axpy_f16(y: &mut [f32], a: f32, x: &[half::f16]) {
    assert_eq!(y.len(), x.len(), "axpy_f16: length mismatch");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features verified by isa(); lengths equal.
        Isa::Avx2 => unsafe { avx2::axpy_f16(y, a, x) },
        _ => scalar::axpy_f16(y, a, x),
    }
}

/// y\[i\] += a·x\[i\]. Panics if the lengths differ.
pub fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len(), "axpy_f32: length mismatch");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features verified by isa(); lengths equal.
        Isa::Avx2 => unsafe { avx2::axpy_f32(y, a, x) },
        _ => scalar::axpy_f32(y, a, x),
    }
}

/// Widen f16 values to f32 (exact). Panics if the lengths differ.
pub fn f16_to_f32(src: &[half::f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32: length mismatch");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features verified by isa(); lengths equal.
        Isa::Avx2 => unsafe { avx2::f16_to_f32(src, dst) },
        _ => scalar::f16_to_f32(src, dst),
    }
}

/// Round each f32 to the nearest f16 (ties to even). Panics if the lengths differ.
pub fn f32_to_f16(src: &[f32], dst: &mut [half::f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16: length mismatch");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features verified by isa(); lengths equal.
        Isa::Avx2 => unsafe { avx2::f32_to_f16(src, dst) },
        _ => scalar::f32_to_f16(src, dst),
    }
}
