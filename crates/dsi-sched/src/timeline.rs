//! The timeline: every job event of every request, stamped with a time and a
//! device, for dashboards (a broadcast channel) and `--timeline FILE` (JSON
//! lines). The record is `dsi-core`'s, shared with the browser's driver.

pub use dsi_core::schedule::TimelineRecord;
