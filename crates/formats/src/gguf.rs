//! GGUF reader over a memory map.
//!
//! Layout (ggml/docs/gguf.md): magic "GGUF", u32 version (2 or 3), u64 tensor count,
//! u64 metadata count, the metadata key/value pairs, the tensor infos, then padding to
//! `general.alignment` (default 32) and the tensor data. All integers little-endian.
//! Tensor data is never copied: tensors are slices of the map.

use crate::dtype::{GgmlType, SUPPORTED};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot open: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (magic bytes {magic:02x?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, magic: Vec<u8> },
    #[error("{path}: GGUF version {version} is not supported (supported: 2, 3)")]
    BadVersion { path: PathBuf, version: u32 },
    #[error("{path}: truncated or corrupt at byte {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: usize,
        what: String,
    },
    #[error(
        "{path}: tensor '{tensor}' has unsupported type id {type_id} (supported: {supported})"
    )]
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        type_id: u32,
        supported: String,
    },
    #[error("{path}: tensor '{tensor}' lies outside the file (data ends at byte {end}, file is {len} bytes): the file is truncated")]
    TensorOutOfBounds {
        path: PathBuf,
        tensor: String,
        end: usize,
        len: usize,
    },
}

/// A metadata value, as typed in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    /// An array of this many items whose contents were dropped after use
    /// ([`GgufFile::release_arrays`]): a vocabulary of 262,144 tokens parses into about 60 MiB
    /// of `Value`s that the tokenizer's own tables replace.
    Released(usize),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        Some(match *self {
            Value::U8(v) => v as u64,
            Value::U16(v) => v as u64,
            Value::U32(v) => v as u64,
            Value::U64(v) => v,
            Value::I8(v) if v >= 0 => v as u64,
            Value::I16(v) if v >= 0 => v as u64,
            Value::I32(v) if v >= 0 => v as u64,
            Value::I64(v) if v >= 0 => v as u64,
            Value::Bool(b) => b as u64,
            _ => return None,
        })
    }
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::I8(v) => v as i64,
            Value::I16(v) => v as i64,
            Value::I32(v) => v as i64,
            Value::I64(v) => v,
            _ => return self.as_u64().and_then(|v| i64::try_from(v).ok()),
        })
    }
    pub fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            Value::F32(v) => v as f64,
            Value::F64(v) => v,
            _ => return self.as_i64().map(|v| v as f64),
        })
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => self.as_u64().map(|v| v != 0),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    /// Short human description used by `hearth info`.
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) if s.len() > 60 => {
                format!("{:?}… ({} bytes)", &s[..s.floor_char_boundary(60)], s.len())
            }
            Value::String(s) => format!("{s:?}"),
            Value::Array(a) => format!("[{} items]", a.len()),
            Value::Released(n) => format!("[{n} items; released after loading]"),
            v => format!("{v:?}"),
        }
    }
}

/// Where a tensor's bytes are and how to read them.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous (row) length.
    pub dims: Vec<usize>,
    pub dtype: GgmlType,
    /// Offset from the start of the file.
    pub offset: usize,
    pub n_bytes: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    index: BTreeMap<String, usize>,
    map: Mmap,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

/// Refuse absurd counts before allocating for them: a corrupt length must give an error,
/// not an out-of-memory abort.
const MAX_ITEMS: u64 = 1 << 28;

impl<'a> Cursor<'a> {
    fn err(&self, what: impl Into<String>) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_path_buf(),
            offset: self.pos,
            what: what.into(),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.err(format!(
                    "need {n} bytes for {what}, file has {} left",
                    self.buf.len().saturating_sub(self.pos)
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, GgufError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn count(&mut self, what: &str) -> Result<usize, GgufError> {
        let n = self.u64(what)?;
        if n > MAX_ITEMS {
            return Err(self.err(format!("{what} is {n}, which is implausibly large")));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.u64(what)?;
        if n > self.buf.len() as u64 {
            return Err(self.err(format!("{what}: string length {n} exceeds the file size")));
        }
        let bytes = self.take(n as usize, what)?;
        // Some converters wrote invalid UTF-8 in vocabularies; keep going with replacement chars.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(self.u8(key)?),
            1 => Value::I8(self.u8(key)? as i8),
            2 => Value::U16(self.u16(key)?),
            3 => Value::I16(self.u16(key)? as i16),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(self.u32(key)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(key)?)),
            7 => Value::Bool(self.u8(key)? != 0),
            8 => Value::String(self.string(key)?),
            9 => {
                if depth > 4 {
                    return Err(self.err(format!("metadata '{key}': arrays nested too deeply")));
                }
                let ety = self.u32(key)?;
                let n = self.count(key)?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(ety, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            t => return Err(self.err(format!("metadata '{key}' has unknown value type {t}"))),
        })
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the file is opened read-only; like llama.cpp we assume it is not modified while mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, map)
    }

    fn parse(path: PathBuf, map: Mmap) -> Result<Self, GgufError> {
        let mut c = Cursor {
            buf: &map,
            pos: 0,
            path: &path,
        };
        let magic = c.take(4, "magic").map_err(|_| GgufError::BadMagic {
            path: path.clone(),
            magic: map[..map.len().min(4)].to_vec(),
        })?;
        if magic != b"GGUF" {
            return Err(GgufError::BadMagic {
                path: path.clone(),
                magic: magic.to_vec(),
            });
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::BadVersion {
                path: path.clone(),
                version,
            });
        }
        let n_tensors = c.count("tensor count")?;
        let n_kv = c.count("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32("metadata type")?;
            let v = c.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let nd = c.u32("tensor rank")? as usize;
            if nd > 4 {
                return Err(c.err(format!("tensor '{name}' has rank {nd} (at most 4)")));
            }
            let mut dims = Vec::with_capacity(nd);
            for _ in 0..nd {
                let d = c.u64("tensor dim")?;
                if d > 1 << 40 {
                    return Err(c.err(format!("tensor '{name}' has absurd dimension {d}")));
                }
                dims.push(d as usize);
            }
            let type_id = c.u32("tensor type")?;
            let off = c.u64("tensor offset")? as usize;
            raw.push((name, dims, type_id, off));
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32) as usize;
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(c.err(format!(
                "general.alignment {alignment} is not a power of two"
            )));
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut index = BTreeMap::new();
        for (name, dims, type_id, off) in raw {
            let dtype = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnsupportedType {
                path: path.clone(),
                tensor: name.clone(),
                type_id,
                supported: SUPPORTED
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            let n: usize = dims.iter().product();
            let row = dims.first().copied().unwrap_or(1);
            let n_bytes = dtype
                .row_bytes(row)
                .map(|rb| rb * (n / row.max(1)))
                .ok_or_else(|| c.err(format!("tensor '{name}': row length {row} is not a multiple of {dtype}'s block of {}", dtype.block_len())))?;
            let offset = data_start
                .checked_add(off)
                .ok_or_else(|| c.err("tensor offset overflows"))?;
            let end = offset.checked_add(n_bytes).unwrap_or(usize::MAX);
            if end > map.len() {
                return Err(GgufError::TensorOutOfBounds {
                    path: path.clone(),
                    tensor: name,
                    end,
                    len: map.len(),
                });
            }
            index.insert(name.clone(), tensors.len());
            tensors.push(TensorInfo {
                name,
                dims,
                dtype,
                offset,
                n_bytes,
            });
        }
        Ok(GgufFile {
            path,
            version,
            metadata,
            tensors,
            index,
            map,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// Drop the contents of the array values under `keys` (each becomes
    /// [`Value::Released`] with its length), returning their memory to the allocator. For
    /// metadata that has been turned into something else, like the vocabulary into a tokenizer.
    pub fn release_arrays(&mut self, keys: &[&str]) {
        for k in keys {
            if let Some(v) = self.metadata.get_mut(*k) {
                if let Value::Array(a) = v {
                    *v = Value::Released(a.len());
                }
            }
        }
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
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }
    /// The raw bytes of a tensor, borrowed from the map.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        &self.map[info.offset..info.offset + info.n_bytes]
    }
    /// The whole mapped file.
    pub fn raw(&self) -> &[u8] {
        &self.map
    }
    pub fn file_len(&self) -> usize {
        self.map.len()
    }

    /// The whole mapped file (for residency queries).
    pub fn mapped(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Build a small GGUF in memory: the writer here is independent of the reader and
    /// follows the spec byte by byte.
    fn write_gguf(
        kv: &[(&str, u32, Vec<u8>)],
        tensors: &[(&str, &[u64], u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        for (k, t, v) in kv {
            s(&mut b, k);
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(v);
        }
        let mut off = 0u64;
        for (name, dims, ty, data) in tensors {
            s(&mut b, name);
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
            off += (data.len() as u64).div_ceil(32) * 32;
        }
        while b.len() % 32 != 0 {
            b.push(0);
        }
        for (_, _, _, data) in tensors {
            b.extend_from_slice(data);
            while b.len() % 32 != 0 {
                b.push(0);
            }
        }
        b
    }

    fn open_bytes(bytes: &[u8]) -> Result<GgufFile, GgufError> {
        let mut f = tempfile();
        f.1.write_all(bytes).unwrap();
        GgufFile::open(&f.0)
    }

    fn tempfile() -> (PathBuf, File) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "hearth-gguf-test-{}-{}.gguf",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let f = File::create(&p).unwrap();
        (p, f)
    }

    fn str_val(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn reads_metadata_and_tensors() {
        let mut arr = 4u32.to_le_bytes().to_vec();
        arr.extend_from_slice(&2u64.to_le_bytes());
        arr.extend_from_slice(&7u32.to_le_bytes());
        arr.extend_from_slice(&9u32.to_le_bytes());
        let data: Vec<u8> = (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let bytes = write_gguf(
            &[
                ("general.architecture", 8, str_val("llama")),
                ("x.f", 6, 1.5f32.to_le_bytes().to_vec()),
                ("x.arr", 9, arr),
                ("x.b", 7, vec![1]),
                ("x.i64", 11, (-5i64).to_le_bytes().to_vec()),
            ],
            &[("t", &[4, 2], 0, data)],
        );
        let g = open_bytes(&bytes).unwrap();
        assert_eq!(g.architecture(), Some("llama"));
        assert_eq!(g.get_f64("x.f"), Some(1.5));
        assert_eq!(g.get("x.arr").unwrap().as_array().unwrap().len(), 2);
        assert_eq!(g.get("x.b").unwrap().as_bool(), Some(true));
        assert_eq!(g.get("x.i64").unwrap().as_i64(), Some(-5));
        let t = g.tensor_info("t").unwrap();
        assert_eq!(t.dims, vec![4, 2]);
        let d = g.tensor_data(t);
        assert_eq!(f32::from_le_bytes(d[28..32].try_into().unwrap()), 7.0);
    }

    #[test]
    fn truncation_anywhere_is_an_error_not_a_panic() {
        let data: Vec<u8> = vec![0; 64];
        let bytes = write_gguf(
            &[("general.architecture", 8, str_val("llama"))],
            &[("t", &[16], 0, data)],
        );
        for cut in 0..bytes.len() - 1 {
            assert!(open_bytes(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn unknown_type_is_named() {
        let bytes = write_gguf(&[], &[("weird", &[32], 77, vec![0; 32])]);
        let e = open_bytes(&bytes).err().unwrap().to_string();
        assert!(
            e.contains("weird") && e.contains("77") && e.contains("Q4_K"),
            "{e}"
        );
    }

    #[test]
    fn bad_magic_is_named() {
        let e = open_bytes(b"PK\x03\x04 not a gguf file at all")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a GGUF file"), "{e}");
    }
}
