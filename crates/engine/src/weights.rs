//! Weights: 2-D tensors whose bytes stay in the memory-mapped model file.

use crate::error::EngineError;
use hearth_formats::{GgmlType, GgufFile, TensorInfo};
use std::sync::Arc;

/// Where a weight's bytes live. Mapped weights are never copied; `Owned` is for tensors
/// converted at load time (e.g. a future repacked layout).
#[derive(Clone)]
enum Bytes {
    Mapped {
        file: Arc<GgufFile>,
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
            Bytes::Mapped { file, offset, len } => &file.raw()[*offset..*offset + *len],
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

/// Looks tensors up by name in one GGUF file and checks their shapes.
pub struct WeightLoader {
    pub file: Arc<GgufFile>,
}

impl WeightLoader {
    pub fn new(file: Arc<GgufFile>) -> Self {
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
                offset: info.offset,
                len: info.n_bytes,
            },
        })
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
