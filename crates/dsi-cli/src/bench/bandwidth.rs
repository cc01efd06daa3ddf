//! The machine's memory copy bandwidth, measured the way STREAM's "copy"
//! counts it: bytes read plus bytes written, per second, on every core.

use std::time::Instant;

/// Best of `rounds` parallel copies of a buffer far larger than any cache,
/// in bytes per second.
pub(crate) fn copy_bandwidth(bytes: usize, rounds: usize) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let len = bytes / 4;
    let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let mut dst = vec![0f32; len];
    let chunk = len.div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for (s, d) in src.chunks(chunk).zip(dst.chunks_mut(chunk)) {
                scope.spawn(move || d.copy_from_slice(s));
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    (2 * len * 4) as f64 / best
}
