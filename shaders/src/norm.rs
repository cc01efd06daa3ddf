//! Row norms with their reductions in [`crate::matmul`]'s fixed lane
//! order, so a row's result does not depend on the rows beside it:
//! RMSNorm, `x / sqrt(mean(x²) + eps) * weight`, and LayerNorm,
//! `(x - mean(x)) / sqrt(var(x) + eps) * weight + bias`.

use crate::matmul::dot_portable;

/// Normalizes each `width`-long row of `x` and scales it by `weight`.
///
/// # Panics
/// When `x` is not a whole number of rows or `weight` is not `width` long.
pub fn rms_norm(x: &[f32], width: usize, weight: &[f32], eps: f32) -> Vec<f32> {
    assert!(
        width > 0 && x.len().is_multiple_of(width),
        "x must be [rows, width]"
    );
    assert_eq!(weight.len(), width, "weight must be [width]");
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(width) {
        let rms = (dot_portable(row, row) / width as f32 + eps).sqrt();
        y.extend(row.iter().zip(weight).map(|(v, w)| v / rms * w));
    }
    y
}

/// Normalizes each `width`-long row of `x` to zero mean and unit variance
/// (the biased variance, as PyTorch's LayerNorm), then scales by `weight`
/// and shifts by `bias`.
///
/// # Panics
/// When `x` is not a whole number of rows or `weight`/`bias` are not
/// `width` long.
pub fn layer_norm(x: &[f32], width: usize, weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    assert!(
        width > 0 && x.len().is_multiple_of(width),
        "x must be [rows, width]"
    );
    assert_eq!(weight.len(), width, "weight must be [width]");
    assert_eq!(bias.len(), width, "bias must be [width]");
    let ones = vec![1.0; width];
    let mut y = Vec::with_capacity(x.len());
    let mut centered = vec![0.0; width];
    for row in x.chunks_exact(width) {
        let mean = dot_portable(row, &ones) / width as f32;
        for (c, v) in centered.iter_mut().zip(row) {
            *c = v - mean;
        }
        let std = (dot_portable(&centered, &centered) / width as f32 + eps).sqrt();
        y.extend(
            centered
                .iter()
                .zip(weight.iter().zip(bias))
                .map(|(c, (w, b))| c / std * w + b),
        );
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_plain_reference_and_ignores_other_rows() {
        let width = 37;
        let x: Vec<f32> = (0..5 * width)
            .map(|i| ((i * 7919) % 23) as f32 / 7.0 - 1.5)
            .collect();
        let weight: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 / 40.0).collect();
        let y = rms_norm(&x, width, &weight, 1e-6);
        for (r, row) in x.chunks_exact(width).enumerate() {
            let mean: f64 = row
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                / width as f64;
            let rms = (mean + 1e-6).sqrt();
            for (i, &v) in row.iter().enumerate() {
                let want = f64::from(v) / rms * f64::from(weight[i]);
                let got = f64::from(y[r * width + i]);
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "row {r}, {i}: {got} vs {want}"
                );
            }
            let alone = rms_norm(row, width, &weight, 1e-6);
            assert_eq!(&y[r * width..(r + 1) * width], &alone[..], "row {r} alone");
        }
    }

    #[test]
    fn layer_norm_agrees_with_the_plain_reference_and_ignores_other_rows() {
        let width = 29;
        let x: Vec<f32> = (0..4 * width)
            .map(|i| ((i * 7919) % 31) as f32 / 5.0 + 2.0)
            .collect();
        let weight: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 / 30.0).collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 / 10.0 - 1.0).collect();
        let y = layer_norm(&x, width, &weight, &bias, 1e-5);
        for (r, row) in x.chunks_exact(width).enumerate() {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / width as f64;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / width as f64;
            let std = (var + 1e-5).sqrt();
            for (i, &v) in row.iter().enumerate() {
                let want = (f64::from(v) - mean) / std * f64::from(weight[i]) + f64::from(bias[i]);
                let got = f64::from(y[r * width + i]);
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "row {r}, {i}: {got} vs {want}"
                );
            }
            let alone = layer_norm(row, width, &weight, &bias, 1e-5);
            assert_eq!(&y[r * width..(r + 1) * width], &alone[..], "row {r} alone");
        }
    }
}
