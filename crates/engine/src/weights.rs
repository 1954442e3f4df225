//! Weights: 2-D tensors whose bytes stay in the memory-mapped model file(s).

use crate::error::EngineError;
use crate::hf::EXPERT_SEP;
use crate::source::ModelSource;
use hearth_formats::{GgmlType, TensorInfo};
use std::sync::Arc;

/// Where a weight's bytes live. Mapped weights are never copied; `Owned` is for tensors
/// converted at load time (e.g. a future repacked layout).
#[derive(Clone)]
enum Bytes {
    Mapped {
        file: Arc<ModelSource>,
        /// The source's backing buffer (the GGUF file, or one safetensors file).
        buf: u32,
        offset: usize,
        len: usize,
    },
    /// Converted at load (`--quantize`).
    Owned(Arc<Vec<u8>>),
}

/// A matrix of `rows` rows of `cols` values each, stored row-major in ggml block layout
/// (ggml's ne[0] = cols is the contiguous dimension).
#[derive(Clone)]
pub struct Weight {
    pub name: String,
    pub dtype: GgmlType,
    pub rows: usize,
    pub cols: usize,
    bytes: Bytes,
}

impl Weight {
    pub fn data(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped {
                file,
                buf,
                offset,
                len,
            } => &file.buffer(*buf)[*offset..*offset + *len],
            Bytes::Owned(v) => v,
        }
    }
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).expect("validated at load")
    }
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data()[r * rb..(r + 1) * rb]
    }
    pub fn n_bytes(&self) -> usize {
        match &self.bytes {
            Bytes::Mapped { len, .. } => *len,
            Bytes::Owned(v) => v.len(),
        }
    }
    /// Rows `start..start + n` of this matrix as a matrix of their own, viewing the same
    /// bytes (rows are contiguous, whole blocks): how a fused tensor (`attn_qkv`, a gate/up
    /// `ffn_up`) is read as its parts without a copy.
    pub fn rows_view(&self, start: usize, n: usize, name: &str) -> Weight {
        assert!(
            start + n <= self.rows,
            "{}: rows {start}+{n} of {}",
            self.name,
            self.rows
        );
        let rb = self.row_bytes();
        let bytes = match &self.bytes {
            Bytes::Mapped {
                file, buf, offset, ..
            } => Bytes::Mapped {
                file: file.clone(),
                buf: *buf,
                offset: offset + start * rb,
                len: n * rb,
            },
            Bytes::Owned(v) => Bytes::Owned(Arc::new(v[start * rb..(start + n) * rb].to_vec())),
        };
        Weight {
            name: name.to_string(),
            dtype: self.dtype,
            rows: n,
            cols: self.cols,
            bytes,
        }
    }
    /// A vector (1-D weight such as a norm) as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for r in 0..self.rows {
            hearth_kernels::dequantize_row(
                self.dtype,
                self.row(r),
                &mut out[r * self.cols..(r + 1) * self.cols],
            );
        }
        out
    }
}

/// Quantize F32/F16/BF16 weight matrices once at load (`hearth run/serve/bench --quantize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Quantize {
    /// Every matrix Q8_0 (as `llama-quantize --pure ... Q8_0`).
    Q8_0,
    /// Every matrix Q4_K (`--pure Q4_K_M` without its per-tensor mix); rows that are not a
    /// multiple of 256 values fall back to Q8_0.
    Q4_K,
    /// llama.cpp's MXFP4_MOE (llama-quant.cpp): expert tensors MXFP4, other matrices Q8_0.
    Mxfp4,
}

impl std::fmt::Display for Quantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quantize::Q8_0 => "q8_0",
            Quantize::Q4_K => "q4_k",
            Quantize::Mxfp4 => "mxfp4",
        })
    }
}

impl std::str::FromStr for Quantize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Quantize::parse(s.trim()).ok_or_else(|| {
            format!("unknown quantization type '{s}' (supported: q8_0, q4_k, mxfp4)")
        })
    }
}

impl Quantize {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Some(Quantize::Q8_0),
            "q4_k" => Some(Quantize::Q4_K),
            "mxfp4" => Some(Quantize::Mxfp4),
            _ => None,
        }
    }

    /// The type for a matrix of `cols` values per row (None: leave it as it is).
    fn target(self, cols: usize, expert: bool) -> Option<GgmlType> {
        let want = match self {
            Quantize::Q8_0 => GgmlType::Q8_0,
            Quantize::Q4_K => GgmlType::Q4_K,
            Quantize::Mxfp4 if expert => GgmlType::MXFP4,
            Quantize::Mxfp4 => GgmlType::Q8_0,
        };
        [want, GgmlType::Q8_0]
            .into_iter()
            .find(|t| cols % t.block_len() == 0)
    }
}

/// Looks tensors up by GGUF name in a model source (a GGUF file or a Hugging Face directory)
/// and checks their shapes.
pub struct WeightLoader {
    pub file: Arc<ModelSource>,
    /// Quantize float matrices as they are loaded.
    pub quantize: Option<Quantize>,
    /// How many matrices `quantize` has converted so far, and their bytes (held in memory).
    quantized: std::sync::atomic::AtomicUsize,
    quantized_bytes: std::sync::atomic::AtomicUsize,
}

impl WeightLoader {
    pub fn new(file: Arc<ModelSource>) -> Self {
        WeightLoader {
            file,
            quantize: None,
            quantized: Default::default(),
            quantized_bytes: Default::default(),
        }
    }

    /// The number of matrices quantized at load so far.
    pub fn quantized_count(&self) -> usize {
        self.quantized.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of the matrices quantized at load so far.
    pub fn quantized_bytes(&self) -> usize {
        self.quantized_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `w` requantized under `self.quantize` when it is a float matrix (more than one row, not
    /// a MoE router: llama.cpp keeps `ffn_gate_inp` unquantized too), else `w` itself. Rows are
    /// quantized by ggml's reference quantizers (`hearth_kernels::quant`) on all cores.
    fn quantized(&self, w: Weight, expert: bool) -> Weight {
        let Some(q) = self.quantize else { return w };
        let float = matches!(w.dtype, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        if !float || w.rows < 2 || w.name.contains("ffn_gate_inp") {
            return w;
        }
        let Some(t) = q.target(w.cols, expert) else {
            return w;
        };
        let rb = t.row_bytes(w.cols).expect("target divides the row");
        let mut out = vec![0u8; rb * w.rows];
        let n_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = w.rows.div_ceil(n_threads);
        std::thread::scope(|s| {
            for (c, chunk) in out.chunks_mut(per * rb).enumerate() {
                let w = &w;
                s.spawn(move || {
                    let mut row = vec![0f32; w.cols];
                    for (i, dst) in chunk.chunks_exact_mut(rb).enumerate() {
                        hearth_kernels::dequantize_row(w.dtype, w.row(c * per + i), &mut row);
                        hearth_kernels::quant::quantize_row(t, &row, dst)
                            .expect("type and row length checked");
                    }
                });
            }
        });
        self.quantized
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.quantized_bytes
            .fetch_add(out.len(), std::sync::atomic::Ordering::Relaxed);
        Weight {
            name: w.name,
            dtype: t,
            rows: w.rows,
            cols: w.cols,
            bytes: Bytes::Owned(Arc::new(out)),
        }
    }

    fn info(&self, name: &str) -> Result<&TensorInfo, EngineError> {
        self.file
            .tensor_info(name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.file.path.display().to_string(),
                tensor: name.to_string(),
            })
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor_info(name).is_some()
    }

    /// A matrix with `cols` values per row and `rows` rows (ggml dims [cols, rows]), quantized
    /// under `self.quantize`.
    pub fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Weight, EngineError> {
        let w = self.mapped(name, cols, rows)?;
        Ok(self.quantized(w, false))
    }

    /// `matrix` as stored (for vectors and biases, which are never quantized).
    fn mapped(&self, name: &str, cols: usize, rows: usize) -> Result<Weight, EngineError> {
        let info = self.info(name)?;
        let dims: Vec<usize> = info
            .dims
            .iter()
            .copied()
            .chain(std::iter::repeat(1))
            .take(4)
            .collect();
        if dims[0] != cols || dims[1] * dims[2] * dims[3] != rows {
            return Err(EngineError::BadShape {
                path: self.file.path.display().to_string(),
                tensor: name.to_string(),
                expected: vec![cols, rows],
                found: info.dims.clone(),
            });
        }
        Ok(Weight {
            name: name.to_string(),
            dtype: info.dtype,
            rows,
            cols,
            bytes: Bytes::Mapped {
                file: self.file.clone(),
                buf: self.file.buffer_of(name),
                offset: info.offset,
                len: info.n_bytes,
            },
        })
    }

    /// The `n_expert` matrices of a 3-D expert tensor (ggml dims [cols, rows, n_expert], e.g.
    /// `blk.N.ffn_gate_exps.weight`), one `Weight` per expert viewing its slice of the mapped
    /// bytes: expert e's rows follow expert e-1's, so a slice is rows × row_bytes long.
    pub fn experts(
        &self,
        name: &str,
        cols: usize,
        rows: usize,
        n_expert: usize,
    ) -> Result<Vec<Weight>, EngineError> {
        // Hugging Face checkpoints store one matrix per expert (`name#E`, see crate::hf).
        if !self.has(name) && self.has(&format!("{name}{EXPERT_SEP}0")) {
            return (0..n_expert)
                .map(|e| {
                    let w = self.mapped(&format!("{name}{EXPERT_SEP}{e}"), cols, rows)?;
                    Ok(self.quantized(w, true))
                })
                .collect();
        }
        let info = self.info(name)?;
        let bad = || EngineError::BadShape {
            path: self.file.path.display().to_string(),
            tensor: name.to_string(),
            expected: vec![cols, rows, n_expert],
            found: info.dims.clone(),
        };
        if info.dims.len() != 3 || info.dims[..] != [cols, rows, n_expert] {
            return Err(bad());
        }
        let rb = info.dtype.row_bytes(cols).ok_or_else(bad)?;
        let slice = rb * rows;
        if slice * n_expert != info.n_bytes {
            return Err(bad());
        }
        Ok((0..n_expert)
            .map(|e| {
                self.quantized(
                    Weight {
                        name: format!("{name}[{e}]"),
                        dtype: info.dtype,
                        rows,
                        cols,
                        bytes: Bytes::Mapped {
                            file: self.file.clone(),
                            buf: self.file.buffer_of(name),
                            offset: info.offset + e * slice,
                            len: slice,
                        },
                    },
                    true,
                )
            })
            .collect())
    }

    /// A 2-D tensor of `n` rows of `cols` f32 values (per-expert biases), dequantized.
    pub fn rows_f32_opt(
        &self,
        name: &str,
        cols: usize,
        n: usize,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        if self.has(name) {
            Ok(Some(self.mapped(name, cols, n)?.to_f32()))
        } else {
            Ok(None)
        }
    }

    /// A 1-D tensor of `n` values, dequantized to f32 (norm weights, biases).
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
        Ok(self.mapped(name, n, 1)?.to_f32())
    }

    pub fn vector_opt(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, EngineError> {
        if self.has(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}
