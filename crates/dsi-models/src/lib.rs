//! Decoder-only language models of several families (Llama, Mistral, Qwen,
//! Phi-3, StarCoder) written once in burn, for every backend.
//!
//! - [`config`]: a serde mirror of Hugging Face `config.json`, validated into
//!   [`ModelConfig`]; configurations we cannot run exactly are refused.
//! - [`transformer`]: the decoder of every family (norms, rotary or
//!   learned positions, grouped- or multi-query attention, SwiGLU or GELU
//!   MLP), generic over burn's `Backend`; [`transformer::names`] maps each
//!   family's tensor names. The model is immutable; the caller owns the
//!   [`KvCache`].
//! - [`cache`]: a KV cache that grows by segments, with O(1) rollback
//!   (`truncate`).
//! - [`checkpoint`]: loading a Hugging Face folder (safetensors, memory-mapped
//!   on native, or from bytes; tokenizer; generation config), and writing
//!   one (random weights of a known shape, or a near-tie copy for tests).
//! - [`sampling`]: logits processing (temperature, top-k, top-p) into the
//!   distributions `dsi-core`'s verification rules consume.
//! - [`measure`]: the paper's acceptance-rate measurement (teacher forcing).
//! - [`pair`]: what a drafter must share with its target (the tokenizer),
//!   and the vocabulary they verify on when their embeddings are padded
//!   to different sizes.
//! - [`session`]: shared weights plus a KV cache per sequence, every
//!   sequence of a call fed in one batched forward, driven by the scheduler
//!   through `dsi-core`'s plain-data `KvModel` trait.
//! - `train` (feature `train`): tokenizer and model training from text
//!   files into a Hugging Face folder.
//! - [`device`]: the backends behind cargo features, whether one can start
//!   here ([`device::probe`]), and the run dtype.
//! - [`test_backends`]: which backends the test suites run on
//!   (`DSI_TEST_BACKENDS`), shared by every crate's tests.
//!
//! This crate knows nothing of scheduling or HTTP.

pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod loss;
pub mod measure;
pub mod pair;
mod rope;
pub mod session;
pub mod test_backends;
#[cfg(feature = "train")]
pub mod train;
pub mod transformer;

pub use cache::KvCache;
pub use config::ModelConfig;
/// Logits processing lives in `dsi-core`, where the scheduler shares it.
pub use dsi_core::sampling;
pub use error::{ModelError, Result};
pub use session::Session;
pub use transformer::{Logits, Transformer};
