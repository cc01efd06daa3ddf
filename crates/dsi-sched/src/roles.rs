//! What a device handle can do for the scheduler: draft, or score drafts.
//!
//! These traits are the scheduler's whole view of a model. Everything that
//! crosses them is plain data (token ids, probabilities, a cancellation
//! flag), so a worker may be a burn model on any device, a test fake, a
//! latency-emulating stand-in, or later a model in another process.

use dsi_core::cache_layout::CacheFootprint;
use dsi_core::cancel::CancelFlag;
use dsi_core::model::ForwardError;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::Drafted;
use dsi_core::verify::{ProbTable, VerifyRule, verify_greedy};
use dsi_core::{DraftChain, TokenId, Verdict};

/// What a worker asks of either role's KV cache: how it grows, what it
/// holds, filling it a chunk at a time, and forgetting it. The defaults suit
/// a role with no budgeted cache.
pub trait CacheState {
    /// Forgets any cached state and frees its memory (a request ended, or a
    /// panic left the state unknown).
    fn reset(&mut self) {}

    /// How its KV cache grows, for the memory budget (`None`: unbudgeted).
    fn footprint(&self) -> Option<CacheFootprint> {
        None
    }

    /// Bytes its KV cache holds now.
    fn cache_bytes(&self) -> usize {
        0
    }

    /// Feeds one chunk of what the cache lacks of `context` when more than
    /// a chunk is missing; true when it did (the job is not done: the worker
    /// serves other requests before the next chunk). The default feeds
    /// nothing: the job's own forward takes the whole prefix.
    fn prefill_step(
        &mut self,
        _context: &[TokenId],
        _cancel: &CancelFlag,
    ) -> Result<bool, ForwardError> {
        Ok(false)
    }
}

/// Proposes tokens after a prefix.
pub trait Drafter: CacheState + Send {
    /// Drafts `count` tokens after `context`, each with the drafter's
    /// distribution when `decoding` needs it. Stops with
    /// [`ForwardError::Cancelled`] between steps once `cancel` is raised.
    fn draft(
        &mut self,
        context: &[TokenId],
        count: usize,
        decoding: &Decoding,
        cancel: &CancelFlag,
    ) -> Result<Vec<Drafted>, ForwardError>;

    /// Another drafter over the same weights with an empty cache, so a
    /// worker can keep one cache per request; `None` when it cannot.
    fn fork(&self) -> Option<Box<dyn Drafter>> {
        None
    }
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

/// Scores a prefix plus drafts with the target model.
pub trait Scorer: CacheState + Send {
    /// Scores `context`, whose last `drafts` tokens are drafts: returns what
    /// the verifier needs at the `drafts + 1` positions from
    /// `context.len() - drafts` on.
    fn score(
        &mut self,
        context: &[TokenId],
        drafts: usize,
        decoding: &Decoding,
        cancel: &CancelFlag,
    ) -> Result<Scores, ForwardError>;

    /// Another scorer over the same weights with an empty cache, so a
    /// worker can keep one cache per request; `None` when it cannot.
    fn fork(&self) -> Option<Box<dyn Scorer>> {
        None
    }
}
