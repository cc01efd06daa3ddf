//! What the state machine counts about one request; the driver adds times.

use serde::Serialize;

/// Counters of one generation, kept by [`super::Machine`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Draft batches the drafter delivered.
    pub drafts: u64,
    /// Tokens in those batches.
    pub draft_tokens: u64,
    /// Drafted tokens that became output.
    pub accepted_tokens: u64,
    /// Output tokens that came from the target alone (corrections, bonus
    /// tokens, non-SI steps).
    pub target_tokens: u64,
    /// Drafts the target rejected: each ended an epoch. With
    /// `accepted_tokens` they are every draft position the target decided,
    /// each once, so `accepted / (accepted + rejected)` estimates the
    /// acceptance rate without counting overlapping jobs twice.
    pub rejected_drafts: u64,
    /// Per draft index within a verification job: jobs that reached it.
    pub reached_by_position: Vec<u64>,
    /// Per draft index within a verification job: jobs that accepted it.
    pub accepted_by_position: Vec<u64>,
    /// Verification jobs handed to a target worker.
    pub jobs_started: u64,
    /// Verification jobs whose verdict came back.
    pub jobs_finished: u64,
    /// Verification jobs stopped because they built on a rejected token (or
    /// the request ended).
    pub jobs_preempted: u64,
    /// Queued verification jobs dropped before they ran.
    pub jobs_dropped: u64,
    /// Target forwards that ran (fully or in part) without adding a token:
    /// preempted while running, or finished after their epoch ended.
    pub wasted_target_forwards: u64,
    /// Draft batches preempted or discarded.
    pub wasted_drafts: u64,
    /// Epochs: verified-prefix restarts after a rejection, plus the first.
    pub epochs: u64,
    /// Worker failures and timeouts, in order.
    pub errors: Vec<String>,
    /// True when the drafter failed and the request finished as non-SI.
    pub fell_back_to_nonsi: bool,
}

impl Counters {
    /// Fraction of verification jobs that accepted draft `i`, among those
    /// that reached it.
    pub fn acceptance_by_position(&self) -> Vec<f64> {
        self.reached_by_position
            .iter()
            .zip(&self.accepted_by_position)
            .map(|(&reached, &accepted)| {
                if reached == 0 {
                    0.0
                } else {
                    accepted as f64 / reached as f64
                }
            })
            .collect()
    }

    /// The acceptance rate `a`: the fraction of drafts a target judged that
    /// it accepted (None before any verdict). Unlike accepted over drafted
    /// tokens, it leaves out drafts no job ever judged (those after a
    /// rejection, or drafted while the epoch was already over), so it is the
    /// per-draft rate the paper's analysis uses.
    pub fn acceptance_rate(&self) -> Option<f64> {
        judged_rate(&self.reached_by_position, &self.accepted_by_position)
    }

    pub(super) fn record_verdict(&mut self, drafted: usize, accepted: usize) {
        let reached = (accepted + 1).min(drafted);
        if self.reached_by_position.len() < drafted {
            self.reached_by_position.resize(drafted, 0);
            self.accepted_by_position.resize(drafted, 0);
        }
        for i in 0..reached {
            self.reached_by_position[i] += 1;
        }
        for i in 0..accepted.min(drafted) {
            self.accepted_by_position[i] += 1;
        }
    }
}

/// Accepted over judged drafts, summed over positions (None when none was
/// judged).
pub fn judged_rate(reached_by_position: &[u64], accepted_by_position: &[u64]) -> Option<f64> {
    let reached: u64 = reached_by_position.iter().sum();
    let accepted: u64 = accepted_by_position.iter().sum();
    (reached > 0).then(|| accepted as f64 / reached as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acceptance_rate_counts_judged_drafts_only() {
        let mut counters = Counters::default();
        assert_eq!(counters.acceptance_rate(), None);
        // Three drafts, the second rejected: two judged, one accepted; the
        // third was never judged.
        counters.record_verdict(3, 1);
        counters.record_verdict(3, 3);
        assert_eq!(counters.acceptance_rate(), Some(4.0 / 5.0));
    }
}
