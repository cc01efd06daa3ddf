//! dsi's workers in other processes and on other machines, over gRPC.
//!
//! A worker process ([`server::serve`]) runs one model behind the same
//! worker thread as in-process workers; a coordinator connects to it
//! ([`client::connect`]) and gets a [`dsi_sched::WorkerHandle`] the
//! scheduler drives like any other. The protocol is `proto/worker.proto`:
//! a handshake (version, role, model identity, dtype, device, vocabulary,
//! context, KV budget) and one ordered bidirectional stream per connection
//! carrying jobs, cancellations and releases one way and their reports the
//! other. Only token ids and settings go to a worker; logits never leave
//! it.
//!
//! No burn here: the binary loads the model and hands this crate a worker.

pub mod auth;
pub mod client;
mod context;
pub mod info;
pub mod server;
mod wire;

/// The protocol's messages and services, generated from
/// `proto/worker.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("dsi.worker.v1");
}

pub use auth::AuthToken;
pub use client::{ConnectOptions, RemoteError, RemoteWorker, connect, is_remote};
pub use info::{ModelIdentity, PROTOCOL_VERSION, WorkerInfo, WorkerRole, target_function};
pub use server::{ServeOptions, WorkerService, serve};
pub use wire::WireError;
