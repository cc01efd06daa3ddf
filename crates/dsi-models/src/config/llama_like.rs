//! `config.json` of the families that share transformers' Llama key names:
//! Llama, Mistral, Qwen2, Qwen3 and Phi-3.

use super::{Family, ModelConfig, RopeScaling, json_error, positive, token_ids};
use crate::{ModelError, Result};
use serde::Deserialize;
use serde_json::Value;

/// The fields we read. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct HfConfig {
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
    /// Phi-3 keeps the pretrained context beside the extended one.
    original_max_position_embeddings: Option<usize>,
    partial_rotary_factor: Option<f64>,
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

pub(super) fn parse(family: Family, value: Value) -> Result<ModelConfig> {
    let hf: HfConfig = serde_json::from_value(value).map_err(|e| json_error(e.to_string()))?;
    hf.validate(family)
}

impl HfConfig {
    fn validate(self, family: Family) -> Result<ModelConfig> {
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return Err(ModelError::Unsupported {
                field: "hidden_act",
                value: act.clone(),
                reason: "this family is implemented with silu (SwiGLU) only",
            });
        }
        if self.mlp_bias && family != Family::Llama {
            return Err(ModelError::Unsupported {
                field: "mlp_bias",
                value: "true".into(),
                reason: "only Llama's configuration may give its MLP biases",
            });
        }
        if self.use_sliding_window == Some(true) {
            return Err(ModelError::Unsupported {
                field: "use_sliding_window",
                value: "true".into(),
                reason: "sliding-window attention is not implemented",
            });
        }
        // transformers 5 moves it into the rotary parameters.
        let partial = self.partial_rotary_factor.or_else(|| {
            [&self.rope_parameters, &self.rope_scaling]
                .into_iter()
                .flatten()
                .find_map(|p| p.get("partial_rotary_factor").and_then(Value::as_f64))
        });
        if let Some(factor) = partial
            && factor != 1.0
        {
            return Err(ModelError::Unsupported {
                field: "partial_rotary_factor",
                value: factor.to_string(),
                reason: "rotary embeddings over part of a head are not implemented",
            });
        }
        positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
        ])?;
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
        let max_positions = self.max_position_embeddings.unwrap_or(2048);
        positive(&[("max_position_embeddings", max_positions)])?;
        let (rope_theta, rope_scaling) = self.rope(family, head_dim, max_positions)?;
        // A window as wide as the context never drops a key. (Qwen's
        // `sliding_window` applies only with `use_sliding_window`, refused
        // above.)
        let sliding_window = match family {
            Family::Qwen2 | Family::Qwen3 => None,
            _ => self.sliding_window.filter(|&w| w > 0 && w < max_positions),
        };
        let attention_bias = self.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match family {
            Family::Qwen2 => (true, false),
            Family::Phi3 => (false, false),
            _ => (attention_bias, attention_bias),
        };
        Ok(ModelConfig {
            family,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads,
            head_dim,
            norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_context: max_positions,
            sliding_window,
            tie_word_embeddings: self.tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias: self.mlp_bias,
            eos_token_ids: token_ids(self.eos_token_id.as_ref()),
            bos_token_id: token_ids(self.bos_token_id.as_ref()).first().copied(),
        })
    }

    /// `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4).
    fn rope(
        &self,
        family: Family,
        head_dim: usize,
        max_positions: usize,
    ) -> Result<(f64, RopeScaling)> {
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
            // "su" is what the first Phi-3 128k checkpoints called it.
            "longrope" | "su" => self.longrope(family, params, head_dim, max_positions)?,
            other => {
                return Err(ModelError::Unsupported {
                    field: "rope_scaling.rope_type",
                    value: other.to_string(),
                    reason: "supported: default, linear, llama3, longrope",
                });
            }
        };
        Ok((theta, scaling))
    }

    /// LongRoPE as transformers computes it: with a top-level
    /// `original_max_position_embeddings` (Phi-3), the attention factor
    /// follows the ratio of the extended to the pretrained context.
    fn longrope(
        &self,
        family: Family,
        params: &Value,
        head_dim: usize,
        max_positions: usize,
    ) -> Result<RopeScaling> {
        let factors = |key: &'static str| -> Result<Vec<f64>> {
            let values: Option<Vec<f64>> = params
                .get(key)
                .and_then(Value::as_array)
                .map(|items| items.iter().map(Value::as_f64).collect())
                .unwrap_or(None);
            match values {
                Some(v) if v.len() == head_dim / 2 && v.iter().all(|f| *f > 0.0) => Ok(v),
                _ => Err(ModelError::InvalidConfig {
                    field: "rope_scaling",
                    reason: format!(
                        "longrope needs {key}: {} positive numbers (head_dim / 2)",
                        head_dim / 2
                    ),
                }),
            }
        };
        // Phi-3 keeps the pretrained context at the top level (4096 when
        // absent), and transformers prefers it to the one in rope_scaling.
        let in_params = params
            .get("original_max_position_embeddings")
            .and_then(Value::as_u64)
            .map(|v| v as usize);
        let original = match family {
            Family::Phi3 => self.original_max_position_embeddings.unwrap_or(4096),
            _ => in_params
                .or(self.original_max_position_embeddings)
                .unwrap_or(max_positions),
        };
        let factor = params
            .get("factor")
            .and_then(Value::as_f64)
            .unwrap_or(max_positions as f64 / original as f64);
        if original < 2 {
            return Err(ModelError::InvalidConfig {
                field: "original_max_position_embeddings",
                reason: format!("{original} must be at least 2"),
            });
        }
        let attention_factor = match params.get("attention_factor").and_then(Value::as_f64) {
            Some(f) => f,
            None if factor <= 1.0 => 1.0,
            None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
        };
        Ok(RopeScaling::LongRope {
            short_factor: factors("short_factor")?,
            long_factor: factors("long_factor")?,
            original_max_position_embeddings: original,
            attention_factor,
        })
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

    const PHI3: &str = r#"{"model_type":"phi3","vocab_size":300,"hidden_size":32,
        "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":4,"max_position_embeddings":512,
        "original_max_position_embeddings":64,"sliding_window":300,
        "rope_scaling":{"type":"longrope","short_factor":[1,1.5,2,3],"long_factor":[2,3,4,5]}}"#;

    #[test]
    fn reads_a_transformers_4_llama_config() {
        let c = ModelConfig::from_json(LLAMA).unwrap();
        assert_eq!(c.family, Family::Llama);
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
            "sliding_window":4,"use_sliding_window":false}"#;
        let c = ModelConfig::from_json(text).unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling), (1000.0, RopeScaling::None));
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.max_context, 2048, "Qwen's window is off unless used");
    }

    #[test]
    fn reads_phi3_longrope_with_the_attention_factor_of_the_context_ratio() {
        let c = ModelConfig::from_json(PHI3).unwrap();
        assert_eq!(c.family, Family::Phi3);
        assert_eq!((c.max_context, c.sliding_window), (512, Some(300)));
        let RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings,
            attention_factor,
        } = c.rope_scaling
        else {
            panic!("longrope");
        };
        assert_eq!((short_factor.len(), long_factor[3]), (4, 5.0));
        assert_eq!(original_max_position_embeddings, 64);
        let want = (1.0 + (512f64 / 64.0).ln() / 64f64.ln()).sqrt();
        assert!((attention_factor - want).abs() < 1e-12);
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
            (PHI3.replace("[2,3,4,5]", "[2,3,4]"), "long_factor"),
            (
                PHI3.replace(
                    "\"vocab_size\"",
                    "\"partial_rotary_factor\":0.5,\"vocab_size\"",
                ),
                "partial_rotary_factor",
            ),
            (
                PHI3.replace(
                    "\"type\":\"longrope\"",
                    "\"type\":\"longrope\",\"partial_rotary_factor\":0.75",
                ),
                "partial_rotary_factor",
            ),
            (
                PHI3.replace("\"hidden_size\":32", "\"hidden_size\":0"),
                "hidden_size",
            ),
        ];
        for (text, field) in cases {
            let err = ModelConfig::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        assert!(ModelConfig::from_json("{not json").is_err());
    }
}
