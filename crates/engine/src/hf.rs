//! Hugging Face model directories: `config.json`, `*.safetensors` (one file, or shards listed by
//! `model.safetensors.index.json`), and for the session `tokenizer.json`,
//! `tokenizer_config.json` (chat template, BOS/EOS), `generation_config.json`.
//!
//! The directory is translated at open into what a GGUF file of the same model would hold, as
//! llama.cpp's `convert_hf_to_gguf.py` would write it: tensor names from gguf-py's
//! `tensor_mapping.py` (`model.layers.N.self_attn.q_proj.weight` → `blk.N.attn_q.weight`),
//! dimensions in ggml order (safetensors' row-major `[rows, cols]` reversed), and config.json
//! keys under GGUF metadata names (`num_hidden_layers` → `{arch}.block_count`, ...). Tensor
//! bytes stay in the mapped safetensors files; F32, F16 and BF16 are read as they are.
//!
//! Two places where llama.cpp's converter changes the weights themselves, reproduced here:
//! * `llama` Q/K: the converter permutes their rows so RoPE can rotate interleaved pairs; we
//!   keep the Hugging Face rows and mark the source NEOX-style instead
//!   ([`crate::source::KEY_ROPE_NEOX`]), the same computation with no copy.
//! * Gemma's RMSNorm multiplies by (1 + w); the converter stores w + 1. Norm vectors are small,
//!   so they are converted to owned F32 buffers at open.

use crate::source::{KEY_ROPE_NEOX, KEY_YARN_TRUNCATE};
use hearth_formats::{GgmlType, TensorInfo, Value};
use memmap2::Mmap;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors reading a Hugging Face directory; each names the file and the key or tensor.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}: '{key}': {message}")]
    Config {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: architecture '{arch}' is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: String,
    },
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: tensor '{tensor}' has dtype {dtype} (supported: F32, F16, BF16; U8 for MXFP4 `_blocks` / `_scales`)")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error("{path}: tensor '{tensor}' is not one this engine reads for {arch}")]
    UnknownTensor {
        path: PathBuf,
        tensor: String,
        arch: String,
    },
    #[error("{path}: tensor '{tensor}' ({gguf}) appears twice (also in {other})")]
    Duplicate {
        path: PathBuf,
        tensor: String,
        gguf: String,
        other: PathBuf,
    },
    #[error("{path}: tensor '{tensor}': {message}")]
    BadTensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    #[error("{dir}: no safetensors weights (expected model.safetensors or model.safetensors.index.json)")]
    NoWeights { dir: PathBuf },
}

/// Hugging Face `architectures[0]` → our architecture (GGUF `general.architecture`).
pub const ARCHITECTURES: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "llama"),
    ("MistralForCausalLM", "llama"),
    ("Qwen2ForCausalLM", "qwen2"),
    ("Qwen3ForCausalLM", "qwen3"),
    ("Qwen3MoeForCausalLM", "qwen3moe"),
    ("Gemma3ForCausalLM", "gemma3"),
    ("Glm4ForCausalLM", "glm4"),
    ("GptOssForCausalLM", "gpt-oss"),
];

/// Separates a 3-D expert tensor's GGUF name from the expert index for the per-expert
/// matrices of a Hugging Face checkpoint (`blk.N.ffn_gate_exps.weight#E`); see
/// `WeightLoader::experts`.
pub const EXPERT_SEP: char = '#';

enum Buffer {
    Map(Mmap),
    Owned(Vec<u8>),
}

/// An opened Hugging Face directory, translated to GGUF names and metadata.
pub struct HfModel {
    pub dir: PathBuf,
    /// `architectures[0]` of config.json.
    pub hf_architecture: String,
    /// config.json as read.
    pub config: Json,
    /// GGUF-named metadata translated from config.json (and the chat template).
    pub metadata: BTreeMap<String, Value>,
    /// Tensors under GGUF names, ggml dims; `offset` is relative to the tensor's buffer.
    pub tensors: Vec<TensorInfo>,
    /// The safetensors files, in buffer order.
    pub files: Vec<PathBuf>,
    index: BTreeMap<String, usize>,
    buffer_of: Vec<u32>,
    buffers: Vec<Buffer>,
}

/// Does `dir` look like a Hugging Face model directory (config.json and safetensors)?
pub fn is_hf_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && (dir.join("model.safetensors.index.json").is_file()
            || std::fs::read_dir(dir).is_ok_and(|rd| {
                rd.filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            }))
}

fn read_json(path: &Path) -> Result<Json, HfError> {
    let raw = std::fs::read_to_string(path).map_err(|source| HfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&raw).map_err(|e| HfError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read_json_opt(path: &Path) -> Result<Option<Json>, HfError> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

impl HfModel {
    pub fn open(dir: &Path) -> Result<Self, HfError> {
        let dir = dir.to_path_buf();
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        let hf_arch = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Json::as_str)
            .ok_or_else(|| HfError::Config {
                path: config_path.clone(),
                key: "architectures".into(),
                message: "missing (expected e.g. [\"LlamaForCausalLM\"])".into(),
            })?
            .to_string();
        let arch = ARCHITECTURES
            .iter()
            .find(|(h, _)| *h == hf_arch)
            .map(|(_, a)| *a)
            .ok_or_else(|| HfError::UnsupportedArchitecture {
                path: config_path.clone(),
                arch: hf_arch.clone(),
                supported: ARCHITECTURES
                    .iter()
                    .map(|(h, _)| *h)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let mut metadata = translate_config(arch, &config, &config_path)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        metadata.insert("general.name".into(), Value::String(name));
        if let Some(t) = chat_template(&dir)? {
            metadata.insert("tokenizer.chat_template".into(), Value::String(t));
        }

        let files = weight_files(&dir)?;
        let mut m = HfModel {
            dir,
            hf_architecture: hf_arch,
            config,
            metadata,
            tensors: Vec::new(),
            files: files.clone(),
            index: BTreeMap::new(),
            buffer_of: Vec::new(),
            buffers: Vec::new(),
        };
        let mut mxfp4 = BTreeMap::new();
        for path in files {
            m.add_file(arch, &path, &mut mxfp4)?;
        }
        for ((layer, proj), parts) in mxfp4 {
            m.repack_mxfp4(layer, proj, parts)?;
        }
        Ok(m)
    }

    fn add_file(
        &mut self,
        arch: &str,
        path: &Path,
        mxfp4: &mut BTreeMap<(usize, ExpertProj), Mxfp4Parts>,
    ) -> Result<(), HfError> {
        let io = |source| HfError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap-based loader (llama.cpp, safetensors)
        // we rely on the file not being truncated while the model is loaded.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let entries = parse_safetensors(path, &map)?;
        let buf = self.buffers.len() as u32;
        self.buffers.push(Buffer::Map(map));
        for e in entries {
            if arch == "gpt-oss" {
                if let Some((layer, proj, part)) = gpt_oss_expert_tensor(&e.name) {
                    self.add_gpt_oss_expert(path, buf, layer, proj, part, e, mxfp4)?;
                    continue;
                }
            }
            let Some(gguf) = gguf_name(arch, &e.name) else {
                // Rotary caches some checkpoints store: recomputed from the config.
                if e.name.ends_with("rotary_emb.inv_freq") {
                    continue;
                }
                return Err(HfError::UnknownTensor {
                    path: path.to_path_buf(),
                    tensor: e.name,
                    arch: arch.into(),
                });
            };
            let dtype = float_dtype(path, &e)?;
            let mut dims: Vec<usize> = e.shape.iter().rev().copied().collect();
            if dims.is_empty() {
                dims.push(1);
            }
            if arch == "gemma3" && gguf.ends_with("norm.weight") {
                // Gemma's RMSNorm scales by (1 + w): store w + 1 as llama.cpp's converter does.
                let v: Vec<f32> = self
                    .to_f32(buf, &e, dtype)
                    .iter()
                    .map(|x| x + 1.0)
                    .collect();
                self.push_owned(path, &e.name, gguf, GgmlType::F32, dims, f32_bytes(&v))?;
                continue;
            }
            let info = TensorInfo {
                name: gguf,
                dims,
                dtype,
                offset: e.start,
                n_bytes: e.end - e.start,
            };
            self.push(path, &e.name, info, buf)?;
        }
        Ok(())
    }

    /// Register a tensor (under its GGUF name) held by buffer `buf`.
    fn push(&mut self, path: &Path, hf: &str, info: TensorInfo, buf: u32) -> Result<(), HfError> {
        if let Some(&i) = self.index.get(&info.name) {
            return Err(HfError::Duplicate {
                path: path.to_path_buf(),
                tensor: hf.to_string(),
                gguf: info.name,
                other: self.files[self.buffer_of[i] as usize].clone(),
            });
        }
        self.index.insert(info.name.clone(), self.tensors.len());
        self.tensors.push(info);
        self.buffer_of.push(buf);
        Ok(())
    }

    /// Register a tensor converted at open, in a buffer of its own.
    fn push_owned(
        &mut self,
        path: &Path,
        hf: &str,
        gguf: String,
        dtype: GgmlType,
        dims: Vec<usize>,
        bytes: Vec<u8>,
    ) -> Result<(), HfError> {
        let info = TensorInfo {
            name: gguf,
            dims,
            dtype,
            offset: 0,
            n_bytes: bytes.len(),
        };
        let buf = self.buffers.len() as u32;
        self.buffers.push(Buffer::Owned(bytes));
        self.push(path, hf, info, buf)
    }

    fn to_f32(&self, buf: u32, e: &StEntry, dtype: GgmlType) -> Vec<f32> {
        let mut v = vec![0f32; e.shape.iter().product()];
        hearth_kernels::dequantize_row(dtype, &self.buffer(buf)[e.start..e.end], &mut v);
        v
    }

    /// gpt-oss keeps each layer's experts in 3-D tensors of its own layout (transformers
    /// `GptOssExperts`): `gate_up_proj` [E, d, 2·ff] with gate and up interleaved along the last
    /// dimension (gate = `[..., ::2]`, up = `[..., 1::2]`), `down_proj` [E, ff, d], both used as
    /// `x @ W` (input-major, the transpose of a Linear's weight); biases `gate_up_proj_bias`
    /// [E, 2·ff] (interleaved the same way) and `down_proj_bias` [E, d]. The released checkpoints
    /// store the weights as MXFP4 `_blocks` / `_scales` instead (handled in `repack_mxfp4`). What
    /// llama.cpp's converter (conversion/gpt_oss.py) writes, reproduced here: gate and up split,
    /// weights transposed to output-major `blk.N.ffn_{gate,up,down}_exps.weight`. Biases and
    /// unquantized weights are copied into owned buffers (F32 / their own dtype); `down_proj_bias`
    /// stays mapped.
    #[allow(clippy::too_many_arguments)]
    fn add_gpt_oss_expert(
        &mut self,
        path: &Path,
        buf: u32,
        layer: usize,
        proj: ExpertProj,
        part: ExpertPart,
        e: StEntry,
        mxfp4: &mut BTreeMap<(usize, ExpertProj), Mxfp4Parts>,
    ) -> Result<(), HfError> {
        let bad = |message: String| HfError::BadTensor {
            path: path.to_path_buf(),
            tensor: e.name.clone(),
            message,
        };
        let name = |p: &str, suffix: &str| format!("blk.{layer}.ffn_{p}_exps.{suffix}");
        match part {
            ExpertPart::Blocks | ExpertPart::Scales => {
                if e.dtype != "U8" {
                    return Err(bad(format!("dtype {}, expected U8 (MXFP4)", e.dtype)));
                }
                let slot = mxfp4.entry((layer, proj)).or_default();
                let src = Mxfp4Src {
                    path: path.to_path_buf(),
                    name: e.name.clone(),
                    buf,
                    start: e.start,
                    end: e.end,
                    shape: e.shape.clone(),
                };
                match part {
                    ExpertPart::Blocks => slot.blocks = Some(src),
                    _ => slot.scales = Some(src),
                }
            }
            ExpertPart::Bias => {
                let dtype = float_dtype(path, &e)?;
                let &[n_expert, n] = &e.shape[..] else {
                    return Err(bad(format!("shape {:?}, expected [experts, n]", e.shape)));
                };
                match proj {
                    ExpertProj::Down => {
                        let info = TensorInfo {
                            name: name("down", "bias"),
                            dims: vec![n, n_expert],
                            dtype,
                            offset: e.start,
                            n_bytes: e.end - e.start,
                        };
                        self.push(path, &e.name, info, buf)?;
                    }
                    ExpertProj::GateUp => {
                        if n % 2 != 0 {
                            return Err(bad(format!("{n} gate/up values per expert: not even")));
                        }
                        let v = self.to_f32(buf, &e, dtype);
                        for (p, parity) in [("gate", 0), ("up", 1)] {
                            let half: Vec<f32> =
                                v.iter().skip(parity).step_by(2).copied().collect();
                            let dims = vec![n / 2, n_expert];
                            let bytes = f32_bytes(&half);
                            self.push_owned(
                                path,
                                &e.name,
                                name(p, "bias"),
                                GgmlType::F32,
                                dims,
                                bytes,
                            )?;
                        }
                    }
                }
            }
            ExpertPart::Weight => {
                let dtype = float_dtype(path, &e)?;
                let &[n_expert, n_in, n_out] = &e.shape[..] else {
                    return Err(bad(format!(
                        "shape {:?}, expected [experts, in, out]",
                        e.shape
                    )));
                };
                let es = dtype.row_bytes(1).expect("float type");
                let src = &self.buffer(buf)[e.start..e.end];
                // Output-major copies: out[e][o][i] = src[e][i][o * stride + offset].
                let transpose = |stride: usize, offset: usize| {
                    let rows = n_out / stride;
                    let mut out = vec![0u8; n_expert * rows * n_in * es];
                    for x in 0..n_expert {
                        for o in 0..rows {
                            for i in 0..n_in {
                                let s = ((x * n_in + i) * n_out + o * stride + offset) * es;
                                let d = ((x * rows + o) * n_in + i) * es;
                                out[d..d + es].copy_from_slice(&src[s..s + es]);
                            }
                        }
                    }
                    out
                };
                match proj {
                    ExpertProj::Down => {
                        let bytes = transpose(1, 0);
                        let dims = vec![n_in, n_out, n_expert];
                        self.push_owned(path, &e.name, name("down", "weight"), dtype, dims, bytes)?;
                    }
                    ExpertProj::GateUp => {
                        if n_out % 2 != 0 {
                            return Err(bad(format!("{n_out} gate/up columns: not even")));
                        }
                        let (gate, up) = (transpose(2, 0), transpose(2, 1));
                        let dims = vec![n_in, n_out / 2, n_expert];
                        self.push_owned(
                            path,
                            &e.name,
                            name("gate", "weight"),
                            dtype,
                            dims.clone(),
                            gate,
                        )?;
                        self.push_owned(path, &e.name, name("up", "weight"), dtype, dims, up)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One layer's MXFP4 expert weights (`{proj}_blocks` u8 [E, rows, cols/32, 16] and
    /// `{proj}_scales` u8 [E, rows, cols/32], output-major like a Linear's weight) as ggml
    /// MXFP4 tensors `blk.N.ffn_{gate,up,down}_exps.weight` (ggml dims [cols, rows, E]): each
    /// row repacked by [`hearth_kernels::quant::mxfp4_from_ocp`], gate_up's even rows to gate
    /// and odd rows to up, as llama.cpp's converter (conversion/gpt_oss.py `repack_mxfp4`).
    /// The repacked copy is the same size as the source (17 bytes per 32 values); nothing is
    /// dequantized. The source pages are then released from this process (they are read once).
    fn repack_mxfp4(
        &mut self,
        layer: usize,
        proj: ExpertProj,
        parts: Mxfp4Parts,
    ) -> Result<(), HfError> {
        use hearth_kernels::quant::{mxfp4_from_ocp, MXFP4_BLOCK, MXFP4_BLOCK_BYTES};
        let hf = format!("model.layers.{layer}.mlp.experts.{}", proj.hf_name());
        let (blocks, scales) = match (parts.blocks, parts.scales) {
            (Some(b), Some(s)) => (b, s),
            (Some(x), None) | (None, Some(x)) => {
                return Err(HfError::BadTensor {
                    path: x.path,
                    tensor: x.name,
                    message: format!("MXFP4 needs both {hf}_blocks and {hf}_scales"),
                })
            }
            (None, None) => unreachable!("a slot is created with one part"),
        };
        let &[n_expert, rows, nb, 16] = &blocks.shape[..] else {
            return Err(HfError::BadTensor {
                path: blocks.path,
                tensor: blocks.name,
                message: format!(
                    "shape {:?}, expected [experts, rows, blocks, 16]",
                    blocks.shape
                ),
            });
        };
        if scales.shape[..] != [n_expert, rows, nb] {
            return Err(HfError::BadTensor {
                path: scales.path,
                tensor: scales.name,
                message: format!(
                    "shape {:?}, expected [{n_expert}, {rows}, {nb}] to match {}",
                    scales.shape, blocks.name
                ),
            });
        }
        let (step, outputs): (usize, &[(&str, usize)]) = match proj {
            ExpertProj::Down => (1, &[("down", 0)]),
            ExpertProj::GateUp => (2, &[("gate", 0), ("up", 1)]),
        };
        if rows % step != 0 {
            return Err(HfError::BadTensor {
                path: blocks.path,
                tensor: blocks.name,
                message: format!("{rows} gate/up rows: not even"),
            });
        }
        let out_rows = rows / step;
        let cols = nb * MXFP4_BLOCK;
        let row_out = nb * MXFP4_BLOCK_BYTES;
        let mut tensors = Vec::new();
        {
            let bsrc = &self.buffer(blocks.buf)[blocks.start..blocks.end];
            let ssrc = &self.buffer(scales.buf)[scales.start..scales.end];
            for &(p, parity) in outputs {
                let mut out = vec![0u8; n_expert * out_rows * row_out];
                for (i, dst) in out.chunks_exact_mut(row_out).enumerate() {
                    let (x, r) = (i / out_rows, i % out_rows);
                    let src_row = x * rows + r * step + parity;
                    mxfp4_from_ocp(
                        &bsrc[src_row * nb * 16..(src_row + 1) * nb * 16],
                        &ssrc[src_row * nb..(src_row + 1) * nb],
                        dst,
                    );
                }
                tensors.push((format!("blk.{layer}.ffn_{p}_exps.weight"), out));
            }
        }
        for (name, bytes) in tensors {
            let dims = vec![cols, out_rows, n_expert];
            self.push_owned(
                &blocks.path,
                &blocks.name,
                name,
                GgmlType::MXFP4,
                dims,
                bytes,
            )?;
        }
        for src in [&blocks, &scales] {
            self.release(src.buf, src.start, src.end - src.start);
        }
        Ok(())
    }

    /// Drop this process's resident pages of a mapped range that was copied (it can be read
    /// again from the file; on a read-only file mapping this only frees memory).
    fn release(&self, buf: u32, offset: usize, len: usize) {
        #[cfg(target_os = "linux")]
        if let Buffer::Map(m) = &self.buffers[buf as usize] {
            // SAFETY: MADV_DONTNEED on a read-only, file-backed private mapping discards
            // resident pages; later reads fault them in again from the unchanged file, so no
            // reference into the map observes different bytes.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
            };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (buf, offset, len);
    }

    pub fn tensor_info(&self, name: &str) -> Option<(&TensorInfo, u32)> {
        self.index
            .get(name)
            .map(|&i| (&self.tensors[i], self.buffer_of[i]))
    }

    pub fn buffer(&self, i: u32) -> &[u8] {
        match &self.buffers[i as usize] {
            Buffer::Map(m) => m,
            Buffer::Owned(v) => v,
        }
    }

    pub fn n_files(&self) -> usize {
        self.files.len()
    }

    /// The mapped safetensors files, and the bytes of the owned (repacked or transposed)
    /// tensors.
    pub fn buffers(&self) -> (Vec<&[u8]>, usize) {
        let mut maps = Vec::new();
        let mut owned = 0;
        for b in &self.buffers {
            match b {
                Buffer::Map(m) => maps.push(&m[..]),
                Buffer::Owned(v) => owned += v.len(),
            }
        }
        (maps, owned)
    }

    /// Bytes of the mapped safetensors files.
    pub fn mapped_len(&self) -> usize {
        self.buffers
            .iter()
            .map(|b| match b {
                Buffer::Map(m) => m.len(),
                Buffer::Owned(_) => 0,
            })
            .sum()
    }
}

/// The two expert projections of a gpt-oss layer, as transformers names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ExpertProj {
    GateUp,
    Down,
}

impl ExpertProj {
    fn hf_name(self) -> &'static str {
        match self {
            ExpertProj::GateUp => "gate_up_proj",
            ExpertProj::Down => "down_proj",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExpertPart {
    /// Unquantized weights (`gate_up_proj`, `down_proj`).
    Weight,
    /// MXFP4 codes (`*_blocks`).
    Blocks,
    /// MXFP4 E8M0 scales (`*_scales`).
    Scales,
    /// `*_bias`.
    Bias,
}

/// `model.layers.N.mlp.experts.{gate_up_proj,down_proj}{,_blocks,_scales,_bias}`.
fn gpt_oss_expert_tensor(hf: &str) -> Option<(usize, ExpertProj, ExpertPart)> {
    let rest = hf.strip_prefix("model.layers.")?;
    let (n, rest) = rest.split_once('.')?;
    let rest = rest.strip_prefix("mlp.experts.")?;
    let (proj, part) = [ExpertProj::GateUp, ExpertProj::Down]
        .into_iter()
        .find_map(|p| {
            let part = match rest.strip_prefix(p.hf_name())? {
                "" => ExpertPart::Weight,
                "_blocks" => ExpertPart::Blocks,
                "_scales" => ExpertPart::Scales,
                "_bias" => ExpertPart::Bias,
                _ => return None,
            };
            Some((p, part))
        })?;
    Some((n.parse().ok()?, proj, part))
}

/// Where one of an MXFP4 pair's tensors is (the pair may span two shards).
struct Mxfp4Src {
    path: PathBuf,
    name: String,
    buf: u32,
    start: usize,
    end: usize,
    shape: Vec<usize>,
}

#[derive(Default)]
struct Mxfp4Parts {
    blocks: Option<Mxfp4Src>,
    scales: Option<Mxfp4Src>,
}

fn float_dtype(path: &Path, e: &StEntry) -> Result<GgmlType, HfError> {
    match e.dtype.as_str() {
        "F32" => Ok(GgmlType::F32),
        "F16" => Ok(GgmlType::F16),
        "BF16" => Ok(GgmlType::BF16),
        _ => Err(HfError::UnsupportedDtype {
            path: path.to_path_buf(),
            tensor: e.name.clone(),
            dtype: e.dtype.clone(),
        }),
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The safetensors files: the shards named by model.safetensors.index.json, else
/// model.safetensors, else every *.safetensors in the directory.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, HfError> {
    let index_path = dir.join("model.safetensors.index.json");
    if let Some(index) = read_json_opt(&index_path)? {
        let map = index
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| HfError::Config {
                path: index_path.clone(),
                key: "weight_map".into(),
                message: "missing or not an object".into(),
            })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for (tensor, f) in map {
            let f = f.as_str().ok_or_else(|| HfError::Config {
                path: index_path.clone(),
                key: format!("weight_map.{tensor}"),
                message: "not a file name".into(),
            })?;
            let p = dir.join(f);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        files.sort();
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| HfError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(HfError::NoWeights {
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

struct StEntry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// The safetensors header: an 8-byte little-endian length, then that many bytes of JSON mapping
/// each tensor name to its dtype, shape and byte range after the header. Every range is checked
/// against the file and the tensor's size, so a truncated file is an error, not a fault.
fn parse_safetensors(path: &Path, buf: &[u8]) -> Result<Vec<StEntry>, HfError> {
    let bad = |m: String| HfError::Safetensors {
        path: path.to_path_buf(),
        message: m,
    };
    if buf.len() < 8 {
        return Err(bad(format!(
            "{} bytes, shorter than the header length",
            buf.len()
        )));
    }
    let n = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")) as usize;
    let data_start = 8usize
        .checked_add(n)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| bad(format!("header of {n} bytes runs past the end of the file")))?;
    let header: Json = serde_json::from_slice(&buf[8..data_start])
        .map_err(|e| bad(format!("header JSON: {e}")))?;
    let obj = header
        .as_object()
        .ok_or_else(|| bad("header is not a JSON object".into()))?;
    let mut out = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v
            .get("dtype")
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("tensor '{name}': no dtype")))?
            .to_string();
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Json::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<_>>()
            })
            .ok_or_else(|| bad(format!("tensor '{name}': no valid shape")))?;
        let offs: Vec<usize> = v
            .get("data_offsets")
            .and_then(Json::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .filter(|o| o.len() == 2 && o[0] <= o[1])
            .ok_or_else(|| bad(format!("tensor '{name}': no valid data_offsets")))?;
        let start = data_start + offs[0];
        let end = data_start.checked_add(offs[1]).filter(|&e| e <= buf.len());
        let end = end.ok_or_else(|| {
            bad(format!(
                "tensor '{name}' ends at byte {} past the end of the file ({} bytes): truncated",
                data_start + offs[1],
                buf.len()
            ))
        })?;
        if let Some(sz) = dtype_size(&dtype) {
            let numel: usize = shape.iter().product();
            if numel * sz != end - start {
                return Err(bad(format!(
                    "tensor '{name}': shape {shape:?} of {dtype} is {} bytes, data_offsets give {}",
                    numel * sz,
                    end - start
                )));
            }
        }
        out.push(StEntry {
            name: name.clone(),
            dtype,
            shape,
            start,
            end,
        });
    }
    Ok(out)
}

/// A Hugging Face tensor name → its GGUF name (gguf-py tensor_mapping.py), or None.
pub fn gguf_name(arch: &str, hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (n, rest) = rest.split_once('.')?;
    let n: usize = n.parse().ok()?;
    if let Some(r) = rest.strip_prefix("mlp.experts.") {
        let (e, r) = r.split_once('.')?;
        let e: usize = e.parse().ok()?;
        let base = match r {
            "gate_proj.weight" => "ffn_gate_exps",
            "up_proj.weight" => "ffn_up_exps",
            "down_proj.weight" => "ffn_down_exps",
            _ => return None,
        };
        return Some(format!("blk.{n}.{base}.weight{EXPERT_SEP}{e}"));
    }
    // gpt-oss: one learned sink logit per head (llama.cpp names it `attn_sinks.weight`).
    if rest == "self_attn.sinks" {
        return Some(format!("blk.{n}.attn_sinks.weight"));
    }
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let g = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        // Gemma 3 norms both sides of each block; the others have one norm before the FFN.
        // gpt-oss's only norm before the MoE is named like Gemma's (gguf-py: ATTN_POST_NORM).
        "post_attention_layernorm" if arch == "gemma3" || arch == "gpt-oss" => {
            "post_attention_norm"
        }
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        // GLM-4-0414: norms after attention and after the MLP, gate and up in one matrix.
        "post_self_attn_layernorm" => "post_attention_norm",
        "post_mlp_layernorm" => "post_ffw_norm",
        "mlp.gate_up_proj" => "ffn_up",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "mlp.gate" => "ffn_gate_inp",
        "mlp.router" => "ffn_gate_inp",
        _ => return None,
    };
    Some(format!("blk.{n}.{g}.{suffix}"))
}

/// The chat template: tokenizer_config.json's `chat_template` (a string, or a list of
/// `{name, template}` where "default" is the one `apply_chat_template` uses), else
/// chat_template.jinja (where newer transformers save it).
fn chat_template(dir: &Path) -> Result<Option<String>, HfError> {
    let tc_path = dir.join("tokenizer_config.json");
    if let Some(tc) = read_json_opt(&tc_path)? {
        match tc.get("chat_template") {
            Some(Json::String(s)) => return Ok(Some(s.clone())),
            Some(Json::Array(list)) => {
                let pick = list
                    .iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                    .or_else(|| list.first());
                if let Some(t) = pick.and_then(|t| t.get("template")).and_then(Json::as_str) {
                    return Ok(Some(t.to_string()));
                }
            }
            _ => {}
        }
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|source| HfError::Io {
                path: jinja,
                source,
            });
    }
    Ok(None)
}

/// config.json → GGUF metadata for `arch` (the keys convert_hf_to_gguf.py writes and our
/// architecture files read). Settings our architectures do not implement are errors naming
/// the key, rather than a model that silently computes something else.
fn translate_config(
    arch: &str,
    cfg: &Json,
    path: &Path,
) -> Result<BTreeMap<String, Value>, HfError> {
    let err = |key: &str, message: String| HfError::Config {
        path: path.to_path_buf(),
        key: key.into(),
        message,
    };
    let get = |k: &str| cfg.get(k).filter(|v| !v.is_null());
    let uint = |k: &str| -> Result<Option<u64>, HfError> {
        match get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| err(k, format!("expected a non-negative integer, found {v}"))),
        }
    };
    let req = |k: &str| uint(k)?.ok_or_else(|| err(k, "missing".into()));
    let float = |k: &str| -> Result<Option<f64>, HfError> {
        match get(k) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| err(k, format!("expected a number, found {v}"))),
        }
    };
    let mut m = BTreeMap::new();
    let mut yarn_truncate = None;
    let mut put = |k: &str, v: Value| {
        m.insert(format!("{arch}.{k}"), v);
    };
    put("block_count", Value::U64(req("num_hidden_layers")?));
    put("embedding_length", Value::U64(req("hidden_size")?));
    let n_head = req("num_attention_heads")?;
    put("attention.head_count", Value::U64(n_head));
    put(
        "attention.head_count_kv",
        Value::U64(uint("num_key_value_heads")?.unwrap_or(n_head)),
    );
    if let Some(hd) = uint("head_dim")? {
        put("attention.key_length", Value::U64(hd));
        put("attention.value_length", Value::U64(hd));
    }
    if let Some(ff) = uint("intermediate_size")? {
        put("feed_forward_length", Value::U64(ff));
    }
    if let Some(c) = uint("max_position_embeddings")? {
        put("context_length", Value::U64(c));
    }
    if let Some(eps) = float("rms_norm_eps")? {
        put("attention.layer_norm_rms_epsilon", Value::F64(eps));
    }

    // RoPE: transformers < 5 writes rope_theta and rope_scaling at the top level; 5.x writes
    // rope_parameters {rope_type, rope_theta, factor, ...}, nested per layer type for Gemma 3
    // ({"full_attention": {...}, "sliding_attention": {...}}).
    let rope_params = get("rope_parameters");
    let (global, local) = match rope_params {
        Some(p) if p.get("full_attention").is_some() => {
            (p.get("full_attention"), p.get("sliding_attention"))
        }
        Some(p) => (Some(p), None),
        None => (get("rope_scaling"), None),
    };
    let theta = global
        .and_then(|p| p.get("rope_theta"))
        .and_then(Json::as_f64)
        .or(float("rope_theta")?);
    if let Some(t) = theta {
        put("rope.freq_base", Value::F64(t));
    }
    if let Some(p) = global {
        let ty = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Json::as_str)
            .unwrap_or("default");
        match ty {
            "default" => {}
            "linear" => {
                let f = p.get("factor").and_then(Json::as_f64).ok_or_else(|| {
                    err("rope_scaling.factor", "missing for linear scaling".into())
                })?;
                put("rope.scaling.type", Value::String("linear".into()));
                put("rope.scaling.factor", Value::F64(f));
            }
            // YaRN (gpt-oss), as transformers' `_compute_yarn_parameters` reads it.
            "yarn" if arch == "gpt-oss" => {
                let num = |k: &str| p.get(k).filter(|v| !v.is_null());
                let f = num("factor").and_then(Json::as_f64).ok_or_else(|| {
                    err("rope_scaling.factor", "missing for YaRN scaling".into())
                })?;
                put("rope.scaling.type", Value::String("yarn".into()));
                put("rope.scaling.factor", Value::F64(f));
                if let Some(n) = num("original_max_position_embeddings").and_then(Json::as_u64) {
                    put("rope.scaling.original_context_length", Value::U64(n));
                }
                for (k, g) in [("beta_fast", "yarn_beta_fast"), ("beta_slow", "yarn_beta_slow")] {
                    if let Some(b) = num(k).and_then(Json::as_f64) {
                        put(&format!("rope.scaling.{g}"), Value::F64(b));
                    }
                }
                // The temperature is always get_mscale(factor) here (ops::Yarn).
                for k in ["attention_factor", "mscale", "mscale_all_dim"] {
                    if let Some(v) = num(k) {
                        return Err(err(
                            &format!("rope_scaling.{k}"),
                            format!("{v}: an explicit YaRN attention factor is not supported"),
                        ));
                    }
                }
                yarn_truncate = num("truncate").and_then(Json::as_bool);
            }
            other => {
                return Err(err(
                    if rope_params.is_some() {
                        "rope_parameters.rope_type"
                    } else {
                        "rope_scaling.type"
                    },
                    format!("'{other}' RoPE scaling is not supported for {arch} (default and linear are; yarn for gpt-oss)"),
                ))
            }
        }
    }
    // GLM-4 rotates the first partial_rotary_factor (default 0.5) of each head, in the
    // interleaved pairs our "normal" RoPE uses on Hugging Face rows as they are (so no
    // permutation and no NEOX flag; conversion/glm.py writes rope.dimension_count the same way).
    let partial = global
        .and_then(|p| p.get("partial_rotary_factor"))
        .and_then(Json::as_f64)
        .or(float("partial_rotary_factor")?);
    if arch == "glm4" {
        let hd = uint("head_dim")?.unwrap_or(req("hidden_size")? / n_head.max(1));
        let n_rot = (hd as f64 * partial.unwrap_or(0.5)) as u64;
        put("rope.dimension_count", Value::U64(n_rot));
    } else if let Some(f) = partial {
        if f != 1.0 {
            return Err(err(
                "partial_rotary_factor",
                format!("{f} is not supported (1.0 is)"),
            ));
        }
    }

    let act_key = if arch == "gemma3" {
        "hidden_activation"
    } else {
        "hidden_act"
    };
    let act = get(act_key)
        .or_else(|| get("hidden_act"))
        .and_then(Json::as_str);
    let want_act: &[&str] = if arch == "gemma3" {
        &["gelu_pytorch_tanh", "gelu"]
    } else {
        &["silu"]
    };
    if let Some(a) = act {
        if !want_act.contains(&a) {
            return Err(err(
                act_key,
                format!(
                    "'{a}' is not supported for {arch} ({})",
                    want_act.join(", ")
                ),
            ));
        }
    }
    if get("mlp_bias").and_then(Json::as_bool) == Some(true) {
        return Err(err("mlp_bias", "FFN biases are not supported".into()));
    }

    match arch {
        "llama" => {
            // Hugging Face Q/K rows rotate in halves (see the module comment).
            m.insert(KEY_ROPE_NEOX.into(), Value::Bool(true));
            if let Some(w) = uint("sliding_window")? {
                let ctx = uint("max_position_embeddings")?.unwrap_or(u64::MAX);
                if w < ctx {
                    return Err(err(
                        "sliding_window",
                        format!("{w}: sliding-window attention is not supported for llama"),
                    ));
                }
            }
        }
        "qwen2" | "qwen3" | "qwen3moe" => {
            if get("use_sliding_window").and_then(Json::as_bool) == Some(true) {
                return Err(err(
                    "use_sliding_window",
                    "sliding-window attention is not supported for Qwen".into(),
                ));
            }
            if arch == "qwen3moe" {
                m.insert(
                    "qwen3moe.expert_count".into(),
                    Value::U64(req("num_experts")?),
                );
                m.insert(
                    "qwen3moe.expert_used_count".into(),
                    Value::U64(req("num_experts_per_tok")?),
                );
                m.insert(
                    "qwen3moe.expert_feed_forward_length".into(),
                    Value::U64(req("moe_intermediate_size")?),
                );
                // Our qwen3moe (like llama.cpp's) renormalizes the top-k weights and has every
                // layer sparse.
                if get("norm_topk_prob").and_then(Json::as_bool) == Some(false) {
                    return Err(err("norm_topk_prob", "false is not supported".into()));
                }
                if uint("decoder_sparse_step")?.is_some_and(|s| s != 1) {
                    return Err(err("decoder_sparse_step", "only 1 is supported".into()));
                }
                if get("mlp_only_layers")
                    .and_then(Json::as_array)
                    .is_some_and(|a| !a.is_empty())
                {
                    return Err(err(
                        "mlp_only_layers",
                        "dense layers in a MoE model are not supported".into(),
                    ));
                }
            }
        }
        "gemma3" => {
            if let Some(w) = uint("sliding_window")? {
                m.insert("gemma3.attention.sliding_window".into(), Value::U64(w));
            }
            let local_theta = local
                .and_then(|p| p.get("rope_theta"))
                .and_then(Json::as_f64)
                .or(float("rope_local_base_freq")?);
            if let Some(t) = local_theta {
                m.insert("gemma3.rope.freq_base_swa".into(), Value::F64(t));
            }
            if let Some(c) = float("final_logit_softcapping")? {
                m.insert("gemma3.final_logit_softcapping".into(), Value::F64(c));
            }
            // Our gemma3 has 5 sliding layers then 1 global, and scales scores by
            // 1/sqrt(head_dim): check the config agrees.
            if let Some(p) = uint("sliding_window_pattern")? {
                if p != 6 {
                    return Err(err(
                        "sliding_window_pattern",
                        format!("{p} is not supported (6 is)"),
                    ));
                }
            }
            if let Some(types) = get("layer_types").and_then(Json::as_array) {
                for (i, t) in types.iter().enumerate() {
                    let want = if i % 6 < 5 {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    };
                    if t.as_str() != Some(want) {
                        return Err(err(
                            "layer_types",
                            format!(
                                "layer {i} is {t}, expected \"{want}\" (5 sliding then 1 full)"
                            ),
                        ));
                    }
                }
            }
            let hd = uint("head_dim")?.unwrap_or(req("hidden_size")? / n_head.max(1));
            if let Some(q) = float("query_pre_attn_scalar")? {
                if q != hd as f64 && req("num_hidden_layers")? != 62 {
                    return Err(err(
                        "query_pre_attn_scalar",
                        format!("{q} differs from head_dim {hd} (unsupported)"),
                    ));
                }
            }
        }
        "gpt-oss" => {
            let ff = req("intermediate_size")?;
            m.insert("gpt-oss.expert_feed_forward_length".into(), Value::U64(ff));
            m.insert(
                "gpt-oss.expert_count".into(),
                Value::U64(req("num_local_experts")?),
            );
            let used = match uint("num_experts_per_tok")? {
                Some(k) => k,
                None => req("experts_per_token")?,
            };
            m.insert("gpt-oss.expert_used_count".into(), Value::U64(used));
            m.insert(
                "gpt-oss.attention.sliding_window".into(),
                Value::U64(req("sliding_window")?),
            );
            if let Some(types) = get("layer_types").and_then(Json::as_array) {
                let mut swa = Vec::with_capacity(types.len());
                for (i, t) in types.iter().enumerate() {
                    swa.push(Value::Bool(match t.as_str() {
                        Some("sliding_attention") => true,
                        Some("full_attention") => false,
                        _ => {
                            return Err(err(
                                "layer_types",
                                format!("layer {i} is {t} (sliding_attention or full_attention)"),
                            ))
                        }
                    }));
                }
                m.insert(
                    "gpt-oss.attention.sliding_window_pattern".into(),
                    Value::Array(swa),
                );
            }
            // models/gpt_oss.rs hard-codes the clamped SwiGLU's limit 7 (and alpha 1.702).
            if let Some(l) = float("swiglu_limit")? {
                if l != 7.0 {
                    return Err(err(
                        "swiglu_limit",
                        format!("{l} is not supported (7.0 is)"),
                    ));
                }
            }
            if let Some(q) = get("quantization_config") {
                let method = q.get("quant_method").and_then(Json::as_str);
                if method != Some("mxfp4") {
                    return Err(err(
                        "quantization_config.quant_method",
                        format!("{method:?} is not supported (\"mxfp4\" is)"),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(t) = yarn_truncate {
        m.insert(KEY_YARN_TRUNCATE.into(), Value::Bool(t));
    }
    m.insert("general.architecture".into(), Value::String(arch.into()));
    m.insert(
        "general.source.format".into(),
        Value::String("huggingface".into()),
    );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_gguf_py_mapping() {
        let cases = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.norm.weight", "output_norm.weight"),
            (
                "model.layers.3.input_layernorm.weight",
                "blk.3.attn_norm.weight",
            ),
            ("model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"),
            (
                "model.layers.11.self_attn.o_proj.weight",
                "blk.11.attn_output.weight",
            ),
            (
                "model.layers.1.self_attn.k_norm.weight",
                "blk.1.attn_k_norm.weight",
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                "blk.1.ffn_norm.weight",
            ),
            (
                "model.layers.2.mlp.down_proj.weight",
                "blk.2.ffn_down.weight",
            ),
            (
                "model.layers.2.mlp.gate.weight",
                "blk.2.ffn_gate_inp.weight",
            ),
            (
                "model.layers.2.mlp.experts.17.up_proj.weight",
                "blk.2.ffn_up_exps.weight#17",
            ),
        ];
        for (hf, gguf) in cases {
            assert_eq!(gguf_name("llama", hf).as_deref(), Some(gguf), "{hf}");
        }
        assert_eq!(
            gguf_name("gemma3", "model.layers.1.post_attention_layernorm.weight").as_deref(),
            Some("blk.1.post_attention_norm.weight")
        );
        assert_eq!(
            gguf_name("gemma3", "model.layers.1.pre_feedforward_layernorm.weight").as_deref(),
            Some("blk.1.ffn_norm.weight")
        );
        assert_eq!(
            gguf_name("llama", "model.layers.x.mlp.up_proj.weight"),
            None
        );
        assert_eq!(gguf_name("llama", "vision_tower.foo.weight"), None);
    }

    #[test]
    fn truncated_safetensors_is_an_error() {
        let header = br#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
        let mut buf = (header.len() as u64).to_le_bytes().to_vec();
        buf.extend_from_slice(header);
        buf.extend_from_slice(&[0u8; 8]); // 8 of the 16 bytes
        let e = parse_safetensors(Path::new("x.safetensors"), &buf)
            .err()
            .expect("truncated");
        assert!(e.to_string().contains("truncated"), "{e}");
        buf.extend_from_slice(&[0u8; 8]);
        let ok = parse_safetensors(Path::new("x.safetensors"), &buf).unwrap();
        assert_eq!(ok[0].shape, vec![2, 2]);
        assert_eq!(ok[0].end - ok[0].start, 16);
        // A header length past the end.
        let mut bad = (1u64 << 40).to_le_bytes().to_vec();
        bad.extend_from_slice(b"{}");
        assert!(parse_safetensors(Path::new("y"), &bad).is_err());
    }
}
