//! Metrics of one request: the state machine's counters plus what only the
//! driver can measure (times, busy workers, scheduling overhead).

use dsi_core::schedule::{Counters, Mode};
use serde::Serialize;

/// Busy time of one worker during a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStats {
    /// The worker's name (its device).
    pub name: String,
    /// `drafter` or `target`.
    pub role: &'static str,
    /// Jobs it began.
    pub jobs: u64,
    /// Time spent computing, in milliseconds.
    pub busy_ms: f64,
}

/// Everything measured about one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The algorithm (non-SI after a drafter failure).
    pub mode: Mode,
    /// Drafts per verification job.
    pub k: usize,
    /// Target workers in the pool.
    pub targets: usize,
    /// Tokens generated.
    pub new_tokens: usize,
    /// What the state machine counted: drafts, accepted tokens, jobs
    /// started, finished, preempted and dropped, wasted forwards, epochs,
    /// errors (flattened into the same JSON object).
    #[serde(flatten)]
    pub counters: Counters,
    /// Per draft index within a verification job: the fraction of jobs
    /// reaching it that accepted it.
    pub acceptance_by_position: Vec<f64>,
    /// Most jobs running at once on distinct workers (drafter included).
    pub max_concurrent_jobs: usize,
    /// Time to the first verified token, in milliseconds.
    pub ttft_ms: f64,
    /// New tokens per second of the whole request.
    pub tokens_per_s: f64,
    /// Wall time of the request, in milliseconds.
    pub total_ms: f64,
    /// Median time from the event that made a job runnable to its start on
    /// a worker, in microseconds.
    pub overhead_us_median: f64,
    /// Per worker: jobs and busy time.
    pub workers: Vec<WorkerStats>,
}

impl Stats {
    pub(crate) fn from_counters(counters: &Counters) -> Self {
        Self {
            mode: Mode::NonSi,
            k: 0,
            targets: 0,
            new_tokens: 0,
            acceptance_by_position: counters.acceptance_by_position(),
            counters: counters.clone(),
            max_concurrent_jobs: 0,
            ttft_ms: 0.0,
            tokens_per_s: 0.0,
            total_ms: 0.0,
            overhead_us_median: 0.0,
            workers: Vec::new(),
        }
    }
}

/// The median of `samples` (0 when empty).
pub(crate) fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}
