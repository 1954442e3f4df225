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
    #[allow(dead_code)] // for weights converted at load (repacked layouts), not used yet
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

/// Looks tensors up by GGUF name in a model source (a GGUF file or a Hugging Face directory)
/// and checks their shapes.
pub struct WeightLoader {
    pub file: Arc<ModelSource>,
}

impl WeightLoader {
    pub fn new(file: Arc<ModelSource>) -> Self {
        WeightLoader { file }
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

    /// A matrix with `cols` values per row and `rows` rows (ggml dims [cols, rows]).
    pub fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Weight, EngineError> {
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
                .map(|e| self.matrix(&format!("{name}{EXPERT_SEP}{e}"), cols, rows))
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
            .map(|e| Weight {
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
            Ok(Some(self.matrix(name, cols, n)?.to_f32()))
        } else {
            Ok(None)
        }
    }

    /// A 1-D tensor of `n` values, dequantized to f32 (norm weights, biases).
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
        Ok(self.matrix(name, n, 1)?.to_f32())
    }

    pub fn vector_opt(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, EngineError> {
        if self.has(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}
