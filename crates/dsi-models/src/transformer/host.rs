//! The CPU backends' f32 tensors as host slices, for the project's own
//! kernels (`dsi_kernels`): `cpu` (burn-flex) and `ndarray`. Every function
//! answers `None` when the backend is another one, the dtype is not f32 or
//! the layout does not fit; the caller then runs the backend's own ops.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use burn_ndarray::NdArrayTensor;
use dsi_kernels::attention::Segment;
use std::any::Any;

/// A CPU backend's f32 tensor, read in place.
pub(crate) enum HostF32 {
    /// The `cpu` backend's.
    Flex(FlexTensor),
    /// The `ndarray` backend's (always its `F32` variant).
    Ndarray(NdArrayTensor),
}

impl HostF32 {
    /// The tensor behind `t`, when a CPU backend holds it in f32.
    pub(crate) fn of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let primitive: Box<dyn Any> = Box::new(t.into_primitive().tensor());
        match primitive.downcast::<FlexTensor>() {
            Ok(t) => Some(Self::Flex(*t)),
            Err(other) => match *other.downcast::<NdArrayTensor>().ok()? {
                t @ NdArrayTensor::F32(_) => Some(Self::Ndarray(t)),
                _ => None,
            },
        }
    }

    /// The same values row-major and dense, copied only when they are not.
    pub(crate) fn contiguous(self) -> Self {
        match self {
            Self::Flex(t) => Self::Flex(t.to_contiguous()),
            Self::Ndarray(NdArrayTensor::F32(s)) if !s.view().is_standard_layout() => {
                let view = s.view();
                let data = TensorData::new(view.iter().copied().collect(), view.shape());
                Self::Ndarray(NdArrayTensor::from_data(data))
            }
            dense => dense,
        }
    }

    /// The values, when row-major and dense.
    pub(crate) fn slice(&self) -> Option<&[f32]> {
        match self {
            Self::Flex(t) => t.as_slice::<f32>(),
            Self::Ndarray(NdArrayTensor::F32(s)) => s.view().to_slice(),
            Self::Ndarray(_) => None,
        }
    }

    /// A cache segment's keys or values as the attention kernel reads
    /// them: a `[kv_heads, used, dim]` view from the start of the segment's
    /// `[kv_heads, size, dim]` buffer (`cpu`), or a dense `[kv_heads, used,
    /// dim]` copy (`ndarray`, see [`HostF32::contiguous`]).
    pub(crate) fn segment(&self, dim: usize) -> Option<Segment<'_>> {
        match self {
            Self::Flex(t) => {
                let layout = t.layout();
                let strides = layout.strides();
                if strides[1] != dim as isize || strides[2] != 1 || strides[0] < 0 {
                    return None;
                }
                Some(Segment {
                    data: &t.storage::<f32>()[layout.start_offset()..],
                    size: strides[0] as usize / dim.max(1),
                    len: layout.shape()[1],
                })
            }
            Self::Ndarray(t) => {
                let NdArrayTensor::F32(s) = t else {
                    return None;
                };
                let used = *s.shape().get(1)?;
                Some(Segment {
                    data: self.slice()?,
                    size: used,
                    len: used,
                })
            }
        }
    }
}

/// `values` in `shape` as a tensor of `B`, when `B` is a CPU backend.
pub(crate) fn from_host<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
) -> Option<Tensor<B, D>> {
    let data = TensorData::new(values, shape);
    let tensor: Box<dyn Any> = if std::any::TypeId::of::<B::FloatTensorPrimitive>()
        == std::any::TypeId::of::<FlexTensor>()
    {
        Box::new(FlexTensor::from_data(data))
    } else {
        Box::new(NdArrayTensor::from_data(data))
    };
    tensor
        .downcast::<B::FloatTensorPrimitive>()
        .ok()
        .map(|t| Tensor::from_primitive(TensorPrimitive::Float(*t)))
}

/// `dest[:, at..at + n, :] = rows` (`dest` `[heads, size, dim]`, `rows`
/// `[heads, n, dim]`) written in place when `dest` is the `cpu` backend's
/// f32 tensor, dense and owned by no one else; otherwise `dest` comes back
/// untouched for the caller to assign by burn's ops.
///
/// burn-flex 0.21's `slice_assign` copies its whole destination on every
/// call (it keeps the input alive beside the `to_contiguous` clone, so the
/// copy-on-write always fires): for a KV-cache segment that is a copy of
/// the segment per layer per forward, which grows with the context.
pub(crate) fn assign_rows<B: Backend>(
    dest: Tensor<B, 3>,
    at: usize,
    rows: &Tensor<B, 3>,
) -> std::result::Result<Tensor<B, 3>, Tensor<B, 3>> {
    let [heads, size, dim] = dest.dims();
    let n = rows.dims()[1];
    if dest.dtype() != DType::F32 || at + n > size {
        return Err(dest);
    }
    let Some(source) = HostF32::of(rows.clone()).map(HostF32::contiguous) else {
        return Err(dest);
    };
    let primitive: Box<dyn Any> = Box::new(dest.into_primitive().tensor());
    let back = |primitive: Box<dyn Any>| -> Tensor<B, 3> {
        match primitive.downcast::<B::FloatTensorPrimitive>() {
            Ok(t) => Tensor::from_primitive(TensorPrimitive::Float(*t)),
            Err(_) => unreachable!("the primitive came from a tensor of B"),
        }
    };
    let mut flex = match primitive.downcast::<FlexTensor>() {
        Ok(flex) => flex,
        Err(other) => return Err(back(other)),
    };
    let whole = flex.is_contiguous() && flex.layout().start_offset() == 0;
    let written = match (whole, source.slice(), flex.try_storage_mut::<f32>()) {
        (true, Some(source), Some(storage)) if storage.len() == heads * size * dim => {
            for (h, head) in source.chunks_exact(n * dim).enumerate() {
                let start = (h * size + at) * dim;
                storage[start..start + n * dim].copy_from_slice(head);
            }
            true
        }
        _ => false,
    };
    let dest = back(flex);
    if written { Ok(dest) } else { Err(dest) }
}
