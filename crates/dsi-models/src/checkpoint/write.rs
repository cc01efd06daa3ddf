//! Writing a Hugging Face checkpoint folder: `config.json`,
//! `model.safetensors`, `generation_config.json`. The loader reads it back;
//! so could transformers. [`crate::train::write_checkpoint`] writes a
//! trained model through it; [`write_random`] writes random weights of any
//! shape, so a benchmark can serve a real-size model without a download.

use super::{HostTensor, TensorSource};
use crate::config::{Family, ModelConfig, RopeScaling};
use crate::transformer::names::ModelNames;
use crate::{ModelError, Result};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;
use std::path::Path;

/// How weights are stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDtype {
    /// 32-bit floats.
    F32,
    /// IEEE half: half the size, ample precision for inference.
    F16,
    /// bfloat16, what most released checkpoints use.
    Bf16,
}

impl StoreDtype {
    fn safetensors(self) -> Dtype {
        match self {
            StoreDtype::F32 => Dtype::F32,
            StoreDtype::F16 => Dtype::F16,
            StoreDtype::Bf16 => Dtype::BF16,
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            StoreDtype::F32 => "float32",
            StoreDtype::F16 => "float16",
            StoreDtype::Bf16 => "bfloat16",
        }
    }

    /// Little-endian bytes of `values` in this dtype.
    fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            StoreDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            StoreDtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            StoreDtype::Bf16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }
}

/// One tensor ready for the file: its name, shape and encoded bytes.
pub(crate) struct Encoded {
    name: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Encoded {
    /// Encodes `tensor` as `dtype` under `name`.
    pub(crate) fn new(name: String, tensor: &HostTensor, dtype: StoreDtype) -> Self {
        Self {
            name,
            shape: tensor.shape.clone(),
            bytes: dtype.encode(&tensor.values),
        }
    }
}

/// Names and shapes of every tensor a Hugging Face checkpoint of `config`
/// holds, in the order the loader reads them.
pub fn tensor_layout(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    ModelNames::of(config).tensors(config)
}

/// Writes a checkpoint of `config` whose tensors come from `weights` (e.g.
/// [`super::RandomWeights`]) into `dir`, stored as `dtype`. One tensor is in
/// f32 at a time; the file's bytes are held until written.
pub fn write_random(
    dir: &Path,
    config: &ModelConfig,
    weights: &dyn TensorSource,
    dtype: StoreDtype,
) -> Result<()> {
    let tensors = tensor_layout(config)
        .into_iter()
        .map(|(name, shape)| {
            let tensor = weights.read(&name, &shape)?;
            Ok(Encoded::new(name, &tensor, dtype))
        })
        .collect::<Result<Vec<_>>>()?;
    write_files(dir, config, tensors, dtype)
}

/// Writes `tensors` as `model.safetensors`, and `config.json` and
/// `generation_config.json` for `config`, into `dir` (created if missing).
pub(crate) fn write_files(
    dir: &Path,
    config: &ModelConfig,
    tensors: Vec<Encoded>,
    dtype: StoreDtype,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(dtype.safetensors(), t.shape.clone(), &t.bytes)
                .map(|view| (t.name.clone(), view))
                .map_err(|e| ModelError::Safetensors {
                    file: "model.safetensors".into(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let path = dir.join("model.safetensors");
    safetensors::tensor::serialize_to_file(views, None, &path).map_err(|e| {
        ModelError::Safetensors {
            file: path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    let eos = config.eos_token_ids.first().copied().unwrap_or(0);
    let bos = config.bos_token_id.unwrap_or(eos);
    let generation = json!({ "eos_token_id": eos, "bos_token_id": bos });
    for (name, value) in [
        ("config.json", hf_config(config, dtype)),
        ("generation_config.json", generation),
    ] {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        std::fs::write(&path, text + "\n").map_err(io(&path))?;
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.to_path_buf();
    move |source| ModelError::Io { path, source }
}

/// `config.json` as transformers writes it for the family of `config`.
fn hf_config(config: &ModelConfig, dtype: StoreDtype) -> serde_json::Value {
    let eos = config.eos_token_ids.first().copied().unwrap_or(0);
    let family = config.family;
    let mut out = match family {
        Family::GptBigCode => json!({
            "n_embd": config.hidden_size,
            "n_inner": config.intermediate_size,
            "n_layer": config.num_layers,
            "n_head": config.num_heads,
            "multi_query": config.num_kv_heads == 1,
            "n_positions": config.max_context,
            "layer_norm_epsilon": config.norm_eps,
            "activation_function": "gelu_pytorch_tanh",
        }),
        _ => json!({
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "num_hidden_layers": config.num_layers,
            "num_attention_heads": config.num_heads,
            "num_key_value_heads": config.num_kv_heads,
            "head_dim": config.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": config.max_context,
            "sliding_window": config.sliding_window,
            "rms_norm_eps": config.norm_eps,
            "rope_theta": config.rope_theta,
            "rope_scaling": rope_scaling(&config.rope_scaling),
            "attention_bias": config.o_bias,
            "mlp_bias": config.mlp_bias,
        }),
    };
    if let RopeScaling::LongRope {
        original_max_position_embeddings,
        ..
    } = config.rope_scaling
    {
        out["original_max_position_embeddings"] = original_max_position_embeddings.into();
    }
    out["architectures"] = json!([family.architecture()]);
    out["model_type"] = family.model_type().into();
    out["vocab_size"] = config.vocab_size.into();
    out["tie_word_embeddings"] = config.tie_word_embeddings.into();
    out["bos_token_id"] = config.bos_token_id.unwrap_or(eos).into();
    out["eos_token_id"] = eos.into();
    out["torch_dtype"] = dtype.torch_name().into();
    out
}

/// `rope_scaling` as transformers 4 writes it.
fn rope_scaling(scaling: &RopeScaling) -> serde_json::Value {
    match scaling {
        RopeScaling::None => serde_json::Value::Null,
        RopeScaling::Linear { factor } => json!({ "rope_type": "linear", "factor": factor }),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        }),
        RopeScaling::LongRope {
            short_factor,
            long_factor,
            attention_factor,
            ..
        } => json!({
            "rope_type": "longrope",
            "short_factor": short_factor,
            "long_factor": long_factor,
            "attention_factor": attention_factor,
        }),
    }
}
