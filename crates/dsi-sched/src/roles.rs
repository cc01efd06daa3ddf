//! What a device handle can do for the scheduler: draft, or score drafts.
//!
//! These traits are the scheduler's whole view of a model. Everything that
//! crosses them is plain data (token ids, probabilities, a cancellation
//! flag), so a worker may be a burn model on any device, a test fake, a
//! latency-emulating stand-in, or later a model in another process.

use crate::forwards::ForwardLog;
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::cancel::CancelFlag;
use dsi_core::model::{ForwardError, SeqId};
use dsi_core::sampling::Decoding;
use dsi_core::schedule::Drafted;
use dsi_core::verify::{ProbTable, VerifyRule, verify_greedy};
use dsi_core::{DraftChain, TokenId, Verdict};

/// One request's job in a batched call to a role.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The request: whose KV cache the job uses.
    pub request: SeqId,
    /// Verified tokens, plus the drafts to score for a scorer.
    pub context: &'a [TokenId],
    /// For a drafter, the tokens to draft; for a scorer, how many of the
    /// context's last tokens are drafts.
    pub count: usize,
    /// Sampling and verification rule of the request.
    pub decoding: &'a Decoding,
    /// Raised when the job is preempted or the request ends.
    pub cancel: &'a CancelFlag,
}

/// What one batched call did for a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobStep<T> {
    /// It fed one chunk of a long prefix and needs another call; the worker
    /// serves other requests in between.
    Prefilled,
    /// It finished.
    Done(T),
}

/// One result per job of a batched call, in order.
pub type JobResults<T> = Vec<Result<JobStep<T>, ForwardError>>;

/// One result per item of a batched call: those already decided in
/// `decided` (items refused before any forward), the others from one call
/// of `run` on their indices, in order. An item `run` leaves without a
/// result fails.
pub(crate) fn complete<T>(
    mut decided: Vec<Option<Result<T, ForwardError>>>,
    run: impl FnOnce(&[usize]) -> Vec<Result<T, ForwardError>>,
) -> Vec<Result<T, ForwardError>> {
    let undecided: Vec<usize> = (0..decided.len())
        .filter(|&i| decided[i].is_none())
        .collect();
    let mut ran = run(&undecided).into_iter();
    for i in undecided {
        decided[i] = ran.next();
    }
    decided
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ForwardError::Failed("no result for a job".into()))))
        .collect()
}

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

/// What the verifier needs from the target at each position.
#[derive(Debug, Clone, PartialEq)]
pub enum Scores {
    /// The target's greedy choice per position (enough for greedy decoding).
    Choices(Vec<TokenId>),
    /// The target's distribution per position.
    Probs(ProbTable),
}

impl Scores {
    /// The verdict on `drafts` placed at absolute position `start`.
    pub fn verdict(
        &self,
        rule: &VerifyRule,
        start: usize,
        drafts: &[TokenId],
        draft_probs: Option<&ProbTable>,
    ) -> dsi_core::Result<Verdict> {
        match self {
            Scores::Choices(choices) => match rule {
                VerifyRule::Greedy => verify_greedy(drafts, choices),
                _ => Err(dsi_core::Error::InvalidParameter {
                    name: "scores",
                    value: "greedy choices".into(),
                    expected: "distributions when sampling",
                }),
            },
            Scores::Probs(table) => {
                rule.verify(&DraftChain::new(start, drafts.to_vec()), table, draft_probs)
            }
        }
    }
}

/// A scored job: what the verifier needs, and the target's raw logits when
/// the request asks for log probabilities (they stay on the worker, which
/// turns the emitted tokens' rows into [`TokenLogprobs`]).
///
/// [`TokenLogprobs`]: dsi_core::sampling::TokenLogprobs
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// What the verifier needs.
    pub scores: Scores,
    /// `count + 1` rows of raw logits, one per scored position.
    pub logits: Option<Vec<f32>>,
}

impl From<Scores> for Scored {
    fn from(scores: Scores) -> Self {
        Self {
            scores,
            logits: None,
        }
    }
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
