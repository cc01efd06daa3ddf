//! One request's job in a batched call to a worker, and what the call did.

use crate::TokenId;
use crate::cancel::CancelFlag;
use crate::model::{ForwardError, SeqId};
use crate::sampling::Decoding;

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
/// `decided` (items refused before any forward), the others from `ran`, the
/// results of one call on the undecided items in order. An item left
/// without a result fails.
pub fn complete<T>(
    mut decided: Vec<Option<Result<T, ForwardError>>>,
    ran: Vec<Result<T, ForwardError>>,
) -> Vec<Result<T, ForwardError>> {
    let mut ran = ran.into_iter();
    for slot in decided.iter_mut().filter(|slot| slot.is_none()) {
        *slot = ran.next();
    }
    decided
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ForwardError::Failed("no result for a job".into()))))
        .collect()
}

/// The indices of the items `decided` leaves open, in order.
pub fn undecided<T>(decided: &[Option<T>]) -> Vec<usize> {
    (0..decided.len())
        .filter(|&i| decided[i].is_none())
        .collect()
}
