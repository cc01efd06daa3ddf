//! What a command hands a worker, taken apart the way every driver (the
//! server's threads, the browser's page) carries it out.

use super::{Command, JobId, WorkerRef};
use crate::TokenId;
use crate::verify::ProbTable;

/// What a job asks of its worker.
#[derive(Debug, Clone)]
pub enum Work {
    /// Draft `count` tokens after the context.
    Draft {
        /// Drafts wanted.
        count: usize,
    },
    /// Verify the last `drafts` tokens of the context.
    Verify {
        /// Trailing drafts in the context.
        drafts: usize,
        /// The drafter's distributions (speculative sampling).
        draft_probs: Option<ProbTable>,
    },
}

impl Work {
    /// Drafts to make, or drafts to verify.
    pub fn count(&self) -> usize {
        match *self {
            Work::Draft { count } => count,
            Work::Verify { drafts, .. } => drafts,
        }
    }

    /// Logit rows the job reads: 1 per drafting step, the drafts plus one
    /// to verify.
    pub fn rows(&self) -> usize {
        match *self {
            Work::Draft { .. } => 1,
            Work::Verify { drafts, .. } => drafts + 1,
        }
    }

    /// The absolute positions the job covers after a context of `len`
    /// tokens: those it drafts, or the drafts it verifies.
    pub fn span(&self, len: usize) -> (usize, usize) {
        match *self {
            Work::Draft { count } => (len, len + count),
            Work::Verify { drafts, .. } => (len.saturating_sub(drafts), len),
        }
    }
}

/// A `Draft` or `Verify` command as its worker takes it.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The job.
    pub job: JobId,
    /// The drafter, or the machine's target worker.
    pub worker: WorkerRef,
    /// Verified tokens plus the chain (a verification's drafts last).
    pub context: Vec<TokenId>,
    /// What to do with them.
    pub work: Work,
}

impl Command {
    /// The job this command hands a worker; `None` for a `Cancel`.
    pub fn into_dispatch(self) -> Option<Dispatch> {
        match self {
            Command::Cancel { .. } => None,
            Command::Draft {
                job,
                context,
                count,
            } => Some(Dispatch {
                job,
                worker: WorkerRef::Drafter,
                context,
                work: Work::Draft { count },
            }),
            Command::Verify {
                job,
                worker,
                context,
                drafts,
                draft_probs,
            } => Some(Dispatch {
                job,
                worker: WorkerRef::Target(worker),
                context,
                work: Work::Verify {
                    drafts,
                    draft_probs,
                },
            }),
        }
    }
}
