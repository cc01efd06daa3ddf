//! From burn's tensors to the CubeCL tensors behind them, and back.
//!
//! The models are generic over burn's `Backend`; a kernel exists only for
//! the CubeCL backends. Rather than a trait bound every model type would
//! carry, an operation asks at run time which backend it was given: the
//! float primitive of a CubeCL backend is a `CubeTensor` of its runtime, so
//! a type comparison tells, and a checked downcast hands the tensor over.

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn_cubecl::CubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::ComputeClient;
use std::any::{Any, TypeId};

/// An operation with a kernel for every CubeCL runtime.
pub(crate) trait CubeOp<B: Backend>: Sized {
    /// What the operation returns.
    type Output;

    /// Runs the kernel on runtime `R`, which is `B`'s.
    fn run<R: CubeRuntime>(self) -> Self::Output;
}

/// Runs `op`'s kernel when `B` is a CubeCL backend this build has (and
/// the kernels are [`enabled`](super::enabled)), else hands `op` back for
/// the caller's own path.
pub(crate) fn on_cube<B: Backend, Op: CubeOp<B>>(op: Op) -> Result<Op::Output, Op> {
    if !super::enabled() {
        return Err(op);
    }
    #[cfg(feature = "wgpu")]
    if backs::<B, burn::backend::wgpu::WgpuRuntime>() {
        return Ok(op.run::<burn::backend::wgpu::WgpuRuntime>());
    }
    #[cfg(feature = "cuda")]
    if backs::<B, cubecl::cuda::CudaRuntime>() {
        return Ok(op.run::<cubecl::cuda::CudaRuntime>());
    }
    Err(op)
}

/// Whether the kernels run on backend `B`: it is a CubeCL backend this
/// build has, and the kernels are [`enabled`](super::enabled).
pub fn runs_on<B: Backend>() -> bool {
    if !super::enabled() {
        return false;
    }
    #[cfg(feature = "wgpu")]
    if backs::<B, burn::backend::wgpu::WgpuRuntime>() {
        return true;
    }
    #[cfg(feature = "cuda")]
    if backs::<B, cubecl::cuda::CudaRuntime>() {
        return true;
    }
    false
}

/// Whether `B`'s float tensors are CubeCL tensors of runtime `R`.
fn backs<B: Backend, R: CubeRuntime>() -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<CubeTensor<R>>()
}

/// `value` as type `U`, which it is (checked by [`on_cube`] before any
/// kernel runs).
fn cast<T: 'static, U: 'static>(value: T) -> U {
    let boxed: Box<dyn Any> = Box::new(value);
    *boxed
        .downcast::<U>()
        .unwrap_or_else(|_| panic!("on_cube runs a kernel only on its own runtime"))
}

/// A float tensor of `B` as the CubeCL tensor it is.
pub(crate) fn float_in<B: Backend, R: CubeRuntime>(tensor: FloatTensor<B>) -> CubeTensor<R> {
    cast(tensor)
}

/// A CubeCL tensor as `B`'s float tensor.
pub(crate) fn float_out<B: Backend, R: CubeRuntime>(tensor: CubeTensor<R>) -> FloatTensor<B> {
    cast(tensor)
}

/// Units per cube: `wanted` or the device's limit, whichever is smaller,
/// rounded down to a power of two (the kernels' reduction trees halve it).
pub(crate) fn cube_width<R: CubeRuntime>(client: &ComputeClient<R>, wanted: u32) -> u32 {
    let units = wanted.min(client.properties().hardware.max_units_per_cube);
    1 << units.ilog2()
}

/// A float primitive a kernel returned, as a tensor again.
pub(crate) fn float_tensor<B: Backend, const D: usize>(
    primitive: FloatTensor<B>,
) -> burn::tensor::Tensor<B, D> {
    burn::tensor::Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(primitive))
}

/// A CubeCL tensor as `B`'s int tensor (the same type on CubeCL backends).
pub(crate) fn int_out<B: Backend, R: CubeRuntime>(tensor: CubeTensor<R>) -> IntTensor<B> {
    cast(tensor)
}
