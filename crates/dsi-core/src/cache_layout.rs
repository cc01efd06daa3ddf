//! Where a cache's positions live: contiguous segments that double in size.
//!
//! A cache grows by whole segments as positions are appended, so its memory
//! follows what it holds, never the context it may reach. The first segment
//! holds about [`FIRST_SEGMENT_BYTES`] of keys and values; each next one is
//! as large as all before it (so at most half of a cache is unused and a
//! sequence of length `L` has `O(log L)` segments), up to
//! [`MAX_SEGMENT_BYTES`]. Attention runs one product per segment, so few
//! segments keep it as fast as over one contiguous tensor.
//!
//! Segment boundaries depend only on absolute positions, never on how the
//! sequence was fed, so a position's logits do not depend on chunking.
//!
//! The layout is plain data so that a scheduler can budget caches (see
//! [`CacheFootprint`]) without knowing the tensors behind them.

/// Bytes of keys and values the first segment holds (all layers).
pub const FIRST_SEGMENT_BYTES: usize = 4 << 20;
/// Bytes past which segments stop doubling.
pub const MAX_SEGMENT_BYTES: usize = 256 << 20;

/// Segment sizes, in positions, for one cache shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentPolicy {
    /// Positions of the first segment.
    pub first: usize,
    /// Positions of the largest segment.
    pub max: usize,
}

impl SegmentPolicy {
    /// The policy for caches whose positions take `bytes_per_position`.
    pub fn for_position_bytes(bytes_per_position: usize) -> Self {
        let positions = |bytes: usize| bytes / bytes_per_position.max(1);
        let first = positions(FIRST_SEGMENT_BYTES)
            .clamp(16, 1024)
            .next_multiple_of(16);
        let max = positions(MAX_SEGMENT_BYTES).clamp(first, 16384);
        Self { first, max }
    }

    /// Segments of `size` positions each: one that fits every position.
    pub fn fixed(size: usize) -> Self {
        let size = size.max(1);
        Self {
            first: size,
            max: size,
        }
    }

    /// The size of the segment that starts at `start` (all before it sum to
    /// `start`), cut to `capacity`.
    pub fn next_size(&self, start: usize, capacity: usize) -> usize {
        let doubled = if start == 0 { self.first } else { start };
        doubled.clamp(self.first, self.max).min(capacity - start)
    }

    /// Positions a cache allocates to hold `positions` (whole segments).
    pub fn allocated(&self, positions: usize, capacity: usize) -> usize {
        let positions = positions.min(capacity);
        let mut end = 0;
        while end < positions {
            end += self.next_size(end, capacity);
        }
        end
    }
}

/// How one model instance's cache grows: what a memory budget needs to know
/// to bound it before it grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheFootprint {
    /// Bytes of keys and values one position takes over all layers.
    pub bytes_per_position: usize,
    /// Segment sizes.
    pub policy: SegmentPolicy,
    /// Positions the cache can hold at most.
    pub capacity: usize,
}

impl CacheFootprint {
    /// Bytes the cache allocates to hold `positions` (whole segments).
    pub fn bytes_for(&self, positions: usize) -> usize {
        self.policy.allocated(positions, self.capacity) * self.bytes_per_position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_double_up_to_the_cap_and_stop_at_capacity() {
        let policy = SegmentPolicy { first: 16, max: 64 };
        let mut starts = vec![0];
        while let Some(&start) = starts.last().filter(|&&s| s < 300) {
            starts.push(start + policy.next_size(start, 300));
        }
        assert_eq!(starts, [0, 16, 32, 64, 128, 192, 256, 300]);
        assert_eq!(policy.allocated(0, 300), 0);
        assert_eq!(policy.allocated(1, 300), 16);
        assert_eq!(policy.allocated(33, 300), 64);
        assert_eq!(policy.allocated(1000, 300), 300);
        let footprint = CacheFootprint {
            bytes_per_position: 10,
            policy,
            capacity: 300,
        };
        assert_eq!(footprint.bytes_for(33), 640);
    }

    #[test]
    fn the_policy_follows_the_bytes_of_a_position() {
        // Llama-3.2-1B in f32: 16 layers x 8 kv heads x 64 x 2 x 4 bytes.
        let policy = SegmentPolicy::for_position_bytes(16 * 8 * 64 * 2 * 4);
        assert_eq!(
            policy,
            SegmentPolicy {
                first: 64,
                max: 4096
            }
        );
        // A tiny model: segments start at the 1024-position ceiling.
        assert_eq!(SegmentPolicy::for_position_bytes(64).first, 1024);
    }
}
