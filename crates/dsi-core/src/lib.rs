//! The pure logic of Distributed Speculative Inference (DSI).
//!
//! DSI (Timor et al., ICLR 2025, arXiv 2405.14105) lets a small drafter run
//! ahead while a pool of target servers verifies its drafts concurrently.
//! This crate owns what every layer above agrees on:
//!
//! - [`token`]: token ids, draft chains and verification verdicts;
//! - [`verify`]: the lossless verification rules (greedy, speculative
//!   sampling, seeded coupled sampling);
//! - [`schedule`]: the DSI, SI and non-SI state machines (epochs, jobs,
//!   preemption, verification bookkeeping) as synchronous logic;
//! - [`model`] and [`cancel`]: the plain-data interface a scheduler drives a
//!   model instance through; [`cache_layout`]: how a KV cache grows, so a
//!   scheduler can budget memory;
//! - [`sim`]: the paper's offline simulator of non-SI, SI and DSI in time
//!   units, its closed forms and the Figure 1 heatmap grid;
//! - [`sampling`]: logits processing (temperature, top-k, top-p) into the
//!   distributions the verification rules compare;
//! - [`acceptance`]: the paper's acceptance-rate estimator from match windows.
//! - [`tune`]: `--mode auto`, the choice of algorithm, lookahead and servers
//!   from measured costs and an online acceptance estimate.
//! - [`worker`]: what a worker does with a model (KV-cache synchronization,
//!   drafting, scoring, the verdict), async so that threads and the
//!   browser's single-threaded loop run the same code.
//!
//! It knows neither burn nor tokio and does no IO; time is always an input.
//! It compiles for `wasm32-unknown-unknown` as is.

pub mod acceptance;
pub mod cache_layout;
pub mod cancel;
pub mod error;
pub mod model;
pub mod rng;
pub mod sampling;
pub mod schedule;
pub mod sim;
pub mod token;
pub mod tune;
pub mod verify;
pub mod worker;

pub use error::{Error, Result};
pub use token::{DraftChain, TokenId, Verdict};
