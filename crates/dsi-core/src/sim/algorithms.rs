//! The three cost models of one simulated generation, in target forwards.
//!
//! Each function consumes accepted-draft counts from an [`AcceptanceSource`]
//! and returns the time to generate `params.tokens()` tokens. They follow the
//! authors' simulator line by line (DESIGN.md §2), including its conventions
//! at the end of the sequence.

use super::{AcceptanceSource, SimParams};

/// Plain autoregressive decoding: one target forward per token.
pub fn nonsi_cost(params: &SimParams) -> f64 {
    params.tokens() as f64
}

/// Speculative inference: draft `k` tokens, then wait for one verification.
///
/// Each iteration drafts `kk = min(k, left - 1)` tokens (`kk * c`), verifies
/// them (`1`), and emits the accepted drafts plus the target's token.
pub fn si_cost(params: &SimParams, sampler: &mut impl AcceptanceSource) -> f64 {
    let (c, k) = (params.c(), params.k());
    let mut left = params.tokens() as i64;
    let mut cost = 0.0;
    while left > 0 {
        let kk = k.min((left - 1) as usize);
        cost += kk as f64 * c + 1.0;
        let done = params.tokens() - left as usize;
        left -= sampler.next_count_at(done) as i64 + 1;
    }
    cost
}

/// Distributed speculative inference with enough target servers that no
/// verification waits.
///
/// The run is cut into segments, each ending at a rejection. While drafts
/// keep being accepted, their verification hides behind drafting, so only the
/// drafting time `kk * c` is charged; a rejection charges the one target
/// forward that exposed it. Right after a rejection, a chain whose first
/// draft is rejected dies at once (its first logits were already known), so
/// its drafting is not charged. A segment never costs more than the non-SI
/// job that runs alongside it: one forward per token it produced.
pub fn dsi_cost(params: &SimParams, sampler: &mut impl AcceptanceSource) -> f64 {
    let (c, k, total) = (params.c(), params.k(), params.tokens());
    let mut done = 0usize;
    let mut cost = 0.0;
    let mut after_rejection = false;
    while done < total {
        let mut new = 0usize;
        let mut charged = 0.0;
        loop {
            let kk = k.min(total - 1 - done - new);
            let accepted = kk.min(sampler.next_count_at(done + new));
            new += accepted;
            if accepted > 0 || !after_rejection {
                charged += kk as f64 * c;
            }
            if kk == 0 || accepted < kk {
                charged += 1.0;
                new += 1;
                after_rejection = true;
                break;
            }
            after_rejection = false;
        }
        cost += charged.min(new as f64);
        done += new;
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::AcceptanceSampler;

    fn params(c: f64, a: f64, k: usize, s: usize) -> SimParams {
        SimParams::new(c, a, k, s).unwrap()
    }

    #[test]
    fn zero_acceptance() {
        // SI drafts min(k, left - 1) tokens in vain before every target step:
        // 7 steps of 1.3, then 1.2, 1.1 and 1.0. DSI degrades to non-SI: the
        // non-SI job bounds every one-token segment at 1.
        let p = params(0.1, 0.0, 3, 10);
        let mut s = AcceptanceSampler::new(0.0, 3, 0);
        let si = si_cost(&p, &mut s);
        assert!((si - (7.0 * 1.3 + 1.2 + 1.1 + 1.0)).abs() < 1e-9, "{si}");
        let mut s = AcceptanceSampler::new(0.0, 3, 0);
        let dsi = dsi_cost(&p, &mut s);
        assert!((dsi - 10.0).abs() < 1e-9, "{dsi}");
    }

    #[test]
    fn full_acceptance() {
        // S = 10, k = 4: SI needs ceil-ish iterations of k + 1 tokens:
        // iteration 1: kk=4 (0.4 + 1), left 5; iteration 2: kk=4, left 0.
        let p = params(0.1, 1.0, 4, 10);
        let mut s = AcceptanceSampler::new(1.0, 4, 0);
        assert!((si_cost(&p, &mut s) - 2.0 * 1.4).abs() < 1e-9);
        // DSI drafts 9 tokens (4 + 4 + 1 accepted), then the last kk = 0
        // iteration costs one target forward: 0.4 + 0.4 + 0.1 + 1.
        let mut s = AcceptanceSampler::new(1.0, 4, 0);
        assert!((dsi_cost(&p, &mut s) - 1.9).abs() < 1e-9);
    }

    #[test]
    fn nonsi_is_one_per_token() {
        assert_eq!(nonsi_cost(&params(0.5, 0.5, 2, 123)), 123.0);
    }
}
