//! `exp(x)` for the softmax on the AVX2 path: one polynomial, eight lanes
//! at a time or one, with the same bits either way (so a row's tail, done
//! one by one, matches what its lanes would give).
//!
//! Cody-Waite range reduction `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a
//! degree-6 polynomial for `e^r` (Cephes' `expf` coefficients) and `2^n`
//! put in the exponent: within 2 ulp of `f32::exp` over the softmax's
//! inputs (`x <= 0`); below `MIN` the result is `exp(MIN)`, about 1e-38,
//! which a softmax's sum (at least 1) does not see.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m256, _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT, _mm256_add_epi32, _mm256_add_ps,
    _mm256_castsi256_ps, _mm256_cvtps_epi32, _mm256_fmadd_ps, _mm256_fnmadd_ps, _mm256_loadu_ps,
    _mm256_max_ps, _mm256_min_ps, _mm256_mul_ps, _mm256_round_ps, _mm256_set1_epi32,
    _mm256_set1_ps, _mm256_slli_epi32, _mm256_storeu_ps, _mm256_sub_ps,
};

const MIN: f32 = -87.0;
const MAX: f32 = 88.0;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` in two parts: `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial, highest degree first.
const POLY: [f32; 6] = [
    1.987_569_2e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `exp(x)` with fused multiply-adds, one lane of [`exp8`].
#[inline(always)]
pub(crate) fn exp1(x: f32) -> f32 {
    let x = x.clamp(MIN, MAX);
    let n = (x * LOG2_E).round_ties_even();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p = POLY[0];
    for c in &POLY[1..] {
        p = p.mul_add(r, *c);
    }
    let r2 = r * r;
    let e = p.mul_add(r2, r) + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `exp` of eight lanes, each bitwise [`exp1`].
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(MIN)), _mm256_set1_ps(MAX));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(POLY[0]);
    for c in &POLY[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let e = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    let bias = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    _mm256_mul_ps(e, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bias)))
}

/// `row[i] = exp(row[i] - shift)` for every element, eight at a time, the
/// tail by [`exp1`].
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp_shifted(row: &mut [f32], shift: f32) {
    let mut chunks = row.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: a chunk is 8 floats; unaligned loads and stores.
        #[allow(unsafe_code)]
        unsafe {
            let x = _mm256_sub_ps(_mm256_loadu_ps(chunk.as_ptr()), _mm256_set1_ps(shift));
            _mm256_storeu_ps(chunk.as_mut_ptr(), exp8(x));
        }
    }
    for x in chunks.into_remainder() {
        *x = exp1(*x - shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_two_ulp_of_the_library_exp() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (got, want) = (exp1(x), x.exp());
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, library {want}");
            x += 0.013;
        }
        assert_eq!(exp1(0.0), 1.0);
        assert!(exp1(-1000.0) < 1e-37);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn eight_lanes_are_eight_scalars() {
        if !crate::isa::Isa::available().contains(&crate::isa::Isa::Avx2) {
            return;
        }
        let values: Vec<f32> = (0..1003).map(|i| -(i as f32) * 0.0917 + 3.0).collect();
        let mut row = values.clone();
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        #[allow(unsafe_code)]
        unsafe {
            exp_shifted(&mut row, 3.0)
        };
        for (x, got) in values.iter().zip(&row) {
            assert_eq!(got.to_bits(), exp1(x - 3.0).to_bits(), "exp({x} - 3)");
        }
    }
}
