//! The pure logic of Distributed Speculative Inference (DSI).
//!
//! DSI (Timor et al., ICLR 2025, arXiv 2405.14105) lets a small drafter run
//! ahead while a pool of target servers verifies its drafts concurrently.
//! This crate owns what every layer above agrees on:
//!
//! - [`token`]: token ids, draft chains and verification verdicts;
//! - [`verify`]: the lossless verification rules (greedy, speculative
//!   sampling, seeded coupled sampling);
//! - [`sim`]: the paper's offline simulator of non-SI, SI and DSI in time
//!   units, its closed forms and the Figure 1 heatmap grid;
//! - [`acceptance`]: the paper's acceptance-rate estimator from match windows.
//!
//! It knows neither burn nor tokio and does no IO; time is always an input.
//! It compiles for `wasm32-unknown-unknown` as is.

pub mod acceptance;
pub mod error;
pub mod rng;
pub mod sim;
pub mod token;
pub mod verify;

pub use error::{Error, Result};
pub use token::{DraftChain, TokenId, Verdict};
