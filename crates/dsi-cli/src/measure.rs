//! `dsi measure`: the paper's two measurements of a drafter/target pair.
//!
//! - `acceptance`: the target generates greedily from each prompt; the
//!   drafter predicts each next token under teacher forcing; runs of matches
//!   form windows, the last window of each example is dropped, and
//!   `a = 1 - 1 / (1 + mean window length)`.
//! - `latency`: TTFT as one forward over the prompt, TPOT as the mean time of
//!   each greedy decode step.
//! - `loss` (`measure_loss.rs`): next-token loss on held-out text.
//!
//! Without model or prompt arguments both use the bundled pair and its
//! held-out prompts.

use crate::bundled;
use crate::exit::UsageError;
use crate::model_args::{advance, load_bar, parse_device, parse_dtype};
use crate::output::Format;
use anyhow::Context;
use clap::{Args, Subcommand};
use dsi_core::TokenId;
use dsi_core::acceptance::AcceptanceEstimator;
use dsi_core::tune::CostProfile;
use dsi_core::verify::argmax;
use dsi_models::checkpoint::Checkpoint;
use dsi_models::device::{Backend, DeviceSpec, OnBackend, RunDtype, dispatch};
use dsi_models::measure::{greedy_continuation, teacher_forced_matches};
use dsi_models::pair::{PairSide, pool_vocab};
use dsi_models::transformer::{LoadedModel, Numerics};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `dsi measure`.
#[derive(Debug, Args)]
pub(crate) struct MeasureArgs {
    #[command(subcommand)]
    command: MeasureCommand,
}

#[derive(Debug, Subcommand)]
enum MeasureCommand {
    /// Acceptance rate of a drafter for a target, by teacher forcing.
    Acceptance(AcceptanceArgs),
    /// TTFT and TPOT of a model (of both bundled models by default).
    Latency(LatencyArgs),
    /// Next-token loss on a corpus's held-out files, split as `dsi train` splits them.
    Loss(crate::measure_loss::LossArgs),
}

/// Where models run and which prompts they see.
#[derive(Debug, Args)]
struct Common {
    /// Prompts: JSON lines with a "prompt" field (default: the bundled held-out prompts).
    #[arg(long, value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// Backend and device: cpu, ndarray, wgpu, wgpu:N, cuda, cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    backend: DeviceSpec,
    /// Run dtype: f32, f16, bf16, or q8 (8-bit projection weights, cpu only).
    #[arg(long, value_parser = parse_dtype)]
    dtype: Option<RunDtype>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
struct AcceptanceArgs {
    /// Target checkpoint, a folder or a GGUF file (default: the bundled target).
    #[arg(long, value_name = "DIR_OR_GGUF")]
    model: Option<PathBuf>,
    /// Drafter checkpoint, a folder or a GGUF file (default: the bundled drafter).
    #[arg(long, value_name = "DIR_OR_GGUF")]
    drafter: Option<PathBuf>,
    /// Tokens the target generates per prompt.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    /// Checkpoint to time, a folder or a GGUF file (default: both bundled models).
    #[arg(long, value_name = "DIR_OR_GGUF")]
    model: Option<PathBuf>,
    /// Decode steps timed per prompt.
    #[arg(long, default_value_t = 32)]
    tokens: usize,
    /// Prompts to time (the first N of the file).
    #[arg(long, default_value_t = 8)]
    max_prompts: usize,
    /// Target servers of the pool whose cost profile (what `--mode auto`
    /// chooses from) is printed after the model's latencies.
    #[arg(long, default_value_t = 2)]
    targets: usize,
    /// Measure the pool's profile again instead of printing the saved one.
    #[arg(long)]
    reprofile: bool,
    #[command(flatten)]
    common: Common,
}

/// Runs `dsi measure`.
pub(crate) fn run(args: MeasureArgs) -> anyhow::Result<()> {
    match args.command {
        MeasureCommand::Acceptance(a) => acceptance(a),
        MeasureCommand::Latency(l) => latency(l),
        MeasureCommand::Loss(l) => crate::measure_loss::run(l),
    }
}

/// Reads a prompts file: one JSON object with a "prompt" string per line.
pub(crate) fn read_prompts(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the prompts file {}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            UsageError(format!(
                "{} line {}: not JSON ({e}); expected {{\"prompt\": \"...\"}} per line",
                path.display(),
                i + 1
            ))
        })?;
        let prompt = value["prompt"].as_str().ok_or_else(|| {
            UsageError(format!(
                "{} line {}: no \"prompt\" string",
                path.display(),
                i + 1
            ))
        })?;
        prompts.push(prompt.to_string());
    }
    if prompts.is_empty() {
        return Err(UsageError(format!("{} holds no prompts", path.display())).into());
    }
    Ok(prompts)
}

pub(crate) fn open(dir: &Path, what: &str) -> anyhow::Result<Checkpoint> {
    Checkpoint::open(dir).with_context(|| format!("loading the {what} in {}", dir.display()))
}

pub(crate) fn load<B: Backend>(
    checkpoint: &Checkpoint,
    spec: DeviceSpec,
    device: &B::Device,
    dtype: Option<RunDtype>,
    what: &str,
) -> anyhow::Result<LoadedModel<B>> {
    let dtype = dtype.unwrap_or_else(|| RunDtype::default_for::<B>(spec, device));
    let bar = load_bar(what);
    let precision = dtype.precision(spec, Numerics::default())?;
    let model = LoadedModel::<B>::from_checkpoint(checkpoint, device, precision, advance(&bar))
        .with_context(|| format!("loading {}", checkpoint.path.display()))?
        .with_host_threads(spec.host_threads());
    bar.finish_and_clear();
    Ok(model)
}

fn encode_all(checkpoint: &Checkpoint, prompts: &[String]) -> anyhow::Result<Vec<Vec<TokenId>>> {
    let context = checkpoint.config.max_context;
    prompts
        .iter()
        .map(|p| {
            let ids = checkpoint.tokenizer.encode(p)?;
            if ids.is_empty() || ids.len() >= context {
                return Err(UsageError(format!(
                    "a prompt is {} tokens; it must hold 1 to {} tokens",
                    ids.len(),
                    context - 1
                ))
                .into());
            }
            Ok(ids)
        })
        .collect()
}

/// What `dsi measure acceptance --format json` prints.
#[derive(Debug, Serialize)]
struct AcceptanceReport {
    acceptance_rate: f64,
    mean_window_len: f64,
    windows: usize,
    prompts: usize,
    target_tokens: usize,
    matched_tokens: usize,
}

fn acceptance(args: AcceptanceArgs) -> anyhow::Result<()> {
    if args.max_tokens == 0 {
        return Err(UsageError("invalid max-tokens: 0 (expected at least 1)".into()).into());
    }
    let bundled_pair = args.model.is_none();
    let target = open(
        &args.model.clone().unwrap_or_else(bundled::target),
        "target",
    )?;
    let drafter_dir = match (&args.drafter, bundled_pair) {
        (Some(dir), _) => dir.clone(),
        (None, true) => bundled::drafter(),
        (None, false) => {
            return Err(UsageError("--model needs a --drafter to measure against".into()).into());
        }
    };
    let drafter = open(&drafter_dir, "drafter")?;
    pool_vocab(PairSide::from(&target), Some(PairSide::from(&drafter)))
        .map_err(|e| UsageError(e.to_string()))?;
    let prompts = read_prompts(&args.common.prompts.clone().unwrap_or_else(bundled::prompts))?;
    let prompts = encode_all(&target, &prompts)?;
    let report = dispatch(
        args.common.backend,
        AcceptanceJob {
            target: &target,
            drafter: &drafter,
            prompts: &prompts,
            max_tokens: args.max_tokens,
            dtype: args.common.dtype,
        },
    )??;
    match args.common.format {
        Format::Text => println!(
            "acceptance rate {:.3} (mean window {:.2} tokens over {} windows; {} of {} target tokens predicted by the drafter; {} prompts)",
            report.acceptance_rate,
            report.mean_window_len,
            report.windows,
            report.matched_tokens,
            report.target_tokens,
            report.prompts
        ),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

struct AcceptanceJob<'a> {
    target: &'a Checkpoint,
    drafter: &'a Checkpoint,
    prompts: &'a [Vec<TokenId>],
    max_tokens: usize,
    dtype: Option<RunDtype>,
}

impl OnBackend for AcceptanceJob<'_> {
    type Output = anyhow::Result<AcceptanceReport>;

    fn run<B: Backend>(self, spec: DeviceSpec, device: B::Device) -> Self::Output {
        let target = load::<B>(self.target, spec, &device, self.dtype, "target")?;
        let drafter = load::<B>(self.drafter, spec, &device, self.dtype, "drafter")?;
        let eos = &self.target.generation.eos_token_ids;
        let mut estimator = AcceptanceEstimator::new();
        let (mut total, mut matched) = (0, 0);
        for prompt in self.prompts {
            let budget = self
                .max_tokens
                .min(target.config.max_context - prompt.len());
            let continuation = greedy_continuation(&target, prompt, budget, eos)?;
            let matches = teacher_forced_matches(&drafter, prompt, &continuation)?;
            total += matches.len();
            matched += matches.iter().filter(|&&m| m).count();
            estimator.add_example(matches);
        }
        Ok(AcceptanceReport {
            acceptance_rate: estimator.acceptance_rate()?,
            mean_window_len: estimator.mean_window_len()?,
            windows: estimator.windows().len(),
            prompts: self.prompts.len(),
            target_tokens: total,
            matched_tokens: matched,
        })
    }
}

/// TTFT and TPOT of one model.
#[derive(Debug, Clone, Copy, Serialize)]
struct Latency {
    ttft_ms: f64,
    tpot_ms: f64,
}

/// What `dsi measure latency --format json` prints: the model's (or the
/// bundled target's) figures, and the bundled drafter's beside them.
#[derive(Debug, Serialize)]
struct LatencyReport {
    ttft_ms: f64,
    tpot_ms: f64,
    prompts: usize,
    backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    drafter: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drafter_over_target_tpot: Option<f64>,
    /// The bundled pool's cost profile (what `--mode auto` chooses from).
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_profile: Option<CostProfile>,
}

fn latency(args: LatencyArgs) -> anyhow::Result<()> {
    if args.tokens == 0 || args.max_prompts == 0 {
        return Err(UsageError("--tokens and --max-prompts must be at least 1".into()).into());
    }
    let bundled_pair = args.model.is_none();
    let target = open(&args.model.clone().unwrap_or_else(bundled::target), "model")?;
    let drafter = if bundled_pair {
        Some(open(&bundled::drafter(), "drafter")?)
    } else {
        None
    };
    let mut prompts = read_prompts(&args.common.prompts.clone().unwrap_or_else(bundled::prompts))?;
    prompts.truncate(args.max_prompts);
    let encoded = encode_all(&target, &prompts)?;
    let measure = |checkpoint: &Checkpoint| {
        dispatch(
            args.common.backend,
            LatencyJob {
                checkpoint,
                prompts: &encoded,
                tokens: args.tokens,
                dtype: args.common.dtype,
            },
        )
    };
    let model = measure(&target)??;
    let drafter = match &drafter {
        Some(d) => Some(measure(d)??),
        None => None,
    };
    let report = LatencyReport {
        ttft_ms: model.ttft_ms,
        tpot_ms: model.tpot_ms,
        prompts: encoded.len(),
        backend: args.common.backend.to_string(),
        drafter_over_target_tpot: drafter.map(|d| d.tpot_ms / model.tpot_ms),
        drafter,
        pool_profile: if bundled_pair && args.common.format == Format::Json {
            Some(pool_profile(&args)?.0)
        } else {
            None
        },
    };
    match args.common.format {
        Format::Text => {
            println!(
                "{}: TTFT {:.2} ms, TPOT {:.2} ms ({} prompts, {})",
                if bundled_pair { "target" } else { "model" },
                report.ttft_ms,
                report.tpot_ms,
                report.prompts,
                report.backend
            );
            if let (Some(d), Some(ratio)) = (report.drafter, report.drafter_over_target_tpot) {
                println!(
                    "drafter: TTFT {:.2} ms, TPOT {:.2} ms ({ratio:.3} of the target's TPOT)",
                    d.ttft_ms, d.tpot_ms
                );
            }
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if bundled_pair && args.common.format == Format::Text {
        let (profile, about) = pool_profile(&args)?;
        print_profile(&profile, &about);
    }
    Ok(())
}

/// The cost profile `--mode auto` uses for a pool of the bundled pair with
/// `--targets` servers on `--backend` (the saved one, or measured now), and
/// where it runs and came from.
fn pool_profile(args: &LatencyArgs) -> anyhow::Result<(CostProfile, String)> {
    #[derive(clap::Parser)]
    struct Pool {
        #[command(flatten)]
        pool: crate::pool_args::PoolArgs,
    }
    let mut flags = vec![
        "dsi".to_string(),
        "--backend".into(),
        args.common.backend.to_string(),
        "--targets".into(),
        args.targets.to_string(),
    ];
    if let Some(dtype) = args.common.dtype {
        flags.extend(["--dtype".into(), format!("{dtype:?}").to_lowercase()]);
    }
    if args.reprofile {
        flags.push("--reprofile".into());
    }
    let pool = <Pool as clap::Parser>::try_parse_from(flags)?.pool;
    let target = pool.open_target()?;
    let context = target.config.max_context;
    let loaded = pool.load_with(target, context, true)?;
    let tuning = loaded.pool.tuning().context("the pool has no profile")?;
    let about = format!(
        "{}; {}",
        loaded.placement,
        loaded.profile.as_deref().unwrap_or("")
    );
    Ok((tuning.profile().clone(), about))
}

fn print_profile(profile: &CostProfile, about: &str) {
    {
        {
            println!("pool cost profile ({about}):");
            let rows: Vec<String> = profile
                .target_ms_by_rows
                .iter()
                .map(|ms| format!("{ms:.2}"))
                .collect();
            println!(
                "  target job by rows 1..{}: {} ms",
                rows.len(),
                rows.join(" ")
            );
            println!(
                "  target prefill of {} tokens: {:.2} ms",
                profile.prefill_tokens, profile.target_prefill_ms
            );
            println!(
                "  drafter: {:.3} ms per step + {:.3} ms per job (c = {:.3})",
                profile.drafter_step_ms,
                profile.drafter_job_ms,
                profile.c()
            );
            let fmt = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "  target slowdown with 1..N targets at once: {}",
                fmt(&profile.target_slowdown)
            );
            println!(
                "  ... with the drafter beside them: {}",
                fmt(&profile.target_slowdown_with_drafter)
            );
            println!(
                "  drafter slowdown beside 0..N targets: {}",
                fmt(&profile.drafter_slowdown)
            );
        }
    }
}

struct LatencyJob<'a> {
    checkpoint: &'a Checkpoint,
    prompts: &'a [Vec<TokenId>],
    tokens: usize,
    dtype: Option<RunDtype>,
}

impl OnBackend for LatencyJob<'_> {
    type Output = anyhow::Result<Latency>;

    fn run<B: Backend>(self, spec: DeviceSpec, device: B::Device) -> Self::Output {
        let model = load::<B>(self.checkpoint, spec, &device, self.dtype, "model")?;
        // One untimed pass warms caches, threads and shader compilation.
        time_prompt(&model, &self.prompts[0], self.tokens)?;
        let (mut ttft, mut tpot) = (0.0, 0.0);
        for prompt in self.prompts {
            let (t, p) = time_prompt(&model, prompt, self.tokens)?;
            ttft += t;
            tpot += p;
        }
        let n = self.prompts.len() as f64;
        Ok(Latency {
            ttft_ms: ttft / n,
            tpot_ms: tpot / n,
        })
    }
}

/// TTFT (one forward over the prompt) and mean TPOT over `tokens` greedy
/// steps, in milliseconds; every step reads its logits back.
fn time_prompt<B: Backend>(
    model: &LoadedModel<B>,
    prompt: &[TokenId],
    tokens: usize,
) -> anyhow::Result<(f64, f64)> {
    let steps = tokens.min(model.config.max_context - prompt.len());
    let mut cache = model.new_cache(prompt.len() + steps);
    let began = Instant::now();
    let logits = model.forward(prompt, &mut cache)?;
    let ttft = began.elapsed().as_secs_f64() * 1e3;
    let mut token = argmax(logits.row(logits.rows() - 1));
    let began = Instant::now();
    for _ in 0..steps {
        let logits = model.forward(&[token], &mut cache)?;
        token = argmax(logits.row(0));
    }
    let tpot = began.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64;
    Ok((ttft, tpot))
}
