//! `y = x wᵀ` for `x` `[rows, k]` (f32, row-major) and `w` `[out, k]` (a
//! Hugging Face `[out, in]` weight, in any [`Format`]): `y[r][o] = x[r] ·
//! w[o]`.
//!
//! Weights packed in panels ([`Layout::Panels`], what
//! [`Weights`](crate::weights::Weights) holds) run [`crate::panels`]' product:
//! one chain per output element. Row-major weights (a borrowed tensor,
//! [`Layout::Rows`]) run the product below. Either way a matrix always
//! takes the same path, so a row's bits never depend on the batch.
//!
//! Over row-major weights every output element is one dot product of two
//! contiguous rows, reduced
//! in a fixed order ([`LANES`] interleaved partial sums, then a fixed tree,
//! then the tail), so a row's result is the same bits whatever the number
//! of rows and threads. Threads split the output columns; each weight row
//! is read from memory once per call and used for every input row while it
//! is in cache, which is what makes a batch of rows cost little more than
//! one when the product is bandwidth-bound.
//!
//! Half-precision and 8-bit weights are widened to f32 in registers as
//! they are loaded, so a product reads 2 or ~1.1 bytes per weight instead
//! of 4 and still accumulates in f32: its result is bitwise the f32
//! product over the widened weights.
//!
//! With AVX2, FMA and F16C ([`Isa::Avx2`]) the same order runs with fused
//! multiply-adds: results differ from the portable path in the last bits,
//! but one process always takes one path ([`Isa::active`]).

use crate::isa::Isa;
use crate::panels;
use crate::parallel;
use crate::weights::{Data, Layout, Matrix, PANEL};

/// Partial sums per dot product: one 8-lane AVX register.
pub const LANES: usize = 8;
/// Output columns one task takes at least.
const MIN_COLUMNS_PER_TASK: usize = 64;
/// Tasks a product is cut into per thread.
const TASKS_PER_THREAD: usize = 4;
/// Bytes of weight rows a fused pass keeps in cache (about half an L2).
#[cfg(target_arch = "x86_64")]
const BLOCK_BYTES: usize = 256 << 10;
/// Bytes of dequantized weight rows a block-format product keeps in cache.
const DEQUANTIZED_BYTES: usize = 64 << 10;
/// Bytes of input rows a fused pass keeps in cache (about half an L1).
#[cfg(target_arch = "x86_64")]
const ROW_BLOCK_BYTES: usize = 24 << 10;

/// `y = x wᵀ`, `[rows, out]` row-major, over `threads` threads, on the
/// process's instruction set ([`Isa::active`]).
///
/// # Panics
/// When `x` is not `rows * w.k` long or `w`'s storage not `[out, k]`.
pub fn matmul(x: &[f32], rows: usize, w: Matrix<'_>, threads: usize) -> Vec<f32> {
    matmul_on(Isa::active(), x, rows, w, threads)
}

/// [`matmul`] on a chosen instruction set (one of [`Isa::available`]).
pub fn matmul_on(isa: Isa, x: &[f32], rows: usize, w: Matrix<'_>, threads: usize) -> Vec<f32> {
    let (out, k) = (w.out, w.k);
    assert_eq!(x.len(), rows * k, "x must be [rows, k]");
    w.check();
    if rows == 0 || out == 0 {
        return Vec::new();
    }
    // Columns per task: a few tasks per thread, so that the caller and
    // helpers that wake late share the work evenly; at least a few dozen.
    // Whole panels, so that a packed matrix splits into packed matrices.
    let per_task = out
        .div_ceil(threads.max(1) * TASKS_PER_THREAD)
        .max(MIN_COLUMNS_PER_TASK)
        .next_multiple_of(PANEL)
        .min(out);
    let mut y = vec![0f32; rows * out];
    if per_task >= out {
        columns_of(isa, x, rows, w, &mut y);
        return y;
    }
    let tasks = out.div_ceil(per_task);
    let columns = |i: usize| per_task.min(out - i * per_task);
    if rows == 1 {
        // A row's columns in order are the output itself.
        let mut blocks: Vec<&mut [f32]> = y.chunks_mut(per_task).collect();
        parallel::for_each(&mut blocks, threads, |i, block| {
            columns_of(isa, x, 1, w.rows(i * per_task, columns(i)), block);
        });
        return y;
    }
    // Each task writes a `[rows, its columns]` block, copied into place.
    let mut blocks: Vec<Vec<f32>> = (0..tasks).map(|i| vec![0f32; rows * columns(i)]).collect();
    parallel::for_each(&mut blocks, threads, |i, block| {
        columns_of(isa, x, rows, w.rows(i * per_task, columns(i)), block);
    });
    for (i, block) in blocks.iter().enumerate() {
        let first = i * per_task;
        let columns = block.len() / rows;
        for (r, part) in block.chunks_exact(columns).enumerate() {
            y[r * out + first..r * out + first + columns].copy_from_slice(part);
        }
    }
    y
}

/// `y[r][o] = x[r] · w[o]` for the weight rows in `w`, `y` `[rows, w.out]`.
fn columns_of(isa: Isa, x: &[f32], rows: usize, w: Matrix<'_>, y: &mut [f32]) {
    if w.layout == Layout::Panels {
        return panels::columns(isa, x, rows, w, y);
    }
    if let Data::Blocks { .. } = w.data {
        return columns_of_blocks(isa, x, rows, w, y);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: `Isa::Avx2` is only ever chosen (`Isa::best`) on a
            // CPU with AVX2, FMA and F16C, the only requirement of these
            // `target_feature` functions.
            #[allow(unsafe_code)]
            unsafe {
                match w.data {
                    Data::F32(_) => columns_fused::<{ fused::F32 }>(x, rows, w, y),
                    Data::F16(_) => columns_fused::<{ fused::F16 }>(x, rows, w, y),
                    Data::Bf16(_) => columns_fused::<{ fused::BF16 }>(x, rows, w, y),
                    Data::Q8 { .. } => columns_fused::<{ fused::Q8 }>(x, rows, w, y),
                    Data::Blocks { .. } => unreachable!("block formats take columns_of_blocks"),
                }
            }
        }
        _ => columns_portable(x, rows, w, y),
    }
}

/// [`columns_portable`] with AVX2 fused multiply-adds, in tiles of up to
/// [`fused::ROWS`] input rows by [`fused::COLUMNS`] weight rows, so each load
/// feeds several products and a block of weight rows is read from memory
/// once for every input row. Every element still accumulates its own
/// [`LANES`] lanes in `k` order and reduces them by the same tree, so the
/// tiling changes no bits. `FORMAT` is `w`'s ([`fused::F32`] ...).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn columns_fused<const FORMAT: u8>(x: &[f32], rows: usize, w: Matrix<'_>, y: &mut [f32]) {
    let (out, k) = (w.out, w.k);
    // Blocks that stay in cache: a block of weight rows (L2) is read from
    // memory once and used for every block of input rows (L1).
    let weight_block = (BLOCK_BYTES / w.format().row_bytes(k).max(1))
        .max(1)
        .next_multiple_of(fused::COLUMNS);
    let row_block = (ROW_BLOCK_BYTES / (k * 4).max(1))
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
                    // Up to two input rows take every column at once; more
                    // take them two at a time, so the accumulators fit the
                    // registers.
                    let width = if tile_rows <= 2 { columns } else { 2 };
                    for first in (0..columns).step_by(width) {
                        let width = width.min(columns - first);
                        let tile = fused::Tile {
                            x: &x[r * k..(r + tile_rows) * k],
                            w: w.rows(o + first, width),
                        };
                        let sums = fused::tile::<FORMAT>(tile, tile_rows, width);
                        for (c, sums) in sums.iter().enumerate().take(width) {
                            for (i, &sum) in sums.iter().enumerate().take(tile_rows) {
                                y[(r + i) * out + o + first + c] = sum;
                            }
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
pub(crate) mod fused {
    use super::LANES;
    use crate::weights::{Data, Matrix, Q8_BLOCK};
    use std::arch::x86_64::{
        __m128i, __m256, _MM_HINT_T0, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_loadl_epi64,
        _mm_loadu_si128, _mm_movehl_ps, _mm_prefetch, _mm_shuffle_ps, _mm256_castps256_ps128,
        _mm256_castsi256_ps, _mm256_cvtepi8_epi32, _mm256_cvtepi32_ps, _mm256_cvtepu16_epi32,
        _mm256_cvtph_ps, _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_mul_ps,
        _mm256_set1_ps, _mm256_setzero_ps, _mm256_slli_epi32,
    };

    /// Input rows per tile.
    pub(super) const ROWS: usize = 4;
    /// Weight rows per tile: 1 or 2 input rows by 4 weight rows, or 3 or 4
    /// by 2, so that the accumulators, the weight registers and one input
    /// register fit the sixteen AVX registers with room to spare (a spilled
    /// accumulator turns every step into a store and a reload).
    pub(super) const COLUMNS: usize = 4;

    /// The weight formats, as the `FORMAT` parameter of the kernels (here
    /// and in `panels.rs`).
    pub(crate) const F32: u8 = 0;
    pub(crate) const F16: u8 = 1;
    pub(crate) const BF16: u8 = 2;
    pub(crate) const Q8: u8 = 3;

    /// Up to [`ROWS`] consecutive input rows (each `w.k` long) and up to
    /// [`COLUMNS`] weight rows.
    pub(super) struct Tile<'a> {
        pub(super) x: &'a [f32],
        pub(super) w: Matrix<'a>,
    }

    /// The lanes reduced by [`super::finish`]'s tree: lane `l` plus lane
    /// `l + 4`, then `l + 2`, then `l + 1`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn tree(acc: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let one = _mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair));
        _mm_cvtss_f32(one)
    }

    /// [`super::dot`]`::<true>` in registers: the same bits (lanes, tree,
    /// then the tail in sequence).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let whole = a.len().min(b.len()) / LANES * LANES;
        let mut acc = _mm256_setzero_ps();
        for (a, b) in a[..whole]
            .chunks_exact(LANES)
            .zip(b[..whole].chunks_exact(LANES))
        {
            // SAFETY: both chunks are LANES floats; unaligned loads.
            #[allow(unsafe_code)]
            unsafe {
                acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr()),
                    _mm256_loadu_ps(b.as_ptr()),
                    acc,
                );
            }
        }
        super::tail::<true>(tree(acc), &a[whole..], &b[whole..])
    }

    /// `x[i] · w[c]` for the tile's `rows` input rows and `columns`
    /// weight rows, as `sums[c][i]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn tile<const FORMAT: u8>(
        tile: Tile<'_>,
        rows: usize,
        columns: usize,
    ) -> [[f32; ROWS]; COLUMNS] {
        macro_rules! dispatch {
            ($(($r:literal, $c:literal)),*) => {
                match (rows, columns) {
                    $(($r, $c) => fixed::<FORMAT, $r, $c>(&tile),)*
                    _ => unreachable!("tiles are 1-2 rows by 1-4 columns or 3-4 rows by 1-2"),
                }
            };
        }
        dispatch!(
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 4),
            (2, 1),
            (2, 2),
            (2, 3),
            (2, 4),
            (3, 1),
            (3, 2),
            (4, 1),
            (4, 2)
        )
    }

    /// Where a weight row's storage starts, and its scales (q8 only).
    #[derive(Clone, Copy)]
    struct Row {
        data: *const u8,
        scales: *const f32,
    }

    fn row_of(w: &Matrix<'_>, c: usize) -> Row {
        let at = c * w.k;
        let none = std::ptr::null();
        match w.data {
            Data::F32(v) => Row {
                data: v[at..].as_ptr().cast(),
                scales: none,
            },
            Data::F16(v) | Data::Bf16(v) => Row {
                data: v[at..].as_ptr().cast(),
                scales: none,
            },
            Data::Q8 { quants, scales } => Row {
                data: quants[at..].as_ptr().cast(),
                scales: scales[c * w.k.div_ceil(Q8_BLOCK)..].as_ptr(),
            },
            Data::Blocks { .. } => unreachable!("block formats take columns_of_blocks"),
        }
    }

    /// Bytes of one stored weight (q8: its byte; the scales ride along).
    pub(crate) const fn weight_bytes<const FORMAT: u8>() -> usize {
        match FORMAT {
            F32 => 4,
            F16 | BF16 => 2,
            _ => 1,
        }
    }

    /// Weights `at..at + 8` of `row`, widened to f32.
    ///
    /// # Safety
    /// `at + 8` is at most the row's length, and `row` points into a live
    /// matrix of format `FORMAT`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(unsafe_code)]
    unsafe fn load<const FORMAT: u8>(row: Row, at: usize) -> __m256 {
        // SAFETY: in bounds by the caller's contract.
        unsafe {
            let w = widen::<FORMAT>(row.data, at);
            if FORMAT == Q8 {
                _mm256_mul_ps(w, _mm256_set1_ps(*row.scales.add(at / Q8_BLOCK)))
            } else {
                w
            }
        }
    }

    /// The 8 stored weights `at..at + 8` from `data` (elements of `FORMAT`)
    /// in f32: f16 and bf16 widened, q8 as its integers (the caller applies
    /// the scales, which the two layouts keep differently).
    ///
    /// # Safety
    /// `data` points into live storage of format `FORMAT` holding at least
    /// `at + 8` elements.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(unsafe_code)]
    pub(crate) unsafe fn widen<const FORMAT: u8>(data: *const u8, at: usize) -> __m256 {
        // SAFETY: in bounds by the caller's contract; unaligned loads.
        unsafe {
            match FORMAT {
                F32 => _mm256_loadu_ps(data.cast::<f32>().add(at)),
                F16 => _mm256_cvtph_ps(_mm_loadu_si128(
                    data.cast::<u16>().add(at).cast::<__m128i>(),
                )),
                BF16 => {
                    let bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(
                        data.cast::<u16>().add(at).cast::<__m128i>(),
                    ));
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(bits))
                }
                _ => _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                    data.cast::<i8>().add(at).cast::<__m128i>(),
                ))),
            }
        }
    }

    /// [`tile`] for a fixed shape, so the accumulators stay in registers.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn fixed<const FORMAT: u8, const R: usize, const C: usize>(
        tile: &Tile<'_>,
    ) -> [[f32; ROWS]; COLUMNS] {
        let k = tile.w.k;
        assert!(
            tile.x.len() >= R * k && tile.w.out >= C,
            "a tile is R by C rows of k"
        );
        let whole = k / LANES * LANES;
        let xs: [*const f32; R] = std::array::from_fn(|i| tile.x[i * k..].as_ptr());
        let ws: [Row; C] = std::array::from_fn(|c| row_of(&tile.w, c));
        // The next tile's weight rows at this position: a decode reads each
        // weight once, and asking for it this early keeps enough memory
        // requests in flight to run at the bandwidth (the hardware
        // prefetcher alone does not, for 2- and 1-byte weights).
        let ahead = COLUMNS * k * weight_bytes::<FORMAT>();
        let per_line = 64 / weight_bytes::<FORMAT>();
        let mut acc = [[_mm256_setzero_ps(); R]; C];
        let mut at = 0;
        while at < whole {
            if R == 1 && at.is_multiple_of(per_line) {
                for row in &ws {
                    let next = row.data.wrapping_add(at * weight_bytes::<FORMAT>() + ahead);
                    _mm_prefetch::<_MM_HINT_T0>(next.cast());
                }
            }
            // SAFETY: every row pointer starts a row of `k >= whole >= at +
            // 8` elements (asserted above; `Matrix::check` holds for the
            // weights), so each 8-lane load is in bounds; loads are unaligned.
            #[allow(unsafe_code)]
            unsafe {
                let w: [__m256; C] = std::array::from_fn(|c| load::<FORMAT>(ws[c], at));
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
        let mut tail = [0f32; LANES];
        for c in 0..C {
            let tail = &mut tail[..k - whole];
            tile.w.widen(c, whole, tail);
            for i in 0..R {
                let x = &tile.x[i * k + whole..(i + 1) * k];
                sums[c][i] = super::tail::<true>(tree(acc[c][i]), x, tail);
            }
        }
        sums
    }
}

/// [`columns_of`] over llama.cpp's block formats: a few weight rows at a
/// time are dequantized into an f32 block that stays in L1/L2, and the f32
/// row-major product runs over it (its register tiles, several chains in
/// flight). The product is therefore bitwise the f32 product over the
/// dequantized weights, whatever the number of rows.
fn columns_of_blocks(isa: Isa, x: &[f32], rows: usize, w: Matrix<'_>, y: &mut [f32]) {
    let (out, k) = (w.out, w.k);
    let block = (DEQUANTIZED_BYTES / (4 * k).max(1)).clamp(4, 64) / 4 * 4;
    let mut weights = vec![0f32; block * k];
    let mut part = vec![0f32; rows * block];
    for first in (0..out).step_by(block) {
        let n = block.min(out - first);
        for (i, row) in weights.chunks_exact_mut(k.max(1)).take(n).enumerate() {
            w.widen(first + i, 0, row);
        }
        let part = &mut part[..rows * n];
        columns_of(isa, x, rows, Matrix::f32(&weights[..n * k], n, k), part);
        for (r, values) in part.chunks_exact(n).enumerate() {
            y[r * out + first..r * out + first + n].copy_from_slice(values);
        }
    }
}

/// [`columns_of`], portable: each weight row widened once, then dotted
/// with every input row.
fn columns_portable(x: &[f32], rows: usize, w: Matrix<'_>, y: &mut [f32]) {
    let (out, k) = (w.out, w.k);
    let mut weights = vec![0f32; k];
    for o in 0..out {
        w.widen(o, 0, &mut weights);
        for (r, input) in x.chunks_exact(k.max(1)).take(rows).enumerate() {
            y[r * out + o] = dot_portable(input, &weights);
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
pub(crate) fn dot<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
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
pub(crate) fn tail<const FUSED: bool>(mut sum: f32, a: &[f32], b: &[f32]) -> f32 {
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
    use crate::weights::{Format, Weights};

    /// Both layouts of `values` in `format`.
    fn both_layouts(values: &[f32], out: usize, k: usize, format: Format) -> [Weights; 2] {
        [Layout::Rows, Layout::Panels]
            .map(|layout| Weights::with_layout(values.to_vec(), out, k, format, layout))
    }

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

    const FORMATS: [Format; 4] = [Format::F32, Format::F16, Format::Bf16, Format::Q8];
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 1, 1),
        (1, 300, 576),
        (3, 130, 77),
        (64, 257, 256),
        (5, 9, 15),
        (6, 7, 300),
    ];

    /// Against the f64 reference over the same f32 weights: within 1e-5
    /// (relative to the row's scale) for f32; f16, bf16 and q8 within
    /// their rounding of the weights.
    #[test]
    fn every_format_and_path_agrees_with_the_plain_reference() {
        for (rows, out, k) in SHAPES {
            let x = values(rows * k, 1);
            let w = values(out * k, 2);
            let want = reference(&x, rows, &w, out, k);
            for (format, weights) in FORMATS
                .into_iter()
                .flat_map(|f| both_layouts(&w, out, k, f).map(|w| (f, w)))
            {
                // Relative error of one weight in the format.
                let step = match format {
                    Format::F32 => 1e-5,
                    Format::F16 => 1e-3,
                    Format::Bf16 => 8e-3,
                    Format::Q8 => 1.0 / 127.0,
                    Format::Blocks(_) => unreachable!("not among FORMATS"),
                };
                for isa in Isa::available() {
                    for threads in [1, 2, 7] {
                        let got = matmul_on(isa, &x, rows, weights.matrix(), threads);
                        for (g, e) in got.iter().zip(&want) {
                            assert!(
                                (g - e).abs() <= step * (k as f32).sqrt(),
                                "{format} on {isa}, {rows}x{out}x{k}, {threads} threads: {g} vs {e}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A product over half or 8-bit weights is the f32 product over the
    /// weights widened: the widening is exact and nothing else changes.
    #[test]
    fn narrow_formats_are_bitwise_the_f32_product_of_their_widened_weights() {
        for (rows, out, k) in SHAPES {
            let x = values(rows * k, 3);
            let w = values(out * k, 4);
            for (format, weights) in FORMATS
                .into_iter()
                .flat_map(|f| both_layouts(&w, out, k, f).map(|w| (f, w)))
            {
                let layout = weights.matrix().layout;
                let widened = Weights::with_layout(weights.to_f32(), out, k, Format::F32, layout);
                for isa in Isa::available() {
                    let got = matmul_on(isa, &x, rows, weights.matrix(), 2);
                    let want = matmul_on(isa, &x, rows, widened.matrix(), 2);
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{format} on {isa}, {rows}x{out}x{k}"
                    );
                }
            }
        }
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn a_row_is_the_same_bits_at_every_row_count_and_thread_count() {
        let (out, k) = (200, 300);
        let w = values(out * k, 3);
        let x = values(64 * k, 4);
        for (format, weights) in FORMATS
            .into_iter()
            .flat_map(|f| both_layouts(&w, out, k, f).map(|w| (f, w)))
        {
            let w = weights.matrix();
            for isa in Isa::available() {
                let alone = matmul_on(isa, &x[..k], 1, w, 1);
                for rows in [1, 2, 7, 16, 64] {
                    for threads in [1, 2, 3] {
                        let y = matmul_on(isa, &x[..rows * k], rows, w, threads);
                        assert_eq!(
                            bits(&y[..out]),
                            bits(&alone),
                            "{format} on {isa}: row 0 among {rows} rows on {threads} threads"
                        );
                    }
                }
                // And any row, wherever it sits in the batch.
                let batch = matmul_on(isa, &x[..16 * k], 16, w, 2);
                let tenth = matmul_on(isa, &x[10 * k..11 * k], 1, w, 1);
                assert_eq!(bits(&batch[10 * out..11 * out]), bits(&tenth));
            }
        }
    }

    /// The AVX2 path runs the portable order with fused multiply-adds:
    /// bitwise equal to the scalar fused dot product, whatever the tile
    /// shape, block or tail.
    #[test]
    fn the_vector_path_keeps_the_lane_order() {
        if !Isa::available().contains(&Isa::Avx2) {
            return;
        }
        for (rows, out, k) in [(6, 7, 300), (9, 5, 16), (1, 4, 7), (13, 11, 64)] {
            let w = values(out * k, 5);
            let x = values(rows * k, 6);
            let y = matmul_on(Isa::Avx2, &x, rows, Matrix::f32(&w, out, k), 1);
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_register_dot_is_the_fused_dot() {
        if !Isa::available().contains(&Isa::Avx2) {
            return;
        }
        for n in [0, 1, 7, 8, 20, 64, 300] {
            let (a, b) = (values(n, 9), values(n, 10));
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            #[allow(unsafe_code)]
            let got = unsafe { fused::dot(&a, &b) };
            assert_eq!(got.to_bits(), dot::<true>(&a, &b).to_bits(), "length {n}");
        }
    }

    /// llama.cpp's block formats, as a GGUF file holds them: the product is
    /// bitwise the f32 row-major product over the dequantized weights, on
    /// every path and thread count, and a row's bits do not depend on the
    /// rows beside it.
    #[test]
    fn block_formats_are_bitwise_the_f32_product_of_their_dequantized_weights() {
        use crate::blocks::{BlockFormat, tests::random_blocks};
        for format in BlockFormat::ALL {
            let (out, k) = (37, 2 * format.weights_per_block());
            let blocks = random_blocks(format, out * k / format.weights_per_block(), 11);
            let weights = Weights::from_blocks(format, blocks, out, k).expect("whole blocks");
            let dequantized = weights.to_f32();
            let reference = Matrix::f32(&dequantized, out, k);
            let x = values(9 * k, 12);
            for isa in Isa::available() {
                let alone = matmul_on(isa, &x[4 * k..5 * k], 1, weights.matrix(), 1);
                for (rows, threads) in [(1, 1), (1, 2), (5, 2), (9, 3)] {
                    let got = matmul_on(isa, &x[..rows * k], rows, weights.matrix(), threads);
                    let want = matmul_on(isa, &x[..rows * k], rows, reference, threads);
                    assert_eq!(bits(&got), bits(&want), "{format} on {isa}, {rows} rows");
                    if rows > 4 {
                        assert_eq!(bits(&got[4 * out..5 * out]), bits(&alone), "{format}");
                    }
                }
            }
            // Sub-matrices and partial widening see the same weights.
            let mut part = vec![0f32; 40];
            weights.matrix().rows(3, 5).widen(2, 7, &mut part);
            assert_eq!(part, dequantized[5 * k + 7..5 * k + 47], "{format}");
        }
    }

    #[test]
    fn empty_products_are_empty() {
        assert!(matmul(&[], 0, Matrix::f32(&[1.0, 2.0], 1, 2), 2).is_empty());
        assert!(matmul(&[1.0, 2.0], 1, Matrix::f32(&[], 0, 2), 2).is_empty());
    }
}
