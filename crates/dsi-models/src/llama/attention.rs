//! Causal grouped-query self-attention with rotary embeddings over a KV cache.
//!
//! Query heads that share a key/value head are folded into the sequence axis
//! (`[1, kv_heads, group * n, head_dim]`), so keys and values are never
//! repeated in memory: one matmul per key/value head serves its whole group.

use crate::cache::KvCache;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

/// Rotary cos/sin rows for the positions of one forward, `[1, 1, n, head_dim]`.
#[derive(Debug, Clone)]
pub struct RotaryRows<B: Backend> {
    /// Cosines.
    pub cos: Tensor<B, 4>,
    /// Sines.
    pub sin: Tensor<B, 4>,
}

/// Self-attention of one decoder layer.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[hidden] -> [heads * head_dim]`.
    pub q_proj: Linear<B>,
    /// `[hidden] -> [kv_heads * head_dim]`.
    pub k_proj: Linear<B>,
    /// `[hidden] -> [kv_heads * head_dim]`.
    pub v_proj: Linear<B>,
    /// `[heads * head_dim] -> [hidden]`.
    pub o_proj: Linear<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Attends the `n` new positions to the cached prefix and to each other.
    ///
    /// # Shapes
    /// - x: `[1, n, hidden]` -> `[1, n, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &RotaryRows<B>,
        layer: usize,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let [batch, n, _] = x.dims();
        let (heads, kv_heads, head_dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = heads / kv_heads;
        let prefix = cache.len();

        let split = |t: Tensor<B, 3>, h: usize| t.reshape([batch, n, h, head_dim]).swap_dims(1, 2);
        let q = rotate(split(self.q_proj.forward(x.clone()), heads), rotary);
        let k = rotate(split(self.k_proj.forward(x.clone()), kv_heads), rotary);
        let v = split(self.v_proj.forward(x), kv_heads);
        let (keys, values) = cache.append(layer, k, v);

        // [1, heads, n, d] -> [1, kv_heads, group * n, d]: heads h*group..(h+1)*group share kv head h.
        let q = q.reshape([batch, kv_heads, group * n, head_dim]);
        let scale = (head_dim as f64).powf(-0.5);
        let mut scores = q.matmul(keys.swap_dims(2, 3)).mul_scalar(scale);
        if n > 1 {
            let mask = causal_mask::<B>(group, n, prefix, &scores.device());
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let probs = burn::tensor::activation::softmax(scores, 3);
        let out = probs.matmul(values); // [1, kv_heads, group * n, d]
        let out = out
            .reshape([batch, heads, n, head_dim])
            .swap_dims(1, 2)
            .reshape([batch, n, heads * head_dim]);
        self.o_proj.forward(out)
    }
}

/// `x * cos + rotate_half(x) * sin`, with `rotate_half([a, b]) = [-b, a]`.
fn rotate<B: Backend>(x: Tensor<B, 4>, rotary: &RotaryRows<B>) -> Tensor<B, 4> {
    let half = x.dims()[3] / 2;
    let first = x.clone().narrow(3, 0, half);
    let second = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    x * rotary.cos.clone() + rotated * rotary.sin.clone()
}

/// `true` where query `i` (absolute position `prefix + i`) must not see key
/// `j`, i.e. `j > prefix + i`; repeated for every head of a group.
fn causal_mask<B: Backend>(
    group: usize,
    n: usize,
    prefix: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let total = prefix + n;
    let mut mask = Vec::with_capacity(group * n * total);
    for _ in 0..group {
        for i in 0..n {
            mask.extend((0..total).map(|j| j > prefix + i));
        }
    }
    Tensor::from_data(TensorData::new(mask, [1, 1, group * n, total]), device)
}
