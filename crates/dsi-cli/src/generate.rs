//! `dsi generate`: one prompt through the scheduler, in DSI, SI or non-SI
//! mode.
//!
//! Streams the text to stdout as it is verified (text format) and ends with
//! one summary line on stderr, or prints one JSON object with the tokens,
//! the text and the scheduler's stats. `--timeline FILE` writes every job
//! event as a JSON line.

use crate::codec::Codec;
use crate::exit::UsageError;
use crate::model_args::check_prompt_fits;
use crate::output::Format;
use crate::pool_args::PoolArgs;
use anyhow::Context;
use clap::Args;
use dsi_core::TokenId;
use dsi_core::sampling::{Decoding, SamplingParams};
use dsi_core::schedule::{Mode, StopReason};
use dsi_models::checkpoint::TextTokenizer;
use dsi_sched::tune::PriorSource;
use dsi_sched::{Request, Stats, Update};
use dsi_server::chat::ChatTemplate;
use dsi_server::codec::IncrementalText;
use dsi_server::openai::ChatMessage;
use serde::Serialize;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::PathBuf;

/// Arguments of `dsi generate`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    pool: PoolArgs,
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
    /// Verify sampled drafts with speculative sampling (the target's
    /// distribution) instead of seeded coupled sampling (non-SI's exact tokens).
    #[arg(long)]
    speculative: bool,
    /// Write every job event of the scheduler to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The prompt is a user's chat message: render it with the checkpoint's
    /// chat template (a folder's tokenizer_config.json or a GGUF file's
    /// metadata; a plain `role: text` one when it has none). Generation
    /// stops at the model's end-of-turn token, which is not printed.
    #[arg(long)]
    chat: bool,
    /// A system message before the user's (with --chat).
    #[arg(long, value_name = "TEXT", requires = "chat")]
    system: Option<String>,
    /// The prompt (raw text, or with --chat the user's message).
    prompt: String,
}

/// `user` (after `system`, if any) rendered by the checkpoint's chat
/// template, ready for the assistant's turn.
fn chat_prompt(
    target: &dsi_models::checkpoint::Checkpoint,
    system: Option<&str>,
    user: &str,
) -> anyhow::Result<String> {
    let template = match target.tokenizer_config.as_deref() {
        Some(json) => ChatTemplate::from_tokenizer_config(json)
            .map_err(|e| anyhow::anyhow!("the chat template of {}: {e}", target.path.display()))?,
        None => ChatTemplate::default(),
    };
    let message = |role: &str, content: &str| ChatMessage {
        role: role.into(),
        content: content.into(),
    };
    let mut messages: Vec<ChatMessage> = system.map(|s| message("system", s)).into_iter().collect();
    messages.push(message("user", user));
    template
        .render(&messages)
        .map_err(|e| UsageError(e.to_string()).into())
}

/// What `--format json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    tokens: &'a [TokenId],
    text: String,
    prompt_tokens: usize,
    mode: String,
    ttft_ms: f64,
    tokens_per_s: f64,
    total_ms: f64,
    stop_reason: &'static str,
    placement: &'a str,
    /// Where `auto`'s cost profile came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a str>,
    stats: &'a Stats,
}

pub(crate) fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.max_tokens == 0 {
        return Err(UsageError("invalid max-tokens: 0 (expected at least 1)".into()).into());
    }
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    let decoding = Decoding::new(params, args.speculative)?;
    let mut timeline = match &args.timeline {
        Some(path) => Some(LineWriter::new(File::create(path).with_context(|| {
            format!("cannot create the timeline file {}", path.display())
        })?)),
        None => None,
    };
    args.pool.mode()?;
    let target = args.pool.open_target()?;
    let text = if args.chat {
        chat_prompt(&target, args.system.as_deref(), &args.prompt)?
    } else {
        args.prompt.clone()
    };
    let prompt = target.tokenizer.encode(&text)?;
    let context = target.config.max_context;
    check_prompt_fits(prompt.len(), context)?;
    let budget = args.max_tokens.min(context - prompt.len());
    let loaded = args.pool.load(target, prompt.len() + budget)?;
    let tokenizer = &loaded.tokenizer;
    let request = Request {
        prompt: prompt.clone(),
        mode: loaded.mode,
        k: args.pool.k,
        max_new_tokens: budget,
        eos: loaded.generation.eos_token_ids.clone(),
        decoding,
        targets: None,
    };

    let mut stream = Stream::new(tokenizer, args.format);
    let mut sink_error = None;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let generation = runtime.block_on(loaded.pool.generate(request, |update| {
        let result = match update {
            Update::Tokens(tokens) => stream.push(tokens),
            Update::Timeline(record) => match timeline.as_mut() {
                Some(file) => serde_json::to_writer(&mut *file, record)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| file.write_all(b"\n").map_err(Into::into)),
                None => Ok(()),
            },
            // `dsi generate` does not ask for them.
            Update::Logprobs(_) => Ok(()),
        };
        if let Err(e) = result {
            sink_error.get_or_insert(e);
        }
    }))?;
    if let Some(e) = sink_error {
        return Err(e.context("writing the output"));
    }
    if let Some(mut file) = timeline {
        file.flush().context("writing the timeline")?;
    }
    let stop_reason = match &generation.stop {
        StopReason::Eos => "eos",
        StopReason::MaxTokens if budget < args.max_tokens => "context",
        StopReason::MaxTokens => "max_tokens",
        StopReason::Cancelled => "cancelled",
        StopReason::Failed(message) => anyhow::bail!("generation failed: {message}"),
    };
    let stats = &generation.stats;
    forget_a_stale_profile(stats, loaded.profile_file.as_deref());
    match args.format {
        Format::Text => {
            println!();
            let acceptance = if stats.counters.draft_tokens > 0 {
                format!(
                    ", {} of {} drafted tokens accepted ({:.0}%)",
                    stats.counters.accepted_tokens,
                    stats.counters.draft_tokens,
                    100.0 * stats.counters.accepted_tokens as f64
                        / stats.counters.draft_tokens as f64
                )
            } else {
                String::new()
            };
            eprintln!(
                "{} new tokens ({stop_reason}) in {:.0} ms, {:.1} tokens/s, first token {:.0} ms | {}{acceptance}, {} draft batches, {} epochs, {} verification jobs, {} preempted{}",
                stats.new_tokens,
                stats.total_ms,
                stats.tokens_per_s,
                stats.ttft_ms,
                policy_summary(stats),
                stats.counters.drafts,
                stats.counters.epochs,
                stats.counters.jobs_started,
                stats.counters.jobs_preempted,
                if stats.counters.errors.is_empty() {
                    String::new()
                } else {
                    format!(" | errors: {}", stats.counters.errors.join("; "))
                }
            );
        }
        Format::Json => {
            let report = Report {
                tokens: &generation.tokens,
                text: tokenizer.decode(&generation.tokens)?,
                prompt_tokens: prompt.len(),
                mode: stats.mode.to_string(),
                ttft_ms: stats.ttft_ms,
                tokens_per_s: stats.tokens_per_s,
                total_ms: stats.total_ms,
                stop_reason,
                placement: &loaded.placement,
                profile: loaded.profile.as_deref(),
                stats,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

/// Measured over predicted time per token beyond which the saved profile no
/// longer describes the machine (other load, another power state, a
/// changed driver): it is dropped, and the next start measures again.
const STALE_PROFILE: f64 = 2.0;

/// Drops the saved profile when the run drifted far from its predictions
/// (over enough tokens to tell), and says so.
fn forget_a_stale_profile(stats: &Stats, file: Option<&std::path::Path>) {
    let (Some(auto), Some(file)) = (&stats.auto, file) else {
        return;
    };
    let Some(drift) = auto.drift() else {
        return;
    };
    if stats.new_tokens < 32 || (1.0 / STALE_PROFILE..=STALE_PROFILE).contains(&drift) {
        return;
    }
    if std::fs::remove_file(file).is_ok() {
        eprintln!(
            "note: this run took {:.2} ms per token where the pool's profile predicted {:.2}; \
             the saved profile is dropped and the next start measures again",
            auto.measured_ms_per_token, auto.predicted_ms_per_token
        );
    }
}

/// The policy that ran; under auto, what it chose and why: the acceptance
/// estimate it started from, and the predicted speed of the best policy of
/// each mode, as speedups over non-SI.
fn policy_summary(stats: &Stats) -> String {
    let policy = stats.policy();
    let Some(auto) = &stats.auto else {
        return policy.to_string();
    };
    let Some(first) = auto.decisions.first() else {
        return format!("auto: {policy}");
    };
    let nonsi = first
        .alternatives
        .iter()
        .find(|r| r.policy.mode == Mode::NonSi)
        .map_or(f64::NAN, |r| r.ms_per_token);
    let predicted: Vec<String> = first
        .alternatives
        .iter()
        .map(|r| format!("{} {:.2}x", r.policy, nonsi / r.ms_per_token))
        .collect();
    let switches = auto.decisions.len() - 1;
    format!(
        "auto: {policy} (chose {} at a = {:.2} from the {}; predicted {}; {switches} switch{}, a = {:.2} at the end)",
        first.policy,
        auto.prior,
        match auto.prior_from {
            PriorSource::History => "pool's history",
            PriorSource::Probe => "prompt probe",
            PriorSource::Default => "default",
        },
        predicted.join(", "),
        if switches == 1 { "" } else { "es" },
        auto.acceptance,
    )
}

/// Prints the text as it grows (text format only), decoding only the new
/// tokens and a few before them; a multi-byte character split across
/// tokens waits for its last byte.
struct Stream<'a> {
    codec: Codec<&'a TextTokenizer>,
    format: Format,
    text: IncrementalText,
}

impl<'a> Stream<'a> {
    fn new(tokenizer: &'a TextTokenizer, format: Format) -> Self {
        Self {
            codec: Codec(tokenizer),
            format,
            text: IncrementalText::default(),
        }
    }

    /// Adds verified tokens and prints the text that became complete.
    fn push(&mut self, tokens: &[TokenId]) -> anyhow::Result<()> {
        if self.format != Format::Text {
            return Ok(());
        }
        let delta = self
            .text
            .push(&self.codec, tokens)
            .map_err(|e| anyhow::anyhow!("decoding the output: {e}"))?;
        if !delta.is_empty() {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(delta.as_bytes())?;
            stdout.flush()?;
        }
        Ok(())
    }
}
