//! A residual add and the RMSNorm after it in one pass: `h = x + delta`
//! and `rms_norm(h) * weight`, both written, where burn's ops make five
//! passes over the row (add, square, mean, divide, scale).
//!
//! Each row is reduced by one cube in a fixed order whatever the rows
//! beside it, so the result of a row is the same alone or in a batch. The
//! mean square accumulates in f32 whatever the tensors' dtype.

use super::cube::{CubeOp, cube_width, float_in, float_out, float_tensor, on_cube};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor, TensorMetadata};
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::{CubeCount, CubeDim};

/// Units per cube: a power of two for the pairwise reduction.
const UNITS: u32 = 256;

/// The kernel, in CubeCL (its `Tensor` is not burn's).
mod kernel {
    use cubecl::prelude::*;

    #[cube(launch)]
    pub(super) fn add_rms_norm_kernel<F: Float>(
        x: &Tensor<F>,
        delta: &Tensor<F>,
        weight: &Tensor<F>,
        sum: &mut Tensor<F>,
        normed: &mut Tensor<F>,
        eps: f32,
        with_delta: u32,
        #[comptime] units: u32,
        #[define(F)] _dtype: StorageType,
    ) {
        let row = CUBE_POS_X as usize;
        let unit = UNIT_POS_X as usize;
        let width = x.shape(1);
        let start = row * width;
        let mut squares = f32::new(0.0);
        let mut j = unit;
        while j < width {
            let mut h = x[start + j];
            if with_delta == 1 {
                h += delta[start + j];
                sum[start + j] = h;
            }
            let wide = f32::cast_from(h);
            squares += wide * wide;
            j += units as usize;
        }
        let mut partial = SharedMemory::<f32>::new(units as usize);
        partial[unit] = squares;
        sync_cube();
        let mut half = CUBE_DIM_X as usize / 2;
        while half > 0 {
            if unit < half {
                partial[unit] += partial[unit + half];
            }
            sync_cube();
            half /= 2;
        }
        let inverse =
            F::cast_from(1.0f32 / f32::sqrt(partial[0] / f32::cast_from(width as u32) + eps));
        let mut j = unit;
        while j < width {
            let mut h = x[start + j];
            if with_delta == 1 {
                h = sum[start + j];
            }
            normed[start + j] = h * inverse * weight[j];
            j += units as usize;
        }
    }
}

/// `(x + delta, rms_norm(x + delta) * weight)` in one kernel; `None` when
/// `B` is not a CubeCL backend.
///
/// # Shapes
/// - x, delta: `[rows, width]`; weight: `[width]`
pub fn add_rms_norm<B: Backend>(
    x: Tensor<B, 2>,
    delta: Tensor<B, 2>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Option<(Tensor<B, 2>, Tensor<B, 2>)> {
    let op = AddRmsNorm::<B> {
        x: x.into_primitive().tensor(),
        delta: Some(delta.into_primitive().tensor()),
        weight: weight.into_primitive().tensor(),
        eps: eps as f32,
    };
    on_cube(op)
        .ok()
        .map(|(sum, normed)| (float_tensor(sum), float_tensor(normed)))
}

/// `rms_norm(x) * weight` by the same kernel (a row reduced in the same
/// order as with a residual); `None` when `B` is not a CubeCL backend.
///
/// # Shapes
/// - x: `[rows, width]`; weight: `[width]`
pub fn rms_norm<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Option<Tensor<B, 2>> {
    let op = AddRmsNorm::<B> {
        x: x.into_primitive().tensor(),
        delta: None,
        weight: weight.into_primitive().tensor(),
        eps: eps as f32,
    };
    on_cube(op).ok().map(|(_, normed)| float_tensor(normed))
}

/// The reference from plain tensor ops, as the models compute it.
pub fn add_rms_norm_reference<B: Backend>(
    x: Tensor<B, 2>,
    delta: Tensor<B, 2>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let sum = x + delta;
    let rms = sum
        .clone()
        .powi_scalar(2)
        .mean_dim(1)
        .add_scalar(eps)
        .sqrt();
    let normed = (sum.clone() / rms) * weight.unsqueeze();
    (sum, normed)
}

struct AddRmsNorm<B: Backend> {
    x: FloatTensor<B>,
    delta: Option<FloatTensor<B>>,
    weight: FloatTensor<B>,
    eps: f32,
}

impl<B: Backend> CubeOp<B> for AddRmsNorm<B> {
    type Output = (FloatTensor<B>, FloatTensor<B>);

    fn run<R: CubeRuntime>(self) -> Self::Output {
        let x = into_contiguous(float_in::<B, R>(self.x));
        let delta = self
            .delta
            .map(|delta| into_contiguous(float_in::<B, R>(delta)));
        let weight = into_contiguous(float_in::<B, R>(self.weight));
        let empty =
            |shape| empty_device_dtype::<R>(x.client.clone(), x.device.clone(), shape, x.dtype);
        let normed = empty(x.shape());
        // Without a residual the sum is not written: a one-value stand-in.
        let sum = empty(match delta {
            Some(_) => x.shape(),
            None => Shape::new([1]),
        });
        let with_delta = u32::from(delta.is_some());
        let delta = delta.unwrap_or_else(|| x.clone());
        let rows = x.meta.shape()[0];
        if rows > 0 {
            let units = cube_width(&x.client, UNITS);
            kernel::add_rms_norm_kernel::launch::<R>(
                &x.client,
                CubeCount::Static(rows as u32, 1, 1),
                CubeDim::new_1d(units),
                x.clone().into_tensor_arg(),
                delta.into_tensor_arg(),
                weight.into_tensor_arg(),
                sum.clone().into_tensor_arg(),
                normed.clone().into_tensor_arg(),
                self.eps,
                with_delta,
                units,
                x.dtype.into(),
            );
        }
        (float_out::<B, R>(sum), float_out::<B, R>(normed))
    }
}
