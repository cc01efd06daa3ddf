//! The one error type of `dsi-models`.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model. Each variant
/// names the file, tensor or field at fault, and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A required file of the checkpoint folder is absent.
    #[error("{path} is missing: {what}")]
    MissingFile {
        /// The expected path.
        path: PathBuf,
        /// What the file is for and how to get it.
        what: &'static str,
    },
    /// A JSON file does not parse or has the wrong shape.
    #[error("{path} is not a valid {what}: {reason}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the file should be.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The configuration asks for something this engine does not implement.
    #[error("unsupported model configuration: {field} = {value} ({reason})")]
    Unsupported {
        /// The `config.json` field at fault.
        field: &'static str,
        /// Its value.
        value: String,
        /// What we support instead.
        reason: &'static str,
    },
    /// The configuration is inconsistent.
    #[error("invalid model configuration: {field}: {reason}")]
    InvalidConfig {
        /// The `config.json` field at fault.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A safetensors file is malformed (truncated, bad header).
    #[error("{file} is not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        file: String,
        /// The parser's message.
        reason: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("tensor {tensor} is missing from {file}")]
    MissingTensor {
        /// The file (or the set of files) searched.
        file: String,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor's shape disagrees with the configuration.
    #[error(
        "tensor {tensor} in {file} has shape {found:?}, but the model configuration implies {expected:?}"
    )]
    ShapeMismatch {
        /// The file.
        file: String,
        /// The tensor name.
        tensor: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape on disk.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype we cannot convert.
    #[error("tensor {tensor} in {file} is stored as {dtype}; supported: F32, F16, BF16")]
    UnsupportedDtype {
        /// The file.
        file: String,
        /// The tensor name.
        tensor: String,
        /// The dtype on disk.
        dtype: String,
    },
    /// `tokenizer.json` could not be loaded or used.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizer library's message.
        reason: String,
    },
    /// A token id is outside the model's vocabulary.
    #[error("token id {token} is outside the vocabulary (size {vocab})")]
    UnknownToken {
        /// The token id.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The KV cache cannot hold the new tokens.
    #[error(
        "the KV cache is full: it holds {len} of {capacity} positions and {needed} more were fed; \
         use a shorter prompt, fewer new tokens, or a larger context"
    )]
    CacheFull {
        /// Positions already cached.
        len: usize,
        /// Positions in this forward.
        needed: usize,
        /// The cache's capacity.
        capacity: usize,
    },
    /// A forward was stopped by its cancellation flag.
    #[error("the forward pass was cancelled")]
    Cancelled,
    /// A forward was called with no tokens.
    #[error("a forward pass needs at least one token")]
    EmptyInput,
    /// The device does not support the requested dtype or backend.
    #[error("{0}")]
    Device(String),
    /// A backend this binary has cannot start on this machine.
    #[error("{backend} cannot start: {reason}; install {install}, or use --backend cpu")]
    Unavailable {
        /// The backend as the user names it (`wgpu`, `wgpu:1`).
        backend: String,
        /// What is missing.
        reason: String,
        /// What to install to get it.
        install: &'static str,
    },
    /// A drafter that cannot draft for its target.
    #[error(
        "the drafter cannot draft for this target: {0}; use a drafter trained with the target's tokenizer"
    )]
    PairMismatch(String),
    /// A GGUF file is malformed (truncated, a bad header, a tensor that
    /// disagrees with its metadata) or holds what the engine cannot run.
    #[error("{file} is not a GGUF file the engine can run: {reason}")]
    Gguf {
        /// The file.
        file: String,
        /// What is wrong, where, and what to do.
        reason: String,
    },
    /// Reading a tensor back from the device failed.
    #[error("reading results back from the device failed: {0}")]
    Readback(String),
    /// Sampling parameters are out of range.
    #[error(transparent)]
    InvalidSampling(#[from] dsi_core::Error),
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
