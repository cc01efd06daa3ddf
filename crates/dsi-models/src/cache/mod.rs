//! The KV cache: keys and values of every layer in segments that grow with
//! the positions held, with O(1) rollback.
//!
//! Speculation rolls back all the time (a rejected draft's keys must go), so
//! `truncate` moves the length and drops the whole segments past it; stale
//! entries inside a kept segment are overwritten by the next forward. Memory
//! follows the positions held ([`dsi_core::cache_layout`]): nothing is allocated for the
//! context a cache may reach. The cache belongs to the caller (a worker, a
//! request), never to the model, so one set of weights serves many
//! sequences.

use crate::transformer::host::assign_rows;
use crate::{ModelError, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
pub use dsi_core::cache_layout::{CacheFootprint, SegmentPolicy};

/// Keys and values of one layer in one segment, `[kv_heads, size, head_dim]`.
#[derive(Debug, Clone)]
struct SegmentKv<B: Backend> {
    keys: Tensor<B, 3>,
    values: Tensor<B, 3>,
}

/// The cached keys and values of one layer that a forward attends to: one
/// entry per segment, each `[kv_heads, positions, head_dim]`, in order.
#[derive(Debug, Clone)]
pub struct VisibleKv<B: Backend> {
    /// Keys and values per segment.
    pub segments: Vec<(Tensor<B, 3>, Tensor<B, 3>)>,
}

/// A per-sequence KV cache that grows by segments up to `capacity`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// `[layer][segment]`; `None` only while an entry is being written.
    layers: Vec<Vec<Option<SegmentKv<B>>>>,
    /// Start position of each allocated segment (their sizes follow).
    starts: Vec<usize>,
    allocated: usize,
    len: usize,
    capacity: usize,
    shape: CacheShape,
    policy: SegmentPolicy,
    device: B::Device,
    dtype: DType,
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

impl CacheShape {
    /// Bytes the keys and values of one position take over all layers.
    pub fn bytes_per_position(&self, dtype: DType) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype.size()
    }
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for up to `capacity` positions on `device` in `dtype`,
    /// with the default [`SegmentPolicy`] for its shape. Allocates nothing.
    pub fn new(shape: CacheShape, capacity: usize, device: &B::Device, dtype: DType) -> Self {
        let policy = SegmentPolicy::for_position_bytes(shape.bytes_per_position(dtype));
        Self::with_policy(shape, capacity, device, dtype, policy)
    }

    /// [`KvCache::new`] with explicit segment sizes.
    pub fn with_policy(
        shape: CacheShape,
        capacity: usize,
        device: &B::Device,
        dtype: DType,
        policy: SegmentPolicy,
    ) -> Self {
        Self {
            layers: (0..shape.num_layers).map(|_| Vec::new()).collect(),
            starts: Vec::new(),
            allocated: 0,
            len: 0,
            capacity,
            shape,
            policy,
            device: device.clone(),
            dtype,
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

    /// Bytes the allocated segments take now.
    pub fn bytes(&self) -> usize {
        self.bytes_for_allocated(self.allocated)
    }

    /// Bytes a cache of this shape allocates to hold `positions`.
    pub fn bytes_for(&self, positions: usize) -> usize {
        self.footprint().bytes_for(positions)
    }

    /// How this cache grows, as plain data.
    pub fn footprint(&self) -> CacheFootprint {
        CacheFootprint {
            bytes_per_position: self.shape.bytes_per_position(self.dtype),
            policy: self.policy,
            capacity: self.capacity,
        }
    }

    fn bytes_for_allocated(&self, positions: usize) -> usize {
        positions * self.shape.bytes_per_position(self.dtype)
    }

    /// Number of allocated segments.
    pub fn segments(&self) -> usize {
        self.starts.len()
    }

    /// Positions still free.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Keeps the first `keep` positions and frees the segments wholly past
    /// them. O(1) in the positions dropped: no data moves. A `keep` beyond
    /// the current length changes nothing.
    pub fn truncate(&mut self, keep: usize) {
        self.len = self.len.min(keep);
        self.free_past(self.len);
    }

    /// Frees the segments that start at or past `end`.
    fn free_past(&mut self, end: usize) {
        let kept = self.starts.partition_point(|&start| start < end);
        if kept < self.starts.len() {
            self.allocated = self.starts[kept];
            self.starts.truncate(kept);
            for layer in &mut self.layers {
                layer.truncate(kept);
            }
        }
    }

    /// Checks that `needed` more positions fit and allocates the segments
    /// they need. A refused call changes nothing.
    pub(crate) fn reserve(&mut self, needed: usize) -> Result<()> {
        if needed > self.remaining() {
            return Err(ModelError::CacheFull {
                len: self.len,
                needed,
                capacity: self.capacity,
            });
        }
        let end = self.len + needed;
        while self.allocated < end {
            let size = self.policy.next_size(self.allocated, self.capacity);
            let dims = [self.shape.num_kv_heads, size, self.shape.head_dim];
            for layer in &mut self.layers {
                layer.push(Some(SegmentKv {
                    keys: Tensor::zeros(dims, (&self.device, self.dtype)),
                    values: Tensor::zeros(dims, (&self.device, self.dtype)),
                }));
            }
            self.starts.push(self.allocated);
            self.allocated += size;
        }
        Ok(())
    }

    /// Frees segments a stopped forward allocated past the cached length.
    pub(crate) fn release_unused(&mut self) {
        self.free_past(self.len);
    }

    /// Writes the `n` new keys and values of `layer` after the cached prefix
    /// (their segments allocated by [`reserve`](KvCache::reserve)) and
    /// returns the keys and values of the whole sequence so far, per
    /// segment. The length moves on in [`commit`](KvCache::commit).
    pub(crate) fn append(
        &mut self,
        layer: usize,
        keys: Tensor<B, 3>,
        values: Tensor<B, 3>,
    ) -> VisibleKv<B> {
        let [heads, n, head_dim] = keys.dims();
        let (start, end) = (self.len, self.len + n);
        let mut visible = Vec::with_capacity(self.starts.len());
        for (segment, &seg_start) in self.starts.iter().enumerate() {
            if seg_start >= end {
                break;
            }
            let seg_end = self
                .starts
                .get(segment + 1)
                .copied()
                .unwrap_or(self.allocated);
            // Taking the tensors out keeps their buffers unique, so the
            // backend writes in place instead of copying the segment.
            let mut entry = self.layers[layer][segment]
                .take()
                .expect("segment present outside append");
            let (from, to) = (start.max(seg_start), end.min(seg_end));
            if from < to {
                let local = from - seg_start..to - seg_start;
                let piece = from - start..to - start;
                let range = |t: &Tensor<B, 3>| t.clone().narrow(1, piece.start, piece.len());
                let write = |dest: Tensor<B, 3>, rows: Tensor<B, 3>| {
                    assign_rows(dest, local.start, &rows).unwrap_or_else(|dest| {
                        dest.slice_assign([0..heads, local.clone(), 0..head_dim], rows)
                    })
                };
                entry.keys = write(entry.keys, range(&keys));
                entry.values = write(entry.values, range(&values));
            }
            let used = end.min(seg_end) - seg_start;
            visible.push((
                entry.keys.clone().narrow(1, 0, used),
                entry.values.clone().narrow(1, 0, used),
            ));
            self.layers[layer][segment] = Some(entry);
        }
        VisibleKv { segments: visible }
    }

    /// Marks `n` positions written by every layer as cached.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;
    const SHAPE: CacheShape = CacheShape {
        num_layers: 2,
        num_kv_heads: 1,
        head_dim: 2,
    };

    fn cache(capacity: usize) -> KvCache<B> {
        KvCache::with_policy(
            SHAPE,
            capacity,
            &Default::default(),
            DType::F32,
            SegmentPolicy { first: 4, max: 8 },
        )
    }

    fn feed(cache: &mut KvCache<B>, n: usize) -> Vec<usize> {
        cache.reserve(n).expect("fits");
        let device = Default::default();
        let mut lens = Vec::new();
        for layer in 0..SHAPE.num_layers {
            let kv = Tensor::<B, 3>::ones([1, n, 2], &device);
            let visible = cache.append(layer, kv.clone(), kv);
            lens = visible.segments.iter().map(|(k, _)| k.dims()[1]).collect();
        }
        cache.commit(n);
        lens
    }

    #[test]
    fn memory_grows_with_positions_and_shrinks_on_truncate() {
        let per_position = SHAPE.bytes_per_position(DType::F32);
        let mut cache = cache(100);
        assert_eq!(cache.bytes(), 0, "an empty cache allocates nothing");
        assert_eq!(feed(&mut cache, 3), [3]);
        assert_eq!(cache.bytes(), 4 * per_position);
        assert_eq!(feed(&mut cache, 6), [4, 4, 1]);
        assert_eq!(cache.bytes(), 16 * per_position);
        assert_eq!(cache.bytes_for(9), cache.bytes());
        cache.truncate(5);
        assert_eq!((cache.len(), cache.segments()), (5, 2));
        assert_eq!(cache.bytes(), 8 * per_position);
        assert_eq!(feed(&mut cache, 1), [4, 2]);
        cache.truncate(0);
        assert_eq!(cache.bytes(), 0, "truncating to nothing frees everything");
    }

    #[test]
    fn a_refused_reservation_allocates_nothing() {
        let mut cache = cache(6);
        feed(&mut cache, 5);
        let before = cache.bytes();
        assert!(cache.reserve(2).is_err());
        assert_eq!(cache.bytes(), before);
        assert_eq!(
            feed(&mut cache, 1),
            [4, 2],
            "the last segment stops at capacity"
        );
    }

    /// On the `cpu` backend a forward writes its keys and values into the
    /// segment's buffer (burn-flex's `slice_assign` would copy the whole
    /// segment every time), and they read back as written.
    #[test]
    fn the_cpu_backend_appends_in_place() {
        type F = burn::backend::Flex;
        let shape = CacheShape {
            num_layers: 1,
            num_kv_heads: 3,
            head_dim: 4,
        };
        let policy = SegmentPolicy { first: 64, max: 64 };
        let mut cache =
            KvCache::<F>::with_policy(shape, 64, &Default::default(), DType::F32, policy);
        let buffer = |cache: &KvCache<F>| -> usize {
            let entry = cache.layers[0][0].as_ref().expect("segment");
            let keys = entry.keys.clone().into_primitive().tensor();
            keys.storage::<f32>().as_ptr() as usize
        };
        let mut first = None;
        for step in 0..10 {
            cache.reserve(2).expect("fits");
            let rows: Vec<f32> = (0..3 * 2 * 4).map(|i| (step * 100 + i) as f32).collect();
            let rows = Tensor::<F, 3>::from_data(
                burn::tensor::TensorData::new(rows, [3, 2, 4]),
                &Default::default(),
            );
            let visible = cache.append(0, rows.clone(), rows.clone());
            let (keys, _) = &visible.segments[0];
            let written = keys.clone().narrow(1, 2 * step, 2);
            assert_eq!(
                written.into_data().to_vec::<f32>().expect("f32"),
                rows.into_data().to_vec::<f32>().expect("f32")
            );
            drop(visible);
            cache.commit(2);
            let now = buffer(&cache);
            assert_eq!(
                *first.get_or_insert(now),
                now,
                "step {step} moved the segment"
            );
        }
    }
}
