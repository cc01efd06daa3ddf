//! RMSNorm (Zhang & Sennrich 2019): `x / sqrt(mean(x^2) + eps) * weight`.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Root-mean-square normalization over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel gain, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square for stability.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Normalizes every row of `x`.
    ///
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let rms = x
            .clone()
            .powi_scalar(2)
            .mean_dim(1)
            .add_scalar(self.eps)
            .sqrt();
        (x / rms) * self.weight.val().unsqueeze()
    }
}
