//! A short teacher-forced probe of the acceptance rate on a request's own
//! prompt, for a pool that has no history yet.
//!
//! At a few cut points of the prompt the drafter drafts a few tokens after
//! the prefix and a target verifies them: each cut gives one window of the
//! paper's estimator (matches until the first mismatch). The cuts' target
//! jobs run on different targets at once. Every call runs under the
//! request's own id, so it leaves the request's caches holding the prompt
//! the generation then starts from (its first jobs pay no prefill).

use super::call::{call, join_all};
use crate::error::Result;
use crate::task::{ReportKind, Work};
use crate::workers::Workers;
use dsi_core::TokenId;
use dsi_core::schedule::Drafted;

/// Prompts shorter than this are not probed: the models' agreement on a few
/// tokens of context says little about their agreement later.
const MIN_PROMPT: usize = 16;
/// Cut points of the prompt probed at most.
const CUTS: usize = 3;
/// Drafts per cut.
const DRAFTS: usize = 8;

/// Accepted and rejected drafts over the probe's cuts (`None` when the
/// pool has no drafter or the prompt is too short to cut).
pub(crate) async fn probe(
    workers: &Workers,
    request: u64,
    target: usize,
    prompt: &[TokenId],
) -> Result<Option<(u64, u64)>> {
    let Some(drafter) = &workers.drafter else {
        return Ok(None);
    };
    if prompt.len() < MIN_PROMPT {
        return Ok(None);
    }
    // Cuts spread over the second half of the prompt, the last one at its
    // end (which the generation's first epoch then starts from).
    let cuts: Vec<usize> = (1..=CUTS)
        .map(|i| prompt.len() / 2 + (prompt.len() / 2) * i / CUTS)
        .collect();
    // The last cut's verification goes to the request's first target,
    // whose cache the generation starts from; the others to the next ones.
    let targets = workers.targets.len();
    let mut verifications = Vec::with_capacity(cuts.len());
    for (i, &cut) in cuts.iter().enumerate() {
        let context = prompt[..cut].to_vec();
        let job = 2 * i as u64 + 1;
        let work = Work::Draft { count: DRAFTS };
        let timeout = workers.job_timeout;
        let drafted = call(drafter, timeout, request, job, context.clone(), work).await?;
        let ReportKind::Drafted(drafts) = drafted.report else {
            continue;
        };
        let mut verify = context;
        verify.extend(drafts.iter().map(|d: &Drafted| d.token));
        let work = Work::Verify {
            drafts: drafts.len(),
            draft_probs: None,
        };
        let worker = &workers.targets[(target + cuts.len() - 1 - i) % targets];
        verifications.push(call(worker, timeout, request, job + 1, verify, work));
    }
    let (mut accepted, mut rejected) = (0, 0);
    for verified in join_all(verifications).await {
        if let ReportKind::Verified { verdict, .. } = verified?.report {
            accepted += verdict.accepted as u64;
            rejected += u64::from(verdict.accepted < verdict.drafted);
        }
    }
    Ok(Some((accepted, rejected)))
}
