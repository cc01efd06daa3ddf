//! GGUF files (llama.cpp's format, what Ollama and LM Studio hold): the
//! container ([`parse`]), the architecture from its metadata ([`config`]),
//! the tokenizer from its vocabulary ([`tokenizer`]) and its tensors under
//! Hugging Face names ([`tensors`]), block-quantized weights handed to the
//! kernels as stored.
//!
//! The file is memory-mapped (or handed over as bytes in the browser) and
//! checked whole when opened: a truncated file, an unknown tensor type or
//! a tensor that disagrees with the metadata is refused before any weight
//! is read.

mod config;
mod metadata;
mod parse;
mod tensors;
mod tokenizer;

pub use config::ARCHITECTURES;
pub use metadata::Value;

use super::file_bytes::FileBytes;
use super::{HostTensor, TensorSource, TextTokenizer};
use crate::config::ModelConfig;
use crate::{ModelError, Result};
use dsi_kernels::weights::Weights;
use metadata::Metadata;
use parse::{Parsed, TensorType};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::sync::Arc;
use tensors::{Found, gguf_name};

/// An opened, checked GGUF file.
pub struct GgufFile {
    name: String,
    /// Shared with the block-quantized weights read from it, which borrow
    /// their bytes instead of copying them.
    bytes: Arc<FileBytes>,
    parsed: Parsed,
    config: ModelConfig,
    /// `(query heads, key/value heads)` when the file's query and key rows
    /// are in llama.cpp's rotary order (`llama` architecture).
    permuted: Option<(usize, usize)>,
}

impl GgufFile {
    /// Maps and checks `path`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = FileBytes::map(path)?;
        Self::from_parts(path.display().to_string(), bytes)
    }

    /// Checks a file handed over as bytes (`name` for messages).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::from_parts(name.to_string(), FileBytes::Owned(bytes))
    }

    fn from_parts(name: String, bytes: FileBytes) -> Result<Self> {
        let fail = |reason: String| ModelError::Gguf {
            file: name.clone(),
            reason,
        };
        let parsed = parse::parse(&bytes).map_err(fail)?;
        let config = config::model_config(&parsed).map_err(fail)?;
        let arch = Metadata(&parsed.metadata)
            .required_string("general.architecture")
            .map_err(fail)?;
        let permuted = (arch == "llama").then_some((config.num_heads, config.num_kv_heads));
        Ok(Self {
            name,
            bytes: Arc::new(bytes),
            parsed,
            config,
            permuted,
        })
    }

    /// The file's name, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The architecture the metadata describes.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tokenizer its metadata describes.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        tokenizer::from_metadata(&Metadata(&self.parsed.metadata))
            .map(|t| TextTokenizer::from_tokenizer(t, &self.name))
            .map_err(|reason| self.error(format!("its tokenizer: {reason}")))
    }

    /// The chat template (`tokenizer.chat_template`), if it has one.
    pub fn chat_template(&self) -> Option<&str> {
        Metadata(&self.parsed.metadata)
            .string("tokenizer.chat_template")
            .ok()
            .flatten()
    }

    /// Every id that ends a turn: EOS, EOT and EOM, and the control tokens
    /// llama.cpp also stops at (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`
    /// ...).
    pub fn end_of_turn_ids(&self) -> Vec<u32> {
        tokenizer::end_of_turn_ids(&Metadata(&self.parsed.metadata))
    }

    /// The block formats its tensors are stored in (`Q4_K`, `Q6_K` ...),
    /// each once, in name order; empty when every tensor is a float.
    pub fn block_formats(&self) -> Vec<&'static str> {
        let mut formats: Vec<&'static str> = self
            .parsed
            .tensors
            .values()
            .filter_map(|t| match t.dtype {
                TensorType::Blocks(b) => Some(b.name()),
                _ => None,
            })
            .collect();
        formats.sort_unstable();
        formats.dedup();
        formats
    }

    /// A metadata value, by key.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.parsed.metadata.get(key)
    }

    fn error(&self, reason: String) -> ModelError {
        ModelError::Gguf {
            file: self.name.clone(),
            reason,
        }
    }

    /// The tensor behind a Hugging Face name, its shape checked.
    fn find(&self, hf: &str, expected: &[usize]) -> Result<Found<'_>> {
        let missing = || ModelError::MissingTensor {
            file: self.name.clone(),
            tensor: hf.to_string(),
        };
        let (name, rows) = gguf_name(hf, self.permuted).ok_or_else(missing)?;
        let info = self
            .parsed
            .tensors
            .get(&name)
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.name.clone(),
                tensor: format!("{name} ({hf})"),
            })?;
        if info.shape != expected {
            return Err(ModelError::ShapeMismatch {
                file: self.name.clone(),
                tensor: name,
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        let found = Found {
            file: &self.bytes,
            name,
            info,
            rows,
        };
        found.check_rows(&self.name)?;
        Ok(found)
    }
}

impl TensorSource for GgufFile {
    fn read(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        Ok(self.find(name, expected)?.to_f32())
    }

    fn read_blocks(&self, name: &str, expected: &[usize]) -> Result<Option<Weights>> {
        self.find(name, expected)?.to_blocks(&self.name)
    }
}
