//! `dsi bench remote`: DSI over `dsi worker` processes reached by gRPC on
//! loopback against the same pool with its target servers as threads of
//! this process, in one run, alternating.
//!
//! Both pools run every target with the same latency emulation (default:
//! the paper's Phi-3 MBPP latencies) and the drafter in this process; every
//! generation is a new request, and the two pools take turns starting.
//! Tokens must be identical; the report gives tokens per second of each,
//! their ratio, and the median scheduling overhead per job (from the event
//! that caused a job to the worker's report that it started: over gRPC
//! that includes the trip there and back).

use crate::measure::read_prompts;
use crate::output::Format;
use crate::placement::Placement;
use crate::pool_args::PoolArgs;
use crate::{bundled, exit::UsageError};
use anyhow::Context;
use clap::Args;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::{Mode, ModeSetting};
use dsi_sched::{Latency, Request};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Arguments of `dsi bench remote`.
#[derive(Debug, Args)]
pub(crate) struct RemoteArgs {
    /// Target servers in each pool.
    #[arg(long, default_value_t = 7)]
    workers: usize,
    /// Target latency TTFT,TPOT[,PER_ROW] in ms, for both pools (default:
    /// the paper's Phi-3 MBPP target).
    #[arg(long, default_value = "180.3,100.2")]
    emulate_target_ms: Latency,
    /// Drafter latency in ms (default: the paper's Phi-3 MBPP drafter).
    #[arg(long, default_value = "57.3,3.3")]
    emulate_drafter_ms: Latency,
    /// Drafts per verification job.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Prompts: JSON lines with a "prompt" field (default: the bundled held-out prompts).
    #[arg(long, value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// Prompts used (the first N of the file).
    #[arg(long, default_value_t = 3)]
    max_prompts: usize,
    /// New tokens per generation.
    #[arg(long, default_value_t = 48)]
    max_tokens: usize,
    /// Passes over the prompts.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// One pool's totals.
#[derive(Debug, Clone, Default, Serialize)]
struct Row {
    name: String,
    tokens: usize,
    seconds: f64,
    tokens_per_s: f64,
    /// Median over generations of each generation's median overhead per job.
    overhead_us_median: f64,
    #[serde(skip)]
    overheads: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    workers: usize,
    emulate_target_ms: String,
    emulate_drafter_ms: String,
    k: usize,
    prompts: usize,
    rounds: usize,
    max_tokens: usize,
    identical_tokens: bool,
    in_process: Row,
    grpc: Row,
    grpc_over_in_process: f64,
}

/// Worker processes, killed when dropped.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `count` `dsi worker` processes on loopback; their addresses.
fn start_workers(count: usize, latency: &str) -> anyhow::Result<(Workers, Vec<String>)> {
    let exe = std::env::current_exe().context("locating the dsi binary")?;
    let mut workers = Workers(Vec::new());
    let mut urls = Vec::new();
    for _ in 0..count {
        let mut child = Command::new(&exe)
            .args(["worker", "--listen", "127.0.0.1:0", "--threads", "1"])
            .args(["--emulate-ms", latency])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a dsi worker")?;
        let stdout = child.stdout.take().context("the worker's stdout")?;
        workers.0.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("a worker said {line:?}, not its address"))?;
        urls.push(format!("grpc://{addr}"));
    }
    Ok((workers, urls))
}

/// Runs `dsi bench remote`.
pub(crate) fn run(args: RemoteArgs) -> anyhow::Result<()> {
    if args.workers == 0 || args.max_prompts == 0 || args.rounds == 0 || args.max_tokens == 0 {
        return Err(UsageError(
            "--workers, --max-prompts, --rounds and --max-tokens must be at least 1".into(),
        )
        .into());
    }
    let target_latency = args.emulate_target_ms.to_string();
    let (_workers, urls) = start_workers(args.workers, &target_latency)?;
    let pool_args = |targets: Vec<Placement>| -> anyhow::Result<PoolArgs> {
        let mut pool = PoolArgs::defaults()?;
        pool.mode = Some(ModeSetting::Fixed(Mode::Dsi));
        pool.k = args.k;
        pool.target_devices = targets;
        pool.emulate_target_ms = Some(args.emulate_target_ms);
        pool.emulate_drafter_ms = Some(args.emulate_drafter_ms);
        Ok(pool)
    };
    let local = pool_args(vec![
        Placement::Local(dsi_models::device::DeviceSpec::Cpu);
        args.workers
    ])?;
    let remote = pool_args(urls.into_iter().map(Placement::Remote).collect())?;
    let target = local.open_target()?;
    let mut texts = read_prompts(&args.prompts.clone().unwrap_or_else(bundled::prompts))?;
    texts.truncate(args.max_prompts);
    let prompts = texts
        .iter()
        .map(|t| target.tokenizer.encode(t))
        .collect::<Result<Vec<_>, _>>()?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = longest + args.max_tokens + args.k + 1;
    let eos = target.generation.eos_token_ids.clone();
    let pools = [
        local.load(local.open_target()?, capacity)?,
        remote.load(target, capacity)?,
    ];
    let mut rows = [
        Row {
            name: "in-process".into(),
            ..Row::default()
        },
        Row {
            name: "grpc".into(),
            ..Row::default()
        },
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let mut identical = true;
    let mut turn = 0;
    for round in 0..args.rounds {
        for (p, prompt) in prompts.iter().enumerate() {
            let mut outputs = Vec::new();
            for i in 0..2 {
                let which = (i + turn) % 2;
                let request = Request {
                    prompt: prompt.clone(),
                    mode: ModeSetting::Fixed(Mode::Dsi),
                    k: args.k,
                    max_new_tokens: args.max_tokens,
                    eos: eos.clone(),
                    decoding: Decoding::greedy(),
                    targets: None,
                };
                let g = runtime.block_on(pools[which].pool.generate(request, |_| {}))?;
                let row = &mut rows[which];
                row.tokens += g.tokens.len();
                row.seconds += g.stats.total_ms / 1e3;
                row.overheads.push(g.stats.overhead_us_median);
                if !g.stats.counters.errors.is_empty() {
                    anyhow::bail!("{} failed jobs: {:?}", row.name, g.stats.counters.errors);
                }
                outputs.push(g.tokens);
            }
            identical &= outputs[0] == outputs[1];
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
        row.overheads.sort_by(f64::total_cmp);
        row.overhead_us_median = row.overheads[row.overheads.len() / 2];
    }
    let [in_process, grpc] = rows;
    let report = Report {
        workers: args.workers,
        emulate_target_ms: target_latency,
        emulate_drafter_ms: args.emulate_drafter_ms.to_string(),
        k: args.k,
        prompts: prompts.len(),
        rounds: args.rounds,
        max_tokens: args.max_tokens,
        identical_tokens: identical,
        grpc_over_in_process: grpc.tokens_per_s / in_process.tokens_per_s,
        in_process,
        grpc,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            println!(
                "DSI k={} over {} targets (target {} ms, drafter {} ms), {} prompts x {} rounds, {} tokens each",
                report.k,
                report.workers,
                report.emulate_target_ms,
                report.emulate_drafter_ms,
                report.prompts,
                report.rounds,
                report.max_tokens
            );
            for row in [&report.in_process, &report.grpc] {
                println!(
                    "{:>11}  {:7.2} tokens/s  overhead per job {:6.0} us (median)",
                    row.name, row.tokens_per_s, row.overhead_us_median
                );
            }
            println!(
                "grpc / in-process: {:.3}x; tokens identical: {}",
                report.grpc_over_in_process, report.identical_tokens
            );
        }
    }
    if !report.identical_tokens {
        anyhow::bail!("the two pools emitted different tokens");
    }
    Ok(())
}
