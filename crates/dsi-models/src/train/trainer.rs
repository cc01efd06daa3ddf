//! The training loop: next-token cross-entropy on random windows of the
//! token stream, AdamW with warmup and cosine decay, the held-out loss on
//! fixed windows, periodic checkpoints and resume states.
//!
//! The model is the inference model itself (`LoadedModel` over burn's
//! autodiff backend): a step feeds `batch` windows through
//! [`LoadedModel::forward_batch`], each into its own fresh KV cache, so the
//! projections, MLPs and LM head run once over every window's rows, and
//! what is trained is exactly what later serves. `accumulate` such
//! forwards add their gradients before one optimizer step.

use super::export::{StoreDtype, write_checkpoint};
use super::init::DepthScaledInit;
use super::resume;
use crate::config::ModelConfig;
use crate::loss::{batch_loss, check_stream, even_windows, mean_loss, scalar};
use crate::transformer::{LoadedModel, Transformer};
use crate::{ModelError, Result};
use burn::module::AutodiffModule;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Tensor};
use dsi_core::TokenId;
use dsi_core::rng::{SplitMix64, derive_seed};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Standard deviation of the initial weights (the residual projections'
/// is scaled down by depth, see [`DepthScaledInit`]).
const INIT_STD: f32 = 0.02;

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// The architecture.
    pub config: ModelConfig,
    /// Optimizer steps in all (a resumed run continues to this count).
    pub steps: usize,
    /// Sequences per forward.
    pub batch: usize,
    /// Forwards whose gradients add up before each optimizer step: a step
    /// sees `batch * accumulate` sequences.
    pub accumulate: usize,
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

impl TrainSpec {
    /// Training tokens (predicted positions) per optimizer step.
    pub fn tokens_per_step(&self) -> usize {
        self.batch * self.accumulate.max(1) * self.seq_len
    }
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
    /// The learning rate this step used.
    pub lr: f64,
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
    /// Training tokens seen so far, over every resume.
    #[serde(default)]
    pub tokens_seen: u64,
}

/// File name of [`TrainerState`] in the output folder.
pub const STATE_FILE: &str = "trainer_state.json";

/// Trains on `train_tokens`, evaluates on `held_out`, and writes the model
/// (and the state `--resume` needs, in `out/resume/`) to `out` at every
/// evaluation and at the end. With `resume`, continues exactly from that
/// state: the same weights, optimizer moments, schedule and windows as a
/// run that never stopped.
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
    check_stream("training", train_tokens, spec.seq_len)?;
    check_stream("held-out", held_out, spec.seq_len)?;
    let init = DepthScaledInit::new(&spec.config, spec.seed, INIT_STD);
    let mut model =
        LoadedModel::<B>::from_weights(&spec.config, &init, device, DType::F32, |_, _| {})?;
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.01)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init::<B, Transformer<B>>();
    let mut state = TrainerState {
        step: 0,
        held_out_loss: None,
        train_seconds: 0.0,
        tokens_seen: 0,
    };
    if resume {
        state = read_state(out)?;
        let (weights, moments) = resume::load(out, model.model, optim, device)?;
        model.model = weights;
        optim = moments;
    }

    let began = Instant::now();
    let seconds_before = state.train_seconds;
    let first_step = state.step;
    let accumulate = spec.accumulate.max(1);
    while state.step < spec.steps {
        // The step's windows depend on the seed and the step only, so a
        // resumed run draws what an uninterrupted one would.
        let mut rng = SplitMix64::new(derive_seed(spec.seed, state.step as u64));
        let mut grads = GradientsAccumulator::<Transformer<B>>::new();
        // Summed on the device and read once per step: one sync per step,
        // not one per forward.
        let mut step_loss: Option<Tensor<B::InnerBackend, 1>> = None;
        for _ in 0..accumulate {
            let windows: Vec<&[TokenId]> = (0..spec.batch)
                .map(|_| {
                    let start = (rng.next_u64() as usize) % (train_tokens.len() - need);
                    &train_tokens[start..start + need]
                })
                .collect();
            let loss = batch_loss(&model, &windows)? / accumulate as f32;
            let value = loss.clone().inner();
            step_loss = Some(match step_loss {
                Some(sum) => sum + value,
                None => value,
            });
            grads.accumulate(
                &model.model,
                GradientsParams::from_grads(loss.backward(), &model.model),
            );
        }
        let loss_sum = step_loss.map_or(Ok(0.0), scalar)?;
        if !loss_sum.is_finite() {
            return Err(ModelError::InvalidConfig {
                field: "lr",
                reason: format!(
                    "the loss diverged at step {} ({loss_sum}); lower --lr",
                    state.step
                ),
            });
        }
        let lr = learning_rate(spec, state.step);
        model.model = optim.step(lr, model.model.clone(), grads.grads());
        state.step += 1;
        state.tokens_seen += spec.tokens_per_step() as u64;
        state.train_seconds = seconds_before + began.elapsed().as_secs_f64();
        let done = state.step == spec.steps;
        if state.step.is_multiple_of(spec.eval_every.max(1)) || done {
            state.held_out_loss = Some(held_out_loss(&model, held_out, spec)?);
            save(&model, spec, out, &state)?;
            resume::save(out, &model.model, &optim)?;
        }
        let tokens = ((state.step - first_step) * spec.tokens_per_step()) as f64;
        progress(&StepReport {
            step: state.step,
            steps: spec.steps,
            loss: loss_sum,
            lr,
            tokens_per_s: tokens / began.elapsed().as_secs_f64().max(1e-9),
            held_out_loss: state.held_out_loss,
        });
    }
    Ok(state)
}

fn read_state(out: &Path) -> Result<TrainerState> {
    let path = out.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Json {
        path,
        what: "trainer state",
        reason: e.to_string(),
    })
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
    let windows = even_windows(held_out, spec.seq_len, spec.eval_windows)?;
    mean_loss(&inner, &windows, spec.batch)
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
