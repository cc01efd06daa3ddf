//! The project's GPU kernels (`dsi_kernels::gpu`) against their plain-tensor
//! references on wgpu (lavapipe on a machine without a GPU), in one run:
//!
//! 1. Per call, at the shapes of a SmolLM-135M decode step (hidden 576,
//!    9 query and 3 key/value heads of 64, MLP 1536, vocabulary 49152) with
//!    a verification's 6 rows: time per call of each kernel and its
//!    reference (best of several rounds), and for the greedy verification
//!    the bytes read back (the ids against the logits, also at a 128k
//!    vocabulary).
//! 2. Per forward, the bundled target (`models/pystd/target`) on the same
//!    device: a decode step (1 row) and a verification (6 rows) after a
//!    64-token prompt, with the kernels on (fixed-order products, fused
//!    norms, decode attention, maxima read back) and off (burn's ops, the
//!    logits read back), in f32 and f16.
//!
//! `cargo bench --bench gpu_kernels` (`DSI_BENCH_ROUNDS`, default 5).

#![allow(clippy::print_stdout)]

// Loads on wgpu itself: the shared CPU loader goes unused here.
#[allow(dead_code)]
mod common;

use common::{bundled, env_or};
use dsi::core::cancel::CancelFlag;
use dsi::core::model::{Feed, KvModel, KvState, Readback, Rows};
use dsi::models::Session;
use dsi::models::checkpoint::Checkpoint;
use dsi::models::device::{Backend, DType, DeviceSpec, WgpuBackend, probe};
use dsi::models::transformer::LoadedModel;
use dsi_kernels::gpu;
use dsi_kernels::gpu::add_rms_norm::add_rms_norm_reference;
use dsi_kernels::gpu::argmax::argmax_rows_reference;
use dsi_kernels::gpu::attention::{DecodeQueries, decode_attention_reference};
use dsi_kernels::gpu::matmul::matmul_reference;
use std::sync::Arc;
use std::time::{Duration, Instant};

type B = WgpuBackend;
type Device = burn::backend::wgpu::WgpuDevice;
type T<const D: usize> = burn::tensor::Tensor<B, D>;

const ROWS: usize = 6;
const HIDDEN: usize = 576;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;
const MLP: usize = 1536;
const VOCAB: usize = 49_152;
const CONTEXT: usize = 512;

fn main() {
    let rounds = env_or("DSI_BENCH_ROUNDS", 5);
    let adapter = probe(DeviceSpec::Wgpu(None)).expect("a wgpu adapter");
    println!("device: {adapter}\n");
    let device = Device::default();
    per_call(&device, rounds);
    per_forward(&device, rounds);
}

/// Best time of `rounds` rounds of `calls` calls each, the device synced.
fn best(device: &Device, rounds: usize, calls: usize, mut f: impl FnMut()) -> Duration {
    f();
    B::sync(device).expect("sync");
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            B::sync(device).expect("sync");
            start.elapsed() / calls as u32
        })
        .min()
        .expect("rounds")
}

fn random<const D: usize>(shape: [usize; D], dtype: DType, device: &Device) -> T<D> {
    T::<D>::random(
        shape,
        burn::tensor::Distribution::Uniform(-1.0, 1.0),
        device,
    )
    .cast(dtype)
}

fn row(name: &str, kernel: Duration, reference: Duration) {
    println!(
        "  {name:<34} {:>9.1} us  {:>9.1} us  {:>6.2}x",
        kernel.as_secs_f64() * 1e6,
        reference.as_secs_f64() * 1e6,
        reference.as_secs_f64() / kernel.as_secs_f64()
    );
}

fn per_call(device: &Device, rounds: usize) {
    for dtype in [DType::F32, DType::F16] {
        println!("per call, {dtype:?}, {ROWS} rows:");
        println!(
            "  {:<34} {:>12}  {:>12}  {:>7}",
            "kernel", "kernel", "reference", "ratio"
        );
        let calls = 10;
        let logits = random([ROWS, VOCAB], dtype, device);
        let k = best(device, rounds, calls, || {
            let _ = gpu::argmax_rows(logits.clone()).expect("kernel");
        });
        let r = best(device, rounds, calls, || {
            let _ = argmax_rows_reference(logits.clone());
        });
        row("argmax (verification)", k, r);
        let read_ids = best(device, rounds, calls, || {
            let _ = gpu::argmax_rows(logits.clone())
                .expect("kernel")
                .into_data();
        });
        let read_logits = best(device, rounds, calls, || {
            let _ = logits.clone().into_data();
        });
        row("  with readback: ids vs logits", read_ids, read_logits);

        let (x, delta) = (
            random([ROWS, HIDDEN], dtype, device),
            random([ROWS, HIDDEN], dtype, device),
        );
        let weight = random([HIDDEN], dtype, device);
        let k = best(device, rounds, calls, || {
            let _ = gpu::add_rms_norm(x.clone(), delta.clone(), weight.clone(), 1e-5);
        });
        let r = best(device, rounds, calls, || {
            let _ = add_rms_norm_reference(x.clone(), delta.clone(), weight.clone(), 1e-5);
        });
        row("add + RMSNorm", k, r);

        let q = random([HEADS, ROWS, HEAD_DIM], dtype, device);
        let segment = (
            random([KV_HEADS, CONTEXT, HEAD_DIM], dtype, device),
            random([KV_HEADS, CONTEXT, HEAD_DIM], dtype, device),
        );
        let at = DecodeQueries {
            prefix: CONTEXT - ROWS,
            window: None,
            scale: (HEAD_DIM as f32).powf(-0.5),
        };
        let segments = [segment];
        let k = best(device, rounds, calls, || {
            let _ = gpu::decode_attention(q.clone(), &segments, at);
        });
        let r = best(device, rounds, calls, || {
            let _ = decode_attention_reference(q.clone(), &segments, at);
        });
        row(&format!("decode attention ({CONTEXT} keys)"), k, r);

        for (name, out, inner) in [
            ("qkv product", (HEADS + 2 * KV_HEADS) * HEAD_DIM, HIDDEN),
            ("gate+up product", 2 * MLP, HIDDEN),
            ("down product", HIDDEN, MLP),
            ("LM head", VOCAB, HIDDEN),
        ] {
            let x = random([ROWS, inner], dtype, device);
            // `[in, out]` row-major, as a GPU model uploads its weights.
            let w = random([inner, out], dtype, device);
            let k = best(device, rounds, calls, || {
                let _ = gpu::matmul_fixed_order(x.clone(), w.clone());
            });
            let r = best(device, rounds, calls, || {
                let _ = matmul_reference(x.clone(), w.clone());
            });
            row(&format!("{name} {out}x{inner} (fixed order)"), k, r);
        }
        for vocab in [VOCAB, 128_256] {
            println!(
                "  bytes read back per verification, vocabulary {vocab}: {} (ids) vs {} (f32 logits)",
                ROWS * 4,
                ROWS * vocab * 4
            );
        }
        println!();
    }
}

fn per_forward(device: &Device, rounds: usize) {
    let dir = bundled().join("target");
    let checkpoint = Checkpoint::open(&dir).expect("the bundled target");
    let prompt: Vec<u32> = (0..64).map(|i| (i * 37 % 4000) as u32 + 10).collect();
    for dtype in [DType::F32, DType::F16] {
        let model = Arc::new(
            LoadedModel::<B>::from_checkpoint(&checkpoint, device, dtype, |_, _| {})
                .expect("the bundled target on wgpu"),
        );
        println!("per forward, bundled target (6 layers, hidden 256, vocabulary 4096), {dtype:?}:");
        println!(
            "  {:<34} {:>12}  {:>12}  {:>7}",
            "forward", "kernels on", "kernels off", "ratio"
        );
        for rows in [1, ROWS] {
            let mut times = Vec::new();
            let mut read = Vec::new();
            for on in [true, false] {
                gpu::set_enabled(on);
                let mut session = Session::new(Arc::clone(&model), 256);
                let cancel = CancelFlag::new();
                fn feed<'a>(
                    tokens: &'a [u32],
                    rows: usize,
                    readback: Readback,
                    cancel: &'a CancelFlag,
                ) -> Feed<'a> {
                    Feed {
                        seq: 1,
                        tokens,
                        rows,
                        cancel,
                        readback,
                    }
                }
                session.forward(&[feed(&prompt, 1, Readback::Logits, &cancel)]);
                let readback = if on {
                    Readback::Argmax
                } else {
                    Readback::Logits
                };
                let step: Vec<u32> = (0..rows as u32).map(|i| 100 + i).collect();
                let mut bytes = 0;
                let time = best(device, rounds, 5, || {
                    let out = session.forward(&[feed(&step, rows, readback, &cancel)]);
                    bytes = match out.into_iter().next() {
                        Some(Ok(Rows::Argmax(ids))) => ids.len() * 4,
                        Some(Ok(Rows::Logits(logits))) => logits.len() * 4,
                        other => panic!("forward failed: {other:?}"),
                    };
                    session.truncate(1, prompt.len());
                });
                times.push(time);
                read.push(bytes);
            }
            gpu::set_enabled(true);
            let what = if rows == 1 {
                "decode step".to_string()
            } else {
                format!("verification ({rows} rows)")
            };
            row(&what, times[0], times[1]);
            println!("  {:<34} {:>9} B  {:>9} B", "  read back", read[0], read[1]);
        }
        println!();
    }
}
