//! What a scheduler needs from one model instance: a language model with its
//! own KV cache, driven by plain data.
//!
//! The trait speaks token ids and logits only (no tensors, no references into
//! a device), so the same worker code drives a burn model on any backend, a
//! test fake, or later a model in another process.

use crate::TokenId;
use crate::cache_layout::CacheFootprint;
use crate::cancel::CancelFlag;

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

/// A causal language model instance that owns its KV cache.
///
/// Implementations must leave the cache exactly as it was before a forward
/// that returns an error, so a caller can retry or roll back.
pub trait KvModel: Send {
    /// Vocabulary size: the length of each logits row.
    fn vocab(&self) -> usize;

    /// Positions the cache can hold.
    fn capacity(&self) -> usize;

    /// Positions the cache holds now.
    fn cached(&self) -> usize;

    /// Forgets every position from `keep` on, in O(1).
    fn truncate(&mut self, keep: usize);

    /// Feeds `tokens` after the cached positions and returns the next-token
    /// logits of the last `rows` of them (at most `tokens.len()`), row-major
    /// `[rows, vocab]`. Only those rows are computed and read back: drafting
    /// and prefill need one, a verification its drafts plus one; `rows = 0`
    /// only fills the cache.
    ///
    /// Checks `cancel` at safe points (between layers at least) and returns
    /// [`ForwardError::Cancelled`] there.
    fn forward(
        &mut self,
        tokens: &[TokenId],
        rows: usize,
        cancel: &CancelFlag,
    ) -> Result<Vec<f32>, ForwardError>;

    /// Another instance over the same weights with its own empty cache of
    /// the same capacity, so one worker can keep a cache per request.
    /// `None` (the default) when the model has only the one cache.
    fn fork(&self) -> Option<Box<dyn KvModel>> {
        None
    }

    /// Bytes this instance's cache holds now (0 if unknown).
    fn cache_bytes(&self) -> usize {
        0
    }

    /// How the cache grows with the positions it holds, so a memory budget
    /// can bound it before it grows; `None` when it takes no budgeted memory.
    fn footprint(&self) -> Option<CacheFootprint> {
        None
    }
}

impl<M: KvModel + ?Sized> KvModel for Box<M> {
    fn vocab(&self) -> usize {
        (**self).vocab()
    }

    fn capacity(&self) -> usize {
        (**self).capacity()
    }

    fn cached(&self) -> usize {
        (**self).cached()
    }

    fn truncate(&mut self, keep: usize) {
        (**self).truncate(keep);
    }

    fn forward(
        &mut self,
        tokens: &[TokenId],
        rows: usize,
        cancel: &CancelFlag,
    ) -> Result<Vec<f32>, ForwardError> {
        (**self).forward(tokens, rows, cancel)
    }

    fn fork(&self) -> Option<Box<dyn KvModel>> {
        (**self).fork()
    }

    fn cache_bytes(&self) -> usize {
        (**self).cache_bytes()
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        (**self).footprint()
    }
}
