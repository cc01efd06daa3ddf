//! The paper's offline simulator of non-SI, SI and DSI, in time units.
//!
//! One target forward costs 1, one drafter forward costs `c`. The number of
//! drafts accepted by one verification is `min(G, k)` with `P(G >= j) = a^j`.
//! This reproduces the authors' simulator (Timor et al. 2025, Figure 1)
//! step for step: see [`algorithms`] for the three cost models, [`run`] for
//! repeats and means, and [`heatmap`] for the Figure 1 grid.

pub mod algorithms;
pub mod closed_form;
pub mod heatmap;
mod params;
pub mod run;
mod sampler;

pub use params::{SimParams, min_servers};
pub use run::{Costs, Simulation};
pub use sampler::{AcceptanceSampler, AcceptanceSource};
