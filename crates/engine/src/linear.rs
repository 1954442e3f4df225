//! Matrix multiplication of a batch of activation rows by quantized weights, spread over the pool.
//!
//! Activations are quantized once per input (`QActs`) and shared by every weight that reads the
//! same input (Q/K/V; gate/up), and all of those weights are computed in one pool job, so a
//! layer has one synchronization per distinct input rather than one per matrix (PERF-NOTES §3).

use crate::pool::{Pool, SyncPtr};
use crate::weights::Weight;
use hearth_formats::GgmlType;
use hearth_kernels::{act_format, act_row_bytes, quantize_act, ActFormat};
use std::cell::RefCell;

/// A batch of activation rows quantized for one activation format.
#[derive(Default)]
pub struct QActs {
    fmt: Option<ActFormat>,
    /// f32-format rows rounded to f16 ([`rounds_to_f16`]).
    f16_rounded: bool,
    k: usize,
    n_tok: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

/// Whether activations meeting weights of type `w` are rounded to f16: ggml multiplies F16
/// weights with src1 converted to f16 (F16's `vec_dot_type`), so llama.cpp's products with
/// F16 weights see f16-rounded activations; we keep f32 rows but round them the same way, so
/// the two agree to summation order. BF16 weights are not rounded for: they come from Hugging
/// Face directories, whose oracle (transformers) keeps f32 activations, and bf16's 8-bit
/// mantissa would cost real accuracy (measured: 3 nats on a tiny gpt-oss).
fn rounds_to_f16(w: GgmlType) -> bool {
    w == GgmlType::F16
}

/// Round f32 activation rows (little-endian bytes, so possibly unaligned for f32) to f16, in
/// place, through [`crate::ops::round_f16`].
fn round_rows(bytes: &mut [u8]) {
    let mut buf = [0f32; 64];
    for c in bytes.chunks_mut(4 * buf.len()) {
        let n = c.len() / 4;
        for (v, b) in buf.iter_mut().zip(c.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        crate::ops::round_f16(&mut buf[..n]);
        for (v, b) in buf.iter().zip(c.chunks_exact_mut(4)) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }
}

impl QActs {
    /// Quantize `n_tok` rows of `k` values from `x` for weights of type like `w`.
    /// Rows are split over the pool when the batch is large enough to pay for it.
    pub fn quantize(&mut self, pool: &Pool, w: &Weight, x: &[f32], n_tok: usize) {
        let fmt = act_format(w.dtype);
        let k = w.cols;
        debug_assert_eq!(x.len(), n_tok * k);
        let rb = act_row_bytes(fmt, k);
        self.fmt = Some(fmt);
        self.f16_rounded = rounds_to_f16(w.dtype);
        self.k = k;
        self.n_tok = n_tok;
        self.row_bytes = rb;
        if self.data.len() < rb * n_tok {
            self.data.resize(rb * n_tok, 0);
        }
        if n_tok < 8 {
            for t in 0..n_tok {
                quantize_act(
                    fmt,
                    &x[t * k..(t + 1) * k],
                    &mut self.data[t * rb..(t + 1) * rb],
                );
            }
        } else {
            let ptr = SyncPtr(self.data.as_mut_ptr());
            pool.run(|i, n| {
                let p = ptr;
                for t in Pool::chunk(n_tok, 1, i, n) {
                    // SAFETY: each thread writes its own disjoint rows.
                    let out = unsafe { std::slice::from_raw_parts_mut(p.0.add(t * rb), rb) };
                    quantize_act(fmt, &x[t * k..(t + 1) * k], out);
                }
            });
        }
        if self.f16_rounded {
            round_rows(&mut self.data[..rb * n_tok]);
        }
    }

    pub fn matches(&self, w: &Weight) -> bool {
        self.fmt == Some(act_format(w.dtype))
            && self.f16_rounded == rounds_to_f16(w.dtype)
            && self.k == w.cols
    }

    fn bytes(&self) -> &[u8] {
        &self.data[..self.row_bytes * self.n_tok]
    }
}

thread_local! {
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The most matmuls one `matmul_many` call shares an input between (Q/K/V: 3; gate/up: 2).
const MAX_JOBS: usize = 4;

/// One matmul of a job: out (n_tok × w.rows, row-major) = acts × wᵀ.
pub struct MatJob<'a> {
    pub w: &'a Weight,
    pub out: &'a mut [f32],
}

/// Compute several matmuls sharing the same quantized input in one pool job. Each thread takes
/// a contiguous range of rows of every weight. `after` runs on each thread once its rows are
/// done, with the row ranges it computed for each job (used to fuse the GLU activation).
pub fn matmul_many(
    pool: &Pool,
    acts: &QActs,
    jobs: &mut [MatJob],
    after: Option<&(dyn Fn(&[std::ops::Range<usize>]) + Sync)>,
) {
    let n_tok = acts.n_tok;
    let n_jobs = jobs.len();
    assert!(
        (1..=MAX_JOBS).contains(&n_jobs),
        "matmul_many takes 1 to {MAX_JOBS} matmuls, got {n_jobs}"
    );
    // Fixed arrays, not Vecs: this runs several times per layer per token.
    let mut outs = [SyncPtr(std::ptr::null_mut::<f32>()); MAX_JOBS];
    let mut ws = [jobs[0].w; MAX_JOBS];
    for (ji, j) in jobs.iter_mut().enumerate() {
        assert!(
            acts.matches(j.w),
            "activations quantized for another weight shape than {}",
            j.w.name
        );
        assert!(j.out.len() >= n_tok * j.w.rows);
        outs[ji] = SyncPtr(j.out.as_mut_ptr());
        ws[ji] = j.w;
    }
    let (outs, ws) = (&outs, &ws[..n_jobs]);
    pool.run(|ith, nth| {
        let mut ranges = [0..0, 0..0, 0..0, 0..0];
        let ranges = &mut ranges[..n_jobs];
        for (ji, w) in ws.iter().enumerate() {
            let rows = Pool::chunk(w.rows, 8, ith, nth);
            ranges[ji] = rows.clone();
            if rows.is_empty() {
                continue;
            }
            let optr = outs[ji];
            let rb = w.row_bytes();
            let wbytes = &w.data()[rows.start * rb..rows.end * rb];
            let nr = rows.len();
            if n_tok == 1 {
                // SAFETY: rows ranges are disjoint across threads.
                let out = unsafe { std::slice::from_raw_parts_mut(optr.0.add(rows.start), nr) };
                hearth_kernels::matmul(w.dtype, w.cols, wbytes, nr, acts.bytes(), 1, out, nr);
            } else {
                TILE.with(|t| {
                    let mut tile = t.borrow_mut();
                    if tile.len() < nr * n_tok {
                        tile.resize(nr * n_tok, 0.0);
                    }
                    hearth_kernels::matmul(
                        w.dtype,
                        w.cols,
                        wbytes,
                        nr,
                        acts.bytes(),
                        n_tok,
                        &mut tile[..nr * n_tok],
                        nr,
                    );
                    for tk in 0..n_tok {
                        // SAFETY: each thread writes only columns rows.start..rows.end of each output row.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                tile.as_ptr().add(tk * nr),
                                optr.0.add(tk * w.rows + rows.start),
                                nr,
                            );
                        }
                    }
                });
            }
        }
        if let Some(f) = after {
            f(ranges);
        }
    });
}

/// A single matmul: out = acts × wᵀ.
pub fn matmul(pool: &Pool, acts: &QActs, w: &Weight, out: &mut [f32]) {
    matmul_many(pool, acts, &mut [MatJob { w, out }], None);
}
