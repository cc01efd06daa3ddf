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

use crate::isa::Isa;
use crate::matmul::dot;
use crate::parallel;

/// Multiply-adds below which a thread is not worth waking: a decode step's
/// attention over a short context runs on the calling thread.
const MIN_PARALLEL_WORK: usize = 1 << 18;

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
/// scaled by `scale`; returns `[n, heads * dim]`, over `threads` threads,
/// on the process's instruction set ([`Isa::active`]).
pub fn attention(
    queries: Queries<'_>,
    keys: &[Segment<'_>],
    values: &[Segment<'_>],
    shape: Heads,
    scale: f32,
    threads: usize,
) -> Vec<f32> {
    attention_on(Isa::active(), queries, keys, values, shape, scale, threads)
}

/// [`attention`] on a chosen instruction set (one of [`Isa::available`]).
///
/// One task per (position, key/value head): the query heads that share a
/// key/value head read each cached row once, together (grouped-query
/// attention reads the cache `heads / kv_heads` times less). Every head's
/// result is computed the same way however the tasks are cut.
pub fn attention_on(
    isa: Isa,
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
    // A decode step has a task per key/value head, too few to keep every
    // thread busy over a long context: then each query head is a task (the
    // heads of a group read the same rows one after the other, from cache).
    let width = if n * kv_heads >= 2 * threads {
        group
    } else {
        1
    };
    let parts = group / width;
    // `[n, heads, dim]`: a position's heads of one group are contiguous.
    let mut out = vec![0f32; n * heads * dim];
    let task = |index: usize, block: &mut [f32]| {
        let (i, kv, part) = (
            index / (kv_heads * parts),
            index / parts % kv_heads,
            index % parts,
        );
        let first = kv * group + part * width;
        let group = Group {
            q,
            n,
            i,
            heads: first..first + width,
            dim,
        };
        let cache = (keys, values, kv);
        attend(isa, group, prefix + i, cache, scale, block);
    };
    // Multiply-adds of the longest task (the last position's).
    let work = 2 * width * (prefix + n) * dim;
    let tasks = n * kv_heads * parts;
    let threads = if work * tasks < MIN_PARALLEL_WORK {
        1
    } else {
        threads
    };
    let mut blocks: Vec<&mut [f32]> = out.chunks_mut(width * dim).collect();
    parallel::for_each(&mut blocks, threads, |i, block| task(i, block));
    out
}

/// The query heads of one key/value head at one new position.
struct Group<'a> {
    /// All queries, `[heads, n, dim]`.
    q: &'a [f32],
    n: usize,
    /// The position among the new ones.
    i: usize,
    heads: std::ops::Range<usize>,
    dim: usize,
}

impl Group<'_> {
    fn query(&self, g: usize) -> &[f32] {
        let h = self.heads.start + g;
        &self.q[(h * self.n + self.i) * self.dim..][..self.dim]
    }
}

/// The cached keys, values and the key/value head a group reads.
type Cache<'a, 'b> = (&'a [Segment<'b>], &'a [Segment<'b>], usize);

fn attend(
    isa: Isa,
    group: Group<'_>,
    position: usize,
    cache: Cache<'_, '_>,
    scale: f32,
    out: &mut [f32],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: `Isa::Avx2` is only chosen on a CPU with AVX2 and FMA.
            #[allow(unsafe_code)]
            unsafe {
                attend_fused(group, position, cache, scale, out);
            }
        }
        _ => attend_group::<false>(group, position, cache, scale, out),
    }
}

/// [`attend_group`] compiled for AVX2 with fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn attend_fused(
    group: Group<'_>,
    position: usize,
    cache: Cache<'_, '_>,
    scale: f32,
    out: &mut [f32],
) {
    attend_group::<true>(group, position, cache, scale, out);
}

/// The group's queries at `position` against keys `0..=position` of its
/// key/value head, into `out` (`[group, dim]`): scores in the matrix
/// product's fixed lane order, the softmax and the weighted values summed
/// in position order.
#[inline(always)]
fn attend_group<const FUSED: bool>(
    group: Group<'_>,
    position: usize,
    (keys, values, kv): Cache<'_, '_>,
    scale: f32,
    out: &mut [f32],
) {
    let (dim, width) = (group.dim, group.heads.len());
    let visible = position + 1;
    // `[width, visible]`.
    let mut scores = vec![0f32; width * visible];
    let mut j = 0;
    for_each_row(keys, kv, dim, visible, |key| {
        for g in 0..width {
            scores[g * visible + j] = dot::<FUSED>(group.query(g), key) * scale;
        }
        j += 1;
    });
    let mut sums = vec![0f32; width];
    for (row, sum) in scores.chunks_exact_mut(visible).zip(sums.iter_mut()) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            *sum += *s;
        }
    }
    out.fill(0.0);
    let mut j = 0;
    for_each_row(values, kv, dim, visible, |value| {
        for (g, out) in out.chunks_exact_mut(dim).enumerate() {
            let weight = scores[g * visible + j];
            for (o, &v) in out.iter_mut().zip(value) {
                *o = if FUSED {
                    weight.mul_add(v, *o)
                } else {
                    *o + weight * v
                };
            }
        }
        j += 1;
    });
    for (out, sum) in out.chunks_exact_mut(dim).zip(sums.iter()) {
        for o in out {
            *o /= sum;
        }
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
        isa: Isa,
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
        attention_on(
            isa,
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
        for isa in Isa::available() {
            for (sizes, threads) in [(vec![total], 1), (vec![4, 4, 8], 2), (vec![16], 3)] {
                let got = run(isa, &q, n, prefix, &k, &v, total, SHAPE, &sizes, threads);
                for (g, e) in got.iter().zip(&want) {
                    assert!((g - e).abs() < 1e-5, "{isa}, {sizes:?}: {g} vs {e}");
                }
            }
        }
    }

    /// Long enough to split over threads (a decode step's single position
    /// splits its groups into single heads): the same bits as one thread,
    /// and the reference's values.
    #[test]
    fn threads_change_no_bits() {
        let shape = Heads {
            heads: 8,
            kv_heads: 2,
            dim: 64,
        };
        for (prefix, n) in [(200, 6), (900, 1)] {
            let total = prefix + n;
            let q = values(shape.heads * n * shape.dim, 7);
            let k = values(shape.kv_heads * total * shape.dim, 8);
            let v = values(shape.kv_heads * total * shape.dim, 9);
            let want = reference(&q, n, prefix, &k, &v, total, shape, 0.125);
            for isa in Isa::available() {
                let one = run(isa, &q, n, prefix, &k, &v, total, shape, &[64, 1024], 1);
                let two = run(isa, &q, n, prefix, &k, &v, total, shape, &[64, 1024], 2);
                assert_eq!(one, two, "{isa}, {n} new positions");
                for (g, e) in two.iter().zip(&want) {
                    assert!((g - e).abs() < 1e-5, "{isa}: {g} vs {e}");
                }
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
        for isa in Isa::available() {
            let whole = run(
                isa,
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
                    let got = run(
                        isa,
                        &rows(from, n),
                        n,
                        from,
                        &k,
                        &v,
                        total,
                        SHAPE,
                        &[4, 4, 4],
                        1,
                    );
                    assert_eq!(
                        got,
                        whole[from * width..(from + n) * width],
                        "{isa}: chunks of {chunk} at {from}"
                    );
                    from += n;
                }
            }
        }
    }
}
