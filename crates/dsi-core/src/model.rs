//! What a scheduler needs from a model on one device: a language model that
//! keeps one KV cache per sequence and feeds several sequences in one
//! forward, driven by plain data.
//!
//! The trait speaks token ids and logits only (no tensors, no references into
//! a device), so the same worker code drives a burn model on any backend, a
//! test fake, or later a model in another process.

use crate::TokenId;
use crate::cache_layout::CacheFootprint;
use crate::cancel::CancelFlag;

/// Names one of a model's KV caches: a worker keeps one per request.
pub type SeqId = u64;

/// Why a forward pass produced no logits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The caller's [`CancelFlag`] was raised; the cache is as it was before.
    #[error("cancelled")]
    Cancelled,
    /// The model failed (device error, cache full, bad token); the message
    /// says what and what to do.
    #[error("{0}")]
    Failed(String),
}

/// One sequence's part of a forward.
#[derive(Debug, Clone, Copy)]
pub struct Feed<'a> {
    /// Whose cache the tokens extend (made empty on first use).
    pub seq: SeqId,
    /// New tokens, fed after the positions that cache holds.
    pub tokens: &'a [TokenId],
    /// Logit rows wanted: those of the last `rows` tokens (at most
    /// `tokens.len()`). Drafting and prefill need one, a verification its
    /// drafts plus one; `0` only fills the cache.
    pub rows: usize,
    /// Raised when this sequence's result is no longer wanted.
    pub cancel: &'a CancelFlag,
}

/// A causal language model that keeps one KV cache per sequence.
///
/// Implementations must leave a sequence's cache exactly as it was before a
/// feed that returns an error, so a caller can retry or roll back.
pub trait KvModel: Send {
    /// Vocabulary size: the length of each logits row.
    fn vocab(&self) -> usize;

    /// Positions each sequence's cache can hold.
    fn capacity(&self) -> usize;

    /// Positions `seq`'s cache holds now (0 for a sequence never fed).
    fn cached(&self, seq: SeqId) -> usize;

    /// Forgets every position of `seq` from `keep` on, in O(1).
    fn truncate(&mut self, seq: SeqId, keep: usize);

    /// Drops `seq`'s cache and frees its memory.
    fn release(&mut self, seq: SeqId);

    /// Runs every feed in one forward where the model can (the projections
    /// of all new rows at once, attention per sequence) and returns one
    /// result per feed, in order: its logits, row-major `[rows, vocab]`, or
    /// why it has none. Only the rows asked for are computed and read back.
    ///
    /// A feed whose flag is raised before the forward ends returns
    /// [`ForwardError::Cancelled`] with its cache as it was; the forward
    /// stops at a safe point (between layers at least) once every flag is
    /// raised. Each sequence appears at most once.
    fn forward(&mut self, feeds: &[Feed<'_>]) -> Vec<Result<Vec<f32>, ForwardError>>;

    /// Bytes the caches of every sequence hold now (0 if unknown).
    fn cache_bytes(&self) -> usize {
        0
    }

    /// How one sequence's cache grows with the positions it holds, so a
    /// memory budget can bound it before it grows; `None` when it takes no
    /// budgeted memory.
    fn footprint(&self) -> Option<CacheFootprint> {
        None
    }
}

/// [`KvModel::forward`] of a single feed.
pub fn forward_one(model: &mut dyn KvModel, feed: Feed<'_>) -> Result<Vec<f32>, ForwardError> {
    model
        .forward(&[feed])
        .pop()
        .unwrap_or_else(|| Err(ForwardError::Failed("the model returned no result".into())))
}

impl<M: KvModel + ?Sized> KvModel for Box<M> {
    fn vocab(&self) -> usize {
        (**self).vocab()
    }

    fn capacity(&self) -> usize {
        (**self).capacity()
    }

    fn cached(&self, seq: SeqId) -> usize {
        (**self).cached(seq)
    }

    fn truncate(&mut self, seq: SeqId, keep: usize) {
        (**self).truncate(seq, keep);
    }

    fn release(&mut self, seq: SeqId) {
        (**self).release(seq);
    }

    fn forward(&mut self, feeds: &[Feed<'_>]) -> Vec<Result<Vec<f32>, ForwardError>> {
        (**self).forward(feeds)
    }

    fn cache_bytes(&self) -> usize {
        (**self).cache_bytes()
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        (**self).footprint()
    }
}
