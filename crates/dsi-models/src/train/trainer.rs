//! The training loop: next-token cross-entropy on random windows of the
//! token stream, AdamW with warmup and cosine decay, the held-out loss on
//! fixed windows, periodic checkpoints.
//!
//! The model is the inference model itself (`LoadedModel` over burn's
//! autodiff backend), fed one sequence at a time into a fresh KV cache: what
//! is trained is exactly what later serves.

use super::export::{StoreDtype, write_checkpoint};
use crate::checkpoint::{RandomWeights, SafetensorsFiles, TensorSource};
use crate::config::ModelConfig;
use crate::transformer::{LoadedModel, Transformer};
use crate::{ModelError, Result};
use burn::module::AutodiffModule;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Int, Tensor, TensorData, activation::log_softmax};
use dsi_core::TokenId;
use dsi_core::rng::{SplitMix64, derive_seed};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Standard deviation of the initial weights.
const INIT_STD: f32 = 0.02;

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// The architecture.
    pub config: ModelConfig,
    /// Optimizer steps in all (a resumed run continues to this count).
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warmup.
    pub warmup: usize,
    /// Seed of the initial weights and of the window sampling.
    pub seed: u64,
    /// Evaluate the held-out loss (and write a checkpoint) every this many steps.
    pub eval_every: usize,
    /// Held-out windows per evaluation.
    pub eval_windows: usize,
    /// Storage dtype of the written weights.
    pub store: StoreDtype,
}

/// What the loop reports after each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// Mean training loss of this step (nats per token).
    pub loss: f64,
    /// Training tokens per second since the run (or resume) began.
    pub tokens_per_s: f64,
    /// The latest held-out loss, once evaluated.
    pub held_out_loss: Option<f64>,
}

/// Saved beside the weights so `--resume` continues the schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps done.
    pub step: usize,
    /// The latest held-out loss.
    pub held_out_loss: Option<f64>,
    /// Seconds of training so far, over every resume.
    pub train_seconds: f64,
}

/// File name of [`TrainerState`] in the output folder.
pub const STATE_FILE: &str = "trainer_state.json";

/// Trains on `train_tokens`, evaluates on `held_out`, and writes the model to
/// `out` at every evaluation and at the end. With `resume`, continues from the
/// weights and state in `out` (the optimizer's moments start afresh).
pub fn train<B: AutodiffBackend>(
    spec: &TrainSpec,
    train_tokens: &[TokenId],
    held_out: &[TokenId],
    out: &Path,
    resume: bool,
    device: &B::Device,
    mut progress: impl FnMut(&StepReport),
) -> Result<TrainerState> {
    let need = spec.seq_len + 1;
    for (what, stream) in [("training", train_tokens), ("held-out", held_out)] {
        if stream.len() <= need {
            return Err(ModelError::InvalidConfig {
                field: "corpus",
                reason: format!(
                    "the {what} set has {} tokens, fewer than one window of {need}; add text or shorten --seq-len",
                    stream.len()
                ),
            });
        }
    }
    let mut state = TrainerState {
        step: 0,
        held_out_loss: None,
        train_seconds: 0.0,
    };
    let weights: Box<dyn TensorSource> = if resume {
        let text =
            std::fs::read_to_string(out.join(STATE_FILE)).map_err(|source| ModelError::Io {
                path: out.join(STATE_FILE),
                source,
            })?;
        state = serde_json::from_str(&text).map_err(|e| ModelError::Json {
            path: out.join(STATE_FILE),
            what: "trainer state",
            reason: e.to_string(),
        })?;
        Box::new(SafetensorsFiles::open_dir(out)?)
    } else {
        Box::new(RandomWeights {
            seed: spec.seed,
            std: INIT_STD,
        })
    };
    let mut model = LoadedModel::<B>::from_weights(
        &spec.config,
        weights.as_ref(),
        device,
        DType::F32,
        |_, _| {},
    )?;
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.01)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init::<B, Transformer<B>>();

    let began = Instant::now();
    let seconds_before = state.train_seconds;
    let first_step = state.step;
    while state.step < spec.steps {
        let mut rng = SplitMix64::new(derive_seed(spec.seed, state.step as u64));
        let mut total: Option<Tensor<B, 1>> = None;
        for _ in 0..spec.batch {
            let start = (rng.next_u64() as usize) % (train_tokens.len() - need);
            let loss = sequence_loss(&model, &train_tokens[start..start + need])?;
            total = Some(match total {
                Some(t) => t + loss,
                None => loss,
            });
        }
        let Some(total) = total else {
            break;
        };
        let loss = total / spec.batch.max(1) as f32;
        let loss_value = scalar(loss.clone())?;
        if !loss_value.is_finite() {
            return Err(ModelError::InvalidConfig {
                field: "lr",
                reason: format!(
                    "the loss diverged at step {} ({loss_value}); lower --lr",
                    state.step
                ),
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model.model);
        model.model = optim.step(learning_rate(spec, state.step), model.model.clone(), grads);
        state.step += 1;
        state.train_seconds = seconds_before + began.elapsed().as_secs_f64();
        let done = state.step == spec.steps;
        if state.step.is_multiple_of(spec.eval_every.max(1)) || done {
            state.held_out_loss = Some(held_out_loss(&model, held_out, spec)?);
            save(&model, spec, out, &state)?;
        }
        let tokens = ((state.step - first_step) * spec.batch * spec.seq_len) as f64;
        progress(&StepReport {
            step: state.step,
            steps: spec.steps,
            loss: loss_value,
            tokens_per_s: tokens / began.elapsed().as_secs_f64().max(1e-9),
            held_out_loss: state.held_out_loss,
        });
    }
    Ok(state)
}

/// Mean next-token cross-entropy of one window (`n + 1` tokens).
fn sequence_loss<B: burn::tensor::backend::Backend>(
    model: &LoadedModel<B>,
    window: &[TokenId],
) -> Result<Tensor<B, 1>> {
    let n = window.len() - 1;
    let mut cache = model.new_cache(n);
    let logits = model.forward_tensor(&window[..n], &mut cache)?;
    let targets: Vec<i32> = window[1..].iter().map(|&t| t as i32).collect();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [n]), &model.device)
        .reshape([n, 1]);
    let picked = log_softmax(logits, 1).gather(1, targets);
    Ok(picked.mean().neg())
}

/// Mean loss over `spec.eval_windows` evenly spaced held-out windows, on
/// the inner backend (no gradients).
fn held_out_loss<B: AutodiffBackend>(
    model: &LoadedModel<B>,
    held_out: &[TokenId],
    spec: &TrainSpec,
) -> Result<f64> {
    let inner = LoadedModel::<B::InnerBackend>::new(
        model.model.valid(),
        model.config.clone(),
        model.device.clone(),
        model.precision(),
    );
    let need = spec.seq_len + 1;
    let windows = spec.eval_windows.max(1);
    let stride = ((held_out.len() - need) / windows).max(1);
    let mut sum = 0.0;
    let mut count = 0;
    for w in 0..windows {
        let start = (w * stride).min(held_out.len() - need);
        sum += scalar(sequence_loss(&inner, &held_out[start..start + need])?)?;
        count += 1;
    }
    Ok(sum / count as f64)
}

fn save<B: AutodiffBackend>(
    model: &LoadedModel<B>,
    spec: &TrainSpec,
    out: &Path,
    state: &TrainerState,
) -> Result<()> {
    write_checkpoint(out, &model.model.valid(), &spec.config, spec.store)?;
    let path = out.join(STATE_FILE);
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(|source| ModelError::Io { path, source })
}

/// Linear warmup to `lr`, then cosine decay to a tenth of it.
fn learning_rate(spec: &TrainSpec, step: usize) -> f64 {
    if step < spec.warmup {
        return spec.lr * (step + 1) as f64 / spec.warmup as f64;
    }
    let span = spec.steps.saturating_sub(spec.warmup).max(1) as f64;
    let progress = ((step - spec.warmup) as f64 / span).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    spec.lr * (0.1 + 0.9 * cosine)
}

fn scalar<B: burn::tensor::backend::Backend>(t: Tensor<B, 1>) -> Result<f64> {
    let values = t
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
    Ok(values.first().copied().unwrap_or(f64::NAN))
}
