//! Weight layout conversions done once at load time: MXFP4 from the OCP Microscaling layout
//! that Hugging Face checkpoints use into ggml's `block_mxfp4`.

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
