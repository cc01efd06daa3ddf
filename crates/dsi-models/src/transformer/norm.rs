//! The norms of a decoder layer: RMSNorm (Zhang & Sennrich 2019),
//! `x / sqrt(mean(x^2) + eps) * weight`, for the Llama-like families, and
//! [`LayerNorm`] for StarCoder, behind one [`Norm`].

use super::host::{HostF32, from_host};
use super::layer_norm::LayerNorm;
use super::linear::{Kernels, Numerics};
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The norm a family uses.
#[derive(Module, Debug)]
pub enum Norm<B: Backend> {
    /// Llama, Mistral, Qwen, Phi-3.
    Rms(RmsNorm<B>),
    /// StarCoder.
    Layer(LayerNorm<B>),
}

impl<B: Backend> Norm<B> {
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>, kernels: Kernels) -> Tensor<B, 2> {
        match self {
            Norm::Rms(norm) => norm.forward(x, kernels),
            Norm::Layer(norm) => norm.forward(x, kernels),
        }
    }

    /// Adds `delta` (the output of the block before) to the residual
    /// stream `x` and normalizes the sum: `(x + delta, norm(x + delta))`.
    /// An RMSNorm on a GPU backend does both in one kernel
    /// (`dsi_kernels::gpu::add_rms_norm`); elsewhere the add and the norm
    /// are the ops they always were.
    ///
    /// # Shapes
    /// - x, delta: `[n, hidden]` -> both `[n, hidden]`
    pub fn add_forward(
        &self,
        x: Tensor<B, 2>,
        delta: Option<Tensor<B, 2>>,
        kernels: Kernels,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let Some(delta) = delta else {
            return (x.clone(), self.forward(x, kernels));
        };
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        if let Norm::Rms(norm) = self
            && let Some(fused) = dsi_kernels::gpu::add_rms_norm(
                x.clone(),
                delta.clone(),
                norm.weight.val(),
                norm.eps,
            )
        {
            return fused;
        }
        let sum = x + delta;
        (sum.clone(), self.forward(sum, kernels))
    }

    /// Values of its parameters (weight and bias), for byte counts.
    pub fn num_params(&self) -> usize {
        match self {
            Norm::Rms(norm) => norm.weight.val().shape().num_elements(),
            Norm::Layer(norm) => 2 * norm.weight.val().shape().num_elements(),
        }
    }
}

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
    /// fixed order, whatever the rows beside it); on a GPU backend by
    /// `dsi_kernels::gpu::rms_norm` (one cube per row, also fixed order).
    ///
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>, kernels: Kernels) -> Tensor<B, 2> {
        if kernels.numerics == Numerics::Invariant
            && let Some(y) = self.fixed_order(&x)
        {
            return y;
        }
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        if let Some(y) = dsi_kernels::gpu::rms_norm(x.clone(), self.weight.val(), self.eps) {
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

    /// Normalizes every head of `x` over its width (Qwen3's query and key
    /// norms).
    ///
    /// # Shapes
    /// - x: `[heads, n, head_dim]` -> `[heads, n, head_dim]`
    pub fn forward_heads(&self, x: Tensor<B, 3>, kernels: Kernels) -> Tensor<B, 3> {
        let [heads, n, dim] = x.dims();
        self.forward(x.reshape([heads * n, dim]), kernels)
            .reshape([heads, n, dim])
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
