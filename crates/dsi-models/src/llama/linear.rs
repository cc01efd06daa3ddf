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

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

/// Column blocks narrower than this are not worth a thread.
const MIN_COLUMNS_PER_THREAD: usize = 128;
/// From this many rows on, the backend's own gemm threads the product.
const MAX_ROWS_TO_SPLIT: usize = 32;

/// `x W + b` with `W` stored `[in, out]` (usually a transposed view).
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// `[in, out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out]`, when the layer has a bias.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Projection<B> {
    /// # Shapes
    /// - x: `[n, in]` -> `[n, out]`
    pub fn forward(&self, x: Tensor<B, 2>, threads: usize) -> Tensor<B, 2> {
        let weight = self.weight.val();
        let out = weight.dims()[1];
        let rows = x.dims()[0];
        let blocks = if rows < MAX_ROWS_TO_SPLIT {
            threads.min(out / MIN_COLUMNS_PER_THREAD).max(1)
        } else {
            1
        };
        let y = if blocks == 1 {
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
        };
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }
}
