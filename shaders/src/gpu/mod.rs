//! GPU kernels written once in CubeCL: the same Rust source compiles to
//! WGSL for wgpu (Vulkan, Metal, DX12, the browser's WebGPU) and to CUDA.
//!
//! Each kernel has a reference built from plain burn tensor ops beside it
//! and a test that the two agree on wgpu (`tests/gpu_kernels.rs`, lavapipe
//! in CI) within a stated tolerance. The entry points take and return burn
//! tensors of any backend: on a CubeCL backend (`wgpu`, `cuda`) the kernel
//! runs, elsewhere they answer `None` and the caller keeps its own path
//! (the CPU backends have theirs in this crate's CPU kernels).
//!
//! - [`argmax`]: each row's first maximum, so a greedy verification or a
//!   greedy draft reads back one id per row instead of the row's logits.
//! - [`add_rms_norm`]: a residual add and the RMSNorm that follows it, in
//!   one pass over the row.
//! - [`attention`]: one to `k + 1` query rows against the KV cache's
//!   segments (grouped-query, sliding window), scores, softmax and the
//!   weighted values in one kernel per segment.
//! - [`matmul`]: `x Wᵀ` with each output reduced in one fixed order, so a
//!   row's result does not depend on the rows beside it (with the three
//!   above, which reduce per row, a whole forward is then batch- and
//!   chunk-invariant on a GPU, as the CPU kernels make it on the CPU).

pub mod add_rms_norm;
pub mod argmax;
pub mod attention;
mod cube;
pub use cube::runs_on;
pub mod matmul;

pub use add_rms_norm::{add_rms_norm, rms_norm};
pub use argmax::argmax_rows;
pub use attention::{DecodeQueries, decode_attention};
pub use matmul::matmul_fixed_order;

use std::sync::atomic::{AtomicU8, Ordering};

/// Whether the kernels run: unset (read `DSI_GPU_KERNELS` on first use),
/// on, or off.
static ENABLED: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

/// Whether the GPU kernels run. `DSI_GPU_KERNELS=off` turns them off for
/// the process (every entry point then answers `None` and the models run
/// the plain tensor ops the references are), to compare the two.
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = std::env::var("DSI_GPU_KERNELS").map_or(true, |v| v != "off");
            ENABLED.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns the GPU kernels on or off for the whole process (`dsi bench`
/// measures a forward both ways in one run).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { ON } else { OFF }, Ordering::Relaxed);
}
