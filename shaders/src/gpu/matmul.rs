//! `y = x Wᵀ` with each output reduced in one fixed order whatever the
//! rows beside it: the GPU counterpart of the CPU kernels' fixed-order
//! product (`crate::matmul`), so that under `--numerics invariant` a row's
//! logits on a GPU are the same bits alone, in a batch, or fed in any
//! chunking, and greedy DSI, SI and non-SI emit the same tokens.
//!
//! A backend's matrix product picks its tiling by shape, so a row's sums
//! move in the last bits with the number of rows beside it. Here one cube
//! computes one output column for every row: each unit sums a strided
//! share of the inner dimension in order, in f32, then the cube adds the
//! units' sums in a fixed tree. The weights (`[out, in]`, as checkpoints
//! store them) are read once per forward for up to [`ROW_BLOCK`] rows,
//! along their rows, as decoding and verifying need.

use super::cube::{CubeOp, float_in, float_out, on_cube};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeRuntime;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::{CubeCount, CubeDim};

/// Units per cube: a power of two for the fixed reduction tree.
const UNITS: u32 = 64;

/// Rows one pass over a weight row serves (more rows take more passes).
pub const ROW_BLOCK: u32 = 16;

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
        #[comptime] units: u32,
        #[comptime] block: u32,
        #[define(F)] _dtype: StorageType,
    ) {
        let column = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
        let rows = x.shape(0);
        let inner = x.shape(1);
        let columns = w.shape(0);
        if column >= columns {
            terminate!();
        }
        let unit = UNIT_POS_X as usize;
        let width = units as usize;
        let mut partial = SharedMemory::<f32>::new((units * block) as usize);
        let w_row = column * w.stride(0);
        let mut first = 0;
        while first < rows {
            let mut count = rows - first;
            if count > block as usize {
                count = block as usize;
            }
            for m in 0..count {
                partial[m * width + unit] = f32::new(0.0);
            }
            let mut k = unit;
            while k < inner {
                let weight = f32::cast_from(w[w_row + k * w.stride(1)]);
                for m in 0..count {
                    let at = (first + m) * x.stride(0) + k * x.stride(1);
                    partial[m * width + unit] += f32::cast_from(x[at]) * weight;
                }
                k += width;
            }
            sync_cube();
            let mut half = CUBE_DIM_X as usize / 2;
            while half > 0 {
                if unit < half {
                    for m in 0..count {
                        partial[m * width + unit] += partial[m * width + unit + half];
                    }
                }
                sync_cube();
                half /= 2;
            }
            if unit == 0 {
                for m in 0..count {
                    y[(first + m) * columns + column] = F::cast_from(partial[m * width]);
                }
            }
            sync_cube();
            first += block as usize;
        }
    }
}

/// `x Wᵀ` (`[rows, in]` by `[out, in]` -> `[rows, out]`) in a fixed order
/// per output; `None` when `B` is not a CubeCL backend.
pub fn matmul_fixed_order<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let op = Matmul::<B> {
        x: x.into_primitive().tensor(),
        w: w.into_primitive().tensor(),
    };
    on_cube(op)
        .ok()
        .map(|y| Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(y)))
}

/// The reference: burn's product.
pub fn matmul_reference<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    x.matmul(w.transpose())
}

struct Matmul<B: Backend> {
    x: FloatTensor<B>,
    w: FloatTensor<B>,
}

impl<B: Backend> CubeOp<B> for Matmul<B> {
    type Output = FloatTensor<B>;

    fn run<R: CubeRuntime>(self) -> FloatTensor<B> {
        // Strided reads: the weights stay the loader's views, uncopied.
        let x = float_in::<B, R>(self.x);
        let w = float_in::<B, R>(self.w);
        let (rows, columns) = (x.meta.shape()[0], w.meta.shape()[0]);
        let y = empty_device_dtype::<R>(
            x.client.clone(),
            x.device.clone(),
            Shape::new([rows, columns]),
            x.dtype,
        );
        if rows > 0 && columns > 0 {
            let units = UNITS.min(x.client.properties().hardware.max_units_per_cube);
            let units = 1 << units.ilog2();
            let grid_x = columns.min(GRID_X);
            kernel::matmul_kernel::launch::<R>(
                &x.client,
                CubeCount::Static(grid_x as u32, columns.div_ceil(grid_x) as u32, 1),
                CubeDim::new_1d(units),
                x.clone().into_tensor_arg(),
                w.into_tensor_arg(),
                y.clone().into_tensor_arg(),
                units,
                ROW_BLOCK,
                x.dtype.into(),
            );
        }
        float_out::<B, R>(y)
    }
}
