//! The timeline: every job event of every request, stamped with a time and a
//! device, for dashboards (a broadcast channel) and `--timeline FILE` (JSON
//! lines).

use dsi_core::schedule::Event;
use serde::Serialize;

/// One timeline entry.
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
