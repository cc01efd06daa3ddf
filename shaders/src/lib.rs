//! CPU kernels on plain slices, for numerics that no batch can change.
//!
//! Greedy DSI, SI and non-SI emit identical tokens only if a position's
//! logits do not depend on how its forward was cut: one token or k+1, alone
//! or beside other sequences. A backend's own matrix product picks its
//! kernel, blocking and reduction order by shape, so a row's result moves
//! in the last bits with the number of rows beside it. The kernels here
//! reduce every output element in one fixed order whatever the shape:
//!
//! - [`matmul`]: `y = x wᵀ` over weights in f32, f16, bf16 or 8-bit
//!   blocks ([`weights`]) widened in registers, or llama.cpp's block
//!   formats ([`blocks`]) dequantized a row at a time. Packed weights
//!   ([`panels`]) accumulate each output in one chain over `k`; row-major
//!   weights in 8 interleaved partial sums added up in a fixed tree.
//! - [`norm`]: RMSNorm with each row's mean square in that same order.
//! - [`attention`]: causal grouped-query attention where a query at
//!   position `p` reduces over exactly keys `0..=p`, in blocks at fixed
//!   positions combined in order, so chunking a sequence differently
//!   cannot change it.
//!
//! [`swiglu`] gates the MLP's stacked gate and up outputs in one pass.
//! [`rope`] splits the stacked q/k/v rows into heads with rotary embeddings.
//! [`parallel`] shares a call's tasks between the caller and rayon's pool.
//! [`isa`] picks the instruction set once per process (AVX2+FMA+F16C or
//! the portable path; `DSI_KERNELS=portable` forces the latter).
//!
//! Each has a plain reference (a sequential loop) in its tests, and a test
//! that a row's result is bitwise the same at every row count.

pub mod attention;
pub mod bandwidth;
pub mod blocks;
mod exp;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod gpu;
pub mod isa;
pub mod matmul;
pub mod norm;
pub mod panels;
pub mod parallel;
pub mod rope;
pub mod swiglu;
pub mod weights;

/// Test inputs shared by the kernels' tests.
#[cfg(test)]
mod testing {
    /// `n` deterministic values in `[-1, 1]`, different per `seed`.
    pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }
}
