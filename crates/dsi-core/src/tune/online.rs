//! A running estimate of the acceptance rate that follows drift.

use serde::Serialize;

/// Accepted and judged drafts, each decayed by how many decisions came
/// after it: the estimate weighs roughly the last `window` draft decisions,
/// so it follows a pair whose acceptance changes within a request. It
/// starts from a prior worth `window / 4` decisions.
///
/// Fed with each draft position the target decided exactly once (the
/// machine's `accepted_tokens` and `rejected_drafts`), `accepted / judged`
/// is the maximum-likelihood rate of the paper's model, where each draft is
/// accepted independently with probability `a`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OnlineAcceptance {
    accepted: f64,
    judged: f64,
    window: f64,
}

impl OnlineAcceptance {
    /// Decisions the estimate mostly rests on.
    pub const DEFAULT_WINDOW: f64 = 12.0;

    /// An estimate that starts at `prior`.
    pub fn new(prior: f64, window: f64) -> Self {
        let window = window.max(1.0);
        let weight = window / 4.0;
        Self {
            accepted: prior.clamp(0.0, 1.0) * weight,
            judged: weight,
            window,
        }
    }

    /// Adds `accepted` accepted and `rejected` rejected drafts.
    pub fn observe(&mut self, accepted: u64, rejected: u64) {
        let n = (accepted + rejected) as f64;
        if n == 0.0 {
            return;
        }
        let keep = (-n / self.window).exp();
        self.accepted = self.accepted * keep + accepted as f64;
        self.judged = self.judged * keep + n;
    }

    /// The current estimate.
    pub fn rate(&self) -> f64 {
        if self.judged > 0.0 {
            (self.accepted / self.judged).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// How many decisions (decayed) the estimate rests on, prior included.
    pub fn weight(&self) -> f64 {
        self.judged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_follows_drift() {
        let mut a = OnlineAcceptance::new(0.5, 24.0);
        assert_eq!(a.rate(), 0.5);
        for _ in 0..100 {
            a.observe(9, 1);
        }
        assert!((a.rate() - 0.9).abs() < 0.01, "{}", a.rate());
        // At a = 0.1 an epoch decides about one draft; within 48 decisions
        // the estimate is below 0.35.
        for _ in 0..48 {
            a.observe(0, 1);
        }
        assert!(a.rate() < 0.35, "{}", a.rate());
        a.observe(0, 0);
        assert!(a.weight() > 0.0);
    }
}
