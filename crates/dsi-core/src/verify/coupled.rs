//! Seeded coupled sampling: drafter and target draw with the same
//! Gumbel-max randomness at the same absolute position.
//!
//! The target's token at position `t` is `argmax_i ln p_i + g_i` with Gumbel
//! noise `g_i` keyed by `(seed, t, i)`; the drafter draws from `q` with the
//! very same noise. Every emitted token is the target's draw, so for a given
//! seed the output is exactly what seeded non-SI sampling emits, and drafts
//! agree whenever `q` is close to `p` (Gumbel-max is a maximal-ish coupling).

use super::ProbTable;
use crate::rng::keyed_open01;
use crate::{DraftChain, TokenId, Verdict};

/// The Gumbel-max sample of `weights` at `position` for `seed`.
///
/// Computed as the exponential race `argmin_i E_i / w_i` with
/// `E_i = -ln U_i`, which equals `argmax_i ln w_i + Gumbel_i` and needs no
/// normalization. Zero-weight tokens never win.
pub fn coupled_sample(seed: u64, position: usize, weights: &[f32]) -> TokenId {
    let mut best = 0;
    let mut best_time = f64::INFINITY;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            let arrival = -keyed_open01(seed, position as u64, i as u64).ln() / f64::from(w);
            if arrival < best_time {
                best_time = arrival;
                best = i;
            }
        }
    }
    best as TokenId
}

/// Shapes are checked by the caller: `target` has `drafts.len() + 1` rows.
pub(super) fn verify(seed: u64, drafts: &DraftChain, target: &ProbTable) -> Verdict {
    for (i, &x) in drafts.tokens().iter().enumerate() {
        let own = coupled_sample(seed, drafts.start() + i, target.row(i));
        if own != x {
            return Verdict {
                accepted: i,
                next_token: own,
                drafted: drafts.len(),
            };
        }
    }
    Verdict {
        accepted: drafts.len(),
        next_token: coupled_sample(seed, drafts.end(), target.row(drafts.len())),
        drafted: drafts.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_picks_a_zero_weight_token() {
        for seed in 0..200 {
            let t = coupled_sample(seed, 3, &[0.0, 0.2, 0.0, 0.8]);
            assert!(t == 1 || t == 3);
        }
    }

    #[test]
    fn identical_distributions_always_agree() {
        let p = [0.1f32, 0.2, 0.3, 0.4];
        let target = ProbTable::from_rows(&[p; 3]).unwrap();
        for seed in 0..100 {
            let drafts: Vec<TokenId> = (0..2).map(|i| coupled_sample(seed, 7 + i, &p)).collect();
            let v = verify(seed, &DraftChain::new(7, drafts), &target);
            assert!(v.all_accepted());
        }
    }
}
