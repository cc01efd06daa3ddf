//! Whether a backend can start on this machine, asked before burn is.
//!
//! burn's wgpu backend panics deep inside cubecl when no adapter exists
//! ("No possible adapter available"), on the first tensor op. Asking wgpu
//! the same question first, the way cubecl will ask it, turns that into a
//! one-line error that names the fix.

use super::DeviceSpec;
use crate::Result;

/// Checks that `spec` can start, and describes the device it will run on.
///
/// The CPU backends always can. For wgpu this asks for the adapter cubecl
/// will pick (the default adapter, or the `N`-th discrete GPU for `wgpu:N`);
/// for CUDA, whether the driver library loads and has GPU `N`. A missing
/// one is [`ModelError::Unavailable`] with what to install. A binary built
/// without a backend's feature gets [`ModelError::Device`].
pub fn probe(spec: DeviceSpec) -> Result<String> {
    match spec {
        DeviceSpec::Cpu => Ok("cpu (burn-flex)".into()),
        DeviceSpec::Ndarray => Ok("cpu (burn-ndarray)".into()),
        DeviceSpec::Wgpu(index) => wgpu_adapter(index),
        DeviceSpec::Cuda(index) => cuda_device(index),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_adapter(index: Option<usize>) -> Result<String> {
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};

    let backend = AutoGraphicsApi::backend();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = match index {
        None => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
        }))
        .ok(),
        Some(n) => nth_discrete_adapter(&instance, backend, n),
    };
    let Some(adapter) = adapter else {
        let what = match index {
            None => format!("no {backend:?} adapter was found"),
            Some(n) => format!("no {backend:?} GPU number {n} was found (wgpu:{n})"),
        };
        return Err(crate::ModelError::Unavailable {
            backend: DeviceSpec::Wgpu(index).to_string(),
            reason: what,
            install: VULKAN_DRIVER,
        });
    };
    let info = adapter.get_info();
    Ok(format!(
        "{} ({:?}, {:?}, driver {})",
        info.name, info.backend, info.device_type, info.driver_info
    ))
}

/// What to install when Vulkan has no adapter, per platform.
#[cfg(feature = "wgpu")]
const VULKAN_DRIVER: &str = if cfg!(target_os = "linux") {
    "a Vulkan driver (Debian: apt-get install mesa-vulkan-drivers libvulkan1, \
     whose lavapipe runs on the CPU)"
} else {
    "your GPU's driver"
};

/// The adapter cubecl picks for `WgpuDevice::DiscreteGpu(n)`: the `n`-th
/// discrete GPU, else the `n`-th adapter of type "other".
#[cfg(feature = "wgpu")]
fn nth_discrete_adapter(
    instance: &wgpu::Instance,
    backend: wgpu::Backend,
    n: usize,
) -> Option<wgpu::Adapter> {
    let adapters = pollster::block_on(instance.enumerate_adapters(backend.into()));
    let (mut discrete, mut other): (Vec<_>, Vec<_>) = adapters
        .into_iter()
        .filter(|a| {
            matches!(
                a.get_info().device_type,
                wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::Other
            )
        })
        .partition(|a| a.get_info().device_type == wgpu::DeviceType::DiscreteGpu);
    if n < discrete.len() {
        Some(discrete.swap_remove(n))
    } else if n < other.len() {
        Some(other.swap_remove(n))
    } else {
        None
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_adapter(_: Option<usize>) -> Result<String> {
    Err(super::not_built("wgpu", "wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<String> {
    use cudarc::driver::result;

    let unavailable = |reason: String| crate::ModelError::Unavailable {
        backend: DeviceSpec::Cuda(index).to_string(),
        reason,
        install: NVIDIA_DRIVER,
    };
    // SAFETY: tries to load the driver library (dlopen of libcuda) and says
    // whether it loaded; calls nothing in it. burn's CUDA backend would
    // panic on its first tensor without it.
    #[allow(unsafe_code)]
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    if !present {
        return Err(unavailable("no CUDA driver (libcuda.so) was found".into()));
    }
    result::init().map_err(|e| unavailable(format!("the CUDA driver did not start ({e:?})")))?;
    let count = result::device::get_count()
        .map_err(|e| unavailable(format!("the CUDA driver lists no GPUs ({e:?})")))?;
    let count = usize::try_from(count).unwrap_or(0);
    if index >= count {
        return Err(unavailable(format!(
            "there is no GPU number {index} (cuda:{index}); the driver lists {count}"
        )));
    }
    Ok(format!("cuda:{index} (GPU {} of {count})", index + 1))
}

/// What to install when CUDA has no GPU.
#[cfg(feature = "cuda")]
const NVIDIA_DRIVER: &str =
    "the NVIDIA driver (nvidia-smi lists the GPUs it drives; pick one of them with cuda:N)";

#[cfg(not(feature = "cuda"))]
fn cuda_device(_: usize) -> Result<String> {
    Err(super::not_built("CUDA", "cuda"))
}
