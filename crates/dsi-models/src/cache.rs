//! The KV cache: preallocated keys and values of every layer, with O(1)
//! rollback.
//!
//! Speculation rolls back all the time (a rejected draft's keys must go), so
//! `truncate` only moves the length; stale entries past it are overwritten by
//! the next forward. The cache belongs to the caller (a worker, a request),
//! never to the model, so one set of weights can serve many sequences.

use crate::{ModelError, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// Keys and values of one layer, `[kv_heads, capacity, head_dim]` each.
#[derive(Debug, Clone)]
struct LayerKv<B: Backend> {
    keys: Tensor<B, 3>,
    values: Tensor<B, 3>,
}

/// A per-sequence KV cache of fixed capacity.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// `None` only while a layer's entry is being updated in place.
    layers: Vec<Option<LayerKv<B>>>,
    len: usize,
    capacity: usize,
}

/// The shape of a cache, taken from a model's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    /// Decoder layers.
    pub num_layers: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl<B: Backend> KvCache<B> {
    /// A zeroed cache for `capacity` positions on `device` in `dtype`.
    pub fn new(shape: CacheShape, capacity: usize, device: &B::Device, dtype: DType) -> Self {
        let dims = [shape.num_kv_heads, capacity, shape.head_dim];
        let layers = (0..shape.num_layers)
            .map(|_| {
                Some(LayerKv {
                    keys: Tensor::zeros(dims, (device, dtype)),
                    values: Tensor::zeros(dims, (device, dtype)),
                })
            })
            .collect();
        Self {
            layers,
            len: 0,
            capacity,
        }
    }

    /// Positions currently cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the keys and values take at capacity.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|kv| {
                let size = kv.keys.dtype().size();
                (kv.keys.shape().num_elements() + kv.values.shape().num_elements()) * size
            })
            .sum()
    }

    /// Positions still free.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Keeps the first `keep` positions, in O(1). A `keep` beyond the current
    /// length changes nothing.
    pub fn truncate(&mut self, keep: usize) {
        self.len = self.len.min(keep);
    }

    /// Checks that `needed` more positions fit.
    pub(crate) fn reserve(&self, needed: usize) -> Result<()> {
        if needed > self.remaining() {
            return Err(ModelError::CacheFull {
                len: self.len,
                needed,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Writes the `n` new keys and values of `layer` after the cached prefix
    /// and returns keys and values of the whole sequence so far,
    /// `[kv_heads, len + n, head_dim]`. The length moves on in [`commit`].
    ///
    /// [`commit`]: KvCache::commit
    pub(crate) fn append(
        &mut self,
        layer: usize,
        keys: Tensor<B, 3>,
        values: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [heads, n, head_dim] = keys.dims();
        let (start, end) = (self.len, self.len + n);
        // Taking the tensors out keeps their buffers unique, so the backend
        // writes in place instead of copying the whole cache.
        let entry = self.layers[layer]
            .take()
            .expect("layer cache present outside append");
        let keys_all = entry
            .keys
            .slice_assign([0..heads, start..end, 0..head_dim], keys);
        let values_all = entry
            .values
            .slice_assign([0..heads, start..end, 0..head_dim], values);
        let visible = (
            keys_all.clone().narrow(1, 0, end),
            values_all.clone().narrow(1, 0, end),
        );
        self.layers[layer] = Some(LayerKv {
            keys: keys_all,
            values: values_all,
        });
        visible
    }

    /// Marks `n` positions written by every layer as cached.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }
}
