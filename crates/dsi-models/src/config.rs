//! Hugging Face `config.json`, mirrored with serde and validated into the
//! engine's own [`LlamaConfig`].
//!
//! Accepts the Llama, Qwen2 and Mistral layouts (Llama 2/3, Qwen2/2.5,
//! Mistral, SmolLM, TinyLlama), with rotary settings written either the
//! transformers 4 way (`rope_theta`, `rope_scaling`) or the transformers 5
//! way (`rope_parameters`). Anything that would change the math and that we
//! do not implement is refused, naming the field.

use crate::{ModelError, Result};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// How rotary frequencies are rescaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq)]
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
}

/// The model architecture the engine runs, independent of file formats.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE rescaling.
    pub rope_scaling: RopeScaling,
    /// Longest context the model may see (positions).
    pub max_context: usize,
    /// The LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q, k and v projections have biases (Qwen2, or Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// The output projection has a bias (Llama with `attention_bias`).
    pub o_bias: bool,
    /// End-of-sequence token ids from `config.json` (generation config may add more).
    pub eos_token_ids: Vec<u32>,
    /// Beginning-of-sequence token id, when the model has one.
    pub bos_token_id: Option<u32>,
}

/// The fields of `config.json` we read. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    max_position_embeddings: Option<usize>,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
}

fn default_eps() -> f64 {
    1e-6
}

const ARCHITECTURES: &[&str] = &["LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"];
const MODEL_TYPES: &[&str] = &["llama", "qwen2", "mistral"];

impl LlamaConfig {
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
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| ModelError::Json {
            path: "config.json".into(),
            what: "Hugging Face model configuration",
            reason: e.to_string(),
        })?;
        hf.validate()
    }

    /// The shape of SmolLM-135M (hidden 576, 30 layers, 9 heads, 3 KV heads,
    /// intermediate 1536, vocabulary 49152, tied embeddings), for benchmarks.
    pub fn smollm_135m() -> Self {
        Self {
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            max_context: 2048,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            eos_token_ids: vec![0],
            bos_token_id: Some(0),
        }
    }

    /// The shape of Llama-3.2-1B (hidden 2048, 16 layers, 32 heads, 8 KV
    /// heads, intermediate 8192, vocabulary 128256, tied embeddings, llama3
    /// RoPE scaling, a 128k context), for benchmarks at real sizes.
    pub fn llama_3_2_1b() -> Self {
        Self {
            vocab_size: 128_256,
            hidden_size: 2048,
            intermediate_size: 8192,
            num_layers: 16,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
            max_context: 131_072,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            eos_token_ids: vec![128_001],
            bos_token_id: Some(128_000),
        }
    }

    /// Bytes of weights one decode step reads: every matrix once, the
    /// embedding only through the LM head (a lookup reads one row).
    pub fn weight_bytes_per_token(&self, bytes_per_value: usize) -> usize {
        let embedding_lookup_only = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * self.hidden_size
        };
        (self.num_parameters() - embedding_lookup_only) * bytes_per_value
    }

    /// Key/value heads per query head group.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Parameters of the model, for bandwidth and memory estimates.
    pub fn num_parameters(&self) -> usize {
        let (d, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let attn = d * q + 2 * d * kv + q * d;
        let biases = if self.qkv_bias { q + 2 * kv } else { 0 } + if self.o_bias { d } else { 0 };
        let per_layer = attn + biases + 3 * d * f + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + self.num_layers * per_layer + d + head
    }
}

impl HfConfig {
    fn validate(self) -> Result<LlamaConfig> {
        // `model_type` decides when present (it is what transformers dispatches
        // on); older configs may carry only `architectures`.
        let model_type = self.model_type.clone().unwrap_or_default();
        let supported = match &self.model_type {
            Some(t) => MODEL_TYPES.contains(&t.as_str()),
            None => self
                .architectures
                .iter()
                .any(|a| ARCHITECTURES.contains(&a.as_str())),
        };
        if !supported {
            return Err(ModelError::Unsupported {
                field: "model_type",
                value: format!("{model_type:?} (architectures {:?})", self.architectures),
                reason: "supported: llama, qwen2, mistral (LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM)",
            });
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return Err(ModelError::Unsupported {
                field: "hidden_act",
                value: act.clone(),
                reason: "only silu (SwiGLU) is implemented",
            });
        }
        if self.mlp_bias {
            return Err(ModelError::Unsupported {
                field: "mlp_bias",
                value: "true".into(),
                reason: "MLP biases are not implemented",
            });
        }
        if self.use_sliding_window == Some(true) {
            return Err(ModelError::Unsupported {
                field: "use_sliding_window",
                value: "true".into(),
                reason: "sliding-window attention is not implemented",
            });
        }
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
        ] {
            if value == 0 {
                return Err(ModelError::InvalidConfig {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        let num_kv_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        if num_kv_heads == 0 || !self.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(ModelError::InvalidConfig {
                field: "num_key_value_heads",
                reason: format!(
                    "{num_kv_heads} does not divide num_attention_heads = {}",
                    self.num_attention_heads
                ),
            });
        }
        let head_dim = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(ModelError::InvalidConfig {
                field: "head_dim",
                reason: format!("{head_dim} must be even and positive for rotary embeddings"),
            });
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ModelError::InvalidConfig {
                field: "hidden_size",
                reason: format!(
                    "{} is not a multiple of num_attention_heads = {}; give head_dim explicitly",
                    self.hidden_size, self.num_attention_heads
                ),
            });
        }
        let (rope_theta, rope_scaling) = self.rope()?;
        let max_positions = self.max_position_embeddings.unwrap_or(2048);
        // A sliding window wider than the context never drops a key; a narrower
        // one would, so the usable context stops at the window.
        let max_context = match self.sliding_window {
            Some(window) if window > 0 => max_positions.min(window),
            _ => max_positions,
        };
        let is_qwen2 =
            model_type == "qwen2" || self.architectures.iter().any(|a| a == "Qwen2ForCausalLM");
        let attention_bias = self.attention_bias.unwrap_or(false);
        Ok(LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_context,
            tie_word_embeddings: self.tie_word_embeddings,
            qkv_bias: is_qwen2 || attention_bias,
            o_bias: !is_qwen2 && attention_bias,
            eos_token_ids: token_ids(self.eos_token_id.as_ref()),
            bos_token_id: token_ids(self.bos_token_id.as_ref()).first().copied(),
        })
    }

    /// `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4).
    fn rope(&self) -> Result<(f64, RopeScaling)> {
        let params = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let theta = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or(10_000.0);
        if theta.is_nan() || theta <= 0.0 {
            return Err(ModelError::InvalidConfig {
                field: "rope_theta",
                reason: format!("{theta} must be positive"),
            });
        }
        let Some(params) = params.filter(|p| !p.is_null()) else {
            return Ok((theta, RopeScaling::None));
        };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let number = |key: &'static str| -> Result<f64> {
            params
                .get(key)
                .and_then(Value::as_f64)
                .ok_or(ModelError::InvalidConfig {
                    field: "rope_scaling",
                    reason: format!("{kind} scaling needs a numeric {key}"),
                })
        };
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: number("factor")?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max_position_embeddings: number("original_max_position_embeddings")?,
            },
            other => {
                return Err(ModelError::Unsupported {
                    field: "rope_scaling.rope_type",
                    value: other.to_string(),
                    reason: "supported: default, linear, llama3",
                });
            }
        };
        Ok((theta, scaling))
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

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA: &str = r#"{"model_type":"llama","vocab_size":300,"hidden_size":64,
        "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"rms_norm_eps":1e-5,"rope_theta":500000.0,
        "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
        "high_freq_factor":4.0,"original_max_position_embeddings":64},
        "max_position_embeddings":256,"eos_token_id":[2,3],"bos_token_id":1}"#;

    #[test]
    fn reads_a_transformers_4_llama_config() {
        let c = LlamaConfig::from_json(LLAMA).unwrap();
        assert_eq!((c.head_dim, c.num_kv_heads, c.group_size()), (16, 2, 2));
        assert_eq!(c.rope_theta, 500000.0);
        assert!(matches!(
            c.rope_scaling,
            RopeScaling::Llama3 { factor: 8.0, .. }
        ));
        assert_eq!(c.eos_token_ids, vec![2, 3]);
        assert!(!c.qkv_bias && !c.o_bias);
    }

    #[test]
    fn reads_transformers_5_rope_parameters_and_qwen2_biases() {
        let text = r#"{"model_type":"qwen2","vocab_size":10,"hidden_size":8,
            "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
            "num_key_value_heads":1,"rope_parameters":{"rope_theta":1000.0,"rope_type":"default"},
            "sliding_window":null,"use_sliding_window":false}"#;
        let c = LlamaConfig::from_json(text).unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling), (1000.0, RopeScaling::None));
        assert!(c.qkv_bias && !c.o_bias);
    }

    #[test]
    fn refuses_what_it_cannot_run_naming_the_field() {
        let cases = [
            (LLAMA.replace("\"llama\"", "\"gpt2\""), "model_type"),
            (
                LLAMA.replace("\"llama3\"", "\"yarn\""),
                "rope_scaling.rope_type",
            ),
            (
                LLAMA.replace("\"num_key_value_heads\":2", "\"num_key_value_heads\":3"),
                "num_key_value_heads",
            ),
            (
                LLAMA.replace(
                    "\"rms_norm_eps\"",
                    "\"hidden_act\":\"gelu\",\"rms_norm_eps\"",
                ),
                "hidden_act",
            ),
            (
                LLAMA.replace(
                    "\"rms_norm_eps\"",
                    "\"use_sliding_window\":true,\"rms_norm_eps\"",
                ),
                "use_sliding_window",
            ),
        ];
        for (text, field) in cases {
            let err = LlamaConfig::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        assert!(LlamaConfig::from_json("{not json").is_err());
    }
}
