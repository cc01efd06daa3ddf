//! What a loaded model computes in and how it stores its linear weights.

use burn::tensor::DType;
use dsi_kernels::weights::Format;

/// How a model keeps the weights of its projections (attention, MLP, LM
/// head): nine tenths of its bytes, read once per decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinearWeights {
    /// burn tensors in the run dtype, multiplied by the backend's kernels
    /// (or by the fixed-order f32 kernel, on a CPU backend with invariant
    /// numerics).
    #[default]
    Backend,
    /// `dsi_kernels` weights in this format, read as stored and widened to
    /// f32 in registers: CPU backends only, with f32 activations.
    Host(Format),
}

/// A model's run dtype (activations, caches, embeddings, norms) and its
/// linear weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precision {
    /// burn's dtype for everything but host weights.
    pub dtype: DType,
    /// The projections' weights.
    pub linear: LinearWeights,
}

impl Precision {
    /// f32 activations over host weights in `format` (a CPU backend).
    pub fn host(format: Format) -> Self {
        Self {
            dtype: DType::F32,
            linear: LinearWeights::Host(format),
        }
    }
}

impl From<DType> for Precision {
    /// Everything in `dtype`, as burn tensors.
    fn from(dtype: DType) -> Self {
        Self {
            dtype,
            linear: LinearWeights::Backend,
        }
    }
}
