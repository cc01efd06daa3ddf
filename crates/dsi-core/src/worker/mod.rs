//! What a worker does with a model, whoever runs it: the jobs a scheduler
//! hands it, KV-cache synchronization ([`KvSync`]: keep the shared prefix,
//! truncate the rest in O(1), feed what is missing), drafting, scoring and
//! the verifier's verdict.
//!
//! Written once, async over [`AsyncKvModel`](crate::model::AsyncKvModel):
//! `dsi-sched`'s worker threads run it over models whose forwards are
//! ready at once ([`Ready`](crate::model::Ready)), the browser over WebGPU
//! forwards it awaits on the page's one thread.

mod job;
mod kv_sync;
mod scores;

pub use job::{Job, JobResults, JobStep, complete, undecided};
pub use kv_sync::{DEFAULT_PREFILL_CHUNK, KvSync};
pub use scores::{Scored, Scores, Verified, verify};
