//! Synthetic workers: real scheduling, fake models. They hold the real
//! scheduler against the paper's offline simulator.
//!
//! The world: the target's token at each position is keyed randomness,
//! `0` with probability `a` and `1` otherwise; the drafter always guesses
//! `0`. So each draft is accepted independently with probability `a`, and
//! the accepted count of a verification is geometric with rate `a`, capped
//! by the lookahead, exactly the simulator's law. Forwards are sleeps.

use crate::pause::sleep_until;
use crate::roles::{CacheState, Drafter, Job, JobResults, JobStep, Scored, Scorer, Scores};
use dsi_core::TokenId;
use dsi_core::model::ForwardError;
use dsi_core::rng::keyed_open01;
use dsi_core::schedule::Drafted;
use dsi_core::sim::AcceptanceSource;
use std::time::{Duration, Instant};

/// The token the drafter always proposes.
pub const GUESS: TokenId = 0;
/// The token the target emits where it disagrees with the drafter.
pub const OTHER: TokenId = 1;
const LANE: u64 = 0x5157 << 40;

/// The target's token at every position, for acceptance rate `a`.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticWorld {
    /// Probability that the target agrees with a draft.
    pub a: f64,
    /// Seed of the keyed randomness.
    pub seed: u64,
}

impl SyntheticWorld {
    /// The target's token at absolute `position`.
    pub fn truth(&self, position: usize) -> TokenId {
        if keyed_open01(self.seed, position as u64, LANE) < self.a {
            GUESS
        } else {
            OTHER
        }
    }
}

/// The world's acceptances as the simulator's count source, so the
/// simulator can be fed the same luck a measured run had.
#[derive(Debug, Clone, Copy)]
pub struct WorldCounts {
    /// The world.
    pub world: SyntheticWorld,
    /// The lookahead (counts are capped at it, as the simulator's are).
    pub k: usize,
    /// Absolute position of the first generated token (the prompt length).
    pub offset: usize,
}

impl AcceptanceSource for WorldCounts {
    fn next_count_at(&mut self, position: usize) -> usize {
        let first = self.offset + position;
        (first..first + self.k)
            .take_while(|&p| self.world.truth(p) == GUESS)
            .count()
    }
}

/// A drafter that spends `step` per draft and always guesses [`GUESS`].
#[derive(Debug, Clone, Copy)]
pub struct SyntheticDrafter {
    /// Time per drafted token.
    pub step: Duration,
}

impl CacheState for SyntheticDrafter {}

impl Drafter for SyntheticDrafter {
    /// The jobs one after the other: synthetic workers model the paper's
    /// unbatched servers.
    fn draft(&mut self, jobs: &[Job<'_>]) -> JobResults<Vec<Drafted>> {
        let draft = |job: &Job<'_>| {
            let began = Instant::now();
            for i in 1..=job.count {
                if !sleep_until(began + self.step * i as u32, || job.cancel.is_cancelled()) {
                    return Err(ForwardError::Cancelled);
                }
            }
            let guess = Drafted {
                token: GUESS,
                probs: None,
            };
            Ok(JobStep::Done(vec![guess; job.count]))
        };
        jobs.iter().map(draft).collect()
    }
}

/// A target that spends `forward` per verification and answers with
/// [`SyntheticWorld::truth`] (greedy decoding only).
#[derive(Debug, Clone, Copy)]
pub struct SyntheticTarget {
    /// The world it answers from.
    pub world: SyntheticWorld,
    /// Time per forward.
    pub forward: Duration,
}

impl CacheState for SyntheticTarget {}

impl Scorer for SyntheticTarget {
    /// The jobs one after the other, a forward each.
    fn score(&mut self, jobs: &[Job<'_>]) -> JobResults<Scored> {
        let score = |job: &Job<'_>| {
            if !job.decoding.params.is_greedy() {
                return Err(ForwardError::Failed(
                    "synthetic targets answer greedy requests only".into(),
                ));
            }
            if !sleep_until(Instant::now() + self.forward, || job.cancel.is_cancelled()) {
                return Err(ForwardError::Cancelled);
            }
            let start = job.context.len() - job.count;
            Ok(JobStep::Done(
                Scores::Choices(
                    (start..=job.context.len())
                        .map(|p| self.world.truth(p))
                        .collect(),
                )
                .into(),
            ))
        };
        jobs.iter().map(score).collect()
    }
}
