//! Decode attention: one to `k + 1` new query rows against a sequence's
//! KV cache, scores, softmax and the weighted sum of values in one kernel
//! per cache segment, where burn's ops make a product per segment, a
//! concatenation, a mask, a softmax and a product per segment again.
//!
//! The cache hands its keys and values over per segment (it grows by
//! segments, see `dsi_models::cache`), `[kv_heads, len, head_dim]` each. One
//! cube serves one query head and row. It walks the keys that row sees in
//! tiles of the cube's width, keeping the running maximum, the sum of
//! exponentials and the weighted values (the online softmax of flash
//! attention) in f32; the state passes from one segment's launch to the
//! next, and the last divides. A query head `h` reads key/value head
//! `h / (heads / kv_heads)` (grouped-query and multi-query attention); a
//! query at position `p` sees keys `0..=p`, or the last `window` of them.

use super::cube::{CubeOp, cube_width, float_in, float_out, float_tensor, on_cube};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bool, DType, Shape, Tensor, TensorData};
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::{CubeCount, CubeDim};

/// Keys per tile: the cube's width.
const TILE: u32 = 64;

/// The widest head the kernel takes (its shared memory holds one query
/// and one output row of the head).
pub const MAX_HEAD_DIM: usize = 256;

/// The kernel, in CubeCL (its `Tensor` is not burn's).
mod kernel {
    use cubecl::prelude::*;

    /// One launch per cache segment; `first` starts the softmax state,
    /// `last` writes the output.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decode_attention_kernel<F: Float>(
        q: &Tensor<F>,
        keys: &Tensor<F>,
        values: &Tensor<F>,
        running_max: &mut Tensor<f32>,
        running_sum: &mut Tensor<f32>,
        running_acc: &mut Tensor<f32>,
        out: &mut Tensor<F>,
        shape: Sequence<u32>,
        scale: f32,
        #[comptime] dim: u32,
        #[comptime] tile: u32,
        #[define(F)] _dtype: StorageType,
    ) {
        // shape: rows, group, prefix, segment start, window (0: none), first, last.
        let rows = shape[0] as usize;
        let group = shape[1] as usize;
        let prefix = shape[2] as usize;
        let segment_start = shape[3] as usize;
        let window = shape[4] as usize;
        let first = shape[5];
        let last = shape[6];
        let d = dim as usize;
        let cube = CUBE_POS_X as usize;
        let unit = UNIT_POS_X as usize;
        let width = CUBE_DIM_X as usize;
        let head = cube / rows;
        let row = cube % rows;
        let kv_head = head / group;
        let state = head * rows + row;

        let mut query = SharedMemory::<f32>::new(dim as usize);
        let mut acc = SharedMemory::<f32>::new(dim as usize);
        let mut scores = SharedMemory::<f32>::new(tile as usize);
        let mut weights = SharedMemory::<f32>::new(tile as usize);
        let q_base = head * q.stride(0) + row * q.stride(1);
        let mut c = unit;
        while c < d {
            query[c] = f32::cast_from(q[q_base + c * q.stride(2)]) * scale;
            let mut held = f32::new(0.0);
            if first == 0 {
                held = running_acc[state * d + c];
            }
            acc[c] = held;
            c += width;
        }
        let mut max = f32::new(-3.0e38);
        let mut sum = f32::new(0.0);
        if first == 0 {
            max = running_max[state];
            sum = running_sum[state];
        }
        sync_cube();

        // The keys this row sees, as positions in this segment.
        let position = prefix + row;
        let mut lowest = 0;
        if window > 0 && position + 1 > window {
            lowest = position + 1 - window;
        }
        let length = keys.shape(1);
        let mut begin = segment_start;
        if lowest > begin {
            begin = lowest;
        }
        let mut end = segment_start + length;
        if position + 1 < end {
            end = position + 1;
        }
        let k_base = kv_head * keys.stride(0);
        let v_base = kv_head * values.stride(0);
        // Two barriers per tile: scores and weights live in separate
        // arrays, so the next tile's scores never overwrite weights a unit
        // is still summing.
        let mut tile_start = begin;
        while tile_start < end {
            let key = tile_start + unit;
            let mut score = f32::new(-3.0e38);
            if key < end {
                let at = k_base + (key - segment_start) * keys.stride(1);
                let mut dot = f32::new(0.0);
                for i in 0..dim as usize {
                    dot += query[i] * f32::cast_from(keys[at + i * keys.stride(2)]);
                }
                score = dot;
            }
            scores[unit] = score;
            sync_cube();
            let mut count = end - tile_start;
            if count > width {
                count = width;
            }
            // Every unit reduces the tile in the same order: one answer.
            let mut tile_max = scores[0];
            for t in 1..count {
                if scores[t] > tile_max {
                    tile_max = scores[t];
                }
            }
            let mut new_max = max;
            if tile_max > new_max {
                new_max = tile_max;
            }
            let rescale = f32::exp(max - new_max);
            let mut weight = f32::new(0.0);
            if key < end {
                weight = f32::exp(score - new_max);
            }
            weights[unit] = weight;
            sync_cube();
            let mut tile_sum = f32::new(0.0);
            for t in 0..count {
                tile_sum += weights[t];
            }
            sum = sum * rescale + tile_sum;
            let mut c = unit;
            while c < d {
                let mut weighted = acc[c] * rescale;
                for t in 0..count {
                    let at = v_base + (tile_start + t - segment_start) * values.stride(1);
                    weighted += weights[t] * f32::cast_from(values[at + c * values.stride(2)]);
                }
                acc[c] = weighted;
                c += width;
            }
            max = new_max;
            tile_start += width;
        }

        let mut c = unit;
        while c < d {
            if last == 1 {
                out[row * out.stride(0) + head * d + c] = F::cast_from(acc[c] / sum);
            } else {
                running_acc[state * d + c] = acc[c];
            }
            c += width;
        }
        if unit == 0 && last == 0 {
            running_max[state] = max;
            running_sum[state] = sum;
        }
    }
}

/// Where the queries sit and what they see.
#[derive(Debug, Clone, Copy)]
pub struct DecodeQueries {
    /// Positions the cache held before these rows (row `i` is at
    /// `prefix + i`; its own key is already in the cache).
    pub prefix: usize,
    /// Sliding window: a row sees the last `window` positions, itself
    /// included.
    pub window: Option<usize>,
    /// Multiplies the scores (`head_dim^-0.5`).
    pub scale: f32,
}

/// Attention of `q` (`[heads, rows, head_dim]`) over the cache's
/// `segments` (keys and values, `[kv_heads, len, head_dim]` each, in
/// position order), `[rows, heads * head_dim]`; `None` when `B` is not a
/// CubeCL backend or the head is wider than [`MAX_HEAD_DIM`].
pub fn decode_attention<B: Backend>(
    q: Tensor<B, 3>,
    segments: &[(Tensor<B, 3>, Tensor<B, 3>)],
    at: DecodeQueries,
) -> Option<Tensor<B, 2>> {
    let [_, _, dim] = q.dims();
    if dim > MAX_HEAD_DIM || segments.is_empty() {
        return None;
    }
    let op = DecodeAttention::<B> {
        q: q.into_primitive().tensor(),
        segments: segments
            .iter()
            .map(|(k, v)| {
                (
                    k.clone().into_primitive().tensor(),
                    v.clone().into_primitive().tensor(),
                )
            })
            .collect(),
        at,
    };
    on_cube(op).ok().map(float_tensor)
}

/// The reference from plain tensor ops, as the models' burn path computes
/// it: the segments concatenated, one product, a causal (and window) mask,
/// softmax, one product.
pub fn decode_attention_reference<B: Backend>(
    q: Tensor<B, 3>,
    segments: &[(Tensor<B, 3>, Tensor<B, 3>)],
    at: DecodeQueries,
) -> Tensor<B, 2> {
    let [heads, rows, dim] = q.dims();
    let keys = Tensor::cat(segments.iter().map(|(k, _)| k.clone()).collect(), 1);
    let values = Tensor::cat(segments.iter().map(|(_, v)| v.clone()).collect(), 1);
    let [kv_heads, total, _] = keys.dims();
    let group = heads / kv_heads;
    let q = q.reshape([kv_heads, group * rows, dim]);
    let scores = q.matmul(keys.swap_dims(1, 2)).mul_scalar(at.scale);
    let mut mask = Vec::with_capacity(group * rows * total);
    for _ in 0..group {
        for i in 0..rows {
            let p = at.prefix + i;
            let lowest = at.window.map_or(0, |w| (p + 1).saturating_sub(w));
            mask.extend((0..total).map(|j| j > p || j < lowest));
        }
    }
    let mask = Tensor::<B, 3, Bool>::from_data(
        TensorData::new(mask, [1, group * rows, total]),
        &scores.device(),
    );
    let probs = burn::tensor::activation::softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 2);
    probs
        .matmul(values)
        .reshape([heads, rows, dim])
        .swap_dims(0, 1)
        .reshape([rows, heads * dim])
}

struct DecodeAttention<B: Backend> {
    q: FloatTensor<B>,
    segments: Vec<(FloatTensor<B>, FloatTensor<B>)>,
    at: DecodeQueries,
}

impl<B: Backend> CubeOp<B> for DecodeAttention<B> {
    type Output = FloatTensor<B>;

    fn run<R: CubeRuntime>(self) -> FloatTensor<B> {
        let q = float_in::<B, R>(self.q);
        let [heads, rows, dim] = [q.meta.shape()[0], q.meta.shape()[1], q.meta.shape()[2]];
        let (client, device, dtype) = (q.client.clone(), q.device.clone(), q.dtype);
        let segments: Vec<_> = self
            .segments
            .into_iter()
            .map(|(k, v)| (float_in::<B, R>(k), float_in::<B, R>(v)))
            .collect();
        let kv_heads = segments[0].0.meta.shape()[0];
        let empty = |shape: Vec<usize>, dtype: DType| {
            empty_device_dtype::<R>(client.clone(), device.clone(), Shape::from(shape), dtype)
        };
        let out = empty(vec![rows, heads * dim], dtype);
        let running_max = empty(vec![heads * rows], DType::F32);
        let running_sum = empty(vec![heads * rows], DType::F32);
        let running_acc = empty(vec![heads * rows * dim], DType::F32);
        let tile = cube_width(&client, TILE);
        let last = segments.len() - 1;
        let mut start = 0;
        for (i, (keys, values)) in segments.into_iter().enumerate() {
            let length = keys.meta.shape()[1];
            let shape = [
                rows,
                heads / kv_heads,
                self.at.prefix,
                start,
                self.at.window.unwrap_or(0),
                usize::from(i == 0),
                usize::from(i == last),
            ];
            let mut sequence = cubecl::prelude::SequenceArg::new();
            for value in shape {
                sequence.push(value as u32);
            }
            kernel::decode_attention_kernel::launch::<R>(
                &client,
                CubeCount::Static((heads * rows) as u32, 1, 1),
                CubeDim::new_1d(tile),
                q.clone().into_tensor_arg(),
                into_contiguous(keys).into_tensor_arg(),
                into_contiguous(values).into_tensor_arg(),
                running_max.clone().into_tensor_arg(),
                running_sum.clone().into_tensor_arg(),
                running_acc.clone().into_tensor_arg(),
                out.clone().into_tensor_arg(),
                sequence,
                self.at.scale,
                dim as u32,
                tile,
                dtype.into(),
            );
            start += length;
        }
        float_out::<B, R>(out)
    }
}
