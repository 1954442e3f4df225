//! Intermediate-tensor tracing for numerical debugging against llama.cpp: with
//! `HEARTH_TRACE=1`, the forward pass prints each traced tensor of every ubatch (all its tokens)
//! the way llama.cpp's `llama-eval-callback` does: its name as ggml's graph names it (such as
//! `attn_norm-3`), the first and last three values, and the sum, so that the two outputs can be
//! compared line by line to find the first op where they part (`llama-eval-callback -m MODEL
//! -p TEXT -n 1 -fa off` against `hearth run MODEL --raw --prompt TEXT --max-tokens 1`).
//! Names without a layer (`ffn_up`, `ffn_swiglu` of the shared FFN block) are printed once per
//! layer in order. Off, each call site costs one relaxed load.

use std::sync::atomic::{AtomicU8, Ordering};

static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 off, 2 on

#[inline]
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var_os("HEARTH_TRACE").is_some_and(|v| v != "0" && !v.is_empty());
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Print `x` (one token's row) under `name` (with `-{layer}` appended when `layer` is given).
#[inline]
pub fn row(name: &str, layer: Option<usize>, x: &[f32]) {
    if !enabled() {
        return;
    }
    print_row(name, layer, x);
}

#[cold]
fn print_row(name: &str, layer: Option<usize>, x: &[f32]) {
    let label = match layer {
        Some(l) => format!("{name}-{l}"),
        None => name.to_string(),
    };
    let n = x.len();
    let head: Vec<String> = x.iter().take(3).map(|v| format!("{v:.4}")).collect();
    let tail: Vec<String> = x[n.saturating_sub(3)..]
        .iter()
        .map(|v| format!("{v:.4}"))
        .collect();
    let sum: f64 = x.iter().map(|&v| v as f64).sum();
    eprintln!(
        "hearth_trace: {label:>24} [{} ... {}] sum = {sum:.6}",
        head.join(", "),
        tail.join(", ")
    );
    // HEARTH_TRACE_DIR: also write the values, little-endian f32, to DIR/LABEL.f32 (the first
    // ubatch's; later ones append), for element-wise comparison.
    if let Some(dir) = std::env::var_os("HEARTH_TRACE_DIR") {
        use std::io::Write;
        let path = std::path::Path::new(&dir).join(format!("{label}.f32"));
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&bytes));
        if let Err(e) = r {
            eprintln!("hearth_trace: {}: {e}", path.display());
        }
    }
}
