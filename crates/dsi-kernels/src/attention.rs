//! Causal grouped-query attention of one sequence's new positions over its
//! cached keys and values, each query reduced in one fixed order.
//!
//! A query at absolute position `p` sees keys `0..=p`, whatever else is in
//! the forward: its scores are fixed-order dot products, the softmax sums
//! them in position order, and the weighted values accumulate in position
//! order. So its output is the same bits whether its sequence was fed token
//! by token, `k + 1` at a time, or as a whole prompt (a backend's product
//! over a chunk reduces over the masked positions too, in an order that
//! depends on the chunk's length).

use crate::matmul::dot_portable;
use rayon::prelude::*;

/// Keys or values of one cache segment, `[kv_heads, size, head_dim]`
/// row-major in `data`, of which the first `len` positions are valid.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// The segment's storage from its first element.
    pub data: &'a [f32],
    /// Positions the segment has room for (the stride between heads).
    pub size: usize,
    /// Positions written.
    pub len: usize,
}

/// What the kernel needs to know about the heads.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; query head `h` reads key/value head `h / (heads / kv_heads)`.
    pub kv_heads: usize,
    /// Width of one head.
    pub dim: usize,
}

/// The new positions of one sequence.
#[derive(Debug, Clone, Copy)]
pub struct Queries<'a> {
    /// Rotated queries, `[heads, n, dim]`.
    pub q: &'a [f32],
    /// Positions.
    pub n: usize,
    /// Absolute position of the first (what the cache held before).
    pub prefix: usize,
}

/// Attention of `queries` over the keys and values in `keys` / `values`
/// (segments in position order, holding at least `prefix + n` positions),
/// scaled by `scale`; returns `[n, heads * dim]`, over `threads` threads.
///
/// The products here take the portable path on every machine (no fused
/// multiply-add): attention is a small share of a forward's arithmetic.
pub fn attention(
    queries: Queries<'_>,
    keys: &[Segment<'_>],
    values: &[Segment<'_>],
    shape: Heads,
    scale: f32,
    threads: usize,
) -> Vec<f32> {
    let Queries { q, n, prefix } = queries;
    let Heads {
        heads,
        kv_heads,
        dim,
    } = shape;
    assert_eq!(q.len(), heads * n * dim, "q must be [heads, n, dim]");
    let group = heads / kv_heads;
    let mut out = vec![0f32; n * heads * dim];
    // One task per (position, head): each writes its own `dim` outputs.
    let work = |(index, row): (usize, &mut [f32])| {
        let (i, h) = (index / heads, index % heads);
        let kv = h / group;
        let query = &q[(h * n + i) * dim..(h * n + i + 1) * dim];
        attend_one(query, prefix + i, (keys, values, kv), scale, row);
    };
    if threads <= 1 || n * heads < 2 {
        out.chunks_mut(dim).enumerate().for_each(work);
    } else {
        out.par_chunks_mut(dim).enumerate().for_each(work);
    }
    out
}

/// One query at `position` against keys `0..=position` of key/value head
/// `kv`.
fn attend_one(
    query: &[f32],
    position: usize,
    (keys, values, kv): (&[Segment<'_>], &[Segment<'_>], usize),
    scale: f32,
    out: &mut [f32],
) {
    let dim = query.len();
    let visible = position + 1;
    let mut scores = Vec::with_capacity(visible);
    for_each_row(keys, kv, dim, visible, |key| {
        scores.push(dot_portable(query, key) * scale)
    });
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in &mut scores {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    let mut j = 0;
    for_each_row(values, kv, dim, visible, |value| {
        let weight = scores[j];
        for (o, &v) in out.iter_mut().zip(value) {
            *o += weight * v;
        }
        j += 1;
    });
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// Calls `f` on the rows of head `kv` at positions `0..count`, in order.
fn for_each_row(
    segments: &[Segment<'_>],
    kv: usize,
    dim: usize,
    count: usize,
    mut f: impl FnMut(&[f32]),
) {
    let mut left = count;
    for segment in segments {
        if left == 0 {
            break;
        }
        let rows = segment.len.min(left);
        let head = &segment.data[kv * segment.size * dim..];
        for row in head[..rows * dim].chunks_exact(dim) {
            f(row);
        }
        left -= rows;
    }
    assert_eq!(
        left, 0,
        "the segments hold fewer positions than the queries see"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    /// The plain reference: the textbook formula over one contiguous
    /// `[kv_heads, total, dim]` cache, in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        n: usize,
        prefix: usize,
        k: &[f32],
        v: &[f32],
        total: usize,
        shape: Heads,
        scale: f32,
    ) -> Vec<f32> {
        let Heads {
            heads,
            kv_heads,
            dim,
        } = shape;
        let group = heads / kv_heads;
        let mut out = vec![0f32; n * heads * dim];
        for i in 0..n {
            for h in 0..heads {
                let kv = h / group;
                let query = &q[(h * n + i) * dim..][..dim];
                let visible = prefix + i + 1;
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let key = &k[(kv * total + j) * dim..][..dim];
                        query
                            .iter()
                            .zip(key)
                            .map(|(a, b)| f64::from(*a) * f64::from(*b))
                            .sum::<f64>()
                            * f64::from(scale)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for x in 0..dim {
                    let value: f64 = (0..visible)
                        .map(|j| weights[j] * f64::from(v[(kv * total + j) * dim + x]))
                        .sum();
                    out[(i * heads + h) * dim + x] = (value / sum) as f32;
                }
            }
        }
        out
    }

    /// `[kv_heads, total, dim]` split into segments of `sizes` (room) with
    /// the positions copied in.
    fn segmented(
        whole: &[f32],
        shape: Heads,
        total: usize,
        sizes: &[usize],
    ) -> Vec<(Vec<f32>, usize, usize)> {
        let mut start = 0;
        sizes
            .iter()
            .map(|&size| {
                let len = size.min(total - start);
                let mut data = vec![0f32; shape.kv_heads * size * shape.dim];
                for kv in 0..shape.kv_heads {
                    for j in 0..len {
                        let from = (kv * total + start + j) * shape.dim;
                        let to = (kv * size + j) * shape.dim;
                        data[to..to + shape.dim].copy_from_slice(&whole[from..from + shape.dim]);
                    }
                }
                start += len;
                (data, size, len)
            })
            .collect()
    }

    fn view(s: &[(Vec<f32>, usize, usize)]) -> Vec<Segment<'_>> {
        s.iter()
            .map(|(data, size, len)| Segment {
                data,
                size: *size,
                len: *len,
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        q: &[f32],
        n: usize,
        prefix: usize,
        k: &[f32],
        v: &[f32],
        total: usize,
        shape: Heads,
        sizes: &[usize],
        threads: usize,
    ) -> Vec<f32> {
        let (ks, vs) = (
            segmented(k, shape, total, sizes),
            segmented(v, shape, total, sizes),
        );
        attention(
            Queries { q, n, prefix },
            &view(&ks),
            &view(&vs),
            shape,
            0.125,
            threads,
        )
    }

    const SHAPE: Heads = Heads {
        heads: 4,
        kv_heads: 2,
        dim: 20,
    };

    #[test]
    fn agrees_with_the_plain_reference_over_segments() {
        let (prefix, n) = (9, 5);
        let total = prefix + n;
        let q = values(SHAPE.heads * n * SHAPE.dim, 1);
        let k = values(SHAPE.kv_heads * total * SHAPE.dim, 2);
        let v = values(SHAPE.kv_heads * total * SHAPE.dim, 3);
        let want = reference(&q, n, prefix, &k, &v, total, SHAPE, 0.125);
        for (sizes, threads) in [(vec![total], 1), (vec![4, 4, 8], 2), (vec![16], 3)] {
            let got = run(&q, n, prefix, &k, &v, total, SHAPE, &sizes, threads);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() < 1e-5, "{sizes:?}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn a_position_is_the_same_bits_however_its_sequence_was_chunked() {
        let total = 12;
        let k = values(SHAPE.kv_heads * total * SHAPE.dim, 4);
        let v = values(SHAPE.kv_heads * total * SHAPE.dim, 5);
        // Queries of all 12 positions, [heads, 12, dim].
        let all = values(SHAPE.heads * total * SHAPE.dim, 6);
        let rows = |from: usize, n: usize| -> Vec<f32> {
            (0..SHAPE.heads)
                .flat_map(|h| {
                    all[(h * total + from) * SHAPE.dim..(h * total + from + n) * SHAPE.dim].to_vec()
                })
                .collect()
        };
        let whole = run(
            &rows(0, total),
            total,
            0,
            &k,
            &v,
            total,
            SHAPE,
            &[4, 4, 4],
            2,
        );
        let width = SHAPE.heads * SHAPE.dim;
        for chunk in [1, 3, 5] {
            let mut from = 0;
            while from < total {
                let n = chunk.min(total - from);
                let got = run(&rows(from, n), n, from, &k, &v, total, SHAPE, &[4, 4, 4], 1);
                assert_eq!(
                    got,
                    whole[from * width..(from + n) * width],
                    "chunks of {chunk} at {from}"
                );
                from += n;
            }
        }
    }
}
