//! Micro benchmark for the matmul kernels (no criterion; plain timing loops).
//!
//!   cargo run --release -p hearth-kernels --example kbench [-- --threads N] [-- --quick]
//!
//! Prints, per weight type: matvec (1 token) throughput in GB/s of weight bytes read — hot
//! (matrix stays in cache) and cold (cycling through 256 MiB of weights, so it streams from
//! DRAM like a real decode) — and a 64-token tile in GMAC/s and tokens/s for that matrix. Then a
//! SmolLM2-135M Q4_1 model-equivalent: the time for all its matmuls for one decode token and for
//! a 64-token prefill batch (matmuls only; no attention, norms or threading overhead).

use hearth_kernels::{self as hk, GgmlType};
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn f16_fields(t: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match t {
        Q4_0 | Q5_0 | Q8_0 => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        _ => &[],
    }
}

fn weights(rng: &mut Rng, t: GgmlType, k: usize, n_rows: usize) -> Vec<u8> {
    let rb = t.row_bytes(k).unwrap();
    let mut w: Vec<u8> = (0..rb * n_rows).map(|_| (rng.next() >> 56) as u8).collect();
    match t {
        GgmlType::F32 => w
            .chunks_exact_mut(4)
            .for_each(|c| c.copy_from_slice(&0.01f32.to_le_bytes())),
        GgmlType::F16 | GgmlType::BF16 => w
            .chunks_exact_mut(2)
            .for_each(|c| c.copy_from_slice(&[0x00, 0x3c])),
        _ => {
            for blk in w.chunks_exact_mut(t.block_bytes()) {
                for &o in f16_fields(t) {
                    blk[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                }
            }
        }
    }
    w
}

fn acts(rng: &mut Rng, t: GgmlType, k: usize, n: usize) -> Vec<u8> {
    let fmt = hk::act_format(t);
    let ab = hk::act_row_bytes(fmt, k);
    let mut out = vec![0u8; ab * n];
    for i in 0..n {
        let x: Vec<f32> = (0..k)
            .map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        hk::quantize_act(fmt, &x, &mut out[i * ab..(i + 1) * ab]);
    }
    out
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
}

/// CPU time of the calling thread (Linux CLOCK_THREAD_CPUTIME_ID = 3), in seconds. This machine
/// is shared by several busy processes; thread CPU time ignores the time we were descheduled.
fn thread_cpu() -> f64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: plain libc call with a valid out pointer.
    unsafe { clock_gettime(3, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

/// Seconds per call of `f`: calls are timed in batches of ≥ ~1 ms; the result is the minimum
/// over batches within ~`budget` seconds of wall time. Single-threaded runs use thread CPU time
/// (robust to the other processes on this shared machine), multi-threaded ones wall time.
fn time(budget: f64, mut f: impl FnMut()) -> f64 {
    let cpu = THREADS.with(|t| *t.borrow()) <= 1;
    let clock = || {
        if cpu {
            thread_cpu()
        } else {
            START.with(|s| s.elapsed().as_secs_f64())
        }
    };
    f();
    let t = Instant::now();
    f();
    let per = t.elapsed().as_secs_f64().max(1e-7);
    let batch = ((1e-3 / per) as usize).max(1);
    let t0 = Instant::now();
    let mut best = f64::INFINITY;
    while t0.elapsed().as_secs_f64() < budget || best.is_infinite() {
        let c = clock();
        for _ in 0..batch {
            f();
        }
        let dt = clock() - c;
        if dt > 0.0 {
            best = best.min(dt / batch as f64);
        }
    }
    best
}

thread_local! {
    static START: Instant = Instant::now();
    static THREADS: std::cell::RefCell<usize> = const { std::cell::RefCell::new(1) };
}

/// matmul over `n_rows` rows split across `threads` scoped threads (contiguous row ranges).
#[allow(clippy::too_many_arguments)]
fn par_matmul(
    threads: usize,
    t: GgmlType,
    k: usize,
    w: &[u8],
    n_rows: usize,
    a: &[u8],
    n_tok: usize,
    out: &mut [f32],
) {
    if threads <= 1 {
        hk::matmul(t, k, w, n_rows, a, n_tok, out, n_rows);
        return;
    }
    // Each thread writes its own column block of `out` (row range); out is [n_tok][n_rows], so
    // give each thread a private buffer and skip the copy (benchmark only measures the kernel).
    let rb = t.row_bytes(k).unwrap();
    let per = n_rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, o) in out.chunks_mut(per * n_tok).enumerate().take(threads) {
            let r0 = i * per;
            let nr = per.min(n_rows - r0);
            let wi = &w[r0 * rb..(r0 + nr) * rb];
            s.spawn(move || hk::matmul(t, k, wi, nr, a, n_tok, &mut o[..nr * n_tok], nr));
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize);
    THREADS.with(|t| *t.borrow_mut() = threads);
    let quick = args.iter().any(|a| a == "--quick");
    let budget = if quick { 0.2 } else { 0.6 };
    // --types Q4_1,Q8_0 restricts the per-type table; --no-model skips the SmolLM2 estimate.
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--types")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_string).collect());
    let no_model = args.iter().any(|a| a == "--no-model");
    println!(
        "hearth-kernels kbench: isa {:?}, threads {threads}",
        hk::isa()
    );
    let mut rng = Rng(0x1234_5678);

    if args.iter().any(|a| a == "--bw") {
        // Aggregate decode throughput with `threads` long-lived threads, each streaming its own
        // half of a set of cold matrices (no per-call thread spawn), like an engine thread pool.
        for t in [Q4_1, Q8_0, Q5_0, Q4_K, Q6_K, MXFP4, F32] {
            let k = if t.block_len() == 256 { 1024 } else { 640 };
            let n = 4096;
            let w = weights(&mut rng, t, k, n);
            let copies = ((512usize << 20) / w.len()).max(2);
            let big: Vec<u8> = w.iter().copied().cycle().take(w.len() * copies).collect();
            let a1 = acts(&mut rng, t, k, 1);
            let rb = t.row_bytes(k).unwrap();
            let per = n / threads;
            let t0 = Instant::now();
            std::thread::scope(|s| {
                for th in 0..threads {
                    let (big, a1, wl) = (&big, &a1, w.len());
                    s.spawn(move || {
                        let mut out = vec![0f32; per];
                        for c in 0..copies {
                            let m = &big[c * wl..(c + 1) * wl];
                            let wi = &m[th * per * rb..(th + 1) * per * rb];
                            hk::matmul(t, k, wi, per, a1, 1, &mut out, per);
                        }
                    });
                }
            });
            let dt = t0.elapsed().as_secs_f64();
            println!(
                "{t}: {threads} thread(s) streaming {} MiB: {:.1} GB/s",
                big.len() >> 20,
                big.len() as f64 / dt / 1e9
            );
        }
        return;
    }
    if args.iter().any(|a| a == "--sweep") {
        // Interleave the tile variants so machine noise hits them alike; report the best of each.
        for t in [Q4_1, Q8_0] {
            let (k, n) = (576, 1536);
            let w = weights(&mut rng, t, k, n);
            let a64 = acts(&mut rng, t, k, 64);
            let mut out = vec![0f32; n * 64];
            let mut best = [f64::INFINITY; 3];
            for _round in 0..10 {
                for (cfg, b) in best.iter_mut().enumerate() {
                    hk::set_tile_config(cfg);
                    *b = b.min(time(budget / 10.0, || {
                        par_matmul(threads, t, k, &w, n, &a64, 64, &mut out)
                    }));
                }
            }
            hk::set_tile_config(0);
            for (cfg, b) in best.iter().enumerate() {
                println!(
                    "{t} 64 tokens, tile cfg {cfg}: {:.1} GMAC/s",
                    (n * k * 64) as f64 / b / 1e9
                );
            }
        }
        return;
    }
    let (k, n) = (576, 1536);
    println!("\nmatrix {n} rows x {k} (k); 'cold' cycles through 256 MiB of copies");
    println!(
        "{:<6} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "type", "hot GB/s", "cold GB/s", "1tok us", "64tok GMAC/s", "64tok tok/s"
    );
    use GgmlType::*;
    for t in [
        Q4_1, Q8_0, Q5_0, Q4_K, Q6_K, Q4_0, Q5_1, MXFP4, Q2_K, Q3_K, Q5_K, F16, BF16, F32,
    ] {
        if only.as_ref().is_some_and(|o| !o.contains(&t.to_string())) {
            continue;
        }
        let k = if t.block_len() == 256 { 768 } else { k };
        let w = weights(&mut rng, t, k, n);
        let a1 = acts(&mut rng, t, k, 1);
        let a64 = acts(&mut rng, t, k, 64);
        let mut out = vec![0f32; n * 64];
        let bytes = w.len() as f64;
        let hot = time(budget, || {
            par_matmul(threads, t, k, &w, n, &a1, 1, &mut out)
        });
        // Cold: enough copies to exceed the last-level cache.
        let copies = ((256usize << 20) / w.len()).max(2);
        let big: Vec<u8> = w.iter().copied().cycle().take(w.len() * copies).collect();
        let mut i = 0;
        let cold = time(budget, || {
            let wi = &big[i * w.len()..(i + 1) * w.len()];
            par_matmul(threads, t, k, wi, n, &a1, 1, &mut out);
            i = (i + 1) % copies;
        });
        let t64 = time(budget, || {
            par_matmul(threads, t, k, &w, n, &a64, 64, &mut out)
        });
        println!(
            "{:<6} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>12.0}",
            t.to_string(),
            bytes / hot / 1e9,
            bytes / cold / 1e9,
            hot * 1e6,
            (n * k * 64) as f64 / t64 / 1e9,
            64.0 / t64
        );
    }

    if no_model {
        return;
    }
    // Shapes (type, rows n, row length k) per layer, layer count, and the output matrix, as in
    // the GGUF files (gguf-py listing of ~/.cache/hearth/models).
    let smollm: Vec<(GgmlType, usize, usize)> = vec![
        (Q4_1, 576, 576),
        (Q4_1, 192, 576),
        (Q4_1, 192, 576),
        (Q4_1, 576, 576),
        (Q4_1, 1536, 576),
        (Q4_1, 1536, 576),
        (Q4_1, 576, 1536),
    ];
    // Gemma 3 270M Q4_K_M: Q5_0 q/k/v/gate/up (v is Q8_0 in half the layers), Q4_K attn_output,
    // ffn_down alternating Q4_K / Q6_K; tied Q8_0 output 262144 x 640.
    let gemma: Vec<(GgmlType, usize, usize)> = vec![
        (Q5_0, 1024, 640),
        (Q5_0, 256, 640),
        (Q5_0, 256, 640),
        (Q4_K, 640, 1024),
        (Q5_0, 2048, 640),
        (Q5_0, 2048, 640),
        (Q4_K, 640, 2048),
        (Q5_0, 1024, 640),
        (Q5_0, 256, 640),
        (Q8_0, 256, 640),
        (Q4_K, 640, 1024),
        (Q5_0, 2048, 640),
        (Q5_0, 2048, 640),
        (Q6_K, 640, 2048),
    ];
    for (name, layers, reps, out_n, out_k) in [
        ("SmolLM2-135M Q4_1", &smollm, 30, 49152, 576),
        ("Gemma-3-270M Q4_K_M", &gemma, 9, 262144, 640),
    ] {
        for n_tok in [1usize, 64] {
            let mut total = 0.0;
            let mut out = vec![0f32; out_n.max(2048) * n_tok];
            for &(t, n, k) in layers.iter() {
                let w = weights(&mut rng, t, k, n);
                let a = acts(&mut rng, t, k, n_tok);
                // Per-layer weights differ in a real model: time cold-ish by cycling copies.
                let copies: Vec<Vec<u8>> = (0..reps).map(|_| w.clone()).collect();
                let mut i = 0;
                total += reps as f64
                    * time(budget / 2.0, || {
                        par_matmul(threads, t, k, &copies[i], n, &a, n_tok, &mut out);
                        i = (i + 1) % reps;
                    });
            }
            let out_w = weights(&mut rng, Q8_0, out_k, out_n);
            let a = acts(&mut rng, Q8_0, out_k, n_tok);
            total += time(budget, || {
                par_matmul(threads, Q8_0, out_k, &out_w, out_n, &a, n_tok, &mut out)
            });
            println!(
                "{name} matmuls, {n_tok} token(s): {:.2} ms -> {:.0} tok/s (matmuls only)",
                total * 1e3,
                n_tok as f64 / total
            );
        }
    }
}
