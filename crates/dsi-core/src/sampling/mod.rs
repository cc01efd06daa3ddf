//! Logits processing: temperature, top-k and top-p turn a row of logits into
//! the distribution that decoding samples from and that `dsi-core`'s
//! verification rules compare against.
//!
//! Temperature 0 means greedy decoding. Otherwise tokens are drawn with
//! the seeded coupled rule, keyed by absolute position, so a given
//! seed yields the same tokens in non-SI, SI and DSI.

mod logprobs;
mod processors;

pub use logprobs::{MAX_TOP_LOGPROBS, TokenLogprobs};
pub use processors::LogitsProcessors;

use crate::model::Readback;
use crate::verify::{VerifyRule, argmax};
use crate::{Error, Result, TokenId};
use std::sync::Arc;

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 for greedy; otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose mass reaches `p`.
    pub top_p: Option<f32>,
    /// Seed of the keyed randomness.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, value: String, expected| Error::InvalidParameter {
            name,
            value,
            expected,
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(invalid(
                "temperature",
                self.temperature.to_string(),
                "a finite value >= 0 (0 = greedy)",
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(invalid("top_p", p.to_string(), "0 < top_p <= 1"));
        }
        if self.top_k == Some(0) {
            return Err(invalid("top_k", "0".into(), "top_k >= 1"));
        }
        Ok(())
    }

    /// True for greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The verification rule that keeps speculation lossless for these settings.
    pub fn rule(&self) -> VerifyRule {
        if self.is_greedy() {
            VerifyRule::Greedy
        } else {
            VerifyRule::Coupled { seed: self.seed }
        }
    }

    /// The distribution to sample from, given one row of logits.
    pub fn probabilities(&self, logits: &[f32]) -> Vec<f32> {
        if self.is_greedy() {
            let mut one_hot = vec![0.0; logits.len()];
            one_hot[argmax(logits) as usize] = 1.0;
            return one_hot;
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<f32> = logits
            .iter()
            .map(|&l| ((l - max) / self.temperature).exp())
            .collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.top_k.is_some() || self.top_p.is_some() {
            keep_top(&mut probs, self.top_k, self.top_p);
        }
        probs
    }

    /// The token decoding emits at `position` after these logits.
    pub fn next_token(&self, position: usize, logits: &[f32]) -> TokenId {
        if self.is_greedy() {
            return argmax(logits);
        }
        self.rule()
            .target_token(position, &self.probabilities(logits))
    }
}

/// Sampling settings together with the verification rule that keeps
/// speculation lossless under them: what every worker of one request shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoding {
    /// Logits processing and seed.
    pub params: SamplingParams,
    /// How drafts are verified and how each side picks its tokens.
    pub rule: VerifyRule,
    /// Penalties, biases and bans, applied the same way by drafter and
    /// target before `params`; `None` when they would change nothing.
    pub processors: Option<Arc<LogitsProcessors>>,
    /// Alternatives to report with each emitted token's log probability;
    /// `None`: no log probabilities.
    pub logprobs: Option<usize>,
}

impl Decoding {
    /// Greedy settings verify by exact match. Sampling settings use seeded
    /// coupled sampling (the same tokens as seeded non-SI decoding), or
    /// speculative sampling when `speculative` is set (the same distribution,
    /// not the same tokens).
    pub fn new(params: SamplingParams, speculative: bool) -> Result<Self> {
        params.validate()?;
        let rule = match (params.is_greedy(), speculative) {
            (true, _) => VerifyRule::Greedy,
            (false, false) => VerifyRule::Coupled { seed: params.seed },
            (false, true) => VerifyRule::Speculative { seed: params.seed },
        };
        Ok(Self {
            params,
            rule,
            processors: None,
            logprobs: None,
        })
    }

    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            params: SamplingParams::greedy(),
            rule: VerifyRule::Greedy,
            processors: None,
            logprobs: None,
        }
    }

    /// These settings with `processors` applied to every row of a
    /// vocabulary of `vocab` tokens (checked here).
    pub fn with_processors(mut self, processors: LogitsProcessors, vocab: usize) -> Result<Self> {
        processors.validate(vocab)?;
        self.processors = (!processors.is_noop()).then(|| Arc::new(processors));
        Ok(self)
    }

    /// These settings, reporting each emitted token's log probability and
    /// `top` alternatives (at most [`MAX_TOP_LOGPROBS`]).
    pub fn with_logprobs(mut self, top: usize) -> Result<Self> {
        if top > MAX_TOP_LOGPROBS {
            return Err(Error::InvalidParameter {
                name: "top_logprobs",
                value: top.to_string(),
                expected: "at most 20",
            });
        }
        self.logprobs = Some(top);
        Ok(self)
    }

    /// These settings for a prompt of `len` tokens: presence and frequency
    /// penalties and `min_tokens` count from there.
    pub fn for_prompt(mut self, len: usize) -> Self {
        if let Some(processors) = &mut self.processors {
            Arc::make_mut(processors).prompt_len = len;
        }
        self
    }

    /// The row of logits at the position after `verified` and `drafts`, as
    /// the processors leave it (the row itself when there are none).
    pub fn process(
        &self,
        verified: &[TokenId],
        drafts: &[TokenId],
        mut logits: Vec<f32>,
    ) -> Vec<f32> {
        if let Some(processors) = &self.processors {
            processors.apply(verified, drafts, &mut logits);
        }
        logits
    }

    /// What a drafter's rows must come back as: each row's maximum is
    /// enough for greedy drafting without logits processors.
    pub fn draft_readback(&self) -> Readback {
        match (self.params.is_greedy(), &self.processors) {
            (true, None) => Readback::Argmax,
            _ => Readback::Logits,
        }
    }

    /// What a target's rows must come back as: each row's maximum is
    /// enough for greedy verification without logits processors or log
    /// probabilities.
    pub fn score_readback(&self) -> Readback {
        match self.logprobs {
            None => self.draft_readback(),
            Some(_) => Readback::Logits,
        }
    }

    /// The drafter's token at `position` after processed `logits`, with
    /// the distribution it was drawn from when the rule needs it.
    pub fn draft_token(&self, position: usize, logits: &[f32]) -> (TokenId, Option<Vec<f32>>) {
        if self.params.is_greedy() {
            return (argmax(logits), None);
        }
        let q = self.params.probabilities(logits);
        let token = self.rule.draft_token(position, &q);
        (token, self.rule.needs_draft_probs().then_some(q))
    }
}

/// Zeroes every token outside the top-k / top-p nucleus, then renormalizes.
/// Ties are broken by token id so every backend keeps the same set.
fn keep_top(probs: &mut [f32], top_k: Option<usize>, top_p: Option<f32>) {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut keep = top_k.unwrap_or(probs.len()).min(probs.len());
    if let Some(p) = top_p {
        let mut mass = 0.0;
        for (rank, &i) in order.iter().enumerate().take(keep) {
            mass += probs[i];
            if mass >= p {
                keep = rank + 1;
                break;
            }
        }
    }
    for &i in &order[keep..] {
        probs[i] = 0.0;
    }
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: 1,
        }
    }

    #[test]
    fn greedy_is_one_hot_argmax() {
        let p = SamplingParams::greedy();
        assert_eq!(p.probabilities(&[0.1, 3.0, 2.0]), vec![0.0, 1.0, 0.0]);
        assert_eq!(p.next_token(5, &[0.1, 3.0, 2.0]), 1);
    }

    #[test]
    fn temperature_softmax() {
        let p = params(1.0, None, None).probabilities(&[0.0, (2.0f32).ln()]);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6 && (p[1] - 2.0 / 3.0).abs() < 1e-6);
        let sharp = params(0.5, None, None).probabilities(&[0.0, (2.0f32).ln()]);
        assert!((sharp[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [(0.5f32).ln(), (0.3f32).ln(), (0.15f32).ln(), (0.05f32).ln()];
        let k = params(1.0, Some(2), None).probabilities(&logits);
        assert!((k[0] - 0.625).abs() < 1e-6 && k[2] == 0.0 && k[3] == 0.0);
        let p = params(1.0, None, Some(0.8)).probabilities(&logits);
        assert!((p[0] - 0.625).abs() < 1e-5 && p[2] == 0.0, "{p:?}");
        let p = params(1.0, None, Some(0.81)).probabilities(&logits);
        assert!(p[2] > 0.0 && p[3] == 0.0, "{p:?}");
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let logits = [0.3f32, 0.2, 0.1, 0.4];
        let p = params(1.0, None, None);
        let a: Vec<_> = (0..50).map(|pos| p.next_token(pos, &logits)).collect();
        let b: Vec<_> = (0..50).map(|pos| p.next_token(pos, &logits)).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|&t| t != a[0]), "draws vary with position");
    }

    #[test]
    fn decoding_picks_the_lossless_rule() {
        assert_eq!(Decoding::greedy().rule, VerifyRule::Greedy);
        let sampled = params(0.8, None, None);
        assert_eq!(
            Decoding::new(sampled, false).unwrap().rule,
            VerifyRule::Coupled { seed: 1 }
        );
        let speculative = Decoding::new(sampled, true).unwrap();
        assert_eq!(speculative.rule, VerifyRule::Speculative { seed: 1 });
        let (_, q) = speculative.draft_token(3, &[0.0, 1.0]);
        assert!(
            q.is_some(),
            "speculative sampling needs the drafter's distribution"
        );
        assert!(Decoding::new(params(-1.0, None, None), false).is_err());
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(params(-1.0, None, None).validate().is_err());
        assert!(params(f32::NAN, None, None).validate().is_err());
        assert!(params(1.0, Some(0), None).validate().is_err());
        assert!(params(1.0, None, Some(0.0)).validate().is_err());
        assert!(params(1.0, None, Some(1.5)).validate().is_err());
        assert!(params(0.7, Some(40), Some(0.9)).validate().is_ok());
    }
}
