//! The SwiGLU feed-forward block (Shazeer 2020): `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

/// Gated feed-forward network of a Llama decoder layer.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    /// `[hidden] -> [intermediate]`, gated by SiLU.
    pub gate: Linear<B>,
    /// `[hidden] -> [intermediate]`.
    pub up: Linear<B>,
    /// `[intermediate] -> [hidden]`.
    pub down: Linear<B>,
}

impl<B: Backend> SwiGlu<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gated = silu(self.gate.forward(x.clone())) * self.up.forward(x);
        self.down.forward(gated)
    }
}
