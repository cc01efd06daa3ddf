//! The paper's acceptance-rate estimator from match windows.
//!
//! The target generates greedily; under teacher forcing the drafter predicts
//! each next token of that output. Each mismatch closes a window whose length
//! is the number of matches since the previous mismatch. The last window of
//! every example is dropped (it was cut by the end of the example, not by a
//! mismatch). A geometric count with `P(G >= j) = a^j` has mean `a / (1 - a)`,
//! so the mean window length `L` gives `a = 1 - 1 / (1 + L)`.

use crate::{Error, Result};

/// Accumulates match windows over examples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcceptanceEstimator {
    windows: Vec<usize>,
}

impl AcceptanceEstimator {
    /// An estimator with no examples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one example: whether the drafter's prediction matched the
    /// target's token, position by position.
    pub fn add_example(&mut self, matches: impl IntoIterator<Item = bool>) {
        let mut run = 0;
        for matched in matches {
            if matched {
                run += 1;
            } else {
                self.windows.push(run);
                run = 0;
            }
        }
        // The trailing run is the last window: dropped.
    }

    /// Lengths of every complete window seen so far.
    pub fn windows(&self) -> &[usize] {
        &self.windows
    }

    /// Mean complete-window length.
    pub fn mean_window_len(&self) -> Result<f64> {
        if self.windows.is_empty() {
            return Err(Error::NoCompleteWindow);
        }
        Ok(self.windows.iter().sum::<usize>() as f64 / self.windows.len() as f64)
    }

    /// `a = 1 - 1 / (1 + mean window length)`.
    pub fn acceptance_rate(&self) -> Result<f64> {
        Ok(1.0 - 1.0 / (1.0 + self.mean_window_len()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_split_at_mismatches_and_drop_the_last() {
        let mut est = AcceptanceEstimator::new();
        // windows: [2] (closed by the mismatch), [0], then the trailing [1] is dropped.
        est.add_example([true, true, false, false, true]);
        // windows: [3]; an example with no mismatch contributes nothing.
        est.add_example([true, true, true, false]);
        est.add_example([true, true]);
        assert_eq!(est.windows(), &[2, 0, 3]);
        let mean = 5.0 / 3.0;
        assert!((est.acceptance_rate().unwrap() - (1.0 - 1.0 / (1.0 + mean))).abs() < 1e-12);
    }

    #[test]
    fn no_window_is_an_error() {
        let mut est = AcceptanceEstimator::new();
        est.add_example([true, true, true]);
        assert_eq!(est.acceptance_rate(), Err(Error::NoCompleteWindow));
    }

    #[test]
    fn recovers_a_geometric_rate() {
        use crate::sim::AcceptanceSampler;
        let a = 0.8;
        let mut sampler = AcceptanceSampler::new(a, usize::MAX, 11);
        let mut matches = Vec::new();
        for _ in 0..50_000 {
            let g = sampler.next_count();
            matches.extend(std::iter::repeat_n(true, g));
            matches.push(false);
        }
        let mut est = AcceptanceEstimator::new();
        est.add_example(matches);
        let estimate = est.acceptance_rate().unwrap();
        assert!((estimate - a).abs() < 0.01, "{estimate}");
    }
}
