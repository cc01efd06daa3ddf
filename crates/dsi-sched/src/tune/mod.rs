//! `--mode auto` in the pool: the measured [`CostProfile`] (through the
//! pool's own workers), the ranked policies built from it, the pool's
//! acceptance history that seeds each request's choice, and the prompt
//! probe for when there is no history yet. The choice itself is
//! `dsi_core::tune`'s; the driver applies it between epochs.

mod call;
mod measure;
mod probe;

pub use measure::ProfileSpec;
pub(crate) use measure::measure;
pub(crate) use probe::probe;

pub use crate::stats::PriorSource;

use dsi_core::tune::{CostProfile, OnlineAcceptance, Space, Table};
use std::sync::{Arc, Mutex};

/// Draft decisions the pool's history needs before it seeds a request
/// instead of a probe.
const HISTORY_ENOUGH: f64 = 8.0;

/// A pool's tuning state: the table of predicted costs and the acceptance
/// history of its recent requests.
#[derive(Debug)]
pub struct Tuning {
    table: Arc<Table>,
    history: Mutex<Option<OnlineAcceptance>>,
}

impl Tuning {
    /// Tuning over `profile` for a pool with `servers` targets, with or
    /// without a drafter; lookaheads up to 10.
    pub fn new(profile: CostProfile, servers: usize, drafter: bool) -> Self {
        Self::from_table(Table::new(profile, Self::space(servers, drafter)))
    }

    /// Tuning over a table built before (its profile included).
    pub fn from_table(table: Table) -> Self {
        Self {
            table: Arc::new(table),
            history: Mutex::new(None),
        }
    }

    /// The space of policies a pool of `servers` targets chooses from.
    pub fn space(servers: usize, drafter: bool) -> Space {
        Space {
            max_k: Space::DEFAULT_MAX_K,
            servers,
            drafter,
        }
    }

    /// The predicted costs.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// The measured profile.
    pub fn profile(&self) -> &CostProfile {
        self.table.profile()
    }

    /// The pool's acceptance estimate, once it rests on enough decisions.
    pub fn history(&self) -> Option<f64> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .filter(|h| h.weight() >= HISTORY_ENOUGH)
            .map(|h| h.rate())
    }

    /// Adds a request's draft decisions to the pool's history.
    pub(crate) fn record(&self, accepted: u64, rejected: u64) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .get_or_insert_with(|| {
                let prior = if accepted + rejected > 0 {
                    accepted as f64 / (accepted + rejected) as f64
                } else {
                    0.5
                };
                OnlineAcceptance::new(prior, 4.0 * OnlineAcceptance::DEFAULT_WINDOW)
            })
            .observe(accepted, rejected);
    }
}
