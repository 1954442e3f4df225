//! Where a model's tensors and hyper-parameters come from: one `.gguf` file, or a Hugging Face
//! style directory (config.json + safetensors shards, see [`crate::hf`]).
//!
//! Architecture files see one vocabulary whatever the source: GGUF tensor names
//! (`blk.N.attn_q.weight`) with ggml dimensions (`dims[0]` contiguous) and GGUF metadata keys
//! (`{arch}.block_count`, ...). A Hugging Face directory is translated into that vocabulary when
//! it is opened, so adding a source never touches an architecture, and tensor bytes stay in the
//! mapped files either way (no copy at load).
//!
//! Keys that exist only here (never in a GGUF file), set for sources whose layout differs from
//! what llama.cpp's converter writes:
//! * [`KEY_ROPE_NEOX`] (bool): Q/K rows are in Hugging Face order, where RoPE rotates pairs
//!   (i, i + n_rot/2) ("rotate_half", NEOX style), not the interleaved pairs (2i, 2i+1) that
//!   llama.cpp's converter produces for `llama` by permuting the Q/K rows. Rotating the
//!   unpermuted rows NEOX-style is the same computation, and leaves the weights mapped.
//! * [`KEY_YARN_TRUNCATE`] (bool, default true): whether YaRN's correction range is rounded
//!   to whole dimensions (floor / ceil), as ggml always does; transformers' `truncate` setting,
//!   which gpt-oss's config.json sets to false.

use crate::error::EngineError;
use crate::hf::HfModel;
use hearth_formats::{GgufFile, TensorInfo, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Hearth-only metadata key: RoPE pairs Q/K dimensions NEOX-style (see the module comment).
pub const KEY_ROPE_NEOX: &str = "hearth.rope.neox";

/// Hearth-only metadata key: round YaRN's correction range (see the module comment).
pub const KEY_YARN_TRUNCATE: &str = "hearth.rope.yarn_truncate";

/// A model's tensors and metadata, from a GGUF file or a Hugging Face directory.
pub struct ModelSource {
    /// The `.gguf` file, or the Hugging Face directory.
    pub path: PathBuf,
    inner: Inner,
}

enum Inner {
    Gguf(GgufFile),
    Hf(HfModel),
}

impl ModelSource {
    /// Open a `.gguf` file.
    pub fn open_gguf(path: impl AsRef<Path>) -> Result<Self, EngineError> {
        let file = GgufFile::open(path.as_ref())?;
        Ok(ModelSource {
            path: file.path.clone(),
            inner: Inner::Gguf(file),
        })
    }

    /// Open a Hugging Face model directory (config.json, safetensors).
    pub fn open_hf_dir(dir: impl AsRef<Path>) -> Result<Self, EngineError> {
        let hf = HfModel::open(dir.as_ref())?;
        Ok(ModelSource {
            path: hf.dir.clone(),
            inner: Inner::Hf(hf),
        })
    }

    /// Drop the GGUF vocabulary arrays (tokens, scores, token types, merges) once the tokenizer
    /// holds them: as parsed `Value`s they take about 60 MiB for a 262k-token vocabulary
    /// (Gemma 3), memory that would otherwise stay resident beside the mapped weights.
    pub fn release_vocab(&mut self) {
        if let Inner::Gguf(f) = &mut self.inner {
            f.release_arrays(&[
                "tokenizer.ggml.tokens",
                "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges",
            ]);
        }
    }

    /// The GGUF file, when that is the source (its tokenizer is in its metadata).
    pub fn gguf(&self) -> Option<&GgufFile> {
        match &self.inner {
            Inner::Gguf(f) => Some(f),
            Inner::Hf(_) => None,
        }
    }

    /// The Hugging Face directory, when that is the source.
    pub fn hf(&self) -> Option<&HfModel> {
        match &self.inner {
            Inner::Hf(h) => Some(h),
            Inner::Gguf(_) => None,
        }
    }

    /// A short name of the format, for logs and `hearth info`.
    pub fn format_name(&self) -> String {
        match &self.inner {
            Inner::Gguf(f) => format!("GGUF v{}", f.version),
            Inner::Hf(h) => format!(
                "Hugging Face directory ({}, {} safetensors file{})",
                h.hf_architecture,
                h.n_files(),
                if h.n_files() == 1 { "" } else { "s" }
            ),
        }
    }

    /// Metadata under GGUF key names (translated from config.json for a directory).
    pub fn metadata(&self) -> &BTreeMap<String, Value> {
        match &self.inner {
            Inner::Gguf(f) => &f.metadata,
            Inner::Hf(h) => &h.metadata,
        }
    }

    /// Every tensor under its GGUF name with ggml dimensions.
    pub fn tensors(&self) -> &[TensorInfo] {
        match &self.inner {
            Inner::Gguf(f) => &f.tensors,
            Inner::Hf(h) => &h.tensors,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata().get(key)
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        match &self.inner {
            Inner::Gguf(f) => f.tensor_info(name),
            Inner::Hf(h) => h.tensor_info(name).map(|(t, _)| t),
        }
    }

    /// Which backing buffer holds a tensor (its `offset` is relative to that buffer).
    pub(crate) fn buffer_of(&self, name: &str) -> u32 {
        match &self.inner {
            Inner::Gguf(_) => 0,
            Inner::Hf(h) => h.tensor_info(name).map_or(0, |(_, b)| b),
        }
    }

    /// The bytes of backing buffer `i`: the mapped GGUF file, a mapped safetensors file, or a
    /// tensor converted at open (e.g. Gemma's norm weights with their +1 folded in).
    pub(crate) fn buffer(&self, i: u32) -> &[u8] {
        match &self.inner {
            Inner::Gguf(f) => f.raw(),
            Inner::Hf(h) => h.buffer(i),
        }
    }

    /// The raw bytes of a tensor.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let b = self.buffer(self.buffer_of(&info.name));
        &b[info.offset..info.offset + info.n_bytes]
    }

    /// Total bytes of the mapped files.
    pub fn file_len(&self) -> usize {
        match &self.inner {
            Inner::Gguf(f) => f.file_len(),
            Inner::Hf(h) => h.mapped_len(),
        }
    }

    /// Memory of the source: bytes mapped from files, how many of them are in RAM now (page
    /// cache pages the weights can be read from without I/O; `None` where the OS cannot say),
    /// and bytes of tensors copied into memory at open.
    pub fn memory(&self) -> SourceMemory {
        let (maps, owned) = match &self.inner {
            Inner::Gguf(f) => (vec![f.mapped()], 0),
            Inner::Hf(h) => h.buffers(),
        };
        let resident = maps.iter().map(|m| resident_len(m)).sum::<Option<usize>>();
        SourceMemory {
            mapped: maps.iter().map(|m| m.len()).sum(),
            resident,
            owned,
        }
    }
}

/// See [`ModelSource::memory`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceMemory {
    pub mapped: usize,
    pub resident: Option<usize>,
    pub owned: usize,
}

/// Bytes of `map` whose pages are resident (mincore(2)); `None` off Linux/glibc.
fn resident_len(map: &[u8]) -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if map.is_empty() {
            return Some(0);
        }
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
        let start = map.as_ptr() as usize;
        // mmap regions start on a page boundary; be safe for sub-slices anyway.
        let base = start - start % page;
        let len = map.len() + (start - base);
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: [base, base + len) lies within one live mapping (`map` borrows it), and
        // `vec` has one byte per page of that range, as mincore requires.
        let rc = unsafe { libc::mincore(base as *mut libc::c_void, len, vec.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        let pages = vec.iter().filter(|&&b| b & 1 == 1).count();
        Some((pages * page).min(len))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = map;
        None
    }
}
