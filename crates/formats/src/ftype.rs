//! `general.file_type`: the name llama.cpp's quantize gives a whole file ("Q4_K_M"), which no
//! single tensor type says (a Q4_K_M file mixes Q4_K, Q6_K, Q5_0 and Q8_0 tensors).

/// The GGUF metadata key.
pub const KEY: &str = "general.file_type";

/// The name of a `general.file_type` value: llama.h's `enum llama_ftype`
/// (`LLAMA_FTYPE_MOSTLY_<NAME>`), `None` for values it does not define.
pub fn name(v: u64) -> Option<&'static str> {
    Some(match v {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_llama_h() {
        assert_eq!(super::name(15), Some("Q4_K_M"));
        assert_eq!(super::name(3), Some("Q4_1"));
        assert_eq!(super::name(38), Some("MXFP4_MOE"));
        // Removed values (Q4_1_SOME_F16, Q4_2, Q4_3, the Q4_0_N_M repacks) name nothing.
        for v in [4, 5, 6, 33, 34, 35, 1024] {
            assert_eq!(super::name(v), None, "{v}");
        }
    }
}
