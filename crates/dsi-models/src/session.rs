//! A model on one device plus a KV cache per sequence: what one scheduler
//! worker drives, through `dsi-core`'s plain-data [`KvModel`] trait.
//!
//! Workers on one device share the weights (`Arc<LoadedModel>`); each owns
//! the caches of the sequences it serves, and feeds any number of them in
//! one batched forward ([`LoadedModel::forward_batch`]).

use crate::checkpoint::HostTensor;
use crate::llama::{BatchMember, LoadedModel};
use crate::{KvCache, ModelError};
use burn::tensor::backend::Backend;
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::model::{Feed, ForwardError, KvModel, SeqId};
use std::collections::HashMap;
use std::sync::Arc;

/// Shared weights and private caches, one per sequence.
#[derive(Debug)]
pub struct Session<B: Backend> {
    model: Arc<LoadedModel<B>>,
    capacity: usize,
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
            model,
            capacity,
            footprint,
            caches: HashMap::new(),
        }
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

impl<B: Backend> KvModel for Session<B>
where
    LoadedModel<B>: Send + Sync,
    KvCache<B>: Send,
{
    fn cache_bytes(&self) -> usize {
        self.caches.values().map(KvCache::bytes).sum()
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        Some(self.footprint)
    }

    fn vocab(&self) -> usize {
        self.model.config.vocab_size
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

    fn forward(&mut self, feeds: &[Feed<'_>]) -> Vec<Result<Vec<f32>, ForwardError>> {
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
        for (i, logits) in order.into_iter().zip(self.model.forward_batch(members)) {
            results[i] = Some(
                logits
                    .and_then(|logits| {
                        if logits.dims()[0] == 0 {
                            Ok(Vec::new())
                        } else {
                            HostTensor::from_tensor(logits).map(|host| host.values)
                        }
                    })
                    .map_err(forward_error),
            );
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ForwardError::Failed("no result".into()))))
            .collect()
    }
}
