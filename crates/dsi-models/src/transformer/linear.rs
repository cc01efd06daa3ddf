//! A linear projection over a sequence of vectors, `x W + b`.
//!
//! burn's `nn::Linear` broadcasts its weight over batch dimensions; with a
//! transposed (Hugging Face `[out, in]`) weight that materializes a copy of
//! the whole matrix on every call on the CPU backends (173 ms against 11 ms
//! for the SmolLM-135M LM head). Batch-1 inference needs only 2-D inputs, so
//! this projection stays 2-D and hands the strided view straight to gemm.
//!
//! # Host threads
//!
//! At batch 1 a projection is a matrix-vector product bound by memory
//! bandwidth, and the CPU backends run products this small on one thread.
//! With `threads > 1` the output columns are split into that many blocks,
//! each a zero-copy view of the weight, multiplied concurrently and joined
//! (SmolLM-135M shape, 2 cores: 18 -> 24 tokens/s). GPU backends get
//! `threads = 1`: they parallelize on the device. Prefill-sized inputs are
//! left to the backend's gemm, which threads large products itself.
//!
//! # Host weights
//!
//! On the CPU backends a projection may keep its weights outside burn, as
//! `dsi_kernels` [`Weights`] (f32, f16, bf16 or 8-bit blocks, `[out, in]`):
//! `dsi_kernels::matmul` reads them as stored and widens them in registers,
//! so a decode reads 2 or ~1.1 bytes per weight while activations stay f32
//! (see [`LinearWeights`]).
//!
//! # Numerics
//!
//! With [`Numerics::Invariant`] (the default) a product on a CPU backend in
//! f32, and every product over host weights, runs `dsi_kernels::matmul`,
//! which reduces every output element in one fixed order whatever the
//! number of rows: a row's result does not depend on which other rows share
//! the forward, or on how its sequence was cut into forwards. Other
//! backends and dtypes use their own kernels in both modes (see
//! `Numerics`).

use super::host::{HostF32, from_host};
use crate::Result;
use crate::checkpoint::HostTensor;
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use dsi_kernels::weights::{Matrix, Weights};
use rayon::prelude::*;
use std::sync::Arc;

/// Whether a row's logits may depend on what shares its forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Numerics {
    /// Fixed-order kernels where the project has them (the CPU backends
    /// in f32, the GPU backends in every dtype): a row's logits are the
    /// same bits alone, in a batch, or fed in any chunking, so greedy DSI,
    /// SI and non-SI emit identical tokens under any load.
    #[default]
    Invariant,
    /// The backend's own kernels, chosen by shape: fastest, but a near-tie
    /// may round differently under load; only the target's distribution is
    /// then guaranteed.
    Fast,
}

impl std::str::FromStr for Numerics {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "invariant" => Ok(Numerics::Invariant),
            "fast" => Ok(Numerics::Fast),
            other => Err(format!(
                "unknown numerics {other:?}: use invariant (identical tokens under any load) or fast (the backend's own kernels)"
            )),
        }
    }
}

impl std::fmt::Display for Numerics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Numerics::Invariant => "invariant",
            Numerics::Fast => "fast",
        })
    }
}

/// Which kernels a forward's products run and on how many host threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    /// Host threads per product (1 on GPU backends).
    pub threads: usize,
    /// Fixed-order or the backend's own.
    pub numerics: Numerics,
}

/// Column blocks narrower than this are not worth a thread.
const MIN_COLUMNS_PER_THREAD: usize = 128;
/// From this many rows on, the backend's own gemm threads the product.
const MAX_ROWS_TO_SPLIT: usize = 32;

/// A projection's host weights, `[out, in]`: one matrix, or several
/// stacked along the outputs when their formats differ (a GGUF file may
/// store the queries and keys in `Q4_K` and the values in `Q6_K`). Each
/// part is multiplied on its own, so a row's bits are still its own.
#[derive(Debug, Clone)]
pub struct HostWeights {
    parts: Vec<Arc<Weights>>,
}

impl HostWeights {
    /// One matrix.
    pub fn one(weights: Arc<Weights>) -> Self {
        Self {
            parts: vec![weights],
        }
    }

    /// Matrices of one input width, stacked along their outputs.
    ///
    /// # Panics
    /// When there are none or their input widths differ.
    pub fn stacked(parts: Vec<Arc<Weights>>) -> Self {
        assert!(
            !parts.is_empty() && parts.iter().all(|p| p.shape()[1] == parts[0].shape()[1]),
            "stacked weights share their input width"
        );
        Self { parts }
    }

    /// The parts, in stacking order.
    pub fn parts(&self) -> &[Arc<Weights>] {
        &self.parts
    }

    /// `[out, in]` of the whole.
    pub fn shape(&self) -> [usize; 2] {
        let out = self.parts.iter().map(|p| p.shape()[0]).sum();
        [out, self.parts[0].shape()[1]]
    }

    /// Bytes one product reads.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.bytes()).sum()
    }

    /// Every weight in f32, `[out, in]` row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        self.parts.iter().flat_map(|p| p.to_f32()).collect()
    }
}

/// `x W + b`, with `W` a burn tensor stored `[in, out]` (usually a
/// transposed view) or host [`Weights`] stored `[out, in]`.
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// `[in, out]`, unless the weights are [`Projection::host`].
    pub weight: Option<Param<Tensor<B, 2>>>,
    /// `[out]`, when the layer has a bias.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// `[out, in]` in `dsi_kernels` formats, on the CPU backends.
    #[module(skip)]
    pub host: Option<HostWeights>,
}

impl<B: Backend> Projection<B> {
    /// A projection over a burn weight stored `[in, out]`.
    pub fn new(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            weight: Some(Param::from_tensor(weight)),
            bias: bias.map(Param::from_tensor),
            host: None,
        }
    }

    /// A projection over host weights (`[out, in]`): only a CPU backend
    /// can run it.
    pub fn on_host(weights: HostWeights, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            weight: None,
            bias: bias.map(Param::from_tensor),
            host: Some(weights),
        }
    }

    /// The weights as Hugging Face stores them, `[out, in]` in f32 (host
    /// weights widened or dequantized).
    pub fn stored(&self) -> Result<HostTensor> {
        match (&self.host, &self.weight) {
            (Some(host), _) => Ok(HostTensor {
                shape: host.shape().to_vec(),
                values: host.to_f32(),
            }),
            (None, Some(weight)) => HostTensor::from_tensor(weight.val().transpose()),
            (None, None) => unreachable!("a projection has weights"),
        }
    }

    /// Bytes of weights one forward reads (the bias aside).
    pub fn weight_bytes(&self) -> usize {
        match (&self.host, &self.weight) {
            (Some(host), _) => host.bytes(),
            (None, Some(weight)) => {
                let weight = weight.val();
                weight.shape().num_elements() * weight.dtype().size()
            }
            (None, None) => 0,
        }
    }

    /// # Shapes
    /// - x: `[n, in]` -> `[n, out]`
    ///
    /// # Panics
    /// With host weights, when `x` is not a CPU backend's f32 tensor (the
    /// loader refuses host weights elsewhere).
    pub fn forward(&self, x: Tensor<B, 2>, kernels: Kernels) -> Tensor<B, 2> {
        let y = match (&self.host, &self.weight) {
            (Some(host), _) => stacked_product(&x, host, kernels.threads)
                .expect("host weights run on a CPU backend in f32"),
            (None, Some(weight)) => {
                let weight = weight.val();
                match kernels.numerics {
                    Numerics::Invariant => fixed_order(&x, &weight, kernels.threads)
                        .or_else(|| gpu_fixed_order(&x, &weight))
                        .unwrap_or_else(|| backend_product(x, weight, kernels.threads)),
                    Numerics::Fast => backend_product(x, weight, kernels.threads),
                }
            }
            (None, None) => unreachable!("a projection has weights"),
        };
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }
}

/// `x W` by the backend's kernels, split by columns over `threads` for few
/// rows.
fn backend_product<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    threads: usize,
) -> Tensor<B, 2> {
    let out = weight.dims()[1];
    let rows = x.dims()[0];
    let blocks = if rows < MAX_ROWS_TO_SPLIT {
        threads.min(out / MIN_COLUMNS_PER_THREAD).max(1)
    } else {
        1
    };
    if blocks == 1 {
        x.matmul(weight)
    } else {
        let width = out.div_ceil(blocks);
        let parts: Vec<Tensor<B, 2>> = (0..blocks)
            .into_par_iter()
            .map(|b| {
                let start = b * width;
                let len = width.min(out - start);
                x.clone().matmul(weight.clone().narrow(1, start, len))
            })
            .collect();
        Tensor::cat(parts, 1)
    }
}

/// `x W` by `dsi_kernels::matmul` when the tensors are the `cpu` backend's
/// f32 tensors with `W` a transposed view of a row-major `[out, in]` matrix
/// (how weights are loaded); `None` otherwise.
fn fixed_order<B: Backend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    threads: usize,
) -> Option<Tensor<B, 2>> {
    let [_, k] = x.dims();
    let out = weight.dims()[1];
    // `[out, in]` again: contiguous when the weight is the loader's view.
    let stored = HostF32::of(weight.clone().transpose())?;
    host_product(x, Matrix::f32(stored.slice()?, out, k), threads)
}

/// `x W` by the GPU kernel that reduces each output in one fixed order
/// (`dsi_kernels::gpu::matmul`); `None` on the CPU backends.
fn gpu_fixed_order<B: Backend>(x: &Tensor<B, 2>, weight: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    return dsi_kernels::gpu::matmul_fixed_order(x.clone(), weight.clone());
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    {
        let _ = (x, weight);
        None
    }
}

/// `x wᵀ` over host weights, part by part, each part's columns copied
/// into place; `None` unless `x` is a CPU backend's f32 tensor.
fn stacked_product<B: Backend>(
    x: &Tensor<B, 2>,
    w: &HostWeights,
    threads: usize,
) -> Option<Tensor<B, 2>> {
    if let [one] = w.parts() {
        return host_product(x, one.matrix(), threads);
    }
    let rows = x.dims()[0];
    let input = HostF32::of(x.clone())?.contiguous();
    let input = input.slice()?;
    let [out, _] = w.shape();
    let mut y = vec![0f32; rows * out];
    let mut first = 0;
    for part in w.parts() {
        let width = part.shape()[0];
        let part_y = dsi_kernels::matmul::matmul(input, rows, part.matrix(), threads);
        for (r, values) in part_y.chunks_exact(width.max(1)).enumerate() {
            y[r * out + first..r * out + first + width].copy_from_slice(values);
        }
        first += width;
    }
    from_host(y, [rows, out])
}

/// `x wᵀ` by `dsi_kernels::matmul` over `[out, in]` weights, when `x` is a
/// CPU backend's f32 tensor; `None` otherwise.
fn host_product<B: Backend>(
    x: &Tensor<B, 2>,
    w: Matrix<'_>,
    threads: usize,
) -> Option<Tensor<B, 2>> {
    let rows = x.dims()[0];
    let input = HostF32::of(x.clone())?.contiguous();
    let y = dsi_kernels::matmul::matmul(input.slice()?, rows, w, threads);
    from_host(y, [rows, w.out])
}
