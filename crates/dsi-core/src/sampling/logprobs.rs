//! Log probabilities of emitted tokens, as the OpenAI API reports them.
//!
//! They are the log-softmax of the target's raw logits at the emitted
//! position (before processors, temperature and truncation: vLLM's
//! default), taken from the verification that committed the token. A
//! position's logits do not depend on what shared its forward or how its
//! sequence was chunked, so every mode reports the same numbers.

use crate::TokenId;
use serde::{Deserialize, Serialize};

/// The most alternatives a request may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One emitted token's log probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    /// The emitted token.
    pub token: TokenId,
    /// Its log probability.
    pub logprob: f32,
    /// The most likely tokens at the position with theirs, most likely
    /// first, ties by token id.
    pub top: Vec<(TokenId, f32)>,
}

impl TokenLogprobs {
    /// The log probabilities at one row of logits for `token` and the `top`
    /// most likely tokens.
    pub fn from_logits(logits: &[f32], token: TokenId, top: usize) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
        let log_z = f64::from(max) + sum.ln();
        let logprob = |l: f32| (f64::from(l) - log_z) as f32;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        let top = top.min(logits.len());
        let by_rank = |&a: &usize, &b: &usize| logits[b].total_cmp(&logits[a]).then(a.cmp(&b));
        if top > 0 && top < order.len() {
            order.select_nth_unstable_by(top - 1, by_rank);
        }
        order.truncate(top);
        order.sort_by(by_rank);
        Self {
            token,
            logprob: logits
                .get(token as usize)
                .map_or(f32::NEG_INFINITY, |&l| logprob(l)),
            top: order
                .into_iter()
                .map(|i| (i as TokenId, logprob(logits[i])))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_and_ranked_alternatives() {
        let logits = [(0.2f32).ln(), (0.5f32).ln(), (0.2f32).ln(), (0.1f32).ln()];
        let lp = TokenLogprobs::from_logits(&logits, 3, 3);
        assert!((lp.logprob - (0.1f32).ln()).abs() < 1e-6);
        let ids: Vec<TokenId> = lp.top.iter().map(|&(t, _)| t).collect();
        assert_eq!(ids, vec![1, 0, 2], "most likely first, ties by id");
        assert!((lp.top[0].1 - (0.5f32).ln()).abs() < 1e-6);
        assert!(TokenLogprobs::from_logits(&logits, 1, 0).top.is_empty());
        assert_eq!(TokenLogprobs::from_logits(&logits, 1, 9).top.len(), 4);
    }

    #[test]
    fn stable_for_large_logits() {
        let lp = TokenLogprobs::from_logits(&[1000.0, 1000.0], 0, 1);
        assert!((lp.logprob - (0.5f32).ln()).abs() < 1e-6);
    }
}
