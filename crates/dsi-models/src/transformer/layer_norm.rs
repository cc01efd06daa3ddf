//! LayerNorm (Ba et al. 2016): `(x - mean(x)) / sqrt(var(x) + eps) * weight
//! + bias`, as GPT-2 and StarCoder normalize.

use super::host::{HostF32, from_host};
use super::linear::{Kernels, Numerics};
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Mean-and-variance normalization over the last dimension, with a gain
/// and a bias.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Per-channel gain, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Per-channel bias, `[hidden]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Added to the variance for stability.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// Normalizes every row of `x`; with [`Numerics::Invariant`] on a CPU
    /// backend in f32, by `dsi_kernels::norm::layer_norm` (a row's moments
    /// in a fixed order, whatever the rows beside it).
    ///
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>, kernels: Kernels) -> Tensor<B, 2> {
        if kernels.numerics == Numerics::Invariant
            && let Some(y) = self.fixed_order(&x)
        {
            return y;
        }
        let mean = x.clone().mean_dim(1);
        let centered = x - mean;
        let var = centered.clone().powi_scalar(2).mean_dim(1);
        let y = centered / var.add_scalar(self.eps).sqrt();
        y * self.weight.val().unsqueeze() + self.bias.val().unsqueeze()
    }

    fn fixed_order(&self, x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
        let [rows, width] = x.dims();
        let input = HostF32::of(x.clone())?.contiguous();
        let weight = HostF32::of(self.weight.val())?.contiguous();
        let bias = HostF32::of(self.bias.val())?.contiguous();
        let y = dsi_kernels::norm::layer_norm(
            input.slice()?,
            width,
            weight.slice()?,
            bias.slice()?,
            self.eps as f32,
        );
        from_host(y, [rows, width])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// The host kernel agrees with the tensor ops it replaces.
    #[test]
    fn the_host_norm_is_the_tensor_norm() {
        let device = Default::default();
        let (rows, width) = (3, 10);
        let values: Vec<f32> = (0..rows * width)
            .map(|i| (i as f32 * 0.73).sin() * 3.0 + 0.5)
            .collect();
        let vector = |seed: f32| {
            let v: Vec<f32> = (0..width).map(|i| (i as f32 + seed).cos()).collect();
            Param::from_tensor(Tensor::<Flex, 1>::from_data(
                TensorData::new(v, [width]),
                &device,
            ))
        };
        let norm = LayerNorm {
            weight: vector(1.0),
            bias: vector(2.0),
            eps: 1e-5,
        };
        let x = Tensor::<Flex, 2>::from_data(TensorData::new(values, [rows, width]), &device);
        let kernels = |numerics| Kernels {
            threads: 1,
            numerics,
        };
        let host = norm.forward(x.clone(), kernels(Numerics::Invariant));
        let plain = norm.forward(x, kernels(Numerics::Fast));
        let (host, plain) = (
            host.into_data().to_vec::<f32>().expect("f32"),
            plain.into_data().to_vec::<f32>().expect("f32"),
        );
        for (h, p) in host.iter().zip(&plain) {
            assert!((h - p).abs() <= 1e-5 * p.abs().max(1.0), "{h} vs {p}");
        }
    }
}
