//! Building a [`Llama`] from a checkpoint's tensors, checking every shape
//! against the configuration.

use super::host::HostF32;
use super::precision::{LinearWeights, Precision};
use super::{Attention, DecoderLayer, Llama, LoadedModel, Projection, RmsNorm, SwiGlu};
use crate::checkpoint::{Checkpoint, TensorSource};
use crate::config::LlamaConfig;
use crate::{ModelError, Result};
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use dsi_kernels::weights::Weights;
use std::sync::Arc;

/// Reads tensors by name onto one device in one dtype, projections as
/// `linear` says.
struct Builder<'a, B: Backend> {
    weights: &'a dyn TensorSource,
    device: &'a B::Device,
    dtype: DType,
    linear: LinearWeights,
}

impl<B: Backend> Builder<'_, B> {
    fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>> {
        let host = self.weights.read(name, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(host.values, shape),
            (self.device, self.dtype),
        ))
    }

    /// Hugging Face `nn.Linear` layers that read the same input, stacked
    /// along their outputs into one projection (one matrix-vector product
    /// instead of several); `parts` are `(prefix, d_out)`.
    fn linear(&self, parts: &[(&str, usize)], d_in: usize, bias: bool) -> Result<Projection<B>> {
        let d_out: usize = parts.iter().map(|(_, d)| d).sum();
        let mut weight = Vec::with_capacity(d_out * d_in);
        let mut biases = Vec::with_capacity(d_out);
        for (prefix, rows) in parts {
            weight.extend(
                self.weights
                    .read(&format!("{prefix}.weight"), &[*rows, d_in])?
                    .values,
            );
            if bias {
                biases.extend(
                    self.weights
                        .read(&format!("{prefix}.bias"), &[*rows])?
                        .values,
                );
            }
        }
        let bias = bias.then(|| {
            Tensor::from_data(TensorData::new(biases, [d_out]), (self.device, self.dtype))
        });
        Ok(self.projection(weight, [d_out, d_in], bias))
    }

    /// A projection over `weight` (`[out, in]` row-major values).
    fn projection(
        &self,
        weight: Vec<f32>,
        [d_out, d_in]: [usize; 2],
        bias: Option<Tensor<B, 1>>,
    ) -> Projection<B> {
        match self.linear {
            LinearWeights::Host(format) => {
                Projection::on_host(Arc::new(Weights::new(weight, d_out, d_in, format)), bias)
            }
            LinearWeights::Backend => {
                // Projections multiply by `[in, out]`: a transposed view, no copy.
                let weight = Tensor::<B, 2>::from_data(
                    TensorData::new(weight, [d_out, d_in]),
                    (self.device, self.dtype),
                );
                Projection::new(weight.transpose(), bias)
            }
        }
    }

    fn norm(&self, name: &str, config: &LlamaConfig) -> Result<RmsNorm<B>> {
        Ok(RmsNorm {
            weight: Param::from_tensor(self.tensor(name, [config.hidden_size])?),
            eps: config.rms_norm_eps,
        })
    }

    fn layer(&self, i: usize, c: &LlamaConfig) -> Result<DecoderLayer<B>> {
        let p = format!("model.layers.{i}");
        let (d, q, kv) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
        );
        let name = |suffix: &str| format!("{p}.{suffix}");
        let f = c.intermediate_size;
        Ok(DecoderLayer {
            input_norm: self.norm(&name("input_layernorm.weight"), c)?,
            attention: Attention {
                qkv_proj: self.linear(
                    &[
                        (&name("self_attn.q_proj"), q),
                        (&name("self_attn.k_proj"), kv),
                        (&name("self_attn.v_proj"), kv),
                    ],
                    d,
                    c.qkv_bias,
                )?,
                o_proj: self.linear(&[(&name("self_attn.o_proj"), d)], q, c.o_bias)?,
                num_heads: c.num_heads,
                num_kv_heads: c.num_kv_heads,
                head_dim: c.head_dim,
            },
            post_attention_norm: self.norm(&name("post_attention_layernorm.weight"), c)?,
            mlp: SwiGlu {
                gate_up: self.linear(
                    &[(&name("mlp.gate_proj"), f), (&name("mlp.up_proj"), f)],
                    d,
                    false,
                )?,
                down: self.linear(&[(&name("mlp.down_proj"), d)], f, false)?,
                intermediate_size: f,
            },
        })
    }
}

impl<B: Backend> LoadedModel<B> {
    /// Builds the model of `checkpoint` on `device` in `precision` (a
    /// `DType`, or host weights: [`Precision::host`]), calling
    /// `progress(done, total)` after each layer (the binary draws a bar).
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        device: &B::Device,
        precision: impl Into<Precision>,
        progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        Self::from_weights(
            &checkpoint.config,
            &checkpoint.weights,
            device,
            precision,
            progress,
        )
    }

    /// Builds a model from a configuration and tensors.
    pub fn from_weights(
        config: &LlamaConfig,
        weights: &dyn TensorSource,
        device: &B::Device,
        precision: impl Into<Precision>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        let Precision { dtype, linear } = precision.into();
        if !B::supports_dtype(device, dtype) {
            return Err(ModelError::Device(format!(
                "the device {device:?} does not support {dtype:?}; choose another --dtype"
            )));
        }
        if let LinearWeights::Host(format) = linear {
            let probe = Tensor::<B, 1>::zeros([1], (device, dtype));
            if HostF32::of(probe).is_none() {
                return Err(ModelError::Device(format!(
                    "{format} weights run on the project's CPU kernels: use --backend cpu, or f16/bf16 on {device:?}"
                )));
            }
        }
        let b = Builder::<B> {
            weights,
            device,
            dtype,
            linear,
        };
        let (v, d) = (config.vocab_size, config.hidden_size);
        let embedding = weights.read("model.embed_tokens.weight", &[v, d])?.values;
        let total = config.num_layers + 1;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            layers.push(b.layer(i, config)?);
            progress(i + 1, total);
        }
        let on_device =
            |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [v, d]), (device, dtype));
        let (embed, lm_head) = match (config.tie_word_embeddings, linear) {
            (true, LinearWeights::Host(_)) => {
                let head = b.projection(embedding.clone(), [v, d], None);
                (on_device(embedding), head)
            }
            // The head shares the embedding's storage: a transposed view.
            (true, LinearWeights::Backend) => {
                let embed: Tensor<B, 2> = on_device(embedding);
                (embed.clone(), Projection::new(embed.transpose(), None))
            }
            (false, _) => (on_device(embedding), b.linear(&[("lm_head", v)], d, false)?),
        };
        let model = Llama {
            embed_tokens: Param::from_tensor(embed),
            layers,
            norm: b.norm("model.norm.weight", config)?,
            lm_head,
        };
        progress(total, total);
        Ok(LoadedModel::new(
            model,
            config.clone(),
            device.clone(),
            Precision { dtype, linear },
        ))
    }
}
