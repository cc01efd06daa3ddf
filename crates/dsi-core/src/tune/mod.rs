//! `--mode auto`: choosing the algorithm, lookahead and number of servers
//! from what a pool's jobs cost and how often its drafts are accepted.
//!
//! The paper proves DSI never slower than non-SI or SI when target servers
//! share nothing. Where they share compute (one CPU, one GPU), running more
//! jobs at once slows each down, and a verification of `k + 1` rows is not
//! free; then the engine must measure and choose. A [`CostProfile`] holds
//! the measured job costs and slowdowns; [`timed`] runs the real state
//! machine on a clock with those costs (the paper's simulator, extended);
//! a [`Table`] ranks every policy at each acceptance rate once; a request's
//! [`Chooser`] starts from a prior rate, follows its own
//! [`OnlineAcceptance`], and switches policy between epochs, with
//! hysteresis, when another is predicted clearly faster.

mod chooser;
mod online;
mod profile;
mod table;
pub mod timed;

pub use chooser::{Chooser, Decision};
pub use online::OnlineAcceptance;
pub use profile::CostProfile;
pub use table::{Ranked, Space, Table};
