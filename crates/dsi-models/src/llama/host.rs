//! The `cpu` backend's f32 tensors as host slices, for the project's own
//! kernels (`dsi_kernels`). Every function answers `None` when the backend
//! is another one or the dtype is not f32; the caller then runs the
//! backend's own ops.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use std::any::Any;

/// The `cpu` backend's tensor behind `t`.
pub(crate) fn flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<FlexTensor> {
    if t.dtype() != DType::F32 {
        return None;
    }
    let primitive: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    primitive.downcast::<FlexTensor>().ok().map(|t| *t)
}

/// `values` in `shape` as a tensor of `B`, when `B` is the `cpu` backend.
pub(crate) fn from_host<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
) -> Option<Tensor<B, D>> {
    let tensor: Box<dyn Any> = Box::new(FlexTensor::from_data(TensorData::new(values, shape)));
    tensor
        .downcast::<B::FloatTensorPrimitive>()
        .ok()
        .map(|t| Tensor::from_primitive(TensorPrimitive::Float(*t)))
}
