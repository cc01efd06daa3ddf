//! Writing a Hugging Face checkpoint folder: `config.json`,
//! `model.safetensors`, `generation_config.json`. The loader reads it back;
//! so could transformers. [`crate::train::write_checkpoint`] writes a
//! trained model through it; [`write_random`] writes random weights of any
//! shape, so a benchmark can serve a real-size model without a download.

use super::{HostTensor, TensorSource};
use crate::config::{LlamaConfig, RopeScaling};
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

/// Names and shapes of every tensor a Hugging Face Llama checkpoint of
/// `config` holds, in the order the loader reads them.
pub fn tensor_layout(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (v, d, f) = (
        config.vocab_size,
        config.hidden_size,
        config.intermediate_size,
    );
    let (q, kv) = (
        config.num_heads * config.head_dim,
        config.num_kv_heads * config.head_dim,
    );
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, d])];
    for i in 0..config.num_layers {
        let name = |suffix: &str| format!("model.layers.{i}.{suffix}");
        out.push((name("input_layernorm.weight"), vec![d]));
        for (proj, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            out.push((name(&format!("self_attn.{proj}.weight")), vec![rows, d]));
            if config.qkv_bias {
                out.push((name(&format!("self_attn.{proj}.bias")), vec![rows]));
            }
        }
        out.push((name("self_attn.o_proj.weight"), vec![d, q]));
        if config.o_bias {
            out.push((name("self_attn.o_proj.bias"), vec![d]));
        }
        out.push((name("post_attention_layernorm.weight"), vec![d]));
        out.push((name("mlp.gate_proj.weight"), vec![f, d]));
        out.push((name("mlp.up_proj.weight"), vec![f, d]));
        out.push((name("mlp.down_proj.weight"), vec![d, f]));
    }
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, d]));
    }
    out.push(("model.norm.weight".to_string(), vec![d]));
    out
}

/// Writes a checkpoint of `config` whose tensors come from `weights` (e.g.
/// [`super::RandomWeights`]) into `dir`, stored as `dtype`. One tensor is in
/// f32 at a time; the file's bytes are held until written.
pub fn write_random(
    dir: &Path,
    config: &LlamaConfig,
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
    config: &LlamaConfig,
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

/// `config.json` as transformers writes it for a Llama model.
fn hf_config(config: &LlamaConfig, dtype: StoreDtype) -> serde_json::Value {
    let eos = config.eos_token_ids.first().copied().unwrap_or(0);
    let rope_scaling = match config.rope_scaling {
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
    };
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_context,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_bias": config.o_bias,
        "mlp_bias": false,
        "bos_token_id": config.bos_token_id.unwrap_or(eos),
        "eos_token_id": eos,
        "torch_dtype": dtype.torch_name(),
    })
}
