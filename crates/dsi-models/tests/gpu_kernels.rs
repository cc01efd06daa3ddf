//! The project's GPU kernels (`dsi_kernels::gpu`, written once in CubeCL)
//! against their references built from plain burn tensor ops, on every GPU
//! backend the run selects (`DSI_TEST_BACKENDS`; wgpu is lavapipe in CI),
//! in f32, and in f16 and bf16 where the device has them.
//!
//! - argmax: the ids equal the host rule (`dsi_core::verify::argmax`, the
//!   lowest id among a row's maxima) exactly, ties planted, on vocabularies
//!   that are and are not multiples of the cube, one row or many, and on a
//!   column-narrowed view (what `Session::with_vocab` hands it).
//! - add + RMSNorm: the sum bitwise equal to the tensor add; the norm
//!   within 1e-5 relative (f32), 1e-2 (f16) or 5e-2 (bf16) of the
//!   reference; a row the same bits alone or in a batch.
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use dsi_core::TokenId;
use dsi_kernels::gpu::add_rms_norm::add_rms_norm_reference;
use dsi_kernels::gpu::argmax::argmax_rows_reference;
use dsi_kernels::gpu::{add_rms_norm, argmax_rows};
use dsi_models::device::DeviceSpec;
use dsi_models::test_backends::runs_on;

/// Deterministic values in `[-4, 4]` on a grid of 1/64 (exact in f16).
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let h = (i ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (h % 513) as f32 / 64.0 - 4.0
        })
        .collect()
}

/// Rows whose maximum (8.0) is planted at up to three ids each, so every
/// row has a tie to break; some rows at id 0, some at the last id.
fn tied_logits(rows: usize, vocab: usize, seed: u64) -> Vec<f32> {
    let mut logits = values(rows * vocab, seed);
    for (r, row) in logits.chunks_mut(vocab).enumerate() {
        let spots = match r % 3 {
            0 => vec![vocab - 1, vocab / 2, vocab / 3],
            1 => vec![0, vocab - 1],
            _ => vec![(r * 7919 + 13) % vocab, (r * 104_729 + 5) % vocab],
        };
        for spot in spots {
            row[spot] = 8.0;
        }
    }
    logits
}

fn to_device<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    dtype: DType,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::<B, D>::from_data(TensorData::new(values, shape), device).cast(dtype)
}

fn host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().expect("f32")
}

fn ids<B: Backend>(t: Tensor<B, 1, Int>) -> Vec<TokenId> {
    let data = t.into_data().convert::<i64>();
    data.into_vec::<i64>()
        .expect("ints")
        .into_iter()
        .map(|v| v as TokenId)
        .collect()
}

/// The dtypes to run: f32, and f16 and bf16 where the device has them.
fn dtypes<B: Backend>(device: &B::Device) -> Vec<DType> {
    [DType::F32, DType::F16, DType::BF16]
        .into_iter()
        .filter(|&dtype| B::supports_dtype(device, dtype))
        .collect()
}

fn argmax_equals_the_host_rule<B: Backend>(device: &B::Device) {
    for dtype in dtypes::<B>(device) {
        for (rows, vocab) in [
            (1, 1),
            (1, 2),
            (2, 255),
            (6, 256),
            (6, 257),
            (9, 1000),
            (3, 4099),
            (2, 32_003),
        ] {
            let logits = to_device::<B, 2>(
                tied_logits(rows, vocab, vocab as u64),
                [rows, vocab],
                dtype,
                device,
            );
            // The host rule on exactly the values the device holds.
            let held = host_f32(logits.clone());
            let want: Vec<TokenId> = held.chunks(vocab).map(dsi_core::verify::argmax).collect();
            let got = argmax_rows(logits.clone()).expect("a CubeCL backend runs the kernel");
            assert_eq!(ids(got), want, "{dtype:?} {rows}x{vocab}");
            assert_eq!(
                ids(argmax_rows_reference(logits.clone())),
                want,
                "reference {dtype:?} {rows}x{vocab}"
            );
            // A column-narrowed view, as a session cut to its tokenizer's ids.
            if vocab > 3 {
                let narrow = vocab - 3;
                let want: Vec<TokenId> = held
                    .chunks(vocab)
                    .map(|row| dsi_core::verify::argmax(&row[..narrow]))
                    .collect();
                let got = argmax_rows(logits.narrow(1, 0, narrow)).expect("kernel");
                assert_eq!(ids(got), want, "narrowed {dtype:?} {rows}x{vocab}");
            }
        }
    }
}

fn add_rms_norm_matches_the_reference<B: Backend>(device: &B::Device) {
    for dtype in dtypes::<B>(device) {
        let tolerance = match dtype {
            DType::F32 => 1e-5,
            DType::F16 => 1e-2,
            _ => 5e-2,
        };
        for (rows, width) in [(1, 1), (3, 7), (8, 64), (2, 257), (5, 576), (2, 2048)] {
            let x = || to_device::<B, 2>(values(rows * width, 1), [rows, width], dtype, device);
            let delta = || to_device::<B, 2>(values(rows * width, 2), [rows, width], dtype, device);
            let weight = || to_device::<B, 1>(values(width, 3), [width], dtype, device);
            let eps = 1e-5;
            let (sum, normed) = add_rms_norm(x(), delta(), weight(), eps).expect("kernel");
            let (want_sum, want_normed) = add_rms_norm_reference(x(), delta(), weight(), eps);
            assert_eq!(
                host_f32(sum),
                host_f32(want_sum),
                "the sum is one add: {dtype:?} {rows}x{width}"
            );
            let (got, want) = (host_f32(normed.clone()), host_f32(want_normed));
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
                .fold(0.0f32, f32::max);
            assert!(
                worst <= tolerance,
                "{dtype:?} {rows}x{width}: relative error {worst} over {tolerance}"
            );
            // The last row alone: the same bits as in the batch.
            let last = |t: Tensor<B, 2>| t.narrow(0, rows - 1, 1);
            let (_, alone) = add_rms_norm(last(x()), last(delta()), weight(), eps).expect("kernel");
            assert_eq!(
                host_f32(alone),
                host_f32(last(normed)),
                "{dtype:?} {rows}x{width}"
            );
        }
    }
}

macro_rules! gpu_tests {
    ($name:ident, $backend:ty, $spec:expr, $device:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn argmax_equals_the_host_rule() {
                if runs_on($spec) {
                    super::argmax_equals_the_host_rule::<$backend>(&$device);
                }
            }

            #[test]
            fn add_rms_norm_matches_the_reference() {
                if runs_on($spec) {
                    super::add_rms_norm_matches_the_reference::<$backend>(&$device);
                }
            }
        }
    };
}

#[cfg(feature = "wgpu")]
gpu_tests!(
    wgpu,
    dsi_models::device::WgpuBackend,
    DeviceSpec::Wgpu(None),
    burn::backend::wgpu::WgpuDevice::DefaultDevice
);
#[cfg(feature = "cuda")]
gpu_tests!(
    cuda,
    dsi_models::device::CudaBackend,
    DeviceSpec::Cuda(0),
    burn::backend::cuda::CudaDevice::new(0)
);

/// The CPU backends have no GPU kernel: the entry points say so, and the
/// models keep their own path.
#[test]
fn cpu_backends_have_no_gpu_kernel() {
    let device = Default::default();
    let logits = Tensor::<dsi_models::device::CpuBackend, 2>::zeros([2, 5], &device);
    assert!(argmax_rows(logits.clone()).is_none());
    let weight = Tensor::zeros([5], &device);
    assert!(add_rms_norm(logits.clone(), logits, weight, 1e-5).is_none());
}
