//! Model file formats. Nothing here computes: it maps files and describes tensors.
pub mod dtype;
pub mod ftype;
pub mod gguf;

pub use dtype::GgmlType;
pub use gguf::{GgufError, GgufFile, TensorInfo, Value};
