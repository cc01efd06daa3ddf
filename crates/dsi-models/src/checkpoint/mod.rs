//! A Hugging Face checkpoint folder: `config.json`, the safetensors weights,
//! `tokenizer.json` and, when present, `generation_config.json`.

mod generation;
mod near_ties;
mod random;
mod safetensors_files;
mod tokenizer;
pub mod write;

pub use generation::GenerationDefaults;
#[cfg(not(target_arch = "wasm32"))]
pub use near_ties::write_near_ties;
pub use near_ties::{NEAR_TIE_SCALE, NearTies};
pub use random::RandomWeights;
pub use safetensors_files::{HostTensor, SafetensorsFiles};
pub use tokenizer::{TextTokenizer, padded_tokenizer_json};
pub use write::{StoreDtype, tensor_layout, write_random};

/// Where a model's tensors come from: checkpoint files, or generated.
pub trait TensorSource {
    /// Reads `name` as f32, refusing any shape other than `expected`.
    fn read(&self, name: &str, expected: &[usize]) -> Result<HostTensor>;
}

impl TensorSource for SafetensorsFiles {
    fn read(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        SafetensorsFiles::read(self, name, expected)
    }
}

#[cfg(not(target_arch = "wasm32"))]
use crate::ModelError;
use crate::Result;
use crate::config::ModelConfig;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

/// Everything read from a checkpoint folder, before weights go to a device.
pub struct Checkpoint {
    /// The folder.
    pub dir: PathBuf,
    /// The validated architecture.
    pub config: ModelConfig,
    /// The weights, mapped.
    pub weights: SafetensorsFiles,
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
    /// End-of-sequence ids and sampling defaults.
    pub generation: GenerationDefaults,
}

impl Checkpoint {
    /// Opens `dir`: every file is checked for presence and syntax here, and
    /// tensors for shape when the model is built.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::MissingFile {
                path: dir.to_path_buf(),
                what: "the checkpoint folder (config.json, model.safetensors, tokenizer.json)",
            });
        }
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            return Err(ModelError::MissingFile {
                path: config_path,
                what: "the model configuration (config.json)",
            });
        }
        let config = ModelConfig::from_file(&config_path)?;
        let weights = SafetensorsFiles::open_dir(dir)?;
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.exists() && dir.join("tokenizer.model").exists() {
            return Err(ModelError::MissingFile {
                path: tokenizer_path,
                what: "the tokenizer as tokenizer.json; this folder has only SentencePiece's \
                       tokenizer.model, which the engine does not read. Convert it once with \
                       transformers: python3 -c \"import sys; from transformers import AutoTokenizer; \
                       AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1])\" DIR",
            });
        }
        let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
        let generation = GenerationDefaults::load(dir, &config)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weights,
            tokenizer,
            generation,
        })
    }
}
