//! What `--resume` needs to continue exactly where a run stopped: the
//! weights in f32 (the checkpoint beside them may be stored in f16) and the
//! optimizer's state (AdamW's moments and step count per parameter), as
//! burn records in `resume/` inside the output folder.
//!
//! The optimizer keys its state by parameter id; the model's record carries
//! those ids, so loading it gives the parameters back the ids the
//! optimizer's record names.

use crate::transformer::Transformer;
use crate::{ModelError, Result};
use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use std::path::{Path, PathBuf};

/// Folder of the resume state inside the output folder.
pub const RESUME_DIR: &str = "resume";

type Files = BinFileRecorder<FullPrecisionSettings>;

/// The resume folder and its two records (the recorder adds `.bin`).
fn paths(out: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = out.join(RESUME_DIR);
    let (model, optim) = (dir.join("model"), dir.join("optimizer"));
    (dir, model, optim)
}

fn error(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Json {
        path: path.with_extension("bin"),
        what: "resume state (a burn record)",
        reason: reason.to_string(),
    }
}

/// Writes the model's f32 weights and `optim`'s state into `out/resume/`.
pub fn save<B, O>(out: &Path, model: &Transformer<B>, optim: &O) -> Result<()>
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
{
    let (dir, model_path, optim_path) = paths(out);
    std::fs::create_dir_all(&dir).map_err(|source| ModelError::Io { path: dir, source })?;
    let files = Files::new();
    files
        .record(model.clone().into_record(), model_path.clone())
        .map_err(|e| error(&model_path, e))?;
    files
        .record(optim.to_record(), optim_path.clone())
        .map_err(|e| error(&optim_path, e))?;
    Ok(())
}

/// Loads what [`save`] wrote into `model` and `optim`.
pub fn load<B, O>(
    out: &Path,
    model: Transformer<B>,
    optim: O,
    device: &B::Device,
) -> Result<(Transformer<B>, O)>
where
    B: AutodiffBackend,
    O: Optimizer<Transformer<B>, B>,
{
    let (_, model_path, optim_path) = paths(out);
    for path in [&model_path, &optim_path] {
        let path = path.with_extension("bin");
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path,
                what: "--resume continues from the weights and optimizer state a run writes \
                       there at each evaluation; this folder has none (trained before they \
                       were saved, or resume/ was removed): train afresh without --resume",
            });
        }
    }
    let files = Files::new();
    let record = files
        .load(model_path.clone(), device)
        .map_err(|e| error(&model_path, e))?;
    let state = files
        .load(optim_path.clone(), device)
        .map_err(|e| error(&optim_path, e))?;
    Ok((model.load_record(record), optim.load_record(state)))
}
