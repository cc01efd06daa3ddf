//! Writing a trained model as a Hugging Face checkpoint folder (the
//! tokenizer is written by the caller), through [`crate::checkpoint::write`].

use crate::Result;
use crate::checkpoint::HostTensor;
pub use crate::checkpoint::StoreDtype;
use crate::checkpoint::write::{Encoded, write_files};
use crate::config::LlamaConfig;
use crate::llama::{Llama, Projection};
use burn::module::Param;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use std::path::Path;

/// One named tensor on the host.
type Named = (String, HostTensor);

/// Splits a stacked projection back into Hugging Face's `[out, in]`
/// matrices, one per `(name, rows)` part.
fn split<B: Backend>(
    proj: &Projection<B>,
    parts: &[(String, usize)],
    out: &mut Vec<Named>,
) -> Result<()> {
    let stacked = proj.stored()?;
    let d_in = stacked.shape[1];
    let mut row = 0;
    for (name, rows) in parts {
        let part = HostTensor {
            shape: vec![*rows, d_in],
            values: stacked.values[row * d_in..(row + rows) * d_in].to_vec(),
        };
        out.push((format!("{name}.weight"), part));
        row += rows;
    }
    Ok(())
}

fn vector<B: Backend>(
    name: String,
    param: &Param<Tensor<B, 1>>,
    out: &mut Vec<Named>,
) -> Result<()> {
    out.push((name, HostTensor::from_tensor(param.val())?));
    Ok(())
}

fn tensors<B: Backend>(model: &Llama<B>, config: &LlamaConfig) -> Result<Vec<Named>> {
    let mut out = Vec::new();
    out.push((
        "model.embed_tokens.weight".into(),
        HostTensor::from_tensor(model.embed_tokens.val())?,
    ));
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
    let encoded = tensors(model, config)?
        .into_iter()
        .map(|(name, tensor)| Encoded::new(name, &tensor, dtype))
        .collect();
    write_files(dir, config, encoded, dtype)
}
