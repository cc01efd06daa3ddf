//! `dsi generate`: plain autoregressive decoding (non-SI) of one prompt.
//!
//! Streams text to stdout as tokens arrive (text format), or prints one JSON
//! object at the end. Speculative modes and the drafter arrive with the
//! scheduler.

use crate::exit::UsageError;
use crate::model_args::{ModelArgs, advance, check_prompt_fits, load_bar};
use crate::output::Format;
use anyhow::Context;
use clap::Args;
use dsi_core::TokenId;
use dsi_models::checkpoint::Checkpoint;
use dsi_models::device::{Backend, DeviceSpec, OnBackend, RunDtype, dispatch};
use dsi_models::generate::Decoder;
use dsi_models::llama::LoadedModel;
use dsi_models::sampling::SamplingParams;
use serde::Serialize;
use std::io::Write;
use std::time::Instant;

/// Arguments of `dsi generate`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// New tokens to generate at most (fewer if an end-of-sequence token comes).
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this mass.
    #[arg(long)]
    top_p: Option<f32>,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Seed of the sampling randomness.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The prompt.
    prompt: String,
}

/// What `--format json` prints.
#[derive(Debug, Serialize)]
struct Report {
    tokens: Vec<TokenId>,
    text: String,
    prompt_tokens: usize,
    ttft_ms: f64,
    tokens_per_s: f64,
    total_ms: f64,
    stop_reason: &'static str,
    backend: String,
    dtype: String,
}

pub(crate) fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.max_tokens == 0 {
        return Err(UsageError("invalid max-tokens: 0 (expected at least 1)".into()).into());
    }
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    sampling.validate()?;
    let checkpoint = args.model.open()?;
    let spec = args.model.backend;
    dispatch(
        spec,
        Job {
            args,
            checkpoint,
            sampling,
        },
    )?
}

struct Job {
    args: GenerateArgs,
    checkpoint: Checkpoint,
    sampling: SamplingParams,
}

impl OnBackend for Job {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, spec: DeviceSpec, device: B::Device) -> anyhow::Result<()> {
        let Job {
            args,
            checkpoint,
            sampling,
        } = self;
        let dtype = args
            .model
            .dtype
            .unwrap_or_else(|| RunDtype::default_for::<B>(spec, &device));
        let bar = load_bar("target");
        let model =
            LoadedModel::<B>::from_checkpoint(&checkpoint, &device, dtype.dtype(), advance(&bar))
                .with_context(|| format!("loading {}", checkpoint.dir.display()))?
                .with_host_threads(spec.host_threads());
        bar.finish_and_clear();

        let prompt = checkpoint.tokenizer.encode(&args.prompt)?;
        check_prompt_fits(prompt.len(), model.config.max_context)?;
        let budget = args.max_tokens.min(model.config.max_context - prompt.len());
        let eos = &checkpoint.generation.eos_token_ids;

        let mut out = Stream::new(&checkpoint, args.format);
        let start = Instant::now();
        let mut decoder = Decoder::new(&model, prompt.len() + budget, sampling)?;
        let mut token = decoder.prefill(&prompt)?;
        let ttft = start.elapsed();
        let mut tokens = Vec::with_capacity(budget);
        let stop_reason = loop {
            if eos.contains(&token) {
                break "eos";
            }
            tokens.push(token);
            out.show(&tokens)?;
            if tokens.len() >= budget {
                break if budget < args.max_tokens {
                    "context"
                } else {
                    "max_tokens"
                };
            }
            token = decoder.step(token)?;
        };
        let total = start.elapsed();
        let decode_secs = (total - ttft).as_secs_f64();
        let tokens_per_s = if tokens.len() > 1 && decode_secs > 0.0 {
            (tokens.len() - 1) as f64 / decode_secs
        } else {
            0.0
        };
        let text = checkpoint.tokenizer.decode(&tokens)?;
        match args.format {
            Format::Text => {
                println!();
                eprintln!(
                    "{} prompt tokens, {} new tokens ({stop_reason}), first token {:.1} ms, {tokens_per_s:.1} tokens/s, {spec} {dtype:?}",
                    prompt.len(),
                    tokens.len(),
                    ttft.as_secs_f64() * 1e3,
                );
            }
            Format::Json => {
                let report = Report {
                    tokens,
                    text,
                    prompt_tokens: prompt.len(),
                    ttft_ms: ttft.as_secs_f64() * 1e3,
                    tokens_per_s,
                    total_ms: total.as_secs_f64() * 1e3,
                    stop_reason,
                    backend: spec.to_string(),
                    dtype: format!("{dtype:?}").to_lowercase(),
                };
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
        Ok(())
    }
}

/// Prints the text as it grows (text format only).
struct Stream<'a> {
    checkpoint: &'a Checkpoint,
    format: Format,
    printed: usize,
}

impl<'a> Stream<'a> {
    fn new(checkpoint: &'a Checkpoint, format: Format) -> Self {
        Self {
            checkpoint,
            format,
            printed: 0,
        }
    }

    /// Decodes every token so far and prints what is new; a multi-byte
    /// character split across tokens waits until it is complete.
    fn show(&mut self, tokens: &[TokenId]) -> anyhow::Result<()> {
        if self.format != Format::Text {
            return Ok(());
        }
        let text = self.checkpoint.tokenizer.decode(tokens)?;
        if text.len() > self.printed
            && !text.ends_with('\u{FFFD}')
            && text.is_char_boundary(self.printed)
        {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&text.as_bytes()[self.printed..])?;
            stdout.flush()?;
            self.printed = text.len();
        }
        Ok(())
    }
}
