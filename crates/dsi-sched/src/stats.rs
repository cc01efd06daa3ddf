//! Metrics of one request: the state machine's counters plus what only the
//! driver can measure (times, busy workers, scheduling overhead).

use dsi_core::schedule::{Counters, Mode, Policy};
use dsi_core::tune::Decision;
use serde::Serialize;

/// Where a request's starting acceptance estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorSource {
    /// The pool's recent requests.
    History,
    /// A teacher-forced probe on the request's prompt.
    Probe,
    /// Neither was available (no drafter, a prompt too short to probe): 0.5.
    Default,
}

/// What `auto` chose for a request and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoStats {
    /// The starting acceptance estimate.
    pub prior: f64,
    /// Where it came from.
    pub prior_from: PriorSource,
    /// The acceptance estimate at the end.
    pub acceptance: f64,
    /// The first choice, then every switch, each with the predicted time
    /// per token of the best policy of every mode at that estimate.
    pub decisions: Vec<Decision>,
    /// What the policy that ran at the end predicts per token at the final
    /// estimate, and what the request measured after its first token: far
    /// apart, the profile no longer describes the machine.
    pub predicted_ms_per_token: f64,
    /// Milliseconds per token after the first (0 with fewer than 2).
    pub measured_ms_per_token: f64,
}

impl AutoStats {
    /// Measured over predicted time per token, when both are known.
    pub fn drift(&self) -> Option<f64> {
        (self.predicted_ms_per_token > 0.0 && self.measured_ms_per_token > 0.0)
            .then(|| self.measured_ms_per_token / self.predicted_ms_per_token)
    }
}

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
    /// What `auto` chose and why (absent for a fixed mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoStats>,
}

impl Stats {
    /// The policy the request ran at its end (`nonsi`, `si k=4`, `dsi k=5
    /// N=2`): its mode, lookahead and servers, normalized.
    pub fn policy(&self) -> Policy {
        Policy {
            mode: self.mode,
            k: self.k,
            servers: self.targets,
        }
        .normalized()
    }

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
            auto: None,
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
