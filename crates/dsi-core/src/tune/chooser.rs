//! One request's choice of policy, revised as its acceptance estimate
//! moves, with hysteresis.

use super::{OnlineAcceptance, Ranked, Table};
use crate::schedule::Policy;
use serde::Serialize;
use std::sync::Arc;

/// A switch of mode must promise at least this much less time per token
/// than staying, so estimates that wobble around a boundary do not make it
/// flap.
const MODE_MARGIN: f64 = 0.08;
/// A change of lookahead or servers alone must promise this much: their
/// predictions differ by little more than the simulation's noise.
const TUNE_MARGIN: f64 = 0.15;
/// Draft decisions between two switches, at least.
const SETTLE: u64 = 8;

/// What was chosen, at which acceptance estimate, and why: the predicted
/// time per token of the best policy of every mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The policy chosen.
    pub policy: Policy,
    /// The acceptance estimate it was chosen at.
    pub a: f64,
    /// Its predicted milliseconds per token.
    pub predicted_ms_per_token: f64,
    /// The fastest policy of each mode at that estimate.
    pub alternatives: Vec<Ranked>,
    /// How many draft decisions the request had seen (0 for the first).
    pub after_decisions: u64,
}

/// Chooses a policy for one request and revises it between epochs.
#[derive(Debug, Clone)]
pub struct Chooser {
    table: Arc<Table>,
    estimate: OnlineAcceptance,
    current: Policy,
    decisions: u64,
    last_switch: u64,
    history: Vec<Decision>,
}

impl Chooser {
    /// Starts with the fastest policy at the `prior` acceptance rate.
    pub fn new(table: Arc<Table>, prior: f64) -> Self {
        let estimate = OnlineAcceptance::new(prior, OnlineAcceptance::DEFAULT_WINDOW);
        let best = table.best(estimate.rate());
        let mut chooser = Self {
            table,
            estimate,
            current: best.policy,
            decisions: 0,
            last_switch: 0,
            history: Vec::new(),
        };
        chooser.record(best);
        chooser
    }

    /// The policy in effect.
    pub fn policy(&self) -> Policy {
        self.current
    }

    /// The acceptance estimate now.
    pub fn acceptance(&self) -> f64 {
        self.estimate.rate()
    }

    /// The first decision and every switch since, in order.
    pub fn decisions(&self) -> &[Decision] {
        &self.history
    }

    /// Adds draft decisions (accepted, rejected) and returns a new policy
    /// when another one is now faster by more than the margin.
    pub fn observe(&mut self, accepted: u64, rejected: u64) -> Option<Policy> {
        if accepted + rejected == 0 {
            return None;
        }
        self.estimate.observe(accepted, rejected);
        self.decisions += accepted + rejected;
        if self.decisions - self.last_switch < SETTLE {
            return None;
        }
        let a = self.estimate.rate();
        let best = self.table.best(a);
        let staying = self
            .table
            .ms_per_token(self.current, a)
            .unwrap_or(f64::INFINITY);
        let margin = if best.policy.mode == self.current.mode {
            TUNE_MARGIN
        } else {
            MODE_MARGIN
        };
        if best.policy == self.current || best.ms_per_token >= staying * (1.0 - margin) {
            return None;
        }
        self.current = best.policy;
        self.last_switch = self.decisions;
        self.record(best);
        Some(best.policy)
    }

    fn record(&mut self, chosen: Ranked) {
        let a = self.estimate.rate();
        self.history.push(Decision {
            policy: chosen.policy,
            a,
            predicted_ms_per_token: chosen.ms_per_token,
            alternatives: self.table.best_per_mode(a),
            after_decisions: self.decisions,
        });
    }
}
