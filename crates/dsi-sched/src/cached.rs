//! KV-cache synchronization: a model instance that remembers which tokens
//! its cache holds, so each job feeds only what is missing.
//!
//! A job carries its whole context (verified prefix plus drafts). The worker
//! keeps the longest prefix it shares with what the cache holds, truncates
//! the rest in O(1) (a rejected draft's keys and values simply fall off the
//! end), and feeds the missing tokens plus the drafts in one forward.

use crate::roles::{CacheState, Drafter, Scorer, Scores};
use dsi_core::TokenId;
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::cancel::CancelFlag;
use dsi_core::model::{ForwardError, KvModel};
use dsi_core::sampling::Decoding;
use dsi_core::schedule::Drafted;
use dsi_core::verify::{ProbTable, argmax};

/// Tokens one forward feeds at most when it fills a cache (`--prefill-chunk`).
///
/// Measured with `dsi bench decode --prefill-chunks 32,64,128,256,512` on
/// the 2-core CPU (a 512-token prompt): 128 gave the most prefill tokens/s
/// of the five sizes for the bundled target, the SmolLM-135M shape and the
/// Llama-3.2-1B shape alike, while a 256 chunk holds a worker twice as long
/// (1B shape: 4.5 s per 128-token forward against 9.4 s per 256).
pub const DEFAULT_PREFILL_CHUNK: usize = 128;

/// A [`KvModel`] plus the tokens its cache holds; implements both roles.
#[derive(Debug)]
pub struct CachedModel<M> {
    model: M,
    held: Vec<TokenId>,
    prefill_chunk: usize,
}

impl<M: KvModel> CachedModel<M> {
    /// Wraps `model`, emptying its cache.
    pub fn new(mut model: M) -> Self {
        model.truncate(0);
        Self {
            model,
            held: Vec::new(),
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
        }
    }

    /// Fills a cache by forwards of at most `chunk` tokens (at least 1), so
    /// a long prompt neither holds its worker for one long forward while
    /// other requests wait nor needs the activations of the whole prompt.
    pub fn with_prefill_chunk(mut self, chunk: usize) -> Self {
        self.prefill_chunk = chunk.max(1);
        self
    }

    /// The prefix of `context` the cache can keep.
    fn shared(&self, context: &[TokenId]) -> usize {
        self.held
            .iter()
            .zip(context)
            .take_while(|(a, b)| a == b)
            .count()
            .min(self.model.cached())
    }

    /// One chunk of the missing prefix when more than a chunk is missing
    /// (the last chunk is left to the job's own forward, which needs its
    /// logits).
    fn fill_chunk(
        &mut self,
        context: &[TokenId],
        cancel: &CancelFlag,
    ) -> Result<bool, ForwardError> {
        let shared = self.shared(context);
        // The job feeds at least its last token again for its logits.
        let missing = context.len().saturating_sub(1).saturating_sub(shared);
        if missing <= self.prefill_chunk {
            return Ok(false);
        }
        self.model.truncate(shared);
        self.held.truncate(shared);
        let chunk = &context[shared..shared + self.prefill_chunk];
        self.model.forward(chunk, 0, cancel)?;
        self.held.extend_from_slice(chunk);
        Ok(true)
    }

    /// The tokens the cache holds.
    pub fn held(&self) -> &[TokenId] {
        &self.held
    }

    /// The wrapped model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Brings the cache to `context` and returns the logits of the positions
    /// `context[feed_from..]` (those are always fed; the rest of the shared
    /// prefix is reused). Only those rows are computed and read back.
    fn sync(
        &mut self,
        context: &[TokenId],
        feed_from: usize,
        cancel: &CancelFlag,
    ) -> Result<(usize, Vec<f32>), ForwardError> {
        if context.len() > self.model.capacity() {
            return Err(ForwardError::Failed(format!(
                "the context is {} tokens but this worker's cache holds {}: lower max_tokens or the prompt length",
                context.len(),
                self.model.capacity()
            )));
        }
        let shared = self.shared(context).min(feed_from);
        self.model.truncate(shared);
        self.held.truncate(shared);
        let rows = context.len() - feed_from;
        let logits = self.model.forward(&context[shared..], rows, cancel)?;
        self.held.extend_from_slice(&context[shared..]);
        Ok((shared, logits))
    }
}

impl<M: KvModel> CachedModel<M> {
    /// A fresh instance over the same weights, if the model can fork.
    fn forked(&self) -> Option<CachedModel<Box<dyn KvModel>>> {
        self.model
            .fork()
            .map(|m| CachedModel::new(m).with_prefill_chunk(self.prefill_chunk))
    }
}

impl<M: KvModel> CacheState for CachedModel<M> {
    fn reset(&mut self) {
        self.model.truncate(0);
        self.held.clear();
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        self.model.footprint()
    }

    fn cache_bytes(&self) -> usize {
        self.model.cache_bytes()
    }

    fn prefill_step(
        &mut self,
        context: &[TokenId],
        cancel: &CancelFlag,
    ) -> Result<bool, ForwardError> {
        self.fill_chunk(context, cancel)
    }
}

impl<M: KvModel> Drafter for CachedModel<M> {
    fn draft(
        &mut self,
        context: &[TokenId],
        count: usize,
        decoding: &Decoding,
        cancel: &CancelFlag,
    ) -> Result<Vec<Drafted>, ForwardError> {
        let n = context.len();
        if n == 0 {
            return Err(ForwardError::Failed(
                "drafting needs a non-empty context".into(),
            ));
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let (_, last) = self.sync(context, n - 1, cancel)?;
        let mut out = Vec::with_capacity(count);
        let (token, probs) = decoding.draft_token(n, &last);
        out.push(Drafted { token, probs });
        for i in 1..count {
            if cancel.is_cancelled() {
                return Err(ForwardError::Cancelled);
            }
            let previous = out[i - 1].token;
            if n + i > self.model.capacity() {
                break;
            }
            let logits = self.model.forward(&[previous], 1, cancel)?;
            self.held.push(previous);
            let (token, probs) = decoding.draft_token(n + i, &logits);
            out.push(Drafted { token, probs });
        }
        Ok(out)
    }

    fn fork(&self) -> Option<Box<dyn Drafter>> {
        Some(Box::new(self.forked()?))
    }
}

impl<M: KvModel> Scorer for CachedModel<M> {
    fn score(
        &mut self,
        context: &[TokenId],
        drafts: usize,
        decoding: &Decoding,
        cancel: &CancelFlag,
    ) -> Result<Scores, ForwardError> {
        let vocab = self.model.vocab();
        if drafts >= context.len() {
            return Err(ForwardError::Failed(format!(
                "{drafts} drafts need a prefix before them, but the context has {} tokens",
                context.len()
            )));
        }
        let start = context.len() - drafts;
        let (_, wanted) = self.sync(context, start - 1, cancel)?;
        let rows = wanted.chunks(vocab);
        if decoding.params.is_greedy() {
            return Ok(Scores::Choices(rows.map(argmax).collect()));
        }
        let mut probs = Vec::with_capacity(wanted.len());
        for row in rows {
            probs.extend(decoding.params.probabilities(row));
        }
        ProbTable::new(vocab, probs)
            .map(Scores::Probs)
            .map_err(|e| ForwardError::Failed(format!("the target's logits are unusable: {e}")))
    }

    fn fork(&self) -> Option<Box<dyn Scorer>> {
        Some(Box::new(self.forked()?))
    }
}
