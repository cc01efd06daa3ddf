//! Hugging Face `config.json`, mirrored with serde and validated into the
//! engine's own [`ModelConfig`].
//!
//! Every family the engine runs is a decoder-only transformer; they differ
//! in a few blocks ([`Family`] says which) and in how `config.json` names
//! their sizes:
//! - [`llama_like`]: Llama 2/3, Mistral, Qwen2/2.5, Qwen3 and Phi-3, which
//!   share transformers' Llama key names (rotary settings written either the
//!   transformers 4 way, `rope_theta` + `rope_scaling`, or the transformers 5
//!   way, `rope_parameters`);
//! - [`gpt_bigcode`]: StarCoder and SantaCoder (GPT-2 key names).
//!
//! Anything that would change the math and that we do not implement is
//! refused, naming the field.

mod family;
mod gpt_bigcode;
mod llama_like;
mod presets;

pub use family::{Family, MlpKind, NormKind};

use crate::{ModelError, Result};
use serde_json::Value;
use std::path::Path;

/// How rotary frequencies are rescaled for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Every frequency divided by `factor` (position interpolation).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's smooth per-band rescaling.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelength band edges, in units of the original context.
        low_freq_factor: f64,
        /// See `low_freq_factor`.
        high_freq_factor: f64,
        /// The context length the model was pretrained with.
        original_max_position_embeddings: f64,
    },
    /// Phi-3's LongRoPE (Ding et al. 2024): one divisor per frequency,
    /// `short_factor` within the pretrained context and `long_factor`
    /// beyond it, and cos/sin scaled by `attention_factor`.
    LongRope {
        /// Divisors used for positions below `original_max_position_embeddings`.
        short_factor: Vec<f64>,
        /// Divisors used from `original_max_position_embeddings` on.
        long_factor: Vec<f64>,
        /// The context length the model was pretrained with.
        original_max_position_embeddings: usize,
        /// Multiplies every cos and sin.
        attention_factor: f64,
    },
}

/// The model architecture the engine runs, independent of file formats.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which published architecture: tensor names and block kinds.
    pub family: Family,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP (of each of its halves when gated).
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than
    /// `num_heads`, multi-query when 1).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Epsilon of every norm (RMSNorm or LayerNorm, as the family has).
    pub norm_eps: f64,
    /// RoPE base (unused by families with learned positions).
    pub rope_theta: f64,
    /// RoPE rescaling.
    pub rope_scaling: RopeScaling,
    /// Longest context the model may see (positions).
    pub max_context: usize,
    /// Sliding-window attention (Mistral, Phi-3): each position attends to
    /// the last `window` positions, itself included. `None` when every
    /// earlier position is seen (or the window spans the whole context).
    pub sliding_window: Option<usize>,
    /// The LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q, k and v projections have biases.
    pub qkv_bias: bool,
    /// The output projection has a bias.
    pub o_bias: bool,
    /// The MLP's projections have biases.
    pub mlp_bias: bool,
    /// End-of-sequence token ids from `config.json` (generation config may add more).
    pub eos_token_ids: Vec<u32>,
    /// Beginning-of-sequence token id, when the model has one.
    pub bos_token_id: Option<u32>,
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|err| match err {
            ModelError::Json { what, reason, .. } => ModelError::Json {
                path: path.to_path_buf(),
                what,
                reason,
            },
            other => other,
        })
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| json_error(e.to_string()))?;
        match Family::of_config(&value)? {
            Family::GptBigCode => gpt_bigcode::parse(value),
            family => llama_like::parse(family, value),
        }
    }

    /// Key/value heads per query head group.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Bytes of weights one decode step reads: every matrix once, the
    /// embeddings only through the LM head (a lookup reads one row).
    pub fn weight_bytes_per_token(&self, bytes_per_value: usize) -> usize {
        let lookups_only = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * self.hidden_size
        } + self.learned_positions() * self.hidden_size;
        (self.num_parameters() - lookups_only) * bytes_per_value
    }

    /// Rows of the learned position embedding (0 with rotary positions).
    pub fn learned_positions(&self) -> usize {
        if self.family.rotary() {
            0
        } else {
            self.max_context
        }
    }

    /// Parameters of the model, for bandwidth and memory estimates.
    pub fn num_parameters(&self) -> usize {
        let (d, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let attn = d * q + 2 * d * kv + q * d;
        let attn_biases =
            if self.qkv_bias { q + 2 * kv } else { 0 } + if self.o_bias { d } else { 0 };
        let mlp = match self.family.mlp() {
            MlpKind::SwiGlu => 3 * d * f + if self.mlp_bias { 2 * f + d } else { 0 },
            MlpKind::GeluTanh => 2 * d * f + if self.mlp_bias { f + d } else { 0 },
        };
        let norm = match self.family.norm() {
            NormKind::Rms => d,
            NormKind::Layer => 2 * d,
        };
        let qk_norm = if self.family.qk_norm() {
            2 * self.head_dim
        } else {
            0
        };
        let per_layer = attn + attn_biases + mlp + 2 * norm + qk_norm;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + self.learned_positions() * d + self.num_layers * per_layer + norm + head
    }
}

fn json_error(reason: String) -> ModelError {
    ModelError::Json {
        path: "config.json".into(),
        what: "Hugging Face model configuration",
        reason,
    }
}

/// A token id field that may be a number, a list of numbers, or null.
fn token_ids(value: Option<&Value>) -> Vec<u32> {
    match value {
        Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_u64)
            .map(|v| v as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// Refuses a zero where a size must be positive.
fn positive(sizes: &[(&'static str, usize)]) -> Result<()> {
    match sizes.iter().find(|(_, value)| *value == 0) {
        Some((field, _)) => Err(ModelError::InvalidConfig {
            field,
            reason: "must be at least 1".into(),
        }),
        None => Ok(()),
    }
}
