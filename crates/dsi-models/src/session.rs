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
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dsi_core::TokenId;
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::model::{
    AsyncKvModel, Feed, ForwardError, ForwardResults, KvModel, KvState, Readback, Rows, SeqId,
};
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
/// forward, and which feed each readout belongs to.
struct Launched {
    results: Vec<Option<Result<Rows, ForwardError>>>,
    order: Vec<usize>,
}

/// One fed sequence's rows on the device, not yet read back: its logits,
/// or each row's maximum when the feed asked for no more and a GPU kernel
/// took it there (`dsi_kernels::gpu::argmax_rows`).
enum Readout<B: Backend> {
    Logits(Tensor<B, 2>),
    Argmax(Tensor<B, 1, Int>),
}

type Pending<B> = Vec<crate::Result<Readout<B>>>;

impl<B: Backend> Readout<B> {
    /// What a feed asked for, from its logits: on a GPU backend each row's
    /// maximum is taken on the device; elsewhere the logits are already
    /// where the host reads them, and go back whole.
    fn of(logits: Tensor<B, 2>, readback: Readback) -> Self {
        match readback {
            Readback::Argmax => device_argmax(logits).map_or_else(Readout::Logits, Readout::Argmax),
            Readback::Logits => Readout::Logits(logits),
        }
    }

    fn rows(&self) -> usize {
        match self {
            Readout::Logits(logits) => logits.dims()[0],
            Readout::Argmax(ids) => ids.dims()[0],
        }
    }

    fn read(self) -> crate::Result<Rows> {
        match self {
            _ if self.rows() == 0 => Ok(Rows::Logits(Vec::new())),
            Readout::Logits(logits) => {
                HostTensor::from_tensor(logits).map(|t| Rows::Logits(t.values))
            }
            Readout::Argmax(ids) => ids_of(ids.into_data()),
        }
    }

    async fn read_async(self) -> crate::Result<Rows> {
        match self {
            _ if self.rows() == 0 => Ok(Rows::Logits(Vec::new())),
            Readout::Logits(logits) => HostTensor::from_tensor_async(logits)
                .await
                .map(|t| Rows::Logits(t.values)),
            Readout::Argmax(ids) => ids_of(
                ids.into_data_async()
                    .await
                    .map_err(|e| ModelError::Readback(format!("{e:?}")))?,
            ),
        }
    }
}

/// Token ids read back from the device.
fn ids_of(data: TensorData) -> crate::Result<Rows> {
    let ids = data
        .convert::<i64>()
        .into_vec::<i64>()
        .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
    Ok(Rows::Argmax(
        ids.into_iter().map(|id| id as TokenId).collect(),
    ))
}

/// Each row's first maximum by the GPU kernel, or the logits back when the
/// backend has none.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn device_argmax<B: Backend>(logits: Tensor<B, 2>) -> Result<Tensor<B, 1, Int>, Tensor<B, 2>> {
    dsi_kernels::gpu::argmax_rows(logits.clone()).ok_or(logits)
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn device_argmax<B: Backend>(logits: Tensor<B, 2>) -> Result<Tensor<B, 1, Int>, Tensor<B, 2>> {
    Err(logits)
}

impl Launched {
    /// Every feed's result, given the rows of the fed ones read back in
    /// order.
    fn finish(mut self, read: Vec<crate::Result<Rows>>) -> ForwardResults {
        for (&i, rows) in self.order.iter().zip(read) {
            self.results[i] = Some(rows.map_err(forward_error));
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
        let mut results: Vec<Option<Result<Rows, ForwardError>>> = vec![None; feeds.len()];
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
            .zip(&order)
            .map(|(logits, &i)| {
                logits.map(|l| {
                    let l = if vocab < full {
                        l.narrow(1, 0, vocab)
                    } else {
                        l
                    };
                    Readout::of(l, feeds[i].readback)
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
            .map(|readout| readout.and_then(Readout::read))
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
        for readout in pending {
            read.push(match readout {
                Ok(readout) => readout.read_async().await,
                Err(e) => Err(e),
            });
        }
        launched.finish(read)
    }
}
