//! Events of the state machine, for the timeline: what happened to which
//! job, in order. The driver stamps them with times and device names.

use super::JobId;
use serde::{Deserialize, Serialize};

/// Which worker a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerRef {
    /// The drafter.
    Drafter,
    /// Target worker `i` of the pool.
    Target(usize),
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A verification job waits for a free target worker.
    Queued,
    /// A job was handed to a worker.
    Dispatched,
    /// A worker began a job (reported by the driver).
    Started,
    /// A job's result came back and was used.
    Finished,
    /// A job's result came back too late to matter.
    Stale,
    /// A job was stopped: it built on a rejected token, or the request ended.
    Preempted,
    /// A queued job was dropped before it ran.
    Dropped,
    /// A worker failed a job or missed its deadline.
    Failed,
    /// Tokens joined the verified output.
    Committed,
    /// A new epoch began at the verified prefix.
    Epoch,
}

/// One entry of the timeline, without its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The job, when the event concerns one.
    pub job: Option<JobId>,
    /// The worker, when the event concerns one.
    pub worker: Option<WorkerRef>,
    /// The epoch the event belongs to.
    pub epoch: u64,
    /// First absolute position the event covers.
    pub start: usize,
    /// One past the last position it covers.
    pub end: usize,
    /// Accepted drafts, for finished verification jobs.
    pub accepted: Option<usize>,
}

/// One timeline entry as drivers publish it: an event stamped with the time
/// since its request began and the worker's device name (JSON lines for
/// `--timeline FILE`, the dashboard's stream, the browser's callback).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRecord {
    /// The request it belongs to (numbered per pool).
    pub request: u64,
    /// Milliseconds since the request began.
    pub t_ms: f64,
    /// The worker's device name, when the event concerns a worker.
    pub device: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}
