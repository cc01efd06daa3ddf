//! One pre-norm decoder layer: attention and the MLP, each with a residual.

use super::attention::{Attention, BatchRows};
use super::mlp::Mlp;
use super::norm::Norm;
use crate::cache::KvCache;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A decoder layer of any family (they differ in the norm and the MLP).
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Norm before attention.
    pub input_norm: Norm<B>,
    /// Self-attention.
    pub attention: Attention<B>,
    /// Norm before the MLP.
    pub post_attention_norm: Norm<B>,
    /// Feed-forward block.
    pub mlp: Mlp<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// # Shapes
    /// - x: `[rows, hidden]` -> `[rows, hidden]`, the rows of every
    ///   sequence in `batch`, one cache each
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: &BatchRows<B>,
        layer: usize,
        caches: &mut [&mut KvCache<B>],
    ) -> Tensor<B, 2> {
        let h = x.clone()
            + self.attention.forward(
                self.input_norm.forward(x, batch.kernels),
                batch,
                layer,
                caches,
            );
        h.clone()
            + self.mlp.forward(
                self.post_attention_norm.forward(h, batch.kernels),
                batch.kernels,
            )
    }
}
