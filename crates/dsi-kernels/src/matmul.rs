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

/// Partial sums per dot product: one 8-lane AVX register.
pub const LANES: usize = 8;
/// Output columns one thread takes at least.
const MIN_COLUMNS_PER_TASK: usize = 64;
/// Bytes of weight rows a fused pass keeps in cache (about half an L2).
const BLOCK_BYTES: usize = 256 << 10;
/// Bytes of input rows a fused pass keeps in cache (about half an L1).
const ROW_BLOCK_BYTES: usize = 24 << 10;

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

/// [`columns_portable`] with AVX2 fused multiply-adds, in tiles of up to
/// [`fused::ROWS`] input rows by [`fused::COLUMNS`] weight rows, so each load
/// feeds several products and a block of weight rows is read from memory
/// once for every input row. Every element still accumulates its own
/// [`LANES`] lanes in `k` order and reduces them by the same tree, so the
/// tiling changes no bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn columns_fused(x: &[f32], rows: usize, w: &[f32], k: usize, yt: &mut [f32]) {
    let out = w.len() / k;
    // Blocks that stay in cache: a block of weight rows (L2) is read from
    // memory once and used for every block of input rows (L1).
    let weight_block = (BLOCK_BYTES / (k * 4))
        .max(1)
        .next_multiple_of(fused::COLUMNS);
    let row_block = (ROW_BLOCK_BYTES / (k * 4))
        .clamp(1, rows.max(1))
        .next_multiple_of(fused::ROWS);
    for o0 in (0..out).step_by(weight_block) {
        let o1 = (o0 + weight_block).min(out);
        for r0 in (0..rows).step_by(row_block) {
            let r1 = (r0 + row_block).min(rows);
            let mut o = o0;
            while o < o1 {
                let columns = fused::COLUMNS.min(o1 - o);
                let mut r = r0;
                while r < r1 {
                    let tile_rows = fused::ROWS.min(r1 - r);
                    let tile = fused::Tile {
                        x: &x[r * k..(r + tile_rows) * k],
                        w: &w[o * k..(o + columns) * k],
                        k,
                    };
                    let sums = fused::tile(tile, tile_rows, columns);
                    for (c, sums) in sums.iter().enumerate().take(columns) {
                        for (i, &sum) in sums.iter().enumerate().take(tile_rows) {
                            yt[(o + c) * rows + r + i] = sum;
                        }
                    }
                    r += tile_rows;
                }
                o += columns;
            }
        }
    }
}

/// The fused dot products, in the lane order of [`dot`].
#[cfg(target_arch = "x86_64")]
mod fused {
    use super::LANES;
    use std::arch::x86_64::{
        __m256, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps,
        _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps,
    };

    /// Input rows per tile.
    pub(super) const ROWS: usize = 4;
    /// Weight rows per tile: `ROWS * COLUMNS` accumulators and `COLUMNS`
    /// weight registers fit the sixteen AVX registers.
    pub(super) const COLUMNS: usize = 3;

    /// Up to [`ROWS`] consecutive input rows and [`COLUMNS`] consecutive
    /// weight rows, each `k` long.
    pub(super) struct Tile<'a> {
        pub(super) x: &'a [f32],
        pub(super) w: &'a [f32],
        pub(super) k: usize,
    }

    /// The lanes reduced by [`super::finish`]'s tree: lane `l` plus lane
    /// `l + 4`, then `l + 2`, then `l + 1`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn tree(acc: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let one = _mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair));
        _mm_cvtss_f32(one)
    }

    /// `x[i] · w[c]` for the tile's `rows` input rows and `columns`
    /// weight rows, as `sums[c][i]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn tile(tile: Tile<'_>, rows: usize, columns: usize) -> [[f32; ROWS]; COLUMNS] {
        macro_rules! dispatch {
            ($(($r:literal, $c:literal)),*) => {
                match (rows, columns) {
                    $(($r, $c) => fixed::<$r, $c>(&tile),)*
                    _ => unreachable!("tiles are at most ROWS by COLUMNS"),
                }
            };
        }
        dispatch!(
            (1, 1),
            (1, 2),
            (1, 3),
            (2, 1),
            (2, 2),
            (2, 3),
            (3, 1),
            (3, 2),
            (3, 3),
            (4, 1),
            (4, 2),
            (4, 3)
        )
    }

    /// [`tile`] for a fixed shape, so the accumulators stay in registers.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fixed<const R: usize, const C: usize>(tile: &Tile<'_>) -> [[f32; ROWS]; COLUMNS] {
        let k = tile.k;
        assert!(
            tile.x.len() >= R * k && tile.w.len() >= C * k,
            "a tile is R by C rows of k"
        );
        let whole = k / LANES * LANES;
        let xs: [*const f32; R] = std::array::from_fn(|i| tile.x[i * k..].as_ptr());
        let ws: [*const f32; C] = std::array::from_fn(|c| tile.w[c * k..].as_ptr());
        let mut acc = [[_mm256_setzero_ps(); R]; C];
        let mut at = 0;
        while at < whole {
            // SAFETY: every row pointer starts a row of `k >= whole >= at +
            // 8` f32s (asserted above), so each 8-lane load is in bounds;
            // the loads are unaligned.
            #[allow(unsafe_code)]
            unsafe {
                let w: [__m256; C] = std::array::from_fn(|c| _mm256_loadu_ps(ws[c].add(at)));
                for i in 0..R {
                    let x = _mm256_loadu_ps(xs[i].add(at));
                    for c in 0..C {
                        acc[c][i] = _mm256_fmadd_ps(x, w[c], acc[c][i]);
                    }
                }
            }
            at += LANES;
        }
        let mut sums = [[0f32; ROWS]; COLUMNS];
        for c in 0..C {
            let w = &tile.w[c * k..(c + 1) * k];
            for i in 0..R {
                let x = &tile.x[i * k..(i + 1) * k];
                sums[c][i] = super::tail::<true>(tree(acc[c][i]), &x[whole..], &w[whole..]);
            }
        }
        sums
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

/// The fixed tree over the lanes (lane `l` plus lane `l + 4`, then
/// `l + 2`, then `l + 1`), then the tail in sequence.
#[inline(always)]
fn finish<const FUSED: bool>(mut acc: [f32; LANES], a: &[f32], b: &[f32]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for lane in 0..width {
            acc[lane] += acc[lane + width];
        }
        width /= 2;
    }
    tail::<FUSED>(acc[0], a, b)
}

/// `sum` plus the tail's products, in sequence.
#[inline(always)]
fn tail<const FUSED: bool>(mut sum: f32, a: &[f32], b: &[f32]) -> f32 {
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
    /// bitwise equal to the scalar fused dot product, whatever the tile
    /// shape, block or tail.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_vector_path_keeps_the_lane_order() {
        if !fused_available() {
            return;
        }
        for (rows, out, k) in [(6, 7, 300), (9, 5, 16), (1, 4, 7), (13, 11, 64)] {
            let w = values(out * k, 5);
            let x = values(rows * k, 6);
            let y = matmul(&x, rows, &w, out, k, 1);
            for r in 0..rows {
                for o in 0..out {
                    let want = dot::<true>(&x[r * k..(r + 1) * k], &w[o * k..(o + 1) * k]);
                    assert_eq!(
                        y[r * out + o].to_bits(),
                        want.to_bits(),
                        "{rows}x{out}x{k}: row {r}, column {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_products_are_empty() {
        assert!(matmul(&[], 0, &[1.0, 2.0], 1, 2, 2).is_empty());
        assert!(matmul(&[1.0, 2.0], 1, &[], 0, 2, 2).is_empty());
    }
}
