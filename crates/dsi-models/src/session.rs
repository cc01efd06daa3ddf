//! A model on one device plus a KV cache per sequence: what one scheduler
//! worker drives, through `dsi-core`'s plain-data [`KvModel`] trait (on a
//! worker thread) or [`AsyncKvModel`] (in a browser, readback awaited).
//!
//! Workers on one device share the weights (`Arc<LoadedModel>`); each owns
//! the caches of the sequences it serves, and feeds any number of them in
//! one batched forward ([`LoadedModel::forward_batch`]).

use crate::checkpoint::HostTensor;
use crate::transformer::{BatchMember, LoadedModel};
use crate::{KvCache, ModelError};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::model::{AsyncKvModel, Feed, ForwardError, ForwardResults, KvModel, KvState, SeqId};
use std::collections::HashMap;
use std::sync::Arc;

/// Shared weights and private caches, one per sequence.
#[derive(Debug)]
pub struct Session<B: Backend> {
    model: Arc<LoadedModel<B>>,
    capacity: usize,
    /// Logit columns handed out: the model's rows, or its tokenizer's ids
    /// (see [`Session::with_vocab`]).
    vocab: usize,
    footprint: CacheFootprint,
    caches: HashMap<SeqId, KvCache<B>>,
}

impl<B: Backend> Session<B> {
    /// A session whose caches hold up to `capacity` positions each (at most
    /// the model's context).
    pub fn new(model: Arc<LoadedModel<B>>, capacity: usize) -> Self {
        let capacity = capacity.min(model.config.max_context);
        let footprint = model.new_cache(capacity).footprint();
        Self {
            vocab: model.config.vocab_size,
            model,
            capacity,
            footprint,
            caches: HashMap::new(),
        }
    }

    /// Hands out only the first `vocab` logits of every row (at most the
    /// model's): the tokenizer's ids, past which an embedding padded to a
    /// round size has rows no text encodes to (`dsi_models::pair`), so a
    /// target and a drafter padded differently choose among the same ids
    /// in every mode. The columns are cut on the device, before readback.
    pub fn with_vocab(mut self, vocab: usize) -> Self {
        self.vocab = vocab.clamp(1, self.model.config.vocab_size);
        self
    }

    /// The shared model.
    pub fn model(&self) -> &LoadedModel<B> {
        &self.model
    }
}

fn forward_error(e: ModelError) -> ForwardError {
    match e {
        ModelError::Cancelled => ForwardError::Cancelled,
        e => ForwardError::Failed(e.to_string()),
    }
}

impl<B: Backend> KvState for Session<B> {
    fn cache_bytes(&self) -> usize {
        self.caches.values().map(KvCache::bytes).sum()
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        Some(self.footprint)
    }

    fn vocab(&self) -> usize {
        self.vocab
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn cached(&self, seq: SeqId) -> usize {
        self.caches.get(&seq).map_or(0, KvCache::len)
    }

    fn truncate(&mut self, seq: SeqId, keep: usize) {
        if let Some(cache) = self.caches.get_mut(&seq) {
            cache.truncate(keep);
        }
    }

    fn release(&mut self, seq: SeqId) {
        self.caches.remove(&seq);
    }
}

/// A forward launched on the device: the results decided without a
/// forward, and which feed each logits tensor belongs to.
struct Launched {
    results: Vec<Option<Result<Vec<f32>, ForwardError>>>,
    order: Vec<usize>,
}

/// Each fed sequence's logits on the device, not yet read back.
type Pending<B> = Vec<crate::Result<Tensor<B, 2>>>;

impl Launched {
    /// Every feed's result, given the logits of the fed ones read back in
    /// order.
    fn finish(mut self, read: Vec<crate::Result<Vec<f32>>>) -> ForwardResults {
        for (&i, logits) in self.order.iter().zip(read) {
            self.results[i] = Some(logits.map_err(forward_error));
        }
        self.results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ForwardError::Failed("no result".into()))))
            .collect()
    }
}

impl<B: Backend> Session<B> {
    /// Runs every feed through the model in one batched forward, up to the
    /// logits tensors (their readback is the caller's: at once on a thread,
    /// awaited in a browser).
    fn launch(&mut self, feeds: &[Feed<'_>]) -> (Launched, Pending<B>) {
        let mut results: Vec<Option<Result<Vec<f32>, ForwardError>>> = vec![None; feeds.len()];
        for (i, feed) in feeds.iter().enumerate() {
            if feeds[..i].iter().any(|f| f.seq == feed.seq) {
                results[i] = Some(Err(ForwardError::Failed(format!(
                    "sequence {} appears twice in one forward",
                    feed.seq
                ))));
            } else if !self.caches.contains_key(&feed.seq) {
                let cache = self.model.new_cache(self.capacity);
                self.caches.insert(feed.seq, cache);
            }
        }
        // Borrow each fed sequence's cache once, in the order of the feeds.
        let mut by_seq: HashMap<SeqId, &mut KvCache<B>> = self
            .caches
            .iter_mut()
            .filter(|(seq, _)| feeds.iter().any(|f| f.seq == **seq))
            .map(|(seq, cache)| (*seq, cache))
            .collect();
        let mut members = Vec::new();
        let mut order = Vec::new();
        for (i, feed) in feeds.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let Some(cache) = by_seq.remove(&feed.seq) else {
                continue;
            };
            members.push(BatchMember {
                tokens: feed.tokens,
                cache,
                rows: feed.rows,
                cancel: feed.cancel,
            });
            order.push(i);
        }
        let (vocab, full) = (self.vocab, self.model.config.vocab_size);
        let pending = self
            .model
            .forward_batch(members)
            .into_iter()
            .map(|logits| {
                logits.map(|l| {
                    if vocab < full {
                        l.narrow(1, 0, vocab)
                    } else {
                        l
                    }
                })
            })
            .collect();
        (Launched { results, order }, pending)
    }
}

impl<B: Backend> KvModel for Session<B>
where
    LoadedModel<B>: Send + Sync,
    KvCache<B>: Send,
{
    fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        let (launched, pending) = self.launch(feeds);
        let read = pending
            .into_iter()
            .map(|logits| {
                logits.and_then(|logits| match logits.dims()[0] {
                    0 => Ok(Vec::new()),
                    _ => HostTensor::from_tensor(logits).map(|host| host.values),
                })
            })
            .collect();
        launched.finish(read)
    }
}

/// In a browser, WebGPU's readback is awaited: the page's other tasks (the
/// drafter, the other targets) run meanwhile.
impl<B: Backend> AsyncKvModel for Session<B> {
    async fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        let (launched, pending) = self.launch(feeds);
        let mut read = Vec::with_capacity(pending.len());
        for logits in pending {
            read.push(match logits {
                Ok(logits) if logits.dims()[0] > 0 => HostTensor::from_tensor_async(logits)
                    .await
                    .map(|host| host.values),
                Ok(_) => Ok(Vec::new()),
                Err(e) => Err(e),
            });
        }
        launched.finish(read)
    }
}
