//! The machine's memory bandwidth, measured in the same run as what it
//! bounds (a decode step reads every weight once).
//!
//! - copy: `memcpy` of a buffer far larger than any cache, on every core,
//!   as bytes copied per second (the `mbw` convention; STREAM would count
//!   the read and the write, twice this figure);
//! - read: a parallel sum over the same buffer, bytes read per second, which
//!   is what streaming weights through a matrix-vector product needs.

use std::time::Instant;

/// Both bandwidths, bytes per second.
#[derive(Debug, Clone, Copy)]
pub struct Bandwidth {
    /// Bytes copied per second.
    pub copy: f64,
    /// Bytes read per second.
    pub read: f64,
}

/// Best of `rounds` for each measurement over `bytes`-sized buffers.
pub fn measure(bytes: usize, rounds: usize) -> Bandwidth {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let len = bytes / 4;
    let src: Vec<f32> = (0..len).map(|i| (i % 1024) as f32).collect();
    let mut dst = vec![0f32; len];
    let chunk = len.div_ceil(threads);

    let mut copy_best = f64::INFINITY;
    let mut read_best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for (s, d) in src.chunks(chunk).zip(dst.chunks_mut(chunk)) {
                scope.spawn(move || d.copy_from_slice(s));
            }
        });
        copy_best = copy_best.min(start.elapsed().as_secs_f64());

        let start = Instant::now();
        let total: f32 = std::thread::scope(|scope| {
            let parts: Vec<_> = src
                .chunks(chunk)
                .map(|s| scope.spawn(move || sum8(s)))
                .collect();
            parts.into_iter().map(|p| p.join().unwrap_or(0.0)).sum()
        });
        read_best = read_best.min(start.elapsed().as_secs_f64());
        std::hint::black_box(total);
    }
    std::hint::black_box(&dst);
    Bandwidth {
        copy: bytes as f64 / copy_best,
        read: bytes as f64 / read_best,
    }
}

/// A sum with eight independent accumulators, so it is bound by memory, not
/// by the latency of one addition chain.
fn sum8(values: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}
