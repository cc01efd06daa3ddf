//! `config.json` of StarCoder and SantaCoder (`gpt_bigcode`), which keeps
//! GPT-2's key names.

use super::{Family, ModelConfig, RopeScaling, json_error, positive, token_ids};
use crate::{ModelError, Result};
use serde::Deserialize;
use serde_json::Value;

/// The fields we read. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct BigCodeConfig {
    vocab_size: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    n_inner: Option<usize>,
    n_positions: usize,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    activation_function: Option<String>,
    #[serde(default = "yes")]
    multi_query: bool,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
}

fn default_eps() -> f64 {
    1e-5
}

fn yes() -> bool {
    true
}

/// The activations transformers computes with the tanh approximation of GELU.
const TANH_GELUS: &[&str] = &["gelu_pytorch_tanh", "gelu_new", "gelu_fast"];

pub(super) fn parse(value: Value) -> Result<ModelConfig> {
    let c: BigCodeConfig = serde_json::from_value(value).map_err(|e| json_error(e.to_string()))?;
    let activation = c
        .activation_function
        .as_deref()
        .unwrap_or("gelu_pytorch_tanh");
    if !TANH_GELUS.contains(&activation) {
        return Err(ModelError::Unsupported {
            field: "activation_function",
            value: activation.to_string(),
            reason: "supported: gelu_pytorch_tanh (and its equals gelu_new, gelu_fast)",
        });
    }
    if !c.multi_query {
        // Without multi-query, c_attn interleaves q, k and v per head.
        return Err(ModelError::Unsupported {
            field: "multi_query",
            value: "false".into(),
            reason: "only multi-query attention (StarCoder, SantaCoder) is implemented",
        });
    }
    if !c.scale_attn_weights {
        return Err(ModelError::Unsupported {
            field: "scale_attn_weights",
            value: "false".into(),
            reason: "unscaled attention scores are not implemented",
        });
    }
    positive(&[
        ("vocab_size", c.vocab_size),
        ("n_embd", c.n_embd),
        ("n_layer", c.n_layer),
        ("n_head", c.n_head),
        ("n_positions", c.n_positions),
    ])?;
    if !c.n_embd.is_multiple_of(c.n_head) {
        return Err(ModelError::InvalidConfig {
            field: "n_embd",
            reason: format!("{} is not a multiple of n_head = {}", c.n_embd, c.n_head),
        });
    }
    let intermediate_size = c.n_inner.unwrap_or(c.n_embd.saturating_mul(4));
    positive(&[("n_inner", intermediate_size)])?;
    Ok(ModelConfig {
        family: Family::GptBigCode,
        vocab_size: c.vocab_size,
        hidden_size: c.n_embd,
        intermediate_size,
        num_layers: c.n_layer,
        num_heads: c.n_head,
        num_kv_heads: 1,
        head_dim: c.n_embd / c.n_head,
        norm_eps: c.layer_norm_epsilon,
        rope_theta: 10_000.0,
        rope_scaling: RopeScaling::None,
        max_context: c.n_positions,
        sliding_window: None,
        tie_word_embeddings: c.tie_word_embeddings,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: true,
        eos_token_ids: token_ids(c.eos_token_id.as_ref()),
        bos_token_id: token_ids(c.bos_token_id.as_ref()).first().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARCODER: &str = r#"{"model_type":"gpt_bigcode","vocab_size":300,"n_embd":64,
        "n_layer":2,"n_head":4,"n_inner":null,"n_positions":128,"multi_query":true,
        "activation_function":"gelu_pytorch_tanh","layer_norm_epsilon":1e-5,
        "bos_token_id":0,"eos_token_id":0}"#;

    #[test]
    fn reads_a_starcoder_config() {
        let c = ModelConfig::from_json(STARCODER).unwrap();
        assert_eq!(c.family, Family::GptBigCode);
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (4, 1, 16));
        assert_eq!((c.intermediate_size, c.max_context), (256, 128));
        assert!(c.tie_word_embeddings && c.qkv_bias && c.mlp_bias);
    }

    #[test]
    fn refuses_what_it_cannot_run_naming_the_field() {
        for (text, field) in [
            (
                STARCODER.replace("gelu_pytorch_tanh", "relu"),
                "activation_function",
            ),
            (
                STARCODER.replace("\"multi_query\":true", "\"multi_query\":false"),
                "multi_query",
            ),
            (STARCODER.replace("\"n_head\":4", "\"n_head\":5"), "n_embd"),
            (
                STARCODER.replace("\"n_positions\":128", "\"n_positions\":0"),
                "n_positions",
            ),
            (
                STARCODER.replace("\"n_layer\"", "\"scale_attn_weights\":false,\"n_layer\""),
                "scale_attn_weights",
            ),
            (STARCODER.replace("\"n_embd\":64,", ""), "n_embd"),
        ] {
            let err = ModelConfig::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
