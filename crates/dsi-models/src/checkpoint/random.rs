//! Random weights of any shape, for benchmarks and tests that need a model
//! of a real size without shipping one.

use super::{HostTensor, TensorSource};
use crate::Result;
use dsi_core::rng::SplitMix64;

/// Deterministic random weights: norms at 1, everything else uniform with
/// standard deviation `std`.
#[derive(Debug, Clone, Copy)]
pub struct RandomWeights {
    /// Seed of the values.
    pub seed: u64,
    /// Standard deviation of non-norm weights.
    pub std: f32,
}

impl TensorSource for RandomWeights {
    fn read(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let count: usize = shape.iter().product();
        let values = if name.contains("norm") {
            vec![1.0; count]
        } else {
            let salt = name
                .bytes()
                .fold(self.seed, |h, b| h.rotate_left(5) ^ u64::from(b));
            let mut rng = SplitMix64::new(salt);
            // Uniform on [-a, a] has standard deviation a / sqrt(3).
            let a = self.std * 3f32.sqrt();
            (0..count)
                .map(|_| (rng.next_open01() as f32 * 2.0 - 1.0) * a)
                .collect()
        };
        Ok(HostTensor {
            shape: shape.to_vec(),
            values,
        })
    }
}
