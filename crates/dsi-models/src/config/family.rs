//! Which published architecture a checkpoint follows, and what that
//! decides: the norm, the MLP, how positions enter, per-head query/key
//! norms, and (in `transformer::names`) the tensor names.

use crate::{ModelError, Result};
use serde_json::Value;

/// A family of decoder-only transformers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 2/3, SmolLM, TinyLlama, Vicuna (`llama`).
    Llama,
    /// Mistral (`mistral`): Llama's blocks.
    Mistral,
    /// Qwen2/2.5 (`qwen2`): Llama's blocks with q/k/v biases.
    Qwen2,
    /// Qwen3 (`qwen3`): Llama's blocks with an RMSNorm of every query and
    /// key head before the rotation.
    Qwen3,
    /// Phi-3 (`phi3`): Llama's blocks with fused `qkv_proj` and
    /// `gate_up_proj`, and LongRoPE for the 128k variants.
    Phi3,
    /// StarCoder, SantaCoder (`gpt_bigcode`): LayerNorm, GELU MLP with
    /// biases, learned absolute positions, multi-query attention.
    GptBigCode,
}

/// The normalization of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `x / rms(x) * weight`.
    Rms,
    /// `(x - mean) / std * weight + bias`.
    Layer,
}

/// The feed-forward block of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpKind {
    /// `down(silu(gate(x)) * up(x))`.
    SwiGlu,
    /// `proj(gelu_tanh(fc(x)))`.
    GeluTanh,
}

const ALL: [Family; 6] = [
    Family::Llama,
    Family::Mistral,
    Family::Qwen2,
    Family::Qwen3,
    Family::Phi3,
    Family::GptBigCode,
];

impl Family {
    /// `model_type` in `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Phi3 => "phi3",
            Family::GptBigCode => "gpt_bigcode",
        }
    }

    /// transformers' class for the model with its LM head.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
            Family::Phi3 => "Phi3ForCausalLM",
            Family::GptBigCode => "GPTBigCodeForCausalLM",
        }
    }

    /// The family of a `config.json`: `model_type` decides when present
    /// (it is what transformers dispatches on); older configs may carry
    /// only `architectures`.
    pub(crate) fn of_config(config: &Value) -> Result<Self> {
        let model_type = config.get("model_type").and_then(Value::as_str);
        let architectures: Vec<&str> = config
            .get("architectures")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let found = match model_type {
            Some(t) => ALL.into_iter().find(|f| f.model_type() == t),
            None => ALL
                .into_iter()
                .find(|f| architectures.contains(&f.architecture())),
        };
        found.ok_or_else(|| ModelError::Unsupported {
            field: "model_type",
            value: format!("{model_type:?} (architectures {architectures:?})"),
            reason: "supported: llama, mistral, qwen2, qwen3, phi3, gpt_bigcode",
        })
    }

    /// The norm before attention, before the MLP and before the LM head.
    pub fn norm(self) -> NormKind {
        match self {
            Family::GptBigCode => NormKind::Layer,
            _ => NormKind::Rms,
        }
    }

    /// The feed-forward block.
    pub fn mlp(self) -> MlpKind {
        match self {
            Family::GptBigCode => MlpKind::GeluTanh,
            _ => MlpKind::SwiGlu,
        }
    }

    /// Positions enter by rotating queries and keys (else: a learned
    /// embedding added to the token's).
    pub fn rotary(self) -> bool {
        self != Family::GptBigCode
    }

    /// Every query and key head is RMS-normalized before the rotation.
    pub fn qk_norm(self) -> bool {
        self == Family::Qwen3
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}
