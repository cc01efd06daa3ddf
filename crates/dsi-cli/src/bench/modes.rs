//! `dsi bench modes`: `--mode auto` against every fixed mode on real models
//! (the bundled pair by default), in one run, alternating.
//!
//! Every (prompt, mode) generation is its own request, so it starts from
//! empty KV caches; the modes run in a rotating order per prompt and round,
//! so none always goes first on a cold machine or right after another one
//! warmed the processor's caches. Tokens per second are totals over every
//! prompt and round (tokens over wall time, prefill included), and ratios
//! are taken within this run. `--grid` adds every fixed policy of the
//! space auto chooses from (SI and DSI for k = 1..10, DSI for N = 1..the
//! pool's targets) to find the best fixed one.

use crate::measure::read_prompts;
use crate::output::Format;
use crate::pool_args::PoolArgs;
use crate::{bundled, exit::UsageError};
use clap::Args;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::{Mode, ModeSetting};
use dsi_core::tune::Space;
use dsi_sched::Request;
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `dsi bench modes`.
#[derive(Debug, Args)]
pub(crate) struct ModesArgs {
    #[command(flatten)]
    pool: PoolArgs,
    /// Prompts: JSON lines with a "prompt" field (default: the bundled held-out prompts).
    #[arg(long, value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// Prompts used (the first N of the file).
    #[arg(long, default_value_t = 6)]
    max_prompts: usize,
    /// New tokens per generation.
    #[arg(long, default_value_t = 96)]
    max_tokens: usize,
    /// Passes over the prompts.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Also run every fixed (mode, k, N) auto chooses from, to compare auto
    /// with the best fixed policy.
    #[arg(long)]
    grid: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// One contender's totals.
#[derive(Debug, Clone, Serialize)]
struct Row {
    name: String,
    tokens: usize,
    seconds: f64,
    tokens_per_s: f64,
    /// What auto ran at the end of each generation (auto only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    chosen: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    placement: String,
    profile: Option<String>,
    prompts: usize,
    rounds: usize,
    max_tokens: usize,
    order: &'static str,
    rows: Vec<Row>,
    auto_over_nonsi: f64,
    best_fixed: String,
    auto_over_best_fixed: f64,
}

/// Runs `dsi bench modes`.
pub(crate) fn run(args: ModesArgs) -> anyhow::Result<()> {
    if args.max_prompts == 0 || args.rounds == 0 || args.max_tokens == 0 {
        return Err(UsageError(
            "--max-prompts, --rounds and --max-tokens must be at least 1".into(),
        )
        .into());
    }
    if args.pool.drafter_dir().is_none() {
        return Err(
            UsageError("bench modes compares drafting modes: pass --drafter DIR".into()).into(),
        );
    }
    let mut pool_args = args.pool.clone();
    pool_args.mode = Some(ModeSetting::Auto);
    let target = pool_args.open_target()?;
    let mut texts = read_prompts(&args.prompts.clone().unwrap_or_else(bundled::prompts))?;
    texts.truncate(args.max_prompts);
    let prompts = texts
        .iter()
        .map(|t| target.tokenizer.encode(t))
        .collect::<Result<Vec<_>, _>>()?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let loaded = pool_args.load_with(
        target,
        longest + args.max_tokens + Space::DEFAULT_MAX_K + 1,
        true,
    )?;
    let eos = loaded.generation.eos_token_ids.clone();
    let pool = &loaded.pool;

    let mut contenders: Vec<(String, ModeSetting, usize, Option<usize>)> = vec![
        ("auto".into(), ModeSetting::Auto, 1, None),
        ("nonsi".into(), Mode::NonSi.into(), 1, Some(1)),
        (
            format!("si k={}", args.pool.k),
            Mode::Si.into(),
            args.pool.k,
            Some(1),
        ),
        (
            format!("dsi k={} N={}", args.pool.k, pool.targets()),
            Mode::Dsi.into(),
            args.pool.k,
            None,
        ),
    ];
    if args.grid {
        let space = Space {
            max_k: Space::DEFAULT_MAX_K,
            servers: pool.targets(),
            drafter: true,
        };
        for policy in space.policies() {
            let name = policy.to_string();
            if contenders.iter().any(|c| c.0 == name) {
                continue;
            }
            contenders.push((
                name,
                policy.mode.into(),
                policy.k.max(1),
                Some(policy.servers),
            ));
        }
    }
    let mut rows: Vec<Row> = contenders
        .iter()
        .map(|c| Row {
            name: c.0.clone(),
            tokens: 0,
            seconds: 0.0,
            tokens_per_s: 0.0,
            chosen: Vec::new(),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let mut turn = 0;
    for round in 0..args.rounds {
        for (p, prompt) in prompts.iter().enumerate() {
            let n = contenders.len();
            for i in 0..n {
                let c = (i + turn) % n;
                let (_, mode, k, targets) = &contenders[c];
                let request = Request {
                    prompt: prompt.clone(),
                    mode: *mode,
                    k: *k,
                    max_new_tokens: args.max_tokens,
                    eos: eos.clone(),
                    decoding: Decoding::greedy(),
                    targets: *targets,
                };
                let g = runtime.block_on(pool.generate(request, |_| {}))?;
                let row = &mut rows[c];
                row.tokens += g.tokens.len();
                row.seconds += g.stats.total_ms / 1e3;
                if *mode == ModeSetting::Auto {
                    row.chosen.push(g.stats.policy().to_string());
                }
            }
            turn += 1;
            if args.format == Format::Text {
                super::progress(round, args.rounds, p, prompts.len());
            }
        }
    }
    if args.format == Format::Text {
        eprintln!();
    }
    for row in &mut rows {
        row.tokens_per_s = row.tokens as f64 / row.seconds.max(1e-9);
    }
    let auto = rows[0].tokens_per_s;
    let nonsi = rows[1].tokens_per_s;
    let best = rows[1..]
        .iter()
        .max_by(|a, b| a.tokens_per_s.total_cmp(&b.tokens_per_s))
        .expect("fixed contenders");
    let report = Report {
        placement: loaded.placement.clone(),
        profile: loaded.profile.clone(),
        prompts: prompts.len(),
        rounds: args.rounds,
        max_tokens: args.max_tokens,
        order: "every generation a new request (empty KV caches); modes in a rotating order",
        auto_over_nonsi: auto / nonsi,
        best_fixed: best.name.clone(),
        auto_over_best_fixed: auto / best.tokens_per_s,
        rows: rows.clone(),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            println!(
                "{} | {}",
                report.placement,
                report.profile.as_deref().unwrap_or("no profile")
            );
            println!(
                "{} prompts x {} rounds, {} tokens each; {}",
                report.prompts, report.rounds, report.max_tokens, report.order
            );
            let mut sorted = rows.clone();
            sorted.sort_by(|a, b| b.tokens_per_s.total_cmp(&a.tokens_per_s));
            for row in sorted
                .iter()
                .take(if args.grid { 12 } else { sorted.len() })
            {
                println!(
                    "{:>16}  {:8.1} tokens/s  {:.2}x non-SI",
                    row.name,
                    row.tokens_per_s,
                    row.tokens_per_s / nonsi
                );
            }
            let mut chosen = rows[0].chosen.clone();
            chosen.sort();
            chosen.dedup();
            println!("auto ran: {}", chosen.join(", "));
            println!(
                "auto / non-SI: {:.2}x; auto / best fixed ({}): {:.2}x",
                report.auto_over_nonsi, report.best_fixed, report.auto_over_best_fixed
            );
        }
    }
    Ok(())
}
