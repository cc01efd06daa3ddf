//! The Llama-family decoder (Touvron et al. 2023; transformers'
//! `modeling_llama.py` is the reference we test against), covering Llama 2/3,
//! Qwen2/2.5 (q/k/v biases), Mistral, SmolLM and TinyLlama.
//!
//! The model is immutable: `forward(&self, tokens, &mut cache)`. It feeds the
//! new tokens after whatever the cache holds and returns the logits of the
//! new positions the caller asks for (a verification needs its last k+1, a
//! draft step or a prefill its last one): the LM head runs on those rows only.

mod attention;
mod block;
mod linear;
mod load;
mod mlp;
mod norm;

pub use attention::{Attention, RotaryRows};
pub use block::DecoderLayer;
pub use linear::Projection;
pub use mlp::SwiGlu;
pub use norm::RmsNorm;

use crate::cache::{CacheShape, KvCache, SegmentPolicy};
use crate::config::LlamaConfig;
use crate::rope::RopeFrequencies;
use crate::{ModelError, Result};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;

/// A Llama-family causal language model on one device.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embeddings, `[vocab, hidden]`.
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// Decoder layers.
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// `[hidden] -> [vocab]`; shares the embedding's storage when tied.
    pub lm_head: Projection<B>,
}

/// A model with what it needs beside its weights: configuration, rotary
/// frequencies and run dtype.
#[derive(Debug, Clone)]
pub struct LoadedModel<B: Backend> {
    /// The weights.
    pub model: Llama<B>,
    /// The architecture.
    pub config: LlamaConfig,
    /// Device of every weight.
    pub device: B::Device,
    /// The dtype weights, activations and caches are kept in.
    pub dtype: DType,
    /// Host threads per projection: the core count on CPU backends, 1 on GPUs.
    pub host_threads: usize,
    rope: RopeFrequencies,
}

/// Next-token logits of consecutive positions, on the host, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    /// Vocabulary size (row length).
    pub vocab: usize,
    /// `rows * vocab` values.
    pub values: Vec<f32>,
}

impl Logits {
    /// Number of positions.
    pub fn rows(&self) -> usize {
        self.values.len() / self.vocab.max(1)
    }

    /// Logits of position `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.vocab..(i + 1) * self.vocab]
    }
}

impl<B: Backend> LoadedModel<B> {
    pub(crate) fn new(
        model: Llama<B>,
        config: LlamaConfig,
        device: B::Device,
        dtype: DType,
    ) -> Self {
        let rope = RopeFrequencies::new(&config);
        Self {
            model,
            config,
            device,
            dtype,
            host_threads: 1,
            rope,
        }
    }

    /// Splits each projection over `threads` host threads (see
    /// [`Projection`]); worth it on CPU backends only.
    pub fn with_host_threads(mut self, threads: usize) -> Self {
        self.host_threads = threads.max(1);
        self
    }

    /// A cache for up to `capacity` positions (at most the model's context);
    /// it allocates as positions arrive, not up front.
    pub fn new_cache(&self, capacity: usize) -> KvCache<B> {
        KvCache::new(
            self.cache_shape(),
            capacity.min(self.config.max_context),
            &self.device,
            self.dtype,
        )
    }

    /// [`LoadedModel::new_cache`] with explicit segment sizes.
    pub fn new_cache_with(&self, capacity: usize, policy: SegmentPolicy) -> KvCache<B> {
        KvCache::with_policy(
            self.cache_shape(),
            capacity.min(self.config.max_context),
            &self.device,
            self.dtype,
            policy,
        )
    }

    fn cache_shape(&self) -> CacheShape {
        CacheShape {
            num_layers: self.config.num_layers,
            num_kv_heads: self.config.num_kv_heads,
            head_dim: self.config.head_dim,
        }
    }

    /// Feeds `tokens` after the cached prefix and returns the logits of
    /// every new position as a device tensor.
    ///
    /// # Shapes
    /// - tokens: `n` ids -> logits `[n, vocab]`
    pub fn forward_tensor(
        &self,
        tokens: &[TokenId],
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 2>> {
        self.forward_until(tokens, cache, tokens.len(), &CancelFlag::new())
    }

    /// Feeds `tokens` after the cached prefix and returns the logits of the
    /// last `rows` of them (at most `tokens.len()`): the LM head runs on
    /// those rows only. Stops between layers once `cancel` is raised,
    /// returning [`ModelError::Cancelled`] with the cache as it was (the new
    /// positions are never committed).
    ///
    /// # Shapes
    /// - tokens: `n` ids -> logits `[min(rows, n), vocab]`
    pub fn forward_until(
        &self,
        tokens: &[TokenId],
        cache: &mut KvCache<B>,
        rows: usize,
        cancel: &CancelFlag,
    ) -> Result<Tensor<B, 2>> {
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::EmptyInput);
        }
        let vocab = self.config.vocab_size;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::UnknownToken { token, vocab });
        }
        cache.reserve(n)?;

        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), &self.device);
        let mut x = self.model.embed_tokens.val().select(0, ids);

        let (cos, sin) = self.rope.tables(cache.len(), n);
        let head_dim = self.config.head_dim;
        let table = |values: Vec<f32>| {
            Tensor::<B, 3>::from_data(
                TensorData::new(values, [1, n, head_dim]),
                (&self.device, self.dtype),
            )
        };
        let rotary = RotaryRows {
            cos: table(cos),
            sin: table(sin),
            threads: self.host_threads,
        };
        for (i, layer) in self.model.layers.iter().enumerate() {
            if cancel.is_cancelled() {
                cache.release_unused();
                return Err(ModelError::Cancelled);
            }
            x = layer.forward(x, &rotary, i, cache);
        }
        cache.commit(n);
        let rows = rows.min(n);
        if rows == 0 {
            return Ok(Tensor::empty([0, vocab], (&self.device, self.dtype)));
        }
        if rows < n {
            x = x.narrow(0, n - rows, rows);
        }
        Ok(self
            .model
            .lm_head
            .forward(self.model.norm.forward(x), self.host_threads))
    }

    /// [`LoadedModel::forward_tensor`], read back to the host in f32.
    pub fn forward(&self, tokens: &[TokenId], cache: &mut KvCache<B>) -> Result<Logits> {
        self.forward_host(tokens, cache, tokens.len(), &CancelFlag::new())
    }

    /// [`LoadedModel::forward_until`], read back to the host in f32: only
    /// the `rows` asked for cross from the device.
    pub fn forward_host(
        &self,
        tokens: &[TokenId],
        cache: &mut KvCache<B>,
        rows: usize,
        cancel: &CancelFlag,
    ) -> Result<Logits> {
        let vocab = self.config.vocab_size;
        let logits = self.forward_until(tokens, cache, rows, cancel)?;
        if logits.dims()[0] == 0 {
            return Ok(Logits {
                vocab,
                values: Vec::new(),
            });
        }
        let data = logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
        Ok(Logits {
            vocab,
            values: data,
        })
    }
}
