//! `dsi bench sched`: the real scheduler on synthetic workers (sleeps of the
//! configured latency, geometric acceptances), with measured wall-clock
//! speedups next to the offline simulator's prediction.

use crate::output::Format;
use clap::Args;
use dsi_sched::bench::{GRID, SchedBench, SchedBenchReport};
use std::time::Duration;

/// Arguments of `dsi bench sched`.
#[derive(Debug, Args)]
pub(crate) struct SchedArgs {
    /// Drafter latency as a fraction of the target's.
    #[arg(long, required_unless_present = "grid")]
    c: Option<f64>,
    /// Acceptance rate.
    #[arg(long, required_unless_present = "grid")]
    a: Option<f64>,
    /// Lookahead (drafts per verification job).
    #[arg(long, required_unless_present = "grid")]
    k: Option<usize>,
    /// Target servers.
    #[arg(long, required_unless_present = "grid")]
    servers: Option<usize>,
    /// Measure the built-in grid of 12 (a, c, k, servers) configurations instead of one.
    #[arg(long, conflicts_with_all = ["c", "a", "k", "servers"])]
    grid: bool,
    /// Target forward latency in milliseconds.
    #[arg(long, default_value_t = 20.0)]
    target_ms: f64,
    /// Tokens per generation.
    #[arg(long, default_value_t = 100)]
    tokens: usize,
    /// Generations per mode.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Seed of the acceptances.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Schedule as the paper's simulator assumes: a bonus token that
    /// disagrees with the next draft does not end the epoch early.
    #[arg(long)]
    paper_exact: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Runs `dsi bench sched`.
pub(crate) fn run(args: SchedArgs) -> anyhow::Result<()> {
    if !(args.target_ms.is_finite() && args.target_ms > 0.0 && args.target_ms < 60_000.0) {
        return Err(crate::exit::UsageError(format!(
            "invalid target-ms: {} (expected 0 < target-ms < 60000)",
            args.target_ms
        ))
        .into());
    }
    let configs: Vec<(f64, f64, usize, usize)> = match (args.a, args.c, args.k, args.servers) {
        (Some(a), Some(c), Some(k), Some(servers)) => vec![(a, c, k, servers)],
        _ => GRID.to_vec(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let mut reports = Vec::with_capacity(configs.len());
    for (a, c, k, servers) in configs {
        let bench = SchedBench {
            c,
            a,
            k,
            servers,
            target: Duration::from_secs_f64(args.target_ms / 1e3),
            tokens: args.tokens,
            repeats: args.repeats,
            seed: args.seed,
            early_bonus: !args.paper_exact,
        };
        bench.validate()?;
        let report = runtime.block_on(bench.run())?;
        if args.format == Format::Text {
            print_line(&report);
        }
        reports.push(report);
    }
    if args.format == Format::Json {
        let json = if args.grid {
            serde_json::to_string_pretty(&reports)?
        } else {
            serde_json::to_string_pretty(&reports[0])?
        };
        println!("{json}");
    }
    Ok(())
}

fn print_line(r: &SchedBenchReport) {
    println!(
        "{}a={:<4} c={:<4} k={:<2} N={} (min {}): DSI/SI {:.3} (sim {:.3}, {:+.1}%), DSI/non-SI {:.3} (sim {:.3}, {:+.1}%), SI/non-SI {:.3} (sim {:.3}); overhead {:.0} us/job; {} preempted; lossless {}",
        if r.early_bonus { "" } else { "[paper-exact] " },
        r.a,
        r.c,
        r.k,
        r.servers,
        r.min_servers,
        r.measured_speedup_dsi_over_si,
        r.predicted_speedup_dsi_over_si,
        r.relative_error_dsi_over_si * 100.0,
        r.measured_speedup_dsi_over_nonsi,
        r.predicted_speedup_dsi_over_nonsi,
        r.relative_error_dsi_over_nonsi * 100.0,
        r.measured_speedup_si_over_nonsi,
        r.predicted_speedup_si_over_nonsi,
        r.overhead_us_per_job,
        r.dsi_jobs_preempted,
        r.lossless,
    );
}
