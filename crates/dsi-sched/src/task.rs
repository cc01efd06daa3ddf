//! What flows between a request's driver and a worker: tasks one way,
//! reports the other, over channels. Plain data, so a worker may run on its
//! own thread here or, later, in another process.

use crate::memory::Reservation;
use dsi_core::cancel::CancelFlag;
use dsi_core::sampling::{Decoding, TokenLogprobs};
use dsi_core::schedule::{Drafted, JobId};
use dsi_core::{TokenId, Verdict};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// What a task asks for (`dsi-core`'s, shared with the browser).
pub use dsi_core::schedule::Work;

/// One job for one worker.
#[derive(Debug)]
pub struct Task {
    /// The request it belongs to: whose KV cache it uses and whose turn it
    /// takes.
    pub request: u64,
    /// The job.
    pub job: JobId,
    /// Verified tokens plus drafts.
    pub context: Vec<TokenId>,
    /// What to do with them.
    pub work: Work,
    /// Sampling and verification rule of the request.
    pub decoding: Decoding,
    /// Raised when the job is preempted or the request ends.
    pub cancel: CancelFlag,
    /// Where the reports go.
    pub reply: UnboundedSender<Report>,
}

/// What a worker's channel carries.
#[derive(Debug)]
pub enum Message {
    /// A job to run.
    Run(Task),
    /// The request ended: its KV cache may go (after its queued tasks).
    /// The worker drops its share of the request's memory reservation once
    /// the cache is freed.
    Release(u64, Option<Reservation>),
}

impl Message {
    /// The request it concerns.
    pub(crate) fn request(&self) -> u64 {
        match self {
            Message::Run(task) => task.request,
            Message::Release(request, _) => *request,
        }
    }
}

/// A worker's message about a task.
#[derive(Debug)]
pub struct Report {
    /// The job.
    pub job: JobId,
    /// When it happened, on the worker.
    pub at: Instant,
    /// What happened.
    pub kind: ReportKind,
}

/// What happened to a task.
#[derive(Debug)]
pub enum ReportKind {
    /// The worker began computing.
    Started,
    /// Drafts are ready.
    Drafted(Vec<Drafted>),
    /// The verdict on the drafts.
    Verified {
        /// Accepted drafts and the target's token.
        verdict: Verdict,
        /// Log probabilities of the emitted tokens (accepted drafts, then
        /// the target's), when the request asks for them.
        logprobs: Option<Vec<TokenLogprobs>>,
    },
    /// The task stopped at its flag; `ran` tells whether it had begun.
    Cancelled {
        /// True when some computation had been done.
        ran: bool,
    },
    /// The task failed; the message says why.
    Failed(String),
}
