//! What the real-model benchmarks share: settings from the environment and
//! the bundled pair loaded on the CPU.

use dsi::models::checkpoint::Checkpoint;
use dsi::models::device::{CpuBackend, DeviceSpec, RunDtype};
use dsi::models::transformer::LoadedModel;
use dsi::models::transformer::Numerics;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `$name` as a number, or `default`.
pub(crate) fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bundled pair's folder.
pub(crate) fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pystd")
}

/// A checkpoint and its weights in f32 on the CPU backend, as `dsi` loads
/// them (the project's kernels, invariant numerics).
pub(crate) fn load(dir: &Path) -> (Checkpoint, Arc<LoadedModel<CpuBackend>>) {
    let checkpoint = Checkpoint::open(dir).expect("the bundled pair (models/pystd)");
    let model = LoadedModel::<CpuBackend>::from_checkpoint(
        &checkpoint,
        &Default::default(),
        RunDtype::F32
            .precision(DeviceSpec::Cpu, Numerics::default())
            .expect("f32 runs on the cpu backend"),
        |_, _| {},
    )
    .expect("weights")
    .with_host_threads(DeviceSpec::Cpu.host_threads());
    (checkpoint, Arc::new(model))
}
