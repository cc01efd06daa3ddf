//! `dsi`: Distributed Speculative Inference of language models.
//!
//! This facade re-exports the workspace's library crates under one name, so
//! the integration tests in `tests/` and the benchmarks in `benches/` see the
//! engine the way a user does.

pub use dsi_core as core;
pub use dsi_models as models;
pub use dsi_sched as sched;
