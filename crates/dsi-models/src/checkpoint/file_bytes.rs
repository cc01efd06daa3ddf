//! The bytes of a checkpoint file: memory-mapped on native, owned when
//! they were handed over (the browser), and the float widths both file
//! formats store, widened to f32.

#[cfg(not(target_arch = "wasm32"))]
use crate::{ModelError, Result};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

/// The bytes of one file, mapped or owned.
pub(crate) enum FileBytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl FileBytes {
    /// Maps `path` read-only.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn map(path: &Path) -> Result<Self> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and lives as long as `FileBytes`.
        // Another process truncating the file while it is mapped is outside
        // what any loader can defend against (candle and transformers map
        // the same way).
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(FileBytes::Mapped(map))
    }
}

/// A float element type as safetensors and GGUF files store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatBytes {
    F32,
    F16,
    Bf16,
}

impl FloatBytes {
    /// Little-endian elements of this type, widened to f32.
    pub(crate) fn to_f32(self, raw: &[u8]) -> Vec<f32> {
        match self {
            FloatBytes::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            FloatBytes::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            FloatBytes::Bf16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }
}
