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
//! - decode attention: 1 to 9 query rows over caches of 0 to 300 earlier
//!   positions in one, two or three segments (one narrowed from a larger
//!   buffer, as the cache hands them), grouped-query and multi-query
//!   heads, head widths 8 to 128, with and without a sliding window:
//!   within 1e-5 (f32) or 1e-2 (f16, bf16 2e-2) of the largest output.
//! - fixed-order product: within 1e-5 (f32) or 1e-2 (f16, bf16 2e-2) of
//!   burn's product relative to the largest output, on widths that are
//!   and are not multiples of the cube, 1 to 40 rows (past one row block),
//!   weights `[in, out]` row-major and through a transposed view; and a
//!   row the same bits alone as among 40.
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use dsi_core::TokenId;
use dsi_kernels::gpu::add_rms_norm::add_rms_norm_reference;
use dsi_kernels::gpu::argmax::argmax_rows_reference;
use dsi_kernels::gpu::attention::decode_attention_reference;
use dsi_kernels::gpu::matmul::matmul_reference;
use dsi_kernels::gpu::{
    DecodeQueries, add_rms_norm, argmax_rows, decode_attention, matmul_fixed_order, rms_norm,
};
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

fn decode_attention_matches_the_reference<B: Backend>(device: &B::Device) {
    struct Case {
        heads: usize,
        kv_heads: usize,
        dim: usize,
        rows: usize,
        prefix: usize,
        cuts: &'static [usize],
        window: Option<usize>,
    }
    let cases = [
        // An empty cache: the rows see only each other.
        Case {
            heads: 4,
            kv_heads: 2,
            dim: 8,
            rows: 3,
            prefix: 0,
            cuts: &[],
            window: None,
        },
        Case {
            heads: 4,
            kv_heads: 2,
            dim: 64,
            rows: 1,
            prefix: 40,
            cuts: &[],
            window: None,
        },
        Case {
            heads: 8,
            kv_heads: 2,
            dim: 64,
            rows: 6,
            prefix: 130,
            cuts: &[64],
            window: None,
        },
        Case {
            heads: 3,
            kv_heads: 1,
            dim: 32,
            rows: 9,
            prefix: 70,
            cuts: &[16, 48],
            window: None,
        },
        Case {
            heads: 2,
            kv_heads: 2,
            dim: 128,
            rows: 2,
            prefix: 300,
            cuts: &[256],
            window: None,
        },
        Case {
            heads: 4,
            kv_heads: 1,
            dim: 16,
            rows: 4,
            prefix: 50,
            cuts: &[33],
            window: Some(7),
        },
        Case {
            heads: 2,
            kv_heads: 1,
            dim: 24,
            rows: 1,
            prefix: 33,
            cuts: &[],
            window: Some(40),
        },
    ];
    for dtype in dtypes::<B>(device) {
        let tolerance = match dtype {
            DType::F32 => 1e-5,
            DType::F16 => 1e-2,
            _ => 2e-2,
        };
        for (n, case) in cases.iter().enumerate() {
            let total = case.prefix + case.rows;
            let q = to_device::<B, 3>(
                values(case.heads * case.rows * case.dim, 10 + n as u64)
                    .into_iter()
                    .map(|v| v / 4.0)
                    .collect(),
                [case.heads, case.rows, case.dim],
                dtype,
                device,
            );
            // Keys and values in a buffer with room past the end, cut into
            // segments at `cuts`: the last one is a narrowed view.
            let room = total + 5;
            let buffer = |seed: u64| {
                to_device::<B, 3>(
                    values(case.kv_heads * room * case.dim, seed)
                        .into_iter()
                        .map(|v| v / 4.0)
                        .collect(),
                    [case.kv_heads, room, case.dim],
                    dtype,
                    device,
                )
            };
            let (keys, vals) = (buffer(20 + n as u64), buffer(30 + n as u64));
            let mut bounds: Vec<usize> = vec![0];
            bounds.extend(case.cuts.iter().copied());
            bounds.push(total);
            let segments: Vec<(Tensor<B, 3>, Tensor<B, 3>)> = bounds
                .windows(2)
                .map(|w| {
                    let part = |t: &Tensor<B, 3>| t.clone().narrow(1, w[0], w[1] - w[0]);
                    (part(&keys), part(&vals))
                })
                .collect();
            let at = DecodeQueries {
                prefix: case.prefix,
                window: case.window,
                scale: (case.dim as f32).powf(-0.5),
            };
            let got = decode_attention(q.clone(), &segments, at).expect("kernel");
            let want = decode_attention_reference(q, &segments, at);
            assert_eq!(got.dims(), want.dims());
            let (got, want) = (host_f32(got), host_f32(want));
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= tolerance * scale,
                "{dtype:?} case {n}: max |diff| {worst} over {tolerance} x {scale}"
            );
        }
    }
}

fn matmul_matches_the_reference<B: Backend>(device: &B::Device) {
    for dtype in dtypes::<B>(device) {
        let tolerance = match dtype {
            DType::F32 => 1e-5,
            DType::F16 => 1e-2,
            _ => 2e-2,
        };
        for (rows, inner, out) in [
            (1, 1, 1),
            (1, 64, 3),
            (3, 100, 257),
            (16, 576, 64),
            (40, 129, 70),
        ] {
            let x = to_device::<B, 2>(values(rows * inner, 5), [rows, inner], dtype, device);
            // `[in, out]` row-major, as a GPU model uploads its weights, and
            // a transposed view of `[out, in]`, as a tied LM head reads them.
            let contiguous = to_device::<B, 2>(values(inner * out, 6), [inner, out], dtype, device);
            let stored = to_device::<B, 2>(values(out * inner, 7), [out, inner], dtype, device);
            for w in [contiguous, stored.transpose()] {
                let got = matmul_fixed_order(x.clone(), w.clone()).expect("kernel");
                let want = matmul_reference(x.clone(), w.clone());
                let (got, want) = (host_f32(got), host_f32(want));
                let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= tolerance * scale,
                    "{dtype:?} {rows}x{inner}x{out}: max |diff| {worst} over {tolerance} x {scale}"
                );
                let alone =
                    matmul_fixed_order(x.clone().narrow(0, rows - 1, 1), w).expect("kernel");
                assert_eq!(
                    host_f32(alone),
                    got[(rows - 1) * out..],
                    "{dtype:?} {rows}x{inner}x{out}: the last row alone"
                );
            }
        }
        // Without a residual, the norm is the fused kernel's normalization.
        let x = to_device::<B, 2>(values(3 * 96, 8), [3, 96], dtype, device);
        let weight = to_device::<B, 1>(values(96, 9), [96], dtype, device);
        let zero = x.zeros_like();
        let got = rms_norm(x.clone(), weight.clone(), 1e-6).expect("kernel");
        let (_, want) = add_rms_norm(x, zero, weight, 1e-6).expect("kernel");
        assert_eq!(host_f32(got), host_f32(want), "{dtype:?}: rms_norm");
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
            fn decode_attention_matches_the_reference() {
                if runs_on($spec) {
                    super::decode_attention_matches_the_reference::<$backend>(&$device);
                }
            }

            #[test]
            fn matmul_matches_the_reference() {
                if runs_on($spec) {
                    super::matmul_matches_the_reference::<$backend>(&$device);
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
