//! Plain autoregressive decoding (non-SI) with one model and one cache.
//!
//! [`Decoder`] is step-wise so callers can stream, time, and stop at will; it
//! never reads a clock or prints.

use crate::sampling::SamplingParams;
use crate::transformer::LoadedModel;
use crate::{KvCache, ModelError, Result};
use burn::tensor::backend::Backend;
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;

/// Decodes one sequence token by token.
pub struct Decoder<'m, B: Backend> {
    model: &'m LoadedModel<B>,
    cache: KvCache<B>,
    sampling: SamplingParams,
}

impl<'m, B: Backend> Decoder<'m, B> {
    /// A decoder whose cache holds up to `capacity` positions.
    pub fn new(
        model: &'m LoadedModel<B>,
        capacity: usize,
        sampling: SamplingParams,
    ) -> Result<Self> {
        sampling.validate()?;
        Ok(Self {
            cache: model.new_cache(capacity),
            model,
            sampling,
        })
    }

    /// Feeds the prompt and returns the first new token.
    pub fn prefill(&mut self, prompt: &[TokenId]) -> Result<TokenId> {
        if prompt.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        self.cache.truncate(0);
        self.feed(prompt)
    }

    /// Feeds the last emitted token and returns the next one.
    pub fn step(&mut self, last: TokenId) -> Result<TokenId> {
        self.feed(&[last])
    }

    /// Positions in the cache.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True before the prompt is fed.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Positions still free in the cache.
    pub fn remaining(&self) -> usize {
        self.cache.remaining()
    }

    fn feed(&mut self, tokens: &[TokenId]) -> Result<TokenId> {
        let logits = self
            .model
            .forward_host(tokens, &mut self.cache, 1, &CancelFlag::new())?;
        Ok(self.sampling.next_token(self.cache.len(), logits.row(0)))
    }
}
