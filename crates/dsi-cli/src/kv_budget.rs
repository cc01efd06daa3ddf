//! The KV-cache budget of each device when `--kv-cache-mib` is not given.
//!
//! On the CPU backends caches share the machine's memory with everything
//! else, so the default is half of what the OS reports available once the
//! weights are loaded. A GPU's free memory is not asked (burn does not
//! expose it); the default there is a fixed 4 GiB.

use crate::exit::UsageError;
use dsi_models::device::DeviceSpec;

/// Fixed default for GPU devices.
const GPU_DEFAULT: usize = 4 << 30;
/// Used when the available memory cannot be read (not Linux).
const CPU_FALLBACK: usize = 2 << 30;

/// The budget in bytes for `device`: `--kv-cache-mib` when given (0 is
/// refused), else the default; and how it was chosen.
pub(crate) fn for_device(
    kv_cache_mib: Option<usize>,
    device: DeviceSpec,
) -> anyhow::Result<(usize, &'static str)> {
    match kv_cache_mib {
        Some(0) => Err(UsageError("invalid kv-cache-mib: 0 (expected at least 1)".into()).into()),
        Some(mib) => Ok((mib.saturating_mul(1 << 20), "--kv-cache-mib")),
        None => Ok(default_for(device)),
    }
}

/// The default budget in bytes for `device`, and how it was chosen.
pub(crate) fn default_for(device: DeviceSpec) -> (usize, &'static str) {
    match device {
        DeviceSpec::Cpu | DeviceSpec::Ndarray => match available_memory() {
            Some(bytes) => (bytes / 2, "half the available memory"),
            None => (CPU_FALLBACK, "a fixed default: available memory unknown"),
        },
        DeviceSpec::Wgpu(_) | DeviceSpec::Cuda(_) => (GPU_DEFAULT, "a fixed default for GPUs"),
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_get_the_fixed_default_and_cpus_a_positive_one() {
        assert_eq!(default_for(DeviceSpec::Cuda(0)).0, GPU_DEFAULT);
        assert!(default_for(DeviceSpec::Cpu).0 > 0);
    }
}
