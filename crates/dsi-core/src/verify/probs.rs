//! Probability tables: one next-token distribution per position, row-major.

use crate::{Error, Result, TokenId};

/// Next-token distributions for consecutive positions over one vocabulary.
///
/// Rows are non-negative with positive, finite mass; they need not sum to
/// exactly 1 (rules normalize where it matters). Plain data, so it can cross
/// a process boundary later.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbTable {
    vocab: usize,
    probs: Vec<f32>,
}

impl ProbTable {
    /// A table from row-major `probs` over a vocabulary of `vocab` tokens.
    pub fn new(vocab: usize, probs: Vec<f32>) -> Result<Self> {
        if vocab == 0 {
            return Err(Error::InvalidParameter {
                name: "vocab",
                value: "0".into(),
                expected: "a vocabulary of at least 1 token",
            });
        }
        if !probs.len().is_multiple_of(vocab) {
            return Err(Error::ShapeMismatch {
                what: "entries after the last full row of the probability table",
                expected: 0,
                found: probs.len() % vocab,
            });
        }
        for (row, chunk) in probs.chunks(vocab).enumerate() {
            if chunk.iter().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(Error::InvalidDistribution {
                    row,
                    reason: "entries must be finite and non-negative",
                });
            }
            if chunk.iter().sum::<f32>() <= 0.0 {
                return Err(Error::InvalidDistribution {
                    row,
                    reason: "the row has no probability mass",
                });
            }
        }
        Ok(Self { vocab, probs })
    }

    /// A table from rows of equal length.
    pub fn from_rows<R: AsRef<[f32]>>(rows: &[R]) -> Result<Self> {
        let vocab = rows.first().map_or(0, |r| r.as_ref().len());
        let mut probs = Vec::with_capacity(vocab * rows.len());
        for (i, row) in rows.iter().enumerate() {
            if row.as_ref().len() != vocab {
                return Err(Error::ShapeMismatch {
                    what: "probability row length",
                    expected: vocab,
                    found: rows[i].as_ref().len(),
                });
            }
            probs.extend_from_slice(row.as_ref());
        }
        Self::new(vocab, probs)
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Number of positions.
    pub fn rows(&self) -> usize {
        self.probs.len() / self.vocab
    }

    /// The distribution at position `i` (relative to the table's start).
    ///
    /// # Panics
    /// When `i >= self.rows()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.probs[i * self.vocab..(i + 1) * self.vocab]
    }

    /// Every row in order.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f32]> {
        self.probs.chunks(self.vocab)
    }
}

/// Samples from an unnormalized distribution with the uniform draw `u` in
/// (0, 1) by inverting its cumulative sum.
pub fn sample_inverse_cdf(weights: &[f32], u: f64) -> TokenId {
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let threshold = u * total;
    let mut cumulative = 0.0;
    let mut last_positive = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            cumulative += f64::from(w);
            last_positive = i;
            if cumulative > threshold {
                return i as TokenId;
            }
        }
    }
    // Rounding can leave `threshold` a hair above the sum.
    last_positive as TokenId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_tables() {
        assert!(ProbTable::new(0, vec![]).is_err());
        assert!(ProbTable::new(3, vec![0.5, 0.5]).is_err());
        assert!(matches!(
            ProbTable::new(2, vec![0.5, 0.5, 0.0, 0.0]),
            Err(Error::InvalidDistribution { row: 1, .. })
        ));
        assert!(ProbTable::new(2, vec![f32::NAN, 1.0]).is_err());
        assert!(ProbTable::new(2, vec![-0.1, 1.1]).is_err());
        assert!(ProbTable::from_rows(&[vec![1.0, 0.0], vec![1.0]]).is_err());
    }

    #[test]
    fn rows_round_trip() {
        let t = ProbTable::from_rows(&[[0.25f32, 0.75], [1.0, 0.0]]).unwrap();
        assert_eq!(t.rows(), 2);
        assert_eq!(t.vocab(), 2);
        assert_eq!(t.row(1), &[1.0, 0.0]);
    }

    #[test]
    fn inverse_cdf_hits_each_bucket() {
        let w = [0.0f32, 1.0, 0.0, 3.0];
        assert_eq!(sample_inverse_cdf(&w, 0.1), 1);
        assert_eq!(sample_inverse_cdf(&w, 0.26), 3);
        assert_eq!(sample_inverse_cdf(&w, 0.999_999), 3);
    }
}
