//! What a target's logits become: what the verifier needs per position
//! ([`Scores`]), and the verdict on a job's drafts with the log
//! probabilities of the tokens it emits ([`verify`]).

use super::Job;
use crate::model::{ForwardError, Rows};
use crate::sampling::{Decoding, TokenLogprobs};
use crate::verify::{ProbTable, VerifyRule, argmax, verify_greedy};
use crate::{DraftChain, TokenId, Verdict};
use std::borrow::Cow;

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
    ) -> crate::Result<Verdict> {
        match self {
            Scores::Choices(choices) => match rule {
                VerifyRule::Greedy => verify_greedy(drafts, choices),
                _ => Err(crate::Error::InvalidParameter {
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

    /// What the verifier needs from `job`'s rows (`count + 1` rows of
    /// `vocab` logits, each processed against its own prefix, the context
    /// up to its position; or each row's maximum, taken on the device), and
    /// the raw logits when the request asks for log probabilities.
    pub fn of_job(job: &Job<'_>, vocab: usize, rows: Rows) -> Result<Scored, ForwardError> {
        let logits = match rows {
            Rows::Argmax(choices) => return Ok(Scores::Choices(choices).into()),
            Rows::Logits(logits) => logits,
        };
        let start = job.context.len() - job.count;
        let decoding = job.decoding;
        let processed: Cow<'_, [f32]> = match &decoding.processors {
            None => Cow::Borrowed(&logits),
            Some(processors) => {
                let mut rows = logits.clone();
                for (j, row) in rows.chunks_mut(vocab).enumerate() {
                    processors.apply(&job.context[..start + j], &[], row);
                }
                Cow::Owned(rows)
            }
        };
        let scores = if decoding.params.is_greedy() {
            Scores::Choices(processed.chunks(vocab).map(argmax).collect())
        } else {
            let mut probs = Vec::with_capacity(processed.len());
            for row in processed.chunks(vocab) {
                probs.extend(decoding.params.probabilities(row));
            }
            ProbTable::new(vocab, probs)
                .map(Scores::Probs)
                .map_err(|e| {
                    ForwardError::Failed(format!("the target's logits are unusable: {e}"))
                })?
        };
        drop(processed);
        Ok(Scored {
            scores,
            logits: decoding.logprobs.map(|_| logits),
        })
    }
}

/// A scored job: what the verifier needs, and the target's raw logits when
/// the request asks for log probabilities (they stay on the worker, which
/// turns the emitted tokens' rows into [`TokenLogprobs`]).
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

/// The verifier's answer on one verification job.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Accepted drafts and the target's token.
    pub verdict: Verdict,
    /// Log probabilities of the emitted tokens (accepted drafts, then the
    /// target's), when the request asks for them.
    pub logprobs: Option<Vec<TokenLogprobs>>,
}

/// The verdict on the last `drafts` tokens of `context`, scored as
/// `scored`, with the log probabilities of the tokens it emits when
/// `decoding` asks for them.
pub fn verify(
    context: &[TokenId],
    drafts: usize,
    draft_probs: Option<&ProbTable>,
    decoding: &Decoding,
    scored: &Scored,
) -> Result<Verified, ForwardError> {
    let start = context.len().checked_sub(drafts).ok_or_else(|| {
        ForwardError::Failed(format!(
            "{drafts} drafts need a prefix before them, but the context has {} tokens",
            context.len()
        ))
    })?;
    let verdict = scored
        .scores
        .verdict(&decoding.rule, start, &context[start..], draft_probs)
        .map_err(|e| ForwardError::Failed(format!("verification failed: {e}")))?;
    let logprobs = match (decoding.logprobs, &scored.logits) {
        (Some(top), Some(logits)) => {
            let vocab = logits.len() / (drafts + 1);
            let emitted = context[start..start + verdict.accepted]
                .iter()
                .chain([&verdict.next_token]);
            Some(
                logits
                    .chunks(vocab)
                    .zip(emitted)
                    .map(|(row, &token)| TokenLogprobs::from_logits(row, token, top))
                    .collect(),
            )
        }
        _ => None,
    };
    Ok(Verified { verdict, logprobs })
}
