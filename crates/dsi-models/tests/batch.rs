//! `forward_batch`: several sequences in one forward, each against its own
//! cache, give each sequence the logits of its own forward alone, on every
//! backend built (`DSI_TEST_BACKENDS`), and a sequence fed in chunks of any
//! size gets the logits of its token-by-token forward, for a model of each
//! family's blocks (Llama, Qwen3's query/key norms, Phi-3's fused
//! projections and sliding window, StarCoder's LayerNorm, GELU and learned
//! positions). On `cpu` and
//! `ndarray` (fixed-order kernels, `Numerics::Invariant`) both hold bitwise,
//! also with host weights in every format (f32, f16, bf16, q8), and so do
//! the GPUs (the project's CubeCL kernels): wgpu in f32 and f16, CUDA in
//! f32, bf16 and f16. A member with bad input or
//! a raised flag gets its error and leaves its cache as it was; the others
//! proceed.

use burn::tensor::DType;
use burn::tensor::backend::Backend;
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_models::KvCache;
use dsi_models::checkpoint::Checkpoint;
use dsi_models::device::DeviceSpec;
use dsi_models::test_backends::runs_on;
use dsi_models::transformer::{BatchMember, LoadedModel, Precision, WeightFormat};
use std::path::Path;

/// Largest |difference| allowed, relative to the largest logit of the row
/// set (see `worst` for what each backend reaches).
const RELATIVE_TOLERANCE: f32 = 1e-5;

/// A fixture of each family's blocks (the sliding window of
/// `phi3-tied-window`, 16 positions, is crossed by the longer sequences).
const FAMILIES: &[&str] = &[
    "llama-gqa",
    "qwen3-qknorm",
    "phi3-tied-window",
    "starcoder-mqa",
];

fn load<B: Backend>(name: &str, device: &B::Device, precision: Precision) -> LoadedModel<B> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let checkpoint = Checkpoint::open(&dir).expect("fixture");
    LoadedModel::<B>::from_checkpoint(&checkpoint, device, precision, |_, _| {}).expect("model")
}

fn host<B: Backend>(t: burn::tensor::Tensor<B, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32")
}

/// A sequence's state before the batch: what its cache holds (fed token
/// by token), what it feeds next, and the logit rows it asks for.
struct Case {
    held: Vec<TokenId>,
    feed: Vec<TokenId>,
    rows: usize,
    capacity: usize,
}

fn tokens(seed: u32, n: usize) -> Vec<TokenId> {
    (0..n as u32)
        .map(|i| (seed * 37 + i * 11 + 3) % 96)
        .collect()
}

fn cases() -> Vec<Case> {
    let case = |held: usize, feed: usize, rows: usize, capacity: usize, seed: u32| Case {
        held: tokens(seed, held),
        feed: tokens(seed + 100, feed),
        rows,
        capacity,
    };
    vec![
        case(0, 12, 1, 64, 1), // a prefill
        case(9, 1, 1, 64, 2),  // a decode step
        case(5, 6, 6, 64, 3),  // a verification of k = 5 drafts
        case(0, 1, 1, 64, 4),  // a first token
        case(20, 2, 2, 22, 5), // a cache filled to capacity
        case(7, 3, 0, 64, 6),  // a prefill chunk that wants no logits
    ]
}

fn filled<B: Backend>(model: &LoadedModel<B>, case: &Case) -> KvCache<B> {
    let mut cache = model.new_cache(case.capacity);
    for &t in &case.held {
        model.forward(&[t], &mut cache).expect("fill");
    }
    cache
}

/// Max |batched - alone| over max |alone| for every prefix of the cases:
/// 1 to 6 members in one forward, over every family.
fn batched_equals_alone<B: Backend>(device: &B::Device, precision: Precision) -> f32 {
    FAMILIES
        .iter()
        .map(|name| batched_equals_alone_for::<B>(name, device, precision))
        .fold(0f32, f32::max)
}

fn batched_equals_alone_for<B: Backend>(
    name: &str,
    device: &B::Device,
    precision: Precision,
) -> f32 {
    let model = load::<B>(name, device, precision);
    let never = CancelFlag::new();
    let cases = cases();
    let alone: Vec<Vec<f32>> = cases
        .iter()
        .map(|case| {
            let mut cache = filled(&model, case);
            host(
                model
                    .forward_until(&case.feed, &mut cache, case.rows, &never)
                    .expect("alone"),
            )
        })
        .collect();
    let mut worst = 0f32;
    for members in 1..=cases.len() {
        let mut caches: Vec<KvCache<B>> =
            cases[..members].iter().map(|c| filled(&model, c)).collect();
        let batch = caches
            .iter_mut()
            .zip(&cases)
            .map(|(cache, case)| BatchMember {
                tokens: &case.feed,
                cache,
                rows: case.rows,
                cancel: &never,
            })
            .collect();
        let results = model.forward_batch(batch);
        assert_eq!(results.len(), members);
        for (i, result) in results.into_iter().enumerate() {
            let got = host(result.expect("batched"));
            let want = &alone[i];
            assert_eq!(got.len(), want.len(), "member {i} of {members}: rows");
            assert_eq!(got.len(), cases[i].rows * model.config.vocab_size);
            let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let diff = got
                .iter()
                .zip(want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            worst = worst.max(diff / scale);
            assert!(
                diff <= RELATIVE_TOLERANCE * scale,
                "{name} member {i} of {members}: max |diff| {diff} vs scale {scale}"
            );
            assert_eq!(
                caches[i].len(),
                cases[i].held.len() + cases[i].feed.len(),
                "member {i} of {members}: committed"
            );
        }
    }
    worst
}

/// A member with bad input or a raised flag gets its error and keeps its
/// cache; the others get their logits; all raised stops the forward.
fn failures_stay_with_their_member<B: Backend>(device: &B::Device, precision: Precision) {
    let model = load::<B>("llama-gqa", device, precision);
    let (never, raised) = (CancelFlag::new(), CancelFlag::new());
    raised.cancel();
    let mut caches: Vec<KvCache<B>> = (0..4).map(|_| model.new_cache(8)).collect();
    for cache in &mut caches {
        model.forward(&[1, 2], cache).expect("fill");
    }
    let feeds: [&[TokenId]; 4] = [&[3, 4], &[5, 100_000], &[6], &[7, 8, 9, 10, 11, 12, 13]];
    let flags = [&never, &never, &raised, &never];
    let batch = caches
        .iter_mut()
        .zip(feeds)
        .zip(flags)
        .map(|((cache, tokens), cancel)| BatchMember {
            tokens,
            cache,
            rows: 1,
            cancel,
        })
        .collect();
    let results = model.forward_batch(batch);
    assert!(results[0].is_ok(), "a healthy member is served");
    let errors: Vec<String> = results[1..]
        .iter()
        .map(|r| r.as_ref().expect_err("refused").to_string())
        .collect();
    assert!(errors[0].contains("100000"), "{}", errors[0]);
    assert!(errors[1].contains("cancel"), "{}", errors[1]);
    assert!(errors[2].contains("full"), "{}", errors[2]);
    let lens: Vec<usize> = caches.iter().map(KvCache::len).collect();
    assert_eq!(lens, [4, 2, 2, 2], "only the served member moved on");

    let batch = caches
        .iter_mut()
        .map(|cache| BatchMember {
            tokens: &[3],
            cache,
            rows: 1,
            cancel: &raised,
        })
        .collect();
    assert!(
        model
            .forward_batch(batch)
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.to_string().contains("cancel")))
    );
}

/// Max relative difference between a sequence's logits fed token by
/// token and fed in chunks of `chunk` tokens, over every family.
fn chunked_equals_stepwise<B: Backend>(
    device: &B::Device,
    precision: Precision,
    chunk: usize,
) -> f32 {
    FAMILIES
        .iter()
        .map(|name| chunked_equals_stepwise_for::<B>(name, device, precision, chunk))
        .fold(0f32, f32::max)
}

fn chunked_equals_stepwise_for<B: Backend>(
    name: &str,
    device: &B::Device,
    precision: Precision,
    chunk: usize,
) -> f32 {
    let model = load::<B>(name, device, precision);
    let never = CancelFlag::new();
    let sequence = tokens(9, 24);
    let mut cache = model.new_cache(64);
    let mut stepwise = Vec::new();
    for &t in &sequence {
        stepwise.extend(host(
            model
                .forward_until(&[t], &mut cache, 1, &never)
                .expect("step"),
        ));
    }
    let mut cache = model.new_cache(64);
    let mut chunked = Vec::new();
    for piece in sequence.chunks(chunk) {
        chunked.extend(host(
            model
                .forward_until(piece, &mut cache, piece.len(), &never)
                .expect("chunk"),
        ));
    }
    let scale = stepwise.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let diff = chunked
        .iter()
        .zip(&stepwise)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= RELATIVE_TOLERANCE * scale,
        "{name} chunks of {chunk}: {diff}"
    );
    diff / scale
}

macro_rules! backend_tests {
    ($module:ident, $backend:ty, $spec:expr, $device:expr, $precision:expr, $invariant:expr) => {
        mod $module {
            use super::*;

            /// `$invariant`: the backend promises bitwise equality; the
            /// others are held to the tolerance and report what they reach.
            #[test]
            fn every_member_gets_its_logits_alone() {
                if runs_on($spec) {
                    let worst = batched_equals_alone::<$backend>(&$device, $precision);
                    eprintln!(
                        "{}: batched vs alone, max relative difference {worst:e}{}",
                        $spec,
                        if worst == 0.0 { " (bitwise equal)" } else { "" }
                    );
                    if $invariant {
                        assert_eq!(worst, 0.0, "{}: batch-invariant numerics", $spec);
                    }
                }
            }

            #[test]
            fn chunked_logits_equal_token_by_token() {
                if runs_on($spec) {
                    for chunk in [2, 6, 24] {
                        let worst =
                            chunked_equals_stepwise::<$backend>(&$device, $precision, chunk);
                        eprintln!(
                            "{}: chunks of {chunk} vs token by token, max relative difference {worst:e}",
                            $spec
                        );
                        if $invariant {
                            assert_eq!(worst, 0.0, "{}: chunks of {chunk}", $spec);
                        }
                    }
                }
            }

            #[test]
            fn failures_stay_with_their_member() {
                if runs_on($spec) {
                    super::failures_stay_with_their_member::<$backend>(&$device, $precision);
                }
            }
        }
    };
}

backend_tests!(
    ndarray,
    dsi_models::device::NdarrayBackend,
    DeviceSpec::Ndarray,
    burn::backend::ndarray::NdArrayDevice::Cpu,
    DType::F32.into(),
    true
);
backend_tests!(
    flex,
    dsi_models::device::CpuBackend,
    DeviceSpec::Cpu,
    burn::backend::flex::FlexDevice,
    DType::F32.into(),
    true
);
// Host weights, as `dsi` loads `--dtype f32|f16|bf16|q8` on the CPU.
backend_tests!(
    flex_host_f32,
    dsi_models::device::CpuBackend,
    DeviceSpec::Cpu,
    burn::backend::flex::FlexDevice,
    Precision::host(WeightFormat::F32),
    true
);
backend_tests!(
    flex_host_f16,
    dsi_models::device::CpuBackend,
    DeviceSpec::Cpu,
    burn::backend::flex::FlexDevice,
    Precision::host(WeightFormat::F16),
    true
);
backend_tests!(
    flex_host_bf16,
    dsi_models::device::CpuBackend,
    DeviceSpec::Cpu,
    burn::backend::flex::FlexDevice,
    Precision::host(WeightFormat::Bf16),
    true
);
backend_tests!(
    flex_host_q8,
    dsi_models::device::CpuBackend,
    DeviceSpec::Cpu,
    burn::backend::flex::FlexDevice,
    Precision::host(WeightFormat::Q8),
    true
);
backend_tests!(
    ndarray_host_q8,
    dsi_models::device::NdarrayBackend,
    DeviceSpec::Ndarray,
    burn::backend::ndarray::NdArrayDevice::Cpu,
    Precision::host(WeightFormat::Q8),
    true
);
// The GPUs run the project's fixed-order kernels (`dsi_kernels::gpu`):
// bitwise in every dtype.
#[cfg(feature = "wgpu")]
backend_tests!(
    wgpu,
    dsi_models::device::WgpuBackend,
    DeviceSpec::Wgpu(None),
    burn::backend::wgpu::WgpuDevice::DefaultDevice,
    DType::F32.into(),
    true
);
#[cfg(feature = "wgpu")]
backend_tests!(
    wgpu_f16,
    dsi_models::device::WgpuBackend,
    DeviceSpec::Wgpu(None),
    burn::backend::wgpu::WgpuDevice::DefaultDevice,
    DType::F16.into(),
    true
);
#[cfg(feature = "cuda")]
backend_tests!(
    cuda,
    dsi_models::device::CudaBackend,
    DeviceSpec::Cuda(0),
    burn::backend::cuda::CudaDevice::new(0),
    DType::F32.into(),
    true
);
#[cfg(feature = "cuda")]
backend_tests!(
    cuda_bf16,
    dsi_models::device::CudaBackend,
    DeviceSpec::Cuda(0),
    burn::backend::cuda::CudaDevice::new(0),
    DType::BF16.into(),
    true
);
#[cfg(feature = "cuda")]
backend_tests!(
    cuda_f16,
    dsi_models::device::CudaBackend,
    DeviceSpec::Cuda(0),
    burn::backend::cuda::CudaDevice::new(0),
    DType::F16.into(),
    true
);
