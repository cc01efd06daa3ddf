//! Building a [`Transformer`] from a checkpoint's tensors (named as
//! [`ModelNames`] says for its family), checking every shape against the
//! configuration.

use super::host::HostF32;
use super::names::{LayerNames, ModelNames, NormNames, Stacked};
use super::precision::{LinearWeights, Precision};
use super::{
    Attention, DecoderLayer, Embedding, GeluMlp, HostWeights, LayerNorm, LoadedModel, Mlp, Norm,
    Projection, QkNorm, RmsNorm, SwiGlu, Transformer,
};
use crate::checkpoint::{Checkpoint, TensorSource};
use crate::config::{MlpKind, ModelConfig, NormKind};
use crate::{ModelError, Result};
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use dsi_kernels::weights::{Format, Weights};
use std::sync::Arc;

/// Reads tensors by name onto one device in one dtype, projections as
/// `linear` says.
struct Builder<'a, B: Backend> {
    weights: &'a dyn TensorSource,
    device: &'a B::Device,
    dtype: DType,
    linear: LinearWeights,
    /// Epsilon of every norm.
    eps: f64,
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
    /// instead of several).
    fn linear(&self, stacked: &Stacked) -> Result<Projection<B>> {
        let d_in = stacked.d_in;
        if let LinearWeights::Host(format) = self.linear
            && let Some(parts) = self.block_parts(stacked, format)?
        {
            return Ok(Projection::on_host(parts, self.biases(stacked)?));
        }
        let d_out: usize = stacked.parts.iter().map(|(_, d)| d).sum();
        let mut weight = Vec::with_capacity(d_out * d_in);
        let mut biases = Vec::with_capacity(d_out);
        for (prefix, rows) in &stacked.parts {
            weight.extend(
                self.weights
                    .read(&format!("{prefix}.weight"), &[*rows, d_in])?
                    .values,
            );
            if stacked.bias {
                biases.extend(
                    self.weights
                        .read(&format!("{prefix}.bias"), &[*rows])?
                        .values,
                );
            }
        }
        let bias = stacked.bias.then(|| {
            Tensor::from_data(TensorData::new(biases, [d_out]), (self.device, self.dtype))
        });
        Ok(self.projection(weight, [d_out, d_in], bias))
    }

    /// The parts of `stacked` as host weights when the source stores any of
    /// them block-quantized (kept as stored; float parts in `format`), each
    /// its own matrix; `None` when all are floats.
    fn block_parts(&self, stacked: &Stacked, format: Format) -> Result<Option<HostWeights>> {
        let d_in = stacked.d_in;
        let mut blocks = Vec::with_capacity(stacked.parts.len());
        for (prefix, rows) in &stacked.parts {
            blocks.push(
                self.weights
                    .read_blocks(&format!("{prefix}.weight"), &[*rows, d_in])?,
            );
        }
        if blocks.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(blocks.len());
        for ((prefix, rows), stored) in stacked.parts.iter().zip(blocks) {
            let weights = match stored {
                Some(weights) => weights,
                None => {
                    let values = self
                        .weights
                        .read(&format!("{prefix}.weight"), &[*rows, d_in])?;
                    Weights::new(values.values, *rows, d_in, format)
                }
            };
            parts.push(Arc::new(weights));
        }
        Ok(Some(HostWeights::stacked(parts)))
    }

    /// The stacked biases of `stacked`, when its layers have them.
    fn biases(&self, stacked: &Stacked) -> Result<Option<Tensor<B, 1>>> {
        if !stacked.bias {
            return Ok(None);
        }
        let mut biases = Vec::new();
        for (prefix, rows) in &stacked.parts {
            biases.extend(
                self.weights
                    .read(&format!("{prefix}.bias"), &[*rows])?
                    .values,
            );
        }
        let d_out = biases.len();
        Ok(Some(Tensor::from_data(
            TensorData::new(biases, [d_out]),
            (self.device, self.dtype),
        )))
    }

    /// A projection over `weight` (`[out, in]` row-major values).
    fn projection(
        &self,
        weight: Vec<f32>,
        [d_out, d_in]: [usize; 2],
        bias: Option<Tensor<B, 1>>,
    ) -> Projection<B> {
        match self.linear {
            LinearWeights::Host(format) => Projection::on_host(
                HostWeights::one(Arc::new(Weights::new(weight, d_out, d_in, format))),
                bias,
            ),
            // Where the GPU kernels run, `[in, out]` row-major: their
            // product reads neighbouring columns together.
            LinearWeights::Backend if gpu_kernels::<B>() => {
                let weight = Tensor::<B, 2>::from_data(
                    TensorData::new(transposed(&weight, d_out, d_in), [d_in, d_out]),
                    (self.device, self.dtype),
                );
                Projection::new(weight, bias)
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

    fn rms_norm(&self, names: &NormNames) -> Result<RmsNorm<B>> {
        Ok(RmsNorm {
            weight: Param::from_tensor(
                self.tensor(&format!("{}.weight", names.prefix), [names.width])?,
            ),
            eps: self.eps,
        })
    }

    fn norm(&self, names: &NormNames) -> Result<Norm<B>> {
        Ok(match names.kind {
            NormKind::Rms => Norm::Rms(self.rms_norm(names)?),
            NormKind::Layer => {
                let RmsNorm { weight, eps } = self.rms_norm(names)?;
                let bias = self.tensor(&format!("{}.bias", names.prefix), [names.width])?;
                Norm::Layer(LayerNorm {
                    weight,
                    bias: Param::from_tensor(bias),
                    eps,
                })
            }
        })
    }

    fn layer(&self, names: &LayerNames, c: &ModelConfig) -> Result<DecoderLayer<B>> {
        let input_norm = self.norm(&names.input_norm)?;
        let qkv_proj = self.linear(&names.qkv)?;
        let qk_norm = match &names.qk_norm {
            Some([q, k]) => Some(QkNorm {
                q: self.rms_norm(q)?,
                k: self.rms_norm(k)?,
            }),
            None => None,
        };
        let attention = Attention {
            qkv_proj,
            o_proj: self.linear(&names.o)?,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            qk_norm,
            rotary: c.family.rotary(),
            window: c.sliding_window,
        };
        let post_attention_norm = self.norm(&names.post_norm)?;
        let (up, down) = (self.linear(&names.up)?, self.linear(&names.down)?);
        let mlp = match c.family.mlp() {
            MlpKind::SwiGlu => Mlp::SwiGlu(SwiGlu {
                gate_up: up,
                down,
                intermediate_size: c.intermediate_size,
            }),
            MlpKind::GeluTanh => Mlp::Gelu(GeluMlp { fc: up, proj: down }),
        };
        Ok(DecoderLayer {
            input_norm,
            attention,
            post_attention_norm,
            mlp,
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
        config: &ModelConfig,
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
            eps: config.norm_eps,
        };
        let names = ModelNames::of(config);
        let (v, d) = (config.vocab_size, config.hidden_size);
        // A block-quantized table stays as stored on the host (with the
        // tied head sharing it); any other is read as floats.
        let embed_blocks = match linear {
            LinearWeights::Host(_) => weights.read_blocks(&names.embed, &[v, d])?.map(Arc::new),
            LinearWeights::Backend => None,
        };
        // Read first, as `checkpoint::tensor_layout` lists it.
        let embedding = match embed_blocks {
            Some(_) => Vec::new(),
            None => weights.read(&names.embed, &[v, d])?.values,
        };
        let position_embeddings = match &names.positions {
            Some(name) => Some(Param::from_tensor(b.tensor(name, [config.max_context, d])?)),
            None => None,
        };
        let total = config.num_layers + 1;
        let mut layers = Vec::with_capacity(config.num_layers);
        for (i, layer) in names.layers.iter().enumerate() {
            layers.push(b.layer(layer, config)?);
            progress(i + 1, total);
        }
        let on_device =
            |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [v, d]), (device, dtype));
        let (embed, lm_head) = match (embed_blocks, &names.lm_head, linear) {
            (Some(table), None, _) => (
                Embedding::on_host(table.clone()),
                Projection::on_host(HostWeights::one(table), None),
            ),
            (Some(table), Some(head), _) => (Embedding::on_host(table), b.linear(head)?),
            (None, None, LinearWeights::Host(_)) => {
                let head = b.projection(embedding.clone(), [v, d], None);
                (Embedding::on_device(on_device(embedding)), head)
            }
            // The head shares the embedding's storage: a transposed view.
            (None, None, LinearWeights::Backend) => {
                let embed: Tensor<B, 2> = on_device(embedding);
                (
                    Embedding::on_device(embed.clone()),
                    Projection::new(embed.transpose(), None),
                )
            }
            (None, Some(head), _) => (Embedding::on_device(on_device(embedding)), b.linear(head)?),
        };
        let model = Transformer {
            embed_tokens: embed,
            position_embeddings,
            layers,
            norm: b.norm(&names.final_norm)?,
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

/// `[rows, cols]` row-major values as `[cols, rows]` row-major.
fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (r, row) in values.chunks(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// Whether the project's GPU kernels run on `B` (a CubeCL backend).
fn gpu_kernels<B: Backend>() -> bool {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    return dsi_kernels::gpu::runs_on::<B>();
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    false
}
