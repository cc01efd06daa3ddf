//! Every policy a pool could run, ranked by predicted time per token at
//! each acceptance rate: built once from a profile, then read by every
//! request's [`super::Chooser`] without simulating again.

use super::{CostProfile, timed};
use crate::schedule::{Mode, Policy};
use serde::Serialize;
use std::sync::OnceLock;

/// Acceptance rates the table is built at: `0, 1/STEPS, .., 1`.
const STEPS: usize = 20;
/// Tokens per simulated generation, and the runs averaged, each seed shared
/// by every policy so they meet the same drafts. (With 96 tokens, DSI's
/// lookaheads and server counts were ranked by noise: their predictions
/// differ by less than such short runs spread.)
const SIM_TOKENS: usize = 192;
const SIM_SEEDS: [u64; 4] = [11, 23, 37, 41];
/// Policies within this fraction of the fastest count as ties, and the
/// simplest of them wins: no drafting, or no speculation parallelism, for a
/// gain within the simulation's noise; then fewer servers where servers
/// compete for compute, more where they do not (an idle server costs
/// nothing, and spare ones absorb the runs the simulation's i.i.d. drafts
/// underrate).
const TIE: f64 = 0.03;

/// Which policies a pool can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Space {
    /// Largest lookahead considered.
    pub max_k: usize,
    /// Target servers in the pool.
    pub servers: usize,
    /// Whether the pool has a drafter (without one only non-SI runs).
    pub drafter: bool,
}

impl Space {
    /// Lookaheads 1 to 10, as the paper's grid.
    pub const DEFAULT_MAX_K: usize = 10;

    /// Every policy of the space: non-SI, SI for each `k`, DSI for each
    /// `k` and number of servers.
    pub fn policies(&self) -> Vec<Policy> {
        let mut all = vec![Policy {
            mode: Mode::NonSi,
            k: 0,
            servers: 1,
        }];
        if self.drafter {
            for k in 1..=self.max_k.max(1) {
                all.push(Policy {
                    mode: Mode::Si,
                    k,
                    servers: 1,
                });
                for servers in 1..=self.servers.max(1) {
                    all.push(Policy {
                        mode: Mode::Dsi,
                        k,
                        servers,
                    });
                }
            }
        }
        all
    }
}

/// Orders policies from the simplest: by mode, then servers (fewer when
/// they contend, more when they do not), then lookahead.
fn simplicity(policy: Policy, contended: bool) -> (u8, isize, usize) {
    let mode = match policy.mode {
        Mode::NonSi => 0,
        Mode::Si => 1,
        Mode::Dsi => 2,
    };
    let servers = policy.servers as isize;
    (mode, if contended { servers } else { -servers }, policy.k)
}

/// A policy and its predicted milliseconds per token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ranked {
    /// The policy.
    pub policy: Policy,
    /// Predicted milliseconds per token.
    pub ms_per_token: f64,
}

/// Predicted time per token of every policy at acceptance rates `0, 0.05,
/// .., 1`; between them, linear interpolation. A rate's column is
/// simulated the first time it is needed (about 80 policies for a pool of 7
/// servers, some 200 ms in a release build), so a request pays only for the
/// rates it meets; [`Table::fill`] computes them all (a server does so on a
/// background thread at start).
#[derive(Debug)]
pub struct Table {
    profile: CostProfile,
    policies: Vec<Policy>,
    /// `[step][policy]`.
    ms: Vec<OnceLock<Vec<f64>>>,
}

impl Table {
    /// A table of every policy of `space` under `profile`.
    pub fn new(profile: CostProfile, space: Space) -> Self {
        Self {
            profile,
            policies: space.policies(),
            ms: (0..=STEPS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// A table with every rate simulated.
    pub fn build(profile: &CostProfile, space: Space) -> Self {
        let table = Self::new(profile.clone(), space);
        table.fill();
        table
    }

    /// A table whose rates were simulated before (see [`Table::columns`]),
    /// so a later start pays nothing; `None` when the columns do not fit
    /// the space (another pool's, or another version's).
    pub fn from_columns(
        profile: CostProfile,
        space: Space,
        columns: Vec<Vec<f64>>,
    ) -> Option<Self> {
        let table = Self::new(profile, space);
        if columns.len() != table.ms.len()
            || columns.iter().any(|c| c.len() != table.policies.len())
        {
            return None;
        }
        for (cell, column) in table.ms.iter().zip(columns) {
            let _ = cell.set(column);
        }
        Some(table)
    }

    /// Every rate's predictions, simulating those not simulated yet: what
    /// [`Table::from_columns`] takes back.
    pub fn columns(&self) -> Vec<Vec<f64>> {
        (0..=STEPS).map(|step| self.column(step).to_vec()).collect()
    }

    /// Simulates every rate not simulated yet.
    pub fn fill(&self) {
        for step in 0..=STEPS {
            self.column(step);
        }
    }

    /// The most servers any of its policies uses.
    fn servers(&self) -> usize {
        self.policies.iter().map(|p| p.servers).max().unwrap_or(1)
    }

    /// The profile it predicts from.
    pub fn profile(&self) -> &CostProfile {
        &self.profile
    }

    fn column(&self, step: usize) -> &[f64] {
        self.ms[step].get_or_init(|| {
            let a = step as f64 / STEPS as f64;
            self.policies
                .iter()
                .map(|&p| timed::ms_per_token(&self.profile, p, a, SIM_TOKENS, &SIM_SEEDS))
                .collect()
        })
    }

    /// The policies it ranks.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Predicted milliseconds per token of `policy` at acceptance `a`
    /// (None for a policy outside the table).
    pub fn ms_per_token(&self, policy: Policy, a: f64) -> Option<f64> {
        let policy = policy.normalized();
        let i = self.policies.iter().position(|&p| p == policy)?;
        let x = a.clamp(0.0, 1.0) * STEPS as f64;
        let lo = (x.floor() as usize).min(STEPS);
        let hi = (lo + 1).min(STEPS);
        let t = x - lo as f64;
        Some(self.column(lo)[i] * (1.0 - t) + self.column(hi)[i] * t)
    }

    /// Every policy at acceptance `a`, fastest first.
    pub fn ranked(&self, a: f64) -> Vec<Ranked> {
        let mut all: Vec<Ranked> = self
            .policies
            .iter()
            .filter_map(|&policy| {
                Some(Ranked {
                    policy,
                    ms_per_token: self.ms_per_token(policy, a)?,
                })
            })
            .collect();
        all.sort_by(|x, y| x.ms_per_token.total_cmp(&y.ms_per_token));
        all
    }

    /// The fastest policy at acceptance `a`; among those within 3% of it,
    /// the simplest (see `TIE`).
    pub fn best(&self, a: f64) -> Ranked {
        let ranked = self.ranked(a);
        let fastest = ranked[0].ms_per_token;
        let contended = self.profile.target_factor(self.servers(), false) > 1.05;
        ranked
            .into_iter()
            .filter(|r| r.ms_per_token <= fastest * (1.0 + TIE))
            .min_by_key(|r| simplicity(r.policy, contended))
            .expect("the fastest is within the tie")
    }

    /// Whether knowing the acceptance rate before starting matters: true
    /// when the mode best at 0.5 falls more than 15% behind the best
    /// policy at some rate from 0.1 to 0.9 even with its own best lookahead
    /// and servers (those follow the estimate online anyway). On servers
    /// that share nothing DSI wins at every rate, so a request need not
    /// spend time measuring it first.
    pub fn acceptance_matters(&self) -> bool {
        let mode = self.best(0.5).policy.mode;
        (1..=9).any(|tenth| {
            let a = f64::from(tenth) / 10.0;
            let ranked = self.ranked(a);
            let best = ranked[0].ms_per_token;
            ranked
                .iter()
                .find(|r| r.policy.mode == mode)
                .is_none_or(|r| r.ms_per_token > best * 1.15)
        })
    }

    /// The fastest policy of each mode at `a` (non-SI, then SI and DSI when
    /// the space has them): what a report shows as the alternatives.
    pub fn best_per_mode(&self, a: f64) -> Vec<Ranked> {
        let ranked = self.ranked(a);
        [Mode::NonSi, Mode::Si, Mode::Dsi]
            .into_iter()
            .filter_map(|mode| ranked.iter().find(|r| r.policy.mode == mode).copied())
            .collect()
    }
}
