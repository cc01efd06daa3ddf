//! What a page asks of the engine, as JSON, checked before anything runs.

use crate::error::WebError;
use dsi_core::TokenId;
use dsi_core::sampling::{Decoding, SamplingParams};
use dsi_core::schedule::{Mode, Plan};
use serde::Deserialize;

/// New tokens one request may ask for at most.
pub const MAX_TOKENS: usize = 1024;
/// Target workers one request may spread over at most.
pub const MAX_TARGETS: usize = 8;

/// One generation, as the page sends it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateOptions {
    /// The prompt text.
    pub prompt: String,
    /// `nonsi`, `si` or `dsi`.
    pub mode: Mode,
    /// Drafts per verification job.
    pub lookahead: usize,
    /// Target workers (DSI; SI and non-SI use one).
    pub targets: usize,
    /// New tokens at most.
    pub max_tokens: usize,
    /// 0 for greedy.
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Seed of the sampling (the same seed gives the same tokens in every
    /// mode).
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            mode: Mode::Dsi,
            lookahead: 5,
            targets: 2,
            max_tokens: 48,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 0,
        }
    }
}

impl GenerateOptions {
    /// Reads the page's JSON, naming the field that is wrong.
    pub fn from_json(json: &str) -> Result<Self, WebError> {
        serde_json::from_str(json).map_err(|e| WebError::Settings(format!("bad options: {e}")))
    }

    /// The state machine's plan for a prompt of `prompt` tokens in a
    /// context of `context` positions.
    pub fn plan(&self, prompt: usize, context: usize, eos: &[TokenId]) -> Result<Plan, WebError> {
        if !(1..=MAX_TOKENS).contains(&self.max_tokens) {
            return Err(WebError::Settings(format!(
                "max_tokens is {}: ask for 1 to {MAX_TOKENS}",
                self.max_tokens
            )));
        }
        if !(1..=MAX_TARGETS).contains(&self.targets) {
            return Err(WebError::Settings(format!(
                "targets is {}: ask for 1 to {MAX_TARGETS}",
                self.targets
            )));
        }
        if self.mode.drafts() && !(1..=64).contains(&self.lookahead) {
            return Err(WebError::Settings(format!(
                "lookahead is {}: ask for 1 to 64",
                self.lookahead
            )));
        }
        if prompt == 0 {
            return Err(WebError::Settings(
                "the prompt is empty: type something to continue".into(),
            ));
        }
        // A verification holds the lookahead's drafts beyond the output.
        let room = context.saturating_sub(prompt + self.lookahead + 1);
        if room == 0 {
            return Err(WebError::Settings(format!(
                "the prompt is {prompt} tokens and the model's context {context}: shorten the prompt"
            )));
        }
        let params = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        };
        let plan = Plan {
            mode: self.mode,
            k: if self.mode.drafts() {
                self.lookahead
            } else {
                1
            },
            servers: match self.mode {
                Mode::Dsi => self.targets,
                Mode::Si | Mode::NonSi => 1,
            },
            max_new_tokens: self.max_tokens.min(room),
            eos: eos.to_vec(),
            decoding: Decoding::new(params, false)?,
            early_bonus: true,
        };
        plan.validate()?;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_ranges_are_named() {
        let e = GenerateOptions::from_json(r#"{"promt": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("promt"), "{e}");
        let options = GenerateOptions {
            max_tokens: 0,
            ..GenerateOptions::default()
        };
        let e = options.plan(3, 256, &[]).unwrap_err();
        assert!(e.to_string().contains("max_tokens"), "{e}");
        let options = GenerateOptions::default();
        assert!(options.plan(0, 256, &[]).is_err());
        let e = options.plan(300, 256, &[]).unwrap_err();
        assert!(e.to_string().contains("shorten"), "{e}");
        let plan = options.plan(3, 256, &[2]).unwrap();
        assert_eq!((plan.mode, plan.k, plan.servers), (Mode::Dsi, 5, 2));
        assert_eq!(plan.eos, vec![2]);
        let si = GenerateOptions {
            mode: Mode::Si,
            ..options
        };
        assert_eq!(si.plan(3, 256, &[]).unwrap().servers, 1);
    }
}
