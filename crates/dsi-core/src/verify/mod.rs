//! Lossless verification rules: which drafts the target accepts, and which
//! token the target adds after them.
//!
//! Every rule sees `n` drafts and `n + 1` target distributions (one per draft
//! position plus the bonus position) and returns a [`Verdict`]. Randomness is
//! keyed by `(seed, absolute position)` (see [`crate::rng`]), so concurrent
//! verifications of overlapping chains agree position by position.
//!
//! - [`VerifyRule::Greedy`]: accept while the draft equals the target's argmax.
//! - [`VerifyRule::Speculative`]: Leviathan et al. / Chen et al. 2023; accept
//!   `x` with probability `min(1, p(x) / q(x))`, else sample the normalized
//!   residual `max(0, p - q)`; the bonus token is sampled from `p`. The output
//!   follows the target's distribution.
//! - [`VerifyRule::Coupled`]: drafter and target sample with the same
//!   Gumbel-max randomness per position; accept while the draws agree. For a
//!   given seed the output is exactly what seeded non-SI sampling emits.

mod coupled;
mod greedy;
mod probs;
mod speculative;

pub use coupled::coupled_sample;
pub use greedy::{argmax, verify_greedy};
pub use probs::{ProbTable, sample_inverse_cdf};

use crate::{DraftChain, Error, Result, TokenId, Verdict};
use serde::{Deserialize, Serialize};

/// Lanes of keyed randomness, so draws for different purposes at the same
/// position are independent.
pub(crate) mod lane {
    /// The target's own sample (non-SI decoding and the bonus token).
    pub(crate) const TARGET: u64 = 1 << 40;
    /// The drafter's sample under speculative sampling.
    pub(crate) const DRAFT: u64 = 2 << 40;
    /// The accept/reject coin of speculative sampling.
    pub(crate) const ACCEPT: u64 = 3 << 40;
    /// The residual sample after a rejection.
    pub(crate) const RESIDUAL: u64 = 4 << 40;
}

/// How drafts are verified, and how drafter and target pick tokens so that
/// the rule stays lossless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum VerifyRule {
    /// Exact match against the target's argmax.
    Greedy,
    /// Speculative sampling; the output follows the target's distribution.
    Speculative {
        /// Seed of the keyed randomness.
        seed: u64,
    },
    /// Seeded coupled sampling; the output equals seeded non-SI sampling.
    Coupled {
        /// Seed of the keyed randomness.
        seed: u64,
    },
}

impl VerifyRule {
    /// True when [`VerifyRule::verify`] needs the drafter's distributions.
    pub fn needs_draft_probs(&self) -> bool {
        matches!(self, VerifyRule::Speculative { .. })
    }

    /// The token the target emits at `position` from distribution `p`, as
    /// non-SI decoding does it.
    pub fn target_token(&self, position: usize, p: &[f32]) -> TokenId {
        match *self {
            VerifyRule::Greedy => argmax(p),
            VerifyRule::Speculative { seed } => speculative::target_sample(seed, position, p),
            VerifyRule::Coupled { seed } => coupled_sample(seed, position, p),
        }
    }

    /// The token the drafter proposes at `position` from its distribution `q`.
    pub fn draft_token(&self, position: usize, q: &[f32]) -> TokenId {
        match *self {
            VerifyRule::Greedy => argmax(q),
            VerifyRule::Speculative { seed } => speculative::draft_sample(seed, position, q),
            VerifyRule::Coupled { seed } => coupled_sample(seed, position, q),
        }
    }

    /// Verifies `drafts` against the target's `drafts.len() + 1` distributions.
    ///
    /// `draft_probs` (one row per draft) is required by
    /// [`VerifyRule::Speculative`] and ignored by the other rules.
    pub fn verify(
        &self,
        drafts: &DraftChain,
        target: &ProbTable,
        draft_probs: Option<&ProbTable>,
    ) -> Result<Verdict> {
        expect_rows("target distributions", target, drafts.len() + 1)?;
        for &token in drafts.tokens() {
            if token as usize >= target.vocab() {
                return Err(Error::TokenOutOfVocabulary {
                    token,
                    vocab: target.vocab(),
                });
            }
        }
        match *self {
            VerifyRule::Greedy => {
                let choices: Vec<TokenId> = target.iter_rows().map(argmax).collect();
                verify_greedy(drafts.tokens(), &choices)
            }
            VerifyRule::Coupled { seed } => Ok(coupled::verify(seed, drafts, target)),
            VerifyRule::Speculative { seed } if drafts.is_empty() => Ok(Verdict {
                accepted: 0,
                next_token: speculative::target_sample(seed, drafts.start(), target.row(0)),
                drafted: 0,
            }),
            VerifyRule::Speculative { seed } => {
                let q = draft_probs.ok_or(Error::ShapeMismatch {
                    what: "drafter distributions (speculative sampling needs them)",
                    expected: drafts.len(),
                    found: 0,
                })?;
                expect_rows("drafter distributions", q, drafts.len())?;
                if q.vocab() != target.vocab() {
                    return Err(Error::ShapeMismatch {
                        what: "drafter vocabulary against the target's",
                        expected: target.vocab(),
                        found: q.vocab(),
                    });
                }
                Ok(speculative::verify(seed, drafts, target, q))
            }
        }
    }
}

fn expect_rows(what: &'static str, table: &ProbTable, expected: usize) -> Result<()> {
    if table.rows() == expected {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected,
            found: table.rows(),
        })
    }
}
