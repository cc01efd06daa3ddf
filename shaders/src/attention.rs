//! Causal grouped-query attention of one sequence's new positions over its
//! cached keys and values, each query reduced in one fixed order.
//!
//! A query at absolute position `p` sees keys `0..=p` (the last `window`
//! of them with sliding-window attention), whatever else is in the forward: its scores are fixed-order dot products, the softmax sums
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
    /// Sliding-window attention (Mistral, Phi-3): a query sees only the
    /// last `window` keys, itself included. `None`: every earlier key.
    pub window: Option<usize>,
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
/// The query heads that share a key/value head read each cached row once,
/// together (grouped-query attention reads the cache `heads / kv_heads`
/// times less). Keys are taken in blocks of [`KEY_BLOCK`] absolute
/// positions: each block's softmax is summed on its own and the blocks are
/// then combined in order (the rescaling of flash attention), so a
/// decode step over a long context splits its blocks over the threads and
/// a prefill runs them one after another, with the same bits.
pub fn attention_on(
    isa: Isa,
    queries: Queries<'_>,
    keys: &[Segment<'_>],
    values: &[Segment<'_>],
    shape: Heads,
    scale: f32,
    threads: usize,
) -> Vec<f32> {
    let Queries {
        q,
        n,
        prefix,
        window,
    } = queries;
    let seen = |i: usize| Seen::of(prefix + i, window);
    let Heads {
        heads,
        kv_heads,
        dim,
    } = shape;
    assert_eq!(q.len(), heads * n * dim, "q must be [heads, n, dim]");
    let group = heads / kv_heads;
    let cache = (keys, values);
    let at = |index: usize| Group {
        q,
        n,
        i: index / kv_heads,
        kv: index % kv_heads,
        heads: (index % kv_heads) * group..(index % kv_heads + 1) * group,
        dim,
    };
    // `[n, heads, dim]`: a position's heads of one group are contiguous.
    let mut out = vec![0f32; n * heads * dim];
    let tasks = n * kv_heads;
    // Multiply-adds of the longest task (the last position's).
    let work = 2 * group * (prefix + n) * dim;
    let threads = if work * tasks < MIN_PARALLEL_WORK {
        1
    } else {
        threads
    };
    if tasks >= 2 * threads {
        // Enough (position, key/value head) tasks: each takes its blocks
        // in turn.
        let mut blocks: Vec<&mut [f32]> = out.chunks_mut(group * dim).collect();
        parallel::for_each(&mut blocks, threads, |index, block| {
            let group = at(index);
            let seen = seen(group.i);
            let parts: Vec<Partial> = seen
                .blocks()
                .map(|b| partial(isa, &group, seen.block(b), cache, scale))
                .collect();
            combine(isa, &parts, dim, block);
        });
        return out;
    }
    // A decode step: too few tasks for the threads, so the key blocks are
    // the tasks, combined afterwards in the same order.
    let jobs: Vec<(usize, usize)> = (0..tasks)
        .flat_map(|index| seen(index / kv_heads).blocks().map(move |b| (index, b)))
        .collect();
    let mut parts: Vec<Partial> = jobs.iter().map(|_| Partial::default()).collect();
    parallel::for_each(&mut parts, threads, |j, part| {
        let (index, b) = jobs[j];
        let group = at(index);
        *part = partial(isa, &group, seen(group.i).block(b), cache, scale);
    });
    let mut parts = parts.as_slice();
    for (index, block) in out.chunks_mut(group * dim).enumerate() {
        let (mine, rest) = parts.split_at(seen(index / kv_heads).blocks().len());
        combine(isa, mine, dim, block);
        parts = rest;
    }
    out
}

/// Key positions per block of the softmax: blocks start at multiples of
/// it, whatever the chunking, so every query sums the same blocks.
const KEY_BLOCK: usize = 256;

/// Cached rows a group's heads take in turn (8 KiB at 64 dimensions).
const ROWS_IN_L1: usize = 32;

/// The keys one query sees: `first..end`.
struct Seen {
    first: usize,
    end: usize,
}

impl Seen {
    /// What the query at absolute position `position` sees.
    fn of(position: usize, window: Option<usize>) -> Self {
        let end = position + 1;
        Self {
            first: window.map_or(0, |w| end.saturating_sub(w)),
            end,
        }
    }

    /// The key blocks it touches.
    fn blocks(&self) -> std::ops::Range<usize> {
        self.first / KEY_BLOCK..self.end.div_ceil(KEY_BLOCK)
    }

    /// Its keys within block `b`.
    fn block(&self, b: usize) -> std::ops::Range<usize> {
        (b * KEY_BLOCK).max(self.first)..((b + 1) * KEY_BLOCK).min(self.end)
    }
}

/// The query heads of one key/value head at one new position.
struct Group<'a> {
    /// All queries, `[heads, n, dim]`.
    q: &'a [f32],
    n: usize,
    /// The position among the new ones.
    i: usize,
    /// The key/value head.
    kv: usize,
    heads: std::ops::Range<usize>,
    dim: usize,
}

impl Group<'_> {
    fn query(&self, g: usize) -> &[f32] {
        let h = self.heads.start + g;
        &self.q[(h * self.n + self.i) * self.dim..][..self.dim]
    }
}

/// The cached keys and values.
type Cache<'a, 'b> = (&'a [Segment<'b>], &'a [Segment<'b>]);

/// A group's softmax over one key block, before normalization: per head
/// the block's largest score, the sum of `exp(score - max)` and the values
/// weighted by those (`[heads, dim]`).
#[derive(Debug, Default)]
struct Partial {
    max: Vec<f32>,
    sum: Vec<f32>,
    out: Vec<f32>,
}

/// [`partial_of`] on `isa`.
fn partial(
    isa: Isa,
    group: &Group<'_>,
    keys: std::ops::Range<usize>,
    cache: Cache<'_, '_>,
    scale: f32,
) -> Partial {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: `Isa::Avx2` is only chosen on a CPU with AVX2 and FMA.
            #[allow(unsafe_code)]
            unsafe {
                fused::partial(group, keys, cache, scale)
            }
        }
        _ => {
            let scores = |q: &[f32], rows: &[f32], into: &mut [f32]| {
                for (s, row) in into.iter_mut().zip(rows.chunks_exact(q.len())) {
                    *s = dot::<false>(q, row);
                }
            };
            let exp = |row: &mut [f32], max: f32| {
                for s in row {
                    *s = (*s - max).exp();
                }
            };
            let weigh = |weights: &[f32], rows: &[f32], out: &mut [f32]| {
                for (&w, row) in weights.iter().zip(rows.chunks_exact(out.len())) {
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o += w * v;
                    }
                }
            };
            partial_of::<false>(group, keys, cache, scale, (scores, exp, weigh))
        }
    }
}

/// [`combine_into`] on `isa`.
fn combine(isa: Isa, parts: &[Partial], dim: usize, out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: as in `partial`.
            #[allow(unsafe_code)]
            unsafe {
                fused::combine(parts, dim, out)
            }
        }
        _ => combine_into::<false>(parts, dim, out),
    }
}

/// The generic functions compiled for AVX2 with fused multiply-adds, and
/// their inner loops in registers.
#[cfg(target_arch = "x86_64")]
mod fused {
    use super::{Cache, Group, Partial, combine_into, partial_of};
    use crate::matmul::LANES;
    use crate::matmul::fused::{dot, tree};
    use std::arch::x86_64::{
        __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn partial(
        group: &Group<'_>,
        keys: std::ops::Range<usize>,
        cache: Cache<'_, '_>,
        scale: f32,
    ) -> Partial {
        // The closures inherit this function's target features, what the
        // callees need.
        let exp = |row: &mut [f32], max: f32| crate::exp::exp_shifted(row, max);
        let scores = |q: &[f32], rows: &[f32], into: &mut [f32]| dots(q, rows, into);
        let weigh = |weights: &[f32], rows: &[f32], out: &mut [f32]| accumulate(weights, rows, out);
        partial_of::<true>(group, keys, cache, scale, (scores, exp, weigh))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn combine(parts: &[Partial], dim: usize, out: &mut [f32]) {
        combine_into::<true>(parts, dim, out);
    }

    /// Rows dotted with `q` at once, each in its own chain (so several
    /// are in flight), each bitwise [`dot`].
    const ROWS: usize = 8;

    /// `into[i] = q · rows[i]` (rows `q.len()` long), each bitwise
    /// [`dot`]: lanes, tree, tail.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dots(q: &[f32], rows: &[f32], into: &mut [f32]) {
        let dim = q.len();
        let whole = dim / LANES * LANES;
        let mut chunks = into.chunks_exact_mut(ROWS);
        let mut first = 0;
        for into in &mut chunks {
            let rows = &rows[first * dim..(first + ROWS) * dim];
            let mut acc = [_mm256_setzero_ps(); ROWS];
            for c in (0..whole).step_by(LANES) {
                // SAFETY: `c + LANES <= whole <= dim`, within `q` and each
                // of the `ROWS` rows of `dim`; unaligned loads.
                #[allow(unsafe_code)]
                unsafe {
                    let q = _mm256_loadu_ps(q[c..].as_ptr());
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc =
                            _mm256_fmadd_ps(q, _mm256_loadu_ps(rows[r * dim + c..].as_ptr()), *acc);
                    }
                }
            }
            for (r, (into, acc)) in into.iter_mut().zip(acc).enumerate() {
                let row = &rows[r * dim..(r + 1) * dim];
                *into = crate::matmul::tail::<true>(tree(acc), &q[whole..], &row[whole..]);
            }
            first += ROWS;
        }
        for (r, into) in chunks.into_remainder().iter_mut().enumerate() {
            let row = &rows[(first + r) * dim..(first + r + 1) * dim];
            *into = dot(q, row);
        }
    }

    /// `out += weights[i] * rows[i]` for `i` in order (rows `out.len()`
    /// long), with up to eight registers of `out` held across the rows:
    /// each element is bitwise the scalar `weight.mul_add(v, out)` chain.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn accumulate(weights: &[f32], rows: &[f32], out: &mut [f32]) {
        let dim = out.len();
        let whole = dim / LANES * LANES;
        let mut c = 0;
        while c < whole {
            let width = (whole - c).min(8 * LANES);
            match width / LANES {
                8 => held::<8>(weights, rows, dim, c, out),
                4..=7 => held::<4>(weights, rows, dim, c, out),
                2 | 3 => held::<2>(weights, rows, dim, c, out),
                _ => held::<1>(weights, rows, dim, c, out),
            }
            c += match width / LANES {
                8 => 8,
                4..=7 => 4,
                2 | 3 => 2,
                _ => 1,
            } * LANES;
        }
        for c in whole..dim {
            for (i, &w) in weights.iter().enumerate() {
                out[c] = w.mul_add(rows[i * dim + c], out[c]);
            }
        }
    }

    /// [`accumulate`] for `V` registers of `out` from column `c`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn held<const V: usize>(weights: &[f32], rows: &[f32], dim: usize, c: usize, out: &mut [f32]) {
        assert!(c + V * LANES <= dim && rows.len() >= weights.len() * dim);
        // SAFETY: columns `c..c + V * LANES` are within `out` and every
        // row (asserted); unaligned loads and stores.
        #[allow(unsafe_code)]
        unsafe {
            let mut acc: [__m256; V] =
                std::array::from_fn(|v| _mm256_loadu_ps(out[c + v * LANES..].as_ptr()));
            for (i, &w) in weights.iter().enumerate() {
                let w = _mm256_set1_ps(w);
                let row = rows[i * dim + c..].as_ptr();
                for (v, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(v * LANES)), *acc);
                }
            }
            for (v, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(out[c + v * LANES..].as_mut_ptr(), *acc);
            }
        }
    }
}

/// `y + a * b`, fused or not.
#[inline(always)]
fn mul_add<const FUSED: bool>(a: f32, b: f32, y: f32) -> f32 {
    if FUSED { a.mul_add(b, y) } else { y + a * b }
}

/// The group's queries against the keys at positions `keys` of its
/// key/value head, with a path's inner loops `(scores, exp, weigh)`:
/// `scores(q, rows, into)` dots `q` with each row in the matrix product's
/// fixed lane order, `exp(row, max)` exponentiates a row of scores less
/// their maximum, `weigh(weights, rows, out)` adds the weighted rows into
/// `out` in position order. The softmax sums in position order.
#[inline(always)]
fn partial_of<const FUSED: bool>(
    group: &Group<'_>,
    keys: std::ops::Range<usize>,
    (key_rows, value_rows): Cache<'_, '_>,
    scale: f32,
    (scores_of, exp, weigh): (
        impl Fn(&[f32], &[f32], &mut [f32]),
        impl Fn(&mut [f32], f32),
        impl Fn(&[f32], &[f32], &mut [f32]),
    ),
) -> Partial {
    let (dim, width, count) = (group.dim, group.heads.len(), keys.len());
    // `[width, count]`.
    let mut scores = vec![0f32; width * count];
    let mut j = 0;
    for_each_run(key_rows, group.kv, dim, keys.clone(), |run| {
        // A few rows at a time, so every head of the group reads them
        // from L1.
        for run in run.chunks(ROWS_IN_L1 * dim) {
            let len = run.len() / dim;
            for g in 0..width {
                let into = &mut scores[g * count + j..g * count + j + len];
                scores_of(group.query(g), run, into);
                for s in into {
                    *s *= scale;
                }
            }
            j += len;
        }
    });
    let mut max = vec![f32::NEG_INFINITY; width];
    let mut sum = vec![0f32; width];
    for ((row, max), sum) in scores.chunks_exact_mut(count).zip(&mut max).zip(&mut sum) {
        *max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        exp(row, *max);
        *sum = row.iter().sum();
    }
    let mut out = vec![0f32; width * dim];
    let mut j = 0;
    for_each_run(value_rows, group.kv, dim, keys, |run| {
        for run in run.chunks(ROWS_IN_L1 * dim) {
            let len = run.len() / dim;
            for (g, out) in out.chunks_exact_mut(dim).enumerate() {
                weigh(&scores[g * count + j..g * count + j + len], run, out);
            }
            j += len;
        }
    });
    Partial { max, sum, out }
}

/// The blocks' partial softmaxes, in order, rescaled to their common
/// maximum and normalized, into `out` (`[heads, dim]`).
#[inline(always)]
fn combine_into<const FUSED: bool>(parts: &[Partial], dim: usize, out: &mut [f32]) {
    for (g, out) in out.chunks_exact_mut(dim).enumerate() {
        let max = parts
            .iter()
            .map(|p| p.max[g])
            .fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        out.fill(0.0);
        for part in parts {
            let shift = part.max[g] - max;
            let factor = if FUSED {
                crate::exp::exp1(shift)
            } else {
                shift.exp()
            };
            sum = mul_add::<FUSED>(part.sum[g], factor, sum);
            for (o, &v) in out.iter_mut().zip(&part.out[g * dim..(g + 1) * dim]) {
                *o = mul_add::<FUSED>(v, factor, *o);
            }
        }
        for o in out {
            *o /= sum;
        }
    }
}

/// Calls `f` on the rows of head `kv` at `positions`, in order, as runs
/// of contiguous rows (one per segment). Always inlined: `f` must be
/// compiled with its caller's fused multiply-adds (outside them `mul_add`
/// is a slow library call).
#[inline(always)]
fn for_each_run(
    segments: &[Segment<'_>],
    kv: usize,
    dim: usize,
    positions: std::ops::Range<usize>,
    mut f: impl FnMut(&[f32]),
) {
    // Positions before the segment being read.
    let mut before = 0;
    for segment in segments {
        let (from, to) = (
            positions.start.max(before),
            positions.end.min(before + segment.len),
        );
        if from < to {
            let head = &segment.data[kv * segment.size * dim..];
            f(&head[(from - before) * dim..(to - before) * dim]);
        }
        before += segment.len;
        if before >= positions.end {
            return;
        }
    }
    panic!("the segments hold fewer positions than the queries see");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The plain reference: the textbook formula over one contiguous
    /// `[kv_heads, total, dim]` cache, in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        n: usize,
        (prefix, window): (usize, Option<usize>),
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
                let first = window.map_or(0, |w| visible.saturating_sub(w));
                let scores: Vec<f64> = (first..visible)
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
                    let value: f64 = (first..visible)
                        .map(|j| weights[j - first] * f64::from(v[(kv * total + j) * dim + x]))
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
        (prefix, window): (usize, Option<usize>),
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
            Queries {
                q,
                n,
                prefix,
                window,
            },
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
        for window in [None, Some(3), Some(12)] {
            let at = (prefix, window);
            let want = reference(&q, n, at, &k, &v, total, SHAPE, 0.125);
            for isa in Isa::available() {
                for (sizes, threads) in [(vec![total], 1), (vec![4, 4, 8], 2), (vec![16], 3)] {
                    let got = run(isa, &q, n, at, &k, &v, total, SHAPE, &sizes, threads);
                    for (g, e) in got.iter().zip(&want) {
                        assert!(
                            (g - e).abs() < 1e-5,
                            "{isa}, {sizes:?}, window {window:?}: {g} vs {e}"
                        );
                    }
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
        for (prefix, n, window) in [(200, 6, None), (900, 1, None), (900, 3, Some(300))] {
            let total = prefix + n;
            let at = (prefix, window);
            let q = values(shape.heads * n * shape.dim, 7);
            let k = values(shape.kv_heads * total * shape.dim, 8);
            let v = values(shape.kv_heads * total * shape.dim, 9);
            let want = reference(&q, n, at, &k, &v, total, shape, 0.125);
            for isa in Isa::available() {
                let one = run(isa, &q, n, at, &k, &v, total, shape, &[64, 1024], 1);
                let two = run(isa, &q, n, at, &k, &v, total, shape, &[64, 1024], 2);
                assert_eq!(one, two, "{isa}, {n} new positions");
                for (g, e) in two.iter().zip(&want) {
                    assert!((g - e).abs() < 1e-5, "{isa}: {g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn a_position_is_the_same_bits_however_its_sequence_was_chunked() {
        // Over several key blocks and segments.
        let total = 2 * KEY_BLOCK + 88;
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
        for (isa, window) in Isa::available()
            .into_iter()
            .flat_map(|isa| [(isa, None), (isa, Some(KEY_BLOCK + 44))])
        {
            let whole = run(
                isa,
                &rows(0, total),
                total,
                (0, window),
                &k,
                &v,
                total,
                SHAPE,
                &[KEY_BLOCK, 100, 300],
                2,
            );
            let width = SHAPE.heads * SHAPE.dim;
            for chunk in [1, 7, KEY_BLOCK + 1] {
                let mut from = 0;
                while from < total {
                    let n = chunk.min(total - from);
                    let got = run(
                        isa,
                        &rows(from, n),
                        n,
                        (from, window),
                        &k,
                        &v,
                        total,
                        SHAPE,
                        &[KEY_BLOCK, 100, 300],
                        1,
                    );
                    assert_eq!(
                        got,
                        whole[from * width..(from + n) * width],
                        "{isa}, window {window:?}: chunks of {chunk} at {from}"
                    );
                    from += n;
                }
            }
        }
    }
}
