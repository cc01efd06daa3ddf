//! The token ids a pool samples from, and what a drafter must share with
//! its target: one tokenizer (the same token-to-id map), and logit rows for
//! every id that tokenizer has.
//!
//! Embedding matrices are often padded past the tokenizer to a round size,
//! and differently within one family (Qwen2.5-0.5B has 151936 rows,
//! Qwen2.5-7B 152064, for the same 151665 token ids). The ids past the
//! tokenizer's are padding: no text encodes to them and none decodes from
//! them. So every session of a pool hands out the logits of the
//! tokenizer's ids only ([`Session::with_vocab`](crate::Session::with_vocab)),
//! with or without a drafter: non-SI, SI and DSI then choose among the same
//! ids, and a model never emits an id its tokenizer cannot decode.

use crate::checkpoint::{Checkpoint, TextTokenizer};
use crate::config::ModelConfig;
use crate::{ModelError, Result};

/// One model of a pool: its configuration and tokenizer.
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

/// The ids `target` (and `drafter`) sample and verify on: the tokenizer's,
/// within the target's rows. A drafter is refused, naming the first
/// difference, when its tokenizer maps a token to another id, or when one
/// of the tokenizer's ids has no row in its embedding.
pub fn pool_vocab(target: PairSide<'_>, drafter: Option<PairSide<'_>>) -> Result<usize> {
    let ids = target.tokenizer.id_range();
    let Some(drafter) = drafter else {
        return Ok(ids.clamp(1, target.config.vocab_size));
    };
    if let Some(difference) = target.tokenizer.first_difference(drafter.tokenizer) {
        return Err(ModelError::PairMismatch(format!(
            "the tokenizers differ (target first, drafter second): {difference}"
        )));
    }
    let rows = target.config.vocab_size.min(drafter.config.vocab_size);
    if ids > rows {
        return Err(ModelError::PairMismatch(format!(
            "the tokenizer has ids up to {}, but the target's embedding has {} rows and the drafter's {}",
            ids - 1,
            target.config.vocab_size,
            drafter.config.vocab_size
        )));
    }
    Ok(ids.max(1))
}
