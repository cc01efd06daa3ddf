//! The real scheduler on synthetic workers against the paper's offline
//! simulator: measured wall-clock speedups next to the predicted ones.
//!
//! Every repeat builds a fresh pool over one [`SyntheticWorld`] and runs
//! non-SI, SI and DSI on it, so the three see the same acceptances. The
//! prediction is the simulator fed those same acceptances, position by
//! position ([`WorldCounts`]), so luck cancels and what remains is the
//! difference between real scheduling and the simulator's time model. The
//! simulator's expectation over many seeded repeats is reported beside it.

use crate::batch::Role;
use crate::error::{Result, SchedError};
use crate::pool::Pool;
use crate::request::Request;
use crate::stats::median;
use crate::synthetic::{OTHER, SyntheticDrafter, SyntheticTarget, SyntheticWorld, WorldCounts};
use crate::worker::WorkerHandle;
use dsi_core::rng::derive_seed;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::Mode;
use dsi_core::sim::algorithms::{dsi_cost, si_cost};
use dsi_core::sim::{SimParams, Simulation};
use serde::Serialize;
use std::time::Duration;

/// The benchmark grid: (a, c, k, servers), servers at the paper's rule
/// `ceil(1 / (k c))` or above it, acceptance from 0.5 to 0.95.
pub const GRID: [(f64, f64, usize, usize); 12] = [
    (0.5, 0.1, 2, 5),
    (0.5, 0.2, 1, 5),
    (0.6, 0.1, 4, 3),
    (0.7, 0.05, 5, 4),
    (0.7, 0.1, 3, 4),
    (0.7, 0.2, 2, 3),
    (0.8, 0.05, 8, 3),
    (0.8, 0.1, 5, 2),
    (0.9, 0.05, 10, 2),
    (0.9, 0.1, 5, 2),
    (0.9, 0.2, 3, 2),
    (0.95, 0.1, 5, 2),
];

/// Seeded repeats behind the simulator's expectation.
const EXPECTATION_REPEATS: usize = 2000;

/// One configuration to measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedBench {
    /// Drafter latency as a fraction of the target's.
    pub c: f64,
    /// Acceptance rate.
    pub a: f64,
    /// Lookahead.
    pub k: usize,
    /// Target servers.
    pub servers: usize,
    /// Target forward latency.
    pub target: Duration,
    /// Tokens per generation.
    pub tokens: usize,
    /// Generations per mode.
    pub repeats: usize,
    /// Seed of the acceptances.
    pub seed: u64,
    /// See `Pool::with_early_bonus`; off reproduces the simulator's timing.
    pub early_bonus: bool,
}

/// Measured and predicted figures of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchedBenchReport {
    /// Drafter latency as a fraction of the target's.
    pub c: f64,
    /// Acceptance rate.
    pub a: f64,
    /// Lookahead.
    pub k: usize,
    /// Target servers.
    pub servers: usize,
    /// The paper's server rule, `ceil(1 / (k c))`.
    pub min_servers: usize,
    /// Target forward latency in milliseconds.
    pub target_ms: f64,
    /// Tokens per generation.
    pub tokens: usize,
    /// Generations per mode.
    pub repeats: usize,
    /// Whether a disagreeing bonus token ended epochs early.
    pub early_bonus: bool,
    /// Mean wall time of non-SI, in milliseconds.
    pub nonsi_ms: f64,
    /// Mean wall time of SI, in milliseconds.
    pub si_ms: f64,
    /// Mean wall time of DSI, in milliseconds.
    pub dsi_ms: f64,
    /// `si_ms / dsi_ms`.
    pub measured_speedup_dsi_over_si: f64,
    /// `nonsi_ms / dsi_ms`.
    pub measured_speedup_dsi_over_nonsi: f64,
    /// `nonsi_ms / si_ms`.
    pub measured_speedup_si_over_nonsi: f64,
    /// The simulator's SI cost over its DSI cost, on the same acceptances.
    pub predicted_speedup_dsi_over_si: f64,
    /// The simulator's non-SI cost over its DSI cost, on the same acceptances.
    pub predicted_speedup_dsi_over_nonsi: f64,
    /// The simulator's non-SI cost over its SI cost, on the same acceptances.
    pub predicted_speedup_si_over_nonsi: f64,
    /// The simulator's expected DSI/SI speedup (mean over seeded repeats).
    pub expected_speedup_dsi_over_si: f64,
    /// The simulator's expected DSI/non-SI speedup.
    pub expected_speedup_dsi_over_nonsi: f64,
    /// `measured / predicted - 1` for DSI over SI.
    pub relative_error_dsi_over_si: f64,
    /// `measured / predicted - 1` for DSI over non-SI.
    pub relative_error_dsi_over_nonsi: f64,
    /// Median time from the event that made a job runnable to its start on
    /// a worker, over every DSI job, in microseconds.
    pub overhead_us_per_job: f64,
    /// DSI verification jobs preempted, summed over repeats.
    pub dsi_jobs_preempted: u64,
    /// True when every generation emitted exactly the target's tokens.
    pub lossless: bool,
}

impl SchedBench {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<SimParams> {
        let params = SimParams::new(self.c, self.a, self.k, self.tokens)?;
        if self.servers == 0 || self.repeats == 0 {
            return Err(SchedError::Unfit(
                "servers and repeats must be at least 1".into(),
            ));
        }
        if self.target.is_zero() {
            return Err(SchedError::Unfit(
                "the target latency must be positive".into(),
            ));
        }
        Ok(params)
    }

    /// Runs every repeat of the three modes and compares with the simulator.
    pub async fn run(&self) -> Result<SchedBenchReport> {
        let params = self.validate()?;
        let mut time_ms = [0.0f64; 3];
        let mut overhead = Vec::new();
        let mut preempted = 0;
        let mut lossless = true;
        let mut predicted = [0.0f64; 3];
        for repeat in 0..self.repeats {
            let world = SyntheticWorld {
                a: self.a,
                seed: derive_seed(self.seed, repeat as u64),
            };
            let pool = self.pool(world)?;
            let truth: Vec<_> = (1..=self.tokens).map(|p| world.truth(p)).collect();
            let mut counts = WorldCounts {
                world,
                k: self.k,
                offset: 1,
            };
            predicted[0] += self.tokens as f64;
            predicted[1] += si_cost(&params, &mut counts.clone());
            predicted[2] += dsi_cost(&params, &mut counts);
            for (i, mode) in [Mode::NonSi, Mode::Si, Mode::Dsi].into_iter().enumerate() {
                let request = Request {
                    prompt: vec![OTHER],
                    mode: mode.into(),
                    k: self.k,
                    max_new_tokens: self.tokens,
                    eos: Vec::new(),
                    decoding: Decoding::greedy(),
                    targets: None,
                };
                let generation = pool.generate(request, |_| {}).await?;
                lossless &= generation.tokens == truth;
                time_ms[i] += generation.stats.total_ms;
                if mode == Mode::Dsi {
                    overhead.push(generation.stats.overhead_us_median);
                    preempted += generation.stats.counters.jobs_preempted;
                }
            }
        }
        let n = self.repeats as f64;
        let [nonsi_ms, si_ms, dsi_ms] = time_ms.map(|t| t / n);
        let expected = Simulation {
            params,
            repeats: EXPECTATION_REPEATS,
            seed: self.seed,
        }
        .mean();
        let [p_nonsi, p_si, p_dsi] = predicted;
        let measured_si = si_ms / dsi_ms;
        let measured_nonsi = nonsi_ms / dsi_ms;
        Ok(SchedBenchReport {
            c: self.c,
            a: self.a,
            k: self.k,
            servers: self.servers,
            min_servers: params.min_servers(),
            target_ms: self.target.as_secs_f64() * 1e3,
            tokens: self.tokens,
            repeats: self.repeats,
            early_bonus: self.early_bonus,
            nonsi_ms,
            si_ms,
            dsi_ms,
            measured_speedup_dsi_over_si: measured_si,
            measured_speedup_dsi_over_nonsi: measured_nonsi,
            measured_speedup_si_over_nonsi: nonsi_ms / si_ms,
            predicted_speedup_dsi_over_si: p_si / p_dsi,
            predicted_speedup_dsi_over_nonsi: p_nonsi / p_dsi,
            predicted_speedup_si_over_nonsi: p_nonsi / p_si,
            expected_speedup_dsi_over_si: expected.speedup_dsi_over_si(),
            expected_speedup_dsi_over_nonsi: expected.speedup_dsi_over_nonsi(),
            relative_error_dsi_over_si: measured_si / (p_si / p_dsi) - 1.0,
            relative_error_dsi_over_nonsi: measured_nonsi / (p_nonsi / p_dsi) - 1.0,
            overhead_us_per_job: median(&mut overhead),
            dsi_jobs_preempted: preempted,
            lossless,
        })
    }

    fn pool(&self, world: SyntheticWorld) -> Result<Pool> {
        let step = self.target.mul_f64(self.c);
        let drafter = WorkerHandle::spawn(
            "synthetic drafter",
            Role::Drafter(Box::new(SyntheticDrafter { step })),
        )?;
        let targets = (0..self.servers)
            .map(|i| {
                WorkerHandle::spawn(
                    format!("synthetic target {i}"),
                    Role::Target(Box::new(SyntheticTarget {
                        world,
                        forward: self.target,
                    })),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Pool::new(Some(drafter), targets)?.with_early_bonus(self.early_bonus))
    }
}
