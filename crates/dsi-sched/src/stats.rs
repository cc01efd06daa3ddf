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
    /// Draft batches delivered.
    pub drafts: u64,
    /// Tokens drafted.
    pub draft_tokens: u64,
    /// Drafted tokens that became output.
    pub accepted_tokens: u64,
    /// Per draft index within a verification job: the fraction of jobs
    /// reaching it that accepted it.
    pub acceptance_by_position: Vec<f64>,
    /// Verification jobs handed to target workers.
    pub jobs_started: u64,
    /// Verification jobs whose verdict was used.
    pub jobs_finished: u64,
    /// Verification jobs preempted.
    pub jobs_preempted: u64,
    /// Queued verification jobs dropped before running.
    pub jobs_dropped: u64,
    /// Target forwards that added no token.
    pub wasted_target_forwards: u64,
    /// Draft batches preempted or discarded.
    pub wasted_drafts: u64,
    /// Epochs (one plus the number of rejections).
    pub epochs: u64,
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
    /// Worker failures and timeouts, in order.
    pub errors: Vec<String>,
    /// True when the drafter failed and the request finished as non-SI.
    pub fell_back_to_nonsi: bool,
}

impl Stats {
    pub(crate) fn from_counters(c: &Counters) -> Self {
        Self {
            mode: Mode::NonSi,
            k: 0,
            targets: 0,
            new_tokens: 0,
            drafts: c.drafts,
            draft_tokens: c.draft_tokens,
            accepted_tokens: c.accepted_tokens,
            acceptance_by_position: c.acceptance_by_position(),
            jobs_started: c.jobs_started,
            jobs_finished: c.jobs_finished,
            jobs_preempted: c.jobs_preempted,
            jobs_dropped: c.jobs_dropped,
            wasted_target_forwards: c.wasted_target_forwards,
            wasted_drafts: c.wasted_drafts,
            epochs: c.epochs,
            max_concurrent_jobs: 0,
            ttft_ms: 0.0,
            tokens_per_s: 0.0,
            total_ms: 0.0,
            overhead_us_median: 0.0,
            workers: Vec::new(),
            errors: c.errors.clone(),
            fell_back_to_nonsi: c.fell_back_to_nonsi,
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
