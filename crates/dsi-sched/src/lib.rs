//! The backend-generic DSI scheduler.
//!
//! DSI's state machine lives in `dsi_core::schedule` as pure logic; this
//! crate runs it for real:
//!
//! - [`roles`]: the scheduler's whole view of a model, two traits: a
//!   [`Drafter`] proposes tokens, a [`Scorer`] scores drafts for the
//!   verifier. Plain data crosses them, never tensors.
//! - [`cached`]: KV-cache synchronization over `dsi_core::model::KvModel`:
//!   keep the shared prefix, truncate the rest in O(1), feed what is missing.
//! - [`worker`]: one OS thread per worker, a KV cache per request, the
//!   ready tasks of several requests run in one forward ([`batch`]: one
//!   task per request, requests in turn, a token budget), each request's
//!   tasks in order, cancellation at safe points, panics caught and
//!   reported. [`task`]: what flows to and from a worker.
//! - [`forwards`]: what each worker's forwards looked like (sequences,
//!   rows and time per forward).
//! - [`pool`] and the driver: one drafter plus N target workers serving
//!   concurrent requests on tokio, placed least-loaded first; deadlines
//!   retire hung workers; dropping a request cancels its jobs.
//! - [`memory`]: one KV budget per device; requests reserve what their
//!   caches can reach before they start, and wait their turn.
//! - [`emulate`] pads forwards to a TTFT/TPOT; [`synthetic`] workers follow
//!   the simulator's acceptance law; [`bench`] compares the two.
//! - [`tune`]: `auto`: the pool's cost profile measured through its
//!   workers, a prompt probe of the acceptance rate, and the pool's history;
//!   the driver applies `dsi_core::tune`'s choice between epochs.
//! - [`stats`] and [`timeline`]: metrics per request and a stream of job
//!   events.
//!
//! It knows neither burn nor HTTP.

pub mod batch;
pub mod bench;
pub mod cached;
pub mod emulate;
pub mod error;
mod fair;
pub mod forwards;
pub mod memory;
mod pause;
pub mod pool;
pub mod request;
pub mod roles;
mod run;
pub mod stats;
pub mod synthetic;
pub mod task;
pub mod timeline;
pub mod tune;
pub mod worker;
mod workers;

pub use batch::Role;
pub use cached::CachedModel;
pub use emulate::{Emulated, Latency};
pub use error::{Result, SchedError};
pub use forwards::ForwardStats;
pub use memory::{DeviceMemory, KvBudget};
pub use pool::{KvUse, Limits, Pool};
pub use request::{Generation, Request, Update};
pub use roles::{CacheState, Drafter, Job, JobStep, Scorer, Scores};
pub use stats::Stats;
pub use timeline::TimelineRecord;
pub use worker::{RemoteMarks, WorkerHandle};
