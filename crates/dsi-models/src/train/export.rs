//! Writing a trained model as a Hugging Face checkpoint folder (the
//! tokenizer is written by the caller), through [`crate::checkpoint::write`].

use crate::Result;
use crate::checkpoint::HostTensor;
pub use crate::checkpoint::StoreDtype;
use crate::checkpoint::write::{Encoded, write_files};
use crate::config::ModelConfig;
use crate::transformer::names::{ModelNames, NormNames, Stacked};
use crate::transformer::{Norm, Projection, Transformer};
use burn::module::Param;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use std::path::Path;

/// One named tensor on the host.
type Named = (String, HostTensor);

/// Splits a stacked projection back into Hugging Face's `[out, in]`
/// matrices (and `[out]` biases), one per part.
fn split<B: Backend>(proj: &Projection<B>, names: &Stacked, out: &mut Vec<Named>) -> Result<()> {
    let stacked = proj.stored()?;
    let bias = match &proj.bias {
        Some(bias) if names.bias => Some(HostTensor::from_tensor(bias.val())?),
        _ => None,
    };
    let d_in = stacked.shape[1];
    let mut row = 0;
    for (name, rows) in &names.parts {
        let part = HostTensor {
            shape: vec![*rows, d_in],
            values: stacked.values[row * d_in..(row + rows) * d_in].to_vec(),
        };
        out.push((format!("{name}.weight"), part));
        if let Some(bias) = &bias {
            let part = HostTensor {
                shape: vec![*rows],
                values: bias.values[row..row + rows].to_vec(),
            };
            out.push((format!("{name}.bias"), part));
        }
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

/// A norm's weight, and its bias for LayerNorm.
fn norm<B: Backend>(names: &NormNames, norm: &Norm<B>, out: &mut Vec<Named>) -> Result<()> {
    let (weight, bias) = match norm {
        Norm::Rms(n) => (&n.weight, None),
        Norm::Layer(n) => (&n.weight, Some(&n.bias)),
    };
    vector(format!("{}.weight", names.prefix), weight, out)?;
    match bias {
        Some(bias) => vector(format!("{}.bias", names.prefix), bias, out),
        None => Ok(()),
    }
}

fn tensors<B: Backend>(model: &Transformer<B>, config: &ModelConfig) -> Result<Vec<Named>> {
    let names = ModelNames::of(config);
    let mut out = vec![(names.embed.clone(), model.embed_tokens.stored()?)];
    if let (Some(name), Some(positions)) = (&names.positions, &model.position_embeddings) {
        out.push((name.clone(), HostTensor::from_tensor(positions.val())?));
    }
    for (layer, n) in model.layers.iter().zip(&names.layers) {
        norm(&n.input_norm, &layer.input_norm, &mut out)?;
        split(&layer.attention.qkv_proj, &n.qkv, &mut out)?;
        if let (Some(qk), Some([q, k])) = (&layer.attention.qk_norm, &n.qk_norm) {
            vector(format!("{}.weight", q.prefix), &qk.q.weight, &mut out)?;
            vector(format!("{}.weight", k.prefix), &qk.k.weight, &mut out)?;
        }
        split(&layer.attention.o_proj, &n.o, &mut out)?;
        norm(&n.post_norm, &layer.post_attention_norm, &mut out)?;
        let [up, down] = layer.mlp.projections();
        split(up, &n.up, &mut out)?;
        split(down, &n.down, &mut out)?;
    }
    norm(&names.final_norm, &model.norm, &mut out)?;
    if let Some(head) = &names.lm_head {
        split(&model.lm_head, head, &mut out)?;
    }
    Ok(out)
}

/// Writes `config.json`, `model.safetensors` and `generation_config.json`
/// for `model` into `dir` (created if missing).
pub fn write_checkpoint<B: Backend>(
    dir: &Path,
    model: &Transformer<B>,
    config: &ModelConfig,
    dtype: StoreDtype,
) -> Result<()> {
    let encoded = tensors(model, config)?
        .into_iter()
        .map(|(name, tensor)| Encoded::new(name, &tensor, dtype))
        .collect();
    write_files(dir, config, encoded, dtype)
}
