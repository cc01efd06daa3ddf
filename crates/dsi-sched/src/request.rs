//! What a caller asks of a pool and what it gets back.

use crate::stats::Stats;
use crate::timeline::TimelineRecord;
use dsi_core::TokenId;
use dsi_core::sampling::{Decoding, TokenLogprobs};
use dsi_core::schedule::{ModeSetting, StopReason};

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Prompt token ids.
    pub prompt: Vec<TokenId>,
    /// The algorithm, or `auto`: the pool chooses (it needs a profile,
    /// `Pool::with_tuning`).
    pub mode: ModeSetting,
    /// Drafts per verification job (`auto` chooses its own).
    pub k: usize,
    /// New tokens at most.
    pub max_new_tokens: usize,
    /// End-of-sequence tokens.
    pub eos: Vec<TokenId>,
    /// Sampling and verification.
    pub decoding: Decoding,
    /// Target workers this request may use (the first ones); `None` for all.
    pub targets: Option<usize>,
}

/// The result of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new tokens (end-of-sequence excluded).
    pub tokens: Vec<TokenId>,
    /// Each new token's log probability and alternatives, when the
    /// request's decoding asks for them.
    pub logprobs: Option<Vec<TokenLogprobs>>,
    /// Why it stopped.
    pub stop: StopReason,
    /// What was measured.
    pub stats: Stats,
}

/// What a request reports while it runs.
#[derive(Debug)]
pub enum Update<'a> {
    /// Newly verified tokens, in order.
    Tokens(&'a [TokenId]),
    /// The log probabilities of the tokens of the `Tokens` update that
    /// follows, when the request asks for them.
    Logprobs(&'a [TokenLogprobs]),
    /// A timeline entry.
    Timeline(&'a TimelineRecord),
}
