//! What a target and its drafter must share: one tokenizer (the same
//! token-to-id map), and logit rows for every id that tokenizer has.
//!
//! Embedding matrices are often padded past the tokenizer to a round size,
//! and differently within one family (Qwen2.5-0.5B has 151936 rows,
//! Qwen2.5-7B 152064, for the same 151665 tokens). The pair then verifies
//! on the rows both have ([`Session::with_vocab`](crate::Session::with_vocab)):
//! the ids past them are padding no text encodes to.

use crate::checkpoint::{Checkpoint, TextTokenizer};
use crate::config::ModelConfig;
use crate::{ModelError, Result};

/// One side of a pair: its configuration and tokenizer.
#[derive(Clone, Copy)]
pub struct PairSide<'a> {
    /// The model's architecture (its embedding rows).
    pub config: &'a ModelConfig,
    /// The model's tokenizer.
    pub tokenizer: &'a TextTokenizer,
}

impl<'a> From<&'a Checkpoint> for PairSide<'a> {
    fn from(checkpoint: &'a Checkpoint) -> Self {
        Self {
            config: &checkpoint.config,
            tokenizer: &checkpoint.tokenizer,
        }
    }
}

/// The vocabulary `target` and `drafter` verify on: the rows both have.
/// Refused, naming the first difference, when their tokenizers map a token
/// to different ids, or when a token id of the tokenizer has no row in one
/// of them.
pub fn shared_vocab(target: PairSide<'_>, drafter: PairSide<'_>) -> Result<usize> {
    if let Some(difference) = target.tokenizer.first_difference(drafter.tokenizer) {
        return Err(ModelError::PairMismatch(format!(
            "the tokenizers differ (target first, drafter second): {difference}"
        )));
    }
    let shared = target.config.vocab_size.min(drafter.config.vocab_size);
    let tokens = target.tokenizer.vocab_size();
    if tokens > shared {
        return Err(ModelError::PairMismatch(format!(
            "the tokenizer has {tokens} tokens, but the target's embedding has {} rows and the drafter's {}",
            target.config.vocab_size, drafter.config.vocab_size
        )));
    }
    Ok(shared)
}
