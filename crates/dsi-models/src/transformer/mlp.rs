//! The feed-forward block of a decoder layer: SwiGLU (Shazeer 2020),
//! `down(silu(gate(x)) * up(x))`, for the Llama-like families, and
//! [`GeluMlp`] for StarCoder, behind one [`Mlp`].

use super::gelu_mlp::GeluMlp;
use super::host::{HostF32, from_host};
use super::linear::{Kernels, Numerics, Projection};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

/// The feed-forward block a family uses.
#[derive(Module, Debug)]
pub enum Mlp<B: Backend> {
    /// Llama, Mistral, Qwen, Phi-3.
    SwiGlu(SwiGlu<B>),
    /// StarCoder.
    Gelu(GeluMlp<B>),
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - x: `[n, hidden]` -> `[n, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>, kernels: Kernels) -> Tensor<B, 2> {
        match self {
            Mlp::SwiGlu(mlp) => mlp.forward(x, kernels),
            Mlp::Gelu(mlp) => mlp.forward(x, kernels),
        }
    }

    /// Its projections, input side first.
    pub fn projections(&self) -> [&Projection<B>; 2] {
        match self {
            Mlp::SwiGlu(mlp) => [&mlp.gate_up, &mlp.down],
            Mlp::Gelu(mlp) => [&mlp.fc, &mlp.proj],
        }
    }
}

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
        let on_host = match kernels.numerics {
            Numerics::Invariant => gate_on_host(&gate_up, f),
            Numerics::Fast => None,
        };
        let gated = on_host
            .unwrap_or_else(|| silu(gate_up.clone().narrow(1, 0, f)) * gate_up.narrow(1, f, f));
        self.down.forward(gated, kernels)
    }
}

/// `silu(gate) * up` by `dsi_kernels::swiglu` when a CPU backend holds
/// `gate_up` in f32: one pass instead of burn's ops over two strided views.
fn gate_on_host<B: Backend>(gate_up: &Tensor<B, 2>, f: usize) -> Option<Tensor<B, 2>> {
    let rows = gate_up.dims()[0];
    let host = HostF32::of(gate_up.clone())?.contiguous();
    from_host(dsi_kernels::swiglu::swiglu(host.slice()?, f), [rows, f])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// The host gate agrees with burn's `silu(gate) * up`.
    #[test]
    fn the_host_gate_is_the_tensor_gate() {
        let (rows, f) = (3, 5);
        let values: Vec<f32> = (0..rows * 2 * f)
            .map(|i| (i as f32 * 0.61).sin() * 4.0)
            .collect();
        let gate_up = Tensor::<Flex, 2>::from_data(
            TensorData::new(values, [rows, 2 * f]),
            &Default::default(),
        );
        let host = gate_on_host(&gate_up, f).expect("cpu backend");
        let want = silu(gate_up.clone().narrow(1, 0, f)) * gate_up.narrow(1, f, f);
        let (host, want) = (
            host.into_data().to_vec::<f32>().expect("f32"),
            want.into_data().to_vec::<f32>().expect("f32"),
        );
        for (h, w) in host.iter().zip(&want) {
            assert!((h - w).abs() <= 1e-6 * w.abs().max(1.0), "{h} vs {w}");
        }
    }
}
