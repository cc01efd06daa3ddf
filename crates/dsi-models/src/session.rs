//! A model on one device plus its own KV cache: what one scheduler worker
//! drives, through `dsi-core`'s plain-data [`KvModel`] trait.
//!
//! Workers on one device share the weights (`Arc<LoadedModel>`); each owns
//! its cache.

use crate::llama::LoadedModel;
use crate::{KvCache, ModelError};
use burn::tensor::backend::Backend;
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_core::model::{ForwardError, KvModel};
use std::sync::Arc;

/// Shared weights and a private cache.
#[derive(Debug)]
pub struct Session<B: Backend> {
    model: Arc<LoadedModel<B>>,
    cache: KvCache<B>,
}

impl<B: Backend> Session<B> {
    /// A session whose cache holds up to `capacity` positions (at most the
    /// model's context).
    pub fn new(model: Arc<LoadedModel<B>>, capacity: usize) -> Self {
        let cache = model.new_cache(capacity);
        Self { model, cache }
    }

    /// The shared model.
    pub fn model(&self) -> &LoadedModel<B> {
        &self.model
    }
}

impl<B: Backend> KvModel for Session<B>
where
    LoadedModel<B>: Send + Sync,
    KvCache<B>: Send,
{
    fn fork(&self) -> Option<Box<dyn KvModel>> {
        Some(Box::new(Session::new(
            Arc::clone(&self.model),
            self.cache.capacity(),
        )))
    }

    fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    fn footprint(&self) -> Option<dsi_core::cache_layout::CacheFootprint> {
        Some(self.cache.footprint())
    }

    fn vocab(&self) -> usize {
        self.model.config.vocab_size
    }

    fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    fn cached(&self) -> usize {
        self.cache.len()
    }

    fn truncate(&mut self, keep: usize) {
        self.cache.truncate(keep);
    }

    fn forward(
        &mut self,
        tokens: &[TokenId],
        rows: usize,
        cancel: &CancelFlag,
    ) -> Result<Vec<f32>, ForwardError> {
        match self
            .model
            .forward_host(tokens, &mut self.cache, rows, cancel)
        {
            Ok(logits) => Ok(logits.values),
            Err(ModelError::Cancelled) => Err(ForwardError::Cancelled),
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        }
    }
}
