//! GPT-2's feed-forward block, as StarCoder has it:
//! `proj(gelu_tanh(fc(x)))`, both projections with biases.

use super::linear::{Kernels, Projection};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::gelu_approximate;
use burn::tensor::backend::Backend;

/// Two-layer MLP with the tanh approximation of GELU between.
#[derive(Module, Debug)]
pub struct GeluMlp<B: Backend> {
    /// `[hidden] -> [intermediate]` (`c_fc`).
    pub fc: Projection<B>,
    /// `[intermediate] -> [hidden]` (`c_proj`).
    pub proj: Projection<B>,
}

impl<B: Backend> GeluMlp<B> {
    /// `kernels`: how the projections run (see [`Projection`]). GELU is
    /// elementwise, so a row's result does not depend on its neighbours.
    ///
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>, kernels: Kernels) -> Tensor<B, 2> {
        let hidden = gelu_approximate(self.fc.forward(x, kernels));
        self.proj.forward(hidden, kernels)
    }
}
