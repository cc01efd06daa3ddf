//! `y = x W` with each output reduced in one fixed order whatever the
//! rows beside it: the GPU counterpart of the CPU kernels' fixed-order
//! product (`crate::matmul`), so that under `--numerics invariant` a row's
//! logits on a GPU are the same bits alone, in a batch, or fed in any
//! chunking, and greedy DSI, SI and non-SI emit the same tokens.
//!
//! A backend's matrix product picks its tiling by shape, so a row's sums
//! move in the last bits with the number of rows beside it. Here each unit
//! owns one output column and sums the inner dimension in order, in f32,
//! for up to [`ROW_BLOCK`] rows at once (one pass over the weights serves a
//! whole verification). Neighbouring units read neighbouring columns, so
//! weights laid out `[in, out]` (what `dsi-models` uploads on a GPU) are
//! read coalesced; any strides work (a tied LM head reads its embedding's
//! `[vocab, hidden]` rows through a transposed view, uncoalesced).

use super::cube::{CubeOp, cube_width, float_in, float_out, float_tensor, on_cube};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeRuntime;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::{CubeCount, CubeDim};

/// Units (output columns) per cube.
const UNITS: u32 = 64;

/// Rows one pass over the weights serves (more rows take more passes).
pub const ROW_BLOCK: usize = 16;

/// Output columns on the first axis of the launch grid (its limit).
const GRID_X: usize = 32_768;

/// The kernel, in CubeCL (its `Tensor` is not burn's).
mod kernel {
    use cubecl::prelude::*;

    #[cube(launch)]
    pub(super) fn matmul_kernel<F: Float>(
        x: &Tensor<F>,
        w: &Tensor<F>,
        y: &mut Tensor<F>,
        #[comptime] block: usize,
        #[define(F)] _dtype: StorageType,
    ) {
        let column = ((CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X) as usize;
        let rows = x.shape(0);
        let inner = x.shape(1);
        let columns = w.shape(1);
        if column >= columns {
            terminate!();
        }
        let mut acc = Array::<f32>::new(block);
        let mut first = 0;
        while first < rows {
            let mut count = rows - first;
            if count > block {
                count = block;
            }
            for m in 0..count {
                acc[m] = f32::new(0.0);
            }
            for k in 0..inner {
                let weight = f32::cast_from(w[k * w.stride(0) + column * w.stride(1)]);
                for m in 0..count {
                    acc[m] +=
                        f32::cast_from(x[(first + m) * x.stride(0) + k * x.stride(1)]) * weight;
                }
            }
            for m in 0..count {
                y[(first + m) * columns + column] = F::cast_from(acc[m]);
            }
            first += block;
        }
    }
}

/// `x W` (`[rows, in]` by `[in, out]` -> `[rows, out]`) in a fixed order
/// per output; `None` when `B` is not a CubeCL backend.
///
/// # Panics
/// When the inner dimensions differ (as burn's product does).
pub fn matmul_fixed_order<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    assert_eq!(
        x.dims()[1],
        w.dims()[0],
        "matmul_fixed_order: [rows, in] times [in, out]"
    );
    let op = Matmul::<B> {
        x: x.into_primitive().tensor(),
        w: w.into_primitive().tensor(),
    };
    on_cube(op).ok().map(float_tensor)
}

/// The reference: burn's product.
pub fn matmul_reference<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    x.matmul(w)
}

struct Matmul<B: Backend> {
    x: FloatTensor<B>,
    w: FloatTensor<B>,
}

impl<B: Backend> CubeOp<B> for Matmul<B> {
    type Output = FloatTensor<B>;

    fn run<R: CubeRuntime>(self) -> FloatTensor<B> {
        // Strided reads: the weights stay as loaded, uncopied.
        let x = float_in::<B, R>(self.x);
        let w = float_in::<B, R>(self.w);
        let (rows, columns) = (x.meta.shape()[0], w.meta.shape()[1]);
        let y = empty_device_dtype::<R>(
            x.client.clone(),
            x.device.clone(),
            Shape::new([rows, columns]),
            x.dtype,
        );
        if rows > 0 && columns > 0 {
            let units = cube_width(&x.client, UNITS);
            let cubes = columns.div_ceil(units as usize);
            let grid_x = cubes.min(GRID_X);
            kernel::matmul_kernel::launch::<R>(
                &x.client,
                CubeCount::Static(grid_x as u32, cubes.div_ceil(grid_x) as u32, 1),
                CubeDim::new_1d(units),
                x.clone().into_tensor_arg(),
                w.into_tensor_arg(),
                y.clone().into_tensor_arg(),
                ROW_BLOCK,
                x.dtype.into(),
            );
        }
        float_out::<B, R>(y)
    }
}
