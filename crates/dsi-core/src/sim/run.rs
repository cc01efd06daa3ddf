//! Repeated simulations and their mean costs.

use super::algorithms::{dsi_cost, nonsi_cost, si_cost};
use super::{AcceptanceSampler, SimParams};
use crate::rng::derive_seed;
use serde::Serialize;

/// Costs of one configuration, in target forwards.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Costs {
    /// Plain autoregressive decoding.
    pub nonsi: f64,
    /// Speculative inference.
    pub si: f64,
    /// Distributed speculative inference.
    pub dsi: f64,
}

impl Costs {
    /// How many times faster DSI is than SI.
    pub fn speedup_dsi_over_si(&self) -> f64 {
        self.si / self.dsi
    }

    /// How many times faster DSI is than non-SI.
    pub fn speedup_dsi_over_nonsi(&self) -> f64 {
        self.nonsi / self.dsi
    }

    /// How many times faster SI is than non-SI (below 1: a slowdown).
    pub fn speedup_si_over_nonsi(&self) -> f64 {
        self.nonsi / self.si
    }
}

/// A configuration simulated `repeats` times from `seed`.
///
/// Repeat `r` draws its acceptance counts from one stream seeded by
/// `derive_seed(seed, r)`; SI and DSI each replay that same stream, so their
/// comparison within a repeat uses the same luck.
#[derive(Debug, Clone, Copy)]
pub struct Simulation {
    /// The configuration.
    pub params: SimParams,
    /// Number of repeats, at least 1.
    pub repeats: usize,
    /// Seed of the whole simulation.
    pub seed: u64,
}

impl Simulation {
    /// The costs of repeat `index`.
    pub fn repeat(&self, index: usize) -> Costs {
        let seed = derive_seed(self.seed, index as u64);
        let sampler = AcceptanceSampler::new(self.params.a(), self.params.k(), seed);
        Costs {
            nonsi: nonsi_cost(&self.params),
            si: si_cost(&self.params, &mut sampler.clone()),
            dsi: dsi_cost(&self.params, &mut sampler.clone()),
        }
    }

    /// Mean costs over every repeat.
    pub fn mean(&self) -> Costs {
        let repeats = self.repeats.max(1);
        let mut sum = Costs {
            nonsi: 0.0,
            si: 0.0,
            dsi: 0.0,
        };
        for index in 0..repeats {
            let costs = self.repeat(index);
            sum.nonsi += costs.nonsi;
            sum.si += costs.si;
            sum.dsi += costs.dsi;
        }
        let n = repeats as f64;
        Costs {
            nonsi: sum.nonsi / n,
            si: sum.si / n,
            dsi: sum.dsi / n,
        }
    }
}
