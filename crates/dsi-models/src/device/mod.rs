//! Backends behind cargo features, device names, and the run dtype.
//!
//! The binary chooses a backend once and hands a generic function to
//! [`dispatch`]; everything below stays generic over burn's `Backend`.
//! The CPU backends are always built: burn-flex (`cpu`, the default: gemm
//! with SIMD and threads, 7-20x faster than ndarray on batch-1 decode here)
//! and burn-ndarray (`ndarray`, the reference). `wgpu` is built by default,
//! `cuda` on request.

mod probe;

pub use probe::probe;

use crate::transformer::{Numerics, Precision};
use crate::{ModelError, Result};
pub use burn::tensor::DType;
pub use burn::tensor::backend::Backend;
use dsi_kernels::weights::Format;
use std::fmt;
use std::str::FromStr;

/// The fast CPU backend.
pub type CpuBackend = burn::backend::Flex;
/// The reference CPU backend.
pub type NdarrayBackend = burn::backend::NdArray<f32>;
/// The portable GPU backend (Vulkan, Metal, DX12, WebGPU).
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu;
/// The NVIDIA backend.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// Where a model runs: `cpu`, `ndarray`, `wgpu`, `wgpu:N`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// burn's flex backend on the CPU.
    Cpu,
    /// burn's ndarray backend on the CPU.
    Ndarray,
    /// burn's wgpu backend; `None` picks the default adapter.
    Wgpu(Option<usize>),
    /// burn's CUDA backend, GPU `N`.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            ModelError::Device(format!(
                "unknown backend {s:?}: expected cpu, ndarray, wgpu, wgpu:N, cuda or cuda:N"
            ))
        };
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => (kind, Some(index.parse::<usize>().map_err(|_| bad())?)),
            None => (s, None),
        };
        match kind {
            "cpu" | "flex" if index.is_none() => Ok(DeviceSpec::Cpu),
            "ndarray" if index.is_none() => Ok(DeviceSpec::Ndarray),
            "wgpu" => Ok(DeviceSpec::Wgpu(index)),
            "cuda" => Ok(DeviceSpec::Cuda(index.unwrap_or(0))),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Ndarray => f.write_str("ndarray"),
            DeviceSpec::Wgpu(None) => f.write_str("wgpu"),
            DeviceSpec::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// The backend without its device index: `cpu`, `ndarray`, `wgpu`, `cuda`.
    pub fn kind(self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "cpu",
            DeviceSpec::Ndarray => "ndarray",
            DeviceSpec::Wgpu(_) => "wgpu",
            DeviceSpec::Cuda(_) => "cuda",
        }
    }

    /// Host threads a model on this device should split projections over:
    /// every core on the CPU backends, 1 on GPUs.
    pub fn host_threads(self) -> usize {
        match self {
            DeviceSpec::Cpu | DeviceSpec::Ndarray => {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            }
            DeviceSpec::Wgpu(_) | DeviceSpec::Cuda(_) => 1,
        }
    }
}

/// The dtype weights, activations and caches are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunDtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit projection weights in blocks of 32 with an f32 scale (the
    /// project's CPU kernels; embeddings and norms in f32).
    Q8,
}

impl RunDtype {
    /// How a model runs in this dtype on `spec` with `numerics`.
    ///
    /// On the CPU backends with invariant numerics the projections keep
    /// their weights in the project's kernels' format (f16, bf16 and q8
    /// widened in registers, activations f32): decode reads half or a
    /// quarter of the bytes. Elsewhere everything runs in burn's dtype; q8
    /// exists only on the CPU kernels.
    pub fn precision(self, spec: DeviceSpec, numerics: Numerics) -> Result<Precision> {
        let cpu = matches!(spec, DeviceSpec::Cpu | DeviceSpec::Ndarray);
        let format = match self {
            RunDtype::F32 => Format::F32,
            RunDtype::F16 => Format::F16,
            RunDtype::Bf16 => Format::Bf16,
            RunDtype::Q8 => Format::Q8,
        };
        match (self, cpu, numerics) {
            (_, true, Numerics::Invariant) => Ok(Precision::host(format)),
            (RunDtype::Q8, true, Numerics::Fast) => Err(ModelError::Device(
                "q8 weights run on the project's CPU kernels: drop --numerics fast".into(),
            )),
            (RunDtype::Q8, false, _) => Err(ModelError::Device(format!(
                "q8 weights run on the cpu backend only; on {spec} use --dtype f16 or bf16"
            ))),
            (RunDtype::F32, ..) => Ok(DType::F32.into()),
            (RunDtype::F16, ..) => Ok(DType::F16.into()),
            (RunDtype::Bf16, ..) => Ok(DType::BF16.into()),
        }
    }

    /// burn's dtype for this run dtype without host weights (q8: f32).
    fn burn_dtype(self) -> DType {
        match self {
            RunDtype::F32 | RunDtype::Q8 => DType::F32,
            RunDtype::F16 => DType::F16,
            RunDtype::Bf16 => DType::BF16,
        }
    }

    /// The default for a backend: bf16 on CUDA, f16 on a wgpu device that
    /// supports it, f32 otherwise.
    pub fn default_for<B: Backend>(spec: DeviceSpec, device: &B::Device) -> Self {
        let preferred = match spec {
            DeviceSpec::Cpu | DeviceSpec::Ndarray => RunDtype::F32,
            DeviceSpec::Wgpu(_) => RunDtype::F16,
            DeviceSpec::Cuda(_) => RunDtype::Bf16,
        };
        if B::supports_dtype(device, preferred.burn_dtype()) {
            preferred
        } else {
            RunDtype::F32
        }
    }
}

impl FromStr for RunDtype {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(RunDtype::F32),
            "f16" => Ok(RunDtype::F16),
            "bf16" => Ok(RunDtype::Bf16),
            "q8" => Ok(RunDtype::Q8),
            other => Err(ModelError::Device(format!(
                "unknown dtype {other:?}: expected f32, f16, bf16 or q8"
            ))),
        }
    }
}

/// Sets up WebGPU on the default wgpu device, the only way a browser
/// allows (burn's synchronous setup panics there), and names the adapter.
#[cfg(all(feature = "wgpu", target_arch = "wasm32"))]
pub async fn init_webgpu() -> (burn::backend::wgpu::WgpuDevice, String) {
    use burn::backend::wgpu::{WgpuDevice, graphics::WebGpu, init_setup_async};
    let device = WgpuDevice::default();
    let setup = init_setup_async::<WebGpu>(&device, Default::default()).await;
    let info = setup.adapter.get_info();
    (device, format!("{} ({:?})", info.name, info.backend))
}

/// A computation generic over the backend, run by [`dispatch`].
pub trait OnBackend {
    /// What the computation returns.
    type Output;
    /// Runs on backend `B`, device `device`.
    fn run<B: Backend>(self, spec: DeviceSpec, device: B::Device) -> Self::Output;
}

/// Runs `job` on the backend and device `spec` names, or explains which
/// cargo feature the binary lacks, or what to install when the device
/// cannot start (see [`probe`]).
pub fn dispatch<J: OnBackend>(spec: DeviceSpec, job: J) -> Result<J::Output> {
    match spec {
        DeviceSpec::Cpu => Ok(job.run::<CpuBackend>(spec, burn::backend::flex::FlexDevice)),
        DeviceSpec::Ndarray => {
            Ok(job.run::<NdarrayBackend>(spec, burn::backend::ndarray::NdArrayDevice::Cpu))
        }
        DeviceSpec::Wgpu(index) => wgpu(spec, index, job),
        DeviceSpec::Cuda(index) => cuda(spec, index, job),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu<J: OnBackend>(spec: DeviceSpec, index: Option<usize>, job: J) -> Result<J::Output> {
    probe(spec)?;
    Ok(job.run::<WgpuBackend>(spec, wgpu_device(index)))
}

/// burn's wgpu device for `wgpu` (the default adapter) or `wgpu:N` (the
/// `N`-th discrete GPU).
#[cfg(feature = "wgpu")]
pub fn wgpu_device(index: Option<usize>) -> burn::backend::wgpu::WgpuDevice {
    use burn::backend::wgpu::WgpuDevice;
    index.map_or(WgpuDevice::DefaultDevice, WgpuDevice::DiscreteGpu)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu<J: OnBackend>(_: DeviceSpec, _: Option<usize>, _: J) -> Result<J::Output> {
    Err(not_built("wgpu", "wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda<J: OnBackend>(spec: DeviceSpec, index: usize, job: J) -> Result<J::Output> {
    probe(spec)?;
    Ok(job.run::<CudaBackend>(spec, burn::backend::cuda::CudaDevice::new(index)))
}

#[cfg(not(feature = "cuda"))]
fn cuda<J: OnBackend>(_: DeviceSpec, _: usize, _: J) -> Result<J::Output> {
    Err(not_built("CUDA", "cuda"))
}

/// The error for a backend whose cargo feature this binary was built
/// without.
#[cfg(any(not(feature = "wgpu"), not(feature = "cuda")))]
fn not_built(backend: &str, feature: &str) -> ModelError {
    ModelError::Device(format!(
        "this binary was built without the {backend} backend; rebuild with --features {feature}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!(
            "ndarray".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Ndarray
        );
        assert_eq!(
            "wgpu".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Wgpu(None)
        );
        assert_eq!(
            "wgpu:1".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Wgpu(Some(1))
        );
        assert_eq!("cuda:2".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(2));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Wgpu(Some(3)).to_string(), "wgpu:3");
    }
}
