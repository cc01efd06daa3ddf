//! Logits processors: penalties, biases and bans applied to a row of logits
//! before temperature, top-k and top-p.
//!
//! A processor's effect at a position depends on the tokens before it (a
//! repetition penalty looks at everything said so far). Concurrent jobs of
//! one DSI request see different prefixes at the same position, so every
//! row is processed against *its own* prefix: the verified tokens and the
//! drafts before it. Drafter and target apply the same processors the same
//! way, which keeps speculation lossless relative to non-SI under the same
//! settings: a draft is judged against the target's processed row at the
//! prefix it was drafted on, and a row whose prefix holds a rejected draft
//! belongs to a job that is preempted anyway.

use crate::{Error, Result, TokenId};
use std::collections::HashMap;

/// The settings of the OpenAI and vLLM sampling APIs that reshape logits.
/// All default to "off".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogitsProcessors {
    /// Subtracted once from every token already generated (OpenAI:
    /// -2..=2).
    pub presence_penalty: f32,
    /// Subtracted once per earlier occurrence in the generated tokens
    /// (OpenAI: -2..=2).
    pub frequency_penalty: f32,
    /// Divides positive and multiplies negative logits of every token seen
    /// in the prompt or the output (Keskar et al., as in transformers and
    /// vLLM); 1 is off.
    pub repetition_penalty: f32,
    /// Added to the named tokens' logits (OpenAI: -100..=100).
    pub logit_bias: Vec<(TokenId, f32)>,
    /// The end-of-sequence tokens are banned until this many tokens were
    /// generated.
    pub min_tokens: usize,
    /// The end-of-sequence tokens `min_tokens` bans.
    pub eos: Vec<TokenId>,
    /// Tokens before this position are the prompt; presence and frequency
    /// penalties look only past it.
    pub prompt_len: usize,
}

impl LogitsProcessors {
    /// No processing at all.
    pub fn none() -> Self {
        Self {
            repetition_penalty: 1.0,
            ..Self::default()
        }
    }

    /// True when processing changes nothing.
    pub fn is_noop(&self) -> bool {
        self.presence_penalty == 0.0
            && self.frequency_penalty == 0.0
            && self.repetition_penalty == 1.0
            && self.logit_bias.is_empty()
            && (self.min_tokens == 0 || self.eos.is_empty())
    }

    /// Checks every setting's range against a vocabulary of `vocab` tokens.
    pub fn validate(&self, vocab: usize) -> Result<()> {
        let invalid = |name, value: String, expected| Error::InvalidParameter {
            name,
            value,
            expected,
        };
        for (name, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&value) {
                return Err(invalid(name, value.to_string(), "-2 <= value <= 2"));
            }
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(invalid(
                "repetition_penalty",
                r.to_string(),
                "a finite value > 0 (1 = off)",
            ));
        }
        for &(token, bias) in &self.logit_bias {
            if token as usize >= vocab {
                return Err(Error::TokenOutOfVocabulary { token, vocab });
            }
            if !(-100.0..=100.0).contains(&bias) {
                return Err(invalid(
                    "logit_bias",
                    bias.to_string(),
                    "-100 <= bias <= 100",
                ));
            }
        }
        Ok(())
    }

    /// Processes the row of logits at the position after `prefix`, whose
    /// tokens are `verified` followed by `drafts`.
    pub fn apply(&self, verified: &[TokenId], drafts: &[TokenId], logits: &mut [f32]) {
        let position = verified.len() + drafts.len();
        let prefix = || verified.iter().chain(drafts).copied();
        if position < self.prompt_len + self.min_tokens {
            for &eos in &self.eos {
                if let Some(l) = logits.get_mut(eos as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        for &(token, bias) in &self.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        if self.repetition_penalty != 1.0 {
            let mut seen = vec![false; logits.len()];
            for token in prefix() {
                if let Some(s) = seen.get_mut(token as usize) {
                    *s = true;
                }
            }
            let r = self.repetition_penalty;
            for (l, _) in logits.iter_mut().zip(seen).filter(|(_, s)| *s) {
                *l = if *l > 0.0 { *l / r } else { *l * r };
            }
        }
        if self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 {
            let mut counts: HashMap<TokenId, u32> = HashMap::new();
            for token in prefix().skip(self.prompt_len) {
                *counts.entry(token).or_default() += 1;
            }
            for (token, count) in counts {
                if let Some(l) = logits.get_mut(token as usize) {
                    *l -= self.presence_penalty + self.frequency_penalty * count as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processors() -> LogitsProcessors {
        LogitsProcessors {
            prompt_len: 2,
            ..LogitsProcessors::none()
        }
    }

    #[test]
    fn presence_and_frequency_look_only_past_the_prompt() {
        let p = LogitsProcessors {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..processors()
        };
        let mut row = vec![1.0; 4];
        // Prompt [0, 1]; generated 1, 2, 2 (the last two are drafts).
        p.apply(&[0, 1, 1], &[2, 2], &mut row);
        assert_eq!(row, vec![1.0, 0.25, 0.0, 1.0]);
    }

    #[test]
    fn repetition_penalty_covers_the_prompt_and_keeps_the_sign() {
        let p = LogitsProcessors {
            repetition_penalty: 2.0,
            ..processors()
        };
        let mut row = vec![4.0, -4.0, 4.0];
        p.apply(&[0, 1], &[], &mut row);
        assert_eq!(row, vec![2.0, -8.0, 4.0]);
    }

    #[test]
    fn min_tokens_bans_eos_until_enough_were_generated() {
        let p = LogitsProcessors {
            min_tokens: 2,
            eos: vec![3],
            ..processors()
        };
        let mut row = vec![0.0; 4];
        p.apply(&[0, 1], &[5], &mut row);
        assert_eq!(row[3], f32::NEG_INFINITY);
        let mut row = vec![0.0; 4];
        p.apply(&[0, 1, 5], &[6], &mut row);
        assert_eq!(row[3], 0.0);
    }

    #[test]
    fn bias_adds_and_is_checked() {
        let p = LogitsProcessors {
            logit_bias: vec![(1, -100.0), (2, 5.0)],
            ..processors()
        };
        let mut row = vec![0.0; 3];
        p.apply(&[0], &[], &mut row);
        assert_eq!(row, vec![0.0, -100.0, 5.0]);
        assert!(p.validate(3).is_ok());
        assert!(
            p.validate(2).is_err(),
            "token 2 is outside a vocabulary of 2"
        );
        let far = LogitsProcessors {
            logit_bias: vec![(0, 101.0)],
            ..processors()
        };
        assert!(far.validate(3).is_err());
        assert!(LogitsProcessors::none().is_noop());
        assert!(!p.is_noop());
        let bad = LogitsProcessors {
            repetition_penalty: 0.0,
            ..processors()
        };
        assert!(bad.validate(3).is_err());
    }
}
