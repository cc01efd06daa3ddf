//! Initial weights for training: GPT-2's recipe. Every matrix is drawn
//! with one standard deviation, except the two projections per layer that
//! write into the residual stream (attention output, MLP down), which are
//! scaled by `1 / sqrt(2 * layers)`: each layer adds two terms to the
//! stream, so without the scale its variance at the last layer grows with
//! depth and deep models start (and train) worse than shallow ones.

use crate::Result;
use crate::checkpoint::{HostTensor, RandomWeights, TensorSource};
use crate::config::ModelConfig;
use crate::transformer::names::ModelNames;
use std::collections::HashSet;

/// [`RandomWeights`] with the residual projections scaled down by depth.
#[derive(Debug, Clone)]
pub struct DepthScaledInit {
    base: RandomWeights,
    residual_std: f32,
    residual: HashSet<String>,
}

impl DepthScaledInit {
    /// Weights of `config` drawn with `std`, residual projections with
    /// `std / sqrt(2 * layers)`.
    pub fn new(config: &ModelConfig, seed: u64, std: f32) -> Self {
        let names = ModelNames::of(config);
        let residual = names
            .layers
            .iter()
            .flat_map(|layer| layer.o.parts.iter().chain(&layer.down.parts))
            .map(|(prefix, _)| format!("{prefix}.weight"))
            .collect();
        Self {
            base: RandomWeights { seed, std },
            residual_std: std / (2.0 * config.num_layers.max(1) as f32).sqrt(),
            residual,
        }
    }

    /// The standard deviation `name` is drawn with (norms are ones).
    pub fn std_of(&self, name: &str) -> f32 {
        if self.residual.contains(name) {
            self.residual_std
        } else {
            self.base.std
        }
    }
}

impl TensorSource for DepthScaledInit {
    fn read(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let source = RandomWeights {
            std: self.std_of(name),
            ..self.base
        };
        source.read(name, shape)
    }
}
