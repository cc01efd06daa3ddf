//! Closed forms of the simulator's expectations.

use super::SimParams;

/// Expected SI cost `S (k c + 1) (1 - a) / (1 - a^(k+1))` (ignoring the
/// shorter lookahead at the very end of the sequence).
pub fn si_expected_cost(params: &SimParams) -> f64 {
    let (a, c, k) = (params.a(), params.c(), params.k() as f64);
    let tokens = params.tokens() as f64;
    tokens * (k * c + 1.0) / expected_tokens_per_si_iteration(a, params.k())
}

/// `(1 - a^(k+1)) / (1 - a)`: tokens emitted per SI iteration, `k + 1` at `a = 1`.
pub fn expected_tokens_per_si_iteration(a: f64, k: usize) -> f64 {
    if a >= 1.0 {
        (k + 1) as f64
    } else {
        (1.0 - a.powi(k as i32 + 1)) / (1.0 - a)
    }
}

/// True when SI is slower than non-SI: `(1 - a^(k+1)) / (1 - a) < k c + 1`.
pub fn si_slower_than_nonsi(params: &SimParams) -> bool {
    expected_tokens_per_si_iteration(params.a(), params.k()) < params.k() as f64 * params.c() + 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let p = SimParams::new(0.2, 0.0, 3, 100).unwrap();
        assert!((si_expected_cost(&p) - 100.0 * 1.6).abs() < 1e-9);
        assert!(si_slower_than_nonsi(&p));
        let p = SimParams::new(0.2, 1.0, 3, 100).unwrap();
        assert!((si_expected_cost(&p) - 100.0 * 1.6 / 4.0).abs() < 1e-9);
        assert!(!si_slower_than_nonsi(&p));
    }
}
