//! Speculative sampling (Leviathan et al. 2023; Chen et al. 2023).
//!
//! At each draft position accept `x ~ q` with probability `min(1, p(x)/q(x))`;
//! on the first rejection emit a sample of the normalized residual
//! `max(0, p - q)`. When every draft is accepted, the bonus token is sampled
//! from the target's last distribution. Each emitted token then follows `p`.

use super::{ProbTable, lane, sample_inverse_cdf};
use crate::rng::keyed_open01;
use crate::{DraftChain, TokenId, Verdict};

/// The target's own sample at `position` (non-SI decoding and the bonus).
pub(super) fn target_sample(seed: u64, position: usize, p: &[f32]) -> TokenId {
    sample_inverse_cdf(p, keyed_open01(seed, position as u64, lane::TARGET))
}

/// The drafter's sample at `position`, independent of every target draw.
pub(super) fn draft_sample(seed: u64, position: usize, q: &[f32]) -> TokenId {
    sample_inverse_cdf(q, keyed_open01(seed, position as u64, lane::DRAFT))
}

/// Shapes are checked by the caller: `target` has `drafts.len() + 1` rows,
/// `draft_probs` has `drafts.len()`, same vocabulary, tokens in range.
pub(super) fn verify(
    seed: u64,
    drafts: &DraftChain,
    target: &ProbTable,
    draft_probs: &ProbTable,
) -> Verdict {
    for (i, &x) in drafts.tokens().iter().enumerate() {
        let position = drafts.start() + i;
        let p = target.row(i);
        let q = draft_probs.row(i);
        let px = normalized(p, x);
        let qx = normalized(q, x);
        let coin = keyed_open01(seed, position as u64, lane::ACCEPT);
        // q(x) = 0 cannot happen for a sampled draft; accept it iff p allows it.
        let accept = if qx > 0.0 { coin < px / qx } else { px > 0.0 };
        if !accept {
            return Verdict {
                accepted: i,
                next_token: residual_sample(seed, position, p, q),
                drafted: drafts.len(),
            };
        }
    }
    let bonus_position = drafts.end();
    Verdict {
        accepted: drafts.len(),
        next_token: target_sample(seed, bonus_position, target.row(drafts.len())),
        drafted: drafts.len(),
    }
}

fn normalized(row: &[f32], token: TokenId) -> f64 {
    let total: f64 = row.iter().map(|&w| f64::from(w)).sum();
    f64::from(row[token as usize]) / total
}

/// Samples `max(0, p - q)` normalized; when it has no mass (p = q, so a
/// rejection had probability 0 up to rounding) samples `p` itself.
fn residual_sample(seed: u64, position: usize, p: &[f32], q: &[f32]) -> TokenId {
    let p_total: f64 = p.iter().map(|&w| f64::from(w)).sum();
    let q_total: f64 = q.iter().map(|&w| f64::from(w)).sum();
    let residual: Vec<f32> = p
        .iter()
        .zip(q)
        .map(|(&pi, &qi)| (f64::from(pi) / p_total - f64::from(qi) / q_total).max(0.0) as f32)
        .collect();
    let u = keyed_open01(seed, position as u64, lane::RESIDUAL);
    if residual.iter().any(|&r| r > 0.0) {
        sample_inverse_cdf(&residual, u)
    } else {
        sample_inverse_cdf(p, u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[[f32; 3]]) -> ProbTable {
        ProbTable::from_rows(rows).unwrap()
    }

    #[test]
    fn identical_distributions_accept_everything() {
        let p = table(&[[0.2, 0.3, 0.5]; 4]);
        let q = table(&[[0.2, 0.3, 0.5]; 3]);
        for seed in 0..50 {
            let drafts = DraftChain::new(10, vec![0, 1, 2]);
            let v = verify(seed, &drafts, &p, &q);
            assert!(v.all_accepted(), "seed {seed}: {v:?}");
        }
    }

    #[test]
    fn a_draft_the_target_excludes_is_always_rejected() {
        let p = table(&[[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]);
        let q = table(&[[1.0, 0.0, 0.0]]);
        for seed in 0..50 {
            let v = verify(seed, &DraftChain::new(0, vec![0]), &p, &q);
            assert_eq!(v.accepted, 0);
            assert_ne!(v.next_token, 0, "the residual excludes the rejected token");
        }
    }

    #[test]
    fn deterministic_for_a_seed_and_position() {
        let p = table(&[[0.3, 0.3, 0.4], [0.1, 0.1, 0.8]]);
        let q = table(&[[0.6, 0.2, 0.2]]);
        let d = DraftChain::new(5, vec![0]);
        assert_eq!(verify(9, &d, &p, &q), verify(9, &d, &p, &q));
    }
}
