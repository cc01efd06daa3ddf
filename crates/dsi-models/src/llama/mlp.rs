//! The SwiGLU feed-forward block (Shazeer 2020): `down(silu(gate(x)) * up(x))`.

use super::linear::Projection;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

/// Gated feed-forward network of a Llama decoder layer.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    /// `[hidden] -> [intermediate]`, gated by SiLU.
    pub gate: Projection<B>,
    /// `[hidden] -> [intermediate]`.
    pub up: Projection<B>,
    /// `[intermediate] -> [hidden]`.
    pub down: Projection<B>,
}

impl<B: Backend> SwiGlu<B> {
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let gated = silu(self.gate.forward(x.clone())) * self.up.forward(x);
        self.down.forward(gated)
    }
}
