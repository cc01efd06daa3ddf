//! The SwiGLU feed-forward block (Shazeer 2020): `down(silu(gate(x)) * up(x))`.

use super::linear::{Kernels, Projection};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

/// Gated feed-forward network of a Llama decoder layer.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    /// `[hidden] -> [2 * intermediate]`: the gate (through SiLU) and the up
    /// projection, stacked so one product reads both.
    pub gate_up: Projection<B>,
    /// `[intermediate] -> [hidden]`.
    pub down: Projection<B>,
    /// Width of the gate and of the up projection.
    pub intermediate_size: usize,
}

impl<B: Backend> SwiGlu<B> {
    /// `kernels`: how the projections run (see [`Projection`]).
    ///
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>, kernels: Kernels) -> Tensor<B, 2> {
        let f = self.intermediate_size;
        let gate_up = self.gate_up.forward(x, kernels);
        let gated = silu(gate_up.clone().narrow(1, 0, f)) * gate_up.narrow(1, f, f);
        self.down.forward(gated, kernels)
    }
}
