//! What flows between the page's driver and its workers: tasks one way,
//! reports the other, over single-threaded channels.

use dsi_core::cancel::CancelFlag;
use dsi_core::schedule::{Drafted, JobId, Work};
use dsi_core::{TokenId, Verdict};

/// One job for one worker.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) job: JobId,
    /// Verified tokens plus drafts.
    pub(crate) context: Vec<TokenId>,
    pub(crate) work: Work,
    /// Raised when the job is preempted or the request ends.
    pub(crate) cancel: CancelFlag,
}

/// A worker's message about a task.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) job: JobId,
    /// Milliseconds since the request began.
    pub(crate) at_ms: f64,
    pub(crate) kind: ReportKind,
}

/// What happened to a task.
#[derive(Debug)]
pub(crate) enum ReportKind {
    /// The worker began computing.
    Started,
    Drafted(Vec<Drafted>),
    Verified(Verdict),
    /// Stopped at its flag; `ran` tells whether it had begun.
    Cancelled {
        ran: bool,
    },
    Failed(String),
}
