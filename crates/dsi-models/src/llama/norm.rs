//! RMSNorm (Zhang & Sennrich 2019): `x / sqrt(mean(x^2) + eps) * weight`.

use super::host::{HostF32, from_host};
use super::linear::{Kernels, Numerics};
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
    /// Normalizes every row of `x`; with [`Numerics::Invariant`] on a CPU
    /// backend in f32, by `dsi_kernels::norm` (a row's mean square in a
    /// fixed order, whatever the rows beside it).
    ///
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>, kernels: Kernels) -> Tensor<B, 2> {
        if kernels.numerics == Numerics::Invariant
            && let Some(y) = self.fixed_order(&x)
        {
            return y;
        }
        let rms = x
            .clone()
            .powi_scalar(2)
            .mean_dim(1)
            .add_scalar(self.eps)
            .sqrt();
        (x / rms) * self.weight.val().unsqueeze()
    }

    fn fixed_order(&self, x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
        let [rows, width] = x.dims();
        let input = HostF32::of(x.clone())?.contiguous();
        let weight = HostF32::of(self.weight.val())?.contiguous();
        let y =
            dsi_kernels::norm::rms_norm(input.slice()?, width, weight.slice()?, self.eps as f32);
        from_host(y, [rows, width])
    }
}
