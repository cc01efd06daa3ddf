//! What a device handle can do for the scheduler: draft, or score drafts.
//!
//! These traits are the scheduler's whole view of a model. Everything that
//! crosses them is plain data (token ids, probabilities, a cancellation
//! flag), so a worker may be a burn model on any device, a test fake, a
//! latency-emulating stand-in, or later a model in another process.

use crate::forwards::ForwardLog;
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::model::SeqId;
use dsi_core::schedule::Drafted;
pub use dsi_core::worker::{Job, JobResults, JobStep, Scored, Scores};

/// What a worker asks of either role's KV caches (one per request): how
/// they grow, what they hold, what the next call would feed, and forgetting
/// them. The defaults suit a role with no budgeted cache.
pub trait CacheState {
    /// Forgets `request`'s cached state and frees its memory.
    fn release(&mut self, _request: SeqId) {}

    /// Forgets every request's cached state (a panic left it unknown).
    fn reset(&mut self) {}

    /// How one request's KV cache grows, for the memory budget (`None`:
    /// unbudgeted).
    fn footprint(&self) -> Option<CacheFootprint> {
        None
    }

    /// Bytes its KV caches hold now.
    fn cache_bytes(&self) -> usize {
        0
    }

    /// Where its forwards are recorded, if it records them.
    fn forward_log(&self) -> Option<ForwardLog> {
        None
    }

    /// Tokens the next call for `job` would feed, the count that a batch's
    /// token budget (`--max-batch-tokens`) limits. `rows` is how many
    /// logit rows the job reads (1 to draft, drafts + 1 to verify), which
    /// the default assumes is all it feeds.
    fn next_feed(&self, _job: &Job<'_>, rows: usize) -> usize {
        rows
    }
}

/// Proposes tokens after a prefix.
pub trait Drafter: CacheState + Send {
    /// Drafts `job.count` tokens after each job's context, each with the
    /// drafter's distribution when its decoding needs it, stepping every job
    /// at once. A job whose flag is raised stops with
    /// [`ForwardError::Cancelled`] at the next step.
    fn draft(&mut self, jobs: &[Job<'_>]) -> JobResults<Vec<Drafted>>;
}

/// Scores a prefix plus drafts with the target model.
pub trait Scorer: CacheState + Send {
    /// Scores each job's context, whose last `job.count` tokens are drafts:
    /// what the verifier needs at the `count + 1` positions from
    /// `context.len() - count` on, every job in one forward where it can.
    /// Every row is processed by the request's logits processors against
    /// its own prefix, exactly as the drafter processed its rows.
    fn score(&mut self, jobs: &[Job<'_>]) -> JobResults<Scored>;
}
