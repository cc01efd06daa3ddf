//! SwiGLU's gate: `silu(gate) * up` over the stacked `[rows, 2f]` output of
//! the gate and up projections, in one pass (no strided views of the two
//! halves).

/// `silu(g) * u` for each row `[g | u]` of `gate_up` (`[rows, 2 * f]`),
/// as `[rows, f]`; `silu(x) = x / (1 + e^-x)`.
///
/// # Panics
/// When `gate_up` is not a whole number of `2 * f` rows.
pub fn swiglu(gate_up: &[f32], f: usize) -> Vec<f32> {
    assert!(
        f > 0 && gate_up.len().is_multiple_of(2 * f),
        "gate_up must be [rows, 2f]"
    );
    let mut out = Vec::with_capacity(gate_up.len() / 2);
    for row in gate_up.chunks_exact(2 * f) {
        let (gate, up) = row.split_at(f);
        out.extend(
            gate.iter()
                .zip(up)
                .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_plain_formula() {
        let f = 3;
        let gate_up: Vec<f32> = (0..2 * 2 * f).map(|i| i as f32 * 0.7 - 4.0).collect();
        let got = swiglu(&gate_up, f);
        for r in 0..2 {
            for j in 0..f {
                let (g, u) = (
                    f64::from(gate_up[r * 2 * f + j]),
                    f64::from(gate_up[r * 2 * f + f + j]),
                );
                let want = g / (1.0 + (-g).exp()) * u;
                assert!((f64::from(got[r * f + j]) - want).abs() <= 1e-6 * want.abs().max(1.0));
            }
        }
    }
}
