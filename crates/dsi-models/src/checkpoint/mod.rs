//! A checkpoint: a Hugging Face folder (`config.json`, the safetensors
//! weights, `tokenizer.json` and, when present, `generation_config.json`
//! and `tokenizer_config.json`) or a GGUF file ([`gguf`]), which holds the
//! same in one file.

mod file_bytes;
mod generation;
pub mod gguf;
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

    /// Reads the matrix `name` as the file stores it when that is a
    /// block-quantized format the kernels multiply directly (GGUF's
    /// `Q4_K` ...); `None` when it is stored as floats (then [`read`] it).
    ///
    /// [`read`]: TensorSource::read
    fn read_blocks(&self, name: &str, expected: &[usize]) -> Result<Option<Weights>> {
        let _ = (name, expected);
        Ok(None)
    }
}

impl<T: TensorSource + ?Sized> TensorSource for &T {
    fn read(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        (**self).read(name, expected)
    }

    fn read_blocks(&self, name: &str, expected: &[usize]) -> Result<Option<Weights>> {
        (**self).read_blocks(name, expected)
    }
}

impl<T: TensorSource + ?Sized> TensorSource for Box<T> {
    fn read(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        (**self).read(name, expected)
    }

    fn read_blocks(&self, name: &str, expected: &[usize]) -> Result<Option<Weights>> {
        (**self).read_blocks(name, expected)
    }
}

/// Hides how a source stores its matrices: every tensor is read as f32
/// (block-quantized ones dequantized), as a checkpoint of floats would be.
pub struct Dequantized<S>(pub S);

impl<S: TensorSource> TensorSource for Dequantized<S> {
    fn read(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        self.0.read(name, expected)
    }
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
use dsi_kernels::weights::Weights;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

/// Everything read from a checkpoint, before weights go to a device.
pub struct Checkpoint {
    /// The folder, or the GGUF file.
    pub path: PathBuf,
    /// The validated architecture.
    pub config: ModelConfig,
    /// The weights, mapped: safetensors files or a GGUF file.
    pub weights: Box<dyn TensorSource + Send + Sync>,
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
    /// End-of-sequence ids and sampling defaults.
    pub generation: GenerationDefaults,
    /// The chat template as `tokenizer_config.json` holds it (a folder's
    /// file, or one made from a GGUF file's template and special tokens);
    /// `None` when the checkpoint has none.
    pub tokenizer_config: Option<String>,
    /// The block formats a GGUF file stores weights in (`Q4_K`, `Q6_K`);
    /// empty for float weights.
    pub block_formats: Vec<&'static str>,
}

impl Checkpoint {
    /// Opens a checkpoint folder, a GGUF file, or a folder holding exactly
    /// one GGUF file: every file is checked for presence and syntax here,
    /// and tensors for shape when the model is built.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Self::open_gguf(path);
        }
        if !path.is_dir() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "the checkpoint folder (config.json, model.safetensors, tokenizer.json) or GGUF file",
            });
        }
        if let Some(file) = Self::gguf_file(path)? {
            return Self::open_gguf(&file);
        }
        let dir = path;
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            return Err(ModelError::MissingFile {
                path: config_path,
                what: "the model configuration (config.json)",
            });
        }
        let config = ModelConfig::from_file(&config_path)?;
        let weights = Box::new(SafetensorsFiles::open_dir(dir)?);
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
        let tokenizer_config = match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ModelError::Io {
                    path: dir.join("tokenizer_config.json"),
                    source,
                });
            }
        };
        Ok(Self {
            path: dir.to_path_buf(),
            config,
            weights,
            tokenizer,
            generation,
            tokenizer_config,
            block_formats: Vec::new(),
        })
    }

    /// The GGUF file `path` names: itself when it is a file, or the one
    /// `.gguf` in a folder without `config.json`; `None` for a Hugging Face
    /// folder.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn gguf_file(path: &Path) -> Result<Option<PathBuf>> {
        if path.is_file() {
            return Ok(Some(path.to_path_buf()));
        }
        if !path.is_dir() || path.join("config.json").exists() {
            return Ok(None);
        }
        only_gguf_in(path)
    }

    /// Opens a GGUF file: the architecture, tokenizer, end-of-turn tokens
    /// and chat template come from its metadata.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_gguf(path: &Path) -> Result<Self> {
        Self::from_gguf(path.to_path_buf(), gguf::GgufFile::open(path)?)
    }

    /// A checkpoint over an opened GGUF file (`path` names it).
    pub fn from_gguf(path: PathBuf, file: gguf::GgufFile) -> Result<Self> {
        let config = file.config().clone();
        let tokenizer = file.tokenizer()?;
        let mut eos = config.eos_token_ids.clone();
        for id in file.end_of_turn_ids() {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let tokenizer_config = file.chat_template().map(|template| {
            let token = |key: &str| {
                file.metadata(key)
                    .and_then(gguf::Value::as_u64)
                    .and_then(|id| tokenizer.token(id as u32))
            };
            serde_json::json!({
                "chat_template": template,
                "bos_token": token("tokenizer.ggml.bos_token_id"),
                "eos_token": token("tokenizer.ggml.eos_token_id"),
            })
            .to_string()
        });
        let block_formats = file.block_formats();
        Ok(Self {
            path,
            config,
            block_formats,
            weights: Box::new(file),
            tokenizer,
            generation: GenerationDefaults { eos_token_ids: eos },
            tokenizer_config,
        })
    }
}

/// The one `.gguf` file in `dir`: `None` when there is none, an error
/// naming them when there are several.
#[cfg(not(target_arch = "wasm32"))]
fn only_gguf_in(dir: &Path) -> Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(ModelError::Gguf {
            file: dir.display().to_string(),
            reason: format!(
                "the folder holds {} GGUF files ({}); name the one to load",
                found.len(),
                found
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
