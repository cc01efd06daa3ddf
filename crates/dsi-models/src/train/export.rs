//! Writing a model as a Hugging Face checkpoint folder: `config.json`,
//! `model.safetensors`, `generation_config.json` (the tokenizer is written
//! by the caller). The loader reads it back; so could transformers.

use crate::config::{LlamaConfig, RopeScaling};
use crate::llama::{Llama, Projection};
use crate::{ModelError, Result};
use burn::module::Param;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
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
}

/// One named tensor on the host.
struct Named {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn host<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Result<(Vec<usize>, Vec<f32>)> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
    Ok((shape, values))
}

/// Splits a stacked projection back into Hugging Face's `[out, in]`
/// matrices, one per `(name, rows)` part.
fn split<B: Backend>(
    proj: &Projection<B>,
    parts: &[(String, usize)],
    out: &mut Vec<Named>,
) -> Result<()> {
    let (shape, values) = host(proj.weight.val().transpose())?;
    let d_in = shape[1];
    let mut row = 0;
    for (name, rows) in parts {
        out.push(Named {
            name: format!("{name}.weight"),
            shape: vec![*rows, d_in],
            values: values[row * d_in..(row + rows) * d_in].to_vec(),
        });
        row += rows;
    }
    Ok(())
}

fn vector<B: Backend>(
    name: String,
    param: &Param<Tensor<B, 1>>,
    out: &mut Vec<Named>,
) -> Result<()> {
    let (shape, values) = host(param.val())?;
    out.push(Named {
        name,
        shape,
        values,
    });
    Ok(())
}

fn tensors<B: Backend>(model: &Llama<B>, config: &LlamaConfig) -> Result<Vec<Named>> {
    let mut out = Vec::new();
    let (shape, values) = host(model.embed_tokens.val())?;
    out.push(Named {
        name: "model.embed_tokens.weight".into(),
        shape,
        values,
    });
    let hd = config.head_dim;
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        vector(
            format!("{p}.input_layernorm.weight"),
            &layer.input_norm.weight,
            &mut out,
        )?;
        vector(
            format!("{p}.post_attention_layernorm.weight"),
            &layer.post_attention_norm.weight,
            &mut out,
        )?;
        split(
            &layer.attention.qkv_proj,
            &[
                (format!("{p}.self_attn.q_proj"), config.num_heads * hd),
                (format!("{p}.self_attn.k_proj"), config.num_kv_heads * hd),
                (format!("{p}.self_attn.v_proj"), config.num_kv_heads * hd),
            ],
            &mut out,
        )?;
        split(
            &layer.attention.o_proj,
            &[(format!("{p}.self_attn.o_proj"), config.hidden_size)],
            &mut out,
        )?;
        split(
            &layer.mlp.gate_up,
            &[
                (format!("{p}.mlp.gate_proj"), config.intermediate_size),
                (format!("{p}.mlp.up_proj"), config.intermediate_size),
            ],
            &mut out,
        )?;
        split(
            &layer.mlp.down,
            &[(format!("{p}.mlp.down_proj"), config.hidden_size)],
            &mut out,
        )?;
    }
    vector("model.norm.weight".into(), &model.norm.weight, &mut out)?;
    if !config.tie_word_embeddings {
        split(
            &model.lm_head,
            &[("lm_head".into(), config.vocab_size)],
            &mut out,
        )?;
    }
    Ok(out)
}

/// Writes `config.json`, `model.safetensors` and `generation_config.json`
/// for `model` into `dir` (created if missing).
pub fn write_checkpoint<B: Backend>(
    dir: &Path,
    model: &Llama<B>,
    config: &LlamaConfig,
    dtype: StoreDtype,
) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let named = tensors(model, config)?;
    let (st_dtype, width) = match dtype {
        StoreDtype::F32 => (Dtype::F32, 4),
        StoreDtype::F16 => (Dtype::F16, 2),
    };
    let bytes: Vec<Vec<u8>> = named
        .iter()
        .map(|t| {
            let mut b = Vec::with_capacity(t.values.len() * width);
            for &v in &t.values {
                match dtype {
                    StoreDtype::F32 => b.extend_from_slice(&v.to_le_bytes()),
                    StoreDtype::F16 => b.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                }
            }
            b
        })
        .collect();
    let views = named
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(st_dtype, t.shape.clone(), b)
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
    let hf_config = json!({
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
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": config.bos_token_id.unwrap_or(eos),
        "eos_token_id": eos,
        "torch_dtype": match dtype { StoreDtype::F32 => "float32", StoreDtype::F16 => "float16" },
    });
    let generation =
        json!({ "eos_token_id": eos, "bos_token_id": config.bos_token_id.unwrap_or(eos) });
    for (name, value) in [
        ("config.json", hf_config),
        ("generation_config.json", generation),
    ] {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        std::fs::write(&path, text + "\n").map_err(io(&path))?;
    }
    Ok(())
}
