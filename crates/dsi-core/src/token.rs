//! Token ids, draft chains and the verdict of a verification.

use serde::{Deserialize, Serialize};

/// A token id in a model's vocabulary.
pub type TokenId = u32;

/// Drafted tokens that continue a verified prefix.
///
/// `start` is the absolute position of the first draft (the length of the
/// prefix it follows), so keyed randomness and KV caches agree on positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftChain {
    start: usize,
    tokens: Vec<TokenId>,
}

impl DraftChain {
    /// Drafts `tokens` placed right after a prefix of length `start`.
    pub fn new(start: usize, tokens: Vec<TokenId>) -> Self {
        Self { start, tokens }
    }

    /// Absolute position of the first draft.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Absolute position one past the last draft.
    pub fn end(&self) -> usize {
        self.start + self.tokens.len()
    }

    /// The drafted tokens.
    pub fn tokens(&self) -> &[TokenId] {
        &self.tokens
    }

    /// Number of drafts.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when there are no drafts (the verification is a plain target step).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The outcome of verifying `n` drafts against the target's `n + 1`
/// next-token distributions.
///
/// The target always contributes one token: the correction at the first
/// rejected position, or a bonus token when every draft was accepted. So one
/// verification always emits `accepted + 1` tokens, all of them the target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// How many leading drafts were accepted.
    pub accepted: usize,
    /// The target's own token at position `start + accepted`.
    pub next_token: TokenId,
    /// Number of drafts that were verified.
    pub drafted: usize,
}

impl Verdict {
    /// True when every draft was accepted, so `next_token` is a bonus token.
    pub fn all_accepted(&self) -> bool {
        self.accepted == self.drafted
    }

    /// The tokens this verdict emits: the accepted drafts, then the target's token.
    pub fn emitted(&self, drafts: &[TokenId]) -> Vec<TokenId> {
        let mut out = Vec::with_capacity(self.accepted + 1);
        out.extend_from_slice(&drafts[..self.accepted.min(drafts.len())]);
        out.push(self.next_token);
        out
    }
}
