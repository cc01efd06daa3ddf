//! Each row's first maximum on the device: what a greedy verification
//! (the target's choice at each of the `k + 1` verified positions) or a
//! greedy draft needs from the logits, read back as `rows` ids instead of
//! `rows × vocab` floats (3 MB per verification of 6 rows at a 128k
//! vocabulary, 24 bytes after).
//!
//! The host rule it reproduces is `dsi_core::verify::argmax`: the lowest id
//! among the row's maxima. Rows holding NaN are outside the contract: WGSL
//! lets an implementation assume floats are never NaN, so no comparison
//! with one can be relied on (the models' logits are finite).

use super::cube::{CubeOp, cube_width, float_in, int_out, on_cube};
use burn::tensor::backend::Backend;
use burn::tensor::ops::IntTensor;
use burn::tensor::{Element, Int, Shape, Tensor};
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::{CubeCount, CubeDim};

/// Units per cube: a power of two for the pairwise reduction.
const UNITS: u32 = 256;

/// The kernel, in CubeCL (its `Tensor` is not burn's).
mod kernel {
    use cubecl::prelude::*;

    /// One cube per row. Each unit scans a strided share of the row keeping
    /// its first maximum, then the cube halves the candidates pairwise, the
    /// lower id winning ties, so the answer is the row's first maximum
    /// whatever the unit count.
    #[cube(launch)]
    pub(super) fn argmax_rows_kernel<F: Float, I: Int>(
        logits: &Tensor<F>,
        ids: &mut Tensor<I>,
        #[comptime] units: u32,
        #[define(F, I)] _dtypes: [StorageType; 2],
    ) {
        let row = CUBE_POS_X as usize;
        let unit = UNIT_POS_X as usize;
        let vocab = logits.shape(1);
        let start = row * logits.stride(0);
        // `vocab` marks "no candidate yet".
        let mut best_value = F::new(0.0);
        let mut best_index = vocab;
        let mut j = unit;
        while j < vocab {
            let value = logits[start + j];
            if best_index == vocab || value > best_value {
                best_value = value;
                best_index = j;
            }
            j += units as usize;
        }
        let mut values = SharedMemory::<F>::new(units as usize);
        let mut indices = SharedMemory::<u32>::new(units as usize);
        values[unit] = best_value;
        indices[unit] = best_index as u32;
        sync_cube();
        let mut half = CUBE_DIM_X as usize / 2;
        while half > 0 {
            if unit < half {
                let other = indices[unit + half];
                let mine = indices[unit];
                let other_value = values[unit + half];
                let mine_value = values[unit];
                let none = vocab as u32;
                let better = other != none
                    && (mine == none
                        || other_value > mine_value
                        || (other_value == mine_value && other < mine));
                if better {
                    values[unit] = other_value;
                    indices[unit] = other;
                }
            }
            sync_cube();
            half /= 2;
        }
        if unit == 0 {
            ids[row] = I::cast_from(indices[0]);
        }
    }
}

/// Each row's first maximum, `[rows, vocab] -> [rows]`, computed on the
/// device; `None` when `B` is not a CubeCL backend (the caller reads the
/// logits back and takes the host rule).
pub fn argmax_rows<B: Backend>(logits: Tensor<B, 2>) -> Option<Tensor<B, 1, Int>> {
    let primitive = logits.into_primitive().tensor();
    on_cube::<B, _>(ArgmaxRows::<B> { logits: primitive })
        .ok()
        .map(Tensor::from_primitive)
}

/// The reference: the lowest id among each row's maxima, from plain
/// tensor ops (rows without NaN).
pub fn argmax_rows_reference<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1, Int> {
    let [rows, vocab] = logits.dims();
    let device = logits.device();
    let max = logits.clone().max_dim(1);
    let ids = Tensor::<B, 1, Int>::arange(0..vocab as i64, &device)
        .unsqueeze::<2>()
        .expand([rows, vocab]);
    let beyond = Tensor::<B, 2, Int>::full([rows, vocab], vocab as i64, &device);
    ids.mask_where(logits.equal(max).bool_not(), beyond)
        .min_dim(1)
        .reshape([rows])
}

struct ArgmaxRows<B: Backend> {
    logits: burn::tensor::ops::FloatTensor<B>,
}

impl<B: Backend> CubeOp<B> for ArgmaxRows<B> {
    type Output = IntTensor<B>;

    fn run<R: CubeRuntime>(self) -> IntTensor<B> {
        let logits = into_contiguous(float_in::<B, R>(self.logits));
        let rows = logits.meta.shape()[0];
        let int = <B::IntElem as Element>::dtype();
        let ids = empty_device_dtype::<R>(
            logits.client.clone(),
            logits.device.clone(),
            Shape::new([rows]),
            int,
        );
        if rows > 0 {
            let units = cube_width(&logits.client, UNITS);
            kernel::argmax_rows_kernel::launch::<R>(
                &logits.client,
                CubeCount::Static(rows as u32, 1, 1),
                CubeDim::new_1d(units),
                logits.clone().into_tensor_arg(),
                ids.clone().into_tensor_arg(),
                units,
                [logits.dtype.into(), int.into()],
            );
        }
        int_out::<B, R>(ids)
    }
}
