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

/// The residual stream between layers, with the last block's output not
/// yet added: the next norm adds it as it normalizes (one kernel on a GPU,
/// see [`Norm::add_forward`]).
#[derive(Debug, Clone)]
pub struct Residual<B: Backend> {
    /// The stream so far.
    pub stream: Tensor<B, 2>,
    /// What the last block adds to it.
    pub pending: Option<Tensor<B, 2>>,
}

impl<B: Backend> Residual<B> {
    /// A stream with nothing pending (the embeddings).
    pub fn new(stream: Tensor<B, 2>) -> Self {
        Self {
            stream,
            pending: None,
        }
    }

    /// The stream with its pending output added.
    pub fn sum(self) -> Tensor<B, 2> {
        match self.pending {
            Some(delta) => self.stream + delta,
            None => self.stream,
        }
    }
}

impl<B: Backend> DecoderLayer<B> {
    /// `h = x + attention(norm(x))`, then `h + mlp(norm(h))`, the last
    /// add left pending for the next norm.
    ///
    /// # Shapes
    /// - x: `[rows, hidden]` -> `[rows, hidden]`, the rows of every
    ///   sequence in `batch`, one cache each
    pub fn forward(
        &self,
        x: Residual<B>,
        batch: &BatchRows<B>,
        layer: usize,
        caches: &mut [&mut KvCache<B>],
    ) -> Residual<B> {
        let (x, normed) = self
            .input_norm
            .add_forward(x.stream, x.pending, batch.kernels);
        let attended = self.attention.forward(normed, batch, layer, caches);
        let (h, normed) = self
            .post_attention_norm
            .add_forward(x, Some(attended), batch.kernels);
        Residual {
            stream: h,
            pending: Some(self.mlp.forward(normed, batch.kernels)),
        }
    }
}
