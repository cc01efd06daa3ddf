//! Causal grouped-query (or multi-query) self-attention over a KV cache,
//! with rotary embeddings (none where the model learns its positions),
//! optional per-head query/key norms (Qwen3) and an optional sliding window
//! (Mistral, Phi-3).
//!
//! Query heads that share a key/value head are folded into the sequence axis
//! (`[kv_heads, group * n, head_dim]`), so keys and values are never
//! repeated in memory: one matmul per key/value head serves its whole group.
//! The cache hands its keys and values over per segment (it grows by
//! segments, see `cache::layout`): scores are one product per segment, then
//! one softmax over all of them, then the weighted values summed segment by
//! segment, so nothing is copied into one contiguous tensor.
//!
//! A forward may carry several sequences (a batch): their new rows are
//! stacked for the projections and split again for attention, which each
//! sequence runs against its own cache.
//!
//! With invariant numerics, a GPU backend runs the project's attention
//! kernel instead (`dsi_kernels::gpu::decode_attention`: scores, softmax
//! and values in one launch per segment, each query row reduced on its
//! own), and the CPU backends in f32 run `dsi_kernels::attention` in a
//! fixed order; fast numerics keep burn's ops (faster on lavapipe, see
//! `benches/gpu_kernels.rs`).

use super::host::{HostF32, from_host};
use super::linear::{Kernels, Numerics, Projection};
use super::norm::RmsNorm;
use super::stack_rows;
use crate::cache::{KvCache, VisibleKv};
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};
use dsi_kernels::attention::{Heads, Queries, Segment};
use dsi_kernels::rope::{Stacked, split_heads};

/// What every layer of one forward shares: how its rows divide among the
/// sequences of the batch, their rotary cos/sin rows (`[1, rows, head_dim]`,
/// each sequence's at its own positions) and how the projections run.
#[derive(Debug, Clone)]
pub struct BatchRows<B: Backend> {
    /// New rows of each sequence, in the order they are stacked.
    pub members: Vec<usize>,
    /// Cosines.
    pub cos: Tensor<B, 3>,
    /// Sines.
    pub sin: Tensor<B, 3>,
    /// How the projections run.
    pub kernels: Kernels,
}

/// Self-attention of one decoder layer.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[hidden] -> [(heads + 2 * kv_heads) * head_dim]`: queries, keys and
    /// values stacked so one product reads all three.
    pub qkv_proj: Projection<B>,
    /// `[heads * head_dim] -> [hidden]`.
    pub o_proj: Projection<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Per-head norms of queries and keys before the rotation (Qwen3).
    pub qk_norm: Option<QkNorm<B>>,
    /// Queries and keys are rotated by position (false: the model adds
    /// learned position embeddings instead).
    pub rotary: bool,
    /// Sliding-window attention: a position sees the last `window`
    /// positions, itself included.
    pub window: Option<usize>,
}

/// RMSNorms over each query head and each key head (`[head_dim]` weights
/// shared by every head), applied before the rotation.
#[derive(Module, Debug)]
pub struct QkNorm<B: Backend> {
    /// Over every query head.
    pub q: RmsNorm<B>,
    /// Over every key head.
    pub k: RmsNorm<B>,
}

impl<B: Backend> Attention<B> {
    /// Attends each sequence's new positions to its cached prefix and to
    /// each other. The projections run once over the rows of every
    /// sequence; attention runs per sequence, against its own cache.
    ///
    /// # Shapes
    /// - x: `[rows, hidden]` -> `[rows, hidden]`, `rows` the sum of
    ///   `batch.members`, one cache per member
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: &BatchRows<B>,
        layer: usize,
        caches: &mut [&mut KvCache<B>],
    ) -> Tensor<B, 2> {
        let [rows, _] = x.dims();
        let (heads, kv_heads, head_dim) = (self.num_heads, self.num_kv_heads, self.head_dim);

        let qkv = self.qkv_proj.forward(x, batch.kernels);
        // The rotation is fused into the split unless the heads are
        // normalized first (Qwen3) or positions are learned (StarCoder).
        let rotate_in_split = self.rotary && self.qk_norm.is_none();
        let on_host = match batch.kernels.numerics {
            Numerics::Invariant => self.split_on_host(&qkv, batch, rotate_in_split),
            Numerics::Fast => None,
        };
        let (mut q, mut k, v) = match on_host {
            Some(split) => split,
            None => {
                // [rows, h * d] -> [h, rows, d]
                let split =
                    |t: Tensor<B, 2>, h: usize| t.reshape([rows, h, head_dim]).swap_dims(0, 1);
                let rotated = |t: Tensor<B, 3>| {
                    if rotate_in_split { rotate(t, batch) } else { t }
                };
                let (q_width, kv_width) = (heads * head_dim, kv_heads * head_dim);
                let q = rotated(split(qkv.clone().narrow(1, 0, q_width), heads));
                let k = rotated(split(qkv.clone().narrow(1, q_width, kv_width), kv_heads));
                let v = split(qkv.narrow(1, q_width + kv_width, kv_width), kv_heads);
                (q, k, v)
            }
        };
        if let Some(norms) = &self.qk_norm {
            q = rotate(norms.q.forward_heads(q, batch.kernels), batch);
            k = rotate(norms.k.forward_heads(k, batch.kernels), batch);
        }
        let mut start = 0;
        let mut outs = Vec::with_capacity(caches.len());
        for (cache, &n) in caches.iter_mut().zip(&batch.members) {
            let member = |t: &Tensor<B, 3>| t.clone().narrow(1, start, n);
            outs.push(self.attend(
                member(&q),
                member(&k),
                member(&v),
                layer,
                cache,
                batch.kernels,
            ));
            start += n;
        }
        let out = stack_rows(outs);
        self.o_proj.forward(out, batch.kernels)
    }

    /// The queries, keys and values (`[heads or kv_heads, rows, head_dim]`,
    /// queries and keys rotated) of the stacked projection, on the host in
    /// one pass (`dsi_kernels::rope`), when a CPU backend holds it in f32:
    /// the same bits as [`rotate`] over burn's views, without its dozen
    /// small ops and copies per layer. `None` elsewhere.
    #[allow(clippy::type_complexity)]
    fn split_on_host(
        &self,
        qkv: &Tensor<B, 2>,
        batch: &BatchRows<B>,
        rotate: bool,
    ) -> Option<(Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>)> {
        let [rows, _] = qkv.dims();
        let (heads, kv_heads, dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let stacked = HostF32::of(qkv.clone())?.contiguous();
        let cos = HostF32::of(batch.cos.clone())?.contiguous();
        let sin = HostF32::of(batch.sin.clone())?.contiguous();
        let (stacked, cos, sin) = (stacked.slice()?, cos.slice()?, sin.slice()?);
        let part = |first_head: usize, count: usize, rotated: bool| {
            let at = Stacked {
                rows,
                dim,
                first_head,
                heads: count,
            };
            let values = split_heads(stacked, at, rotated.then_some((cos, sin)));
            from_host(values, [count, rows, dim])
        };
        Some((
            part(0, heads, rotate)?,
            part(heads, kv_heads, rotate)?,
            part(heads + kv_heads, kv_heads, false)?,
        ))
    }

    /// One sequence's attention: its `n` new queries, keys and values
    /// (`[heads or kv_heads, n, head_dim]`, rotated) against its cache.
    ///
    /// # Shapes
    /// - returns `[n, heads * head_dim]`
    fn attend(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        layer: usize,
        cache: &mut KvCache<B>,
        kernels: Kernels,
    ) -> Tensor<B, 2> {
        let [_, n, _] = q.dims();
        let (heads, kv_heads, head_dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = heads / kv_heads;
        let prefix = cache.len();
        let visible = cache.append(layer, k, v);
        let scale = (head_dim as f64).powf(-0.5);
        if kernels.numerics == Numerics::Invariant
            && let Some(out) = self.fixed_order(&q, &visible, prefix, scale as f32, kernels.threads)
        {
            return out;
        }
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        if kernels.numerics == Numerics::Invariant {
            let at = dsi_kernels::gpu::DecodeQueries {
                prefix,
                window: self.window,
                scale: scale as f32,
            };
            if let Some(out) = dsi_kernels::gpu::decode_attention(q.clone(), &visible.segments, at)
            {
                return out;
            }
        }

        // [heads, n, d] -> [kv_heads, group * n, d]: heads h*group..(h+1)*group share kv head h.
        let q = q.reshape([kv_heads, group * n, head_dim]);
        // One product per cache segment; the scores meet for one softmax.
        let lengths: Vec<usize> = visible.segments.iter().map(|(k, _)| k.dims()[1]).collect();
        let scores: Vec<Tensor<B, 3>> = visible
            .segments
            .iter()
            .map(|(keys, _)| q.clone().matmul(keys.clone().swap_dims(1, 2)))
            .collect();
        let mut scores = if scores.len() == 1 {
            scores.into_iter().next().expect("one segment")
        } else {
            Tensor::cat(scores, 2)
        }
        .mul_scalar(scale);
        let windowed = self.window.is_some_and(|w| prefix + n > w);
        if n > 1 || windowed {
            let mask = causal_mask::<B>(group, n, prefix, self.window, &scores.device());
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let probs = burn::tensor::activation::softmax(scores, 2);
        let mut start = 0;
        let mut out: Option<Tensor<B, 3>> = None; // [kv_heads, group * n, d]
        for ((_, values), len) in visible.segments.into_iter().zip(lengths) {
            let part = if start == 0 && len == probs.dims()[2] {
                probs.clone()
            } else {
                probs.clone().narrow(2, start, len)
            };
            let product = part.matmul(values);
            out = Some(match out {
                None => product,
                Some(sum) => sum + product,
            });
            start += len;
        }
        let out = out.expect("a forward attends to at least its own positions");
        out.reshape([heads, n, head_dim])
            .swap_dims(0, 1)
            .reshape([n, heads * head_dim])
    }

    /// [`Attention::attend`] by `dsi_kernels::attention` on the `cpu`
    /// backend in f32: each query reduced over exactly the keys it sees, so
    /// its output does not depend on how its sequence was chunked. `None`
    /// on other backends or layouts.
    fn fixed_order(
        &self,
        q: &Tensor<B, 3>,
        visible: &VisibleKv<B>,
        prefix: usize,
        scale: f32,
        threads: usize,
    ) -> Option<Tensor<B, 2>> {
        let [heads, n, dim] = q.dims();
        let q = HostF32::of(q.clone())?.contiguous();
        let host = |t: &Tensor<B, 3>| {
            HostF32::of(t.clone()).map(|t| match t {
                // The `cpu` backend's segments are read in place.
                HostF32::Flex(_) => t,
                HostF32::Ndarray(_) => t.contiguous(),
            })
        };
        let key_tensors: Vec<HostF32> = visible
            .segments
            .iter()
            .map(|(keys, _)| host(keys))
            .collect::<Option<_>>()?;
        let value_tensors: Vec<HostF32> = visible
            .segments
            .iter()
            .map(|(_, values)| host(values))
            .collect::<Option<_>>()?;
        let keys: Vec<Segment<'_>> = key_tensors
            .iter()
            .map(|t| t.segment(dim))
            .collect::<Option<_>>()?;
        let values: Vec<Segment<'_>> = value_tensors
            .iter()
            .map(|t| t.segment(dim))
            .collect::<Option<_>>()?;
        let queries = Queries {
            q: q.slice()?,
            n,
            prefix,
            window: self.window,
        };
        let out = dsi_kernels::attention::attention(
            queries,
            &keys,
            &values,
            Heads {
                heads,
                kv_heads: self.num_kv_heads,
                dim,
            },
            scale,
            threads,
        );
        from_host(out, [n, heads * dim])
    }
}

/// `x * cos + rotate_half(x) * sin`, with `rotate_half([a, b]) = [-b, a]`.
fn rotate<B: Backend>(x: Tensor<B, 3>, rotary: &BatchRows<B>) -> Tensor<B, 3> {
    let half = x.dims()[2] / 2;
    let first = x.clone().narrow(2, 0, half);
    let second = x.clone().narrow(2, half, half);
    let rotated = Tensor::cat(vec![second.neg(), first], 2);
    x * rotary.cos.clone() + rotated * rotary.sin.clone()
}

/// `true` where query `i` (absolute position `prefix + i`) must not see key
/// `j`: `j > prefix + i`, or `j` older than the last `window` positions;
/// repeated for every head of a group.
fn causal_mask<B: Backend>(
    group: usize,
    n: usize,
    prefix: usize,
    window: Option<usize>,
    device: &B::Device,
) -> Tensor<B, 3, Bool> {
    let total = prefix + n;
    let mut mask = Vec::with_capacity(group * n * total);
    for _ in 0..group {
        for i in 0..n {
            let p = prefix + i;
            let first = window.map_or(0, |w| (p + 1).saturating_sub(w));
            mask.extend((0..total).map(|j| j > p || j < first));
        }
    }
    Tensor::from_data(TensorData::new(mask, [1, group * n, total]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transformer::linear::Kernels;
    use burn::backend::Flex;

    /// The host split is bitwise the burn ops it replaces.
    #[test]
    fn the_host_split_is_the_tensor_split() {
        type F = Flex;
        let device = Default::default();
        let (heads, kv_heads, dim, rows) = (4, 2, 8, 3);
        let width = (heads + 2 * kv_heads) * dim;
        let weight = |out: usize| Tensor::<F, 2>::zeros([dim, out], &device);
        let attention = Attention {
            qkv_proj: Projection::new(weight(width), None),
            o_proj: Projection::new(weight(dim), None),
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim: dim,
            qk_norm: None,
            rotary: true,
            window: None,
        };
        let values = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
        };
        let table = |seed: f32| {
            Tensor::<F, 3>::from_data(
                TensorData::new(values(rows * dim, seed), [1, rows, dim]),
                &device,
            )
        };
        let batch = BatchRows {
            members: vec![rows],
            cos: table(1.0),
            sin: table(2.0),
            kernels: Kernels {
                threads: 1,
                numerics: Numerics::Invariant,
            },
        };
        let qkv = Tensor::<F, 2>::from_data(
            TensorData::new(values(rows * width, 3.0), [rows, width]),
            &device,
        );
        let (q, k, v) = attention
            .split_on_host(&qkv, &batch, true)
            .expect("cpu backend");
        let split = |t: Tensor<F, 2>, h: usize| t.reshape([rows, h, dim]).swap_dims(0, 1);
        let want_q = rotate(split(qkv.clone().narrow(1, 0, heads * dim), heads), &batch);
        let want_k = rotate(
            split(qkv.clone().narrow(1, heads * dim, kv_heads * dim), kv_heads),
            &batch,
        );
        let want_v = split(
            qkv.narrow(1, (heads + kv_heads) * dim, kv_heads * dim),
            kv_heads,
        );
        let bits = |t: Tensor<F, 3>| -> Vec<u32> {
            t.into_data()
                .to_vec::<f32>()
                .expect("f32")
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(q), bits(want_q));
        assert_eq!(bits(k), bits(want_k));
        assert_eq!(bits(v), bits(want_v));
    }
}
