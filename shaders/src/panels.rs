//! `y = x wᵀ` over weights packed in panels ([`Layout::Panels`]): the
//! product [`Weights`](crate::weights::Weights) runs.
//!
//! A panel holds [`PANEL`] weight rows column by column, so one position
//! `i` of `k` is [`PANEL`] contiguous weights: two 8-lane registers that
//! one broadcast input value multiplies. Each output element is one chain,
//! `y = y + x[i] * w[i]` for `i` in order, so its bits depend only on its
//! input row and weight row, never on how many rows, panels or threads
//! share the call (batch invariance by construction). A decode reads each
//! panel as one sequential stream; a prefill keeps a panel's stretch of
//! [`K_BLOCK`] positions in L1 while up to [`max_rows`] input rows at a
//! time run over it, carrying their partial sums in the output between
//! stretches (stored and reloaded exactly).
//!
//! With AVX2, FMA and F16C each step is a fused multiply-add; the portable
//! path multiplies and adds, in the same order.

use crate::isa::Isa;
use crate::weights::{Data, Layout, Matrix, PANEL, Q8_BLOCK};

/// Positions of `k` per pass over a panel when more input rows than one
/// tile share it: `K_BLOCK * PANEL` f32 weights (16 KiB) stay in L1.
const K_BLOCK: usize = 256;

/// Input rows one tile takes: as many accumulators as the sixteen AVX
/// registers hold beside the weights and the broadcast input (q8 needs a
/// register for its scales).
fn max_rows(w: &Matrix<'_>) -> usize {
    match w.data {
        Data::Q8 { .. } => 4,
        _ => TILE_ROWS,
    }
}

/// The most input rows of a tile (f32, f16, bf16).
const TILE_ROWS: usize = 6;

/// A tile's partial sums: up to [`TILE_ROWS`] rows of two panels.
type Sums = [[f32; 2 * PANEL]; TILE_ROWS];

/// `y[r][o] = x[r] · w[o]` for `w` in [`Layout::Panels`], `y` `[rows,
/// w.out]`, on the calling thread.
pub(crate) fn columns(isa: Isa, x: &[f32], rows: usize, w: Matrix<'_>, y: &mut [f32]) {
    debug_assert_eq!(w.layout, Layout::Panels);
    let (out, k) = (w.out, w.k);
    let tile_rows = max_rows(&w);
    // One tile of rows reads each weight once whatever the blocking: a
    // decode streams whole panels; more rows reuse a block of each.
    let k_block = if rows <= tile_rows { k } else { K_BLOCK };
    let panels = out.div_ceil(PANEL);
    let mut sums: Sums = [[0f32; 2 * PANEL]; TILE_ROWS];
    for k0 in (0..k).step_by(k_block.max(1)) {
        let k1 = (k0 + k_block).min(k);
        let mut p = 0;
        while p < panels {
            // One or two input rows take two panels at once, for more
            // chains in flight; more rows take one (their accumulators fill
            // the registers).
            let wide = rows <= 2 && p + 1 < panels;
            let columns = if wide { 2 * PANEL } else { PANEL };
            let first = p * PANEL;
            let valid = columns.min(out - first);
            for r0 in (0..rows).step_by(tile_rows) {
                let n = tile_rows.min(rows - r0);
                for (r, sums) in sums.iter_mut().enumerate().take(n) {
                    let at = (r0 + r) * out + first;
                    sums.fill(0.0);
                    if k0 > 0 {
                        sums[..valid].copy_from_slice(&y[at..at + valid]);
                    }
                }
                let tile = Tile {
                    x: &x[r0 * k..(r0 + n) * k],
                    k,
                    w: &w,
                    panel: p,
                    steps: k0..k1,
                };
                run(isa, &tile, n, wide, &mut sums);
                for (r, sums) in sums.iter().enumerate().take(n) {
                    let at = (r0 + r) * out + first;
                    y[at..at + valid].copy_from_slice(&sums[..valid]);
                }
            }
            p += if wide { 2 } else { 1 };
        }
    }
}

/// Input rows (each `k` long) over one or two panels, for the positions
/// `steps`.
struct Tile<'a> {
    x: &'a [f32],
    k: usize,
    w: &'a Matrix<'a>,
    panel: usize,
    steps: std::ops::Range<usize>,
}

/// `sums[r][c] += x[r][i] * w[c][i]` over the tile's steps, for its `rows`
/// rows and one panel (or two when `wide`).
fn run(isa: Isa, tile: &Tile<'_>, rows: usize, wide: bool, sums: &mut Sums) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: `Isa::Avx2` is only chosen on a CPU with AVX2, FMA
            // and F16C, what these `target_feature` functions need.
            #[allow(unsafe_code)]
            unsafe {
                fused::dispatch(tile, rows, wide, sums)
            }
        }
        _ => portable(tile, rows, wide, sums),
    }
}

/// [`run`] without fused multiply-adds, each panel column widened once.
fn portable(tile: &Tile<'_>, rows: usize, wide: bool, sums: &mut Sums) {
    let panels = if wide { 2 } else { 1 };
    let mut column = [0f32; PANEL];
    for i in tile.steps.clone() {
        for n in 0..panels {
            widen_column(tile.w, tile.panel + n, i, &mut column);
            for (r, sums) in sums.iter_mut().enumerate().take(rows) {
                let x = tile.x[r * tile.k + i];
                for (sum, &w) in sums[n * PANEL..(n + 1) * PANEL].iter_mut().zip(&column) {
                    *sum += x * w;
                }
            }
        }
    }
}

/// Position `i` of every row of `panel`, in f32.
fn widen_column(w: &Matrix<'_>, panel: usize, i: usize, into: &mut [f32; PANEL]) {
    let at = (panel * w.k + i) * PANEL;
    match w.data {
        Data::F32(v) => into.copy_from_slice(&v[at..at + PANEL]),
        Data::F16(v) => {
            for (y, &bits) in into.iter_mut().zip(&v[at..at + PANEL]) {
                *y = half::f16::from_bits(bits).to_f32();
            }
        }
        Data::Bf16(v) => {
            for (y, &bits) in into.iter_mut().zip(&v[at..at + PANEL]) {
                *y = half::bf16::from_bits(bits).to_f32();
            }
        }
        Data::Q8 { quants, scales } => {
            let block = (panel * w.k.div_ceil(Q8_BLOCK) + i / Q8_BLOCK) * PANEL;
            let scales = &scales[block..block + PANEL];
            for ((y, &q), &scale) in into.iter_mut().zip(&quants[at..at + PANEL]).zip(scales) {
                *y = f32::from(q) * scale;
            }
        }
        Data::Blocks { .. } => unreachable!("block formats are stored in rows"),
    }
}

/// The tiles with AVX2 fused multiply-adds.
#[cfg(target_arch = "x86_64")]
mod fused {
    use super::{PANEL, Sums, Tile};
    use crate::matmul::fused::{BF16, F16, F32, Q8, weight_bytes, widen};
    use crate::weights::{Data, Q8_BLOCK};
    use std::arch::x86_64::{
        __m256, _MM_HINT_T0, _mm_prefetch, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_mul_ps, _mm256_storeu_ps,
    };

    /// How far ahead of its reads a panel stream asks for memory: a decode
    /// reads each weight once, and the hardware prefetcher alone keeps too
    /// few requests in flight for 2- and 1-byte weights.
    const AHEAD_BYTES: usize = 1024;

    /// [`super::run`] for the tile's format and shape.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn dispatch(tile: &Tile<'_>, rows: usize, wide: bool, sums: &mut Sums) {
        macro_rules! shapes {
            ($format:expr) => {
                match (rows, wide) {
                    (1, true) => fixed::<{ $format }, 1, 4>(tile, sums),
                    (2, true) => fixed::<{ $format }, 2, 4>(tile, sums),
                    (1, false) => fixed::<{ $format }, 1, 2>(tile, sums),
                    (2, false) => fixed::<{ $format }, 2, 2>(tile, sums),
                    (3, _) => fixed::<{ $format }, 3, 2>(tile, sums),
                    (4, _) => fixed::<{ $format }, 4, 2>(tile, sums),
                    (5, _) => fixed::<{ $format }, 5, 2>(tile, sums),
                    (6, _) => fixed::<{ $format }, 6, 2>(tile, sums),
                    _ => unreachable!("tiles are 1 to 6 rows, two panels only for 1 or 2"),
                }
            };
        }
        match tile.w.data {
            Data::F32(_) => shapes!(F32),
            Data::F16(_) => shapes!(F16),
            Data::Bf16(_) => shapes!(BF16),
            Data::Q8 { .. } => shapes!(Q8),
            Data::Blocks { .. } => unreachable!("block formats are stored in rows"),
        }
    }

    /// Where a panel's storage starts, and its scales (q8 only).
    #[derive(Clone, Copy)]
    struct Panel {
        data: *const u8,
        scales: *const f32,
    }

    fn panel_of(tile: &Tile<'_>, panel: usize) -> Panel {
        let (w, at) = (tile.w, panel * PANEL * tile.w.k);
        let none = std::ptr::null();
        match w.data {
            Data::F32(v) => Panel {
                data: v[at..].as_ptr().cast(),
                scales: none,
            },
            Data::F16(v) | Data::Bf16(v) => Panel {
                data: v[at..].as_ptr().cast(),
                scales: none,
            },
            Data::Q8 { quants, scales } => Panel {
                data: quants[at..].as_ptr().cast(),
                scales: scales[panel * PANEL * w.k.div_ceil(Q8_BLOCK)..].as_ptr(),
            },
            Data::Blocks { .. } => unreachable!("block formats are stored in rows"),
        }
    }

    /// Weights `8 * half..8 * half + 8` of position `i` of `panel`, in f32.
    ///
    /// # Safety
    /// `i` is a position of the panel's matrix and `panel` points into a
    /// live matrix of format `FORMAT`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(unsafe_code)]
    unsafe fn load<const FORMAT: u8>(panel: Panel, i: usize, half: usize) -> __m256 {
        let at = i * PANEL + 8 * half;
        // SAFETY: in bounds by the caller's contract; unaligned loads.
        unsafe {
            let w = widen::<FORMAT>(panel.data, at);
            if FORMAT == Q8 {
                let scales = panel.scales.add(i / Q8_BLOCK * PANEL + 8 * half);
                _mm256_mul_ps(w, _mm256_loadu_ps(scales))
            } else {
                w
            }
        }
    }

    /// `R` input rows by `V / 2` panels (`V` registers of 8 outputs), so
    /// the accumulators stay in registers.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(unsafe_code)]
    fn fixed<const FORMAT: u8, const R: usize, const V: usize>(tile: &Tile<'_>, sums: &mut Sums) {
        let (k, steps) = (tile.k, tile.steps.clone());
        assert!(
            tile.x.len() >= R * k
                && steps.end <= k
                && (tile.panel + V / 2) * PANEL <= tile.w.out.next_multiple_of(PANEL),
            "a tile is R rows of k by V / 2 panels of the matrix"
        );
        let panels: [Panel; V] = std::array::from_fn(|v| panel_of(tile, tile.panel + v / 2));
        let xs: [*const f32; R] = std::array::from_fn(|r| tile.x[r * k..].as_ptr());
        // SAFETY: `sums` rows hold `2 * PANEL >= 8 * V` floats.
        let mut acc: [[__m256; V]; R] = std::array::from_fn(|r| {
            std::array::from_fn(|v| unsafe { _mm256_loadu_ps(sums[r][8 * v..].as_ptr()) })
        });
        let step_bytes = PANEL * weight_bytes::<FORMAT>();
        let per_line = (64 / step_bytes).max(1);
        for i in steps {
            if R <= 2 && i.is_multiple_of(per_line) {
                for v in (0..V).step_by(2) {
                    let ahead = panels[v].data.wrapping_add(i * step_bytes + AHEAD_BYTES);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                }
            }
            // SAFETY: `i < k` and each panel holds `k` positions of
            // `PANEL` weights (asserted above, `Matrix::check`), so every
            // load is in bounds; the input loads are within `R` rows of `k`.
            unsafe {
                let w: [__m256; V] = std::array::from_fn(|v| load::<FORMAT>(panels[v], i, v % 2));
                for r in 0..R {
                    let x = _mm256_broadcast_ss(&*xs[r].add(i));
                    for v in 0..V {
                        acc[r][v] = _mm256_fmadd_ps(x, w[v], acc[r][v]);
                    }
                }
            }
        }
        for r in 0..R {
            for v in 0..V {
                // SAFETY: as for the loads above.
                unsafe { _mm256_storeu_ps(sums[r][8 * v..].as_mut_ptr(), acc[r][v]) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::matmul_on;
    use crate::testing::values;
    use crate::weights::{Format, Weights};

    /// Each output is one chain over `k` in order: `sum + x * w` on the
    /// portable path, `x.mul_add(w, sum)` on AVX2, whatever the shape,
    /// the row tiles, the two-panel tiles, the `k` blocks or the last
    /// panel's padding.
    #[test]
    fn every_output_is_one_chain_in_order() {
        let shapes = [
            (1, 33, 5),
            (2, 48, 300),
            (7, 17, 600),
            (13, 40, 257),
            (6, 16, 1),
        ];
        for (rows, out, k) in shapes {
            let x = values(rows * k, 1);
            for format in [Format::F32, Format::F16, Format::Bf16, Format::Q8] {
                let weights = Weights::new(values(out * k, 2), out, k, format);
                let w = weights.to_f32();
                for isa in Isa::available() {
                    let y = matmul_on(isa, &x, rows, weights.matrix(), 2);
                    for r in 0..rows {
                        for o in 0..out {
                            let (x, w) = (&x[r * k..(r + 1) * k], &w[o * k..(o + 1) * k]);
                            let want = x.iter().zip(w).fold(0f32, |sum, (&x, &w)| match isa {
                                Isa::Portable => sum + x * w,
                                Isa::Avx2 => x.mul_add(w, sum),
                            });
                            assert_eq!(
                                y[r * out + o].to_bits(),
                                want.to_bits(),
                                "{format} on {isa}, {rows}x{out}x{k}: row {r}, column {o}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_empty_k_gives_zeros() {
        let weights = Weights::new(Vec::new(), 20, 0, Format::Q8);
        for isa in Isa::available() {
            assert_eq!(matmul_on(isa, &[], 3, weights.matrix(), 2), vec![0.0; 60]);
        }
    }
}
