//! Training a Llama-family model and its tokenizer from text files, with
//! burn's autodiff backend, into a Hugging Face checkpoint folder.
//!
//! - [`bpe`]: a byte-level BPE tokenizer trained by the `tokenizers` crate.
//! - [`corpus`]: text files split by file into training and held-out sets.
//! - [`init`]: initial weights, the residual projections scaled by depth.
//! - [`trainer`]: the loop (batched forwards, gradient accumulation, AdamW,
//!   warmup and cosine decay, held-out loss, checkpoints).
//! - [`resume`]: the f32 weights and optimizer state `--resume` continues from.
//! - [`export`]: `config.json`, `model.safetensors`, `generation_config.json`.

pub mod bpe;
pub mod corpus;
pub mod export;
pub mod init;
pub mod resume;
pub mod trainer;

pub use bpe::{END_OF_TEXT, train_tokenizer};
pub use corpus::Corpus;
pub use export::{StoreDtype, write_checkpoint};
pub use init::DepthScaledInit;
pub use resume::RESUME_DIR;
pub use trainer::{STATE_FILE, StepReport, TrainSpec, TrainerState, train};

use crate::device::DeviceSpec;
use crate::{ModelError, Result};
use dsi_core::TokenId;
use std::path::Path;

/// Runs [`train`] on burn's autodiff backend over the device `device` names.
pub fn train_on_device(
    device: DeviceSpec,
    spec: &TrainSpec,
    train_tokens: &[TokenId],
    held_out: &[TokenId],
    out: &Path,
    resume: bool,
    progress: impl FnMut(&StepReport),
) -> Result<TrainerState> {
    use burn::backend::Autodiff;
    match device {
        DeviceSpec::Cpu => train::<Autodiff<crate::device::CpuBackend>>(
            spec,
            train_tokens,
            held_out,
            out,
            resume,
            &Default::default(),
            progress,
        ),
        DeviceSpec::Ndarray => train::<Autodiff<crate::device::NdarrayBackend>>(
            spec,
            train_tokens,
            held_out,
            out,
            resume,
            &Default::default(),
            progress,
        ),
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu(index) => {
            crate::device::probe(device)?;
            let device = crate::device::wgpu_device(index);
            train::<Autodiff<crate::device::WgpuBackend>>(
                spec,
                train_tokens,
                held_out,
                out,
                resume,
                &device,
                progress,
            )
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(index) => train::<Autodiff<crate::device::CudaBackend>>(
            spec,
            train_tokens,
            held_out,
            out,
            resume,
            &burn::backend::cuda::CudaDevice::new(index),
            progress,
        ),
        #[allow(unreachable_patterns)]
        other => Err(ModelError::Device(format!(
            "this binary was built without the backend for {other}; rebuild with its cargo feature"
        ))),
    }
}
