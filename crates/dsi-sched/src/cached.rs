//! A worker thread's model: `dsi-core`'s KV-cache synchronization
//! ([`KvSync`]: keep the shared prefix, truncate the rest in O(1), feed what
//! is missing) over a [`KvModel`] whose forwards are recorded in a
//! [`ForwardLog`]. The jobs of one call, one per request, go through the
//! model in one forward.
//!
//! `KvSync` is async so that the browser runs the same code over WebGPU;
//! here every forward is ready at once, so each call completes in one poll.

use crate::forwards::ForwardLog;
use crate::roles::{CacheState, Drafter, Job, JobResults, Scored, Scorer};
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::model::{AsyncKvModel, Feed, ForwardResults, KvModel, KvState, Ready, SeqId};
use dsi_core::schedule::Drafted;
use dsi_core::worker::KvSync;
use std::time::Instant;

pub use dsi_core::worker::DEFAULT_PREFILL_CHUNK;

/// A [`KvModel`] plus the tokens each of its caches holds; implements both
/// roles, stepping every job of a call in one forward.
#[derive(Debug)]
pub struct CachedModel<M> {
    sync: KvSync<Logged<M>>,
}

/// A model whose forwards are recorded: sequences, rows and time.
#[derive(Debug)]
struct Logged<M> {
    model: Ready<M>,
    log: ForwardLog,
}

impl<M: KvState> KvState for Logged<M> {
    fn vocab(&self) -> usize {
        self.model.vocab()
    }

    fn capacity(&self) -> usize {
        self.model.capacity()
    }

    fn cached(&self, seq: SeqId) -> usize {
        self.model.cached(seq)
    }

    fn truncate(&mut self, seq: SeqId, keep: usize) {
        self.model.truncate(seq, keep);
    }

    fn release(&mut self, seq: SeqId) {
        self.model.release(seq);
    }

    fn cache_bytes(&self) -> usize {
        self.model.cache_bytes()
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        self.model.footprint()
    }
}

impl<M: KvModel> AsyncKvModel for Logged<M> {
    async fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        let began = Instant::now();
        let results = self.model.forward(feeds).await;
        let rows = feeds.iter().map(|f| f.tokens.len()).sum();
        self.log.record(feeds.len(), rows, began.elapsed());
        results
    }
}

impl<M: KvModel> CachedModel<M> {
    /// Wraps `model`, whose caches start empty.
    pub fn new(model: M) -> Self {
        Self {
            sync: KvSync::new(Logged {
                model: Ready(model),
                log: ForwardLog::default(),
            }),
        }
    }

    /// Fills a cache by forwards of at most `chunk` tokens (at least 1), so
    /// a long prompt neither holds its worker for one long forward while
    /// other requests wait nor needs the activations of the whole prompt.
    pub fn with_prefill_chunk(mut self, chunk: usize) -> Self {
        self.sync = self.sync.with_prefill_chunk(chunk);
        self
    }

    /// The tokens `request`'s cache holds.
    pub fn held(&self, request: SeqId) -> &[dsi_core::TokenId] {
        self.sync.held(request)
    }

    /// The wrapped model.
    pub fn model(&self) -> &M {
        &self.sync.model().model.0
    }
}

impl<M: KvModel> CacheState for CachedModel<M> {
    fn release(&mut self, request: SeqId) {
        self.sync.release(request);
    }

    fn reset(&mut self) {
        self.sync.reset();
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        self.sync.model().footprint()
    }

    fn cache_bytes(&self) -> usize {
        self.sync.model().cache_bytes()
    }

    fn forward_log(&self) -> Option<ForwardLog> {
        Some(self.sync.model().log.clone())
    }

    fn next_feed(&self, job: &Job<'_>, rows: usize) -> usize {
        self.sync.next_feed(job, rows)
    }
}

impl<M: KvModel> Drafter for CachedModel<M> {
    fn draft(&mut self, jobs: &[Job<'_>]) -> JobResults<Vec<Drafted>> {
        pollster::block_on(self.sync.draft(jobs))
    }
}

impl<M: KvModel> Scorer for CachedModel<M> {
    fn score(&mut self, jobs: &[Job<'_>]) -> JobResults<Scored> {
        pollster::block_on(self.sync.score(jobs))
    }
}
