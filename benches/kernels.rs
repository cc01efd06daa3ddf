//! The project's CPU products alone, against the machine's read bandwidth:
//! the 121 products of one SmolLM-135M decode step (30 layers of qkv, o,
//! gate+up and down, then the LM head), back to back at batch 1, in every
//! weight format, alternating formats, best of several rounds. What a
//! model's decode loses beyond this is outside the products.
//!
//! Then a prefill's products: the layers' products over
//! [`PREFILL_ROWS`] rows at once, in GFLOP/s (compute-bound, so against
//! the machine's FMA peak rather than its bandwidth).
//!
//! `cargo bench --bench kernels` (`DSI_BENCH_ROUNDS`, default 5).

// A benchmark's report is its output.
#![allow(clippy::print_stdout)]

use dsi_kernels::bandwidth;
use dsi_kernels::isa::Isa;
use dsi_kernels::matmul::matmul;
use dsi_kernels::weights::{Format, Weights};
use std::time::Instant;

const HIDDEN: usize = 576;
const LAYER: [(usize, usize); 4] = [
    (960, HIDDEN),
    (HIDDEN, HIDDEN),
    (3072, HIDDEN),
    (HIDDEN, 1536),
];
const VOCAB: usize = 49152;
const LAYERS: usize = 30;
/// Rows of the prefill products (the prefill of 128 tokens).
const PREFILL_ROWS: usize = 128;

/// One decode step's weight matrices in `format`.
fn step(format: Format) -> Vec<Weights> {
    let value = |i: usize| ((i * 7919 % 1001) as f32 - 500.0) * 4e-5;
    let mut shapes: Vec<(usize, usize)> = (0..LAYERS).flat_map(|_| LAYER).collect();
    shapes.push((VOCAB, HIDDEN));
    shapes
        .into_iter()
        .enumerate()
        .map(|(n, (out, k))| {
            let values = (0..out * k).map(|i| value(i + n)).collect();
            Weights::new(values, out, k, format)
        })
        .collect()
}

fn main() {
    let rounds: usize = std::env::var("DSI_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let formats = [Format::F32, Format::F16, Format::Bf16, Format::Q8];
    let steps: Vec<Vec<Weights>> = formats.iter().map(|&f| step(f)).collect();
    let x: Vec<f32> = (0..1536).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut best = vec![f64::INFINITY; formats.len()];
    // The bandwidth too in every round, best of all: the bound and the
    // products it bounds saw the same machine.
    let mut read = 0f64;
    for _ in 0..rounds {
        read = read.max(bandwidth::measure(512 << 20, 1).read);
        for (weights, best) in steps.iter().zip(&mut best) {
            let start = Instant::now();
            for w in weights {
                let [_, k] = w.shape();
                std::hint::black_box(matmul(&x[..k], 1, w.matrix(), threads));
            }
            *best = best.min(start.elapsed().as_secs_f64());
        }
    }
    println!(
        "one SmolLM-135M decode step's products, batch 1, {threads} threads, {} path, best of {rounds}; read bandwidth {:.2} GB/s",
        Isa::active(),
        read / 1e9
    );
    println!("format  MB/step  ms/step  GB/s  of read bandwidth");
    for ((format, weights), secs) in formats.iter().zip(&steps).zip(&best) {
        let bytes: usize = weights.iter().map(Weights::bytes).sum();
        println!(
            "{:<6} {:>8.1} {:>8.1} {:>5.1} {:>8.0}%",
            format.to_string(),
            bytes as f64 / 1e6,
            secs * 1e3,
            bytes as f64 / secs / 1e9,
            bytes as f64 / secs / read * 100.0
        );
    }
    prefill(&formats, &steps, rounds, threads);
}

/// The layers' products (not the LM head: a prefill needs one row of
/// logits) over [`PREFILL_ROWS`] rows, best of `rounds`, in GFLOP/s.
fn prefill(formats: &[Format], steps: &[Vec<Weights>], rounds: usize, threads: usize) {
    let x: Vec<f32> = (0..PREFILL_ROWS * 1536)
        .map(|i| (i % 17) as f32 * 0.01)
        .collect();
    let mut best = vec![f64::INFINITY; formats.len()];
    for _ in 0..rounds {
        for (weights, best) in steps.iter().zip(&mut best) {
            let layers = &weights[..weights.len() - 1];
            let start = Instant::now();
            for w in layers {
                let [_, k] = w.shape();
                let x = &x[..PREFILL_ROWS * k];
                std::hint::black_box(matmul(x, PREFILL_ROWS, w.matrix(), threads));
            }
            *best = best.min(start.elapsed().as_secs_f64());
        }
    }
    println!("prefill products, {PREFILL_ROWS} rows, layers only, best of {rounds}");
    println!("format  ms  GFLOP/s");
    for ((format, weights), secs) in formats.iter().zip(steps).zip(&best) {
        let flops: usize = weights[..weights.len() - 1]
            .iter()
            .map(|w| 2 * PREFILL_ROWS * w.shape().iter().product::<usize>())
            .sum();
        println!(
            "{:<6} {:>6.1} {:>6.1}",
            format.to_string(),
            secs * 1e3,
            flops as f64 / secs / 1e9
        );
    }
}
