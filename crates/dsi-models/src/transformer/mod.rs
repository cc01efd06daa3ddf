//! The decoder-only transformer of every family the engine runs, written
//! once: Llama 2/3 (Touvron et al. 2023), Mistral, SmolLM, TinyLlama,
//! Qwen2/2.5 (q/k/v biases), Qwen3 (query/key norms), Phi-3 (fused
//! projections, LongRoPE) and StarCoder (`gpt_bigcode`: LayerNorm, GELU
//! MLP, learned positions, multi-query attention). transformers'
//! `modeling_*.py` of each family is the reference we test against; the
//! blocks that differ are enums ([`Norm`], [`Mlp`]) or options (query/key
//! norms, position embeddings), and [`names`] maps each family's tensor
//! names.
//!
//! The model is immutable: `forward(&self, tokens, &mut cache)`. It feeds the
//! new tokens after whatever the cache holds and returns the logits of the
//! new positions the caller asks for (a verification needs its last k+1, a
//! draft step or a prefill its last one): the LM head runs on those rows only.

mod attention;
mod block;
mod embedding;
mod gelu_mlp;
pub(crate) mod host;
mod layer_norm;
mod linear;
mod load;
mod mlp;
pub mod names;
mod norm;
mod precision;

pub use attention::{Attention, BatchRows, QkNorm};
pub use block::{DecoderLayer, Residual};
pub use dsi_kernels::weights::Format as WeightFormat;
pub use embedding::Embedding;
pub use gelu_mlp::GeluMlp;
pub use layer_norm::LayerNorm;
pub use linear::{HostWeights, Kernels, Numerics, Projection};
pub use mlp::{Mlp, SwiGlu};
pub use norm::{Norm, RmsNorm};
pub use precision::{LinearWeights, Precision};

use crate::cache::{CacheShape, KvCache, SegmentPolicy};
use crate::checkpoint::HostTensor;
use crate::config::ModelConfig;
use crate::rope::RopeFrequencies;
use crate::{ModelError, Result};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;

/// A decoder-only causal language model on one device.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embeddings, `[vocab, hidden]`.
    pub embed_tokens: Embedding<B>,
    /// Learned position embeddings, `[max_context, hidden]`, added to the
    /// token's (StarCoder); `None` with rotary positions.
    pub position_embeddings: Option<Param<Tensor<B, 2>>>,
    /// Decoder layers.
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm.
    pub norm: Norm<B>,
    /// `[hidden] -> [vocab]`; shares the embedding's storage when tied.
    pub lm_head: Projection<B>,
}

/// A model with what it needs beside its weights: configuration, rotary
/// frequencies and run dtype.
#[derive(Debug, Clone)]
pub struct LoadedModel<B: Backend> {
    /// The weights.
    pub model: Transformer<B>,
    /// The architecture.
    pub config: ModelConfig,
    /// Device of every weight.
    pub device: B::Device,
    /// The dtype activations, caches, embeddings and norms are kept in
    /// (and the projections' weights, unless they are host weights).
    pub dtype: DType,
    /// How the projections keep their weights.
    pub linear: LinearWeights,
    /// Host threads per projection: the core count on CPU backends, 1 on GPUs.
    pub host_threads: usize,
    /// Fixed-order kernels where the project has them, or the backend's.
    pub numerics: Numerics,
    rope: RopeFrequencies,
}

/// Rows of several sequences stacked into one `[rows, width]` tensor (no
/// copy for a single one).
pub(crate) fn stack_rows<B: Backend>(mut parts: Vec<Tensor<B, 2>>) -> Tensor<B, 2> {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Tensor::cat(parts, 0)
    }
}

/// One sequence's part of a batched forward
/// ([`LoadedModel::forward_batch`]).
#[derive(Debug)]
pub struct BatchMember<'a, B: Backend> {
    /// New tokens, fed after what `cache` holds.
    pub tokens: &'a [TokenId],
    /// The sequence's own cache.
    pub cache: &'a mut KvCache<B>,
    /// Logit rows wanted: the last `rows` new positions.
    pub rows: usize,
    /// Raised when the member's result is no longer wanted.
    pub cancel: &'a CancelFlag,
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
        model: Transformer<B>,
        config: ModelConfig,
        device: B::Device,
        precision: Precision,
    ) -> Self {
        let rope = RopeFrequencies::new(&config);
        Self {
            model,
            config,
            device,
            dtype: precision.dtype,
            linear: precision.linear,
            host_threads: 1,
            numerics: Numerics::default(),
            rope,
        }
    }

    /// Splits each projection over `threads` host threads (see
    /// [`Projection`]); worth it on CPU backends only.
    pub fn with_host_threads(mut self, threads: usize) -> Self {
        self.host_threads = threads.max(1);
        self
    }

    /// Chooses [`Numerics::Fast`] or [`Numerics::Invariant`] (the default).
    pub fn with_numerics(mut self, numerics: Numerics) -> Self {
        self.numerics = numerics;
        self
    }

    /// The run dtype and how the projections keep their weights.
    pub fn precision(&self) -> Precision {
        Precision {
            dtype: self.dtype,
            linear: self.linear,
        }
    }

    /// Bytes of weights one decode step reads: every projection's and
    /// norm's (the embedding lookup reads one row, left out).
    pub fn weight_bytes_per_token(&self) -> usize {
        let norm = |n: &Norm<B>| n.num_params() * self.dtype.size();
        let layers: usize = self
            .model
            .layers
            .iter()
            .map(|l| {
                let [up, down] = l.mlp.projections();
                l.attention.qkv_proj.weight_bytes()
                    + l.attention.o_proj.weight_bytes()
                    + up.weight_bytes()
                    + down.weight_bytes()
                    + norm(&l.input_norm)
                    + norm(&l.post_attention_norm)
            })
            .sum();
        layers + norm(&self.model.norm) + self.model.lm_head.weight_bytes()
    }

    /// How this model's products run.
    pub fn kernels(&self) -> Kernels {
        Kernels {
            threads: self.host_threads,
            numerics: self.numerics,
        }
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
    /// positions are never committed). The one-member case of
    /// [`LoadedModel::forward_batch`].
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
        let member = BatchMember {
            tokens,
            cache,
            rows,
            cancel,
        };
        self.forward_batch(vec![member])
            .pop()
            .expect("one result per member")
    }

    /// Feeds several sequences in one forward: each member's tokens after
    /// what its own cache holds. The projections, MLP and LM head run once
    /// over the new rows of every member stacked; attention runs per
    /// member against its cache. Returns one result per member, in order:
    /// the logits of its last `rows` new positions, or why it has none (bad
    /// input, a full cache, or its flag raised before the forward ended;
    /// its cache is then left as it was). The forward stops between layers
    /// once every member's flag is raised.
    ///
    /// # Shapes
    /// - member `i` with `n_i` tokens -> logits `[min(rows_i, n_i), vocab]`
    pub fn forward_batch(&self, mut members: Vec<BatchMember<'_, B>>) -> Vec<Result<Tensor<B, 2>>> {
        let mut results: Vec<Option<Result<Tensor<B, 2>>>> = Vec::with_capacity(members.len());
        for member in &mut members {
            let checked = self
                .check_tokens(member.tokens)
                .and_then(|()| member.cache.reserve(member.tokens.len()));
            results.push(checked.err().map(Err));
        }
        let mut live: Vec<(usize, BatchMember<'_, B>)> = members
            .into_iter()
            .enumerate()
            .filter(|(i, _)| results[*i].is_none())
            .collect();
        if !live.is_empty() {
            for (i, logits) in self.forward_members(&mut live) {
                results[i] = Some(logits);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every member has a result"))
            .collect()
    }

    fn check_tokens(&self, tokens: &[TokenId]) -> Result<()> {
        let vocab = self.config.vocab_size;
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        match tokens.iter().find(|&&t| t as usize >= vocab) {
            Some(&token) => Err(ModelError::UnknownToken { token, vocab }),
            None => Ok(()),
        }
    }

    /// The forward of members already checked and reserved, by their index.
    fn forward_members(
        &self,
        live: &mut [(usize, BatchMember<'_, B>)],
    ) -> Vec<(usize, Result<Tensor<B, 2>>)> {
        let vocab = self.config.vocab_size;
        let head_dim = self.config.head_dim;
        let counts: Vec<usize> = live.iter().map(|(_, m)| m.tokens.len()).collect();
        let total: usize = counts.iter().sum();
        let ids: Vec<TokenId> = live
            .iter()
            .flat_map(|(_, m)| m.tokens.iter().copied())
            .collect();
        let mut x = self
            .model
            .embed_tokens
            .lookup(&ids, &self.device, self.dtype);
        if let Some(positions) = &self.model.position_embeddings {
            let at: Vec<i32> = live
                .iter()
                .flat_map(|(_, m)| {
                    let start = m.cache.len();
                    (start..start + m.tokens.len()).map(|p| p as i32)
                })
                .collect();
            let at = Tensor::<B, 1, Int>::from_data(TensorData::new(at, [total]), &self.device);
            x = x + positions.val().select(0, at);
        }

        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for (_, member) in live.iter() {
            let (c, s) = self.rope.tables(member.cache.len(), member.tokens.len());
            cos.extend(c);
            sin.extend(s);
        }
        let table = |values: Vec<f32>| {
            Tensor::<B, 3>::from_data(
                TensorData::new(values, [1, total, head_dim]),
                (&self.device, self.dtype),
            )
        };
        let batch = BatchRows {
            members: counts.clone(),
            cos: table(cos),
            sin: table(sin),
            kernels: self.kernels(),
        };
        let mut x = Residual::new(x);
        for (i, layer) in self.model.layers.iter().enumerate() {
            if live.iter().all(|(_, m)| m.cancel.is_cancelled()) {
                for (_, member) in live.iter_mut() {
                    member.cache.release_unused();
                }
                return live
                    .iter()
                    .map(|(i, _)| (*i, Err(ModelError::Cancelled)))
                    .collect();
            }
            let mut caches: Vec<&mut KvCache<B>> =
                live.iter_mut().map(|(_, m)| &mut *m.cache).collect();
            x = layer.forward(x, &batch, i, &mut caches);
        }
        let x = x.sum();

        // The LM head on the rows each member asked for, stacked.
        let mut out = Vec::with_capacity(live.len());
        let mut wanted = Vec::new();
        let mut start = 0;
        for ((i, member), &n) in live.iter_mut().zip(&counts) {
            if member.cancel.is_cancelled() {
                member.cache.release_unused();
                out.push((*i, None));
            } else {
                member.cache.commit(n);
                let rows = member.rows.min(n);
                if rows > 0 {
                    wanted.push(x.clone().narrow(0, start + n - rows, rows));
                }
                out.push((*i, Some(rows)));
            }
            start += n;
        }
        let logits = (!wanted.is_empty()).then(|| {
            self.model.lm_head.forward(
                self.model.norm.forward(stack_rows(wanted), self.kernels()),
                self.kernels(),
            )
        });
        let mut at = 0;
        out.into_iter()
            .map(|(i, rows)| {
                let result = match (rows, &logits) {
                    (None, _) => Err(ModelError::Cancelled),
                    (Some(rows), Some(logits)) if rows > 0 => {
                        at += rows;
                        Ok(logits.clone().narrow(0, at - rows, rows))
                    }
                    (Some(_), _) => Ok(Tensor::empty([0, vocab], (&self.device, self.dtype))),
                };
                (i, result)
            })
            .collect()
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
        Ok(Logits {
            vocab,
            values: HostTensor::from_tensor(logits)?.values,
        })
    }
}
