//! `y = x wᵀ` for `x` `[rows, k]` and `w` `[out, k]` (a Hugging Face
//! `[out, in]` weight as stored), both row-major: `y[r][o] = x[r] · w[o]`.
//!
//! Every output element is one dot product of two contiguous rows, reduced
//! in a fixed order ([`LANES`] interleaved partial sums, then a fixed tree,
//! then the tail), so a row's result is the same bits whatever the number
//! of rows and threads. Threads split the output columns; each weight row
//! is read from memory once per call and used for every input row while it
//! is in cache, which is what makes a batch of rows cost little more than
//! one when the product is bandwidth-bound.
//!
//! On x86-64 with AVX2 and FMA (detected once per call) the same order runs
//! with fused multiply-adds: results differ from the portable path in the
//! last bits, but one machine always takes one path.

use rayon::prelude::*;

/// Partial sums per dot product: two 8-lane AVX registers.
pub const LANES: usize = 16;
/// Output columns one thread takes at least.
const MIN_COLUMNS_PER_TASK: usize = 64;

/// `y = x wᵀ`, `[rows, out]` row-major, over `threads` threads.
///
/// # Panics
/// When `x` is not `rows * k` long or `w` not `out * k` long.
pub fn matmul(x: &[f32], rows: usize, w: &[f32], out: usize, k: usize, threads: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * k, "x must be [rows, k]");
    assert_eq!(w.len(), out * k, "w must be [out, k]");
    if rows == 0 || out == 0 {
        return Vec::new();
    }
    let fused = fused_available();
    // Columns per task: at least a few dozen, at most an even share.
    let per_task = out
        .div_ceil(threads.max(1))
        .max(MIN_COLUMNS_PER_TASK)
        .min(out);
    // Transposed output, `[out, rows]`: each task owns whole columns.
    let mut yt = vec![0f32; out * rows];
    let task = |(i, yt): (usize, &mut [f32])| {
        let first = i * per_task;
        let columns = yt.len() / rows;
        let w = &w[first * k..(first + columns) * k];
        columns_of(fused, x, rows, w, k, yt);
    };
    if per_task >= out {
        task((0, &mut yt));
    } else {
        yt.par_chunks_mut(per_task * rows)
            .enumerate()
            .for_each(task);
    }
    if rows == 1 {
        return yt;
    }
    let mut y = vec![0f32; rows * out];
    for (o, column) in yt.chunks_exact(rows).enumerate() {
        for (r, &value) in column.iter().enumerate() {
            y[r * out + o] = value;
        }
    }
    y
}

/// Whether this machine runs the fused path.
fn fused_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `yt[o][r] = x[r] · w[o]` for the weight rows in `w`.
fn columns_of(fused: bool, x: &[f32], rows: usize, w: &[f32], k: usize, yt: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: the CPU has AVX2 and FMA (checked by `fused_available`),
        // the only requirement of a `target_feature` function.
        #[allow(unsafe_code)]
        unsafe {
            columns_fused(x, rows, w, k, yt);
        }
        return;
    }
    let _ = fused;
    columns_portable(x, rows, w, k, yt);
}

/// [`columns_portable`] with AVX2 fused multiply-adds, four input rows per pass
/// over a weight row so each weight load feeds four products. Every
/// element still accumulates its own 16 lanes in `k` order, so grouping
/// rows by four changes no bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn columns_fused(x: &[f32], rows: usize, w: &[f32], k: usize, yt: &mut [f32]) {
    let groups = rows / 4 * 4;
    for (weights, column) in w.chunks_exact(k).zip(yt.chunks_exact_mut(rows)) {
        for (r, y) in (0..groups).step_by(4).zip(column.chunks_exact_mut(4)) {
            let input = |i: usize| &x[(r + i) * k..(r + i + 1) * k];
            y.copy_from_slice(&fused::dot4(
                [input(0), input(1), input(2), input(3)],
                weights,
            ));
        }
        for r in groups..rows {
            column[r] = fused::dot(&x[r * k..(r + 1) * k], weights);
        }
    }
}

/// The fused dot products, in the lane order of [`dot`].
#[cfg(target_arch = "x86_64")]
mod fused {
    use super::LANES;
    use std::arch::x86_64::{
        __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    /// Eight lanes from `values[at..at + 8]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load(values: &[f32], at: usize) -> __m256 {
        let lanes = &values[at..at + 8];
        // SAFETY: `lanes` holds 8 f32s (the slice above is bounds-checked);
        // the load is unaligned.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_loadu_ps(lanes.as_ptr())
        }
    }

    /// `x · w`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(x: &[f32], w: &[f32]) -> f32 {
        let whole = w.len() / LANES * LANES;
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut at = 0;
        while at < whole {
            lo = _mm256_fmadd_ps(load(x, at), load(w, at), lo);
            hi = _mm256_fmadd_ps(load(x, at + 8), load(w, at + 8), hi);
            at += LANES;
        }
        finish(lo, hi, &x[whole..], &w[whole..])
    }

    /// The lanes of `lo` and `hi` as [`super::dot`]'s sixteen, reduced by
    /// its tree and tail.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn finish(lo: __m256, hi: __m256, x: &[f32], w: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let (low, high) = acc.split_at_mut(8);
        // SAFETY: each half holds 8 f32s; the stores are unaligned.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_storeu_ps(low.as_mut_ptr(), lo);
            _mm256_storeu_ps(high.as_mut_ptr(), hi);
        }
        super::finish::<true>(acc, x, w)
    }

    /// `xs[i] · w` for four rows at once.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot4(xs: [&[f32]; 4], w: &[f32]) -> [f32; 4] {
        let whole = w.len() / LANES * LANES;
        let mut lo = [_mm256_setzero_ps(); 4];
        let mut hi = [_mm256_setzero_ps(); 4];
        let mut at = 0;
        while at < whole {
            let (w0, w1) = (load(w, at), load(w, at + 8));
            for i in 0..4 {
                lo[i] = _mm256_fmadd_ps(load(xs[i], at), w0, lo[i]);
                hi[i] = _mm256_fmadd_ps(load(xs[i], at + 8), w1, hi[i]);
            }
            at += LANES;
        }
        std::array::from_fn(|i| finish(lo[i], hi[i], &xs[i][whole..], &w[whole..]))
    }
}

/// `yt[o][r] = x[r] · w[o]`, portable.
fn columns_portable(x: &[f32], rows: usize, w: &[f32], k: usize, yt: &mut [f32]) {
    for (weights, column) in w.chunks_exact(k).zip(yt.chunks_exact_mut(rows)) {
        for (input, y) in x.chunks_exact(k).zip(column.iter_mut()) {
            *y = dot_portable(input, weights);
        }
    }
}

/// `a · b` in the fixed order without fused multiply-adds, on every
/// machine.
pub(crate) fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot::<false>(a, b)
}

/// `a · b` in the fixed order: [`LANES`] interleaved partial sums, a fixed
/// tree over them, then the tail in sequence.
#[inline(always)]
fn dot<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let whole = a.len() / LANES * LANES;
    for (ca, cb) in a[..whole]
        .chunks_exact(LANES)
        .zip(b[..whole].chunks_exact(LANES))
    {
        // Fixed-size arrays let the compiler keep `acc` in vector registers.
        let (ca, cb): (&[f32; LANES], &[f32; LANES]) = match (ca.try_into(), cb.try_into()) {
            (Ok(ca), Ok(cb)) => (ca, cb),
            _ => unreachable!("chunks_exact yields LANES elements"),
        };
        acc = std::array::from_fn(|lane| {
            if FUSED {
                ca[lane].mul_add(cb[lane], acc[lane])
            } else {
                acc[lane] + ca[lane] * cb[lane]
            }
        });
    }
    finish::<FUSED>(acc, &a[whole..], &b[whole..])
}

/// The fixed tree over the lanes, then the tail in sequence.
#[inline(always)]
fn finish<const FUSED: bool>(mut acc: [f32; LANES], a: &[f32], b: &[f32]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for lane in 0..width {
            acc[lane] += acc[lane + width];
        }
        width /= 2;
    }
    let mut sum = acc[0];
    for (&x, &y) in a.iter().zip(b) {
        sum = if FUSED {
            x.mul_add(y, sum)
        } else {
            sum + x * y
        };
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The plain reference: one sequential sum per element, in f64.
    fn reference(x: &[f32], rows: usize, w: &[f32], out: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * out];
        for r in 0..rows {
            for o in 0..out {
                let sum: f64 = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(w[o * k + i]))
                    .sum();
                y[r * out + o] = sum as f32;
            }
        }
        y
    }

    #[test]
    fn agrees_with_the_plain_reference() {
        for (rows, out, k) in [
            (1, 1, 1),
            (1, 300, 576),
            (3, 130, 77),
            (64, 257, 256),
            (5, 9, 15),
        ] {
            let x = values(rows * k, 1);
            let w = values(out * k, 2);
            for threads in [1, 2, 7] {
                let got = matmul(&x, rows, &w, out, k, threads);
                let want = reference(&x, rows, &w, out, k);
                for (g, e) in got.iter().zip(&want) {
                    assert!(
                        (g - e).abs() <= 1e-5 * (k as f32).sqrt(),
                        "{rows}x{out}x{k} on {threads} threads: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_is_the_same_bits_at_every_row_count_and_thread_count() {
        let (out, k) = (200, 300);
        let w = values(out * k, 3);
        let x = values(64 * k, 4);
        let alone = matmul(&x[..k], 1, &w, out, k, 1);
        for rows in [1, 2, 7, 16, 64] {
            for threads in [1, 2, 3] {
                let y = matmul(&x[..rows * k], rows, &w, out, k, threads);
                assert_eq!(
                    y[..out].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "row 0 among {rows} rows on {threads} threads"
                );
            }
        }
        // And any row, wherever it sits in the batch.
        let batch = matmul(&x[..16 * k], 16, &w, out, k, 2);
        let tenth = matmul(&x[10 * k..11 * k], 1, &w, out, k, 1);
        assert_eq!(&batch[10 * out..11 * out], &tenth[..]);
    }

    /// The AVX2 path runs the portable order with fused multiply-adds:
    /// bitwise equal to the scalar fused dot product, whatever the grouping.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_vector_path_keeps_the_lane_order() {
        if !fused_available() {
            return;
        }
        let k = 300;
        let w = values(7 * k, 5);
        let x = values(6 * k, 6);
        let y = matmul(&x, 6, &w, 7, k, 1);
        for r in 0..6 {
            for o in 0..7 {
                let want = dot::<true>(&x[r * k..(r + 1) * k], &w[o * k..(o + 1) * k]);
                assert_eq!(
                    y[r * 7 + o].to_bits(),
                    want.to_bits(),
                    "row {r}, column {o}"
                );
            }
        }
    }

    #[test]
    fn empty_products_are_empty() {
        assert!(matmul(&[], 0, &[1.0, 2.0], 1, 2, 2).is_empty());
        assert!(matmul(&[1.0, 2.0], 1, &[], 0, 2, 2).is_empty());
    }
}
