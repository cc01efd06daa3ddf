//! The number of drafts one verification accepts: `min(G, k)`, `P(G >= j) = a^j`.

use crate::rng::SplitMix64;

/// Where the simulator's accepted-draft counts come from.
///
/// `position` is the number of tokens already generated when the
/// verification starts. The seeded [`AcceptanceSampler`] ignores it (the
/// paper's i.i.d. counts); a source replaying a real run's acceptances
/// (position by position) uses it, so the simulator can be fed the same luck
/// a measured run had.
pub trait AcceptanceSource {
    /// The accepted count of the next verification, in `0..=k`.
    fn next_count_at(&mut self, position: usize) -> usize;
}

impl AcceptanceSource for AcceptanceSampler {
    fn next_count_at(&mut self, _position: usize) -> usize {
        self.next_count()
    }
}

/// A seeded stream of accepted-draft counts, one per verification.
#[derive(Debug, Clone)]
pub struct AcceptanceSampler {
    rng: SplitMix64,
    /// `ln a`, precomputed; unused when `a` is 0 or 1.
    ln_a: f64,
    a: f64,
    k: usize,
}

impl AcceptanceSampler {
    /// Counts for acceptance rate `a` and lookahead `k`, from `seed`.
    pub fn new(a: f64, k: usize, seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            ln_a: a.ln(),
            a,
            k,
        }
    }

    /// The next count, in `0..=k`.
    ///
    /// By inversion: `G = floor(ln U / ln a)` gives `P(G >= j) = P(U <= a^j) = a^j`.
    pub fn next_count(&mut self) -> usize {
        if self.a <= 0.0 {
            return 0;
        }
        if self.a >= 1.0 {
            return self.k;
        }
        let g = (self.rng.next_open01().ln() / self.ln_a).floor();
        if g >= self.k as f64 {
            self.k
        } else {
            g as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes() {
        let mut zero = AcceptanceSampler::new(0.0, 5, 1);
        let mut one = AcceptanceSampler::new(1.0, 5, 1);
        for _ in 0..100 {
            assert_eq!(zero.next_count(), 0);
            assert_eq!(one.next_count(), 5);
        }
    }

    #[test]
    fn tail_probabilities_match_a_to_the_j() {
        let (a, k, n) = (0.7, 4, 200_000);
        let mut s = AcceptanceSampler::new(a, k, 3);
        let mut at_least = [0usize; 5];
        for _ in 0..n {
            let g = s.next_count();
            assert!(g <= k);
            for (j, count) in at_least.iter_mut().enumerate() {
                if g >= j {
                    *count += 1;
                }
            }
        }
        for (j, &count) in at_least.iter().enumerate() {
            let freq = count as f64 / n as f64;
            let expected = a.powi(j as i32);
            assert!(
                (freq - expected).abs() < 0.005,
                "P(G>={j}) {freq} vs {expected}"
            );
        }
    }
}
