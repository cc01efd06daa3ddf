//! DSI in the browser: the same burn models and the same state machine as
//! the server, on WebGPU, on the page's one thread.
//!
//! - [`pair`]: a target and a drafter loaded from bytes (`config.json`,
//!   `*.safetensors`, `tokenizer.json`), the files a page fetched or the
//!   user dropped.
//! - [`driver`]: an async, single-threaded driver of `dsi-core`'s
//!   [`Machine`](dsi_core::schedule::Machine): the drafter and each target
//!   worker are tasks on one executor, and while one awaits its logits from
//!   the device the others record and submit their own forwards. What a
//!   worker does with its model (KV-cache synchronization, drafting,
//!   scoring, the verdict) is `dsi_core::worker`'s, the code the server's
//!   worker threads run.
//! - [`options`]: what the page asks for and what it gets back, as JSON.
//! - `engine` (wasm32 only): the wasm-bindgen entry points, WebGPU set up
//!   with `init_setup_async`.
//!
//! Natively the driver runs on any executor and backend: its tests use the
//! CPU backend under a blocking executor.

pub mod driver;
pub mod error;
pub mod options;
pub mod pair;
mod serve;
mod task;

#[cfg(target_arch = "wasm32")]
mod engine;

pub use driver::{Outcome, Progress, Worker, generate};
pub use error::WebError;
pub use options::GenerateOptions;
pub use pair::{ModelFiles, Pair};
