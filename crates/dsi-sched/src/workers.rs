//! The workers of a pool, as every request's driver sees them.

use crate::timeline::TimelineRecord;
use crate::worker::WorkerHandle;
use std::time::Duration;
use tokio::sync::broadcast;

/// A pool's drafter and target workers, its job deadline and its timeline.
#[derive(Debug)]
pub(crate) struct Workers {
    /// The drafter, if the pool drafts.
    pub(crate) drafter: Option<WorkerHandle>,
    /// Target workers, by pool index.
    pub(crate) targets: Vec<WorkerHandle>,
    /// How long a job may go without its worker moving.
    pub(crate) job_timeout: Duration,
    /// Where timeline records go.
    pub(crate) timeline: broadcast::Sender<TimelineRecord>,
}
