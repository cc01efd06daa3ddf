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
    /// What the rows come back as.
    pub readback: Readback,
}

/// What a feed wants back for its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Readback {
    /// Every row's logits.
    #[default]
    Logits,
    /// Each row's first maximum: all greedy decoding without logits
    /// processors or log probabilities needs. A model whose logits live on
    /// a GPU takes it there and reads back one id per row instead of
    /// `vocab` floats; any model may answer with the logits instead.
    Argmax,
}

/// One feed's rows, as a forward hands them back.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// Row-major `[rows, vocab]` logits.
    Logits(Vec<f32>),
    /// Each row's first maximum ([`crate::verify::argmax`]'s rule), taken
    /// where the logits are; only for a feed that asked for
    /// [`Readback::Argmax`].
    Argmax(Vec<TokenId>),
}

/// A causal language model's KV caches, one per sequence: what a worker
/// asks of a model besides its forward, whether that forward returns at
/// once ([`KvModel`]) or is awaited ([`AsyncKvModel`]).
pub trait KvState {
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

/// One result per feed of a forward, in order: its rows, or why it has
/// none.
pub type ForwardResults = Vec<Result<Rows, ForwardError>>;

/// A causal language model that keeps one KV cache per sequence, driven
/// from a worker thread.
///
/// Implementations must leave a sequence's cache exactly as it was before a
/// feed that returns an error, so a caller can retry or roll back.
pub trait KvModel: KvState + Send {
    /// Runs every feed in one forward where the model can (the projections
    /// of all new rows at once, attention per sequence) and returns one
    /// result per feed, in order. Only the rows asked for are computed and
    /// read back.
    ///
    /// A feed whose flag is raised before the forward ends returns
    /// [`ForwardError::Cancelled`] with its cache as it was; the forward
    /// stops at a safe point (between layers at least) once every flag is
    /// raised. Each sequence appears at most once.
    fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults;
}

/// [`KvModel`] for a device whose results are awaited: in a browser,
/// WebGPU reads logits back asynchronously, and other tasks on the page's
/// one thread run meanwhile. The contract is [`KvModel::forward`]'s.
pub trait AsyncKvModel: KvState {
    /// [`KvModel::forward`], awaited.
    fn forward(&mut self, feeds: &[Feed<'_>]) -> impl Future<Output = ForwardResults>;
}

/// A [`KvModel`] as an [`AsyncKvModel`] whose forwards are ready at once,
/// so one implementation of the worker's logic serves threads and the
/// browser alike.
#[derive(Debug, Clone, Default)]
pub struct Ready<M>(pub M);

impl<M: KvState> KvState for Ready<M> {
    fn vocab(&self) -> usize {
        self.0.vocab()
    }

    fn capacity(&self) -> usize {
        self.0.capacity()
    }

    fn cached(&self, seq: SeqId) -> usize {
        self.0.cached(seq)
    }

    fn truncate(&mut self, seq: SeqId, keep: usize) {
        self.0.truncate(seq, keep);
    }

    fn release(&mut self, seq: SeqId) {
        self.0.release(seq);
    }

    fn cache_bytes(&self) -> usize {
        self.0.cache_bytes()
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        self.0.footprint()
    }
}

impl<M: KvModel> AsyncKvModel for Ready<M> {
    fn forward(&mut self, feeds: &[Feed<'_>]) -> impl Future<Output = ForwardResults> {
        std::future::ready(self.0.forward(feeds))
    }
}

/// [`KvModel::forward`] of a single feed.
pub fn forward_one(model: &mut dyn KvModel, feed: Feed<'_>) -> Result<Rows, ForwardError> {
    model
        .forward(&[feed])
        .pop()
        .unwrap_or_else(|| Err(ForwardError::Failed("the model returned no result".into())))
}

impl<M: KvState + ?Sized> KvState for Box<M> {
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

    fn cache_bytes(&self) -> usize {
        (**self).cache_bytes()
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        (**self).footprint()
    }
}

impl<M: KvModel + ?Sized> KvModel for Box<M> {
    fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        (**self).forward(feeds)
    }
}
