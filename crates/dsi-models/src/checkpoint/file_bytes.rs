//! The bytes of a checkpoint file: memory-mapped on native, owned when
//! they were handed over (the browser).

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
