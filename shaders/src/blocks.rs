//! llama.cpp's block-quantized weight formats (GGUF's `Q4_0` ... `Q6_K`),
//! kept as the file stores them and dequantized a block at a time.
//!
//! A row of `k` weights is `k / weights_per_block` blocks, each a few f16
//! scales beside packed 4-, 5-, 6- or 8-bit integers; a block's bytes are
//! exactly ggml's `block_q*` structs (little-endian). Dequantization here
//! follows ggml's `dequantize_row_*` formula for formula (the same
//! products in the same order, in f32), so a weight has one f32 value
//! wherever it is read: the products ([`crate::matmul`]) use these values
//! and are bitwise the f32 product over [`BlockFormat::dequantize_row`].

use half::f16;

/// Weights per block of the "legacy" formats.
const QK: usize = 32;
/// Weights per super-block of the k-quants.
const QK_K: usize = 256;

/// A ggml block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    /// 4-bit, one f16 scale per 32, offset -8.
    Q4_0,
    /// 4-bit, an f16 scale and minimum per 32.
    Q4_1,
    /// 5-bit, one f16 scale per 32, offset -16.
    Q5_0,
    /// 5-bit, an f16 scale and minimum per 32.
    Q5_1,
    /// 8-bit, one f16 scale per 32.
    Q8_0,
    /// 4-bit k-quant: 8 sub-blocks of 32 with 6-bit scales and minimums.
    Q4K,
    /// 5-bit k-quant: as Q4_K with a fifth bit per weight.
    Q5K,
    /// 6-bit k-quant: 16 sub-blocks of 16 with 8-bit scales.
    Q6K,
}

impl BlockFormat {
    /// Every format, for tests and error messages.
    pub const ALL: [BlockFormat; 8] = [
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q8_0,
        BlockFormat::Q4K,
        BlockFormat::Q5K,
        BlockFormat::Q6K,
    ];

    /// Weights one block holds.
    pub const fn weights_per_block(self) -> usize {
        match self {
            BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K => QK_K,
            _ => QK,
        }
    }

    /// Bytes one block occupies.
    pub const fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q4_0 => 2 + QK / 2,
            BlockFormat::Q4_1 => 4 + QK / 2,
            BlockFormat::Q5_0 => 2 + 4 + QK / 2,
            BlockFormat::Q5_1 => 4 + 4 + QK / 2,
            BlockFormat::Q8_0 => 2 + QK,
            BlockFormat::Q4K => 4 + 12 + QK_K / 2,
            BlockFormat::Q5K => 4 + 12 + QK_K / 8 + QK_K / 2,
            BlockFormat::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// GGUF's name of the format.
    pub const fn name(self) -> &'static str {
        match self {
            BlockFormat::Q4_0 => "Q4_0",
            BlockFormat::Q4_1 => "Q4_1",
            BlockFormat::Q5_0 => "Q5_0",
            BlockFormat::Q5_1 => "Q5_1",
            BlockFormat::Q8_0 => "Q8_0",
            BlockFormat::Q4K => "Q4_K",
            BlockFormat::Q5K => "Q5_K",
            BlockFormat::Q6K => "Q6_K",
        }
    }

    /// Bytes of a row of `k` weights, or `None` unless `k` is whole blocks.
    pub fn row_bytes(self, k: usize) -> Option<usize> {
        k.is_multiple_of(self.weights_per_block())
            .then(|| k / self.weights_per_block() * self.block_bytes())
    }

    /// Dequantizes one block (`block_bytes` long) into `out`
    /// (`weights_per_block` long).
    ///
    /// # Panics
    /// When the lengths are not one block's.
    pub fn dequantize_block(self, block: &[u8], out: &mut [f32]) {
        assert!(
            block.len() == self.block_bytes() && out.len() == self.weights_per_block(),
            "one {} block",
            self.name()
        );
        self.dequantize_row(block, out);
    }

    /// Dequantizes a row of whole blocks into `out` (as many weights as
    /// the blocks hold).
    ///
    /// # Panics
    /// When `row` is not whole blocks or `out` not their weights.
    pub fn dequantize_row(self, row: &[u8], out: &mut [f32]) {
        let (bytes, weights) = (self.block_bytes(), self.weights_per_block());
        assert!(
            row.len().is_multiple_of(bytes) && out.len() == row.len() / bytes * weights,
            "a row of whole {} blocks",
            self.name()
        );
        // One loop per format over fixed-size blocks: no bounds checks in
        // the inner loops, which the compiler vectorizes. (An AVX2 copy of
        // these loops measured no faster: unpacking the bits, not the
        // arithmetic, is their cost.)
        match self {
            BlockFormat::Q4_0 => each_block(row, out, q4_0),
            BlockFormat::Q4_1 => each_block(row, out, q4_1),
            BlockFormat::Q5_0 => each_block(row, out, q5_0),
            BlockFormat::Q5_1 => each_block(row, out, q5_1),
            BlockFormat::Q8_0 => each_block(row, out, q8_0),
            BlockFormat::Q4K => each_block(row, out, q4_k),
            BlockFormat::Q5K => each_block(row, out, q5_k),
            BlockFormat::Q6K => each_block(row, out, q6_k),
        }
    }
}

/// `dequantize` over every block of `row` into `out`.
#[inline(always)]
fn each_block<const B: usize, const W: usize>(
    row: &[u8],
    out: &mut [f32],
    dequantize: impl Fn(&[u8; B], &mut [f32; W]),
) {
    for (block, y) in row.chunks_exact(B).zip(out.chunks_exact_mut(W)) {
        dequantize(fixed(block), fixed_mut(y));
    }
}

/// The first `N` bytes of `s` as an array (the callers' offsets are
/// constants within a block).
#[inline(always)]
fn fixed<const N: usize>(s: &[u8]) -> &[u8; N] {
    s[..N]
        .try_into()
        .unwrap_or_else(|_| unreachable!("a slice of {N}"))
}

#[inline(always)]
fn fixed_mut<const N: usize>(s: &mut [f32]) -> &mut [f32; N] {
    s.try_into()
        .unwrap_or_else(|_| unreachable!("a slice of {N}"))
}

impl std::fmt::Display for BlockFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[inline(always)]
fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

#[inline(always)]
fn q4_0(b: &[u8; 18], y: &mut [f32; QK]) {
    let d = half(b, 0);
    let qs: &[u8; QK / 2] = fixed(&b[2..]);
    for j in 0..QK / 2 {
        y[j] = f32::from((qs[j] & 0x0F) as i8 - 8) * d;
        y[j + QK / 2] = f32::from((qs[j] >> 4) as i8 - 8) * d;
    }
}

#[inline(always)]
fn q4_1(b: &[u8; 20], y: &mut [f32; QK]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qs: &[u8; QK / 2] = fixed(&b[4..]);
    for j in 0..QK / 2 {
        y[j] = f32::from(qs[j] & 0x0F) * d + m;
        y[j + QK / 2] = f32::from(qs[j] >> 4) * d + m;
    }
}

/// The fifth bits of a Q5 block: bit `j` belongs to weight `j`.
#[inline(always)]
fn fifth_bits(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn q5_0(b: &[u8; 22], y: &mut [f32; QK]) {
    let d = half(b, 0);
    let qh = fifth_bits(b, 2);
    let qs: &[u8; QK / 2] = fixed(&b[6..]);
    for j in 0..QK / 2 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = f32::from(((qs[j] & 0x0F) | h0) as i8 - 16) * d;
        y[j + QK / 2] = f32::from(((qs[j] >> 4) | h1) as i8 - 16) * d;
    }
}

#[inline(always)]
fn q5_1(b: &[u8; 24], y: &mut [f32; QK]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = fifth_bits(b, 4);
    let qs: &[u8; QK / 2] = fixed(&b[8..]);
    for j in 0..QK / 2 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = f32::from((qs[j] & 0x0F) | h0) * d + m;
        y[j + QK / 2] = f32::from((qs[j] >> 4) | h1) * d + m;
    }
}

#[inline(always)]
fn q8_0(b: &[u8; 34], y: &mut [f32; QK]) {
    let d = half(b, 0);
    let qs: &[u8; QK] = fixed(&b[2..]);
    for j in 0..QK {
        y[j] = f32::from(qs[j] as i8) * d;
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of sub-block `j`
/// (0..8) packed in 12 bytes.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The scales and minimums of a k-quant's 8 sub-blocks, as f32 factors
/// (`d * scale`, `min * m`, each rounded once as ggml computes them).
#[inline(always)]
fn k_factors(b: &[u8]) -> ([f32; 8], [f32; 8]) {
    let (d, min) = (half(b, 0), half(b, 2));
    let scales = &b[4..16];
    let mut ds = [0f32; 8];
    let mut ms = [0f32; 8];
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, scales);
        ds[j] = d * f32::from(sc);
        ms[j] = min * f32::from(m);
    }
    (ds, ms)
}

#[inline(always)]
fn q4_k(b: &[u8; 144], y: &mut [f32; QK_K]) {
    let (ds, ms) = k_factors(b);
    let qs: &[u8; QK_K / 2] = fixed(&b[16..]);
    for chunk in 0..4 {
        let (d1, m1, d2, m2) = (
            ds[2 * chunk],
            ms[2 * chunk],
            ds[2 * chunk + 1],
            ms[2 * chunk + 1],
        );
        let q: &[u8; 32] = fixed(&qs[32 * chunk..]);
        let y: &mut [f32; 64] = fixed_mut(&mut y[64 * chunk..64 * chunk + 64]);
        for l in 0..32 {
            y[l] = d1 * f32::from(q[l] & 0x0F) - m1;
            y[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

#[inline(always)]
fn q5_k(b: &[u8; 176], y: &mut [f32; QK_K]) {
    let (ds, ms) = k_factors(b);
    let qh: &[u8; QK_K / 8] = fixed(&b[16..]);
    let qs: &[u8; QK_K / 2] = fixed(&b[16 + QK_K / 8..]);
    for chunk in 0..4 {
        let (d1, m1, d2, m2) = (
            ds[2 * chunk],
            ms[2 * chunk],
            ds[2 * chunk + 1],
            ms[2 * chunk + 1],
        );
        let q: &[u8; 32] = fixed(&qs[32 * chunk..]);
        let y: &mut [f32; 64] = fixed_mut(&mut y[64 * chunk..64 * chunk + 64]);
        for l in 0..32 {
            let h1 = ((qh[l] >> (2 * chunk)) & 1) << 4;
            let h2 = ((qh[l] >> (2 * chunk + 1)) & 1) << 4;
            y[l] = d1 * f32::from((q[l] & 0x0F) + h1) - m1;
            y[l + 32] = d2 * f32::from((q[l] >> 4) + h2) - m2;
        }
    }
}

#[inline(always)]
fn q6_k(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let d = half(b, QK_K / 2 + QK_K / 4 + QK_K / 16);
    let sc: &[u8; QK_K / 16] = fixed(&b[QK_K / 2 + QK_K / 4..]);
    for half_block in 0..2 {
        let ql: &[u8; 64] = fixed(&b[64 * half_block..]);
        let qh: &[u8; 32] = fixed(&b[QK_K / 2 + 32 * half_block..]);
        let s: [f32; 8] = std::array::from_fn(|i| d * f32::from(sc[8 * half_block + i] as i8));
        let y: &mut [f32; 128] = fixed_mut(&mut y[128 * half_block..128 * half_block + 128]);
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            y[l] = s[is] * f32::from(q1);
            y[l + 32] = s[is + 2] * f32::from(q2);
            y[l + 64] = s[is + 4] * f32::from(q3);
            y[l + 96] = s[is + 6] * f32::from(q4);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `blocks` valid blocks of `format` from a seed: random quants and
    /// finite, modest f16 scales, so that every bit pattern of the quants
    /// is exercised.
    pub(crate) fn random_blocks(format: BlockFormat, blocks: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut bytes: Vec<u8> = (0..blocks * format.block_bytes())
            .map(|_| next() as u8)
            .collect();
        let scale = |next: &mut dyn FnMut() -> u64| {
            let v = ((next() % 2000) as f32 / 1000.0 - 1.0) * 0.05;
            f16::from_f32(v).to_le_bytes()
        };
        for block in bytes.chunks_exact_mut(format.block_bytes()) {
            let at: &[usize] = match format {
                BlockFormat::Q4_0 | BlockFormat::Q5_0 | BlockFormat::Q8_0 => &[0],
                BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K | BlockFormat::Q5K => {
                    &[0, 2]
                }
                BlockFormat::Q6K => &[QK_K / 2 + QK_K / 4 + QK_K / 16],
            };
            for &a in at {
                block[a..a + 2].copy_from_slice(&scale(&mut next));
            }
        }
        bytes
    }

    #[test]
    fn block_sizes_are_ggmls() {
        let sizes: Vec<usize> = BlockFormat::ALL.iter().map(|f| f.block_bytes()).collect();
        assert_eq!(sizes, [18, 20, 22, 24, 34, 144, 176, 210]);
        assert_eq!(BlockFormat::Q4K.row_bytes(512), Some(288));
        assert_eq!(BlockFormat::Q4K.row_bytes(100), None);
    }

    /// Hand-made blocks whose values are known.
    #[test]
    fn known_blocks_dequantize_to_known_values() {
        // Q4_0: scale 0.5, nibbles 0..15 -> (n - 8) * 0.5.
        let mut b = vec![0u8; 18];
        b[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for j in 0..16 {
            b[2 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let mut y = [0f32; 32];
        BlockFormat::Q4_0.dequantize_block(&b, &mut y);
        assert_eq!(y[0], -4.0);
        assert_eq!(y[15], 3.5);
        assert_eq!(y[16], 3.5);
        assert_eq!(y[31], -4.0);

        // Q5_0: the fifth bit of weight 3 and of weight 16 + 2 set.
        let mut b = vec![0u8; 22];
        b[..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        b[2..6].copy_from_slice(&((1u32 << 3) | (1u32 << (16 + 2))).to_le_bytes());
        let mut y = [0f32; 32];
        BlockFormat::Q5_0.dequantize_block(&b, &mut y);
        assert_eq!(y[3], 0.0);
        assert_eq!(y[18], 0.0);
        assert_eq!(y[0], -16.0);

        // Q6_K: every quant 32 (zero), scale 2 everywhere -> zeros; then
        // the first low nibble 1 -> (33 - 32) * 2 * d.
        let mut b = vec![0u8; 210];
        for q in &mut b[..128] {
            *q = 0;
        }
        for h in &mut b[128..192] {
            *h = 0b10_10_10_10;
        }
        for s in &mut b[192..208] {
            *s = 2;
        }
        b[208..210].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        b[0] = 1;
        let mut y = [0f32; 256];
        BlockFormat::Q6K.dequantize_block(&b, &mut y);
        assert_eq!(y[0], 0.5);
        assert!(y[1..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn the_k_quant_scales_unpack_as_ggml_does() {
        let q: [u8; 12] = [
            0b11_000001,
            2,
            3,
            4,
            0b01_000101,
            6,
            7,
            8,
            0x9A,
            0xBC,
            0xDE,
            0xF0,
        ];
        assert_eq!(scale_min_k4(0, &q), (1, 5));
        // j = 4: (q[8] & 15) | (q[0] >> 6) << 4, (q[8] >> 4) | (q[4] >> 6) << 4.
        assert_eq!(scale_min_k4(4, &q), (0xA | (3 << 4), 0x9 | (1 << 4)));
    }

    #[test]
    fn random_blocks_dequantize_to_finite_values() {
        for format in BlockFormat::ALL {
            let bytes = random_blocks(format, 3, 7);
            let mut y = vec![0f32; 3 * format.weights_per_block()];
            format.dequantize_row(&bytes, &mut y);
            assert!(y.iter().all(|v| v.is_finite()), "{format}");
            assert!(y.iter().any(|&v| v != 0.0), "{format}");
        }
    }
}
