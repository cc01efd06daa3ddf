//! Weight matrices in the formats the matrix product reads directly: f32,
//! f16 and bf16 (widened to f32 in registers), and 8-bit blocks with one
//! f32 scale per [`Q8_BLOCK`] weights of a row (llama.cpp's q8_0 layout,
//! with the scale kept in f32).
//!
//! A decode step reads every weight once, so its speed is the bytes per
//! weight: 4, 2, 2 and 1.125. Every format computes in f32: a product over
//! f16 weights equals, bit for bit, the f32 product over the same weights
//! widened ([`Weights::to_f32`]), and a q8 product the f32 product over
//! the dequantized weights.
//!
//! A matrix is laid out in rows as a checkpoint stores it
//! ([`Layout::Rows`], what a borrowed tensor is) or packed in panels
//! ([`Layout::Panels`], what [`Weights`] owns): [`PANEL`] rows at a time,
//! column by column, so that one contiguous stream feeds [`PANEL`] outputs
//! at once (see [`crate::panels`]).

use crate::blocks::BlockFormat;
use half::{bf16, f16};
use std::ops::Range;
use std::sync::Arc;

/// Weights per q8 scale, along a row.
pub const Q8_BLOCK: usize = 32;
/// Rows (output features) per panel of [`Layout::Panels`]: two 8-lane
/// registers.
pub const PANEL: usize = 16;

/// How a matrix's `[out, k]` elements are ordered in its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Row-major: element `(o, i)` at `o * k + i` (q8 scales `[out, k / 32]`
    /// likewise).
    Rows,
    /// Panels of [`PANEL`] rows, each column-major: element `(o, i)` at
    /// `(o / PANEL) * PANEL * k + i * PANEL + o % PANEL` (q8 scales likewise
    /// with `k / 32` columns). The last panel is padded with zeros.
    Panels,
}

/// How a matrix's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// 32-bit float.
    F32,
    /// IEEE half, widened when read.
    F16,
    /// bfloat16, widened when read.
    Bf16,
    /// Signed 8-bit integers times a per-block f32 scale.
    Q8,
    /// One of llama.cpp's block formats, as a GGUF file stores it (row
    /// layout only; made by [`Weights::from_blocks`], never converted to).
    Blocks(BlockFormat),
}

impl Format {
    /// Bytes one row of `k` weights occupies (scales included).
    pub fn row_bytes(self, k: usize) -> usize {
        match self {
            Format::F32 => 4 * k,
            Format::F16 | Format::Bf16 => 2 * k,
            Format::Q8 => k + 4 * k.div_ceil(Q8_BLOCK),
            Format::Blocks(b) => k.div_ceil(b.weights_per_block()) * b.block_bytes(),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::Bf16 => "bf16",
            Format::Q8 => "q8",
            Format::Blocks(b) => b.name(),
        })
    }
}

/// A borrowed `[out, k]` weight matrix in one format and layout.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    /// The values.
    pub data: Data<'a>,
    /// Rows (output features).
    pub out: usize,
    /// Row length (input features).
    pub k: usize,
    /// How `data` orders the elements.
    pub layout: Layout,
}

/// The storage behind a [`Matrix`].
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// `out * k` floats (in [`Layout::Panels`], `out` rounded up to whole
    /// panels, as for every format).
    F32(&'a [f32]),
    /// `out * k` IEEE half bit patterns.
    F16(&'a [u16]),
    /// `out * k` bfloat16 bit patterns.
    Bf16(&'a [u16]),
    /// `out * k` quantized weights and `out * ceil(k / Q8_BLOCK)` scales
    /// (both padded to whole panels in [`Layout::Panels`]): weight `i` of
    /// a row is its quant times the scale of block `i / Q8_BLOCK`.
    Q8 {
        /// The 8-bit values.
        quants: &'a [i8],
        /// One scale per block of a row.
        scales: &'a [f32],
    },
    /// `out` rows of whole blocks of `format`, row after row
    /// ([`Layout::Rows`] only).
    Blocks {
        /// The block format.
        format: BlockFormat,
        /// The blocks, as ggml lays them out.
        bytes: &'a [u8],
    },
}

impl<'a> Matrix<'a> {
    /// A row-major f32 matrix.
    ///
    /// # Panics
    /// When `values` is not `out * k` long.
    pub fn f32(values: &'a [f32], out: usize, k: usize) -> Self {
        assert_eq!(values.len(), out * k, "w must be [out, k]");
        Self {
            data: Data::F32(values),
            out,
            k,
            layout: Layout::Rows,
        }
    }

    /// Rows the storage holds: `out`, or whole panels of it.
    fn stored_rows(&self) -> usize {
        match self.layout {
            Layout::Rows => self.out,
            Layout::Panels => self.out.next_multiple_of(PANEL),
        }
    }

    /// Where element `(o, i)` is in the storage (in blocks for q8 scales,
    /// with `k` the blocks per row).
    #[inline(always)]
    fn index(layout: Layout, k: usize, o: usize, i: usize) -> usize {
        match layout {
            Layout::Rows => o * k + i,
            Layout::Panels => (o / PANEL) * PANEL * k + i * PANEL + o % PANEL,
        }
    }

    /// The storage format.
    pub fn format(&self) -> Format {
        match self.data {
            Data::F32(_) => Format::F32,
            Data::F16(_) => Format::F16,
            Data::Bf16(_) => Format::Bf16,
            Data::Q8 { .. } => Format::Q8,
            Data::Blocks { format, .. } => Format::Blocks(format),
        }
    }

    /// Rows `first..first + count`.
    ///
    /// # Panics
    /// In [`Layout::Panels`], unless `first` starts a panel and the rows
    /// end one or end the matrix.
    pub fn rows(&self, first: usize, count: usize) -> Matrix<'a> {
        let k = self.k;
        let (start, end) = match self.layout {
            Layout::Rows => (first, first + count),
            Layout::Panels => {
                assert!(
                    first.is_multiple_of(PANEL)
                        && (count.is_multiple_of(PANEL) || first + count == self.out),
                    "rows of a packed matrix are whole panels"
                );
                (first, (first + count).next_multiple_of(PANEL))
            }
        };
        let range = start * k..end * k;
        let data = match self.data {
            Data::F32(v) => Data::F32(&v[range]),
            Data::F16(v) => Data::F16(&v[range]),
            Data::Bf16(v) => Data::Bf16(&v[range]),
            Data::Q8 { quants, scales } => {
                let blocks = k.div_ceil(Q8_BLOCK);
                Data::Q8 {
                    quants: &quants[range],
                    scales: &scales[start * blocks..end * blocks],
                }
            }
            Data::Blocks { format, bytes } => {
                let row = Format::Blocks(format).row_bytes(k);
                Data::Blocks {
                    format,
                    bytes: &bytes[start * row..end * row],
                }
            }
        };
        Matrix {
            data,
            out: count,
            k,
            layout: self.layout,
        }
    }

    /// Weights `from..from + into.len()` of row `o` in f32 (widened or
    /// dequantized), into `into`.
    pub fn widen(&self, o: usize, from: usize, into: &mut [f32]) {
        let (k, layout) = (self.k, self.layout);
        let at = |i: usize| Self::index(layout, k, o, from + i);
        match self.data {
            Data::F32(v) => {
                for (i, y) in into.iter_mut().enumerate() {
                    *y = v[at(i)];
                }
            }
            Data::F16(v) => {
                for (i, y) in into.iter_mut().enumerate() {
                    *y = f16::from_bits(v[at(i)]).to_f32();
                }
            }
            Data::Bf16(v) => {
                for (i, y) in into.iter_mut().enumerate() {
                    *y = bf16::from_bits(v[at(i)]).to_f32();
                }
            }
            Data::Q8 { quants, scales } => {
                let blocks = k.div_ceil(Q8_BLOCK);
                for (i, y) in into.iter_mut().enumerate() {
                    let scale = scales[Self::index(layout, blocks, o, (from + i) / Q8_BLOCK)];
                    *y = dequantize(quants[at(i)], scale);
                }
            }
            Data::Blocks { format, bytes } => {
                let row = &bytes[o * Format::Blocks(format).row_bytes(k)..];
                widen_blocks(format, row, from, into);
            }
        }
    }

    /// Panics unless the storage holds `[out, k]` in its format and layout.
    pub(crate) fn check(&self) {
        let rows = self.stored_rows();
        let n = rows * self.k;
        let fits = match self.data {
            Data::F32(v) => v.len() == n,
            Data::F16(v) | Data::Bf16(v) => v.len() == n,
            Data::Q8 { quants, scales } => {
                quants.len() == n && scales.len() == rows * self.k.div_ceil(Q8_BLOCK)
            }
            Data::Blocks { format, bytes } => {
                self.layout == Layout::Rows
                    && self.k.is_multiple_of(format.weights_per_block())
                    && bytes.len() == rows * self.format().row_bytes(self.k)
            }
        };
        assert!(fits, "w must be [out, k] in its format and layout");
    }
}

/// Weights `from..from + into.len()` of a row of `format` blocks starting
/// at `row`, dequantized: the whole blocks among them in one call straight
/// into `into`, a partial one at either end through a block on the stack.
fn widen_blocks(format: BlockFormat, row: &[u8], from: usize, into: &mut [f32]) {
    let (per, bytes) = (format.weights_per_block(), format.block_bytes());
    let end = from + into.len();
    let (first_whole, end_whole) = (from.div_ceil(per), end / per);
    if first_whole < end_whole {
        format.dequantize_row(
            &row[first_whole * bytes..end_whole * bytes],
            &mut into[first_whole * per - from..end_whole * per - from],
        );
    }
    let mut block = [0f32; 256];
    let mut partial = |b: usize, into: &mut [f32]| {
        let (lo, hi) = ((b * per).max(from), ((b + 1) * per).min(end));
        format.dequantize_block(&row[b * bytes..(b + 1) * bytes], &mut block[..per]);
        into[lo - from..hi - from].copy_from_slice(&block[lo - b * per..hi - b * per]);
    };
    if first_whole > end_whole {
        // Inside one block.
        partial(from / per, into);
        return;
    }
    if !from.is_multiple_of(per) {
        partial(from / per, into);
    }
    if end_whole * per < end {
        partial(end_whole, into);
    }
}

/// `values`, `[out, k]` row-major, in `layout`.
fn arrange_in<T: Copy + Default>(layout: Layout, values: &[T], out: usize, k: usize) -> Vec<T> {
    match layout {
        Layout::Rows => values.to_vec(),
        Layout::Panels => pack(values, out, k),
    }
}

/// `values`, `[out, k]` row-major, packed in panels ([`Layout::Panels`]),
/// the last one padded with `T::default()`.
fn pack<T: Copy + Default>(values: &[T], out: usize, k: usize) -> Vec<T> {
    let rows = out.next_multiple_of(PANEL);
    let mut packed = vec![T::default(); rows * k];
    for (o, row) in values.chunks_exact(k.max(1)).take(out).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            packed[Matrix::index(Layout::Panels, k, o, i)] = v;
        }
    }
    packed
}

/// One q8 weight in f32: the product rounded once, as every path does it.
#[inline(always)]
fn dequantize(q: i8, scale: f32) -> f32 {
    f32::from(q) * scale
}

/// `[out, k]` row-major values as q8: the quants and one scale per block
/// of a row, both row-major.
fn quantize(values: &[f32], out: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut quants = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(out * k.div_ceil(Q8_BLOCK));
    for row in values.chunks_exact(k.max(1)).take(out) {
        for block in row.chunks(Q8_BLOCK) {
            let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = max / 127.0;
            scales.push(scale);
            quants.extend(block.iter().map(|&v| {
                if scale == 0.0 {
                    0
                } else {
                    (v / scale).round().clamp(-127.0, 127.0) as i8
                }
            }));
        }
    }
    (quants, scales)
}

/// An owned weight matrix in one [`Format`], packed in panels
/// ([`Layout::Panels`]) unless made [`Weights::with_layout`].
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    storage: Storage,
    out: usize,
    k: usize,
    layout: Layout,
}

#[derive(Debug, Clone, PartialEq)]
enum Storage {
    F32(Vec<f32>),
    F16(Vec<u16>),
    Bf16(Vec<u16>),
    Q8 {
        quants: Vec<i8>,
        scales: Vec<f32>,
    },
    Blocks {
        format: BlockFormat,
        bytes: BlockBytes,
    },
}

/// The bytes of block-quantized weights: owned, or a range of a buffer
/// shared with other matrices (a memory-mapped GGUF file, whose pages are
/// then the only copy in memory, as llama.cpp keeps them).
#[derive(Clone)]
pub enum BlockBytes {
    /// A copy of their own.
    Owned(Vec<u8>),
    /// `range` of `buffer`.
    Shared {
        /// The whole buffer (a file).
        buffer: Arc<dyn AsRef<[u8]> + Send + Sync>,
        /// Where the matrix is in it.
        range: Range<usize>,
    },
}

impl BlockBytes {
    /// The bytes, or `None` when a shared range is past its buffer's end.
    fn get(&self) -> Option<&[u8]> {
        match self {
            BlockBytes::Owned(v) => Some(v),
            BlockBytes::Shared { buffer, range } => (*buffer).as_ref().as_ref().get(range.clone()),
        }
    }

    /// The bytes (checked at construction to be there).
    fn as_slice(&self) -> &[u8] {
        self.get().unwrap_or(&[])
    }
}

impl From<Vec<u8>> for BlockBytes {
    fn from(bytes: Vec<u8>) -> Self {
        BlockBytes::Owned(bytes)
    }
}

impl std::fmt::Debug for BlockBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockBytes::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            BlockBytes::Shared { range, .. } => write!(f, "Shared({range:?})"),
        }
    }
}

impl PartialEq for BlockBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Weights {
    /// `values` (`[out, k]` row-major) converted to `format`: rounded to
    /// the nearest f16 or bf16, or quantized per block of [`Q8_BLOCK`]
    /// with the scale `max |w| / 127` and each weight rounded to the
    /// nearest multiple of it; then packed in panels.
    ///
    /// # Panics
    /// When `values` is not `out * k` long.
    pub fn new(values: Vec<f32>, out: usize, k: usize, format: Format) -> Self {
        Self::with_layout(values, out, k, format, Layout::Panels)
    }

    /// [`Weights::new`] in a chosen layout ([`Layout::Rows`] keeps the
    /// checkpoint's order, as a borrowed tensor has it).
    ///
    /// # Panics
    /// When `values` is not `out * k` long, or `format` is a block format
    /// (those come from files: [`Weights::from_blocks`]).
    pub fn with_layout(
        values: Vec<f32>,
        out: usize,
        k: usize,
        format: Format,
        layout: Layout,
    ) -> Self {
        assert_eq!(values.len(), out * k, "w must be [out, k]");
        let storage = match format {
            Format::F32 => Storage::F32(arrange_in(layout, &values, out, k)),
            Format::F16 => {
                let bits: Vec<u16> = values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
                Storage::F16(arrange_in(layout, &bits, out, k))
            }
            Format::Bf16 => {
                let bits: Vec<u16> = values
                    .iter()
                    .map(|&v| bf16::from_f32(v).to_bits())
                    .collect();
                Storage::Bf16(arrange_in(layout, &bits, out, k))
            }
            Format::Q8 => {
                let (quants, scales) = quantize(&values, out, k);
                Storage::Q8 {
                    quants: arrange_in(layout, &quants, out, k),
                    scales: arrange_in(layout, &scales, out, k.div_ceil(Q8_BLOCK)),
                }
            }
            Format::Blocks(b) => panic!("{b} weights are read from a file, not quantized here"),
        };
        Self {
            storage,
            out,
            k,
            layout,
        }
    }

    /// `out` rows of `k` weights in `format` blocks as a file stores them
    /// (row after row, [`Layout::Rows`]), owned or shared, or why they are
    /// not.
    pub fn from_blocks(
        format: BlockFormat,
        bytes: impl Into<BlockBytes>,
        out: usize,
        k: usize,
    ) -> Result<Self, String> {
        let bytes = bytes.into();
        let Some(row) = format.row_bytes(k) else {
            return Err(format!(
                "rows of {k} weights are not whole {format} blocks of {}",
                format.weights_per_block()
            ));
        };
        let Some(len) = bytes.get().map(<[u8]>::len) else {
            return Err(format!("{bytes:?} is past the end of its buffer"));
        };
        if len != out * row {
            return Err(format!(
                "{len} bytes of {format} for [{out}, {k}], which takes {}",
                out * row
            ));
        }
        Ok(Self {
            storage: Storage::Blocks { format, bytes },
            out,
            k,
            layout: Layout::Rows,
        })
    }

    /// The matrix, borrowed.
    pub fn matrix(&self) -> Matrix<'_> {
        let data = match &self.storage {
            Storage::F32(v) => Data::F32(v),
            Storage::F16(v) => Data::F16(v),
            Storage::Bf16(v) => Data::Bf16(v),
            Storage::Q8 { quants, scales } => Data::Q8 { quants, scales },
            Storage::Blocks { format, bytes } => Data::Blocks {
                format: *format,
                bytes: bytes.as_slice(),
            },
        };
        Matrix {
            data,
            out: self.out,
            k: self.k,
            layout: self.layout,
        }
    }

    /// The storage format.
    pub fn format(&self) -> Format {
        self.matrix().format()
    }

    /// `[out, k]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.out, self.k]
    }

    /// Bytes the weights occupy (what a product reads), the last panel's
    /// padding included.
    pub fn bytes(&self) -> usize {
        self.matrix().stored_rows() * self.format().row_bytes(self.k)
    }

    /// Every weight in f32, as the products see them.
    pub fn to_f32(&self) -> Vec<f32> {
        let matrix = self.matrix();
        let mut values = vec![0f32; self.out * self.k];
        for (o, row) in values.chunks_exact_mut(self.k.max(1)).enumerate() {
            matrix.widen(o, 0, row);
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_formats_round_to_nearest_and_widen_exactly() {
        let values = vec![1.0, -2.5, 1.0 / 3.0, 65504.0, 1e-8, 0.0];
        let f16s = Weights::new(values.clone(), 2, 3, Format::F16).to_f32();
        let bf16s = Weights::new(values.clone(), 2, 3, Format::Bf16).to_f32();
        for ((v, a), b) in values.iter().zip(&f16s).zip(&bf16s) {
            assert_eq!(*a, f16::from_f32(*v).to_f32());
            assert_eq!(*b, bf16::from_f32(*v).to_f32());
        }
    }

    #[test]
    fn q8_error_is_at_most_half_a_step_per_block() {
        // 70 weights per row: two whole blocks and a short one.
        let (out, k) = (3, 70);
        let values: Vec<f32> = (0..out * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * if i % 33 == 0 { 7.0 } else { 0.01 })
            .collect();
        let q8 = Weights::new(values.clone(), out, k, Format::Q8);
        assert_eq!(q8.bytes(), PANEL * (k + 4 * 3));
        let back = q8.to_f32();
        for (o, (row, got)) in values.chunks(k).zip(back.chunks(k)).enumerate() {
            for (block, (want, got)) in row.chunks(Q8_BLOCK).zip(got.chunks(Q8_BLOCK)).enumerate() {
                let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (w, g) in want.iter().zip(got) {
                    assert!(
                        (w - g).abs() <= max / 127.0 * 0.5001,
                        "row {o} block {block}: {w} -> {g}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_zero_block_stays_zero() {
        let q8 = Weights::new(vec![0.0; 40], 1, 40, Format::Q8);
        assert!(q8.to_f32().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn sub_matrices_keep_their_scales() {
        let (out, k) = (2 * PANEL + 3, 40);
        let values: Vec<f32> = (0..out * k).map(|i| i as f32 * 0.5 - 30.0).collect();
        let q8 = Weights::new(values, out, k, Format::Q8);
        let all = q8.to_f32();
        let rows = q8.matrix().rows(PANEL, PANEL + 3);
        let mut row = vec![0f32; k];
        rows.widen(PANEL + 1, 0, &mut row);
        assert_eq!(&row[..], &all[(2 * PANEL + 1) * k..(2 * PANEL + 2) * k]);
    }

    #[test]
    fn packing_keeps_every_weight_and_pads_with_zeros() {
        let (out, k) = (PANEL + 5, 7);
        let values: Vec<f32> = (0..out * k).map(|i| i as f32).collect();
        for format in [Format::F32, Format::F16, Format::Bf16] {
            let packed = Weights::new(values.clone(), out, k, format);
            assert_eq!(packed.to_f32(), values, "{format}");
        }
        let Storage::F32(stored) = Weights::new(values, out, k, Format::F32).storage else {
            unreachable!("f32 weights store f32")
        };
        assert_eq!(stored.len(), 2 * PANEL * k);
        // Column 1 of the first panel holds rows 0..16's second weights.
        assert_eq!(
            stored[PANEL..2 * PANEL],
            (0..PANEL).map(|o| (o * k + 1) as f32).collect::<Vec<_>>()[..]
        );
        assert!(
            stored[PANEL * k..]
                .chunks(PANEL)
                .all(|c| c[5..].iter().all(|&v| v == 0.0))
        );
    }
}
